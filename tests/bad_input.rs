//! Bad responses from Graph never panic and each has its exact outcome: property tests (proptest)
//! over presence responses (what is observed, or a failed batch naming the call) and member pages
//! (exactly the group's users, or the group reported unreadable). The host's payload is in
//! `tests/bad_invocation.rs`, the settings in `tests/bad_settings.rs`.

#[path = "common/arbitrary_json.rs"]
mod arbitrary_json;
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary_json::json_value;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::Utc;
use common::graph_sim::FixedToken;
use proptest::prelude::*;
use serde_json::Value;
use teams_presence::graph::Tenant;
use teams_presence::graph::client::GraphClient;
use teams_presence::model::{GroupId, Slot};
use teams_presence::run::RunContext;
use teams_presence::simulator::user_id;

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

/// What production must make of a presence response for the three users asked about.
#[derive(Clone, Debug)]
enum Expect {
    /// Exactly these users observed with these availabilities; the others unobserved.
    Observed(BTreeMap<u32, String>),
    /// The whole response refused: a failed batch naming the call, everyone unobserved.
    Refused,
    /// Arbitrary JSON with a `value` key: only the invariants.
    Unknown,
}

/// Presence bodies with their expected outcome: the real shape with every kind of entry
/// (`id` and `availability` are all that is read; ids not asked about are ignored; an entry of
/// the wrong JSON types makes the response unreadable), random JSON, and random bytes.
fn presence_case() -> impl Strategy<Value = (Vec<u8>, Expect)> {
    let known = prop_oneof![
        3 => ("\\PC{0,12}", any::<bool>()).prop_map(|(a, upper)| (Some(Value::from(a)), upper)),
        1 => Just((Some(Value::Null), false)),
        1 => Just((None, false)),
    ];
    let foreign = prop_oneof![any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()), "[g-z]{1,8}",]
        .prop_map(|id| serde_json::json!({"id": id, "availability": "Available"}));
    let ill_typed = prop_oneof![
        Just(serde_json::json!({"id": 7, "availability": "Away"})),
        Just(serde_json::json!({"id": user_id(0).expose_object_id().to_string(), "availability": 3})),
        Just(serde_json::json!({"id": user_id(1).expose_object_id().to_string(), "availability": {"value": "Away"}})),
        Just(serde_json::json!({"availability": "Away"})),
        Just(serde_json::json!("not an entry")),
        Just(Value::Null),
    ];
    let shaped = (
        prop::collection::vec(prop::option::of(known), 3),
        prop::collection::vec(foreign, 0..3),
        prop::option::of(ill_typed),
        any::<bool>(),
    )
        .prop_flat_map(|(known, foreign, ill_typed, extra)| {
            let mut observed = BTreeMap::new();
            let mut entries = foreign;
            for (u, entry) in known.iter().enumerate() {
                let Some((availability, upper)) = entry else { continue };
                let id = if *upper {
                    user_id(u as u32).expose_object_id().to_string().to_uppercase()
                } else {
                    user_id(u as u32).expose_object_id().to_string()
                };
                let mut item = serde_json::json!({"id": id});
                if let Some(availability) = availability {
                    item["availability"] = availability.clone();
                    if let Some(text) = availability.as_str() {
                        observed.insert(u as u32, text.to_string());
                    }
                }
                if extra {
                    item["activity"] = serde_json::json!("InACall");
                    item["statusMessage"] = serde_json::json!({"message": {"content": "x"}});
                }
                entries.push(item);
            }
            let expect = if ill_typed.is_some() { Expect::Refused } else { Expect::Observed(observed) };
            entries.extend(ill_typed);
            (Just(entries).prop_shuffle(), Just(expect))
        })
        .prop_map(|(entries, expect)| (serde_json::to_vec(&serde_json::json!({"value": entries})).unwrap(), expect));
    let unshaped = |body: Vec<u8>| {
        let has_value = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v.get("value").is_some());
        let expect = if has_value { Expect::Unknown } else { Expect::Refused };
        (body, expect)
    };
    prop_oneof![
        3 => shaped,
        1 => json_value().prop_map(move |v| unshaped(serde_json::to_vec(&v).unwrap())),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(unshaped),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_presence_response_gives_observations_or_a_clear_failed_batch((body, expect) in presence_case()) {
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
            let observed: BTreeMap<u32, String> = snapshot
                .observations
                .iter()
                .map(|o| (users.iter().position(|u| *u == o.user_id).unwrap() as u32, o.availability.as_str().to_string()))
                .collect();
            match expect {
                Expect::Observed(expected) => {
                    prop_assert!(snapshot.failed_batches.is_empty(), "{:?}", snapshot.failed_batches);
                    prop_assert_eq!(observed, expected);
                }
                Expect::Refused => {
                    prop_assert!(snapshot.observations.is_empty(), "{:?}", snapshot.observations);
                    prop_assert_eq!(snapshot.failed_batches.len(), 1);
                    let failure = &snapshot.failed_batches[0];
                    prop_assert_eq!(failure.ids, 3);
                    prop_assert!(!failure.deadline);
                    prop_assert!(
                        failure.reason.starts_with("Graph call getPresencesByUserId returned a body that is not the expected JSON"),
                        "{}", failure.reason
                    );
                }
                Expect::Unknown => {
                    for failure in &snapshot.failed_batches {
                        prop_assert!(failure.reason.contains("getPresencesByUserId"), "{}", failure.reason);
                    }
                }
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
            // A page is an object with a `value` array: without the key, unreadable.
            PageSpec::AnyJson(value) if value.get("value").is_some() => return Expected::Unknown,
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
