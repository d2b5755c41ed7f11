#!/usr/bin/env escript
%%! -noshell +P 1048576 +Q 1048576
%% make bench: every figure measured side by side in one run on this
%% machine, each a median over rounds with min and max. Peers live in their
%% own OS process (target/release/examples/bench_peer) so that this VM can
%% spend its descriptor limit on server sockets. Writes bench/results.md,
%% bench/results.dat and, with gnuplot, bench/results.png.
-mode(compile).

-define(UNREAD, 1000).              % request bytes the server never reads
-define(LATENCY_N, 2000).           % connections per latency round
-define(COWBOY_N, 50).              % Cowboy-style closes per round (1 s each)
-define(COWBOY_TIMEOUT, 1000).
-define(THROUGHPUT_NS, [2000, 5000, 10000, 20000]).
-define(INQ_CALLS, 200000).
-define(INQ_ROUNDS, 11).            % alternating rounds of inq/1 and its probe (row 1)
-define(CLIENT_RUNS, 10).           % runs per real client and close (rows 8 and 11)
-define(TLS_LATENCY_N, 500).        % TLS connections per latency round (row 11)

main(_) ->
    Root = filename:dirname(filename:dirname(filename:absname(escript:script_name()))),
    true = code:add_patha(filename:join(Root, "_build/default/lib/fin_close/ebin")),
    %% The test suites' helpers: pairs, waits, the slow reader, certificates.
    {ok, Ct, Beam} = compile:file(filename:join(Root, "support/fin_close_ct.erl"), [binary]),
    {module, Ct} = code:load_binary(Ct, "fin_close_ct.erl", Beam),
    {ok, _} = application:ensure_all_started(fin_close),
    Rounds = list_to_integer(os:getenv("BENCH_ROUNDS", "3")),
    Bin = fun(Name) -> filename:join([Root, "target", "release", "examples", Name]) end,
    put(peer, Bin("bench_peer")),
    put(fin_seen_peer, Bin("fin_seen_peer")),
    Machine = machine(),
    [io:format("~s~n", [L]) || L <- Machine],
    io:format("rounds: ~b; measuring...~n", [Rounds]),
    %% BENCH_ROWS=2,3 measures those rows alone and writes no results file:
    %% for comparing a change side by side, not for the record.
    Only = [list_to_integer(R) || R <- string:lexemes(os:getenv("BENCH_ROWS", ""), ",")],
    Row = fun(N, F) -> case Only =:= [] orelse lists:member(N, Only) of true -> F(); false -> [] end end,
    Native = case Only =:= [] orelse lists:member(1, Only) orelse lists:member(6, Only) of
                 true -> native(Bin("bench_native"), Rounds);
                 false -> undefined
             end,
    Row1 = Row(1, fun() -> inq_row(Native, Rounds) end),
    Monitor = start_long_schedule_monitor(),
    Row2 = Row(2, fun() -> latency_row(Rounds) end),
    {Row3, Plot} = case Row(3, fun() -> throughput_row(Rounds) end) of [] -> {[], []}; R3 -> R3 end,
    Row7 = Row(7, fun() -> long_schedule_row(Monitor, Rounds) end),
    Row4 = Row(4, fun() -> delivery_row(Rounds) end),
    Row5 = Row(5, fun() -> capacity_row(Rounds) end),
    Row6 = Row(6, fun() -> drain_row(Native) end),
    Row8 = Row(8, fun() -> clients_row(Root) end),
    Row9 = Row(9, fun() -> flood_row() end),
    Row10 = Row(10, fun() -> cowboy_row(Root) end),
    Row11 = Row(11, fun() -> https_row(Root, Rounds) end),
    Row12 = Row(12, fun() -> fin_seen_row() end),
    Row13 = Row(13, fun() -> short_connections_row(Root) end),
    Row14 = Row(14, fun() -> bandit_row(Root) end),
    Table = table(Row1 ++ Row2 ++ Row3 ++ Row4 ++ Row5 ++ Row6 ++ Row7 ++ Row8 ++ Row9 ++ Row10 ++ Row11
                  ++ Row12 ++ Row13 ++ Row14),
    io:format("~n~s", [Table]),
    Only =:= [] andalso write_results(Root, Machine, Table, Plot),
    ok.

write_results(Root, Machine, Table, Plot) ->
    Out = filename:join(Root, "bench"),
    ok = file:write_file(filename:join(Out, "results.md"),
                         ["```\n", [[L, $\n] || L <- Machine], "\n", Table, "```\n"]),
    ok = file:write_file(filename:join(Out, "results.dat"), Plot),
    plot(Out),
    true.

%% The machine.

machine() ->
    {ok, Cpu} = file:read_file("/proc/cpuinfo"),
    Model = case re:run(Cpu, "model name\\s*: (.*)", [{capture, all_but_first, list}]) of
                {match, [M]} -> M;
                nomatch -> "unknown"
            end,
    [io_lib:format("machine: ~b cores (~s), Linux ~s, ~s fds",
                   [erlang:system_info(logical_processors_available), Model,
                    string:trim(os:cmd("uname -r")), string:trim(os:cmd("sh -c 'ulimit -n'"))]),
     io_lib:format("OTP ~s (erts ~s), ~s", [erlang:system_info(otp_release), erlang:system_info(version),
                                            string:trim(os:cmd("rustc --version"))])].

%% Row 1: inq/1 against a bare ioctl and the recv(S, 0, 0) probe it replaces.

native(Exe, Rounds) ->
    Lines = string:split(string:trim(os:cmd(Exe ++ " " ++ integer_to_list(Rounds))), "\n", all),
    [string:split(L, " ", all) || L <- Lines].

%% Each kind of socket against gen_tcp:recv(S, 0, 0) on the same socket. A
%% socket module socket has no gen_tcp:recv: it is held to the default
%% backend's, and its own socket:recv(S, 0, 0) is shown beside.
inq_row(Native, _Rounds) ->
    Floor = [list_to_float(V) || ["ioctl_ns", V] <- Native],
    FloorM = median(Floor),
    Kinds = [{"gen_tcp (port)", inet, "gen_tcp:recv(S, 0, 0), port"},
             {"gen_tcp (socket)", socket, "gen_tcp:recv(S, 0, 0), socket"},
             {"socket module", esock, "socket:recv(S, 0, 0)"}],
    Measured = [{Name, Kind, Probe, inq_and_probe(Kind)} || {Name, Kind, Probe} <- Kinds],
    {_, inet, _, {_, PortProbe}} = lists:keyfind(inet, 2, Measured),
    Row = fun(Name, Ns, Note, Target, Met) -> row(1, "inq cost per call", Name, Ns, "ns", Note, Target, Met) end,
    [Row("bare FIONREAD ioctl (Rust loop)", Floor, "floor", "", none)]
        ++ lists:append(
             [begin
                  {HeldTo, Note} = case Kind of
                                       esock -> {PortProbe, [ratio(median(Inq), median(PortProbe), "port's"), ", ",
                                                             ratio(median(Inq), median(Own), "own")]};
                                       _ -> {Own, ratio(median(Inq), median(Own), "probe")}
                                   end,
                  [Row("fin_close:inq/1, " ++ Name, Inq, Note, "<= gen_tcp:recv", median(Inq) =< median(HeldTo)),
                   Row(Probe, Own, ratio(median(Own), FloorM, "floor"), "", none)]
              end || {Name, Kind, Probe, {Inq, Own}} <- Measured]).

