%% Behaviour of fin_close as a user relies on it: bytes delivered, FIN seen,
%% outcome reported, errors returned. Every case runs once per kind of
%% server socket: the default gen_tcp backend (inet), {inet_backend, socket}
%% (socket), and a socket-module socket (esock). The peer is always a plain
%% gen_tcp socket with show_econnreset, so `{error, closed}' means FIN.
-module(fin_close_SUITE).


-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(fin_close_ct, [abort_counters/0, accept/2, accept_pair/5, bytes/1, check_nothing_left/1, close_listener/2, close_udp/1, drip/1, family/1, fd_count/0, fds/0, flags/1, flood/3, kind/1, listen/3, listen_port/2, native_close/1, outcome/1, pair/3, read_all/2, read_to_closed/1, read_to_closed/2, recv_exactly/2, send/2, set_active/2, set_linger_zero/2, udp/1, wait/1, wait/2, wait_exit/1, wait_inq/2, wait_line/2, wait_until/2]).

-export([suite/0, all/0, groups/0]).
-export([reply_reaches_slow_reader/1, native_close_resets_slow_reader/1, big_reply_to_slow_reader/1,
         ipv6_reply_reaches_slow_reader/1, inq_is_exact/1, outq_counts_unacknowledged/1,
         notify_reports_clean/1, dripping_peer_times_out/1, flooding_peer_hits_drain_limit/1,
         wire_shows_fin_not_rst/1, active_mode_socket/1, closed_by_non_owner/1,
         linger_zero_still_ends_with_fin/1, abort_resets_peer/1, bad_input_is_refused/1,
         stats_count_outcomes/1, api_module_reload/1, unread_reply_cut_off_at_timeout/1,
         peer_reset_while_port_drains/1, socket_table_shows_queues/1, cut_off_is_logged_at_debug/1,
         socket_table_survives_churn/1, fin_leaves_at_the_close/1,
         graceful_close_is_close/1]).
%% The logger handler of cut_off_is_logged_at_debug.
-export([log/2]).

-define(REQUEST, 1000).
-define(PIPELINED, 5000).
-define(LOOP4, {127, 0, 0, 1}).
-define(LOOP6, {0, 0, 0, 0, 0, 0, 0, 1}).

all() ->
    [{group, inet}, {group, socket}, {group, esock}].

groups() ->
    Cases = [reply_reaches_slow_reader, native_close_resets_slow_reader, big_reply_to_slow_reader,
             ipv6_reply_reaches_slow_reader, inq_is_exact, outq_counts_unacknowledged,
             notify_reports_clean, dripping_peer_times_out, flooding_peer_hits_drain_limit,
             wire_shows_fin_not_rst, active_mode_socket, closed_by_non_owner,
             linger_zero_still_ends_with_fin, abort_resets_peer, bad_input_is_refused,
             stats_count_outcomes, api_module_reload, unread_reply_cut_off_at_timeout,
             peer_reset_while_port_drains, socket_table_shows_queues, cut_off_is_logged_at_debug,
             socket_table_survives_churn, fin_leaves_at_the_close, graceful_close_is_close],
    [{inet, [], Cases}, {socket, [], Cases}, {esock, [], Cases}].

suite() ->
    [{ct_hooks, [fin_close_ct_hook]}].

%% Cases.

%% Our FIN is on the wire when close/1 returns, as after gen_tcp:close/1,
%% while the reactor is held busy and has not adopted the socket: a peer
%% blocked in recv gets the reply and the end of stream at once.
fin_leaves_at_the_close(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    wait_inq(Server, ?REQUEST),
    ok = send(Server, <<"reply">>),
    Self = self(),
    Reader = spawn_link(fun() -> Self ! {read, read_to_closed(Client)} end),
    ok = gen_tcp:controlling_process(Client, Reader),
    ok = fin_close_nif:hold_reactor(self(), 1500),
    receive {fin_close, held} -> ok after 5000 -> error(reactor_not_held) end,
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({ok, <<"reply">>}, receive {read, R} -> R after 1000 -> no_fin_yet end),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 1000),
    %% Not adopted yet: still lingering, nothing ended.
    ?assertMatch(#{lingering := 1}, fin_close:stats()),
    receive {fin_close, Ref, Early} -> error({ended_while_held, Early}) after 0 -> ok end,
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean, drained := ?REQUEST}, outcome(Ref)).

%% An unread request, a 2 MiB reply, a late pipelined request: the slow
%% reader gets every byte and a FIN, and the kernel counts no abort.
reply_reaches_slow_reader(Config) ->
    Before = abort_counters(),
    {Received, Ended} = slow_reader_scenario(Config, ?LOOP4, 2 * 1024 * 1024, fun fin_close:close/1),
    ?assertEqual({2 * 1024 * 1024, {error, closed}}, {Received, Ended}),
    ?assertEqual(Before, abort_counters()).

%% The same scenario closed as usual resets the peer and raises the
%% kernel's counters: the scenario shows the bug it is meant to catch.
native_close_resets_slow_reader(Config) ->
    Before = abort_counters(),
    {Received, Ended} = slow_reader_scenario(Config, ?LOOP4, 2 * 1024 * 1024, native_close(Config)),
    ?assertEqual({error, econnreset}, Ended),
    ?assert(Received < 2 * 1024 * 1024),
    #{abort_on_close := C0, abort_on_data := D0} = Before,
    #{abort_on_close := C1, abort_on_data := D1} = abort_counters(),
    ?assert(C1 + D1 > C0 + D0).

%% graceful_close/1, the design's name for close/1, is close/1: the slow
%% reader gets the whole reply and FIN, the kernel counts no abort.
graceful_close_is_close(Config) ->
    Before = abort_counters(),
    {Received, Ended} = slow_reader_scenario(Config, ?LOOP4, 256 * 1024, fun fin_close:graceful_close/1),
    ?assertEqual({256 * 1024, {error, closed}}, {Received, Ended}),
    ?assertEqual(Before, abort_counters()).

%% 12 MiB to a slow reader, most of it still queued (inside the port for
%% the default backend) at close: close returns before the peer reads at
%% all, every byte arrives, then FIN.
big_reply_to_slow_reader(Config) ->
    Size = 12 * 1024 * 1024,
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    wait_inq(Server, ?REQUEST),
    Before = abort_counters(),
    Close = fun(S) -> fin_close:close(S, #{notify => self()}) end,
    {{ok, Ref}, Read} = reply_through_close(Config, Server, Client, Size, Close),
    ?assertEqual({Size, {error, closed}}, Read),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean, drained := ?REQUEST}, outcome(Ref)),
    ?assertEqual(Before, abort_counters()).

%% The scenario over IPv6.
ipv6_reply_reaches_slow_reader(Config) ->
    {Received, Ended} = slow_reader_scenario(Config, ?LOOP6, 256 * 1024, fun fin_close:close/1),
    ?assertEqual({256 * 1024, {error, closed}}, {Received, Ended}).

%% inq/1 is exactly what the peer sent and we did not read, 1 B to 300 KB,
%% and 0 once read.
inq_is_exact(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, [{recbuf, 4 * 1024 * 1024}]),
    lists:foreach(fun(Size) ->
                          ok = gen_tcp:send(Client, bytes(Size)),
                          wait_inq(Server, Size),
                          ?assertEqual({ok, Size}, fin_close:inq(Server)),
                          ok = recv_exactly(Server, Size),
                          ?assertEqual({ok, 0}, fin_close:inq(Server))
                  end, [1, 1000, 65536, 300000]),
    ok = gen_tcp:close(Client),
    ok = fin_close:close(Server).

%% outq/1 counts what the peer has not acknowledged: with a peer that does
%% not read, our outq plus its inq is all we sent.
outq_counts_unacknowledged(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, [{sndbuf, 1024 * 1024}]),
    ok = inet:setopts(Client, [{recbuf, 16384}]),
    ?assertEqual({ok, 0}, fin_close:outq(Server)),
    Size = 200000,
    ok = send(Server, bytes(Size)),
    wait(fun() ->
                 {ok, Out} = fin_close:outq(Server),
                 {ok, In} = fin_close:inq(Client),
                 Out + In =:= Size andalso Out > 0
         end),
    ok = gen_tcp:close(Client),
    ok = fin_close:close(Server).

%% With notify, the caller learns the outcome: clean, and the bytes it
%% discarded.
notify_reports_clean(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    wait_inq(Server, ?REQUEST),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    ?assert(is_reference(Ref)),
    ?assertEqual({ok, <<>>}, read_to_closed(Client)),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean, drained := ?REQUEST, lingered_ms := _}, outcome(Ref)).

%% A peer that drips a byte every 10 ms and never closes is cut off at
%% linger_timeout, reset, and reported as timeout.
dripping_peer_times_out(Config) ->
    %% A socket-module peer: it sees the reset as a send error, where a
    %% gen_tcp port would report it as closed.
    {ok, Listen} = listen(Config, ?LOOP4, []),
    {ok, Client} = socket:open(inet, stream, tcp),
    ok = socket:connect(Client, #{family => inet, addr => ?LOOP4, port => listen_port(Config, Listen)}),
    {ok, Server} = accept(Config, Listen),
    ok = close_listener(Config, Listen),
    Self = self(),
    Dripper = spawn_link(fun() -> Self ! {self(), drip(Client)} end),
    {ok, Ref} = fin_close:close(Server, #{notify => self(), linger_timeout => 300}),
    Result = outcome(Ref),
    ?assertMatch(#{outcome := timeout, lingered_ms := T, drained := D} when T >= 300 andalso D > 0, Result),
    %% Sending works after our FIN, so a failed send is the reset (everything
    %% of ours was acknowledged, so the socket was closed quietly and the
    %% kernel resets at the next drip); having seen our FIN (CLOSE_WAIT),
    %% the peer's kernel reports it as EPIPE.
    ?assertMatch({error, R} when R =:= epipe; R =:= econnreset,
                 receive {Dripper, Ended} -> Ended after 5000 -> timeout end),
    socket:close(Client).

%% A peer that never reads is cut off at linger_timeout, also while the
%% port still holds output: the outcome says timeout, the peer is reset,
%% and the port is gone with its queue.
unread_reply_cut_off_at_timeout(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, [{sndbuf, 65536}]),
    %% What the other backends can send without a reader.
    Size = case kind(Config) of inet -> 2 * 1024 * 1024; _ -> 16384 end,
    ok = send(Server, bytes(Size)),
    {ok, Ref} = fin_close:close(Server, #{notify => self(), linger_timeout => 300}),
    ?assertMatch(#{outcome := timeout}, outcome(Ref)),
    case kind(Config) of
        inet ->
            %% The port is gone with its queue, not left writing it out.
            wait(fun() -> erlang:port_info(Server) =:= undefined end),
            {Received, Ended} = read_all(Client, 0),
            ?assert(Received < Size div 2),
            ?assertEqual({error, econnreset}, Ended);
        _ ->
            ok
    end,
    ok = gen_tcp:close(Client).

%% A peer that half-closes, reads a little and resets while the port still
%% writes the reply: the outcome says reset, never clean.
peer_reset_while_port_drains(Config) ->
    case kind(Config) of
        inet -> peer_reset_while_port_drains(Config, 4 * 1024 * 1024);
        _ -> {skip, "only the port backend holds output after close"}
    end.

peer_reset_while_port_drains(Config, Size) ->
    {Server, Client} = pair(Config, ?LOOP4, [{sndbuf, 8192}]),
    ok = send(Server, bytes(Size)),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    ok = gen_tcp:shutdown(Client, write),
    {ok, _} = gen_tcp:recv(Client, 4096, 5000),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := reset}, outcome(Ref)),
    wait(fun() -> erlang:port_info(Server) =:= undefined end).

%% A peer that floods is cut off after max_drain bytes, reset, and
%% reported as drain_limit.
flooding_peer_hits_drain_limit(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    Self = self(),
    Chunk = bytes(65536),
    Flooder = spawn_link(fun() -> Self ! {self(), flood(Client, Chunk, 2000)} end),
    {ok, Ref} = fin_close:close(Server, #{notify => self(), max_drain => 65536}),
    ?assertMatch(#{outcome := drain_limit, drained := D} when D > 65536, outcome(Ref)),
    ?assertMatch({error, _}, receive {Flooder, Ended} -> Ended after 10000 -> timeout end).

%% On the wire (tcpdump on lo): the server's port sends FIN and never RST,
%% although the request was never read.
wire_shows_fin_not_rst(Config) ->
    case os:find_executable("tcpdump") of
        false -> {skip, "tcpdump not installed (make test installs it)"};
        Tcpdump -> wire_shows_fin_not_rst(Config, Tcpdump)
    end.

wire_shows_fin_not_rst(Config, Tcpdump) ->
    {ok, Listen} = listen(Config, ?LOOP4, []),
    ServerPort = listen_port(Config, Listen),
    Capture = filename:join(?config(priv_dir, Config), "lo.pcap"),
    Dump = open_port({spawn_executable, Tcpdump},
                     [stderr_to_stdout, exit_status, {line, 200},
                      {args, ["-i", "lo", "-nn", "-U", "--immediate-mode", "-Z", "root", "-w", Capture, "tcp port " ++ integer_to_list(ServerPort)]}]),
    ok = wait_line(Dump, "listening on"),
    {Server, Client} = accept_pair(Config, Listen, ?LOOP4, ServerPort, []),
    ok = close_listener(Config, Listen),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    wait_inq(Server, ?REQUEST),
    ok = send(Server, bytes(100000)),
    ok = fin_close:close(Server),
    ?assertMatch({ok, _}, read_to_closed(Client)),
    ok = gen_tcp:close(Client),
    timer:sleep(200),
    {os_pid, Pid} = erlang:port_info(Dump, os_pid),
    _ = os:cmd("kill -INT " ++ integer_to_list(Pid)),
    ok = wait_exit(Dump),
    Text = os:cmd(Tcpdump ++ " -nn -r '" ++ Capture ++ "' 2>&1"),
    ct:log("~s", [Text]),
    Lines = string:split(Text, "\n", all),
    From = "127.0.0.1." ++ integer_to_list(ServerPort) ++ " >",
    Flags = [flags(L) || L <- Lines, string:find(L, From) =/= nomatch],
    ct:log("server's segments' flags: ~p", [Flags]),
    ?assert(lists:any(fun(F) -> lists:member($F, F) end, Flags)),
    ?assertNot(lists:any(fun(F) -> lists:member($R, F) end, Flags)).

%% An active-mode socket with messages in flight closes with FIN too.
active_mode_socket(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, [{sndbuf, 65536}]),
    set_active(Config, Server),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    timer:sleep(50),
    ok = gen_tcp:send(Client, bytes(?PIPELINED)),
    Size = 2 * 1024 * 1024,
    ?assertEqual({ok, {Size, {error, closed}}},
                 reply_through_close(Config, Server, Client, Size, fun fin_close:close/1)),
    ok = gen_tcp:close(Client).

%% Any process may close a socket, not only its owner, also while the
%% port still holds output.
closed_by_non_owner(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, [{sndbuf, 65536}]),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    Self = self(),
    CloseElsewhere = fun(S) ->
                             spawn_link(fun() -> Self ! {closed, fin_close:close(S)} end),
                             receive {closed, R} -> R after 5000 -> timeout end
                     end,
    Size = 2 * 1024 * 1024,
    ?assertEqual({ok, {Size, {error, closed}}},
                 reply_through_close(Config, Server, Client, Size, CloseElsewhere)),
    ok = gen_tcp:close(Client).

%% {linger, {true, 0}} on the socket does not turn fin_close's close into
%% a reset, also while the port still holds output.
linger_zero_still_ends_with_fin(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, [{sndbuf, 65536}]),
    ok = set_linger_zero(Config, Server),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    wait_inq(Server, ?REQUEST),
    Before = abort_counters(),
    Size = 2 * 1024 * 1024,
    ?assertEqual({ok, {Size, {error, closed}}},
                 reply_through_close(Config, Server, Client, Size, fun fin_close:close/1)),
    ok = gen_tcp:close(Client),
    ?assertEqual(Before, abort_counters()).

%% abort/1 resets the peer on purpose.
abort_resets_peer(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = fin_close:abort(Server),
    ?assertEqual({error, econnreset}, gen_tcp:recv(Client, 0, 5000)),
    ?assertEqual({error, closed}, fin_close:abort(Server)).

%% Bad input: badarg for terms that are no socket or bad options (the socket
%% still works after), {error, Reason} for sockets in the wrong state.
bad_input_is_refused(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    NotSockets = [foo, 42, self(), make_ref(), {'$inet', gen_tcp_socket, x}, {'$socket', x}, "sock"],
    [?assertError(badarg, F(T)) || T <- NotSockets,
                                   F <- [fun fin_close:inq/1, fun fin_close:outq/1,
                                         fun fin_close:close/1, fun fin_close:abort/1]],
    BadOpts = [#{linger_timeout => -1}, #{linger_timeout => infinity}, #{max_drain => 1.5},
               #{notify => foo}, #{bogus => 1}, [{linger_timeout, 1}], undefined],
    [?assertError(badarg, fin_close:close(Server, O)) || O <- BadOpts],
    %% Untouched: it still carries data both ways.
    ok = send(Server, <<"ping">>),
    ?assertEqual({ok, <<"ping">>}, gen_tcp:recv(Client, 4, 5000)),
    ok = gen_tcp:send(Client, <<"pong">>),
    ?assertEqual(ok, recv_exactly(Server, 4)),
    {ok, Listen} = listen(Config, ?LOOP4, []),
    ?assertEqual({error, enotconn}, fin_close:close(Listen)),
    ?assertEqual({error, enotconn}, fin_close:abort(Listen)),
    ?assertMatch({error, _}, fin_close:inq(Listen)),
    {ok, Udp} = udp(Config),
    %% Asked right after a TCP socket, which inq/1 remembers: still refused.
    ?assertEqual({ok, 0}, fin_close:inq(Server)),
    [?assertEqual({error, eprototype}, F(Udp)) || F <- [fun fin_close:inq/1, fun fin_close:close/1,
                                                        fun fin_close:abort/1]],
    _ = kind(Config) =:= inet andalso unix_domain_is_refused(Config),
    Cat = open_port({spawn, "cat"}, []),
    ?assertEqual({error, enotsock}, fin_close:close(Cat)),
    ?assertEqual({error, enotsock}, fin_close:inq(Cat)),
    %% The listener refused above still accepts.
    {ok, C3} = gen_tcp:connect(?LOOP4, listen_port(Config, Listen), []),
    ok = gen_tcp:close(C3),
    ok = close_listener(Config, Listen),
    ok = close_udp(Udp),
    ok = fin_close:close(Server),
    [?assertEqual({error, closed}, F(Server)) || F <- [fun fin_close:inq/1, fun fin_close:outq/1,
                                                       fun fin_close:close/1, fun fin_close:abort/1]],
    ok = gen_tcp:close(Client),
    port_close(Cat).

unix_domain_is_refused(_Config) ->
    %% sun_path holds 108 bytes; priv_dir is longer.
    Path = "/tmp/fin_close_" ++ os:getpid() ++ ".sock",
    _ = file:delete(Path),
    {ok, L} = gen_tcp:listen(0, [{ifaddr, {local, Path}}, binary, {active, false}]),
    {ok, C} = gen_tcp:connect({local, Path}, 0, [binary, {active, false}]),
    {ok, S} = gen_tcp:accept(L),
    ?assertEqual({error, eprototype}, fin_close:close(S)),
    ?assertEqual({error, eprototype}, fin_close:abort(S)),
    ok = gen_tcp:send(S, <<"still open">>),
    ?assertEqual({ok, <<"still open">>}, gen_tcp:recv(C, 10, 5000)),
    [ok = gen_tcp:close(X) || X <- [S, C, L]],
    ok = file:delete(Path),
    true.

%% stats/0 counts lingering sockets and outcomes.
stats_count_outcomes(Config) ->
    #{clean := Clean0, timeout := Timeout0, drained := Drained0} = fin_close:stats(),
    {S1, C1} = pair(Config, ?LOOP4, []),
    {S2, C2} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(C1, bytes(?REQUEST)),
    wait_inq(S1, ?REQUEST),
    {ok, R1} = fin_close:close(S1, #{notify => self()}),
    {ok, R2} = fin_close:close(S2, #{notify => self(), linger_timeout => 200}),
    ?assertMatch(#{lingering := N} when N >= 2, fin_close:stats()),
    ok = gen_tcp:close(C1),
    #{outcome := clean} = outcome(R1),
    #{outcome := timeout} = outcome(R2),
    #{clean := Clean1, timeout := Timeout1, drained := Drained1} = fin_close:stats(),
    ?assertEqual({1, 1}, {Clean1 - Clean0, Timeout1 - Timeout0}),
    ?assert(Drained1 - Drained0 >= ?REQUEST),
    %% Shaped for a metrics poller: the keys of fin_close:stats() (the type,
    %% the one Erlang definition of the counters), each an integer; and
    %% every outcome but peer_closed (which hands nothing over) counted.
    Stats = fin_close:stats(),
    Counters = type_keys(fin_close, stats),
    ?assertEqual(Counters, lists:sort(maps:keys(Stats))),
    ?assertEqual([], type_atoms(fin_close, outcome) -- [peer_closed | Counters]),
    ?assert(lists:all(fun(V) -> is_integer(V) andalso V >= 0 end, maps:values(Stats))),
    gen_tcp:close(C2).

%% The keys of a map type, or the atoms of a union type, of Module, from
%% its debug info.
type_keys(Module, Type) ->
    {type, _, map, Fields} = type_form(Module, Type),
    lists:sort([Key || {type, _, map_field_exact, [{atom, _, Key}, _]} <- Fields]).

type_atoms(Module, Type) ->
    {type, _, union, Atoms} = type_form(Module, Type),
    lists:sort([A || {atom, _, A} <- Atoms]).

type_form(Module, Type) ->
    {ok, {Module, [{debug_info, {debug_info_v1, _, {Forms, _}}}]}} =
        beam_lib:chunks(code:which(Module), [debug_info]),
    hd([Form || {attribute, _, type, {T, Form, []}} <- Forms, T =:= Type]).

%% sockets/0 shows our socket with its owner, addresses, state and the
%% exact unread bytes; once closed with fin_close it shows as lingering in
%% FIN_WAIT2 with what was drained, and it is gone when the peer closes.
socket_table_shows_queues(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    ok = gen_tcp:send(Client, bytes(?REQUEST)),
    wait_inq(Server, ?REQUEST),
    {ok, ClientAddr} = inet:sockname(Client),
    {ok, ServerAddr} = inet:peername(Client),
    Kind = case kind(Config) of inet -> port; socket -> gen_tcp_socket; esock -> socket end,
    [Row] = [R || #{socket := S} = R <- fin_close:sockets(), S =:= Server],
    ?assertMatch(#{kind := Kind, owner := Owner, local := ServerAddr, peer := ClientAddr,
                   state := established, recv_q := ?REQUEST, send_q := 0}
                   when Owner =:= self(), Row),
    ?assertEqual(Kind =:= port, is_integer(maps:get(port_q, Row))),
    %% The client's own socket is there too, from the other side.
    ?assertMatch([#{state := established, recv_q := 0}],
                 [R || #{local := L} = R <- fin_close:sockets(), L =:= ClientAddr]),

    ok = fin_close:close(Server),
    IsOurs = fun(#{kind := lingering, local := L, peer := P}) -> {L, P} =:= {ServerAddr, ClientAddr};
                (_) -> false
             end,
    Lingering = fun() -> lists:filter(IsOurs, fin_close:sockets()) end,
    wait(fun() -> case Lingering() of [#{state := fin_wait2}] -> true; _ -> false end end),
    ?assertMatch([#{drained := ?REQUEST, peer_fin := false, port_pending := false,
                    remaining_ms := Left}] when Left > 25000, Lingering()),
    Printed = printed(fun fin_close:i/0),
    ct:log("~ts", [Printed]),
    ?assertMatch({match, _}, re:run(Printed, "lingering +reactor +127\\.0\\.0\\.1:[0-9]+ .* fin_wait2 ")),
    ok = gen_tcp:close(Client),
    wait(fun() -> Lingering() =:= [] end).

%% sockets/0 keeps answering, with a list, while other processes open and
%% close sockets of the group's kind as fast as they can.
socket_table_survives_churn(Config) ->
    Self = self(),
    Churn = fun Loop() ->
                    {S, C} = pair(Config, ?LOOP4, []),
                    ok = (native_close(Config))(S),
                    ok = gen_tcp:close(C),
                    receive stop -> Self ! {stopped, self()} after 0 -> Loop() end
            end,
    Churners = [spawn_link(Churn) || _ <- [1, 2, 3]],
    Tables = [fin_close:sockets() || _ <- lists:seq(1, 300)],
    [P ! stop || P <- Churners],
    [receive {stopped, P} -> ok end || P <- Churners],
    ?assert(lists:all(fun is_list/1, Tables)),
    %% Something was listed while the churn ran.
    ?assert(lists:sum([length(T) || T <- Tables]) > 0).

%% With debug logging on for the application, as documented, a socket cut
%% off by a limit gives one debug line naming the limit and the addresses,
%% through a handler filtered as OTP's default handler is; a clean close
%% gives none, and with logging off there is none.
cut_off_is_logged_at_debug(Config) ->
    Default = [{remote_gl, {fun logger_filters:remote_gl/2, stop}},
               {domain, {fun logger_filters:domain/2, {log, super, [otp, sasl]}}},
               {no_domain, {fun logger_filters:domain/2, {log, undefined, []}}}],
    ok = logger:add_handler(fin_close_test, ?MODULE,
                            #{config => #{pid => self()}, filter_default => stop, filters => Default}),
    try
        {S1, C1} = pair(Config, ?LOOP4, []),
        {ok, Quiet} = fin_close:close(S1, #{notify => self(), linger_timeout => 50}),
        #{outcome := timeout} = outcome(Quiet),
        ok = logger:set_application_level(fin_close, debug),
        {S2, C2} = pair(Config, ?LOOP4, []),
        {ok, {_, Port}} = inet:sockname(C2),
        {ok, Ref} = fin_close:close(S2, #{notify => self(), linger_timeout => 50}),
        #{outcome := timeout} = outcome(Ref),
        {S3, C3} = pair(Config, ?LOOP4, []),
        {ok, Clean} = fin_close:close(S3, #{notify => self()}),
        ok = gen_tcp:close(C3),
        #{outcome := clean} = outcome(Clean),
        timer:sleep(100),
        [#{level := debug, meta := #{fin_close := #{outcome := timeout}}} = Event] =
            [E || #{meta := #{fin_close := _}} = E <- logged()],
        Line = lists:flatten(logger_formatter:format(Event, #{single_line => true})),
        ct:log("~ts", [Line]),
        ?assertNotEqual(nomatch, string:find(Line, "ended timeout")),
        ?assertNotEqual(nomatch, string:find(Line, "127.0.0.1:" ++ integer_to_list(Port))),
        [gen_tcp:close(C) || C <- [C1, C2]]
    after
        logger:unset_application_level(fin_close),
        logger:remove_handler(fin_close_test)
    end.

log(Event, #{config := #{pid := Pid}}) ->
    Pid ! {logged, Event}.

logged() ->
    receive {logged, E} -> [E | logged()] after 0 -> [] end.

%% What F prints, captured through a group leader of our own.
printed(F) ->
    Self = self(),
    Leader = spawn_link(fun() -> capture(Self, []) end),
    Old = group_leader(),
    group_leader(Leader, self()),
    try F() after group_leader(Old, self()) end,
    Leader ! {done, Self},
    receive {printed, Leader, Text} -> Text after 5000 -> error(no_output) end.

capture(Owner, Acc) ->
    receive
        {io_request, From, Ref, Request} ->
            From ! {io_reply, Ref, ok},
            capture(Owner, [io_text(Request) | Acc]);
        {done, Owner} ->
            Owner ! {printed, self(), unicode:characters_to_list(lists:reverse(Acc))}
    end.

io_text({put_chars, unicode, Chars}) -> Chars;
io_text({put_chars, unicode, M, F, A}) -> apply(M, F, A);
io_text({put_chars, latin1, Chars}) -> Chars;
io_text(_) -> [].

%% The API module can be reloaded while sockets linger; the NIF module stays
%% loaded and the lingering sockets still end cleanly.
api_module_reload(Config) ->
    {Server, Client} = pair(Config, ?LOOP4, []),
    {ok, Ref} = fin_close:close(Server, #{notify => self()}),
    NifBefore = code:is_loaded(fin_close_nif),
    code:purge(fin_close),
    {module, fin_close} = code:load_file(fin_close),
    code:purge(fin_close),
    {module, fin_close} = code:load_file(fin_close),
    ?assertEqual(NifBefore, code:is_loaded(fin_close_nif)),
    ?assertEqual({ok, <<>>}, read_to_closed(Client)),
    ok = gen_tcp:close(Client),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    %% And the reloaded module works.
    {S2, C2} = pair(Config, ?LOOP4, []),
    ok = fin_close:close(S2),
    ?assertEqual({ok, <<>>}, read_to_closed(C2)),
    ok = gen_tcp:close(C2).

%% The scenario.

%% The client sends a request the server never reads and, 100 ms later, a
%% pipelined one; it reads 16 KiB at a time, 1 ms apart. The server sends
%% the reply and closes with Close. Returns what the client got.
slow_reader_scenario(Config, Ip, ReplySize, Close) ->
    {Server, Client} = pair(Config, Ip, []),
    Self = self(),
    Reader = spawn_link(fun() ->
                                ok = gen_tcp:send(Client, bytes(?REQUEST)),
                                timer:sleep(100),
                                _ = gen_tcp:send(Client, bytes(?PIPELINED)),
                                Self ! {self(), read_all(Client, 0)},
                                gen_tcp:close(Client)
                        end),
    wait_inq(Server, ?REQUEST),
    ok = send(Server, bytes(ReplySize)),
    ok = Close(Server),
    receive {Reader, Result} -> timer:sleep(100), Result after 60000 -> error(reader_hung) end.

%% Sends Size bytes and closes with Close while a reader on the client
%% collects them; returns what Close returned and what the reader got. On
%% the default backend the reader starts only once Close has returned, so
%% the port still holds most of the reply at close (asserted): Close must
%% not wait for the peer, and the runtime must write it out while the old
%% term is closed to the caller (a stray send fails and reaches no one).
%% The other backends return from send only when all is in the kernel, so
%% their reader runs from the start.
reply_through_close(Config, Server, Client, Size, Close) ->
    Self = self(),
    Reader = spawn_link(fun() -> receive go -> ok end, Self ! {self(), read_all(Client, 0)} end),
    Gated = kind(Config) =:= inet,
    Gated orelse (Reader ! go),
    ok = send(Server, bytes(Size)),
    Gated andalso ?assertMatch({queue_size, N} when N > 0, erlang:port_info(Server, queue_size)),
    Result = Close(Server),
    Gated andalso ?assertEqual({error, closed}, gen_tcp:send(Server, <<"stray">>)),
    Reader ! go,
    {Result, receive {Reader, Read} -> Read after 60000 -> error(reader_hung) end}.

