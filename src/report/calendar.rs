//! The report's calendar: its IANA time zone, its range, buckets (day, ISO week, month) and
//! working hours, all turned into spans of UTC seconds.
//!
//! Local times are resolved as RFC 5545 §3.3.5 says
//! (<https://www.rfc-editor.org/rfc/rfc5545#section-3.3.5>): a local time that occurs twice
//! (clocks going back) is the first one; a local time that does not exist (clocks going forward)
//! is read with the offset in effect before the gap, i.e. moved later by the gap's length. So a
//! day is 23 or 25 hours long on the days the clocks change, and midnight always exists.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use chrono::{LocalResult, Weekday};
use chrono_tz::Tz;

use super::ReportError;
use super::interval::Second;

/// Dates a report accepts: well inside what the date arithmetic below can represent.
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 9999;

/// An IANA time zone from the tz database compiled into the binary (`chrono-tz`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone(Tz);

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// The local time of a second.
    pub fn at(&self, second: Second) -> DateTime<Tz> {
        // Seconds here come from dates between FIRST_YEAR and LAST_YEAR, always representable.
        DateTime::from_timestamp(second, 0).unwrap_or_default().with_timezone(&self.0)
    }

    /// RFC 3339 with the zone's offset at that second, e.g. `2026-03-29T00:00:00+01:00`.
    pub fn rfc3339(&self, second: Second) -> String {
        self.at(second).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    }

    pub fn date_of(&self, second: Second) -> NaiveDate {
        self.at(second).date_naive()
    }

    /// The UTC second of a local time (RFC 5545 §3.3.5, see the module comment).
    pub fn resolve(&self, local: NaiveDateTime) -> Second {
        match self.0.from_local_datetime(&local) {
            LocalResult::Single(at) => at.timestamp(),
            LocalResult::Ambiguous(earliest, _) => earliest.timestamp(),
            LocalResult::None => {
                let before = self.0.offset_from_utc_datetime(&(local - TimeDelta::days(1))).fix();
                local.and_utc().timestamp() - i64::from(before.local_minus_utc())
            }
        }
    }

    /// The first second of a local date.
    pub fn midnight(&self, date: NaiveDate) -> Second {
        self.resolve(date.and_time(NaiveTime::MIN))
    }
}

impl FromStr for Zone {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.trim().parse::<Tz>().map(Zone).map_err(|_| ReportError::UnknownZone { value: text.to_string() })
    }
}

/// `--from` / `--to`: RFC 3339, or a date meaning midnight in the report's zone.
pub fn parse_bound(flag: &'static str, text: &str, zone: Zone) -> Result<Second, ReportError> {
    let text = text.trim();
    let bad = || ReportError::BadTime { flag, value: text.to_string() };
    let (second, year) = if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        (at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0), at.year())
    } else if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
            return Err(bad());
        }
        (zone.midnight(date), date.year())
    } else {
        return Err(bad());
    };
    if !(FIRST_YEAR..=LAST_YEAR).contains(&year) {
        return Err(bad());
    }
    Ok(second)
}

/// The report's range `[from, to)` in UTC seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub from: Second,
    pub to: Second,
}

impl Range {
    /// From the flags, each optional: `--to` defaults to today's midnight in the zone (so the
    /// range ends with the last full day), `--from` to midnight seven days before `--to`'s date.
    pub fn resolve(
        zone: Zone,
        from: Option<&str>,
        to: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Range, Vec<ReportError>> {
        let to = match to {
            Some(text) => parse_bound("--to", text, zone),
            None => Ok(zone.midnight(now.with_timezone(&zone.0).date_naive())),
        };
        let from = match (from, &to) {
            (Some(text), _) => parse_bound("--from", text, zone),
            (None, Ok(to)) => Ok(zone.midnight(zone.date_of(*to) - Days::new(7))),
            (None, Err(_)) => Ok(0),
        };
        match (from, to) {
            (Ok(from), Ok(to)) if from < to => Ok(Range { from, to }),
            (Ok(from), Ok(to)) => Err(vec![ReportError::EmptyRange { from: zone.rfc3339(from), to: zone.rfc3339(to) }]),
            (from, to) => Err([from.err(), to.err()].into_iter().flatten().collect()),
        }
    }
}

/// How rows split the range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BucketKind {
    /// One row for the whole range.
    None,
    /// Local calendar days.
    #[default]
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    /// Calendar months.
    Month,
}

