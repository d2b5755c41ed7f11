//! Errors of the native core and their names as Erlang atoms.

use std::io;
use std::sync::OnceLock;

use crate::sys;

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

/// The lower-case POSIX name of `errno`, as `inet` names errors
/// (`econnreset`); `unknown` for a number the C library has no name for.
pub fn errno_name(errno: i32) -> &'static str {
    // Lower-cased once: Erlang atoms are made from these on every error.
    static NAMES: OnceLock<Vec<Option<String>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        (0..MAX_ERRNO)
            .map(|n| sys::errno_symbol(n).map(str::to_ascii_lowercase))
            .collect()
    });
    usize::try_from(errno)
        .ok()
        .and_then(|n| names.get(n))
        .and_then(|name| name.as_deref())
        .unwrap_or("unknown")
}

/// Above every errno Linux defines (133, EHWPOISON, in 6.x).
const MAX_ERRNO: i32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_errno_by_its_inet_name() {
        for (errno, name) in [
            (libc::ECONNRESET, "econnreset"),
            (libc::EMFILE, "emfile"),
            (libc::EOPNOTSUPP, "eopnotsupp"),
            (libc::EAGAIN, "eagain"),
            (libc::EADDRNOTAVAIL, "eaddrnotavail"),
            (libc::EHWPOISON, "ehwpoison"),
        ] {
            assert_eq!(errno_name(errno), name);
        }
        assert_eq!(errno_name(0), "unknown");
        assert_eq!(errno_name(-1), "unknown");
        assert_eq!(errno_name(4000), "unknown");
    }
}
