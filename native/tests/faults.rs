//! A bug of the reactor's own, injected as a panic (feature `diagnostics`):
//! one socket's step ends that socket alone; a dead thread ends and reports
//! every socket it held, and what it could not take another reactor adopts.
//! Its own test binary: the fault switch is one per process.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, hand_over, pair, WAIT};
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::faults::{self, Fault};
use fin_close_nif::reactor::{Counters, Fin, Limits, Outcome, Reactor, Report};

fn reactor(counters: &Arc<Counters>) -> (Reactor<u32>, Receiver<(u32, Report)>) {
    let (tx, rx) = channel();
    let on_end = move |token, report| tx.send((token, report)).unwrap();
    (Reactor::start(Arc::clone(counters), on_end).unwrap(), rx)
}

/// The fault switch is one per process: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(10),
        idle: None,
        max_drain: None,
        max_lingering: None,
    }
}

/// Hands `server` over, token `token`, as the VM does.
fn close(reactor: &Reactor<u32>, server: TcpStream, token: u32) {
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    hand_over(reactor, dup, limits(), Fin::Now, token);
}

fn ends(mut peer: TcpStream) {
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
}

#[test]
fn a_panic_in_one_sockets_step_ends_that_socket_alone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let counters = Arc::default();
    let (reactor, reports) = reactor(&counters);
    // One lingering already, its peer holding on.
    let (server, holder) = pair();
    close(&reactor, server, 1);
    eventually("it to be adopted", || {
        let (tx, rx) = channel();
        reactor
            .lingering(move |l| tx.send(l.len()).unwrap())
            .unwrap();
        rx.recv_timeout(WAIT).unwrap() == 1
    });
    faults::arm(Fault::Adopt);
    let (server, peer) = pair();
    close(&reactor, server, 2);
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (2, Outcome::Error("panic")));
    drop(peer);
    // The thread goes on: the one lingering ends clean, a new one too.
    assert!(reactor.is_running());
    ends(holder);
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (1, Outcome::Clean));
    let (server, peer) = pair();
    close(&reactor, server, 3);
    ends(peer);
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (3, Outcome::Clean));
    assert_eq!(reactor.stats().lingering, 0);
    assert_eq!(reactor.stats().error, 1);
}

#[test]
fn a_dead_thread_reports_every_socket_and_another_reactor_adopts_what_it_could_not() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let counters = Arc::default();
    let (first, reports) = reactor(&counters);
    let (server, holder) = pair();
    close(&first, server, 1);
    // Reserved before the thread dies, started after.
    let (server, late) = pair();
    let dup = Duplicate::of(server.as_fd()).unwrap();
    let reservation = first.reserve(dup, limits()).unwrap();
    drop(server);
    faults::arm(Fault::Thread);
    let (server, trigger) = pair();
    close(&first, server, 2);
    eventually("the thread to stop", || !first.is_running());
    let mut ended: Vec<(u32, Outcome)> = (0..2)
        .map(|_| reports.recv_timeout(WAIT).unwrap())
        .map(|(token, report)| (token, report.outcome))
        .collect();
    ended.sort_by_key(|&(token, _)| token);
    let stopped = Outcome::Error("reactor_stopped");
    assert_eq!(ended, vec![(1, stopped), (2, stopped)]);
    drop((holder, trigger));
    let Err(orphan) = reservation.start(Fin::Now, 3) else {
        panic!("started on a stopped reactor");
    };
    let (second, second_reports) = reactor(&counters);
    assert!(second.adopt(orphan).is_ok());
    ends(late);
    let (token, report) = second_reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (3, Outcome::Clean));
    // One set of counters across both reactors.
    let stats = second.stats();
    assert_eq!((stats.lingering, stats.error, stats.clean), (0, 2, 1));
}
