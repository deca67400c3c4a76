//! Cosmos DB at tenant scale, on a request-unit budget: the production poll cycle (the Graph
//! client with membership reuse, `PollCycle`, the Cosmos DB store) against the Graph simulator in
//! this process, the store on the SDK's in-memory emulator behind `ru_budget` (429 with
//! `x-ms-retry-after-ms` beyond the container's RU/s, as Cosmos DB answers). After the runs, the
//! stored history is compared with the simulator's truth (`oracle`): records lost or duplicated.
//!
//! Prints one JSON line per run and one per scenario. Scenarios (`COSMOS_SCALE_SCENARIOS`, a comma
//! list; default `100k,1m_equivalent,cold_start`; `scripts/bench.sh --cosmos-quick` runs `quick`):
//! - `quick`: 20,000 users at 1,000 RU/s, 3 warm runs (RU bound ~14 s each).
//! - `100k`: 100,000 users at 5,000 RU/s (a serverless container's rate below 250 GB), 3 warm runs.
//! - `1m_equivalent`: a million users' bounds at a tenth of the size: 100,000 users at 500 RU/s
//!   and 150 presence calls per 30 s, so that a warm run needs ~140 s of writes and ~30 s of Graph,
//!   as 1,000,000 users need at 5,000 RU/s and Graph's 1,500 calls per 30 s. 2 warm runs.
//! - `cold_start`: the first runs of a new deployment, every user a first sighting: 20,000 users
//!   at 1,000 RU/s with a 24 s run deadline: RU needed / (RU/s x deadline) = 5.83, as for
//!   1,000,000 users at 5,000 RU/s and the 240 s deadline. Runs until one completes.
//!
//! Warm scenarios first record every user with the budget suspended (setup, not measured).
//! Every Graph call takes 50 ms + 0..100 ms; 10% of users change per run. A run's Graph bound is
//! `graph_bound::bounds` (BENCHMARKS.md); its RU bound is the RU it used / the container's RU/s.
//! Built in the test profile (`cargo test --bench cosmos_scale`): the emulator and the simulator
//! run in this process and their CPU is in `cpu_s`; the budget, not the CPU, sets these runs' pace.

#[path = "../tests/common/cosmos_emulator.rs"]
#[allow(dead_code)]
mod cosmos_emulator;
#[path = "common/graph_bound.rs"]
#[allow(dead_code)]
mod graph_bound;
#[path = "../tests/common/oracle.rs"]
#[allow(dead_code)]
mod oracle;
#[path = "../tests/common/ru_budget.rs"]
#[allow(dead_code)]
mod ru_budget;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use cosmos_emulator::Emulator;
use oracle::{CompletedRun, FailedRun, compare_with_failed_runs};
use ru_budget::{RuBudget, Throughput};
use serde_json::{Value, json};
use teams_presence::config::{GraphSettings, GraphTuning};
use teams_presence::cycle::PollCycle;
use teams_presence::graph::client::GraphClient;
use teams_presence::model::{GroupId, Slot, UserId};
use teams_presence::run::RunContext;
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::cosmos::Tuning;
use teams_presence::telemetry::instrumented::InstrumentedStore;
use tokio::time::Instant;

const LATENCY: Duration = Duration::from_millis(50);
const LATENCY_SPREAD: Duration = Duration::from_millis(100);
const THROTTLE_WINDOW: Duration = Duration::from_secs(30);
const CHANGE_RATE: f64 = 0.1;
/// The handler's `MEMBERSHIP_INLINE_LIMIT_SECONDS` default.
const INLINE_LIMIT: Duration = Duration::from_secs(20);
/// The handler's `RUN_DEADLINE_SECONDS` default.
const RUN_DEADLINE: Duration = Duration::from_secs(240);

#[derive(Clone, Copy)]
enum Kind {
    /// Every user recorded unmeasured, then this many measured runs.
    Warm(usize),
    /// Every user a first sighting: runs until one completes, then one more.
    ColdStart,
}

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    users: u32,
    ru_per_s: f64,
    /// Presence calls per 30 s, in the simulator and the client (Graph: 1,500).
    presence_limit: u32,
    deadline: Duration,
    kind: Kind,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "quick",
        users: 20_000,
        ru_per_s: 1_000.0,
        presence_limit: 1_500,
        deadline: RUN_DEADLINE,
        kind: Kind::Warm(3),
    },
    Scenario {
        name: "100k",
        users: 100_000,
        ru_per_s: 5_000.0,
        presence_limit: 1_500,
        deadline: RUN_DEADLINE,
        kind: Kind::Warm(3),
    },
    Scenario {
        name: "1m_equivalent",
        users: 100_000,
        ru_per_s: 500.0,
        presence_limit: 150,
        deadline: RUN_DEADLINE,
        kind: Kind::Warm(2),
    },
    Scenario {
        name: "cold_start",
        users: 20_000,
        ru_per_s: 1_000.0,
        presence_limit: 1_500,
        deadline: Duration::from_secs(24),
        kind: Kind::ColdStart,
    },
];

