//! Building a report: each user's segments counted into buckets, per user or summed over the
//! selection, and the rules that say which reports may be made at all.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::NaiveDate;

use super::calendar::{DayWindow, bucket_spans, day_windows};
use super::input::LedgerEntry;
use super::interval::{Coverage, Cutter, Second, Segment, State, Windows};
use super::{ReportError, ReportSpec};
use crate::model::{ChangeRecord, SubjectId};

/// What the installation allows (`REPORT_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReportMode {
    /// Only totals over groups of at least the minimum number of users (the default).
    #[default]
    Aggregate,
    /// Per-user rows too: must be chosen explicitly, and needs the agreement docs/reports.md names.
    PerUser,
}

impl ReportMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReportMode::Aggregate => "aggregate",
            ReportMode::PerUser => "per-user",
        }
    }
}

impl FromStr for ReportMode {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "aggregate" => Ok(ReportMode::Aggregate),
            "per-user" => Ok(ReportMode::PerUser),
            _ => Err(ReportError::BadMode { value: text.to_string() }),
        }
    }
}

/// The smallest selection an aggregate report may cover (`REPORT_MIN_USERS`): never below 5, the
/// minimum group size Microsoft uses for Viva Insights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinUsers(u32);

impl MinUsers {
    pub const FLOOR: u32 = 5;
    pub const DEFAULT: MinUsers = MinUsers(Self::FLOOR);

    pub fn new(users: u32) -> Result<Self, ReportError> {
        if users < Self::FLOOR {
            return Err(ReportError::BadMinUsers { value: users.to_string() });
        }
        Ok(MinUsers(users))
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

impl Default for MinUsers {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl FromStr for MinUsers {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let users = text.trim().parse::<u32>().map_err(|_| ReportError::BadMinUsers { value: text.to_string() })?;
        MinUsers::new(users).map_err(|_| ReportError::BadMinUsers { value: text.to_string() })
    }
}

/// How rows are given: one per user and bucket, or one per bucket summed over the selection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    Aggregate,
    PerUser,
}

impl Rows {
    /// The JSON `mode`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Rows::Aggregate => "aggregate",
            Rows::PerUser => "per-user",
        }
    }
}

/// How the users of a report were chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Named users (`--user`).
    Users,
    /// The current members of named groups (`--group`).
    Groups,
    /// Every tracked user.
    AllTracked,
}

/// The installation's report settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub mode: ReportMode,
    pub min_users: MinUsers,
}

impl Policy {
    /// Whether a report may be made; call it once the selection's size is known, before reading
    /// any record. In aggregate mode named users and per-user rows are refused, and so is a
    /// selection smaller than the minimum. Per-user mode allows everything.
    pub fn admit(&self, selection: Selection, users: usize, rows: Rows) -> Result<(), ReportError> {
        if self.mode == ReportMode::Aggregate && selection == Selection::Users {
            return Err(ReportError::UserSelectionRefused);
        }
        self.admit_rows(users, rows)
    }

    /// The part of [`Policy::admit`] a finished report checks again.
    pub fn admit_rows(&self, users: usize, rows: Rows) -> Result<(), ReportError> {
        if self.mode == ReportMode::Aggregate {
            if rows == Rows::PerUser {
                return Err(ReportError::PerUserRowsRefused);
            }
            if users < self.min_users.get() as usize {
                return Err(ReportError::TooFewUsers { users, min: self.min_users.get() });
            }
        }
        Ok(())
    }
}

/// One row: a user (or the selection) and a bucket, with the seconds of each value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `None` for an aggregate row.
    pub user: Option<SubjectId>,
    pub users: u64,
    pub start: Second,
    pub end: Second,
    /// Seconds per value, in the order of [`Report::values`]; person-seconds in an aggregate row.
    pub seconds: Vec<u64>,
}

/// Whose time a timeline shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    User(SubjectId),
    Selection { users: u64 },
}

