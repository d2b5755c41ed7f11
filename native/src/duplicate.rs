//! The owned duplicate of a socket that the VM also holds.
//!
//! The VM's descriptor is only ever borrowed ([`BorrowedFd`], [`SockRef`]);
//! the one descriptor this crate owns is a [`Duplicate`], which closes itself
//! on drop. Closing the VM's own descriptor is therefore not expressible here.

use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Protocol, SockRef, Socket, Type};

use crate::error::Error;

/// Checks that `socket` is a TCP socket (IPv4 or IPv6), with one
/// getsockopt. A raw socket of protocol TCP (which needs CAP_NET_RAW) passes
/// too; [`Duplicate::of`] also checks the type.
pub fn check_protocol(socket: &Socket) -> Result<(), Error> {
    // SO_PROTOCOL is TCP for stream sockets of the inet families, and for
    // raw sockets opened with protocol TCP.
    match socket.protocol()? {
        Some(p) if p == Protocol::TCP => Ok(()),
        _ => Err(Error::NotTcp),
    }
}

/// Checks that `socket` is a TCP socket (IPv4 or IPv6) that is not
/// listening: one that carries, or carried, a connection.
pub fn check_tcp(socket: SockRef<'_>) -> Result<(), Error> {
    check_protocol(&socket)?;
    if socket.is_listener()? {
        return Err(Error::NotConnected);
    }
    Ok(())
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
    /// Checks that `fd` is a TCP socket, duplicates it (close-on-exec) and
    /// checks the duplicate is a TCP socket that is not listening.
    ///
    /// The check comes before the dup because closing a duplicate is not
    /// always harmless: for a file it would drop the process's fcntl locks.
    /// The one on the duplicate covers the number being reused in between.
    pub fn of(fd: BorrowedFd<'_>) -> Result<Duplicate, Error> {
        check_tcp(SockRef::from(&fd))?;
        let socket = SockRef::from(&fd).try_clone()?;
        check_tcp(SockRef::from(&socket))?;
        // A raw socket would have the reactor drain every TCP segment the
        // host receives.
        if socket.r#type()? != Type::STREAM {
            return Err(Error::NotTcp);
        }
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
