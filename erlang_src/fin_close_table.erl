%% @private
%% @doc The socket table behind `fin_close:sockets/0' and `fin_close:i/0':
%% every TCP socket of the node, and every socket lingering in the reactor.
%%
%% Each live socket is read as `inq/1' is, its descriptor borrowed
%% (fin_close_socket:borrowed/2), so that a socket closed meanwhile (and its
%% number taken by another) is left out rather than shown with another
%% socket's figures.
-module(fin_close_table).

-export([list/0]).
-export([print/1]).
-export([address/1]).

%% How long to wait for the reactor's list; it answers between two rounds
%% of its work, within microseconds unless it is ending thousands of sockets.
-define(LIST_TIMEOUT, 5000).

-spec list() -> [fin_close:socket_info()].
list() ->
    Ports = [P || P <- erlang:ports(), erlang:port_info(P, name) =:= {name, "tcp_inet"}],
    lists:filtermap(fun port/1, Ports)
        ++ lists:filtermap(fun esock/1, socket:which_sockets(tcp))
        ++ lingering().

-spec port(port()) -> {true, fin_close:socket_info()} | false.
port(Port) ->
    case fin_close_socket:borrowed({port, Port}, info) of
        {ok, Info} ->
            case {erlang:port_info(Port, connected), erlang:port_info(Port, queue_size)} of
                {{connected, Owner}, {queue_size, Queued}} ->
                    {true, live(port, Port, Owner, Info#{port_q => Queued})};
                _ ->
                    false
            end;
        {error, _} ->
            false
    end.

%% The kind and owner are read first, so that the descriptor check after
%% the native read also covers them. socket:which_socket_kind/1 would raise
%% on a socket closed meanwhile; the option it reads does not: gen_tcp
%% sets `meta' on the sockets of {inet_backend, socket}.
-spec esock(socket:socket()) -> {true, fin_close:socket_info()} | false.
esock(ESock) ->
    Kind = socket:getopt(ESock, {otp, meta}),
    Owner = socket:getopt(ESock, {otp, controlling_process}),
    case {Kind, Owner, fin_close_socket:borrowed({socket, ESock}, info)} of
        {{ok, undefined}, {ok, Pid}, {ok, Info}} ->
            {true, live(socket, ESock, Pid, Info)};
        {{ok, _Meta}, {ok, Server}, {ok, Info}} ->
            %% A gen_tcp socket of {inet_backend, socket}: the socket
            %% belongs to its gen_tcp_socket process, which monitors the
            %% gen_tcp owner.
            Socket = {'$inet', gen_tcp_socket, {Server, ESock}},
            {true, live(gen_tcp_socket, Socket, monitored(Server), Info)};
        _ ->
            false
    end.

-spec monitored(pid()) -> pid() | undefined.
monitored(Server) ->
    case erlang:process_info(Server, monitors) of
        {monitors, [{process, Owner} | _]} when is_pid(Owner) -> Owner;
        _ -> undefined
    end.

-spec live(fin_close:socket_kind(), term(), pid() | undefined, map()) -> fin_close:socket_info().
live(Kind, Socket, Owner, Info) ->
    Defaults = #{port_q => undefined},
    maps:merge(Defaults, Info#{kind => Kind, socket => Socket, owner => Owner,
                               owner_name => registered_name(Owner)}).

-spec registered_name(pid() | undefined) -> atom().
registered_name(Pid) when is_pid(Pid) ->
    case erlang:process_info(Pid, registered_name) of
        {registered_name, Name} -> Name;
        _ -> undefined
    end;
registered_name(undefined) ->
    undefined.

%% The reactor answers with a message; a helper process takes it, so that
%% an answer coming after the timeout never lands in the caller's mailbox
%% (the alias is gone by then).
-spec lingering() -> [fin_close:socket_info()].
lingering() ->
    Alias = alias([reply]),
    {Helper, Monitor} = spawn_monitor(fun() -> Alias ! {Alias, ask_reactor()} end),
    receive
        {Alias, List} ->
            erlang:demonitor(Monitor, [flush]),
            [L#{kind => lingering, socket => undefined, owner => undefined,
                owner_name => undefined, port_q => undefined} || L <- List];
        {'DOWN', Monitor, process, Helper, _} ->
            unalias(Alias),
            []
    after ?LIST_TIMEOUT ->
        unalias(Alias),
        exit(Helper, kill),
        erlang:demonitor(Monitor, [flush]),
        []
    end.

-spec ask_reactor() -> [map()].
ask_reactor() ->
    Ref = make_ref(),
    case fin_close_nif:lingering(self(), Ref) of
        ok -> receive {fin_close_lingering, Ref, List} -> List end;
        none -> []
    end.

%% The table, one line per socket, columns as wide as their widest cell.
-spec print([fin_close:socket_info()]) -> ok.
print(Sockets) ->
    Header = ["Kind", "Owner", "Local", "Peer", "State", "Recv-Q", "Send-Q", "Port-Q", "Lingered"],
    Rows = [row(S) || S <- Sockets],
    %% Every cell is a flat list of characters (addresses, numbers, atom
    %% and pid names), so length/1 is its width.
    Widths = lists:foldl(fun(Row, Ws) -> [max(W, length(C)) || {W, C} <- lists:zip(Ws, Row)] end,
                         [length(H) || H <- Header], Rows),
    Line = fun(Row) -> line(Row, Widths) end,
    io:put_chars(lists:map(Line, [Header | Rows])).

%% Cells padded to their column's width, two spaces apart; the last one
%% unpadded.
-spec line([string()], [non_neg_integer()]) -> iolist().
line([Cell], _) -> [Cell, $\n];
line([Cell | Cells], [Width | Widths]) ->
    [Cell, lists:duplicate(Width - length(Cell) + 2, $\s) | line(Cells, Widths)].

-spec row(fin_close:socket_info()) -> [string()].
row(#{kind := Kind, state := State} = S) ->
    [kind(Kind), owner(S), address(maps:get(local, S)), address(maps:get(peer, S)),
     atom_to_list(State), count(maps:get(recv_q, S)), count(maps:get(send_q, S)),
     count(maps:get(port_q, S)), lingered(S)].

-spec kind(fin_close:socket_kind()) -> string().
kind(port) -> "gen_tcp";
kind(gen_tcp_socket) -> "gen_tcp/socket";
kind(socket) -> "socket";
kind(lingering) -> "lingering".

-spec owner(fin_close:socket_info()) -> string().
owner(#{owner_name := Name}) when Name =/= undefined -> atom_to_list(Name);
owner(#{owner := Pid}) when is_pid(Pid) -> pid_to_list(Pid);
owner(#{kind := lingering}) -> "reactor";
owner(_) -> "-".

%% @doc An address as the table and the log lines write it: `1.2.3.4:80',
%% `[::1]:80', or `-'.
-spec address(fin_close:address() | undefined) -> string().
address({IP, Port}) when tuple_size(IP) =:= 8 -> "[" ++ inet:ntoa(IP) ++ "]:" ++ integer_to_list(Port);
address({IP, Port}) -> inet:ntoa(IP) ++ ":" ++ integer_to_list(Port);
address(undefined) -> "-".

-spec count(non_neg_integer() | undefined) -> string().
count(N) when is_integer(N) -> integer_to_list(N);
count(undefined) -> "-".

-spec lingered(fin_close:socket_info()) -> string().
lingered(#{kind := lingering, lingered_ms := Ms}) -> integer_to_list(Ms) ++ " ms";
lingered(_) -> "-".