%% inq/1 and the recv(S, 0, 0) probe on one socket, per call: the probe on
%% an empty queue, as it reads what it finds. Rounds alternate, inq then
%% probe, so that a drift of the machine's speed weighs on both alike.
inq_and_probe(Kind) ->
    {S, C} = fin_close_ct:pair([{kind, Kind}], {127, 0, 0, 1}, []),
    Pairs = [begin
                 ok = gen_tcp:send(C, <<"hello">>),
                 wait(fun() -> fin_close:inq(S) =:= {ok, 5} end),
                 Inq = per_call_ns(fun() -> {ok, 5} = fin_close:inq(S) end),
                 {ok, _} = recv(S, 5),
                 {Inq, per_call_ns(fun() -> {error, timeout} = recv(S, 0) end)}
             end || _ <- lists:seq(1, ?INQ_ROUNDS)],
    close_pair(S, C),
    lists:unzip(Pairs).

recv({'$socket', _} = S, N) -> socket:recv(S, N, 0);
recv(S, N) -> gen_tcp:recv(S, N, 0).

per_call_ns(F) ->
    F(),
    {Us, ok} = timer:tc(fun() -> repeat(F, ?INQ_CALLS) end),
    Us * 1000 / ?INQ_CALLS.

repeat(_, 0) -> ok;
repeat(F, N) -> F(), repeat(F, N - 1).

%% Row 2: caller latency of close while the peer holds the connection open.

latency_row(Rounds) ->
    Results = [{Method, latency_round(Method)} || _ <- lists:seq(1, Rounds),
                                                  Method <- [native, cowboy, fin_close]],
    P = fun(Method, Q) -> [percentile(Ts, Q) / 1000 || {M, Ts} <- Results, M =:= Method] end,
    NativeP99 = median(P(native, 99)),
    lists:append(
      [[row(2, "close latency p50", name(M), P(M, 50), "us", "", "", none),
        row(2, "close latency p99", name(M), P(M, 99), "us", ratio(median(P(M, 99)), NativeP99, "gen_tcp"),
            target(M, "<= 1.5x gen_tcp"), M =/= fin_close orelse median(P(M, 99)) =< 1.5 * NativeP99)]
       || M <- [native, cowboy, fin_close]]).

target(fin_close, T) -> T;
target(_, _) -> "".

%% Closes every connection (in this process, one after the other; the
%% Cowboy-style ones each in a process of their own, as they block for the
%% timeout) and returns each close's time in ns.
latency_round(Method) ->
    N = case Method of cowboy -> ?COWBOY_N; _ -> ?LATENCY_N end,
    {Peer, Socks} = peer_connections(N, "now", "on_release"),
    Times = case Method of
                cowboy ->
                    Self = self(),
                    Pids = [spawn_link(fun() -> receive go -> Self ! {self(), timed(Method, S)} end end)
                            || S <- Socks],
                    [ok = gen_tcp:controlling_process(S, Pid) || {S, Pid} <- lists:zip(Socks, Pids)],
                    [Pid ! go || Pid <- Pids],
                    [receive {Pid, T} -> T end || Pid <- Pids];
                _ ->
                    [timed(Method, S) || S <- Socks]
            end,
    peer_command(Peer, "release"),
    {_Clean, _Reset} = peer_ended(Peer),
    wait_lingering_zero(),
    Times.

timed(Method, S) ->
    T0 = erlang:monotonic_time(nanosecond),
    ok = close_with(Method, S),
    T = erlang:monotonic_time(nanosecond) - T0,
    put({longest, Method}, max(T, case get({longest, Method}) of undefined -> 0; L -> L end)),
    T.

close_with(native, S) -> gen_tcp:close(S);
close_with(recv, S) -> _ = gen_tcp:recv(S, 0, ?COWBOY_TIMEOUT), gen_tcp:close(S);
close_with(cowboy, S) -> cowboy_linger(S);
close_with(fin_close, S) -> fin_close:close(S).

%% As Cowboy's linger: half-close, then read and drop until the peer closes
%% or the timeout runs out; then close.
cowboy_linger(S) ->
    _ = gen_tcp:shutdown(S, write),
    Deadline = erlang:monotonic_time(millisecond) + ?COWBOY_TIMEOUT,
    cowboy_loop(S, Deadline).

cowboy_loop(S, Deadline) ->
    case Deadline - erlang:monotonic_time(millisecond) of
        Left when Left > 0 ->
            case gen_tcp:recv(S, 0, Left) of
                {ok, _} -> cowboy_loop(S, Deadline);
                {error, _} -> gen_tcp:close(S)
            end;
        _ ->
            gen_tcp:close(S)
    end.

name(native) -> "gen_tcp:close/1";
name(recv) -> "recv(S, 0, 1 s) + close";
name(cowboy) -> "Cowboy-style linger, 1 s";
name(fin_close) -> "fin_close:close/1".

%% Row 3: closes per second from one process, and how the peers saw the end.

