//! The HTML rendering: one self-contained page (inline style, no script, no external asset, no
//! cookie; a Content-Security-Policy that forbids loading anything) with a timeline per user, or
//! per selection in aggregate mode, and day; a legend; the totals; and how to read it all.
//!
//! Every width is a flex-grow in seconds, so a day's parts fill its bar in exact proportion, and
//! each part carries its seconds in `data-seconds` for tests and for readers of the source.
//! Colour is never the only cue: parts carry their value's name as text and as a title, gaps are
//! hatched, and each day ends with its totals in words.

use std::fmt::Write;

use super::{HOW_TO_READ, SOURCES, hms, hours_text, range_text, rule};
use crate::report::ReportError;
use crate::report::aggregate::{DayStrip, Parts, Report, Subject};
use crate::report::calendar::Zone;
use crate::report::interval::State;

/// Teams-like colours for Graph's documented values: (background, text).
const KNOWN_COLOURS: [(&str, &str, &str); 8] = [
    ("Available", "#92c353", "#111"),
    ("AvailableIdle", "#cfe6b0", "#111"),
    ("Busy", "#c4314b", "#fff"),
    ("BusyIdle", "#eab0ba", "#111"),
    ("DoNotDisturb", "#7f1d2d", "#fff"),
    ("BeRightBack", "#ffe27a", "#111"),
    ("Away", "#f2a93b", "#111"),
    ("Offline", "#8a8886", "#fff"),
];
/// For values Graph may add later.
const OTHER_COLOURS: [&str; 5] = ["#6264a7", "#0078d4", "#8764b8", "#038387", "#ca5010"];

const STYLE: &str = "\
body{font:14px/1.45 system-ui,'DejaVu Sans',sans-serif;margin:24px;color:#1b1b1b;max-width:1200px}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}\
.meta{margin:2px 0;color:#333}\
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;padding:0;list-style:none}\
.legend li{display:flex;align-items:center;gap:6px}\
.sw{display:inline-block;width:28px;height:16px;border:1px solid #777}\
.day{display:grid;grid-template-columns:236px 1fr;gap:2px 10px;margin:4px 0;align-items:center}\
.when{font-size:12px;color:#333;white-space:nowrap}\
.bar{display:flex;height:26px;border:1px solid #555;background:#fff}\
.seg,.hour{min-width:0;overflow:hidden;flex-shrink:0;flex-basis:0}\
.seg{font-size:11px;line-height:26px;white-space:nowrap;text-overflow:ellipsis;padding:0 0 0 2px;box-sizing:border-box;\
border-right:1px solid rgba(0,0,0,.25)}\
.hour{display:flex;flex-direction:column;border-right:1px solid rgba(0,0,0,.3)}\
.share{min-height:0;flex-shrink:0;flex-basis:0}\
.sum{grid-column:2;font-size:12px;color:#333}\
.gap{background:repeating-linear-gradient(135deg,#fff 0 4px,#b5b5b5 4px 6px);color:#111}\
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #bbb;padding:2px 6px;text-align:right}\
td:first-child,th:first-child{text-align:left}td{white-space:nowrap}\
.explain dt{font-weight:600;margin-top:8px}.explain dd{margin:2px 0 0 0}\
";

