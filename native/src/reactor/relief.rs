//! Giving descriptors back: lingering sockets end early
//! ([`Outcome::Reclaimed`](super::Outcome::Reclaimed)) when the process runs
//! short of descriptors, when a hand-over finds
//! [`Limits::max_lingering`](super::Limits::max_lingering) reached, or when a
//! caller asks; the cheapest first.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::entry::Entry;
use super::types::LingerId;
use crate::sys;

/// The share of the process's descriptors (RLIMIT_NOFILE) kept free: when
/// fewer are, lingering sockets give theirs back. 1/16, as nginx keeps for
/// new connections before it closes reusable ones: room for a burst of
/// accepts and files while the reclaimed sockets close.
const HEADROOM: u64 = 16;

/// How often the descriptors in use are counted while lingering sockets
/// hold a good share of the limit (see [`Relief::due`]): the process runs
/// short by accepting too, not only by handing sockets over. At most this
/// often: see [`RELIEF_COST_SHARE`].
const RELIEF_PERIOD: Duration = Duration::from_millis(100);

/// Where the kernel gives no cheap count (before Linux 6.2), counting
/// reads the process's descriptor table, about a microsecond per open
/// descriptor (milliseconds with tens of thousands): the next count waits
/// at least this many times as long as the last took, so that counting
/// takes at most 1% of the reactor's time. The transports reclaim at once
/// where accept fails for want of descriptors.
const RELIEF_COST_SHARE: u32 = 100;

/// The descriptors kept free of a process allowed `limit`: [`HEADROOM`]'s
/// share, and never fewer than a few.
fn headroom(limit: u64) -> u64 {
    (limit / HEADROOM).max(8)
}

/// What the thread knows of the process's descriptors.
pub(super) struct Relief {
    /// RLIMIT_NOFILE and when it was read: read again after a second, as
    /// the process may raise it.
    limit: Option<(u64, Instant)>,
    /// When descriptors in use are counted next.
    next: Instant,
}

impl Relief {
    pub(super) fn new() -> Relief {
        Relief {
            limit: None,
            next: Instant::now(),
        }
    }

    /// RLIMIT_NOFILE, read again after a second (the process may raise it).
    fn limit(&mut self, now: Instant) -> Option<u64> {
        match self.limit {
            Some((limit, read)) if now < read + Duration::from_secs(1) => Some(limit),
            _ => {
                let limit = sys::descriptor_limit().ok()?;
                self.limit = Some((limit, now));
                Some(limit)
            }
        }
    }

    /// When the descriptors in use are counted next, if `lingering`
    /// sockets hold enough of them for their giving some back to matter
    /// (half a headroom), so that the count is worth its cost (a read of
    /// the process's descriptor table).
    pub(super) fn due(&mut self, now: Instant, lingering: usize) -> Option<Instant> {
        let limit = self.limit(now)?;
        (lingering as u64 * 2 * HEADROOM >= limit).then_some(self.next)
    }

    /// Whether the process is short of descriptors for sure, a duplicate
    /// just made having got `number`, the lowest one free.
    pub(super) fn short_at(&mut self, now: Instant, number: RawFd) -> bool {
        self.limit(now)
            .is_some_and(|limit| u64::try_from(number).unwrap_or(0) + 1 + headroom(limit) > limit)
    }

    /// How many descriptors to give back: at least `at_least`, and more
    /// should fewer than a headroom of the process's limit be free: down
    /// to half a headroom more than that, as the callers may open many
    /// before the next look. Judged by how many descriptors are in use,
    /// which holes low in the table do not hide.
    pub(super) fn wanted(&mut self, now: Instant, at_least: u64) -> u64 {
        let Some(limit) = self.limit(now) else {
            return at_least;
        };
        let headroom = headroom(limit);
        let counting = Instant::now();
        // Not even one left to count them with: short.
        let used = sys::descriptors_in_use().unwrap_or(limit);
        self.next = now + RELIEF_PERIOD.max(counting.elapsed() * RELIEF_COST_SHARE);
        (used + headroom + headroom / 2)
            .saturating_sub(limit)
            .max(at_least)
    }
}

/// The `n` lingering sockets to end to give their descriptors back: first
/// those that have nothing left to lose (see [`Entry::delivered`]), looked
/// for among the oldest, the peers quiet longest first (a peer still
/// sending would get RST from the kernel at its next byte); then the
/// oldest.
pub(super) fn cheapest<T>(entries: &BTreeMap<LingerId, Entry<T>>, n: u64) -> Vec<LingerId> {
    let n = usize::try_from(n).unwrap_or(usize::MAX).min(entries.len());
    let mut cheap: Vec<(Instant, LingerId)> = entries
        .iter()
        .take(n.saturating_mul(8))
        .filter(|(_, entry)| entry.delivered())
        .map(|(&id, entry)| (entry.last_heard(), id))
        .collect();
    cheap.sort_unstable();
    let cheap: BTreeSet<LingerId> = cheap.into_iter().take(n).map(|(_, id)| id).collect();
    let oldest = entries.keys().copied();
    let rest: Vec<LingerId> = oldest
        .filter(|id| !cheap.contains(id))
        .take(n - cheap.len())
        .collect();
    cheap.into_iter().chain(rest).collect()
}
