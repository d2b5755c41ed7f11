//! The lingering close: one thread, one epoll set, every lingering socket.
//!
//! A socket handed over here has been closed by the VM; the reactor holds the
//! last descriptor of it (a [`Duplicate`]). It sends FIN after everything
//! already queued in the kernel, discards whatever the peer still sends until
//! the peer's FIN arrives, and only then closes, so the kernel never finds
//! unread bytes at close time and never answers with RST. A socket ends
//! [`Outcome::Clean`] only once the peer's FIN has arrived (seen in the TCP
//! state, not inferred from a read of 0, which our own SHUT_RD also gives)
//! and the peer has acknowledged every byte of ours. Time in all
//! ([`Limits::timeout`]), time without progress ([`Limits::idle`]) and
//! discarded bytes ([`Limits::max_drain`]) are bounded; a socket cut off by
//! any is closed abortively (RST) and its [`Report`] says so.
//!
//! A hand-over has two steps, so that exactly one caller hands a socket
//! over: [`Reactor::reserve`] takes the room (and may refuse, the socket
//! still the caller's); the caller then closes its own handle, which only
//! one caller can do, and [`Reservation::start`]s the linger or drops the
//! reservation. Nothing here makes the caller wait on a peer or on the
//! reactor's work: the only waits possible are two short critical sections
//! shared with the thread, the inbox's lock and the kernel's lock of the
//! epoll set.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::duplicate::Duplicate;
use crate::error::{errno_name, Error};
use crate::info::{SocketInfo, TcpState};
use crate::sys::{self, recv_discard, Epoll, Event, EventFd, TcpProgress};

/// Identifies one lingering socket; never reused.
pub type LingerId = u64;

/// The epoll token of the wake-up eventfd; socket ids start above it.
const WAKE: u64 = 0;

/// How often an awake reactor looks at its inbox unsignalled, and how long
/// it stays awake after the last command (see `look_at_inbox`): the most a
/// hand-over waits in a burst, and the cost of one (ten wake-ups).
const POLL: Duration = Duration::from_millis(1);
const AWAKE: Duration = Duration::from_millis(10);

/// Largest single discard request: one `recv` empties any receive queue.
const MAX_DISCARD: u64 = 1 << 30;

/// How often the FIN of a socket whose VM side sends it (a port writing
/// out its queue) is looked for: no event announces it. From the first
/// interval, doubling up to the last, so that a port done at once is seen
/// at once and a thousand slow ones cost little.
const VM_FIN_POLL: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(100));

/// How long a peer of a socket shut for reading must have sent nothing
/// before our FIN goes (at most half the idle bound). Linux resets a
/// connection that gets data once it has sent FIN after SHUT_RD
/// (`tcp_rcv_state_process`, FIN_WAIT1/2 with RCV_SHUTDOWN), so the FIN
/// waits for the peer's, or for a pause in what the peer sends.
const QUIET: Duration = Duration::from_secs(1);

/// The share of the process's descriptors (RLIMIT_NOFILE) kept free: when
/// a new duplicate's number shows fewer free below the limit, lingering
/// sockets give theirs back ([`Outcome::Reclaimed`]). 1/16, as nginx keeps
/// for new connections before it closes reusable ones: room for a burst of
/// accepts and files while the reclaimed sockets close.
const HEADROOM: u64 = 16;

/// How long a socket may linger and how much it may discard, and when the
/// reactor refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from the hand-over until the socket is cut off.
    pub timeout: Duration,
    /// Time without progress until the socket is cut off: no byte and no
    /// FIN from the peer, and no byte of ours acknowledged. Looked at once
    /// per period, so a socket ends between one and two periods after its
    /// last progress. `None` for no such bound.
    pub idle: Option<Duration>,
    /// Bytes the reactor may discard; one more and the socket is cut off.
    pub max_drain: u64,
    /// When this many sockets linger already, a hand-over makes the reactor
    /// reclaim one ([`Outcome::Reclaimed`]), the cheapest first; `u64::MAX`
    /// for no limit.
    pub max_lingering: u64,
}

/// The epoll events of a lingering socket: edge-triggered, so a socket
/// whose peer sends nothing costs no wake-up.
const EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// How a lingering socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Our FIN was sent after all our data and the peer's FIN arrived: the
    /// close was graceful.
    Clean,
    /// Cut off at [`Limits::timeout`] before the peer's FIN arrived or
    /// before it acknowledged all our data: reset, unless all was
    /// delivered but the peer's FIN (see `delivered`).
    Timeout,
    /// Cut off after [`Limits::idle`] without progress, as [`Outcome::Timeout`].
    Idle,
    /// Cut off (RST) after discarding more than [`Limits::max_drain`] bytes.
    DrainLimit,
    /// The peer reset the connection while it lingered.
    Reset,
    /// Reset at once: the caller's side was cut short when it closed (a
    /// send still running), and the peer must not take part of a message
    /// for all of it.
    Truncated,
    /// Ended early to give its descriptor back: the process ran short of
    /// descriptors, or [`Limits::max_lingering`] was reached. Closed
    /// quietly when all was delivered but the peer's FIN, else reset.
    Reclaimed,
    /// A system call failed; the POSIX name of its error, or
    /// `reactor_stopped` for a socket the stopping reactor closed.
    Error(&'static str),
}

