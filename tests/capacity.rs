//! docs/capacity.md's tables, computed: request units per run, the RU/s a run needs, storage at
//! the retention and the monthly cost, from the measured charge of one history record and the
//! store's layout. The tests fail when the doc's tables differ from what this model computes (they
//! print the tables to paste), or when the emulator's charge or stored size of a record is no
//! longer what the model assumes.

mod common;

#[path = "../benches/common/graph_bound.rs"]
#[allow(dead_code)]
mod graph_bound;

use common::cosmos_emulator::Emulator;
use common::ru_budget::Throughput;
use serde_json::json;

/// One history record write on the emulator (benches/store_ru.rs measures the same; checked below).
const RECORD_WRITE_RU: f64 = 7.0;
/// The stored history document, system properties included, as the emulator stores it (checked below).
const RECORD_STORED_BYTES: f64 = 367.0;
/// Every run: read the state head (1 RU) and replace it with `If-Match` (9.9 RU), BENCHMARKS.md.
const HEAD_RU_PER_RUN: f64 = 10.9;
/// A snapshot rewrite: shards of ~1,700 users, each a 64 KiB upsert at 557.7 RU (BENCHMARKS.md),
/// about 0.33 RU per tracked user, written an eighth per run (`SNAPSHOT_RUNS`).
const SNAPSHOT_RU_PER_USER: f64 = 557.7 / 1_700.0;
const SNAPSHOT_RUNS: f64 = 8.0;
/// A snapshot is also rewritten once it is 12 hours (144 runs) old.
const SNAPSHOT_MAX_AGE_RUNS: f64 = 144.0;
const RUN_DEADLINE_S: f64 = 240.0;
const RUNS_PER_DAY: f64 = 288.0;
const RETENTION_DAYS: f64 = 90.0;
/// Azure bills a month as 730 hours.
const HOURS_PER_MONTH: f64 = 730.0;
const RUNS_PER_MONTH: f64 = HOURS_PER_MONTH * 12.0;
const GB: f64 = (1u64 << 30) as f64;
/// Public prices, USD, single-region (non-government US) account, as Microsoft's docs quote them:
/// learn.microsoft.com/azure/cosmos-db/understand-your-bill (serverless, storage) and
/// learn.microsoft.com/azure/cosmos-db/how-to-choose-offer (autoscale).
const SERVERLESS_USD_PER_MILLION_RU: f64 = 0.25;
const AUTOSCALE_USD_PER_100_RU_S_HOUR: f64 = 0.012;
const STORAGE_USD_PER_GB_MONTH: f64 = 0.25;
/// Autoscale: the maximum is set in steps of 1,000 RU/s (at least 1,000); the account scales
/// between 10% of it and it (learn.microsoft.com/azure/cosmos-db/provision-throughput-autoscale);
/// the maximum is at least 10 RU/s per GB stored (learn.microsoft.com/azure/cosmos-db/concepts-limits).
const AUTOSCALE_STEP: f64 = 1_000.0;
/// Serverless: at most 1 TB per container (learn.microsoft.com/azure/cosmos-db/concepts-limits).
const SERVERLESS_MAX_GB: f64 = 1_024.0;

const TENANTS: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];
const CHANGE_RATES: [f64; 3] = [0.05, 0.10, 0.20];

/// What one tenant size at one change rate needs.
struct Row {
    users: u64,
    rate: f64,
    records: f64,
    mean_ru: f64,
    peak_ru: f64,
    graph_bound_s: f64,
    storage_gb: f64,
}

impl Row {
    fn new(users: u64, rate: f64) -> Self {
        let n = users as f64;
        let records = n * rate;
        // A rewrite starts once as many records as users were written since the last one (1 / rate
        // runs), takes 8 runs, and at the latest every 12 hours.
        let period = (1.0 / rate).clamp(SNAPSHOT_RUNS, SNAPSHOT_MAX_AGE_RUNS);
        let writes = records * RECORD_WRITE_RU + HEAD_RU_PER_RUN;
        Self {
            users,
            rate,
            records,
            mean_ru: writes + n * SNAPSHOT_RU_PER_USER / period,
            peak_ru: writes + n * SNAPSHOT_RU_PER_USER / SNAPSHOT_RUNS,
            graph_bound_s: graph_bound_s(users),
            storage_gb: records * RUNS_PER_DAY * RETENTION_DAYS * RECORD_STORED_BYTES / GB,
        }
    }

