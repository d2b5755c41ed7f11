%% Helpers of the Common Test suites (whose hook is test/fin_close_ct_hook),
%% of make demo and of make bench: sockets of a group's kind (inet, socket,
%% esock), peers, outcomes, TLS certificates, the checks that nothing is
%% left behind, tcpdump's lines and the test network namespace. Outside
%% test/ so that the escripts compile it without test code; rebar3 builds
%% it for the test profile only (extra_src_dirs), so the library's app
%% does not ship it.
-module(fin_close_ct).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").
-include_lib("public_key/include/public_key.hrl").

%% TLS certificates.
-export([tls_config/2]).
%% Sockets of the group's kind.
-export([kind/1, family/1, listen/3, listen_port/2, accept/2, close_listener/2, pair/3, accept_pair/5]).
-export([send/2, recv_exactly/2, native_close/1, set_active/2, set_linger_zero/2]).
-export([udp/1, close_udp/1]).
%% The peer.
-export([bytes/1, read_all/2, read_to_closed/1, read_to_closed/2, drip/1, flood/3]).
%% Another node.
-export([peer_node/2]).
%% Programs as clients, and reading a client's answer.
-export([run_program/3, client_result/2, read_until/2]).
%% Outcomes and waits.
-export([outcome/1, wait/1, wait/2, wait_until/2, wait_inq/2]).
%% What a case leaves behind.
-export([check_nothing_left/1, fd_count/0, fds/0, abort_counters/0]).
%% tcpdump.
-export([wait_line/2, wait_exit/1, flags/1]).
%% The test network namespace.
-export([host_ip/0, os_cmd/1, netns_up/0, netns_down/0, netns_link_down/0, in_netns/2]).

%% The test network namespace: a veth pair, HOST_IP on this side, NS_IP in
%% the namespace (made and removed by the cases that need it).
-define(NETNS, "fin_close_test").
-define(HOST_IF, "fcv0").
-define(NS_IF, "fcv1").
-define(HOST_IP, {10, 201, 0, 1}).
-define(NS_IP, "10.201.0.2").

%% TLS groups: ssl started, and certificates made for this run (a root
%% and a server certificate for 127.0.0.1 and localhost, EC P-256). Adds
%% {tls, #{version, server, client, cafile}}: ssl options of each side
%% for Version ('tlsv1.2' or 'tlsv1.3'), and the root as a PEM file for OS
%% clients (curl, Python).
tls_config(Version, Config) ->
    {ok, _} = application:ensure_all_started(ssl),
    Key = {key, {namedCurve, secp256r1}},
    Sha = {digest, sha256},
    Names = #'Extension'{extnID = ?'id-ce-subjectAltName', critical = false,
                         extnValue = [{dNSName, "localhost"}, {iPAddress, [127, 0, 0, 1]}]},
    #{server_config := Server, client_config := Client} =
        public_key:pkix_test_data(#{server_chain => #{root => [Key, Sha], intermediates => [],
                                                      peer => [Key, Sha, {extensions, [Names]}]},
                                    client_chain => #{root => [Key, Sha], intermediates => [], peer => [Key, Sha]}}),
    CaFile = filename:join(?config(priv_dir, Config), "ca.pem"),
    Roots = proplists:get_value(cacerts, Client),
    ok = file:write_file(CaFile, public_key:pem_encode([{'Certificate', R, not_encrypted} || R <- Roots])),
    Only = [{versions, [Version]}],
    [{tls, #{version => Version, server => Only ++ Server, cafile => CaFile,
             client => Only ++ [{verify, verify_peer}, {cacerts, Roots}, {server_name_indication, disable}]}}
     | Config].

check_nothing_left(Before) ->
    Settled = fun() -> maps:get(lingering, fin_close:stats()) =:= 0 andalso fd_count() =< length(Before) end,
    case wait_until(Settled, 10000) of
        true ->
            ok;
        false ->
            Leaked = fds() -- Before,
            ct:log("leaked: ~p~nstats: ~p", [Leaked, fin_close:stats()]),
            {fail, {leaked, Leaked}}
    end.

%% Helpers: sockets of the group's kind.

kind(Config) -> ?config(kind, Config).

