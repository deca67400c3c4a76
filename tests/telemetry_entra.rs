//! Entra-authenticated ingestion: with `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` asking for
//! AAD, each upload carries a bearer token for `https://monitor.azure.com/.default` from a real
//! `azure_identity::ManagedIdentityCredential` (App Service protocol, loopback token endpoint),
//! goes to `/v2.1/track`, and the token appears in no telemetry item.
//!
//! One test in this binary: `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are process-wide.

mod common;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{TimeZone, Utc};
use common::ingestion::IngestionServer;
use common::token_endpoint::{IDENTITY_HEADER_SECRET, TokenEndpoint, token_for};
use teams_presence::cycle::PollCycle;
use teams_presence::graph::{GraphError, Membership, PresenceSnapshot, Tenant};
use teams_presence::model::{GroupId, Slot, UserId};
use teams_presence::run::RunContext;
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::telemetry::instrumented::{InstrumentedStore, InstrumentedTenant};
use teams_presence::telemetry::{ExportSettings, Telemetry};
use tracing_subscriber::EnvFilter;

const USER_ASSIGNED: &str = "9c1d0e6a-51b3-4f7e-a2a2-1d6d1b1c2f33";

/// A tenant whose groups are empty. The Graph client cannot run here: its managed-identity
/// credential would read the same process-wide `IDENTITY_ENDPOINT` as the exporter's, and the
/// client-secret one needs an https authority. What goes through Graph is in `telemetry_export`.
struct EmptyTenant;

#[async_trait::async_trait]
impl Tenant for EmptyTenant {
    async fn members(&self, _: &[GroupId], _: &RunContext) -> Result<Membership, GraphError> {
        Ok(Membership::default())
    }
    async fn presence(&self, _: &[UserId], _: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        Ok(PresenceSnapshot::default())
    }
}

async fn run_once(telemetry: &Telemetry, invocation_id: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("presence.db"), None).await.unwrap());
    let cycle = PollCycle::new(
        vec![teams_presence::model::GroupId::from_u128(7)],
        Arc::new(InstrumentedTenant(Arc::new(EmptyTenant))),
        Arc::new(InstrumentedStore(store)),
    );
    let work = async {
        let slot = Slot::new(Utc.with_ymd_and_hms(2025, 3, 1, 10, 5, 0).unwrap());
        let run = RunContext::new(invocation_id, slot, Duration::from_secs(60));
        let summary = cycle.run(&run).await.unwrap();
        telemetry.record_run(&summary);
    };
    telemetry.invocation(invocation_id, work).await;
}

#[tokio::test]
async fn entra_ingestion_sends_a_bearer_token_that_never_appears_in_telemetry() {
    let identity = TokenEndpoint::start();
    // SAFETY: the only test in this binary sets these before any other thread reads the environment.
    unsafe {
        std::env::set_var("IDENTITY_ENDPOINT", identity.url());
        std::env::set_var("IDENTITY_HEADER", IDENTITY_HEADER_SECRET);
    }
    let ingestion = IngestionServer::start().await;

    // --- System-assigned identity: the app's credential is used (here the real MI credential).
    let settings =
        ExportSettings::parse(Some(&ingestion.connection_string()), Some("Authorization=AAD")).unwrap().unwrap();
    let credential = || -> Result<Arc<dyn TokenCredential>, azure_core::Error> {
        Ok(azure_identity::ManagedIdentityCredential::new(None)?)
    };
    let telemetry = Telemetry::start(&settings, credential).unwrap();
    let subscriber = tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("off"), std::io::sink));
    run_once(&telemetry, "inv-a").await;
    run_once(&telemetry, "inv-b").await;
    drop(subscriber);

    let token = token_for("https://monitor.azure.com", None);
    let uploads = ingestion.uploads();
    assert!(uploads.len() >= 2, "each run flushes: {} uploads", uploads.len());
    for upload in &uploads {
        assert_eq!(upload.path, "/v2.1/track", "Entra tokens are only accepted on v2.1");
        assert_eq!(upload.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
        assert!(!upload.json.contains(&token), "the token is in a telemetry item");
        assert!(!upload.json.to_ascii_lowercase().contains("bearer"), "an auth header is in a telemetry item");
        assert!(!upload.json.contains(IDENTITY_HEADER_SECRET), "the identity header secret is in a telemetry item");
    }
    let invocations: Vec<_> = ingestion
        .items()
        .iter()
        .filter_map(|i| i["data"]["baseData"]["properties"]["invocation_id"].as_str().map(str::to_string))
        .collect();
    assert!(invocations.contains(&"inv-a".to_string()) && invocations.contains(&"inv-b".to_string()));
    let requests = identity.requests();
    assert_eq!(requests.len(), 1, "the credential caches its token across uploads: {requests:?}");
    assert_eq!(requests[0].query.get("resource").map(String::as_str), Some("https://monitor.azure.com"));
    assert_eq!(requests[0].query.get("client_id"), None);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();

    // --- User-assigned identity named by ClientId: its token, asked for with its client id.
    ingestion.clear();
    let settings = ExportSettings::parse(
        Some(&ingestion.connection_string()),
        Some(&format!("ClientId={USER_ASSIGNED};Authorization=AAD")),
    )
    .unwrap()
    .unwrap();
    let unused = || -> Result<Arc<dyn TokenCredential>, &'static str> { Err("ClientId names the identity") };
    let telemetry = Telemetry::start(&settings, unused).unwrap();
    let subscriber = tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("off"), std::io::sink));
    run_once(&telemetry, "inv-c").await;
    drop(subscriber);
    let token = token_for("https://monitor.azure.com", Some(USER_ASSIGNED));
    let uploads = ingestion.uploads();
    assert!(!uploads.is_empty());
    for upload in &uploads {
        assert_eq!(upload.authorization.as_deref(), Some(format!("Bearer {token}").as_str()));
        assert!(!upload.json.contains(&token));
    }
    let last = identity.requests().pop().unwrap();
    assert_eq!(last.query.get("client_id").map(String::as_str), Some(USER_ASSIGNED));
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
}
