//! Native core of fin_close: see a TCP socket's kernel queues, and close it
//! with FIN instead of RST without making the caller wait for the peer.
//!
//! - [`sys`]: the raw system calls (ioctls, discarding `recv`, epoll, eventfd).
//! - [`duplicate`]: the owned duplicate of a socket the VM holds.
//! - [`info`]: a TCP socket's state, addresses and queues, for the table.
//! - [`reactor`]: the single thread that lingers on every closed socket.
//! - [`error`]: errors and their POSIX names.
//! - `held`: how long native calls hold their thread (feature `diagnostics`).
//! - [`faults`]: panics a test injects into the reactor (feature `diagnostics`).
//! - `nif`: the Erlang boundary (module `fin_close_nif`), with feature `nif`.

pub mod duplicate;
pub mod error;
pub mod faults;
#[cfg(feature = "diagnostics")]
pub mod held;
pub mod info;
pub mod reactor;
pub mod sys;

#[cfg(feature = "nif")]
mod nif;
