%% How fast a close is: the caller's latency (row 2), closes per second
%% (row 3) and how soon the peer sees the FIN (row 12).
-module(bench_close).

-include("bench.hrl").

-export([latency_row/1, throughput_row/1, fin_seen_row/0]).

-import(bench_results, [median/1, percentile/2, ratio/3, row/8, target/2]).
-import(bench_methods, [close_with/2, name/1, timed/2]).
-import(bench_peer, [peer_command/2, peer_connections/3, peer_ended/1, wait/1, wait_lingering_zero/0]).

-define(LATENCY_N, 2000).           % connections per latency round
-define(COWBOY_N, 50).              % Cowboy-style closes per round (1 s each)
-define(THROUGHPUT_NS, [2000, 5000, 10000, 20000]).
-define(FIN_N, 300).
-define(FIN_ROUNDS, 7).

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

%% Row 3: closes per second from one process, and how the peers saw the
%% end; and the figures plot.gp draws.
throughput_row(Rounds) ->
    Limit = bench_proc:fd_limit(),
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
    Cpu0 = bench_proc:reactor_cpu_ns(),
    T0 = erlang:monotonic_time(nanosecond),
    Times = [timed(Method, S) || S <- Socks],
    Elapsed = erlang:monotonic_time(nanosecond) - T0,
    {Clean, _Reset} = peer_ended(Peer),
    wait_lingering_zero(),
    #{rate => N * 1.0e9 / Elapsed, clean => Clean, p99 => percentile(Times, 99),
      reactor_cpu_ns => (bench_proc:reactor_cpu_ns() - Cpu0) / N}.

%% Row 12: how soon a client sees our FIN after the close call, with the
%% reactor busy as on a server: another process closes other connections
%% (whose peers sent a request that is never read) about once a
%% millisecond, by the same method. The client (fin_seen_peer, an OS
%% process of its own) blocks in read and notes when the end of stream
%% came, on the clock the VM's own monotonic time reads; rounds of each
%% method interleaved.
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
