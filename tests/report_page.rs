//! The HTML report as a reader's browser shows it: headless Chromium loads a generated page, and
//! the DOM it built is checked (a row per user, or per selection, and day; each day's parts adding
//! up to the day; the explanation there), and its screenshot is saved as docs/reports/report.png.
//!
//! Debian's `chromium` is installed by scripts/install-test-deps.sh, which scripts/test.sh runs
//! first. A missing Chromium fails this test: it never passes without having rendered the page.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, TimeDelta, Timelike, Utc};
use teams_presence::model::{Availability, ChangeRecord, Slot, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::report::{
    Format, LedgerEntry, MinUsers, Policy, Report, ReportMode, ReportSpec, RunOutcome, SpecArgs, UNTRACKED, build,
    render,
};

const SCREENSHOT: &str = "docs/reports/report.png";
const AGGREGATE_SCREENSHOT: &str = "docs/reports/report-aggregate.png";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Three days in Berlin around the clock change of 2026-03-29 (a 23-hour day): runs every 5
/// minutes, with a failed hour on the 28th and a skipped slot; users change availability during
/// the day; user 2 leaves the groups on the 29th and is back on the 30th; user 3 is
/// PresenceUnknown until noon on the 28th.
fn fixture(mode: ReportMode, users: u128) -> Report {
    let policy = Policy { mode, min_users: MinUsers::DEFAULT };
    let args =
        SpecArgs { tz: Some("Europe/Berlin"), from: Some("2026-03-28"), to: Some("2026-03-31"), ..SpecArgs::default() };
    let spec = ReportSpec::parse(&args, policy, Utc::now(), true).unwrap();
    let mut ledger = Vec::new();
    let mut r = at("2026-03-27T22:00:00Z");
    while r < at("2026-03-30T22:00:00Z") {
        let failed = r >= at("2026-03-28T13:00:00Z") && r < at("2026-03-28T14:00:00Z");
        if r != at("2026-03-30T09:00:00Z") {
            ledger.push(LedgerEntry {
                slot: Slot::new(r),
                observed_at: r,
                period: TimeDelta::minutes(5),
                outcome: if failed { RunOutcome::Failed } else { RunOutcome::Succeeded },
                figures: None,
            });
        }
        r += TimeDelta::minutes(5);
    }
    // A fixed-seed walk, so the page (and its screenshot) is the same on every run.
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let values = ["Available", "Available", "Busy", "Away", "BeRightBack", "DoNotDisturb", "AvailableIdle"];
    let selection = (1..=users).map(|i| {
        let user = Subjects::plain().stored_id(UserId::from_u128(0x1000 + i));
        let record = |at: DateTime<Utc>, value: &str| ChangeRecord {
            subject: user,
            availability: Availability::from(value),
            timestamp: at,
        };
        let mut records = vec![record(at("2026-03-27T20:00:00Z"), "Offline")];
        if i == 3 {
            records.push(record(at("2026-03-27T21:00:00Z"), "PresenceUnknown"));
        }
        let mut t = at("2026-03-28T06:30:00Z");
        while t < at("2026-03-30T21:00:00Z") {
            let value =
                if t.hour() >= 17 || t.hour() < 6 { "Offline" } else { values[next(values.len() as u64) as usize] };
            if i == 2 && t >= at("2026-03-29T10:00:00Z") && t < at("2026-03-30T07:00:00Z") {
                // Left the groups: tracking ends once, and the next sighting starts it again.
                if records.last().map(|r| r.availability.as_str()) != Some(UNTRACKED) {
                    records.push(record(at("2026-03-29T10:00:00Z"), UNTRACKED));
                }
            } else if !(i == 3 && t < at("2026-03-28T11:00:00Z")) {
                records.push(record(t, value));
            }
            t += TimeDelta::minutes(5 * (4 + next(20) as i64));
        }
        (user, records)
    });
    build(spec, ledger, selection).unwrap()
}

/// Chromium from Debian (`chromium`), as scripts/install-test-deps.sh installs it.
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(output) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output()
            && output.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        }
    }
    panic!("Chromium is missing: run scripts/install-test-deps.sh as root (scripts/test.sh runs it first)");
}

/// Runs headless Chromium on a page with a fresh profile and no network side traffic; returns stdout.
fn headless(page: &Path, action: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let output = Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("start chromium");
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// The value of `name="…"` in an element's start tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    Some(&tag[start..start + tag[start..].find('"')?])
}

/// Every start tag whose class list begins with `class` (e.g. `day`, `seg`, `hour`).
fn tags<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    dom.match_indices('<')
        .map(|(i, _)| &dom[i..i + dom[i..].find('>').unwrap_or(0)])
        .filter(|tag| attribute(tag, "class").is_some_and(|c| c.split(' ').next() == Some(class)))
        .collect()
}

