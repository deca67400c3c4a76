//! The renderings of one small report, exactly.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;
use crate::model::{Availability, ChangeRecord, SubjectId};
use crate::report::input::every_five_minutes;
use crate::report::{Format, MinUsers, Policy, ReportMode, ReportSpec, RunOutcome, SpecArgs, build, render};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Berlin, 2026-03-28 and the 23-hour 2026-03-29, working hours 08:00-12:00 on both days; runs
/// every 5 minutes except 09:00-09:30 on the 29th (failed).
fn report(mode: ReportMode, aggregate: bool, users: u128, value: &str, timelines: bool) -> Report {
    let policy = Policy { mode, min_users: MinUsers::DEFAULT };
    let args = SpecArgs {
        tz: Some("Europe/Berlin"),
        from: Some("2026-03-28"),
        to: Some("2026-03-30"),
        hours: Some("08:00-12:00"),
        aggregate,
        ..SpecArgs::default()
    };
    let spec = ReportSpec::parse(&args, policy, Utc::now(), timelines).unwrap();
    let failed = at("2026-03-29T07:00:00Z")..at("2026-03-29T07:30:00Z");
    let ledger = every_five_minutes(at("2026-03-27T23:00:00Z"), at("2026-03-29T22:00:00Z"), |r| {
        Some(if failed.contains(&r) { RunOutcome::Failed } else { RunOutcome::Succeeded })
    });
    let users = (1..=users).map(|i| {
        let user = SubjectId::from_u128(i);
        let records = vec![
            ChangeRecord { subject: user, availability: "Available".into(), timestamp: at("2026-03-28T07:00:00Z") },
            ChangeRecord {
                subject: user,
                availability: Availability::from(value),
                timestamp: at("2026-03-28T09:00:00Z"),
            },
        ];
        (user, records)
    });
    build(spec, ledger, users).unwrap()
}

#[test]
fn json_has_exactly_the_documented_shape() {
    let report = report(ReportMode::PerUser, false, 1, "Busy", false);
    let got: serde_json::Value = serde_json::from_str(&render(&report, Format::Json).unwrap()).unwrap();
    let user = "00000000-0000-0000-0000-000000000001";
    let expected = json!({
        "from": "2026-03-28T00:00:00+01:00",
        "to": "2026-03-30T00:00:00+02:00",
        "timeZone": "Europe/Berlin",
        "bucket": "day",
        "mode": "per-user",
        "minUsers": 5,
        "workingHours": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "08:00", "to": "12:00"},
        "rows": [
            {"userId": user, "users": 1, "start": "2026-03-28T00:00:00+01:00", "end": "2026-03-29T00:00:00+01:00",
             "seconds": {"Available": 7200, "Busy": 7200, "NotObserved": 0}},
            {"userId": user, "users": 1, "start": "2026-03-29T00:00:00+01:00", "end": "2026-03-30T00:00:00+02:00",
             "seconds": {"Available": 0, "Busy": 14400 - 1800, "NotObserved": 1800}},
        ]
    });
    assert_eq!(got, expected);
    // Keys in the documented order.
    let text = render(&report, Format::Json).unwrap();
    let order: Vec<usize> = [
        "\"from\"",
        "\"to\"",
        "\"timeZone\"",
        "\"bucket\"",
        "\"mode\"",
        "\"minUsers\"",
        "\"workingHours\"",
        "\"rows\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn json_aggregate_rows_have_a_null_user_and_no_working_hours_is_null() {
    let policy = Policy::default();
    let args = SpecArgs { from: Some("2026-03-02"), to: Some("2026-03-03"), ..SpecArgs::default() };
    let spec = ReportSpec::parse(&args, policy, Utc::now(), false).unwrap();
    let users = (1..=5u128).map(|i| (SubjectId::from_u128(i), Vec::new()));
    let report = build(spec, Vec::new(), users).unwrap();
    let got: serde_json::Value = serde_json::from_str(&render(&report, Format::Json).unwrap()).unwrap();
    assert_eq!(got["workingHours"], serde_json::Value::Null);
    assert_eq!(got["mode"], "aggregate");
    assert_eq!(
        got["rows"],
        json!([{"userId": null, "users": 5, "start": "2026-03-02T00:00:00+00:00", "end": "2026-03-03T00:00:00+00:00",
                "seconds": {"NotObserved": 5 * 86_400}}])
    );
}

