//! The NIF boundary: decodes terms, calls [`crate::sys`],
//! [`crate::duplicate`] and [`crate::reactor`], and turns errors into atoms.
//! The Erlang module `fin_close` owns the API; these functions assume it has
//! already resolved a socket term to its descriptor number.

use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use rustler::{
    Atom, Decoder, Encoder, Env, LocalPid, NifResult, OwnedEnv, Resource, ResourceArc, Term,
};
use socket2::SockRef;

use crate::duplicate::{self, Duplicate};
use crate::error::Error;
use crate::info::SocketInfo;
use crate::reactor::{Counters, Fin, Reactor, Report, Reservation};
use crate::sys;

#[cfg(feature = "diagnostics")]
mod diagnostics;
mod terms;
mod told;

use terms::{
    address, lingering_term, map, maybe_address, queue_error, queue_pairs, Options, Reason,
};
use told::{Token, Told};

#[cfg(feature = "diagnostics")]
use diagnostics::measured;
/// Measures the NIF call it opens with feature `diagnostics`; nothing
/// otherwise.
#[cfg(not(feature = "diagnostics"))]
macro_rules! measured {
    () => {};
}

mod atoms {
    rustler::atoms! {
        ok, undefined, none, infinity, refused, held, fin_close, fin_close_ended,
        fin_close_lingering, reason
    }
}

/// One hand-over, from the duplicate to the reactor: room reserved for the
/// socket while the caller closes its own handle, then started, or
/// cancelled (also by the garbage collector, should the caller die in
/// between: dropping the reservation gives the room back). Once started,
/// the same term is the reference in the socket's `notify` messages.
struct Handover(Mutex<Option<Reservation<Token>>>);

#[rustler::resource_impl]
impl Resource for Handover {}

impl Handover {
    fn take(&self) -> Option<Reservation<Token>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The reactor, started on first use so that nodes that only call `inq/1`
/// never get the thread, and started again should its thread have stopped
/// (see [`running`]).
static REACTOR: RwLock<Option<Arc<Reactor<Token>>>> = RwLock::new(None);

/// What every reactor of this OS process counts in, so that the counters go
/// on across a reactor started anew, and across a reload of the library.
static COUNTERS: LazyLock<Arc<Counters>> = LazyLock::new(Arc::default);

/// Closes refused for want of a resource, as the Erlang side counts them:
/// it is the one that knows a refusal is final (it retries once).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// The reactor if its thread runs.
fn running() -> Option<Arc<Reactor<Token>>> {
    let current = REACTOR.read().unwrap_or_else(|p| p.into_inner());
    current.as_ref().filter(|r| r.is_running()).cloned()
}

/// The running reactor, started if there is none. Its thread stops only
/// after a panic outside any one socket's step (each socket's steps are
/// guarded), which ends and reports every socket it held; the next caller
/// then starts another. A start that fails (no descriptor left for its
/// epoll, no thread) is not kept: the next close tries again.
fn reactor() -> Result<Arc<Reactor<Token>>, Error> {
    if let Some(reactor) = running() {
        return Ok(reactor);
    }
    let mut slot = REACTOR.write().unwrap_or_else(|p| p.into_inner());
    if let Some(reactor) = slot.as_ref().filter(|r| r.is_running()) {
        return Ok(Arc::clone(reactor));
    }
    let mut env = OwnedEnv::new();
    let reactor = Arc::new(Reactor::start(
        Arc::clone(&COUNTERS),
        move |token: Token, report: Report| {
            if let Some(told) = token {
                told.tell(&mut env, &report);
            }
        },
    )?);
    *slot = Some(Arc::clone(&reactor));
    Ok(reactor)
}

/// A descriptor number the Erlang side read from a socket that was open at
/// that moment, for one NIF call: tied to the call's environment (`'a`), it
/// cannot outlive the call nor go to another thread, and neither can what
/// it lends. A negative number is `badarg`.
struct Fd<'a> {
    raw: RawFd,
    call: PhantomData<Env<'a>>,
}

impl<'a> Decoder<'a> for Fd<'a> {
    fn decode(term: Term<'a>) -> NifResult<Fd<'a>> {
        match term.decode()? {
            raw if raw < 0 => Err(rustler::Error::BadArg),
            raw => Ok(Fd {
                raw,
                call: PhantomData,
            }),
        }
    }
}

impl<'a> Fd<'a> {
    /// The descriptor, for this call.
    fn borrow(&self) -> BorrowedFd<'a> {
        // SAFETY: `raw` is not -1. The Erlang side read it from a socket
        // that was open at that moment and checks after this call that the
        // socket is still open with the same descriptor, which proves the
        // number was not reused in between; the borrow ends with the call.
        // Should the socket have been closed meanwhile, the calls made here
        // (an ioctl, getsockopt, or a dup) fail with EBADF or act
        // read-only, and the Erlang side discards what they gave.
        unsafe { BorrowedFd::borrow_raw(self.raw) }
    }
}

