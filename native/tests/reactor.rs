//! The native core on real loopback connections, without a VM: the "VM's
//! socket" is a std `TcpStream` that is dropped after the hand-over, as the
//! port closes its descriptor.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, hand_over, pair, reactor, WAIT};
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::error::Error;
use fin_close_nif::info::TcpState;
use fin_close_nif::reactor::{Fin, Limits, Outcome, Reactor, Report};
use fin_close_nif::sys;
use socket2::SockRef;

fn limits(timeout_ms: u64, max_drain: Option<u64>) -> Limits {
    Limits {
        timeout: Duration::from_millis(timeout_ms),
        idle: None,
        max_drain,
        max_lingering: None,
    }
}

/// Hands `server` over as the VM does: duplicate, close its own descriptor,
/// give the duplicate to the reactor.
fn close_as_vm(reactor: &Reactor<u32>, server: TcpStream, limits: Limits) {
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    hand_over(reactor, dup, limits, Fin::Now, 0);
}

/// Hands `server` over as a port that still holds output does: the VM
/// keeps its descriptor, writes the rest and sends FIN itself.
fn hand_over_with_port_pending(reactor: &Reactor<u32>, server: &TcpStream, limits: Limits) {
    let dup = Duplicate::of(server.as_fd()).unwrap();
    hand_over(reactor, dup, limits, Fin::Port, 0);
}

/// The outcome of the next socket to end.
fn next_outcome(reports: &Receiver<(u32, Report)>) -> Outcome {
    reports.recv_timeout(WAIT).unwrap().1.outcome
}

/// Reads until end of stream or error, returning the byte count and how it ended.
fn read_to_end(mut s: &TcpStream, pace: Duration) -> (usize, std::io::Result<()>) {
    let mut buf = vec![0u8; 16384];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (total, Ok(())),
            Ok(n) => total += n,
            Err(e) => return (total, Err(e)),
        }
        thread::sleep(pace);
    }
}

#[test]
fn inq_is_exact_and_zero_after_reading() {
    let (server, mut client) = pair();
    // Room for the largest size without the application reading.
    SockRef::from(&server)
        .set_recv_buffer_size(4 << 20)
        .unwrap();
    for size in [1usize, 1000, 65_536, 300_000] {
        client.write_all(&vec![7u8; size]).unwrap();
        eventually("bytes to arrive", || {
            sys::inq(server.as_fd()).unwrap() == size
        });
        let mut buf = vec![0u8; size];
        (&server).read_exact(&mut buf).unwrap();
        assert_eq!(sys::inq(server.as_fd()).unwrap(), 0);
    }
}

#[test]
fn outq_counts_what_the_peer_has_not_acknowledged() {
    let (server, client) = pair();
    SockRef::from(&client).set_nonblocking(true).unwrap();
    // Fill until the kernel refuses more: the peer reads nothing.
    let mut sent = 0usize;
    loop {
        match (&client).write(&[1u8; 65_536]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    // Everything sent is either in the peer's receive queue or not yet
    // acknowledged in ours.
    eventually("queues to settle", || {
        sys::outq(client.as_fd()).unwrap() + sys::inq(server.as_fd()).unwrap() == sent
    });
    assert!(sys::outq(client.as_fd()).unwrap() > 0);
}

#[test]
fn inq_on_a_listener_is_einval() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let err = sys::inq(listener.as_fd()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
}

#[test]
fn duplicate_is_the_same_connection_and_refuses_other_sockets() {
    let (server, _client) = pair();
    let dup = Duplicate::of(server.as_fd()).unwrap();
    let same = SockRef::from(&dup);
    assert_eq!(
        same.local_addr().unwrap().as_socket(),
        Some(server.local_addr().unwrap())
    );
    assert_eq!(
        same.peer_addr().unwrap().as_socket(),
        Some(server.peer_addr().unwrap())
    );

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(matches!(
        Duplicate::of(listener.as_fd()),
        Err(Error::NotConnected)
    ));
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert!(matches!(Duplicate::of(udp.as_fd()), Err(Error::NotTcp)));
    let (unix, _) = std::os::unix::net::UnixStream::pair().unwrap();
    assert!(matches!(Duplicate::of(unix.as_fd()), Err(Error::NotTcp)));
    // A raw socket of protocol TCP (root only) would see every segment the
    // host receives: refused as well.
    if let Ok(raw) = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::TCP),
    ) {
        assert!(matches!(Duplicate::of(raw.as_fd()), Err(Error::NotTcp)));
    }
    let file = std::fs::File::open("/proc/self/stat").unwrap();
    assert_eq!(
        Duplicate::of(file.as_fd()).unwrap_err().reason(),
        "enotsock"
    );
}

