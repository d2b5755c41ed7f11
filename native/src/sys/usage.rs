//! A thread's own CPU time, wait for a CPU and context switches: how long
//! native calls hold their scheduler (feature `diagnostics`, see
//! [`crate::held`]).

use std::io;
use std::time::Duration;

use super::cvt;

/// What the calling thread has done so far, as the scheduler counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadUsage {
    /// Time on a CPU.
    pub on_cpu: Duration,
    /// Time runnable but waiting for a CPU (the kernel ran something else).
    pub waiting: Duration,
    /// Times the thread slept: a blocking call, a contended lock.
    pub voluntary: u64,
    /// Times the thread was preempted.
    pub involuntary: u64,
}

/// The calling thread's [`ThreadUsage`]: CPU time from its CPU clock
/// (exact; the CPU time in `/proc/thread-self/schedstat` lags by up to a
/// tick while the thread runs, and getrusage's is estimated from ticks),
/// time spent waiting for a CPU from that file's second field (complete
/// while the thread runs: it grows only when the thread is switched in),
/// switches from getrusage. Whatever else a call took, it spent asleep.
pub fn thread_usage() -> io::Result<ThreadUsage> {
    use std::io::Read;
    let mut cpu = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: the kernel writes one timespec into the live local.
    cvt(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut cpu) })?;
    let on_cpu = Duration::new(cpu.tv_sec as u64, cpu.tv_nsec as u32);
    let mut buf = [0u8; 96];
    let n = std::fs::File::open("/proc/thread-self/schedstat")?.read(&mut buf)?;
    let waiting = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|text| text.split_ascii_whitespace().nth(1))
        .and_then(|field| field.parse().ok())
        .map(Duration::from_nanos)
        .ok_or(io::ErrorKind::InvalidData)?;
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one rusage into the live local.
    cvt(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) })?;
    Ok(ThreadUsage {
        on_cpu,
        waiting,
        voluntary: usage.ru_nvcsw as u64,
        involuntary: usage.ru_nivcsw as u64,
    })
}
