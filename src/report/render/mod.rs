//! The renderings of a report: a terminal table, CSV, JSON, and a self-contained HTML page.

mod csv;
mod html;
mod json;
mod table;

use super::aggregate::{Report, Rows};
use super::interval::State;
use super::{Format, ReportError};

/// A report as text in the given format.
pub fn render(report: &Report, format: Format) -> Result<String, ReportError> {
    match format {
        Format::Table => Ok(table::render(report)),
        Format::Csv => Ok(csv::render(report)),
        Format::Json => Ok(json::render(report)),
        Format::Html => html::render(report),
    }
}

/// How to read a report: the page's explanation, and word for word the head of docs/reports.md
/// (a test holds them together). Plain text: each rendering escapes it its own way.
pub const HOW_TO_READ: [(&str, &str); 8] = [
    (
        "What a bar shows",
        "Each bar is one day of one person (in aggregate mode: of the whole selection), from the start of the day, \
         or of its working hours, on the left to its end on the right, in the report's time zone. A day on which \
         the clocks change is 23 or 25 hours long.",
    ),
    (
        "Sampling",
        "Presence is sampled, not recorded continuously: each run (every 5 minutes by default) reads everyone's \
         availability once. A change is seen at the next run, so times are accurate to about one run's period, \
         and a state that came and went between two runs is missed entirely.",
    ),
    (
        "What counts as observed",
        "A person's availability at a moment is the value recorded by the latest run at or before it. The moment \
         counts as observed only if a successful run vouches for it: a run vouches for the time from its \
         observation until the next scheduled run.",
    ),
    (
        "Not observed",
        "Not observed (hatched) is time nothing vouches for: runs that failed, were skipped or came late; time \
         before a person was first seen or after they left the selected groups (recorded as Untracked); and time \
         for which Graph answered PresenceUnknown. Not observed does not mean offline or absent.",
    ),
    (
        "PresenceUnknown is not Offline",
        "PresenceUnknown means Graph did not know the person's presence; Graph does not document when that \
         happens (accounts without Teams are a likely case). It is counted as not observed, never as Offline.",
    ),
    (
        "Away is not absence",
        "Teams shows Away when the computer is locked, idle or asleep, and whenever the Teams mobile app is in \
         the background. Away does not mean the person was away from work.",
    ),
    (
        "Statuses set by hand",
        "A status a person sets by hand stays until it is reset or expires: set without a duration, it lasts 1 day \
         for Busy and Do not disturb and 7 days for the others. So a status can persist for up to 7 days whatever \
         the person is doing.",
    ),
    (
        "No rankings, no scores",
        "There are no rankings, scores or idle alerts, by design: rows are ordered by id and time, never by a \
         figure. Presence does not measure work or performance, and a report must not be used to.",
    ),
];

/// Where the explanations come from.
pub const SOURCES: [(&str, &str); 3] = [
    (
        "Away on a locked, idle or sleeping computer and a backgrounded mobile app: Microsoft, User presence in Teams",
        "https://learn.microsoft.com/microsoftteams/presence-admins",
    ),
    (
        "Expiry of a status set without a duration (1 day, 7 days): Microsoft Graph, presence: setUserPreferredPresence",
        "https://learn.microsoft.com/graph/api/presence-setuserpreferredpresence",
    ),
    (
        "The availability values, PresenceUnknown among them: Microsoft Graph, presence resource type",
        "https://learn.microsoft.com/graph/api/resources/presence",
    ),
];

/// What aggregate rows are, and the rule that admits them.
fn rule(report: &Report) -> String {
    let min = report.spec.policy.min_users.get();
    match report.spec.rows {
        Rows::Aggregate => format!(
            "Aggregate rows: each sums the time of all {} selected users (person-seconds, adding up to users x \
             the bucket's length); selections under {min} users are refused.",
            report.users
        ),
        Rows::PerUser => format!(
            "Per-user rows (REPORT_MODE=per-user, chosen for this installation); aggregate reports need at least \
             {min} users."
        ),
    }
}

/// The range as a reader sees it.
fn range_text(report: &Report) -> String {
    let spec = &report.spec;
    format!(
        "{} to {} ({}), by {}",
        spec.zone.rfc3339(spec.range.from),
        spec.zone.rfc3339(spec.range.to),
        spec.zone.name(),
        spec.bucket.as_str()
    )
}

fn hours_text(report: &Report) -> Option<String> {
    report.spec.hours.map(|h| format!("{} {}-{}", h.days, h.start, h.end))
}

/// Exact seconds as `h:mm:ss`.
fn hms(seconds: u64) -> String {
    format!("{}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// The value keys in the order of the report's columns.
fn keys(report: &Report) -> impl Iterator<Item = &str> {
    report.values.iter().map(State::key)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
