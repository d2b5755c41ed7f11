%% @doc A ThousandIsland transport: `ThousandIsland.Transports.TCP' whose
%% connections end with {@link fin_close:close/2}. For Bandit, the web
%% server of new Phoenix apps, and anything else served by ThousandIsland:
%%
%% ```
%% Bandit.start_link(plug: MyPlug, port: 4000,
%%                   thousand_island_options: [transport_module: :fin_close_thousand_island])
%% '''
%%
%% and in a Phoenix endpoint's configuration the same under `http:':
%% `http: [port: 4000, thousand_island_options: [transport_module: :fin_close_thousand_island]]'.
%%
%% Every callback of the `ThousandIsland.Transport' behaviour is
%% `ThousandIsland.Transports.TCP''s, but for:
%% <ul>
%% <li>`close(Socket)', which hands the socket to fin_close (Bandit closes a
%%     connection with it, also right after an early answer to a request
%%     whose body it did not read) and falls back to the TCP transport's
%%     where fin_close refuses it (a listening socket, `emfile'). It always
%%     returns `ok'. `shutdown/2' is the TCP transport's (Bandit calls it
%%     to close a WebSocket, then reads until the peer closes).</li>
%% <li>`accept(LSocket)': when the node is out of descriptors, lingering
%%     sockets give some back ({@link fin_close:reclaim/0}) and it accepts
%%     once more.</li>
%% <li>`listen(Port, Options)' takes `{fin_close, Opts}' out of the
%%     options: the options of {@link fin_close:close/2} for the listener's
%%     connections, found by the port number at each connection's
%%     handshake, and forgotten when the listen socket closes. In Bandit:
%%     `thousand_island_options: [transport_module: :fin_close_thousand_island,
%%     transport_options: [fin_close: %{linger_timeout: 10_000}]]'.</li>
%% </ul>
%%
%% fin_close does not depend on ThousandIsland: this module calls it only
%% at run time, and the application using it brings it.
-module(fin_close_thousand_island).

-type socket() :: inet:socket().

-define(THOUSAND_ISLAND, 'Elixir.ThousandIsland.Transports.TCP').
-include("fin_close_thousand_island.hrl").
