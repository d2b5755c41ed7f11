%% @doc A Ranch 2 transport: `ranch_ssl' whose connections end with
%% {@link fin_close:close/2}: `close_notify', then FIN, then the peer's
%% records discarded until its FIN, as {@link fin_close_ranch} does over
%% TCP. For Cowboy over TLS (`cowboy_tls'), and anything else served by
%% Ranch over TLS:
%%
%% ```
%% {ok, _} = ranch:start_listener(https, fin_close_ranch_ssl,
%%                                #{socket_opts => [{port, 8443}, {certfile, "cert.pem"},
%%                                                  {keyfile, "key.pem"}]},
%%                                cowboy_tls, #{env => #{dispatch => Dispatch}}).
%% '''
%%
%% Every callback of the `ranch_transport' behaviour is `ranch_ssl''s, but
%% for the close path, as in {@link fin_close_ranch}:
%% <ul>
%% <li>`shutdown(Socket, write)', which Cowboy calls to end a connection
%%     before its own linger, hands the socket to fin_close and returns
%%     `{error, closed}', so that the connection process exits at once;
%%     where fin_close refuses the socket, it is `ranch_ssl''s.</li>
%% <li>`close(Socket)' hands the socket to fin_close, and falls back to
%%     `ssl:close/1' where fin_close refuses it. Always `ok'.</li>
%% </ul>
%%
%% Options of {@link fin_close:close/2} per listener go into the listener's
%% `socket_opts' as `{fin_close, Opts}', as for {@link fin_close_ranch}.
%%
%% fin_close does not depend on Ranch: this module calls `ranch_ssl' only
%% at run time, and the application using it brings Ranch.
-module(fin_close_ranch_ssl).

-type socket() :: ssl:sslsocket().

-define(RANCH, ranch_ssl).
-define(NAME, ssl).
-define(SECURE, true).
-define(MESSAGES, {ssl, ssl_closed, ssl_error, ssl_passive}).
-include("fin_close_ranch.hrl").
