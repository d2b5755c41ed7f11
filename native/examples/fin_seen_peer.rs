//! The far end of `make bench` row 12, in an OS process of its own, as a
//! client of the server under test would be.
//!
//! `fin_seen_peer PORT COUNT` opens COUNT connections to 127.0.0.1:PORT,
//! one after the other, and blocks in `read` on each until the server's end
//! of stream. For each it prints `eof T`, T the time it was seen on
//! CLOCK_MONOTONIC in nanoseconds (the clock of the VM's
//! `erlang:system_info(os_monotonic_time_source)`), or `error E`; then it
//! closes the connection and opens the next.

use std::io::{Read, Write};
use std::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "fin_seen_peer PORT COUNT";
    let [_, port, count] = args.as_slice() else {
        panic!("{usage}");
    };
    let port: u16 = port.parse().expect(usage);
    let count: usize = count.parse().expect(usage);
    let mut buf = [0u8; 4096];
    for _ in 0..count {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let line = loop {
            match s.read(&mut buf) {
                Ok(0) => break format!("eof {}", monotonic_ns()),
                Ok(_) => {}
                Err(e) => break format!("error {e}"),
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into the live local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
