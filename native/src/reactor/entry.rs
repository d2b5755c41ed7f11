//! One lingering socket and what happens to it: discarding what the peer
//! sends, our FIN, the look at it when its timer is due, and its close.
//! Each step returns the outcome that ends the socket, if it does; the
//! worker keeps the tables.

use std::io;
use std::net::Shutdown;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::Socket;

use super::fin::{baseline, QUIET};
use super::inbox::Adoption;
use super::types::{LingerId, Lingering, OurFin, Outcome, Report};
use crate::error::errno_name;
use crate::info::{SocketInfo, TcpState};
use crate::sys::{self, recv_discard, TcpProgress};

/// Largest single discard request: one `recv` empties any receive queue.
const MAX_DISCARD: u64 = 1 << 30;

/// How often the FIN of a socket whose VM side sends it (a port writing
/// out its queue) is looked for: no event announces it. From the first
/// interval, doubling up to the last, so that a port done at once is seen
/// at once and a thousand slow ones cost little.
const VM_FIN_POLL: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(100));

/// One lingering socket. Kept small: there may be as many as the process
/// has descriptors, so what the caller wants to know about a socket (who
/// to tell, its addresses) lives in its token, which it can keep boxed.
pub(super) struct Entry<T> {
    socket: Socket,
    started: Instant,
    /// Times are milliseconds from `started`, which keeps the entry small.
    /// When [`super::Limits::timeout`] cuts it off.
    deadline: u32,
    /// [`super::Limits::idle`], if any.
    idle: Option<u32>,
    /// When progress is next looked for.
    idle_check: u32,
    /// When its timer in the worker's timers is due.
    pub(super) timer: u32,
    /// When the peer last sent a byte, or 0 (the hand-over) if never since.
    last_rx: u32,
    /// How far both sides had got at the last look (bytes acknowledged and
    /// received, which only grow, summed).
    seen: u64,
    drained: u64,
    /// The count of discarded bytes that cuts it off, one more than
    /// [`super::Limits::max_drain`]; `None` for no bound. Never zero, so
    /// that the option takes no room of its own.
    cut_at: Option<NonZeroU64>,
    /// The peer's FIN has arrived, as the TCP state shows.
    peer_fin: bool,
    pub(super) fin: OurFin,
    /// Our SYN in `tcpi_bytes_acked` (see [`TcpProgress::syn_acked`]).
    syn: u8,
    token: T,
}

