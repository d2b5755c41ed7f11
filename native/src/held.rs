//! How long native calls hold the thread that runs them: an Erlang scheduler,
//! which must never be kept 1 ms or more. For tests and diagnosis; off
//! unless switched on, since it costs two system calls per call.
//!
//! Wall-clock time alone cannot tell: on a busy machine the kernel may take
//! the CPU from a scheduler thread in the middle of any call. So each call
//! is split by what the thread did: the CPU time it used, and whether it
//! slept (a voluntary context switch: a blocking system call or a contended
//! lock) or was preempted (an involuntary one, the machine's doing).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{thread_usage, ThreadUsage};

static ON: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);
static MAX_CPU_NS: AtomicU64 = AtomicU64::new(0);
static SLEPT: AtomicU64 = AtomicU64::new(0);
static MAX_SLEPT_WALL_NS: AtomicU64 = AtomicU64::new(0);
static PREEMPTED: AtomicU64 = AtomicU64::new(0);
static MAX_PREEMPTED_WALL_NS: AtomicU64 = AtomicU64::new(0);
static MAX_WALL_NS: AtomicU64 = AtomicU64::new(0);

/// What the calls measured since [`measure`] was switched on used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// Calls measured.
    pub calls: u64,
    /// The most CPU time one call used.
    pub max_cpu: Duration,
    /// Calls during which the thread slept.
    pub slept: u64,
    /// The longest of those, wall clock: the most a call blocked a thread.
    pub max_slept_wall: Duration,
    /// Calls during which the thread was preempted (and did not sleep).
    pub preempted: u64,
    /// The longest of those, wall clock.
    pub max_preempted_wall: Duration,
    /// The longest call of all, wall clock.
    pub max_wall: Duration,
}

/// Switches measuring on (clearing what was measured) or off.
pub fn measure(on: bool) {
    for counter in [
        &CALLS,
        &MAX_CPU_NS,
        &SLEPT,
        &MAX_SLEPT_WALL_NS,
        &PREEMPTED,
        &MAX_PREEMPTED_WALL_NS,
        &MAX_WALL_NS,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    ON.store(on, Ordering::Relaxed);
}

/// What was measured so far.
pub fn held() -> Held {
    let ns = |a: &AtomicU64| Duration::from_nanos(a.load(Ordering::Relaxed));
    Held {
        calls: CALLS.load(Ordering::Relaxed),
        max_cpu: ns(&MAX_CPU_NS),
        slept: SLEPT.load(Ordering::Relaxed),
        max_slept_wall: ns(&MAX_SLEPT_WALL_NS),
        preempted: PREEMPTED.load(Ordering::Relaxed),
        max_preempted_wall: ns(&MAX_PREEMPTED_WALL_NS),
        max_wall: ns(&MAX_WALL_NS),
    }
}

/// One call being measured: made at its start, recorded when dropped.
pub struct Span {
    wall: Instant,
    usage: ThreadUsage,
}

impl Span {
    /// Starts measuring the current call; `None` (costing one atomic load)
    /// while measuring is off.
    pub fn start() -> Option<Span> {
        if !ON.load(Ordering::Relaxed) {
            return None;
        }
        Some(Span {
            usage: thread_usage().ok()?,
            wall: Instant::now(),
        })
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let wall = self.wall.elapsed();
        let Ok(now) = thread_usage() else { return };
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        CALLS.fetch_add(1, Ordering::Relaxed);
        MAX_WALL_NS.fetch_max(ns(wall), Ordering::Relaxed);
        MAX_CPU_NS.fetch_max(
            ns(now.cpu.saturating_sub(self.usage.cpu)),
            Ordering::Relaxed,
        );
        if now.voluntary > self.usage.voluntary {
            SLEPT.fetch_add(1, Ordering::Relaxed);
            MAX_SLEPT_WALL_NS.fetch_max(ns(wall), Ordering::Relaxed);
        } else if now.involuntary > self.usage.involuntary {
            PREEMPTED.fetch_add(1, Ordering::Relaxed);
            MAX_PREEMPTED_WALL_NS.fetch_max(ns(wall), Ordering::Relaxed);
        }
    }
}
