%% The ranch_transport callbacks of fin_close_ranch and fin_close_ranch_ssl,
%% written once: each module defines the socket() type and RANCH (the Ranch
%% transport it stands for: ranch_tcp, ranch_ssl), NAME, SECURE and
%% MESSAGES (that transport's name/0, secure/0 and messages/0), and
%% includes this. Everything is the transport's but the close path
%% (fin_close_transport).

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

%% The transport is called through a function, not by its name: it is only
%% called at run time, and fin_close compiles, and xref and dialyzer run,
%% without Ranch.
-define(TRANSPORT, (transport())).

-type transport_opts() :: fin_close_transport:transport_opts().

%% @doc As the Ranch transport's `listen/1', after taking `{fin_close, Opts}' out of
%% `socket_opts' (default `#{}': {@link fin_close:close/2}'s defaults).
%% Options are checked here: bad ones raise `badarg'.
-spec listen(transport_opts()) -> {ok, socket()} | {error, atom()}.
listen(TransOpts) -> fin_close_transport:listen(?TRANSPORT, TransOpts).

%% @doc As the Ranch transport's `disallowed_listen_options/0'.
-spec disallowed_listen_options() -> [atom()].
disallowed_listen_options() -> ?TRANSPORT:disallowed_listen_options().

%% @doc As the Ranch transport's `accept/2'.
-spec accept(socket(), timeout()) -> {ok, socket()} | {error, atom()}.
accept(LSocket, Timeout) -> fin_close_transport:accept(?TRANSPORT, LSocket, Timeout).

%% @doc As the Ranch transport's `handshake/2'; the connection's process
%% notes its listener's options for its close.
-spec handshake(socket(), timeout()) -> {ok, socket()}.
handshake(Socket, Timeout) ->
    fin_close_transport:handshaken(?TRANSPORT, ?TRANSPORT:handshake(Socket, Timeout)).

%% @doc As {@link handshake/2}, with the Ranch transport's `handshake/3'.
-spec handshake(socket(), term(), timeout()) -> {ok, socket()}.
handshake(Socket, Opts, Timeout) ->
    fin_close_transport:handshaken(?TRANSPORT, ?TRANSPORT:handshake(Socket, Opts, Timeout)).

%% @doc As {@link handshake/2}, with the Ranch transport's
%% `handshake_continue/2'.
-spec handshake_continue(socket(), timeout()) -> no_return().
handshake_continue(Socket, Timeout) ->
    fin_close_transport:handshaken(?TRANSPORT, ?TRANSPORT:handshake_continue(Socket, Timeout)).

%% @doc As {@link handshake/2}, with the Ranch transport's
%% `handshake_continue/3'.
-spec handshake_continue(socket(), term(), timeout()) -> no_return().
handshake_continue(Socket, Opts, Timeout) ->
    fin_close_transport:handshaken(?TRANSPORT, ?TRANSPORT:handshake_continue(Socket, Opts, Timeout)).

%% @doc As the Ranch transport's `handshake_cancel/1'.
-spec handshake_cancel(socket()) -> no_return().
handshake_cancel(Socket) -> ?TRANSPORT:handshake_cancel(Socket).

%% @doc As the Ranch transport's `connect/3'.
-spec connect(inet:ip_address() | inet:hostname(), inet:port_number(), [term()]) ->
    {ok, socket()} | {error, atom()}.
connect(Host, Port, Opts) -> ?TRANSPORT:connect(Host, Port, Opts).

%% @doc As the Ranch transport's `connect/4'.
-spec connect(inet:ip_address() | inet:hostname(), inet:port_number(), [term()], timeout()) ->
    {ok, socket()} | {error, atom()}.
connect(Host, Port, Opts, Timeout) -> ?TRANSPORT:connect(Host, Port, Opts, Timeout).

%% @doc As the Ranch transport's `recv/3'.
-spec recv(socket(), non_neg_integer(), timeout()) -> {ok, term()} | {error, atom()}.
recv(Socket, Length, Timeout) -> ?TRANSPORT:recv(Socket, Length, Timeout).

%% @doc As the Ranch transport's `recv_proxy_header/2'.
-spec recv_proxy_header(socket(), timeout()) -> {ok, term()} | {error, term()}.
recv_proxy_header(Socket, Timeout) -> ?TRANSPORT:recv_proxy_header(Socket, Timeout).

%% @doc As the Ranch transport's `send/2'.
-spec send(socket(), iodata()) -> ok | {error, atom()}.
send(Socket, Packet) -> ?TRANSPORT:send(Socket, Packet).

%% @doc As the Ranch transport's `sendfile/2'.
-spec sendfile(socket(), file:name_all() | file:fd()) -> {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File) -> ?TRANSPORT:sendfile(Socket, File).

%% @doc As the Ranch transport's `sendfile/4'.
-spec sendfile(socket(), file:name_all() | file:fd(), non_neg_integer(), non_neg_integer()) ->
    {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File, Offset, Bytes) -> ?TRANSPORT:sendfile(Socket, File, Offset, Bytes).

%% @doc As the Ranch transport's `sendfile/5'.
-spec sendfile(socket(), file:name_all() | file:fd(), non_neg_integer(), non_neg_integer(),
               [{chunk_size, non_neg_integer()}]) -> {ok, non_neg_integer()} | {error, atom()}.
sendfile(Socket, File, Offset, Bytes, Opts) -> ?TRANSPORT:sendfile(Socket, File, Offset, Bytes, Opts).

%% @doc As the Ranch transport's `setopts/2'.
-spec setopts(socket(), list()) -> ok | {error, atom()}.
setopts(Socket, Opts) -> ?TRANSPORT:setopts(Socket, Opts).

%% @doc As the Ranch transport's `getopts/2'.
-spec getopts(socket(), [atom()]) -> {ok, list()} | {error, atom()}.
getopts(Socket, Opts) -> ?TRANSPORT:getopts(Socket, Opts).

%% @doc As the Ranch transport's `getstat/1'.
-spec getstat(socket()) -> {ok, list()} | {error, atom()}.
getstat(Socket) -> ?TRANSPORT:getstat(Socket).

%% @doc As the Ranch transport's `getstat/2'.
-spec getstat(socket(), [atom()]) -> {ok, list()} | {error, atom()}.
getstat(Socket, Names) -> ?TRANSPORT:getstat(Socket, Names).

%% @doc As the Ranch transport's `controlling_process/2'.
-spec controlling_process(socket(), pid()) -> ok | {error, atom()}.
controlling_process(Socket, Pid) -> ?TRANSPORT:controlling_process(Socket, Pid).

%% @doc As the Ranch transport's `peername/1'.
-spec peername(socket()) -> {ok, {inet:ip_address(), inet:port_number()} | {local, binary()}}
                            | {error, atom()}.
peername(Socket) -> ?TRANSPORT:peername(Socket).

%% @doc As the Ranch transport's `sockname/1'.
-spec sockname(socket()) -> {ok, {inet:ip_address(), inet:port_number()} | {local, binary()}}
                            | {error, atom()}.
sockname(Socket) -> ?TRANSPORT:sockname(Socket).

%% @doc `shutdown(Socket, write)' ends the connection with
%% {@link fin_close:close/2} and the listener's options, and returns
%% `{error, closed}', so that the caller (Cowboy) does not linger itself;
%% when fin_close refuses the socket, and for `read' and `read_write', the
%% Ranch transport's.
-spec shutdown(socket(), read | write | read_write) -> ok | {error, atom()}.
shutdown(Socket, How) -> fin_close_transport:shutdown(?TRANSPORT, Socket, How).

%% @doc Closes with {@link fin_close:close/2} and the listener's options,
%% or with the Ranch transport's where fin_close refuses the socket (a
%% listening socket, `emfile'). Always `ok'.
-spec close(socket()) -> ok.
close(Socket) -> fin_close_transport:close(?TRANSPORT, Socket).

%% @doc As the Ranch transport's `cleanup/1'.
-spec cleanup(transport_opts()) -> ok.
cleanup(TransOpts) -> ?TRANSPORT:cleanup(TransOpts).

%% @doc As the Ranch transport's `name/0'.
-spec name() -> ?NAME.
name() -> ?NAME.

%% @doc As the Ranch transport's `secure/0'.
-spec secure() -> ?SECURE.
secure() -> ?SECURE.

%% @doc As the Ranch transport's `messages/0'.
-spec messages() -> ?MESSAGES.
messages() -> ?MESSAGES.

-spec transport() -> module().
transport() -> ?RANCH.
