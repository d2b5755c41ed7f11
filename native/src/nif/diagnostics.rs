//! Measuring how long NIF calls hold their scheduler (feature
//! `diagnostics`; see [`crate::held`]), and holding the reactor thread busy:
//! for make test and make bench. A user's build has none of it.

use std::time::Duration;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, OwnedEnv, Term};

use super::terms::map;
use super::{atoms, reactor};
use crate::faults::{self, Fault};
use crate::held;

/// Opens a measured span for the rest of the enclosing NIF call.
macro_rules! measured {
    () => {
        let _held = $crate::held::Span::start();
    };
}
pub(super) use measured;

/// Switches measuring how long native calls hold their scheduler on or off
/// (see [`crate::held`]).
#[rustler::nif]
fn measure_held(on: bool) -> Atom {
    held::measure(on);
    atoms::ok()
}

/// What was measured since measuring was switched on, as a map with the
/// measures' names as keys, times in microseconds.
#[rustler::nif]
fn held(env: Env<'_>) -> Term<'_> {
    let pairs: Vec<(&str, Term<'_>)> = held::held()
        .by_name()
        .into_iter()
        .map(|(name, value)| (name, value.encode(env)))
        .collect();
    map(env, &pairs)
}

/// Keeps the reactor thread busy for `ms` milliseconds, as a burst of work
/// would: it runs no command, adopts no socket and reads none meanwhile.
/// `pid` gets `{fin_close, held}` once the thread is held.
#[rustler::nif]
fn hold_reactor(pid: LocalPid, ms: u64) -> NifResult<Atom> {
    let mut env = OwnedEnv::new();
    reactor()?.lingering(move |_| {
        let _ = env.send_and_clear(&pid, |_| (atoms::fin_close(), atoms::held()));
        std::thread::sleep(Duration::from_millis(ms));
    })?;
    Ok(atoms::ok())
}

/// Where a test makes the reactor thread panic, once: `adopt` (in the next
/// socket's adoption) or `thread` (outside any socket, so the thread dies).
#[derive(rustler::NifUnitEnum)]
enum FaultAt {
    Adopt,
    Thread,
}

/// Arms a panic in the reactor thread (see [`crate::faults`]).
#[rustler::nif]
fn inject_fault(at: FaultAt) -> Atom {
    faults::arm(match at {
        FaultAt::Adopt => Fault::Adopt,
        FaultAt::Thread => Fault::Thread,
    });
    atoms::ok()
}
