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
%% They are found again by the listener's port number, so two listeners on
%% one port number (on different addresses) share the last one's options.
%%
%% fin_close does not depend on Ranch: this module calls `ranch_tcp' only
%% at run time, and the application using it brings Ranch.
-module(fin_close_ranch).

-export([name/0]).
-export([secure/0]).
-export([messages/0]).
-export([listen/1]).
-export([disallowed_listen_options/0]).
-export([accept/2]).
-export([handshake/2]).
-export([handshake/3]).
-export([handshake_continue/2]).
-export([handshake_continue/3]).
-export([handshake_cancel/1]).
-export([connect/3]).
-export([connect/4]).
-export([recv/3]).
-export([recv_proxy_header/2]).
-export([send/2]).
-export([sendfile/2]).
-export([sendfile/4]).
-export([sendfile/5]).
-export([setopts/2]).
-export([getopts/2]).
-export([getstat/1]).
-export([getstat/2]).
-export([controlling_process/2]).
-export([peername/1]).
-export([sockname/1]).
-export([shutdown/2]).
-export([close/1]).
-export([cleanup/1]).

-type socket() :: inet:socket().
-type transport_opts() :: #{socket_opts => [term()], atom() => term()}.
%% Ranch's transport options: `ranch:transport_opts()'.

%% @doc `tcp', as `ranch_tcp'.
-spec name() -> tcp.
name() -> tcp.

%% @doc `false', as `ranch_tcp'.
-spec secure() -> false.
secure() -> false.

%% @doc As `ranch_tcp:messages/0'.
-spec messages() -> {tcp, tcp_closed, tcp_error, tcp_passive}.
messages() -> {tcp, tcp_closed, tcp_error, tcp_passive}.

%% @doc As `ranch_tcp:listen/1', after taking `{fin_close, Opts}' out of
%% `socket_opts' (default `#{}': {@link fin_close:close/2}'s defaults).
%% Options are checked here: bad ones raise `badarg'.
-spec listen(transport_opts()) -> {ok, socket()} | {error, atom()}.
listen(TransOpts) -> fin_close_transport:listen(tcp(), TransOpts).

%% @doc As `ranch_tcp:disallowed_listen_options/0'.
-spec disallowed_listen_options() -> [atom()].
disallowed_listen_options() -> (tcp()):disallowed_listen_options().

%% @doc As `ranch_tcp:accept/2'.
-spec accept(socket(), timeout()) -> {ok, socket()} | {error, atom()}.
accept(LSocket, Timeout) -> (tcp()):accept(LSocket, Timeout).

%% @doc As `ranch_tcp:handshake/2'.
-spec handshake(socket(), timeout()) -> {ok, socket()}.
handshake(Socket, Timeout) -> (tcp()):handshake(Socket, Timeout).

%% @doc As `ranch_tcp:handshake/3'.
-spec handshake(socket(), term(), timeout()) -> {ok, socket()}.
handshake(Socket, Opts, Timeout) -> (tcp()):handshake(Socket, Opts, Timeout).

%% @doc As `ranch_tcp:handshake_continue/2'.
-spec handshake_continue(socket(), timeout()) -> no_return().
handshake_continue(Socket, Timeout) -> (tcp()):handshake_continue(Socket, Timeout).

%% @doc As `ranch_tcp:handshake_continue/3'.
-spec handshake_continue(socket(), term(), timeout()) -> no_return().
handshake_continue(Socket, Opts, Timeout) -> (tcp()):handshake_continue(Socket, Opts, Timeout).

%% @doc As `ranch_tcp:handshake_cancel/1'.
-spec handshake_cancel(socket()) -> no_return().
handshake_cancel(Socket) -> (tcp()):handshake_cancel(Socket).

%% @doc As `ranch_tcp:connect/3'.
-spec connect(inet:ip_address() | inet:hostname(), inet:port_number(), [term()]) ->
    {ok, socket()} | {error, atom()}.
connect(Host, Port, Opts) -> (tcp()):connect(Host, Port, Opts).

%% @doc As `ranch_tcp:connect/4'.
-spec connect(inet:ip_address() | inet:hostname(), inet:port_number(), [term()], timeout()) ->
    {ok, socket()} | {error, atom()}.
connect(Host, Port, Opts, Timeout) -> (tcp()):connect(Host, Port, Opts, Timeout).

