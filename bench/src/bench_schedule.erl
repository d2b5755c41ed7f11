%% Row 7: whether a fin_close call holds a scheduler. long_schedule
%% reports (1 ms) that name a fin_close function, while rows 2 to 3 run and
%% on a quiet machine; and what the NIFs measure of their own threads.
-module(bench_schedule).

-include("bench.hrl").

-export([start_long_schedule_monitor/0, long_schedule_row/2]).

-import(bench_results, [percentile/2, row/8, target/2]).
-import(bench_methods, [name/1, timed/2]).
-import(bench_peer, [peer_command/2, peer_connections/3, peer_ended/1, wait/1, wait_lingering_zero/0]).

start_long_schedule_monitor() ->
    Collector = spawn(fun() -> collect([]) end),
    erlang:system_monitor(Collector, [{long_schedule, 1}]),
    Collector.

collect(Events) ->
    receive
        {monitor, _, long_schedule, Info} -> collect([Info | Events]);
        {stop, From} -> From ! {events, Events}
    end.

%% A long_schedule report (a process ran 1 ms or more without being
%% scheduled out) names where its time slice began and ended. One that
%% began and ended inside fin_close code is the sign of a fin_close call
%% holding a scheduler; the others are slices of many calls, and OS
%% preemption of the scheduler thread counts too (this machine runs the
%% VM, the reactor and the peers on 2 cores). The longest single close
%% call, by wall clock, is given for fin_close and gen_tcp:close/1 side
%% by side: both include that preemption.
long_schedule_row(Collector, Rounds) ->
    Events = stop_long_schedule_monitor(Collector),
    [io:format("long_schedule: ~p~n", [I]) || os:getenv("BENCH_DEBUG") =/= false, I <- Events],
    Inside = [I || I <- Events, ours(proplists:get_value(in, I)), ours(proplists:get_value(out, I))],
    Touching = [I || I <- Events, ours(proplists:get_value(in, I)) orelse ours(proplists:get_value(out, I))],
    Longest = fun(Is) -> lists:max([0 | [proplists:get_value(timeout, I) || I <- Is]]) end,
    Rows23 = [row(7, "long_schedule >= 1 ms inside fin_close", "began and ended in fin_close",
                  [length(Inside)], "events", io_lib:format("longest ~b ms", [Longest(Inside)]), "none",
                  Inside =:= []),
              row(7, "long_schedule >= 1 ms, other slices", "began or ended in fin_close",
                  [length(Touching) - length(Inside)], "events",
                  io_lib:format("~b in all, longest ~b ms", [length(Events), Longest(Events)]), "", none)]
        ++ [row(7, "longest close call, wall clock", name(M), [get({longest, M}) / 1000], "us",
                "rows 2-3", "", none)
            || M <- [native, fin_close]],
    %% Bound first: the quiet rounds update the longest close calls too.
    Rows23 ++ quiet_close_rows(Rounds).

%% The same closes on a quiet machine: peers connected but idle (they
%% neither read nor close until the end), so that nothing but the VM and
%% the reactor runs and a close call's wall time is the scheduler's time in
%% it.
quiet_close_rows(Rounds) ->
    N = 10000,
    Results = [{M, quiet_round(M, N)} || _ <- lists:seq(1, Rounds), M <- [native, fin_close]],
    lists:append(
      [[row(7, "quiet: longest close call", name(M), [Max / 1000 || {M1, {Max, _, _}} <- Results, M1 =:= M],
            "us", io_lib:format("of ~b calls, wall clock", [N]), target(M, "<= 1000 us"),
            M =/= fin_close orelse lists:max([Max || {M1, {Max, _, _}} <- Results, M1 =:= M]) =< 1000000),
        row(7, "quiet: long_schedule >= 1 ms", name(M), [length(Ev) || {M1, {_, _, Ev}} <- Results, M1 =:= M],
            "events", "", target(M, "none"),
            M =/= fin_close orelse lists:all(fun({M1, {_, _, Ev}}) -> M1 =/= M orelse Ev =:= [] end, Results))]
       || M <- [native, fin_close]]) ++ quiet_held_rows(Rounds, N).

%% The quiet fin_close rounds again, with every NIF call measuring its own
%% thread (fin_close_nif:measure_held/1): the CPU time it used and whether
%% it slept, against the longest close call by wall clock. Time a close
%% call takes beyond its NIFs' is the VM's or the kernel's (preemption),
%% not a native call holding the scheduler.
quiet_held_rows(Rounds, N) ->
    Results = [begin
                   ok = fin_close_nif:measure_held(true),
                   {Max, _, _} = quiet_round(fin_close, N),
                   Held = fin_close_nif:held(),
                   ok = fin_close_nif:measure_held(false),
                   {Max, Held}
               end || _ <- lists:seq(1, Rounds)],
    Get = fun(Key) -> [maps:get(Key, H) || {_, H} <- Results] end,
    [row(7, "quiet, NIFs: most CPU in one call", name(fin_close), Get(max_cpu_us), "us",
         io_lib:format("of ~b NIF calls", [lists:max(Get(calls))]), "< 1000 us",
         lists:max(Get(max_cpu_us)) < 1000),
     row(7, "quiet, NIFs: most asleep in one call", name(fin_close), Get(max_asleep_us), "us",
         io_lib:format("~b calls slept at all", [lists:max(Get(slept))]), "< 1000 us",
         lists:max(Get(max_asleep_us)) < 1000),
     row(7, "quiet, NIFs: most waiting for a CPU", name(fin_close), Get(max_waiting_us), "us",
         io_lib:format("preempted: ~b calls", [lists:max(Get(preempted))]), "", none),
     row(7, "quiet, NIFs: longest call", name(fin_close), Get(max_wall_us), "us",
         "wall clock", "", none),
     row(7, "quiet, NIFs measured: longest close", name(fin_close), [Max / 1000 || {Max, _} <- Results],
         "us", "wall clock, NIFs included", "", none)].

quiet_round(Method, N) ->
    {Peer, Socks} = peer_connections(N, "on_go", "on_release"),
    [wait(fun() -> fin_close:inq(S) =:= {ok, ?UNREAD} end) || S <- Socks],
    garbage_collect(),
    Collector = start_long_schedule_monitor(),
    Times = [timed(Method, S) || S <- Socks],
    Events = stop_long_schedule_monitor(Collector),
    peer_command(Peer, "go"),
    peer_command(Peer, "release"),
    _ = peer_ended(Peer),
    wait_lingering_zero(),
    {lists:max(Times), percentile(Times, 99), Events}.

stop_long_schedule_monitor(Collector) ->
    erlang:system_monitor(undefined),
    Collector ! {stop, self()},
    receive {events, E} -> E end.

ours({M, _, _}) -> lists:prefix("fin_close", atom_to_list(M));
ours(_) -> false.
