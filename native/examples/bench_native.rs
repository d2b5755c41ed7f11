//! The native floors of `make bench`, without a VM:
//!
//! - `ioctl_ns`: one bare FIONREAD ioctl on a connected loopback socket, in
//!   a tight loop (the floor `fin_close:inq/1` is compared with);
//! - `drain_*`: how fast one thread empties a flooding peer's bytes: the
//!   reactor itself (`recv(MSG_TRUNC)`, no copy) against a thread that reads
//!   into a 64 KiB buffer. The draining thread and the flooding thread are
//!   pinned to different cores; the rate is given per second of wall time
//!   and per second of the draining thread's own CPU time (one core's worth).
//!
//! Prints `key value` lines for bench/bench.escript.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::reactor::{Fin, Limits, Reactor};
use fin_close_nif::sys;

const FLOOD: Duration = Duration::from_secs(2);

fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (server, client)
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    for _ in 0..rounds {
        println!("ioctl_ns {:.1}", ioctl_ns());
    }
    for _ in 0..rounds.min(3) {
        let (bytes, wall, cpu) = drain_with_reactor();
        println!(
            "drain_trunc {bytes} {:.3} {:.3}",
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        );
        let (bytes, wall, cpu) = drain_with_copy();
        println!(
            "drain_copy {bytes} {:.3} {:.3}",
            wall.as_secs_f64(),
            cpu.as_secs_f64()
        );
    }
}

fn ioctl_ns() -> f64 {
    let (server, mut client) = pair();
    client.write_all(b"hello").unwrap();
    while sys::inq(server.as_fd()).unwrap() < 5 {
        std::thread::yield_now();
    }
    let n = 1_000_000;
    let start = Instant::now();
    let mut sum = 0;
    for _ in 0..n {
        sum += sys::inq(server.as_fd()).unwrap();
    }
    assert_eq!(sum, 5 * n);
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Writes as fast as it can for [`FLOOD`] on core 0; returns the bytes.
fn flood(mut client: TcpStream, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        pin(0);
        let chunk = vec![7u8; 1 << 16];
        let mut sent = 0u64;
        let start = Instant::now();
        while start.elapsed() < FLOOD {
            match client.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(_) => break,
            }
        }
        stop.store(true, Ordering::Release);
        let _ = client.shutdown(Shutdown::Write);
        sent
    })
}

/// The reactor drains a socket handed over with no drain limit.
fn drain_with_reactor() -> (u64, Duration, Duration) {
    let (server, client) = pair();
    let (tx, rx) = std::sync::mpsc::channel();
    let reactor: Reactor<()> = Reactor::start(Default::default(), move |_, report| {
        tx.send(report).unwrap()
    })
    .unwrap();
    let tid = thread_id("fin_close_react").expect("reactor thread");
    pin_thread(tid, 1);
    let cpu_before = thread_cpu(tid);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let flooder = flood(client, stop);
    let dup = Duplicate::of(server.as_fd()).unwrap();
    drop(server);
    let limits = Limits {
        timeout: FLOOD * 10,
        idle: None,
        max_drain: None,
        max_lingering: None,
    };
    match reactor.reserve(dup, limits).map(|r| r.start(Fin::Now, ())) {
        Ok(Ok(_)) => {}
        _ => panic!("the reactor refused the socket"),
    };
    let sent = flooder.join().unwrap();
    let report = rx.recv_timeout(FLOOD * 10).unwrap();
    let wall = start.elapsed();
    let cpu = thread_cpu(tid) - cpu_before;
    assert_eq!(report.drained, sent);
    (report.drained, wall, cpu)
}

/// A thread reads into a buffer until the peer's FIN.
fn drain_with_copy() -> (u64, Duration, Duration) {
    let (mut server, client) = pair();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn(move || {
        pin(1);
        let tid = gettid();
        let cpu_before = thread_cpu(tid);
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        (total, thread_cpu(tid) - cpu_before)
    });
    let start = Instant::now();
    let sent = flood(client, stop).join().unwrap();
    let (total, cpu) = reader.join().unwrap();
    assert_eq!(total, sent);
    (total, start.elapsed(), cpu)
}

fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

fn pin(core: usize) {
    pin_thread(gettid(), core);
}

fn pin_thread(tid: i32, core: usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: `set` is a plain bitmask initialised by CPU_ZERO before use,
    // and sched_setaffinity only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core % cores, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The id of this process's thread named `name` (as /proc shows it).
fn thread_id(name: &str) -> Option<i32> {
    for _ in 0..100 {
        for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                return task.file_name().to_str()?.parse().ok();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// User plus system CPU time of one thread of this process.
fn thread_cpu(tid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the command, which is in parentheses: utime and stime
    // are the 12th and 13th of them, in clock ticks.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}
