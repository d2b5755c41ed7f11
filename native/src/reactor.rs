//! The lingering close: one thread, one epoll set, every lingering socket.
//!
//! A socket handed over here has been closed by the VM; the reactor holds the
//! last descriptor of it (a [`Duplicate`]). It sends FIN after everything
//! already queued in the kernel, discards whatever the peer still sends until
//! the peer's FIN arrives, and only then closes, so the kernel never finds
//! unread bytes at close time and never answers with RST. Time
//! ([`Limits::timeout`]) and discarded bytes ([`Limits::max_drain`]) are
//! bounded; a socket cut off by either is closed abortively (RST) and its
//! [`Report`] says so.
//!
//! Nothing here makes the caller of [`Reactor::linger`] wait on a peer or on
//! the reactor's work: it registers the socket with the epoll set (so that a
//! socket the reactor cannot take is refused there, still the caller's),
//! queues a command and, if the thread is asleep, writes one eventfd. The
//! only waits possible are two short critical sections shared with the
//! thread: the inbox's lock, and the kernel's lock of the epoll set.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::duplicate::Duplicate;
use crate::error::{errno_name, Error};
use crate::info::SocketInfo;
use crate::sys::{recv_discard, Epoll, Event, EventFd};

/// Identifies one lingering socket for [`Reactor::port_done`]; never reused.
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

/// How long a socket may linger and how much it may discard, and when the
/// reactor refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from the hand-over until the socket is cut off.
    pub timeout: Duration,
    /// Bytes the reactor may discard; one more and the socket is cut off.
    pub max_drain: u64,
    /// The hand-over is refused ([`Error::Full`]) when this many sockets
    /// linger already; `u64::MAX` for no limit.
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
    /// Cut off (RST) at [`Limits::timeout`] before the peer's FIN arrived.
    Timeout,
    /// Cut off (RST) after discarding more than [`Limits::max_drain`] bytes.
    DrainLimit,
    /// The peer reset the connection while it lingered.
    Reset,
    /// A system call failed, or the VM's port closed with output it never
    /// wrote; the name says which (a POSIX name or `port_exited`).
    Error(&'static str),
}

impl Outcome {
    /// The outcome's name as an Erlang atom.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Timeout => "timeout",
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
    /// The VM's port still holds output for it; no FIN sent yet.
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
    /// closes copied hundreds of kilobytes in one push (measured: a
    /// 250-500 µs `linger` call twice in 5,000 closes).
    Adopt(Box<Adoption<T>>),
    PortDone {
        id: LingerId,
        flushed: bool,
    },
    List(ListReply),
    Stop,
}

struct Adoption<T> {
    id: LingerId,
    dup: Duplicate,
    limits: Limits,
    port_pending: bool,
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
}

/// The reactor: a handle to its thread. Dropping it stops the thread and
/// resets every socket still lingering (outcome `Error("reactor_stopped")`).
pub struct Reactor<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    thread: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Reactor<T> {
    /// Starts the reactor thread. `on_end` runs on that thread once for every
    /// socket, with the token given to [`Reactor::linger`] and the report.
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
            entries: HashMap::new(),
            deadlines: BTreeSet::new(),
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

