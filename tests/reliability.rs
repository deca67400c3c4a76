//! Reliability: the production Graph client, poll cycle and store (embedded SQLite, or Cosmos DB
//! on the SDK's in-memory emulator with the SDK's fault injection) against the Graph simulator
//! with injected faults, over many accelerated runs. After the runs, the stored history must
//! equal the simulator's truth (see `common::oracle`): nothing lost, nothing doubled.
//!
//! Quick profile by default (CI). Long profile, whose figures are in docs/reliability.md:
//! `RELIABILITY_PROFILE=long cargo nextest run --test reliability --no-capture`.
//! `RELIABILITY_SEED=<n>` replays a seed; every test prints the one it used.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::StatusCode;
use azure_data_cosmos::fault_injection::{
    CustomResponseBuilder, FaultInjectionConditionBuilder, FaultInjectionErrorType, FaultInjectionResultBuilder,
    FaultInjectionRule, FaultInjectionRuleBuilder, FaultOperationType,
};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::cosmos_emulator::Emulator;
use common::oracle::{CompletedRun, FailedRun, Figures, compare, compare_with_failed_runs};
use common::seeded::{Rng, long_profile, seed};
use teams_presence::cycle::PollCycle;
use teams_presence::graph::Tenant;
use teams_presence::model::{GroupId, Slot, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::run::{RunContext, RunSummary};
use teams_presence::simulator::{Endpoint, Fault, RetryAfter, SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::Store;
use teams_presence::store::cosmos::Tuning;
use teams_presence::store::sqlite::SqliteStore;

/// How long one Graph call may take before the client gives up on it: short, so that hung and
/// slow responses cost the soak little.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);
/// One run's budget (production: `RUN_DEADLINE_SECONDS`, 240 s).
const RUN_BUDGET: Duration = Duration::from_secs(20);

struct Bench {
    sim: SimHandle,
    users: Vec<UserId>,
    groups: Vec<GroupId>,
    tenant: Arc<dyn Tenant>,
    cycle: PollCycle,
    store: Arc<dyn Store>,
    first_slot: DateTime<Utc>,
    runs: Vec<CompletedRun>,
    failed: Vec<FailedRun>,
    figures: Figures,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn new(users: u32, db_dir: Option<&std::path::Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = db_dir.unwrap_or(dir.path()).join("presence.db");
        let store = Arc::new(SqliteStore::open(&db, None).await.unwrap());
        Self::with_store(users, store, dir).await
    }

    async fn with_store(users: u32, store: Arc<dyn Store>, dir: tempfile::TempDir) -> Self {
        // Small pages so that one run reads many member pages (a group can vanish between two);
        // a tight presence throttle so that 429 storms also come from the simulator's own limit.
        // Tokens live 2 minutes: azure_identity re-fetches a token with 5 minutes or less left, so a
        // revoked token (a fault below) is replaced on the 401 instead of being served from its cache.
        let config = SimConfig::standard(users)
            .max_page_size(50)
            .throttle(30, Duration::from_millis(300))
            .token_lifetime(Duration::from_secs(120));
        let sim = Simulator::start(config).await.unwrap();
        let groups = standard_groups()[..3].to_vec();
        let users = sim.expected_users(&groups);
        let mut settings = common::graph_sim::settings(&sim);
        settings.tuning.request_timeout = REQUEST_TIMEOUT;
        settings.tuning.presence_batch_size = 100;
        settings.tuning.not_found_attempts = 2;
        let tenant: Arc<dyn Tenant> = Arc::new(common::graph_sim::client(&sim, &settings));
        let cycle = PollCycle::new(groups.clone(), tenant.clone(), store.clone());
        let first_slot = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").unwrap().with_timezone(&Utc);
        Self {
            sim,
            users,
            groups,
            tenant,
            cycle,
            store,
            first_slot,
            runs: Vec::new(),
            failed: Vec::new(),
            figures: Figures::default(),
            _dir: dir,
        }
    }

    /// The process restarted: a cold store instance over the same data, the same Graph client.
    fn replace_store(&mut self, store: Arc<dyn Store>) {
        self.cycle = PollCycle::new(self.groups.clone(), self.tenant.clone(), store.clone());
        self.store = store;
    }

    fn truth(&self, epoch: u64) -> HashMap<UserId, &'static str> {
        self.users.iter().map(|u| (*u, self.sim.truth(u, epoch).unwrap())).collect()
    }

    /// Runs the slot `index` once; presence then moves on for the next slot.
    async fn run(&mut self, index: i64) -> Result<RunSummary, String> {
        self.figures.runs += 1;
        let slot = Slot::new(self.first_slot + TimeDelta::minutes(5 * index));
        let run = RunContext::new(format!("reliability-{index}"), slot, RUN_BUDGET);
        let epoch = self.sim.current_epoch();
        // A new millisecond, so that no two runs' spans share one (a failed run's records are
        // told apart by their time); the cycle takes its observation time after `from`.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let from = Utc::now().duration_trunc(TimeDelta::milliseconds(1)).unwrap();
        let result = self.cycle.run(&run).await;
        match &result {
            Ok(summary) => {
                let complete = summary.unobserved == 0 && summary.unreadable_groups == 0;
                self.runs.push(CompletedRun { observed_at: summary.observed_at, complete, truth: self.truth(epoch) });
            }
            Err(_) => self.failed.push(FailedRun { from, to: Utc::now(), truth: self.truth(epoch) }),
        }
        self.sim.advance_epoch();
        result.map_err(|e| e.to_string())
    }

    fn inject(&mut self, endpoint: Endpoint, fault: Fault, times: usize) {
        self.figures.faults_injected += times;
        self.sim.inject(endpoint, fault, times);
    }

    async fn recorded(&self) -> HashMap<UserId, Vec<(String, DateTime<Utc>)>> {
        let mut recorded = HashMap::new();
        for user in &self.users {
            let records = self.store.export_subject(Subjects::plain().stored_id(*user)).await.unwrap();
            recorded.insert(*user, records.into_iter().map(|r| (r.availability.to_string(), r.timestamp)).collect());
        }
        recorded
    }

    /// The oracle for a store whose failed runs write nothing (the embedded store commits a run's
    /// records in one transaction): a failed run's record is wrong.
    async fn check(&mut self, name: &str) -> Figures {
        let compared = compare(&self.users, &self.runs, &self.recorded().await);
        self.assert_true(name, compared)
    }

    /// The oracle for Cosmos DB, where a failed run may have written part of its records (see
    /// `compare_with_failed_runs`); returns the figures and how many failed runs left records.
    async fn check_allowing_partial_failed_runs(&mut self, name: &str) -> (Figures, usize) {
        let (compared, partial) =
            compare_with_failed_runs(&self.users, &self.runs, &self.failed, &self.recorded().await);
        println!("{name}: failed runs {}, of which left part of their records {partial}", self.failed.len());
        (self.assert_true(name, compared), partial)
    }

    fn assert_true(&self, name: &str, compared: Figures) -> Figures {
        let figures = Figures { faults_injected: self.figures.faults_injected, runs: self.figures.runs, ..compared };
        println!("{name}: {figures}");
        assert_eq!((figures.lost, figures.duplicated, figures.wrong), (0, 0, 0), "{name}: {figures}");
        // More than the first sightings: presence must have moved between runs, or the check
        // above proves nothing (a revoked token once left every later run reading no group).
        assert!(figures.changes_expected > self.users.len() * 3 / 2, "{name}: presence barely changed: {figures}");
        figures
    }
}

/// One random fault of the kinds real Graph and its token service produce.
fn random_fault(rng: &mut Rng) -> (Endpoint, Fault, usize, &'static str) {
    let retry_after = |rng: &mut Rng| match rng.below(4) {
        0 => None,
        1 => Some(RetryAfter::Seconds(0)),
        2 => Some(RetryAfter::Fractional(0.05)),
        _ => Some(RetryAfter::HttpDate(Duration::ZERO)),
    };
    match rng.below(13) {
        0 => (
            Endpoint::Presence,
            Fault::Status { status: 429, retry_after: retry_after(rng) },
            1 + rng.below(6) as usize,
            "429 storm",
        ),
        1 => (
            Endpoint::Presence,
            Fault::Status { status: 503, retry_after: retry_after(rng) },
            1 + rng.below(2) as usize,
            "503",
        ),
        2 => (Endpoint::Presence, Fault::Status { status: 500 + rng.below(5) as u16, retry_after: None }, 1, "5xx"),
        3 => (Endpoint::Presence, Fault::Slow(REQUEST_TIMEOUT * 2), 1, "timeout"),
        4 => (Endpoint::Presence, Fault::Hang, 1, "hung connection"),
        5 => (Endpoint::Presence, Fault::Malformed, 1, "malformed body"),
        6 => (Endpoint::Presence, Fault::Truncated, 1, "truncated body"),
        7 => (Endpoint::Presence, Fault::DropIds(1 + rng.below(40) as usize), 1, "ids missing"),
        8 => (
            Endpoint::Members,
            Fault::Status { status: 429, retry_after: retry_after(rng) },
            1 + rng.below(3) as usize,
            "members 429",
        ),
        9 => (Endpoint::Members, Fault::Status { status: 502, retry_after: None }, 1, "members 5xx"),
        10 => (Endpoint::Members, Fault::Truncated, 1, "members truncated"),
        11 => (
            Endpoint::Token,
            Fault::Status { status: 500, retry_after: None },
            1 + rng.below(3) as usize,
            "token endpoint 500",
        ),
        _ => (Endpoint::Token, Fault::Slow(Duration::from_millis(200)), 1, "token endpoint slow"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_random_faults_loses_and_doubles_nothing() {
    let seed = seed();
    let (runs, users) = if long_profile() { (400, 2_000) } else { (60, 300) };
    println!("soak: seed={seed} runs={runs} users={users} (replay with RELIABILITY_SEED={seed})");
    let mut rng = Rng(seed);
    let mut bench = Bench::new(users, None).await;
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    let mut failed = 0;
    for index in 0..runs {
        for _ in 0..rng.below(4) {
            let (endpoint, fault, times, kind) = random_fault(&mut rng);
            *kinds.entry(kind).or_default() += times;
            bench.inject(endpoint, fault, times);
        }
        // A token that stops being accepted mid-run (early expiry, revocation): refreshed once.
        if rng.below(10) == 0 {
            *kinds.entry("token expired").or_default() += 1;
            bench.figures.faults_injected += 1;
            bench.sim.revoke_tokens();
        }
        // A group deleted between two pages of one run (and restored before the next).
        if rng.below(12) == 0 {
            *kinds.entry("group deleted mid-run").or_default() += 1;
            bench.inject(Endpoint::Members, Fault::Pass, 1 + rng.below(3) as usize);
            bench.inject(Endpoint::Members, Fault::Status { status: 404, retry_after: None }, 1);
        }
        if bench.run(index).await.is_err() {
            failed += 1;
        }
    }
    // Faults left queued would hit the closing runs: drain them, then two clean runs.
    let mut index = runs;
    while bench.run(index).await.is_err() {
        index += 1;
        assert!(index < runs + 20, "runs keep failing after the faults stopped");
    }
    bench.run(index + 1).await.unwrap();
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    println!("soak: faults by kind {kinds:?}; runs failed as a whole {failed}");
    bench.check("soak").await;
}

/// Each fault kind alone, and a run after it: every kind is survived without a lost or doubled
/// record, and the kinds that must not fail a run (retried ones) do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_alone_keeps_the_history_true() {
    let mut bench = Bench::new(300, None).await;
    bench.run(0).await.unwrap();
    let retried: Vec<(Endpoint, Fault, usize)> = vec![
        (Endpoint::Presence, Fault::Status { status: 429, retry_after: Some(RetryAfter::Fractional(0.05)) }, 4),
        (Endpoint::Presence, Fault::Status { status: 429, retry_after: Some(RetryAfter::HttpDate(Duration::ZERO)) }, 2),
        (Endpoint::Presence, Fault::Status { status: 503, retry_after: Some(RetryAfter::Seconds(0)) }, 2),
        (Endpoint::Presence, Fault::Status { status: 504, retry_after: None }, 1),
        (Endpoint::Presence, Fault::Slow(REQUEST_TIMEOUT * 2), 1),
        (Endpoint::Presence, Fault::Hang, 1),
        (Endpoint::Members, Fault::Status { status: 429, retry_after: Some(RetryAfter::Seconds(0)) }, 2),
        (Endpoint::Members, Fault::Status { status: 500, retry_after: None }, 1),
        (Endpoint::Token, Fault::Slow(Duration::from_millis(100)), 1),
    ];
    let mut index = 1;
    for (endpoint, fault, times) in retried {
        bench.sim.revoke_tokens();
        bench.inject(endpoint, fault.clone(), times);
        let summary = bench.run(index).await.unwrap_or_else(|e| panic!("{endpoint:?} {fault:?}: {e}"));
        assert_eq!(summary.unobserved, 0, "{endpoint:?} {fault:?} is retried, not given up");
        index += 1;
    }
    // Faults that cost part of a run's view: recorded later, never wrongly.
    let partial: Vec<(Endpoint, Fault, usize)> = vec![
        (Endpoint::Presence, Fault::Malformed, 1),
        (Endpoint::Presence, Fault::Truncated, 1),
        (Endpoint::Presence, Fault::DropIds(30), 1),
        (Endpoint::Members, Fault::Malformed, 1),
        // Three first pages go out at once; the sixth call is a later page of some group.
        (Endpoint::Members, Fault::Pass, 5),
    ];
    for (endpoint, fault, times) in partial {
        bench.inject(endpoint, fault, times);
        if endpoint == Endpoint::Members && times == 5 {
            bench.inject(Endpoint::Members, Fault::Status { status: 404, retry_after: None }, 1);
        }
        let summary = bench.run(index).await.unwrap();
        assert!(summary.unobserved > 0 || summary.unreadable_groups > 0, "{summary:?}");
        assert_eq!(summary.departed, 0, "nobody leaves scope because of a fault");
        index += 1;
    }
    // The token endpoint down for longer than the credential retries: the run fails as a whole,
    // and the next one records what it missed.
    bench.sim.revoke_tokens();
    bench.inject(Endpoint::Token, Fault::Status { status: 500, retry_after: None }, 8);
    // The credential retries the endpoint itself (with its own backoff, which can outlast the
    // run's budget), so the run may still get a token, fail naming the token, or reach its
    // deadline; whichever, it fails as a whole and the oracle below checks nothing was lost.
    if let Err(failed) = bench.run(index).await {
        assert!(failed.contains("token") || failed.contains("deadline"), "{failed}");
    }
    index += 1;
    while bench.run(index).await.is_err() {
        index += 1;
        assert!(index < 60, "the token endpoint recovered but runs keep failing");
    }
    bench.run(index + 1).await.unwrap();
    bench.check("fault kinds").await;
}

/// Cosmos DB faults below the SDK's retry policy, each a rule of the SDK's `fault_injection`
/// that the soak switches on and off: between runs, and (by a task that flips them at random
/// moments) during runs.
struct CosmosFaults {
    rules: Vec<(&'static str, Arc<FaultInjectionRule>)>,
}

impl CosmosFaults {
    fn new(rng: &mut Rng) -> Self {
        use FaultInjectionErrorType as Error;
        use FaultOperationType as Op;
        let throttled = |ms: &'static str| {
            FaultInjectionResultBuilder::new().with_custom_response(
                CustomResponseBuilder::new(StatusCode::TooManyRequests).with_header("x-ms-retry-after-ms", ms).build(),
            )
        };
        let error = |kind: Error| FaultInjectionResultBuilder::new().with_error(kind);
        // (kind, operation, result): reads are the head, shards and the history query; writes the
        // records (create), the head (replace or first create) and snapshot shards (upsert).
        let mut kinds: Vec<(&'static str, Op, FaultInjectionResultBuilder)> = Vec::new();
        for (op, name) in [
            (Op::ReadItem, "read"),
            (Op::QueryItem, "query"),
            (Op::CreateItem, "create"),
            (Op::ReplaceItem, "replace"),
            (Op::UpsertItem, "upsert"),
        ] {
            kinds.push((leak(format!("429 retry-after {name}")), op, throttled("5")));
            kinds.push((leak(format!("503 {name}")), op, error(Error::ServiceUnavailable)));
            kinds.push((leak(format!("timeout {name}")), op, error(Error::ResponseTimeout)));
            kinds.push((leak(format!("408 {name}")), op, error(Error::Timeout)));
            kinds.push((
                leak(format!("slow {name}")),
                op,
                FaultInjectionResultBuilder::new().with_delay(Duration::from_millis(30)),
            ));
        }
        for (op, name) in [(Op::CreateItem, "create"), (Op::ReplaceItem, "replace"), (Op::UpsertItem, "upsert")] {
            // The write commits and its answer is lost: the SDK's retry meets what it wrote.
            kinds.push((leak(format!("answer lost {name}")), op, error(Error::ResponseTimeoutAfterService)));
            kinds.push((leak(format!("500 {name}")), op, error(Error::InternalServerError)));
        }
        let rules = kinds
            .into_iter()
            .map(|(kind, op, result)| {
                // Some rules hit every matching request while on, most only a share of them.
                let probability = [1.0, 0.5, 0.2, 0.05][rng.below(4) as usize];
                let condition = FaultInjectionConditionBuilder::new().with_operation_type(op).build();
                let rule = FaultInjectionRuleBuilder::new(kind, result.with_probability(probability).build())
                    .with_condition(condition);
                let rule = Arc::new(rule.build());
                rule.disable();
                (kind, rule)
            })
            .collect();
        Self { rules }
    }

    fn rules(&self) -> Vec<Arc<FaultInjectionRule>> {
        self.rules.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Switches each rule on with probability `1 / one_in`, off otherwise.
    fn switch(&self, rng: &mut Rng, one_in: u64) {
        for (_, rule) in &self.rules {
            if rng.below(one_in) == 0 { rule.enable() } else { rule.disable() }
        }
    }

    fn all_off(&self) {
        self.rules.iter().for_each(|(_, r)| r.disable());
    }

    /// Flips random rules every few milliseconds until aborted.
    fn flip_during_run(&self, seed: u64) -> tokio::task::JoinHandle<()> {
        let rules = self.rules();
        tokio::spawn(async move {
            let mut rng = Rng(seed);
            loop {
                tokio::time::sleep(Duration::from_millis(2 + rng.below(20))).await;
                let rule = &rules[rng.below(rules.len() as u64) as usize];
                if rule.is_enabled() { rule.disable() } else { rule.enable() }
            }
        })
    }

    fn hits(&self) -> Vec<(&'static str, u32)> {
        self.rules.iter().map(|(kind, r)| (*kind, r.hit_count())).filter(|(_, n)| *n > 0).collect()
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Small shards and frequent snapshots, so that snapshot rewrites (both banks) happen under
/// faults too, not only record writes.
fn cosmos_tuning() -> Tuning {
    Tuning { users_per_shard: 64, min_records_between_snapshots: 100, ..Tuning::default() }
}

/// The seeded soak on the production Cosmos DB store (the SDK's in-memory emulator) with Cosmos
/// faults switched on and off between and during runs, random Graph faults alongside, and the
/// process restarted now and then (a cold store instance loads the state from the snapshot and
/// the records since). A run the store fails may leave part of its records (no transaction
/// spans users): they are judged as that run's partial view; nothing may be lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_on_cosmos_with_random_store_and_graph_faults_loses_and_doubles_nothing() {
    let seed = seed();
    let (runs, users) = if long_profile() { (600, 2_000) } else { (80, 300) };
    println!("cosmos soak: seed={seed} runs={runs} users={users} (replay with RELIABILITY_SEED={seed})");
    let mut rng = Rng(seed);
    let emulator = Emulator::new();
    let faults = CosmosFaults::new(&mut rng);
    let store = Arc::new(emulator.store(cosmos_tuning(), faults.rules()).await);
    let mut bench = Bench::with_store(users, store, tempfile::tempdir().unwrap()).await;
    let mut graph_kinds: HashMap<&str, usize> = HashMap::new();
    let (mut failed, mut restarts, mut flipped) = (0, 0, 0);
    for index in 0..runs {
        for _ in 0..rng.below(3) {
            let (endpoint, fault, times, kind) = random_fault(&mut rng);
            *graph_kinds.entry(kind).or_default() += times;
            bench.inject(endpoint, fault, times);
        }
        // About one rule in 16 on: most runs meet a few store faults, some none.
        faults.switch(&mut rng, 16);
        let flipper = (rng.below(3) == 0).then(|| {
            flipped += 1;
            faults.flip_during_run(rng.next())
        });
        let result = bench.run(index).await;
        if let Some(flipper) = flipper {
            flipper.abort();
        }
        if let Err(e) = result {
            failed += 1;
            println!("cosmos soak: run {index} failed: {e}");
        }
        if rng.below(10) == 0 {
            restarts += 1;
            bench.replace_store(Arc::new(emulator.store(cosmos_tuning(), faults.rules()).await));
        }
    }
    faults.all_off();
    let mut index = runs;
    while bench.run(index).await.is_err() {
        index += 1;
        assert!(index < runs + 20, "runs keep failing after the faults stopped");
    }
    bench.run(index + 1).await.unwrap();
    let hits = faults.hits();
    let cosmos_faults: u32 = hits.iter().map(|(_, n)| n).sum();
    bench.figures.faults_injected += cosmos_faults as usize;
    let mut graph_kinds: Vec<_> = graph_kinds.into_iter().collect();
    graph_kinds.sort();
    println!("cosmos soak: Cosmos faults that hit a request {cosmos_faults} {hits:?}");
    println!("cosmos soak: Graph faults by kind {graph_kinds:?}");
    println!(
        "cosmos soak: runs failed as a whole {failed}; runs with rules flipped during the run {flipped}; restarts {restarts}"
    );
    assert!(cosmos_faults > 0, "no Cosmos fault reached a request: the soak tested nothing of the store");
    let (figures, _) = bench.check_allowing_partial_failed_runs("cosmos soak").await;
    assert!(figures.runs_completed >= runs as usize / 3, "too few runs completed to judge: {figures}");
}
