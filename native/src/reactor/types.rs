//! What the reactor's users see: limits, outcomes, reports, counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::info::SocketInfo;

/// Identifies one lingering socket; never reused.
pub type LingerId = u64;

/// How long a socket may linger and how much it may discard, and when the
/// reactor refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from the hand-over until the socket is cut off.
    pub timeout: Duration,
    /// Time without progress until the socket is cut off: no byte and no
    /// FIN from the peer, and no byte of ours acknowledged. Looked at once
    /// per period, so a socket ends between one and two periods after its
    /// last progress. `None` for no such bound.
    pub idle: Option<Duration>,
    /// Bytes the reactor may discard; one more and the socket is cut off.
    /// `None` for no such bound.
    pub max_drain: Option<u64>,
    /// When this many sockets linger already, a hand-over makes the reactor
    /// reclaim one ([`Outcome::Reclaimed`]), the cheapest first. `None` for
    /// no such limit.
    pub max_lingering: Option<u64>,
}

/// How a lingering socket ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Our FIN was sent after all our data and the peer's FIN arrived: the
    /// close was graceful.
    Clean,
    /// Cut off at [`Limits::timeout`] before the peer's FIN arrived or
    /// before it acknowledged all our data: reset, unless all was
    /// delivered but the peer's FIN (see `delivered`).
    Timeout,
    /// Cut off after [`Limits::idle`] without progress, as [`Outcome::Timeout`].
    Idle,
    /// Cut off (RST) after discarding more than [`Limits::max_drain`] bytes.
    DrainLimit,
    /// The peer reset the connection while it lingered.
    Reset,
    /// Reset at once: the caller's side was cut short when it closed (a
    /// send still running), and the peer must not take part of a message
    /// for all of it.
    Truncated,
    /// Ended early to give its descriptor back: the process ran short of
    /// descriptors, or [`Limits::max_lingering`] was reached. Closed
    /// quietly when all was delivered but the peer's FIN, else reset.
    Reclaimed,
    /// A system call failed; the POSIX name of its error, or
    /// `reactor_stopped` for a socket the stopping reactor closed.
    Error(&'static str),
}

impl Outcome {
    /// The outcome's name as an Erlang atom.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Clean => "clean",
            Outcome::Timeout => "timeout",
            Outcome::Idle => "idle",
            Outcome::Truncated => "truncated",
            Outcome::Reclaimed => "reclaimed",
            Outcome::DrainLimit => "drain_limit",
            Outcome::Reset => "reset",
            Outcome::Error(_) => "error",
        }
    }

    /// Whether the socket is closed with SO_LINGER 0 (RST): a peer that is
    /// cut off, or one whose reply is known to be incomplete, must not see
    /// an orderly end of stream.
    pub(super) fn abortive(&self) -> bool {
        !matches!(self, Outcome::Clean | Outcome::Reset)
    }
}

/// What the reactor tells its owner when a socket has been closed for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Bytes discarded from the peer after the hand-over.
    pub drained: u64,
    /// Time from the hand-over to the final close.
    pub lingered: Duration,
}

/// One socket lingering now, as [`Reactor::lingering`](super::Reactor::lingering) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lingering {
    /// The id the socket was reserved with.
    pub id: LingerId,
    /// The socket's state, addresses and queues now; an error if they
    /// cannot be read.
    pub now: Result<SocketInfo, String>,
    /// Time since the hand-over.
    pub lingered: Duration,
    /// Time left until it is cut off.
    pub remaining: Duration,
    /// Bytes discarded so far.
    pub drained: u64,
    /// The VM's port still writes its output; no FIN sent yet.
    pub port_pending: bool,
    /// The peer's FIN has arrived.
    pub peer_fin: bool,
}

/// Takes the list of lingering sockets, on the reactor thread.
pub type ListReply = Box<dyn FnOnce(Vec<Lingering>) + Send>;

/// Who sends our FIN, as the caller's close of its own handle decided it;
/// the Erlang side names it with the same atoms (`now`, `sent`, `port`,
/// `never`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "nif", derive(rustler::NifUnitEnum))]
pub enum Fin {
    /// Nothing of ours is queued in the VM: the hand-over sends it at once,
    /// on the caller's thread, as `gen_tcp:close/1` would. Only a socket
    /// that we shut for reading holds it back, until the peer's FIN or a
    /// pause in what the peer sends (Linux resets a connection that gets
    /// data after our FIN once it is shut for reading).
    Now,
    /// Sent already by the caller, through the VM's own handle before it
    /// closed it (when [`Reservation::fin_due`] said it may leave): a port's
    /// shutdown for writing, in order with its sends, with nothing queued.
    ///
    /// [`Reservation::fin_due`]: super::Reservation::fin_due
    Sent,
    /// A port shut down for writing with output queued: its driver sends it
    /// once it has written the rest; the reactor watches for it.
    Port,
    /// A send was still running when the handle was closed, so the peer got
    /// part of a message: no FIN, the socket is reset
    /// ([`Outcome::Truncated`]).
    Never,
}

/// Where our FIN is, for a socket the reactor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OurFin {
    /// Sent: at the hand-over, or since.
    Sent,
    /// Held back: shut for reading, and the peer's FIN has not come yet
    /// (see [`Fin::Now`]).
    Held,
    /// The VM's port still writes its queue, and sends it after.
    Port,
    /// Never sent: the socket is reset ([`Fin::Never`]).
    Never,
}

/// The counters, written once: the atomics, the copy that
/// [`Counters::snapshot`] gives (an Erlang map of the same keys through the
/// NIF), and which counter each [`Outcome`] counts in.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident $(= $outcome:pat)?),* $(,)?) => {
        /// What the reactor counts, readable from any thread. Shared, so that
        /// a reactor started after another (should one stop) counts on.
        #[derive(Debug, Default)]
        pub struct Counters {
            $(pub(super) $name: AtomicU64,)*
        }

        /// A copy of the counters.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        #[cfg_attr(feature = "nif", derive(rustler::NifMap))]
        pub struct StatsSnapshot {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            /// The counters now.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }

            /// The counter of sockets that ended with `outcome`.
            pub(super) fn ended(&self, outcome: Outcome) -> &AtomicU64 {
                match outcome {
                    $($($outcome => &self.$name,)?)*
                }
            }
        }
    };
}

counters! {
    /// Sockets handed over and not yet closed.
    lingering,
    /// Sockets ended with [`Outcome::Clean`].
    clean = Outcome::Clean,
    /// Sockets ended with [`Outcome::Timeout`].
    timeout = Outcome::Timeout,
    /// Sockets ended with [`Outcome::Idle`].
    idle = Outcome::Idle,
    /// Sockets ended with [`Outcome::DrainLimit`].
    drain_limit = Outcome::DrainLimit,
    /// Sockets ended with [`Outcome::Reset`].
    reset = Outcome::Reset,
    /// Sockets ended with [`Outcome::Truncated`].
    truncated = Outcome::Truncated,
    /// Sockets ended with [`Outcome::Reclaimed`].
    reclaimed = Outcome::Reclaimed,
    /// Sockets ended with [`Outcome::Error`].
    error = Outcome::Error(_),
    /// Bytes discarded in all.
    drained,
    /// Bytes the reactor's own tables take now (an estimate from their
    /// capacities; the sockets' kernel memory is not counted).
    memory,
}
