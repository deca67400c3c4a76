//! Building reports: the flags, the rules, rows per user and aggregated, and their sums.

use chrono::{DateTime, TimeDelta, TimeZone, Timelike, Utc};
use proptest::prelude::*;

use super::*;
use crate::model::{Availability, ChangeRecord, SubjectId};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn runs(from: DateTime<Utc>, to: DateTime<Utc>, skip: impl Fn(DateTime<Utc>) -> bool) -> Vec<LedgerEntry> {
    input::every_five_minutes(from, to, |r| (!skip(r)).then_some(RunOutcome::Succeeded))
}

fn record(user: SubjectId, at: DateTime<Utc>, value: &str) -> ChangeRecord {
    ChangeRecord { subject: user, availability: Availability::from(value), timestamp: at }
}

fn per_user() -> Policy {
    Policy { mode: ReportMode::PerUser, min_users: MinUsers::DEFAULT }
}

fn spec(args: SpecArgs<'_>, policy: Policy) -> ReportSpec {
    ReportSpec::parse(&args, policy, at("2026-04-01T12:00:00Z"), false).unwrap()
}

fn seconds_of(report: &Report, row: &Row, key: &str) -> u64 {
    report.values.iter().position(|v| v.key() == key).map_or(0, |i| row.seconds[i])
}

#[test]
fn flags_parse_once_and_every_bad_one_is_named() {
    let args = SpecArgs {
        tz: Some("Mars/Olympus"),
        from: Some("last week"),
        bucket: Some("fortnight"),
        hours: Some("9-5"),
        days: Some("Mon-Fro"),
        ..SpecArgs::default()
    };
    let error = ReportSpec::parse(&args, Policy::default(), Utc::now(), false).unwrap_err();
    let ReportError::Invalid(errors) = &error else { panic!("{error:?}") };
    assert_eq!(errors.len(), 5, "{errors:?}");
    let text = error.to_string();
    for named in ["Mars/Olympus", "last week", "fortnight", "9-5", "Mon-Fro"] {
        assert!(text.contains(named), "{named} is not named in: {text}");
    }

    let spec = spec(SpecArgs { tz: Some("Europe/Berlin"), ..SpecArgs::default() }, Policy::default());
    assert_eq!((spec.bucket, spec.rows, spec.hours), (BucketKind::Day, Rows::Aggregate, None));
    assert_eq!(spec.zone.rfc3339(spec.range.from), "2026-03-25T00:00:00+01:00");
    // Per-user mode gives per-user rows unless totals are asked for.
    assert_eq!(self::spec(SpecArgs::default(), per_user()).rows, Rows::PerUser);
    assert_eq!(self::spec(SpecArgs { aggregate: true, ..SpecArgs::default() }, per_user()).rows, Rows::Aggregate);
}

#[test]
fn aggregate_mode_refuses_named_users_per_user_rows_and_small_selections() {
    let policy = Policy::default();
    assert_eq!(policy.mode, ReportMode::Aggregate);
    assert_eq!(policy.min_users.get(), 5);
    assert_eq!(policy.admit(Selection::Users, 50, Rows::Aggregate), Err(ReportError::UserSelectionRefused));
    assert_eq!(policy.admit(Selection::Groups, 50, Rows::PerUser), Err(ReportError::PerUserRowsRefused));
    let small = policy.admit(Selection::Groups, 4, Rows::Aggregate).unwrap_err();
    assert_eq!(
        small.to_string(),
        "the selection has 4 users: aggregate reports need at least 5 (REPORT_MIN_USERS), so that no one person's \
         time can be read from a total"
    );
    assert_eq!(policy.admit(Selection::Groups, 5, Rows::Aggregate), Ok(()));
    assert_eq!(policy.admit(Selection::AllTracked, 10_000, Rows::Aggregate), Ok(()));
    let stricter = Policy { min_users: "12".parse().unwrap(), ..policy };
    assert!(stricter.admit(Selection::AllTracked, 11, Rows::Aggregate).is_err());
    // Per-user mode, chosen explicitly, allows it all.
    assert_eq!(per_user().admit(Selection::Users, 1, Rows::PerUser), Ok(()));
    assert_eq!(per_user().admit(Selection::Users, 1, Rows::Aggregate), Ok(()));
}