impl BucketKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            BucketKind::None => "none",
            BucketKind::Day => "day",
            BucketKind::Week => "week",
            BucketKind::Month => "month",
        }
    }

    /// The first day of the bucket holding `date`.
    fn floor(&self, date: NaiveDate) -> NaiveDate {
        match self {
            BucketKind::None | BucketKind::Day => date,
            BucketKind::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            BucketKind::Month => date.with_day(1).unwrap_or(date),
        }
    }

    /// The first day of the next bucket after the one starting on `start`.
    fn next(&self, start: NaiveDate) -> NaiveDate {
        match self {
            BucketKind::None | BucketKind::Day => start + Days::new(1),
            BucketKind::Week => start + Days::new(7),
            BucketKind::Month => start + Months::new(1),
        }
    }
}

impl FromStr for BucketKind {
    type Err = ReportError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(BucketKind::None),
            "day" => Ok(BucketKind::Day),
            "week" => Ok(BucketKind::Week),
            "month" => Ok(BucketKind::Month),
            _ => Err(ReportError::BadBucket { value: text.to_string() }),
        }
    }
}

/// The buckets of a range, in order, each clipped to it.
pub fn bucket_spans(zone: Zone, kind: BucketKind, range: Range) -> Vec<(Second, Second)> {
    if kind == BucketKind::None {
        return vec![(range.from, range.to)];
    }
    let mut spans = Vec::new();
    let mut date = kind.floor(zone.date_of(range.from));
    loop {
        let next = kind.next(date);
        let (start, end) = (zone.midnight(date).max(range.from), zone.midnight(next).min(range.to));
        if end > start {
            spans.push((start, end));
        }
        if zone.midnight(next) >= range.to {
            return spans;
        }
        date = next;
    }
}

/// The days of a week working hours apply to, Monday first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeekDays([bool; 7]);

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_DAY_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

impl WeekDays {
    pub const ALL: WeekDays = WeekDays([true; 7]);

    pub fn contains(&self, day: Weekday) -> bool {
        self.0[day.num_days_from_monday() as usize]
    }

    /// The days in order, as `Mon`, `Tue`, ...
    pub fn names(&self) -> Vec<&'static str> {
        DAY_NAMES.iter().zip(self.0).filter(|(_, on)| *on).map(|(name, _)| *name).collect()
    }

    fn index(name: &str) -> Option<usize> {
        let name = name.trim().to_ascii_lowercase();
        FULL_DAY_NAMES.iter().position(|full| *full == name || full[..3] == name)
    }
}

impl FromStr for WeekDays {
    type Err = ReportError;

    /// `Mon-Fri`, `Mon,Wed,Fri`, `Sun-Thu`, `Fri-Mon` (a range wraps over Sunday).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| ReportError::BadDays { value: text.to_string(), reason };
        let mut days = [false; 7];
        for item in text.split(',') {
            let (first, last) = item.split_once('-').unwrap_or((item, item));
            let first = WeekDays::index(first).ok_or_else(|| bad(format!("{:?} is not a day", first.trim())))?;
            let last = WeekDays::index(last).ok_or_else(|| bad(format!("{:?} is not a day", last.trim())))?;
            let mut day = first;
            loop {
                days[day] = true;
                if day == last {
                    break;
                }
                day = (day + 1) % 7;
            }
        }
        Ok(WeekDays(days))
    }
}

impl fmt::Display for WeekDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

/// A time of day in minutes, `0..=1440` (1440 is `24:00`, the end of the day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(u32);