#[test]
fn disposing_a_last_duplicate_with_linger_does_not_block() {
    let (server, _client) = pair();
    // Unsent data and a 2 s SO_LINGER: a plain close() would wait 2 s.
    SockRef::from(&server)
        .set_linger(Some(Duration::from_secs(2)))
        .unwrap();
    SockRef::from(&server).set_nonblocking(true).unwrap();
    while (&server).write(&[0u8; 65_536]).is_ok() {}
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    let start = Instant::now();
    dup.dispose();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "dispose blocked for {:?}",
        start.elapsed()
    );
}

#[test]
fn unread_request_then_close_delivers_everything_and_ends_clean() {
    let (reactor, reports) = reactor();
    let (server, mut client) = pair();
    client.write_all(&[b'q'; 1000]).unwrap();
    let reply = vec![b'r'; 2 << 20];
    let reader = thread::spawn(move || {
        // A slow reader that also sends a late pipelined request.
        thread::sleep(Duration::from_millis(50));
        client.write_all(&[b'p'; 5000]).unwrap();
        let result = read_to_end(&client, Duration::from_micros(200));
        drop(client);
        result
    });
    (&server).write_all(&reply).unwrap();
    eventually("the request to be queued", || {
        sys::inq(server.as_fd()).unwrap() >= 1000
    });

    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server); // the VM closes its own descriptor; the duplicate keeps the connection
    hand_over(&reactor, dup, limits(10_000, Some(1 << 20)), Fin::Now, 1);

    let (received, ended) = reader.join().unwrap();
    assert_eq!(received, reply.len());
    assert!(ended.is_ok(), "peer saw {ended:?} instead of end of stream");
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(token, 1);
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.drained, 6000);
    let stats = reactor.stats();
    assert_eq!((stats.clean, stats.lingering, stats.drained), (1, 0, 6000));
}

#[test]
fn linger_zero_on_the_socket_does_not_turn_close_into_reset() {
    let (reactor, reports) = reactor();
    let (server, mut client) = pair();
    SockRef::from(&server)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    client.write_all(b"unread").unwrap();
    (&server).write_all(b"reply").unwrap();
    eventually("the request to be queued", || {
        sys::inq(server.as_fd()).unwrap() == 6
    });
    close_as_vm(&reactor, server, limits(10_000, Some(1 << 20)));
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"reply");
    drop(client);
    assert_eq!(next_outcome(&reports), Outcome::Clean);
}

#[test]
fn dripping_peer_is_cut_off_at_the_timeout() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    let dripper = thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if (&client).write_all(b"x").is_err() {
                return true; // reset
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    });
    let handed = Instant::now();
    close_as_vm(&reactor, server, limits(300, Some(1 << 20)));
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::Timeout);
    assert!(handed.elapsed() >= Duration::from_millis(300));
    assert!(report.drained > 0 && report.drained < 100);
    assert!(dripper.join().unwrap(), "the dripping peer was not reset");
}

#[test]
fn flooding_peer_is_cut_off_at_max_drain() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    let flooder = thread::spawn(move || {
        let chunk = vec![0u8; 65_536];
        for _ in 0..10_000 {
            if (&client).write_all(&chunk).is_err() {
                return true;
            }
        }
        false
    });
    close_as_vm(&reactor, server, limits(10_000, Some(256 * 1024)));
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::DrainLimit);
    assert!(report.drained > 256 * 1024);
    assert!(flooder.join().unwrap(), "the flooding peer was not reset");
}

#[test]
fn a_connection_already_reset_is_still_closed_and_reported() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    eventually("the reset to arrive", || server.peer_addr().is_err());
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    hand_over(&reactor, dup, limits(10_000, Some(1 << 20)), Fin::Now, 0);
    assert_eq!(next_outcome(&reports), Outcome::Reset);
}

