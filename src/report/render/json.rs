//! The JSON rendering, exactly:
//! `{"from","to","timeZone","bucket","mode","minUsers","workingHours":null|{"days","from","to"},
//! "rows":[{"userId":<GUID or null>,"users","start","end","seconds":{<value>:<n>,…,"NotObserved":<n>}}]}`.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::keys;
use crate::report::aggregate::{Report, Row};

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    from: String,
    to: String,
    time_zone: &'static str,
    bucket: &'static str,
    mode: &'static str,
    min_users: u32,
    working_hours: Option<WorkingHours>,
    rows: Rows<'a>,
}

#[derive(serde::Serialize)]
struct WorkingHours {
    days: Vec<&'static str>,
    from: String,
    to: String,
}

/// Rows serialised as they are read, without a copy of the report.
struct Rows<'a>(&'a Report);

struct JsonRow<'a> {
    report: &'a Report,
    row: &'a Row,
}

impl Serialize for Rows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.rows.len()))?;
        for row in &self.0.rows {
            seq.serialize_element(&JsonRow { report: self.0, row })?;
        }
        seq.end()
    }
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let zone = self.report.spec.zone;
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("userId", &self.row.user)?;
        map.serialize_entry("users", &self.row.users)?;
        map.serialize_entry("start", &zone.rfc3339(self.row.start))?;
        map.serialize_entry("end", &zone.rfc3339(self.row.end))?;
        map.serialize_entry("seconds", &Seconds(self))?;
        map.end()
    }
}

struct Seconds<'a>(&'a JsonRow<'a>);

impl Serialize for Seconds<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let JsonRow { report, row } = self.0;
        serializer.collect_map(keys(report).zip(row.seconds.iter()))
    }
}

pub fn render(report: &Report) -> String {
    let spec = &report.spec;
    let document = Document {
        from: spec.zone.rfc3339(spec.range.from),
        to: spec.zone.rfc3339(spec.range.to),
        time_zone: spec.zone.name(),
        bucket: spec.bucket.as_str(),
        mode: spec.rows.as_str(),
        min_users: spec.policy.min_users.get(),
        working_hours: spec.hours.map(|h| WorkingHours {
            days: h.days.names(),
            from: h.start.to_string(),
            to: h.end.to_string(),
        }),
        rows: Rows(report),
    };
    // Serialising plain structs, strings and numbers into memory cannot fail.
    serde_json::to_string_pretty(&document).unwrap_or_default()
}
