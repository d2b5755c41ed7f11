//! The reactor thread: its loop, its tables (sockets by id, timers in
//! order) and what it does to them; each socket's own steps are in
//! [`super::entry`].

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::entry::{os_outcome, Entry};
use super::inbox::{Adoption, Command};
use super::relief::{self, Relief};
use super::shared::{Shared, WAKE};
use super::types::{LingerId, ListReply, OurFin, Outcome, Report};
use crate::faults::{self, Fault};
use crate::sys::{self, Event};

/// How long the thread rests after each wake-up before it waits again, so
/// that it wakes at most a thousand times a second: under load the closes
/// and their peers' FINs of a millisecond are then taken in one round, as a
/// wake-up of a thread costs more (on a virtual machine, much more) than
/// the work on one socket. Nothing a peer sees waits for it (our FIN leaves
/// at the close); only the draining and the final close of a socket may
/// come this much later. An idle reactor does not wake at all.
const REST: Duration = Duration::from_millis(1);

/// Events taken from epoll per call: a full batch is followed at once by
/// another (see `serve`), so this only sizes the buffer.
const EVENTS_PER_WAIT: usize = 64;

/// The epoll events of a lingering socket: edge-triggered, so a socket
/// whose peer sends nothing costs no wake-up.
const EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

type OnEnd<T> = Box<dyn FnMut(T, Report) + Send>;

pub(super) struct Worker<T> {
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
    /// The process's descriptors (see `give_back_descriptors`).
    relief: Relief,
    on_end: OnEnd<T>,
}

impl<T> Worker<T> {
    pub(super) fn new(shared: Arc<Shared<T>>, on_end: OnEnd<T>) -> Worker<T> {
        Worker {
            shared,
            spare: Vec::new(),
            stopping: false,
            entries: BTreeMap::new(),
            timers: BTreeSet::new(),
            relief: Relief::new(),
            on_end,
        }
    }

    pub(super) fn run(mut self) {
        // Our FIN has left on the caller's thread: what is left here (the
        // draining, the ends) may wait for a CPU, and a wake-up of this
        // thread must not preempt a VM scheduler (seen in make bench rows
        // 2, 13 and 14). Best effort: a sandbox may refuse the call.
        let _ = sys::batch_scheduling();
        // A panic outside any socket's step (see `guarded`) must not leave
        // callers queueing sockets that nobody will ever close: stop
        // accepting, then close what is left, and tell. Callers start
        // another reactor.
        let _ = catch_unwind(AssertUnwindSafe(|| self.serve()));
        for command in self.shared.inbox.close() {
            match command {
                Command::Adopt(a) => {
                    let id = a.id;
                    self.insert(id, Entry::new(*a, Instant::now()));
                }
                Command::List(reply) => self.list(reply),
                Command::Reclaim(..) | Command::Stop => {}
            }
        }
        let ids: Vec<LingerId> = self.entries.keys().copied().collect();
        for id in ids {
            self.guarded(id, |w| w.finish(id, Outcome::Error("reactor_stopped")));
        }
    }

