%% Row 14: Bandit (the web server of new Phoenix apps; test/elixir_app,
%% built offline by scripts/elixir_app.sh) with ThousandIsland's own TCP
%% transport against fin_close_thousand_island: an early 413 of 2 MiB to
%% clients that upload before they read (curl without Expect, Python
%% requests, a client uploading 64 MiB at 20 MB/s), runs served whole; and
%% requests/s on short connections (`connection: close', read to the
%% end) with 1 and 4 clients, rounds interleaved, beside a floor: the bare
%% steps of a hand-over without the rest (bench_handover_floor).
-module(bench_bandit).

-include("bench.hrl").

-export([bandit_row/1]).

-import(bench_results, [median/1, ratio/3, row/8]).
-import(bench_peer, [read_to_end/3, wait_lingering_zero/0]).

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
    Servers = [{Side, bandit(Transport)}
               || {Side, Transport} <- Transports ++ [{floor, bench_handover_floor}]],
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
                        median(Get(ours)) >= 0.95 * median(Get(plain))),
                    row(14, Measure, bandit_name(floor), Get(floor), "req/s",
                        ratio(median(Get(floor)), median(Get(plain)), "plain"), "", none)]
               end || C <- [1, 4]]),
    Whole ++ Short.

bandit_name(plain) -> "Bandit, ThousandIsland's TCP";
bandit_name(ours) -> "Bandit, fin_close_thousand_island";
bandit_name(floor) -> "Bandit, a hand-over's bare steps".

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
