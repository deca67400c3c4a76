//! Telemetry cost of one poll run: items and bytes that reach the App Insights ingestion endpoint.
//!
//! `cargo run --release --example telemetry_cost` runs the production telemetry pipeline
//! (`Telemetry::start` → exporter → our transport) against a loopback ingestion server, with the
//! in-test scripted tenant and store making one span per simulated Graph request and per store
//! call, as the real client and store are specified to. Each size runs twice and reports the
//! second (steady-state) run.

#[path = "../tests/common/ingestion.rs"]
#[allow(dead_code)]
mod ingestion;
#[path = "../tests/common/scripted_tenant.rs"]
#[allow(dead_code)]
mod scripted_tenant;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{TimeZone, Utc};
use ingestion::IngestionServer;
use scripted_tenant::{MemoryStore, ScriptedTenant};
use teams_presence::cycle::{PollCycle, RunContext};
use teams_presence::model::Slot;
use teams_presence::telemetry::instrumented::{InstrumentedStore, InstrumentedTenant};
use teams_presence::telemetry::{ExportSettings, Telemetry};
use tracing_subscriber::EnvFilter;

const RUNS_PER_MONTH: f64 = 12.0 * 24.0 * 30.0;

#[tokio::main]
async fn main() {
    let ingestion = IngestionServer::start().await;
    let settings = ExportSettings::parse(Some(&ingestion.connection_string()), None).unwrap().unwrap();
    let no_credential = || -> Result<Arc<dyn TokenCredential>, &'static str> { Err("not needed") };
    let telemetry = Telemetry::start(&settings, no_credential).unwrap();
    let _subscriber = tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("off"), std::io::sink));

    println!("| users | groups | Graph requests | items | by type | gzip bytes | JSON bytes | JSON MB/month |");
    println!("|---|---|---|---|---|---|---|---|");
    for (users, groups, throttles) in [(100usize, 3usize, 0u32), (1_000, 3, 0), (10_000, 3, 2)] {
        let mut tenant = ScriptedTenant::new(users);
        tenant.throttles = throttles;
        let requests = tenant.expected_member_pages(groups) + tenant.expected_presence_calls();
        let cycle = PollCycle::new(
            (0..groups as u128).map(uuid::Uuid::from_u128).collect(),
            Arc::new(InstrumentedTenant(Arc::new(tenant))),
            Arc::new(InstrumentedStore(Arc::new(MemoryStore::default()))),
        );
        for round in 0..2 {
            ingestion.clear();
            let work = async {
                let slot = Slot::new(Utc.with_ymd_and_hms(2025, 3, 1, 10, 5 * round, 0).unwrap());
                let run = RunContext::new(format!("bench-{users}-{round}"), slot, Duration::from_secs(60));
                let summary = cycle.run(&run).await.unwrap();
                telemetry.record_run(&summary);
            };
            telemetry.invocation(&format!("bench-{users}-{round}"), work).await;
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
            "| {users} | {groups} | {requests} | {} | {} | {wire} | {json} | {:.1} |",
            items.len(),
            by_type.join(", "),
            json as f64 * RUNS_PER_MONTH / 1e6
        );
    }
    drop(_subscriber);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
}
