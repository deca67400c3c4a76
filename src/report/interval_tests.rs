//! The interval semantics against a second-by-second reading of their definition.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;

use super::*;
use crate::model::Slot;
use crate::report::input::{LedgerEntry, RunOutcome};

const FROM: i64 = 1_772_409_600; // 2026-03-02T00:00:00Z

fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn run(observed_ms: i64, period_ms: i64, outcome: RunOutcome) -> LedgerEntry {
    LedgerEntry {
        slot: Slot::new(at_ms(observed_ms)),
        observed_at: at_ms(observed_ms),
        period: TimeDelta::milliseconds(period_ms),
        outcome,
        figures: None,
    }
}

/// The definition, read literally at every whole second `t` of `[from, to)`: the latest record at
/// or before `t`; observed if a succeeded run has `r <= t < r + period` and the value is neither
/// `Untracked` nor `PresenceUnknown` (in any case).
fn oracle(
    ledger: &[LedgerEntry],
    records: &[(DateTime<Utc>, Availability)],
    from: i64,
    to: i64,
) -> BTreeMap<String, u64> {
    let mut seconds = BTreeMap::new();
    for t in from..to {
        let instant = DateTime::from_timestamp(t, 0).unwrap();
        let value = records.iter().rev().find(|(at, _)| *at <= instant).map(|(_, v)| v.as_str());
        let vouched = ledger.iter().any(|e| {
            e.outcome == RunOutcome::Succeeded && e.observed_at <= instant && instant < e.observed_at + e.period
        });
        let key = match value {
            Some(v) if vouched && v != "Untracked" && !v.eq_ignore_ascii_case("PresenceUnknown") => v.to_string(),
            _ => "NotObserved".to_string(),
        };
        *seconds.entry(key).or_insert(0) += 1;
    }
    seconds
}

fn summed(segments: &[Segment]) -> BTreeMap<String, u64> {
    let mut seconds = BTreeMap::new();
    for s in segments {
        *seconds.entry(s.state.key().to_string()).or_insert(0) += (s.end - s.start) as u64;
    }
    seconds
}

const VALUES: [&str; 7] = ["Available", "Busy", "Away", "Offline", "Untracked", "PresenceUnknown", "presenceUnknown"];

fn ledger_strategy() -> impl Strategy<Value = Vec<LedgerEntry>> {
    prop::collection::vec(
        ((-400_000i64..1_300_000), (1i64..400_000), prop::bool::weighted(0.8)).prop_map(|(offset, period, ok)| {
            run(FROM * 1000 + offset, period, if ok { RunOutcome::Succeeded } else { RunOutcome::Failed })
        }),
        0..12,
    )
}

