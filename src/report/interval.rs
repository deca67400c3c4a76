//! The interval semantics, implemented once: what a user's availability was at each second of
//! a report's range, and whether anything vouches for it.
//!
//! - A user's availability at `t` is the value of their latest record at or before `t`.
//! - `t` counts as observed only if some succeeded run with observation time `r` has
//!   `r <= t < r + period`, and that value is neither `Untracked` nor `PresenceUnknown`.
//! - Everything else is `NotObserved`.
//!
//! Time is counted in whole seconds: the second starting at `t` (a whole UTC second) carries the
//! state at `t`. A record or run time with milliseconds therefore takes effect at the first whole
//! second at or after it, which is exactly when the definition above first applies to a whole
//! second. So every figure is an integer and the parts of a range add up to it exactly.

use chrono::{DateTime, Utc};

use super::ReportError;
use super::input::{LedgerEntry, NOT_OBSERVED, PRESENCE_UNKNOWN, RunOutcome, UNTRACKED};
use crate::model::Availability;

/// A UTC time in whole seconds since the Unix epoch.
pub type Second = i64;

/// The first whole second at or after `at`.
pub fn second_at_or_after(at: DateTime<Utc>) -> Second {
    let whole = at.timestamp();
    if at.timestamp_subsec_nanos() > 0 { whole + 1 } else { whole }
}

/// Whether a stored value, when vouched for, is an observation of the user.
///
/// `PresenceUnknown` is compared without case because Graph's documentation spells it
/// `presenceUnknown` too (docs/reports.md); every other value is kept as Graph spelled it.
pub fn is_observation(value: &Availability) -> bool {
    let value = value.as_str();
    !(value == UNTRACKED || value.eq_ignore_ascii_case(PRESENCE_UNKNOWN) || value == NOT_OBSERVED)
}

/// What a second of a user's time counts as.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Observed(Availability),
    NotObserved,
}

impl State {
    /// The key the renderings use: the Graph value, or `NotObserved`.
    pub fn key(&self) -> &str {
        match self {
            State::Observed(value) => value.as_str(),
            State::NotObserved => NOT_OBSERVED,
        }
    }
}

/// The seconds `[start, end)` in one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub start: Second,
    pub end: Second,
    pub state: State,
}

/// The time the ledger's succeeded runs vouch for: sorted, disjoint, merged spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    spans: Vec<(Second, Second)>,
    /// Shortest and longest period of the succeeded runs, in seconds: the sampling resolution.
    periods: Option<(Second, Second)>,
}

impl Coverage {
    /// The coverage of a ledger, in any order. A failed run vouches for nothing.
    pub fn from_ledger(entries: impl IntoIterator<Item = LedgerEntry>) -> Result<Self, ReportError> {
        let mut spans = Vec::new();
        let mut periods: Option<(Second, Second)> = None;
        for entry in entries {
            if entry.period <= chrono::TimeDelta::zero() {
                return Err(ReportError::BadPeriod { slot: entry.slot, period_ms: entry.period.num_milliseconds() });
            }
            if entry.outcome != RunOutcome::Succeeded {
                continue;
            }
            let span = (second_at_or_after(entry.observed_at), second_at_or_after(entry.vouches_until()));
            let length = entry.period.num_seconds();
            periods = Some(periods.map_or((length, length), |(lo, hi)| (lo.min(length), hi.max(length))));
            if span.1 > span.0 {
                spans.push(span);
            }
        }
        spans.sort_unstable();
        let mut merged: Vec<(Second, Second)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(Coverage { spans: merged, periods })
    }

    /// Shortest and longest period of the succeeded runs in seconds; `None` without any.
    pub fn periods(&self) -> Option<(Second, Second)> {
        self.periods
    }

    /// `[start, end)` cut into consecutive parts, each wholly vouched for (`true`) or not.
    fn split(&self, start: Second, end: Second, mut part: impl FnMut(Second, Second, bool)) {
        let mut at = start;
        let first = self.spans.partition_point(|&(_, span_end)| span_end <= start);
        for &(span_start, span_end) in &self.spans[first..] {
            if at >= end {
                break;
            }
            if span_start >= end {
                break;
            }
            if span_start > at {
                part(at, span_start, false);
                at = span_start;
            }
            let until = span_end.min(end);
            part(at, until, true);
            at = until;
        }
        if at < end {
            part(at, end, false);
        }
    }
}

