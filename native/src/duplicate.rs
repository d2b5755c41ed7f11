//! The owned duplicate of a socket that the VM also holds.
//!
//! The VM's descriptor is only ever borrowed ([`BorrowedFd`], [`SockRef`]);
//! the one descriptor this crate owns is a [`Duplicate`], which closes itself
//! on drop. Closing the VM's own descriptor is therefore not expressible here.

use std::net::SocketAddr;
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

/// A second descriptor for a TCP socket that is not listening, with the
/// connection's addresses read from it, so the caller can confirm it
/// duplicated the socket it meant to (descriptor numbers are reused at once
/// after a close).
#[derive(Debug)]
pub struct Duplicate {
    socket: Socket,
    local: SocketAddr,
    peer: Option<SocketAddr>,
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
        let local = socket.local_addr()?.as_socket().ok_or(Error::NotTcp)?;
        // A connection the peer has reset has no peer any more, but is still
        // one to close; the reactor finds out how it ended.
        let peer = match socket.peer_addr() {
            Ok(addr) => Some(addr.as_socket().ok_or(Error::NotTcp)?),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Duplicate {
            socket,
            local,
            peer,
        })
    }

    /// The local address of the connection.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The peer address of the connection; `None` once it is gone (reset,
    /// or never connected).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
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

    /// Gives up the addresses and keeps the owned socket.
    pub fn into_socket(self) -> Socket {
        self.socket
    }
}

impl AsFd for Duplicate {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