impl Outcome {
    /// The outcome's name as an Erlang atom.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Timeout => "timeout",
            Outcome::Idle => "idle",
            Outcome::Truncated => "truncated",
            Outcome::Reclaimed => "reclaimed",
            Outcome::DrainLimit => "drain_limit",
            Outcome::Reset => "reset",
            Outcome::Error(_) => "error",
        }
    }

    /// Whether the socket is closed with SO_LINGER 0 (RST): a peer that is
    /// cut off, or one whose reply is known to be incomplete, must not see
    /// an orderly end of stream.
    fn abortive(&self) -> bool {
        !matches!(self, Outcome::Clean | Outcome::Reset)
    }
}

/// What the reactor tells its owner when a socket has been closed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Bytes discarded from the peer after the hand-over.
    pub drained: u64,
    /// Time from the hand-over to the final close.
    pub lingered: Duration,
}

/// One socket lingering now, as [`Reactor::lingering`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lingering {
    /// The id [`Reactor::linger`] returned.
    pub id: LingerId,
    /// The socket's state, addresses and queues now; an error if they
    /// cannot be read.
    pub now: Result<SocketInfo, String>,
    /// Time since the hand-over.
    pub lingered: Duration,
    /// Time left until it is cut off.
    pub remaining: Duration,
    /// Bytes discarded so far.
    pub drained: u64,
    /// The VM's port still writes its output; no FIN sent yet.
    pub port_pending: bool,
    /// The peer's FIN has arrived.
    pub peer_fin: bool,
}

/// Takes the list of lingering sockets, on the reactor thread.
pub type ListReply = Box<dyn FnOnce(Vec<Lingering>) + Send>;

/// Counters since the reactor started, readable from any thread.
#[derive(Debug, Default)]
struct Stats {
    lingering: AtomicU64,
    clean: AtomicU64,
    timeout: AtomicU64,
    idle: AtomicU64,
    truncated: AtomicU64,
    reclaimed: AtomicU64,
    drain_limit: AtomicU64,
    reset: AtomicU64,
    error: AtomicU64,
    drained: AtomicU64,
    memory: AtomicU64,
}

/// A copy of the reactor's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Sockets handed over and not yet closed.
    pub lingering: u64,
    /// Sockets ended with [`Outcome::Clean`].
    pub clean: u64,
    /// Sockets ended with [`Outcome::Timeout`].
    pub timeout: u64,
    /// Sockets ended with [`Outcome::Idle`].
    pub idle: u64,
    /// Sockets ended with [`Outcome::Truncated`].
    pub truncated: u64,
    /// Sockets ended with [`Outcome::Reclaimed`].
    pub reclaimed: u64,
    /// Sockets ended with [`Outcome::DrainLimit`].
    pub drain_limit: u64,
    /// Sockets ended with [`Outcome::Reset`].
    pub reset: u64,
    /// Sockets ended with [`Outcome::Error`].
    pub error: u64,
    /// Bytes discarded in all.
    pub drained: u64,
    /// Bytes the reactor's own tables take now (an estimate from their
    /// capacities; the sockets' kernel memory is not counted).
    pub memory: u64,
}

enum Command<T> {
    /// Boxed: the inbox is a vector that callers push to on a scheduler
    /// thread, and growing a vector of large elements during a burst of
    /// closes copied hundreds of kilobytes in one push.
    Adopt(Box<Adoption<T>>),
    /// Give back this many descriptors, and say when done.
    Reclaim(u64, Option<SyncSender<()>>),
    List(ListReply),
    Stop,
}

/// How the caller's own handle of a socket was closed, for
/// [`Reservation::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Closed {
    /// The VM sends the FIN itself once it has written what it still holds
    /// (a port shut down for writing and closed with output queued): the
    /// reactor does not, and only finishes once it has gone out.
    pub fin_by_vm: bool,
    /// A send was still running when the handle was closed, so the peer got
    /// part of a message: the socket is reset ([`Outcome::Truncated`]).
    pub truncated: bool,
}

struct Adoption<T> {
    id: LingerId,
    dup: Duplicate,
    limits: Limits,
    closed: Closed,
    /// [`Limits::max_lingering`] was reached at the reservation: one socket
    /// is reclaimed once this one is in the table (it, should it be the
    /// cheapest), and only if the hand-over goes ahead.
    make_room: bool,
    token: T,
    started: Instant,
}

struct Shared<T> {
    /// Written by callers (registration) and waited on by the thread.
    epoll: Epoll,
    inbox: Mutex<Vec<Command<T>>>,
    /// True while a wake-up is written and not yet consumed, or while the
    /// thread is awake and looks at the inbox on its own: a push then
    /// writes no eventfd.
    wake_pending: AtomicBool,
    waker: EventFd,
    running: AtomicBool,
    next_id: AtomicU64,
    stats: Stats,
}

impl<T> Shared<T> {
    fn inbox(&self) -> MutexGuard<'_, Vec<Command<T>>> {
        // The lock guards a plain Vec that no holder can leave half-updated,
        // so a poisoned lock is still consistent.
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `command`; gives it back if the thread has stopped.
    fn push(&self, command: Command<T>) -> Result<(), Command<T>> {
        {
            let mut inbox = self.inbox();
            if !self.running.load(Ordering::Acquire) {
                return Err(command);
            }
            inbox.push(command);
        }
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.waker.signal();
        }
        Ok(())
    }

    /// Gives back the room a reservation took, and the duplicate.
    fn release(&self, dup: Duplicate) {
        // The caller's descriptor may keep the file open, and with it this
        // registration: remove it before the duplicate goes.
        let _ = self.epoll.delete(dup.as_fd());
        self.stats.lingering.fetch_sub(1, Ordering::Relaxed);
        dup.dispose();
    }
}