#[test]
fn peer_reset_is_reported_as_reset() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    close_as_vm(&reactor, server, limits(10_000, Some(1 << 20)));
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    (&client).write_all(b"x").unwrap();
    drop(client);
    assert_eq!(next_outcome(&reports), Outcome::Reset);
}

#[test]
fn pending_port_output_holds_back_fin_until_the_vm_sends_it() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    // The "port" keeps its descriptor and output; no FIN may go yet.
    hand_over_with_port_pending(&reactor, &server, limits(10_000, Some(1 << 20)));
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 16];
    let early = (&client).read(&mut buf).unwrap_err();
    assert_eq!(
        early.kind(),
        ErrorKind::WouldBlock,
        "FIN was sent before the port's output"
    );
    // The port writes its last bytes, sends FIN and closes.
    (&server).write_all(b"tail").unwrap();
    server.shutdown(Shutdown::Write).unwrap();
    drop(server);
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    (&client).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"tail");
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(next_outcome(&reports), Outcome::Clean);
}

#[test]
fn reset_after_the_peers_fin_while_the_port_writes_is_not_clean() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    hand_over_with_port_pending(&reactor, &server, limits(10_000, Some(1 << 20)));
    // The peer half-closes (the reactor sees its FIN), then resets before
    // the port has written everything.
    client.shutdown(Shutdown::Write).unwrap();
    (&server).write_all(b"part of the reply").unwrap();
    SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    eventually("the reset to arrive", || server.peer_addr().is_err());
    drop(server);
    assert_eq!(next_outcome(&reports), Outcome::Reset);
}

#[test]
fn port_that_died_with_output_is_cut_off_and_resets_the_peer() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    let limits = Limits {
        idle: Some(Duration::from_millis(200)),
        ..limits(10_000, Some(1 << 20))
    };
    hand_over_with_port_pending(&reactor, &server, limits);
    // Gone without its FIN: nothing more will come from our side.
    drop(server);
    assert_eq!(next_outcome(&reports), Outcome::Idle);
    let mut buf = [0u8; 1];
    let err = (&client).read(&mut buf).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionReset,
        "a truncated reply must not look complete"
    );
}

/// Holds the reactor thread busy for `busy` (in a listing's reply, which
/// runs on it), and returns once it is.
fn hold_busy(reactor: &Reactor<u32>, busy: Duration) {
    let (inside, entered) = channel();
    reactor
        .lingering(move |_| {
            inside.send(()).unwrap();
            thread::sleep(busy);
        })
        .unwrap();
    entered.recv_timeout(WAIT).unwrap();
}

#[test]
fn our_fin_leaves_at_the_hand_over_while_the_reactor_is_busy() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    (&client).write_all(&[1u8; 1000]).unwrap();
    (&server).write_all(b"answer").unwrap();
    eventually("the request to be queued", || {
        sys::inq(server.as_fd()).unwrap() == 1000
    });
    hold_busy(&reactor, Duration::from_millis(1000));
    let started = Instant::now();
    close_as_vm(&reactor, server, limits(10_000, None));
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let (n, ended) = read_to_end(&client, Duration::ZERO);
    assert_eq!((n, ended.is_ok()), (6, true), "the answer then our FIN");
    assert!(started.elapsed() < Duration::from_millis(500));
    // Not adopted yet: the thread is still busy, nothing ended.
    assert!(reports.try_recv().is_err());
    drop(client);
    assert_eq!(next_outcome(&reports), Outcome::Clean);
}

