%% Up to the descriptor limit: lingering sockets at once (row 5) and an idle
%% flood beyond it (row 9).
-module(bench_capacity).

-export([capacity_row/1, flood_row/0]).

-import(bench_results, [median/1, row/8]).
-import(bench_peer, [peer_command/2, peer_connections/3, peer_ended/1, wait/1, wait_lingering_zero/0]).
-import(bench_proc, [fd_limit/0, reactor_tid/0, rss/0, thread_cpu_ms/1]).

-define(FLOOD, 20400).
-define(LEGIT, 50).

%% Row 5: as many lingering sockets as the descriptor limit allows.
capacity_row(Rounds) ->
    Limit = fd_limit(),
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

%% Row 9: peers in two other OS processes connect, 20,400 in all, more than
%% the descriptor limit, and sit idle; each is answered 100 bytes and closed
%% with fin_close:close/1 defaults. A client in a third process connects
%% every 100 ms meanwhile and reads its answer to the end.
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
    Limit = fd_limit(),
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
