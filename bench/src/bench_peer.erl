%% The other ends of the benchmark's connections: peers in an OS process of
%% their own (native/examples/bench_peer.rs, so that this VM can spend its
%% descriptor limit on server sockets), clients in this VM; and waiting
%% until fin_close has ended every socket handed to it.
-module(bench_peer).

-include("bench.hrl").

-export([peer_connections/3, peer_command/2, peer_ended/1]).
-export([read_to_end/3]).
-export([close_pair/2, wait/1, wait_lingering_zero/0]).

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

%% A client's read of an answer to the server's end of stream (Net is
%% gen_tcp or ssl).
read_to_end(Net, C, Acc) ->
    case Net:recv(C, 0, 10000) of
        {ok, Data} -> read_to_end(Net, C, [Acc, Data]);
        {error, closed} -> {ok, iolist_to_binary(Acc)};
        {error, _} = Error -> Error
    end.

close_pair(S, C) ->
    ok = fin_close:close(S),
    gen_tcp:close(C),
    wait_lingering_zero().

%% Each round starts once the last one's sockets have ended, so that the
%% reactor's work on them is not counted against the next.
wait_lingering_zero() ->
    wait(fun() -> maps:get(lingering, fin_close:stats()) =:= 0 end).

wait(F) -> fin_close_ct:wait(F, 60000).
