//! The privacy promise, enforced: only the user's id, the availability and the time are stored;
//! nothing else Graph returns reaches storage or logs; retention, export, erasure and the audit
//! trail work on both stores; the pseudonym mode stores no object id at all.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeDelta, Utc};
use common::cosmos_emulator::Emulator;
use common::graph_sim;
use common::handler_process::{HandlerProcess, tenant_env, timer_body};
use common::store_cases::{StoredBytes, plan, run_context, subject, user};
use serde_json::Value;
use teams_presence::cycle::PollCycle;
use teams_presence::graph::{GraphError, Membership, PresenceSnapshot, Tenant};
use teams_presence::model::{Availability, ChangeRecord, GroupId, Observation, Slot, UserId};
use teams_presence::privacy::{AuditOperation, PseudonymKey, Retention, Subjects};
use teams_presence::rights::Rights;
use teams_presence::run::RunContext;
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::cosmos::{HISTORY_FIELDS, Tuning};
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::{RecordPlan, RightsStore, RunStore, Store};

/// Text the simulator puts in the presence fields the product must drop: the status message,
/// the out-of-office message, and the activity values that are not also availability values.
const GRAPH_EXTRAS: [&str; 6] =
    ["Heads down on the Q3 plan", "statusMessage", "outOfOffice", "InAMeeting", "Presenting", "OffWork"];

const KEY: &str = "c2VjcmV0LWtleS1mb3ItcHNldWRvbnltcy0zMi1ieXRlcyE="; // 33 bytes

fn pseudonyms() -> Subjects {
    Subjects::pseudonymous(PseudonymKey::parse(KEY).unwrap())
}

fn sqlite_bytes(db: &std::path::Path) -> StoredBytes {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal"] {
        if let Ok(file) = std::fs::read(format!("{}{suffix}", db.display())) {
            bytes.extend(file);
        }
    }
    StoredBytes(bytes)
}

fn contains_any(haystack: &[u8], needles: &[&str]) -> Option<String> {
    let text = String::from_utf8_lossy(haystack);
    needles.iter().find(|n| text.contains(*n)).map(|n| n.to_string())
}

// --- The real handler, the simulator and the embedded store -------------------------------------

struct Deployment {
    sim: SimHandle,
    handler: HandlerProcess,
    groups: Vec<GroupId>,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn deploy(users: u32, extra: &[(&str, &str)]) -> Deployment {
    let sim = Simulator::start(SimConfig::standard(users).max_page_size(200)).await.unwrap();
    let groups = standard_groups()[..2].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    // User ids are logged only at debug: the strictest check of what logs may contain.
    let env = tenant_env(&sim, &groups, &db, &[&[("LOG_LEVEL", "debug")], extra].concat());
    let handler = HandlerProcess::start(&env);
    Deployment { sim, handler, groups, db, _dir: dir }
}

impl Deployment {
    async fn post(&self, function: &str, invocation_id: &str, body: String) -> Value {
        let response = reqwest::Client::new()
            .post(self.handler.url(&format!("/{function}")))
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", self.handler.stderr_lines());
        response.json().await.unwrap()
    }

    async fn run(&self, n: i64) -> Value {
        let slot = Utc::now() + TimeDelta::minutes(5 * n);
        let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let body = timer_body(&ts(slot), &ts(slot - TimeDelta::minutes(5)), false, &ts(Utc::now()));
        let reply = self.post("function-timer", &format!("run-{n}"), body).await;
        self.sim.advance_epoch();
        reply
    }

    /// An HTTP-trigger invocation as the host sends it when it does not forward the request.
    async fn http(&self, function: &str, method: &str, query: &str) -> (u64, Value, String) {
        let url = format!("https://presence.azurewebsites.net/api/privacy/x?{query}");
        let query: serde_json::Map<String, Value> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        let body = serde_json::json!({
            "Data": { "req": { "Url": url, "Method": method, "Query": query,
                "Headers": { "x-functions-key": ["<redacted by the host>"] }, "Params": {}, "Body": "" } },
            "Metadata": {}
        });
        let reply = self.post(function, &format!("{function}-{method}"), body.to_string()).await;
        let res = &reply["Outputs"]["res"];
        let text = res["body"].as_str().unwrap_or_default().to_string();
        (res["statusCode"].as_u64().unwrap(), serde_json::from_str(&text).unwrap_or(Value::Null), text)
    }

