%% What a lingering close promises, with default options, on every kind of
%% server socket (inet: the default gen_tcp backend; socket: {inet_backend,
%% socket}; esock: a socket-module socket): uploads of any size drained,
%% `clean' only when delivered, our own shutdowns not taken for the peer's,
%% one close per socket, a closed socket closed for good, nothing that
%% depends on the notifier process, idle peers cut off.
-module(fin_close_linger_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(fin_close_ct, [abort_counters/0, bytes/1, check_nothing_left/1, fds/0, kind/1, outcome/1,
                       pair/3, read_all/2, read_to_closed/1, send/2, wait/1, wait/2, wait_inq/2]).

-export([suite/0, all/0, groups/0]).
-export([unread_upload_is_drained_whole/1, slow_upload_is_drained_whole/1,
         idle_peer_is_cut_off/1, clean_only_once_the_peer_has_read_everything/1,
         shut_for_reading_still_ends_with_fin/1, shut_both_ways_waits_for_the_peers_fin/1,
         port_flush_survives_the_notifier/1, one_close_wins/1,
         closed_socket_stays_closed/1, send_cut_by_close_is_truncated/1,
         halt_mid_flush_resets_the_peer/1, peer_closed_socket_is_closed/1,
         reset_peer_socket_is_closed/1, reclaim_takes_the_quiet_socket_first/1,
         active_owner_gets_no_closed_message/1,
         idle_flood_at_the_descriptor_limit/1, drip_flood_never_stops_accepting/1,
         drip_flood_through_cowboy/1]).
%% Run on the peer nodes of halt_mid_flush_resets_the_peer and
%% idle_flood_at_the_descriptor_limit.
-export([flushing_server/1, flood_server/1, drip_server/1, cowboy_drip_server/1]).

-define(LOOP4, {127, 0, 0, 1}).
-define(MiB, (1024 * 1024)).

all() ->
    [{group, inet}, {group, socket}, {group, esock}, {group, node}].

groups() ->
    Cases = [unread_upload_is_drained_whole, slow_upload_is_drained_whole, idle_peer_is_cut_off,
             clean_only_once_the_peer_has_read_everything, shut_for_reading_still_ends_with_fin,
             shut_both_ways_waits_for_the_peers_fin, port_flush_survives_the_notifier,
             one_close_wins, closed_socket_stays_closed, send_cut_by_close_is_truncated,
             peer_closed_socket_is_closed, reset_peer_socket_is_closed,
             reclaim_takes_the_quiet_socket_first, active_owner_gets_no_closed_message],
    [{inet, [], Cases}, {socket, [], Cases}, {esock, [], Cases},
     {node, [], [halt_mid_flush_resets_the_peer, idle_flood_at_the_descriptor_limit,
                 drip_flood_never_stops_accepting, drip_flood_through_cowboy]}].

suite() ->
    [{ct_hooks, [fin_close_ct_hook]}].

%% Cases.

%% An early answer to a 64 MiB upload that the client sends whole before it
%% reads, closed with defaults: the client gets all of the answer and FIN.
unread_upload_is_drained_whole(Config) ->
    early_answer(Config, 64 * ?MiB, infinity).

%% The same with a 16 MiB upload at about 20 MB/s.
slow_upload_is_drained_whole(Config) ->
    early_answer(Config, 16 * ?MiB, 20).

%% A peer that neither sends, nor closes, nor reads is cut off after
%% idle_timeout with a reset; one that has all of ours and just stays is
%% closed quietly (no reset) at the same bound.
idle_peer_is_cut_off(Config) ->
    {S1, Deaf} = pair(Config, ?LOOP4, [{sndbuf, ?MiB}]),
    ok = inet:setopts(Deaf, [{recbuf, 16384}]),
    ok = send(S1, bytes(200000)),
    {ok, R1} = fin_close:close(S1, #{notify => self(), idle_timeout => 300}),
    ?assertMatch(#{outcome := idle, lingered_ms := T} when T >= 300 andalso T < 1500, outcome(R1)),
    ?assertMatch({N, {error, econnreset}} when N < 200000, read_all(Deaf, 0)),
    ok = gen_tcp:close(Deaf),
    {S2, Quiet} = pair(Config, ?LOOP4, []),
    ok = send(S2, <<"all of it">>),
    {ok, R2} = fin_close:close(S2, #{notify => self(), idle_timeout => 300}),
    ?assertMatch(#{outcome := idle}, outcome(R2)),
    ?assertEqual({ok, <<"all of it">>}, read_to_closed(Quiet)),
    ok = gen_tcp:close(Quiet).

%% A peer that half-closed first and reads our reply only later: the socket
%% lingers (listed, peer_fin true) until the reply is acknowledged, then
%% ends clean; when linger_timeout comes first it ends timeout, not clean.
clean_only_once_the_peer_has_read_everything(Config) ->
    Size = 200000,
    {S1, C1} = pair(Config, ?LOOP4, [{sndbuf, ?MiB}]),
    ok = inet:setopts(C1, [{recbuf, 16384}]),
    ok = gen_tcp:shutdown(C1, write),
    ok = send(S1, bytes(Size)),
    {ok, R1} = fin_close:close(S1, #{notify => self(), linger_timeout => 5000}),
    timer:sleep(500),
    ?assertMatch([#{peer_fin := true}], [I || #{kind := lingering} = I <- fin_close:sockets()]),
    ?assertEqual({Size, {error, closed}}, read_all(C1, 0)),
    ?assertMatch(#{outcome := clean, lingered_ms := T} when T >= 450, outcome(R1)),
    ok = gen_tcp:close(C1),
    {S2, C2} = pair(Config, ?LOOP4, [{sndbuf, ?MiB}]),
    ok = inet:setopts(C2, [{recbuf, 16384}]),
    ok = gen_tcp:shutdown(C2, write),
    ok = send(S2, bytes(Size)),
    {ok, R2} = fin_close:close(S2, #{notify => self(), linger_timeout => 300}),
    ?assertMatch(#{outcome := timeout}, outcome(R2)),
    ok = gen_tcp:close(C2).

%% Shut for reading before the close, a reply, and a pipelined request that
%% comes after the close: the peer still gets all of the reply and FIN, and
%% the kernel resets nothing; also when the request comes while the reactor
%% is held busy and has not adopted the socket, so that the close alone
%% must have held our FIN back.
shut_for_reading_still_ends_with_fin(Config) ->
    shut_for_reading_still_ends_with_fin(Config, free),
    shut_for_reading_still_ends_with_fin(Config, held).

shut_for_reading_still_ends_with_fin(Config, Reactor) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(Client, bytes(1000)),
    wait_inq(Server, 1000),
    ok = shutdown(Server, read),
    Before = abort_counters(),
    ok = send(Server, bytes(?MiB)),
    Reactor =:= held andalso hold_reactor(1000),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    timer:sleep(200),
    ok = gen_tcp:send(Client, bytes(5000)),
    ?assertEqual({?MiB, {error, closed}}, read_all(Client, 0)),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    ?assertEqual(Before, abort_counters()).

hold_reactor(Ms) ->
    ok = fin_close_nif:hold_reactor(self(), Ms),
    receive {fin_close, held} -> true after 5000 -> error(reactor_not_held) end.

%% Shut both ways before the close: the end is not taken for the peer's
%% FIN; the socket lingers until the peer closes, and ends clean.
shut_both_ways_waits_for_the_peers_fin(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    %% Else the client's port closes itself at our FIN.
    ok = inet:setopts(Client, [{exit_on_close, false}]),
    ok = send(Server, bytes(100000)),
    ok = shutdown(Server, read_write),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    ?assertEqual({100000, {error, closed}}, read_all(Client, 0)),
    timer:sleep(300),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean, lingered_ms := T} when T >= 250, outcome(Ref)).

%% A port still writing a 16 MiB reply when closed: killing the notifier,
%% stopping and restarting the application lose no byte and no FIN; a peer
%% that never reads is cut off at linger_timeout and the port goes.
port_flush_survives_the_notifier(Config) ->
    case kind(Config) of
        inet -> port_flush_survives_the_notifier_(Config);
        _ -> {skip, "only a port holds output after close"}
    end.

port_flush_survives_the_notifier_(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    Size = 16 * ?MiB,
    ok = send(Server, bytes(Size)),
    ?assertMatch({queue_size, N} when N > 0, erlang:port_info(Server, queue_size)),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    exit(whereis(fin_close_notifier), kill),
    ok = application:stop(fin_close),
    {ok, _} = application:ensure_all_started(fin_close),
    ?assertEqual({Size, {error, closed}}, read_all(Client, 0)),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    {S2, Deaf} = pair(Config, ?LOOP4, []),
    ok = send(S2, bytes(Size)),
    {ok, R2} = fin_close:close(S2, #{notify => self(), linger_timeout => 500}),
    exit(whereis(fin_close_notifier), kill),
    ?assertMatch(#{outcome := timeout}, outcome(R2)),
    wait(fun() -> erlang:port_info(S2) =:= undefined end),
    ok = gen_tcp:close(Deaf).

%% Two closes and an abort race for one socket, 100 times: exactly one
%% wins, the others get {error, closed}; one notification at most, for the
%% winner; the counters count one socket.
one_close_wins(Config) ->
    Rounds = 100,
    Before = ended_or_lingering(),
    Wins = [race(Config) || _ <- lists:seq(1, Rounds)],
    ?assertEqual(Rounds, length([W || W <- Wins, W =/= none])),
    Handed = length([W || W <- Wins, W =:= close]),
    wait(fun() -> maps:get(lingering, fin_close:stats()) =:= 0 end, 10000),
    ?assertEqual(Before + Handed, ended_or_lingering()),
    %% No notification beyond those race/1 took.
    receive {fin_close, _, _} = Extra -> error({extra, Extra}) after 200 -> ok end.

%% After close/1 returned, while a port still writes an 8 MiB reply: the old
%% term is closed to every call (also to inq/1 and outq/1, which remember
%% it from a call before the close), a stray send reaches no one, and the
%% reply arrives whole with FIN.
closed_socket_stays_closed(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    Size = case kind(Config) of inet -> 8 * ?MiB; _ -> 256 * 1024 end,
    ok = send(Server, bytes(Size)),
    {ok, _} = fin_close:inq(Server),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    Calls = case kind(Config) of
                esock ->
                    [socket:send(Server, <<"stray">>), socket:recv(Server, 0, 10),
                     socket:setopt(Server, {socket, keepalive}, true),
                     socket:shutdown(Server, write), socket:getopt(Server, {socket, type})];
                _ ->
                    [gen_tcp:send(Server, <<"stray">>), gen_tcp:recv(Server, 0, 10),
                     inet:setopts(Server, [{active, true}]), gen_tcp:shutdown(Server, write),
                     inet:getopts(Server, [active])]
            end,
    ct:log("calls on the old term: ~p", [Calls]),
    %% OTP lets a port it is closing be controlled: inet:setopts/2 and
    %% inet:getopts/2 answer there, but the port no longer takes data and
    %% no longer ends on the peer's FIN (asserted below by the whole reply).
    Unharmed = case kind(Config) of inet -> [3, 5]; _ -> [] end,
    ?assertEqual([], [{I, C} || {I, C} <- lists:zip(lists:seq(1, length(Calls)), Calls),
                                not lists:member(I, Unharmed), element(1, C) =/= error]),
    ?assertEqual([{error, closed}, {error, closed}, {error, closed}, {error, closed}],
                 [fin_close:inq(Server), fin_close:outq(Server), fin_close:close(Server),
                  fin_close:abort(Server)]),
    ?assertEqual({Size, {error, closed}}, read_all(Client, 0)),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean}, outcome(Ref)).

%% A send still running in another process when the socket is closed: on
%% the socket backends it is cut short, reported truncated and the peer
%% reset; a port takes a send whole, so there the reply is whole and clean.
send_cut_by_close_is_truncated(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = inet:setopts(Client, [{recbuf, 16384}]),
    Size = 8 * ?MiB,
    Self = self(),
    Sender = spawn_link(fun() -> Self ! {sent, self(), send(Server, bytes(Size))} end),
    timer:sleep(200),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    Sent = receive {sent, Sender, R} -> R after 5000 -> error(sender_hung) end,
    Read = read_all(Client, 0),
    ok = gen_tcp:close(Client),
    case kind(Config) of
        inet ->
            ?assertEqual(ok, Sent),
            ?assertEqual({Size, {error, closed}}, Read),
            ?assertMatch(#{outcome := clean}, outcome(Ref));
        _ ->
            ?assertMatch({error, _}, Sent),
            ?assertMatch({N, {error, econnreset}} when N < Size, Read),
            ?assertMatch(#{outcome := truncated}, outcome(Ref))
    end.

%% A node that halts while its port still writes a reply: the peer gets a
%% reset, never a truncated reply that ends with FIN.
halt_mid_flush_resets_the_peer(_Config) ->
    {ok, Peer, _} = fin_close_ct:peer_node(?MODULE, #{}),
    PeerProc = erlang:monitor(process, Peer),
    Port = peer:call(Peer, ?MODULE, flushing_server, [16 * ?MiB]),
    {ok, C} = gen_tcp:connect(?LOOP4, Port, [binary, {active, false}, {show_econnreset, true},
                                            {recbuf, 65536}]),
    ok = peer:call(Peer, ?MODULE, flushing_server, [wait], 20000),
    peer:cast(Peer, erlang, halt, [0, [{flush, false}]]),
    receive {'DOWN', PeerProc, process, Peer, _} -> ok after 20000 -> error(node_did_not_stop) end,
    {N, Ended} = read_all(C, 0),
    ct:log("got ~b bytes, then ~p", [N, Ended]),
    ?assert(N < 16 * ?MiB),
    ?assertEqual({error, econnreset}, Ended),
    ok = gen_tcp:close(C).

%% On the peer node: accepts one connection, sends Size bytes into its port
%% and closes it with fin_close while most of it is still queued.
flushing_server(wait) ->
    wait(fun() -> maps:get(lingering, fin_close:stats()) =:= 1 end, 15000);
flushing_server(Size) ->
    {ok, _} = application:ensure_all_started(fin_close),
    Caller = self(),
    _ = spawn(fun() ->
                      {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, ?LOOP4}]),
                      Caller ! {port, inet:port(L)},
                      {ok, S} = gen_tcp:accept(L),
                      ok = gen_tcp:send(S, binary:copy(<<"h">>, Size)),
                      {queue_size, Q} = erlang:port_info(S, queue_size),
                      true = Q > 0,
                      ok = fin_close:close(S),
                      receive never -> ok end
              end),
    receive {port, {ok, Port}} -> Port after 5000 -> error(no_listener) end.

%% A passive socket whose recv already returned {error, closed} (the peer
%% closed): close/2 and abort/1 close it for good and return ok, as
%% gen_tcp:close/1 does, where the port backend had already dropped the
%% descriptor (outcome peer_closed: nothing lingers); nothing is left.
peer_closed_socket_is_closed(Config) ->
    Outcomes = [begin
                    {Server, Client} = pair(Config, ?LOOP4, []),
                    ok = gen_tcp:close(Client),
                    ?assertEqual({error, closed}, recv(Server)),
                    %% Since OTP 27 the gen_tcp_socket process closes the
                    %% socket there itself and stops (exit_on_close): the
                    %% socket is closed like any other then.
                    ClosedByOtp = gone(Server),
                    Result = case How of
                                 notify -> fin_close:close(Server, #{notify => self()});
                                 close -> fin_close:close(Server);
                                 abort -> fin_close:abort(Server)
                             end,
                    ?assertEqual([], [Server || not gone(Server)]),
                    case Result of
                        {ok, Ref} -> maps:get(outcome, outcome(Ref));
                        ok -> ok;
                        {error, closed} when ClosedByOtp -> closed_by_otp
                    end
                end || How <- [notify, close, abort]],
    Expected = case {kind(Config), Outcomes} of
                   {inet, _} -> [peer_closed, ok, ok];
                   {socket, [closed_by_otp | _]} -> [closed_by_otp, closed_by_otp, closed_by_otp];
                   _ -> [clean, ok, ok]
               end,
    ?assertEqual(Expected, Outcomes).

%% 1500 peers in another OS process, in a network namespace of the test,
%% connect to a node limited to 1024 descriptors; each gets a 100-byte
%% reply closed with fin_close:close/1 defaults, and sits idle. A
%% legitimate client connects every 50 ms meanwhile. No close is refused,
%% the node never runs out, lingering sockets give their descriptors back
%% (reclaimed), and every legitimate client gets its reply and FIN.
idle_flood_at_the_descriptor_limit(Config) ->
    case fin_close_ct:netns_up() of
        ok -> try idle_flood(Config) after fin_close_ct:netns_down() end;
        Skip -> Skip
    end.

idle_flood(_Config) ->
    {ok, Peer, _} = fin_close_ct:peer_node(?MODULE, #{fd_limit => 1024}),
    Port = peer:call(Peer, ?MODULE, flood_server, [start]),
    Self = self(),
    Legit = spawn_link(fun() -> Self ! {legit, legit_clients(Port, 40, [])} end),
    Idle = fin_close_ct:in_netns("/usr/bin/python3", ["-c", idle_peers(), host(), integer_to_list(Port),
                                                      "1500"]),
    Connected = receive {Idle, {data, "connected " ++ N}} -> string:trim(N)
                after 60000 -> error(idle_peers_hung)
                end,
    Served = receive {legit, L} -> L after 60000 -> error(legit_hung) end,
    unlink(Legit),
    #{errors := Errors, peak := Peak, closes := Closes, stats := Stats} =
        peer:call(Peer, ?MODULE, flood_server, [report]),
    ct:log("idle connected: ~s, closes: ~b, errors: ~p, peak lingering: ~b~nstats: ~p~nlegit: ~p",
           [Connected, Closes, Errors, Peak, Stats, Served]),
    catch port_close(Idle),
    peer:stop(Peer),
    ?assertEqual("1500", Connected),
    ?assertEqual([], Errors),
    ?assertEqual([], [S || S <- Served, S =/= {ok, 100}]),
    ?assert(Peak < 1024),
    ?assert(maps:get(reclaimed, Stats) > 0).

%% A node at ulimit -n 1024; 880 peers (from a network namespace made by the
%% test) take their answer and then drip a byte every 2 s, never idle, so
%% they linger; then 150 long-lived clients connect, one every 20 ms, and
%% keep their connection, so that the node runs out of descriptors. The
%% server closes with fin_close:close/1 defaults and, as documented, calls
%% fin_close:reclaim/0 when accept gives emfile or enfile: every client is
%% served, and no accept fails once it has.
drip_flood_never_stops_accepting(Config) ->
    case fin_close_ct:netns_up() of
        ok -> try drip_flood(Config) after fin_close_ct:netns_down() end;
        Skip -> Skip
    end.

drip_flood(_Config) ->
    #{served := Served, refused := AfterReclaim, stats := Stats} =
        drip_flood(plain, [], ?MODULE, drip_server, <<"drip\n">>),
    ?assertEqual([], [S || S <- Served, S =/= ok]),
    ?assertEqual([], AfterReclaim),
    ?assert(maps:get(reclaimed, Stats) > 0).

%% The same through Cowboy (Debian's, see scripts/cowboy.sh) with
%% fin_close_ranch, and with ranch_tcp beside: the drippers' requests say
%% `connection: close', the long-lived clients' are kept alive. Cowboy's
%% acceptors go through fin_close_ranch:accept/2.
drip_flood_through_cowboy(Config) ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    Script = filename:join(filename:dirname(filename:dirname(Source)), "scripts/cowboy.sh"),
    Plugins = string:trim(os:cmd("sh " ++ Script)),
    case {filelib:wildcard(filename:join(Plugins, "*/ebin")), fin_close_ct:netns_up()} of
        {[_, _, _] = Ebins, ok} ->
            try [cowboy_drip_flood(Config, Ebins, T) || T <- [ranch_tcp, fin_close_ranch]]
            after fin_close_ct:netns_down()
            end,
            ok;
        {_, ok} ->
            fin_close_ct:netns_down(),
            {fail, {"no Cowboy: scripts/cowboy.sh printed", Plugins}};
        {_, Skip} ->
            Skip
    end.

