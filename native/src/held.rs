//! How long native calls hold the thread that runs them: an Erlang scheduler,
//! which must never be kept 1 ms or more. For tests and diagnosis; off
//! unless switched on, since it costs a few system calls per call.
//!
//! Wall-clock time alone cannot tell: on a busy machine the kernel may take
//! the CPU from a scheduler thread in the middle of any call. So each call's
//! time is split as the kernel's scheduler counts it: time on a CPU (the
//! call's own work), time runnable but waiting for a CPU (the machine's
//! doing), and the rest, time asleep: a blocking system call or a contended
//! lock, which is what must never happen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{thread_usage, ThreadUsage};

static ON: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);
static MAX_CPU_NS: AtomicU64 = AtomicU64::new(0);
static MAX_ASLEEP_NS: AtomicU64 = AtomicU64::new(0);
static SLEPT: AtomicU64 = AtomicU64::new(0);
static MAX_WAITING_NS: AtomicU64 = AtomicU64::new(0);
static PREEMPTED: AtomicU64 = AtomicU64::new(0);
static MAX_WALL_NS: AtomicU64 = AtomicU64::new(0);

const COUNTERS: [&AtomicU64; 7] = [
    &CALLS,
    &MAX_CPU_NS,
    &MAX_ASLEEP_NS,
    &SLEPT,
    &MAX_WAITING_NS,
    &PREEMPTED,
    &MAX_WALL_NS,
];

/// What the calls measured since [`measure`] was switched on did; each
/// `max_` is the largest of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// Calls measured.
    pub calls: u64,
    /// CPU time. Interrupts handled meanwhile count too (unless the kernel
    /// accounts IRQ time apart).
    pub max_cpu: Duration,
    /// Time asleep (neither running nor waiting for a CPU), of the calls
    /// that slept: those that switched out of their own accord.
    pub max_asleep: Duration,
    /// Calls during which the thread went to sleep at least once.
    pub slept: u64,
    /// Time runnable but waiting for a CPU: preemption by the kernel.
    pub max_waiting: Duration,
    /// Calls during which the thread was preempted at least once.
    pub preempted: u64,
    /// Wall-clock time: the sum of the three above.
    pub max_wall: Duration,
}

/// Switches measuring on (clearing what was measured) or off.
pub fn measure(on: bool) {
    for counter in COUNTERS {
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
        max_asleep: ns(&MAX_ASLEEP_NS),
        slept: SLEPT.load(Ordering::Relaxed),
        max_waiting: ns(&MAX_WAITING_NS),
        preempted: PREEMPTED.load(Ordering::Relaxed),
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
        // The wall clock spans both readings of the usage, so that waiting
        // counted while reading it is inside the call's time and cannot
        // hide time asleep.
        let wall = Instant::now();
        Some(Span {
            usage: thread_usage().ok()?,
            wall,
        })
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        let Ok(now) = thread_usage() else { return };
        let wall = self.wall.elapsed();
        let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        let cpu = now.on_cpu.saturating_sub(self.usage.on_cpu);
        let waiting = now.waiting.saturating_sub(self.usage.waiting);
        CALLS.fetch_add(1, Ordering::Relaxed);
        MAX_WALL_NS.fetch_max(ns(wall), Ordering::Relaxed);
        MAX_CPU_NS.fetch_max(ns(cpu), Ordering::Relaxed);
        MAX_WAITING_NS.fetch_max(ns(waiting), Ordering::Relaxed);
        // A thread that never switched out of its own accord never slept.
        // One that did slept for what the CPU and the run queue do not
        // explain; the readings' own time counts as asleep, and so may a
        // preemption at their edges: an overestimate, never less.
        if now.voluntary > self.usage.voluntary {
            SLEPT.fetch_add(1, Ordering::Relaxed);
            let asleep = wall.saturating_sub(cpu).saturating_sub(waiting);
            MAX_ASLEEP_NS.fetch_max(ns(asleep), Ordering::Relaxed);
        }
        if now.involuntary > self.usage.involuntary {
            PREEMPTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}