    /// RU/s for the writes of the busiest run to take the whole deadline.
    fn ru_s_deadline(&self) -> f64 {
        self.peak_ru / RUN_DEADLINE_S
    }

    /// RU/s for them to take no longer than reading Graph.
    fn ru_s_graph(&self) -> f64 {
        self.peak_ru / self.graph_bound_s
    }

    fn serverless_usd(&self) -> f64 {
        self.mean_ru * RUNS_PER_MONTH / 1e6 * SERVERLESS_USD_PER_MILLION_RU + self.storage_usd()
    }

    /// Autoscale paced at `ru_s`: each hour is billed for the highest RU/s used (at least 10% of
    /// the maximum, which must cover `ru_s` and the storage).
    fn autoscale_usd(&self, ru_s: f64) -> f64 {
        let max = (ru_s.max(self.storage_gb * 10.0) / AUTOSCALE_STEP).ceil().max(1.0) * AUTOSCALE_STEP;
        let billed = ru_s.max(0.1 * max);
        billed / 100.0 * AUTOSCALE_USD_PER_100_RU_S_HOUR * HOURS_PER_MONTH + self.storage_usd()
    }

    fn storage_usd(&self) -> f64 {
        self.storage_gb * STORAGE_USD_PER_GB_MONTH
    }

    /// Serverless serves 5,000 RU/s per container below 250 GB: can a run's writes fit the deadline,
    /// and does the history fit a serverless container?
    fn serverless_fits(&self) -> String {
        let rate = Throughput::serverless(0.0).ru_per_s;
        let mut reasons = Vec::new();
        if self.peak_ru / rate > RUN_DEADLINE_S {
            reasons.push(format!("writes {:.0} s at 5,000 RU/s", self.peak_ru / rate));
        }
        if self.storage_gb > SERVERLESS_MAX_GB {
            reasons.push("over 1 TB".to_string());
        }
        if reasons.is_empty() { "yes".into() } else { format!("no: {}", reasons.join(", ")) }
    }
}

/// The Graph lower bound of a warm run (BENCHMARKS.md): membership read inline while paging takes
/// under `MEMBERSHIP_INLINE_LIMIT_SECONDS` (20 s), else reused and presence alone.
fn graph_bound_s(users: u64) -> f64 {
    let b = graph_bound::bounds(users, 0.1, 1_500, 30.0);
    if b.members_s > 20.0 { b.presence_s } else { b.run_s }
}

