//! The pseudonym mode's promise, searched for byte by byte: with `USER_ID_PSEUDONYM_KEY` set, no
//! raw Entra object id of the tenant is in any console line (at debug level, the most talkative)
//! or anywhere in storage (the SQLite file and its WAL; every Cosmos DB document, binary fields
//! decoded) — including while a presence batch that Graph refuses with 400 is bisected down to
//! the one user it refuses, the path that once logged that user's object id.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{SecondsFormat, TimeDelta, Utc};
use common::cosmos_emulator::Emulator;
use common::graph_sim;
use common::handler_process::{HandlerProcess, tenant_env, timer_body};
use common::log_capture::Captured;
use teams_presence::cycle::PollCycle;
use teams_presence::model::{GroupId, Slot, UserId};
use teams_presence::privacy::{PseudonymKey, Retention, Subjects};
use teams_presence::run::RunContext;
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, standard_groups, user_id};
use teams_presence::store::cosmos::Tuning;
use teams_presence::telemetry::Telemetry;
use teams_presence::telemetry::instrumented::InstrumentedStore;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

const KEY: &str = "c2VjcmV0LWtleS1mb3ItcHNldWRvbnltcy0zMi1ieXRlcyE="; // 33 bytes
const USERS: u32 = 120;
/// In the first configured group (users 0..40 %), so a run asks for their presence.
const REFUSED: u32 = 7;
const REFUSED_LINE: &str = "Graph refused presence for this user";

fn pseudonyms() -> Subjects {
    Subjects::pseudonymous(PseudonymKey::parse(KEY).unwrap())
}

/// Every user the simulated tenant has, in scope or not: none of them may appear raw.
fn tenant_object_ids() -> Vec<Uuid> {
    (0..USERS).map(|i| object_id(user_id(i))).collect()
}

fn object_id(user: UserId) -> Uuid {
    user.expose_object_id()
}

fn stored_id(user: UserId) -> Uuid {
    pseudonyms().stored_id(user).as_uuid()
}

/// The id as text (any case, hyphenated or not) or as its 16 raw bytes.
fn contains_id(haystack: &[u8], id: Uuid) -> bool {
    let text = String::from_utf8_lossy(haystack).to_ascii_lowercase();
    let forms = [id.hyphenated().to_string(), id.simple().to_string()];
    forms.iter().any(|f| text.contains(f.as_str())) || haystack.windows(16).any(|w| w == id.as_bytes())
}

/// The raw object ids found in `haystack`, as text for the failure message.
fn raw_ids_in(haystack: &[u8]) -> Vec<String> {
    tenant_object_ids().into_iter().filter(|id| contains_id(haystack, *id)).map(|id| id.to_string()).collect()
}

fn refused_tenant() -> SimConfig {
    SimConfig::standard(USERS).max_page_size(200).rejected_users([REFUSED])
}

/// Bisection happened: the users in scope fit one batch, and finding the one refused id takes
/// more calls than the one a run needs.
fn assert_bisected(sim: &SimHandle, runs: u64) {
    let calls = sim.counters().presence_calls;
    assert!(calls > 3 * runs, "{calls} presence calls in {runs} runs: the refused batch was not bisected");
}

/// The lines that report the refused user carry their pseudonym: the debug path was exercised,
/// and it names the person only as storage does.
fn assert_refusal_logged_under_the_pseudonym(lines: &str) {
    let refusals: Vec<&str> = lines.lines().filter(|l| l.contains(REFUSED_LINE)).collect();
    assert!(!refusals.is_empty(), "no {REFUSED_LINE:?} line at debug level");
    let pseudonym = stored_id(user_id(REFUSED)).to_string();
    assert!(refusals.iter().all(|l| l.contains(&pseudonym)), "{refusals:#?}");
}

/// The runs did store people (so the search for object ids looked at real data): everyone in
/// scope but the refused user, who is never observed, under their pseudonym.
fn assert_every_recorded_pseudonym_is_in(stored: &[u8], sim: &SimHandle, groups: &[GroupId]) {
    let recorded: Vec<UserId> = sim.expected_users(groups).into_iter().filter(|u| *u != user_id(REFUSED)).collect();
    assert!(recorded.len() > 80, "{} users recorded", recorded.len());
    assert!(recorded.iter().all(|u| contains_id(stored, stored_id(*u))), "every pseudonym is stored");
}

