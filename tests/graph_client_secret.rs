//! The client-secret credential of local runs (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`, authority from `AZURE_AUTHORITY_HOST`), end to end: the real `handler`
//! binary, the real `azure_identity` `ClientSecretCredential`, the simulator's Entra token
//! endpoint behind TLS (the credential accepts only an https authority).

mod common;

use std::process::Output;

use common::tls_relay::{CA_PEM, TlsRelay};
use teams_presence::model::GroupId;
use teams_presence::simulator::{SimConfig, SimHandle, Simulator, standard_groups};

const TENANT: &str = "8e1b2c3d-0000-4000-8000-0000000000aa";
const CLIENT_ID: &str = "3f0c7a12-0000-4000-8000-0000000000bb";
const SECRET: &str = "Q7x~sim-client-secret-5f2d9e";

async fn poll_once(sim: &SimHandle, relay: &TlsRelay, secret: &str, db: &std::path::Path) -> Output {
    let groups: Vec<String> = standard_groups()[..3].iter().map(GroupId::to_string).collect();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["poll-once", "--groups", &groups.join(",")])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GRAPH_BASE_URL", sim.base_url())
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT_ID)
        .env("AZURE_CLIENT_SECRET", secret)
        .env("AZURE_AUTHORITY_HOST", relay.url())
        .env("SSL_CERT_FILE", CA_PEM)
        .env("PRESENCE_DB", db)
        .env("LOG_LEVEL", "debug")
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_authenticates_with_the_client_secret_and_never_prints_it() {
    let sim = Simulator::start(SimConfig::standard(300).client_credentials(CLIENT_ID, SECRET)).await.unwrap();
    let relay = TlsRelay::start(sim.address()).await;
    let dir = tempfile::tempdir().unwrap();

    let output = poll_once(&sim, &relay, SECRET, &dir.path().join("presence.db")).await;

    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(all.contains("using an app registration's client secret"), "{all}");
    let line = all.lines().find(|l| l.starts_with("run slot=")).expect("summary line");
    assert!(line.contains(" users=300 ") && line.contains(" changes=300 "), "{line}");
    let counters = sim.counters();
    assert_eq!(counters.tokens_issued, 1, "one token from the client-credentials endpoint: {counters:?}");
    assert!(sim.identity_client_ids().is_empty(), "the managed-identity endpoint was not asked");
    assert!(!all.contains(SECRET), "the client secret reached the output");
    for token in sim.issued_tokens() {
        assert!(!all.contains(&token), "the access token reached the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_fails_the_run_clearly_without_echoing_it() {
    let sim = Simulator::start(SimConfig::standard(50).client_credentials(CLIENT_ID, SECRET)).await.unwrap();
    let relay = TlsRelay::start(sim.address()).await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = "W9y~not-the-secret-7c1a";

    let output = poll_once(&sim, &relay, wrong, &dir.path().join("presence.db")).await;

    let all = text(&output);
    assert!(!output.status.success(), "{all}");
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("ClientSecretCredential") || error.contains("client secret"), "{error}");
    assert!(error.contains("invalid_client") || error.contains("invalid client secret"), "{error}");
    assert!(!all.contains(wrong) && !all.contains(SECRET), "a secret reached the output: {all}");
    assert_eq!(sim.counters().tokens_issued, 0);
}
