#!/usr/bin/env escript
%%! -noshell +P 1048576 +Q 1048576
%% make bench: every figure measured side by side in one run on this
%% machine, each a median over rounds with min and max. The rows live in
%% bench/src (a module per row or family of rows: see doc/benchmarks.md),
%% compiled here with the helpers in support/ so that the library's app
%% ships none of them. Writes bench/results.md, bench/results.dat and, with
%% gnuplot, bench/results.png.
-mode(compile).

main(_) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    true = code:add_patha(filename:join(Root, "_build/default/lib/fin_close/ebin")),
    [load(File) || Dir <- ["support", "bench/src"], File <- filelib:wildcard(filename:join([Root, Dir, "*.erl"]))],
    {ok, _} = application:ensure_all_started(fin_close),
    Rounds = list_to_integer(os:getenv("BENCH_ROUNDS", "3")),
    Bin = fun(Name) -> filename:join([Root, "target", "release", "examples", Name]) end,
    %% The rows run in this process and find the peers' programs here.
    put(peer, Bin("bench_peer")),
    put(fin_seen_peer, Bin("fin_seen_peer")),
    Machine = bench_results:machine(),
    [io:format("~s~n", [L]) || L <- Machine],
    io:format("rounds: ~b; measuring...~n", [Rounds]),
    %% BENCH_ROWS=2,3 measures those rows alone and writes no results file:
    %% for comparing a change side by side, not for the record.
    Only = [list_to_integer(R) || R <- string:lexemes(os:getenv("BENCH_ROWS", ""), ",")],
    Row = fun(N, F) -> case Only =:= [] orelse lists:member(N, Only) of true -> F(); false -> [] end end,
    Native = case Only =:= [] orelse lists:member(1, Only) orelse lists:member(6, Only) of
                 true -> bench_floors:native(Bin("bench_native"), Rounds);
                 false -> undefined
             end,
    Row1 = Row(1, fun() -> bench_floors:inq_row(Native) end),
    Monitor = bench_schedule:start_long_schedule_monitor(),
    Row2 = Row(2, fun() -> bench_close:latency_row(Rounds) end),
    {Row3, Plot} = case Row(3, fun() -> bench_close:throughput_row(Rounds) end) of [] -> {[], []}; R3 -> R3 end,
    Row7 = Row(7, fun() -> bench_schedule:long_schedule_row(Monitor, Rounds) end),
    Row4 = Row(4, fun() -> bench_clients:delivery_row(Rounds) end),
    Row5 = Row(5, fun() -> bench_capacity:capacity_row(Rounds) end),
    Row6 = Row(6, fun() -> bench_floors:drain_row(Native) end),
    Row8 = Row(8, fun() -> bench_clients:clients_row(Root) end),
    Row9 = Row(9, fun() -> bench_capacity:flood_row() end),
    Row10 = Row(10, fun() -> bench_cowboy:cowboy_row(Root) end),
    Row11 = Row(11, fun() -> bench_clients:https_row(Root, Rounds) end),
    Row12 = Row(12, fun() -> bench_close:fin_seen_row() end),
    Row13 = Row(13, fun() -> bench_cowboy:short_connections_row(Root) end),
    Row14 = Row(14, fun() -> bench_bandit:bandit_row(Root) end),
    Table = bench_results:table(Row1 ++ Row2 ++ Row3 ++ Row4 ++ Row5 ++ Row6 ++ Row7 ++ Row8 ++ Row9 ++ Row10
                                ++ Row11 ++ Row12 ++ Row13 ++ Row14),
    io:format("~n~s", [Table]),
    Only =:= [] andalso bench_results:write(filename:join(Root, "bench"), Machine, Table, Plot),
    ok.

load(File) ->
    {ok, Mod, Beam} = compile:file(File, [binary, report]),
    {module, Mod} = code:load_binary(Mod, File, Beam).