impl ClockTime {
    fn parse(text: &str) -> Option<ClockTime> {
        let (hours, minutes) = text.trim().split_once(':')?;
        let valid =
            |part: &str, max_len| !part.is_empty() && part.len() <= max_len && part.bytes().all(|b| b.is_ascii_digit());
        if !valid(hours, 2) || !valid(minutes, 2) || minutes.len() != 2 {
            return None;
        }
        let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
        (minutes < 60 && (hours < 24 || (hours == 24 && minutes == 0))).then_some(ClockTime(hours * 60 + minutes))
    }

    /// The local time on `date`; `24:00` is the next day's midnight.
    fn on(&self, date: NaiveDate) -> NaiveDateTime {
        let midnight = date.and_time(NaiveTime::MIN);
        midnight + TimeDelta::minutes(i64::from(self.0))
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// Working hours: a daily window in the report's zone on some days of the week. A window whose
/// end is not after its start (`22:00-06:00`) runs over midnight and belongs to the day it
/// starts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkingHours {
    pub days: WeekDays,
    pub start: ClockTime,
    pub end: ClockTime,
}

impl WorkingHours {
    /// `--hours HH:MM-HH:MM` and `--days`, each optional: hours alone apply to every day, days
    /// alone mean whole days; neither means no working hours.
    pub fn parse(hours: Option<&str>, days: Option<&str>) -> Result<Option<WorkingHours>, Vec<ReportError>> {
        if hours.is_none() && days.is_none() {
            return Ok(None);
        }
        let window = match hours {
            None => Ok((ClockTime(0), ClockTime(24 * 60))),
            Some(text) => parse_window(text),
        };
        let days = days.map_or(Ok(WeekDays::ALL), str::parse);
        match (window, days) {
            (Ok((start, end)), Ok(days)) => Ok(Some(WorkingHours { days, start, end })),
            (window, days) => Err([window.err(), days.err()].into_iter().flatten().collect()),
        }
    }

    /// This date's window as a local start and end.
    fn window_on(&self, date: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
        let end_date = if self.end > self.start { date } else { date + Days::new(1) };
        (self.start.on(date), self.end.on(end_date))
    }
}

fn parse_window(text: &str) -> Result<(ClockTime, ClockTime), ReportError> {
    let bad = |reason: &str| ReportError::BadHours { value: text.to_string(), reason: reason.to_string() };
    let (start, end) = text.split_once('-').ok_or_else(|| bad("no '-' between start and end"))?;
    let start = ClockTime::parse(start)
        .filter(|t| t.0 < 24 * 60)
        .ok_or_else(|| bad("the start is not a time 00:00 to 23:59"))?;
    let end = ClockTime::parse(end).ok_or_else(|| bad("the end is not a time 00:00 to 24:00"))?;
    if start == end {
        return Err(bad("start and end are the same time; 00:00-24:00 is a whole day"));
    }
    Ok((start, end))
}

/// The part of one local day a report counts: the whole day, or its working-hours window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayWindow {
    pub date: NaiveDate,
    pub start: Second,
    pub end: Second,
}

/// The counted part of each day of the range, in order, clipped to the range and disjoint.
/// Without working hours they tile the range.
pub fn day_windows(zone: Zone, hours: Option<&WorkingHours>, range: Range) -> Vec<DayWindow> {
    let mut windows: Vec<DayWindow> = Vec::new();
    // A window over midnight may start the day before the range does.
    let mut date = zone.date_of(range.from) - Days::new(1);
    let last = zone.date_of(range.to);
    while date <= last {
        let span = match hours {
            None => Some((zone.midnight(date), zone.midnight(date + Days::new(1)))),
            Some(hours) if hours.days.contains(date.weekday()) => {
                let (start, end) = hours.window_on(date);
                Some((zone.resolve(start), zone.resolve(end)))
            }
            Some(_) => None,
        };
        if let Some((start, end)) = span {
            // Clocks going back can pull a resolved start before the previous window's end.
            let floor = windows.last().map_or(range.from, |w| w.end.max(range.from));
            let (start, end) = (start.max(floor), end.min(range.to));
            if end > start {
                windows.push(DayWindow { date, start, end });
            }
        }
        date = date + Days::new(1);
    }
    windows
}

#[cfg(test)]
#[path = "calendar_tests.rs"]
mod tests;
