//! Terms the NIFs give back: atoms, maps, addresses, reports, reasons.

use std::time::Duration;

use rustler::{Atom, Decoder, Encoder, Env, NifMap, NifResult, Term};

use super::{atoms, Told};
use crate::error::Error;
use crate::info::SocketInfo;
use crate::reactor::{Limits, Lingering, Outcome, Report};

pub(super) fn atom<'a>(env: Env<'a>, name: &str) -> Term<'a> {
    Atom::from_str(env, name).expect("atom").encode(env)
}

/// A map with atom keys; the keys must be distinct.
pub(super) fn map<'a>(env: Env<'a>, pairs: &[(&str, Term<'a>)]) -> Term<'a> {
    let pairs: Vec<(Term<'a>, Term<'a>)> = pairs.iter().map(|&(k, v)| (atom(env, k), v)).collect();
    Term::map_from_pairs(env, &pairs).expect("distinct keys")
}

fn millis<'a>(env: Env<'a>, d: Duration) -> Term<'a> {
    (d.as_millis() as u64).encode(env)
}

pub(super) fn report_term<'a>(env: Env<'a>, report: &Report, told: &Told) -> Term<'a> {
    let map = map(
        env,
        &[
            ("outcome", atom(env, report.outcome.name())),
            ("drained", report.drained.encode(env)),
            ("lingered_ms", millis(env, report.lingered)),
            ("local", maybe_address(env, told.local)),
            ("peer", maybe_address(env, told.peer)),
        ],
    );
    match report.outcome {
        Outcome::Error(why) => map.map_put(atoms::reason(), atom(env, why)).expect("map"),
        _ => map,
    }
}

/// An [`Error`] as the NIFs give it: its reason's atom. A NIF returning
/// `Result<T, Reason>` gives `{ok, T}` or `{error, Reason}`; `?` turns an
/// [`Error`] into it. (An [`Error`] itself may hold an `io::Error`, which
/// rustler does not take across its catch of panics.)
pub(super) struct Reason(&'static str);

impl Encoder for Reason {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        atom(env, self.0)
    }
}

impl From<Error> for Reason {
    fn from(e: Error) -> Reason {
        Reason(e.reason())
    }
}

/// A NIF's `Err` of an [`Error`] gives `{error, Reason}`, for NIFs that
/// return a bare value when they succeed.
impl From<Error> for rustler::Error {
    fn from(e: Error) -> rustler::Error {
        rustler::Error::Term(Box::new(Reason::from(e)))
    }
}

/// The options of `close/2` that bound a linger, as the Erlang side's map
/// holds them once checked (other keys are not read).
#[derive(NifMap)]
pub(super) struct Options {
    linger_timeout: u64,
    idle_timeout: Bound,
    max_drain: Bound,
    max_lingering: Bound,
}

impl Options {
    pub(super) fn limits(&self) -> Limits {
        Limits {
            timeout: Duration::from_millis(self.linger_timeout),
            idle: self.idle_timeout.0.map(Duration::from_millis),
            max_drain: self.max_drain.0,
            max_lingering: self.max_lingering.0,
        }
    }
}

/// A count or a time in milliseconds, or `infinity` for no bound.
pub(super) struct Bound(Option<u64>);

impl<'a> Decoder<'a> for Bound {
    fn decode(term: Term<'a>) -> NifResult<Bound> {
        if term.decode::<Atom>().is_ok_and(|a| a == atoms::infinity()) {
            Ok(Bound(None))
        } else {
            term.decode().map(|n| Bound(Some(n)))
        }
    }
}

impl Encoder for Bound {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self.0 {
            Some(n) => n.encode(env),
            None => atoms::infinity().encode(env),
        }
    }
}

/// SIOCINQ and SIOCOUTQ fail with EINVAL on a TCP socket only when it is
/// listening: say so the way the rest of the API does.
pub(super) fn queue_error(e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EINVAL) {
        Error::NotConnected
    } else {
        e.into()
    }
}

pub(super) fn maybe_address<'a>(env: Env<'a>, addr: Option<std::net::SocketAddr>) -> Term<'a> {
    match addr {
        Some(addr) => address(env, addr),
        None => atoms::undefined().encode(env),
    }
}

fn maybe<'a>(env: Env<'a>, n: Option<usize>) -> Term<'a> {
    match n {
        Some(n) => n.encode(env),
        None => atoms::undefined().encode(env),
    }
}

/// The state and queues of [`SocketInfo`], as the socket table shows them.
pub(super) fn queue_pairs<'a>(env: Env<'a>, info: &SocketInfo) -> [(&'static str, Term<'a>); 3] {
    [
        ("state", atom(env, info.state.name())),
        ("recv_q", maybe(env, info.recv_q)),
        ("send_q", maybe(env, info.send_q)),
    ]
}

pub(super) fn address<'a>(env: Env<'a>, addr: std::net::SocketAddr) -> Term<'a> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            (a, b, c, d).encode(env)
        }
        std::net::IpAddr::V6(ip) => {
            let [a, b, c, d, e, f, g, h] = ip.segments();
            // rustler encodes tuples of up to seven elements only.
            let parts = [a, b, c, d, e, f, g, h].map(|s| s.encode(env));
            rustler::types::tuple::make_tuple(env, &parts)
        }
    };
    (ip, addr.port()).encode(env)
}

pub(super) fn lingering_term<'a>(env: Env<'a>, l: &Lingering) -> Term<'a> {
    let mut pairs = vec![
        ("id", l.id.encode(env)),
        ("lingered_ms", millis(env, l.lingered)),
        ("remaining_ms", millis(env, l.remaining)),
        ("drained", l.drained.encode(env)),
        ("port_pending", l.port_pending.encode(env)),
        ("peer_fin", l.peer_fin.encode(env)),
    ];
    let undefined = atoms::undefined().encode(env);
    match &l.now {
        Ok(info) => {
            pairs.extend(queue_pairs(env, info));
            pairs.push(("local", address(env, info.local)));
            pairs.push(("peer", maybe_address(env, info.peer)));
        }
        Err(why) => pairs.extend([
            ("state", atom(env, why)),
            ("recv_q", undefined),
            ("send_q", undefined),
            ("local", undefined),
            ("peer", undefined),
        ]),
    }
    map(env, &pairs)
}
