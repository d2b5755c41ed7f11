//! The reactor's handle: starting it, reserving room for a socket,
//! starting or cancelling the linger, reclaiming, listing, counters.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::inbox::{Adoption, Command, Shared, WAKE};
use super::types::{Closed, Limits, LingerId, Lingering, Report, Stats, StatsSnapshot};
use super::worker::Worker;
use crate::duplicate::Duplicate;
use crate::error::Error;
use crate::sys::{Epoll, EventFd};

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
    /// cheapest first ([`Outcome::Reclaimed`](super::Outcome::Reclaimed)), if any linger. Blocks the
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
        self.shared.stats.snapshot()
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