/// 12,345 and 1.2 M style figures.
fn num(x: f64) -> String {
    if x >= 1e6 {
        return format!("{:.1} M", x / 1e6);
    }
    let whole = x.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn gb(x: f64) -> String {
    if x < 10.0 { format!("{x:.1}") } else { num(x) }
}

fn usd(x: f64) -> String {
    if x < 10.0 { format!("${x:.2}") } else { format!("${}", num(x)) }
}

fn steady_table() -> String {
    let mut out = String::from(
        "| users | changes per run | records per run | RU per run (mean) | RU/s: writes within 240 s | \
         RU/s: writes within the Graph bound (s) | storage at 90 days, GB | serverless fits | \
         serverless USD/month | autoscale USD/month at the 240 s RU/s | at the Graph-bound RU/s |\n\
         |---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n",
    );
    for users in TENANTS {
        for rate in CHANGE_RATES {
            let r = Row::new(users, rate);
            out.push_str(&format!(
                "| {} | {:.0}% | {} | {} | {} | {} ({:.1}) | {} | {} | {} | {} | {} |\n",
                num(r.users as f64),
                r.rate * 100.0,
                num(r.records),
                num(r.mean_ru),
                num(r.ru_s_deadline()),
                num(r.ru_s_graph()),
                r.graph_bound_s,
                gb(r.storage_gb),
                r.serverless_fits(),
                usd(r.serverless_usd()),
                usd(r.autoscale_usd(r.ru_s_deadline())),
                usd(r.autoscale_usd(r.ru_s_graph())),
            ));
        }
    }
    out
}

/// The first runs of a deployment: every user a first sighting.
fn cold_start_table() -> String {
    let mut out = String::from(
        "| users | RU of the first sightings | runs to catch up at 5,000 RU/s (serverless) | \
         at the 240 s RU/s of 10% changes |\n|---:|---:|---:|---:|\n",
    );
    for users in TENANTS {
        let needed = users as f64 * RECORD_WRITE_RU;
        let runs = |ru_s: f64| (needed / (ru_s * RUN_DEADLINE_S)).ceil() + 1.0;
        let deadline_rate = Row::new(users, 0.10).ru_s_deadline();
        out.push_str(&format!(
            "| {} | {} | {} | {} ({} RU/s) |\n",
            num(users as f64),
            num(needed),
            runs(Throughput::serverless(0.0).ru_per_s),
            runs(deadline_rate),
            num(deadline_rate)
        ));
    }
    out
}

/// The text between `<!-- name:start -->` and `<!-- name:end -->` in docs/capacity.md.
fn doc_section(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/capacity.md")).unwrap();
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let from = doc.find(&start).unwrap_or_else(|| panic!("docs/capacity.md has no {start:?}")) + start.len();
    let to = doc[from..].find(&end).unwrap_or_else(|| panic!("docs/capacity.md has no {end:?}")) + from;
    doc[from..to].to_string()
}

#[test]
fn the_steady_state_table_is_what_the_model_computes() {
    let table = steady_table();
    assert!(doc_section("capacity-table") == table, "docs/capacity.md's table differs; the model gives:\n{table}");
}

#[test]
fn the_cold_start_table_is_what_the_model_computes() {
    let table = cold_start_table();
    assert!(doc_section("cold-start-table") == table, "docs/capacity.md's table differs; the model gives:\n{table}");
}

#[test]
fn the_model_matches_the_issue_figures() {
    // Issue 17: 100,000 users at 10% need ~70,000 RU a run, >= 14 s at 5,000 RU/s; a million
    // users ~2.6 billion records in 90 days.
    let r = Row::new(100_000, 0.10);
    assert!((70_000.0..75_000.0).contains(&r.mean_ru), "{}", r.mean_ru);
    let m = Row::new(1_000_000, 0.10);
    assert_eq!((m.records * RUNS_PER_DAY * RETENTION_DAYS / 1e9 * 100.0).round() / 100.0, 2.59);
    assert!(m.graph_bound_s > 29.0 && m.graph_bound_s < 32.0, "{}", m.graph_bound_s);
}

/// The record the store writes (src/store/cosmos.rs `HistoryDoc`): its charge and stored size on
/// the emulator are what the model assumes.
#[tokio::test]
async fn a_history_record_costs_and_weighs_what_the_model_assumes() {
    let emulator = Emulator::new();
    let container = emulator.history_container(&emulator.sdk_client(Vec::new()).await).await;
    let (user, id) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
    let doc = json!({"id": id, "userId": user, "availability": "DoNotDisturb",
                     "timestamp": "2026-12-01T00:00:02.000Z"});
    let created = container.create_item(user.clone(), &id, &doc, None).await.unwrap();
    assert_eq!(f64::from(created.diagnostics().total_request_charge()), RECORD_WRITE_RU);
    let stored: serde_json::Value = container.read_item(user, &id, None).await.unwrap().into_model().unwrap();
    let bytes = serde_json::to_vec(&stored).unwrap().len() as f64;
    println!("stored history document ({bytes} bytes): {stored}");
    assert_eq!(bytes, RECORD_STORED_BYTES, "stored size of a history record with its system properties");
}
