%% Rows 1 and 6: fin_close's native work against its floor, as
%% native/examples/bench_native.rs measures it outside the VM.
-module(bench_floors).

-export([native/2]).
-export([inq_row/1, drain_row/1]).

-import(bench_results, [median/1, ratio/3, row/8]).
-import(bench_peer, [close_pair/2, wait/1]).

-define(INQ_CALLS, 200000).
-define(INQ_ROUNDS, 11).            % alternating rounds of inq/1 and its probe

%% bench_native's lines, split into words: one run for both rows.
native(Exe, Rounds) ->
    Lines = string:split(string:trim(os:cmd(Exe ++ " " ++ integer_to_list(Rounds))), "\n", all),
    [string:split(L, " ", all) || L <- Lines].

%% Row 1: inq/1 against a bare ioctl and the recv(S, 0, 0) probe it
%% replaces. Each kind of socket against gen_tcp:recv(S, 0, 0) on the same
%% socket. A socket module socket has no gen_tcp:recv: it is held to the
%% default backend's, and its own socket:recv(S, 0, 0) is shown beside.
inq_row(Native) ->
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