    /// Hands `dup` over: the reactor now owns the connection's last
    /// descriptor and will close it. Returns at once.
    ///
    /// Refused, with `dup` disposed of, when [`Limits::max_lingering`]
    /// sockets linger already ([`Error::Full`]), when the epoll set takes no
    /// more (ENOSPC at `fs.epoll.max_user_watches`, ENOMEM) or when the
    /// thread has stopped ([`Error::ReactorDown`]). The caller normally still
    /// holds the socket then, and closing the duplicate sends nothing; should
    /// the socket have been closed meanwhile, [`Duplicate::dispose`] keeps
    /// that last close from blocking this thread.
    ///
    /// With `port_pending` the VM still holds output for the socket that it
    /// has not written yet; the reactor then sends no FIN (which would cut
    /// that output off) and does not finish until [`Reactor::port_done`].
    ///
    /// `token` makes the value given back to `on_end`, from the socket's id.
    pub fn linger<F>(
        &self,
        dup: Duplicate,
        limits: Limits,
        port_pending: bool,
        token: F,
    ) -> Result<LingerId, Error>
    where
        F: FnOnce(LingerId) -> T,
    {
        let shared = &*self.shared;
        let lingering = &shared.stats.lingering;
        let room = lingering.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limits.max_lingering).then_some(n + 1)
        });
        if room.is_err() {
            dup.dispose();
            return Err(Error::Full);
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let token = token(id);
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
            port_pending,
            token,
            started: Instant::now(),
        };
        if let Err(Command::Adopt(refused)) = shared.push(Command::Adopt(Box::new(adoption))) {
            // The caller's descriptor keeps the file open, and with it this
            // registration: remove it before the duplicate goes.
            let _ = shared.epoll.delete(refused.dup.as_fd());
            lingering.fetch_sub(1, Ordering::Relaxed);
            refused.dup.dispose();
            return Err(Error::ReactorDown);
        }
        Ok(id)
    }

    /// Says that the VM's port of socket `id` has closed: `flushed` when it
    /// wrote all its output first (the reactor then sends FIN), otherwise its
    /// output is lost and the socket is reset. Unknown ids are ignored.
    pub fn port_done(&self, id: LingerId, flushed: bool) -> Result<(), Error> {
        self.shared
            .push(Command::PortDone { id, flushed })
            .map_err(|_| Error::ReactorDown)
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
    deadline: Instant,
    started: Instant,
    drained: u64,
    max_drain: u64,
    peer_fin: bool,
    port_pending: bool,
    token: T,
}

type OnEnd<T> = Box<dyn FnMut(T, Report) + Send>;