#[test]
fn our_fin_waits_for_the_peers_after_our_own_shut_rd_while_the_reactor_is_busy() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    server.shutdown(Shutdown::Read).unwrap();
    hold_busy(&reactor, Duration::from_millis(300));
    close_as_vm(&reactor, server, limits(10_000, None));
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    let read = (&client).read(&mut byte).unwrap_err();
    assert_eq!(read.kind(), ErrorKind::WouldBlock, "no FIN yet");
    // Data after the hand-over resets nothing, before or after adoption.
    (&client).write_all(&[1u8; 10_000]).unwrap();
    thread::sleep(Duration::from_millis(300));
    (&client).write_all(&[1u8; 10_000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    client.set_read_timeout(None).unwrap();
    let (n, ended) = read_to_end(&client, Duration::ZERO);
    assert_eq!((n, ended.is_ok()), (0, true), "FIN, not a reset");
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((report.outcome, report.drained), (Outcome::Clean, 20_000));
}

#[test]
fn a_read_of_zero_after_our_own_shut_rd_is_no_fin() {
    let (reactor, reports) = reactor();
    let (server, client) = pair();
    server.shutdown(Shutdown::Read).unwrap();
    close_as_vm(&reactor, server, limits(10_000, None));
    // What the peer sends after our SHUT_RD is still discarded.
    thread::sleep(Duration::from_millis(50));
    (&client).write_all(&[1u8; 100_000]).unwrap();
    thread::sleep(Duration::from_millis(50));
    if let Ok((_, report)) = reports.try_recv() {
        panic!("ended before the peer's FIN: {report:?}");
    }
    client.shutdown(Shutdown::Write).unwrap();
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert_eq!(report.drained, 100_000);
    let (n, ended) = read_to_end(&client, Duration::ZERO);
    assert_eq!(
        (n, ended.is_ok()),
        (0, true),
        "the peer saw no FIN but a reset"
    );
}

#[test]
fn clean_waits_until_the_peer_has_acknowledged_everything() {
    // On the side that accepted and on the side that connected, whose SYN
    // the kernel counts among the bytes acknowledged.
    for connected_side in [false, true] {
        let (accepted, connected) = pair();
        let (ours, peer) = match connected_side {
            false => (accepted, connected),
            true => (connected, accepted),
        };
        clean_only_when_read(ours, peer);
    }
}

fn clean_only_when_read(ours: TcpStream, peer: TcpStream) {
    let (reactor, reports) = reactor();
    SockRef::from(&peer).set_recv_buffer_size(16_384).unwrap();
    // More than the peer's window: most of it stays in our send queue.
    let size = 2 << 20;
    let writer = {
        let ours = ours.try_clone().unwrap();
        thread::spawn(move || (&ours).write_all(&vec![5u8; size]).unwrap())
    };
    // The peer half-closes first and reads only later.
    peer.shutdown(Shutdown::Write).unwrap();
    eventually("the reply to be queued", || {
        sys::outq(ours.as_fd()).unwrap() > 100_000
    });
    thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    close_as_vm(&reactor, ours, limits(10_000, None));
    thread::sleep(Duration::from_millis(300));
    if let Ok((_, report)) = reports.try_recv() {
        panic!("ended before the reply was read: {report:?}");
    }
    let (n, ended) = read_to_end(&peer, Duration::ZERO);
    writer.join().unwrap();
    assert!(ended.is_ok());
    assert_eq!(n, size);
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert!(report.lingered >= Duration::from_millis(300));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn a_reset_is_no_clean_end_on_either_side_though_another_descriptor_took_its_error() {
    for connected_side in [false, true] {
        let (reactor, reports) = reactor();
        let (accepted, connected) = pair();
        let (ours, peer) = match connected_side {
            false => (accepted, connected),
            true => (connected, accepted),
        };
        // The "port" keeps writing through its own descriptor.
        hand_over_with_port_pending(&reactor, &ours, limits(10_000, Some(1 << 20)));
        peer.shutdown(Shutdown::Write).unwrap();
        thread::sleep(Duration::from_millis(50));
        SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        eventually("the reset to arrive", || ours.peer_addr().is_err());
        // The port's write takes the reset's error, as the VM's would.
        assert!((&ours).write_all(b"more of the reply").is_err());
        drop(ours);
        let outcome = next_outcome(&reports);
        assert_eq!(outcome, Outcome::Reset, "connected side: {connected_side}");
    }
}

#[test]
fn an_idle_peer_is_cut_off_and_a_slow_reader_is_not() {
    let (reactor, reports) = reactor();
    let idle = Limits {
        idle: Some(Duration::from_millis(100)),
        ..limits(10_000, None)
    };
    // Silent: it neither sends, nor closes, nor reads our reply.
    let (server, silent) = pair();
    SockRef::from(&silent).set_recv_buffer_size(16_384).unwrap();
    SockRef::from(&server)
        .set_send_buffer_size(1 << 20)
        .unwrap();
    (&server).write_all(&[5u8; 200_000]).unwrap();
    close_as_vm(&reactor, server, idle);
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::Idle);
    assert!(report.lingered >= Duration::from_millis(100));
    assert!(report.lingered < Duration::from_millis(1000));
    let (n, ended) = read_to_end(&silent, Duration::ZERO);
    assert!(n < 200_000 && ended.is_err(), "cut off without a reset");
    // Silent with everything of ours received: closed quietly, no reset.
    let (server, quiet) = pair();
    (&server).write_all(b"all of it").unwrap();
    close_as_vm(&reactor, server, idle);
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::Idle);
    let (n, ended) = read_to_end(&quiet, Duration::ZERO);
    assert_eq!((n, ended.is_ok()), (9, true));
    // A reader that takes 16 KiB every 2 ms through a small buffer makes
    // progress all along, for longer than the idle bound twice over. The
    // reply is written by a "port" (see the port tests) that sends FIN
    // after it.
    let (server, reader) = pair();
    SockRef::from(&reader)
        .set_recv_buffer_size(256 << 10)
        .unwrap();
    let size = 2 << 20;
    let writer = {
        let server = server.try_clone().unwrap();
        thread::spawn(move || {
            (&server).write_all(&vec![5u8; size]).unwrap();
            server.shutdown(Shutdown::Write).unwrap();
        })
    };
    hand_over_with_port_pending(&reactor, &server, idle);
    drop(server);
    let (n, ended) = read_to_end(&reader, Duration::from_millis(2));
    assert_eq!((n, ended.is_ok()), (size, true), "{:?}", reports.try_recv());
    writer.join().unwrap();
    drop(reader);
    let (_, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!(report.outcome, Outcome::Clean);
    assert!(report.lingered >= Duration::from_millis(200), "{report:?}");
}

#[test]
fn many_sockets_linger_on_one_thread_and_all_end() {
    let (reactor, reports) = reactor();
    let mut clients = Vec::new();
    for i in 0..200u32 {
        let (server, client) = pair();
        (&client).write_all(b"unread").unwrap();
        let dup = Duplicate::of(server.as_fd()).unwrap();
        drop(server);
        hand_over(&reactor, dup, limits(10_000, Some(1 << 20)), Fin::Now, i);
        clients.push(client);
    }
    eventually("all to linger", || reactor.stats().lingering == 200);
    for client in &clients {
        let mut rest = Vec::new();
        (&*client).read_to_end(&mut rest).unwrap();
    }
    drop(clients);
    let mut tokens: Vec<u32> = (0..200)
        .map(|_| reports.recv_timeout(WAIT).unwrap())
        .map(|(t, r)| {
            assert_eq!(r.outcome, Outcome::Clean);
            t
        })
        .collect();
    tokens.sort();
    assert_eq!(tokens, (0..200).collect::<Vec<_>>());
    assert_eq!(reactor.stats().lingering, 0);
}

/// Waits until `n` lingering sockets have nothing left to lose: all of
/// ours acknowledged, our FIN too. A peer may delay its acknowledgment of a
/// FIN (pingpong mode, tens of milliseconds); until then a reclaim would
/// not take the socket first.
fn acknowledged(reactor: &Reactor<u32>, n: usize) {
    eventually("our FINs acknowledged", || {
        let (tx, rx) = channel();
        reactor.lingering(move |l| tx.send(l).unwrap()).unwrap();
        let acked = rx.recv_timeout(WAIT).unwrap().into_iter().filter(|l| {
            l.now
                .as_ref()
                .is_ok_and(|i| i.state == TcpState::FinWait2 && i.send_q == Some(0))
        });
        acked.count() >= n
    });
}

#[test]
fn at_max_lingering_the_cheapest_socket_is_reclaimed() {
    let (reactor, reports) = reactor();
    let cap = Limits {
        max_lingering: Some(2),
        ..limits(10_000, Some(1 << 20))
    };
    // The oldest has not read our reply; the second has all of it.
    let (server, deaf) = pair();
    SockRef::from(&deaf).set_recv_buffer_size(16_384).unwrap();
    SockRef::from(&server)
        .set_send_buffer_size(1 << 20)
        .unwrap();
    (&server).write_all(&[5u8; 200_000]).unwrap();
    close_as_vm(&reactor, server, cap);
    let (server, quiet) = pair();
    (&server).write_all(b"all of it").unwrap();
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    hand_over(&reactor, dup, cap, Fin::Now, 1);
    eventually("the second to have everything", || {
        sys::inq(quiet.as_fd()).unwrap() == 9
    });
    acknowledged(&reactor, 1);
    // A third, whose reply is unread too: the one with nothing left to
    // lose goes first, quietly.
    let (server, third) = pair();
    SockRef::from(&third).set_recv_buffer_size(16_384).unwrap();
    SockRef::from(&server)
        .set_send_buffer_size(1 << 20)
        .unwrap();
    (&server).write_all(&[5u8; 200_000]).unwrap();
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    hand_over(&reactor, dup, cap, Fin::Now, 2);
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (1, Outcome::Reclaimed));
    assert_eq!(read_to_end(&quiet, Duration::ZERO).0, 9);
    // A fourth, its reply unread too (with nothing left to lose, it could
    // go first itself, as soon as the peer acknowledged our FIN): now the
    // oldest goes, with a reset (its reply was unread).
    let (server, fourth) = pair();
    (&server).write_all(b"unread").unwrap();
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    hand_over(&reactor, dup, cap, Fin::Now, 3);
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (0, Outcome::Reclaimed));
    let (n, ended) = read_to_end(&deaf, Duration::ZERO);
    assert!(
        n < 200_000 && ended.is_err(),
        "a reply cut off must not look whole"
    );
    // The rest end as usual once their peers have read and closed.
    for peer in [third, fourth] {
        assert!(read_to_end(&peer, Duration::ZERO).1.is_ok());
        peer.shutdown(Shutdown::Write).unwrap();
        assert_eq!(next_outcome(&reports), Outcome::Clean);
    }
    assert_eq!(reactor.stats().reclaimed, 2);
}

