//! The owned duplicate of a socket that the VM also holds.
//!
//! The VM's descriptor is only ever borrowed ([`BorrowedFd`], [`SockRef`]);
//! the one descriptor this crate owns is a [`Duplicate`], which closes itself
//! on drop. Closing the VM's own descriptor is therefore not expressible here.

use std::os::fd::{AsFd, BorrowedFd};

use socket2::{SockRef, Socket};

use crate::error::Error;
use crate::info::TcpState;
use crate::sys;

/// Checks that `fd` is a TCP socket (IPv4 or IPv6), listening or not,
/// with one system call: TCP_INFO, which only TCP answers (UDP, SCTP, Unix
/// domain and raw sockets refuse it, a file is no socket).
pub fn check_protocol(fd: BorrowedFd<'_>) -> Result<TcpState, Error> {
    match sys::tcp_state(fd) {
        Ok(state) => Ok(TcpState::from_kernel(state)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => {
            Err(Error::NotTcp)
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks that `fd` is a TCP socket (IPv4 or IPv6) that is not listening:
/// one that carries, or carried, a connection. One system call.
pub fn check_tcp(fd: BorrowedFd<'_>) -> Result<(), Error> {
    match check_protocol(fd)? {
        TcpState::Listen => Err(Error::NotConnected),
        _ => Ok(()),
    }
}

/// A second descriptor for a TCP socket that is not listening. Whether it
/// is of the socket the caller meant is for the caller to confirm: a
/// descriptor number may be reused at once after a close (the Erlang side
/// reads the socket's descriptor again after the duplicate was made).
#[derive(Debug)]
pub struct Duplicate {
    socket: Socket,
}

impl Duplicate {
    /// Checks that `fd` is a TCP socket that is not listening, and
    /// duplicates it (close-on-exec): two system calls.
    ///
    /// The check comes before the dup because closing a duplicate is not
    /// always harmless: for a file it would drop the process's fcntl locks.
    /// Should the number be reused in between, the duplicate is of another
    /// file, which the caller's second read of the socket's descriptor
    /// finds out before anything is done with it.
    pub fn of(fd: BorrowedFd<'_>) -> Result<Duplicate, Error> {
        check_tcp(fd)?;
        let socket = SockRef::from(&fd).try_clone()?;
        Ok(Duplicate { socket })
    }

    /// Closes the duplicate without blocking the calling thread, for a
    /// duplicate that is not handed to the reactor.
    ///
    /// If it is the socket's last descriptor and SO_LINGER is set with a
    /// timeout, `close()` blocks until the send queue drains or the timeout
    /// passes; that close then runs on a short-lived thread of its own.
    pub fn dispose(self) {
        match self.socket.linger() {
            Ok(Some(timeout)) if !timeout.is_zero() => {
                // Should the thread not start, the closure, and with it the
                // duplicate, is dropped here: nothing better is possible.
                let _ = std::thread::Builder::new()
                    .name("fin_close_dispose".into())
                    .spawn(move || drop(self));
            }
            _ => drop(self),
        }
    }

    /// The owned socket.
    pub fn into_socket(self) -> Socket {
        self.socket
    }
}

impl AsFd for Duplicate {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
