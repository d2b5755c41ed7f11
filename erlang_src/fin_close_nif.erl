%% @private
%% @doc The native functions of fin_close. Kept tiny and stable: a NIF
%% library cannot be upgraded in place, so everything that may change lives
%% in `fin_close', which can be reloaded freely.
-module(fin_close_nif).

-export([inq/2]).
-export([outq/2]).
-export([check_tcp/1]).
-export([dup/2]).
-export([discard/1]).
-export([reserve/6]).
-export([start/3]).
-export([cancel/1]).
-export([reclaim/1]).
-export([info/1]).
-export([lingering/2]).
-export([stats/0]).
-export([measure_held/1]).
-export([held/0]).

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

%% Last: no retry follows, so a want of resources counts as refused.
-spec dup(fd(), boolean()) -> {ok, {reference(), address(), address() | undefined}}
                              | {error, atom()}.
dup(_Fd, _Last) -> erlang:nif_error(nif_not_loaded).

-spec discard(reference()) -> ok.
discard(_Dup) -> erlang:nif_error(nif_not_loaded).

%% Takes room in the reactor for the duplicate, before the caller closes its
%% own handle (at MaxLingering sockets lingering, the reactor reclaims one).
%% Every pid in Notify gets {fin_close, Ticket, Result} when the socket
%% ends. IdleMs and MaxDrain take 2^64-1 for no bound.
-spec reserve(reference(), non_neg_integer(), non_neg_integer(), non_neg_integer(),
              non_neg_integer(), [pid()]) -> {ok, reference()} | {error, atom()}.
reserve(_Dup, _TimeoutMs, _IdleMs, _MaxDrain, _MaxLingering, _Notify) ->
    erlang:nif_error(nif_not_loaded).

%% Starts lingering once the caller closed its handle: FinByVm when the
%% port sends FIN itself after its queue, Truncated when a send was cut
%% short. Gives the Ticket.
-spec start(reference(), boolean(), boolean()) -> {ok, reference()} | {error, atom()}.
start(_Pending, _FinByVm, _Truncated) -> erlang:nif_error(nif_not_loaded).

%% Gives the room back: someone else closed the socket first.
-spec cancel(reference()) -> ok.
cancel(_Pending) -> erlang:nif_error(nif_not_loaded).

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

%% Measuring how long each native call holds its scheduler thread, for
%% tests and diagnosis: a few system calls more per call while on.
%% Switching it on clears what was measured. held/0 gives, over the calls
%% since, the most one call spent on the CPU, asleep (blocked: must never
%% happen) and waiting for a CPU (preempted by the kernel), its wall time,
%% and how many calls slept or were preempted at all. Only in a NIF built
%% with the cargo feature `diagnostics' (this project's make test and make
%% bench); elsewhere both raise `nif_not_loaded'.
-spec measure_held(boolean()) -> ok.
measure_held(_On) -> erlang:nif_error(nif_not_loaded).

-spec held() -> #{calls := non_neg_integer(), max_cpu_us := non_neg_integer(),
                  max_asleep_us := non_neg_integer(), slept := non_neg_integer(),
                  max_waiting_us := non_neg_integer(), preempted := non_neg_integer(),
                  max_wall_us := non_neg_integer()}.
held() -> erlang:nif_error(nif_not_loaded).
