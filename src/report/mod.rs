//! Time-in-availability reports over the stored history, honest about what was not observed.
//!
//! The pure core: no store, Graph or clock. The stores feed it a run ledger ([`LedgerEntry`])
//! and each selected user's records, oldest first ([`ReportBuilder`], or [`build`] for plain
//! iterators); [`render`] turns the [`Report`] into a table, CSV, JSON or a self-contained HTML
//! page. The semantics ([`interval`]) are written down in docs/reports.md.
//!
//! ```text
//! ReportSpec::parse(flags, policy, now) ─┐
//! ledger entries ────────────────────────┼─> ReportBuilder ─> Report ─> render(table|csv|json|html)
//! each user's records, oldest first ─────┘
//! ```

mod aggregate;
pub mod calendar;
pub mod input;
pub mod interval;
mod render;

use std::str::FromStr;

use chrono::{DateTime, Utc};

pub use aggregate::{
    DayStrip, HourCell, MinUsers, Parts, Policy, Report, ReportBuilder, ReportMode, Row, Rows, Selection, Subject,
    Timeline, UserFeed, build,
};
pub use calendar::{BucketKind, Range, WorkingHours, Zone};
pub use input::{LedgerEntry, Membership, NOT_OBSERVED, RunFigures, RunOutcome, UNTRACKED, untracked};
pub use interval::State;
pub use render::render;

use crate::model::Slot;

/// Why a report cannot be made, each naming what is wrong and what is expected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error(
        "--tz {value:?} is not a time zone: expected an IANA zone name such as Europe/Berlin, America/New_York or UTC"
    )]
    UnknownZone { value: String },
    #[error(
        "{flag} {value:?} is not a time: expected RFC 3339 such as 2026-03-02T09:00:00+01:00, or a date such as \
         2026-03-02 meaning midnight in the report's zone (years 1970 to 9999)"
    )]
    BadTime { flag: &'static str, value: String },
    #[error("--from {from} is not before --to {to}: expected a range at least one second long")]
    EmptyRange { from: String, to: String },
    #[error("--bucket {value:?}: expected none, day, week or month")]
    BadBucket { value: String },
    #[error("--hours {value:?}: {reason}; expected HH:MM-HH:MM in the report's zone, such as 09:00-17:00")]
    BadHours { value: String, reason: String },
    #[error("--days {value:?}: {reason}; expected days such as Mon-Fri or Mon,Wed,Fri (Mon Tue Wed Thu Fri Sat Sun)")]
    BadDays { value: String, reason: String },
    #[error("--format {value:?}: expected table, csv, json or html")]
    BadFormat { value: String },
    #[error("REPORT_MODE {value:?}: expected aggregate or per-user")]
    BadMode { value: String },
    #[error("REPORT_MIN_USERS {value:?}: expected a whole number of at least 5 (the minimum is never below 5)")]
    BadMinUsers { value: String },
    #[error(
        "reports are aggregate-only here (REPORT_MODE=aggregate): users cannot be selected one by one; select \
         groups (--group) or all tracked users"
    )]
    UserSelectionRefused,
    #[error(
        "reports are aggregate-only here (REPORT_MODE=aggregate): per-user rows are refused; ask for totals \
         (--aggregate), or have the installation switched to REPORT_MODE=per-user where that was agreed"
    )]
    PerUserRowsRefused,
    #[error(
        "the selection has {users} users: aggregate reports need at least {min} (REPORT_MIN_USERS), so that no \
         one person's time can be read from a total"
    )]
    TooFewUsers { users: usize, min: u32 },
    #[error("the ledger entry of slot {slot} vouches for {period_ms} ms: expected a positive period")]
    BadPeriod { slot: Slot, period_ms: i64 },
    #[error(
        "record {position} of a user is dated {at}, before the record before it ({previous}): a user's records \
         must come oldest first"
    )]
    RecordOutOfOrder { position: u64, at: DateTime<Utc>, previous: DateTime<Utc> },
    #[error("record {position} given for a user belongs to someone else: each user's records must be theirs only")]
    ForeignRecord { position: u64 },
    #[error("a user was given twice: each selected user's records must be given once")]
    DuplicateUser,
    #[error("this report was built without timelines, which the html format needs (ReportSpec::timelines)")]
    TimelinesNotKept,
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ReportError>),
}

/// The renderings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    Html,
}

impl Format {
    /// The HTTP content type of the rendering.
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

impl FromStr for Format {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "html" => Ok(Format::Html),
            _ => Err(ReportError::BadFormat { value: text.to_string() }),
        }
    }
}

/// The calendar flags of a report as given (command line or query string), each optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpecArgs<'a> {
    pub tz: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub bucket: Option<&'a str>,
    pub hours: Option<&'a str>,
    pub days: Option<&'a str>,
    /// `--aggregate`: totals over the selection even where per-user rows are allowed.
    pub aggregate: bool,
}

/// What a report covers and how, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSpec {
    pub zone: Zone,
    pub range: Range,
    pub bucket: BucketKind,
    pub hours: Option<WorkingHours>,
    pub rows: Rows,
    pub policy: Policy,
    /// Keep each user's (or the selection's) day-by-day timeline: the html format needs it; the
    /// others do not, and per-user timelines grow with the records.
    pub timelines: bool,
}

impl ReportSpec {
    /// Parses every flag, reporting every bad one at once. Rows are aggregated when asked to, and
    /// always in aggregate mode.
    pub fn parse(
        args: &SpecArgs<'_>,
        policy: Policy,
        now: DateTime<Utc>,
        timelines: bool,
    ) -> Result<Self, ReportError> {
        let mut errors = Vec::new();
        let zone = match args.tz.map_or(Ok(Zone::UTC), str::parse) {
            Ok(zone) => zone,
            Err(e) => {
                errors.push(e);
                Zone::UTC
            }
        };
        let range = Range::resolve(zone, args.from, args.to, now).map_err(|e| errors.extend(e)).ok();
        let bucket = args.bucket.map_or(Ok(BucketKind::default()), str::parse).map_err(|e| errors.push(e)).ok();
        let hours = WorkingHours::parse(args.hours, args.days).map_err(|e| errors.extend(e)).ok();
        let rows = if args.aggregate || policy.mode == ReportMode::Aggregate { Rows::Aggregate } else { Rows::PerUser };
        match (range, bucket, hours) {
            (Some(range), Some(bucket), Some(hours)) if errors.is_empty() => {
                Ok(ReportSpec { zone, range, bucket, hours, rows, policy, timelines })
            }
            _ if errors.len() == 1 => Err(errors.remove(0)),
            _ => Err(ReportError::Invalid(errors)),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