#[test]
fn the_minimum_is_never_below_five_and_the_mode_is_named_exactly() {
    assert!(MinUsers::new(4).is_err());
    assert_eq!(
        "3".parse::<MinUsers>().unwrap_err().to_string(),
        "REPORT_MIN_USERS \"3\": expected a whole number of at least 5 (the minimum is never below 5)"
    );
    assert!("five".parse::<MinUsers>().is_err());
    assert_eq!("25".parse::<MinUsers>().unwrap().get(), 25);
    assert_eq!("per-user".parse::<ReportMode>(), Ok(ReportMode::PerUser));
    assert_eq!(
        "everyone".parse::<ReportMode>().unwrap_err().to_string(),
        "REPORT_MODE \"everyone\": expected aggregate or per-user"
    );
}

#[test]
fn a_finished_report_checks_the_rules_again() {
    // A spec built by hand around the parser still cannot aggregate four users.
    let spec =
        spec(SpecArgs { from: Some("2026-03-02"), to: Some("2026-03-03"), ..SpecArgs::default() }, Policy::default());
    let users = (1..=4).map(|i| (SubjectId::from_u128(i), Vec::new()));
    assert_eq!(build(spec, Vec::new(), users).unwrap_err(), ReportError::TooFewUsers { users: 4, min: 5 });
}

#[test]
fn bad_streams_are_refused() {
    let spec = spec(SpecArgs { from: Some("2026-03-02"), to: Some("2026-03-03"), ..SpecArgs::default() }, per_user());
    let (a, b) = (SubjectId::from_u128(1), SubjectId::from_u128(2));
    let foreign = build(spec.clone(), Vec::new(), [(a, vec![record(b, at("2026-03-02T01:00:00Z"), "Busy")])]);
    assert_eq!(foreign.unwrap_err(), ReportError::ForeignRecord { position: 1 });
    let twice = build(spec, Vec::new(), [(a, Vec::new()), (a, Vec::new())]);
    assert_eq!(twice.unwrap_err(), ReportError::DuplicateUser);
}

/// The worked example of docs/reports.md: one UTC day, runs every 5 minutes, the 12:00 run failed
/// and the 21:00 slot skipped; A leaves the groups at 17:00 and is back at 20:00; B's presence is
/// unknown until 10:00.
fn worked_example(rows: Rows, extra_users: u128) -> Report {
    let day = at("2026-03-02T00:00:00Z");
    let mut ledger = runs(day, day + TimeDelta::days(1), |r| r.hour() == 21 && r.minute() == 0);
    for entry in &mut ledger {
        if entry.observed_at == at("2026-03-02T12:00:00Z") {
            entry.outcome = RunOutcome::Failed;
        }
    }
    let (a, b) = (SubjectId::from_u128(0xa), SubjectId::from_u128(0xb));
    let a_records = |user| {
        vec![
            record(user, at("2026-03-01T23:00:00Z"), "Offline"),
            record(user, at("2026-03-02T08:00:00Z"), "Available"),
            record(user, at("2026-03-02T12:30:00Z"), "Away"),
            record(user, at("2026-03-02T13:00:00Z"), "Busy"),
            record(user, at("2026-03-02T17:00:00Z"), UNTRACKED),
            record(user, at("2026-03-02T20:00:00Z"), "Available"),
        ]
    };
    let b_records = vec![
        record(b, at("2026-03-02T00:00:00Z"), "PresenceUnknown"),
        record(b, at("2026-03-02T10:00:00Z"), "Offline"),
    ];
    let mut users = vec![(a, a_records(a)), (b, b_records)];
    users.extend((1..=extra_users).map(|i| (SubjectId::from_u128(i), a_records(SubjectId::from_u128(i)))));
    let args = SpecArgs {
        from: Some("2026-03-02"),
        to: Some("2026-03-03"),
        aggregate: rows == Rows::Aggregate,
        ..SpecArgs::default()
    };
    build(spec(args, per_user()), ledger, users).unwrap()
}

