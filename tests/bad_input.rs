//! Bad input never panics and always gets an error that names it: property tests (proptest)
//! over the host's invocation payload, the configuration, and Graph's presence responses.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::Utc;
use common::graph_sim::FixedToken;
use proptest::prelude::*;
use teams_presence::config::{Config, RawSettings, parse_groups};
use teams_presence::graph::Tenant;
use teams_presence::graph::client::GraphClient;
use teams_presence::handler::invocation::{TimerInvocation, parse_timestamp};
use teams_presence::model::{GroupId, Slot};
use teams_presence::run::RunContext;
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_as_an_invocation_parse_or_fail_clearly(body in prop::collection::vec(any::<u8>(), 0..300)) {
        match TimerInvocation::parse(&body) {
            Ok(invocation) => { let _ = invocation.slot(); let _ = invocation.describe(); }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_json_as_an_invocation_parses_or_fails_clearly(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        match TimerInvocation::parse(&body) {
            Ok(invocation) => match invocation.slot() {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            },
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn a_valid_invocation_cut_anywhere_fails_without_panicking(cut in 0..VALID.len()) {
        prop_assert!(TimerInvocation::parse(&VALID.as_bytes()[..cut]).is_err());
    }

    #[test]
    fn a_bad_timestamp_is_named_in_the_error(text in "\\PC{0,40}") {
        if let Err(e) = parse_timestamp("ScheduleStatus.Next", &text) {
            let message = e.to_string();
            prop_assert!(message.contains("ScheduleStatus.Next"), "{}", message);
            prop_assert!(message.contains(&format!("{text:?}")), "{}", message);
        }
    }

    #[test]
    fn group_ids_parse_without_duplicates_or_name_each_bad_entry(
        entries in prop::collection::vec(prop_oneof![
            any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
            any::<u128>().prop_map(|n| format!("{{{}}}", uuid::Uuid::from_u128(n))),
            "[0-9a-fA-F-]{0,40}",
            // Entries never hold a separator themselves, so each error can be matched to one.
            "[^,;\\s]{0,12}",
        ], 0..6),
        separators in prop::collection::vec(prop_oneof![Just(","), Just(";"), Just(" "), Just("\n"), Just(", ")], 6),
    ) {
        let mut text = String::new();
        for (entry, sep) in entries.iter().zip(separators.iter().cycle()) {
            text.push_str(entry);
            text.push_str(sep);
        }
        match parse_groups(Some(&text)) {
            Ok(groups) => {
                prop_assert!(!groups.is_empty());
                let mut distinct = groups.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), groups.len(), "duplicates dropped");
            }
            Err(errors) => {
                for e in &errors {
                    let message = e.to_string();
                    prop_assert!(message.contains("ENTRA_GROUP_IDS"), "{}", message);
                    let names_an_entry = entries.iter().any(|entry| message.contains(&format!("{entry:?}")));
                    prop_assert!(names_an_entry || message.contains("no group ids"), "{}", message);
                }
                prop_assert!(!errors.is_empty());
            }
        }
    }

    #[test]
    fn any_settings_parse_or_name_every_bad_one(
        values in prop::collection::vec(prop::option::of(prop_oneof![
            "\\PC{0,20}",
            "[0-9]{0,6}",
            Just("-1".to_string()),
            Just("0".to_string()),
            Just("https://graph.microsoft.com/v1.0".to_string()),
            Just("6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c".to_string()),
        ]), 13),
        // Secrets drawn apart, so that finding one in a message means it was echoed.
        cosmos_key in prop::option::of("s3cr3t-[A-Za-z0-9+/=]{2,40}"),
        pseudonym_key in prop::option::of("s3cr3t-[A-Za-z0-9+/=]{2,60}"),
    ) {
        let v = |i: usize| values[i].clone();
        let raw = RawSettings {
            entra_group_ids: v(0),
            graph_base_url: v(1),
            cosmos_endpoint: v(2),
            cosmos_database: v(3),
            cosmos_container: v(4),
            cosmos_state_container: v(5),
            cosmos_key: cosmos_key.clone(),
            presence_db: v(6),
            poll_schedule: v(7),
            run_deadline_seconds: v(8),
            presence_concurrency: v(9),
            presence_calls_per_30s: v(10),
            retention_days: v(11),
            membership_inline_limit_seconds: v(12),
            user_id_pseudonym_key: pseudonym_key.clone(),
        };
        if let Err(e) = Config::parse(&raw) {
            let message = e.to_string();
            prop_assert!(!message.is_empty());
            // The pseudonym key and the Cosmos key are secrets: never echoed.
            for secret in [&raw.user_id_pseudonym_key, &raw.cosmos_key].into_iter().flatten() {
                prop_assert!(!message.contains(secret.as_str()), "{}", message);
            }
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
    let id = prop_oneof![
        (0u32..3).prop_map(|u| serde_json::Value::from(user_id(u).expose_object_id().to_string())),
        json_value(),
    ];
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
    let known = (0u32..6).prop_map(|i| user_id(i).expose_object_id());
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
            Just(serde_json::json!({ "value": [{ "@odata.type": 1, "id": user_id(0).expose_object_id().to_string() }] })),
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
            let result = graph.members_and_presence(&[GroupId::from_uuid(group)], &run).await;
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
                prop_assert!(offered.contains(&user.expose_object_id()), "invented member {}", user.expose_object_id());
            }
            for o in &snapshot.observations {
                prop_assert!(membership.users.contains(&o.user_id), "observed outside membership: {}", o.user_id.expose_object_id());
            }
            for u in &snapshot.unobserved {
                prop_assert!(membership.users.contains(u), "unobserved outside membership: {}", u.expose_object_id());
            }
            for problem in &membership.unreadable_groups {
                prop_assert_eq!(problem.group_id, GroupId::from_uuid(group));
                prop_assert!(problem.reason.contains("transitiveMembers"), "{}", problem.reason);
            }
            match expected {
                Expected::Members(users) => {
                    prop_assert!(membership.unreadable_groups.is_empty(), "{:?}", membership.unreadable_groups);
                    prop_assert_eq!(membership.users.iter().map(|u| u.expose_object_id()).collect::<std::collections::BTreeSet<_>>(), users);
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
