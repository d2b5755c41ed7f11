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
%% Options of {@link close/2}. Their defaults and bounds are listed once,
%% in `fin_close_closing:option_table/0', which checks them.

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

%% Descriptors given back at once when a close or an accept found none left
%% (at least; more if the process is short of its headroom): enough for a
%% burst of accepts and closes, while the reactor keeps that headroom free
%% on its own (native/src/reactor/relief.rs).
-define(RECLAIM, 64).

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
    fin_close_closing:close(Socket, Opts).

%% @doc Checks options for {@link close/2} without closing anything:
%% `ok', or `badarg' raised as `close/2' would. For wrappers that take
%% options long before a close, such as {@link fin_close_ranch}.
-spec check_options(opts()) -> ok.
check_options(Opts) ->
    fin_close_closing:check_options(Opts).

%% @doc Closes `Socket' with RST on purpose (SO_LINGER 0), discarding what
%% is queued in both directions: for dropping a peer, not for ending a
%% reply. Returns once the socket is closed.
-spec abort(socket()) -> ok | {error, atom()}.
abort(Socket) ->
    fin_close_closing:abort(Socket).

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
