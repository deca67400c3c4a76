//! What a report reads: the run ledger and each user's records, as the stores will provide them.
//!
//! Both arrive as streams: the ledger is one entry per run (a few hundred a day, no user ids),
//! the records one user at a time, oldest first, so a report's memory does not grow with the
//! number of records it reads.

use chrono::{DateTime, TimeDelta, Utc};

use crate::model::{Availability, Slot};

/// The availability of the history record written when tracking of a user ends: the user left
/// the configured groups, or opted out.
///
/// Ours, not a Graph value (Graph's documented values: docs/reports.md, Formats): it says "from this
/// time on we stopped knowing", so a report counts the time after it as `NotObserved` instead of
/// stretching the user's last availability over it. Graph never returns it, so it cannot collide
/// with an observation.
pub const UNTRACKED: &str = "Untracked";

/// Graph's value for a user whose presence it does not know. Not `Offline`: the report counts
/// it as `NotObserved`.
pub const PRESENCE_UNKNOWN: &str = "PresenceUnknown";

/// The key under which a report counts time nothing vouches for.
pub const NOT_OBSERVED: &str = "NotObserved";

/// The `Untracked` availability, ready to store.
pub fn untracked() -> Availability {
    Availability::from(UNTRACKED)
}

/// Whether a run did its job. Only a succeeded run vouches for the time after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed,
}

/// Where a run's membership came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Read from Graph during the run.
    Read,
    /// The membership read during an earlier run, reused (large tenants; see README).
    Reused,
}

/// A run's figures: counts only, never a user id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunFigures {
    pub users_in_scope: u64,
    pub observed: u64,
    pub unobserved: u64,
    pub unreadable_groups: u64,
    pub membership: Membership,
}

/// One run as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The schedule slot the run belongs to.
    pub slot: Slot,
    /// The run's observation time: the time its records carry.
    pub observed_at: DateTime<Utc>,
    /// How long after `observed_at` this run vouches for its users' availability: the timer's
    /// `Next - Last`, else the `POLL_SCHEDULE` period, else 5 minutes. Must be positive.
    pub period: TimeDelta,
    pub outcome: RunOutcome,
    /// `None` when the run failed before it counted anything (e.g. a configuration error).
    pub figures: Option<RunFigures>,
}

impl LedgerEntry {
    /// The end of the time this run vouches for.
    pub fn vouches_until(&self) -> DateTime<Utc> {
        self.observed_at + self.period
    }
}

/// For tests: a run every 5 minutes over `[from, to)`, each with the outcome `outcome` gives it
/// (`None`: the slot was skipped).
#[cfg(test)]
pub(crate) fn every_five_minutes(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    outcome: impl Fn(DateTime<Utc>) -> Option<RunOutcome>,
) -> Vec<LedgerEntry> {
    let mut entries = Vec::new();
    let mut r = from;
    while r < to {
        if let Some(outcome) = outcome(r) {
            entries.push(LedgerEntry {
                slot: Slot::new(r),
                observed_at: r,
                period: TimeDelta::minutes(5),
                outcome,
                figures: None,
            });
        }
        r += TimeDelta::minutes(5);
    }
    entries
}
