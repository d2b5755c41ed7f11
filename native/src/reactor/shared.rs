//! What the callers, on schedulers, and the reactor thread share: the epoll
//! set, the inbox, the ids and the counters.

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::inbox::Inbox;
use super::types::{Counters, LingerId};
use crate::sys::Epoll;

/// The epoll token of the inbox's eventfd; socket ids start above it.
pub(super) const WAKE: u64 = 0;

pub(super) struct Shared<T> {
    /// Written by callers (registration) and waited on by the thread.
    pub(super) epoll: Epoll,
    pub(super) inbox: Inbox<T>,
    next_id: AtomicU64,
    pub(super) stats: Arc<Counters>,
}

impl<T> Shared<T> {
    /// An epoll set that watches the inbox's eventfd, an empty inbox.
    pub(super) fn new(stats: Arc<Counters>) -> io::Result<Shared<T>> {
        let shared = Shared {
            epoll: Epoll::new()?,
            inbox: Inbox::new()?,
            next_id: AtomicU64::new(WAKE + 1),
            stats,
        };
        shared
            .epoll
            .add(shared.inbox.waker(), libc::EPOLLIN as u32, WAKE)?;
        Ok(shared)
    }

    /// A fresh id, never [`WAKE`].
    pub(super) fn next_id(&self) -> LingerId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes room in the epoll set for a socket the thread does not read
    /// yet: registered for nothing but what epoll always reports, hang-ups
    /// and errors, and those edge-triggered, so that a socket already reset
    /// is reported once, not on every wait until it is adopted. The thread
    /// asks for input when it adopts the socket: registering for input a
    /// socket that is already readable would wake it before the hand-over.
    pub(super) fn watch(&self, fd: BorrowedFd<'_>, id: LingerId) -> io::Result<()> {
        self.epoll.add(fd, libc::EPOLLET as u32, id)
    }
}
