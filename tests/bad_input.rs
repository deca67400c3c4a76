//! Bad input never panics and always gets an error that names it: property tests (proptest)
//! over the host's invocation payload, the configuration, and Graph's presence responses.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::{DateTime, DurationRound, FixedOffset, TimeDelta, TimeZone, Utc};
use common::graph_sim::FixedToken;
use proptest::prelude::*;
use serde_json::Value;
use teams_presence::cycle::RunContext;
use teams_presence::graph::Tenant;
use teams_presence::graph::client::GraphClient;
use teams_presence::handler::invocation::{InvocationError, TimerInvocation, parse_timestamp};
use teams_presence::model::Slot;
use teams_presence::simulator::user_id;

const VALID: &str = r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-11-22T10:00:00Z","Next":"2026-11-22T10:05:00Z","LastUpdated":"2026-11-22T10:00:00Z"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"function-timer","UtcNow":"2026-11-22T10:05:00.0123Z"}}}"#;

/// Arbitrary JSON values, nested a few levels, with keys the parser looks for among the random ones.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("Data".to_string()),
        Just("timer".to_string()),
        Just("ScheduleStatus".to_string()),
        Just("Next".to_string()),
        Just("Metadata".to_string()),
        Just("sys".to_string()),
        Just("UtcNow".to_string()),
        "[a-zA-Z]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,30}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2026-11-22T10:05:00Z")),
        Just(serde_json::Value::from("0001-01-01T00:00:00")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Whether `tree` holds `text` as a string, or as the JSON text of a value (how the parser quotes
/// a non-string where a timestamp belongs).
fn holds(tree: &Value, text: &str) -> bool {
    tree.as_str() == Some(text)
        || tree.to_string() == text
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
            prop_assert!(message.starts_with(&format!("{field} is {value:?}: expected an ISO 8601 date-time")), "{}", message);
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
    (0i64..4_102_444_800, 0usize..=7, any::<u32>(), prop_oneof![Just(None), Just(Some(0)), (-12 * 60..=14 * 60).prop_map(Some)], any::<bool>())
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
            Replacement::Timestamp(_, text) | Replacement::Words(text) | Replacement::BoolText(text) => Value::from(text.as_str()),
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

/// A Graph endpoint that answers every presence call with the body under test.
async fn presence_server(body: Arc<Vec<u8>>) -> String {
    async fn answer(State(body): State<Arc<Vec<u8>>>) -> impl IntoResponse {
        ([("content-type", "application/json")], body.as_ref().clone())
    }
    let app = Router::new().route("/v1.0/communications/getPresencesByUserId", post(answer)).with_state(body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Presence bodies: random JSON, and near-misses of the real shape.
fn presence_body() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![(0u32..3).prop_map(|u| serde_json::Value::from(user_id(u).to_string())), json_value(),];
    let entry = (id, json_value(), any::<bool>()).prop_map(|(id, availability, extra)| {
        let mut o = serde_json::json!({"id": id, "availability": availability});
        if extra {
            o["activity"] = serde_json::json!("InACall");
            o["statusMessage"] = serde_json::json!({"message": {"content": "x"}});
        }
        o
    });
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(entry, 0..5)
            .prop_map(|value| serde_json::to_vec(&serde_json::json!({"value": value})).unwrap()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_presence_response_gives_observations_or_a_clear_failed_batch(body in presence_body()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let base = presence_server(Arc::new(body)).await;
            let settings = teams_presence::config::GraphSettings {
                base_url: base.parse().unwrap(),
                presence_concurrency: 1,
                presence_calls_per_30s: 1_500,
                tuning: teams_presence::config::GraphTuning::default(),
            };
            let graph = GraphClient::new(&settings, Arc::new(FixedToken)).unwrap();
            let users: Vec<_> = (0..3).map(user_id).collect();
            let run = RunContext::new("bad-input", Slot::new(Utc::now()), Duration::from_secs(10));
            let snapshot = graph.presence(&users, &run).await.unwrap();
            // Every id asked for is either observed once or unobserved, never invented.
            prop_assert_eq!(snapshot.observations.len() + snapshot.unobserved.len(), 3);
            for o in &snapshot.observations {
                prop_assert!(users.contains(&o.user_id));
            }
            for failure in &snapshot.failed_batches {
                prop_assert!(failure.reason.contains("getPresencesByUserId"), "{}", failure.reason);
            }
            Ok(())
        })?;
    }
}

/// Where a member page's `@odata.nextLink` points.
#[derive(Clone, Debug)]
enum Link {
    /// No nextLink, or `null`.
    Absent(bool),
    /// The next page of this scripted group (absent on the last page).
    Next,
    /// The page itself, or the first page again: paging never ends.
    SelfLoop,
    First,
    /// Another origin: a second local server (another port), the same port by another name, a
    /// userinfo trick, another scheme.
    OtherOrigin(u8),
    /// Not an absolute URL.
    Malformed(&'static str),
}

/// One scripted member page.
#[derive(Clone, Debug)]
enum PageSpec {
    /// The real shape: `value` entries (JSON, and the user production must count, if any) and a link.
    Page(Vec<(serde_json::Value, Option<uuid::Uuid>)>, Link),
    /// The real shape with a field of the wrong JSON type.
    WrongType(serde_json::Value),
    /// A real page cut short.
    Truncated(Vec<(serde_json::Value, Option<uuid::Uuid>)>, usize),
    Garbage(Vec<u8>),
    AnyJson(serde_json::Value),
    Status(u16),
}

const USER_TYPE: &str = "#microsoft.graph.user";

fn member_entry() -> impl Strategy<Value = (serde_json::Value, Option<uuid::Uuid>)> {
    let odata_type = prop_oneof![
        3 => Just(Some(serde_json::json!(USER_TYPE))),
        1 => Just(Some(serde_json::json!("#microsoft.graph.group"))),
        1 => Just(Some(serde_json::json!("#microsoft.graph.device"))),
        1 => Just(Some(serde_json::json!("#microsoft.graph.User"))),
        1 => Just(Some(serde_json::json!("#microsoft.graph.user "))),
        1 => Just(Some(serde_json::json!("microsoft.graph.user"))),
        1 => Just(Some(serde_json::Value::Null)),
        1 => Just(None),
    ];
    let known = (0u32..6).prop_map(user_id);
    let id = prop_oneof![
        3 => known.clone().prop_map(|u| (u.to_string(), Some(u))),
        1 => known.clone().prop_map(|u| (u.to_string().to_uppercase(), Some(u))),
        1 => known.prop_map(|u| (format!("{u}0"), None)),
        1 => "[g-z ._]{0,12}".prop_map(|s| (s, None)),
    ];
    (odata_type, id, any::<bool>()).prop_map(|(odata_type, (id, user), extra)| {
        let mut entry = serde_json::json!({ "id": id });
        if let Some(t) = &odata_type {
            entry["@odata.type"] = t.clone();
        }
        if extra {
            entry["displayName"] = serde_json::json!("not asked for");
        }
        let is_user = odata_type.as_ref().and_then(|t| t.as_str()) == Some(USER_TYPE);
        (entry, user.filter(|_| is_user))
    })
}

fn link() -> impl Strategy<Value = Link> {
    prop_oneof![
        3 => any::<bool>().prop_map(Link::Absent),
        4 => Just(Link::Next),
        1 => Just(Link::SelfLoop),
        1 => Just(Link::First),
        2 => (0u8..4).prop_map(Link::OtherOrigin),
        1 => prop_oneof![
            Just("not a url"),
            Just(""),
            Just("/v1.0/pages/1"),
            Just("http://"),
            Just("javascript:alert(1)"),
        ]
        .prop_map(Link::Malformed),
    ]
}

fn page_spec() -> impl Strategy<Value = PageSpec> {
    let members = || prop::collection::vec(member_entry(), 0..5);
    prop_oneof![
        6 => (members(), link()).prop_map(|(m, l)| PageSpec::Page(m, l)),
        1 => prop_oneof![
            Just(serde_json::json!({ "value": {} })),
            Just(serde_json::json!({ "value": [{ "@odata.type": USER_TYPE, "id": 7 }] })),
            Just(serde_json::json!({ "value": [{ "@odata.type": 1, "id": user_id(0).to_string() }] })),
            Just(serde_json::json!({ "value": [{ "@odata.type": USER_TYPE }] })),
            Just(serde_json::json!({ "value": [], "@odata.nextLink": 3 })),
            Just(serde_json::json!({ "value": null })),
            Just(serde_json::json!({ "values": [] })),
        ]
        .prop_map(PageSpec::WrongType),
        1 => (members(), any::<prop::sample::Index>()).prop_map(|(m, cut)| PageSpec::Truncated(m, cut.index(usize::MAX))),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(PageSpec::Garbage),
        1 => json_value().prop_map(PageSpec::AnyJson),
        1 => prop_oneof![Just(400u16), Just(403), Just(404), Just(500)].prop_map(PageSpec::Status),
    ]
}

/// What production must make of a scripted group, walking its pages as a correct client would.
#[derive(Debug, PartialEq)]
enum Expected {
    /// Read whole: exactly these users.
    Members(std::collections::BTreeSet<uuid::Uuid>),
    /// The group is reported unreadable (its members unknown this run).
    Unreadable,
    /// nextLinks lead back to a page already read.
    Loop,
    /// Arbitrary JSON: no exact expectation beyond the invariants.
    Unknown,
}

fn expected(pages: &[PageSpec]) -> Expected {
    let mut users = std::collections::BTreeSet::new();
    let mut index = 0;
    loop {
        match &pages[index] {
            PageSpec::Page(members, link) => {
                users.extend(members.iter().filter_map(|(_, u)| *u));
                match link {
                    Link::Absent(_) => return Expected::Members(users),
                    Link::Next if index + 1 == pages.len() => return Expected::Members(users),
                    Link::Next => index += 1,
                    Link::SelfLoop | Link::First => return Expected::Loop,
                    Link::OtherOrigin(_) | Link::Malformed(_) => return Expected::Unreadable,
                }
            }
            PageSpec::AnyJson(_) => return Expected::Unknown,
            _ => return Expected::Unreadable,
        }
    }
}

/// The scripted Graph endpoint: the group's pages, and presence for whatever ids are asked.
struct MemberPages {
    pages: Vec<PageSpec>,
    group: uuid::Uuid,
    base: String,
    other_origin: String,
}

impl MemberPages {
    fn page_url(&self, index: usize) -> String {
        match index {
            0 => format!("{}/groups/{}/transitiveMembers?$select=id&$top=999", self.base, self.group),
            n => format!("{}/pages/{n}", self.base),
        }
    }

    fn render(&self, members: &[(serde_json::Value, Option<uuid::Uuid>)], link: Option<String>) -> Vec<u8> {
        let mut page = serde_json::json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects(id)",
            "value": members.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        });
        if let Some(link) = link {
            page["@odata.nextLink"] = serde_json::json!(link);
        }
        serde_json::to_vec(&page).unwrap()
    }

    fn answer(&self, index: usize) -> (u16, Vec<u8>) {
        let Some(spec) = self.pages.get(index) else {
            return (404, br#"{"error":{"code":"Request_ResourceNotFound"}}"#.to_vec());
        };
        let port = self.base.trim_start_matches("http://").split('/').next().unwrap().rsplit(':').next().unwrap();
        match spec {
            PageSpec::Page(members, link) => {
                let link = match link {
                    Link::Absent(false) => None,
                    Link::Absent(true) => {
                        return (200, {
                            let mut page: serde_json::Value =
                                serde_json::from_slice(&self.render(members, None)).unwrap();
                            page["@odata.nextLink"] = serde_json::Value::Null;
                            serde_json::to_vec(&page).unwrap()
                        });
                    }
                    Link::Next if index + 1 == self.pages.len() => None,
                    Link::Next => Some(self.page_url(index + 1)),
                    Link::SelfLoop => Some(self.page_url(index)),
                    Link::First => Some(self.page_url(0)),
                    Link::OtherOrigin(0) => Some(format!("{}/v1.0/pages/{}", self.other_origin, index + 1)),
                    Link::OtherOrigin(1) => Some(format!("http://localhost:{port}/v1.0/pages/{}", index + 1)),
                    Link::OtherOrigin(2) => {
                        let other = self.other_origin.trim_start_matches("http://");
                        Some(format!("http://127.0.0.1:{port}@{other}/v1.0/pages/{}", index + 1))
                    }
                    Link::OtherOrigin(_) => Some(format!("https://127.0.0.1:{port}/v1.0/pages/{}", index + 1)),
                    Link::Malformed(text) => Some(text.to_string()),
                };
                (200, self.render(members, link))
            }
            PageSpec::WrongType(value) => (200, serde_json::to_vec(value).unwrap()),
            PageSpec::Truncated(members, cut) => {
                let whole = self.render(members, Some(self.page_url(index + 1)));
                (200, whole[..cut % whole.len()].to_vec())
            }
            PageSpec::Garbage(bytes) => (200, bytes.clone()),
            PageSpec::AnyJson(value) => (200, serde_json::to_vec(value).unwrap()),
            PageSpec::Status(status) => (*status, br#"{"error":{"code":"Scripted","message":"scripted"}}"#.to_vec()),
        }
    }
}

/// Answers presence for every id asked, so the overlapped members-and-presence path runs whole.
async fn echo_presence(body: axum::body::Bytes) -> impl IntoResponse {
    let asked: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let value: Vec<serde_json::Value> = asked["ids"]
        .as_array()
        .map(|ids| ids.iter().map(|id| serde_json::json!({"id": id, "availability": "Available"})).collect())
        .unwrap_or_default();
    ([("content-type", "application/json")], serde_json::to_vec(&serde_json::json!({ "value": value })).unwrap())
}

/// Requests that reached the other origin, and whether any carried the token.
#[derive(Default)]
struct Elsewhere {
    requests: std::sync::atomic::AtomicUsize,
    with_token: std::sync::atomic::AtomicUsize,
}

async fn start_member_pages(pages: Vec<PageSpec>, group: uuid::Uuid) -> (String, Arc<Elsewhere>) {
    use axum::extract::Path;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1.0", listener.local_addr().unwrap());
    let other_origin = format!("http://{}", other.local_addr().unwrap());
    let script = Arc::new(MemberPages { pages, group, base: base.clone(), other_origin });
    let reply = |(status, body): (u16, Vec<u8>)| {
        (StatusCode::from_u16(status).unwrap(), [("content-type", "application/json")], body).into_response()
    };
    let first = script.clone();
    let later = script.clone();
    let app = Router::new()
        .route("/v1.0/groups/{group}/transitiveMembers", get(move || async move { reply(first.answer(0)) }))
        .route("/v1.0/pages/{index}", get(move |Path(index): Path<usize>| async move { reply(later.answer(index)) }))
        .route("/v1.0/communications/getPresencesByUserId", post(echo_presence));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let elsewhere = Arc::new(Elsewhere::default());
    let seen = elsewhere.clone();
    let trap = Router::new().fallback(move |headers: HeaderMap| async move {
        seen.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if headers.contains_key("authorization") {
            seen.with_token.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        "{\"value\":[]}"
    });
    tokio::spawn(async move { axum::serve(other, trap).await });
    (base, elsewhere)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary `transitiveMembers` pages through the production client's members-and-presence
    /// path: no panic; a bad page makes the group unreadable with a reason naming the call (and
    /// the group is named in the problem); nobody is invented or observed outside membership; a
    /// nextLink to another origin is never followed; a clean chain gives exactly its users.
    #[test]
    fn any_member_pages_give_members_or_a_clear_unreadable_group(pages in prop::collection::vec(page_spec(), 1..5)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let group = uuid::Uuid::from_u128(0x6f1c_2a3b_0d4e_4f5a_8b6c_7d8e_9f0a_1b2c);
            let expected = expected(&pages);
            let (base, elsewhere) = start_member_pages(pages.clone(), group).await;
            let settings = teams_presence::config::GraphSettings {
                base_url: base.parse().unwrap(),
                presence_concurrency: 2,
                presence_calls_per_30s: 1_500,
                tuning: teams_presence::config::GraphTuning {
                    backoff_base: Duration::from_millis(1),
                    backoff_max: Duration::from_millis(5),
                    request_timeout: Duration::from_secs(5),
                    ..teams_presence::config::GraphTuning::default()
                },
            };
            let graph = GraphClient::new(&settings, Arc::new(FixedToken)).unwrap();
            let run = RunContext::new("bad-members", Slot::new(Utc::now()), Duration::from_secs(10));
            let result = graph.members_and_presence(&[group], &run).await;
            prop_assert_eq!(elsewhere.requests.load(std::sync::atomic::Ordering::SeqCst), 0, "another origin was called");
            prop_assert_eq!(elsewhere.with_token.load(std::sync::atomic::Ordering::SeqCst), 0);
            // Whatever the pages, the run goes on: a bad group is reported, not fatal.
            let (membership, snapshot) = match result {
                Ok(found) => found,
                Err(e) => return Err(TestCaseError::fail(format!("the run failed: {e}"))),
            };
            let offered: std::collections::BTreeSet<uuid::Uuid> = pages
                .iter()
                .flat_map(|p| match p {
                    PageSpec::Page(m, _) | PageSpec::Truncated(m, _) => m.iter().filter_map(|(_, u)| *u).collect(),
                    _ => Vec::new(),
                })
                .collect();
            for user in &membership.users {
                prop_assert!(offered.contains(user), "invented member {}", user);
            }
            for o in &snapshot.observations {
                prop_assert!(membership.users.contains(&o.user_id), "observed outside membership: {}", o.user_id);
            }
            for u in &snapshot.unobserved {
                prop_assert!(membership.users.contains(u), "unobserved outside membership: {}", u);
            }
            for problem in &membership.unreadable_groups {
                prop_assert_eq!(problem.group_id, group);
                prop_assert!(problem.reason.contains("transitiveMembers"), "{}", problem.reason);
            }
            match expected {
                Expected::Members(users) => {
                    prop_assert!(membership.unreadable_groups.is_empty(), "{:?}", membership.unreadable_groups);
                    prop_assert_eq!(membership.users.iter().copied().collect::<std::collections::BTreeSet<_>>(), users);
                    prop_assert_eq!(snapshot.observations.len(), membership.users.len(), "everyone's presence read");
                }
                Expected::Unreadable => {
                    prop_assert_eq!(membership.unreadable_groups.len(), 1);
                    prop_assert!(membership.users.is_empty(), "a group read in part adds nobody: {:?}", membership.users);
                }
                Expected::Loop => {
                    prop_assert_eq!(membership.unreadable_groups.len(), 1);
                    let reason = &membership.unreadable_groups[0].reason;
                    prop_assert!(reason.contains("repeats a page already read"), "{}", reason);
                    prop_assert!(membership.users.is_empty());
                }
                Expected::Unknown => prop_assert!(membership.users.is_empty() || membership.unreadable_groups.is_empty()),
            }
            Ok(())
        })?;
    }
}
