#!/usr/bin/env escript
%%! -noshell
%% fin_close:i() on a node with one socket of each kind: gen_tcp connections
%% on both backends (one over IPv6) with unread bytes, a socket-module
%% socket, a connection whose peer has closed, and one closed with
%% fin_close that lingers while its peer keeps the connection open.
-mode(compile).

main(_) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    true = code:add_patha(filename:join(Root, "_build/default/lib/fin_close/ebin")),
    {ok, _} = application:ensure_all_started(fin_close),
    register(web_server, self()),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}]),
    {ok, P} = inet:port(L),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, P, [binary, {active, false}]),
    {ok, _S} = gen_tcp:accept(L),
    ok = gen_tcp:send(C, <<"GET / HTTP/1.1\r\n\r\n">>),
    {ok, L6} = gen_tcp:listen(0, [{inet_backend, socket}, binary, {active, false}, {ip, {0, 0, 0, 0, 0, 0, 0, 1}}]),
    {ok, P6} = inet:port(L6),
    {ok, _C6} = gen_tcp:connect({0, 0, 0, 0, 0, 0, 0, 1}, P6, [{inet_backend, socket}, binary, {active, false}]),
    {ok, S6} = gen_tcp:accept(L6),
    ok = gen_tcp:send(S6, binary:copy(<<"x">>, 5000)),
    {ok, E} = socket:open(inet, stream, tcp),
    ok = socket:connect(E, #{family => inet, addr => {127, 0, 0, 1}, port => P}),
    {ok, _} = gen_tcp:accept(L),
    {ok, C2} = gen_tcp:connect({127, 0, 0, 1}, P, [binary, {active, false}]),
    {ok, S2} = gen_tcp:accept(L),
    ok = gen_tcp:send(C2, <<"pipelined request">>),
    ok = fin_close:close(S2),
    timer:sleep(100),
    fin_close:i().
