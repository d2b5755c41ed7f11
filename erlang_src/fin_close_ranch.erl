%% @doc A Ranch 2 transport: `ranch_tcp' whose connections end with
%% {@link fin_close:close/2}. For Cowboy, and anything else served by Ranch
%% over TCP:
%%
%% ```
%% {ok, _} = ranch:start_listener(http, fin_close_ranch,
%%                                #{socket_opts => [{port, 8080}]},
%%                                cowboy_clear, #{env => #{dispatch => Dispatch}}).
%% '''
%%
%% Every callback of the `ranch_transport' behaviour is `ranch_tcp''s, but
%% for the close path:
%% <ul>
%% <li>`shutdown(Socket, write)', which Cowboy calls to end a connection
%%     before its own linger, hands the socket to fin_close and returns
%%     `{error, closed}': the connection process skips its linger loop and
%%     exits at once, and no process is held while the socket lingers. When
%%     fin_close refuses the socket (`emfile' with nothing to reclaim, a
%%     socket already shut down), it is `ranch_tcp''s shutdown, and
%%     Cowboy's own linger takes over.</li>
%% <li>`close(Socket)' hands the socket to fin_close, and falls back to
%%     `gen_tcp:close/1' where fin_close refuses it (a listening socket,
%%     `emfile'). It always returns `ok', as `ranch_tcp''s does.</li>
%% </ul>
%%
%% Options of {@link fin_close:close/2} per listener go into the listener's
%% `socket_opts' as `{fin_close, Opts}' (Ranch 2 refuses keys of its own
%% transport options it does not know, and hands `socket_opts' to the
%% transport alone); this module takes them out before `gen_tcp:listen/2'
%% sees them:
%% ```
%% #{socket_opts => [{port, 8080}, {fin_close, #{linger_timeout => 10000}}]}
%% '''
%% A connection finds them by its local port number, the listener's, once,
%% at its handshake; they are forgotten when the listener's socket closes.
%% Two listeners on one port number (on different addresses) share the
%% last one's options.
%%
%% For Plug.Cowboy (Phoenix on Cowboy), {@link child_spec/1} turns its child
%% spec into one with these transports.
%%
%% fin_close does not depend on Ranch: this module calls `ranch_tcp' only
%% at run time, and the application using it brings Ranch.
-module(fin_close_ranch).

-export([child_spec/1]).

-type socket() :: inet:socket().

-define(RANCH, ranch_tcp).
-define(NAME, tcp).
-define(SECURE, false).
-define(MESSAGES, {tcp, tcp_closed, tcp_error, tcp_passive}).
-include("fin_close_ranch.hrl").

%% @doc The same Ranch listener child spec with fin_close's transports:
%% `ranch_tcp' becomes `fin_close_ranch', `ranch_ssl' `fin_close_ranch_ssl';
%% everything else is kept (for Plug.Cowboy: its stream handlers,
%% acceptors and connection limit). A spec of `ranch:child_spec/5' or of
%% `Plug.Cowboy.child_spec/1', in an application's children:
%% ```
%% :fin_close_ranch.child_spec(Plug.Cowboy.child_spec(scheme: :http, plug: MyPlug, options: [port: 4000]))
%% '''
%% A spec of another shape raises `badarg'.
-spec child_spec(supervisor:child_spec()) -> supervisor:child_spec().
child_spec(#{start := {M, F, [Ref, Transport | Rest]}} = Spec) ->
    Spec#{start := {M, F, [Ref, fin_close_transport(Transport) | Rest]}};
child_spec({Id, {M, F, [Ref, Transport | Rest]}, Restart, Shutdown, Type, Modules}) ->
    {Id, {M, F, [Ref, fin_close_transport(Transport) | Rest]}, Restart, Shutdown, Type, Modules};
child_spec(Spec) ->
    erlang:error(badarg, [Spec]).

-spec fin_close_transport(module()) -> module().
fin_close_transport(ranch_tcp) -> fin_close_ranch;
fin_close_transport(ranch_ssl) -> fin_close_ranch_ssl;
fin_close_transport(Other) -> Other.
