#!/usr/bin/env escript
%%! -noshell
%% One connection for scripts/trace.sh: the client sends a 1000-byte request
%% the server never reads and a small receive buffer; the server sends a
%% 100,000-byte reply and closes ("native": gen_tcp:close/1, "fin_close":
%% fin_close:close/1); the client starts reading 200 ms later.
-mode(compile).

main([How, PortS]) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    true = code:add_patha(filename:join(Root, "_build/default/lib/fin_close/ebin")),
    {ok, _} = application:ensure_all_started(fin_close),
    Port = list_to_integer(PortS),
    {ok, L} = gen_tcp:listen(Port, [binary, {active, false}, {ip, {127,0,0,1}}, {reuseaddr, true}]),
    {ok, C} = gen_tcp:connect({127,0,0,1}, Port, [binary, {active, false}, {show_econnreset, true}, {recbuf, 8192}]),
    {ok, S} = gen_tcp:accept(L),
    ok = gen_tcp:send(C, binary:copy(<<"q">>, 1000)),
    timer:sleep(50),
    ok = gen_tcp:send(S, binary:copy(<<"r">>, 100000)),
    case How of "native" -> gen_tcp:close(S); "fin_close" -> fin_close:close(S) end,
    timer:sleep(200),
    R = read_all(C, 0),
    io:format("~s: client got ~p~n", [How, R]),
    gen_tcp:close(C), timer:sleep(100).
read_all(S, N) -> case gen_tcp:recv(S, 0, 5000) of {ok, D} -> read_all(S, N + byte_size(D)); E -> {N, E} end.