/// Turns one user's records, pushed oldest first, into the segments that tile `[from, to)`.
///
/// Push-based so that a synchronous iterator and an asynchronous stream feed it alike, one
/// record at a time; it holds only the current record.
pub struct Cutter<'c> {
    coverage: &'c Coverage,
    to: Second,
    /// Everything before this second has been cut.
    cursor: Second,
    current: Option<Availability>,
    last_at: Option<DateTime<Utc>>,
    pushed: u64,
}

impl<'c> Cutter<'c> {
    pub fn new(coverage: &'c Coverage, from: Second, to: Second) -> Self {
        Cutter { coverage, to, cursor: from, current: None, last_at: None, pushed: 0 }
    }

    /// The next record's time and value; `segment` receives what it closes. Records must come
    /// in time order (equal times: the later one pushed wins).
    pub fn push(
        &mut self,
        at: DateTime<Utc>,
        value: Availability,
        segment: impl FnMut(Segment),
    ) -> Result<(), ReportError> {
        self.pushed += 1;
        if let Some(last) = self.last_at
            && at < last
        {
            return Err(ReportError::RecordOutOfOrder { position: self.pushed, at, previous: last });
        }
        self.last_at = Some(at);
        self.advance(second_at_or_after(at), segment);
        self.current = Some(value);
        Ok(())
    }

    /// Closes the range after the last record.
    pub fn finish(mut self, segment: impl FnMut(Segment)) {
        let to = self.to;
        self.advance(to, segment);
    }

    fn advance(&mut self, until: Second, mut segment: impl FnMut(Segment)) {
        let end = until.min(self.to);
        if end <= self.cursor {
            return;
        }
        let value = self.current.as_ref().filter(|value| is_observation(value));
        self.coverage.split(self.cursor, end, |start, end, vouched| {
            let state = match value {
                Some(value) if vouched => State::Observed(value.clone()),
                _ => State::NotObserved,
            };
            segment(Segment { start, end, state });
        });
        self.cursor = end;
    }
}

/// One user's segments over `[from, to)` from their records (oldest first).
pub fn segments(
    records: impl IntoIterator<Item = (DateTime<Utc>, Availability)>,
    coverage: &Coverage,
    from: Second,
    to: Second,
) -> Result<Vec<Segment>, ReportError> {
    let mut out = Vec::new();
    let mut cutter = Cutter::new(coverage, from, to);
    for (at, value) in records {
        cutter.push(at, value, |s| out.push(s))?;
    }
    cutter.finish(|s| out.push(s));
    Ok(out)
}

/// Sorted, disjoint spans, each belonging to a numbered group (a row's bucket, a day strip, an
/// hour cell): where a segment's seconds are counted.
#[derive(Clone, Debug, Default)]
pub struct Windows {
    spans: Vec<(Second, Second, usize)>,
}

impl Windows {
    /// From spans in time order that do not overlap.
    pub fn new(spans: Vec<(Second, Second, usize)>) -> Self {
        debug_assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "windows must be sorted and disjoint");
        debug_assert!(spans.iter().all(|s| s.0 < s.1), "windows must not be empty");
        Windows { spans }
    }

    /// Calls `count(group, seconds)` for every window `[start, end)` overlaps.
    pub fn overlaps(&self, start: Second, end: Second, mut count: impl FnMut(usize, u64)) {
        let first = self.spans.partition_point(|&(_, window_end, _)| window_end <= start);
        for &(window_start, window_end, group) in &self.spans[first..] {
            if window_start >= end {
                break;
            }
            let overlap = window_end.min(end) - window_start.max(start);
            if overlap > 0 {
                count(group, overlap.unsigned_abs());
            }
        }
    }
}

#[cfg(test)]
#[path = "interval_tests.rs"]
mod tests;
