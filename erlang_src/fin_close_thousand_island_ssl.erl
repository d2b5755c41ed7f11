%% @doc A ThousandIsland transport: `ThousandIsland.Transports.SSL' whose
%% connections end with {@link fin_close:close/2} (`close_notify', then FIN,
%% then the linger; see {@link fin_close_thousand_island} for what differs
%% from the underlying transport, and doc/tls.md). For Bandit over HTTPS,
%% HTTP/2 included:
%%
%% ```
%% Bandit.start_link(plug: MyPlug, scheme: :https, port: 4443, certfile: ..., keyfile: ...,
%%                   thousand_island_options: [transport_module: :fin_close_thousand_island_ssl])
%% '''
%%
%% and in a Phoenix endpoint's configuration the same under `https:'.
-module(fin_close_thousand_island_ssl).

-type socket() :: ssl:sslsocket().

-define(THOUSAND_ISLAND, 'Elixir.ThousandIsland.Transports.SSL').
-include("fin_close_thousand_island.hrl").
