//! Helpers shared by the integration tests: loopback connections and
//! waiting for a condition.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// How long any test waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A connected loopback pair: (server side, client side).
pub fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

/// Waits until `f` holds, polling; panics after [`WAIT`].
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}
