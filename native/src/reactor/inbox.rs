//! The inbox and the wake-up protocol between callers (on schedulers) and
//! the reactor thread: commands queue under a short lock, and an eventfd
//! wakes the thread only when it sleeps.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::types::{Closed, Limits, LingerId, ListReply, Stats};
use super::worker::Worker;
use crate::duplicate::Duplicate;
use crate::sys::{Epoll, EventFd};

/// The epoll token of the wake-up eventfd; socket ids start above it.
pub(super) const WAKE: u64 = 0;

/// How often an awake reactor looks at its inbox unsignalled, and how long
/// it stays awake after the last command (see `look_at_inbox`): the most a
/// hand-over waits in a burst, and the cost of one (ten wake-ups).
pub(super) const POLL: Duration = Duration::from_millis(1);
const AWAKE: Duration = Duration::from_millis(10);

pub(super) enum Command<T> {
    /// Boxed: the inbox is a vector that callers push to on a scheduler
    /// thread, and growing a vector of large elements during a burst of
    /// closes copied hundreds of kilobytes in one push.
    Adopt(Box<Adoption<T>>),
    /// Give back this many descriptors, and say when done.
    Reclaim(u64, Option<SyncSender<()>>),
    List(ListReply),
    Stop,
}

pub(super) struct Adoption<T> {
    pub(super) id: LingerId,
    pub(super) dup: Duplicate,
    pub(super) limits: Limits,
    pub(super) closed: Closed,
    /// [`Limits::max_lingering`] was reached at the reservation: one socket
    /// is reclaimed once this one is in the table (it, should it be the
    /// cheapest), and only if the hand-over goes ahead.
    pub(super) make_room: bool,
    pub(super) token: T,
    pub(super) started: Instant,
}

pub(super) struct Shared<T> {
    /// Written by callers (registration) and waited on by the thread.
    pub(super) epoll: Epoll,
    pub(super) inbox: Mutex<Vec<Command<T>>>,
    /// True while a wake-up is written and not yet consumed, or while the
    /// thread is awake and looks at the inbox on its own: a push then
    /// writes no eventfd.
    pub(super) wake_pending: AtomicBool,
    pub(super) waker: EventFd,
    pub(super) running: AtomicBool,
    pub(super) next_id: AtomicU64,
    pub(super) stats: Stats,
}

impl<T> Shared<T> {
    pub(super) fn inbox(&self) -> MutexGuard<'_, Vec<Command<T>>> {
        // The lock guards a plain Vec that no holder can leave half-updated,
        // so a poisoned lock is still consistent.
        self.inbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `command`; gives it back if the thread has stopped.
    pub(super) fn push(&self, command: Command<T>) -> Result<(), Command<T>> {
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
    pub(super) fn release(&self, dup: Duplicate) {
        // The caller's descriptor may keep the file open, and with it this
        // registration: remove it before the duplicate goes.
        let _ = self.epoll.delete(dup.as_fd());
        self.stats.lingering.fetch_sub(1, Ordering::Relaxed);
        dup.dispose();
    }
}

impl<T> Worker<T> {
    /// Runs the queued commands, and says until when to stay awake: a
    /// burst of hand-overs then costs one eventfd write, not one each.
    /// That matters because the write wakes this thread from the caller's,
    /// a scheduler, and on a virtual machine such a wake-up can cost the
    /// scheduler a good part of a millisecond.
    pub(super) fn look_at_inbox(
        &mut self,
        signalled: bool,
        awake_until: Option<Instant>,
    ) -> Option<Instant> {
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
}