#[test]
fn worked_example_per_user() {
    let report = worked_example(Rows::PerUser, 0);
    let keys: Vec<&str> = report.values.iter().map(State::key).collect();
    assert_eq!(keys, ["Available", "Busy", "Away", "Offline", "NotObserved"]);
    assert_eq!(report.rows.len(), 2);
    let (a, b) = (&report.rows[0], &report.rows[1]);
    assert_eq!(a.user, Some(SubjectId::from_u128(0xa)));
    // A: 00:00-08:00 Offline (an earlier record), 08:00-12:00 + 12:05-12:30 + 20:00-21:00 + 21:05-24:00
    // Available, 12:30-13:00 Away, 13:00-17:00 Busy; not observed: 12:00-12:05, 17:00-20:00, 21:00-21:05.
    assert_eq!(a.seconds, [4 * 3600 + 1500 + 3600 + 10_500, 4 * 3600, 1800, 8 * 3600, 300 + 3 * 3600 + 300]);
    // B: PresenceUnknown until 10:00 is not observed, then Offline (less the two gaps).
    assert_eq!(b.seconds, [0, 0, 0, 14 * 3600 - 600, 10 * 3600 + 600]);
    assert!(report.rows.iter().all(|r| r.seconds.iter().sum::<u64>() == 86_400));
}

#[test]
fn worked_example_aggregated_sums_person_seconds() {
    let report = worked_example(Rows::Aggregate, 3);
    assert_eq!(report.rows.len(), 1);
    let row = &report.rows[0];
    assert_eq!((row.user, row.users), (None, 5));
    assert_eq!(row.seconds.iter().sum::<u64>(), 5 * 86_400);
    assert_eq!(seconds_of(&report, row, "Busy"), 4 * 4 * 3600);
    assert_eq!(seconds_of(&report, row, "NotObserved"), 4 * (600 + 3 * 3600) + 10 * 3600 + 600);
}

#[test]
fn working_hours_restrict_what_is_counted() {
    let day = at("2026-03-02T00:00:00Z"); // a Monday
    let ledger = runs(day, day + TimeDelta::days(7), |_| false);
    let user = SubjectId::from_u128(1);
    let records = vec![record(user, day, "Available")];
    let args = SpecArgs {
        from: Some("2026-03-02"),
        to: Some("2026-03-09"),
        hours: Some("09:00-17:00"),
        days: Some("Mon-Fri"),
        bucket: Some("week"),
        ..SpecArgs::default()
    };
    let report = build(spec(args, per_user()), ledger, [(user, records)]).unwrap();
    assert_eq!(report.rows.len(), 1);
    assert_eq!(report.rows[0].seconds.iter().sum::<u64>(), 5 * 8 * 3600);
    assert_eq!(seconds_of(&report, &report.rows[0], "Available"), 5 * 8 * 3600);
}

#[test]
fn rows_are_ordered_by_id_and_time_never_by_a_figure() {
    let day = at("2026-03-02T00:00:00Z");
    let ledger = runs(day, day + TimeDelta::days(2), |_| false);
    let users: Vec<(SubjectId, Vec<ChangeRecord>)> = [3u128, 1, 2]
        .into_iter()
        .map(|i| {
            let u = SubjectId::from_u128(i);
            (u, vec![record(u, day + TimeDelta::hours(i as i64), "Available")])
        })
        .collect();
    let args = SpecArgs { from: Some("2026-03-02"), to: Some("2026-03-04"), ..SpecArgs::default() };
    let report = build(spec(args, per_user()), ledger, users).unwrap();
    let order: Vec<(u128, i64)> = report.rows.iter().map(|r| (r.user.unwrap().as_uuid().as_u128(), r.start)).collect();
    let monday = day.timestamp();
    assert_eq!(
        order,
        [(1, monday), (1, monday + 86_400), (2, monday), (2, monday + 86_400), (3, monday), (3, monday + 86_400)]
    );
}