cowboy_drip_flood(_Config, Ebins, Transport) ->
    Request = <<"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n">>,
    #{served := Served, stats := Stats} =
        drip_flood(cowboy, Ebins, ?MODULE, cowboy_drip_server, Request, Transport),
    ct:log("~p: ~p", [Transport, Stats]),
    ?assertEqual({Transport, []}, {Transport, [S || S <- Served, S =/= ok]}).

drip_flood(Kind, Ebins, Module, Server, Request) ->
    drip_flood(Kind, Ebins, Module, Server, Request, undefined).

%% 880 dripping peers, then 150 long-lived clients, against Server on a
%% node at ulimit -n 1024; what the server and the clients saw.
drip_flood(Kind, Ebins, Module, Server, Request, Transport) ->
    {ok, Peer, _} = fin_close_ct:peer_node(?MODULE, #{fd_limit => 1024, ebins => Ebins}),
    Port = peer:call(Peer, Module, Server, [{start, Transport}]),
    Drip = fin_close_ct:in_netns("/usr/bin/python3", ["-c", drip_peers(), host(), integer_to_list(Port),
                                                      "880", binary_to_list(Request)]),
    Connected = receive {Drip, {data, "connected " ++ N}} -> string:trim(N)
                after 60000 -> error(drip_peers_hung)
                end,
    Held = [begin timer:sleep(20), long_lived_client(Kind, Port) end || _ <- lists:seq(1, 150)],
    Report = peer:call(Peer, Module, Server, [report]),
    Stats = peer:call(Peer, fin_close, stats, []),
    Served = [S || {S, _} <- Held],
    ct:log("~p: drip peers connected: ~s~nserver: ~p~nstats: ~p~nlong-lived: ~p",
           [Kind, Connected, Report, Stats, Served]),
    [gen_tcp:close(C) || {_, C} <- Held, is_port(C)],
    catch port_close(Drip),
    peer:stop(Peer),
    ?assertEqual("880", Connected),
    Report#{served => Served, stats => Stats}.

%% Connects, asks to be kept, reads its answer; the connection stays open.
long_lived_client(Kind, Port) ->
    {Ask, Answer} = case Kind of
                        plain -> {<<"keep\n">>, binary:copy(<<"r">>, 100)};
                        cowboy -> {<<"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n">>, <<"hello">>}
                    end,
    case gen_tcp:connect(?LOOP4, Port, [binary, {active, false}], 5000) of
        {ok, C} ->
            ok = gen_tcp:send(C, Ask),
            {case fin_close_ct:read_until(C, Answer) of {ok, _} -> ok; Failed -> Failed end, C};
        Error ->
            {Error, none}
    end.

%% Python: opens N connections and sends each REQUEST (escapes allowed),
%% then every 2 s reads what came and sends each a byte, until its
%% standard input closes (at most two minutes).
drip_peers() ->
    "import socket, sys, select, time\n"
    "host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "request = sys.argv[4].encode().decode('unicode_escape').encode()\n"
    "conns = []\n"
    "for _ in range(n):\n"
    "    c = socket.create_connection((host, port), timeout=10)\n"
    "    c.sendall(request)\n"
    "    conns.append(c)\n"
    "print('connected %d' % len(conns), flush=True)\n"
    "for c in conns: c.setblocking(False)\n"
    "end = time.time() + 120\n"
    "while time.time() < end and not select.select([sys.stdin], [], [], 2)[0]:\n"
    "    for c in conns:\n"
    "        try:\n"
    "            c.recv(65536)\n"
    "            c.send(b'd')\n"
    "        except OSError:\n"
    "            pass\n".

%% On the peer node: each connection says first whether it drips (answered
%% 100 bytes, then closed with fin_close:close/1) or is to be kept (answered,
%% and held open by a process of its own until the client closes). An
%% accept that finds no descriptor reclaims and accepts again; what fails
%% even then is kept for the report.
drip_server({start, _}) ->
    {ok, _} = application:ensure_all_started(fin_close),
    Caller = self(),
    _ = spawn(fun() ->
                      register(drip_server, self()),
                      {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {backlog, 4096},
                                                   {packet, line}]),
                      Caller ! {port, inet:port(L)},
                      drip_accept(L, #{refused => [], short => 0, closes => 0})
              end),
    receive {port, {ok, Port}} -> Port after 5000 -> error(no_listener) end;
drip_server(report) ->
    drip_server ! {report, self()},
    receive {drip_report, R} -> R after 5000 -> error(no_report) end.

drip_accept(L, #{refused := Refused, short := Short, closes := Closes} = State) ->
    receive
        {report, From} -> From ! {drip_report, State}
    after 0 -> ok
    end,
    case gen_tcp:accept(L, 100) of
        {ok, S} ->
            drip_accept(L, State#{closes := Closes + serve(S)});
        {error, timeout} ->
            drip_accept(L, State);
        {error, Full} when Full =:= emfile; Full =:= enfile ->
            ok = fin_close:reclaim(),
            case gen_tcp:accept(L, 100) of
                {ok, S} ->
                    drip_accept(L, State#{short := Short + 1, closes := Closes + serve(S)});
                {error, timeout} ->
                    drip_accept(L, State#{short := Short + 1});
                {error, Reason} ->
                    timer:sleep(10),
                    drip_accept(L, State#{short := Short + 1, refused := [Reason | Refused]})
            end;
        {error, Reason} ->
            timer:sleep(10),
            drip_accept(L, State#{refused := [Reason | Refused]})
    end.

%% On the peer node: Cowboy answering `200 hello' with Transport.
cowboy_drip_server({start, Transport}) ->
    {ok, _} = application:ensure_all_started(fin_close),
    {ok, _} = application:ensure_all_started(cowboy),
    Dispatch = cowboy_router:compile([{'_', [{'_', fin_close_cowboy_handler, #{mode => small}}]}]),
    {ok, _} = ranch:start_listener(drip, Transport,
                                   #{socket_opts => [{port, 0}, {backlog, 4096}],
                                     max_connections => infinity},
                                   cowboy_clear, #{env => #{dispatch => Dispatch}}),
    ranch:get_port(drip);
cowboy_drip_server(report) ->
    #{connections => length(ranch:procs(drip, connections))}.

%% 1 if the connection was closed with fin_close, 0 if it is kept.
serve(S) ->
    Answer = binary:copy(<<"r">>, 100),
    case gen_tcp:recv(S, 0, 5000) of
        {ok, <<"keep\n">>} ->
            ok = gen_tcp:send(S, Answer),
            Keeper = spawn(fun() -> receive go -> {error, _} = gen_tcp:recv(S, 0), gen_tcp:close(S) end end),
            ok = gen_tcp:controlling_process(S, Keeper),
            Keeper ! go,
            0;
        _ ->
            _ = gen_tcp:send(S, Answer),
            ok = fin_close:close(S),
            1
    end.

host() -> inet:ntoa(fin_close_ct:host_ip()).

%% Python: opens N connections, reads nothing, says so, and holds them until
%% its standard input closes (at most a minute).
idle_peers() ->
    "import socket, sys, select\n"
    "host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n"
    "conns = [socket.create_connection((host, port), timeout=10) for _ in range(n)]\n"
    "print('connected %d' % len(conns), flush=True)\n"
    "select.select([sys.stdin], [], [], 60)\n".

%% On the peer node: an acceptor that answers 100 bytes and closes with
%% fin_close:close/1, counting what goes wrong and the most sockets that
%% lingered at once.
flood_server(start) ->
    {ok, _} = application:ensure_all_started(fin_close),
    Caller = self(),
    _ = spawn(fun() ->
                      register(flood_server, self()),
                      {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {backlog, 4096}]),
                      Caller ! {port, inet:port(L)},
                      flood_accept(L, #{errors => [], peak => 0, closes => 0})
              end),
    receive {port, {ok, Port}} -> Port after 5000 -> error(no_listener) end;
flood_server(report) ->
    flood_server ! {report, self()},
    receive {flood_report, R} -> R#{stats => fin_close:stats()} after 5000 -> error(no_report) end.

flood_accept(L, State) ->
    receive
        {report, From} -> From ! {flood_report, State}
    after 0 -> ok
    end,
    case gen_tcp:accept(L, 100) of
        {ok, S} ->
            Sent = gen_tcp:send(S, binary:copy(<<"r">>, 100)),
            Closed = fin_close:close(S),
            #{lingering := Now} = fin_close:stats(),
            #{errors := E, peak := P, closes := N} = State,
            Errors = [R || R <- [Sent, Closed], R =/= ok] ++ E,
            flood_accept(L, State#{errors := Errors, peak := max(P, Now), closes := N + 1});
        {error, timeout} ->
            flood_accept(L, State);
        {error, Reason} ->
            #{errors := E} = State,
            timer:sleep(10),
            flood_accept(L, State#{errors := [{accept, Reason} | E]})
    end.

legit_clients(Port, N, Acc) ->
    legit_clients(Port, N, 50, Acc).

%% N clients, one every Pause ms, each reading its answer to the end.
legit_clients(_Port, 0, _Pause, Acc) ->
    lists:reverse(Acc);
legit_clients(Port, N, Pause, Acc) ->
    timer:sleep(Pause),
    Got = case gen_tcp:connect(?LOOP4, Port, [binary, {active, false}], 5000) of
              {ok, C} ->
                  R = case read_to_closed(C) of {ok, B} -> {ok, byte_size(B)}; E -> E end,
                  gen_tcp:close(C),
                  R;
              Error ->
                  Error
          end,
    legit_clients(Port, N - 1, Pause, [Got | Acc]).

%% The same after the peer reset the connection: closed for good. A port
%% gives ok (peer_closed); {inet_backend, socket} had closed the socket
%% itself ({error, closed}, and its process is stopped); a socket-module
%% socket lingers and ends reset.
reset_peer_socket_is_closed(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = inet:setopts(Client, [{linger, {true, 0}}]),
    ok = gen_tcp:close(Client),
    ?assertMatch({error, _}, recv(Server)),
    Result = fin_close:close(Server, #{notify => self()}),
    ?assertEqual([], [Server || not gone(Server)]),
    Ended = case Result of
                {ok, Ref} -> maps:get(outcome, outcome(Ref));
                {error, _} = Error -> Error
            end,
    Expected = case kind(Config) of
                   inet -> [peer_closed];
                   socket -> [{error, closed}];
                   esock -> [reset, error]
               end,
    ?assert(lists:member(Ended, Expected), Ended).

%% At max_lingering, a socket whose peer has all of ours and stays quiet
%% goes before an older one whose peer still sends, and its peer sees no
%% reset: a read gives the end, and a write still goes through.
reclaim_takes_the_quiet_socket_first(Config) ->
    {S1, Busy} = pair(Config, ?LOOP4, []),
    {ok, R1} = fin_close:close(S1, #{notify => self()}),
    Dripper = spawn_link(fun() -> drip(Busy) end),
    {S2, Quiet} = pair(Config, ?LOOP4, []),
    ok = inet:setopts(Quiet, [{exit_on_close, false}]),
    ok = send(S2, <<"all of it">>),
    {ok, R2} = fin_close:close(S2, #{notify => self()}),
    ?assertEqual({ok, <<"all of it">>}, gen_tcp:recv(Quiet, 9, 5000)),
    ?assertEqual({error, closed}, gen_tcp:recv(Quiet, 0, 5000)),
    %% Its peer may delay the acknowledgment of our FIN (tens of ms): until
    %% it comes, the quiet socket too has something to lose.
    {ok, QuietEnd} = inet:sockname(Quiet),
    wait(fun() -> [L || #{kind := lingering, peer := P, state := fin_wait2, send_q := 0} = L
                            <- fin_close:sockets(), P =:= QuietEnd] =/= [] end),
    {S3, Third} = pair(Config, ?LOOP4, []),
    #{lingering := Now} = fin_close:stats(),
    {ok, R3} = fin_close:close(S3, #{notify => self(), max_lingering => Now}),
    ?assertMatch(#{outcome := reclaimed}, outcome(R2)),
    ?assertEqual(ok, gen_tcp:send(Quiet, <<"late">>)),
    unlink(Dripper),
    exit(Dripper, kill),
    [ok = gen_tcp:close(C) || C <- [Busy, Quiet, Third]],
    ?assertMatch(#{outcome := O} when O =/= reclaimed, outcome(R1)),
    ?assertMatch(#{outcome := clean}, outcome(R3)).

%% An active-mode owner gets no {tcp_closed, S} from close/1 or abort/1,
%% as from gen_tcp:close/1: the close is its own doing.
active_owner_gets_no_closed_message(Config) ->
    case kind(Config) of
        esock ->
            {skip, "a socket-module socket sends no such message"};
        _ ->
            [begin
                 {Server, Client} = pair(Config, ?LOOP4, []),
                 ok = inet:setopts(Server, [{active, true}]),
                 ok = Close(Server),
                 ?assertEqual(none, receive {tcp_closed, Server} = M -> M after 200 -> none end),
                 ok = gen_tcp:close(Client)
             end || Close <- [fun fin_close:close/1, fun fin_close:abort/1]],
            ok
    end.

%% A byte every 10 ms until a send fails.
drip(Sock) ->
    timer:sleep(10),
    case gen_tcp:send(Sock, <<"d">>) of ok -> drip(Sock); Error -> Error end.

%% Helpers.

recv({'$socket', _} = S) -> socket:recv(S, 0, 5000);
recv(S) -> gen_tcp:recv(S, 0, 5000).

%% The socket is closed for good: no port, no gen_tcp_socket process, no
%% open socket-module socket left behind.
gone({'$socket', _} = S) -> socket:info(S) =:= #{} orelse
                                 lists:member(closed, maps:get(rstates, socket:info(S), [closed]));
gone({'$inet', gen_tcp_socket, {Pid, _}}) -> not is_process_alive(Pid);
gone(Port) when is_port(Port) -> erlang:port_info(Port) =:= undefined.

%% The client sends a 1000-byte request, then uploads Upload bytes at
%% MBps (or as fast as it can) before reading; the server answers 413 with
%% 1 MiB without reading the upload and closes with defaults.
early_answer(Config, Upload, MBps) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(Client, bytes(1000)),
    wait_inq(Server, 1000),
    Self = self(),
    Uploader = spawn_link(fun() -> Self ! {uploaded, self(), upload(Client, Upload, MBps)} end),
    Answer = 1 * ?MiB,
    ok = send(Server, bytes(Answer)),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    ?assertEqual(ok, receive {uploaded, Uploader, R} -> R after 60000 -> error(upload_hung) end),
    ?assertEqual({Answer, {error, closed}}, read_all(Client, 0)),
    ok = gen_tcp:close(Client),
    #{outcome := Outcome, drained := Drained} = outcome(Ref),
    ?assertEqual({clean, true}, {Outcome, Drained >= Upload}).

upload(_Sock, Left, _MBps) when Left =< 0 ->
    ok;
upload(Sock, Left, MBps) ->
    Chunk = 256 * 1024,
    case gen_tcp:send(Sock, bytes(min(Chunk, Left))) of
        ok when MBps =:= infinity -> upload(Sock, Left - Chunk, MBps);
        ok -> timer:sleep(Chunk div (MBps * 1000)), upload(Sock, Left - Chunk, MBps);
        {error, _} = Error -> Error
    end.

shutdown({'$socket', _} = S, How) -> socket:shutdown(S, How);
shutdown(S, How) -> gen_tcp:shutdown(S, How).

%% Every socket the reactor was ever given: ended in any way, or lingering.
ended_or_lingering() ->
    Stats = fin_close:stats(),
    lists:sum([maps:get(K, Stats) || K <- [lingering, clean, timeout, idle, drain_limit, reset,
                                           truncated, reclaimed, error]]).

%% One round of one_close_wins: which racer won (close or abort), or none.
race(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    Self = self(),
    Racers = [fun() -> fin_close:close(Server, #{notify => Self}) end,
              fun() -> fin_close:close(Server) end,
              fun() -> fin_close:abort(Server) end],
    Pids = [spawn_link(fun() -> receive go -> Self ! {raced, self(), F()} end end) || F <- Racers],
    [P ! go || P <- Pids],
    Results = [receive {raced, P, R} -> R after 5000 -> error(racer_hung) end || P <- Pids],
    ok = gen_tcp:close(Client),
    Won = [R || R <- Results, R =/= {error, closed}],
    ?assertMatch([_], Won, Results),
    case Results of
        [{ok, Ref}, _, _] -> #{outcome := _} = outcome(Ref), close;
        [_, ok, _] -> close;
        [_, _, ok] -> abort
    end.
