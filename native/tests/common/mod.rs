//! Helpers shared by the integration tests: loopback connections and
//! waiting for a condition, handing a socket over.
// Each test binary uses some of them.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::reactor::{Fin, Limits, LingerId, Reactor, Report};

/// How long any test waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A connected loopback pair: (server side, client side).
pub fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

/// A reactor of its own counters whose reports, with their tokens, come
/// out of the receiver.
pub fn reactor() -> (Reactor<u32>, Receiver<(u32, Report)>) {
    let (tx, rx) = channel();
    let reactor = Reactor::start(Default::default(), move |token, report| {
        tx.send((token, report)).unwrap()
    })
    .unwrap();
    (reactor, rx)
}

/// Waits until `f` holds, polling; panics after [`WAIT`].
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Hands `dup` over as the NIF does: room reserved, then the linger started
/// (the caller's own handle is closed in between); panics should the
/// reactor refuse it or its thread have stopped.
pub fn hand_over<T: Send + 'static>(
    reactor: &Reactor<T>,
    dup: Duplicate,
    limits: Limits,
    fin: Fin,
    token: T,
) -> LingerId {
    let reservation = reactor.reserve(dup, limits).expect("room in the reactor");
    match reservation.start(fin, token) {
        Ok(id) => id,
        Err(_) => panic!("the reactor's thread stopped"),
    }
}
