%% Shared by the rows' modules.
-define(UNREAD, 1000).              % request bytes the server never reads
-define(SHORT_ROUNDS, 5).           % interleaved rounds of short connections (rows 13 and 14)
