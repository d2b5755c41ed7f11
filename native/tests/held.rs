//! Measuring how long calls hold their thread tells a call that slept from
//! one that ran, and costs nothing while off. One test: the figures are
//! process-wide.

use std::thread;
use std::time::{Duration, Instant};

use fin_close_nif::held::{self, Span};

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn sleeping_and_running_calls_are_told_apart() {
    assert!(Span::start().is_none(), "measuring is off by default");

    held::measure(true);
    {
        let _call = Span::start();
        spin(Duration::from_millis(5));
    }
    let h = held::held();
    assert_eq!((h.calls, h.slept), (1, 0));
    // The 5 ms are on a CPU, or waiting for one when the kernel preempts the
    // thread; a virtual machine's host may also take the CPU unseen (steal
    // time, counted as neither), so only a part is certain.
    assert!(h.max_wall >= Duration::from_millis(5), "{h:?}");
    assert!(h.max_cpu >= Duration::from_millis(1), "{h:?}");
    assert!(h.max_asleep < Duration::from_millis(1), "{h:?}");

    held::measure(true);
    {
        let _call = Span::start();
        thread::sleep(Duration::from_millis(3));
    }
    let h = held::held();
    assert_eq!((h.calls, h.slept), (1, 1));
    assert!(h.max_asleep >= Duration::from_millis(2), "{h:?}");
    assert!(h.max_cpu < Duration::from_millis(1), "{h:?}");

    // The names the fault suite and the bench read, times in microseconds.
    let names: Vec<&str> = h.by_name().iter().map(|&(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "calls",
            "max_cpu_us",
            "max_asleep_us",
            "slept",
            "max_waiting_us",
            "preempted",
            "max_wall_us"
        ]
    );
    let asleep_us = h.max_asleep.as_micros() as u64;
    assert!(h.by_name().contains(&("max_asleep_us", asleep_us)), "{h:?}");

    held::measure(false);
    assert_eq!(held::held(), held::Held::default());
    {
        let _call = Span::start();
    }
    assert_eq!(held::held().calls, 0);
}
