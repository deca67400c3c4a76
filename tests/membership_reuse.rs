//! Membership reused between runs when paging is slow (`graph::reuse`): the production Graph
//! client against the simulator, and the real handler binary with the setting that turns it on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use common::graph_sim::{client, run, settings};
use common::handler_process::{HandlerProcess, tenant_env, timer_body};
use serde_json::Value;
use teams_presence::graph::Tenant;
use teams_presence::graph::reuse::MembershipReuse;
use teams_presence::simulator::{Endpoint, Fault, SimConfig, Simulator, standard_groups};

#[tokio::test]
async fn a_slow_membership_is_reused_while_the_next_read_runs_in_the_background() {
    let sim = Simulator::start(SimConfig::standard(3_000).max_page_size(100).latency(Duration::from_millis(10)))
        .await
        .unwrap();
    let groups = standard_groups()[..3].to_vec();
    let graph: Arc<dyn Tenant> = Arc::new(client(&sim, &settings(&sim)));
    // Any paging counts as slow.
    let reuse = MembershipReuse::new(graph, Duration::ZERO);

    let (first, _) = reuse.members_and_presence(&groups, &run(Duration::from_secs(60))).await.unwrap();
    assert_eq!(first.age, Duration::ZERO, "the first run reads membership");
    assert!(first.users == sim.expected_users(&groups));
    let pages = sim.counters().member_calls;
    assert!(pages > 3, "{pages} member pages");

    let (second, snapshot) = reuse.members_and_presence(&groups, &run(Duration::from_secs(60))).await.unwrap();
    assert!(second.age > Duration::ZERO, "the second run reuses the first read");
    assert!(second.users == first.users);
    assert_eq!(snapshot.observations.len(), first.users.len(), "everyone observed all the same");
    reuse.settle().await;
    assert_eq!(sim.counters().member_calls, 2 * pages, "membership read again, in the background");

    // A background read that finds a group unreadable is what the run after it uses: nobody is
    // polled from that group, and (in the cycle) nobody departs because of it.
    sim.inject(Endpoint::Members, Fault::Status { status: 403, retry_after: None }, 1);
    let (third, _) = reuse.members_and_presence(&groups, &run(Duration::from_secs(60))).await.unwrap();
    assert!(third.unreadable_groups.is_empty(), "the read before the fault");
    reuse.settle().await;
    let (fourth, _) = reuse.members_and_presence(&groups, &run(Duration::from_secs(60))).await.unwrap();
    assert_eq!(fourth.unreadable_groups.len(), 1, "the background read that met the 403");
    assert!(fourth.users.len() < first.users.len());
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn summary(reply: &Value, field: &str) -> u64 {
    let line = reply["Logs"][0].as_str().unwrap();
    line.split_whitespace().find_map(|kv| kv.strip_prefix(&format!("{field}="))?.parse().ok()).unwrap()
}

#[tokio::test]
async fn the_handler_reuses_membership_and_logs_the_background_read_with_the_invocation_id() {
    let sim = Simulator::start(SimConfig::standard(2_000).max_page_size(100)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    let env = tenant_env(&sim, &standard_groups()[..3], &db, &[("MEMBERSHIP_INLINE_LIMIT_SECONDS", "0")]);
    let handler = HandlerProcess::start(&env);
    let first_slot = Utc::now();
    let mut replies = Vec::new();
    for (i, invocation_id) in ["inv-read", "inv-reuse"].into_iter().enumerate() {
        let slot = first_slot + chrono::Duration::minutes(5 * i as i64);
        let body = timer_body(&ts(slot), &ts(slot - chrono::Duration::minutes(5)), false, &ts(Utc::now()));
        let response = reqwest::Client::new()
            .post(handler.url("/function-timer"))
            .header("X-Azure-Functions-InvocationId", invocation_id)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{:?}", handler.stderr_lines());
        replies.push(response.json::<Value>().await.unwrap());
        sim.advance_epoch();
    }
    let users = sim.expected_users(&standard_groups()[..3]).len() as u64;
    assert!(summary(&replies[0], "member_pages") > 0);
    assert_eq!(summary(&replies[0], "membership_age_ms"), 0);
    assert_eq!(summary(&replies[1], "member_pages"), 0, "no paging in the run that reused membership");
    assert!(summary(&replies[1], "membership_age_ms") > 0);
    assert_eq!(summary(&replies[1], "users"), users);
    assert_eq!(summary(&replies[1], "observed"), users);

    // Information lines go to stdout; the read may still be going on when the run returns.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let background = loop {
        let lines = handler.stdout_lines();
        if let Some(line) = lines.iter().find(|l| l.contains("membership read in the background")) {
            break line.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no background read logged: {lines:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(background.contains("inv-reuse"), "the line carries the invocation that started it: {background}");
}