/// One hour (or the part of one in the day's window) of an aggregate timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourCell {
    pub start: Second,
    pub end: Second,
    /// Person-seconds per value, in the order of [`Report::values`].
    pub seconds: Vec<u64>,
}

/// What a day's strip is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parts {
    /// One user's time: consecutive runs of one value, as (seconds, index into the values).
    Segments(Vec<(u64, usize)>),
    /// The selection's time, hour by hour.
    Hours(Vec<HourCell>),
}

/// One day (or its working-hours window) of a timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayStrip {
    pub date: NaiveDate,
    pub start: Second,
    pub end: Second,
    pub parts: Parts,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeline {
    pub subject: Subject,
    pub days: Vec<DayStrip>,
}

/// A finished report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub spec: ReportSpec,
    /// Shortest and longest period of the succeeded runs in the ledger, in seconds.
    pub sampling: Option<(Second, Second)>,
    /// Users in the selection.
    pub users: u64,
    /// The values counted, in display order; `NotObserved` last.
    pub values: Vec<State>,
    /// Per user (by id, then time) or per bucket; never ordered by a figure.
    pub rows: Vec<Row>,
    /// Present when the spec asked for them (the html format needs them).
    pub timelines: Option<Vec<Timeline>>,
}

/// Graph's documented values, in the order a reader expects them (colour groups of Teams).
const DISPLAY_ORDER: [&str; 8] =
    ["Available", "AvailableIdle", "Busy", "BusyIdle", "DoNotDisturb", "BeRightBack", "Away", "Offline"];

/// The parts of a report that do not change while users are added.
struct Frame {
    spec: ReportSpec,
    coverage: Coverage,
    buckets: Vec<(Second, Second)>,
    bucket_windows: Windows,
    days: Vec<DayWindow>,
    day_windows: Windows,
    /// Aggregate timelines: (day index, start, end) of each hour cell.
    hours: Vec<(usize, Second, Second)>,
    hour_windows: Windows,
}

/// What users add up to.
#[derive(Default)]
struct Totals {
    values: Vec<State>,
    index: HashMap<State, usize>,
    rows: Vec<Row>,
    /// Aggregate rows: seconds per bucket and value.
    sums: Vec<Vec<u64>>,
    /// Aggregate timelines: seconds per hour cell and value.
    hour_sums: Vec<Vec<u64>>,
    timelines: Vec<Timeline>,
    seen: HashSet<SubjectId>,
}

impl Totals {
    fn value_index(&mut self, state: State) -> usize {
        if let Some(&index) = self.index.get(&state) {
            return index;
        }
        self.values.push(state.clone());
        self.index.insert(state, self.values.len() - 1);
        self.values.len() - 1
    }
}

fn add(counts: &mut Vec<u64>, value: usize, seconds: u64) {
    if counts.len() <= value {
        counts.resize(value + 1, 0);
    }
    counts[value] += seconds;
}

/// Builds a report one user at a time: memory grows with users and buckets, not with records.
pub struct ReportBuilder {
    frame: Frame,
    totals: Totals,
}

impl ReportBuilder {
    pub fn new(spec: ReportSpec, ledger: impl IntoIterator<Item = LedgerEntry>) -> Result<Self, ReportError> {
        let coverage = Coverage::from_ledger(ledger)?;
        let buckets = bucket_spans(spec.zone, spec.bucket, spec.range);
        let days = day_windows(spec.zone, spec.hours.as_ref(), spec.range);
        // Counted time = each day's window, cut where buckets meet.
        let mut counted = Vec::new();
        for day in &days {
            for (index, &(start, end)) in buckets.iter().enumerate() {
                let (start, end) = (start.max(day.start), end.min(day.end));
                if end > start {
                    counted.push((start, end, index));
                }
            }
        }
        let day_windows = Windows::new(days.iter().enumerate().map(|(i, d)| (d.start, d.end, i)).collect());
        let mut hours = Vec::new();
        if spec.timelines && spec.rows == Rows::Aggregate {
            for (index, day) in days.iter().enumerate() {
                let mut start = day.start;
                while start < day.end {
                    let end = (start + 3600).min(day.end);
                    hours.push((index, start, end));
                    start = end;
                }
            }
        }
        let hour_windows = Windows::new(hours.iter().enumerate().map(|(i, &(_, s, e))| (s, e, i)).collect());
        let totals = Totals {
            sums: vec![Vec::new(); buckets.len()],
            hour_sums: vec![Vec::new(); hours.len()],
            ..Totals::default()
        };
        // NotObserved is always a column, even in a report where everything was observed.
        let mut builder = ReportBuilder {
            frame: Frame {
                spec,
                coverage,
                buckets,
                bucket_windows: Windows::new(counted),
                days,
                day_windows,
                hours,
                hour_windows,
            },
            totals,
        };
        builder.totals.value_index(State::NotObserved);
        Ok(builder)
    }

