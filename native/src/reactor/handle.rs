//! The reactor's handle: starting it, reserving room for a socket,
//! handing it over, reclaiming, listing, counters.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fin::{fin_at_close, fin_due};
use super::inbox::{Adoption, Command};
use super::shared::Shared;
use super::types::{Counters, Fin, Limits, LingerId, Lingering, OurFin, Report, StatsSnapshot};
use super::worker::Worker;
use crate::duplicate::Duplicate;
use crate::error::Error;

/// A socket handed over to a reactor whose thread had stopped: give it to
/// another one with [`Reactor::adopt`], or [`Orphan::dispose`] of it. Its
/// FIN went out as [`Reservation::start`] said; it is still counted as
/// lingering.
pub struct Orphan<T> {
    adoption: Box<Adoption<T>>,
    stats: Arc<Counters>,
}

impl<T> Orphan<T> {
    /// Closes the duplicate, the connection's last descriptor, as a plain
    /// close would; its token is dropped unused.
    pub fn dispose(self) {
        self.stats.lingering.fetch_sub(1, Ordering::Relaxed);
        self.adoption.dup.dispose();
    }
}

/// The reactor: a handle to its thread. Dropping it stops the thread and
/// resets every socket still lingering (outcome `Error("reactor_stopped")`).
pub struct Reactor<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    thread: Option<JoinHandle<()>>,
}

/// A socket the reactor has room for, by [`Reactor::reserve`], while the
/// caller closes its own handle of it: [`Reservation::start`] hands it
/// over; dropping it gives the room back and disposes of the duplicate.
pub struct Reservation<T: Send + 'static> {
    shared: Arc<Shared<T>>,
    room: Option<Room>,
}

struct Room {
    id: LingerId,
    dup: Duplicate,
    limits: Limits,
    make_room: bool,
}

impl<T: Send + 'static> Reservation<T> {
    /// Whether our FIN may leave before the caller closes its handle (see
    /// [`Fin::Sent`]): the socket is not shut for reading, or the peer's FIN
    /// came. Reads the duplicate only.
    pub fn fin_due(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|room| fin_due(room.dup.as_fd()))
    }

    /// Hands the socket over, once the caller has closed its own handle:
    /// sends our FIN now if `fin` says so ([`Fin::Now`], on this thread,
    /// a few system calls), and queues the socket for the thread, which
    /// drains it and closes it. `token` is given back to `on_end` with the
    /// report. Fails only when the thread has stopped: the socket is then
    /// an [`Orphan`], for another reactor to adopt.
    pub fn start(mut self, fin: Fin, token: T) -> Result<LingerId, Orphan<T>> {
        let room = self.room.take().expect("a reservation starts once");
        // The clock runs from the close.
        let started = Instant::now();
        let fin = match fin {
            Fin::Now => fin_at_close(room.dup.as_fd()),
            Fin::Sent => OurFin::Sent,
            Fin::Port => OurFin::Port,
            Fin::Never => OurFin::Never,
        };
        let adoption = Adoption {
            id: room.id,
            dup: room.dup,
            limits: room.limits,
            fin,
            make_room: room.make_room,
            token,
            started,
        };
        push_adoption(&self.shared, Box::new(adoption))
    }
}

/// Queues a socket for the thread; an [`Orphan`] if it has stopped.
fn push_adoption<T>(shared: &Shared<T>, adoption: Box<Adoption<T>>) -> Result<LingerId, Orphan<T>> {
    let id = adoption.id;
    match shared.inbox.push(Command::Adopt(adoption)) {
        Ok(()) => Ok(id),
        Err(Command::Adopt(adoption)) => {
            shared.give_back_room(adoption.dup.as_fd());
            Err(Orphan {
                adoption,
                stats: Arc::clone(&shared.stats),
            })
        }
        Err(_) => unreachable!("push gives back what it was given"),
    }
}

impl<T: Send + 'static> AsFd for Reservation<T> {
    /// The duplicate, for reading the connection's addresses.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.room.as_ref().expect("not started").dup.as_fd()
    }
}

