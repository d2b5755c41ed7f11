//! How callers, on schedulers, hand commands to the reactor thread:
//! commands queue under a short lock, and an eventfd wakes the thread at
//! most once per round of its work, never later than the push that needs
//! it.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::types::{Limits, LingerId, ListReply, OurFin};
use crate::duplicate::Duplicate;
use crate::sys::EventFd;

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

/// A socket whose handle the caller has closed, for the thread to take
/// over.
pub(super) struct Adoption<T> {
    pub(super) id: LingerId,
    pub(super) dup: Duplicate,
    pub(super) limits: Limits,
    pub(super) fin: OurFin,
    /// [`Limits::max_lingering`] was reached at the reservation: one socket
    /// is reclaimed once this one is adopted (it, should it be the
    /// cheapest).
    pub(super) make_room: bool,
    pub(super) token: T,
    /// The close: the clock of every bound runs from here.
    pub(super) started: Instant,
}

struct Queue<T> {
    commands: Vec<Command<T>>,
    /// False once the thread has stopped: pushes are refused.
    open: bool,
}

/// The commands waiting for the thread, and what wakes it.
pub(super) struct Inbox<T> {
    queue: Mutex<Queue<T>>,
    /// Set by the push that writes the eventfd, cleared by the thread just
    /// before it takes the queue: the pushes in between write nothing, as
    /// the thread is sure to look at the queue after them.
    signalled: AtomicBool,
    waker: EventFd,
}

impl<T> Inbox<T> {
    pub(super) fn new() -> io::Result<Inbox<T>> {
        Ok(Inbox {
            queue: Mutex::new(Queue {
                commands: Vec::new(),
                open: true,
            }),
            signalled: AtomicBool::new(false),
            waker: EventFd::new()?,
        })
    }

    fn queue(&self) -> MutexGuard<'_, Queue<T>> {
        // The lock guards a plain Vec and a flag that no holder can leave
        // half-updated, so a poisoned lock is still consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eventfd, for the thread's epoll set.
    pub(super) fn waker(&self) -> BorrowedFd<'_> {
        self.waker.as_fd()
    }

    /// Whether the thread still takes commands.
    pub(super) fn is_open(&self) -> bool {
        self.queue().open
    }

    /// Queues `command` and wakes the thread unless a wake-up is already on
    /// its way; gives the command back if the thread has stopped.
    pub(super) fn push(&self, command: Command<T>) -> Result<(), Command<T>> {
        {
            let mut queue = self.queue();
            if !queue.open {
                return Err(command);
            }
            queue.commands.push(command);
        }
        if !self.signalled.swap(true, Ordering::AcqRel) {
            self.waker.signal();
        }
        Ok(())
    }

    /// Swaps the queued commands into `into` (empty, its capacity kept for
    /// the next round), for the thread, when woken.
    pub(super) fn take(&self, into: &mut Vec<Command<T>>) {
        // Cleared before the queue is taken: a push that comes after the
        // take saw the flag clear and signals again; one that came before
        // is taken now.
        self.waker.clear();
        self.signalled.store(false, Ordering::SeqCst);
        std::mem::swap(&mut self.queue().commands, into);
    }

    /// Refuses every later push, and gives back what is still queued.
    pub(super) fn close(&self) -> Vec<Command<T>> {
        let mut queue = self.queue();
        queue.open = false;
        std::mem::take(&mut queue.commands)
    }
}