    /// Starts a user's records; each user is given once.
    pub fn user(&mut self, user: SubjectId) -> Result<UserFeed<'_>, ReportError> {
        if !self.totals.seen.insert(user) {
            return Err(ReportError::DuplicateUser);
        }
        let frame = &self.frame;
        let strips = if frame.spec.timelines && frame.spec.rows == Rows::PerUser {
            Some(vec![Vec::new(); frame.days.len()])
        } else {
            None
        };
        Ok(UserFeed {
            user,
            cutter: Cutter::new(&frame.coverage, frame.spec.range.from, frame.spec.range.to),
            tally: Tally { frame, totals: &mut self.totals, counts: vec![Vec::new(); frame.buckets.len()], strips },
            pushed: 0,
        })
    }

    /// The report, with its rows in order and the rules checked once more.
    pub fn finish(self) -> Result<Report, ReportError> {
        let ReportBuilder { frame, mut totals } = self;
        let users = totals.seen.len();
        frame.spec.policy.admit_rows(users, frame.spec.rows)?;

        // Display order: Graph's documented values, then others alphabetically, NotObserved last.
        let mut order: Vec<usize> = (0..totals.values.len()).collect();
        order.sort_by_key(|&i| match &totals.values[i] {
            State::Observed(v) => {
                (DISPLAY_ORDER.iter().position(|d| *d == v.as_str()).unwrap_or(DISPLAY_ORDER.len()), v.as_str())
            }
            State::NotObserved => (usize::MAX, ""),
        });
        let values: Vec<State> = order.iter().map(|&i| totals.values[i].clone()).collect();
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let reorder = |counts: &[u64]| -> Vec<u64> {
            let mut out = vec![0; values.len()];
            for (old, &seconds) in counts.iter().enumerate() {
                out[new_index[old]] = seconds;
            }
            out
        };

        let mut rows = match frame.spec.rows {
            Rows::PerUser => std::mem::take(&mut totals.rows),
            Rows::Aggregate => frame
                .buckets
                .iter()
                .zip(&totals.sums)
                .map(|(&(start, end), sums)| Row { user: None, users: users as u64, start, end, seconds: sums.clone() })
                .collect(),
        };
        for row in &mut rows {
            row.seconds = reorder(&row.seconds);
        }
        rows.sort_by_key(|row| (row.user, row.start));

        let timelines = frame.spec.timelines.then(|| match frame.spec.rows {
            Rows::PerUser => {
                let mut timelines = std::mem::take(&mut totals.timelines);
                for timeline in &mut timelines {
                    for day in &mut timeline.days {
                        if let Parts::Segments(parts) = &mut day.parts {
                            for part in parts.iter_mut() {
                                part.1 = new_index[part.1];
                            }
                        }
                    }
                }
                timelines.sort_by_key(|t| match t.subject {
                    Subject::User(user) => Some(user),
                    Subject::Selection { .. } => None,
                });
                timelines
            }
            Rows::Aggregate => {
                let mut days: Vec<DayStrip> = frame
                    .days
                    .iter()
                    .map(|d| DayStrip { date: d.date, start: d.start, end: d.end, parts: Parts::Hours(Vec::new()) })
                    .collect();
                for (&(day, start, end), sums) in frame.hours.iter().zip(&totals.hour_sums) {
                    if let Parts::Hours(cells) = &mut days[day].parts {
                        cells.push(HourCell { start, end, seconds: reorder(sums) });
                    }
                }
                vec![Timeline { subject: Subject::Selection { users: users as u64 }, days }]
            }
        });

        Ok(Report {
            sampling: frame.coverage.periods(),
            users: users as u64,
            values,
            rows,
            timelines,
            spec: frame.spec,
        })
    }
}

