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

-type socket() :: ssl:sslsocket().
-type transport_opts() :: #{socket_opts => [term()], atom() => term()}.
%% Ranch's transport options: `ranch:transport_opts()'.

%% @doc `ssl', as `ranch_ssl'.
-spec name() -> ssl.
name() -> ssl.

%% @doc `true', as `ranch_ssl'.
-spec secure() -> true.
secure() -> true.

%% @doc As `ranch_ssl:messages/0'.
-spec messages() -> {ssl, ssl_closed, ssl_error, ssl_passive}.
messages() -> {ssl, ssl_closed, ssl_error, ssl_passive}.

%% @doc As `ranch_ssl:listen/1', after taking `{fin_close, Opts}' out of
%% `socket_opts' (default `#{}': {@link fin_close:close/2}'s defaults).
%% Options are checked here: bad ones raise `badarg'.
-spec listen(transport_opts()) -> {ok, socket()} | {error, atom()}.
listen(TransOpts) -> fin_close_transport:listen(ssl(), TransOpts).

%% @doc As `ranch_ssl:disallowed_listen_options/0'.
-spec disallowed_listen_options() -> [atom()].
disallowed_listen_options() -> (ssl()):disallowed_listen_options().

%% @doc As `ranch_ssl:accept/2'.
-spec accept(socket(), timeout()) -> {ok, socket()} | {error, atom()}.
accept(LSocket, Timeout) -> (ssl()):accept(LSocket, Timeout).

%% @doc As `ranch_ssl:handshake/2'.
-spec handshake(socket(), timeout()) -> {ok, socket()}.
handshake(Socket, Timeout) -> (ssl()):handshake(Socket, Timeout).

%% @doc As `ranch_ssl:handshake/3'.
-spec handshake(socket(), term(), timeout()) -> {ok, socket()}.
handshake(Socket, Opts, Timeout) -> (ssl()):handshake(Socket, Opts, Timeout).

%% @doc As `ranch_ssl:handshake_continue/2'.
-spec handshake_continue(socket(), timeout()) -> no_return().
handshake_continue(Socket, Timeout) -> (ssl()):handshake_continue(Socket, Timeout).

%% @doc As `ranch_ssl:handshake_continue/3'.
-spec handshake_continue(socket(), term(), timeout()) -> no_return().
handshake_continue(Socket, Opts, Timeout) -> (ssl()):handshake_continue(Socket, Opts, Timeout).

%% @doc As `ranch_ssl:handshake_cancel/1'.
-spec handshake_cancel(socket()) -> no_return().
handshake_cancel(Socket) -> (ssl()):handshake_cancel(Socket).

%% @doc As `ranch_ssl:connect/3'.
-spec connect(inet:ip_address() | inet:hostname(), inet:port_number(), [term()]) ->
    {ok, socket()} | {error, atom()}.
connect(Host, Port, Opts) -> (ssl()):connect(Host, Port, Opts).

%% @doc As `ranch_ssl:connect/4'.
-spec connect(inet:ip_address() | inet:hostname(), inet:port_number(), [term()], timeout()) ->
    {ok, socket()} | {error, atom()}.
connect(Host, Port, Opts, Timeout) -> (ssl()):connect(Host, Port, Opts, Timeout).

%% @doc As `ranch_ssl:recv/3'.
-spec recv(socket(), non_neg_integer(), timeout()) -> {ok, term()} | {error, atom()}.
recv(Socket, Length, Timeout) -> (ssl()):recv(Socket, Length, Timeout).

%% @doc As `ranch_ssl:recv_proxy_header/2'.
-spec recv_proxy_header(socket(), timeout()) -> {ok, term()} | {error, term()}.
recv_proxy_header(Socket, Timeout) -> (ssl()):recv_proxy_header(Socket, Timeout).

%% @doc As `ranch_ssl:send/2'.
-spec send(socket(), iodata()) -> ok | {error, atom()}.
send(Socket, Packet) -> (ssl()):send(Socket, Packet).

%% @doc As `ranch_ssl:sendfile/2'.
-spec sendfile(socket(), file:name_all() | file:fd()) -> {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File) -> (ssl()):sendfile(Socket, File).

%% @doc As `ranch_ssl:sendfile/4'.
-spec sendfile(socket(), file:name_all() | file:fd(), non_neg_integer(), non_neg_integer()) ->
    {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File, Offset, Bytes) -> (ssl()):sendfile(Socket, File, Offset, Bytes).

%% @doc As `ranch_ssl:sendfile/5'.
-spec sendfile(socket(), file:name_all() | file:fd(), non_neg_integer(), non_neg_integer(),
               [{chunk_size, non_neg_integer()}]) -> {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File, Offset, Bytes, Opts) -> (ssl()):sendfile(Socket, File, Offset, Bytes, Opts).

%% @doc As `ranch_ssl:setopts/2'.
-spec setopts(socket(), list()) -> ok | {error, atom()}.
setopts(Socket, Opts) -> (ssl()):setopts(Socket, Opts).

%% @doc As `ranch_ssl:getopts/2'.
-spec getopts(socket(), [atom()]) -> {ok, list()} | {error, atom()}.
getopts(Socket, Opts) -> (ssl()):getopts(Socket, Opts).

%% @doc As `ranch_ssl:getstat/1'.
-spec getstat(socket()) -> {ok, list()} | {error, atom()}.
getstat(Socket) -> (ssl()):getstat(Socket).

%% @doc As `ranch_ssl:getstat/2'.
-spec getstat(socket(), [atom()]) -> {ok, list()} | {error, atom()}.
getstat(Socket, Names) -> (ssl()):getstat(Socket, Names).

%% @doc As `ranch_ssl:controlling_process/2'.
-spec controlling_process(socket(), pid()) -> ok | {error, atom()}.
controlling_process(Socket, Pid) -> (ssl()):controlling_process(Socket, Pid).

%% @doc As `ranch_ssl:peername/1'.
-spec peername(socket()) -> {ok, {inet:ip_address(), inet:port_number()} | {local, binary()}}
                            | {error, atom()}.
peername(Socket) -> (ssl()):peername(Socket).

%% @doc As `ranch_ssl:sockname/1'.
-spec sockname(socket()) -> {ok, {inet:ip_address(), inet:port_number()} | {local, binary()}}
                            | {error, atom()}.
sockname(Socket) -> (ssl()):sockname(Socket).

%% @doc `shutdown(Socket, write)' ends the connection with
%% {@link fin_close:close/2} and the listener's options, and returns
%% `{error, closed}', so that the caller (Cowboy) does not linger itself;
%% when fin_close refuses the socket, and for `read' and `read_write', as
%% `ranch_ssl:shutdown/2'.
-spec shutdown(socket(), read | write | read_write) -> ok | {error, atom()}.
shutdown(Socket, How) -> fin_close_transport:shutdown(ssl(), Socket, How).

%% @doc Closes with {@link fin_close:close/2} and the listener's options,
%% or with `ssl:close/1' where fin_close refuses the socket (a
%% listening socket, `emfile'). Always `ok'.
-spec close(socket()) -> ok.
close(Socket) -> fin_close_transport:close(ssl(), Socket).

%% @doc As `ranch_ssl:cleanup/1'.
-spec cleanup(transport_opts()) -> ok.
cleanup(TransOpts) -> (ssl()):cleanup(TransOpts).

%% Internal.

%% Called through a function, so that fin_close compiles, and xref and
%% dialyzer run, without Ranch.
-spec ssl() -> module().
ssl() -> ranch_ssl.