/// One queue ioctl; with `tcp_only` (a socket-module socket, which may be of
/// any protocol) after checking the socket is TCP, in the same call.
fn queue(
    fd: Fd<'_>,
    tcp_only: bool,
    ioctl: fn(BorrowedFd<'_>) -> std::io::Result<usize>,
) -> Result<usize, Error> {
    let fd = fd.borrow();
    if tcp_only {
        duplicate::check_protocol(fd)?;
    }
    ioctl(fd).map_err(queue_error)
}

#[rustler::nif]
fn inq(fd: Fd<'_>, tcp_only: bool) -> Result<usize, Reason> {
    measured!();
    Ok(queue(fd, tcp_only, sys::inq)?)
}

#[rustler::nif]
fn outq(fd: Fd<'_>, tcp_only: bool) -> Result<usize, Reason> {
    measured!();
    Ok(queue(fd, tcp_only, sys::outq)?)
}

#[rustler::nif]
fn check_tcp(fd: Fd<'_>) -> NifResult<Atom> {
    measured!();
    duplicate::check_tcp(fd.borrow())?;
    Ok(atoms::ok())
}

/// Tells the VM that a NIF took about 1% of a time slice (a few system
/// calls, some 10 µs at worst), so that a process closing thousands of
/// sockets in a row is preempted as often as its work warrants.
fn took_a_while(env: Env<'_>) {
    let _ = rustler::schedule::consume_timeslice(env, 1);
}

/// Duplicates the socket's descriptor and takes room for it in the
/// reactor: the first half of a hand-over, before the caller closes its own
/// handle.
#[rustler::nif]
fn reserve<'a>(
    env: Env<'a>,
    fd: Fd<'a>,
    options: Options,
) -> Result<ResourceArc<Handover>, Reason> {
    measured!();
    took_a_while(env);
    let dup = Duplicate::of(fd.borrow())?;
    let reactor = match reactor() {
        Ok(reactor) => reactor,
        Err(e) => {
            dup.dispose();
            return Err(e.into());
        }
    };
    let reservation = reactor.reserve(dup, options.limits())?;
    Ok(ResourceArc::new(Handover(Mutex::new(Some(reservation)))))
}

/// Hands the socket over once the caller has closed its handle: our FIN
/// leaves now if `fin` says so, and every pid in `notify` will be told how
/// the socket ended, with `handover` as the reference, through `notifier`
/// (an empty list: none), which logs the end if `log` and it is not clean.
#[rustler::nif]
fn start(
    handover: ResourceArc<Handover>,
    fin: Fin,
    notify: Vec<LocalPid>,
    notifier: Vec<LocalPid>,
    log: bool,
) -> NifResult<Atom> {
    measured!();
    let reservation = handover.take().ok_or(Error::Closed)?;
    let notifier = notifier.into_iter().next();
    let token = (!notify.is_empty() || (log && notifier.is_some())).then(|| {
        let socket = SockRef::from(&reservation);
        Box::new(Told {
            ticket: (!notify.is_empty()).then(|| handover.clone()),
            pids: notify,
            notifier,
            log,
            local: socket.local_addr().ok().and_then(|a| a.as_socket()),
            peer: socket.peer_addr().ok().and_then(|a| a.as_socket()),
        })
    });
    // Its thread stopped since the reservation: another reactor takes it.
    let adopted = reservation
        .start(fin, token)
        .or_else(|orphan| match reactor() {
            Ok(reactor) => reactor.adopt(orphan),
            Err(_) => Err(orphan),
        });
    match adopted {
        Ok(_) => Ok(atoms::ok()),
        Err(orphan) => {
            orphan.dispose();
            Err(Error::ReactorDown.into())
        }
    }
}

/// Whether our FIN may leave before the caller closes its handle: not
/// while the socket is shut for reading and the peer's FIN has not come.
/// `false` for a hand-over started or cancelled.
#[rustler::nif]
fn fin_due(handover: ResourceArc<Handover>) -> bool {
    measured!();
    let reservation = handover.0.lock().unwrap_or_else(|p| p.into_inner());
    reservation.as_ref().is_some_and(Reservation::fin_due)
}

/// Gives the room back: another caller closed the socket first, or the
/// duplicate turned out to be of another socket.
#[rustler::nif]
fn cancel(handover: ResourceArc<Handover>) -> Atom {
    measured!();
    // Dropped outside the lock: dropping disposes of the duplicate.
    drop(handover.take());
    atoms::ok()
}

/// Gives back `n` descriptors by ending lingering sockets, the cheapest
/// first, and returns once the reactor has (at most 100 ms): for a close
/// that found no descriptor left for its duplicate. On a dirty I/O
/// scheduler, as it waits for the reactor thread.
#[rustler::nif(schedule = "DirtyIo")]
fn reclaim(n: u64) -> NifResult<Atom> {
    let reactor = running().ok_or(Error::ReactorDown)?;
    reactor.reclaim(n, Duration::from_millis(100))?;
    Ok(atoms::ok())
}

/// The state, addresses and kernel queues of a TCP socket, as a map.
#[rustler::nif]
fn info<'a>(env: Env<'a>, fd: Fd<'a>) -> Result<Term<'a>, Reason> {
    measured!();
    took_a_while(env);
    let info = SocketInfo::of(fd.borrow())?;
    let mut pairs = queue_pairs(env, &info).to_vec();
    pairs.push(("local", address(env, info.local)));
    pairs.push(("peer", maybe_address(env, info.peer)));
    Ok(map(env, &pairs))
}

/// Asks the reactor for the sockets lingering now. Returns `ok`, and `pid`
/// gets `{fin_close_lingering, Ref, [Map]}` soon after; or `none` when no
/// reactor runs, so there is nothing to list.
#[rustler::nif]
fn lingering(pid: LocalPid, reference: Term<'_>) -> Atom {
    measured!();
    let Some(reactor) = running() else {
        return atoms::none();
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
        Ok(()) => atoms::ok(),
        Err(_) => atoms::none(),
    }
}

/// The counters: the reactor's (zero before it starts), and the refused
/// closes counted here, as a map with the fields' names as keys.
#[rustler::nif]
fn stats(env: Env<'_>) -> NifResult<Term<'_>> {
    measured!();
    COUNTERS
        .snapshot()
        .encode(env)
        .map_put(atoms::refused(), REFUSED.load(Ordering::Relaxed))
}

#[rustler::nif]
fn refused() -> Atom {
    REFUSED.fetch_add(1, Ordering::Relaxed);
    atoms::ok()
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
