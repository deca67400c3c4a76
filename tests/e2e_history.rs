//! End to end: the real `handler serve` process, the Graph simulator, timer invocations POSTed as
//! the Functions host does, and the embedded store. The recorded history must equal, record for
//! record, what the simulator's true presence says at each observation.

mod common;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use common::handler_process::{HandlerProcess, tenant_env, timer_body};
use serde_json::Value;
use teams_presence::model::{GroupId, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::RightsStore;
use teams_presence::store::sqlite::SqliteStore;

struct Tenant {
    sim: SimHandle,
    handler: HandlerProcess,
    groups: Vec<GroupId>,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn start(users: u32) -> Tenant {
    let sim = Simulator::start(SimConfig::standard(users).max_page_size(200)).await.unwrap();
    let groups = standard_groups()[..3].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let handler = HandlerProcess::start(&tenant_env(&sim, &groups, &db, &[]));
    Tenant { sim, handler, groups, db, _dir: dir }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What the host sends for the occurrence `slot`.
fn invocation(slot: DateTime<Utc>) -> String {
    timer_body(&ts(slot), &ts(slot - Duration::minutes(5)), false, &ts(Utc::now()))
}

async fn invoke(tenant: &Tenant, body: String, invocation_id: &str) -> Value {
    let response = reqwest::Client::new()
        .post(tenant.handler.url("/function-timer"))
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", tenant.handler.stderr_lines());
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["Outputs"], serde_json::json!({}));
    assert!(reply["ReturnValue"].is_null());
    reply
}

fn summary(reply: &Value, field: &str) -> u64 {
    let line = reply["Logs"][0].as_str().unwrap();
    line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{field}="))?.parse().ok()).unwrap()
}

/// The history a correct poller writes: for each observation `(slot, epoch)`, a record when the
/// true availability differs from the user's last record, unless that user already has a record
/// for the slot (a repeated slot: the stored record stands and the change waits for a later slot).
fn expected_history(
    sim: &SimHandle,
    users: &[UserId],
    observations: &[(DateTime<Utc>, u64)],
) -> HashMap<UserId, Vec<(String, DateTime<Utc>)>> {
    let mut history = HashMap::new();
    for user in users {
        let mut records: Vec<(String, DateTime<Utc>)> = Vec::new();
        let mut slots = HashSet::new();
        for (slot, epoch) in observations {
            let truth = sim.truth(user, *epoch).expect("truth kept for recent epochs").to_string();
            if records.last().map(|(a, _)| a) != Some(&truth) && slots.insert(*slot) {
                records.push((truth, *slot));
            }
        }
        history.insert(*user, records);
    }
    history
}

async fn recorded_history(tenant: &Tenant, users: &[UserId]) -> HashMap<UserId, Vec<(String, DateTime<Utc>)>> {
    let store = SqliteStore::open(&tenant.db, None).await.unwrap();
    let mut history = HashMap::new();
    for user in users {
        let records = store.export_subject(Subjects::plain().stored_id(*user)).await.unwrap();
        history.insert(*user, records.into_iter().map(|r| (r.availability.to_string(), r.timestamp)).collect());
    }
    history
}

/// Compares availabilities exactly, and maps each recorded timestamp (the run's observation time)
/// to the slot of the run that made it.
fn assert_same_history(
    expected: &HashMap<UserId, Vec<(String, DateTime<Utc>)>>,
    recorded: &HashMap<UserId, Vec<(String, DateTime<Utc>)>>,
    run_windows: &[(DateTime<Utc>, DateTime<Utc>, DateTime<Utc>)],
) {
    let slot_of = |t: DateTime<Utc>| -> Vec<DateTime<Utc>> {
        run_windows.iter().filter(|(_, from, to)| *from <= t && t <= *to).map(|(slot, _, _)| *slot).collect()
    };
    let mut records = 0;
    for (user, want) in expected {
        let got = &recorded[user];
        let got_values: Vec<&String> = got.iter().map(|(a, _)| a).collect();
        let want_values: Vec<&String> = want.iter().map(|(a, _)| a).collect();
        assert_eq!(got_values, want_values, "availabilities of {}", user.expose_object_id());
        for ((_, at), (_, slot)) in got.iter().zip(want) {
            assert!(
                slot_of(*at).contains(slot),
                "{}: record at {at} is not from the run of slot {slot}",
                user.expose_object_id()
            );
        }
        records += got.len();
    }
    assert!(records > expected.len(), "the scenario must include changes, not only first sightings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_history_equals_the_simulated_truth_over_many_runs() {
    let tenant = start(800).await;
    let users = tenant.sim.expected_users(&tenant.groups);
    let first = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().with_timezone(&Utc);
    let mut observations = Vec::new();
    let mut windows = Vec::new();
    for run in 0..10 {
        let slot = first + Duration::minutes(5 * run);
        let from = Utc::now();
        let reply = invoke(&tenant, invocation(slot), &format!("e2e-run-{run}")).await;
        windows.push((slot, from, Utc::now()));
        observations.push((slot, tenant.sim.current_epoch()));
        assert_eq!(summary(&reply, "users"), users.len() as u64);
        assert_eq!(summary(&reply, "observed"), users.len() as u64);
        tenant.sim.advance_epoch();
    }
    let expected = expected_history(&tenant.sim, &users, &observations);
    let recorded = recorded_history(&tenant, &users).await;
    assert_same_history(&expected, &recorded, &windows);
    // Every user id the simulator knows is in scope through the three groups (the fourth is nested).
    assert_eq!(users.len(), 800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_slot_writes_no_duplicate_and_loses_no_change() {
    let tenant = start(400).await;
    let users = tenant.sim.expected_users(&tenant.groups);
    let first = DateTime::parse_from_rfc3339("2026-11-22T11:00:00Z").unwrap().with_timezone(&Utc);
    let mut observations = Vec::new();
    let mut windows = Vec::new();
    let mut observe = |slot, epoch, from, to| {
        observations.push((slot, epoch));
        windows.push((slot, from, to));
    };

    for (run, slot_index) in [0, 1, 2].into_iter().enumerate() {
        let slot = first + Duration::minutes(5 * slot_index);
        let from = Utc::now();
        invoke(&tenant, invocation(slot), &format!("run-{run}")).await;
        observe(slot, tenant.sim.current_epoch(), from, Utc::now());
        tenant.sim.advance_epoch();
    }

    // Slot 2 again, twice and concurrently (a manual re-run racing a lease failover), after
    // presence moved on: users with a record in slot 2 keep it; the others' changes are recorded.
    tenant.sim.advance_epoch();
    let slot = first + Duration::minutes(10);
    let from = Utc::now();
    let (a, b) =
        tokio::join!(invoke(&tenant, invocation(slot), "repeat-a"), invoke(&tenant, invocation(slot), "repeat-b"));
    observe(slot, tenant.sim.current_epoch(), from, Utc::now());
    observe(slot, tenant.sim.current_epoch(), from, Utc::now());
    // Runs never overlap in one process: the second of the pair saw the first's records.
    let changes = [summary(&a, "changes"), summary(&b, "changes")];
    assert!(changes.contains(&0), "one of two identical repeats must find nothing new: {changes:?}");

    // A later slot records what the repeats could not.
    for (run, slot_index) in [3, 4].into_iter().enumerate() {
        let slot = first + Duration::minutes(5 * slot_index);
        let from = Utc::now();
        invoke(&tenant, invocation(slot), &format!("later-{run}")).await;
        observe(slot, tenant.sim.current_epoch(), from, Utc::now());
        tenant.sim.advance_epoch();
    }

    let expected = expected_history(&tenant.sim, &users, &observations);
    let recorded = recorded_history(&tenant, &users).await;
    assert_same_history(&expected, &recorded, &windows);
    for (user, records) in &recorded {
        let mut ats: Vec<_> = records.iter().map(|(_, at)| at).collect();
        ats.dedup();
        assert_eq!(ats.len(), records.len(), "{} has two records of one run", user.expose_object_id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_host_payload_variant_runs_and_past_due_is_its_own_slot() {
    let tenant = start(120).await;
    let variants = [
        // Recorded shape: Z, milliseconds.
        timer_body("2026-11-22T12:00:00.000Z", "2026-11-22T11:55:00.000Z", false, "2026-11-22T12:00:00.012Z"),
        // Offsets and seven fraction digits, as Newtonsoft writes DateTime.
        timer_body("2026-11-22T12:05:00.0000000+00:00", "2026-11-22T12:00:00.0000000+00:00", false, "2026-11-22T12:05:00.0123456+00:00"),
        // First run ever: Last is .NET's default, with no offset.
        timer_body("2026-11-22T12:10:00", "0001-01-01T00:00:00", false, "2026-11-22T12:10:00.5"),
        // useMonitor off: no schedule status; the slot is the invocation minute.
        r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"UtcNow":"2026-11-22T12:15:00.004Z"}}}"#.to_string(),
        // camelCase keys and unknown fields.
        r#"{"data":{"myTimer":{"scheduleStatus":{"next":"2026-11-22T12:20:00Z","last":"2026-11-22T12:15:00Z"},"isPastDue":false,"extra":1}},"metadata":{"sys":{"utcNow":"2026-11-22T12:20:00Z"}},"More":true}"#.to_string(),
        // Past due after downtime: the missed slot, not the next regular one.
        timer_body("2026-11-22T09:00:00Z", "2026-11-22T08:55:00Z", true, "2026-11-22T12:22:13Z"),
    ];
    for (i, body) in variants.into_iter().enumerate() {
        let reply = invoke(&tenant, body, &format!("variant-{i}")).await;
        let line = reply["Logs"][0].as_str().unwrap();
        assert!(line.starts_with("run slot="), "{line}");
        tenant.sim.advance_epoch();
    }
    // Log lines reach the test through reader threads: wait until the last run's are in.
    let started_slots = |logs: &[String]| -> Vec<String> {
        logs.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["message"] == "run started")
            .map(|e| e["slot"].as_str().unwrap().to_string())
            .collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (logs, slots) = loop {
        let logs: Vec<String> =
            tenant.handler.stdout_lines().into_iter().chain(tenant.handler.stderr_lines()).collect();
        let slots = started_slots(&logs);
        if slots.len() >= 6 || std::time::Instant::now() > deadline {
            break (logs, slots);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        slots,
        [
            "2026-11-22T12:00:00Z",
            "2026-11-22T12:05:00Z",
            "2026-11-22T12:10:00Z",
            "2026-11-22T12:15:00Z",
            "2026-11-22T12:20:00Z",
            "2026-11-22T09:00:00Z"
        ]
    );
    let past_due = logs.iter().find(|l| l.contains("past-due run")).expect("past-due warning");
    assert!(past_due.contains("variant-5"), "{past_due}");
    // Every line of a run carries its invocation id.
    for line in logs.iter().filter(|l| l.contains("\"run started\"") || l.contains("\"run finished\"")) {
        assert!(line.contains("\"invocation_id\":\"variant-"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_once_runs_one_cycle_from_the_command_line() {
    let sim = Simulator::start(SimConfig::standard(300)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let groups: Vec<String> = standard_groups()[..3].iter().map(GroupId::to_string).collect();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["poll-once", "--groups", &groups.join(",")])
        .env_clear()
        .env("GRAPH_BASE_URL", sim.base_url())
        .env("IDENTITY_ENDPOINT", sim.identity_endpoint())
        .env("IDENTITY_HEADER", sim.identity_header())
        .env("PRESENCE_DB", &db)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.starts_with("run slot=")).expect("summary line");
    assert!(line.contains(" users=300 ") && line.contains(" changes=300 "), "{line}");
    let store = SqliteStore::open(&db, None).await.unwrap();
    let user = sim.expected_users(&standard_groups()[..3])[0];
    let records = store.export_subject(Subjects::plain().stored_id(user)).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].availability.as_str(), sim.truth(&user, sim.current_epoch()).unwrap());
}