    /// Runs one socket's step. Should it panic (a bug of ours), that socket
    /// alone ends, with `Error("panic")`, and is reported; the thread goes
    /// on with the others.
    fn guarded(&mut self, id: LingerId, step: impl FnOnce(&mut Self)) {
        if catch_unwind(AssertUnwindSafe(|| step(self))).is_err() {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                self.finish(id, Outcome::Error("panic"))
            }));
        }
    }

    fn serve(&mut self) {
        let mut events: Vec<Event> = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            let now = Instant::now();
            let relief = self.relief.due(now, self.entries.len());
            let timeout = self
                .timers
                .first()
                .map(|&(at, _)| at)
                .into_iter()
                .chain(relief)
                .min()
                .map(|at| at.saturating_duration_since(now));
            if self.shared.epoll.wait(&mut events, timeout).is_err() {
                // EBADF/EINVAL on our own epoll cannot recover.
                return;
            }
            let woken = Instant::now();
            let mut signalled = false;
            loop {
                for event in &events {
                    let (token, flags) = (event.u64, event.events);
                    if token == WAKE {
                        signalled = true;
                    } else {
                        self.guarded(token, |w| w.on_ready(token, flags));
                    }
                }
                // A full batch: more may be ready, taken without waiting.
                if events.len() < EVENTS_PER_WAIT
                    || self
                        .shared
                        .epoll
                        .wait(&mut events, Some(Duration::ZERO))
                        .is_err()
                {
                    break;
                }
            }
            if signalled {
                self.take_commands();
                if self.stopping {
                    return;
                }
                faults::trip(Fault::Thread);
            }
            let now = Instant::now();
            self.on_timers(now);
            if self
                .relief
                .due(now, self.entries.len())
                .is_some_and(|at| now >= at)
            {
                let _ = catch_unwind(AssertUnwindSafe(|| self.give_back_descriptors(now, 0)));
            }
            if let Some(rest) = (woken + REST).checked_duration_since(Instant::now()) {
                std::thread::sleep(rest);
            }
        }
    }

    /// Runs the queued commands; a Stop among them sets `stopping`.
    fn take_commands(&mut self) {
        // The inbox is swapped with the emptied vector of the last round, so
        // that its capacity stays and a steady burst of pushes does not grow
        // it again.
        let mut commands = std::mem::take(&mut self.spare);
        self.shared.inbox.take(&mut commands);
        let taken = commands.len();
        // Sockets queued behind a Stop are still adopted, so that the
        // shutdown in `run` ends and reports them like the others.
        for command in commands.drain(..) {
            match command {
                Command::Adopt(adoption) => {
                    let id = adoption.id;
                    self.guarded(id, |w| w.adopt(*adoption));
                }
                Command::Reclaim(n, done) => {
                    let now = Instant::now();
                    let _ = catch_unwind(AssertUnwindSafe(|| self.give_back_descriptors(now, n)));
                    if let Some(done) = done {
                        let _ = done.try_send(());
                    }
                }
                Command::List(reply) => {
                    let _ = catch_unwind(AssertUnwindSafe(|| self.list(reply)));
                }
                Command::Stop => self.stopping = true,
            }
        }
        // But not a past burst's capacity for ever.
        if commands.capacity() > 1024 && taken * 4 < commands.capacity() {
            commands.shrink_to(taken * 2);
        }
        self.spare = commands;
    }

    /// Takes over a socket whose handle the caller closed: its entry and
    /// timer, SO_LINGER, its epoll events, what is already queued. Our FIN
    /// went out at the hand-over, unless held back or the port's to send.
    fn adopt(&mut self, adoption: Adoption<T>) {
        let id = adoption.id;
        let now = Instant::now();
        let make_room = adoption.make_room;
        // In the table first: whatever happens from here on ends the socket
        // and is reported (see `guarded`).
        self.insert(id, Entry::new(adoption, now));
        faults::trip(Fault::Adopt);
        self.take_over(id, now);
        // Only now, so that the reclaim may end this very socket (should it
        // be the cheapest) but never in the middle of its own adoption.
        if make_room {
            self.reclaim(1);
        }
    }

    fn take_over(&mut self, id: LingerId, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.read_baseline();
        if entry.fin == OurFin::Never {
            return self.finish(id, Outcome::Truncated);
        }
        if let Err(outcome) = entry.arm() {
            return self.finish(id, outcome);
        }
        if let Err(e) = self.shared.watch(entry.as_fd(), EVENTS, id) {
            return self.finish(id, os_outcome(&e));
        }
        let number = entry.as_fd().as_raw_fd();
        self.count_memory();
        if self.relief.short_at(now, number) {
            self.give_back_descriptors(now, 0);
        }
        // Asking for input above made epoll check the socket again, so the
        // next wait reports what is already queued. Reading now all the same
        // saves a round of the loop. A FIN behind the data gives a short
        // first read, hence a second (0 at a FIN, EAGAIN if empty).
        self.on_ready(id, 0);
        self.on_ready(id, 0);
        match self.entries.get(&id).map(|e| e.fin) {
            Some(OurFin::Sent) => self.settle(id),
            Some(_) => self.check(id, now),
            None => {}
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
            .map(|(&id, entry)| entry.lingering(id, now))
            .collect();
        // As with on_end, a failing callback must not stop the reactor.
        let _ = catch_unwind(AssertUnwindSafe(|| reply(list)));
    }

    fn on_ready(&mut self, id: LingerId, flags: u32) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        match entry.drain(flags, &self.shared.stats.drained) {
            Some(outcome) => self.finish(id, outcome),
            None => self.settle(id),
        }
    }

    fn settle(&mut self, id: LingerId) {
        if let Some(outcome) = self.entries.get(&id).and_then(Entry::settled) {
            self.finish(id, outcome);
        }
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.timers.first() {
            if at > now {
                break;
            }
            // Taken out first, so that a socket whose timer step panics does not
            // come up again at once.
            self.timers.pop_first();
            self.guarded(id, |w| w.check(id, now));
        }
    }

    /// Looks at a socket whose timer is due, and sets its next timer.
    fn check(&mut self, id: LingerId, now: Instant) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        match entry.on_timer(now) {
            Err(outcome) => self.finish(id, outcome),
            Ok(next) => {
                self.timers.remove(&(entry.at(entry.timer), id));
                entry.timer = next;
                self.timers.insert((entry.at(next), id));
                self.settle(id);
            }
        }
    }

    /// Gives descriptors back, at least `at_least`, and more should the
    /// process be short (see [`Relief::wanted`]).
    fn give_back_descriptors(&mut self, now: Instant, at_least: u64) {
        if self.entries.is_empty() {
            return;
        }
        let n = self.relief.wanted(now, at_least);
        self.reclaim(n);
    }

    /// Ends `n` lingering sockets to give their descriptors back, the
    /// cheapest first (see [`relief::cheapest`]).
    fn reclaim(&mut self, n: u64) {
        for id in relief::cheapest(&self.entries, n) {
            self.finish(id, Outcome::Reclaimed);
        }
    }

    fn finish(&mut self, id: LingerId, outcome: Outcome) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        self.timers.remove(&(entry.at(entry.timer), id));
        // A port still writing holds a descriptor of this socket, and epoll
        // forgets a file only on its last close: remove it explicitly. Else
        // ours is the last descriptor (or the VM's closes a moment later),
        // and the close removes it.
        if entry.fin == OurFin::Port {
            let _ = self.shared.epoll.delete(entry.as_fd());
            self.shared.give_back_room(entry.as_fd());
        }
        let (token, report) = entry.close(outcome);
        let stats = &self.shared.stats;
        stats.ended(outcome).fetch_add(1, Ordering::Relaxed);
        stats.lingering.fetch_sub(1, Ordering::Relaxed);
        self.count_memory();
        // A failing callback must not take the reactor down with it.
        let on_end = &mut self.on_end;
        let _ = catch_unwind(AssertUnwindSafe(|| on_end(token, report)));
    }
}
