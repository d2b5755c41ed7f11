//! The NIF boundary: decodes terms, calls [`crate::sys`],
//! [`crate::duplicate`] and [`crate::reactor`], and turns errors into atoms.
//! The Erlang module `fin_close` owns the API; these functions assume it has
//! already resolved a socket term to its descriptor number.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, OwnedEnv, Resource, ResourceArc, Term};
use socket2::SockRef;

use crate::duplicate::{self, Duplicate};
use crate::error::Error;
use crate::info::SocketInfo;
use crate::reactor::{Closed, Limits, Reactor, Report, Reservation, StatsSnapshot};
use crate::sys;

#[cfg(feature = "diagnostics")]
mod diagnostics;
mod terms;

use terms::{
    address, lingering_term, map, maybe_address, queue_pairs, queue_reason, report_term, Reason,
};

#[cfg(feature = "diagnostics")]
use diagnostics::measured;
/// Measures the NIF call it opens with feature `diagnostics`; nothing
/// otherwise.
#[cfg(not(feature = "diagnostics"))]
macro_rules! measured {
    () => {};
}

mod atoms {
    rustler::atoms! { ok, error, closed, undefined, none, fin_close, fin_close_lingering, reason }
}

/// A duplicate waiting for the Erlang side to confirm it is the right socket.
/// Closed by the garbage collector if never used (the caller was killed).
struct DupResource(Mutex<Option<Duplicate>>);

#[rustler::resource_impl]
impl Resource for DupResource {}

impl Drop for DupResource {
    fn drop(&mut self) {
        // The destructor runs on a scheduler: never a blocking close.
        if let Some(dup) = self.0.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            dup.dispose();
        }
    }
}

/// The reference in `notify` messages of one lingering socket (a resource
/// term is a reference to Erlang): nothing but its identity.
struct Ticket;

#[rustler::resource_impl]
impl Resource for Ticket {}

/// A socket the reactor has room for, while the caller closes its own
/// handle: started, or dropped (also by the garbage collector, should the
/// caller die in between), which gives the room back.
struct Pending(Mutex<Option<(Reservation<Token>, ResourceArc<Ticket>)>>);

#[rustler::resource_impl]
impl Resource for Pending {}

/// Who to tell when a socket ends: the caller's `notify` pid, the keeper
/// when it logs; with the connection's addresses for the report.
struct Told {
    pids: Vec<LocalPid>,
    ticket: ResourceArc<Ticket>,
    local: std::net::SocketAddr,
    peer: Option<std::net::SocketAddr>,
}

/// Boxed, and absent when nobody is to be told: a lingering socket's entry
/// in the reactor then holds one null pointer for it.
type Token = Option<Box<Told>>;

static REACTOR: OnceLock<Reactor<Token>> = OnceLock::new();

/// Held while the reactor starts, so that only one caller starts it. A start
/// that fails (no descriptor left for its epoll, no thread) is not kept: the
/// next close tries again.
static STARTING: Mutex<()> = Mutex::new(());

/// Hand-overs refused for want of a resource (see [`Error::is_exhaustion`]).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Counts `e` in [`REFUSED`] if it is a want of resources, and passes it on.
fn refused(e: Error) -> Error {
    if e.is_exhaustion() {
        REFUSED.fetch_add(1, Ordering::Relaxed);
    }
    e
}

/// The reactor, started on first use so that nodes that only call `inq/1`
/// never get the thread.
fn reactor() -> Result<&'static Reactor<Token>, Error> {
    if let Some(reactor) = REACTOR.get() {
        return Ok(reactor);
    }
    let _starting = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(reactor) = REACTOR.get() {
        return Ok(reactor);
    }
    let mut env = OwnedEnv::new();
    let reactor = Reactor::start(move |token: Token, report: Report| {
        if let Some(told) = token {
            for pid in &told.pids {
                // A dead receiver is not an error of ours.
                let _ = env.send_and_clear(pid, |env| {
                    let result = report_term(env, &report, &told);
                    (atoms::fin_close(), &told.ticket, result)
                });
            }
        }
    })?;
    Ok(REACTOR.get_or_init(|| reactor))
}

/// Borrows the descriptor number the Erlang side read from an open socket.
fn borrow(fd: i32) -> NifResult<BorrowedFd<'static>> {
    if fd < 0 {
        return Err(rustler::Error::BadArg);
    }
    // SAFETY: `fd` is not -1. The Erlang side read it from a socket that was
    // open at that moment and checks afterwards that the socket is still
    // open with the same descriptor, which proves the number was not reused
    // in between. Should it have been closed meanwhile, the calls made here
    // (an ioctl, getsockopt, or a dup) fail with EBADF or act read-only.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// One queue ioctl; with `tcp_only` (a socket-module socket, which may be of