throughput_row(Rounds) ->
    Limit = list_to_integer(string:trim(os:cmd("sh -c 'ulimit -n'"))),
    %% The VM's own descriptors and the listener need some room.
    Ns = [min(N, Limit - 300) || N <- ?THROUGHPUT_NS],
    Methods = [native, recv, cowboy, fin_close],
    Results = [{N, M, throughput_round(M, N)} || _ <- lists:seq(1, Rounds), N <- Ns, M <- Methods],
    Get = fun(N, M) -> [R || {N1, M1, R} <- Results, N1 =:= N, M1 =:= M] end,
    Rows = lists:append(
             [begin
                  Rate = fun(M) -> [R || #{rate := R} <- Get(N, M)] end,
                  NativeRate = median(Rate(native)),
                  [row(3, io_lib:format("reactor CPU per close, ~b conns", [N]), name(fin_close),
                       [Cpu / 1000 || #{reactor_cpu_ns := Cpu} <- Get(N, fin_close)], "us",
                       "from the hand-over to the end", "", none)
                   | [begin
                       Rs = Get(N, M),
                       CleanShare = median([100 * C / N || #{clean := C} <- Rs]),
                       row(3, io_lib:format("closes/s, ~b conns", [N]), name(M), Rate(M), "/s",
                           io_lib:format("~s, ~.1f% clean", [ratio(median(Rate(M)), NativeRate, "gen_tcp"),
                                                             CleanShare]),
                           target(M, ">= 0.9x, 100% clean"),
                           M =/= fin_close orelse
                               (median(Rate(M)) >= 0.9 * NativeRate andalso CleanShare == 100.0))
                   end || M <- Methods]]
              end || N <- Ns]),
    Plot = [["# conns method closes_per_s p99_us\n"]
            | [io_lib:format("~b ~s ~.1f ~.1f~n",
                             [N, M, median([R || #{rate := R} <- Get(N, M)]),
                              median([P / 1000 || #{p99 := P} <- Get(N, M)])])
               || M <- Methods, N <- Ns]],
    {Rows, Plot}.

throughput_round(Method, N) ->
    {Peer, Socks} = peer_connections(N, "now", "on_eof"),
    [wait(fun() -> fin_close:inq(S) =:= {ok, ?UNREAD} end) || S <- Socks],
    Cpu0 = reactor_cpu_ns(),
    T0 = erlang:monotonic_time(nanosecond),
    Times = [timed(Method, S) || S <- Socks],
    Elapsed = erlang:monotonic_time(nanosecond) - T0,
    {Clean, _Reset} = peer_ended(Peer),
    wait_lingering_zero(),
    #{rate => N * 1.0e9 / Elapsed, clean => Clean, p99 => percentile(Times, 99),
      reactor_cpu_ns => (reactor_cpu_ns() - Cpu0) / N}.

%% The reactor thread's CPU time so far (schedstat: nanoseconds), 0 before
%% it runs.
reactor_cpu_ns() ->
    case catch reactor_tid() of
        Tid when is_list(Tid) ->
            {ok, Stat} = file:read_file("/proc/self/task/" ++ Tid ++ "/schedstat"),
            binary_to_integer(hd(string:split(Stat, " ")));
        _ ->
            0
    end.

%% Row 7: long_schedule reports (1 ms) that name a fin_close function.

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

%% Row 4: the slow-reader scenario, as make demo.

delivery_row(Rounds) ->
    lists:append(
      [[begin
            Rs = [slow_reader(Size, M) || _ <- lists:seq(1, Rounds)],
            Got = [B || {B, _} <- Rs],
            Endings = lists:usort([E || {_, E} <- Rs]),
            All = lists:all(fun({B, E}) -> B =:= Size andalso E =:= {error, closed} end, Rs),
            row(4, io_lib:format("delivered of ~b MiB", [Size div 1048576]), name(M),
                [100 * B / Size || B <- Got], "%",
                io_lib:format("ended ~s", [lists:join("/", [atom_to_list(R) || {error, R} <- Endings])]),
                target(M, "100%, closed"), M =/= fin_close orelse All)
        end || M <- [native, recv, cowboy, fin_close]]
       || Size <- [2 * 1048576, 12 * 1048576]]).

%% The client sends a request the server never reads and a pipelined one
%% 100 ms later, and reads 16 KiB at a time, 1 ms apart; the server sends
%% the reply and closes. Returns what the client got and how its read ended.
slow_reader(Size, Method) ->
    {S, C} = fin_close_ct:pair([{kind, inet}], {127, 0, 0, 1}, []),
    Self = self(),
    Reader = spawn_link(fun() ->
                                ok = gen_tcp:send(C, binary:copy(<<"q">>, ?UNREAD)),
                                timer:sleep(100),
                                _ = gen_tcp:send(C, binary:copy(<<"p">>, 5000)),
                                Self ! {self(), fin_close_ct:read_all(C, 0)},
                                gen_tcp:close(C)
                        end),
    wait(fun() -> fin_close:inq(S) =:= {ok, ?UNREAD} end),
    ok = gen_tcp:send(S, binary:copy(<<"r">>, Size)),
    ok = close_with(Method, S),
    receive {Reader, Result} -> wait_lingering_zero(), Result after 120000 -> error(reader_hung) end.

%% Row 5: as many lingering sockets as the descriptor limit allows.

capacity_row(Rounds) ->
    Limit = list_to_integer(string:trim(os:cmd("sh -c 'ulimit -n'"))),
    %% Below the point where lingering sockets give descriptors back (fewer
    %% than 1/16 of the limit free; the reactor then frees half as many
    %% again), so that all of them stay.
    N = min(19000, Limit - 2 * (Limit div 16) - length(element(2, file:list_dir("/proc/self/fd"))) - 300),
    Rs = [capacity_round(N) || _ <- lists:seq(1, Rounds)],
    G = fun(K) -> [maps:get(K, R) || R <- Rs] end,
    [row(5, "lingering at once", "fin_close:close/1", G(lingering), "sockets", "", ">= 9000",
         median(G(lingering)) >= 9000),
     row(5, "extra Erlang processes", "fin_close:close/1", G(processes), "", "", "0", lists:max(G(processes)) =:= 0),
     row(5, "RSS growth per lingering socket", "fin_close:close/1", G(rss), "bytes",
         "whole VM, after a warm-up round", "<= 256", median(G(rss)) =< 256),
     row(5, "reactor tables per lingering socket", "fin_close:close/1", G(tables), "bytes",
         "stats() memory", "<= 256", median(G(tables)) =< 256),
     row(5, "reactor CPU while idle", "fin_close:close/1", G(idle_cpu), "ms/s", "", "~0",
         median(G(idle_cpu)) < 1),
     row(5, "until every peer saw FIN", "fin_close:close/1", G(fin_ms), "ms", "once they read", "", none),
     row(5, "ended clean", "fin_close:close/1", G(clean), "%", "", "100%", lists:min(G(clean)) == 100.0)].

capacity_round(N) ->
    %% Warm-up: the same number of connections closed the same way and
    %% ended, so that the VM's allocators (ports, the reactor's queue and
    %% tables) have already grown once: what stays is what a lingering
    %% socket holds, not the first growth of a heap.
    {WarmPeer, Warm} = peer_connections(N, "now", "on_eof"),
    [ok = fin_close:close(S) || S <- Warm],
    _ = peer_ended(WarmPeer),
    wait_lingering_zero(),
    garbage_collect(),
    Procs0 = erlang:system_info(process_count),
    Rss0 = rss(),
    #{memory := Mem0} = fin_close:stats(),
    {Peer, Socks} = peer_connections(N, "on_go", "on_release"),
    [ok = fin_close:close(S) || S <- Socks],
    wait(fun() -> maps:get(lingering, fin_close:stats()) =:= N end),
    %% Let the reactor finish taking them over (a shutdown and an epoll
    %% registration each, after the hand-over counted them) before its
    %% tables are counted and it is called idle.
    timer:sleep(1000),
    garbage_collect(),
    Procs1 = erlang:system_info(process_count),
    Rss1 = rss(),
    #{memory := Mem1} = fin_close:stats(),
    Tid = reactor_tid(),
    Cpu0 = thread_cpu_ms(Tid),
    timer:sleep(2000),
    IdleCpu = (thread_cpu_ms(Tid) - Cpu0) / 2,
    peer_command(Peer, "go"),
    FinMs = receive {Peer, {data, {eol, "fin_seen " ++ Rest}}} ->
                    [_, "ms=" ++ Ms] = string:split(Rest, " "),
                    list_to_integer(Ms)
            after 120000 -> error(no_fin_seen)
            end,
    peer_command(Peer, "release"),
    {Clean, _} = peer_ended(Peer),
    wait_lingering_zero(),
    #{lingering => N, processes => Procs1 - Procs0, rss => (Rss1 - Rss0) / N,
      tables => (Mem1 - Mem0) / N, idle_cpu => IdleCpu, fin_ms => FinMs, clean => 100 * Clean / N}.

rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s*([0-9]+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb) * 1024.

reactor_tid() ->
    {ok, Tasks} = file:list_dir("/proc/self/task"),
    hd([T || T <- Tasks,
             {ok, <<"fin_close_react", _/binary>>} <- [file:read_file("/proc/self/task/" ++ T ++ "/comm")]]).

thread_cpu_ms(Tid) ->
    {ok, Stat} = file:read_file("/proc/self/task/" ++ Tid ++ "/stat"),
    [_, Rest] = string:split(Stat, ") "),
    Fields = string:split(Rest, " ", all),
    Ticks = binary_to_integer(lists:nth(12, Fields)) + binary_to_integer(lists:nth(13, Fields)),
    Ticks * 1000 / list_to_integer(string:trim(os:cmd("getconf CLK_TCK"))).

%% Row 6: the drain rate, from bench_native.

drain_row(Native) ->
    Rate = fun(Kind, Clock) ->
                   [list_to_integer(B) / list_to_float(case Clock of wall -> W; cpu -> C end) / 1.0e9
                    || [K, B, W, C] <- Native, K =:= Kind, Clock =:= wall orelse C =/= "0.000"]
           end,
    CopyCpu = median(Rate("drain_copy", cpu)),
    [row(6, "drain rate, wall clock", "reactor, recv(MSG_TRUNC)", Rate("drain_trunc", wall), "GB/s",
         ratio(median(Rate("drain_trunc", wall)), median(Rate("drain_copy", wall)), "copy"), "", none),
     row(6, "drain rate, wall clock", "thread, copying recv 64 KiB", Rate("drain_copy", wall), "GB/s", "", "", none),
     row(6, "drain rate per CPU second", "reactor, recv(MSG_TRUNC)", Rate("drain_trunc", cpu), "GB/s",
         ratio(median(Rate("drain_trunc", cpu)), CopyCpu, "copy"), "", none),
     row(6, "drain rate per CPU second", "thread, copying recv 64 KiB", Rate("drain_copy", cpu), "GB/s",
         "", "", none)].

%% Row 8: real HTTP clients, curl and Python requests (the client script of
%% test/fin_close_clients_SUITE), post 16 MiB that the server never reads;
%% it reads the request's head, answers 413 with 4 MiB and closes. Served
%% whole: the client got the status and every byte of the body. requests
%% reads nothing until its upload is done; its timeout (5 s) ends a
%% deadlocked run.

clients_row(Root) ->
    Upload = filename:join(Root, "_build/bench_upload_16_mib"),
    ok = file:write_file(Upload, binary:copy(<<"u">>, 16 * 1048576)),
    Post = filename:join(Root, "test/fin_close_clients_SUITE_data/post.py"),
    Rows = [begin
                Whole = length([R || _ <- lists:seq(1, ?CLIENT_RUNS), R <- [client_run(Client, M, Upload, Post)],
                                     R =:= true]),
                Note = io_lib:format("served whole: ~b of ~b", [Whole, ?CLIENT_RUNS]),
                io:format("~s, ~s: ~s~n", [Client, name(M), Note]),
                row(8, "real clients served whole", Client ++ ", " ++ name(M), [Whole], "runs", Note,
                    target(M, io_lib:format("~b of ~b", [?CLIENT_RUNS, ?CLIENT_RUNS])),
                    M =/= fin_close orelse Whole =:= ?CLIENT_RUNS)
            end || Client <- ["curl", "requests"], M <- [native, fin_close]],
    ok = file:delete(Upload),
    Rows.

%% Row 9: peers in two other OS processes connect, 20,400 in all, more than
%% the descriptor limit, and sit idle; each is answered 100 bytes and closed
%% with fin_close:close/1 defaults. A client in a third process connects
%% every 100 ms meanwhile and reads its answer to the end.

-define(FLOOD, 20400).
-define(LEGIT, 50).

flood_row() ->
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {backlog, 4096}]),
    {ok, Port} = inet:port(L),
    Self = self(),
    Server = spawn_link(fun() -> flood_accept(L, Self, #{closes => 0, refused => 0, accept_errors => 0}) end),
    Sampler = spawn_link(fun() -> sample_fds(Self, 0) end),
    #{reclaimed := Reclaimed0} = fin_close:stats(),
    Legit = open_port({spawn_executable, "/usr/bin/python3"},
                      [{args, ["-c", legit_client(), integer_to_list(Port), integer_to_list(?LEGIT)]},
                       {line, 1024}, exit_status, use_stdio]),
    Peers = [open_port({spawn_executable, get(peer)},
                       [{args, [integer_to_list(Port), integer_to_list(?FLOOD div 2), "0", "on_go", "on_release"]},
                        {line, 1024}, exit_status, use_stdio])
             || _ <- [1, 2]],
    Served = receive {Legit, {data, {eol, "served " ++ N}}} -> list_to_integer(N)
             after 120000 -> error(legit_client_hung)
             end,
    Server ! {report, Self},
    #{closes := Closes, refused := Refused, accept_errors := AcceptErrors} =
        receive {flood_report, R} -> R after 10000 -> error(no_flood_report) end,
    Sampler ! {report, Self},
    Peak = receive {peak_fds, P} -> P after 10000 -> error(no_peak) end,
    [peer_command(Peer, "go\nrelease") || Peer <- Peers],
    _ = [peer_ended(Peer) || Peer <- Peers],
    unlink(Server), exit(Server, kill), ok = gen_tcp:close(L),
    wait_lingering_zero(),
    #{reclaimed := Reclaimed1} = fin_close:stats(),
    Limit = list_to_integer(string:trim(os:cmd("sh -c 'ulimit -n'"))),
    Note = io_lib:format("~b closes, ~b accept errors", [Closes, AcceptErrors]),
    [row(9, "idle flood: legitimate served whole", "fin_close:close/1, defaults", [Served], "clients",
         Note, io_lib:format("~b of ~b", [?LEGIT, ?LEGIT]),
         Served =:= ?LEGIT),
     row(9, "idle flood: closes refused", "fin_close:close/1, defaults", [Refused], "", "", "0",
         Refused =:= 0),
     row(9, "idle flood: peak descriptors", "fin_close:close/1, defaults", [Peak], "fds",
         io_lib:format("limit ~b", [Limit]), io_lib:format("< ~b", [Limit]), Peak < Limit),
     row(9, "idle flood: reclaimed", "fin_close:close/1, defaults", [Reclaimed1 - Reclaimed0], "sockets",
         "", "", none)].

flood_accept(L, Report, State) ->
    receive {report, To} -> To ! {flood_report, State} after 0 -> ok end,
    case gen_tcp:accept(L, 100) of
        {ok, S} ->
            _ = gen_tcp:send(S, binary:copy(<<"r">>, 100)),
            #{closes := C, refused := F} = State,
            Refused = case fin_close:close(S) of ok -> F; {error, _} -> gen_tcp:close(S), F + 1 end,
            flood_accept(L, Report, State#{closes := C + 1, refused := Refused});
        {error, timeout} ->
            flood_accept(L, Report, State);
        {error, _} ->
            timer:sleep(1),
            flood_accept(L, Report, maps:update_with(accept_errors, fun(N) -> N + 1 end, State))
    end.

sample_fds(Report, Peak) ->
    receive
        {report, To} -> To ! {peak_fds, Peak}
    after 100 ->
        {ok, Fds} = file:list_dir("/proc/self/fd"),
        sample_fds(Report, max(Peak, length(Fds)))
    end.

%% Python: every 100 ms, connect and read to the end; prints how many got
%% all 100 bytes and an orderly end.
legit_client() ->
    "import socket, sys, time\n"
    "port, n = int(sys.argv[1]), int(sys.argv[2])\n"
    "whole = 0\n"
    "for _ in range(n):\n"
    "    time.sleep(0.1)\n"
    "    try:\n"
    "        s = socket.create_connection(('127.0.0.1', port), timeout=10)\n"
    "        got = b''\n"
    "        while True:\n"
    "            b = s.recv(65536)\n"
    "            if not b: break\n"
    "            got += b\n"
    "        s.close()\n"
    "        whole += len(got) == 100\n"
    "    except OSError:\n"
    "        pass\n"
    "print('served %d' % whole, flush=True)\n".

%% Row 10: a real Cowboy (Debian's, see scripts/cowboy.sh) with Ranch's own
%% transport against fin_close_ranch: an early 413 (2 MiB) to clients that
%% upload before they read, how long the connection process lives after
%% the reply, processes held by 200 connections still uploading, and
%% requests/s on 2,000 short connections.

-define(COWBOY_RUNS, 5).

cowboy_row(Root) ->
    start_cowboy(Root),
    Post = filename:join(Root, "test/fin_close_clients_SUITE_data/post.py"),
    Slow = filename:join(Root, "test/fin_close_clients_SUITE_data/slow_upload.py"),
    Rows = lists:append([cowboy_rows(T, Post, Slow) || T <- [ranch_tcp, fin_close_ranch]]),
    _ = application:stop(cowboy),
    Rows.

cowboy_rows(Transport, Post, Slow) ->
    Early = #{mode => early, status => 413, size => 2097152, report => {self(), make_ref()}},
    {Port, Name} = cowboy_listener(Transport, Early),
    Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ "/",
    Requests = length([ok || _ <- lists:seq(1, ?COWBOY_RUNS),
                             os:cmd("timeout -k 5 60 /usr/bin/python3 " ++ Post ++ " " ++ Url
                                    ++ " 67108864 10") =:= "413 2097152\n"]),
    SlowWhole = length([ok || _ <- lists:seq(1, 2),
                              string:find(os:cmd("timeout -k 5 60 /usr/bin/python3 " ++ Slow ++ " "
                                                 ++ integer_to_list(Port) ++ " 67108864 20000000"),
                                          "body=2097152 end=eof upload=ok") =/= nomatch]),
    Lifetimes = [connection_lifetime(Name, Port) || _ <- lists:seq(1, ?COWBOY_RUNS)],
    Held = held_while_uploading(Name, Port, 200),
    ok = ranch:stop_listener(Name),
    {SmallPort, SmallName} = cowboy_listener(Transport, #{mode => small}),
    Rate = short_connections(SmallPort, 2000),
    ok = ranch:stop_listener(SmallName),
    wait_lingering_zero(),
    T = atom_to_list(Transport),
    Ours = Transport =:= fin_close_ranch,
    If = fun(Target) -> case Ours of true -> Target; false -> "" end end,
    [row(10, "Cowboy: requests 64 MiB served whole", T, [Requests], "runs",
         io_lib:format("of ~b", [?COWBOY_RUNS]), If(io_lib:format("~b of ~b", [?COWBOY_RUNS, ?COWBOY_RUNS])),
         not Ours orelse Requests =:= ?COWBOY_RUNS),
     row(10, "Cowboy: 20 MB/s uploader served whole", T, [SlowWhole], "runs", "of 2", If("2 of 2"),
         not Ours orelse SlowWhole =:= 2),
     row(10, "Cowboy: connection process after reply", T, Lifetimes, "ms", "until it is gone",
         If("< 100 ms"), not Ours orelse median(Lifetimes) < 100),
     row(10, "Cowboy: processes, 200 still uploading", T, [Held], "", "connection processes", If("0"),
         not Ours orelse Held =:= 0),
     row(10, "Cowboy: 2000 short connections", T, [Rate], "req/s", "", "", none)].

cowboy_listener(Transport, State) ->
    Name = make_ref(),
    Dispatch = cowboy_router:compile([{'_', [{'_', fin_close_cowboy_handler, State}]}]),
    {ok, _} = ranch:start_listener(Name, Transport,
                                   #{socket_opts => [{ip, {127, 0, 0, 1}}, {port, 0}, {backlog, 1024}],
                                     max_connections => infinity},
                                   cowboy_clear, #{env => #{dispatch => Dispatch}}),
    {ranch:get_port(Name), Name}.

%% Debian's Cowboy (scripts/cowboy.sh) and the suites' handler, loaded.
start_cowboy(Root) ->
    Plugins = string:trim(os:cmd("sh " ++ filename:join(Root, "scripts/cowboy.sh"))),
    [true = code:add_patha(E) || E <- filelib:wildcard(filename:join(Plugins, "*/ebin"))],
    Handler = filename:join(Root, "test/fin_close_cowboy_handler.erl"),
    {ok, Mod, Beam} = compile:file(Handler, [binary]),
    {module, Mod} = code:load_binary(Mod, Handler, Beam),
    {ok, _} = application:ensure_all_started(cowboy),
    ok.

%% A client that sends a request promising 64 MiB and 1 MiB of it, then
%% sends nothing more and does not close: ms from the early reply until
%% Cowboy's connection process is gone. The client reads the reply to its
%% end meanwhile (and stays open at Cowboy's FIN), so that Cowboy's send of
%% it never waits on the client.
connection_lifetime(Name, Port) ->
    C = early_client(Port),
    ok = inet:setopts(C, [{exit_on_close, false}]),
    wait(fun() -> ranch:procs(Name, connections) =/= [] end),
    {ok, _} = gen_tcp:recv(C, 0, 10000),
    T0 = erlang:monotonic_time(microsecond),
    spawn_link(fun() -> drain(C) end),
    wait(fun() -> ranch:procs(Name, connections) =:= [] end),
    Ms = (erlang:monotonic_time(microsecond) - T0) / 1000,
    gen_tcp:close(C),
    Ms.

drain(C) ->
    case gen_tcp:recv(C, 0) of
        {ok, _} -> drain(C);
        {error, _} -> ok
    end.

early_client(Port) ->
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(C, ["POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 67108864\r\n\r\n",
                          binary:copy(<<"u">>, 1048576)]),
    C.

%% Connection processes alive 300 ms after N clients got their early reply
%% while still holding their upload unfinished.
held_while_uploading(Name, Port, N) ->
    Cs = [early_client(Port) || _ <- lists:seq(1, N)],
    [{ok, _} = gen_tcp:recv(C, 0, 10000) || C <- Cs],
    timer:sleep(300),
    Held = length(ranch:procs(Name, connections)),
    [gen_tcp:close(C) || C <- Cs],
    Held.

%% N requests, one connection each, by 16 clients at once: requests/s
%% (row 13 has 1, 4 and 16 clients, rounds interleaved).
short_connections(Port, N) ->
    short_connections(gen_tcp, [], Port, N, 16).

%% N requests, one connection each (`connection: close', read to the
%% server's end of stream, as HTTP/1.0 clients and health checkers do), by
%% Clients at once: requests/s.
short_connections(Net, Opts, Port, N, Clients) ->
    Self = self(),
    T0 = erlang:monotonic_time(microsecond),
    Workers = [spawn_link(fun() -> Self ! {done, self(), short_requests(Net, Opts, Port, N div Clients)} end)
               || _ <- lists:seq(1, Clients)],
    [receive {done, W, ok} -> ok after 120000 -> error(short_requests_hung) end || W <- Workers],
    N div Clients * Clients / ((erlang:monotonic_time(microsecond) - T0) / 1000000).

short_requests(_Net, _Opts, _Port, 0) ->
    ok;
short_requests(Net, Opts, Port, K) ->
    {ok, C} = Net:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {nodelay, true} | Opts]),
    ok = Net:send(C, <<"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n">>),
    {ok, <<"HTTP/1.1 200", _/binary>>} = read_to_end(Net, C, []),
    Net:close(C),
    short_requests(Net, Opts, Port, K - 1).

read_to_end(Net, C, Acc) ->
    case Net:recv(C, 0, 10000) of
        {ok, Data} -> read_to_end(Net, C, [Acc, Data]);
        {error, closed} -> {ok, iolist_to_binary(Acc)};
        {error, _} = Error -> Error
    end.

client_run(Client, Method, Upload, Post) ->
    Size = 4 * 1048576,
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {packet, http_bin}]),
    {ok, Port} = inet:port(L),
    Answer = [<<"HTTP/1.1 413 Payload Too Large\r\ncontent-length: ">>, integer_to_binary(Size),
              <<"\r\nconnection: close\r\n\r\n">>, binary:copy(<<"a">>, Size)],
    _ = spawn(fun() ->
                      {ok, S} = gen_tcp:accept(L),
                      ok = http_head(gen_tcp, S),
                      _ = gen_tcp:send(S, Answer),
                      close_with(Method, S)
              end),
    Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ "/",
    Cmd = case Client of
              "curl" -> "curl -sS -o /dev/null -w 'result %{http_code} %{size_download}' --data-binary @"
                            ++ Upload ++ " -H 'Expect:' " ++ Url;
              "requests" -> "/usr/bin/python3 " ++ Post ++ " " ++ Url ++ " 16777216 5"
          end,
    Out = os:cmd("timeout -k 5 60 " ++ Cmd ++ " 2>/dev/null; echo \" exit=$?\""),
    ok = gen_tcp:close(L),
    wait_lingering_zero(),
    Expected = case Client of "curl" -> "result 413 4194304 exit=0\n"; "requests" -> "413 4194304\n exit=0\n" end,
    Out =:= Expected.

%% Row 11: HTTPS (TLS 1.3, OTP's ssl in this VM): curl and Python requests
%% as in row 8, the server an ssl socket closed with ssl:close/1 or with
%% fin_close:close/1; and the caller's latency of either close, on
%% connections whose peer (an ssl client in this VM) sent 1000 bytes the
%% server never reads and holds the connection open.

https_row(Root, Rounds) ->
    Priv = filename:join(Root, "_build/bench_tls"),
    ok = filelib:ensure_dir(filename:join(Priv, "x")),
    %% The certificates the suites make.
    #{server := Server, client := Client, cafile := CaFile} =
        proplists:get_value(tls, fin_close_ct:tls_config('tlsv1.3', [{priv_dir, Priv}])),
    Upload = filename:join(Priv, "upload_16_mib"),
    ok = file:write_file(Upload, binary:copy(<<"u">>, 16 * 1048576)),
    Post = filename:join(Root, "test/fin_close_clients_SUITE_data/post.py"),
    Whole = [begin
                 N = length([R || _ <- lists:seq(1, ?CLIENT_RUNS),
                                  R <- [https_client_run(Cl, M, Server, CaFile, Upload, Post)], R =:= true]),
                 Note = io_lib:format("served whole: ~b of ~b", [N, ?CLIENT_RUNS]),
                 io:format("https ~s, ~s: ~s~n", [Cl, tls_name(M), Note]),
                 row(11, "HTTPS clients served whole", Cl ++ ", " ++ tls_name(M), [N], "runs", Note,
                     target(M, io_lib:format("~b of ~b", [?CLIENT_RUNS, ?CLIENT_RUNS])),
                     M =/= fin_close orelse N =:= ?CLIENT_RUNS)
             end || Cl <- ["curl", "requests"], M <- [ssl, fin_close]],
    Results = [{M, tls_latency_round(M, Server, Client)} || _ <- lists:seq(1, Rounds), M <- [ssl, fin_close]],
    P = fun(M, Q) -> [percentile(Ts, Q) / 1000 || {M1, Ts} <- Results, M1 =:= M] end,
    SslP99 = median(P(ssl, 99)),
    Latency = lists:append(
                [[row(11, "HTTPS close latency p50", tls_name(M), P(M, 50), "us", "", "", none),
                  row(11, "HTTPS close latency p99", tls_name(M), P(M, 99), "us",
                      ratio(median(P(M, 99)), SslP99, "ssl:close"), target(M, "<= 1.5x ssl:close"),
                      M =/= fin_close orelse median(P(M, 99)) =< 1.5 * SslP99)]
                 || M <- [ssl, fin_close]]),
    ok = file:del_dir_r(Priv),
    Whole ++ Latency.

tls_name(ssl) -> "ssl:close/1";
tls_name(fin_close) -> "fin_close:close/1".

tls_close(ssl, S) -> ssl:close(S);
tls_close(fin_close, S) -> fin_close:close(S).

https_client_run(Client, Method, Server, CaFile, Upload, Post) ->
    Size = 2 * 1048576,
    {ok, L} = ssl:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {packet, http_bin} | Server]),
    {ok, {_, Port}} = ssl:sockname(L),
    Answer = [<<"HTTP/1.1 413 Payload Too Large\r\ncontent-length: ">>, integer_to_binary(Size),
              <<"\r\nconnection: close\r\n\r\n">>, binary:copy(<<"a">>, Size)],
    _ = spawn(fun() ->
                      {ok, T} = ssl:transport_accept(L),
                      {ok, S} = ssl:handshake(T, 10000),
                      ok = http_head(ssl, S),
                      _ = ssl:send(S, Answer),
                      tls_close(Method, S)
              end),
    Url = "https://127.0.0.1:" ++ integer_to_list(Port) ++ "/",
    Cmd = case Client of
              "curl" -> "curl -sS --cacert " ++ CaFile ++ " -o /dev/null -w 'result %{http_code} %{size_download}'"
                            " --data-binary @" ++ Upload ++ " -H 'Expect:' " ++ Url;
              "requests" -> "/usr/bin/python3 " ++ Post ++ " " ++ Url ++ " 16777216 5"
          end,
    Out = os:cmd("REQUESTS_CA_BUNDLE=" ++ CaFile ++ " timeout -k 5 60 " ++ Cmd ++ " 2>/dev/null; echo \" exit=$?\""),
    ok = ssl:close(L),
    wait_lingering_zero(),
    Expected = case Client of "curl" -> "result 413 2097152 exit=0\n"; "requests" -> "413 2097152\n exit=0\n" end,
    Out =:= Expected.

%% ns per close of N server sockets, one after the other in this process.
tls_latency_round(Method, Server, Client) ->
    {ok, L} = ssl:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {backlog, 1024} | Server]),
    {ok, {_, Port}} = ssl:sockname(L),
    Self = self(),
    _ = spawn_link(fun() ->
                           [begin
                                {ok, T} = ssl:transport_accept(L),
                                {ok, S} = ssl:handshake(T, 10000),
                                ok = ssl:controlling_process(S, Self),
                                Self ! {tls_server, S}
                            end || _ <- lists:seq(1, ?TLS_LATENCY_N)]
                   end),
    Pairs = [begin
                 {ok, C} = ssl:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {log_level, none} | Client]),
                 ok = ssl:send(C, binary:copy(<<"r">>, ?UNREAD)),
                 receive {tls_server, S} -> {S, C} after 10000 -> error(no_tls_server) end
             end || _ <- lists:seq(1, ?TLS_LATENCY_N)],
    ok = ssl:close(L),
    Times = [begin
                 T0 = erlang:monotonic_time(nanosecond),
                 ok = tls_close(Method, S),
                 erlang:monotonic_time(nanosecond) - T0
             end || {S, _} <- Pairs],
    [_ = ssl:close(C) || {_, C} <- Pairs],
    wait_lingering_zero(),
    Times.

http_head(Net, S) ->
    case Net:recv(S, 0, 10000) of
        {ok, http_eoh} -> ok;
        {ok, {http_request, _, _, _}} -> http_head(Net, S);
        {ok, {http_header, _, _, _, _}} -> http_head(Net, S);
        Other -> Other
    end.

%% Row 12: how soon a client sees our FIN after the close call, with the
%% reactor busy as on a server: another process closes other connections
%% (whose peers sent a request that is never read) about once a
%% millisecond, by the same method. The client (fin_seen_peer, an OS
%% process of its own) blocks in read and notes when the end of stream
%% came, on the clock the VM's own monotonic time reads; rounds of each
%% method interleaved.

-define(FIN_N, 300).
-define(FIN_ROUNDS, 7).

fin_seen_row() ->
    Results = [{M, fin_seen_round(M)} || _ <- lists:seq(1, ?FIN_ROUNDS), M <- [native, fin_close]],
    P = fun(M, Q) -> [percentile(Ts, Q) || {M1, {Ts, _}} <- Results, M1 =:= M] end,
    Busy = lists:min([B || {_, {_, B}} <- Results]),
    lists:append(
      [[row(12, io_lib:format("close -> FIN seen by the peer, p~b", [Q]), name(M), P(M, Q), "us",
            [ratio(median(P(M, Q)), median(P(native, Q)), "gen_tcp"),
             io_lib:format(", ~b closes/s beside", [Busy])],
            target(M, "<= 1.5x gen_tcp"), M =/= fin_close orelse median(P(M, Q)) =< 1.5 * median(P(native, Q)))
        || M <- [native, fin_close]]
       || Q <- [50, 99]]).

%% Microseconds from each close call until the client saw the end of
%% stream, and how many closes a second went on beside (the fewest).
fin_seen_round(Method) ->
    {Peer, Busy} = peer_connections(?FIN_N * 5, "now", "on_eof"),
    Self = self(),
    Closer = spawn_link(fun() -> close_every_ms(Method, Busy, Self) end),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    Client = open_port({spawn_executable, get(fin_seen_peer)},
                       [{args, [integer_to_list(Port), integer_to_list(?FIN_N)]},
                        {line, 256}, exit_status, use_stdio]),
    T0 = erlang:monotonic_time(microsecond),
    Times = [fin_seen_once(Method, L, Client) || _ <- lists:seq(1, ?FIN_N)],
    Seconds = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    Closer ! {stop, Self},
    Closed = receive {closed, N} -> N after 10000 -> error(closer_hung) end,
    receive {Client, {exit_status, 0}} -> ok after 10000 -> error(fin_seen_peer_hung) end,
    ok = gen_tcp:close(L),
    _ = peer_ended(Peer),
    wait_lingering_zero(),
    {Times, round(Closed / Seconds)}.

%% Closes Socks at one a millisecond from now (more at once when a wait
%% took longer), until told to stop.
close_every_ms(Method, Socks, Parent) ->
    close_every_ms(Method, Socks, Parent, erlang:monotonic_time(millisecond), 0).

close_every_ms(Method, Socks, Parent, T0, N) ->
    receive
        {stop, Parent} ->
            [ok = close_with(Method, S) || S <- Socks],
            Parent ! {closed, N}
    after 1 ->
        Due = erlang:monotonic_time(millisecond) - T0 - N,
        {Now, Rest} = lists:split(max(0, min(Due, length(Socks))), Socks),
        [ok = close_with(Method, S) || S <- Now],
        close_every_ms(Method, Rest, Parent, T0, N + length(Now))
    end.

fin_seen_once(Method, L, Client) ->
    {ok, S} = gen_tcp:accept(L, 10000),
    %% The client is blocked in read by now.
    timer:sleep(1),
    {time, T0} = lists:keyfind(time, 1, erlang:system_info(os_monotonic_time_source)),
    ok = close_with(Method, S),
    receive
        {Client, {data, {eol, "eof " ++ T1}}} -> (list_to_integer(T1) - T0) / 1000;
        {Client, {data, {eol, Other}}} -> error({no_fin, Other})
    after 10000 -> error(no_fin_seen)
    end.

%% Row 13: a real Cowboy (as row 10) answering `200 hello' to short
%% connections, with 1, 4 and 16 clients at once (TLS: 1 and 4), Ranch's
%% own transport against fin_close's, rounds interleaved; the clients are
%% processes of this VM that read each answer to the server's end.

-define(SHORT_ROUNDS, 5).

short_connections_row(Root) ->
    start_cowboy(Root),
    Priv = filename:join(Root, "_build/bench_short_tls"),
    ok = filelib:ensure_dir(filename:join(Priv, "x")),
    #{server := Server, client := Client} =
        proplists:get_value(tls, fin_close_ct:tls_config('tlsv1.3', [{priv_dir, Priv}])),
    Setups = [{tcp, ranch_tcp, fin_close_ranch, [1, 4, 16], 1000},
              {tls, ranch_ssl, fin_close_ranch_ssl, [1, 4], 300}],
    Rows = lists:append(
             [begin
                  Listeners = [{T, short_listener(Kind, T, Server)} || T <- [Plain, Ours]],
                  {Net, Opts} = case Kind of tcp -> {gen_tcp, []}; tls -> {ssl, Client} end,
                  Rates = [{C, T, short_connections(Net, Opts, Port, N, C)}
                           || _ <- lists:seq(1, ?SHORT_ROUNDS), C <- Counts, {T, {Port, _}} <- Listeners],
                  [ok = ranch:stop_listener(Name) || {_, {_, Name}} <- Listeners],
                  wait_lingering_zero(),
                  lists:append(
                    [begin
                         Get = fun(T) -> [R || {C1, T1, R} <- Rates, C1 =:= C, T1 =:= T] end,
                         PlainRate = median(Get(Plain)),
                         Measure = io_lib:format("Cowboy ~s: short connections, ~b client~s",
                                                 [Kind, C, case C of 1 -> ""; _ -> "s" end]),
                         [row(13, Measure, atom_to_list(Plain), Get(Plain), "req/s", "", "", none),
                          row(13, Measure, atom_to_list(Ours), Get(Ours), "req/s",
                              ratio(median(Get(Ours)), PlainRate, atom_to_list(Plain)),
                              ">= 0.95x", median(Get(Ours)) >= 0.95 * PlainRate)]
                     end || C <- Counts])
              end || {Kind, Plain, Ours, Counts, N} <- Setups]),
    _ = application:stop(cowboy),
    ok = file:del_dir_r(Priv),
    Rows.

short_listener(Kind, Transport, ServerOpts) ->
    Name = make_ref(),
    Dispatch = cowboy_router:compile([{'_', [{'_', fin_close_cowboy_handler, #{mode => small}}]}]),
    {Tls, Protocol} = case Kind of tcp -> {[], cowboy_clear}; tls -> {ServerOpts, cowboy_tls} end,
    {ok, _} = ranch:start_listener(Name, Transport,
                                   #{socket_opts => [{ip, {127, 0, 0, 1}}, {port, 0}, {backlog, 1024} | Tls],
                                     max_connections => infinity},
                                   Protocol, #{env => #{dispatch => Dispatch}}),
    {ranch:get_port(Name), Name}.

%% Row 14: Bandit (the web server of new Phoenix apps; test/elixir_app,
%% built offline by scripts/elixir_app.sh) with ThousandIsland's own TCP
%% transport against fin_close_thousand_island: an early 413 of 2 MiB to
%% clients that upload before they read (curl without Expect, Python
%% requests, a client uploading 64 MiB at 20 MB/s), runs served whole; and
%% requests/s on short connections (`connection: close', read to the
%% end) with 1 and 4 clients, rounds interleaved.

-define(BANDIT_RUNS, 5).

bandit_row(Root) ->
    Out = os:cmd("sh " ++ filename:join(Root, "scripts/elixir_app.sh") ++ " 2>/dev/null"),
    Build = lists:last(string:split(string:trim(Out), "\n", all)),
    Elixir = filename:join([filename:dirname(filename:dirname(resolve(os:find_executable("elixir")))),
                            "lib", "*", "ebin"]),
    ok = code:add_pathsa([E || E <- filelib:wildcard(filename:join([Build, "lib", "*", "ebin"]))
                                   ++ filelib:wildcard(Elixir),
                               filename:basename(filename:dirname(E)) =/= "fin_close"]),
    {ok, _} = application:ensure_all_started(bandit),
    ok = logger:set_application_level(fin_close, notice),
    Upload = filename:join(Root, "_build/bench_upload_16_mib"),
    ok = file:write_file(Upload, binary:copy(<<"u">>, 16 * 1048576)),
    Post = filename:join(Root, "test/fin_close_clients_SUITE_data/post.py"),
    Slow = filename:join(Root, "test/fin_close_clients_SUITE_data/slow_upload.py"),
    Transports = [{plain, 'Elixir.ThousandIsland.Transports.TCP'}, {ours, fin_close_thousand_island}],
    Whole = [begin
                 {Port, Stop} = bandit(Transport),
                 Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ "/early",
                 {Cmd, Expected} = case Client of
                                       curl -> {"curl -sS -o /dev/null -w '%{http_code} %{size_download}' -H 'Expect:'"
                                                " --data-binary @" ++ Upload ++ " " ++ Url, "413 2097152"};
                                       requests -> {"/usr/bin/python3 " ++ Post ++ " " ++ Url ++ " 16777216 5",
                                                    "413 2097152\n"};
                                       slow -> {"/usr/bin/python3 " ++ Slow ++ " " ++ integer_to_list(Port)
                                                ++ " 67108864 20000000", "body=2097152 end=eof upload=ok"}
                                   end,
                 Runs = case Client of slow -> 2; _ -> ?BANDIT_RUNS end,
                 N = length([ok || _ <- lists:seq(1, Runs),
                                   string:find(os:cmd("timeout -k 5 60 " ++ Cmd ++ " 2>&1"), Expected) =/= nomatch]),
                 Stop(),
                 wait_lingering_zero(),
                 row(14, "Bandit: " ++ atom_to_list(Client) ++ " served whole", bandit_name(Side), [N], "runs",
                     io_lib:format("of ~b", [Runs]),
                     case Side of ours -> io_lib:format("~b of ~b", [Runs, Runs]); plain -> "" end,
                     Side =:= plain orelse N =:= Runs)
             end || Client <- [curl, requests, slow], {Side, Transport} <- Transports],
    ok = file:delete(Upload),
    Servers = [{Side, bandit(Transport)} || {Side, Transport} <- Transports],
    Rates = [{C, Side, short_bandit(Port, C)} || _ <- lists:seq(1, ?SHORT_ROUNDS), C <- [1, 4],
                                                 {Side, {Port, _}} <- Servers],
    [Stop() || {_, {_, Stop}} <- Servers],
    wait_lingering_zero(),
    Short = lists:append(
              [begin
                   Get = fun(Side) -> [R || {C1, S1, R} <- Rates, C1 =:= C, S1 =:= Side] end,
                   Measure = io_lib:format("Bandit: short connections, ~b client~s",
                                           [C, case C of 1 -> ""; _ -> "s" end]),
                   [row(14, Measure, bandit_name(plain), Get(plain), "req/s", "", "", none),
                    row(14, Measure, bandit_name(ours), Get(ours), "req/s",
                        ratio(median(Get(ours)), median(Get(plain)), "plain"), ">= 0.95x",
                        median(Get(ours)) >= 0.95 * median(Get(plain)))]
               end || C <- [1, 4]]),
    Whole ++ Short.

bandit_name(plain) -> "Bandit, ThousandIsland's TCP";
bandit_name(ours) -> "Bandit, fin_close_thousand_island".

%% A Bandit listener serving test/elixir_app's Plug, in a process of its own
%% (Bandit links to its starter); its port and a fun that stops it.
bandit(Transport) ->
    Self = self(),
    Keeper = spawn(fun() ->
                           {ok, Pid} = 'Elixir.Bandit':start_link(
                                         [{plug, 'Elixir.FinCloseElixirApp'}, {port, 0},
                                          {ip, {127, 0, 0, 1}}, {startup_log, false},
                                          {thousand_island_options, [{transport_module, Transport},
                                                                     {num_acceptors, 10}]}]),
                           {ok, {_, Port}} = 'Elixir.ThousandIsland':listener_info(Pid),
                           Self ! {self(), Port},
                           receive stop -> ok end
                   end),
    receive {Keeper, Port} -> {Port, fun() -> Keeper ! stop, ok end} after 10000 -> error(no_bandit) end.

%% Short connections to Bandit's /hello: requests/s by Clients at once.
short_bandit(Port, Clients) ->
    Self = self(),
    N = 1000,
    T0 = erlang:monotonic_time(microsecond),
    Workers = [spawn_link(fun() -> Self ! {done, self(), bandit_requests(Port, N div Clients)} end)
               || _ <- lists:seq(1, Clients)],
    [receive {done, W, ok} -> ok after 120000 -> error(bandit_requests_hung) end || W <- Workers],
    N div Clients * Clients / ((erlang:monotonic_time(microsecond) - T0) / 1000000).

bandit_requests(_Port, 0) ->
    ok;
bandit_requests(Port, K) ->
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {nodelay, true}]),
    ok = gen_tcp:send(C, <<"GET /hello HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n">>),
    {ok, <<"HTTP/1.1 200", _/binary>>} = read_to_end(gen_tcp, C, []),
    gen_tcp:close(C),
    bandit_requests(Port, K - 1).

resolve(Path) ->
    case file:read_link_all(Path) of
        {ok, Target} -> resolve(filename:absname(Target, filename:dirname(Path)));
        {error, _} -> filename:absname(Path)
    end.

%% Peers in their own OS process.

%% Starts a peer with N connections to a fresh listener and accepts them
%% all; returns the peer's port and the accepted sockets.
peer_connections(N, Read, Close) ->
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {backlog, 4096}]),
    {ok, Port} = inet:port(L),
    Peer = open_port({spawn_executable, get(peer)},
                     [{args, [integer_to_list(Port), integer_to_list(N), integer_to_list(?UNREAD), Read, Close]},
                      {line, 1024}, exit_status, use_stdio]),
    Socks = [begin {ok, S} = gen_tcp:accept(L, 30000), S end || _ <- lists:seq(1, N)],
    ok = gen_tcp:close(L),
    receive {Peer, {data, {eol, "connected " ++ _}}} -> ok
    after 60000 -> error(peer_not_connected)
    end,
    {Peer, Socks}.

peer_command(Peer, Line) ->
    true = port_command(Peer, [Line, $\n]).

%% Waits for the peer to report that every connection ended.
peer_ended(Peer) ->
    receive
        {Peer, {data, {eol, "ended " ++ Counts}}} ->
            {match, [C, R]} = re:run(Counts, "clean=([0-9]+) reset=([0-9]+)", [{capture, all_but_first, list}]),
            receive {Peer, {exit_status, _}} -> ok after 5000 -> ok end,
            {list_to_integer(C), list_to_integer(R)};
        {Peer, {exit_status, Status}} ->
            error({peer_exited, Status})
    after 120000 ->
        error(peer_did_not_end)
    end.

%% Helpers.

close_pair(S, C) ->
    ok = fin_close:close(S),
    gen_tcp:close(C),
    wait_lingering_zero().

wait_lingering_zero() ->
    wait(fun() -> maps:get(lingering, fin_close:stats()) =:= 0 end).

wait(F) -> fin_close_ct:wait(F, 60000).

percentile(Xs, P) ->
    Sorted = lists:sort(Xs),
    lists:nth(max(1, min(length(Sorted), round(P / 100 * length(Sorted)))), Sorted).

median(Xs) ->
    Sorted = lists:sort(Xs),
    lists:nth((length(Sorted) + 1) div 2, Sorted).

ratio(_, Ref, _) when Ref == 0 -> "";
ratio(X, Ref, Name) -> io_lib:format("~.2fx ~s", [X / Ref, Name]).

row(Row, Measure, Method, Values, Unit, Note, Target, Met) ->
    {Row, lists:flatten(Measure), Method, Values, Unit, lists:flatten(Note), Target, Met}.

%% The table.

table(Rows) ->
    Header = io_lib:format("~-2s ~-40s ~-34s ~12s ~12s ~12s ~-7s ~-32s ~-20s ~s~n",
                           ["#", "measure", "method", "median", "min", "max", "unit", "ratio / note",
                            "target", "met"]),
    [Header | [io_lib:format("~-2b ~-40s ~-34s ~12s ~12s ~12s ~-7s ~-32s ~-20s ~s~n",
                             [R, M, Me, num(median(V)), num(lists:min(V)), num(lists:max(V)), U, N, T,
                              met(Met)])
               || {R, M, Me, V, U, N, T, Met} <- Rows]].

num(X) when is_integer(X) -> integer_to_list(X);
num(X) when abs(X) >= 100 -> integer_to_list(round(X));
num(X) -> float_to_list(X * 1.0, [{decimals, 2}]).

met(none) -> "";
met(true) -> "yes";
met(false) -> "NO".

%% The plot.

plot(Out) ->
    case os:find_executable("gnuplot") of
        false ->
            io:format("gnuplot not found: no plot~n");
        Gnuplot ->
            Script = filename:join(Out, "plot.gp"),
            Cmd = io_lib:format("cd ~s && ~s ~s 2>&1", [Out, Gnuplot, Script]),
            io:format("~s", [os:cmd(lists:flatten(Cmd))]),
            io:format("plot: ~s~n", [filename:join(Out, "results.png")])
    end.
