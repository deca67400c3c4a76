//! Live tests against a real tenant and a real Cosmos DB account. Each is `#[ignore]`d, so a
//! normal run (and CI, which has no cloud access) reports it as skipped, never as passed; run
//! them with `--run-ignored only` (nextest) or `-- --ignored` (cargo test) and their variables
//! set (README "Live tests"). Run without its variables, a live test fails, naming them.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use teams_presence::config::{
    CosmosSettings, DEFAULT_COSMOS_CONTAINER, DEFAULT_COSMOS_DATABASE, DEFAULT_COSMOS_STATE_CONTAINER,
};
use teams_presence::model::{Availability, ChangeRecord, Slot, SubjectId, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::run::RunContext;
use teams_presence::store::cosmos::CosmosStore;
use teams_presence::store::{RecordPlan, Store, SubjectRequest};

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// A live test's required variable; run without it, the test fails saying what to set.
fn required(name: &str, what: &str) -> String {
    var(name).unwrap_or_else(|| panic!("{name} is not set: set it {what} (README \"Live tests\")"))
}

/// One real poll: the configured groups of a real tenant through Microsoft Graph, with the
/// credential this environment gives (`AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`, or
/// an `az login`), into an embedded store in a temporary folder.
#[tokio::test]
#[ignore = "live: needs a real tenant (LIVE_ENTRA_GROUP_IDS and a credential)"]
async fn live_graph_one_poll_of_the_configured_groups() {
    let groups = required("LIVE_ENTRA_GROUP_IDS", "(and a credential) to poll a real tenant");
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"));
    command
        .args(["poll-once", "--groups", &groups])
        .env_remove("COSMOS_ENDPOINT")
        .env_remove("IDENTITY_ENDPOINT")
        .env_remove("IDENTITY_HEADER")
        .env_remove("APPLICATIONINSIGHTS_CONNECTION_STRING")
        .env("PRESENCE_DB", dir.path().join("presence.db"));
    if let Some(base) = var("LIVE_GRAPH_BASE_URL") {
        command.env("GRAPH_BASE_URL", base);
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let line = stdout.lines().find(|l| l.starts_with("run slot=")).expect("summary line");
    let users: usize = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("users="))
        .and_then(|n| n.parse().ok())
        .expect("users= in the summary");
    assert!(users > 0, "the groups have no user members: {line}");
    eprintln!("live Graph: {line}");
}

/// The production Cosmos store against a real account: record, repeat, export, erase. Use a
/// dedicated account or database: the test writes run state (it removes its own users after).
#[tokio::test]
#[ignore = "live: needs a real Cosmos DB account (LIVE_COSMOS_ENDPOINT and a credential)"]
async fn live_cosmos_records_exports_and_erases() {
    let endpoint =
        required("LIVE_COSMOS_ENDPOINT", "(and a credential with Cosmos DB data access) to test a real account");
    let settings = CosmosSettings {
        endpoint: endpoint.parse().expect("LIVE_COSMOS_ENDPOINT is a URL"),
        database: var("LIVE_COSMOS_DATABASE").unwrap_or_else(|| DEFAULT_COSMOS_DATABASE.into()),
        container: var("LIVE_COSMOS_CONTAINER").unwrap_or_else(|| DEFAULT_COSMOS_CONTAINER.into()),
        state_container: var("LIVE_COSMOS_STATE_CONTAINER").unwrap_or_else(|| DEFAULT_COSMOS_STATE_CONTAINER.into()),
        key: None,
    };
    let credential = teams_presence::identity::credential().expect("a credential from the environment");
    let store: Arc<dyn Store> = Arc::new(CosmosStore::connect(&settings, Some(credential)).await.unwrap());
    let now = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let run = RunContext::new(format!("live-{}", uuid::Uuid::new_v4()), Slot::new(now), Duration::from_secs(120));
    // Fresh random ids, so earlier runs of this test leave nothing to collide with.
    let users: Vec<SubjectId> =
        (0..3).map(|_| Subjects::plain().stored_id(UserId::from_uuid(uuid::Uuid::new_v4()))).collect();
    let plan = RecordPlan {
        changes: users
            .iter()
            .map(|&subject| ChangeRecord { subject, availability: Availability::from("Available"), timestamp: now })
            .collect(),
        departed: Vec::new(),
        observed_at: now,
    };

    store.last_known(&run).await.unwrap();
    assert_eq!(store.record(&run, plan.clone()).await.unwrap().written, 3);
    assert_eq!(store.record(&run, plan).await.unwrap().already_recorded, 3, "a repeated slot doubles nothing");
    for &user in &users {
        let records = store.export_subject(user).await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].availability.as_str(), "Available");
        let erased = store.erase_subject(&SubjectRequest::new(Duration::from_secs(120)), user).await.unwrap();
        assert_eq!((erased.history_records, erased.state_entries), (1, 1));
        assert!(store.export_subject(user).await.unwrap().is_empty());
    }
    let charged = run.metrics.store_request_milli_units.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("live Cosmos: {} RU for a state read and 2 record calls", charged as f64 / 1000.0);
}