/// The reactor: a handle to its thread. Dropping it stops the thread and
/// resets every socket still lingering (outcome `Error("reactor_stopped")`).
pub struct Reactor<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    thread: Option<JoinHandle<()>>,
}

/// Room taken in the reactor for one socket, by [`Reactor::reserve`]:
/// [`Reservation::start`] lingers on it; dropping it gives the room back
/// and disposes of the duplicate, and nobody is told anything.
pub struct Reservation<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    adoption: Option<Box<Adoption<T>>>,
}

impl<T: Send + 'static> Reservation<T> {
    /// The id of the socket, as its reports will carry it.
    pub fn id(&self) -> LingerId {
        self.adoption.as_ref().map_or(0, |a| a.id)
    }

    /// Starts lingering, once the caller has closed its own handle. Returns
    /// at once. Fails only when the thread has stopped
    /// ([`Error::ReactorDown`], after a panic in it): the duplicate, the
    /// connection's last descriptor now, is then disposed of, so the
    /// connection ends as a plain close would end it.
    pub fn start(mut self, closed: Closed) -> Result<LingerId, Error> {
        let mut adoption = self.adoption.take().expect("a reservation starts once");
        let id = adoption.id;
        adoption.closed = closed;
        // The clock runs from the close.
        adoption.started = Instant::now();
        match self.shared.push(Command::Adopt(adoption)) {
            Ok(()) => Ok(id),
            Err(Command::Adopt(refused)) => {
                self.shared.release(refused.dup);
                Err(Error::ReactorDown)
            }
            Err(_) => unreachable!("push gives back what it was given"),
        }
    }
}

impl<T: Send + 'static> Drop for Reservation<T> {
    fn drop(&mut self) {
        if let Some(adoption) = self.adoption.take() {
            self.shared.release(adoption.dup);
        }
    }
}

impl<T: Send + 'static> Reactor<T> {
    /// Starts the reactor thread. `on_end` runs on that thread once for every
    /// socket, with the token given to [`Reactor::reserve`] and the report.
    pub fn start<F>(on_end: F) -> io::Result<Reactor<T>>
    where
        F: FnMut(T, Report) + Send + 'static,
    {
        let epoll = Epoll::new()?;
        let shared = Arc::new(Shared {
            epoll,
            inbox: Mutex::new(Vec::new()),
            wake_pending: AtomicBool::new(false),
            waker: EventFd::new()?,
            running: AtomicBool::new(true),
            next_id: AtomicU64::new(WAKE + 1),
            stats: Stats::default(),
        });
        shared
            .epoll
            .add(shared.waker.as_fd(), libc::EPOLLIN as u32, WAKE)?;
        let worker = Worker {
            spare: Vec::new(),
            stopping: false,
            shared: Arc::clone(&shared),
            entries: BTreeMap::new(),
            timers: BTreeSet::new(),
            descriptor_limit: None,
            on_end: Box::new(on_end),
        };
        let thread = std::thread::Builder::new()
            .name("fin_close_reactor".into())
            .spawn(move || worker.run())?;
        Ok(Reactor {
            shared,
            thread: Some(thread),
        })
    }

    /// Takes room for `dup` in the reactor; the caller then closes its own
    /// handle of the socket and starts the linger (see [`Reservation`]).
    ///
    /// When [`Limits::max_lingering`] sockets linger already, the reactor
    /// reclaims one. Refused, with `dup` disposed of, when the epoll set
    /// takes no more (ENOSPC at `fs.epoll.max_user_watches`, ENOMEM) or when the
    /// thread has stopped ([`Error::ReactorDown`]). The caller still holds
    /// the socket then, and closing the duplicate sends nothing.
    ///
    /// `token` makes the value given back to `on_end`, from the socket's id.
    pub fn reserve<F>(
        &self,
        dup: Duplicate,
        limits: Limits,
        token: F,
    ) -> Result<Reservation<T>, Error>
    where
        F: FnOnce(LingerId) -> T,
    {
        let shared = &*self.shared;
        if !shared.running.load(Ordering::Acquire) {
            dup.dispose();
            return Err(Error::ReactorDown);
        }
        let lingering = &shared.stats.lingering;
        // Room is made, not refused: see `Adoption::make_room`.
        let make_room = lingering.fetch_add(1, Ordering::Relaxed) >= limits.max_lingering;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        // Registered for nothing but what epoll always reports, hang-ups and
        // errors, and those edge-triggered so that a socket already reset
        // is reported once, not on every wait until it is adopted; the
        // thread asks for EVENTS when it adopts the socket. Registering for
        // input a socket that is already readable would wake the thread
        // from here, and that wake-up is what costs (see `look_at_inbox`).
        // The room in the epoll set is taken now, though.
        if let Err(e) = shared.epoll.add(dup.as_fd(), libc::EPOLLET as u32, id) {
            lingering.fetch_sub(1, Ordering::Relaxed);
            dup.dispose();
            return Err(e.into());
        }
        let adoption = Adoption {
            id,
            dup,
            limits,
            closed: Closed::default(),
            make_room,
            token: token(id),
            started: Instant::now(),
        };
        Ok(Reservation {
            shared: Arc::clone(&self.shared),
            adoption: Some(Box::new(adoption)),
        })
    }

    /// Hands `dup` over at once: [`Reactor::reserve`] and
    /// [`Reservation::start`] in one, for a caller that holds no other
    /// handle of the socket.
    pub fn linger<F>(
        &self,
        dup: Duplicate,
        limits: Limits,
        closed: Closed,
        token: F,
    ) -> Result<LingerId, Error>
    where
        F: FnOnce(LingerId) -> T,
    {
        self.reserve(dup, limits, token)?.start(closed)
    }

    /// Gives back `n` descriptors now by ending lingering sockets, the
    /// cheapest first ([`Outcome::Reclaimed`]), if any linger. Blocks the
    /// calling thread until the reactor has closed them, at most `wait`:
    /// call it from a thread that may block (a dirty scheduler), never from
    /// a scheduler.
    pub fn reclaim(&self, n: u64, wait: Duration) -> Result<(), Error> {
        let (done, reclaimed) = sync_channel(1);
        self.shared
            .push(Command::Reclaim(n, Some(done)))
            .map_err(|_| Error::ReactorDown)?;
        let _ = reclaimed.recv_timeout(wait);
        Ok(())
    }

    /// Lists the sockets lingering now: `reply` runs on the reactor thread
    /// with the list, between two rounds of its work, so the caller never
    /// waits on it. Nothing runs when the reactor has stopped (error).
    pub fn lingering<F>(&self, reply: F) -> Result<(), Error>
    where
        F: FnOnce(Vec<Lingering>) + Send + 'static,
    {
        self.shared
            .push(Command::List(Box::new(reply)))
            .map_err(|_| Error::ReactorDown)
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            lingering: s.lingering.load(Ordering::Relaxed),
            clean: s.clean.load(Ordering::Relaxed),
            timeout: s.timeout.load(Ordering::Relaxed),
            idle: s.idle.load(Ordering::Relaxed),
            truncated: s.truncated.load(Ordering::Relaxed),
            reclaimed: s.reclaimed.load(Ordering::Relaxed),
            drain_limit: s.drain_limit.load(Ordering::Relaxed),
            reset: s.reset.load(Ordering::Relaxed),
            error: s.error.load(Ordering::Relaxed),
            drained: s.drained.load(Ordering::Relaxed),
            memory: s.memory.load(Ordering::Relaxed),
        }
    }
}

