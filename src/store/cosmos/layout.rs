//! The state container's layout and its decisions, as pure functions (no SDK, no I/O): what the
//! head says, when a snapshot is due, which shards a run writes, which user lives in which shard,
//! and the head after a run, a finished snapshot or an erasure. The store (`super`) reads and
//! writes the documents these functions describe; `docs/storage.md` explains the layout.

use std::ops::Range;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{ShardDoc, ShardWriter, decode_departures, encode_departures};
use crate::model::SubjectId;
use crate::store::{LastKnown, StoreError, format_timestamp, parse_timestamp};

pub(super) const HEAD_ID: &str = "head";
/// Runs a snapshot rewrite is spread over: at 10% changes a run's records cost ~0.7 RU per
/// tracked user and a whole snapshot ~0.33, so an eighth of it adds about 5% to a run (4.3%
/// measured; issue 8: every run within 1.1 x its record writes + 50 RU).
pub const SNAPSHOT_RUNS: u32 = 8;
/// A snapshot this old is rewritten even when few records came since, so that a cold start
/// reads few records.
const SNAPSHOT_MAX_AGE: TimeDelta = TimeDelta::hours(12);

/// Sizes and thresholds of the state layout. The defaults are what production uses; tests may
/// shrink them to exercise many shards with few users.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Record writes in flight at once.
    pub write_concurrency: usize,
    /// Mean users per snapshot shard. 1,700 users x 26 bytes, base64-encoded, stay below 64 KiB
    /// even for an unlucky shard: Cosmos charges writes by size in power-of-two KiB steps.
    pub users_per_shard: usize,
    /// A snapshot is rewritten once this many records (at least) have been written since the
    /// last one, and also once as many as there are tracked users.
    pub min_records_between_snapshots: u64,
    /// Departures listed in the head before a snapshot absorbs them (keeps the head under 1 KiB).
    pub max_departures_in_head: usize,
    /// Records this much older than the snapshot are read again on a cold start, so that a
    /// record written by an overlapping run on another instance is not missed.
    pub snapshot_margin: TimeDelta,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            write_concurrency: 32,
            users_per_shard: 1_700,
            min_records_between_snapshots: 500,
            max_departures_in_head: 24,
            snapshot_margin: TimeDelta::minutes(15),
        }
    }
}

/// The state container's entry point. Small on purpose: it is read on every run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Head {
    pub id: String,
    pub snap: SnapshotRef,
    /// Records written since the snapshot.
    pub since: u64,
    /// Departures since the snapshot: base64 of (user id, unix ms) pairs.
    pub gone: String,
    /// A snapshot being written into the other bank, a few shards per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct NextSnapshot {
    pub bank: u8,
    pub shards: u32,
    /// Shards `0..written` of `bank` hold this snapshot; the rest still hold an older one.
    pub written: u32,
    /// Observation time of the run that wrote the first shard: later shards are newer, and the
    /// records since it bring every shard up to date on a cold start.
    pub through: String,
    /// Records written since `through`, which become the head's `since` when it completes.
    pub since: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct SnapshotRef {
    /// Which bank holds the current snapshot: 0 or 1; the other is rewritten next.
    pub bank: u8,
    pub shards: u32,
    /// Shards of the other bank, deleted beyond the new count when it is rewritten.
    pub other_shards: u32,
    /// Observation time of the run the snapshot was taken at.
    pub through: String,
}

/// What one run recorded, as the head counts it.
pub(super) struct Recorded<'a> {
    /// Records created (not those a repeated slot found already there).
    pub written: u64,
    /// Users with a record this run, created or found: their listed departure no longer holds.
    pub recorded: &'a [SubjectId],
    pub departed: &'a [SubjectId],
    pub observed_at: DateTime<Utc>,
    /// Users in the state after the run.
    pub tracked: usize,
}

/// Shards of a bank left from a larger earlier snapshot, to delete: they would keep stale
/// entries (and erased users' data).
#[derive(Debug, PartialEq)]
pub(super) struct Surplus {
    pub bank: u8,
    pub shards: Range<u32>,
}

pub(super) fn shard_id(bank: u8, index: u32) -> String {
    format!("snapshot-{bank}-{index}")
}

