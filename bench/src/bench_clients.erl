%% What the clients of a server that closes get: the slow reader of make
%% demo (row 4), and real HTTP clients that upload before they read, over
%% TCP (row 8) and TLS (row 11, with the TLS close's latency).
-module(bench_clients).

-include("bench.hrl").

-export([delivery_row/1, clients_row/1, https_row/2]).

-import(bench_results, [median/1, percentile/2, ratio/3, row/8, target/2]).
-import(bench_methods, [close_with/2, name/1]).
-import(bench_peer, [wait/1, wait_lingering_zero/0]).

-define(CLIENT_RUNS, 10).           % runs per real client and close (rows 8 and 11)
-define(TLS_LATENCY_N, 500).        % TLS connections per latency round (row 11)

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
    Run = fun(Client, M) -> client_run(Client, fun(S) -> close_with(M, S) end, none, Upload, Post) end,
    Rows = served_whole(8, "real clients served whole", "", fun bench_methods:name/1, [native, fin_close], Run),
    ok = file:delete(Upload),
    Rows.

%% Rows 8 and 11: ?CLIENT_RUNS runs of each client against each close, and
%% how many of them Run(Client, Method) found served whole.
served_whole(Row, Measure, Prefix, Name, Methods, Run) ->
    [begin
         Whole = length([ok || _ <- lists:seq(1, ?CLIENT_RUNS), Run(Client, M)]),
         Note = io_lib:format("served whole: ~b of ~b", [Whole, ?CLIENT_RUNS]),
         io:format("~s~s, ~s: ~s~n", [Prefix, Client, Name(M), Note]),
         row(Row, Measure, Client ++ ", " ++ Name(M), [Whole], "runs", Note,
             target(M, io_lib:format("~b of ~b", [?CLIENT_RUNS, ?CLIENT_RUNS])),
             M =/= fin_close orelse Whole =:= ?CLIENT_RUNS)
     end || Client <- ["curl", "requests"], M <- Methods].

%% Rows 8 and 11: one run of Client (curl or requests) posting Upload to a
%% server that reads the request's head, answers 413 with 4 MiB (over TLS:
%% 2 MiB) and closes with Close; whether the client got all of it. Tls is
%% none, or the server's ssl options and the root for the clients.
client_run(Client, Close, Tls, Upload, Post) ->
    {Net, Size, Scheme, CaOpt, CaEnv, ServerOpts} =
        case Tls of
            none -> {gen_tcp, 4 * 1048576, "http", "", "", []};
            {Server, CaFile} -> {ssl, 2 * 1048576, "https", " --cacert " ++ CaFile,
                                 "REQUESTS_CA_BUNDLE=" ++ CaFile ++ " ", Server}
        end,
    {ok, L} = Net:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}, {packet, http_bin} | ServerOpts]),
    {ok, {_, Port}} = case Net of gen_tcp -> inet:sockname(L); ssl -> ssl:sockname(L) end,
    Answer = [<<"HTTP/1.1 413 Payload Too Large\r\ncontent-length: ">>, integer_to_binary(Size),
              <<"\r\nconnection: close\r\n\r\n">>, binary:copy(<<"a">>, Size)],
    _ = spawn(fun() ->
                      {ok, S} = accept(Net, L),
                      ok = http_head(Net, S),
                      _ = Net:send(S, Answer),
                      Close(S)
              end),
    Url = Scheme ++ "://127.0.0.1:" ++ integer_to_list(Port) ++ "/",
    Cmd = case Client of
              "curl" -> "curl -sS" ++ CaOpt ++ " -o /dev/null -w 'result %{http_code} %{size_download}'"
                            " --data-binary @" ++ Upload ++ " -H 'Expect:' " ++ Url;
              "requests" -> "/usr/bin/python3 " ++ Post ++ " " ++ Url ++ " 16777216 5"
          end,
    Out = os:cmd(CaEnv ++ "timeout -k 5 60 " ++ Cmd ++ " 2>/dev/null; echo \" exit=$?\""),
    ok = Net:close(L),
    wait_lingering_zero(),
    Expected = case Client of "curl" -> "result 413 ~b exit=0~n"; "requests" -> "413 ~b~n exit=0~n" end,
    Out =:= lists:flatten(io_lib:format(Expected, [Size])).

accept(gen_tcp, L) ->
    gen_tcp:accept(L);
accept(ssl, L) ->
    {ok, T} = ssl:transport_accept(L),
    ssl:handshake(T, 10000).

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
    Run = fun(Cl, M) -> client_run(Cl, fun(S) -> tls_close(M, S) end, {Server, CaFile}, Upload, Post) end,
    Whole = served_whole(11, "HTTPS clients served whole", "https ", fun tls_name/1, [ssl, fin_close], Run),
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
