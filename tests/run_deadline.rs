//! The run deadline reached with work left: presence so slow that a run's budget ends with
//! presence batches still to do. The run must return at its deadline (not when the work would
//! have ended), say in a log line that work was left, record only what it observed (the truth),
//! and the next run must record the rest: nothing lost, nothing wrong (`common::oracle`).
//!
//! In process with budgets of one second (the production Graph client, poll cycle and embedded
//! store), and through the real `handler` with `RUN_DEADLINE_SECONDS` at its minimum, 10 s.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use common::handler_process::{HandlerProcess, tenant_env, timer_body};
use common::oracle::{CompletedRun, compare};
use serde_json::Value;
use teams_presence::cycle::PollCycle;
use teams_presence::model::{Slot, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::run::{RunContext, RunSummary};
use teams_presence::simulator::{Endpoint, Fault, SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::{RightsStore, RunStore};

fn first_slot() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T00:00:00Z").unwrap().to_utc()
}

async fn history(store: &SqliteStore, users: &[UserId]) -> HashMap<UserId, Vec<(String, DateTime<Utc>)>> {
    let mut recorded = HashMap::new();
    for user in users {
        let records = store.export_subject(Subjects::plain().stored_id(*user)).await.unwrap();
        recorded.insert(*user, records.into_iter().map(|r| (r.availability.to_string(), r.timestamp)).collect());
    }
    recorded
}

/// The JSON log lines whose message is `message`, with their fields at the top level (as the
/// handler prints them; the in-process capture nests them under `fields`).
fn events(text: &str, message: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|mut event| {
            if let Some(Value::Object(fields)) = event.get("fields").cloned() {
                event.as_object_mut().unwrap().extend(fields);
            }
            event
        })
        .filter(|e| e["message"] == message)
        .collect()
}

/// What the Graph client logs when the deadline left presence calls undone.
const WORK_LEFT: &str = "run deadline reached with presence calls left; the next run reads them";

struct Bench {
    sim: SimHandle,
    users: Vec<UserId>,
    cycle: PollCycle,
    store: Arc<SqliteStore>,
    runs: Vec<CompletedRun>,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn new() -> Self {
        // Every Graph call takes 300 ms. 1,200 users in batches of 100, two in flight: a whole run
        // is one member page per group and six rounds of presence, about 2.1 s.
        let config = SimConfig::standard(1_200).latency(Duration::from_millis(300)).change_rate(0.3);
        let sim = Simulator::start(config).await.unwrap();
        let groups = standard_groups()[..3].to_vec();
        let users = sim.expected_users(&groups);
        let mut settings = common::graph_sim::settings(&sim);
        settings.presence_concurrency = 2;
        settings.tuning.presence_batch_size = 100;
        let client = common::graph_sim::client(&sim, &settings);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("presence.db"), None).await.unwrap());
        let cycle = PollCycle::new(groups, Arc::new(client), store.clone() as Arc<dyn RunStore>);
        Self { sim, users, cycle, store, runs: Vec::new(), _dir: dir }
    }

    /// Runs `slot` with `budget`; returns the summary and how long the run took.
    async fn run(&mut self, slot: i64, budget: Duration) -> (RunSummary, Duration) {
        let context =
            RunContext::new(format!("deadline-{slot}"), Slot::new(first_slot() + TimeDelta::minutes(5 * slot)), budget);
        let epoch = self.sim.current_epoch();
        let started = Instant::now();
        let summary = self.cycle.run(&context).await.expect("a run cut by its deadline still completes");
        let took = started.elapsed();
        let truth = self.users.iter().map(|u| (*u, self.sim.truth(u, epoch).unwrap())).collect();
        let complete = summary.unobserved == 0 && summary.unreadable_groups == 0;
        self.runs.push(CompletedRun { observed_at: summary.observed_at, complete, truth });
        println!(
            "deadline: slot {slot} budget {} ms took {} ms: observed={} unobserved={} changes={}",
            budget.as_millis(),
            took.as_millis(),
            summary.observed,
            summary.unobserved,
            summary.changes
        );
        (summary, took)
    }
}

/// How far past its budget a run may return: the budget bounds Graph work; the store write that
/// follows (a few milliseconds here) and scheduling on a busy 2-core machine come on top. Still
/// well short of when the work would have ended (2.1 s in process, 15 s through the handler).
const SLACK: Duration = Duration::from_millis(500);

