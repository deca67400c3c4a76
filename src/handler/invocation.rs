//! The Functions host's timer invocation payload, read leniently.
//!
//! The host writes it with Newtonsoft from `TimerInfo`: PascalCase keys, `ScheduleStatus` null when
//! `useMonitor` is off, and timestamps in several shapes (`Z`, `+hh:mm`, 0–7 fraction digits, and
//! the offsetless `0001-01-01T00:00:00` that stands for "never").

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Timelike, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::model::Slot;

#[derive(Clone, Debug, PartialEq)]
pub struct TimerInvocation {
    pub is_past_due: bool,
    /// `ScheduleStatus.Next`: the occurrence this invocation runs (the missed one when past due).
    pub scheduled: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    /// `Metadata.sys.UtcNow`: when the host made the invocation.
    pub host_utc_now: Option<DateTime<Utc>>,
}

/// What a timer invocation looks like, for the errors that say what was expected.
const EXPECTED_SHAPE: &str = "expected the host's timer invocation {\"Data\":{\"<timer>\":{...}},\"Metadata\":{...}}";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvocationError {
    #[error("the request body is not JSON ({0}): {EXPECTED_SHAPE}")]
    NotJson(String),
    #[error("the request body is not a timer invocation: {0}")]
    Shape(String),
    #[error("{field} is {value:?}: expected an ISO 8601 date-time such as 2026-11-22T10:05:00Z")]
    Timestamp { field: &'static str, value: String },
    #[error("the invocation names no schedule slot: expected Data.<timer>.ScheduleStatus.Next or Metadata.sys.UtcNow")]
    NoSlot,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(alias = "data")]
    #[serde(rename = "Data")]
    data: Option<serde_json::Map<String, Value>>,
    #[serde(alias = "metadata")]
    #[serde(rename = "Metadata")]
    metadata: Option<Value>,
}

impl TimerInvocation {
    pub fn parse(body: &[u8]) -> Result<Self, InvocationError> {
        // JSON first, then its shape: read straight into the envelope, serde would call valid JSON
        // (an array of three) "not JSON", bytes after a number a shape error, and take an array
        // of two for the envelope's two fields.
        let json: Value = serde_json::from_slice(body).map_err(|e| InvocationError::NotJson(e.to_string()))?;
        if !json.is_object() {
            let kind = match json {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                Value::Number(_) => "a number",
                Value::Bool(_) => "a boolean",
                _ => "null",
            };
            return Err(InvocationError::Shape(format!("the body is {kind}, not an object: {EXPECTED_SHAPE}")));
        }
        let envelope: Envelope =
            serde_json::from_value(json).map_err(|e| InvocationError::Shape(format!("{e}: {EXPECTED_SHAPE}")))?;
        let data =
            envelope.data.ok_or_else(|| InvocationError::Shape(format!("\"Data\" is missing: {EXPECTED_SHAPE}")))?;
        let timer = find_timer(&data)?;

        let is_past_due = match get_ci(&timer, "IsPastDue") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") => {
                s.eq_ignore_ascii_case("true")
            }
            Some(other) => return Err(InvocationError::Shape(format!("IsPastDue is {other}: expected true or false"))),
        };
        let status = match get_ci(&timer, "ScheduleStatus") {
            None | Some(Value::Null) => None,
            Some(Value::Object(status)) => Some(status.clone()),
            Some(other) => {
                return Err(InvocationError::Shape(format!("ScheduleStatus is {other}: expected an object or null")));
            }
        };
        let status_time = |field: &'static str, key: &str| -> Result<Option<DateTime<Utc>>, InvocationError> {
            match status.as_ref().and_then(|s| get_ci(s, key)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(text)) => parse_timestamp(field, text),
                Some(other) => Err(InvocationError::Timestamp { field, value: other.to_string() }),
            }
        };
        let scheduled = status_time("ScheduleStatus.Next", "Next")?;
        let last = status_time("ScheduleStatus.Last", "Last")?;
        status_time("ScheduleStatus.LastUpdated", "LastUpdated")?;

        let utc_now = envelope
            .metadata
            .as_ref()
            .and_then(|m| m.as_object())
            .and_then(|m| get_ci(m, "sys"))
            .and_then(|sys| sys.as_object())
            .and_then(|sys| get_ci(sys, "UtcNow"));
        let host_utc_now = match utc_now {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => parse_timestamp("Metadata.sys.UtcNow", text)?,
            Some(other) => {
                return Err(InvocationError::Timestamp { field: "Metadata.sys.UtcNow", value: other.to_string() });
            }
        };

        Ok(TimerInvocation { is_past_due, scheduled, last, host_utc_now })
    }

    /// The slot this run is keyed by: the scheduled occurrence when the host tracks schedule
    /// status, otherwise the host's invocation time to the minute (the timer fires on whole
    /// minutes, a few milliseconds late).
    pub fn slot(&self) -> Result<Slot, InvocationError> {
        if let Some(next) = self.scheduled {
            return Ok(Slot::new(next));
        }
        let now = self.host_utc_now.ok_or(InvocationError::NoSlot)?;
        let minute = now.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now);
        Ok(Slot::new(minute))
    }

    pub fn describe(&self) -> String {
        let fmt =
            |t: Option<DateTime<Utc>>| t.map_or("none".to_string(), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
        format!("past_due={} scheduled={} last={}", self.is_past_due, fmt(self.scheduled), fmt(self.last))
    }
}

