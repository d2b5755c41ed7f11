//! Who is told how a socket ended: the `notify` pids and the notifier's
//! log, and the message each gets.

use std::net::SocketAddr;

use rustler::{Encoder, LocalPid, OwnedEnv, ResourceArc};

use super::terms::report_term;
use super::{atoms, Handover};
use crate::reactor::{Outcome, Report};

/// Who to tell when a socket ends, with the connection's addresses for the
/// report: the caller's `notify` pids, of every end, and the notifier's log,
/// of the ends that are not clean.
///
/// Both go through the notifier process when it runs: it passes the result
/// on to the `notify` pids as an ordinary Erlang message. A message sent
/// from the reactor thread itself, taken by an interpreted `receive`
/// (erl_eval: the shell, IEx, Elixir's `Code.eval_string`), was seen to
/// corrupt the receiver's heap on OTP 25.2 with Elixir 1.14 (a crash in the
/// garbage collector soon after); the same message passed on by a process
/// was not (doc/development.md). Without a notifier, or should it have died,
/// the reactor sends to the pids itself.
pub(super) struct Told {
    pub(super) pids: Vec<LocalPid>,
    pub(super) notifier: Option<LocalPid>,
    pub(super) log: bool,
    /// The reference of the notifications, so only when there are pids to
    /// tell: it holds no reservation any more (taken out at the start).
    /// Dropped last on the reactor thread, a resource makes the VM wake a
    /// thread of its own to run the destructor: a log alone needs none.
    pub(super) ticket: Option<ResourceArc<Handover>>,
    pub(super) local: Option<SocketAddr>,
    pub(super) peer: Option<SocketAddr>,
}

impl Told {
    /// Tells whoever is to be told of `report`, through `env`.
    pub(super) fn tell(&self, env: &mut OwnedEnv, report: &Report) {
        let log = self.log && report.outcome != Outcome::Clean;
        if self.pids.is_empty() && !log {
            return;
        }
        if let Some(notifier) = &self.notifier {
            let relayed = env.send_and_clear(notifier, |env| {
                let result = report_term(env, report, self);
                let ticket = match &self.ticket {
                    Some(ticket) => ticket.encode(env),
                    None => atoms::undefined().encode(env),
                };
                (atoms::fin_close_ended(), ticket, result, &self.pids, log)
            });
            if relayed.is_ok() {
                return;
            }
        }
        for pid in &self.pids {
            // A dead receiver is not an error of ours.
            let _ = env.send_and_clear(pid, |env| {
                let result = report_term(env, report, self);
                (atoms::fin_close(), &self.ticket, result)
            });
        }
    }
}

/// Boxed, and absent when nobody is to be told: a lingering socket's entry
/// in the reactor then holds one null pointer for it.
pub(super) type Token = Option<Box<Told>>;