impl<T: Send + 'static> Drop for Reactor<T> {
    fn drop(&mut self) {
        if self.shared.push(Command::Stop).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

/// One lingering socket. Kept small: there may be as many as the process
/// has descriptors, so what the caller wants to know about a socket (who
/// to tell, its addresses) lives in its token, which it can keep boxed.
struct Entry<T> {
    socket: Socket,
    started: Instant,
    /// Times are milliseconds from `started`, which keeps the entry small.
    /// When [`Limits::timeout`] cuts it off.
    deadline: u32,
    /// [`Limits::idle`]; [`NO_IDLE`] for none.
    idle: u32,
    /// When progress is next looked for.
    idle_check: u32,
    /// When its timer in `Worker::timers` is due.
    timer: u32,
    /// When the peer last sent a byte.
    last_rx: u32,
    /// How far both sides had got at the last look (bytes acknowledged and
    /// received, which only grow, summed).
    seen: u64,
    drained: u64,
    max_drain: u64,
    /// The peer's FIN has arrived, as the TCP state shows.
    peer_fin: bool,
    /// The VM still writes its output and sends FIN after it (a port).
    vm_fin_pending: bool,
    /// Shut for reading and our FIN held back (see [`QUIET`]).
    fin_held: bool,
    /// Our SYN in `tcpi_bytes_acked` (see [`TcpProgress::syn_acked`]).
    syn: u8,
    token: T,
}

/// [`Entry::idle`] when there is no idle bound.
const NO_IDLE: u32 = u32::MAX;

type OnEnd<T> = Box<dyn FnMut(T, Report) + Send>;

struct Worker<T> {
    shared: Arc<Shared<T>>,
    /// The inbox's other half (see `take_commands`).
    spare: Vec<Command<T>>,
    /// A Stop command was taken.
    stopping: bool,
    /// By id, which is the order of hand-over: the oldest first.
    entries: BTreeMap<LingerId, Entry<T>>,
    /// The next time each socket needs looking at, in order, so the next
    /// wait knows how long it may sleep.
    timers: BTreeSet<(Instant, LingerId)>,
    /// RLIMIT_NOFILE and when it was read: read again after a second, as
    /// the process may raise it.
    descriptor_limit: Option<(u64, Instant)>,
    on_end: OnEnd<T>,
}

impl<T> Worker<T> {
    fn run(mut self) {
        // A panic must not leave callers queueing sockets that nobody will
        // ever close: stop accepting, then close what is left.
        let _ = catch_unwind(AssertUnwindSafe(|| self.serve()));
        let leftover = {
            let mut inbox = self.shared.inbox();
            self.shared.running.store(false, Ordering::Release);
            std::mem::take(&mut *inbox)
        };
        for command in leftover {
            match command {
                Command::Adopt(a) => {
                    let id = a.id;
                    self.insert(
                        id,
                        Entry::new(*a, Instant::now(), TcpProgress::default(), 0),
                    );
                }
                Command::List(reply) => self.list(reply),
                Command::Reclaim(..) | Command::Stop => {}
            }
        }
        let ids: Vec<LingerId> = self.entries.keys().copied().collect();
        for id in ids {
            self.finish(id, Outcome::Error("reactor_stopped"));
        }
    }

    fn serve(&mut self) {
        let mut events: Vec<Event> = Vec::with_capacity(1024);
        // While set, the reactor is awake: it looks at its inbox every
        // POLL without being signalled, and callers leave the eventfd alone.
        let mut awake_until: Option<Instant> = None;
        loop {
            let mut timeout = self
                .timers
                .first()
                .map(|(at, _)| at.saturating_duration_since(Instant::now()));
            if awake_until.is_some() {
                timeout = Some(timeout.map_or(POLL, |t| t.min(POLL)));
            }
            if self.shared.epoll.wait(&mut events, timeout).is_err() {
                // EBADF/EINVAL on our own epoll cannot recover.
                return;
            }
            let mut signalled = false;
            for event in &events {
                let (token, flags) = (event.u64, event.events);
                if token == WAKE {
                    signalled = true;
                } else {
                    self.on_ready(token, flags);
                }
            }
            if signalled || awake_until.is_some() {
                awake_until = self.look_at_inbox(signalled, awake_until);
                if self.stopping {
                    return;
                }
            }
            self.on_timers(Instant::now());
        }
    }

    /// Runs the queued commands, and says until when to stay awake: a
    /// burst of hand-overs then costs one eventfd write, not one each.
    /// That matters because the write wakes this thread from the caller's,
    /// a scheduler, and on a virtual machine such a wake-up can cost the
    /// scheduler a good part of a millisecond.
    fn look_at_inbox(&mut self, signalled: bool, awake_until: Option<Instant>) -> Option<Instant> {
        // The eventfd is read before the inbox is taken, so a signal never
        // outlives the commands it announced.
        if signalled {
            self.shared.waker.clear();
        }
        let now = Instant::now();
        if self.take_commands() > 0 {
            return Some(now + AWAKE);
        }
        if awake_until.is_some_and(|until| now < until) {
            return awake_until;
        }
        // Going to sleep: from now on a push signals. One that came after
        // the take above saw the flag still set and did not: take again.
        self.shared.wake_pending.store(false, Ordering::SeqCst);
        if self.take_commands() == 0 {
            return None;
        }
        // Awake after all. A push that saw the flag clear meanwhile has
        // signalled; the next wait just returns at once.
        self.shared.wake_pending.store(true, Ordering::SeqCst);
        Some(now + AWAKE)
    }

    /// Runs the queued commands and returns how many; a Stop among them
    /// sets `stopping`.
    fn take_commands(&mut self) -> usize {
        // The inbox is swapped with the emptied vector of the last round, so
        // that its capacity stays and a steady burst of pushes does not grow
        // it again.
        let mut commands = std::mem::take(&mut self.spare);
        std::mem::swap(&mut *self.shared.inbox(), &mut commands);
        let taken = commands.len();
        // Sockets queued behind a Stop are still adopted, so that the
        // shutdown in `run` ends and reports them like the others.
        for command in commands.drain(..) {
            match command {
                Command::Adopt(adoption) => self.adopt(*adoption),
                Command::Reclaim(n, done) => {
                    self.reclaim(n);
                    if let Some(done) = done {
                        let _ = done.try_send(());
                    }
                }
                Command::List(reply) => self.list(reply),
                Command::Stop => self.stopping = true,
            }
        }
        // But not a past burst's capacity for ever.
        if commands.capacity() > 1024 && taken * 4 < commands.capacity() {
            commands.shrink_to(taken * 2);
        }
        self.spare = commands;
        taken
    }

    fn adopt(&mut self, adoption: Adoption<T>) {
        let id = adoption.id;
        let closed = adoption.closed;
        let now = Instant::now();
        let (progress, syn) = baseline(adoption.dup.as_fd());
        let make_room = adoption.make_room;
        self.insert(id, Entry::new(adoption, now, progress, syn));
        if make_room {
            self.reclaim(1);
        }
        if closed.truncated {
            return self.finish(id, Outcome::Truncated);
        }
        let entry = &self.entries[&id];
        // The duplicate shares SO_LINGER with the VM's socket: {linger,
        // {true, 0}} there would turn our close into RST, and a positive
        // linger would make our last close() block this thread. While the
        // VM still writes, though, it is armed with 0: should the node die
        // before the VM's FIN went out, the last close then resets the
        // connection, and the peer does not take a truncated reply for a
        // whole one.
        let linger = entry.vm_fin_pending.then_some(Duration::ZERO);
        if let Err(e) = entry.socket.set_linger(linger) {
            return self.finish(id, os_outcome(&e));
        }
        if let Err(e) = self.shared.epoll.modify(entry.socket.as_fd(), EVENTS, id) {
            return self.finish(id, os_outcome(&e));
        }
        let by_vm = entry.vm_fin_pending;
        let number = entry.socket.as_raw_fd();
        self.count_memory();
        self.relieve(number);
        // Asking for input above made epoll check the socket again, so the
        // next wait reports what is already queued. Reading now all the same
        // saves a round of the loop, which make bench shows in the close
        // latency, and tells a socket shut for reading (see `on_ready`). A
        // FIN behind the data gives a short first read, hence a second (0
        // at a FIN, EAGAIN if empty).
        self.on_ready(id, 0);
        self.on_ready(id, 0);
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        if !by_vm && !entry.fin_held {
            // A connection already gone needs no FIN; the reads tell whether
            // it ended cleanly or was reset.
            let _ = entry.socket.shutdown(Shutdown::Write);
            self.settle(id);
        } else {
            self.check(id, now);
        }
    }

    fn insert(&mut self, id: LingerId, entry: Entry<T>) {
        self.timers.insert((entry.at(entry.timer), id));
        self.entries.insert(id, entry);
    }

    /// Publishes what the tables take: a B-tree element per entry and per
    /// timer, counted one and a half times for the nodes' spare room and
    /// links.
    fn count_memory(&self) {
        let entry = std::mem::size_of::<(LingerId, Entry<T>)>();
        let timer = std::mem::size_of::<(Instant, LingerId)>();
        let bytes = (self.entries.len() * entry + self.timers.len() * timer) * 3 / 2;
        self.shared
            .stats
            .memory
            .store(bytes as u64, Ordering::Relaxed);
    }

    fn list(&self, reply: ListReply) {
        let now = Instant::now();
        let list = self
            .entries
            .iter()
            .map(|(&id, entry)| Lingering {
                id,
                now: SocketInfo::of(entry.socket.as_fd()).map_err(|e| e.reason().to_string()),
                lingered: now.saturating_duration_since(entry.started),
                remaining: entry.at(entry.deadline).saturating_duration_since(now),
                drained: entry.drained,
                port_pending: entry.vm_fin_pending,
                peer_fin: entry.peer_fin,
            })
            .collect();
        // As with on_end, a failing callback must not stop the reactor.
        let _ = catch_unwind(AssertUnwindSafe(|| reply(list)));
    }

    fn on_ready(&mut self, id: LingerId, flags: u32) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        // With the peer's FIN already queued behind data, one short read
        // does not mean the queue is empty: read on until 0.
        let fin_queued = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        let mut ended = None;
        while !entry.peer_fin {
            let allowance = entry
                .max_drain
                .saturating_sub(entry.drained)
                .saturating_add(1);
            let len = allowance.min(MAX_DISCARD) as usize;
            match recv_discard(entry.socket.as_fd(), len) {
                Ok(0) => {
                    // After our own SHUT_RD (gen_tcp:shutdown(S, read)) a
                    // read gives 0 once the queue is empty, FIN or not, and
                    // what the peer sends later still queues up and would
                    // make the close send RST. Only the state proves the
                    // FIN; until it does, the next segment raises an edge.
                    match sys::tcp_state(entry.socket.as_fd()) {
                        Ok(state) if TcpState::from_kernel(state).peer_fin_arrived() => {
                            entry.peer_fin = true;
                            if std::mem::take(&mut entry.fin_held) {
                                let _ = entry.socket.shutdown(Shutdown::Write);
                            }
                        }
                        // Shut for reading: our FIN may not go yet.
                        Ok(state) if !TcpState::from_kernel(state).fin_sent() => {
                            entry.fin_held |= !entry.vm_fin_pending
                        }
                        Ok(_) => {}
                        Err(e) => ended = Some(os_outcome(&e)),
                    }
                    break;
                }
                Ok(n) => {
                    entry.drained += n as u64;
                    entry.last_rx = entry.since(Instant::now());
                    self.shared
                        .stats
                        .drained
                        .fetch_add(n as u64, Ordering::Relaxed);
                    if entry.drained > entry.max_drain {
                        ended = Some(Outcome::DrainLimit);
                        break;
                    }
                    // Edge-triggered: a short read emptied the queue, and
                    // the next segment will raise a new edge.
                    if n < len && !fin_queued {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    ended = Some(os_outcome(&e));
                    break;
                }
            }
        }
        match ended {
            Some(outcome) => self.finish(id, outcome),
            None => self.settle(id),
        }
    }

    /// Ends the socket if it is done: the peer's FIN has arrived and ours
    /// has been acknowledged, and with it every byte before it. Both change
    /// the state, which wakes epoll again, so no timer is needed.
    fn settle(&mut self, id: LingerId) {
        let Some(entry) = self.entries.get(&id) else {
            return;
        };
        if !entry.peer_fin || entry.fin_held {
            return;
        }
        let fd = entry.socket.as_fd();
        let outcome = match (entry.socket.take_error(), sys::tcp_progress(fd)) {
            (Ok(Some(e)) | Err(e), _) | (_, Err(e)) => Some(os_outcome(&e)),
            (Ok(None), Ok(progress)) => {
                let state = TcpState::from_kernel(progress.state);
                // The kernel is too old to count our FIN: all acknowledged
                // after it went out will do.
                let fin_acked = progress
                    .fin_acked(u64::from(entry.syn))
                    .unwrap_or_else(|| state.fin_sent() && matches!(sys::outq(fd), Ok(0)));
                if fin_acked {
                    Some(Outcome::Clean)
                } else if state == TcpState::Close {
                    // Gone without our FIN acknowledged: reset. Its error
                    // went to whoever wrote first, such as the VM's port.
                    Some(Outcome::Reset)
                } else {
                    None
                }
            }
        };
        if let Some(outcome) = outcome {
            self.finish(id, outcome);
        }
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.check(id, now);
        }
    }

    /// Looks at a socket whose timer is due: cut off at its deadline; cut
    /// off if idle; its VM side's FIN looked for. Sets the next timer.
    fn check(&mut self, id: LingerId, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let now_ms = entry.since(now);
        if now_ms >= entry.deadline {
            return self.finish(id, Outcome::Timeout);
        }
        let progress = match sys::tcp_progress(entry.socket.as_fd()) {
            Ok(p) => p,
            Err(e) => return self.finish(id, os_outcome(&e)),
        };
        let vm_fin_sent = TcpState::from_kernel(progress.state).fin_sent()
            || progress.fin_acked(u64::from(entry.syn)) == Some(true);
        if entry.vm_fin_pending && vm_fin_sent {
            entry.vm_fin_pending = false;
            // The VM's reply is all out: disarm the reset (see `adopt`).
            if let Err(e) = entry.socket.set_linger(None) {
                return self.finish(id, os_outcome(&e));
            }
        }
        let quiet = (QUIET.as_millis() as u32).min(entry.idle / 2);
        if entry.fin_held && now_ms >= entry.last_rx.saturating_add(quiet) {
            entry.fin_held = false;
            let _ = entry.socket.shutdown(Shutdown::Write);
        }
        if entry.idle != NO_IDLE && now_ms >= entry.idle_check {
            let seen = progress.bytes_acked.wrapping_add(progress.bytes_received);
            if seen == entry.seen {
                return self.finish(id, Outcome::Idle);
            }
            entry.seen = seen;
            entry.idle_check = now_ms.saturating_add(entry.idle);
        }
        let mut next = entry.deadline.min(entry.idle_check);
        if entry.vm_fin_pending {
            let (first, last) = (VM_FIN_POLL.0.as_millis(), VM_FIN_POLL.1.as_millis());
            let poll = (now_ms as u128).clamp(first, last) as u32;
            next = next.min(now_ms.saturating_add(poll));
        }
        if entry.fin_held {
            next = next.min(entry.last_rx.saturating_add(quiet));
        }
        self.timers.remove(&(entry.at(entry.timer), id));
        entry.timer = next;
        self.timers.insert((entry.at(next), id));
        self.settle(id);
    }

    /// Reclaims descriptors when the number of a new duplicate shows the
    /// process running short of them (see [`HEADROOM`]).
    fn relieve(&mut self, number: i32) {
        let now = Instant::now();
        let limit = match self.descriptor_limit {
            Some((limit, read)) if now < read + Duration::from_secs(1) => limit,
            _ => match sys::descriptor_limit() {
                Ok(limit) => {
                    self.descriptor_limit = Some((limit, now));
                    limit
                }
                Err(_) => return,
            },
        };
        let headroom = (limit / HEADROOM).max(8);
        let crossed = |number: i32| u64::try_from(number).unwrap_or(0) + 1 + headroom > limit;
        if !crossed(number) {
            return;
        }
        // The duplicate's number was taken before the hand-overs queued
        // with it were adopted and sockets reclaimed for them: look at the
        // process as it is now. No descriptor at all is pressure too.
        let now_free = match self.entries.values().next() {
            Some(entry) => sys::lowest_free_descriptor(entry.socket.as_fd()).unwrap_or(i32::MAX),
            None => return,
        };
        let used = u64::try_from(now_free).unwrap_or(u64::MAX).min(limit);
        if used + headroom > limit {
            // Down to half a headroom more than needed: the callers may
            // hand over many sockets before the next adoption looks again.
            self.reclaim(used + headroom + headroom / 2 - limit);
        }
    }

    /// Ends `n` lingering sockets to give their descriptors back: first
    /// those that have nothing left to lose (see `delivered`), looked for
    /// among the oldest, the peers quiet longest first (a peer still
    /// sending would get RST from the kernel at its next byte); then the
    /// oldest.
    fn reclaim(&mut self, n: u64) {
        let n = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(self.entries.len());
        let mut cheap: Vec<(Instant, LingerId)> = self
            .entries
            .iter()
            .take(n.saturating_mul(8))
            .filter(|(_, entry)| delivered(entry))
            .map(|(&id, entry)| (entry.at(entry.last_rx), id))
            .collect();
        cheap.sort_unstable();
        let cheap: BTreeSet<LingerId> = cheap.into_iter().take(n).map(|(_, id)| id).collect();
        let oldest = self.entries.keys().copied();
        let rest: Vec<LingerId> = oldest
            .filter(|id| !cheap.contains(id))
            .take(n - cheap.len())
            .collect();
        for id in cheap.into_iter().chain(rest) {
            self.finish(id, Outcome::Reclaimed);
        }
    }

    fn finish(&mut self, id: LingerId, outcome: Outcome) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        self.timers.remove(&(entry.at(entry.timer), id));
        // The VM may still hold a descriptor of this socket (a port whose
        // output is pending), and epoll forgets a file only on its last
        // close: remove it explicitly. Fails harmlessly if never added.
        let _ = self.shared.epoll.delete(entry.socket.as_fd());
        if !outcome.abortive() && entry.vm_fin_pending {
            // The VM's FIN went out and was acknowledged between two looks:
            // disarm the reset (see `adopt`).
            let _ = entry.socket.set_linger(None);
        } else if outcome.abortive() && !delivered(&entry) {
            let _ = entry.socket.set_linger(Some(Duration::ZERO));
            if entry.vm_fin_pending {
                // The VM's port still writes through its own descriptor,
                // so ours is not the last close: reset the connection now,
                // which also ends the port's writing.
                let _ = sys::disconnect(entry.socket.as_fd());
            }
        }
        let report = Report {
            outcome,
            drained: entry.drained,
            lingered: entry.started.elapsed(),
        };
        drop(entry.socket);
        let stats = &self.shared.stats;
        let counter = match outcome {
            Outcome::Clean => &stats.clean,
            Outcome::Timeout => &stats.timeout,
            Outcome::Idle => &stats.idle,
            Outcome::Truncated => &stats.truncated,
            Outcome::Reclaimed => &stats.reclaimed,
            Outcome::DrainLimit => &stats.drain_limit,
            Outcome::Reset => &stats.reset,
            Outcome::Error(_) => &stats.error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        stats.lingering.fetch_sub(1, Ordering::Relaxed);
        self.count_memory();
        // A failing callback must not take the reactor down with it.
        let on_end = &mut self.on_end;
        let _ = catch_unwind(AssertUnwindSafe(|| on_end(entry.token, report)));
    }
}

