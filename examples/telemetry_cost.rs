//! Telemetry cost of one poll run: items and bytes that reach the App Insights ingestion endpoint.
//!
//! `cargo run --example telemetry_cost` (the figures do not depend on the build profile) runs the production pipeline end to end on
//! loopback: the Graph simulator (`SimConfig::standard`, four overlapping groups, one nested,
//! 10% of users changing per epoch), the production Graph client, the SQLite store, the phase
//! wrappers the handler uses, and `Telemetry::start` -> exporter -> our transport -> a loopback
//! ingestion server. Each size runs twice (the first run records every user) and reports the
//! second, steady-state run. At 10,000 users the first two presence calls of the measured run
//! answer 429, so throttling rows are counted too.

#[path = "../tests/common/ingestion.rs"]
#[allow(dead_code)]
mod ingestion;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{TimeZone, Utc};
use ingestion::IngestionServer;
use teams_presence::config::{GraphSettings, GraphTuning};
use teams_presence::cycle::PollCycle;
use teams_presence::graph::client::GraphClient;
use teams_presence::model::Slot;
use teams_presence::run::RunContext;
use teams_presence::simulator::{Endpoint, Fault, RetryAfter, SimConfig, Simulator, standard_groups};
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::telemetry::instrumented::{InstrumentedStore, InstrumentedTenant};
use teams_presence::telemetry::{ExportSettings, Telemetry};
use tracing_subscriber::EnvFilter;

const RUNS_PER_MONTH: f64 = 12.0 * 24.0 * 30.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ingestion = IngestionServer::start().await;
    let settings = ExportSettings::parse(Some(&ingestion.connection_string()), None)?
        .ok_or_else(|| anyhow::anyhow!("no export settings"))?;
    let no_credential = || -> Result<Arc<dyn TokenCredential>, &'static str> { Err("not needed") };
    let telemetry = Telemetry::start(&settings, no_credential)?;
    let _subscriber = tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("off"), std::io::sink));

    println!("| users | Graph requests | items | by type | gzip bytes | JSON bytes | JSON MB/month |");
    println!("|---|---|---|---|---|---|---|");
    for (users, throttles) in [(100u32, 0usize), (1_000, 0), (10_000, 2)] {
        let sim = Simulator::start(SimConfig::standard(users)).await?;
        // The managed-identity protocol against the simulator, as the handler uses it.
        // SAFETY: single-threaded set-up before the runs; nothing else reads the environment.
        unsafe {
            std::env::set_var("IDENTITY_ENDPOINT", sim.identity_endpoint());
            std::env::set_var("IDENTITY_HEADER", sim.identity_header());
        }
        let graph = GraphSettings {
            base_url: sim.base_url().parse()?,
            presence_concurrency: 4,
            presence_calls_per_30s: 1_500,
            tuning: GraphTuning::default(),
        };
        let client = GraphClient::new(&graph, teams_presence::identity::credential()?)?;
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(&dir.path().join("presence.db"), None).await?;
        let cycle = PollCycle::new(
            standard_groups()[..3].to_vec(),
            Arc::new(InstrumentedTenant(Arc::new(client))),
            Arc::new(InstrumentedStore(Arc::new(store))),
        );
        let mut requests = 0;
        for round in 0..2u32 {
            ingestion.clear();
            if round == 1 {
                sim.advance_epoch();
                let retry_after = Some(RetryAfter::Fractional(0.05));
                sim.inject(Endpoint::Presence, Fault::Status { status: 429, retry_after }, throttles);
            }
            let id = format!("cost-{users}-{round}");
            let work = async {
                let slot = Slot::new(Utc.with_ymd_and_hms(2025, 3, 1, 10, 5 * round, 0).unwrap());
                let run = RunContext::new(id.clone(), slot, Duration::from_secs(60));
                let summary = cycle.run(&run).await?;
                telemetry.record_run(&summary);
                anyhow::Ok(summary)
            };
            let summary = telemetry.invocation(&id, work).await?;
            requests = summary.member_pages + summary.presence_calls + summary.throttled;
        }
        let uploads = ingestion.uploads();
        let items = ingestion.items();
        let mut by_type = BTreeMap::new();
        for item in &items {
            let kind = item["data"]["baseType"].as_str().unwrap_or("?").trim_end_matches("Data").to_string();
            *by_type.entry(kind).or_insert(0) += 1;
        }
        let wire: usize = uploads.iter().map(|u| u.wire_bytes).sum();
        let json: usize = uploads.iter().map(|u| u.json_bytes).sum();
        let by_type: Vec<String> = by_type.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "| {users} | {requests} | {} | {} | {wire} | {json} | {:.1} |",
            items.len(),
            by_type.join(", "),
            json as f64 * RUNS_PER_MONTH / 1e6
        );
        sim.shutdown();
    }
    drop(_subscriber);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    Ok(())
}
