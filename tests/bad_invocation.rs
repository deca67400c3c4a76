//! The host's timer invocation payload, bad in every way: property tests (proptest) that each
//! bad payload is refused with the error that names what is wrong (the field, the value) and what
//! is expected, and that every good one gives the slot it stands for.

#[path = "common/arbitrary_json.rs"]
mod arbitrary_json;

use arbitrary_json::json_value;
use chrono::{DateTime, DurationRound, FixedOffset, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::Value;
use teams_presence::handler::invocation::{InvocationError, TimerInvocation, parse_timestamp};

const VALID: &str = r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-11-22T10:00:00Z","Next":"2026-11-22T10:05:00Z","LastUpdated":"2026-11-22T10:00:00Z"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"function-timer","UtcNow":"2026-11-22T10:05:00.0123Z"}}}"#;

/// Whether `tree` holds `text` as a string, or as the JSON text of a value (how the parser quotes
/// a non-string where a timestamp belongs).
fn holds(tree: &Value, text: &str) -> bool {
    tree.as_str() == Some(text)
        || serde_json::to_string(tree).ok().as_deref() == Some(text)
        || match tree {
            Value::Array(items) => items.iter().any(|v| holds(v, text)),
            Value::Object(map) => map.values().any(|v| holds(v, text)),
            _ => false,
        }
}

/// The timestamp fields of the invocation, as errors name them.
const TIMESTAMP_FIELDS: [&str; 4] =
    ["ScheduleStatus.Next", "ScheduleStatus.Last", "ScheduleStatus.LastUpdated", "Metadata.sys.UtcNow"];
const EXPECTED_SHAPE: &str = r#"expected the host's timer invocation {"Data":{"<timer>":{...}},"Metadata":{...}}"#;

/// An invocation error says what is wrong and what was expected; a timestamp error names its
/// field and quotes the value found in `body`.
fn assert_clear(error: &InvocationError, body: Option<&Value>) -> Result<(), TestCaseError> {
    let message = error.to_string();
    prop_assert!(message.contains("expected"), "says what is expected: {}", message);
    match error {
        InvocationError::NotJson(_) => prop_assert!(message.contains(EXPECTED_SHAPE), "{}", message),
        InvocationError::Timestamp { field, value } => {
            prop_assert!(TIMESTAMP_FIELDS.contains(field), "{}", message);
            prop_assert!(
                message.starts_with(&format!("{field} is {value:?}: expected an ISO 8601 date-time")),
                "{}",
                message
            );
            if let Some(body) = body {
                prop_assert!(holds(body, value), "the quoted value {:?} is not in the body", value);
            }
        }
        InvocationError::Shape(_) | InvocationError::NoSlot => {}
    }
    Ok(())
}

/// An instant and a text for it in one of the host's shapes: `Z`, an offset, or none (UTC),
/// with 0 to 7 fraction digits.
fn host_timestamp() -> impl Strategy<Value = (DateTime<Utc>, String)> {
    (
        0i64..4_102_444_800,
        0usize..=7,
        any::<u32>(),
        prop_oneof![Just(None), Just(Some(0)), (-12 * 60..=14 * 60).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(seconds, digits, fraction, offset_minutes, bare)| {
            let scale = 10u32.pow(digits as u32);
            let fraction = if digits == 0 { 0 } else { fraction % scale };
            let nanos = fraction * (1_000_000_000 / scale);
            let instant = Utc.timestamp_opt(seconds, nanos).unwrap();
            let fraction_text = if digits == 0 { String::new() } else { format!(".{fraction:0digits$}") };
            let text = match offset_minutes {
                None if bare => format!("{}{fraction_text}", instant.format("%Y-%m-%dT%H:%M:%S")),
                None | Some(0) => format!("{}{fraction_text}Z", instant.format("%Y-%m-%dT%H:%M:%S")),
                Some(minutes) => {
                    let offset = FixedOffset::east_opt(minutes * 60).unwrap();
                    let local = instant.with_timezone(&offset);
                    format!("{}{fraction_text}{}", local.format("%Y-%m-%dT%H:%M:%S"), local.format("%:z"))
                }
            };
            (instant, text)
        })
}

/// What replaces one field of a valid invocation.
#[derive(Clone, Debug)]
enum Replacement {
    Timestamp(DateTime<Utc>, String),
    /// .NET's default date-time, which the host writes for "never".
    Never(&'static str),
    /// Text that holds no digit, so no date-time.
    Words(String),
    Null,
    /// A JSON value that is not a string.
    NotAString(Value),
    Bool(bool),
    BoolText(String),
}

fn replacement() -> impl Strategy<Value = Replacement> {
    prop_oneof![
        3 => host_timestamp().prop_map(|(t, text)| Replacement::Timestamp(t, text)),
        1 => prop_oneof![Just("0001-01-01T00:00:00"), Just("0001-01-01T00:00:00+00:00"), Just("0001-01-01T00:00:00Z")].prop_map(Replacement::Never),
        2 => "[a-zA-Z :.T+-]{0,20}".prop_map(Replacement::Words),
        1 => Just(Replacement::Null),
        2 => prop_oneof![
            any::<i64>().prop_map(Value::from),
            Just(serde_json::json!([])),
            Just(serde_json::json!({"Next": "2026-11-22T10:05:00Z"})),
        ]
        .prop_map(Replacement::NotAString),
        1 => any::<bool>().prop_map(Replacement::Bool),
        1 => prop_oneof![Just("true"), Just("FALSE"), Just("True")].prop_map(|t| Replacement::BoolText(t.to_string())),
    ]
}

impl Replacement {
    fn json(&self) -> Value {
        match self {
            Replacement::Timestamp(_, text) | Replacement::Words(text) | Replacement::BoolText(text) => {
                Value::from(text.as_str())
            }
            Replacement::Never(text) => Value::from(*text),
            Replacement::Null => Value::Null,
            Replacement::NotAString(value) => value.clone(),
            Replacement::Bool(b) => Value::Bool(*b),
        }
    }
}

/// `VALID`'s own figures: the scheduled slot and the host's clock, to the minute.
fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Bytes that are not JSON are refused as not JSON, saying what was expected; no body that is
    /// JSON is called "not JSON".
    #[test]
    fn any_bytes_as_an_invocation_parse_or_fail_clearly(body in prop::collection::vec(any::<u8>(), 0..300)) {
        let json = serde_json::from_slice::<Value>(&body).ok();
        match TimerInvocation::parse(&body) {
            Ok(invocation) => prop_assert!(json.is_some(), "accepted bytes that are not JSON: {:?}", invocation),
            Err(e) => {
                prop_assert_eq!(matches!(e, InvocationError::NotJson(_)), json.is_none(), "{}", e);
                assert_clear(&e, json.as_ref())?;
            }
        }
    }

    /// Any JSON: never "not JSON"; a timestamp error names its field and the value that is in
    /// the body; every other error says what was expected; what parses gives the slot of the
    /// scheduled occurrence, or of the host's clock to the minute, or says neither was given.
    #[test]
    fn any_json_as_an_invocation_parses_or_fails_clearly(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        match TimerInvocation::parse(&body) {
            Ok(invocation) => match (invocation.slot(), invocation.scheduled, invocation.host_utc_now) {
                (Ok(slot), Some(scheduled), _) => prop_assert_eq!(slot.at(), scheduled),
                (Ok(slot), None, Some(now)) => prop_assert_eq!(slot.at(), now.duration_trunc(TimeDelta::minutes(1)).unwrap()),
                (Err(e), None, None) => {
                    prop_assert_eq!(&e, &InvocationError::NoSlot);
                    assert_clear(&e, Some(&value))?;
                }
                (other, scheduled, now) => prop_assert!(false, "slot {:?} from scheduled {:?}, host clock {:?}", other, scheduled, now),
            },
            Err(e) => {
                prop_assert!(!matches!(e, InvocationError::NotJson(_) | InvocationError::NoSlot), "{}", e);
                assert_clear(&e, Some(&value))?;
            }
        }
    }

    /// Any strict prefix of a valid invocation is not JSON, and is refused as such.
    #[test]
    fn a_valid_invocation_cut_anywhere_fails_as_not_json(cut in 0..VALID.len()) {
        let error = TimerInvocation::parse(&VALID.as_bytes()[..cut]).unwrap_err();
        prop_assert!(matches!(error, InvocationError::NotJson(_)), "{}", error);
        assert_clear(&error, None)?;
    }

    /// A date-time in any of the host's shapes reads as its instant; text without a digit is
    /// refused, naming the field, quoting the text and saying what is expected.
    #[test]
    fn timestamps_read_as_their_instant_or_are_named_in_the_error(
        (instant, text) in host_timestamp(),
        words in "[a-zA-Z :.T+-]{0,20}",
    ) {
        prop_assert_eq!(parse_timestamp("ScheduleStatus.Next", &text), Ok(Some(instant)), "{}", text);
        let error = parse_timestamp("ScheduleStatus.Next", &words).unwrap_err();
        prop_assert_eq!(&error, &InvocationError::Timestamp { field: "ScheduleStatus.Next", value: words.clone() });
        assert_clear(&error, Some(&Value::from(words)))?;
    }

    /// A valid invocation with one field replaced: exactly that field's outcome, as the host's
    /// payload is documented (README; `src/handler/invocation.rs`): a date-time reads as its
    /// instant, `null` and .NET's "never" as absent, anything else is named with its value.
    #[test]
    fn a_valid_invocation_with_one_field_replaced_reads_it_or_names_it(
        field in prop::sample::select(vec!["IsPastDue", "ScheduleStatus", "Next", "Last", "LastUpdated", "UtcNow"]),
        replacement in replacement(),
    ) {
        let mut payload: Value = serde_json::from_str(VALID).unwrap();
        let (scheduled, now) = (at("2026-11-22T10:05:00Z"), at("2026-11-22T10:05:00.0123Z"));
        let slot = |invocation: &TimerInvocation| invocation.slot().map(|s| s.at());
        let name = match field {
            "IsPastDue" | "ScheduleStatus" => {
                payload["Data"]["timer"][field] = replacement.json();
                field.to_string()
            }
            "UtcNow" => {
                payload["Metadata"]["sys"][field] = replacement.json();
                "Metadata.sys.UtcNow".to_string()
            }
            _ => {
                payload["Data"]["timer"]["ScheduleStatus"][field] = replacement.json();
                format!("ScheduleStatus.{field}")
            }
        };
        let result = TimerInvocation::parse(&serde_json::to_vec(&payload).unwrap());
        let timestamp_field = matches!(field, "Next" | "Last" | "LastUpdated" | "UtcNow");
        match (field, &replacement, result) {
            ("IsPastDue", Replacement::Bool(b), Ok(invocation)) => prop_assert_eq!(invocation.is_past_due, *b),
            ("IsPastDue", Replacement::BoolText(t), Ok(invocation)) => prop_assert_eq!(invocation.is_past_due, t.eq_ignore_ascii_case("true")),
            ("IsPastDue", Replacement::Null, Ok(invocation)) => prop_assert!(!invocation.is_past_due),
            ("IsPastDue", Replacement::Timestamp(..) | Replacement::Never(_) | Replacement::Words(_) | Replacement::NotAString(_), Err(InvocationError::Shape(message))) => {
                prop_assert!(message.starts_with("IsPastDue is ") && message.ends_with(": expected true or false"), "{}", message);
            }
            ("ScheduleStatus", Replacement::Null, Ok(invocation)) => {
                prop_assert_eq!((invocation.scheduled, invocation.last), (None, None));
                prop_assert_eq!(slot(&invocation), Ok(at("2026-11-22T10:05:00Z")), "the host's clock to the minute");
            }
            ("ScheduleStatus", Replacement::NotAString(Value::Object(_)), Ok(invocation)) => {
                prop_assert_eq!(slot(&invocation), Ok(scheduled));
            }
            ("ScheduleStatus", r, Err(InvocationError::Shape(message))) if !matches!(r, Replacement::Null | Replacement::NotAString(Value::Object(_))) => {
                prop_assert!(message.starts_with("ScheduleStatus is ") && message.ends_with(": expected an object or null"), "{}", message);
            }
            (_, Replacement::Timestamp(instant, _), Ok(invocation)) if timestamp_field => {
                let read = match field { "Next" => invocation.scheduled, "Last" => invocation.last, "UtcNow" => invocation.host_utc_now, _ => Some(*instant) };
                prop_assert_eq!(read, Some(*instant));
                prop_assert_eq!(slot(&invocation), Ok(if field == "Next" { *instant } else { scheduled }));
            }
            (_, Replacement::Null | Replacement::Never(_), Ok(invocation)) if timestamp_field => {
                let read = match field { "Next" => invocation.scheduled, "Last" => invocation.last, "UtcNow" => invocation.host_utc_now, _ => None };
                prop_assert_eq!(read, None);
                let expected = if field == "Next" { now.duration_trunc(TimeDelta::minutes(1)).unwrap() } else { scheduled };
                prop_assert_eq!(slot(&invocation), Ok(expected));
            }
            (_, Replacement::Words(text) | Replacement::BoolText(text), Err(error)) if timestamp_field => {
                prop_assert_eq!(&error, &InvocationError::Timestamp { field: TIMESTAMP_FIELDS.into_iter().find(|f| *f == name).unwrap(), value: text.clone() });
                assert_clear(&error, Some(&payload))?;
            }
            (_, Replacement::NotAString(_) | Replacement::Bool(_), Err(error)) if timestamp_field => {
                let value = replacement.json().to_string();
                prop_assert_eq!(&error, &InvocationError::Timestamp { field: TIMESTAMP_FIELDS.into_iter().find(|f| *f == name).unwrap(), value });
                assert_clear(&error, Some(&payload))?;
            }
            (field, replacement, result) => prop_assert!(false, "{} = {:?} gave {:?}", field, replacement, result),
        }
    }
}