/// any protocol) after checking the socket is TCP, in the same call.
fn queue(
    fd: i32,
    tcp_only: bool,
    ioctl: fn(BorrowedFd<'_>) -> std::io::Result<usize>,
) -> NifResult<Result<usize, Reason>> {
    let fd = borrow(fd)?;
    if tcp_only {
        if let Err(e) = duplicate::check_protocol(&SockRef::from(&fd)) {
            return Ok(Err(e.into()));
        }
    }
    Ok(ioctl(fd).map_err(queue_reason))
}

#[rustler::nif]
fn inq(fd: i32, tcp_only: bool) -> NifResult<Result<usize, Reason>> {
    measured!();
    queue(fd, tcp_only, sys::inq)
}

#[rustler::nif]
fn outq(fd: i32, tcp_only: bool) -> NifResult<Result<usize, Reason>> {
    measured!();
    queue(fd, tcp_only, sys::outq)
}

#[rustler::nif]
fn check_tcp(env: Env<'_>, fd: i32) -> NifResult<Term<'_>> {
    measured!();
    let fd = borrow(fd)?;
    Ok(match duplicate::check_tcp(SockRef::from(&fd)) {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => (atoms::error(), Reason::from(e)).encode(env),
    })
}

/// Tells the VM that a NIF took about 1% of a time slice (a few system
/// calls, some 10 µs at worst), so that a process closing thousands of
/// sockets in a row is preempted as often as its work warrants.
fn took_a_while(env: Env<'_>) {
    let _ = rustler::schedule::consume_timeslice(env, 1);
}

/// Duplicates the socket's descriptor. `last`: no retry follows, so a want
/// of resources counts as a refused hand-over.
#[rustler::nif]
fn dup(env: Env<'_>, fd: i32, last: bool) -> NifResult<Term<'_>> {
    measured!();
    took_a_while(env);
    Ok(match Duplicate::of(borrow(fd)?) {
        Ok(d) => {
            let local = address(env, d.local());
            let peer = maybe_address(env, d.peer());
            let resource = ResourceArc::new(DupResource(Mutex::new(Some(d))));
            (atoms::ok(), (resource, local, peer)).encode(env)
        }
        Err(e) if !last => (atoms::error(), Reason::from(e)).encode(env),
        Err(e) => (atoms::error(), Reason::from(refused(e))).encode(env),
    })
}

fn take(dup: &DupResource) -> Option<Duplicate> {
    dup.0.lock().unwrap_or_else(|p| p.into_inner()).take()
}

#[rustler::nif]
fn discard(dup: ResourceArc<DupResource>) -> Atom {
    measured!();
    if let Some(dup) = take(&dup) {
        dup.dispose();
    }
    atoms::ok()
}

/// Takes room in the reactor for the duplicate (`{ok, Pending}`), before
/// the caller closes its handle; the duplicate is the reactor's, or disposed
/// of, either way; `idle_ms` and `max_drain` take `u64::MAX`
/// for no bound.
#[rustler::nif]
fn reserve<'a>(
    env: Env<'a>,
    dup: ResourceArc<DupResource>,
    timeout_ms: u64,
    idle_ms: u64,
    max_drain: u64,
    max_lingering: u64,
    notify: Vec<LocalPid>,
) -> NifResult<Term<'a>> {
    measured!();
    let Some(d) = take(&dup) else {
        return Ok((atoms::error(), atoms::closed()).encode(env));
    };
    let reactor = match reactor() {
        Ok(r) => r,
        Err(e) => {
            d.dispose();
            return Ok((atoms::error(), Reason::from(refused(e))).encode(env));
        }
    };
    let limits = Limits {
        timeout: Duration::from_millis(timeout_ms),
        idle: (idle_ms != u64::MAX).then(|| Duration::from_millis(idle_ms)),
        max_drain,
        max_lingering,
    };
    let (local, peer) = (d.local(), d.peer());
    let mut ticket = None;
    let reserved = reactor.reserve(d, limits, |_id| {
        let t = ResourceArc::new(Ticket);
        ticket = Some(t.clone());
        (!notify.is_empty()).then(|| {
            Box::new(Told {
                pids: notify,
                ticket: t,
                local,
                peer,
            })
        })
    });
    Ok(match (reserved, ticket) {
        (Ok(reservation), Some(ticket)) => {
            let pending = ResourceArc::new(Pending(Mutex::new(Some((reservation, ticket)))));
            (atoms::ok(), pending).encode(env)
        }
        (Err(e), _) => (atoms::error(), Reason::from(refused(e))).encode(env),
        (Ok(_), None) => unreachable!("reserve always makes the token"),
    })
}

/// Starts the linger of a reserved socket whose handle the caller has
/// closed; gives the reference its `notify` messages carry.
#[rustler::nif]
fn start(
    env: Env<'_>,
    pending: ResourceArc<Pending>,
    fin_by_vm: bool,
    truncated: bool,
) -> Term<'_> {
    measured!();
    let taken = pending.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some((reservation, ticket)) = taken else {
        return (atoms::error(), atoms::closed()).encode(env);
    };
    let closed = Closed {
        fin_by_vm,
        truncated,
    };
    match reservation.start(closed) {
        Ok(_) => (atoms::ok(), ticket).encode(env),
        Err(e) => (atoms::error(), Reason::from(e)).encode(env),
    }
}

