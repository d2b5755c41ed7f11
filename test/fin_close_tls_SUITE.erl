%% fin_close on OTP `ssl' sockets: close_notify, then FIN, then the peer's
%% records discarded until its FIN, with the same bounds, options and
%% outcomes as over TCP; the TLS connection process ends without a crash
%% report; what is no TLS-over-TCP connection is refused and left as it was.
%% Every case runs on TLS 1.2 and 1.3, each over both backends (the server's
%% ssl socket over a port, or over {inet_backend, socket}). Real HTTPS
%% clients are in fin_close_clients_SUITE.
-module(fin_close_tls_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(fin_close_ct, [kind/1, outcome/1, wait/1]).

-export([suite/0, all/0, groups/0, init_per_group/2, end_per_group/2, init_per_testcase/2,
         end_per_testcase/2]).
-export([log/2]).
-export([shape_is_known/1, reply_whole_then_closed/1, owner_exits_at_once/1,
         ssl_calls_after_close_are_harmless/1, uploading_peer_is_drained/1,
         peer_reset_mid_linger/1, peer_never_closes/1, handshake_in_progress/1,
         already_closed/1, one_of_concurrent_closes_wins/1, upgraded_client_socket/1,
         abort_drops_the_connection/1, refused_and_left_as_it_was/1,
         closer_killed_anywhere_leaves_nothing_suspended/1, blocked_sender_gives_timeout/1,
         close_racing_the_peers_close_ends_promptly/1]).

-define(MIB, 1048576).

all() ->
    [{group, tls12}, {group, tls13}].

groups() ->
    Cases = [shape_is_known, reply_whole_then_closed, owner_exits_at_once,
             ssl_calls_after_close_are_harmless, uploading_peer_is_drained,
             peer_reset_mid_linger, peer_never_closes, handshake_in_progress, already_closed,
             one_of_concurrent_closes_wins, upgraded_client_socket, abort_drops_the_connection,
             refused_and_left_as_it_was, closer_killed_anywhere_leaves_nothing_suspended,
             blocked_sender_gives_timeout, close_racing_the_peers_close_ends_promptly],
    [{tls12, [], [{group, inet}, {group, socket}]},
     {tls13, [], [{group, inet}, {group, socket}]},
     {inet, [], Cases}, {socket, [], Cases}].

suite() ->
    [{ct_hooks, [fin_close_ct_hook]}].

init_per_group(tls12, Config) ->
    fin_close_ct:tls_config('tlsv1.2', Config);
init_per_group(tls13, Config) ->
    fin_close_ct:tls_config('tlsv1.3', Config);
init_per_group(_Kind, Config) ->
    Config.

end_per_group(_Group, _Config) ->
    ok.

%% Every log event of notice level and above during a case reaches the
%% case: a TLS connection ended by fin_close must not log a crash report
%% or an alert. The clients' own ssl logging is off (see pair/1).
init_per_testcase(_Case, Config) ->
    ok = logger:add_handler(?MODULE, ?MODULE, #{level => notice, config => #{pid => self()}}),
    Config.

end_per_testcase(_Case, _Config) ->
    ok = logger:remove_handler(?MODULE),
    case logged() of
        [] -> ok;
        Events -> {fail, {logged, Events}}
    end.

log(#{level := Level, msg := Msg}, #{config := #{pid := Pid}}) ->
    Pid ! {logged, Level, Msg}.

logged() ->
    receive {logged, Level, Msg} -> [{Level, Msg} | logged()] after 0 -> [] end.

%% Cases.

%% The sslsocket of this OTP release is one fin_close knows: inq/1 and outq/1 read its TCP socket (first to fail should ssl change inside).
shape_is_known(Config) ->
    {S, C} = pair(Config),
    unread(C, S),
    ?assertMatch({ok, N} when is_integer(N), fin_close:outq(S)),
    %% Once ssl has read it all, the kernel's queue is empty.
    ?assertEqual(4 * ?MIB, read_exactly(S, 4 * ?MIB)),
    ?assertEqual({ok, 0}, fin_close:inq(S)),
    ok = fin_close:close(S),
    ok = ssl:close(C).

%% A reply (4 MiB; 64 KiB on the socket backend) reaches a client that reads only after close/2 returned, whole, then closed; outcome clean; the TLS connection process ends.
reply_whole_then_closed(Config) ->
    {S, C} = pair(Config),
    Receiver = receiver(S),
    Size = reply_size(Config),
    ok = ssl:send(S, fin_close_ct:bytes(Size)),
    {ok, Ref} = fin_close:close(S, #{notify => self()}),
    %% The client has read nothing yet: the call did not wait on it.
    ?assertEqual({Size, {error, closed}}, read_all(C)),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    wait(fun() -> not is_process_alive(Receiver) end),
    ?assertEqual({error, closed}, ssl:send(S, <<"late">>)),
    ok = ssl:close(C).

%% The owner closes and exits at once, as Cowboy's connection process does: the client still gets the reply, then closed, and the outcome is clean (not cut off).
owner_exits_at_once(Config) ->
    {S, C} = pair(Config),
    Receiver = receiver(S),
    Size = reply_size(Config),
    Self = self(),
    Owner = spawn(fun() ->
                          receive go -> ok end,
                          ok = ssl:send(S, fin_close_ct:bytes(Size)),
                          Self ! {closed, fin_close:close(S, #{notify => Self})}
                  end),
    ok = ssl:controlling_process(S, Owner),
    Owner ! go,
    {ok, Ref} = receive {closed, R} -> R after 5000 -> error(not_closed) end,
    ?assertEqual({Size, {error, closed}}, read_all(C)),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    wait(fun() -> not is_process_alive(Receiver) end),
    ok = ssl:close(C).

%% ssl:close/1, ssl:recv/3 and ssl:setopts/2 from other processes right after the close find the socket closed (or take what ssl had already read): no second close, no alert, no log line, the client served whole.
ssl_calls_after_close_are_harmless(Config) ->
    {S, C} = pair(Config),
    Size = reply_size(Config),
    ok = ssl:send(S, fin_close_ct:bytes(Size)),
    {ok, Ref} = fin_close:close(S, #{notify => self()}),
    Calls = [fun() -> ssl:close(S) end, fun() -> ssl:recv(S, 0, 1000) end,
             fun() -> ssl:setopts(S, [{active, once}]) end],
    Pids = [spawn_link(F) || F <- Calls],
    ?assertEqual({Size, {error, closed}}, read_all(C)),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    wait(fun() -> not lists:any(fun erlang:is_process_alive/1, Pids) end),
    ok = ssl:close(C).

%% A client uploading 16 MiB before it reads gets the reply whole: its records are discarded until its close.
uploading_peer_is_drained(Config) ->
    {S, C} = pair(Config),
    Up = 16 * ?MIB,
    hold(C),
    Uploader = spawn_link(fun() -> ok = ssl:send(C, fin_close_ct:bytes(Up)) end),
    Size = reply_size(Config),
    ok = ssl:send(S, fin_close_ct:bytes(Size)),
    {ok, Ref} = fin_close:close(S, #{notify => self()}),
    wait(fun() -> not is_process_alive(Uploader) end),
    %% ssl:send/2 returned once the records were queued in the client's
    %% port: the upload is all out when the port and the kernel's send
    %% queue are empty, which only the reactor's draining allows.
    {sslsocket, {gen_tcp, CPort, _, _}, _} = C,
    wait(fun() -> erlang:port_info(CPort, queue_size) =:= {queue_size, 0}
                      andalso fin_close:outq(CPort) =:= {ok, 0} end),
    release(C),
    ?assertEqual({Size, {error, closed}}, read_all(C)),
    ok = ssl:close(C),
    #{outcome := Outcome, drained := Drained} = outcome(Ref),
    ?assertEqual(clean, Outcome),
    %% The upload, as TLS records, larger than the data.
    ?assert(Drained > Up, Drained).

%% A peer that resets while the socket lingers: outcome reset, the TLS process ends without a report.
peer_reset_mid_linger(Config) ->
    {S, C} = pair(Config),
    Receiver = receiver(S),
    %% The client's TLS process is held: free, it may answer our
    %% close_notify by closing its socket first, and the reset below would
    %% find the socket closed.
    hold(C),
    ok = ssl:send(S, fin_close_ct:bytes(reply_size(Config))),
    {ok, Ref} = fin_close:close(S, #{notify => self()}),
    {sslsocket, {gen_tcp, Port, _, _}, _} = C,
    ok = fin_close:abort(Port),
    ?assertMatch(#{outcome := reset}, outcome(Ref)),
    wait(fun() -> not is_process_alive(Receiver) end),
    true = erlang:resume_process(receiver(C)).

%% A peer that neither reads nor closes is cut off at linger_timeout: outcome timeout, the TLS process ends.
peer_never_closes(Config) ->
    {S, C} = pair(Config),
    Receiver = receiver(S),
    hold(C),
    ok = ssl:send(S, fin_close_ct:bytes(reply_size(Config))),
    {ok, Ref} = fin_close:close(S, #{notify => self(), linger_timeout => 300}),
    ?assertMatch(#{outcome := timeout}, outcome(Ref)),
    wait(fun() -> not is_process_alive(Receiver) end),
    release(C),
    ok = ssl:close(C).

%% A socket whose handshake has not ended is closed with FIN (no session to end yet): the client sees FIN, the handshake fails.
handshake_in_progress(Config) ->
    {L, Port} = listen(Config),
    {ok, Raw} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, T} = ssl:transport_accept(L, 5000),
    Self = self(),
    Handshaker = spawn_link(fun() -> Self ! {handshake, ssl:handshake(T, 30000)} end),
    {ok, Ref} = fin_close:close(T, #{notify => self()}),
    ?assertEqual({error, closed}, gen_tcp:recv(Raw, 0, 5000)),
    ok = gen_tcp:close(Raw),
    ?assertMatch({handshake, {error, _}}, receive {handshake, _} = H -> H after 10000 -> none end),
    ?assertMatch(#{outcome := clean}, outcome(Ref)),
    wait(fun() -> not is_process_alive(Handshaker) end),
    ok = ssl:close(L).

%% A socket closed with ssl:close/1, or with fin_close before, is a closed socket to every function.
already_closed(Config) ->
    {S, C} = pair(Config),
    ok = ssl:close(S),
    [?assertEqual({error, closed}, F(S)) || F <- [fun fin_close:close/1, fun fin_close:abort/1,
                                                   fun fin_close:inq/1, fun fin_close:outq/1]],
    {S2, C2} = pair(Config),
    ok = fin_close:close(S2),
    ?assertEqual({error, closed}, fin_close:close(S2)),
    ?assertEqual({error, closed}, fin_close:abort(S2)),
    %% Closes while the first one finishes, and after: each says closed,
    %% and none leaves the TLS process suspended for ever.
    [begin ?assertEqual({error, closed}, fin_close:close(S2)), timer:sleep(1) end || _ <- lists:seq(1, 20)],
    wait(fun() -> not is_process_alive(receiver(S2)) end),
    [ok = ssl:close(X) || X <- [C, C2]].

%% Of eight processes closing one ssl socket at once, exactly one hands it over; the client gets the reply whole.
one_of_concurrent_closes_wins(Config) ->
    {S, C} = pair(Config),
    Size = reply_size(Config),
    ok = ssl:send(S, fin_close_ct:bytes(Size)),
    Self = self(),
    Pids = [spawn_link(fun() -> receive go -> Self ! {closed, fin_close:close(S)} end end)
            || _ <- lists:seq(1, 8)],
    [P ! go || P <- Pids],
    Results = [receive {closed, R} -> R after 10000 -> none end || _ <- Pids],
    ?assertEqual([ok], [R || R <- Results, R =:= ok]),
    ?assertEqual(7, length([R || {error, closed} = R <- Results])),
    ?assertEqual({Size, {error, closed}}, read_all(C)),
    ok = ssl:close(C).

%% A client socket made by ssl:connect/2 on a gen_tcp socket closes with fin_close too: the server reads everything, then closed.
upgraded_client_socket(Config) ->
    #{server := ServerOpts, client := ClientOpts} = ?config(tls, Config),
    {L, Port} = listen(Config, ServerOpts),
    Server = accept_one(L),
    {ok, Tcp} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, C} = ssl:connect(Tcp, [binary, {active, false}, {log_level, none} | ClientOpts], 5000),
    S = Server(),
    ok = ssl:close(L),
    ok = ssl:send(C, fin_close_ct:bytes(?MIB)),
    {ok, Ref} = fin_close:close(C, #{notify => self()}),
    ?assertEqual({?MIB, {error, closed}}, read_all(S)),
    ok = ssl:close(S),
    ?assertMatch(#{outcome := clean}, outcome(Ref)).

%% abort/1 drops the connection without close_notify: the TLS process ends, the client's next read fails, nothing lingers.
abort_drops_the_connection(Config) ->
    {S, C} = pair(Config),
    Receiver = receiver(S),
    Before = maps:get(lingering, fin_close:stats()),
    unread(C, S),
    ok = fin_close:abort(S),
    wait(fun() -> not is_process_alive(Receiver) end),
    ?assertMatch({error, _}, ssl:recv(C, 0, 5000)),
    ?assertEqual(Before, maps:get(lingering, fin_close:stats())),
    ok = ssl:close(C).

%% DTLS, a listening ssl socket and an sslsocket of unknown shape give {error, _}; none is touched.
refused_and_left_as_it_was(Config) ->
    #{server := ServerOpts} = ?config(tls, Config),
    {L, _} = listen(Config),
    {ok, D} = ssl:listen(0, [{protocol, dtls} | proplists:delete(versions, ServerOpts)]),
    Unknown = {sslsocket, {future, transport}, []},
    [?assertEqual({error, Reason}, F(Socket))
     || {Socket, Reason} <- [{L, enotconn}, {D, eprototype}, {Unknown, enotsup}],
        F <- [fun fin_close:close/1, fun fin_close:abort/1, fun fin_close:inq/1]],
    ?assertError(badarg, fin_close:close({sslsocket})),
    %% Both listening sockets still work.
    ?assertMatch({ok, {_, _}}, ssl:sockname(L)),
    ?assertMatch({ok, {_, _}}, ssl:sockname(D)),
    ok = ssl:close(D),
    ok = ssl:close(L).

%% The owner calling close/1 killed at a random point of it, 40 times: the TLS process is never left suspended; it ends, and so does its TCP socket, and the client sees the connection end.
closer_killed_anywhere_leaves_nothing_suspended(Config) ->
    [killed_closer(Config, rand:uniform(4000)) || _ <- lists:seq(1, 40)],
    ok.

killed_closer(Config, Spin) ->
    {S, C} = pair(Config),
    Receiver = receiver(S),
    {sslsocket, {gen_tcp, Tcp, _, _}, _} = S,
    Owner = spawn(fun() -> receive go -> fin_close:close(S) end end),
    ok = ssl:controlling_process(S, Owner),
    Owner ! go,
    spin(Spin),
    exit(Owner, kill),
    wait(fun() -> not is_process_alive(Receiver) end),
    wait(fun() -> tcp_closed(Tcp) end),
    ?assertMatch({_, {error, _}}, read_all(C)),
    ok = ssl:close(C).

spin(0) -> ok;
spin(N) -> spin(N - 1).

tcp_closed(Port) when is_port(Port) -> erlang:port_info(Port) =:= undefined;
tcp_closed({'$inet', gen_tcp_socket, {Server, _}}) -> not is_process_alive(Server).

%% A peer that stops reading and asks for a key update holds the TLS process on its sender: close/1 returns {error, timeout} within about a second, nothing is left lingering or open, and the socket still works (TLS 1.3).
blocked_sender_gives_timeout(Config) ->
    case ?config(tls, Config) of
        #{version := 'tlsv1.3'} -> blocked_sender_gives_timeout_(Config);
        _ -> {skip, "a key update is TLS 1.3's"}
    end.

blocked_sender_gives_timeout_(Config) ->
    {S, C} = pair(Config),
    {sslsocket, {gen_tcp, CPort, _, _}, _} = C,
    Filler = spawn(fun() -> fill(S) end),
    wait(fun() -> {ok, N} = fin_close:outq(S), N > 0 andalso stalled(S) end),
    ok = ssl:update_keys(C, read_write),
    timer:sleep(200),
    Before = #{lingering := Lingering} = fin_close:stats(),
    Fds = length(fin_close_ct:fds()),
    T0 = erlang:monotonic_time(millisecond),
    ?assertEqual({error, timeout}, fin_close:close(S)),
    ?assert(erlang:monotonic_time(millisecond) - T0 < 3000),
    ?assertMatch(#{lingering := Lingering}, fin_close:stats()),
    ?assertEqual(Fds, length(fin_close_ct:fds())),
    ?assertEqual(maps:get(refused, Before), maps:get(refused, fin_close:stats())),
    %% Left as it was: once the client reads, the connection goes on.
    exit(Filler, kill),
    ok = inet:setopts(CPort, [{active, false}]),
    _ = spawn(fun() -> read_all(C) end),
    fin_close_ct:wait(fun() -> {ok, 0} =:= fin_close:outq(S) end, 10000),
    ok = fin_close:close(S),
    ok = ssl:close(C).

%% Sends to the peer until the sender blocks.
fill(S) ->
    _ = ssl:send(S, fin_close_ct:bytes(?MIB)),
    fill(S).

%% The kernel's send queue has not moved for 100 ms.
stalled(S) ->
    {ok, A} = fin_close:outq(S),
    timer:sleep(100),
    {ok, B} = fin_close:outq(S),
    A =:= B.

%% The client closes while the server closes, 60 times: the server's close never waits for a FIN that its TCP socket, closed by the peer's close first, will not send; each ends within a second, clean or reset, none idle.
close_racing_the_peers_close_ends_promptly(Config) ->
    Outcomes = [begin
                    {S, C} = pair(Config),
                    ok = ssl:send(S, <<"reply">>),
                    Self = self(),
                    _ = spawn_link(fun() -> Self ! {client, ssl:close(C)} end),
                    spin(rand:uniform(20000)),
                    Result = fin_close:close(S, #{notify => self()}),
                    receive {client, _} -> ok after 5000 -> error(client_hung) end,
                    case Result of
                        {ok, Ref} ->
                            T0 = erlang:monotonic_time(millisecond),
                            #{outcome := O} = outcome(Ref),
                            {O, erlang:monotonic_time(millisecond) - T0 < 1000};
                        {error, closed} ->
                            {closed, true}
                    end
                end || _ <- lists:seq(1, 60)],
    ?assertEqual([], [O || {Outcome, Prompt} = O <- Outcomes,
                           not Prompt orelse not lists:member(Outcome, [clean, reset, closed])]).

%% Helpers.

%% A connected pair: the server's ssl socket of the group's kind, and an
%% ssl client over a port, both passive; the client logs nothing.
pair(Config) ->
    #{server := ServerOpts, client := ClientOpts} = ?config(tls, Config),
    {L, Port} = listen(Config, ServerOpts),
    Server = accept_one(L),
    {ok, C} = ssl:connect({127, 0, 0, 1}, Port, [binary, {active, false}, {log_level, none} | ClientOpts],
                          5000),
    S = Server(),
    ok = ssl:close(L),
    {S, C}.

%% Accepts one TLS connection on L in a process of its own, so that the
%% caller can connect meanwhile; the fun returned gives the server's socket,
%% owned by the caller.
accept_one(L) ->
    Self = self(),
    Ref = make_ref(),
    _ = spawn_link(fun() -> {ok, T} = ssl:transport_accept(L, 5000),
                            {ok, S} = ssl:handshake(T, 5000),
                            ok = ssl:controlling_process(S, Self),
                            Self ! {Ref, S}
                   end),
    fun() -> receive {Ref, S} -> S after 5000 -> error(no_server) end end.

listen(Config) ->
    #{server := ServerOpts} = ?config(tls, Config),
    listen(Config, ServerOpts).

%% gen_tcp takes inet_backend only as its first option, and ssl (OTP 25)
%% moves `ip' before it: so no `ip', which in the suites' network
%% namespace is loopback anyway.
listen(Config, ServerOpts) ->
    Backend = [{inet_backend, socket} || kind(Config) =:= socket],
    {ok, L} = ssl:listen(0, Backend ++ [binary, {active, false} | ServerOpts]),
    {ok, {_, Port}} = ssl:sockname(L),
    {L, Port}.