#[tokio::test]
async fn the_handler_logs_and_stores_no_object_id_in_pseudonym_mode_even_while_bisecting_at_debug() {
    let sim = Simulator::start(refused_tenant()).await.unwrap();
    let groups = standard_groups()[..2].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let env = tenant_env(&sim, &groups, &db, &[("LOG_LEVEL", "debug"), ("USER_ID_PSEUDONYM_KEY", KEY)]);
    let handler = HandlerProcess::start(&env);
    let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let start = Utc::now();
    for n in 0..3 {
        let slot = start + TimeDelta::minutes(5 * n);
        let body = timer_body(&ts(slot), &ts(slot - TimeDelta::minutes(5)), false, &ts(Utc::now()));
        let (status, reply) = handler.invoke("/function-timer", &format!("run-{n}"), body).await;
        assert_eq!(status, 200, "{reply}\n{:#?}", handler.stderr_lines());
        assert!(reply.contains("unobserved=1"), "the refused user is the one left unobserved: {reply}");
        sim.advance_epoch();
    }
    assert_bisected(&sim, 3);
    // Lines arrive from the process asynchronously: the last run's summary is the last line.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !handler.stdout_lines().iter().any(|l| l.contains("run-2") && l.contains("run finished")) {
        assert!(std::time::Instant::now() < deadline, "the last run's summary was never printed");
        std::thread::sleep(Duration::from_millis(20));
    }

    let logs = [handler.stdout_lines(), handler.stderr_lines()].concat().join("\n");
    assert!(logs.contains("\"level\":\"DEBUG\""), "debug logging was on");
    assert_eq!(raw_ids_in(logs.as_bytes()), Vec::<String>::new(), "object ids in the console lines");
    assert_refusal_logged_under_the_pseudonym(&logs);

    let mut stored = Vec::new();
    for suffix in ["", "-wal"] {
        stored.extend(std::fs::read(format!("{}{suffix}", db.display())).unwrap_or_default());
    }
    assert_every_recorded_pseudonym_is_in(&stored, &sim, &groups);
    assert_eq!(raw_ids_in(&stored), Vec::<String>::new(), "object ids in the SQLite file");
}

#[tokio::test]
async fn the_production_cycle_on_cosmos_logs_and_stores_no_object_id_in_pseudonym_mode() {
    let console = Captured::default();
    let sink = console.clone();
    // The production console layer, at debug; this test's runtime is single-threaded, so every
    // line the cycle, the Graph client and the store emit lands here.
    let _subscriber = tracing::subscriber::set_default(
        Telemetry::disabled().subscriber(EnvFilter::new("debug"), move || sink.clone()),
    );
    let sim = Simulator::start(refused_tenant()).await.unwrap();
    let emulator = Emulator::new();
    // Small shards and frequent snapshots, so the state container holds shards and departures.
    let tuning = Tuning { users_per_shard: 16, min_records_between_snapshots: 40, ..Tuning::default() };
    let store = Arc::new(emulator.store(tuning, Vec::new()).await);
    let graph = graph_sim::client(&sim, &graph_sim::settings(&sim));
    let groups = standard_groups()[..2].to_vec();
    let tenant = teams_presence::app::tenant(graph, Duration::from_secs(20));
    let cycle = PollCycle::new(groups.clone(), tenant, Arc::new(InstrumentedStore(store)))
        .with_privacy(pseudonyms(), Retention::days(90));
    let start = Utc::now();
    for n in 0..3 {
        let run =
            RunContext::new(format!("run-{n}"), Slot::new(start + TimeDelta::minutes(5 * n)), Duration::from_secs(60));
        let summary = cycle.run(&run).await.unwrap();
        assert_eq!(summary.unobserved, 1, "the refused user is the one left unobserved");
        sim.advance_epoch();
    }
    assert_bisected(&sim, 3);

    let logs = console.text();
    assert!(logs.contains("\"level\":\"DEBUG\""), "debug logging was on");
    assert_eq!(raw_ids_in(logs.as_bytes()), Vec::<String>::new(), "object ids in the console lines");
    assert_refusal_logged_under_the_pseudonym(&logs);

    let mut stored = Vec::new();
    for container in [&emulator.settings.container, &emulator.settings.state_container] {
        for doc in emulator.documents(container).await {
            stored.extend(serde_json::to_vec(&doc).unwrap());
            for value in doc.values() {
                if let Some(decoded) =
                    value.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                {
                    stored.extend(decoded);
                }
            }
        }
    }
    assert_every_recorded_pseudonym_is_in(&stored, &sim, &groups);
    assert_eq!(raw_ids_in(&stored), Vec::<String>::new(), "object ids in the Cosmos DB documents");
}