family(Ip) when tuple_size(Ip) =:= 4 -> inet;
family(_) -> inet6.

listen(Config, Ip, Opts) ->
    case kind(Config) of
        esock ->
            {ok, L} = socket:open(family(Ip), stream, tcp),
            ok = socket:bind(L, #{family => family(Ip), addr => Ip, port => 0}),
            [ok = socket:setopt(L, {socket, rcvbuf}, V) || {recbuf, V} <- Opts],
            [ok = socket:setopt(L, {socket, sndbuf}, V) || {sndbuf, V} <- Opts],
            ok = socket:listen(L),
            {ok, L};
        Backend ->
            gen_tcp:listen(0, [{inet_backend, Backend}, binary, {active, false}, {ip, Ip},
                               family(Ip) | Opts])
    end.

listen_port(Config, L) ->
    case kind(Config) of
        esock -> {ok, #{port := P}} = socket:sockname(L), P;
        _ -> {ok, P} = inet:port(L), P
    end.

accept(Config, L) ->
    case kind(Config) of
        esock -> socket:accept(L, 5000);
        _ -> gen_tcp:accept(L, 5000)
    end.

close_listener(Config, L) ->
    case kind(Config) of
        esock -> socket:close(L);
        _ -> gen_tcp:close(L)
    end.

%% A connected pair: the server of the group's kind, the client a default
%% gen_tcp socket that shows resets as econnreset.
pair(Config, Ip, Opts) ->
    {ok, L} = listen(Config, Ip, Opts),
    Pair = accept_pair(Config, L, Ip, listen_port(Config, L), Opts),
    ok = close_listener(Config, L),
    Pair.

accept_pair(Config, L, Ip, Port, _Opts) ->
    {ok, Client} = gen_tcp:connect(Ip, Port, [binary, {active, false}, {buffer, 16384},
                                              {show_econnreset, true}, family(Ip)]),
    {ok, Server} = accept(Config, L),
    {Server, Client}.

send({'$socket', _} = S, Data) -> socket:send(S, Data);
send(S, Data) -> gen_tcp:send(S, Data).

recv_exactly({'$socket', _} = S, N) -> {ok, _} = socket:recv(S, N, 5000), ok;
recv_exactly(S, N) -> {ok, _} = gen_tcp:recv(S, N, 5000), ok.

native_close(Config) ->
    case kind(Config) of
        esock -> fun socket:close/1;
        _ -> fun gen_tcp:close/1
    end.

set_active(Config, S) ->
    case kind(Config) of
        esock -> {select, _} = socket:recv(S, 0, nowait), ok;
        _ -> ok = inet:setopts(S, [{active, true}])
    end.

set_linger_zero(Config, S) ->
    case kind(Config) of
        esock -> socket:setopt(S, {socket, linger}, #{onoff => true, linger => 0});
        _ -> inet:setopts(S, [{linger, {true, 0}}])
    end.

close_udp({'$socket', _} = S) -> socket:close(S);
close_udp(S) -> gen_udp:close(S).

udp(Config) ->
    case kind(Config) of
        esock -> socket:open(inet, dgram, udp);
        Backend -> gen_udp:open(0, [{inet_backend, Backend}])
    end.

%% How long a client program may take before `timeout' kills it.
-define(PROGRAM_TIMEOUT, 60).

%% Runs Exe under `timeout', so that a hung client cannot hang the suite:
%% its exit status and what it printed (stdout and stderr). Given this
%% run's root certificate, curl, Python's requests and its ssl trust it
%% (each by its own environment variable).
run_program(Exe, Args, CaFile) ->
    Env = [{Var, CaFile} || CaFile =/= undefined,
                            Var <- ["CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]],
    Port = open_port({spawn_executable, os:find_executable("timeout")},
                     [{args, ["-k", "5", integer_to_list(?PROGRAM_TIMEOUT), Exe | Args]}, {env, Env},
                      exit_status, stderr_to_stdout, binary]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, Data}} -> collect(Port, [Acc, Data]);
        {Port, {exit_status, Status}} -> {Status, binary_to_list(iolist_to_binary(Acc))}
    after (?PROGRAM_TIMEOUT + 10) * 1000 -> error(client_hung)
    end.

%% {Status, BodyBytes} as a client of the suites' data printed it, or
%% failed: slow_upload.py and post.py (requests) print their own lines,
%% curl and the others `result Status Bytes'.
client_result(Client, Output) ->
    Re = case Client of
             slow -> "^status=HTTP/1.1 ([0-9]+) [^=]* body=([0-9]+) end=eof upload=ok$";
             requests -> "^([0-9]+) ([0-9]+)$";
             _ -> "^result ([0-9]+) ([0-9]+)$"
         end,
    case re:run(Output, Re, [multiline, {capture, all_but_first, list}]) of
        {match, [Status, Bytes]} -> {list_to_integer(Status), list_to_integer(Bytes)};
        nomatch -> failed
    end.

%% Reads from a passive socket until what came ends with Tail, each read
%% within 5 s: {ok, All} or recv's error.
read_until(C, Tail) ->
    read_until(C, Tail, <<>>).

read_until(C, Tail, Got) ->
    case binary:longest_common_suffix([Got, Tail]) =:= byte_size(Tail) of
        true ->
            {ok, Got};
        false ->
            case gen_tcp:recv(C, 0, 5000) of
                {ok, More} -> read_until(C, Tail, <<Got/binary, More/binary>>);
                Error -> Error
            end
    end.

%% Another node running fin_close, with these helpers and `Suite' on its
%% code path (absolute paths: the node starts in CT's log folder). Opts
%% as peer:start_link/1's, and `ebins' (more code paths) and `fd_limit'
%% (its `ulimit -n').
peer_node(Suite, Opts) ->
    Paths = [filename:join(code:lib_dir(fin_close), "ebin"), filename:dirname(code:which(?MODULE)),
             filename:dirname(code:which(Suite)) | maps:get(ebins, Opts, [])],
    Exec = case Opts of
               #{fd_limit := N} ->
                   #{exec => {"/bin/sh", ["-c", "ulimit -n " ++ integer_to_list(N) ++ " && exec \"$0\" \"$@\"",
                                          os:find_executable("erl")]}};
               _ ->
                   #{}
           end,
    peer:start_link(maps:merge(maps:without([ebins, fd_limit], Opts),
                               Exec#{connection => standard_io,
                                     args => ["-pa" | [filename:absname(P) || P <- Paths]]})).

%% Helpers: the peer.

bytes(N) -> binary:copy(<<"x">>, N).

read_all(Sock, Total) ->
    case gen_tcp:recv(Sock, 0, 30000) of
        {ok, Data} -> timer:sleep(1), read_all(Sock, Total + byte_size(Data));
        {error, Reason} -> {Total, {error, Reason}}
    end.

%% Reads until FIN: {ok, AllData}; a reset or a timeout is an error.
read_to_closed(Sock) -> read_to_closed(Sock, []).
read_to_closed(Sock, Acc) ->
    case gen_tcp:recv(Sock, 0, 10000) of
        {ok, Data} -> read_to_closed(Sock, [Acc, Data]);
        {error, closed} -> {ok, iolist_to_binary(Acc)};
        {error, _} = Error -> Error
    end.

%% A byte every 10 ms, whatever comes back, until a send fails.
drip(Sock) ->
    timer:sleep(10),
    case socket:send(Sock, <<"d">>) of
        ok -> drip(Sock);
        {error, _} = Error -> Error
    end.

flood(_Sock, _Chunk, 0) -> sent_everything;
flood(Sock, Chunk, N) ->
    case gen_tcp:send(Sock, Chunk) of
        ok -> flood(Sock, Chunk, N - 1);
        {error, _} = Error -> Error
    end.

outcome(Ref) ->
    receive {fin_close, Ref, Result} -> Result after 30000 -> error(no_outcome) end.

wait_inq(Sock, Bytes) ->
    wait(fun() -> case fin_close:inq(Sock) of {ok, N} -> N >= Bytes; _ -> false end end).

fd_count() ->
    {ok, Fds} = file:list_dir("/proc/self/fd"),
    length(Fds).

%% What each descriptor is, such as "socket:[123]" or "pipe:[456]".
fds() ->
    {ok, Fds} = file:list_dir("/proc/self/fd"),
    lists:sort([{Fd, case file:read_link_all("/proc/self/fd/" ++ Fd) of {ok, T} -> T; _ -> gone end}
                || Fd <- Fds]).

wait_until(F, Left) when Left =< 0 -> F();
wait_until(F, Left) ->
    F() orelse begin timer:sleep(10), wait_until(F, Left - 10) end.

wait(F) -> wait(F, 5000).
wait(F, Left) when Left =< 0 -> ?assert(F());
wait(F, Left) ->
    case F() of
        true -> ok;
        false -> timer:sleep(1), wait(F, Left - 1)
    end.

%% The kernel's two RST counters (TcpExt in /proc/net/netstat).
abort_counters() ->
    {ok, Text} = file:read_file("/proc/net/netstat"),
    [Names, Values | _] = [string:split(L, " ", all) || L <- string:split(Text, "\n", all),
                                                        string:prefix(L, "TcpExt:") =/= nomatch],
    All = maps:from_list(lists:zip(Names, Values)),
    #{abort_on_close => binary_to_integer(maps:get(<<"TCPAbortOnClose">>, All)),
      abort_on_data => binary_to_integer(maps:get(<<"TCPAbortOnData">>, All))}.