#[tokio::test]
async fn a_run_cut_by_its_deadline_records_what_it_saw_and_the_next_run_the_rest() {
    let (logs, _guard) = common::log_capture::capture(tracing::Level::INFO);
    let mut bench = Bench::new().await;
    let cut = Duration::from_secs(1);
    let ample = Duration::from_secs(10);

    // First sightings, cut: only what was observed is recorded.
    let (summary, took) = bench.run(0, cut).await;
    assert!(summary.observed > 0 && summary.unobserved > 0, "the budget must cut the run part-way: {summary:?}");
    assert_eq!(summary.observed + summary.unobserved, bench.users.len());
    assert_eq!(summary.changes, summary.observed, "one record per observed user, none for the others");
    assert!(took < cut + SLACK, "returned {} ms after a {} ms budget", took.as_millis(), cut.as_millis());
    let text = logs.text();
    let left = events(&text, WORK_LEFT);
    assert_eq!(left.len(), 1, "one line saying work was left: {text}");
    assert_eq!(left[0]["level"], "WARN");
    assert_eq!(left[0]["ids"], summary.unobserved as u64, "{}", left[0]);
    assert!(!text.contains("some presence calls failed"), "the deadline is not reported as Graph failing: {text}");
    let recorded: usize = history(&bench.store, &bench.users).await.values().map(Vec::len).sum();
    assert_eq!(recorded, summary.observed);

    // Presence has not moved: the next run with time to finish records exactly the users left.
    let left_over = summary.unobserved;
    let (summary, _) = bench.run(1, ample).await;
    assert_eq!((summary.unobserved, summary.changes), (0, left_over), "{summary:?}");

    // Presence moving, runs cut and whole in turn.
    for slot in 2..8 {
        bench.sim.advance_epoch();
        let budget = if slot % 2 == 0 { cut } else { ample };
        let (summary, took) = bench.run(slot, budget).await;
        if budget == cut {
            assert!(summary.unobserved > 0, "{summary:?}");
            assert!(took < cut + SLACK, "returned {} ms after a {} ms budget", took.as_millis(), cut.as_millis());
        } else {
            assert_eq!(summary.unobserved, 0, "{summary:?}");
        }
    }
    let figures = compare(&bench.users, &bench.runs, &history(&bench.store, &bench.users).await);
    let figures = common::oracle::Figures { runs: bench.runs.len(), ..figures };
    println!("deadline: {figures}");
    assert_eq!((figures.lost, figures.duplicated, figures.wrong), (0, 0, 0), "{figures}");
    assert!(figures.changes_expected > bench.users.len() * 3 / 2, "presence barely changed: {figures}");
    assert_eq!(events(&logs.text(), WORK_LEFT).len(), 4, "one work-left line per cut run");
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

async fn invoke(handler: &HandlerProcess, slot: i64) -> (Value, Duration) {
    let at = first_slot() + TimeDelta::minutes(5 * slot);
    let body = timer_body(&ts(at), &ts(at - TimeDelta::minutes(5)), false, &ts(Utc::now()));
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(handler.url("/function-timer"))
        .header("X-Azure-Functions-InvocationId", format!("deadline-{slot}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", handler.stderr_lines());
    let reply: Value = response.json().await.unwrap();
    (reply, started.elapsed())
}

fn summary_field(reply: &Value, name: &str) -> usize {
    let line = reply["Logs"][0].as_str().unwrap();
    line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{name}="))?.parse().ok()).unwrap()
}

/// The production setting: `RUN_DEADLINE_SECONDS=10` (its minimum), presence calls slowed to 3 s
/// each, one in flight. The run returns at 10 s with a batch unfinished, the host gets a success
/// whose summary counts the unobserved users, and the next (fast) run records them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_returns_at_run_deadline_seconds_and_the_next_run_completes() {
    let sim = Simulator::start(SimConfig::standard(3_000)).await.unwrap();
    let groups = standard_groups()[..3].to_vec();
    let users = sim.expected_users(&groups);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let env = tenant_env(&sim, &groups, &db, &[("RUN_DEADLINE_SECONDS", "10"), ("PRESENCE_CONCURRENCY", "1")]);
    let handler = HandlerProcess::start(&env);
    // Five batches of 650; the first four take 3 s each: three finish, the fourth is in flight at
    // 10 s and the fifth never starts.
    sim.inject(Endpoint::Presence, Fault::Slow(Duration::from_secs(3)), 4);
    let (reply, took) = invoke(&handler, 0).await;
    let (observed, unobserved) = (summary_field(&reply, "observed"), summary_field(&reply, "unobserved"));
    println!("deadline (handler): took {} ms: observed={observed} unobserved={unobserved}", took.as_millis());
    assert_eq!((observed, unobserved), (3 * 650, users.len() - 3 * 650), "{reply}");
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(10) + 2 * SLACK, "{took:?}");
    let stderr = handler.wait_for_stderr(WORK_LEFT).join("\n");
    let left = events(&stderr, WORK_LEFT);
    assert_eq!(left.len(), 1, "{stderr}");
    assert_eq!(left[0]["ids"], unobserved as u64, "{}", left[0]);
    assert_eq!(left[0]["span"]["invocation_id"], "deadline-0", "the line names the run: {}", left[0]);

    let (reply, took) = invoke(&handler, 1).await;
    println!("deadline (handler): next run took {} ms: {}", took.as_millis(), reply["Logs"][0]);
    assert_eq!(summary_field(&reply, "unobserved"), 0);
    assert_eq!(summary_field(&reply, "changes"), unobserved, "the next run records exactly the users left");
    let store = SqliteStore::open(&db, None).await.unwrap();
    let recorded = history(&store, &users).await;
    let epoch = sim.current_epoch();
    for user in &users {
        let records = &recorded[user];
        assert_eq!(records.len(), 1, "{}", user.expose_object_id());
        assert_eq!(records[0].0, sim.truth(user, epoch).unwrap(), "{}", user.expose_object_id());
    }
}
