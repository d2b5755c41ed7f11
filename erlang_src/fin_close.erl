%% @doc Close TCP sockets with FIN, never RST, without waiting for the peer;
%% and see a socket's kernel queues.
%%
%% On Linux, closing a TCP socket whose receive queue still holds unread
%% bytes sends RST instead of FIN, and the peer's kernel then throws away the
%% part of our reply it had not received yet. {@link close/1} hands the
%% socket to one native reactor thread that sends FIN after all our data,
%% discards what the peer still sends until its FIN arrives and every byte
%% of ours is acknowledged (bounded in time), and only then closes. {@link inq/1} and {@link outq/1} show
%% the kernel's receive and send queues.
%%
%% Every function takes any TCP socket an Erlang program can hold: a
%% `gen_tcp' socket of the default (port) backend or of
%% `{inet_backend, socket}', a `socket:socket()', or an `ssl' socket over
%% TCP (see {@link close/2}); IPv4 or IPv6. A term
%% that is no socket raises `badarg'. A socket that is closed, listening,
%% not TCP, or a port that is no socket gives `{error, Reason}' and is left
%% as it was (one exception: {@link inq/1} and {@link outq/1} on a `gen_tcp'
%% socket over a Unix domain socket give the kernel's figures):
%% <ul>
%% <li>`closed': the socket is closed (also: it was closed by another
%%     process while the call ran).</li>
%% <li>`enotconn': a listening TCP socket.</li>
%% <li>`eprototype': a socket that is not TCP (UDP, SCTP, a Unix domain
%%     socket).</li>
%% <li>`enotsock': a port that is no socket (a file, a spawned program).</li>
%% <li>`enotsup': an `ssl' socket of a shape this release of fin_close
%%     does not know (see doc/tls.md); DTLS is `eprototype'.</li>
%% <li>any other POSIX name a system call returned, such as `emfile' when
%%     no descriptor is left for the duplicate {@link close/2} needs.</li>
%% </ul>
-module(fin_close).

-export([inq/1]).
-export([outq/1]).
-export([close/1]).
-export([graceful_close/1]).
-export([close/2]).
-export([check_options/1]).
-export([abort/1]).
-export([reclaim/0]).
-export([stats/0]).
-export([sockets/0]).
-export([i/0]).

-type socket() :: gen_tcp:socket() | socket:socket() | ssl:sslsocket().
%% Any TCP socket: `gen_tcp' (either backend), the `socket' module's, or
%% an `ssl' one over TCP.

-type opts() :: #{linger_timeout => non_neg_integer(),
                  idle_timeout => non_neg_integer() | infinity,
                  max_drain => non_neg_integer() | infinity,
                  max_lingering => non_neg_integer() | infinity,
                  notify => pid()}.
%% Options of {@link close/2}.

-type outcome() :: clean | timeout | idle | drain_limit | reset | truncated | reclaimed
                 | peer_closed | error.
%% How a lingering socket ended; see {@link close/2}.

-type address() :: {inet:ip_address(), inet:port_number()}.

-type result() :: #{outcome := outcome(),
                    drained := non_neg_integer(),
                    lingered_ms := non_neg_integer(),
                    local := address() | undefined,
                    peer := address() | undefined,
                    reason => atom()}.
%% What a `notify' process is sent: `{fin_close, Ref, result()}'.

-type stats() :: #{lingering := non_neg_integer(),
                   clean := non_neg_integer(),
                   timeout := non_neg_integer(),
                   idle := non_neg_integer(),
                   drain_limit := non_neg_integer(),
                   truncated := non_neg_integer(),
                   reclaimed := non_neg_integer(),
                   reset := non_neg_integer(),
                   error := non_neg_integer(),
                   drained := non_neg_integer(),
                   memory := non_neg_integer(),
                   refused := non_neg_integer()}.
%% Counters since the native library was loaded; see {@link stats/0}.

-type socket_kind() :: port | gen_tcp_socket | socket | lingering.
%% A `gen_tcp' socket of the default backend (a port), one of
%% `{inet_backend, socket}', a `socket' module socket, or a socket closed
%% with {@link close/2} that still lingers in the reactor.

