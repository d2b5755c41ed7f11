%% The ThousandIsland transport callbacks of fin_close_thousand_island and
%% fin_close_thousand_island_ssl, written once: every one is the underlying
%% ThousandIsland transport's (?THOUSAND_ISLAND), but listen/2 (which takes
%% `{fin_close, Opts}' out of the options), accept/1 (which has lingering
%% sockets give descriptors back when none is left), close/1 (through
%% fin_close) and handshake/1 (which notes the listener's options in the
%% connection's process, for close/1). The including module defines
%% ?THOUSAND_ISLAND and the type socket().

-export([listen/2]).
-export([accept/1]).
-export([handshake/1]).
-export([upgrade/2]).
-export([controlling_process/2]).
-export([recv/3]).
-export([send/2]).
-export([sendfile/4]).
-export([getopts/2]).
-export([setopts/2]).
-export([shutdown/2]).
-export([close/1]).
-export([sockname/1]).
-export([peername/1]).
-export([peercert/1]).
-export(['secure?'/0]).
-export([getstat/1]).
-export([negotiated_protocol/1]).
-export([connection_information/1]).

%% Called through a function, so that xref does not look for a module that
%% only the application using this one brings.
-define(TRANSPORT, (transport())).

-spec listen(inet:port_number(), list()) -> {ok, socket()} | {error, term()}.
listen(Port, Options) ->
    {Opts, Theirs} = fin_close_transport:split_options(Options),
    case ?TRANSPORT:listen(Port, Theirs) of
        {ok, LSocket} = Listening ->
            fin_close_transport:remember(?TRANSPORT, LSocket, Opts),
            Listening;
        Error ->
            Error
    end.

-spec accept(socket()) -> {ok, socket()} | {error, term()}.
accept(LSocket) -> fin_close_transport:accept(?TRANSPORT, LSocket).

-spec handshake(socket()) -> {ok, socket()} | {error, term()}.
handshake(Socket) -> fin_close_transport:handshaken(?TRANSPORT, ?TRANSPORT:handshake(Socket)).

-spec upgrade(socket(), term()) -> {ok, socket()} | {error, term()}.
upgrade(Socket, Opts) -> ?TRANSPORT:upgrade(Socket, Opts).

-spec controlling_process(socket(), pid()) -> ok | {error, term()}.
controlling_process(Socket, Pid) -> ?TRANSPORT:controlling_process(Socket, Pid).

-spec recv(socket(), non_neg_integer(), timeout()) -> {ok, binary()} | {error, term()}.
recv(Socket, Length, Timeout) -> ?TRANSPORT:recv(Socket, Length, Timeout).

-spec send(socket(), iodata()) -> ok | {error, term()}.
send(Socket, Data) -> ?TRANSPORT:send(Socket, Data).

-spec sendfile(socket(), binary(), non_neg_integer(), non_neg_integer()) ->
    {ok, non_neg_integer()} | {error, term()}.
sendfile(Socket, Filename, Offset, Length) -> ?TRANSPORT:sendfile(Socket, Filename, Offset, Length).

-spec getopts(socket(), list()) -> {ok, list()} | {error, term()}.
getopts(Socket, Options) -> ?TRANSPORT:getopts(Socket, Options).

-spec setopts(socket(), list()) -> ok | {error, term()}.
setopts(Socket, Options) -> ?TRANSPORT:setopts(Socket, Options).

-spec shutdown(socket(), read | write | read_write) -> ok | {error, term()}.
shutdown(Socket, How) -> ?TRANSPORT:shutdown(Socket, How).

-spec close(socket()) -> ok.
close(Socket) -> fin_close_transport:close(?TRANSPORT, Socket).

-spec sockname(socket()) -> {ok, term()} | {error, term()}.
sockname(Socket) -> ?TRANSPORT:sockname(Socket).

-spec peername(socket()) -> {ok, term()} | {error, term()}.
peername(Socket) -> ?TRANSPORT:peername(Socket).

-spec peercert(socket()) -> {ok, term()} | {error, term()}.
peercert(Socket) -> ?TRANSPORT:peercert(Socket).

-spec 'secure?'() -> boolean().
'secure?'() -> ?TRANSPORT:'secure?'().

-spec getstat(socket()) -> {ok, list()} | {error, term()}.
getstat(Socket) -> ?TRANSPORT:getstat(Socket).

-spec negotiated_protocol(socket()) -> {ok, binary()} | {error, term()}.
negotiated_protocol(Socket) -> ?TRANSPORT:negotiated_protocol(Socket).

-spec connection_information(socket()) -> {ok, list()} | {error, term()}.
connection_information(Socket) -> ?TRANSPORT:connection_information(Socket).

-spec transport() -> module().
transport() -> ?THOUSAND_ISLAND.
