%% The user's code in the fresh rebar3 projects scripts/consumers.sh makes:
%% it runs the README's Erlang block, as pasted, on real connections whose
%% requests were never read, and checks what the block promises: the reply
%% whole then FIN at the client, the unread bytes counted, the notified
%% close clean and counted in stats(). Returns a summary, or raises.
-module(consumer).
-export([main/1]).

-define(REQUEST, 1000).
-define(REPLY, 1048576).

-spec main(file:filename()) -> {consumer_ok, map()}.
main(BlockFile) ->
    {ok, Text} = file:read_file(BlockFile),
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Text)),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {ok, L} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    {Client, Sock} = unread_request(L),
    {Client2, Sock2} = unread_request(L),
    [#{recv_q := ?REQUEST, state := established}] =
        [S || #{socket := S0} = S <- fin_close:sockets(), S0 =:= Sock],
    Reader = reader(Client),
    _ = reader(Client2),
    Bindings = lists:foldl(fun({K, V}, B) -> erl_eval:add_binding(K, V, B) end,
                           erl_eval:new_bindings(),
                           [{'Sock', Sock}, {'Sock2', Sock2},
                            {'Reply', binary:copy(<<"r">>, ?REPLY)}]),
    {value, {clean, ?REQUEST}, After} = erl_eval:exprs(Exprs, Bindings),
    {value, ?REQUEST} = erl_eval:binding('Unread', After),
    receive
        {Reader, {?REPLY, {error, closed}}} -> ok;
        {Reader, Other} -> error({client_got, Other})
    after 30000 -> error(no_reply)
    end,
    #{clean := Clean} = Stats = fin_close:stats(),
    true = Clean >= 1,
    ok = gen_tcp:close(L),
    {consumer_ok, #{reply => ?REPLY, then => closed, unread => ?REQUEST, stats => Stats}}.

%% A connection whose client sent a request the server has not read.
unread_request(L) ->
    {ok, Port} = inet:port(L),
    {ok, Client} = gen_tcp:connect({127, 0, 0, 1}, Port,
                                   [binary, {active, false}, {show_econnreset, true}]),
    {ok, Server} = gen_tcp:accept(L),
    ok = gen_tcp:send(Client, binary:copy(<<"q">>, ?REQUEST)),
    ok = wait_inq(Server),
    {Client, Server}.

wait_inq(Sock) ->
    case fin_close:inq(Sock) of
        {ok, ?REQUEST} -> ok;
        _ -> timer:sleep(1), wait_inq(Sock)
    end.

%% Reads everything, then closes (our FIN answered with the client's own)
%% and tells the caller what it read and how it ended.
reader(Client) ->
    Self = self(),
    Pid = spawn(fun() ->
                        receive go -> ok end,
                        Result = read_all(Client, 0),
                        ok = gen_tcp:close(Client),
                        Self ! {self(), Result}
                end),
    ok = gen_tcp:controlling_process(Client, Pid),
    Pid ! go,
    Pid.

read_all(Sock, Total) ->
    case gen_tcp:recv(Sock, 0, 10000) of
        {ok, Data} -> read_all(Sock, Total + byte_size(Data));
        {error, _} = End -> {Total, End}
    end.