    fn logs(&self) -> String {
        [self.handler.stdout_lines(), self.handler.stderr_lines()].concat().join("\n")
    }

    fn users(&self) -> Vec<UserId> {
        self.sim.expected_users(&self.groups)
    }
}

fn sqlite_columns(db: &std::path::Path) -> HashMap<String, BTreeSet<String>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables
        .into_iter()
        .map(|table| {
            let columns = conn
                .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (table, columns)
        })
        .collect()
}

#[tokio::test]
async fn the_handler_stores_exactly_id_availability_and_time_and_nothing_else_reaches_storage_or_logs() {
    let deployment = deploy(400, &[]).await;
    for n in 0..3 {
        deployment.run(n).await;
    }
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let columns = sqlite_columns(&deployment.db);
    // `slot` is the schedule occurrence of the run (the key of a repeated run), not about the person.
    assert_eq!(columns["history"], set(&["user_id", "slot", "availability", "timestamp"]));
    assert_eq!(columns["last_known"], set(&["user_id", "availability", "timestamp"]));
    assert_eq!(columns["meta"], set(&["key", "value"]), "store bookkeeping only");
    assert_eq!(
        columns["audit"],
        set(&["id", "operation", "at", "subject", "records", "state_entries", "invocation_id"])
    );
    assert_eq!(columns.len(), 4, "no other table: {columns:?}");

    // The runs did record people (so the checks below look at real data) ...
    let stored = sqlite_bytes(&deployment.db);
    assert!(deployment.users().iter().all(|u| stored.contains_user(*u)));
    // ... and none of what Graph sent besides id and availability is anywhere.
    assert_eq!(contains_any(&stored.0, &GRAPH_EXTRAS), None, "in the database");
    let logs = deployment.logs();
    assert!(logs.contains("\"level\":\"DEBUG\""), "debug logging was on");
    assert_eq!(contains_any(logs.as_bytes(), &GRAPH_EXTRAS), None, "in the logs");
}

#[tokio::test]
async fn cosmos_documents_hold_exactly_the_allowed_fields() {
    let sim = Simulator::start(SimConfig::standard(300)).await.unwrap();
    let emulator = Emulator::new();
    let store = Arc::new(emulator.store(Tuning::default(), Vec::new()).await);
    let graph = graph_sim::client(&sim, &graph_sim::settings(&sim));
    let groups = standard_groups()[..2].to_vec();
    let cycle = PollCycle::new(groups.clone(), Arc::new(graph), store.clone())
        .with_privacy(Subjects::plain(), Retention::days(90));
    for _ in 0..3 {
        cycle.run(&graph_sim::run(Duration::from_secs(60))).await.unwrap();
        sim.advance_epoch();
    }
    let history = emulator.history_documents().await;
    assert!(history.len() >= sim.expected_users(&groups).len(), "every user was recorded");
    let allowed: BTreeSet<&str> = HISTORY_FIELDS.into_iter().collect();
    for doc in &history {
        assert_eq!(doc.keys().map(String::as_str).collect::<BTreeSet<_>>(), allowed, "{doc:?}");
    }
    // The state container: the head and snapshot shards, in their compact forms only.
    for doc in emulator.documents(&emulator.settings.state_container).await {
        let keys: BTreeSet<&str> = doc.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = match doc["id"].as_str().unwrap() {
            "head" => ["id", "snap", "since", "gone"].into(),
            id if id.starts_with("snapshot-") => ["id", "values", "data"].into(),
            other => panic!("unexpected state document {other}"),
        };
        assert_eq!(keys, expected);
    }
    let everything = serde_json::to_vec(&emulator.documents(&emulator.settings.state_container).await).unwrap();
    let history_text = serde_json::to_vec(&history).unwrap();
    assert_eq!(contains_any(&[everything, history_text].concat(), &GRAPH_EXTRAS), None);
}