#[test]
fn quiet_sockets_are_reclaimed_in_the_order_they_were_handed_over() {
    let (reactor, reports) = reactor();
    let cap = Limits {
        max_lingering: Some(2),
        ..limits(10_000, None)
    };
    let close = |server: TcpStream, token: u32| {
        let dup = Duplicate::of(server.as_fd()).unwrap();
        drop(server);
        hand_over(&reactor, dup, cap, Fin::Now, token);
    };
    // Two handed over under a millisecond apart while the thread is busy,
    // so that it adopts them at once: the first one's peer has been quiet
    // the longer, whatever the adoption's time in whole milliseconds.
    for round in 0..10u32 {
        hold_busy(&reactor, Duration::from_millis(3));
        let (first, first_peer) = pair();
        close(first, round * 3);
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_micros(800) {}
        let (second, second_peer) = pair();
        close(second, round * 3 + 1);
        for peer in [&first_peer, &second_peer] {
            let (n, ended) = read_to_end(peer, Duration::ZERO);
            assert!(n == 0 && ended.is_ok(), "our FIN, nothing else");
        }
        acknowledged(&reactor, 2);
        let (third, third_peer) = pair();
        close(third, round * 3 + 2);
        let (token, report) = reports.recv_timeout(WAIT).unwrap();
        assert_eq!(
            (token, report.outcome),
            (round * 3, Outcome::Reclaimed),
            "round {round}"
        );
        for peer in [second_peer, third_peer] {
            peer.shutdown(Shutdown::Write).unwrap();
        }
        for _ in 0..2 {
            assert_eq!(next_outcome(&reports), Outcome::Clean);
        }
    }
}

/// The reactor thread runs under SCHED_BATCH, so that its wake-ups never
/// preempt a thread of the VM.
#[test]
fn reactor_thread_is_batch_scheduled() {
    let (_reactor, _reports) = reactor();
    // Field 41 of a thread's stat is its scheduling policy; 3 is SCHED_BATCH.
    let policies = || -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .filter_map(|stat| {
                let (name, rest) = stat.split_once(") ")?;
                name.ends_with("(fin_close_react")
                    .then(|| rest.split(' ').nth(38).unwrap_or("").to_string())
            })
            .collect()
    };
    eventually("the reactor thread to run SCHED_BATCH", || {
        let found = policies();
        !found.is_empty() && found.iter().all(|p| p == "3")
    });
}