impl<T> Entry<T> {
    /// The entry of a socket adopted at `now`; its baseline is read next
    /// ([`Entry::read_baseline`]).
    pub(super) fn new(a: Adoption<T>, now: Instant) -> Entry<T> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u32;
        let started = a.started;
        let deadline = ms(a.limits.timeout);
        let idle = a.limits.idle.map(ms);
        let now_ms = ms(now.saturating_duration_since(started));
        let idle_check = idle.map_or(deadline, |idle| now_ms.saturating_add(idle));
        let first_poll = if a.fin == OurFin::Port {
            now_ms
        } else {
            deadline
        };
        Entry {
            socket: a.dup.into_socket(),
            started,
            deadline,
            idle,
            idle_check,
            timer: deadline.min(idle_check).min(first_poll),
            // The hand-over, not the adoption: of two peers quiet since,
            // the one handed over first has been quiet the longer (the
            // reclaim's order), however late and in whatever milliseconds
            // the thread adopts them.
            last_rx: 0,
            seen: 0,
            drained: 0,
            // u64::MAX bytes are never discarded: no bound either.
            cut_at: a
                .limits
                .max_drain
                .and_then(|max| NonZeroU64::new(max.checked_add(1)?)),
            peer_fin: false,
            fin: a.fin,
            syn: 0,
            token: a.token,
        }
    }

    /// Reads how far the connection has got at its adoption (see
    /// [`baseline`]).
    pub(super) fn read_baseline(&mut self) {
        let (progress, syn) = baseline(self.socket.as_fd());
        self.seen = progress.bytes_acked.wrapping_add(progress.bytes_received);
        self.syn = syn;
    }

    /// The time `ms` milliseconds after the hand-over.
    pub(super) fn at(&self, ms: u32) -> Instant {
        self.started + Duration::from_millis(u64::from(ms))
    }

    /// When the peer last sent a byte (the hand-over if never since).
    pub(super) fn last_heard(&self) -> Instant {
        self.at(self.last_rx)
    }

    /// The socket as [`super::Reactor::lingering`] lists it.
    pub(super) fn lingering(&self, id: LingerId, now: Instant) -> Lingering {
        Lingering {
            id,
            now: SocketInfo::of(self.socket.as_fd()).map_err(|e| e.reason().to_string()),
            lingered: now.saturating_duration_since(self.started),
            remaining: self.at(self.deadline).saturating_duration_since(now),
            drained: self.drained,
            port_pending: self.fin == OurFin::Port,
            peer_fin: self.peer_fin,
        }
    }

    /// Milliseconds from the hand-over to `t`.
    pub(super) fn since(&self, t: Instant) -> u32 {
        t.saturating_duration_since(self.started)
            .as_millis()
            .min(u128::from(u32::MAX)) as u32
    }

    /// Sets SO_LINGER for the time it lingers. The duplicate shares it with
    /// the VM's socket: {linger, {true, 0}} there would turn our close into
    /// RST, and a positive linger would make our last close() block this
    /// thread. While the VM still writes, though, it is armed with 0: should
    /// the node die before the VM's FIN went out, the last close then resets
    /// the connection, and the peer does not take a truncated reply for a
    /// whole one.
    pub(super) fn arm(&self) -> Result<(), Outcome> {
        let linger = (self.fin == OurFin::Port).then_some(Duration::ZERO);
        self.socket.set_linger(linger).map_err(|e| os_outcome(&e))
    }

    /// Discards what the peer has sent (`flags`: the epoll event's), counting
    /// it in `total` too; the outcome if that ended the socket.
    pub(super) fn drain(&mut self, flags: u32, total: &AtomicU64) -> Option<Outcome> {
        // With the peer's FIN already queued behind data, one short read
        // does not mean the queue is empty: read on until 0.
        let fin_queued = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
        while !self.peer_fin {
            // Up to the byte that passes the bound, which tells it was passed.
            let allowance = self
                .cut_at
                .map_or(MAX_DISCARD, |cut| cut.get() - self.drained);
            let len = allowance.min(MAX_DISCARD) as usize;
            match recv_discard(self.socket.as_fd(), len) {
                Ok(0) => return self.at_end_of_queue(),
                Ok(n) => {
                    self.drained += n as u64;
                    self.last_rx = self.since(Instant::now());
                    total.fetch_add(n as u64, Ordering::Relaxed);
                    if self.cut_at.is_some_and(|cut| self.drained >= cut.get()) {
                        return Some(Outcome::DrainLimit);
                    }
                    // Edge-triggered: a short read emptied the queue, and
                    // the next segment will raise a new edge.
                    if n < len && !fin_queued {
                        return None;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(os_outcome(&e)),
            }
        }
        None
    }

    /// A read gave 0. After our own SHUT_RD (gen_tcp:shutdown(S, read)) it
    /// does so once the queue is empty, FIN or not, and what the peer sends
    /// later still queues up and would make the close send RST. Only the
    /// state proves the FIN; until it does, the next segment raises an edge.
    /// Once it does, the outcome if the socket is done (see
    /// [`Entry::settled`]), from the same look at the connection.
    fn at_end_of_queue(&mut self) -> Option<Outcome> {
        let progress = match sys::tcp_progress(self.socket.as_fd()) {
            Ok(progress) => progress,
            Err(e) => return Some(os_outcome(&e)),
        };
        if !TcpState::from_kernel(progress.state).peer_fin_arrived() {
            return None;
        }
        self.peer_fin = true;
        if self.fin == OurFin::Held {
            // Its acknowledgment changes the state, which wakes epoll.
            self.send_held_fin();
            return None;
        }
        self.settled_by(progress)
    }

    /// Sends our FIN if it was held back (see [`super::fin::fin_at_close`]).
    fn send_held_fin(&mut self) {
        if self.fin == OurFin::Held {
            self.fin = OurFin::Sent;
            let _ = self.socket.shutdown(Shutdown::Write);
        }
    }

    /// The outcome if the socket is done: the peer's FIN has arrived and
    /// ours has been acknowledged, and with it every byte before it. Both
    /// change the state, which wakes epoll again, so no timer is needed.
    pub(super) fn settled(&self) -> Option<Outcome> {
        if !self.peer_fin || self.fin == OurFin::Held {
            return None;
        }
        match sys::tcp_progress(self.socket.as_fd()) {
            Ok(progress) => self.settled_by(progress),
            Err(e) => Some(os_outcome(&e)),
        }
    }

    /// [`Entry::settled`], the connection's progress read already.
    fn settled_by(&self, progress: TcpProgress) -> Option<Outcome> {
        let error = match self.socket.take_error() {
            Ok(error) => error,
            Err(e) => Some(e),
        };
        if let Some(e) = error {
            return Some(os_outcome(&e));
        }
        let state = TcpState::from_kernel(progress.state);
        // The kernel is too old to count our FIN: all acknowledged after it
        // went out will do.
        let fin_acked = progress
            .fin_acked(u64::from(self.syn))
            .unwrap_or_else(|| state.fin_sent() && matches!(sys::outq(self.socket.as_fd()), Ok(0)));
        if fin_acked {
            Some(Outcome::Clean)
        } else if state == TcpState::Close {
            // Gone without our FIN acknowledged: reset. Its error went to
            // whoever wrote first, such as the VM's port.
            Some(Outcome::Reset)
        } else {
            None
        }
    }

    /// Looks at the socket when its timer is due: cut off at its deadline;
    /// cut off if idle; its VM side's FIN looked for; a held FIN sent after
    /// a pause. The outcome that ends it, or when to look again.
    pub(super) fn on_timer(&mut self, now: Instant) -> Result<u32, Outcome> {
        let now_ms = self.since(now);
        if now_ms >= self.deadline {
            return Err(Outcome::Timeout);
        }
        let progress = sys::tcp_progress(self.socket.as_fd()).map_err(|e| os_outcome(&e))?;
        let vm_fin_sent = TcpState::from_kernel(progress.state).fin_sent()
            || progress.fin_acked(u64::from(self.syn)) == Some(true);
        if self.fin == OurFin::Port && vm_fin_sent {
            self.fin = OurFin::Sent;
            // The VM's reply is all out: disarm the reset (see `arm`).
            self.socket.set_linger(None).map_err(|e| os_outcome(&e))?;
        }
        let quiet = QUIET.as_millis() as u32;
        let quiet = self.idle.map_or(quiet, |idle| quiet.min(idle / 2));
        if now_ms >= self.last_rx.saturating_add(quiet) {
            self.send_held_fin();
        }
        if let Some(idle) = self.idle.filter(|_| now_ms >= self.idle_check) {
            let seen = progress.bytes_acked.wrapping_add(progress.bytes_received);
            if seen == self.seen {
                return Err(Outcome::Idle);
            }
            self.seen = seen;
            self.idle_check = now_ms.saturating_add(idle);
        }
        let mut next = self.deadline.min(self.idle_check);
        if self.fin == OurFin::Port {
            let (first, last) = (VM_FIN_POLL.0.as_millis(), VM_FIN_POLL.1.as_millis());
            let poll = (now_ms as u128).clamp(first, last) as u32;
            next = next.min(now_ms.saturating_add(poll));
        }
        if self.fin == OurFin::Held {
            next = next.min(self.last_rx.saturating_add(quiet));
        }
        Ok(next)
    }

    /// Closes the socket for good with `outcome`: an abortive one resets it
    /// unless all was delivered (see [`Entry::delivered`]). Gives back the
    /// token and the report.
    pub(super) fn close(self, outcome: Outcome) -> (T, Report) {
        let port_writes = self.fin == OurFin::Port;
        if !outcome.abortive() && port_writes {
            // The VM's FIN went out and was acknowledged between two looks:
            // disarm the reset (see `arm`).
            let _ = self.socket.set_linger(None);
        } else if outcome.abortive() && !self.delivered() {
            let _ = self.socket.set_linger(Some(Duration::ZERO));
            if port_writes {
                // The VM's port still writes through its own descriptor,
                // so ours is not the last close: reset the connection now,
                // which also ends the port's writing.
                let _ = sys::disconnect(self.socket.as_fd());
            }
        }
        let report = Report {
            outcome,
            drained: self.drained,
            lingered: self.started.elapsed(),
        };
        drop(self.socket);
        (self.token, report)
    }

    /// Whether a socket cut off by time has nothing left to lose: our FIN
    /// went out and, with every byte before it, was acknowledged, and
    /// nothing is unread. It is then closed quietly rather than reset; the
    /// kernel keeps its end and answers the peer's next byte, if any, with
    /// RST.
    pub(super) fn delivered(&self) -> bool {
        let fd = self.socket.as_fd();
        self.fin == OurFin::Sent
            && matches!(
                sys::tcp_state(fd).map(TcpState::from_kernel),
                Ok(TcpState::FinWait2)
            )
            && matches!(sys::outq(fd), Ok(0))
            && matches!(sys::inq(fd), Ok(0))
    }
}

/// The outcome a failed system call gives.
pub(super) fn os_outcome(e: &io::Error) -> Outcome {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => Outcome::Reset,
        Some(errno) => Outcome::Error(errno_name(errno)),
        None => Outcome::Error("unknown"),
    }
}

impl<T> AsFd for Entry<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