-type tcp_state() :: established | syn_sent | syn_recv | fin_wait1 | fin_wait2 | time_wait
                   | close | close_wait | last_ack | listen | closing | unknown.
%% The kernel's TCP state, named as `ss' names it.

-type socket_info() :: #{kind := socket_kind(),
                         socket := socket() | undefined,
                         owner := pid() | undefined,
                         owner_name := atom(),
                         local := address() | undefined,
                         peer := address() | undefined,
                         state := tcp_state() | atom(),
                         recv_q := non_neg_integer() | undefined,
                         send_q := non_neg_integer() | undefined,
                         port_q := non_neg_integer() | undefined,
                         id => non_neg_integer(),
                         lingered_ms => non_neg_integer(),
                         remaining_ms => non_neg_integer(),
                         drained => non_neg_integer(),
                         port_pending => boolean(),
                         peer_fin => boolean()}.
%% One socket of {@link sockets/0}.

-export_type([socket/0, opts/0, outcome/0, result/0, stats/0]).
-export_type([address/0, socket_kind/0, tcp_state/0, socket_info/0]).

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

-define(MAX_TIMEOUT, 16#FFFFFFFF).
%% Descriptors given back at once when a close or an accept found none left
%% (at least; more if fewer than 1/16 of the limit are free): enough for a
%% burst of accepts and closes, while the reactor keeps 1/16 of the limit
%% free on its own.
-define(RECLAIM, 64).
%% The native side takes counts as u64.
-define(U64_MAX, 16#FFFFFFFFFFFFFFFF).
%% A want of resources: the close is refused, the socket left to the caller
%% as it was, and counted in stats() as `refused'.
-define(IS_EXHAUSTION(Reason), (Reason =:= emfile orelse Reason =:= enfile orelse
                                Reason =:= enomem orelse Reason =:= enobufs orelse
                                Reason =:= enospc orelse Reason =:= reactor_down)).

-type handle() :: fin_close_socket:handle().
-type tcp_handle() :: fin_close_socket:tcp_handle().
-type fin() :: fin_close_socket:fin().

%% @doc Bytes waiting in the kernel's receive queue of `Socket' (SIOCINQ).
%%
%% Counts only what the kernel holds: an active-mode socket may already have
%% moved data into the owner's mailbox, and such data never causes an RST.
%% For an `ssl' socket, the queue of its TCP socket: `ssl' reads records
%% ahead into its own buffers (about 1 MiB), even on a passive socket.
%% The socket asked about last is remembered, with its descriptor, in the
%% caller's process dictionary (key `$fin_close_last'): asking again about
%% it costs one system call and one read of the socket's descriptor, which
%% shows it is still the socket's. A `socket' module socket that is not
%% the one asked about last is checked to be TCP (one more system call).
-spec inq(socket()) -> {ok, non_neg_integer()} | {error, atom()}.
inq(Socket) ->
    fin_close_socket:queue(Socket, inq).

%% @doc Bytes in the kernel's send queue of `Socket' that the peer has not
%% acknowledged yet (SIOCOUTQ). Bytes still queued inside a port (see
%% `inet:getstat(S, [send_pend])') are not counted. Costs what {@link inq/1}
%% does, and shares its memory of the socket asked about last.
-spec outq(socket()) -> {ok, non_neg_integer()} | {error, atom()}.
outq(Socket) ->
    fin_close_socket:queue(Socket, outq).

%% @doc Closes `Socket' with FIN: a drop-in for `gen_tcp:close/1' (and
%% `socket:close/1'). Same as `close(Socket, #{})'.
%%
%% Returns `ok' at once; the connection lingers in the native reactor. See
%% {@link close/2} for what happens and for the errors.
-spec close(socket()) -> ok | {error, atom()}.
close(Socket) ->
    case close(Socket, #{}) of
        {error, _} = Error -> Error;
        ok -> ok
    end.

%% @doc The same as {@link close/1}: the name this close has in the design
%% fin_close was made from.
-spec graceful_close(socket()) -> ok | {error, atom()}.
graceful_close(Socket) ->
    close(Socket).

%% @doc Closes `Socket' with FIN after every byte already sent, and lingers
%% in the native reactor until the peer's FIN has arrived and the peer has
%% acknowledged every byte of ours, discarding what it still sends. Returns
%% as soon as the socket is handed over; it never waits on the peer, and no
%% Erlang process or scheduler is held while the socket lingers.
%%
%% Options (a map; unknown keys and bad values raise `badarg', and the
%% socket is left untouched):
%% <ul>
%% <li>`linger_timeout' (milliseconds, default 30000): how long the socket
%%     may linger in all, from this call. When it runs out first, the
%%     socket is reset (outcome `timeout'). This includes the time the
%%     kernel needs to deliver our reply to a slow reader, and the time a
%%     client that uploads its whole body before reading needs to finish
%%     sending. The default is nginx's `lingering_time'.</li>
%% <li>`idle_timeout' (milliseconds or `infinity', default 5000): how long
%%     the socket may linger without progress: no byte and no FIN from the
%%     peer, and no byte of ours acknowledged. Then it is reset (outcome
%%     `idle'). Looked at once per period, so an idle socket ends between
%%     one and two periods after its last progress. The default is nginx's
%%     `lingering_timeout'; it keeps a flood of idle peers from holding
%%     descriptors for the whole `linger_timeout'.</li>
%% <li>`max_drain' (bytes or `infinity', the default): how much the peer
%%     may still send; one byte more and the socket is reset (outcome
%%     `drain_limit'). Off by default: a client answered early (413, a
%%     redirect, an error) still sends its whole upload before it reads,
%%     and discarding costs little; time bounds the linger.</li>
%% <li>`max_lingering' (a count or `infinity', the default): when this many
%%     sockets (closed by any process) linger already, the cheapest one is
%%     ended to make room (outcome `reclaimed'): first one that has
%%     nothing left to lose (all of ours acknowledged, nothing unread),
%%     closed quietly, else the oldest, reset. A bound on what lingering
%%     sockets hold (a descriptor each, and their kernel buffers) that
%%     never refuses a close. The same happens without it when the node
%%     runs short of descriptors (fewer than 1/16 of its limit free).</li>
%% <li>`notify' (a local pid, default none): the call then returns
%%     `{ok, Ref}', and the pid gets exactly one `{fin_close, Ref, Result}'
%%     when the socket is closed for good (sent by fin_close's notifier
%%     process, or by the reactor when the application does not run),
%%     where `Result' is a
%%     {@type result()} whose `outcome' is one of:
%%     <ul>
%%     <li>`clean': delivered. The peer's FIN arrived (as the TCP state
%%         shows) and the peer acknowledged every byte of ours and our
%%         FIN; nothing was reset.</li>
%%     <li>`timeout', `idle', `drain_limit': cut off by that bound and
%%         reset; but a socket whose bytes and FIN were all acknowledged
%%         and that has nothing unread is closed quietly instead (the
%%         kernel answers the peer's next byte, if any, with RST).</li>
%%     <li>`reset': the peer reset the connection.</li>
%%     <li>`truncated': a send in another process was still running when
%%         the socket was closed, so the peer got part of a message; the
%%         socket is reset at once rather than end that part with FIN.</li>
%%     <li>`reclaimed': ended early to give its descriptor back (see
%%         `max_lingering').</li>
%%     <li>`peer_closed': nothing lingered: the peer had ended the
%%         connection and the runtime had already closed the socket's
%%         descriptor (a passive port whose `recv' returned
%%         `{error, closed}'); the port is closed, as `gen_tcp:close/1'
%%         does. `local' and `peer' are `undefined'. (With
%%         `{inet_backend, socket}' the runtime closes the whole socket
%%         there, on a reset, and from OTP 27 on also on a FIN: then it is
%%         a closed socket, `{error, closed}', where `gen_tcp:close/1'
%%         says `ok'.)</li>
%%     <li>`error' (with `reason'): a system call failed (a POSIX name);
%%         `panic': a bug of fin_close's own while it handled this socket,
%%         which it ended, the others going on; `reactor_stopped': the
%%         reactor thread stopped (such a bug outside any one socket, or
%%         the library unloaded), and every socket it held ended so; the
%%         next close starts another.</li>
%%     </ul>
%%     `drained' is the bytes discarded, `lingered_ms' the time it took,
%%     `local' and `peer' the connection's addresses.</li>
%% </ul>
%%
%% A socket that does not end `clean' is logged with OTP `logger' at
%% `debug' level (the result under the metadata key `fin_close'), when that
%% level was enabled for the application
%% (`logger:set_application_level(fin_close, debug)') or the whole node at
%% the time of the close; OTP's default handler prints it. Off by default,
%% as debug logging is.
%%
%% What happens, in order: the socket's descriptor is duplicated, and the
%% reactor takes room for the duplicate; the socket's descriptor is read
%% again, which proves the duplicate is of this socket; the socket's own
%% handle is closed; our FIN is sent, then and there, as `gen_tcp:close/1'
%% sends it; the reactor clears SO_LINGER, discards until the peer's FIN
%% and closes once all is acknowledged.
%%
%% Special cases:
%% <ul>
%% <li>Output still queued inside the port (the default backend queues
%%     what the kernel cannot take yet, megabytes for a slow reader): the
%%     port is shut down for writing and closed, so that the runtime
%%     itself writes the queue out, sends FIN after it and then lets go of
%%     its descriptor, whatever happens to the caller or to the `fin_close'
%%     application. The reactor discards meanwhile and bounds it all as
%%     above. Should the node stop before the queue is written, the peer
%%     gets RST, not a truncated reply ending in FIN.</li>
%% <li>Exactly one close wins: when several processes close one socket at
%%     once (with this function, {@link abort/1} or `gen_tcp:close/1'),
%%     one hands it over and the others get `{error, closed}' (what
%%     `gen_tcp:close/1' returns is OTP's).</li>
%% <li>Once this function returned, the old term is a closed socket:
%%     `gen_tcp' and `inet' calls on it give `{error, closed}' (or what
%%     OTP gives for a closed socket), and none of them reaches the peer
%%     or disturbs the linger.</li>
%% <li>`{linger, {true, 0}}' on the socket is overridden: this function
%%     closes gracefully. Use {@link abort/1} to reset.</li>
%% <li>Shut down for reading before (`gen_tcp:shutdown(S, read)'): what
%%     the peer sends is still discarded until its FIN.</li>
%% <li>Active mode: data the port or socket process already read is
%%     delivered to the owner's mailbox as before and not counted.</li>
%% <li>Any process may call it, not only the owner. A send still running
%%     in another process when it is called (possible with
%%     `{inet_backend, socket}' and `socket' sockets; a port takes a send
%%     whole or not at all) is cut off, and the outcome is `truncated'.</li>
%% <li>An `ssl' socket (TLS over TCP): `close_notify' is sent after
%%     everything already sent, then FIN, and the TCP socket lingers as
%%     above. The caller does not wait for it: a process of its own waits
%%     while the socket's output is over its high watermark (the peer not
%%     reading), bounded by `linger_timeout'; the TLS connection process is
%%     suspended meanwhile, then ends without a log line, also when its
%%     owner exits at once. A socket still in its handshake is closed with
%%     FIN alone. `{error, timeout}': the TLS process did not answer within
%%     a second (it waits on a peer that does not read); the socket is left
%%     as it was. A client that closes without reading the `close_notify'
%%     resets: outcome `reset', its answer delivered. {@link abort/1} sends
%%     no `close_notify'. How, and what it relies on inside `ssl':
%%     doc/tls.md.</li>
%% <li>Unlike `gen_tcp:close/1', an already closed socket gives
%%     `{error, closed}'. A connection the peer has already reset is
%%     closed all the same (outcome `reset', or `error' with
%%     `enotconn').</li>
%% </ul>
-spec close(socket(), opts()) -> ok | {ok, reference()} | {error, atom()}.
close(Socket, Opts) ->
    Args = [Socket, Opts],
    Limits = options(Opts, Args),
    case fin_close_socket:resolve(Socket, Args) of
        {error, _} = Error -> Error;
        Handle -> hand_over(Handle, Limits)
    end.

%% @doc Checks options for {@link close/2} without closing anything:
%% `ok', or `badarg' raised as `close/2' would. For wrappers that take
%% options long before a close, such as {@link fin_close_ranch}.
-spec check_options(opts()) -> ok.
check_options(Opts) ->
    _ = options(Opts, [Opts]),
    ok.

%% @doc Closes `Socket' with RST on purpose (SO_LINGER 0), discarding what
%% is queued in both directions: for dropping a peer, not for ending a
%% reply. Returns once the socket is closed.
-spec abort(socket()) -> ok | {error, atom()}.
abort(Socket) ->
    case fin_close_socket:resolve(Socket, [Socket]) of
        {error, _} = Error ->
            Error;
        Handle ->
            case abortable(Handle) of
                ok ->
                    reset(Handle);
                {error, closed} when element(1, Handle) =:= port ->
                    close_gone(element(2, Handle), undefined);
                {error, closed} = Error ->
                    stop_gone(Handle),
                    Error;
                {error, _} = Error ->
                    Error
            end
    end.

%% @doc Gives back descriptors that lingering sockets hold, for a server
%% whose `accept' just failed with `emfile' or `enfile': ends lingering
%% sockets, the cheapest first (outcome `reclaimed', see {@link close/2}),
%% at least 64 of them and as many as it takes to have 1/16 of the
%% process's descriptor limit free again, and returns once they are closed
%% (at most 100 ms later; it waits on a dirty scheduler). The reactor does
%% the same on its own, every 100 ms while lingering sockets hold a good
%% share of the limit, but a burst of accepts can get there first. A
%% server then accepts again:
%% ```
%% accept(L) ->
%%     case gen_tcp:accept(L) of
%%         {error, Short} when Short =:= emfile; Short =:= enfile ->
%%             ok = fin_close:reclaim(),
%%             gen_tcp:accept(L);
%%         Accepted ->
%%             Accepted
%%     end.
%% '''
%% {@link fin_close_ranch} and {@link fin_close_ranch_ssl} do so in their
%% `accept/2'. Nothing lingering, nothing to do: `ok' all the same.
-spec reclaim() -> ok.
reclaim() ->
    _ = fin_close_nif:reclaim(?RECLAIM),
    ok.

%% @doc Counters since the native library was first loaded in this OS
%% process (a purge and reload of `fin_close_nif' keeps them), as a flat map of
%% atoms to integers that a metrics poller can export as it is:
%% <ul>
%% <li>`lingering' (a gauge): sockets handed over and not closed yet.</li>
%% <li>`clean', `timeout', `idle', `drain_limit', `reset', `truncated',
%%     `reclaimed', `error' (counters, only ever growing): sockets ended
%%     with that outcome; see {@link close/2}. Their sum plus `lingering'
%%     is every socket ever handed over (`peer_closed' hands nothing
%%     over).</li>
%% <li>`drained' (a counter): bytes discarded from peers in all.</li>
%% <li>`memory' (a gauge): bytes the reactor's own tables take now, an
%%     estimate from their capacities. Not counted: the kernel's socket
%%     buffers, and for a socket closed with `notify' (or while debug
%%     logging is on) the record of who to tell,
%%     some 100 to 250 bytes more.</li>
%% <li>`refused' (a counter): closes that could not hand the socket over
%%     for want of a resource (no descriptor left for the duplicate even
%%     after reclaiming, no room in the reactor's epoll set, which
%%     `fs.epoll.max_user_watches' bounds, or no reactor): each returned
%%     `{error, Reason}' (`emfile', `enfile', `enomem', `enobufs', `enospc',
%%     `reactor_down') and left the socket open and as it was, for the
%%     caller to close otherwise or retry.</li>
%% </ul>
%% Cheap (a few atomic reads), and it never starts the reactor.
-spec stats() -> stats().
stats() ->
    fin_close_nif:stats().

%% @doc Every TCP socket of the node, and every socket still lingering
%% after {@link close/2}, as a list of maps for tools; {@link i/0} prints
%% the same as a table.
%%
%% Each map has:
%% <ul>
%% <li>`kind': `port' (a `gen_tcp' socket of the default backend),
%%     `gen_tcp_socket' (`{inet_backend, socket}'), `socket' (the `socket'
%%     module's) or `lingering' (in the reactor). A socket closed while its
%%     port still held output shows twice until the port has written it:
%%     as a `port' (still owned by its owner, though closed to it), and
%%     as `lingering' with `port_pending'.</li>
%% <li>`socket': the term to pass to `gen_tcp' or `socket', or `undefined'
%%     for a lingering one.</li>
%% <li>`owner' and `owner_name': the owning (controlling) process and its
%%     registered name, or `undefined'.</li>
%% <li>`local', `peer': the addresses (`peer' is `undefined' when not
%%     connected, and both are for a lingering socket whose state cannot be
%%     read).</li>
%% <li>`state': the kernel's TCP state, such as `established',
%%     `close_wait' (the peer has sent FIN) or `fin_wait2' (ours went
%%     out). For a lingering socket whose state cannot be read, the POSIX
%%     name of the error instead (queues `undefined').</li>
%% <li>`recv_q': unread bytes in the kernel's receive queue, what
%%     {@link inq/1} returns; `send_q': bytes the peer has not acknowledged
%%     yet, as {@link outq/1}; both `undefined' for a listening socket.</li>
%% <li>`port_q': bytes queued inside the port and not yet given to the
%%     kernel (default backend only, else `undefined').</li>
%% <li>Lingering sockets also have `id', `lingered_ms', `remaining_ms'
%%     (until `linger_timeout' cuts it off), `drained' (bytes discarded so
%%     far), `port_pending' (the port is still writing its queue, so no FIN
%%     has gone out yet) and `peer_fin' (the peer's FIN has arrived).</li>
%% </ul>
%% A socket closed while the table is read is left out, and so are the
%% lingering sockets should the reactor not answer within 5 seconds. It
%% reads each socket with a few system calls and never waits on a peer or
%% on a socket's owner (`bench/socket_table.escript' measures the cost per
%% socket on a node with thousands).
-spec sockets() -> [socket_info()].
sockets() ->
    fin_close_table:list().

%% @doc Prints {@link sockets/0} as a table, as `inet:i/0' does:
%% kind, owner (registered name or pid), local and peer address, TCP state,
%% Recv-Q, Send-Q, bytes still queued in the port (Port-Q) and, for
%% lingering sockets, how long they have lingered.
-spec i() -> ok.
i() ->
    fin_close_table:print(sockets()).

%% Internal.

-spec options(term(), [term()]) -> #{linger_timeout := non_neg_integer(),
                                      idle_timeout := non_neg_integer() | infinity,
                                      max_drain := non_neg_integer() | infinity,
                                      max_lingering := non_neg_integer() | infinity,
                                      notify := pid() | undefined}.
options(Opts, Args) when is_map(Opts) ->
    Defaults = #{linger_timeout => ?LINGER_TIMEOUT, idle_timeout => ?IDLE_TIMEOUT,
                 max_drain => infinity, max_lingering => infinity, notify => undefined},
    maps:fold(fun(Key, Value, Acc) ->
                      case valid_option(Key, Value) of
                          true -> Acc#{Key => Value};
                          false -> erlang:error(badarg, Args)
                      end
              end, Defaults, Opts);
options(_, Args) ->
    erlang:error(badarg, Args).

-spec valid_option(term(), term()) -> boolean().
valid_option(linger_timeout, T) -> is_integer(T) andalso T >= 0 andalso T =< ?MAX_TIMEOUT;
valid_option(idle_timeout, infinity) -> true;
valid_option(idle_timeout, T) -> valid_option(linger_timeout, T);
valid_option(max_drain, infinity) -> true;
valid_option(max_drain, M) -> is_integer(M) andalso M >= 0 andalso M =< ?U64_MAX;
valid_option(max_lingering, infinity) -> true;
valid_option(max_lingering, N) -> is_integer(N) andalso N >= 0 andalso N =< ?U64_MAX;
valid_option(notify, Pid) -> is_pid(Pid) andalso node(Pid) =:= node();
valid_option(_, _) -> false.

-spec hand_over(handle(), map()) -> ok | {ok, reference()} | {error, atom()}.
hand_over(Handle, Limits) ->
    case reserve(Handle, Limits) of
        {ok, Handover} ->
            start(Handover, Handle, Limits);
        {error, closed} = Error ->
            case Handle of
                {port, Port} ->
                    case erlang:port_info(Port, connected) of
                        undefined -> Error;
                        _ -> close_gone(Port, maps:get(notify, Limits))
                    end;
                _ ->
                    stop_gone(Handle),
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
-spec stop_gone(handle()) -> ok.
stop_gone({gen_tcp_socket, Socket, _}) ->
    _ = (catch gen_tcp:close(Socket)),
    ok;
stop_gone(_) ->
    ok.

%% The first half of the hand-over: the socket's descriptor duplicated,
%% and room for it in the reactor. No descriptor (or memory, or epoll room)
%% left for it: lingering sockets give some back (as the reactor does on
%% its own before the process runs out), then one more try. Refused only
%% when none could be given back.
-spec reserve(handle(), map()) -> {ok, reference()} | {error, atom()}.
reserve(Handle, Limits) ->
    case fin_close_socket:borrowed(Handle, {reserve, Limits}) of
        {error, Reason} when ?IS_EXHAUSTION(Reason) ->
            ok = reclaim(),
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
-spec close_gone(port(), pid() | undefined) -> ok | {ok, reference()} | {error, closed}.
close_gone(Port, Notify) ->
    case close_port(Port) of
        ok -> notify_gone(Notify);
        %% Closed by another process meanwhile: that one won.
        {error, closed} = Error -> Error
    end.

-spec notify_gone(pid() | undefined) -> ok | {ok, reference()}.
notify_gone(undefined) ->
    ok;
notify_gone(Pid) ->
    Ref = make_ref(),
    Pid ! {fin_close, Ref, #{outcome => peer_closed, drained => 0, lingered_ms => 0,
                             local => undefined, peer => undefined}},
    {ok, Ref}.

%% The second half: close the caller's handle, which only one caller can
%% do, then hand the socket over, our FIN leaving at once if nothing of
%% ours is queued in the VM (or give the room back). The reference of the
%% notifications is the hand-over's.
-spec start(reference(), handle(), map()) -> ok | {ok, reference()} | {error, atom()}.
start(Handover, Handle, #{notify := Notify} = Limits) ->
    case close_handle(Handle, Limits) of
        {ok, Fin} ->
            Told = [Pid || Pid <- [Notify], Pid =/= undefined],
            {Keeper, Log} = keeper(Told),
            case fin_close_nif:start(Handover, Fin, Told, Keeper, Log) of
                ok when Notify =:= undefined -> ok;
                ok -> {ok, Handover};
                {error, _} = Error -> Error
            end;
        {error, _} = Error ->
            ok = fin_close_nif:cancel(Handover),
            Error
    end.

%% Closes the caller's handle of the socket; the reactor's duplicate keeps
%% the connection, so this sends nothing. Exactly one of several callers
%% gets `{ok, Fin}': the one whose close of the handle took.
-spec close_handle(handle(), map()) -> {ok, fin()} | {error, closed | timeout}.
close_handle({port, Port}, _) ->
    %% Most ports have written everything: closed, they let go of their
    %% descriptor at once, and the reactor sends FIN. A port that still
    %% holds output the kernel could not take yet (megabytes for a slow
    %% reader) is shut down for writing first, so that the driver sends FIN
    %% once it has written it, and then closed: the runtime writes the rest
    %% out before it lets go of the descriptor, and the port is nobody's to
    %% write to or to disturb any more.
    Queued = erlang:port_info(Port, queue_size) =/= {queue_size, 0},
    _ = Queued andalso flush_first(Port),
    case close_port(Port) of
        ok -> {ok, fin_by(Port, Queued)};
        {error, closed} = Error -> Error
    end;
close_handle({gen_tcp_socket, Socket, ESock}, _) ->
    %% Closed under it, the gen_tcp_socket process would tell an active
    %% owner {tcp_closed, Socket}, which gen_tcp:close/1 never does.
    _ = inet:setopts(Socket, [{active, false}]),
    case close_esock(ESock) of
        {ok, _} = Closed ->
            %% Stops the gen_tcp_socket process; its close of the socket
            %% finds it closed already.
            _ = (catch gen_tcp:close(Socket)),
            Closed;
        {error, closed} = Error ->
            Error
    end;
close_handle({socket, ESock}, _) ->
    close_esock(ESock);
close_handle({tls, Inner, Ssl}, Limits) ->
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
-spec close_tls(pid(), reference(), tcp_handle(), ssl:sslsocket(), map()) -> ok.
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
%% before the reactor arms its reset (see quiet/1).
-spec claim_tls(tcp_handle(), ssl:sslsocket()) -> {ok, atom()} | {error, closed | timeout}.
claim_tls(Inner, Ssl) ->
    case fin_close_tls:claim(Ssl) of
        {ok, _} = Claimed ->
            case Inner of
                {port, Port} -> quiet(Port);
                {gen_tcp_socket, Socket, _} -> _ = inet:setopts(Socket, [{active, false}]), ok
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
            {gen_tcp_socket, _, _} -> close_under_tls(Inner, #{})
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
-spec close_under_tls(tcp_handle(), map()) -> {ok, fin()}.
close_under_tls({port, _} = Inner, Limits) ->
    case close_handle(Inner, Limits) of
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
-spec flush_first(port()) -> true.
flush_first(Port) ->
    quiet(Port),
    _ = gen_tcp:shutdown(Port, write),
    true.

%% Before the reactor starts: it arms SO_LINGER 0 on the socket while the
%% port still writes, which {linger, _} here would undo.
-spec quiet(port()) -> ok.
quiet(Port) ->
    _ = inet:setopts(Port, [{active, false}, {exit_on_close, false}, {linger, {false, 0}}]),
    ok.

%% Who sends FIN. A send that raced the close may have queued output after
%% all: the closing port still writes it, and its driver must send FIN
%% after it (OTP still takes the driver's controls on a closing port).
-spec fin_by(port(), boolean()) -> port | now.
fin_by(_Port, true) ->
    port;
fin_by(Port, false) ->
    case erlang:port_info(Port, queue_size) of
        {queue_size, N} when N > 0 -> flush_first(Port), port;
        _ -> now
    end.

%% socket:close/1 succeeds once. A send waiting in another process is cut
%% off by it, with part of its data sent.
-spec close_esock(socket:socket()) -> {ok, now | never} | {error, closed}.
close_esock(ESock) ->
    {Writers, Sent} = writes(ESock),
    case socket:close(ESock) of
        ok ->
            %% A writer waiting at the close, whose send did not complete
            %% before it (the info still answers on the closed socket).
            {_, SentThen} = writes(ESock),
            case Writers > SentThen - Sent of
                true -> {ok, never};
                false -> {ok, now}
            end;
        {error, _} ->
            {error, closed}
    end.

%% Sends in progress, and sends completed so far.
-spec writes(socket:socket()) -> {non_neg_integer(), non_neg_integer()}.
writes(ESock) ->
    case catch socket:info(ESock) of
        #{num_writers := N, counters := #{write_pkg := Sent}} -> {N, Sent};
        _ -> {0, 0}
    end.

%% The keeper passes results on to the notify pids (see fin_close_notifier)
%% and logs sockets that are cut off, when debug logging is on for it:
%% started if need be for that; for notifications only when it runs (the
%% reactor sends them itself without one). A lookup per close.
-spec keeper([pid()]) -> {[pid()], boolean()}.
keeper(Told) ->
    Log = fin_close_notifier:logging(),
    Keeper = case Log of
                 true -> fin_close_notifier:find();
                 false -> {ok, whereis(fin_close_notifier)}
             end,
    case Keeper of
        {ok, Pid} when is_pid(Pid), Told =/= [] orelse Log -> {[Pid], Log};
        _ -> {[], false}
    end.

%% abort/1 is rare, so it checks every kind of socket for TCP and not
%% listening (a gen_tcp socket may be a Unix domain one).
-spec abortable(handle()) -> ok | {error, atom()}.
abortable(Handle) ->
    %% Also a connection already reset: closing it is what was asked.
    fin_close_socket:borrowed(Handle, check_tcp).

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
    _ = inet:setopts(Socket, [{active, false}]),
    case reset({socket, ESock}) of
        ok -> _ = (catch gen_tcp:close(Socket)), ok;
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
