%% Real HTTP clients against an early answer. A tiny HTTP/1.1 server in this
%% suite reads a request's head and none of its body, answers at once (413
%% or 200, a body of 2 or 4 MiB, connection: close) and closes, with
%% fin_close or with gen_tcp:close/1. The clients are OS programs: curl,
%% Python requests, and a raw Python client that uploads 64 MiB at about
%% 20 MB/s before it reads anything. With fin_close every client must get the
%% whole answer; with gen_tcp:close/1 the same runs are recorded (ct:log,
%% the case's comment, and fin_close_clients_results.txt in the top log
%% directory), and one case asserts that requests fails, reset.
%%
%% Clients that read nothing until their upload is done (requests, the raw
%% one) get 2 MiB: on {inet_backend, socket} gen_tcp:send/2 returns only once
%% the kernel has taken the whole answer, so an answer its buffers cannot
%% hold (4 MiB here) deadlocks such a server and client before any close,
%% whatever the close. curl reads as it uploads and gets 4 MiB too.
%%
%% Every case runs on the server socket kinds `inet' (default backend) and
%% `socket' ({inet_backend, socket}), and on a real Cowboy (group `cowboy',
%% Cowboy 2.8, Ranch 2.1 and Cowlib 2.9 as Debian 12 ships them, unpacked by
%% scripts/cowboy.sh), where fin_close is the transport fin_close_ranch and
%% the recorded side is ranch_tcp, Cowboy's own close and linger.
-module(fin_close_clients_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(fin_close_ct, [kind/1]).

-export([suite/0, all/0, groups/0, init_per_suite/1, end_per_suite/1, init_per_group/2,
         end_per_group/2]).
-export([curl_gets_whole_answer/1, requests_gets_whole_answer/1, slow_uploader_gets_whole_answer/1,
         curl_with_gen_tcp_close/1, requests_with_gen_tcp_close/1,
         slow_uploader_with_gen_tcp_close/1, gen_tcp_close_fails_requests/1,
         cowboy_reads_whole_body/1, cowboy_keep_alive_and_pipelined/1,
         cowboy_connection_gone_after_reply/1, ranch_transport_options_and_fallbacks/1,
         listener_options_go_with_the_listener/1]).

-define(LOOP4, {127, 0, 0, 1}).
-define(MIB, 1048576).
-define(PYTHON, "/usr/bin/python3").
-define(SLOW_RATE, 20000000).         % bytes/s of the raw client's upload

all() ->
    [{group, tcp}, {group, tls12}, {group, tls13}].

groups() ->
    Cases = [curl_gets_whole_answer, requests_gets_whole_answer, slow_uploader_gets_whole_answer,
             curl_with_gen_tcp_close, requests_with_gen_tcp_close, slow_uploader_with_gen_tcp_close,
             gen_tcp_close_fails_requests],
    Cowboy = [cowboy_reads_whole_body, cowboy_keep_alive_and_pipelined,
              cowboy_connection_gone_after_reply, ranch_transport_options_and_fallbacks,
              listener_options_go_with_the_listener],
    %% Cowboy's own linger may serve requests where gen_tcp:close/1 fails it:
    %% recorded there, not asserted.
    %% Over TLS, the same clients over HTTPS, against ssl:close/1 (and
    %% Cowboy over ranch_ssl) where TCP has gen_tcp:close/1.
    Kinds = [{group, inet}, {group, socket}],
    [{tcp, [], Kinds ++ [{group, cowboy}]},
     {tls12, [], Kinds ++ [{group, cowboy_tls}]},
     {tls13, [], Kinds ++ [{group, cowboy_tls}]},
     {inet, [], Cases}, {socket, [], Cases},
     {cowboy, [], (Cases -- [gen_tcp_close_fails_requests]) ++ Cowboy},
     {cowboy_tls, [], (Cases -- [gen_tcp_close_fails_requests])
                      ++ [cowboy_connection_gone_after_reply, listener_options_go_with_the_listener]}].

suite() ->
    [{ct_hooks, [fin_close_ct_hook]}].

init_per_suite(Config) ->
    case missing_clients() of
        [] ->
            Priv = ?config(priv_dir, Config),
            Uploads = [{MiB, upload_file(Priv, MiB)} || MiB <- [16, 64]],
            [{uploads, Uploads}, {results, results_file(Priv)} | Config];
        Missing ->
            {fail, {"run scripts/setup.sh as root", Missing}}
    end.

end_per_suite(_Config) ->
    ok.

init_per_group(tls12, Config) ->
    fin_close_ct:tls_config('tlsv1.2', Config);
init_per_group(tls13, Config) ->
    fin_close_ct:tls_config('tlsv1.3', Config);
init_per_group(Cowboy, Config) when Cowboy =:= cowboy; Cowboy =:= cowboy_tls ->
    Plugins = string:trim(os:cmd("sh " ++ filename:join(project_dir(), "scripts/cowboy.sh"))),
    Ebins = filelib:wildcard(filename:join(Plugins, "*/ebin")),
    case [ok || E <- Ebins, code:add_patha(E) =:= true] of
        [_, _, _] ->
            {ok, _} = application:ensure_all_started(cowboy),
            %% The kind of the cases, whichever group holds them.
            [{kind, cowboy} | Config];
        _ ->
            {fail, {"no Cowboy: scripts/cowboy.sh printed", Plugins}}
    end;
init_per_group(_Kind, Config) ->
    Config.

end_per_group(Cowboy, _Config) when Cowboy =:= cowboy; Cowboy =:= cowboy_tls ->
    _ = application:stop(cowboy),
    _ = application:stop(ranch),
    ok;
end_per_group(_Kind, _Config) ->
    ok.

%% Cases.

%% curl uploading 16 or 64 MiB gets a 413 with 4 MiB or a 200 with 2 MiB whole, exit 0, from fin_close.
curl_gets_whole_answer(Config) ->
    assert_whole(record(Config, fin_close, runs(curl))).

%% Python requests posting 16 or 64 MiB gets a 413 with its 2 MiB whole from fin_close.
requests_gets_whole_answer(Config) ->
    assert_whole(record(Config, fin_close, runs(requests))).

%% A raw client uploading 64 MiB at 20 MB/s before it reads gets the whole 413, then FIN, from fin_close.
slow_uploader_gets_whole_answer(Config) ->
    assert_whole(record(Config, fin_close, runs(slow))).

%% Records what curl gets from gen_tcp:close/1 in the same runs (not asserted).
curl_with_gen_tcp_close(Config) ->
    record(Config, gen_tcp, runs(curl)).

%% Records what Python requests gets from gen_tcp:close/1 in the same runs (not asserted).
requests_with_gen_tcp_close(Config) ->
    record(Config, gen_tcp, runs(requests)).

%% Records what the raw slow uploader gets from gen_tcp:close/1 in the same run (not asserted).
slow_uploader_with_gen_tcp_close(Config) ->
    record(Config, gen_tcp, runs(slow)).

%% gen_tcp:close/1 (ssl:close/1 over TLS) resets Python requests posting 16 MiB before it reads the 413: the bug fin_close prevents.
gen_tcp_close_fails_requests(Config) ->
    [#{whole := Whole, output := Output}] = record(Config, gen_tcp, [{requests, 16, {413, 2}}]),
    ?assertNot(Whole),
    %% Python's urllib3 before 2.3 reports the reset; 2.3 (Debian 13) sends
    %% on past it, reads what came before it and finds the answer cut short.
    %% Over TLS the reset shows as an SSL error (EOF in violation of the
    %% protocol, or the reset itself).
    ?assert(lists:any(fun(Text) -> string:find(Output, Text) =/= nomatch end,
                      ["Connection reset by peer", "IncompleteRead", "SSLEOFError", "SSLError"]),
            Output).

%% The runs: {client, upload MiB, {status, answer MiB}}.
runs(curl) -> [{curl, Up, Answer} || Up <- [16, 64], Answer <- [{413, 4}, {200, 2}]];
runs(requests) -> [{requests, Up, {413, 2}} || Up <- [16, 64]];
runs(slow) -> [{slow, 64, {413, 2}}].

%% `gen_tcp' stands for the platform's own close: gen_tcp:close/1, or
%% ssl:close/1 over TLS.
close_fun(_, fin_close) ->
    Case = self(),
    fun(S) ->
            case fin_close:close(S, #{notify => Case}) of
                {ok, _Ticket} -> ok;
                Other -> Other
            end
    end;
close_fun(Config, gen_tcp) -> fun(S) -> (net(Config)):close(S) end.

close_name(Config, Close) ->
    case {kind(Config), Close} of
        {cowboy, _} -> atom_to_list(transport(Config, Close));
        {_, fin_close} -> "fin_close:close/1";
        {_, gen_tcp} -> atom_to_list(net(Config)) ++ ":close/1"
    end.

%% The Ranch transport that stands for Close on Cowboy.
transport(Config, fin_close) -> tls(Config, fin_close_ranch, fin_close_ranch_ssl);
transport(Config, gen_tcp) -> tls(Config, ranch_tcp, ranch_ssl).

%% gen_tcp or ssl.
net(Config) -> tls(Config, gen_tcp, ssl).

tls(Config, Tcp, Tls) ->
    case ?config(tls, Config) of
        undefined -> Tcp;
        _ -> Tls
    end.

tls_name(Config) ->
    case ?config(tls, Config) of
        undefined -> "tcp";
        #{version := Version} -> atom_to_list(Version)
    end.

%% Served whole, and the socket ended at once after: clean, or reset by a
%% client that closed without reading our FIN (or, over TLS, our
%% close_notify), never cut off by a bound.
assert_whole(Results) ->
    [?assertEqual({Run, true, {ok, ok}, true}, {Run, Whole, Served, lists:member(Ended, [clean, reset])})
     || #{run := Run, whole := Whole, served := Served, ended := Ended} <- Results],
    ok.

%% Runs each of Runs against a server closing with Close; logs every result,
%% sums them up in the case's comment and appends them to the results file.
record(Config, Close, Runs) ->
    Results = [run(Config, Close, R) || R <- Runs],
    Stamp = calendar:system_time_to_rfc3339(erlang:system_time(second)),
    Lines = [io_lib:format("~s ~s ~s ~s ~s~n", [Stamp, tls_name(Config), kind(Config),
                                                 close_name(Config, Close), Line])
             || #{line := Line} <- Results],
    ct:log("~s", [Lines]),
    ok = file:write_file(?config(results, Config), Lines, [append]),
    Whole = length([W || #{whole := true = W} <- Results]),
    ct:comment("~s: whole ~b of ~b; ~s", [close_name(Config, Close), Whole, length(Results),
                                          lists:join("; ", [short(R) || R <- Results])]),
    Results.

short(#{run := {_, Up, {Status, MiB}}, whole := true}) ->
    io_lib:format("~b MiB -> ~b ~b MiB: whole", [Up, Status, MiB]);
short(#{run := {_, Up, {Status, MiB}}, exit := Exit, text := Text}) ->
    io_lib:format("~b MiB -> ~b ~b MiB: NOT whole, exit ~b: ~s", [Up, Status, MiB, Exit, Text]).

%% One run: a server answering Answer and closing with Close, the client
%% uploading Up MiB. Whole when the client exited 0 with the status and the
%% exact body size (and, for the raw client, its upload done and the answer
%% ended by FIN).
run(Config, Close, {Client, Up, {Status, MiB}} = Run) ->
    {Port, Stop, Ref} = start_server(Config, Status, MiB * ?MIB, Close),
    T0 = erlang:monotonic_time(millisecond),
    {Exit, Output} = client(Config, Client, Port, Up),
    Ms = erlang:monotonic_time(millisecond) - T0,
    Served = receive {served, Ref, S} -> S after 10000 -> no_report end,
    %% fin_close tells the case how the socket ended (also through the
    %% listener's options on Cowboy).
    Ended = case Close of
                fin_close -> receive {fin_close, _, #{outcome := O}} -> O after 30000 -> no_outcome end;
                gen_tcp -> not_told
            end,
    ok = Stop(),
    Whole = Exit =:= 0 andalso fin_close_ct:client_result(Client, Output) =:= {Status, MiB * ?MIB},
    Text = lists:flatten(string:replace(string:trim(Output), "\n", " | ", all)),
    Line = io_lib:format("~s upload ~b MiB, answer ~b with ~b MiB: ~s; exit ~b after ~b ms, server ~w, ended ~w: ~s",
                         [Client, Up, Status, MiB, case Whole of true -> "whole"; false -> "NOT whole" end,
                          Exit, Ms, Served, Ended, Text]),
    #{run => Run, whole => Whole, exit => Exit, served => Served, ended => Ended, output => Output, text => Text,
      line => Line}.

%% The clients.

client(Config, curl, Port, Up) ->
    Answer = filename:join(?config(priv_dir, Config), "answer"),
    run_program(Config, os:find_executable("curl"),
                ["-sS", "-o", Answer, "-w", "result %{http_code} %{size_download}\n",
                 "--data-binary", "@" ++ proplists:get_value(Up, ?config(uploads, Config)),
                 "-H", "Expect:", url(Config, Port)]);
client(Config, requests, Port, Up) ->
    run_program(Config, ?PYTHON, [script(Config, "post.py"), url(Config, Port), integer_to_list(Up * ?MIB)]);
client(Config, slow, Port, Up) ->
    run_program(Config, ?PYTHON, [script(Config, "slow_upload.py"), integer_to_list(Port),
                                  integer_to_list(Up * ?MIB), integer_to_list(?SLOW_RATE),
                                  tls_name(Config)]).

url(Config, Port) ->
    tls(Config, "http", "https") ++ "://127.0.0.1:" ++ integer_to_list(Port) ++ "/".

script(Config, Name) -> filename:join(?config(data_dir, Config), Name).

%% Runs a client program (fin_close_ct:run_program/3); over TLS, it
%% trusts this run's root.
run_program(Config, Exe, Args) ->
    CaFile = case ?config(tls, Config) of
                 undefined -> undefined;
                 #{cafile := File} -> File
             end,
    fin_close_ct:run_program(Exe, Args, CaFile).

missing_clients() ->
    [curl || os:find_executable("curl") =:= false]
        ++ [timeout || os:find_executable("timeout") =:= false]
        ++ [python3_requests || os:cmd(?PYTHON ++ " -c 'import requests' 2>&1 && echo ok") =/= "ok\n"].

%% The server: one acceptor process per connection; each reads the request's
%% head, none of its body, answers Status with Size bytes and closes with
%% Close, then tells the case what send and Close returned. Returns the port,
%% a fun that stops the server and the tag of the reports. On Cowboy, a
%% handler does the same through the transport that stands for Close.
start_server(Config, Status, Size, Close) ->
    case kind(Config) of
        cowboy ->
            Ref = make_ref(),
            State = #{mode => early, status => Status, size => Size, report => {self(), Ref}},
            {Port, Stop} = start_cowboy(Config, transport(Config, Close), State),
            {Port, Stop, Ref};
        _ ->
            {Port, L, Ref} = start_acceptor(Config, Status, Size, close_fun(Config, Close)),
            {Port, fun() -> (net(Config)):close(L) end, Ref}
    end.

%% Cowboy with its default protocol options, every path to the handler in
%% State's mode.
start_cowboy(Config, Transport, State) ->
    Name = {?MODULE, make_ref()},
    Dispatch = cowboy_router:compile([{'_', [{'_', fin_close_cowboy_handler, State}]}]),
    {Protocol, TlsOpts} = case ?config(tls, Config) of
                              undefined -> {cowboy_clear, []};
                              #{server := Server} -> {cowboy_tls, Server}
                          end,
    Ours = [{fin_close, #{notify => self()}} || Transport =:= fin_close_ranch orelse Transport =:= fin_close_ranch_ssl],
    {ok, _} = ranch:start_listener(Name, Transport, #{socket_opts => [{ip, ?LOOP4}, {port, 0} | Ours ++ TlsOpts]},
                                   Protocol, #{env => #{dispatch => Dispatch}}),
    {ranch:get_port(Name), fun() -> ranch:stop_listener(Name) end}.

start_acceptor(Config, Status, Size, Close) ->
    Net = net(Config),
    Tls = case ?config(tls, Config) of undefined -> []; #{server := Server} -> Server end,
    %% gen_tcp takes inet_backend only as the first option, and ssl (OTP 25)
    %% moves `ip' before it: the default backend is left out, and over TLS
    %% {inet_backend, socket} listens on every address (only loopback in
    %% the suites' network namespace).
    Backend = [{inet_backend, socket} || kind(Config) =:= socket],
    Where = [{ip, ?LOOP4} || Backend =:= [] orelse Tls =:= []],
    {ok, L} = Net:listen(0, Backend ++ Where ++ [binary, {active, false}, {packet, http_bin} | Tls]),
    {ok, {_, Port}} = case Net of gen_tcp -> inet:sockname(L); ssl -> ssl:sockname(L) end,
    Answer = [<<"HTTP/1.1 ">>, integer_to_binary(Status), <<" Early\r\ncontent-length: ">>,
              integer_to_binary(Size), <<"\r\nconnection: close\r\n\r\n">>, binary:copy(<<"a">>, Size)],
    Report = {self(), make_ref()},
    _ = spawn_link(fun() -> acceptor(Net, L, Answer, Close, Report) end),
    {Port, L, element(2, Report)}.

acceptor(Net, L, Answer, Close, {Case, Ref} = Report) ->
    case accept(Net, L) of
        {ok, S} ->
            _ = spawn_link(fun() -> acceptor(Net, L, Answer, Close, Report) end),
            ok = read_head(Net, S),
            Sent = Net:send(S, Answer),
            Case ! {served, Ref, {Sent, Close(S)}};
        {error, _Closed} ->
            ok
    end.

accept(gen_tcp, L) ->
    gen_tcp:accept(L);
accept(ssl, L) ->
    case ssl:transport_accept(L) of
        {ok, T} -> ssl:handshake(T, 10000);
        {error, _} = Error -> Error
    end.

read_head(Net, S) ->
    case Net:recv(S, 0, 10000) of
        {ok, http_eoh} -> ok;
        {ok, {http_error, _} = Error} -> Error;
        {ok, _RequestOrHeader} -> read_head(Net, S);
        {error, _} = Error -> Error
    end.

%% Cowboy only.

%% A handler that reads the whole 16 or 64 MiB upload answers its length,
%% and the connection then ends as Cowboy ends it: curl gets it all.
cowboy_reads_whole_body(Config) ->
    [begin
         {Port, Stop} = start_cowboy(Config, fin_close_ranch, #{mode => read}),
         Answer = filename:join(?config(priv_dir, Config), "answer"),
         {Exit, Output} = run_program(Config, os:find_executable("curl"),
                                      ["-sS", "-o", Answer, "-w", "result %{http_code}\n",
                                       "--data-binary", "@" ++ proplists:get_value(Up, ?config(uploads, Config)),
                                       "-H", "Expect:", url(Config, Port)]),
         ok = Stop(),
         {ok, Body} = file:read_file(Answer),
         ?assertEqual({0, "result 200\n", integer_to_binary(Up * ?MIB)}, {Exit, Output, Body})
     end || Up <- [16, 64]],
    ok.

%% Three pipelined requests in one write, then a fourth on the same
%% connection after a pause: every answer comes, the connection stays.
cowboy_keep_alive_and_pipelined(Config) ->
    {Port, Stop} = start_cowboy(Config, fin_close_ranch, #{mode => small}),
    Result = run_program(Config, ?PYTHON, [script(Config, "pipeline.py"), integer_to_list(Port)]),
    ok = Stop(),
    ?assertEqual({0, "bodies 4\n"}, Result).

%% After an early answer to a 64 MiB upload, Cowboy's connection process is
%% gone at once with fin_close_ranch (within 100 ms) and the socket lingers
%% in fin_close; with ranch_tcp it stays for Cowboy's linger (recorded).
cowboy_connection_gone_after_reply(Config) ->
    Lifetimes = [begin
                     Ref = make_ref(),
                     State = #{mode => early, status => 413, size => 2 * ?MIB, report => {self(), Ref}},
                     {Port, Stop} = start_cowboy(Config, transport(Config, Close), State),
                     Name = hd([N || {N, #{port := P}} <- maps:to_list(ranch:info()), P =:= Port]),
                     Client = spawn_link(fun() -> client(Config, requests, Port, 64) end),
                     receive {served, Ref, _} -> ok after 30000 -> error(not_served) end,
                     T0 = erlang:monotonic_time(millisecond),
                     fin_close_ct:wait(fun() -> ranch:procs(Name, connections) =:= [] end, 5000),
                     Gone = erlang:monotonic_time(millisecond) - T0,
                     Lingering = maps:get(lingering, fin_close:stats()),
                     unlink(Client),
                     exit(Client, kill),
                     ok = Stop(),
                     ct:log("~s: connection process gone after ~b ms, ~b lingering",
                            [close_name(Config, Close), Gone, Lingering]),
                     {Close, Gone, Lingering}
                 end || Close <- [fin_close, gen_tcp]],
    ct:comment("~p", [Lifetimes]),
    [{fin_close, Gone, Lingering} | _] = Lifetimes,
    ?assert(Gone < 100),
    ?assert(Lingering >= 1).

%% fin_close options given in a listener's socket_opts apply to its
%% connections (here notify); bad ones fail the listener's start; a listen
%% socket, which fin_close refuses, is closed all the same; shutdown for
%% reading is ranch_tcp's.
ranch_transport_options_and_fallbacks(Config) ->
    Ref = make_ref(),
    State = #{mode => early, status => 413, size => 1000, report => {self(), Ref}},
    Dispatch = cowboy_router:compile([{'_', [{'_', fin_close_cowboy_handler, State}]}]),
    Opts = #{socket_opts => [{ip, ?LOOP4}, {port, 0}, {fin_close, #{notify => self()}}]},
    {ok, _} = ranch:start_listener(with_notify, fin_close_ranch, Opts, cowboy_clear,
                                   #{env => #{dispatch => Dispatch}}),
    {Exit, _} = client(Config, curl, ranch:get_port(with_notify), 16),
    ?assertEqual(0, Exit),
    ?assertMatch(#{outcome := clean}, receive {fin_close, _, R} -> R after 10000 -> none end),
    ok = ranch:stop_listener(with_notify),
    Bad = #{socket_opts => [{ip, ?LOOP4}, {port, 0}, {fin_close, #{linger_timeout => never}}]},
    ?assertMatch({error, _}, ranch:start_listener(bad, fin_close_ranch, Bad, cowboy_clear, #{})),
    {ok, L} = fin_close_ranch:listen(#{socket_opts => [{ip, ?LOOP4}, {port, 0}]}),
    ?assertEqual(ok, fin_close_ranch:close(L)),
    ?assertEqual(undefined, erlang:port_info(L)),
    {S, C} = fin_close_ct:pair([{kind, inet}], ?LOOP4, []),
    ?assertEqual(ok, fin_close_ranch:shutdown(S, read)),
    ?assertEqual(ok, fin_close_ranch:close(S)),
    ?assertEqual({error, closed}, gen_tcp:recv(C, 0, 5000)),
    ok = gen_tcp:close(C).

%% A listener's fin_close options are kept while its listen socket is open
%% and no longer: stopped by Ranch or closed through the transport, it
%% leaves no entry behind (the connections' closes read the entries).
listener_options_go_with_the_listener(Config) ->
    Transport = transport(Config, fin_close),
    TlsOpts = case ?config(tls, Config) of
                  undefined -> [];
                  #{server := Server} -> Server
              end,
    Opts = #{linger_timeout => 1000},
    SocketOpts = [{ip, ?LOOP4}, {port, 0}, {fin_close, Opts} | TlsOpts],
    Gone = fun() -> persistent_term:get({fin_close_listeners, options}, none) =:= none end,
    {ok, _} = ranch:start_listener(options_gone, Transport, #{socket_opts => SocketOpts},
                                   cowboy_clear, #{env => #{dispatch => cowboy_router:compile([])}}),
    ?assertEqual(Opts, fin_close_listeners:options(ranch:get_port(options_gone))),
    ok = ranch:stop_listener(options_gone),
    fin_close_ct:wait(Gone),
    {ok, L} = Transport:listen(#{socket_opts => SocketOpts}),
    {ok, {_, Port}} = Transport:sockname(L),
    ?assertEqual(Opts, fin_close_listeners:options(Port)),
    ok = Transport:close(L),
    fin_close_ct:wait(Gone).

%% Setup.

%% The project's directory: where this suite's source is compiled from.
project_dir() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(Source)).

%% A file of MiB mebibytes (zeros, sparse) for curl to upload.
upload_file(Priv, MiB) ->
    Path = filename:join(Priv, "upload_" ++ integer_to_list(MiB) ++ "_mib"),
    {ok, F} = file:open(Path, [write, raw]),
    {ok, _} = file:position(F, MiB * ?MIB),
    ok = file:truncate(F),
    ok = file:close(F),
    Path.

%% fin_close_clients_results.txt in the top log directory (the one holding
%% the ct_run.* directories), so that runs add up.
results_file(Priv) ->
    Parts = filename:split(Priv),
    Top = lists:takewhile(fun(P) -> not lists:prefix("ct_run.", P) end, Parts),
    Dir = case length(Top) < length(Parts) of true -> filename:join(Top); false -> Priv end,
    filename:join(Dir, "fin_close_clients_results.txt").