/// Per day row: the day's date and length, and its parts' seconds from `data-seconds` and from
/// the flex-grow that sets their widths.
fn day_rows(dom: &str) -> Vec<(String, u64, u64, u64)> {
    let mut rows = Vec::new();
    let starts: Vec<usize> = dom.match_indices("<div class=\"day\"").map(|(i, _)| i).collect();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(dom.len());
        let section = &dom[start..end];
        let day = tags(section, "day")[0];
        let parts: Vec<&str> = [tags(section, "seg"), tags(section, "hour")].concat();
        let seconds: u64 = parts.iter().map(|t| attribute(t, "data-seconds").unwrap().parse::<u64>().unwrap()).sum();
        let grow: u64 = parts
            .iter()
            .map(|t| {
                let style = attribute(t, "style").unwrap();
                style.trim_start_matches("flex-grow:").trim().trim_end_matches(';').trim().parse::<u64>().unwrap()
            })
            .sum();
        rows.push((
            attribute(day, "data-date").unwrap().to_string(),
            attribute(day, "data-seconds").unwrap().parse().unwrap(),
            seconds,
            grow,
        ));
    }
    rows
}

fn write_page(report: &Report, dir: &Path) -> PathBuf {
    let path = dir.join("report.html");
    std::fs::write(&path, render(report, Format::Html).unwrap()).unwrap();
    path
}

#[test]
fn per_user_page_renders_a_row_per_user_and_day_and_is_screenshotted() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixture(ReportMode::PerUser, 3);
    let page = write_page(&report, dir.path());
    let dom = headless(&page, &["--dump-dom"]);

    let rows = day_rows(&dom);
    let dates: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(dates, ["2026-03-28", "2026-03-29", "2026-03-30"].repeat(3), "a row per user and day");
    for (date, length, seconds, grow) in &rows {
        let expected = if date == "2026-03-29" { 23 * 3600 } else { 24 * 3600 };
        assert_eq!(*length, expected, "{date} is {expected} s long in Berlin");
        assert_eq!((*seconds, *grow), (expected, expected), "{date}: the parts' widths must add up to the day");
    }
    assert_eq!(tags(&dom, "subject").len(), 3);
    for user in 1..=3u128 {
        let subject = Subjects::plain().stored_id(UserId::from_u128(0x1000 + user));
        assert!(dom.contains(&format!("User {subject}")), "user {user} has no timeline");
    }
    // Gaps shown as such: the failed hour, the skipped slot, the untracked night, PresenceUnknown.
    assert!(dom.contains("title=\"Not observed, 14:00:00–15:00:00 (1 h)\""), "the failed hour is not a gap");
    assert!(dom.contains("title=\"Not observed, 11:00:00–11:05:00 (5 min)\""), "the skipped slot is not a gap");
    assert!(dom.contains("<section id=\"how-to-read\"><h2>How to read this</h2>"), "the explanation is missing");
    for phrase in ["PresenceUnknown is not Offline", "Away is not absence", "up to 7 days", "No rankings, no scores"] {
        assert!(dom.contains(phrase), "the explanation lacks {phrase:?}");
    }
    assert!(dom.contains("<section id=\"legend\">") && dom.contains("<section id=\"totals\">"));
    assert!(!dom.contains("<script"), "the page needs no script");

    screenshot(&page, SCREENSHOT, 1500);
}

/// Saves the page as the reader sees it, for docs/reports.md.
fn screenshot(page: &Path, to: &str, height: u32) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(to);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    headless(page, &[&format!("--screenshot={}", path.display()), &format!("--window-size=1200,{height}")]);
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{to} is not a PNG");
    let size =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!(size, (1200, height), "{to}");
}

#[test]
fn aggregate_page_renders_a_row_per_day_for_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let report = fixture(ReportMode::Aggregate, 8);
    let page = write_page(&report, dir.path());
    let dom = headless(&page, &["--dump-dom"]);

    let rows = day_rows(&dom);
    assert_eq!(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["2026-03-28", "2026-03-29", "2026-03-30"]);
    for (date, length, seconds, grow) in &rows {
        assert_eq!((*seconds, *grow), (*length, *length), "{date}: the hours' widths must add up to the day");
    }
    // Hours: 24, 23 (the clocks skip 02:00-03:00), 24.
    let hours: Vec<usize> = dom.split("<div class=\"day\"").skip(1).map(|day| tags(day, "hour").len()).collect();
    assert_eq!(hours, [24, 23, 24]);
    // Each hour's shares are person-seconds: 8 users x the hour.
    let first_day = dom.split("<div class=\"day\"").nth(1).unwrap();
    let first_hour = first_day.split("<span class=\"hour\"").nth(1).unwrap().split("</span></span>").next().unwrap();
    let shares: u64 =
        tags(first_hour, "share").iter().map(|t| attribute(t, "data-seconds").unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(shares, 8 * 3600);
    assert_eq!(tags(&dom, "subject").len(), 1);
    assert!(dom.contains("All 8 selected users, summed"));
    assert!(!dom.contains("User 00000000"), "an aggregate page names no user");
    assert!(dom.contains("selections under 5 users are refused"), "the page states the rule");
    screenshot(&page, AGGREGATE_SCREENSHOT, 900);
}
