%% @private
%% @doc The native functions of fin_close. Kept tiny and stable: a NIF
%% library cannot be upgraded in place, so everything that may change lives
%% in `fin_close', which can be reloaded freely.
-module(fin_close_nif).

-export([inq/2]).
-export([outq/2]).
-export([check_tcp/1]).
-export([reserve/2]).
-export([start/5]).
-export([fin_due/1]).
-export([cancel/1]).
-export([reclaim/1]).
-export([info/1]).
-export([lingering/2]).
-export([stats/0]).
-export([refused/0]).
-export([measure_held/1]).
-export([held/0]).
-export([hold_reactor/2]).
-export([inject_fault/1]).

-on_load(load/0).

-type fd() :: non_neg_integer().
-type address() :: fin_close:address().

-spec load() -> ok | {error, {atom(), string()}}.
load() ->
    erlang:load_nif(filename:join(priv_dir(), "libfin_close_nif"), 0).

%% code:priv_dir/1 needs the application on the code path by name; when the
%% beam files are loaded by path (escripts, -pa), look beside them.
-spec priv_dir() -> file:filename().
priv_dir() ->
    case code:priv_dir(fin_close) of
        {error, bad_name} ->
            filename:join(filename:dirname(filename:dirname(code:which(?MODULE))), "priv");
        Dir ->
            Dir
    end.

%% TcpOnly: check that the socket is TCP first (eprototype if not).
-spec inq(fd(), boolean()) -> {ok, non_neg_integer()} | {error, atom()}.
inq(_Fd, _TcpOnly) -> erlang:nif_error(nif_not_loaded).

-spec outq(fd(), boolean()) -> {ok, non_neg_integer()} | {error, atom()}.
outq(_Fd, _TcpOnly) -> erlang:nif_error(nif_not_loaded).

-spec check_tcp(fd()) -> ok | {error, atom()}.
check_tcp(_Fd) -> erlang:nif_error(nif_not_loaded).

%% The first half of a hand-over: duplicates the descriptor and takes room
%% for it in the reactor (at max_lingering sockets lingering, the reactor
%% reclaims one once this one is in). Opts: close/2's options, checked.
-spec reserve(fd(), #{atom() => term()}) -> {ok, reference()} | {error, atom()}.
reserve(_Fd, _Opts) -> erlang:nif_error(nif_not_loaded).

%% Whether our FIN may leave before the caller's handle is closed: not
%% while the socket is shut for reading and the peer's FIN has not come.
-spec fin_due(reference()) -> boolean().
fin_due(_Handover) -> erlang:nif_error(nif_not_loaded).

%% The second half, once the caller closed its handle: Fin says who sends
%% our FIN (now: this call). Every pid in Notify gets {fin_close, Handover,
%% Result} when the socket ends, passed on by the notifier (in Notifier; [] for
%% none: then the reactor sends it), which logs the end if Log and it is not
%% clean.
-spec start(reference(), fin_close_socket:fin(), [pid()], [pid()], boolean()) ->
          ok | {error, atom()}.
start(_Handover, _Fin, _Notify, _Notifier, _Log) -> erlang:nif_error(nif_not_loaded).

%% Gives the room back: someone else closed the socket first, or the
%% descriptor turned out to be another socket's.
-spec cancel(reference()) -> ok.
cancel(_Handover) -> erlang:nif_error(nif_not_loaded).

%% Ends up to N lingering sockets, the cheapest first, to give their
%% descriptors back; returns once they are closed (a dirty NIF).
-spec reclaim(non_neg_integer()) -> ok | {error, atom()}.
reclaim(_N) -> erlang:nif_error(nif_not_loaded).

%% The socket's TCP state, addresses and kernel queues.
-spec info(fd()) -> {ok, #{state := atom(), local := address(), peer := address() | undefined,
                          recv_q := non_neg_integer() | undefined,
                          send_q := non_neg_integer() | undefined}} | {error, atom()}.
info(_Fd) -> erlang:nif_error(nif_not_loaded).

%% ok: Pid gets {fin_close_lingering, Ref, [map()]} soon; none: no reactor.
-spec lingering(pid(), reference()) -> ok | none.
lingering(_Pid, _Ref) -> erlang:nif_error(nif_not_loaded).

-spec stats() -> #{atom() => non_neg_integer()}.
stats() -> erlang:nif_error(nif_not_loaded).

%% Counts a close refused for want of a resource (the caller decides).
-spec refused() -> ok.
refused() -> erlang:nif_error(nif_not_loaded).

%% The library loaded, without this function: it is only in builds with the
%% cargo feature `diagnostics'.
-spec not_in_this_build() -> no_return().
not_in_this_build() -> erlang:nif_error({not_in_this_build, diagnostics}).

%% Measuring how long each native call holds its scheduler thread, for
%% tests and diagnosis: a few system calls more per call while on.
%% Switching it on clears what was measured. held/0 gives, over the calls
%% since, the most one call spent on the CPU, asleep (blocked: must never
%% happen) and waiting for a CPU (preempted by the kernel), its wall time,
%% and how many calls slept or were preempted at all. Only in a NIF built
%% with the cargo feature `diagnostics' (this project's make test and make
%% bench); elsewhere both raise `{not_in_this_build, diagnostics}'.
-spec measure_held(boolean()) -> ok.
measure_held(_On) -> not_in_this_build().

%% The keys are the measures' names in native/src/held.rs.
-spec held() -> #{atom() => non_neg_integer()}.
held() -> not_in_this_build().

%% Keeps the reactor thread busy for Ms milliseconds (it adopts, reads and
%% ends nothing meanwhile); Pid gets {fin_close, held} once it is. For
%% tests of what must not wait for the reactor; feature `diagnostics'.
-spec hold_reactor(pid(), non_neg_integer()) -> ok | {error, atom()}.
hold_reactor(_Pid, _Ms) -> not_in_this_build().

%% Makes the reactor thread panic once, as a bug of its own would: in the
%% next socket's adoption (adopt), or outside any socket (thread: the thread
%% dies). For the fault suite; feature `diagnostics'.
-spec inject_fault(adopt | thread) -> ok.
inject_fault(_At) -> not_in_this_build().