impl<T> Entry<T> {
    fn new(a: Adoption<T>, now: Instant, progress: TcpProgress, syn: u8) -> Entry<T> {
        let ms = |d: Duration| d.as_millis().min(u128::from(NO_IDLE - 1)) as u32;
        let started = a.started;
        let deadline = ms(a.limits.timeout);
        let idle = a.limits.idle.map_or(NO_IDLE, ms);
        let now_ms = ms(now.saturating_duration_since(started));
        let idle_check = match idle {
            NO_IDLE => deadline,
            idle => now_ms.saturating_add(idle),
        };
        let vm_fin_pending = a.closed.fin_by_vm;
        let first_poll = if vm_fin_pending { now_ms } else { deadline };
        Entry {
            socket: a.dup.into_socket(),
            started,
            deadline,
            idle,
            idle_check,
            timer: deadline.min(idle_check).min(first_poll),
            last_rx: now_ms,
            seen: progress.bytes_acked.wrapping_add(progress.bytes_received),
            drained: 0,
            max_drain: a.limits.max_drain,
            peer_fin: false,
            vm_fin_pending,
            fin_held: false,
            syn,
            token: a.token,
        }
    }

    /// The time `ms` milliseconds after the hand-over.
    fn at(&self, ms: u32) -> Instant {
        self.started + Duration::from_millis(u64::from(ms))
    }

