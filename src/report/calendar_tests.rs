use chrono::{NaiveDate, TimeZone, Timelike, Utc};
use proptest::prelude::*;

use super::*;

fn zone(name: &str) -> Zone {
    name.parse().unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn utc(text: &str) -> Second {
    DateTime::parse_from_rfc3339(text).unwrap().timestamp()
}

#[test]
fn days_on_which_the_clocks_change_are_23_and_25_hours_long() {
    for (name, spring, autumn) in [
        ("Europe/Berlin", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
        ("Australia/Sydney", date(2026, 10, 4), date(2026, 4, 5)),
    ] {
        let z = zone(name);
        let length = |d: NaiveDate| z.midnight(d + Days::new(1)) - z.midnight(d);
        assert_eq!(length(spring), 23 * 3600, "{name} {spring}");
        assert_eq!(length(autumn), 25 * 3600, "{name} {autumn}");
        assert_eq!(length(spring + Days::new(1)), 24 * 3600, "{name}");
    }
    // Lord Howe Island moves its clocks by 30 minutes.
    let z = zone("Australia/Lord_Howe");
    assert_eq!(z.midnight(date(2026, 10, 5)) - z.midnight(date(2026, 10, 4)), 23 * 3600 + 1800);
}

#[test]
fn a_local_time_that_does_not_exist_moves_later_by_the_gap_and_a_repeated_one_is_the_first() {
    let berlin = zone("Europe/Berlin");
    // 02:30 on 2026-03-29 does not exist in Berlin: it is read with the offset before the gap (+01:00).
    assert_eq!(berlin.resolve(date(2026, 3, 29).and_hms_opt(2, 30, 0).unwrap()), utc("2026-03-29T01:30:00Z"));
    assert_eq!(berlin.rfc3339(utc("2026-03-29T01:30:00Z")), "2026-03-29T03:30:00+02:00");
    // 02:30 on 2026-10-25 happens twice: the first (+02:00).
    assert_eq!(berlin.resolve(date(2026, 10, 25).and_hms_opt(2, 30, 0).unwrap()), utc("2026-10-25T00:30:00Z"));
    // Where midnight itself is skipped, the day starts at 01:00 (Santiago, 2026-09-06).
    let santiago = zone("America/Santiago");
    assert_eq!(santiago.rfc3339(santiago.midnight(date(2026, 9, 6))), "2026-09-06T01:00:00-03:00");
}

#[test]
fn zones_are_iana_names_and_a_bad_one_is_named() {
    assert_eq!(zone("UTC").name(), "UTC");
    assert_eq!(zone(" Europe/Berlin ").name(), "Europe/Berlin");
    let error = "Europe/Berlim".parse::<Zone>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "--tz \"Europe/Berlim\" is not a time zone: expected an IANA zone name such as Europe/Berlin, \
         America/New_York or UTC"
    );
    assert!("CET+1".parse::<Zone>().is_err());
}

#[test]
fn bounds_are_rfc3339_or_a_date_meaning_midnight_in_the_zone() {
    let berlin = zone("Europe/Berlin");
    assert_eq!(parse_bound("--from", "2026-03-02", berlin), Ok(utc("2026-03-01T23:00:00Z")));
    assert_eq!(parse_bound("--from", "2026-03-02T09:00:00+01:00", berlin), Ok(utc("2026-03-02T08:00:00Z")));
    assert_eq!(parse_bound("--from", "2026-03-02T09:00:00.250Z", berlin), Ok(utc("2026-03-02T09:00:01Z")));
    for bad in ["2026-02-30", "02.03.2026", "2026-03-02 09:00", "yesterday", "", "0001-01-01", "1969-12-31"] {
        let error = parse_bound("--to", bad, berlin).unwrap_err();
        assert_eq!(error, ReportError::BadTime { flag: "--to", value: bad.to_string() });
        assert!(error.to_string().starts_with(&format!("--to {bad:?} is not a time: expected RFC 3339")), "{error}");
    }
}

#[test]
fn the_default_range_is_the_last_seven_full_days_in_the_zone() {
    let berlin = zone("Europe/Berlin");
    let now = Utc.with_ymd_and_hms(2026, 3, 31, 22, 30, 0).unwrap(); // 00:30 on April 1st in Berlin
    let range = Range::resolve(berlin, None, None, now).unwrap();
    assert_eq!(berlin.rfc3339(range.from), "2026-03-25T00:00:00+01:00");
    assert_eq!(berlin.rfc3339(range.to), "2026-04-01T00:00:00+02:00");
    // Seven days, one of them 23 hours long.
    assert_eq!(range.to - range.from, 7 * 86_400 - 3600);
    // --to alone: the seven days before it.
    let range = Range::resolve(berlin, None, Some("2026-03-10"), now).unwrap();
    assert_eq!(berlin.rfc3339(range.from), "2026-03-03T00:00:00+01:00");
}

#[test]
fn a_range_must_not_be_empty_and_every_bad_bound_is_named() {
    let now = Utc::now();
    let errors = Range::resolve(Zone::UTC, Some("2026-03-02"), Some("2026-03-02"), now).unwrap_err();
    assert_eq!(
        errors[0].to_string(),
        "--from 2026-03-02T00:00:00+00:00 is not before --to 2026-03-02T00:00:00+00:00: expected a range at least \
         one second long"
    );
    let errors = Range::resolve(Zone::UTC, Some("soon"), Some("later"), now).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn week_buckets_are_iso_weeks_and_month_buckets_calendar_months() {
    let z = Zone::UTC;
    let range = Range { from: utc("2026-01-01T00:00:00Z"), to: utc("2026-01-20T00:00:00Z") };
    let weeks: Vec<String> = bucket_spans(z, BucketKind::Week, range).iter().map(|s| z.rfc3339(s.0)).collect();
    // 2026-01-01 is a Thursday: its ISO week began on Monday 2025-12-29; the bucket is clipped.
    assert_eq!(
        weeks,
        [
            "2026-01-01T00:00:00+00:00",
            "2026-01-05T00:00:00+00:00",
            "2026-01-12T00:00:00+00:00",
            "2026-01-19T00:00:00+00:00"
        ]
    );
    let range = Range { from: utc("2026-01-15T00:00:00Z"), to: utc("2026-03-15T00:00:00Z") };
    let months: Vec<(String, i64)> =
        bucket_spans(z, BucketKind::Month, range).iter().map(|s| (z.rfc3339(s.0), (s.1 - s.0) / 86_400)).collect();
    assert_eq!(
        months,
        [
            ("2026-01-15T00:00:00+00:00".to_string(), 17),
            ("2026-02-01T00:00:00+00:00".to_string(), 28),
            ("2026-03-01T00:00:00+00:00".to_string(), 14)
        ]
    );
    assert_eq!(bucket_spans(z, BucketKind::None, range), vec![(range.from, range.to)]);
    assert_eq!("Week".parse::<BucketKind>(), Ok(BucketKind::Week));
    assert_eq!(
        "hour".parse::<BucketKind>().unwrap_err().to_string(),
        "--bucket \"hour\": expected none, day, week or month"
    );
}

#[test]
fn working_hours_and_days_parse_with_errors_naming_the_bad_value() {
    let hours = WorkingHours::parse(Some("09:00-17:30"), Some("Mon-Fri")).unwrap().unwrap();
    assert_eq!(
        (hours.start.to_string(), hours.end.to_string(), hours.days.to_string()),
        ("09:00".into(), "17:30".into(), "Mon,Tue,Wed,Thu,Fri".into())
    );
    assert_eq!("sun-thu".parse::<WeekDays>().unwrap().names(), ["Mon", "Tue", "Wed", "Thu", "Sun"]);
    assert_eq!("Fri-Mon".parse::<WeekDays>().unwrap().names(), ["Mon", "Fri", "Sat", "Sun"]);
    assert_eq!("Monday,wed, Fri".parse::<WeekDays>().unwrap().names(), ["Mon", "Wed", "Fri"]);
    assert_eq!(WorkingHours::parse(None, None), Ok(None));
    let whole_days = WorkingHours::parse(None, Some("Sat,Sun")).unwrap().unwrap();
    assert_eq!((whole_days.start.to_string(), whole_days.end.to_string()), ("00:00".into(), "24:00".into()));

    let error = |hours: &str| WorkingHours::parse(Some(hours), None).unwrap_err()[0].to_string();
    assert_eq!(
        error("9-17"),
        "--hours \"9-17\": the start is not a time 00:00 to 23:59; expected HH:MM-HH:MM in the report's zone, such as 09:00-17:00"
    );
    assert_eq!(
        error("09:00"),
        "--hours \"09:00\": no '-' between start and end; expected HH:MM-HH:MM in the report's zone, such as 09:00-17:00"
    );
    assert!(error("09:00-25:00").contains("the end is not a time 00:00 to 24:00"));
    assert!(error("09:60-17:00").contains("the start is not a time"));
    assert!(error("24:00-08:00").contains("the start is not a time"));
    assert!(error("09:00-09:00").contains("start and end are the same time"));
    let days = WorkingHours::parse(None, Some("Mon-Fry")).unwrap_err();
    assert_eq!(
        days[0].to_string(),
        "--days \"Mon-Fry\": \"Fry\" is not a day; expected days such as Mon-Fri or Mon,Wed,Fri (Mon Tue Wed Thu Fri Sat Sun)"
    );
    assert_eq!(WorkingHours::parse(Some("x"), Some("y")).unwrap_err().len(), 2);
}

#[test]
fn working_hours_windows_follow_local_time_across_a_clock_change() {
    let berlin = zone("Europe/Berlin");
    let hours = WorkingHours::parse(Some("01:00-03:00"), None).unwrap().unwrap();
    let range = Range { from: berlin.midnight(date(2026, 3, 28)), to: berlin.midnight(date(2026, 3, 30)) };
    let lengths: Vec<i64> = day_windows(berlin, Some(&hours), range).iter().map(|w| w.end - w.start).collect();
    // 01:00-03:00 is one real hour on the day the clocks go forward at 02:00.
    assert_eq!(lengths, [7200, 3600]);
    let range = Range { from: berlin.midnight(date(2026, 10, 25)), to: berlin.midnight(date(2026, 10, 26)) };
    let lengths: Vec<i64> = day_windows(berlin, Some(&hours), range).iter().map(|w| w.end - w.start).collect();
    assert_eq!(lengths, [3 * 3600]);
}

#[test]
fn a_window_over_midnight_belongs_to_the_day_it_starts_on() {
    let hours = WorkingHours::parse(Some("22:00-06:00"), Some("Mon")).unwrap().unwrap();
    // Monday 2026-03-02 to Wednesday.
    let range = Range { from: utc("2026-03-02T00:00:00Z"), to: utc("2026-03-04T00:00:00Z") };
    let windows = day_windows(Zone::UTC, Some(&hours), range);
    assert_eq!(
        windows,
        [DayWindow { date: date(2026, 3, 2), start: utc("2026-03-02T22:00:00Z"), end: utc("2026-03-03T06:00:00Z") }]
    );
    // Sunday's window reaches into a range that starts on Monday.
    let hours = WorkingHours::parse(Some("22:00-06:00"), Some("Sun")).unwrap().unwrap();
    let windows = day_windows(Zone::UTC, Some(&hours), range);
    assert_eq!(windows, [DayWindow { date: date(2026, 3, 1), start: range.from, end: utc("2026-03-02T06:00:00Z") }]);
}

const ZONES: [&str; 6] =
    ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago"];

proptest! {
    /// Day windows without working hours tile the range; with them, they hold exactly the minutes
    /// whose wall-clock time is inside the hours on a listed day (hours away from 01:00-04:00,
    /// where clocks change, so that every local time in them exists once).
    #[test]
    fn day_windows_hold_exactly_the_working_minutes(
        zone_index in 0..ZONES.len(),
        start_day in 0u64..400,
        days in 1u64..9,
        start_hour in 5u32..20,
        hours_long in 1u32..4,
        weekdays in prop::collection::vec(any::<bool>(), 7),
    ) {
        let z = zone(ZONES[zone_index]);
        let first = date(2026, 1, 1) + Days::new(start_day);
        let range = Range { from: z.midnight(first), to: z.midnight(first + Days::new(days)) };
        let tiles = day_windows(z, None, range);
        prop_assert_eq!(tiles.first().map(|w| w.start), Some(range.from));
        prop_assert_eq!(tiles.last().map(|w| w.end), Some(range.to));
        prop_assert!(tiles.windows(2).all(|w| w[0].end == w[1].start));

        let mut set = [false; 7];
        set.copy_from_slice(&weekdays);
        let hours = WorkingHours { days: WeekDays(set), start: ClockTime(start_hour * 60), end: ClockTime((start_hour + hours_long) * 60) };
        let counted: i64 = day_windows(z, Some(&hours), range).iter().map(|w| w.end - w.start).sum();
        let mut expected = 0;
        let mut t = range.from;
        while t < range.to {
            let local = z.at(t);
            if hours.days.contains(local.weekday()) && (start_hour..start_hour + hours_long).contains(&local.hour()) {
                expected += 60;
            }
            t += 60;
        }
        prop_assert_eq!(counted, expected);
    }
}