/// What one run did and what bounded it.
struct RunFigures {
    ok: bool,
    wall_s: f64,
    graph_bound_s: f64,
    ru: f64,
    ru_bound_s: f64,
    records: u64,
    throttled: u64,
}

impl RunFigures {
    fn ratio(&self) -> f64 {
        self.wall_s / self.graph_bound_s.max(self.ru_bound_s)
    }
}

/// The simulated tenant, the budgeted account and the production cycle between them.
struct Bench {
    scenario: Scenario,
    sim: SimHandle,
    emulator: Emulator,
    budget: RuBudget,
    cycle: PollCycle,
    users: Vec<UserId>,
    first_slot: DateTime<Utc>,
    runs: Vec<CompletedRun>,
    failed: Vec<FailedRun>,
    index: i64,
}

impl Bench {
    async fn start(scenario: Scenario) -> Self {
        let config = SimConfig::standard(scenario.users)
            .latency(LATENCY)
            .latency_spread(LATENCY_SPREAD)
            .throttle(scenario.presence_limit, THROTTLE_WINDOW)
            .change_rate(CHANGE_RATE);
        let sim = Simulator::start(config).await.expect("start the Graph simulator");
        let groups: Vec<GroupId> = standard_groups()[..3].to_vec();
        let users = sim.expected_users(&groups);
        let settings = GraphSettings {
            base_url: sim.base_url().parse().expect("simulator URL"),
            presence_concurrency: graph_bound::PRESENCE_CONCURRENCY as usize,
            presence_calls_per_30s: scenario.presence_limit,
            tuning: GraphTuning::default(),
        };
        let graph = GraphClient::new(&settings, managed_identity(&sim)).expect("Graph client");
        // Few documents per emulator partition (see `Emulator::with_partitions`), but at most 100:
        // the SDK refuses a cross-partition query over more (its default `max_fan_out`), which
        // the store's cold-start load is.
        let emulator = Emulator::with_partitions((scenario.users / 250).clamp(4, 100));
        // One physical partition: below 50 GB, as every scenario's data is (serverless: 5,000
        // RU/s on one partition; provisioned up to 10,000 RU/s).
        let budget = RuBudget::history_and_state(&emulator, Throughput::provisioned(scenario.ru_per_s, 1));
        let store = budget.store(&emulator, Tuning::default()).await;
        let tenant = teams_presence::app::tenant(graph, INLINE_LIMIT);
        let cycle = PollCycle::new(groups, tenant, Arc::new(InstrumentedStore(Arc::new(store))));
        let first_slot = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").expect("slot").with_timezone(&Utc);
        Self {
            scenario,
            sim,
            emulator,
            budget,
            cycle,
            users,
            first_slot,
            runs: Vec::new(),
            failed: Vec::new(),
            index: 0,
        }
    }

