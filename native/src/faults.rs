//! Faults a test injects into the reactor thread (feature `diagnostics`):
//! a panic at a chosen point, once, to show what the reactor does with a
//! bug of its own. A user's build has none of it: `trip` is then empty.

#[cfg(feature = "diagnostics")]
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the reactor thread panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fault {
    /// While it adopts the next socket handed over: that socket's step.
    Adopt = 1,
    /// Outside any socket's step, after the next commands it takes: the
    /// thread itself dies.
    Thread = 2,
}

#[cfg(feature = "diagnostics")]
static ARMED: AtomicU8 = AtomicU8::new(0);

/// Makes the reactor thread panic once, the next time it reaches `at`.
#[cfg(feature = "diagnostics")]
pub fn arm(at: Fault) {
    ARMED.store(at as u8, Ordering::SeqCst);
}

/// Panics if a fault is armed at `at` (and disarms it).
#[cfg(feature = "diagnostics")]
pub(crate) fn trip(at: Fault) {
    if ARMED
        .compare_exchange(at as u8, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        panic!("fault injected at {at:?}");
    }
}

#[cfg(not(feature = "diagnostics"))]
#[inline(always)]
pub(crate) fn trip(_at: Fault) {}
