//! The lingering close: one thread, one epoll set, every lingering socket.
//!
//! A socket handed over here has been closed by the VM; the reactor holds the
//! last descriptor of it (a [`Duplicate`](crate::duplicate::Duplicate)). It sends FIN after everything
//! already queued in the kernel, discards whatever the peer still sends until
//! the peer's FIN arrives, and only then closes, so the kernel never finds
//! unread bytes at close time and never answers with RST. A socket ends
//! [`Outcome::Clean`] only once the peer's FIN has arrived (seen in the TCP
//! state, not inferred from a read of 0, which our own SHUT_RD also gives)
//! and the peer has acknowledged every byte of ours. Time in all
//! ([`Limits::timeout`]), time without progress ([`Limits::idle`]) and
//! discarded bytes ([`Limits::max_drain`]) are bounded; a socket cut off by
//! any is closed abortively (RST) and its [`Report`] says so.
//!
//! A hand-over has two steps, so that exactly one caller hands a socket
//! over: [`Reactor::reserve`] takes the room (and may refuse, the socket
//! still the caller's); the caller then closes its own handle, which only
//! one caller can do, and [`Reservation::start`]s the linger or drops the
//! reservation. Our FIN leaves in `start`, on the caller's thread, as it
//! would inside `close()` ([`Fin`]); the thread only drains and ends. Nothing
//! here makes the caller wait on a peer or on the reactor's work: the only
//! waits possible are two short critical sections shared with the thread:
//! the inbox's lock, and the kernel's lock of the epoll set that holds the
//! reserved sockets, which the thread takes only to move one out (its wait
//! is on another set).

mod entry;
mod fin;
mod handle;
mod inbox;
mod relief;
mod shared;
mod types;
mod worker;

pub use handle::{Orphan, Reactor, Reservation};
pub use types::{
    Counters, Fin, Limits, LingerId, Lingering, ListReply, Outcome, Report, StatsSnapshot,
};
