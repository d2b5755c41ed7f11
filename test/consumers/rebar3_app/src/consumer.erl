%% A server that answers without reading the request, then closes with
%% fin_close: the client must get the whole reply and a FIN, and the
%% socket must show in fin_close:i() with its unread request.
-module(consumer).
-export([main/0]).

-define(REQUEST, 1000).
-define(REPLY, 1048576).

main() ->
    {ok, _} = application:ensure_all_started(consumer),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    {ok, Client} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {show_econnreset, true}]),
    {ok, Server} = gen_tcp:accept(L),
    ok = gen_tcp:send(Client, binary:copy(<<"q">>, ?REQUEST)),
    ok = wait_inq(Server, ?REQUEST),
    fin_close:i(),
    [#{recv_q := ?REQUEST, state := established}] =
        [S || #{socket := Sock} = S <- fin_close:sockets(), Sock =:= Server],
    Self = self(),
    Reader = spawn_link(fun() -> Self ! {self(), read_all(Client, 0)} end),
    ok = gen_tcp:send(Server, binary:copy(<<"r">>, ?REPLY)),
    ok = fin_close:close(Server),
    receive
        {Reader, {?REPLY, {error, closed}}} ->
            io:format("rebar3 consumer: ~b of ~b bytes, then {error,closed} (FIN)~n", [?REPLY, ?REPLY]),
            halt(0);
        {Reader, Other} ->
            io:format("rebar3 consumer: got ~p~n", [Other]),
            halt(1)
    after 30000 ->
        io:format("rebar3 consumer: no reply~n"),
        halt(1)
    end.

wait_inq(Sock, N) ->
    case fin_close:inq(Sock) of
        {ok, N} -> ok;
        _ -> timer:sleep(1), wait_inq(Sock, N)
    end.

read_all(Sock, Total) ->
    case gen_tcp:recv(Sock, 0, 10000) of
        {ok, Data} -> read_all(Sock, Total + byte_size(Data));
        {error, _} = End -> {Total, End}
    end.