pub fn render(report: &Report) -> Result<String, ReportError> {
    let timelines = report.timelines.as_ref().ok_or(ReportError::TimelinesNotKept)?;
    let zone = report.spec.zone;
    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    page.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    );
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(page, "<title>Presence report, {}</title>", esc(&range_text(report)));
    let _ = writeln!(page, "<style>{STYLE}{}</style></head><body>", value_styles(report));

    page.push_str("<header><h1>Presence report</h1>");
    let _ = write!(page, "<p class=\"meta\">{}</p>", esc(&range_text(report)));
    if let Some(hours) = hours_text(report) {
        let _ = write!(page, "<p class=\"meta\">Working hours: {} (only these are counted)</p>", esc(&hours));
    }
    let _ = write!(page, "<p class=\"meta\" id=\"rule\">{}</p>", esc(&rule(report)));
    let _ = writeln!(page, "<p class=\"meta\" id=\"sampling\">{}</p></header>", esc(&sampling(report)));

    page.push_str("<section id=\"legend\"><h2>Legend</h2><ul class=\"legend\">");
    for (index, state) in report.values.iter().enumerate() {
        let _ = write!(
            page,
            "<li><span class=\"sw {}\"></span><span><b>{}</b>{}</span></li>",
            class(state, index),
            esc(&label(state)),
            if label(state) != state.key() { format!(" ({})", esc(state.key())) } else { String::new() }
        );
    }
    page.push_str("</ul></section>\n");

    page.push_str("<section id=\"timelines\"><h2>Timelines</h2>\n");
    // Bars share one scale, so a 23-hour day is visibly shorter than a 25-hour one.
    let longest = timelines.iter().flat_map(|t| &t.days).map(|d| (d.end - d.start).unsigned_abs()).max().unwrap_or(1);
    for timeline in timelines {
        let heading = match timeline.subject {
            Subject::User(user) => format!("User {user}"),
            Subject::Selection { users } => format!("All {users} selected users, summed"),
        };
        let _ = writeln!(page, "<section class=\"subject\"><h3>{}</h3>", esc(&heading));
        for day in &timeline.days {
            day_row(&mut page, report, zone, day, longest);
        }
        page.push_str("</section>\n");
    }
    if timelines.is_empty() {
        page.push_str("<p>No users were selected.</p>");
    }
    page.push_str("</section>\n");

    totals(&mut page, report);

    page.push_str("<section id=\"how-to-read\"><h2>How to read this</h2><dl class=\"explain\">");
    for (title, text) in HOW_TO_READ {
        let _ = write!(page, "<dt>{}</dt><dd>{}</dd>", esc(title), esc(text));
    }
    page.push_str("</dl><h3>Sources</h3><ul>");
    for (what, url) in SOURCES {
        let _ = write!(page, "<li>{}: {}</li>", esc(what), esc(url));
    }
    page.push_str("</ul></section>\n</body></html>\n");
    Ok(page)
}

/// One day's row: its date and window, the bar, and its totals in words.
fn day_row(page: &mut String, report: &Report, zone: Zone, day: &DayStrip, longest: u64) {
    let length = (day.end - day.start).unsigned_abs();
    let (start, end) = (zone.at(day.start), zone.at(day.end));
    let end_text = if end.date_naive() > day.date && end.format("%H:%M").to_string() == "00:00" {
        "24:00".to_string()
    } else if end.date_naive() > day.date {
        format!("{} (next day)", end.format("%H:%M"))
    } else {
        end.format("%H:%M").to_string()
    };
    let _ = write!(
        page,
        "<div class=\"day\" data-date=\"{}\" data-seconds=\"{length}\"><div class=\"when\">{} {}, {}&#8211;{} ({})</div>\
         <div class=\"bar\" style=\"width:{:.3}%\">",
        day.date,
        day.date.format("%a"),
        day.date,
        start.format("%H:%M"),
        esc(&end_text),
        human(length),
        100.0 * length as f64 / longest.max(1) as f64
    );
    let mut sums = vec![0u64; report.values.len()];
    match &day.parts {
        Parts::Segments(parts) => {
            let mut at = day.start;
            for &(seconds, value) in parts {
                let state = &report.values[value];
                sums[value] += seconds;
                let until = at + seconds as i64;
                let _ = write!(
                    page,
                    "<span class=\"seg {}\" style=\"flex-grow:{seconds}\" data-seconds=\"{seconds}\" title=\"{}, {}&#8211;{} ({})\">{}</span>",
                    class(state, value),
                    esc(&label(state)),
                    zone.at(at).format("%H:%M:%S"),
                    zone.at(until).format("%H:%M:%S"),
                    human(seconds),
                    esc(&label(state))
                );
                at = until;
            }
        }
        Parts::Hours(cells) => {
            for cell in cells {
                let length = (cell.end - cell.start).unsigned_abs();
                let total: u64 = cell.seconds.iter().sum();
                let shares: Vec<String> = cell
                    .seconds
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0)
                    .map(|(v, &s)| {
                        format!("{} {:.0}%", label(&report.values[v]), 100.0 * s as f64 / total.max(1) as f64)
                    })
                    .collect();
                let _ = write!(
                    page,
                    "<span class=\"hour\" style=\"flex-grow:{length}\" data-seconds=\"{length}\" title=\"{}&#8211;{}: {}\">",
                    zone.at(cell.start).format("%H:%M"),
                    zone.at(cell.end).format("%H:%M"),
                    esc(&shares.join(", "))
                );
                for (value, &seconds) in cell.seconds.iter().enumerate().filter(|(_, s)| **s > 0) {
                    sums[value] += seconds;
                    let _ = write!(
                        page,
                        "<span class=\"share {}\" style=\"flex-grow:{seconds}\" data-seconds=\"{seconds}\"></span>",
                        class(&report.values[value], value)
                    );
                }
                page.push_str("</span>");
            }
        }
    }
    let words: Vec<String> = sums
        .iter()
        .enumerate()
        .filter(|(_, s)| **s > 0)
        .map(|(v, &s)| format!("{} {}", label(&report.values[v]), human(s)))
        .collect();
    let _ = writeln!(page, "</div><div class=\"sum\">{}</div></div>", esc(&words.join(" \u{b7} ")));
}