wait_line(Port, Prefix) ->
    receive
        {Port, {data, {_, Line}}} ->
            ct:log("tcpdump: ~s", [Line]),
            case string:find(Line, Prefix) of
                nomatch -> wait_line(Port, Prefix);
                _ -> ok
            end;
        {Port, {exit_status, _}} -> error(tcpdump_exited)
    after 10000 -> error(tcpdump_silent)
    end.

wait_exit(Port) ->
    receive {Port, {exit_status, _}} -> ok
    after 10000 -> error(tcpdump_did_not_stop)
    end.

%% "IP a.p > b.q: Flags [F.], ..." -> "F."
flags(Line) ->
    case string:split(Line, "Flags [") of
        [_, Rest] -> hd(string:split(Rest, "]"));
        _ -> ""
    end.

%% Helpers: the test network namespace.

host_ip() -> ?HOST_IP.

os_cmd(Cmd) ->
    Out = os:cmd(lists:flatten([Cmd, " 2>&1; echo \"exit=$?\""])),
    ct:log("~s~n~s", [Cmd, Out]),
    Out.

%% A namespace with a veth pair: HOST_IP here, NS_IP there.
netns_up() ->
    case os:find_executable("ip") of
        false ->
            {skip, "no ip command (iproute2)"};
        _ ->
            netns_down(),
            Steps = [["ip netns add ", ?NETNS],
                     ["ip link add ", ?HOST_IF, " type veth peer name ", ?NS_IF],
                     ["ip link set ", ?NS_IF, " netns ", ?NETNS],
                     ["ip addr add 10.201.0.1/24 dev ", ?HOST_IF],
                     ["ip link set ", ?HOST_IF, " up"],
                     ["ip netns exec ", ?NETNS, " ip addr add ", ?NS_IP, "/24 dev ", ?NS_IF],
                     ["ip netns exec ", ?NETNS, " ip link set ", ?NS_IF, " up"],
                     ["ip netns exec ", ?NETNS, " ip link set lo up"]],
            case lists:all(fun(Step) -> string:find(os_cmd(Step), "exit=0") =/= nomatch end, Steps) of
                true -> ok;
                false -> netns_down(), {skip, "cannot make a network namespace here (needs root)"}
            end
    end.

netns_down() ->
    %% The peer node and anything else still running in there first: they
    %% would outlive the namespace (and hold this node's output open).
    os_cmd(["ip netns pids ", ?NETNS, " | xargs -r kill -9"]),
    os_cmd(["ip netns del ", ?NETNS]),
    os_cmd(["ip link del ", ?HOST_IF]),
    ok.


%% The link into the namespace goes down: what is in there vanishes.
netns_link_down() ->
    os_cmd(["ip link set ", ?HOST_IF, " down"]).

%% Runs Program with Args inside the namespace, as a port.
in_netns(Program, Args) ->
    open_port({spawn_executable, os:find_executable("ip")},
              [{args, ["netns", "exec", ?NETNS, Program | Args]}, exit_status, stderr_to_stdout]).