%% @doc As `ranch_tcp:recv/3'.
-spec recv(socket(), non_neg_integer(), timeout()) -> {ok, term()} | {error, atom()}.
recv(Socket, Length, Timeout) -> (tcp()):recv(Socket, Length, Timeout).

%% @doc As `ranch_tcp:recv_proxy_header/2'.
-spec recv_proxy_header(socket(), timeout()) -> {ok, term()} | {error, term()}.
recv_proxy_header(Socket, Timeout) -> (tcp()):recv_proxy_header(Socket, Timeout).

%% @doc As `ranch_tcp:send/2'.
-spec send(socket(), iodata()) -> ok | {error, atom()}.
send(Socket, Packet) -> (tcp()):send(Socket, Packet).

%% @doc As `ranch_tcp:sendfile/2'.
-spec sendfile(socket(), file:name_all() | file:fd()) -> {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File) -> (tcp()):sendfile(Socket, File).

%% @doc As `ranch_tcp:sendfile/4'.
-spec sendfile(socket(), file:name_all() | file:fd(), non_neg_integer(), non_neg_integer()) ->
    {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File, Offset, Bytes) -> (tcp()):sendfile(Socket, File, Offset, Bytes).

%% @doc As `ranch_tcp:sendfile/5'.
-spec sendfile(socket(), file:name_all() | file:fd(), non_neg_integer(), non_neg_integer(),
               [{chunk_size, non_neg_integer()}]) -> {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File, Offset, Bytes, Opts) -> (tcp()):sendfile(Socket, File, Offset, Bytes, Opts).

%% @doc As `ranch_tcp:setopts/2'.
-spec setopts(socket(), list()) -> ok | {error, atom()}.
setopts(Socket, Opts) -> (tcp()):setopts(Socket, Opts).

%% @doc As `ranch_tcp:getopts/2'.
-spec getopts(socket(), [atom()]) -> {ok, list()} | {error, atom()}.
getopts(Socket, Opts) -> (tcp()):getopts(Socket, Opts).

%% @doc As `ranch_tcp:getstat/1'.
-spec getstat(socket()) -> {ok, list()} | {error, atom()}.
getstat(Socket) -> (tcp()):getstat(Socket).

%% @doc As `ranch_tcp:getstat/2'.
-spec getstat(socket(), [atom()]) -> {ok, list()} | {error, atom()}.
getstat(Socket, Names) -> (tcp()):getstat(Socket, Names).

%% @doc As `ranch_tcp:controlling_process/2'.
-spec controlling_process(socket(), pid()) -> ok | {error, atom()}.
controlling_process(Socket, Pid) -> (tcp()):controlling_process(Socket, Pid).

%% @doc As `ranch_tcp:peername/1'.
-spec peername(socket()) -> {ok, {inet:ip_address(), inet:port_number()} | {local, binary()}}
                            | {error, atom()}.
peername(Socket) -> (tcp()):peername(Socket).

%% @doc As `ranch_tcp:sockname/1'.
-spec sockname(socket()) -> {ok, {inet:ip_address(), inet:port_number()} | {local, binary()}}
                            | {error, atom()}.
sockname(Socket) -> (tcp()):sockname(Socket).

%% @doc `shutdown(Socket, write)' ends the connection with
%% {@link fin_close:close/2} and the listener's options, and returns
%% `{error, closed}', so that the caller (Cowboy) does not linger itself;
%% when fin_close refuses the socket, and for `read' and `read_write', as
%% `ranch_tcp:shutdown/2'.
-spec shutdown(socket(), read | write | read_write) -> ok | {error, atom()}.
shutdown(Socket, How) -> fin_close_transport:shutdown(tcp(), Socket, How).

%% @doc Closes with {@link fin_close:close/2} and the listener's options,
%% or with `gen_tcp:close/1' where fin_close refuses the socket (a
%% listening socket, `emfile'). Always `ok'.
-spec close(socket()) -> ok.
close(Socket) -> fin_close_transport:close(tcp(), Socket).

%% @doc As `ranch_tcp:cleanup/1'.
-spec cleanup(transport_opts()) -> ok.
cleanup(TransOpts) -> (tcp()):cleanup(TransOpts).

%% Internal.

%% Called through a function, so that fin_close compiles, and xref and
%% dialyzer run, without Ranch.
-spec tcp() -> module().
tcp() -> ranch_tcp.
