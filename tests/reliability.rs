//! Reliability: the production Graph client, poll cycle and embedded store against the Graph
//! simulator with injected faults, over many accelerated runs. After the runs, the stored history
//! must equal the simulator's truth (see `common::oracle`): nothing lost, nothing doubled.
//!
//! Quick profile by default (CI). Long profile, whose figures are in docs/reliability.md:
//! `RELIABILITY_PROFILE=long cargo nextest run --test reliability --no-capture`.
//! `RELIABILITY_SEED=<n>` replays a seed; every test prints the one it used.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::oracle::{CompletedRun, Figures, compare};
use teams_presence::cycle::{PollCycle, RunContext, RunSummary};
use teams_presence::model::{Slot, UserId};
use teams_presence::simulator::{Endpoint, Fault, RetryAfter, SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::HistoryStore;
use teams_presence::store::sqlite::SqliteStore;

/// splitmix64: a seeded sequence, so a failing soak can be replayed from the seed it printed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("RELIABILITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
    })
}

fn long_profile() -> bool {
    std::env::var("RELIABILITY_PROFILE").is_ok_and(|p| p == "long")
}

/// How long one Graph call may take before the client gives up on it: short, so that hung and
/// slow responses cost the soak little.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(400);

struct Bench {
    sim: SimHandle,
    users: Vec<UserId>,
    cycle: PollCycle,
    store: Arc<SqliteStore>,
    first_slot: DateTime<Utc>,
    runs: Vec<CompletedRun>,
    figures: Figures,
    _dir: tempfile::TempDir,
}

impl Bench {
    async fn new(users: u32, db_dir: Option<&std::path::Path>) -> Self {
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
        let client = common::graph_sim::client(&sim, &settings);
        let dir = tempfile::tempdir().unwrap();
        let db = db_dir.unwrap_or(dir.path()).join("presence.db");
        let store = Arc::new(SqliteStore::open(&db, None).await.unwrap());
        let cycle = PollCycle::new(groups, Arc::new(client), store.clone() as Arc<dyn HistoryStore>);
        let first_slot = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").unwrap().with_timezone(&Utc);
        Self { sim, users, cycle, store, first_slot, runs: Vec::new(), figures: Figures::default(), _dir: dir }
    }

    /// Runs the slot `index` once; presence then moves on for the next slot.
    async fn run(&mut self, index: i64) -> Result<RunSummary, String> {
        self.figures.runs += 1;
        let slot = Slot::new(self.first_slot + TimeDelta::minutes(5 * index));
        let run = RunContext::new(format!("reliability-{index}"), slot, Duration::from_secs(20));
        let epoch = self.sim.current_epoch();
        let result = self.cycle.run(&run).await;
        if let Ok(summary) = &result {
            let truth = self.users.iter().map(|u| (*u, self.sim.truth(u, epoch).unwrap())).collect();
            let complete = summary.unobserved == 0 && summary.unreadable_groups == 0;
            self.runs.push(CompletedRun { observed_at: summary.observed_at, complete, truth });
        }
        self.sim.advance_epoch();
        result.map_err(|e| e.to_string())
    }

    fn inject(&mut self, endpoint: Endpoint, fault: Fault, times: usize) {
        self.figures.faults_injected += times;
        self.sim.inject(endpoint, fault, times);
    }

    async fn check(&mut self, name: &str) -> Figures {
        let mut recorded = HashMap::new();
        for user in &self.users {
            let records = self.store.export_user(*user).await.unwrap();
            recorded.insert(*user, records.into_iter().map(|r| (r.availability.to_string(), r.timestamp)).collect());
        }
        let compared = compare(&self.users, &self.runs, &recorded);
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
