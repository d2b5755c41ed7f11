//! Hand-overs from many threads at once never leave the reactor asleep with
//! work queued (a lost eventfd wake-up would stall every later close), at
//! whatever point of the reactor's awake period after its last command
//! (10 ms) they come: while it looks at its inbox unsignalled, as it goes
//! back to sleep, or after.

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::hand_over;
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::reactor::{Fin, Limits, Reactor};

#[test]
fn concurrent_pushes_never_lose_the_wakeup() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    for round in 0..100u32 {
        let (tx, rx) = channel();
        let reactor = Arc::new(
            Reactor::start(Default::default(), move |token: u32, _| {
                tx.send(token).unwrap()
            })
            .unwrap(),
        );
        // Three threads push commands (for an unknown id) as fast as they can...
        let stop = Arc::new(AtomicBool::new(false));
        let pushers: Vec<_> = (0..3)
            .map(|_| {
                let (reactor, stop) = (Arc::clone(&reactor), Arc::clone(&stop));
                thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        reactor.lingering(|_| {}).unwrap();
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(20));
        stop.store(true, Ordering::Relaxed);
        pushers.into_iter().for_each(|p| p.join().unwrap());
        // 0 to 14 ms after the last push, in 0.5 ms steps over the rounds.
        thread::sleep(Duration::from_micros(500 * u64::from(round % 29)));
        // ...and then one socket with a deadline of now must still end.
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let dup = Duplicate::of(server.as_fd()).unwrap();
        drop(server);
        let limits = Limits {
            timeout: Duration::ZERO,
            idle: None,
            max_drain: Some(0),
            max_lingering: None,
        };
        hand_over(&reactor, dup, limits, Fin::Now, round);
        if rx.recv_timeout(Duration::from_secs(5)) != Ok(round) {
            // Dropping a stalled reactor would wait for its thread forever.
            std::mem::forget(reactor);
            panic!("round {round}: the reactor never woke up");
        }
    }
}
