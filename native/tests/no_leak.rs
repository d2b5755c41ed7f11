//! Every descriptor the reactor is given is closed in the end, whatever the
//! outcome (its own test binary: the descriptor count is per process).

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::mpsc::channel;
use std::time::Duration;

use common::hand_over;
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::reactor::{Fin, Limits, Outcome, Reactor};
use socket2::SockRef;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn no_descriptor_outlives_its_socket() {
    let (tx, rx) = channel();
    let reactor = Reactor::start(Default::default(), move |_: (), report| {
        tx.send(report.outcome).unwrap()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let before = open_fds();
    let mut outcomes = Vec::new();
    for round in 0..60 {
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(b"unread").unwrap();
        let dup = Duplicate::of(server.as_fd()).unwrap();
        drop(server);
        // A third each: clean, timeout, reset by the peer.
        let timeout = if round % 3 == 1 { 0 } else { 10_000 };
        hand_over(
            &reactor,
            dup,
            Limits {
                timeout: Duration::from_millis(timeout),
                idle: None,
                max_drain: Some(1 << 20),
                max_lingering: None,
            },
            Fin::Now,
            (),
        );
        match round % 3 {
            // Cut off while the peer holds on.
            1 => outcomes.push(rx.recv_timeout(Duration::from_secs(10)).unwrap()),
            2 => SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap(),
            _ => drop(std::io::copy(&mut client, &mut std::io::sink())),
        }
        drop(client);
        if round % 3 != 1 {
            outcomes.push(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        }
    }
    assert!(outcomes.contains(&Outcome::Clean));
    assert!(outcomes.contains(&Outcome::Timeout));
    assert!(outcomes.contains(&Outcome::Reset));
    assert_eq!(reactor.stats().lingering, 0);
    assert_eq!(open_fds(), before);
}