/// Users are spread over shards by their id, so one user's entry is found in one known shard.
pub(super) fn shard_of(user: &SubjectId, shards: usize) -> usize {
    let bytes = user.as_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_le_bytes(low) % shards as u64) as usize
}

/// Shards `range` of a snapshot of `state` in `shards` shards, for `bank`.
pub(super) fn encode_shards(
    state: &LastKnown,
    shards: usize,
    bank: u8,
    range: Range<usize>,
) -> Result<Vec<ShardDoc>, StoreError> {
    let mut writers: Vec<ShardWriter> = (0..range.len()).map(|_| ShardWriter::default()).collect();
    for (user, known) in state.iter() {
        let Some(shard) = shard_of(&user, shards).checked_sub(range.start).filter(|s| *s < range.len()) else {
            continue;
        };
        writers[shard].push(user, &known)?;
    }
    Ok(writers
        .into_iter()
        .enumerate()
        .map(|(i, writer)| writer.finish(shard_id(bank, u32::try_from(range.start + i).unwrap_or(u32::MAX))))
        .collect())
}

impl Head {
    fn empty() -> Self {
        Self { id: HEAD_ID.into(), ..Self::default() }
    }

    /// The ids of the current snapshot's shards.
    pub fn snapshot_ids(&self) -> Vec<String> {
        (0..self.snap.shards).map(|i| shard_id(self.snap.bank, i)).collect()
    }

    /// The shards that may hold `user`: in the current snapshot, in the older one of the other
    /// bank and, if one is in progress, in the new one's first shards, hashed by its own count.
    pub fn shards_holding(&self, user: &SubjectId) -> Vec<String> {
        let snap = &self.snap;
        let other_bank = 1 - snap.bank.min(1);
        let in_progress = self.next.as_ref().map(|n| (n.bank, n.shards));
        [(snap.bank, snap.shards), (other_bank, snap.other_shards)]
            .into_iter()
            .chain(in_progress)
            .filter(|(_, shards)| *shards > 0)
            .map(|(bank, shards)| shard_id(bank, u32::try_from(shard_of(user, shards as usize)).unwrap_or(0)))
            .collect()
    }

    /// This head without `user` among its departures.
    pub fn without(&self, user: SubjectId) -> Result<Self, StoreError> {
        let mut departures = decode_departures(&self.gone)?;
        departures.retain(|(u, _)| *u != user);
        Ok(Self { gone: encode_departures(&departures), ..self.clone() })
    }
}

impl Tuning {
    /// Since when history records are read on a cold start to bring the snapshot up to date:
    /// `None` (all of them) when there is no snapshot.
    pub(super) fn records_since(&self, head: &Head) -> Result<Option<DateTime<Utc>>, StoreError> {
        if head.snap.through.is_empty() {
            return Ok(None);
        }
        Ok(Some(parse_timestamp(&head.snap.through)? - self.snapshot_margin))
    }

    /// The head after a run recorded `run` over `previous` (none before the first run): its
    /// departures and record count, and the snapshot it starts, restarts at a new size or
    /// counts records for. Returns the head and how many departures it lists.
    pub(super) fn head_after(&self, previous: Option<&Head>, run: &Recorded) -> Result<(Head, usize), StoreError> {
        let previous = previous.cloned().unwrap_or_else(Head::empty);
        let mut departures = decode_departures(&previous.gone)?;
        departures.retain(|(user, _)| !run.recorded.contains(user) && !run.departed.contains(user));
        departures.extend(run.departed.iter().map(|u| (*u, run.observed_at)));
        let mut head = Head {
            id: HEAD_ID.into(),
            snap: previous.snap.clone(),
            since: previous.since + run.written,
            gone: encode_departures(&departures),
            next: previous.next.clone(),
        };
        let wanted = u32::try_from(run.tracked.div_ceil(self.users_per_shard.max(1)).max(1)).unwrap_or(u32::MAX);
        let start = NextSnapshot {
            bank: 1 - previous.snap.bank.min(1),
            shards: wanted,
            written: 0,
            through: format_timestamp(run.observed_at),
            since: 0,
        };
        let due = head.next.is_none() && self.snapshot_due(&head, run.tracked, departures.len(), run.observed_at);
        match &mut head.next {
            // Sized for a much smaller state (a group added meanwhile), its shards would grow
            // towards Cosmos DB's 2 MB document limit: it starts again at the right size.
            Some(next) if wanted > next.shards.saturating_add(next.shards / 4) => *next = start,
            Some(next) => next.since += run.written,
            None if due => head.next = Some(start),
            None => {}
        }
        Ok((head, departures.len()))
    }