/// The report's rows as a table: the same figures as the CSV and JSON.
fn totals(page: &mut String, report: &Report) {
    let zone = report.spec.zone;
    page.push_str("<section id=\"totals\"><h2>Totals (h:mm:ss");
    if report.spec.rows == crate::report::Rows::Aggregate {
        page.push_str(", person-time summed over the selection");
    }
    page.push_str(")</h2><table><thead><tr><th>who</th><th>users</th><th>from</th><th>to</th>");
    for state in &report.values {
        let _ = write!(page, "<th>{}</th>", esc(&label(state)));
    }
    page.push_str("</tr></thead><tbody>\n");
    for row in &report.rows {
        let who = row.user.map_or_else(|| "all selected".to_string(), |u| u.to_string());
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&who),
            row.users,
            zone.at(row.start).format("%Y-%m-%d %H:%M"),
            zone.at(row.end).format("%Y-%m-%d %H:%M")
        );
        for seconds in &row.seconds {
            let _ = write!(page, "<td>{}</td>", hms(*seconds));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody></table></section>\n");
}

fn sampling(report: &Report) -> String {
    match report.sampling {
        None => "No successful run vouches for any time of this range: all of it is not observed.".to_string(),
        Some((low, high)) if low == high => format!("Sampling: each run vouches for {}.", human(low.unsigned_abs())),
        Some((low, high)) => format!(
            "Sampling: each run vouches for between {} and {}.",
            human(low.unsigned_abs()),
            human(high.unsigned_abs())
        ),
    }
}

/// A value's name for readers.
fn label(state: &State) -> String {
    match state {
        State::NotObserved => "Not observed".to_string(),
        State::Observed(value) => match value.as_str() {
            "AvailableIdle" => "Available, idle".to_string(),
            "BusyIdle" => "Busy, idle".to_string(),
            "DoNotDisturb" => "Do not disturb".to_string(),
            "BeRightBack" => "Be right back".to_string(),
            other => other.to_string(),
        },
    }
}

/// The CSS class of a value: by its index, never by its text (values come from Graph).
fn class(state: &State, index: usize) -> String {
    match state {
        State::NotObserved => "gap".to_string(),
        State::Observed(_) => format!("v{index}"),
    }
}

fn value_styles(report: &Report) -> String {
    let mut css = String::new();
    let mut others = OTHER_COLOURS.iter().cycle();
    for (index, state) in report.values.iter().enumerate() {
        if let State::Observed(value) = state {
            let (background, text) = KNOWN_COLOURS
                .iter()
                .find(|(name, _, _)| *name == value.as_str())
                .map(|&(_, b, t)| (b, t))
                .unwrap_or_else(|| (others.next().copied().unwrap_or("#6264a7"), "#fff"));
            let _ = write!(css, ".v{index}{{background:{background};color:{text}}}");
        }
    }
    css
}

/// Seconds for readers: `7 h 5 min`, `45 min`, `30 s`.
fn human(seconds: u64) -> String {
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{rest} s"),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// Text into HTML, in element content and in quoted attributes alike.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
