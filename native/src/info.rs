//! What a TCP socket looks like right now, for the socket table: its TCP
//! state, addresses and kernel queues, read from a borrowed descriptor.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use socket2::SockRef;

use crate::error::Error;
use crate::sys;

/// A TCP connection's state, as the kernel names it (`tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    /// Not connected: never was, or gone after a reset.
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A state this crate does not know.
    Other(u8),
}

impl TcpState {
    /// The state of a `tcpi_state` value.
    pub fn from_kernel(state: u8) -> TcpState {
        match state {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynRecv,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Close,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listen,
            11 => TcpState::Closing,
            other => TcpState::Other(other),
        }
    }

    /// Whether the peer's FIN has arrived. `Close` also follows a reset,
    /// which the socket's pending error tells apart.
    pub fn peer_fin_arrived(self) -> bool {
        matches!(
            self,
            TcpState::CloseWait
                | TcpState::LastAck
                | TcpState::Closing
                | TcpState::TimeWait
                | TcpState::Close
        )
    }

    /// Whether our FIN has been sent and the connection is not closed yet.
    pub fn fin_sent(self) -> bool {
        matches!(
            self,
            TcpState::FinWait1
                | TcpState::FinWait2
                | TcpState::Closing
                | TcpState::LastAck
                | TcpState::TimeWait
        )
    }

    /// The state's name as an Erlang atom, as `ss` prints it in lower case.
    pub fn name(&self) -> &'static str {
        match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::FinWait1 => "fin_wait1",
            TcpState::FinWait2 => "fin_wait2",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::Other(_) => "unknown",
        }
    }
}

/// One TCP socket as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketInfo {
    /// The TCP state.
    pub state: TcpState,
    /// The local address (`0.0.0.0:0` for a socket never bound).
    pub local: SocketAddr,
    /// The peer's address; `None` when not connected.
    pub peer: Option<SocketAddr>,
    /// Unread bytes in the receive queue (SIOCINQ); `None` when listening,
    /// where the kernel has no such queue.
    pub recv_q: Option<usize>,
    /// Unacknowledged bytes in the send queue (SIOCOUTQ); `None` when
    /// listening.
    pub send_q: Option<usize>,
}

impl SocketInfo {
    /// Reads the state of the TCP socket `fd`. A socket that is not TCP
    /// (UDP, Unix domain...) gives [`Error::NotTcp`].
    pub fn of(fd: BorrowedFd<'_>) -> Result<SocketInfo, Error> {
        let state = match sys::tcp_state(fd) {
            Ok(state) => TcpState::from_kernel(state),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => {
                return Err(Error::NotTcp)
            }
            Err(e) => return Err(e.into()),
        };
        let socket = SockRef::from(&fd);
        let local = socket.local_addr()?.as_socket().ok_or(Error::NotTcp)?;
        let peer = socket.peer_addr().ok().and_then(|a| a.as_socket());
        let (recv_q, send_q) = if state == TcpState::Listen {
            (None, None)
        } else {
            (Some(sys::inq(fd)?), Some(sys::outq(fd)?))
        };
        Ok(SocketInfo {
            state,
            local,
            peer,
            recv_q,
            send_q,
        })
    }
}
