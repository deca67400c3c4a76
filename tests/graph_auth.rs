//! Tokens through the real azure_identity managed-identity credential against the simulator's
//! App Service token endpoint: refresh before expiry, one refresh on 401, and no token in logs.

mod common;

use std::time::Duration;

use common::graph_sim::{client, managed_identity, run, settings};
use common::log_capture::capture;
use teams_presence::graph::Tenant;
use teams_presence::graph::client::GraphClient;
use teams_presence::simulator::{Endpoint, Fault, GroupSpec, SimConfig, Simulator, standard_groups, user_id};

fn users(n: u32) -> Vec<teams_presence::model::UserId> {
    (0..n).map(user_id).collect()
}

#[tokio::test]
async fn the_managed_identity_path_is_used_and_a_user_assigned_id_is_sent() {
    let sim = Simulator::start(SimConfig::new(10)).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    graph.presence(&users(10), &run(Duration::from_secs(30))).await.unwrap();
    let user_assigned =
        GraphClient::new(&settings(&sim), managed_identity(&sim, Some("6b0b1c1e-0000-4000-8000-00000000abcd")))
            .unwrap();
    user_assigned.presence(&users(10), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(sim.identity_client_ids(), [None, Some("6b0b1c1e-0000-4000-8000-00000000abcd".to_string())]);
    assert_eq!(sim.counters().tokens_issued, 2);
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_replaced_before_graph_refuses_it() {
    // Tokens live 2 s; the run takes about 3 s.
    let config = SimConfig::new(6_500).token_lifetime(Duration::from_secs(2)).latency(Duration::from_millis(300));
    let sim = Simulator::start(config).await.unwrap();
    let mut settings = settings(&sim);
    settings.presence_concurrency = 1;
    let graph = client(&sim, &settings);
    let snapshot = graph.presence(&users(6_500), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(snapshot.observations.len(), 6_500, "{:?}", snapshot.failed_batches);
    let counters = sim.counters();
    assert!(counters.tokens_issued >= 2, "{counters:?}");
    assert_eq!(counters.unauthorized, 0, "refreshed before expiry, not after a 401");
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once() {
    // azure_identity re-fetches tokens it considers near expiry (<= 5 min left); a revoked
    // long-lived token cannot be re-fetched through it, which the client reports clearly.
    let sim = Simulator::start(SimConfig::new(10).token_lifetime(Duration::from_secs(120))).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    graph.presence(&users(10), &run(Duration::from_secs(30))).await.unwrap();
    sim.revoke_tokens();
    let snapshot = graph.presence(&users(10), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(snapshot.observations.len(), 10, "{:?}", snapshot.failed_batches);
    let counters = sim.counters();
    assert_eq!((counters.unauthorized, counters.tokens_issued), (1, 2));
}

#[tokio::test(flavor = "current_thread")]
async fn no_log_line_of_a_run_contains_the_access_token() {
    let (captured, _guard) = capture(tracing::Level::TRACE);

    let [a, ..] = standard_groups();
    let config = SimConfig::new(1_000).group(GroupSpec::new(a).users(0..1_000).others(5)).max_page_size(100);
    let sim = Simulator::start(config).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    // A run with every kind of event: pages, throttling, errors, a refused token and a refresh.
    sim.inject(Endpoint::Presence, Fault::Status { status: 429, retry_after: None }, 1);
    sim.inject(Endpoint::Presence, Fault::Status { status: 500, retry_after: None }, 1);
    sim.inject(Endpoint::Presence, Fault::Malformed, 1);
    let run = run(Duration::from_secs(30));
    let members = graph.members(&[a], &run).await.unwrap();
    graph.presence(&members.users, &run).await.unwrap();
    sim.revoke_tokens();
    let err = graph.presence(&members.users, &run).await;
    let outcome = format!("{err:?}");

    let tokens = sim.issued_tokens();
    assert!(!tokens.is_empty());
    let logs = captured.text();
    assert!(logs.lines().count() > 10, "the run logged: {logs}");
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "a token reached the logs");
        assert!(!outcome.contains(token.as_str()), "a token reached an error");
        // Tokens have two random halves; neither may appear on its own either.
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(!logs.contains(part), "part of a token reached the logs");
        }
    }
}