fn records_strategy() -> impl Strategy<Value = Vec<(DateTime<Utc>, Availability)>> {
    prop::collection::vec(((-300_000i64..1_300_000), 0..VALUES.len()), 0..10).prop_map(|mut records| {
        records.sort_by_key(|(offset, _)| *offset);
        records.into_iter().map(|(offset, v)| (at_ms(FROM * 1000 + offset), Availability::from(VALUES[v]))).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Segments tile the range exactly and agree with the definition at every second.
    #[test]
    fn segments_follow_the_definition_second_by_second(
        ledger in ledger_strategy(),
        records in records_strategy(),
        length in 1i64..1_200,
    ) {
        let (from, to) = (FROM, FROM + length);
        let coverage = Coverage::from_ledger(ledger.clone()).unwrap();
        let segments = segments(records.clone(), &coverage, from, to).unwrap();
        let mut at = from;
        for s in &segments {
            prop_assert_eq!(s.start, at, "segments must be contiguous");
            prop_assert!(s.end > s.start, "no empty segment");
            at = s.end;
        }
        prop_assert_eq!(at, to, "segments must end at the range's end");
        prop_assert_eq!(summed(&segments), oracle(&ledger, &records, from, to));
    }

    /// Untracked and PresenceUnknown never count as observed, whatever vouches for them.
    #[test]
    fn untracked_and_presence_unknown_are_not_observed(
        records in prop::collection::vec(((-300_000i64..1_300_000), 4..VALUES.len()), 1..10),
        length in 1i64..1_200,
    ) {
        let mut records: Vec<_> =
            records.into_iter().map(|(o, v)| (at_ms(FROM * 1000 + o), Availability::from(VALUES[v]))).collect();
        records.sort_by_key(|r| r.0);
        let coverage = Coverage::from_ledger([run((FROM - 1_000) * 1000, 10_000_000, RunOutcome::Succeeded)]).unwrap();
        let segments = segments(records, &coverage, FROM, FROM + length).unwrap();
        prop_assert!(segments.iter().all(|s| s.state == State::NotObserved), "{:?}", segments);
    }

    /// Time no succeeded run vouches for is not observed, whatever the records say.
    #[test]
    fn ledger_gaps_are_not_observed(
        records in records_strategy(),
        gap_start in 0i64..600,
        gap_length in 1i64..600,
    ) {
        // Succeeded runs every 5 minutes, except those observed inside the gap (they failed).
        let gap = (FROM + gap_start, FROM + gap_start + gap_length);
        let ledger: Vec<LedgerEntry> = (-2..8)
            .map(|i| {
                let r = FROM + i * 300;
                let outcome = if r >= gap.0 && r < gap.1 { RunOutcome::Failed } else { RunOutcome::Succeeded };
                run(r * 1000, 300_000, outcome)
            })
            .collect();
        let coverage = Coverage::from_ledger(ledger.clone()).unwrap();
        let segments = segments(records, &coverage, FROM, FROM + 1_800).unwrap();
        for s in &segments {
            let vouched = ledger.iter().any(|e| e.outcome == RunOutcome::Succeeded
                && e.observed_at.timestamp() <= s.start && s.start < e.vouches_until().timestamp());
            if !vouched {
                prop_assert_eq!(&s.state, &State::NotObserved);
            }
        }
    }
}

#[test]
fn worked_example_a_day_with_a_failed_run_a_skipped_slot_and_tracking_that_ends() {
    let (from, to) = (FROM, FROM + 86_400);
    let hm = |h: i64, m: i64| (FROM + h * 3600 + m * 60) * 1000;
    // A run every 5 minutes; the 12:00 run failed and the 21:00 slot never ran.
    let ledger: Vec<LedgerEntry> = (0..288)
        .filter(|i| *i != 21 * 12)
        .map(|i| run(hm(0, 5 * i), 300_000, if i == 12 * 12 { RunOutcome::Failed } else { RunOutcome::Succeeded }))
        .collect();
    let records: Vec<(DateTime<Utc>, Availability)> = [
        (hm(8, 0), "Available"),
        (hm(12, 30), "Away"),
        (hm(13, 0), "Busy"),
        (hm(17, 0), "Untracked"), // left the groups
        (hm(20, 0), "Available"), // back
    ]
    .into_iter()
    .map(|(ms, v)| (at_ms(ms), Availability::from(v)))
    .collect();
    let coverage = Coverage::from_ledger(ledger).unwrap();
    let got = summed(&segments(records, &coverage, from, to).unwrap());
    let expected: BTreeMap<String, u64> = [
        // 08:00-12:00, 12:05-12:30, 20:00-21:00, 21:05-24:00
        ("Available", 4 * 3600 + 25 * 60 + 3600 + 2 * 3600 + 55 * 60),
        ("Away", 30 * 60),
        ("Busy", 4 * 3600),
        // 00:00-08:00 (no record yet), 12:00-12:05 (failed), 17:00-20:00 (untracked), 21:00-21:05 (skipped)
        ("NotObserved", 8 * 3600 + 5 * 60 + 3 * 3600 + 5 * 60),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, expected);
    assert_eq!(got.values().sum::<u64>(), 86_400);
}

#[test]
fn a_record_with_milliseconds_takes_effect_at_the_next_whole_second() {
    let coverage = Coverage::from_ledger([run(FROM * 1000, 60_000, RunOutcome::Succeeded)]).unwrap();
    let records = [(at_ms(FROM * 1000 + 10_250), Availability::from("Busy"))];
    let segments = segments(records, &coverage, FROM, FROM + 60).unwrap();
    assert_eq!(
        segments,
        vec![
            Segment { start: FROM, end: FROM + 11, state: State::NotObserved },
            Segment { start: FROM + 11, end: FROM + 60, state: State::Observed("Busy".into()) },
        ]
    );
}

#[test]
fn records_out_of_order_are_refused() {
    let coverage = Coverage::default();
    let records = [(at_ms(FROM * 1000 + 5_000), "Busy".into()), (at_ms(FROM * 1000), "Away".into())];
    let error = segments(records, &coverage, FROM, FROM + 60).unwrap_err();
    assert!(matches!(error, ReportError::RecordOutOfOrder { position: 2, .. }), "{error}");
    assert!(error.to_string().contains("must come oldest first"), "{error}");
}

#[test]
fn a_period_that_is_not_positive_is_refused_naming_the_slot() {
    let error = Coverage::from_ledger([run(FROM * 1000, 0, RunOutcome::Succeeded)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the ledger entry of slot 2026-03-02T00:00:00Z vouches for 0 ms: expected a positive period"
    );
}

#[test]
fn overlapping_runs_merge_and_report_their_periods() {
    let coverage = Coverage::from_ledger([
        run(FROM * 1000 + 300_000, 600_000, RunOutcome::Succeeded),
        run(FROM * 1000, 300_000, RunOutcome::Succeeded),
        run(FROM * 1000 + 2_000_000, 300_000, RunOutcome::Failed),
    ])
    .unwrap();
    assert_eq!(coverage.spans, vec![(FROM, FROM + 900)]);
    assert_eq!(coverage.periods(), Some((300, 600)));
}