impl<T: Send + 'static> Drop for Reservation<T> {
    /// Gives back the room the reservation took, and the duplicate.
    fn drop(&mut self) {
        if let Some(room) = self.room.take() {
            // The caller's descriptor may keep the file open, and with it
            // this registration: remove it before the duplicate goes.
            self.shared.give_back_room(room.dup.as_fd());
            self.shared.stats.lingering.fetch_sub(1, Ordering::Relaxed);
            room.dup.dispose();
        }
    }
}

impl<T: Send + 'static> Reactor<T> {
    /// Starts the reactor thread, counting in `counters`. `on_end` runs on
    /// that thread once for every socket, with the token given to
    /// [`Reservation::start`] and the report.
    pub fn start<F>(counters: Arc<Counters>, on_end: F) -> io::Result<Reactor<T>>
    where
        F: FnMut(T, Report) + Send + 'static,
    {
        let shared = Arc::new(Shared::new(counters)?);
        let worker = Worker::new(Arc::clone(&shared), Box::new(on_end));
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
    /// reclaims one once this one is adopted. Refused, with `dup` disposed
    /// of, when the epoll set takes no more (ENOSPC at
    /// `fs.epoll.max_user_watches`, ENOMEM) or when the thread has stopped
    /// ([`Error::ReactorDown`]). The caller still holds the socket then,
    /// and closing the duplicate sends nothing.
    pub fn reserve(&self, dup: Duplicate, limits: Limits) -> Result<Reservation<T>, Error> {
        let shared = &*self.shared;
        if !shared.inbox.is_open() {
            dup.dispose();
            return Err(Error::ReactorDown);
        }
        let lingering = &shared.stats.lingering;
        let before = lingering.fetch_add(1, Ordering::Relaxed);
        let make_room = limits.max_lingering.is_some_and(|max| before >= max);
        let id = shared.next_id();
        if let Err(e) = shared.reserve_room(dup.as_fd(), id) {
            lingering.fetch_sub(1, Ordering::Relaxed);
            dup.dispose();
            return Err(e.into());
        }
        Ok(Reservation {
            shared: Arc::clone(&self.shared),
            room: Some(Room {
                id,
                dup,
                limits,
                make_room,
            }),
        })
    }

    /// Whether the thread runs (it stops when dropped, or after a panic
    /// outside any one socket's step).
    pub fn is_running(&self) -> bool {
        self.shared.inbox.is_open()
    }

    /// Takes over a socket another reactor could not, its thread stopped
    /// ([`Reservation::start`]); gives it back should this one's have
    /// stopped too.
    pub fn adopt(&self, orphan: Orphan<T>) -> Result<LingerId, Orphan<T>> {
        let Orphan {
            mut adoption,
            stats,
        } = orphan;
        adoption.id = self.shared.next_id();
        if self
            .shared
            .reserve_room(adoption.dup.as_fd(), adoption.id)
            .is_err()
        {
            return Err(Orphan { adoption, stats });
        }
        if !Arc::ptr_eq(&stats, &self.shared.stats) {
            stats.lingering.fetch_sub(1, Ordering::Relaxed);
            self.shared.stats.lingering.fetch_add(1, Ordering::Relaxed);
        }
        push_adoption(&self.shared, adoption)
    }

    /// Gives back at least `n` descriptors now by ending lingering sockets,
    /// the cheapest first ([`Outcome::Reclaimed`](super::Outcome::Reclaimed)), if any linger; more
    /// should the process be short of descriptors (fewer than the reactor's
    /// headroom of its limit free). Blocks the calling thread until the reactor has closed
    /// them, at most `wait`: call it from a thread that may block (a dirty
    /// scheduler), never from a scheduler.
    pub fn reclaim(&self, n: u64, wait: Duration) -> Result<(), Error> {
        let (done, reclaimed) = sync_channel(1);
        self.shared
            .inbox
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
            .inbox
            .push(Command::List(Box::new(reply)))
            .map_err(|_| Error::ReactorDown)
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }
}

impl<T: Send + 'static> Drop for Reactor<T> {
    fn drop(&mut self) {
        if self.shared.inbox.push(Command::Stop).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
