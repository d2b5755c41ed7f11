%% Rows 10 and 13: a real Cowboy with Ranch's own transports against
%% fin_close's.
-module(bench_cowboy).

-include("bench.hrl").

-export([cowboy_row/1, short_connections_row/1]).

-import(bench_results, [median/1, ratio/3, row/8]).
-import(bench_peer, [read_to_end/3, wait/1, wait_lingering_zero/0]).

-define(COWBOY_RUNS, 5).

%% Row 10: a real Cowboy (Debian's, see scripts/cowboy.sh) with Ranch's own
%% transport against fin_close_ranch: an early 413 (2 MiB) to clients that
%% upload before they read, how long the connection process lives after
%% the reply, processes held by 200 connections still uploading, and
%% requests/s on 2,000 short connections.
cowboy_row(Root) ->
    start_cowboy(Root),
    Post = filename:join(Root, "test/fin_close_clients_SUITE_data/post.py"),
    Slow = filename:join(Root, "test/fin_close_clients_SUITE_data/slow_upload.py"),
    Rows = lists:append([cowboy_rows(T, Post, Slow) || T <- [ranch_tcp, fin_close_ranch]]),
    _ = application:stop(cowboy),
    Rows.

cowboy_rows(Transport, Post, Slow) ->
    Early = #{mode => early, status => 413, size => 2097152, report => {self(), make_ref()}},
    {Port, Name} = listener(tcp, Transport, [], Early),
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
    {SmallPort, SmallName} = listener(tcp, Transport, [], #{mode => small}),
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

%% A Cowboy listener on Transport (tcp, or tls with the server's ssl
%% options Tls) serving the suites' handler in State's mode: its port and
%% name.
listener(Kind, Transport, Tls, State) ->
    Name = make_ref(),
    Dispatch = cowboy_router:compile([{'_', [{'_', fin_close_cowboy_handler, State}]}]),
    Protocol = case Kind of tcp -> cowboy_clear; tls -> cowboy_tls end,
    {ok, _} = ranch:start_listener(Name, Transport,
                                   #{socket_opts => [{ip, {127, 0, 0, 1}}, {port, 0}, {backlog, 1024} | Tls],
                                     max_connections => infinity},
                                   Protocol, #{env => #{dispatch => Dispatch}}),
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

%% Row 13: a real Cowboy (as row 10) answering `200 hello' to short
%% connections, with 1, 4 and 16 clients at once (TLS: 1 and 4), Ranch's
%% own transport against fin_close's, rounds interleaved; the clients are
%% processes of this VM that read each answer to the server's end.
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
                  {Net, Opts, Tls} = case Kind of tcp -> {gen_tcp, [], []}; tls -> {ssl, Client, Server} end,
                  Listeners = [{T, listener(Kind, T, Tls, #{mode => small})} || T <- [Plain, Ours]],
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
