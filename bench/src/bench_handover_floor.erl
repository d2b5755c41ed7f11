%% Row 14's floor: a ThousandIsland transport whose close/1 makes only the
%% bare steps of a hand-over that no close through fin_close can skip (the
%% duplicate and its epoll room, our FIN through the port, the port's
%% close) and then gives the duplicate back instead of handing it to the
%% reactor: what fin_close_thousand_island would cost were the rest
%% (options, checks, the reactor's work) free. Not a correct close: a
%% request left unread would get RST. Every other callback is
%% ThousandIsland.Transports.TCP's.
-module(bench_handover_floor).

-export([listen/2, accept/1, handshake/1, upgrade/2, controlling_process/2, recv/3, send/2,
         sendfile/4, getopts/2, setopts/2, shutdown/2, close/1, sockname/1, peername/1,
         peercert/1, 'secure?'/0, getstat/1, negotiated_protocol/1, connection_information/1]).

-define(TCP, 'Elixir.ThousandIsland.Transports.TCP').

close(Socket) ->
    Limits = maps:from_list([{Key, Default} || {Key, Default, _} <- fin_close_closing:option_table()]),
    case fin_close_socket:borrowed({port, Socket}, {reserve, Limits}) of
        {ok, Handover} ->
            ok = gen_tcp:shutdown(Socket, write),
            true = erlang:port_close(Socket),
            fin_close_nif:cancel(Handover);
        {error, _} ->
            %% Closed by its driver already (the peer's FIN in passive mode).
            ?TCP:close(Socket)
    end.

listen(Port, Options) -> ?TCP:listen(Port, Options).
accept(LSocket) -> ?TCP:accept(LSocket).
handshake(Socket) -> ?TCP:handshake(Socket).
upgrade(Socket, Options) -> ?TCP:upgrade(Socket, Options).
controlling_process(Socket, Pid) -> ?TCP:controlling_process(Socket, Pid).
recv(Socket, Length, Timeout) -> ?TCP:recv(Socket, Length, Timeout).
send(Socket, Data) -> ?TCP:send(Socket, Data).
sendfile(Socket, File, Offset, Length) -> ?TCP:sendfile(Socket, File, Offset, Length).
getopts(Socket, Options) -> ?TCP:getopts(Socket, Options).
setopts(Socket, Options) -> ?TCP:setopts(Socket, Options).
shutdown(Socket, How) -> ?TCP:shutdown(Socket, How).
sockname(Socket) -> ?TCP:sockname(Socket).
peername(Socket) -> ?TCP:peername(Socket).
peercert(Socket) -> ?TCP:peercert(Socket).
'secure?'() -> ?TCP:'secure?'().
getstat(Socket) -> ?TCP:getstat(Socket).
negotiated_protocol(Socket) -> ?TCP:negotiated_protocol(Socket).
connection_information(Socket) -> ?TCP:connection_information(Socket).