/// The timer binding's value: the one object in `Data` (its key is the binding name from
/// function.json, which the handler need not know). A value sent as a JSON string is unwrapped.
fn find_timer(data: &serde_json::Map<String, Value>) -> Result<serde_json::Map<String, Value>, InvocationError> {
    let mut candidates = data.values().filter_map(|v| match v {
        Value::Object(o) => Some(o.clone()),
        Value::String(s) => serde_json::from_str::<Value>(s).ok().and_then(|v| v.as_object().cloned()),
        _ => None,
    });
    let timer = candidates.find(|o| ["Schedule", "ScheduleStatus", "IsPastDue"].iter().any(|k| get_ci(o, k).is_some()));
    timer.ok_or_else(|| {
        let keys: Vec<&String> = data.keys().collect();
        InvocationError::Shape(format!(
            "no timer binding in Data (keys {keys:?}): expected an object with Schedule, ScheduleStatus and IsPastDue"
        ))
    })
}

pub(crate) fn get_ci<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| object.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// RFC 3339 with `Z` or an offset and any number of fraction digits; an offsetless value is UTC
/// (Functions on Linux run in UTC); `0001-01-01T00:00:00` (.NET's default) means "never".
pub fn parse_timestamp(field: &'static str, text: &str) -> Result<Option<DateTime<Utc>>, InvocationError> {
    let bad = || InvocationError::Timestamp { field, value: text.to_string() };
    let trimmed = text.trim();
    if trimmed.starts_with("0001-01-01") {
        return Ok(None);
    }
    let fraction_ok =
        trimmed.split('.').nth(1).is_none_or(|rest| rest.chars().take_while(char::is_ascii_digit).count() <= 9);
    if !fraction_ok {
        // chrono reads at most nanoseconds; longer fractions are truncated rather than refused.
        let (head, rest) = trimmed.split_once('.').ok_or_else(bad)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let tail = &rest[digits.len()..];
        return parse_timestamp(field, &format!("{head}.{}{tail}", &digits[..9]));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(trimmed, format) {
            return Ok(Some(Utc.from_utc_datetime(&t)));
        }
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn timestamps_in_every_host_shape() {
        let cases = [
            ("2026-11-22T10:05:00Z", "2026-11-22T10:05:00Z"),
            ("2026-11-22T10:05:00.1234567+00:00", "2026-11-22T10:05:00.1234567Z"),
            ("2026-11-22T11:05:00.5+01:00", "2026-11-22T10:05:00.5Z"),
            ("2026-11-22T10:05:00", "2026-11-22T10:05:00Z"),
            ("2026-11-22T10:05:00.0000000", "2026-11-22T10:05:00Z"),
            ("2026-11-22T10:05:00.123456789012Z", "2026-11-22T10:05:00.123456789Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_timestamp("f", input).unwrap(), Some(ts(expected)), "{input}");
        }
        assert_eq!(parse_timestamp("f", "0001-01-01T00:00:00").unwrap(), None);
        assert_eq!(parse_timestamp("f", "0001-01-01T00:00:00+00:00").unwrap(), None);
        let err = parse_timestamp("ScheduleStatus.Next", "yesterday").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ScheduleStatus.Next is \"yesterday\": expected an ISO 8601 date-time such as 2026-11-22T10:05:00Z"
        );
    }

    #[test]
    fn slot_prefers_schedule_status_then_invocation_minute() {
        let body = br#"{"Data":{"timer":{"ScheduleStatus":{"Last":"2026-11-22T10:00:00Z","Next":"2026-11-22T10:05:00Z"},"IsPastDue":false}},
                        "Metadata":{"sys":{"UtcNow":"2026-11-22T10:05:00.0123Z"}}}"#;
        assert_eq!(TimerInvocation::parse(body).unwrap().slot().unwrap().at(), ts("2026-11-22T10:05:00Z"));
        let body = br#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},
                        "Metadata":{"sys":{"UtcNow":"2026-11-22T10:05:00.0123Z"}}}"#;
        assert_eq!(TimerInvocation::parse(body).unwrap().slot().unwrap().at(), ts("2026-11-22T10:05:00Z"));
        let body = br#"{"Data":{"timer":{"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{}}"#;
        assert_eq!(TimerInvocation::parse(body).unwrap().slot(), Err(InvocationError::NoSlot));
    }

    #[test]
    fn past_due_catch_up_and_next_regular_run_are_different_slots() {
        let catch_up = br#"{"Data":{"timer":{"ScheduleStatus":{"Last":"2026-11-22T08:00:00Z","Next":"2026-11-22T08:05:00Z"},"IsPastDue":true}},
                            "Metadata":{"sys":{"UtcNow":"2026-11-22T10:02:13Z"}}}"#;
        let regular = br#"{"Data":{"timer":{"ScheduleStatus":{"Last":"2026-11-22T10:02:13Z","Next":"2026-11-22T10:05:00Z"},"IsPastDue":false}},
                           "Metadata":{"sys":{"UtcNow":"2026-11-22T10:05:00Z"}}}"#;
        let a = TimerInvocation::parse(catch_up).unwrap();
        let b = TimerInvocation::parse(regular).unwrap();
        assert!(a.is_past_due);
        assert_ne!(a.slot().unwrap(), b.slot().unwrap());
    }

    #[test]
    fn shape_errors_name_the_problem() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "not JSON"),
            (b"{}", "\"Data\" is missing"),
            (br#"{"Data":{"x":1}}"#, "no timer binding"),
            (br#"{"Data":{"t":{"IsPastDue":"maybe"}}}"#, "IsPastDue is \"maybe\""),
            (br#"{"Data":{"t":{"ScheduleStatus":{"Next":42}}}}"#, "ScheduleStatus.Next is \"42\""),
        ];
        for (body, expected) in cases {
            let err = TimerInvocation::parse(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }
}
