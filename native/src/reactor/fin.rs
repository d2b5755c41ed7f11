//! Our FIN: it leaves at the close, on the caller's thread, unless the
//! socket is shut for reading; and what the reactor needs to tell, from
//! TCP_INFO, when the peer has acknowledged it.

use std::net::Shutdown;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::types::OurFin;
use crate::info::TcpState;
use crate::sys::{self, TcpProgress};

/// How long a peer of a socket shut for reading must have sent nothing
/// before our FIN goes (at most half the idle bound). Linux resets a
/// connection that gets data once it has sent FIN after SHUT_RD
/// (`tcp_rcv_state_process`, FIN_WAIT1/2 with RCV_SHUTDOWN), so the FIN
/// waits for the peer's, or for a pause in what the peer sends (see
/// [`fin_at_close`]).
pub(super) const QUIET: Duration = Duration::from_secs(1);

/// Our FIN at the hand-over of a socket with nothing queued in the VM,
/// on the caller's thread: sent now, as `gen_tcp:close/1` sends it, unless
/// the socket is shut for reading and the peer's FIN has not come (see
/// [`QUIET`]), where the reactor holds it back. Shut for reading is what
/// POLLRDHUP says without touching the queue; the peer's FIN is told
/// apart from our own SHUT_RD by the state. The caller closed its handle
/// already, so nothing can shut the socket for reading after the look.
pub(super) fn fin_at_close(fd: BorrowedFd<'_>) -> OurFin {
    if !fin_due(fd) {
        return OurFin::Held;
    }
    // Fails only on a connection already gone, which needs no FIN.
    let _ = socket2::SockRef::from(&fd).shutdown(Shutdown::Write);
    OurFin::Sent
}

/// Whether our FIN may leave now: the socket is not shut for reading, or
/// the peer's FIN came. A failed look (it cannot fail on a live socket)
/// says no: at worst the FIN waits for a pause, never a reset.
pub(super) fn fin_due(fd: BorrowedFd<'_>) -> bool {
    let peer_fin =
        || sys::tcp_state(fd).is_ok_and(|state| TcpState::from_kernel(state).peer_fin_arrived());
    match sys::read_shut(fd) {
        Ok(false) => true,
        Ok(true) => peer_fin(),
        Err(_) => false,
    }
}

/// How far the connection has got when it is adopted, and our SYN in
/// `tcpi_bytes_acked` (see [`TcpProgress::syn_acked`]), from the queues: of
/// what is not acknowledged, the unsent part is not in flight, and neither
/// is a FIN of ours still waiting for its acknowledgment once nothing else
/// is unsent (it is the last byte). The send queue is read around TCP_INFO,
/// and again should an acknowledgment have come in between, since the two
/// would not agree: TCP_INFO itself is read without the socket's lock (its
/// state may still say FIN_WAIT1 with the FIN acknowledged).
pub(super) fn baseline(fd: BorrowedFd<'_>) -> (TcpProgress, u8) {
    let mut progress = TcpProgress::default();
    for _ in 0..3 {
        let (Ok(unacked), Ok(unsent)) = (sys::outq(fd), sys::outq_unsent(fd)) else {
            break;
        };
        let Ok(read) = sys::tcp_progress(fd) else {
            break;
        };
        progress = read;
        if sys::outq(fd).ok() != Some(unacked) {
            continue;
        }
        let state = TcpState::from_kernel(progress.state);
        if state == TcpState::Close {
            break;
        }
        let fin_queued = state.fin_sent();
        let fin_acked = fin_queued && unacked == 0;
        let fin_in_flight = usize::from(fin_queued && !fin_acked && unsent == 0);
        let in_flight = unacked.saturating_sub(unsent).saturating_sub(fin_in_flight);
        return (
            progress,
            progress.syn_acked(in_flight as u64, fin_acked) as u8,
        );
    }
    (progress, 0)
}