struct Worker<T> {
    shared: Arc<Shared<T>>,
    /// The inbox's other half (see `take_commands`).
    spare: Vec<Command<T>>,
    /// A Stop command was taken.
    stopping: bool,
    entries: HashMap<LingerId, Entry<T>>,
    /// Deadlines in order, so the next wait knows how long it may sleep.
    deadlines: BTreeSet<(Instant, LingerId)>,
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
                    self.entries.insert(a.id, Entry::new(*a));
                }
                Command::List(reply) => self.list(reply),
                Command::PortDone { .. } | Command::Stop => {}
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
                .deadlines
                .first()
                .map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()));
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
            self.expire(Instant::now());
        }
    }

    /// Runs the queued commands, and says until when to stay awake: a
    /// burst of hand-overs then costs one eventfd write, not one each.
    /// That matters because the write wakes this thread from the caller's,
    /// a scheduler: measured here (a VM), one such wake-up took 0.1 to
    /// 1.2 ms of the scheduler's CPU time.
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
                Command::PortDone { id, flushed } => self.port_done(id, flushed),
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
        let port_pending = adoption.port_pending;
        let entry = Entry::new(adoption);
        // The duplicate shares SO_LINGER with the VM's socket: {linger,
        // {true, 0}} there would turn our close into RST, and a positive
        // linger would make our last close() block this thread.
        if let Err(e) = entry.socket.set_linger(None) {
            return self.end_at_adoption(id, entry, os_outcome(&e));
        }
        if let Err(e) = self.shared.epoll.modify(entry.socket.as_fd(), EVENTS, id) {
            return self.end_at_adoption(id, entry, os_outcome(&e));
        }
        if !port_pending {
            // A connection already gone needs no FIN; the first read tells
            // whether it ended cleanly or was reset.
            send_fin(&entry.socket);
        }
        self.deadlines.insert((entry.deadline, id));
        self.entries.insert(id, entry);
        self.count_memory();
        // Asking for input above made epoll check the socket again, so the
        // next wait reports what is already queued (data, FIN, or a reset
        // whose hang-up came before this entry existed), and those events
        // will find the queue empty. Reading now all the same saves a round
        // of the loop: without these reads, fin_close's close latency p99 in
        // make bench was 62 to 103 µs in 4 runs, against 37 to 72 µs with
        // them, alternated. A FIN behind the data gives a short first read,
        // hence a second (0 at a FIN, EAGAIN if empty).
        self.on_ready(id, 0);
        self.on_ready(id, 0);
    }

    /// Publishes what the tables take: a hash table bucket (entry, key and
    /// one control byte) per bucket allocated, and a B-tree element per
    /// deadline, counted twice for the nodes' spare room.
    fn count_memory(&self) {
        let bucket = std::mem::size_of::<(LingerId, Entry<T>)>() + 1;
        let deadline = 2 * std::mem::size_of::<(Instant, LingerId)>();
        // capacity() is 7/8 of the buckets the table holds.
        let buckets = self.entries.capacity() * 8 / 7;
        let bytes = buckets * bucket + self.deadlines.len() * deadline;
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
                remaining: entry.deadline.saturating_duration_since(now),
                drained: entry.drained,
                port_pending: entry.port_pending,
                peer_fin: entry.peer_fin,
            })
            .collect();
        // As with on_end, a failing callback must not stop the reactor.
        let _ = catch_unwind(AssertUnwindSafe(|| reply(list)));
    }

    fn end_at_adoption(&mut self, id: LingerId, entry: Entry<T>, outcome: Outcome) {
        self.entries.insert(id, entry);
        self.finish(id, outcome);
    }

    fn port_done(&mut self, id: LingerId, flushed: bool) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.port_pending = false;
        // No FIN has gone out yet (neither the port nor we sent one), so a
        // connection that is gone by now was reset: whatever the port still
        // "wrote" (the driver empties its queue when a write fails) was lost.
        let gone = !flushed || !send_fin(&entry.socket);
        if gone {
            let outcome = if entry.socket.peer_addr().is_err() {
                Outcome::Reset
            } else {
                Outcome::Error("port_exited")
            };
            return self.finish(id, outcome);
        }
        if entry.peer_fin {
            self.finish(id, Outcome::Clean);
        }
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
                Ok(0) => entry.peer_fin = true,
                Ok(n) => {
                    entry.drained += n as u64;
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
        if ended.is_none() && entry.peer_fin && !entry.port_pending {
            ended = Some(Outcome::Clean);
        }
        if let Some(outcome) = ended {
            self.finish(id, outcome);
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.finish(id, Outcome::Timeout);
        }
    }

    fn finish(&mut self, id: LingerId, outcome: Outcome) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(entry.deadline, id));
        // The VM may still hold a descriptor of this socket (a port whose
        // output is pending), and epoll forgets a file only on its last
        // close: remove it explicitly. Fails harmlessly if never added.
        let _ = self.shared.epoll.delete(entry.socket.as_fd());
        if outcome.abortive() {
            let _ = entry.socket.set_linger(Some(Duration::ZERO));
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
            Outcome::DrainLimit => &stats.drain_limit,
            Outcome::Reset => &stats.reset,
            Outcome::Error(_) => &stats.error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        stats.lingering.fetch_sub(1, Ordering::Relaxed);
        // Give back the room of a past burst, with slack so that a steady
        // load does not grow and shrink the table over and over.
        if self.entries.capacity() > 1024 && self.entries.len() * 4 < self.entries.capacity() {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        self.count_memory();
        // A failing callback must not take the reactor down with it.
        let on_end = &mut self.on_end;
        let _ = catch_unwind(AssertUnwindSafe(|| on_end(entry.token, report)));
    }
}

impl<T> Entry<T> {
    fn new(a: Adoption<T>) -> Entry<T> {
        Entry {
            socket: a.dup.into_socket(),
            deadline: a.started + a.limits.timeout,
            started: a.started,
            drained: 0,
            max_drain: a.limits.max_drain,
            peer_fin: false,
            port_pending: a.port_pending,
            token: a.token,
        }
    }
}

/// Queues our FIN behind everything already in the kernel's send queue;
/// false when the connection is already gone (ENOTCONN: reset, or both FINs
/// exchanged before the hand-over).
fn send_fin(socket: &Socket) -> bool {
    socket.shutdown(Shutdown::Write).is_ok()
}

fn os_outcome(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => Outcome::Reset,
        Some(errno) => Outcome::Error(errno_name(errno)),
        None => Outcome::Error("unknown"),
    }
}