/// One user's records going into a report, oldest first.
pub struct UserFeed<'b> {
    user: SubjectId,
    cutter: Cutter<'b>,
    tally: Tally<'b>,
    pushed: u64,
}

impl UserFeed<'_> {
    pub fn push(&mut self, record: ChangeRecord) -> Result<(), ReportError> {
        self.pushed += 1;
        if record.subject != self.user {
            return Err(ReportError::ForeignRecord { position: self.pushed });
        }
        self.cutter.push(record.timestamp, record.availability, |segment| self.tally.count(segment))
    }

    /// Adds this user to the report.
    pub fn finish(self) {
        let UserFeed { user, cutter, mut tally, .. } = self;
        cutter.finish(|segment| tally.count(segment));
        let Tally { frame, totals, counts, strips } = tally;
        match frame.spec.rows {
            Rows::PerUser => {
                for (&(start, end), seconds) in frame.buckets.iter().zip(counts) {
                    totals.rows.push(Row { user: Some(user), users: 1, start, end, seconds });
                }
            }
            Rows::Aggregate => {
                for (sums, counts) in totals.sums.iter_mut().zip(counts) {
                    for (value, seconds) in counts.into_iter().enumerate() {
                        add(sums, value, seconds);
                    }
                }
            }
        }
        if let Some(strips) = strips {
            let days = frame
                .days
                .iter()
                .zip(strips)
                .map(|(d, parts)| DayStrip { date: d.date, start: d.start, end: d.end, parts: Parts::Segments(parts) })
                .collect();
            totals.timelines.push(Timeline { subject: Subject::User(user), days });
        }
    }
}

/// Where one user's segments are counted.
struct Tally<'b> {
    frame: &'b Frame,
    totals: &'b mut Totals,
    /// Seconds per bucket and value.
    counts: Vec<Vec<u64>>,
    /// Per-user timelines: each day's runs of one value, as (seconds, value).
    strips: Option<Vec<Vec<(u64, usize)>>>,
}

impl Tally<'_> {
    fn count(&mut self, segment: Segment) {
        let Segment { start, end, state } = segment;
        let value = self.totals.value_index(state);
        let counts = &mut self.counts;
        self.frame.bucket_windows.overlaps(start, end, |bucket, seconds| add(&mut counts[bucket], value, seconds));
        if let Some(strips) = &mut self.strips {
            self.frame.day_windows.overlaps(start, end, |day, seconds| {
                let parts = &mut strips[day];
                match parts.last_mut() {
                    Some(last) if last.1 == value => last.0 += seconds,
                    _ => parts.push((seconds, value)),
                }
            });
        }
        let hour_sums = &mut self.totals.hour_sums;
        self.frame.hour_windows.overlaps(start, end, |cell, seconds| add(&mut hour_sums[cell], value, seconds));
    }
}

/// Builds a report from plain iterators: the ledger, and each user with their records.
pub fn build<U, R>(
    spec: ReportSpec,
    ledger: impl IntoIterator<Item = LedgerEntry>,
    users: U,
) -> Result<Report, ReportError>
where
    U: IntoIterator<Item = (SubjectId, R)>,
    R: IntoIterator<Item = ChangeRecord>,
{
    let mut builder = ReportBuilder::new(spec, ledger)?;
    for (user, records) in users {
        let mut feed = builder.user(user)?;
        for record in records {
            feed.push(record)?;
        }
        feed.finish();
    }
    builder.finish()
}
