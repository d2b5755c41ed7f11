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

/// The measures, written once: the atomics, the copy [`held`] gives, and
/// their names for Erlang ([`Held::by_name`]). A `count` is a number of
/// calls; a `time` is the largest of one call, kept in nanoseconds and
/// named for Erlang in microseconds (`_us`).
macro_rules! measures {
    (@type count) => { u64 };
    (@type time) => { Duration };
    (@read count, $atomic:expr) => { $atomic.load(Ordering::Relaxed) };
    (@read time, $atomic:expr) => { Duration::from_nanos($atomic.load(Ordering::Relaxed)) };
    (@key count, $name:ident) => { stringify!($name) };
    (@key time, $name:ident) => { concat!(stringify!($name), "_us") };
    (@value count, $v:expr) => { $v };
    (@value time, $v:expr) => { $v.as_micros().min(u128::from(u64::MAX)) as u64 };
    ($($(#[doc = $doc:literal])* $kind:ident $name:ident),* $(,)?) => {
        struct Atomics {
            $($name: AtomicU64,)*
        }

        static MEASURED: Atomics = Atomics {
            $($name: AtomicU64::new(0),)*
        };

        /// What the calls measured since [`measure`] was switched on did;
        /// each `max_` is the largest of one call.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct Held {
            $($(#[doc = $doc])* pub $name: measures!(@type $kind),)*
        }

        /// Switches measuring on (clearing what was measured) or off.
        pub fn measure(on: bool) {
            $(MEASURED.$name.store(0, Ordering::Relaxed);)*
            ON.store(on, Ordering::Relaxed);
        }

        /// What was measured so far.
        pub fn held() -> Held {
            Held {
                $($name: measures!(@read $kind, MEASURED.$name),)*
            }
        }

        impl Held {
            /// Every measure by the name Erlang knows it by, times in
            /// microseconds.
            pub fn by_name(&self) -> Vec<(&'static str, u64)> {
                vec![$((measures!(@key $kind, $name), measures!(@value $kind, self.$name)),)*]
            }
        }
    };
}

measures! {
    /// Calls measured.
    count calls,
    /// CPU time. Interrupts handled meanwhile count too (unless the kernel
    /// accounts IRQ time apart).
    time max_cpu,
    /// Time asleep (neither running nor waiting for a CPU), of the calls
    /// that slept: those that switched out of their own accord.
    time max_asleep,
    /// Calls during which the thread went to sleep at least once.
    count slept,
    /// Time runnable but waiting for a CPU: preemption by the kernel.
    time max_waiting,
    /// Calls during which the thread was preempted at least once.
    count preempted,
    /// Wall-clock time: the sum of the three above.
    time max_wall,
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
        let m = &MEASURED;
        m.calls.fetch_add(1, Ordering::Relaxed);
        m.max_wall.fetch_max(ns(wall), Ordering::Relaxed);
        m.max_cpu.fetch_max(ns(cpu), Ordering::Relaxed);
        m.max_waiting.fetch_max(ns(waiting), Ordering::Relaxed);
        // A thread that never switched out of its own accord never slept.
        // One that did slept for what the CPU and the run queue do not
        // explain; the readings' own time counts as asleep, and so may a
        // preemption at their edges: an overestimate, never less.
        if now.voluntary > self.usage.voluntary {
            m.slept.fetch_add(1, Ordering::Relaxed);
            let asleep = wall.saturating_sub(cpu).saturating_sub(waiting);
            m.max_asleep.fetch_max(ns(asleep), Ordering::Relaxed);
        }
        if now.involuntary > self.usage.involuntary {
            m.preempted.fetch_add(1, Ordering::Relaxed);
        }
    }
}
