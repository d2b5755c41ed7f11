%% @private
%% @doc How each kind of socket is closed (see {@link fin_close_socket} for
%% the kinds): with FIN, handed over to the native reactor ({@link close/2}),
%% or with RST ({@link abort/1}); and close/2's options, checked against
%% {@link option_table/0}, the one list of them.
-module(fin_close_closing).

-export([close/2]).
-export([check_options/1]).
-export([option_table/0]).
-export([abort/1]).

-type handle() :: fin_close_socket:handle().
-type tcp_handle() :: fin_close_socket:tcp_handle().
-type fin() :: fin_close_socket:fin().

-type check() :: {up_to, pos_integer()} | {up_to_or_infinity, pos_integer()} | local_pid.
%% The values an option takes: an integer from 0 to the bound (or also
%% `infinity'), or a pid of this node.

-type limits() :: #{linger_timeout := non_neg_integer(),
                    idle_timeout := non_neg_integer() | infinity,
                    max_drain := non_neg_integer() | infinity,
                    max_lingering := non_neg_integer() | infinity,
                    notify := pid() | undefined}.
%% close/2's options with every default filled in: the map
%% fin_close_nif:reserve/2 takes.

%% 30 s in all, as nginx's lingering_time and Apache's lingering close: long
%% enough for the kernel to deliver a large reply to a slow reader, and for
%% a client that uploads a large body before it reads to finish sending.
%% All a lingering socket holds meanwhile is one descriptor, its kernel
%% buffers and some 200 bytes of tables (more with `notify').
-define(LINGER_TIMEOUT, 30000).
%% nginx's lingering_timeout: a peer that neither sends, nor closes, nor
%% reads our reply for 5 s is gone or hostile, and its descriptor is worth
%% more to the next client (a flood of idle peers holds rate x 5 s of them,
%% not rate x 30 s). A live client uploading or downloading makes progress
%% every few milliseconds.
-define(IDLE_TIMEOUT, 5000).
%% The native side takes times in milliseconds as u32, counts as u64.
-define(MAX_TIMEOUT, 16#FFFFFFFF).
-define(U64_MAX, 16#FFFFFFFFFFFFFFFF).

%% A want of resources: the close is refused, the socket left to the caller
%% as it was, and counted in stats() as `refused'.
-define(IS_EXHAUSTION(Reason), (Reason =:= emfile orelse Reason =:= enfile orelse
                                Reason =:= enomem orelse Reason =:= enobufs orelse
                                Reason =:= enospc orelse Reason =:= reactor_down)).

%% @doc Every option of `fin_close:close/2': its key, its default (`undefined'
%% for none) and the values it takes. The defaults and the check of each
%% option come from here alone; `fin_close:opts()' and the docs describe
%% the same list.
-spec option_table() -> [{atom(), term(), check()}].
option_table() ->
    [{linger_timeout, ?LINGER_TIMEOUT, {up_to, ?MAX_TIMEOUT}},
     {idle_timeout, ?IDLE_TIMEOUT, {up_to_or_infinity, ?MAX_TIMEOUT}},
     {max_drain, infinity, {up_to_or_infinity, ?U64_MAX}},
     {max_lingering, infinity, {up_to_or_infinity, ?U64_MAX}},
     {notify, undefined, local_pid}].

%% @doc `fin_close:close/2' once its options are checked: `badarg' (with
%% `Args') for bad ones, before the socket is touched.
-spec close(term(), term()) -> ok | {ok, reference()} | {error, atom()}.
close(Socket, Opts) ->
    Args = [Socket, Opts],
    Limits = limits(Opts, Args),
    case fin_close_socket:resolve(Socket, Args) of
        {error, _} = Error -> Error;
        Handle -> hand_over(Handle, Limits)
    end.

%% @doc `ok', or `badarg' raised as close/2 would for these options.
-spec check_options(term()) -> ok.
check_options(Opts) ->
    _ = limits(Opts, [Opts]),
    ok.

%% @doc `fin_close:abort/1'. abort/1 is rare, so it checks every kind of
%% socket for TCP and not listening (a gen_tcp socket may be a Unix domain
%% one); a connection already reset is closed all the same, as asked.
-spec abort(term()) -> ok | {error, atom()}.
abort(Socket) ->
    case fin_close_socket:resolve(Socket, [Socket]) of
        {error, _} = Error ->
            Error;
        Handle ->
            case fin_close_socket:borrowed(Handle, check_tcp) of
                ok ->
                    reset(Handle);
                {error, closed} when element(1, Handle) =:= port ->
                    close_port_without_fd(element(2, Handle), undefined);
                {error, closed} = Error ->
                    stop_socket_process(Handle),
                    Error;
                {error, _} = Error ->
                    Error
            end
    end.

%% The options with the defaults of those not given; a key the table does
%% not have, or a value its check refuses, raises badarg with Args. Only
%% the options given are looked at: most closes give none.
-spec limits(term(), [term()]) -> limits().
limits(Opts, Args) when is_map(Opts) ->
    Table = option_table(),
    maps:fold(fun(Key, Value, Limits) ->
                      case lists:keyfind(Key, 1, Table) of
                          {Key, _, Check} ->
                              _ = valid(Check, Value) orelse erlang:error(badarg, Args),
                              Limits#{Key := Value};
                          false ->
                              erlang:error(badarg, Args)
                      end
              end, maps:from_list([{Key, Default} || {Key, Default, _} <- Table]), Opts);
limits(_, Args) ->
    erlang:error(badarg, Args).

-spec valid(check(), term()) -> boolean().
valid({up_to, Max}, N) -> is_integer(N) andalso N >= 0 andalso N =< Max;
valid({up_to_or_infinity, _}, infinity) -> true;
valid({up_to_or_infinity, Max}, N) -> valid({up_to, Max}, N);
valid(local_pid, Pid) -> is_pid(Pid) andalso node(Pid) =:= node().

%% Internal.

-spec hand_over(handle(), limits()) -> ok | {ok, reference()} | {error, atom()}.
hand_over(Handle, Limits) ->
    case reserve(Handle, Limits) of
        {ok, Handover} ->
            start(Handover, Handle, Limits);
        {error, closed} = Error ->
            case Handle of
                {port, Port} ->
                    case erlang:port_info(Port, connected) of
                        undefined -> Error;
                        _ -> close_port_without_fd(Port, maps:get(notify, Limits))
                    end;
                _ ->
                    stop_socket_process(Handle),
                    Error
            end;
        {error, _} = Error ->
            Error
    end.

%% {inet_backend, socket}: a recv that saw a reset (from OTP 27 on, also a
%% FIN) made the gen_tcp_socket process close the socket (exit_on_close);
%% on OTP 25 the process stays until gen_tcp:close/1. The socket counts as
%% closed, as any closed one (another closer may be finishing with it: only
%% the one that closed it succeeds), and the process is stopped, not left
%% for ever.
-spec stop_socket_process(handle()) -> ok.
stop_socket_process({gen_tcp_socket, Socket, _}) ->
    stop_server(Socket);
stop_socket_process(_) ->
    ok.

%% {active, false} on a {inet_backend, socket} socket. Should another
%% closer have closed the socket meanwhile, OTP 25's gen_tcp_socket process
%% crashes on the setopts (a badmatch on {error, closed}) and the call
%% exits: the socket is closed then, which the close that follows finds.
-spec make_passive(gen_tcp:socket()) -> ok.
make_passive(Socket) ->
    try inet:setopts(Socket, [{active, false}]) of
        _ -> ok
    catch
        exit:_ -> ok
    end.

%% gen_tcp:close/1 of a {inet_backend, socket} socket, which stops its
%% gen_tcp_socket process. That process may be ending on its own meanwhile
%% (on OTP 25 it crashes once its socket was closed under it), and the call
%% then exits: the process is stopped either way.
-spec stop_server(gen_tcp:socket()) -> ok.
stop_server(Socket) ->
    try gen_tcp:close(Socket) of
        _ -> ok
    catch
        exit:_ -> ok
    end.

%% The first half of the hand-over: the socket's descriptor duplicated,
%% and room for it in the reactor. No descriptor (or memory, or epoll room)
%% left for it: lingering sockets give some back (as the reactor does on
%% its own before the process runs out), then one more try. Refused only
%% when none could be given back.
-spec reserve(handle(), limits()) -> {ok, reference()} | {error, atom()}.
reserve(Handle, Limits) ->
    case fin_close_socket:borrowed(Handle, {reserve, Limits}) of
        {error, Reason} when ?IS_EXHAUSTION(Reason) ->
            ok = fin_close:reclaim(),
            case fin_close_socket:borrowed(Handle, {reserve, Limits}) of
                {error, Again} = Refused when ?IS_EXHAUSTION(Again) ->
                    ok = fin_close_nif:refused(),
                    Refused;
                Result ->
                    Result
            end;
        Result ->
            Result
    end.

%% An open port without a descriptor: the inet driver closed it itself when
%% a passive recv saw the peer's FIN or RST (exit_on_close). Nothing is left
%% to linger; the port is closed as gen_tcp:close/1 would, else it and its
%% owner's link would stay for ever.
-spec close_port_without_fd(port(), pid() | undefined) -> ok | {ok, reference()} | {error, closed}.
close_port_without_fd(Port, Notify) ->
    case close_port(Port) of
        ok -> notify_peer_closed(Notify);
        %% Closed by another process meanwhile: that one won.
        {error, closed} = Error -> Error
    end.

-spec notify_peer_closed(pid() | undefined) -> ok | {ok, reference()}.
notify_peer_closed(undefined) ->
    ok;
notify_peer_closed(Pid) ->
    Ref = make_ref(),
    Pid ! {fin_close, Ref, #{outcome => peer_closed, drained => 0, lingered_ms => 0,
                             local => undefined, peer => undefined}},
    {ok, Ref}.

%% The second half: close the caller's handle, which only one caller can
%% do, then hand the socket over, our FIN leaving at once if nothing of
%% ours is queued in the VM (or give the room back). The reference of the
%% notifications is the hand-over's.
-spec start(reference(), handle(), limits()) -> ok | {ok, reference()} | {error, atom()}.
start(Handover, Handle, #{notify := Notify} = Limits) ->
    case close_handle(Handle, Handover, Limits) of
        {ok, Fin} ->
            Told = [Pid || Pid <- [Notify], Pid =/= undefined],
            {Notifier, Log} = notifier(Told),
            case fin_close_nif:start(Handover, Fin, Told, Notifier, Log) of
                ok when Notify =:= undefined -> ok;
                ok -> {ok, Handover};
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            ok = fin_close_nif:cancel(Handover),
            Error
    end.

%% Closes the caller's handle of the socket; the reactor's duplicate keeps
%% the connection. Exactly one of several callers gets `{ok, Fin}': the one
%% whose close of the handle took.
-spec close_handle(handle(), reference() | none, limits()) -> {ok, fin()} | {error, closed | timeout}.
close_handle({port, Port}, Handover, _) ->
    %% Most ports have written everything: shut down for writing, they send
    %% our FIN at once, in order with any send of another process (one
    %% after it fails), and before the close, which costs the peer's wait
    %% for it as much again. A port that still holds output the kernel
    %% could not take yet (megabytes for a slow reader) is shut down for
    %% writing too, so that the driver sends FIN once it has written it,
    %% and then closed: the runtime writes the rest out before it lets go
    %% of the descriptor, and the port is nobody's to write to or to
    %% disturb any more. A socket shut for reading keeps its FIN for the
    %% hand-over (fin_close_nif:fin_due/1).
    Queued = erlang:port_info(Port, queue_size) =/= {queue_size, 0},
    Fin = case Queued of
              true -> fin_after_queue(Port), port;
              false -> fin_before_close(Port, Handover)
          end,
    case close_port(Port) of
        ok -> {ok, fin_sender(Port, Fin)};
        {error, closed} = Error -> Error
    end;
close_handle({gen_tcp_socket, Socket, ESock}, _, _) ->
    %% Closed under it, the gen_tcp_socket process would tell an active
    %% owner {tcp_closed, Socket}, which gen_tcp:close/1 never does.
    ok = make_passive(Socket),
    case close_esock(ESock) of
        {ok, _} = Closed ->
            %% Stops the gen_tcp_socket process; its close of the socket
            %% finds it closed already.
            ok = stop_server(Socket),
            Closed;
        {error, closed} = Error ->
            Error
    end;
close_handle({socket, ESock}, _, _) ->
    close_esock(ESock);
close_handle({tls, Inner, Ssl}, _, Limits) ->
    %% From the claim on, the TLS close runs in a process of its own, which
    %% always lets the TLS process go again: the caller may die at any point
    %% without leaving it suspended. The caller waits only for the claim
    %% (bounded: see fin_close_tls:claim/1).
    Caller = self(),
    Tag = make_ref(),
    {Closer, Monitor} = spawn_monitor(fun() -> close_tls(Caller, Tag, Inner, Ssl, Limits) end),
    receive
        {Tag, Closed} ->
            erlang:demonitor(Monitor, [flush]),
            Closed;
        {'DOWN', Monitor, process, Closer, _} ->
            {error, closed}
    end.

%% The TLS closer: claims the connection, tells the caller who sends our FIN,
%% and finishes the close.
-spec close_tls(pid(), reference(), tcp_handle(), ssl:sslsocket(), limits()) -> ok.
close_tls(Caller, Tag, Inner, Ssl, #{linger_timeout := Timeout} = Limits) ->
    case claim_tls(Inner, Ssl) of
        {ok, connection} ->
            case fin_close_socket:fd(Inner) of
                {ok, _} ->
                    Caller ! {Tag, {ok, port}},
                    end_session(Inner, Ssl, Timeout);
                {error, closed} ->
                    %% The peer's FIN or RST reached the TCP socket before
                    %% the claim, and its runtime let go of the descriptor:
                    %% no close_notify can go out, and no FIN of the
                    %% runtime's will. Ours goes from the duplicate.
                    _ = close_under_tls(Inner, Limits),
                    Caller ! {Tag, {ok, now}},
                    fin_close_tls:release(Ssl),
                    fin_close_tls:stop(Ssl, connection)
            end;
        {ok, Handshake} ->
            %% No session to end yet: the TCP socket is closed as any.
            Closed = close_under_tls(Inner, Limits),
            Caller ! {Tag, Closed},
            fin_close_tls:release(Ssl),
            fin_close_tls:stop(Ssl, Handshake);
        {error, _} = Error ->
            Caller ! {Tag, Error},
            ok
    end.

%% Takes a TLS connection for one close (fin_close_tls:claim/1), and makes
%% its TCP socket passive: what the peer still sends is the reactor's to
%% discard, and the suspended TLS process cannot re-activate it. For a port,
%% before the reactor arms its reset (see passive_without_linger/1).
-spec claim_tls(tcp_handle(), ssl:sslsocket()) -> {ok, atom()} | {error, closed | timeout}.
claim_tls(Inner, Ssl) ->
    case fin_close_tls:claim(Ssl) of
        {ok, _} = Claimed ->
            case Inner of
                {port, Port} -> passive_without_linger(Port);
                {gen_tcp_socket, Socket, _} -> make_passive(Socket)
            end,
            Claimed;
        {error, _} = Error ->
            Error
    end.

%% close_notify after everything sent before, then FIN after it; then the
%% TLS process, claimed and suspended meanwhile, runs again and ends.
%% close_notify goes out through the connection's sender, which waits while
%% the port's queue is over its high watermark: as long as the peer does not
%% read, which a client still uploading does not. The reactor discards
%% meanwhile, so the upload ends; it sees our FIN and lingers as for any
%% port.
-spec end_session(tcp_handle(), ssl:sslsocket(), timeout()) -> ok.
end_session(Inner, Ssl, Timeout) ->
    _ = try
        _ = fin_close_tls:close_notify(Ssl, Timeout),
        %% A port's driver sends FIN once it has written its queue.
        _ = gen_tcp:shutdown(element(2, Inner), write),
        case Inner of
            %% Not close_handle/2: no option is set after the reactor's.
            {port, Port} -> close_port(Port);
            {gen_tcp_socket, Socket, _} -> gen_tcp:close(Socket)
        end
    after
        fin_close_tls:release(Ssl)
    end,
    fin_close_tls:stop(Ssl, connection).

%% The TCP socket under a claimed TLS connection (the claim is the
%% arbiter). The TLS process may still set options on it (it re-activates
%% its socket on its own), and a {inet_backend, socket} server process
%% crashes on that once its socket is closed under it (OTP 25): so that
%% process is stopped, and closes its socket itself, first.
-spec close_under_tls(tcp_handle(), limits()) -> {ok, fin()}.
close_under_tls({port, _} = Inner, Limits) ->
    %% No FIN before the close: the TLS closer's own, if any, went first.
    case close_handle(Inner, none, Limits) of
        {ok, _} = Closed -> Closed;
        {error, _} -> {ok, now}
    end;
close_under_tls({gen_tcp_socket, Socket, _}, _) ->
    _ = gen_tcp:close(Socket),
    {ok, now}.

%% Closes a port; of several callers, one gets ok: port_close/1 fails on a
%% port already closed or closing.
-spec close_port(port()) -> ok | {error, closed}.
close_port(Port) ->
    try erlang:port_close(Port) of
        true ->
            %% As prim_inet: an owner that traps exits gets the port's 'EXIT'.
            receive {'EXIT', Port, _} -> ok after 0 -> ok end
    catch
        error:badarg -> {error, closed}
    end.

%% {linger, {true, 0}} would make the port drop its queue at close, and
%% reading on could end it early on the peer's FIN (OTP still lets a stray
%% inet:setopts/2 on the old term make a closing port active).
-spec fin_after_queue(port()) -> true.
fin_after_queue(Port) ->
    passive_without_linger(Port),
    _ = gen_tcp:shutdown(Port, write),
    true.

%% Before the reactor starts: it arms SO_LINGER 0 on the socket while the
%% port still writes, which {linger, _} here would undo.
-spec passive_without_linger(port()) -> ok.
passive_without_linger(Port) ->
    _ = inet:setopts(Port, [{active, false}, {exit_on_close, false}, {linger, {false, 0}}]),
    ok.

%% Our FIN through the port before it is closed, when it may leave: `sent',
%% else `now' (the hand-over sends or holds it). The port orders it after
%% what it queued meanwhile for another process, whose send after it fails.
-spec fin_before_close(port(), reference() | none) -> sent | now.
fin_before_close(_Port, none) ->
    now;
fin_before_close(Port, Handover) ->
    %% The peer's FIN, an answer to ours, must not make an active port
    %% close itself (exit_on_close) before this caller does: the close
    %% would then be another's.
    case fin_close_nif:fin_due(Handover) andalso
         inet:setopts(Port, [{exit_on_close, false}]) =:= ok andalso
         gen_tcp:shutdown(Port, write) =:= ok of
        true -> sent;
        false -> now
    end.

%% Who sends FIN. A send that raced the close may have queued output after
%% all: the closing port still writes it, and its driver must send FIN
%% after it (OTP still takes the driver's controls on a closing port; a
%% FIN asked for before the close waits for that output too).
-spec fin_sender(port(), fin()) -> fin().
fin_sender(_Port, port) ->
    port;
fin_sender(Port, Fin) ->
    case erlang:port_info(Port, queue_size) of
        {queue_size, N} when N > 0 -> fin_after_queue(Port), port;
        _ -> Fin
    end.

%% socket:close/1 succeeds once. A send waiting in another process is cut
%% off by it, with part of its data sent.
-spec close_esock(socket:socket()) -> {ok, now | never} | {error, closed}.
close_esock(ESock) ->
    {Writers, Sent} = send_counts(ESock),
    case socket:close(ESock) of
        ok ->
            %% A writer waiting at the close, whose send did not complete
            %% before it (the info still answers on the closed socket).
            {_, SentThen} = send_counts(ESock),
            case Writers > SentThen - Sent of
                true -> {ok, never};
                false -> {ok, now}
            end;
        {error, _} ->
            {error, closed}
    end.

%% Sends in progress, and sends completed so far.
-spec send_counts(socket:socket()) -> {non_neg_integer(), non_neg_integer()}.
send_counts(ESock) ->
    #{num_writers := N, counters := #{write_pkg := Sent}} = socket:info(ESock),
    {N, Sent}.

%% The notifier passes results on to the notify pids (see
%% fin_close_notifier) and logs sockets that are cut off, when debug logging
%% is on for it: started if need be for that; for notifications only when it
%% runs (the reactor sends them itself without one). A lookup per close.
-spec notifier([pid()]) -> {[pid()], boolean()}.
notifier(Told) ->
    Log = fin_close_notifier:logging(),
    Notifier = case Log of
                   true -> fin_close_notifier:find();
                   false -> {ok, whereis(fin_close_notifier)}
               end,
    case Notifier of
        {ok, Pid} when is_pid(Pid), Told =/= [] orelse Log -> {[Pid], Log};
        _ -> {[], false}
    end.

%% Like close_handle/1, exactly one of several closers succeeds.
-spec reset(handle()) -> ok | {error, atom()}.
reset({port, Port}) ->
    case inet:setopts(Port, [{linger, {true, 0}}]) of
        ok ->
            %% With SO_LINGER 0 the port drops its queue and closes at once.
            close_port(Port);
        {error, _} ->
            {error, closed}
    end;
reset({gen_tcp_socket, Socket, ESock}) ->
    ok = make_passive(Socket),
    case reset({socket, ESock}) of
        ok -> stop_server(Socket);
        {error, _} = Error -> Error
    end;
reset({tls, Inner, Ssl}) ->
    %% No close_notify: a reset says the connection was dropped.
    case claim_tls(Inner, Ssl) of
        {ok, StateName} ->
            Result = case Inner of
                         {port, _} ->
                             reset(Inner);
                         {gen_tcp_socket, Socket, ESock} ->
                             %% As close_under_tls/2: its process closes it.
                             _ = socket:setopt(ESock, {socket, linger}, #{onoff => true, linger => 0}),
                             _ = gen_tcp:close(Socket),
                             ok
                     end,
            fin_close_tls:release(Ssl),
            fin_close_tls:stop(Ssl, StateName),
            Result;
        {error, _} = Error ->
            Error
    end;
reset({socket, ESock}) ->
    case socket:setopt(ESock, {socket, linger}, #{onoff => true, linger => 0}) of
        ok ->
            case socket:close(ESock) of
                ok -> ok;
                {error, _} -> {error, closed}
            end;
        {error, _} ->
            {error, closed}
    end.