    fn snapshot_due(&self, head: &Head, tracked: usize, departures: usize, observed_at: DateTime<Utc>) -> bool {
        let threshold = self.min_records_between_snapshots.max(tracked as u64);
        let stale =
            parse_timestamp(&head.snap.through).map(|through| observed_at - through > SNAPSHOT_MAX_AGE).unwrap_or(true);
        head.snap.shards == 0
            || head.since >= threshold
            || departures > self.max_departures_in_head
            || (stale && (head.since > 0 || departures > 0))
    }

    /// The shards of the snapshot in progress that this run writes: none when the run loaded the
    /// state from storage (it already paid for the shards and records it read) unless departures
    /// crowd the head, an eighth of them otherwise, and all that is left when departures crowd it.
    pub(super) fn snapshot_share(&self, head: &Head, departures: usize, loaded: bool) -> Option<Range<u32>> {
        let next = head.next.as_ref()?;
        let crowded = departures > self.max_departures_in_head;
        if loaded && !crowded {
            return None;
        }
        let per_run = next.shards.div_ceil(SNAPSHOT_RUNS).max(1);
        let end = if crowded { next.shards } else { next.written.saturating_add(per_run).min(next.shards) };
        Some(next.written..end)
    }

    /// Notes in `head` that the snapshot in progress has its shards `..end` written. When that
    /// was the last, it becomes the current snapshot: the departures it holds leave the head, and
    /// the returned shards of its bank, left from a larger earlier snapshot, are to be deleted.
    pub(super) fn snapshot_written(&self, head: &mut Head, end: u32) -> Result<Option<Surplus>, StoreError> {
        let Some(next) = head.next.as_mut() else { return Ok(None) };
        next.written = end;
        if end < next.shards {
            return Ok(None);
        }
        let next = head.next.take().unwrap_or_default();
        let through = parse_timestamp(&next.through)?;
        // Departures before the first shard are in no shard; later ones may be in early shards.
        let mut departures = decode_departures(&head.gone)?;
        departures.retain(|(_, at)| *at >= through - self.snapshot_margin);
        let surplus = Surplus { bank: next.bank, shards: next.shards..head.snap.other_shards.max(next.shards) };
        head.snap =
            SnapshotRef { bank: next.bank, shards: next.shards, other_shards: head.snap.shards, through: next.through };
        head.since = next.since;
        head.gone = encode_departures(&departures);
        Ok(Some(surplus))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Known;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use chrono::TimeZone;

    use super::super::codec::{SHARD_ENTRY, decode_shard};
    use crate::store::state::Interner;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 31, 12, 0, 0).unwrap() + TimeDelta::minutes(minute)
    }

    fn user(i: u128) -> SubjectId {
        SubjectId::from_u128(i)
    }

    fn run<'a>(written: u64, recorded: &'a [SubjectId], departed: &'a [SubjectId], tracked: usize) -> Recorded<'a> {
        Recorded { written, recorded, departed, observed_at: at(0), tracked }
    }

    fn tuning() -> Tuning {
        Tuning { users_per_shard: 100, ..Tuning::default() }
    }

    /// A head with a current snapshot of `shards` shards in bank 0 taken at minute 0.
    fn head_with_snapshot(shards: u32, since: u64) -> Head {
        Head {
            snap: SnapshotRef { bank: 0, shards, other_shards: 0, through: format_timestamp(at(0)) },
            since,
            ..Head::empty()
        }
    }

    #[test]
    fn shards_round_trip_and_spread_users() {
        let mut state = LastKnown::default();
        let at = at(0);
        for i in 0..1_000u128 {
            let user = SubjectId::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            let value = ["Available", "Away", "Busy"][(i % 3) as usize];
            state.set(user, Known { availability: value.into(), at: at + TimeDelta::milliseconds(i as i64) });
        }
        let docs = encode_shards(&state, 4, 1, 0..4).unwrap();
        assert_eq!(docs.len(), 4);
        assert!(docs.iter().all(|d| d.id.starts_with("snapshot-1-")));
        let mut back = LastKnown::default();
        let mut interner = Interner::default();
        for doc in &docs {
            let entries = BASE64.decode(&doc.data).unwrap().len() / SHARD_ENTRY;
            assert!((150..350).contains(&entries), "unbalanced shard: {entries}");
            decode_shard(doc, &mut interner, &mut back).unwrap();
        }
        assert_eq!(back, state);
        // A snapshot written a few shards per run is the same shards.
        let (first, rest) = (encode_shards(&state, 4, 1, 0..1).unwrap(), encode_shards(&state, 4, 1, 1..4).unwrap());
        let ids: Vec<&str> = first.iter().chain(&rest).map(|d| d.id.as_str()).collect();
        assert_eq!(ids, docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>());
        for (part, whole) in first.iter().chain(&rest).zip(&docs) {
            assert_eq!((&part.values, &part.data), (&whole.values, &whole.data));
        }
    }

    #[test]
    fn a_full_shard_stays_below_64_kib() {
        let users = Tuning::default().users_per_shard * 11 / 10;
        let mut state = LastKnown::default();
        for i in 0..users {
            state.set(
                SubjectId::from_u128(i as u128),
                Known { availability: "Available".into(), at: DateTime::UNIX_EPOCH },
            );
        }
        let doc = encode_shards(&state, 1, 0, 0..1).unwrap().remove(0);
        assert!(serde_json::to_vec(&doc).unwrap().len() < 64 * 1024);
    }

    #[test]
    fn the_first_run_starts_a_snapshot_sized_for_the_state() {
        let (head, departures) = tuning().head_after(None, &run(250, &[], &[], 250)).unwrap();
        assert_eq!((head.id.as_str(), head.since, departures), (HEAD_ID, 250, 0));
        let next = head.next.unwrap();
        assert_eq!((next.bank, next.shards, next.written, next.since), (1, 3, 0, 0));
        assert_eq!(next.through, format_timestamp(at(0)));
    }

    #[test]
    fn a_snapshot_is_due_when_as_many_records_as_users_came_since_and_not_before() {
        let tuning = tuning();
        let previous = head_with_snapshot(10, 0);
        let (head, _) = tuning.head_after(Some(&previous), &run(999, &[], &[], 1_000)).unwrap();
        assert_eq!((head.since, &head.next), (999, &None));
        let (head, _) = tuning.head_after(Some(&head), &run(1, &[], &[], 1_000)).unwrap();
        assert_eq!(head.next.map(|n| (n.bank, n.shards)), Some((1, 10)));
        // At least `min_records_between_snapshots`, however few users there are.
        let (head, _) = tuning.head_after(Some(&head_with_snapshot(1, 0)), &run(499, &[], &[], 10)).unwrap();
        assert_eq!(head.next, None);
    }

    #[test]
    fn a_stale_snapshot_is_due_only_when_something_came_since() {
        let tuning = tuning();
        let mut later = run(0, &[], &[], 10);
        later.observed_at = at(12 * 60 + 1);
        let (quiet, _) = tuning.head_after(Some(&head_with_snapshot(1, 0)), &later).unwrap();
        assert_eq!(quiet.next, None);
        later.written = 1;
        let (busy, _) = tuning.head_after(Some(&head_with_snapshot(1, 0)), &later).unwrap();
        assert!(busy.next.is_some());
    }

    #[test]
    fn departures_are_listed_until_the_user_is_recorded_again_and_crowding_forces_a_snapshot() {
        let tuning = Tuning { max_departures_in_head: 2, ..tuning() };
        let previous = head_with_snapshot(1, 0);
        let (head, n) = tuning.head_after(Some(&previous), &run(0, &[], &[user(1), user(2)], 10)).unwrap();
        assert_eq!((n, head.next.is_none()), (2, true));
        let (back, n) = tuning.head_after(Some(&head), &run(1, &[user(1)], &[], 10)).unwrap();
        assert_eq!(n, 1);
        assert_eq!(decode_departures(&back.gone).unwrap(), [(user(2), at(0))]);
        let (crowded, n) = tuning.head_after(Some(&head), &run(0, &[], &[user(3)], 10)).unwrap();
        assert_eq!(n, 3);
        assert!(crowded.next.is_some(), "three departures outgrow a head that lists two");
        assert_eq!(tuning.snapshot_share(&crowded, n, true), Some(0..1), "crowded: all of it, even after a load");
    }

    #[test]
    fn a_snapshot_is_written_an_eighth_a_run_but_not_by_the_run_that_loaded_the_state() {
        let tuning = tuning();
        let mut head = head_with_snapshot(20, 0);
        head.next = Some(NextSnapshot { bank: 1, shards: 20, written: 0, through: format_timestamp(at(0)), since: 0 });
        assert_eq!(tuning.snapshot_share(&head, 0, true), None);
        assert_eq!(tuning.snapshot_share(&head, 0, false), Some(0..3));
        assert_eq!(tuning.snapshot_written(&mut head, 3).unwrap(), None);
        assert_eq!(head.next.as_ref().map(|n| n.written), Some(3));
        head.next.as_mut().unwrap().written = 18;
        assert_eq!(tuning.snapshot_share(&head, 0, false), Some(18..20), "the last share is what is left");
        assert_eq!(tuning.snapshot_share(&head_with_snapshot(20, 0), 0, false), None, "nothing in progress");
    }

    #[test]
    fn a_snapshot_in_progress_restarts_when_the_state_outgrew_it_and_counts_records_otherwise() {
        let tuning = tuning();
        let mut previous = head_with_snapshot(4, 0);
        previous.next = Some(NextSnapshot { bank: 1, shards: 4, written: 2, through: "x".into(), since: 7 });
        let (head, _) = tuning.head_after(Some(&previous), &run(5, &[], &[], 500)).unwrap();
        assert_eq!(head.next.as_ref().map(|n| (n.shards, n.written, n.since)), Some((4, 2, 12)));
        let (head, _) = tuning.head_after(Some(&previous), &run(5, &[], &[], 501)).unwrap();
        assert_eq!(head.next.as_ref().map(|n| (n.shards, n.written, n.since)), Some((6, 0, 0)), "6 > 4 + 4/4");
    }

    #[test]
    fn a_finished_snapshot_switches_banks_keeps_later_departures_and_names_the_surplus() {
        let tuning = tuning();
        let mut head = head_with_snapshot(3, 40);
        head.snap.other_shards = 5;
        let before = at(-16);
        let after = at(-14);
        head.gone = encode_departures(&[(user(1), before), (user(2), after)]);
        head.next = Some(NextSnapshot { bank: 1, shards: 2, written: 1, through: format_timestamp(at(0)), since: 9 });
        let surplus = tuning.snapshot_written(&mut head, 2).unwrap();
        assert_eq!(surplus, Some(Surplus { bank: 1, shards: 2..5 }));
        assert_eq!(head.next, None);
        assert_eq!(head.snap, SnapshotRef { bank: 1, shards: 2, other_shards: 3, through: format_timestamp(at(0)) });
        assert_eq!(head.since, 9);
        assert_eq!(decode_departures(&head.gone).unwrap(), [(user(2), after)], "within the 15-minute margin");
        assert_eq!(tuning.records_since(&head).unwrap(), Some(at(-15)));
    }

    #[test]
    fn an_erased_user_is_looked_for_in_every_bank_that_can_hold_them_and_leaves_the_head() {
        let mut head = head_with_snapshot(3, 0);
        head.snap.other_shards = 2;
        head.gone = encode_departures(&[(user(5), at(0)), (user(6), at(0))]);
        assert_eq!(head.shards_holding(&user(5)).len(), 2);
        head.next = Some(NextSnapshot { bank: 1, shards: 4, written: 1, through: String::new(), since: 0 });
        // The id's last eight bytes, read little-endian, are 5 << 56: 2 mod 3, 0 mod 2 and mod 4.
        assert_eq!(head.shards_holding(&user(5)), ["snapshot-0-2", "snapshot-1-0", "snapshot-1-0"]);
        assert_eq!(decode_departures(&head.without(user(5)).unwrap().gone).unwrap(), [(user(6), at(0))]);
        assert!(Head::empty().shards_holding(&user(5)).is_empty());
    }
}
