#!/usr/bin/env escript
%%! -noshell
%% What fin_close:sockets/0 and fin_close:i/0 cost on a busy node: 10,000
%% open TCP sockets in this node (5,000 connections, both ends here; a
%% fifth of them on {inet_backend, socket}), each with unread bytes, plus
%% 1,000 sockets lingering in the reactor. Prints the median, min and max
%% of 5 rounds, and the cost per socket listed.
-mode(compile).

-define(PAIRS, 5000).
-define(LINGERING, 1000).
-define(ROUNDS, 5).

main(_) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    true = code:add_patha(filename:join(Root, "_build/default/lib/fin_close/ebin")),
    {ok, _} = application:ensure_all_started(fin_close),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {backlog, 1024}]),
    {ok, LS} = gen_tcp:listen(0, [{inet_backend, socket}, binary, {active, false},
                                  {ip, {127, 0, 0, 1}}, {backlog, 1024}]),
    _Open = [connect(if N rem 5 =:= 0 -> LS; true -> L end) || N <- lists:seq(1, ?PAIRS)],
    Linger = [connect(L) || _ <- lists:seq(1, ?LINGERING)],
    [ok = fin_close:close(S) || {S, _} <- Linger],
    Listed = length(fin_close:sockets()),
    Kinds = lists:foldl(fun(#{kind := K}, Acc) -> maps:update_with(K, fun(N) -> N + 1 end, 1, Acc) end,
                        #{}, fin_close:sockets()),
    io:format("sockets listed: ~b ~p~n", [Listed, Kinds]),
    Sockets = [timed(fun() -> fin_close:sockets() end) || _ <- lists:seq(1, ?ROUNDS)],
    Printed = [timed(fun() -> quietly(fun fin_close:i/0) end) || _ <- lists:seq(1, ?ROUNDS)],
    Line = fun(Name, Us) ->
                   Sorted = lists:sort(Us),
                   Median = lists:nth((length(Sorted) + 1) div 2, Sorted),
                   io:format("~-20s median ~7.1f ms  min ~7.1f ms  max ~7.1f ms  ~5.2f us per socket~n",
                             [Name, Median / 1000, hd(Sorted) / 1000, lists:last(Sorted) / 1000,
                              Median / Listed])
           end,
    Line("fin_close:sockets()", Sockets),
    Line("fin_close:i()", Printed),
    [gen_tcp:close(C) || {_, C} <- Linger],
    ok.

connect(L) ->
    {ok, {Ip, Port}} = inet:sockname(L),
    Backend = case L of {'$inet', _, _} -> socket; _ -> inet end,
    {ok, C} = gen_tcp:connect(Ip, Port, [{inet_backend, Backend}, binary, {active, false}]),
    {ok, S} = gen_tcp:accept(L),
    ok = gen_tcp:send(C, <<"unread request">>),
    {S, C}.

timed(F) ->
    {Us, _} = timer:tc(F),
    Us.

%% Runs F with its output thrown away.
quietly(F) ->
    {ok, Null} = file:open("/dev/null", [write]),
    Old = group_leader(),
    group_leader(Null, self()),
    try F() after group_leader(Old, self()), file:close(Null) end.
