%% @private
%% @doc What a socket term is made of, and its descriptor borrowed safely.
%%
%% A native call gets a socket's descriptor number, which the runtime may
%% close, and the kernel give to a new socket, at any time. {@link borrowed/2}
%% is the one way the library acts on a number: it reads the socket's
%% descriptor, acts, and reads it again; the act counts only if the socket
%% had the same descriptor both times. An open socket never changes its
%% descriptor, and a closed one has none (a port's driver may close it on its
%% own, in passive mode when the peer's FIN comes), so the number was the
%% socket's throughout.
-module(fin_close_socket).

-export([resolve/2]).
-export([fd/1]).
-export([borrowed/2]).

-export_type([handle/0, tcp_handle/0]).

-type handle() :: {port, port()}
                | {gen_tcp_socket, gen_tcp:socket(), socket:socket()}
                | {socket, socket:socket()}
                | {tls, tcp_handle(), ssl:sslsocket()}.
%% A port of the default backend; a gen_tcp socket of {inet_backend,
%% socket} and its socket; a socket module socket; an ssl socket and the
%% TCP socket under it.

-type tcp_handle() :: {port, port()} | {gen_tcp_socket, gen_tcp:socket(), socket:socket()}.

-type act() :: inq | outq | info | check_tcp | {dup, boolean()}.

%% The last socket module socket found to be TCP, in the caller's
%% dictionary (see native/3).
-define(TCP, '$fin_close_tcp').
%% The native calls on a borrowed descriptor.

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
        {ok, Fd} when is_integer(Fd), Fd >= 0 -> {ok, Fd};
        _ -> {error, closed}
    end.

%% @doc `Act' on the socket's descriptor, borrowed (see the module's doc):
%% its result, or `{error, closed}' when the socket had no descriptor or
%% lost it meanwhile (a duplicate made meanwhile is discarded then). This is
%% the hot path of inq/1: no funs, three calls.
-spec borrowed(handle(), act()) -> term().
borrowed(Handle, Act) ->
    case fd(Handle) of
        {ok, Fd} ->
            %% Bound first: the second read must come after the native call.
            Result = native(Act, Fd, Handle),
            case fd(Handle) of
                {ok, Fd} ->
                    Result;
                _ ->
                    _ = stale(Act, Result),
                    {error, closed}
            end;
        {error, closed} = Closed ->
            Closed
    end.

%% Ports and gen_tcp sockets are TCP by construction; a socket module
%% socket may be of any protocol, which the NIF checks in the same call
%% (one getsockopt, as costly as the ioctl). A socket's protocol never
%% changes: the last socket module socket this process found to be TCP is
%% remembered in its dictionary, and not checked again.
-spec native(act(), non_neg_integer(), handle()) -> term().
native(inq, Fd, {socket, ESock}) -> tcp_queue(inq, Fd, ESock);
native(inq, Fd, _) -> fin_close_nif:inq(Fd, false);
native(outq, Fd, {socket, ESock}) -> tcp_queue(outq, Fd, ESock);
native(outq, Fd, _) -> fin_close_nif:outq(Fd, false);
native(info, Fd, _) -> fin_close_nif:info(Fd);
native(check_tcp, Fd, _) -> fin_close_nif:check_tcp(Fd);
native({dup, Last}, Fd, _) -> fin_close_nif:dup(Fd, Last).

-spec tcp_queue(inq | outq, non_neg_integer(), socket:socket()) -> {ok, non_neg_integer()} | {error, atom()}.
tcp_queue(Which, Fd, ESock) ->
    case get(?TCP) of
        ESock ->
            ioctl(Which, Fd, false);
        _ ->
            case ioctl(Which, Fd, true) of
                {ok, _} = Queue -> _ = put(?TCP, ESock), Queue;
                Error -> Error
            end
    end.

-spec ioctl(inq | outq, non_neg_integer(), boolean()) -> {ok, non_neg_integer()} | {error, atom()}.
ioctl(inq, Fd, TcpOnly) -> fin_close_nif:inq(Fd, TcpOnly);
ioctl(outq, Fd, TcpOnly) -> fin_close_nif:outq(Fd, TcpOnly).

-spec stale(act(), term()) -> ok.
stale({dup, _}, {ok, {Dup, _, _}}) -> fin_close_nif:discard(Dup);
stale(_, _) -> ok.