/// Gives the room of a reserved socket back: another caller closed it.
#[rustler::nif]
fn cancel(pending: ResourceArc<Pending>) -> Atom {
    measured!();
    // Dropped outside the lock: dropping disposes of the duplicate.
    let taken = pending.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(taken);
    atoms::ok()
}

/// Gives back `n` descriptors by ending lingering sockets, the cheapest
/// first, and returns once the reactor has (at most 100 ms): for a close
/// that found no descriptor left for its duplicate. On a dirty I/O
/// scheduler, as it waits for the reactor thread.
#[rustler::nif(schedule = "DirtyIo")]
fn reclaim(env: Env<'_>, n: u64) -> Term<'_> {
    match REACTOR
        .get()
        .map(|r| r.reclaim(n, Duration::from_millis(100)))
    {
        Some(Ok(())) => atoms::ok().encode(env),
        Some(Err(e)) => (atoms::error(), Reason::from(e)).encode(env),
        None => (atoms::error(), Reason::from(Error::ReactorDown)).encode(env),
    }
}

/// The state, addresses and kernel queues of a TCP socket, as a map.
#[rustler::nif]
fn info(env: Env<'_>, fd: i32) -> NifResult<Term<'_>> {
    measured!();
    took_a_while(env);
    Ok(match SocketInfo::of(borrow(fd)?) {
        Ok(info) => {
            let mut pairs = queue_pairs(env, &info).to_vec();
            pairs.push(("local", address(env, info.local)));
            pairs.push(("peer", maybe_address(env, info.peer)));
            (atoms::ok(), map(env, &pairs)).encode(env)
        }
        Err(e) => (atoms::error(), Reason::from(e)).encode(env),
    })
}

/// Asks the reactor for the sockets lingering now. Returns `ok`, and `pid`
/// gets `{fin_close_lingering, Ref, [Map]}` soon after; or `none` when no
/// reactor runs, so there is nothing to list.
#[rustler::nif]
fn lingering<'a>(env: Env<'a>, pid: LocalPid, reference: Term<'a>) -> Term<'a> {
    measured!();
    let Some(reactor) = REACTOR.get() else {
        return atoms::none().encode(env);
    };
    let mut owned = OwnedEnv::new();
    let reference = owned.save(reference);
    let asked = reactor.lingering(move |list| {
        let _ = owned.send_and_clear(&pid, |env| {
            let items: Vec<Term<'_>> = list.iter().map(|l| lingering_term(env, l)).collect();
            (atoms::fin_close_lingering(), reference.load(env), items)
        });
    });
    match asked {
        Ok(()) => atoms::ok().encode(env),
        Err(_) => atoms::none().encode(env),
    }
}

/// The counters: the reactor's (zero before it starts) and the refused
/// closes counted here, as a map with the fields' names as keys.
#[rustler::nif]
fn stats() -> StatsSnapshot {
    measured!();
    let counted = REACTOR.get().map(Reactor::stats).unwrap_or_default();
    StatsSnapshot {
        refused: REFUSED.load(Ordering::Relaxed),
        ..counted
    }
}

/// Runs each time `fin_close_nif` loads the library, which can happen more
/// than once in one OS process: `code:purge/1` of the module makes the VM
/// close the library, and the next call of the module loads it again. The
/// reactor thread runs this library's code and holds its statics for the
/// life of the process, so the library is pinned in memory: the VM's close
/// then unmaps nothing, and a later load finds the same library with the
/// same statics, reactor, lingering sockets and counters.
fn load(_env: Env<'_>, _info: Term<'_>) -> bool {
    sys::pin_this_library().is_ok()
}

rustler::init!("fin_close_nif", load = load);