    fn truth(&self, epoch: u64) -> HashMap<UserId, &'static str> {
        self.users.iter().map(|u| (*u, self.sim.truth(u, epoch).expect("a user of the tenant"))).collect()
    }

    /// One timer run of the next slot; presence then moves on for the one after.
    async fn run(&mut self, label: &str) -> RunFigures {
        let index = self.index;
        self.index += 1;
        let slot = Slot::new(self.first_slot + TimeDelta::minutes(5 * index));
        let context = RunContext::new(format!("cosmos-scale-{index}"), slot, self.scenario.deadline);
        let epoch = self.sim.current_epoch();
        let before = self.budget.figures();
        let cpu_before = cpu_seconds();
        // A new millisecond, so that a failed run's records are told apart by their time.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let from = Utc::now().duration_trunc(TimeDelta::milliseconds(1)).expect("a time");
        let started = Instant::now();
        let result = self.cycle.run(&context).await;
        let wall_s = started.elapsed().as_secs_f64();
        let after = self.budget.figures();
        let ru_of = |figures: &BTreeMap<String, ru_budget::ContainerFigures>, name: &str| {
            figures.get(name).map_or(0.0, |f| f.ru)
        };
        let mut ru = 0.0;
        let mut ru_bound_s: f64 = 0.0;
        for name in after.keys() {
            let used = ru_of(&after, name) - ru_of(&before, name);
            ru += used;
            // Each container has its own RU/s: the run waits for the busier one.
            ru_bound_s = ru_bound_s.max(used / self.scenario.ru_per_s);
        }
        let throttled: u64 =
            after.values().map(|f| f.throttled).sum::<u64>() - before.values().map(|f| f.throttled).sum::<u64>();
        let bounds = graph_bound::bounds(
            u64::from(self.scenario.users),
            (LATENCY + LATENCY_SPREAD / 2).as_secs_f64(),
            u64::from(self.scenario.presence_limit),
            THROTTLE_WINDOW.as_secs_f64(),
        );
        let (graph_bound_s, extra) = match &result {
            Ok(summary) => {
                let complete = summary.unobserved == 0 && summary.unreadable_groups == 0;
                self.runs.push(CompletedRun { observed_at: summary.observed_at, complete, truth: self.truth(epoch) });
                let reused = summary.membership_age_ms > 0;
                let extra = json!({"graph_ms": summary.graph_ms, "record_ms": summary.record_ms,
                                   "membership": if reused { "reused" } else { "read" },
                                   "changes": summary.changes, "store_ru_reported": summary.store_request_units});
                (if reused { bounds.presence_s } else { bounds.run_s }, extra)
            }
            Err(error) => {
                self.failed.push(FailedRun { from, to: Utc::now(), truth: self.truth(epoch) });
                (bounds.run_s, json!({"error": error.to_string()}))
            }
        };
        let created = |figures: &BTreeMap<String, ru_budget::ContainerFigures>| {
            figures.get(&self.emulator.settings.container).map_or(0, |f| f.created)
        };
        let figures = RunFigures {
            ok: result.is_ok(),
            wall_s,
            graph_bound_s,
            ru,
            ru_bound_s,
            // History documents created, by a failed run too.
            records: created(&after) - created(&before),
            throttled,
        };
        let mut printed = json!({
            "scenario": self.scenario.name, "run": index, "kind": label, "ok": figures.ok,
            "wall_s": wall_s, "graph_bound_s": graph_bound_s, "ru_bound_s": ru_bound_s, "ratio": figures.ratio(),
            "ru": ru, "records": figures.records, "ru_per_record": ru / figures.records.max(1) as f64,
            "throttled_429": throttled, "cpu_s": cpu_seconds() - cpu_before,
        });
        if let (Some(out), Some(extra)) = (printed.as_object_mut(), extra.as_object()) {
            out.extend(extra.clone());
        }
        println!("{printed}");
        self.sim.advance_epoch();
        // Production runs are 5 minutes apart: a run that used more than half the presence
        // limit leaves the next one a fresh window.
        let calls = u64::from(self.scenario.users).div_ceil(graph_bound::IDS_PER_CALL);
        if calls * 2 > u64::from(self.scenario.presence_limit) {
            tokio::time::sleep_until(started + THROTTLE_WINDOW + Duration::from_secs(1)).await;
        }
        figures
    }

    /// Records lost and duplicated against the simulator's truth, over every run so far.
    async fn check(&self) -> oracle::Figures {
        let mut recorded: HashMap<UserId, Vec<(String, DateTime<Utc>)>> = HashMap::new();
        for doc in self.emulator.history_documents().await {
            let field = |k: &str| doc.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let (Ok(user), Ok(at)) =
                (field("userId").parse::<UserId>(), DateTime::parse_from_rfc3339(&field("timestamp")))
            else {
                panic!("a history document not in the store's shape: {doc:?}");
            };
            recorded.entry(user).or_default().push((field("availability"), at.with_timezone(&Utc)));
        }
        for records in recorded.values_mut() {
            records.sort_by_key(|(_, at)| *at);
        }
        compare_with_failed_runs(&self.users, &self.runs, &self.failed, &recorded).0
    }
}

/// The credential production builds from the managed-identity variables, pointed at `sim`.
fn managed_identity(sim: &SimHandle) -> Arc<dyn azure_core::credentials::TokenCredential> {
    // SAFETY: set before this scenario's tasks start; nothing else reads the environment then.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", sim.identity_endpoint());
        std::env::set_var("IDENTITY_HEADER", sim.identity_header());
    }
    teams_presence::identity::credential().expect("managed identity credential")
}

/// The charge of one history record write on the emulator (what the store writes per change).
async fn record_write_ru(emulator: &Emulator) -> f64 {
    let container = emulator.history_container(&emulator.sdk_client(Vec::new()).await).await;
    let user = uuid::Uuid::new_v4().to_string();
    let id = uuid::Uuid::new_v4().to_string();
    let doc = json!({"id": id, "userId": user, "availability": "DoNotDisturb",
                     "timestamp": "2026-12-01T00:00:02.000Z"});
    let response = container.create_item(user.clone(), &id, &doc, None).await.expect("create");
    let ru = f64::from(response.diagnostics().total_request_charge());
    container.delete_item(user, &id, None).await.expect("delete");
    ru
}

/// CPU seconds (user + system) of this process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime, fields 14 and 15 of stat; Linux counts them in 100 Hz ticks (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

