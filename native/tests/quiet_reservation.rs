//! A reserved socket does not wake the reactor's thread: its state changes
//! (our FIN, the peer's acknowledgment and FIN) would otherwise wake it
//! inside the system call that caused them, on the caller's thread, which
//! on a VM is a scheduler. Alone in its test binary, so that the process has
//! one reactor thread, found by its name.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::thread;
use std::time::Duration;

use common::{eventually, pair, reactor, WAIT};
use fin_close_nif::duplicate::Duplicate;
use fin_close_nif::reactor::{Fin, Limits, Outcome};
use fin_close_nif::sys;

/// The reactor thread's status file: how often it has gone to sleep, and
/// whether it sleeps now.
fn reactor_status() -> String {
    // The thread names itself once it runs.
    let mut found = None;
    eventually("the reactor's thread", || {
        found = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let path = task.ok()?.path();
                let name = std::fs::read_to_string(path.join("comm")).ok()?;
                // The kernel keeps 15 bytes of a thread's name.
                (name.trim_end() == "fin_close_react").then_some(path)
            })
            .next();
        found.is_some()
    });
    std::fs::read_to_string(found.unwrap().join("status")).unwrap()
}

fn asleep() -> bool {
    reactor_status().contains("State:\tS")
}

fn sleeps_of_reactor() -> u64 {
    reactor_status()
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn state_changes_of_a_reserved_socket_do_not_wake_the_reactor() {
    let (reactor, reports) = reactor();
    let limits = Limits {
        timeout: Duration::from_secs(10),
        idle: None,
        max_drain: None,
        max_lingering: None,
    };
    let (server, client) = pair();
    let reservation = reactor
        .reserve(Duplicate::of(server.as_fd()).unwrap(), limits)
        .unwrap();
    // Asleep in its wait, with nothing to look at.
    eventually("the reactor to sleep", asleep);
    let before = sleeps_of_reactor();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(sleeps_of_reactor(), before, "woke with nothing to do");

    // Our FIN, as the port sends it before the VM's close; the peer's
    // acknowledgment, data and FIN.
    server.shutdown(Shutdown::Write).unwrap();
    (&client).write_all(b"late request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    eventually("the peer's FIN", || sys::inq(server.as_fd()).unwrap() == 12);
    thread::sleep(Duration::from_millis(20));
    assert_eq!(sleeps_of_reactor(), before, "woken by a reserved socket");

    // Once handed over, the socket is the thread's: what is queued is
    // drained, and the socket ends.
    drop(server);
    reservation
        .start(Fin::Sent, 1)
        .ok()
        .expect("the reactor runs");
    let (token, report) = reports.recv_timeout(WAIT).unwrap();
    assert_eq!((token, report.outcome), (1, Outcome::Clean));
    assert_eq!(report.drained, 12);
    eventually("the reactor to have woken", || sleeps_of_reactor() > before);
}
