//! epoll and the eventfd that wakes a thread waiting in it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::cvt;

/// An epoll instance; closed on drop.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

/// One readiness report of [`Epoll::wait`].
pub type Event = libc::epoll_event;

impl Epoll {
    /// Creates a close-on-exec epoll instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a
        // fresh descriptor that nothing else owns.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by no one.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: token };
        // SAFETY: both descriptors are live (borrowed by the callers) and
        // `event` is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) })?;
        Ok(())
    }

    /// Starts watching `fd` for `events`; readiness reports carry `token`.
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    /// Stops watching `fd`. Needed before closing a descriptor whose open
    /// file may outlive it (another descriptor of the same socket), since
    /// epoll only forgets a file on its last close.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Waits for readiness for at most `timeout` (forever when `None`) and
    /// fills `events` with what is ready. An interrupted wait reports nothing.
    pub fn wait(&self, events: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let timeout_ms = match timeout {
            None => -1,
            // Round up so that a deadline 0.3 ms away does not spin.
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        events.clear();
        let capacity = events.capacity().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: the kernel writes at most `capacity` events into the
        // vector's spare capacity, and `set_len` only exposes those it wrote.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                capacity,
                timeout_ms,
            )
        };
        match cvt(n) {
            // SAFETY: see above; `n` events were initialised by the kernel.
            Ok(n) => unsafe { events.set_len(n as usize) },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// A non-blocking eventfd used to wake a thread sleeping in [`Epoll::wait`].
/// Held as a `File`, as mio does, so that reading and writing its counter
/// are plain `Read` and `Write` calls.
#[derive(Debug)]
pub struct EventFd {
    file: File,
}

impl EventFd {
    /// Creates a non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the result is a fresh descriptor.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by the kernel and is owned by no one.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { file: fd.into() })
    }

    /// The descriptor, for registering with an [`Epoll`].
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Makes the eventfd readable. Never blocks; a failure (EAGAIN on a
    /// saturated counter) still leaves it readable.
    pub fn signal(&self) {
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }

    /// Resets the eventfd to not readable; EAGAIN (nothing pending) is the
    /// only failure to expect, and harmless.
    pub fn clear(&self) {
        let mut counter = [0u8; 8];
        let _ = (&self.file).read(&mut counter);
    }
}