    /// Milliseconds from the hand-over to `t`.
    fn since(&self, t: Instant) -> u32 {
        t.saturating_duration_since(self.started)
            .as_millis()
            .min(u128::from(u32::MAX)) as u32
    }
}

/// How far the connection has got when it is adopted, and our SYN in
/// `tcpi_bytes_acked` (see [`TcpProgress::syn_acked`]), from the queues: of
/// what is not acknowledged, the unsent part is not in flight, and neither
/// is a FIN of ours still waiting for its acknowledgment once nothing else
/// is unsent (it is the last byte). The send queue is read around TCP_INFO,
/// and again should an acknowledgment have come in between, since the two
/// would not agree: TCP_INFO itself is read without the socket's lock (its
/// state may still say FIN_WAIT1 with the FIN acknowledged).
fn baseline(fd: BorrowedFd<'_>) -> (TcpProgress, u8) {
    let mut progress = TcpProgress::default();
    for _ in 0..3 {
        let (Ok(unacked), Ok(unsent)) = (sys::outq(fd), sys::outq_unsent(fd)) else {
            break;
        };
        let Ok(read) = sys::tcp_progress(fd) else {
            break;
        };
        progress = read;
        if sys::outq(fd).ok() != Some(unacked) {
            continue;
        }
        let state = TcpState::from_kernel(progress.state);
        if state == TcpState::Close {
            break;
        }
        let fin_queued = state.fin_sent();
        let fin_acked = fin_queued && unacked == 0;
        let fin_in_flight = usize::from(fin_queued && !fin_acked && unsent == 0);
        let in_flight = unacked.saturating_sub(unsent).saturating_sub(fin_in_flight);
        return (
            progress,
            progress.syn_acked(in_flight as u64, fin_acked) as u8,
        );
    }
    (progress, 0)
}

/// Whether a socket cut off by time has nothing left to lose: our FIN went
/// out and, with every byte before it, was acknowledged, and nothing is
/// unread. It is then closed quietly rather than reset; the kernel keeps
/// its end and answers the peer's next byte, if any, with RST.
fn delivered<T>(entry: &Entry<T>) -> bool {
    let fd = entry.socket.as_fd();
    !entry.vm_fin_pending
        && !entry.fin_held
        && matches!(
            sys::tcp_state(fd).map(TcpState::from_kernel),
            Ok(TcpState::FinWait2)
        )
        && matches!(sys::outq(fd), Ok(0))
        && matches!(sys::inq(fd), Ok(0))
}

fn os_outcome(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => Outcome::Reset,
        Some(errno) => Outcome::Error(errno_name(errno)),
        None => Outcome::Error("unknown"),
    }
}
