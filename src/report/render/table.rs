//! The terminal rendering: the report's terms, then a table with a column per value.

use super::{hms, hours_text, keys, range_text, rule};
use crate::report::aggregate::Report;

pub fn render(report: &Report) -> String {
    let zone = report.spec.zone;
    let mut out = format!("Presence report: {}\n", range_text(report));
    if let Some(hours) = hours_text(report) {
        out.push_str(&format!("Working hours: {hours} (rows count only these)\n"));
    }
    out.push_str(&rule(report));
    out.push('\n');
    out.push_str(
        "Durations are h:mm:ss. NotObserved: no successful run vouched for the time, or the person was untracked or \
         PresenceUnknown (not Offline). How to read it: docs/reports.md.\n\n",
    );

    let mut header: Vec<String> = ["user", "users", "start", "end"].map(String::from).to_vec();
    // Graph's values are printed as given, but never a control character into a terminal.
    header.extend(keys(report).map(|key| key.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()));
    let mut lines = vec![header];
    for row in &report.rows {
        let mut line = vec![
            row.user.map_or_else(|| "(all selected)".to_string(), |u| u.to_string()),
            row.users.to_string(),
            zone.at(row.start).format("%Y-%m-%d %H:%M").to_string(),
            zone.at(row.end).format("%Y-%m-%d %H:%M").to_string(),
        ];
        line.extend(row.seconds.iter().map(|&s| hms(s)));
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| lines.iter().map(|l| l.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0))
        .collect();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            // Text columns to the left, figures to the right.
            .map(|(c, cell)| {
                if c == 0 || (2..4).contains(&c) {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
