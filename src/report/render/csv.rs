//! The CSV rendering: a header, then one line per row and value (`NotObserved` last).

use super::keys;
use crate::report::aggregate::Report;

pub fn render(report: &Report) -> String {
    let zone = report.spec.zone;
    let mut out = String::from("userId,users,start,end,value,seconds\n");
    for row in &report.rows {
        let user = row.user.map(|u| u.to_string()).unwrap_or_default();
        let (start, end) = (zone.rfc3339(row.start), zone.rfc3339(row.end));
        for (value, seconds) in keys(report).zip(&row.seconds) {
            out.push_str(&format!("{user},{},{start},{end},{},{seconds}\n", row.users, field(value)));
        }
    }
    out
}

/// RFC 4180 quoting, only where a field needs it: Graph's values are plain words, but an
/// unexpected one must not break the columns.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_string() }
}