#[test]
fn csv_has_one_line_per_row_and_value() {
    let report = report(ReportMode::PerUser, false, 2, "odd, \"value\"", false);
    let csv = render(&report, Format::Csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "userId,users,start,end,value,seconds");
    assert_eq!(lines.len(), 1 + 2 * 2 * 3, "{csv}");
    assert_eq!(
        lines[1..4],
        [
            "00000000-0000-0000-0000-000000000001,1,2026-03-28T00:00:00+01:00,2026-03-29T00:00:00+01:00,Available,7200",
            "00000000-0000-0000-0000-000000000001,1,2026-03-28T00:00:00+01:00,2026-03-29T00:00:00+01:00,\"odd, \"\"value\"\"\",7200",
            "00000000-0000-0000-0000-000000000001,1,2026-03-28T00:00:00+01:00,2026-03-29T00:00:00+01:00,NotObserved,0",
        ]
    );
}

#[test]
fn the_table_states_the_terms_and_the_rule() {
    let report = report(ReportMode::Aggregate, true, 6, "Away", false);
    let table = render(&report, Format::Table).unwrap();
    assert!(
        table.starts_with(
            "Presence report: 2026-03-28T00:00:00+01:00 to 2026-03-30T00:00:00+02:00 (Europe/Berlin), by day\n"
        ),
        "{table}"
    );
    assert!(table.contains("Working hours: Mon,Tue,Wed,Thu,Fri,Sat,Sun 08:00-12:00"), "{table}");
    assert!(table.contains("each sums the time of all 6 selected users"), "{table}");
    assert!(table.contains("selections under 5 users are refused"), "{table}");
    let header = table.lines().find(|l| l.starts_with("user")).unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["user", "users", "start", "end", "Available", "Away", "NotObserved"]
    );
    let rows: Vec<Vec<&str>> =
        table.lines().filter(|l| l.starts_with("(all selected)")).map(|l| l.split_whitespace().collect()).collect();
    // 6 users x 2 h of each on the 28th; on the 29th 3.5 h of Away and the failed half hour.
    assert_eq!(
        rows,
        [
            ["(all", "selected)", "6", "2026-03-28", "00:00", "2026-03-29", "00:00", "12:00:00", "12:00:00", "0:00:00"],
            ["(all", "selected)", "6", "2026-03-29", "00:00", "2026-03-30", "00:00", "0:00:00", "21:00:00", "3:00:00"],
        ]
    );
}

#[test]
fn the_page_is_self_contained_escapes_everything_and_explains_itself() {
    let hostile = "<script>alert('x')</script>\"&";
    let report = report(ReportMode::PerUser, false, 1, hostile, true);
    let page = render(&report, Format::Html).unwrap();
    assert!(!page.contains("<script"), "a value must not become markup");
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
    for external in ["src=", "href=", "url(", "@import", "<link", "<img"] {
        assert!(!page.contains(external), "the page must load nothing: found {external}");
    }
    assert!(page.contains("default-src 'none'"));
    for (title, text) in HOW_TO_READ {
        assert!(page.contains(&html::esc(title)) && page.contains(&html::esc(text)), "{title} is missing");
    }
    // One row per day, each day's parts adding up to the day's window (the 29th: 4 h, 30 min of them failed).
    let days: Vec<&str> = page.split("<div class=\"day\"").skip(1).collect();
    assert_eq!(days.len(), 2);
    assert!(days[1].starts_with(" data-date=\"2026-03-29\" data-seconds=\"14400\""), "{}", days[1]);
    assert!(days[1].contains("title=\"Not observed, 09:00:00&#8211;09:30:00 (30 min)\""), "{}", days[1]);
}

#[test]
fn html_needs_the_timelines() {
    let report = report(ReportMode::PerUser, false, 1, "Busy", false);
    assert_eq!(render(&report, Format::Html).unwrap_err(), crate::report::ReportError::TimelinesNotKept);
}

#[test]
fn docs_reports_md_heads_its_formats_with_the_pages_explanations() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reports.md")).unwrap();
    // Markdown wraps lines; compare with white space normalised.
    let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let docs = flat(&docs);
    for (title, text) in HOW_TO_READ {
        assert!(docs.contains(&flat(title)), "docs/reports.md lacks the heading {title:?}");
        assert!(docs.contains(&flat(text)), "docs/reports.md lacks the explanation under {title:?}");
    }
    for (_, url) in SOURCES {
        assert!(docs.contains(url), "docs/reports.md lacks the source {url}");
    }
}
