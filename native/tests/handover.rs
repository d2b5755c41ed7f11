//! The hand-over as the NIF makes it, in its two steps: `reserve` (the
//! duplicate, and room in the reactor) while the VM's socket is still open;
//! the VM closes its own descriptor; then `start`, or the reservation is
//! dropped (another closer won, or the duplicate was of another socket).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::thread;
use std::time::Duration;

use common::{eventually, hand_over, pair, reactor, WAIT};
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::info::TcpState;
use fin_close_nif::reactor::{Fin, Limits, Outcome};
use fin_close_nif::sys;
use socket2::SockRef;

fn limits(max_lingering: Option<u64>) -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        idle: None,
        max_drain: Some(1 << 20),
        max_lingering,
    }
}

fn state(s: &TcpStream) -> TcpState {
    TcpState::from_kernel(sys::tcp_state(s.as_fd()).unwrap())
}

/// Reads what has arrived, without waiting for more: the bytes, and
/// whether the stream ended (our FIN) rather than ran dry.
fn read_available(mut s: &TcpStream) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(e) => panic!("the peer saw {e} after {} bytes", got.len()),
        }
    }
}

/// The socket's inode, which names its open file in /proc.
fn inode(s: &TcpStream) -> String {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap();
    link.to_string_lossy().into_owned()
}

/// How many descriptors of this process are of the socket `inode`.
fn descriptors_of(inode: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|link| link.to_string_lossy() == inode)
        .count()
}

/// Whether an epoll set of this process watches the socket `inode`
/// (`socket:[N]`): each watch is a `tfd:` line of the epoll descriptor's
/// fdinfo, with the watched file's inode in hexadecimal.
fn watched(inode: &str) -> bool {
    let number: u64 = inode
        .trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let hex = format!("ino:{number:x}");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| {
            let fd = fd.ok()?;
            let link = std::fs::read_link(fd.path()).ok()?;
            (link.to_string_lossy() == "anon_inode:[eventpoll]").then_some(fd.file_name())
        })
        .filter_map(|fd| {
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.to_string_lossy())).ok()
        })
        .any(|info| {
            info.lines()
                .filter(|line| line.starts_with("tfd:"))
                .any(|line| line.split_whitespace().any(|field| field == hex))
        })
}

#[test]
fn reserve_then_the_vm_closes_then_start_sends_our_fin_after_the_whole_reply() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    // A request the server never reads, and a reply in our send queue.
    (&client).write_all(&[b'q'; 1000]).unwrap();
    let reply: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    SockRef::from(&server)
        .set_send_buffer_size(1 << 20)
        .unwrap();
    (&server).write_all(&reply).unwrap();
    eventually("the request to be queued", || {
        sys::inq(server.as_fd()).unwrap() == 1000
    });

    let dup = Duplicate::of(server.as_fd()).unwrap();
    let reservation = reactor.reserve(dup, limits(None)).unwrap();
    assert_eq!(reactor.stats().lingering, 1);
    // The VM's port closes its descriptor: the duplicate keeps the
    // connection, and that close sends nothing, neither FIN nor RST.
    drop(server);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(state(&client), TcpState::Established, "sent at the close");

    reservation
        .start(Fin::Now, 7)
        .ok()
        .expect("the reactor runs");
    // A late request is drained, not answered with RST.
    (&client).write_all(&[b'p'; 5000]).unwrap();
    // Our FIN left at the start, behind the reply: the peer reads all of
    // it, then the end of the stream, while it has not closed yet.
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    (&client).read_to_end(&mut got).unwrap();
    assert!(
        got == reply,
        "the peer got {} of {} bytes",
        got.len(),
        reply.len()
    );
    assert_eq!(state(&client), TcpState::CloseWait);
    client.shutdown(Shutdown::Write).unwrap();
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (7, Outcome::Clean));
    assert_eq!(report.drained, 6000);
    assert_eq!(reactor.stats().lingering, 0);
}

#[test]
fn a_dropped_reservation_gives_everything_back_and_sends_nothing() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    (&client).write_all(b"unread request").unwrap();
    (&server).write_all(b"reply").unwrap();
    let file = inode(&server);

    let dup = Duplicate::of(server.as_fd()).unwrap();
    let reservation = reactor.reserve(dup, limits(Some(1))).unwrap();
    assert_eq!(descriptors_of(&file), 2);
    assert!(watched(&file), "no room taken in the epoll set");
    assert_eq!(reactor.stats().lingering, 1);
    drop(reservation);
    // The duplicate is closed, and its registration gone although the
    // VM's descriptor keeps the file open.
    assert_eq!(descriptors_of(&file), 1);
    assert!(!watched(&file), "still registered in the epoll set");
    assert_eq!(reactor.stats().lingering, 0);

    // Nothing was sent: the peer has the reply and no FIN, and the socket
    // is still the caller's, both ways.
    thread::sleep(Duration::from_millis(50));
    assert_eq!(state(&client), TcpState::Established);
    assert_eq!(read_available(&client), (b"reply".to_vec(), false));
    assert_eq!(sys::inq(server.as_fd()).unwrap(), 14);
    (&server).write_all(b" and more").unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut more = [0u8; 9];
    (&client).read_exact(&mut more).unwrap();
    assert_eq!(&more, b" and more");

    // The room was given back: at max_lingering 1, the next socket is
    // the only one lingering, so nothing is reclaimed to make room.
    let (next, peer) = pair();
    let dup = Duplicate::of(next.as_fd()).unwrap();
    drop(next);
    hand_over(&reactor, dup, limits(Some(1)), Fin::Now, 2);
    drop(peer);
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (2, Outcome::Clean));
    // And the reactor never heard of the dropped one.
    thread::sleep(Duration::from_millis(50));
    assert!(reports.try_recv().is_err());
}

#[test]
fn our_fin_is_due_unless_shut_for_reading_before_the_peers_fin() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    let reservation = reactor
        .reserve(Duplicate::of(server.as_fd()).unwrap(), limits(None))
        .unwrap();
    assert!(reservation.fin_due(), "an open connection");
    server.shutdown(Shutdown::Read).unwrap();
    assert!(
        !reservation.fin_due(),
        "shut for reading, no FIN from the peer"
    );
    client.shutdown(Shutdown::Write).unwrap();
    eventually("the peer's FIN", || reservation.fin_due());

    // The caller sent our FIN through its own handle before closing it
    // (a port's shutdown): the hand-over sends nothing more, and the
    // socket ends clean once the peer has it.
    server.shutdown(Shutdown::Write).unwrap();
    drop(server);
    reservation
        .start(Fin::Sent, 3)
        .ok()
        .expect("the reactor runs");
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    (&client).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (3, Outcome::Clean));
}
