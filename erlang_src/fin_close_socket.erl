%% @private
%% @doc What a socket term is made of, and its descriptor borrowed safely.
%%
%% A native call gets a socket's descriptor number, which the runtime may
%% close, and the kernel give to a new socket, at any time. The library
%% calls on a number only through {@link borrowed/2} or {@link queue/2}: the
%% number is one the socket had (read just before, or for queue/2
%% remembered from this process's last call on the same socket), and the
%% call counts only if the socket still has that descriptor when read after
%% it. An open socket never changes its descriptor, and a closed one never
%% gets one back (a port's driver may close it on its own, in passive mode
%% when the peer's FIN comes), so the number was the socket's throughout. A
%% port being closed, which may still hold its descriptor while it writes
%% out its queue, counts as closed before any of this (resolve/2).
-module(fin_close_socket).

-export([resolve/2]).
-export([fd/1]).
-export([borrowed/2]).
-export([queue/2]).

-export_type([handle/0, tcp_handle/0, fin/0]).

-type handle() :: {port, port()}
                | {gen_tcp_socket, gen_tcp:socket(), socket:socket()}
                | {socket, socket:socket()}
                | {tls, tcp_handle(), ssl:sslsocket()}.
%% A port of the default backend; a gen_tcp socket of {inet_backend,
%% socket} and its socket; a socket module socket; an ssl socket and the
%% TCP socket under it.

-type tcp_handle() :: {port, port()} | {gen_tcp_socket, gen_tcp:socket(), socket:socket()}.

-type fin() :: now | sent | port | never.
%% Who sends our FIN once the caller's handle is closed: the hand-over, at
%% once (nothing of ours queued in the VM); nobody any more, as the port
%% sent it before it was closed; the VM (a port writing out its queue, or
%% the closer of a TLS connection after its close_notify); or nobody, as a
%% send was cut short and the socket is reset.

%% The native calls on a borrowed descriptor; a queue's says whether the
%% socket must be checked to be TCP first.
-type native_call() :: {inq | outq, boolean()} | info | check_tcp | {reserve, map()}.

%% The handle of the socket this process last read a queue of, and its
%% descriptor: see queue/2.
-define(LAST, '$fin_close_last').

%% @doc The handle of a socket term; `{error, Reason}' for a socket that is
%% closed, not TCP or no socket; `badarg' (with `Args') for any other term.
-spec resolve(term(), [term()]) -> handle() | {error, atom()}.
resolve(Port, _) when is_port(Port) ->
    %% The inet driver's module, as prim_inet finds it; a badarg for a port
    %% that is closed, or closing: OTP still answers port_info/2 and the
    %% driver's controls for a port fin_close left writing out its queue.
    try erlang:port_get_data(Port) of
        Tcp when Tcp =:= inet_tcp; Tcp =:= inet6_tcp; Tcp =:= local_tcp -> {port, Port};
        _ -> port_kind(Port)
    catch
        error:badarg -> {error, closed}
    end;
resolve({'$inet', gen_tcp_socket, {Server, {'$socket', Ref} = ESock}} = Socket, _)
  when is_pid(Server), is_reference(Ref) ->
    {gen_tcp_socket, Socket, ESock};
resolve({'$socket', Ref} = ESock, _) when is_reference(Ref) ->
    {socket, ESock};
resolve({'$inet', Module, {Server, {'$socket', Ref}}}, _)
  when Module =/= gen_tcp_socket, is_atom(Module), is_pid(Server), is_reference(Ref) ->
    %% gen_udp's socket backend.
    {error, eprototype};
resolve({sslsocket, _, _} = Ssl, Args) ->
    case fin_close_tls:socket(Ssl) of
        {ok, Tcp} ->
            case resolve(Tcp, Args) of
                {error, _} = Error -> Error;
                Inner -> {tls, Inner, Ssl}
            end;
        {error, _} = Error ->
            Error
    end;
resolve(_, Args) ->
    erlang:error(badarg, Args).

-spec port_kind(port()) -> handle() | {error, atom()}.
port_kind(Port) ->
    case erlang:port_info(Port, name) of
        {name, "tcp_inet"} -> {port, Port};
        {name, "udp_inet"} -> {error, eprototype};
        {name, "sctp_inet"} -> {error, eprototype};
        {name, _} -> {error, enotsock};
        undefined -> {error, closed}
    end.

%% @doc The socket's descriptor now, or `{error, closed}' when it has none.
-spec fd(handle()) -> {ok, non_neg_integer()} | {error, closed}.
fd(Handle) ->
    Result = case Handle of
                 {port, Port} -> inet:getfd(Port);
                 {gen_tcp_socket, _, ESock} -> socket:getopt(ESock, {otp, fd});
                 {socket, ESock} -> socket:getopt(ESock, {otp, fd});
                 {tls, Inner, _} -> fd(Inner)
             end,
    case Result of
        {ok, Fd} when is_integer(Fd), Fd >= 0 -> Result;
        _ -> {error, closed}
    end.

%% @doc `Call' on the socket's descriptor, borrowed (see the module's doc):
%% its result, or `{error, closed}' when the socket had no descriptor or
%% lost it meanwhile (a hand-over reserved meanwhile is cancelled then).
-spec borrowed(handle(), native_call()) -> term().
borrowed(Handle, Call) ->
    case fd(Handle) of
        {ok, Fd} -> call_checked(Handle, Fd, Call);
        {error, closed} = Closed -> Closed
    end.

%% @doc The length of a kernel queue of `Socket' (inq/1, outq/1), as
%% borrowed/2 reads it, but for the first read: the socket this process
%% asked about last, once its answer counted, is remembered with its
%% descriptor in the process's dictionary, and asking again about it costs
%% resolve/2 (which finds a port closed or closing, and whether it is still
%% TCP), the ioctl and the read after it (the hot path of inq/1: no funs).
%% A `socket' module socket may be of any protocol: the NIF checks it is
%% TCP in its first call (one getsockopt); a remembered socket was found
%% TCP. `badarg' (with `[Socket]') for a term that is no socket.
-spec queue(term(), inq | outq) -> {ok, non_neg_integer()} | {error, atom()}.
queue(Socket, Which) ->
    case resolve(Socket, [Socket]) of
        {error, _} = Error ->
            Error;
        Handle ->
            case get(?LAST) of
                {Handle, Fd} -> call_checked(Handle, Fd, {Which, false});
                _ -> first_queue(Handle, Which)
            end
    end.

-spec first_queue(handle(), inq | outq) -> {ok, non_neg_integer()} | {error, atom()}.
first_queue(Handle, Which) ->
    case fd(Handle) of
        {ok, Fd} ->
            %% Only a socket module socket may be of another protocol.
            TcpOnly = element(1, Handle) =:= socket,
            case call_checked(Handle, Fd, {Which, TcpOnly}) of
                {ok, _} = Queue -> _ = put(?LAST, {Handle, Fd}), Queue;
                Error -> Error
            end;
        {error, closed} = Closed ->
            Closed
    end.

%% The native call on Fd, a descriptor the socket had: the result counts if the socket
%% still has it. Bound first: the read must come after the native call.
-spec call_checked(handle(), non_neg_integer(), native_call()) -> term().
call_checked(Handle, Fd, Call) ->
    Result = native(Call, Fd),
    case fd(Handle) of
        {ok, Fd} ->
            Result;
        _ ->
            _ = cancel_reservation(Call, Result),
            {error, closed}
    end.

-spec native(native_call(), non_neg_integer()) -> term().
native({inq, TcpOnly}, Fd) -> fin_close_nif:inq(Fd, TcpOnly);
native({outq, TcpOnly}, Fd) -> fin_close_nif:outq(Fd, TcpOnly);
native(info, Fd) -> fin_close_nif:info(Fd);
native(check_tcp, Fd) -> fin_close_nif:check_tcp(Fd);
native({reserve, Opts}, Fd) -> fin_close_nif:reserve(Fd, Opts).

%% A hand-over reserved on a descriptor that is no longer the socket's is
%% given back.
-spec cancel_reservation(native_call(), term()) -> ok.
cancel_reservation({reserve, _}, {ok, Handover}) -> fin_close_nif:cancel(Handover);
cancel_reservation(_, _) -> ok.