%% The client sends 4 MiB that the server does not read: ssl reads ahead
%% (about 1 MiB here), the rest stays in the kernel's receive queue.
unread(C, S) ->
    _ = spawn_link(fun() -> ssl:send(C, fin_close_ct:bytes(4 * ?MIB)) end),
    wait(fun() -> element(2, fin_close:inq(S)) > 0 end).

read_exactly(_, 0) -> 0;
read_exactly(S, Left) ->
    {ok, Data} = ssl:recv(S, 0, 5000),
    byte_size(Data) + read_exactly(S, Left - byte_size(Data)).

%% What a server sends before the client reads: with {inet_backend,
%% socket}, ssl:send/2 returns only once the kernel has taken all of it, so
%% no more than the kernel's buffers take while the client does not read.
reply_size(Config) ->
    case kind(Config) of
        inet -> 4 * ?MIB;
        socket -> 64 * 1024
    end.

%% A client that reads nothing, not even a FIN (which would make its port
%% close, in active mode): its TLS process suspended and its port passive.
%% It can still send.
hold({sslsocket, {gen_tcp, Port, _, _}, [Receiver | _]}) ->
    true = erlang:suspend_process(Receiver),
    {ok, Active} = inet:getopts(Port, [active]),
    put({?MODULE, held}, Active),
    ok = inet:setopts(Port, [{active, false}]).

release({sslsocket, {gen_tcp, Port, _, _}, [Receiver | _]}) ->
    ok = inet:setopts(Port, erase({?MODULE, held})),
    true = erlang:resume_process(Receiver).

%% The TLS connection process of an ssl socket.
receiver({sslsocket, _, [Receiver | _]}) -> Receiver.

read_all(C) -> read_all(C, 0).
read_all(C, Total) ->
    case ssl:recv(C, 0, 30000) of
        {ok, Data} -> read_all(C, Total + byte_size(Data));
        {error, Reason} -> {Total, {error, Reason}}
    end.