const ZONES: [&str; 5] = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"];
const VALUES: [&str; 5] = ["Available", "Busy", "Away", "Untracked", "PresenceUnknown"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Per user and bucket, the values plus NotObserved add up to exactly the bucket's counted
    /// length (a minute-by-minute count of the bucket's wall-clock working time); aggregate rows
    /// to users times that. Ranges start around the clock changes of 2026.
    #[test]
    fn rows_add_up_to_the_bucket(
        zone in 0..ZONES.len(),
        around in prop::sample::select(vec!["2026-03-05", "2026-03-26", "2026-10-22", "2026-10-29", "2026-04-02"]),
        days in 1u64..12,
        bucket in prop::sample::select(vec!["none", "day", "week", "month"]),
        hours in prop::option::of((5u32..18, 1u32..6)),
        weekdays in prop::option::of(prop::sample::select(vec!["Mon-Fri", "Sat,Sun", "Wed"])),
        users in prop::collection::vec(prop::collection::vec((0i64..20 * 86_400, 0..VALUES.len()), 0..30), 5..8),
        failed_every in 2usize..40,
    ) {
        let zone_name = ZONES[zone];
        let first: chrono::NaiveDate = around.parse().unwrap();
        let to = (first + chrono::Days::new(days)).to_string();
        let hours_text = hours.map(|(h, n)| format!("{h:02}:00-{:02}:00", h + n));
        let args = SpecArgs {
            tz: Some(zone_name),
            from: Some(around),
            to: Some(&to),
            bucket: Some(bucket),
            hours: hours_text.as_deref(),
            days: weekdays,
            ..SpecArgs::default()
        };
        let per_user_spec = spec(args, per_user());
        let (from, to) = (per_user_spec.range.from, per_user_spec.range.to);
        let start = Utc.timestamp_opt(from - 86_400, 0).unwrap();
        let mut ledger = runs(start, Utc.timestamp_opt(to, 0).unwrap(), |_| false);
        for (i, entry) in ledger.iter_mut().enumerate() {
            if i % failed_every == 0 {
                entry.outcome = RunOutcome::Failed;
            }
        }
        let users: Vec<(SubjectId, Vec<ChangeRecord>)> = users
            .into_iter()
            .enumerate()
            .map(|(i, mut records)| {
                records.sort();
                let user = SubjectId::from_u128(i as u128 + 1);
                (user, records.into_iter().map(|(s, v)| record(user, start + TimeDelta::seconds(s), VALUES[v])).collect())
            })
            .collect();
        let n = users.len() as u64;
        let report = build(per_user_spec.clone(), ledger.clone(), users.clone()).unwrap();
        let aggregate_spec = ReportSpec { rows: Rows::Aggregate, ..per_user_spec };
        let aggregate = build(aggregate_spec, ledger, users).unwrap();

        let z: Zone = zone_name.parse().unwrap();
        let wall_clock = |bucket_start: i64, bucket_end: i64| -> u64 {
            let mut counted = 0;
            let mut t = bucket_start;
            while t < bucket_end {
                let local = z.at(t);
                let in_hours = hours.is_none_or(|(h, n)| (h..h + n).contains(&local.hour()));
                let on_day = weekdays.is_none_or(|d| d.parse::<calendar::WeekDays>().unwrap().contains(chrono::Datelike::weekday(&local)));
                if in_hours && on_day {
                    counted += 60;
                }
                t += 60;
            }
            counted
        };
        prop_assert_eq!(aggregate.rows.len() as u64 * n, report.rows.len() as u64);
        for row in &report.rows {
            prop_assert_eq!(row.seconds.iter().sum::<u64>(), wall_clock(row.start, row.end));
        }
        for row in &aggregate.rows {
            prop_assert_eq!(row.users, n);
            prop_assert_eq!(row.seconds.iter().sum::<u64>(), n * wall_clock(row.start, row.end));
        }
        // Aggregate rows are the per-user rows summed.
        for (bucket, row) in aggregate.rows.iter().enumerate() {
            for (value, &seconds) in row.seconds.iter().enumerate() {
                let summed: u64 = report.rows.iter().filter(|r| r.start == row.start).map(|r| {
                    let key = aggregate.values[value].key();
                    seconds_of(&report, r, key)
                }).sum();
                prop_assert_eq!(seconds, summed, "bucket {} value {}", bucket, value);
            }
        }
        // Neither Untracked nor PresenceUnknown is ever a column.
        prop_assert!(report.values.iter().all(|v| v.key() != UNTRACKED && v.key() != "PresenceUnknown"));
    }
}

#[test]
fn day_buckets_are_23_and_25_hours_on_the_days_the_clocks_change() {
    let user = SubjectId::from_u128(1);
    for (from, to, lengths) in [("2026-03-28", "2026-03-31", [24, 23, 24]), ("2026-10-24", "2026-10-27", [24, 25, 24])]
    {
        let args = SpecArgs { tz: Some("Europe/Berlin"), from: Some(from), to: Some(to), ..SpecArgs::default() };
        let s = spec(args, per_user());
        let ledger =
            runs(Utc.timestamp_opt(s.range.from, 0).unwrap(), Utc.timestamp_opt(s.range.to, 0).unwrap(), |_| false);
        let records = vec![record(user, at("2026-01-01T00:00:00Z"), "Busy")];
        let report = build(s, ledger, [(user, records)]).unwrap();
        let got: Vec<u64> = report.rows.iter().map(|r| seconds_of(&report, r, "Busy") / 3600).collect();
        assert_eq!(got, lengths, "{from}");
    }
}