/// Peak resident set of this process in MiB (VmHWM): the emulator's documents and the simulator
/// included.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn run_scenario(scenario: Scenario) -> Value {
    // Each scenario's own peak: resets VmHWM (proc(5), /proc/pid/clear_refs).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut bench = Bench::start(scenario).await;
    let record_ru = record_write_ru(&bench.emulator).await;
    let measured: Vec<RunFigures> = match scenario.kind {
        Kind::Warm(runs) => {
            bench.budget.suspend();
            let setup = bench.run("setup (unbudgeted first sightings)").await;
            assert!(setup.ok, "{}: the unbudgeted setup run failed", scenario.name);
            bench.budget.resume();
            let mut measured = Vec::new();
            for _ in 0..runs {
                measured.push(bench.run("warm").await);
            }
            measured
        }
        Kind::ColdStart => {
            let mut measured = Vec::new();
            let cap = 3 * predicted_runs(scenario, record_ru) + 2;
            while measured.len() < cap {
                let figures = bench.run("catching up").await;
                let done = figures.ok;
                measured.push(figures);
                if done {
                    break;
                }
            }
            // Changes keep being recorded once caught up.
            let caught_up = measured.last().is_some_and(|r| r.ok);
            measured.push(bench.run(if caught_up { "after catching up" } else { "after the last try" }).await);
            measured
        }
    };
    let figures = bench.check().await;
    summary(scenario, &measured, record_ru, figures)
}

/// ⌈RU needed / (RU/s x deadline)⌉ + 1: the runs a cold start needs when every run writes at the
/// container's rate until its deadline and the last one completes.
fn predicted_runs(scenario: Scenario, record_ru: f64) -> usize {
    let needed = f64::from(scenario.users) * record_ru;
    (needed / (scenario.ru_per_s * scenario.deadline.as_secs_f64())).ceil() as usize + 1
}

fn summary(scenario: Scenario, runs: &[RunFigures], record_ru: f64, figures: oracle::Figures) -> Value {
    let n = runs.len().max(1) as f64;
    let completed: Vec<&RunFigures> = runs.iter().filter(|r| r.ok).collect();
    let ru: f64 = runs.iter().map(|r| r.ru).sum();
    let records: u64 = runs.iter().map(|r| r.records).sum();
    let mut line = json!({
        "scenario": if scenario.name == "quick" { "cosmos_quick".to_string() } else { format!("cosmos_{}", scenario.name) },
        "users": scenario.users,
        "ru_per_s": scenario.ru_per_s,
        "presence_calls_per_30s": scenario.presence_limit,
        "deadline_s": scenario.deadline.as_secs(),
        "runs": runs.len(),
        "failed_runs": runs.len() - completed.len(),
        "wall_s": runs.iter().map(|r| r.wall_s).sum::<f64>() / n,
        "graph_bound_s": runs.iter().map(|r| r.graph_bound_s).sum::<f64>() / n,
        "ru_bound_s": runs.iter().map(|r| r.ru_bound_s).sum::<f64>() / n,
        // The worst completed run: the target holds for every run.
        "ratio": completed.iter().map(|r| r.ratio()).reduce(f64::max),
        "ru_per_record": ru / records.max(1) as f64,
        "record_write_ru": record_ru,
        "throttled_429": runs.iter().map(|r| r.throttled).sum::<u64>(),
        "lost": figures.lost,
        "duplicated": figures.duplicated,
        "wrong": figures.wrong,
        "changes_expected": figures.changes_expected,
        "process_peak_rss_mib": peak_rss_mib(),
    });
    if let (Kind::ColdStart, Some(out)) = (scenario.kind, line.as_object_mut()) {
        let converged = runs.iter().position(|r| r.ok).map(|i| i + 1);
        out.insert("runs_to_converge".into(), json!(converged));
        out.insert("predicted_runs".into(), json!(predicted_runs(scenario, record_ru)));
        out.insert("ru_needed".into(), json!(f64::from(scenario.users) * record_ru));
    }
    line
}

fn main() {
    // Production does not set RUST_BACKTRACE; with it, every 429 the SDK sees captures a stack
    // trace, CPU the handler would not spend. SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    tokio::runtime::Runtime::new().expect("tokio runtime").block_on(run());
}

async fn run() {
    let wanted = std::env::var("COSMOS_SCALE_SCENARIOS").unwrap_or_else(|_| "100k,1m_equivalent,cold_start".into());
    for name in wanted.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(scenario) = SCENARIOS.iter().find(|s| s.name == name) else {
            let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            panic!("COSMOS_SCALE_SCENARIOS: unknown scenario {name:?}; expected some of {known:?}");
        };
        println!("{}", run_scenario(*scenario).await);
    }
}
