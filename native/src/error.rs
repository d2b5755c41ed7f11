//! Errors of the native core and their names as Erlang atoms.

use std::io;

/// Why a socket cannot be inspected or handed to the reactor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket was closed, by another caller or under this one.
    #[error("the socket is closed")]
    Closed,
    /// The descriptor is a socket, but not a TCP one (UDP, SCTP, Unix...).
    #[error("not a TCP socket")]
    NotTcp,
    /// A TCP socket that has no peer: listening, or not yet connected.
    #[error("TCP socket is not connected")]
    NotConnected,
    /// The reactor thread could not be started or has stopped.
    #[error("the lingering reactor is not running")]
    ReactorDown,
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The reason as `inet` would name it: a POSIX error name in lower case.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Closed => "closed",
            Error::NotTcp => "eprototype",
            Error::NotConnected => "enotconn",
            Error::ReactorDown => "reactor_down",
            Error::Io(e) => errno_name(e.raw_os_error().unwrap_or(0)),
        }
    }
}

/// The lower-case POSIX name of `errno`, as `inet` names errors, for the
/// errors the calls made here can return; any other is `unknown`.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EBADF => "ebadf",
        libc::EINVAL => "einval",
        libc::ENOTSOCK => "enotsock",
        libc::ENOTCONN => "enotconn",
        libc::EMFILE => "emfile",
        libc::ENFILE => "enfile",
        libc::ENOMEM => "enomem",
        libc::ENOSPC => "enospc",
        libc::ENOBUFS => "enobufs",
        libc::ECONNRESET => "econnreset",
        libc::ECONNABORTED => "econnaborted",
        libc::EPIPE => "epipe",
        libc::ETIMEDOUT => "etimedout",
        libc::EHOSTUNREACH => "ehostunreach",
        libc::ENETUNREACH => "enetunreach",
        libc::EPROTOTYPE => "eprototype",
        libc::EOPNOTSUPP => "eopnotsupp",
        _ => "unknown",
    }
}
