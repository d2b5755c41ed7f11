%% The Elixir web servers Phoenix apps run on, built offline from
%% ../shared/elixir-deps into the Mix project test/elixir_app (which has
%% fin_close as a path dependency; scripts/elixir_app.sh): Bandit on
%% ThousandIsland and Plug.Cowboy, each serving the Plug of
%% test/elixir_app/lib, which answers 413 without reading the request's
%% body. Every client case runs against the server with fin_close's
%% transport (fin_close_thousand_island, fin_close_ranch, or their TLS
%% twins), where every run must get the whole answer, no socket handed
%% over be cut off (stats/0), and over plain TCP the kernel count no reset;
%% and against the plain server in the same run, whose results
%% are recorded (ct:log, the case's comment, fin_close_elixir_results.txt in
%% the top log directory) and not asserted. Groups: HTTP/1.1 and HTTPS
%% (TLS 1.3) for each server, and HTTP/2 (h2 over TLS, h2c; curl and
%% nghttp, Debian's nghttp2 client).
-module(fin_close_elixir_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([suite/0, all/0, groups/0, init_per_suite/1, end_per_suite/1, init_per_group/2,
         end_per_group/2]).
-export([curl_upload_gets_whole_answer/1, requests_upload_gets_whole_answer/1,
         slow_uploader_gets_whole_answer/1, curl_gets_big_answer_whole/1,
         keep_alive_is_unaffected/1, websocket_close_is_unaffected/1,
         h2_early_answer_with_bandit/1, h2_early_answer_with_cowboy/1]).

-define(MIB, 1048576).
-define(PYTHON, "/usr/bin/python3").
-define(SLOW_RATE, 20000000).         % bytes/s of the slow uploader
-define(RUNS, 3).                     % runs of each client, each side

all() ->
    [{group, bandit}, {group, bandit_tls}, {group, plug_cowboy}, {group, plug_cowboy_tls},
     {group, h2}].

groups() ->
    Clients = [curl_upload_gets_whole_answer, requests_upload_gets_whole_answer,
               slow_uploader_gets_whole_answer, curl_gets_big_answer_whole],
    [{bandit, [], Clients ++ [keep_alive_is_unaffected, websocket_close_is_unaffected]},
     {bandit_tls, [], Clients},
     {plug_cowboy, [], Clients ++ [keep_alive_is_unaffected]},
     {plug_cowboy_tls, [], Clients},
     {h2, [], [h2_early_answer_with_bandit, h2_early_answer_with_cowboy]}].

suite() ->
    [{ct_hooks, [fin_close_ct_hook]}, {timetrap, {minutes, 10}}].

init_per_suite(Config) ->
    Root = filename:dirname(filename:dirname(proplists:get_value(source, ?MODULE:module_info(compile)))),
    Cargo = os:find_executable("cargo"),
    %% The archives are test fixtures kept beside the project, not in it
    %% (scripts/elixir_app.sh reads the same place).
    Archives = case os:getenv("FIN_CLOSE_ELIXIR_DEPS") of
                   false -> filename:join([Root, "..", "shared", "elixir-deps"]);
                   Dir -> Dir
               end,
    Found = filelib:wildcard(filename:join(Archives, "*.tar.gz")) =/= [],
    Out = Cargo =/= false andalso Found andalso
        os:cmd("sh " ++ filename:join(Root, "scripts/elixir_app.sh") ++ " 2>&1; echo \"exit=$?\""),
    case {is_list(Out) andalso lists:suffix("exit=0", string:trim(Out)), missing()} of
        _ when Cargo =:= false ->
            %% The OTP 27 root of make test-otp27 has no Rust: Mix cannot
            %% build fin_close there as a dependency.
            {skip, "no cargo: the Mix project builds fin_close's NIF as a dependency"};
        _ when not Found ->
            {skip, "no Elixir dependency archives in " ++ Archives ++ " (set FIN_CLOSE_ELIXIR_DEPS)"};
        {true, []} ->
            Build = lists:last(lists:droplast(string:split(string:trim(Out), "\n", all))),
            Elixir = filename:join([filename:dirname(filename:dirname(
                                      filename:absname(resolve(os:find_executable("elixir"))))),
                                    "lib", "*", "ebin"]),
            %% fin_close itself from this build, not the Mix project's copy.
            Ebins = [E || E <- filelib:wildcard(filename:join([Build, "lib", "*", "ebin"]))
                              ++ filelib:wildcard(Elixir),
                          filename:basename(filename:dirname(E)) =/= "fin_close"],
            ok = code:add_pathsa(Ebins),
            {ok, _} = application:ensure_all_started(bandit),
            {ok, _} = application:ensure_all_started(plug_cowboy),
            %% Elixir's Logger lets debug events through; fin_close's
            %% would log every socket.
            ok = logger:set_application_level(fin_close, notice),
            Priv = ?config(priv_dir, Config),
            Uploads = [{MiB, upload_file(Priv, MiB)} || MiB <- [8, 16]],
            Results = filename:join(filename:dirname(filename:dirname(Priv)),
                                    "fin_close_elixir_results.txt"),
            [{uploads, Uploads}, {results, Results}, {clients, filename:join(Root, "test/fin_close_clients_SUITE_data")}
             | fin_close_ct:tls_config('tlsv1.3', Config)];
        {true, Missing} ->
            {fail, {"run scripts/setup.sh as root", Missing}};
        {false, _} ->
            {fail, {"scripts/elixir_app.sh failed", Out}}
    end.

end_per_suite(_Config) ->
    ok.

%% Each group's two servers: {Ours, Plain}, each {Name, Port, Stop}.
init_per_group(h2, Config) ->
    Config;
init_per_group(Group, Config) ->
    Tls = lists:member(Group, [bandit_tls, plug_cowboy_tls]),
    Server = case Group of G when G =:= bandit; G =:= bandit_tls -> bandit; _ -> plug_cowboy end,
    [{scheme, case Tls of true -> https; false -> http end}, {server, Server} | Config].

end_per_group(_Group, _Config) ->
    ok.

%% Cases.

%% curl uploading 8 MiB without Expect gets the 413 with its 2 MiB whole, and no reset counted, with fin_close's transport.
curl_upload_gets_whole_answer(Config) ->
    compare(Config, {curl, 8, 2}).

%% Debian's Python requests (urllib3 1.26) posting 16 MiB before it reads gets the 413 with its 2 MiB whole.
requests_upload_gets_whole_answer(Config) ->
    compare(Config, {requests, 16, 2}).

%% A raw client uploading 64 MiB at 20 MB/s before it reads gets the 413 whole, then the server's end.
slow_uploader_gets_whole_answer(Config) ->
    compare(Config, {slow, 64, 2}).

%% curl uploading 8 MiB gets an early answer of 16 MiB whole.
curl_gets_big_answer_whole(Config) ->
    compare(Config, {curl, 8, 16}).

%% Two requests on one kept-alive connection are both answered, and the connection stays open, with fin_close's transport.
keep_alive_is_unaffected(Config) ->
    {_, Port, Stop} = server(Config, ours),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    [begin
         ok = gen_tcp:send(C, <<"GET /hello HTTP/1.1\r\nhost: localhost\r\n\r\n">>),
         ?assertMatch({ok, <<"HTTP/1.1 200", _/binary>>}, fin_close_ct:read_until(C, <<"hello">>))
     end || _ <- [1, 2]],
    ?assertEqual({error, timeout}, gen_tcp:recv(C, 0, 200)),
    ok = gen_tcp:close(C),
    Stop().

%% A WebSocket that the server closes (Bandit: a close frame, then the transport's shutdown/2 and a read until the client closes) ends with the close frame and FIN, no reset.
websocket_close_is_unaffected(Config) ->
    {_, Port, Stop} = server(Config, ours),
    Before = fin_close_ct:abort_counters(),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    ok = gen_tcp:send(C, <<"GET /ws HTTP/1.1\r\nhost: localhost\r\nconnection: upgrade\r\n"
                           "upgrade: websocket\r\nsec-websocket-version: 13\r\n"
                           "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n">>),
    {ok, <<"HTTP/1.1 101", _/binary>>} = fin_close_ct:read_until(C, <<"\r\n\r\n">>),
    ok = gen_tcp:send(C, frame(<<"hi">>)),
    ?assertEqual({ok, <<16#81, 2, "hi">>}, gen_tcp:recv(C, 4, 5000)),
    ok = gen_tcp:send(C, frame(<<"bye">>)),
    ?assertMatch({ok, <<16#88, 2, 1000:16>>}, gen_tcp:recv(C, 4, 5000)),
    %% The client answers the close frame and closes; the server then
    %% closes too, with FIN.
    ok = gen_tcp:send(C, <<16#88, 16#82, 0:32, 1000:16>>),
    ?assertEqual({error, closed}, gen_tcp:recv(C, 0, 5000)),
    ok = gen_tcp:close(C),
    timer:sleep(200),
    ?assertEqual(Before, fin_close_ct:abort_counters()),
    Stop().

%% HTTP/2 on Bandit (over TLS with ALPN h2, and h2c with prior knowledge), curl and nghttp posting 16 MiB that the server does not read: recorded on both transports, with the RST_STREAM NO_ERROR frames Bandit sends; fin_close's transport cuts nothing off. Bandit, like Cowboy, resets the stream when the answer is given before the upload ended, which now and then cuts the answer short whatever the transport (see doc/using.md).
h2_early_answer_with_bandit(Config) ->
    h2_early_answer(Config, bandit, [curl_h2, nghttp], 16, {'Elixir.Bandit.HTTP2.Connection', send_rst_stream, 4}).

%% The same on Cowboy 2.8 (Plug.Cowboy), curl posting 8 MiB: over h2c an early answer larger than the client's flow-control window is cut short whatever the transport, as Cowboy resets the stream (RST_STREAM NO_ERROR) when the handler returns, before the rest of the answer could go out.
h2_early_answer_with_cowboy(Config) ->
    h2_early_answer(Config, plug_cowboy, [curl_h2], 8, {cow_http2, rst_stream, 2}).

h2_early_answer(Config, Server, Clients, Up, Reset) ->
    Case = self(),
    {ok, _} = dbg:tracer(process, {fun({trace, _, call, _}, N) -> Case ! stream_reset, N;
                                      (_, N) -> N
                                   end, 0}),
    {ok, _} = dbg:p(all, c),
    {ok, _} = dbg:tpl(Reset, []),
    Results = try [begin
                       Cfg = [{scheme, Scheme}, {server, Server} | Config],
                       %% The client closes when the stream is reset, and
                       %% its kernel counts the answer still coming as
                       %% aborts: what the server's side did is in stats/0.
                       Stats = fin_close:stats(),
                       Ours = record(Cfg, ours, {Client, Up, 2}),
                       fin_close_ct:wait(fun() -> maps:get(lingering, fin_close:stats()) =:= 0 end, 30000),
                       CutOff = [timeout, idle, drain_limit, truncated, reclaimed, error],
                       ?assertEqual(maps:with(CutOff, Stats), maps:with(CutOff, fin_close:stats())),
                       Ours ++ record(Cfg, plain, {Client, Up, 2})
                   end || Scheme <- [https, http], Client <- Clients]
              after dbg:stop()
              end,
    Resets = fun Count(N) -> receive stream_reset -> Count(N + 1) after 0 -> N end end(0),
    ct:comment("~s; stream resets sent by the server: ~b",
               [lists:join("; ", [short(R) || Rs <- Results, R <- Rs]), Resets]),
    ok.

%% Helpers.

%% The run against fin_close's transport, asserted whole, none of the
%% sockets handed over cut off (a client may also close first, over TLS
%% before the server's close: nothing lingers then), and over plain TCP no
%% reset counted by the kernel; then the same against the plain server,
%% recorded.
compare(Config, Run) ->
    Aborts = fin_close_ct:abort_counters(),
    Stats = fin_close:stats(),
    assert_whole(record(Config, ours, Run)),
    fin_close_ct:wait(fun() -> maps:get(lingering, fin_close:stats()) =:= 0 end, 30000),
    CutOff = [timeout, idle, drain_limit, truncated, reclaimed, error],
    ?assertEqual(maps:with(CutOff, Stats), maps:with(CutOff, fin_close:stats())),
    ?config(scheme, Config) =:= http andalso ?assertEqual(Aborts, fin_close_ct:abort_counters()),
    Plain = record(Config, plain, Run),
    ct:comment("fin_close: ~b of ~b whole; plain: ~b of ~b whole",
               [?RUNS, ?RUNS, length([W || #{whole := true = W} <- Plain]), length(Plain)]).

assert_whole(Results) ->
    [?assertEqual({Side, Run, true}, {Side, Run, Whole}) || #{side := Side, run := Run, whole := Whole} <- Results],
    ok.

%% ?RUNS runs of Run against Side's server (one for the slow uploader);
%% each result logged and appended to the results file.
record(Config, Side, {Client, _, _} = Run) ->
    {Name, Port, Stop} = server(Config, Side),
    N = case Client of slow -> 1; _ -> ?RUNS end,
    Results = [run(Config, Side, Name, Port, Run) || _ <- lists:seq(1, N)],
    Stop(),
    Lines = [[Line, $\n] || #{line := Line} <- Results],
    ct:log("~s", [Lines]),
    ok = file:write_file(?config(results, Config), Lines, [append]),
    Results.

run(Config, Side, Name, Port, {Client, Up, MiB} = Run) ->
    {Exit, Output} = client(Config, Client, Port, Up, MiB),
    Whole = Exit =:= 0 andalso fin_close_ct:client_result(Client, Output) =:= {413, MiB * ?MIB},
    Text = lists:flatten(string:replace(string:trim(Output), "\n", " | ", all)),
    Line = io_lib:format("~s ~s ~s upload ~b MiB, answer ~b MiB: ~s; exit ~b: ~s",
                         [calendar:system_time_to_rfc3339(erlang:system_time(second)), Name, Client,
                          Up, MiB, case Whole of true -> "whole"; false -> "NOT whole" end, Exit, Text]),
    #{side => Side, run => Run, whole => Whole, line => lists:flatten(Line)}.

short(#{run := {Client, _, _}, line := Line, whole := Whole}) ->
    Server = hd(string:split(tl(string:find(Line, " ")), " ")),
    io_lib:format("~s ~s: ~s", [Server, Client, case Whole of true -> "whole"; false -> "cut" end]).

%% The servers: Bandit or Plug.Cowboy serving FinCloseElixirApp, with
%% fin_close's transport (ours) or the plain one, over the group's scheme.
%% Started by a process of their own (the servers link to their starter);
%% Stop ends it.
server(Config, Side) ->
    Scheme = ?config(scheme, Config),
    Case = self(),
    Keeper = spawn(fun() ->
                           Started = start(?config(server, Config), Scheme, Side, Config),
                           Case ! {self(), Started},
                           receive stop -> ok end
                   end),
    receive
        {Keeper, {Name, Port}} ->
            {Name, Port, fun() -> Keeper ! stop, ok end}
    after 10000 ->
        error(server_not_started)
    end.

start(bandit, Scheme, Side, Config) ->
    Transport = case {Scheme, Side} of
                    {http, ours} -> fin_close_thousand_island;
                    {https, ours} -> fin_close_thousand_island_ssl;
                    {http, plain} -> 'Elixir.ThousandIsland.Transports.TCP';
                    {https, plain} -> 'Elixir.ThousandIsland.Transports.SSL'
                end,
    #{server := Tls} = ?config(tls, Config),
    TransportOpts = case Scheme of http -> []; https -> Tls end,
    {ok, Pid} = 'Elixir.Bandit':start_link(
                  [{plug, 'Elixir.FinCloseElixirApp'}, {scheme, Scheme}, {port, 0},
                   {ip, {127, 0, 0, 1}}, {startup_log, false},
                   {thousand_island_options, [{transport_module, Transport},
                                              {transport_options, TransportOpts}]}]),
    {ok, {_, Port}} = 'Elixir.ThousandIsland':listener_info(Pid),
    {io_lib:format("bandit(~s)", [Transport]), Port};
start(plug_cowboy, Scheme, Side, Config) ->
    #{server := Tls} = ?config(tls, Config),
    %% A name of its own: the last listener of that name may still be
    %% going away.
    Options = [{ref, {?MODULE, make_ref()}}, {port, 0}, {ip, {127, 0, 0, 1}}
               | case Scheme of http -> []; https -> Tls end],
    Spec = 'Elixir.Plug.Cowboy':child_spec([{scheme, Scheme}, {plug, 'Elixir.FinCloseElixirApp'},
                                            {options, Options}]),
    %% The documented way: fin_close_ranch:child_spec/1 swaps the transport.
    #{start := {M, F, [Ref, Transport | _] = Args}} = case Side of
                                                          ours -> fin_close_ranch:child_spec(Spec);
                                                          plain -> Spec
                                                      end,
    {ok, _} = apply(M, F, Args),
    {io_lib:format("plug_cowboy(~s)", [Transport]), ranch:get_port(Ref)}.

%% The clients.

client(Config, Client, Port, Up, MiB) ->
    Upload = proplists:get_value(Up, ?config(uploads, Config)),
    Url = url(Config, Port, MiB),
    case Client of
        curl -> curl(Config, Upload, Url, []);
        curl_h2 -> curl(Config, Upload, Url, h2(Config));
        requests -> program(Config, ?PYTHON, [script(Config, "post.py"), Url, integer_to_list(Up * ?MIB)]);
        slow -> program(Config, ?PYTHON, [script(Config, "slow_upload.py"), integer_to_list(Port),
                                          integer_to_list(Up * ?MIB), integer_to_list(?SLOW_RATE),
                                          scheme_name(Config)]);
        nghttp -> program(Config, "/bin/sh", ["-c", "nghttp -d \"$1\" \"$2\" > \"$3\" && "
                                                "echo result 413 $(wc -c < \"$3\")", "sh", Upload,
                                              Url, filename:join(?config(priv_dir, Config), "answer")])
    end.

curl(Config, Upload, Url, Extra) ->
    program(Config, os:find_executable("curl"),
            ["-sS", "-o", "/dev/null", "-w", "result %{http_code} %{size_download}\n",
             "--data-binary", "@" ++ Upload, "-H", "Expect:" | Extra] ++ [Url]).

h2(Config) ->
    case ?config(scheme, Config) of
        https -> ["--http2"];
        http -> ["--http2-prior-knowledge"]
    end.

%% The slow uploader posts to /, which answers 2 MiB by default.
url(Config, Port, MiB) ->
    io_lib:format("~s://127.0.0.1:~b/early?size=~b", [?config(scheme, Config), Port, MiB * ?MIB]).

scheme_name(Config) ->
    case ?config(scheme, Config) of http -> "tcp"; https -> "tlsv1.3" end.

script(Config, Name) -> filename:join(?config(clients, Config), Name).

%% Runs a client program (fin_close_ct:run_program/3); over HTTPS, it
%% trusts this run's root (nghttp checks none).
program(Config, Exe, Args) ->
    CaFile = case ?config(scheme, Config) of
                 http -> undefined;
                 https -> maps:get(cafile, ?config(tls, Config))
             end,
    fin_close_ct:run_program(Exe, Args, CaFile).

missing() ->
    [P || P <- ["curl", "timeout", "nghttp", "elixir", "mix"], os:find_executable(P) =:= false]
        ++ [python3_requests || os:cmd(?PYTHON ++ " -c 'import requests' 2>&1 && echo ok") =/= "ok\n"].

resolve(Path) ->
    case file:read_link_all(Path) of
        {ok, Target} -> resolve(filename:absname(Target, filename:dirname(Path)));
        {error, _} -> Path
    end.

%% A file of MiB mebibytes (zeros, sparse) for the clients to upload.
upload_file(Priv, MiB) ->
    Path = filename:join(Priv, "upload_" ++ integer_to_list(MiB) ++ "_mib"),
    {ok, F} = file:open(Path, [write, raw]),
    ok = file:pwrite(F, MiB * ?MIB - 1, <<0>>),
    ok = file:close(F),
    Path.

%% A masked WebSocket text frame, as a client sends it.
frame(Text) ->
    Mask = <<1, 2, 3, 4>>,
    Masked = crypto:exor(Text, binary:part(binary:copy(Mask, byte_size(Text) div 4 + 1), 0, byte_size(Text))),
    <<16#81, 1:1, (byte_size(Text)):7, Mask/binary, Masked/binary>>.
