//! The socket table's view of one socket, and of the reactor's lingering
//! sockets, on real loopback connections without a VM.

mod common;

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::sync::mpsc::channel;
use std::time::Duration;

use common::{eventually, hand_over, pair, WAIT};
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::error::Error;
use fin_close_nif::info::{SocketInfo, TcpState};
use fin_close_nif::reactor::{Fin, Limits, Reactor};

#[test]
fn a_connection_shows_its_state_addresses_and_queues() {
    let (server, mut client) = pair();
    client.write_all(&[1u8; 1234]).unwrap();
    eventually("bytes to arrive", || {
        SocketInfo::of(server.as_fd()).unwrap().recv_q == Some(1234)
    });
    let info = SocketInfo::of(server.as_fd()).unwrap();
    assert_eq!(info.state, TcpState::Established);
    assert_eq!(info.local, server.local_addr().unwrap());
    assert_eq!(info.peer, Some(client.local_addr().unwrap()));
    assert_eq!(info.send_q, Some(0));

    // The peer's FIN moves us to CLOSE_WAIT.
    drop(client);
    eventually("close_wait", || {
        SocketInfo::of(server.as_fd()).unwrap().state == TcpState::CloseWait
    });
}

#[test]
fn a_listener_has_no_queues_and_udp_is_not_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let info = SocketInfo::of(listener.as_fd()).unwrap();
    assert_eq!(
        (info.state, info.recv_q, info.send_q, info.peer),
        (TcpState::Listen, None, None, None)
    );

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(matches!(SocketInfo::of(udp.as_fd()), Err(Error::NotTcp)));
}

#[test]
fn the_reactor_lists_its_lingering_sockets() {
    let reactor: Reactor<()> = Reactor::start(Default::default(), |_, _| {}).unwrap();
    let (server, mut client) = pair();
    let (local, peer) = (server.local_addr().unwrap(), client.local_addr().unwrap());
    client.write_all(&[0u8; 10]).unwrap();
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    let limits = Limits {
        timeout: Duration::from_secs(60),
        idle: None,
        max_drain: Some(1 << 20),
        max_lingering: None,
    };
    let id = hand_over(&reactor, dup, limits, Fin::Now, ());

    // Our FIN went out and the 10 bytes were discarded; the peer keeps its
    // side open, so the socket lingers in FIN_WAIT2.
    let list = || {
        let (tx, rx) = channel();
        reactor.lingering(move |l| tx.send(l).unwrap()).unwrap();
        rx.recv_timeout(WAIT).unwrap()
    };
    eventually("fin_wait2 with the bytes drained", || {
        let l = list();
        l.len() == 1
            && l[0].drained == 10
            && l[0]
                .now
                .as_ref()
                .is_ok_and(|i| i.state == TcpState::FinWait2)
    });
    let l = list().remove(0);
    let now = l.now.as_ref().unwrap();
    assert_eq!(
        (l.id, now.local, now.peer, l.port_pending, l.peer_fin),
        (id, local, Some(peer), false, false)
    );
    assert!(l.remaining <= Duration::from_secs(60) && l.remaining > Duration::from_secs(50));

    // Once the peer closes, the socket is gone from the list.
    drop(client);
    eventually("an empty list", || list().is_empty());
}
