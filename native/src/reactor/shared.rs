//! What the callers, on schedulers, and the reactor thread share: the epoll
//! sets, the inbox, the ids and the counters.

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
    /// The lingering sockets and the inbox's eventfd, waited on by the
    /// thread.
    pub(super) epoll: Epoll,
    /// The reserved sockets: an epoll set nobody waits on (see
    /// [`Shared::reserve_room`]).
    rooms: Epoll,
    pub(super) inbox: Inbox<T>,
    next_id: AtomicU64,
    pub(super) stats: Arc<Counters>,
}

impl<T> Shared<T> {
    /// An epoll set that watches the inbox's eventfd, an empty inbox.
    pub(super) fn new(stats: Arc<Counters>) -> io::Result<Shared<T>> {
        let shared = Shared {
            epoll: Epoll::new()?,
            rooms: Epoll::new()?,
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

    /// Takes room for a socket the thread does not read yet, so that a
    /// want of epoll room (ENOSPC at `fs.epoll.max_user_watches`, ENOMEM)
    /// refuses the close while the socket is still the caller's. The room
    /// is in a set nobody waits on: a socket's state changes (our FIN, its
    /// acknowledgment) wake every epoll waiter on it whatever it watches,
    /// and a wake-up of the thread would run inside the caller's system
    /// call, on a VM scheduler.
    pub(super) fn reserve_room(&self, fd: BorrowedFd<'_>, id: LingerId) -> io::Result<()> {
        self.rooms.add(fd, 0, id)
    }

    /// Gives a reserved socket's room back.
    pub(super) fn give_back_room(&self, fd: BorrowedFd<'_>) {
        // ENOENT for a socket moved into the thread's set already.
        let _ = self.rooms.delete(fd);
    }

    /// Moves a reserved socket into the set the thread waits on, watched for
    /// `events`: its room given back first, so that the move never needs
    /// two rooms at once.
    pub(super) fn watch(&self, fd: BorrowedFd<'_>, events: u32, id: LingerId) -> io::Result<()> {
        self.give_back_room(fd);
        self.epoll.add(fd, events, id)
    }
}