// --- Export, erasure and the audit trail through the HTTP functions and the CLI -----------------

fn cli(deployment: &Deployment, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(args)
        .env_clear()
        .env("PRESENCE_DB", &deployment.db)
        .envs(extra.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test]
async fn http_functions_export_and_erase_one_user_and_audit_it_without_their_id() {
    let deployment = deploy(300, &[]).await;
    deployment.run(0).await;
    deployment.run(1).await;
    let users = deployment.users();
    let (target, neighbour) = (users[3].expose_object_id(), users[4].expose_object_id());

    let (status, body, _) = deployment.http("function-export", "GET", &format!("user={target}")).await;
    assert_eq!(status, 200, "{body}");
    let exported = body["exported"].as_u64().unwrap();
    assert!(exported >= 1);
    assert_eq!(body["records"].as_array().unwrap().len() as u64, exported);
    assert!(body["records"].as_array().unwrap().iter().all(|r| r["userId"] == target.to_string()));
    let (status, _, csv) = deployment.http("function-export", "GET", &format!("user={target}&format=csv")).await;
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count() as u64, exported + 1, "{csv}");

    // Bad input: 400 naming the value and what is expected; nothing is touched.
    for (function, method, query, expected) in [
        ("function-erase", "POST", "user=not-a-guid", "\"not-a-guid\" is not a user object id: expected a GUID"),
        ("function-erase", "POST", "", "no user given"),
        ("function-erase", "GET", &format!("user={target}"), "method GET is not accepted here"),
        ("function-export", "GET", &format!("user={target}&format=xml"), "format \"xml\" is not supported"),
    ] {
        let (status, body, _) = deployment.http(function, method, query).await;
        assert_eq!(status, 400, "{function} {query}");
        assert!(body["error"].as_str().unwrap().contains(expected), "{body}");
    }

    let (status, body, _) = deployment.http("function-erase", "DELETE", &format!("user={target}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["erased"]["historyRecords"].as_u64(), Some(exported));
    assert_eq!(body["erased"]["stateEntries"].as_u64(), Some(1));
    let (_, body, _) = deployment.http("function-export", "POST", &format!("user={target}")).await;
    assert_eq!(body["exported"], 0);
    let (_, body, _) = deployment.http("function-export", "GET", &format!("user={neighbour}")).await;
    assert!(body["exported"].as_u64().unwrap() >= 1, "the neighbour keeps their history");

    // Still in scope: the next run records the user again, as a first sighting.
    let reply = deployment.run(2).await;
    assert!(reply["Logs"][0].as_str().unwrap().contains("changes="));
    let (_, body, _) = deployment.http("function-export", "GET", &format!("user={target}")).await;
    assert_eq!(body["exported"], 1, "{body}");

    // The audit trail: two exports of the target, the erasure, two more exports of the target
    // around one of the neighbour (each with its invocation id and counts), and nowhere the
    // target's id. Rejected requests did nothing, so they are not in it.
    let output = cli(&deployment, &["audit"], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let trail: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let operations: Vec<&str> = trail.iter().map(|e| e["operation"].as_str().unwrap()).collect();
    assert_eq!(operations, ["export", "export", "erase", "export", "export", "export"]);
    let erase = &trail[2];
    assert_eq!(erase["records"].as_u64(), Some(exported));
    assert_eq!(erase["invocationId"], "function-erase-DELETE");
    assert!(!StoredBytes(output.stdout.clone()).contains_id(target));
    assert!(!sqlite_bytes(&deployment.db).0.is_empty());
    let output = cli(&deployment, &["audit", "--user", &target.to_string()], &[]);
    let about_target: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(about_target.len(), 5, "found by the reference computed from the id: {about_target:?}");
    assert!(about_target.iter().all(|e| e["subject"] == erase["subject"]));
}

#[tokio::test]
async fn erasure_of_a_user_out_of_scope_is_not_undone_by_the_next_run() {
    let deployment = deploy(200, &[]).await;
    deployment.run(0).await;
    // Someone the product once tracked, who is in none of the configured groups any more.
    let former = UserId::from_u128(0x0bad_c0de_0000_4000_8000_0000_0000_0001);
    {
        let store = SqliteStore::open(&deployment.db, None).await.unwrap();
        let run = run_context(1);
        store.last_known(&run).await.unwrap();
        let mut plan = plan(1, &[], &[]);
        plan.changes.push(ChangeRecord {
            subject: Subjects::plain().stored_id(former),
            availability: "Away".into(),
            timestamp: Utc::now() - TimeDelta::days(1),
        });
        store.record(&run, plan).await.unwrap();
    }
    // The next run sees they are out of scope and stops tracking them; their history stays.
    let reply = deployment.run(1).await;
    assert!(reply["Logs"][0].as_str().unwrap().contains("departed=1"), "{reply}");
    let output = cli(&deployment, &["erase", "--user", &former.expose_object_id().to_string()], &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("1 history records and 0 state entries removed"), "{said}");
    deployment.run(2).await;
    assert!(!sqlite_bytes(&deployment.db).contains_user(former), "not re-created: not in scope");
}

#[tokio::test]
async fn the_pseudonym_mode_stores_no_object_id_and_export_and_erasure_work_from_the_id() {
    let deployment = deploy(300, &[("USER_ID_PSEUDONYM_KEY", KEY)]).await;
    deployment.run(0).await;
    deployment.run(1).await;
    let users = deployment.users();
    let stored = sqlite_bytes(&deployment.db);
    for user in &users {
        assert!(!stored.contains_user(*user), "object id {} is stored in clear", user.expose_object_id());
        assert!(stored.contains_subject(pseudonyms().stored_id(*user)), "its pseudonym is what is stored");
    }
    assert!(!StoredBytes(deployment.logs().into_bytes()).contains_user(users[0]), "not even at debug level");

    let target = users[5];
    let target_id = target.expose_object_id();
    let (status, body, _) = deployment.http("function-export", "GET", &format!("user={target_id}")).await;
    assert_eq!(status, 200);
    assert!(body["exported"].as_u64().unwrap() >= 1);
    assert!(body["records"].as_array().unwrap().iter().all(|r| r["userId"] == target_id.to_string()));
    // The CLI needs the key too; without it the records cannot be found.
    let with_key = cli(&deployment, &["export", "--user", &target_id.to_string()], &[("USER_ID_PSEUDONYM_KEY", KEY)]);
    let records: Vec<Value> = serde_json::from_slice(&with_key.stdout).unwrap();
    assert_eq!(records.len() as u64, body["exported"].as_u64().unwrap());
    let without = cli(&deployment, &["export", "--user", &target_id.to_string()], &[]);
    assert_eq!(serde_json::from_slice::<Vec<Value>>(&without.stdout).unwrap(), Vec::<Value>::new());

    let (status, body, _) = deployment.http("function-erase", "POST", &format!("user={target_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["erased"]["stateEntries"], 1);
    assert!(!sqlite_bytes(&deployment.db).contains_subject(pseudonyms().stored_id(target)));
}

#[tokio::test]
async fn a_bad_pseudonym_key_fails_runs_with_a_clear_error_that_does_not_echo_it() {
    let short = "c2hvcnQta2V5"; // "short-key"
    let deployment = deploy(10, &[("USER_ID_PSEUDONYM_KEY", short)]).await;
    let response = reqwest::Client::new()
        .post(deployment.handler.url("/function-timer"))
        .body(timer_body("2026-12-02T10:05:00Z", "2026-12-02T10:00:00Z", false, "2026-12-02T10:05:00.01Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let lines = deployment.handler.wait_for_stderr("USER_ID_PSEUDONYM_KEY");
    let text = lines.join("\n");
    assert!(text.contains("USER_ID_PSEUDONYM_KEY: the key is 9 bytes; expected at least 32"), "{text}");
    assert!(!text.contains(short));
}

// --- Retention ---------------------------------------------------------------------------------

/// A tenant with fixed members and availabilities, set by the test.
struct FixedTenant {
    members: Vec<UserId>,
    presence: Vec<(UserId, &'static str)>,
}

#[async_trait]
impl Tenant for FixedTenant {
    async fn members(&self, _groups: &[GroupId], _run: &RunContext) -> Result<Membership, GraphError> {
        let mut users = self.members.clone();
        users.sort();
        Ok(Membership { users, ..Membership::default() })
    }

    async fn presence(&self, _users: &[UserId], _run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        let observations = self
            .presence
            .iter()
            .map(|(user, a)| Observation { user_id: *user, availability: Availability::from(*a) })
            .collect();
        Ok(PresenceSnapshot { observations, ..PresenceSnapshot::default() })
    }
}

/// State from long ago: the retention turns it into "unknown". An observed user is recorded
/// again (the history in the window starts with what they were), an unobserved one is dropped.
async fn state_past_retention_is_forgotten(store: Arc<dyn Store>) {
    let old = Utc::now() - TimeDelta::days(120);
    let old_run = RunContext::new("old", Slot::new(old), Duration::from_secs(60));
    store.last_known(&old_run).await.unwrap();
    let records = [(subject(1), "Available"), (subject(2), "Away"), (subject(3), "Busy")]
        .map(|(subject, a)| ChangeRecord { subject, availability: a.into(), timestamp: old });
    store
        .record(&old_run, RecordPlan { changes: records.to_vec(), departed: Vec::new(), observed_at: old })
        .await
        .unwrap();

    let tenant = Arc::new(FixedTenant {
        members: vec![user(1), user(2), user(3)],
        presence: vec![(user(1), "Available"), (user(3), "Busy")],
    });
    // Without retention nothing changed, so nothing is written (the control case).
    let keep_forever = PollCycle::new(vec![GroupId::from_u128(1)], tenant.clone(), store.clone());
    let summary = keep_forever.run(&run_context(1)).await.unwrap();
    assert_eq!((summary.changes, summary.departed), (0, 0));

    let cycle = PollCycle::new(vec![GroupId::from_u128(1)], tenant, store.clone())
        .with_privacy(Subjects::plain(), Retention::days(90));
    let summary = cycle.run(&run_context(2)).await.unwrap();
    assert_eq!((summary.changes, summary.departed), (2, 1));
    let state = store.last_known(&run_context(3)).await.unwrap();
    let recent = Utc::now() - TimeDelta::hours(1);
    assert!(state.get(&subject(1)).is_some_and(|k| k.at > recent), "re-anchored");
    assert!(state.get(&subject(3)).is_some_and(|k| k.at > recent), "re-anchored");
    assert!(state.get(&subject(2)).is_none(), "unobserved past retention: no longer tracked");
    assert_eq!(cycle.run(&run_context(3)).await.unwrap().changes, 0, "and then only changes again");
}

#[tokio::test]
async fn sqlite_state_past_retention_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    state_past_retention_is_forgotten(Arc::new(SqliteStore::open(&dir.path().join("p.db"), None).await.unwrap())).await;
}

#[tokio::test]
async fn cosmos_state_past_retention_is_forgotten() {
    let emulator = Emulator::new();
    state_past_retention_is_forgotten(Arc::new(emulator.store(Tuning::default(), Vec::new()).await)).await;
}

#[tokio::test]
async fn sqlite_deletes_records_past_retention_on_every_run_and_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let now = Utc::now();
    let store = SqliteStore::open(&path, Some(Retention::days(90))).await.unwrap();
    let record_at = |days_ago: i64, a: &'static str| {
        let at = now - TimeDelta::days(days_ago);
        let run = RunContext::new("r", Slot::new(at), Duration::from_secs(60));
        let plan = RecordPlan {
            changes: vec![ChangeRecord { subject: subject(1), availability: a.into(), timestamp: at }],
            departed: Vec::new(),
            observed_at: at,
        };
        (run, plan)
    };
    for (days_ago, a) in [(200, "Available"), (100, "Away")] {
        let (run, plan) = record_at(days_ago, a);
        store.last_known(&run).await.unwrap();
        store.record(&run, plan).await.unwrap();
    }
    // The run dated 100 days ago deleted what was past retention at its time (200 days ago).
    let kept: Vec<String> =
        store.export_subject(subject(1)).await.unwrap().iter().map(|r| r.availability.to_string()).collect();
    assert_eq!(kept, ["Away"]);
    drop(store);
    // Opened today, the rest is past retention too: history and state.
    let store = SqliteStore::open(&path, Some(Retention::days(90))).await.unwrap();
    assert!(store.export_subject(subject(1)).await.unwrap().is_empty());
    assert!(store.last_known(&run_context(1)).await.unwrap().is_empty());
    assert!(!sqlite_bytes(&path).contains_user(user(1)), "deleted rows are overwritten in the file");
}

#[tokio::test]
async fn rights_work_on_cosmos_in_the_pseudonym_mode() {
    let emulator = Emulator::new();
    let store: Arc<dyn Store> = Arc::new(emulator.store(Tuning::default(), Vec::new()).await);
    let tenant =
        Arc::new(FixedTenant { members: vec![user(1), user(2)], presence: vec![(user(1), "Busy"), (user(2), "Away")] });
    let cycle = PollCycle::new(vec![GroupId::from_u128(1)], tenant, store.clone())
        .with_privacy(pseudonyms(), Retention::days(90));
    cycle.run(&run_context(1)).await.unwrap();
    let docs = serde_json::to_vec(&emulator.history_documents().await).unwrap();
    assert!(!StoredBytes(docs.clone()).contains_user(user(1)));
    assert!(StoredBytes(docs).contains_subject(pseudonyms().stored_id(user(1))));

    let rights = Rights::new(store.clone(), pseudonyms());
    let records = rights.export(user(1), "inv-export").await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].user_id, records[0].availability.as_str()), (user(1), "Busy"));
    let erased = rights.erase(user(1), "inv-erase").await.unwrap();
    assert_eq!((erased.history_records, erased.state_entries), (1, 1));
    assert!(rights.export(user(1), "inv-export-2").await.unwrap().is_empty());
    let trail = rights.audit_trail().await.unwrap();
    let seen: Vec<(AuditOperation, usize, &str)> =
        trail.iter().map(|e| (e.operation, e.records, e.invocation_id.as_str())).collect();
    assert_eq!(
        seen,
        [
            (AuditOperation::Export, 1, "inv-export"),
            (AuditOperation::Erase, 1, "inv-erase"),
            (AuditOperation::Export, 0, "inv-export-2")
        ]
    );
    assert!(trail.iter().all(|e| e.subject == rights.audit_reference(user(1))));
    let state = serde_json::to_vec(&emulator.documents(&emulator.settings.state_container).await).unwrap();
    assert!(!StoredBytes(state).contains_user(user(1)), "the audit trail does not name the person");
}

#[test]
fn the_rights_functions_are_key_protected_http_functions_that_reply_through_res() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read =
        |path: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(root.join(path)).unwrap()).unwrap() };
    for (folder, auth, methods) in [
        (teams_presence::handler::EXPORT_FUNCTION, "function", vec!["get", "post"]),
        (teams_presence::handler::ERASE_FUNCTION, "admin", vec!["post", "delete"]),
    ] {
        let bindings = read(&format!("{folder}/function.json"))["bindings"].as_array().unwrap().clone();
        assert_eq!(bindings.len(), 2, "{folder}: one trigger and one output, so the host could forward it");
        let trigger = bindings.iter().find(|b| b["direction"] == "in").unwrap();
        assert_eq!(trigger["type"], "httpTrigger");
        assert_eq!(trigger["authLevel"], auth, "{folder}: the host checks the key, never anonymous");
        assert_eq!(trigger["methods"], serde_json::json!(methods));
        let output = bindings.iter().find(|b| b["direction"] == "out").unwrap();
        assert_eq!(
            (output["type"].as_str(), output["name"].as_str()),
            (Some("http"), Some(teams_presence::handler::http_trigger::RESPONSE_BINDING))
        );
    }
    // The handler reads the host's invocation payload (not a forwarded request), so that each
    // request carries the invocation id and its Logs reach Application Insights.
    assert_eq!(read("host.json")["customHandler"]["enableForwardingHttpRequest"], false);
}
