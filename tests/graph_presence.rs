//! getPresencesByUserId through the production client against the simulator: batching, the rate
//! limit, Retry-After forms, faults and missing ids.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::graph_sim::{client, run, settings};
use teams_presence::graph::Tenant;
use teams_presence::simulator::{Endpoint, Fault, RetryAfter, SimConfig, Simulator, user_id};

fn users(n: u32) -> Vec<teams_presence::model::UserId> {
    (0..n).map(user_id).collect()
}

#[tokio::test]
async fn batches_stay_under_650_ids_and_the_rate_limit_and_match_the_truth() {
    // An accelerated throttle: 5 calls per 400 ms on both sides; 20,000 users need 31 calls.
    let window = Duration::from_millis(400);
    let sim = Simulator::start(SimConfig::new(20_000).throttle(5, window)).await.unwrap();
    let mut settings = settings(&sim);
    settings.presence_calls_per_30s = 5;
    settings.tuning.presence_window = window;
    let graph = client(&sim, &settings);
    let run = run(Duration::from_secs(60));

    let snapshot = graph.presence(&users(20_000), &run).await.unwrap();

    assert_eq!(snapshot.observations.len(), 20_000);
    assert!(snapshot.unobserved.is_empty() && snapshot.failed_batches.is_empty());
    for o in &snapshot.observations {
        assert_eq!(Some(o.availability.as_str()), sim.truth(&o.user_id, 0));
    }
    let counters = sim.counters();
    assert_eq!(counters.presence_calls, 31);
    assert_eq!(counters.max_ids_per_call, 650);
    assert!(counters.max_presence_calls_in_window <= 5, "{counters:?}");
    assert_eq!(counters.throttled, 0);
    assert_eq!(run.metrics.presence_calls.load(Ordering::Relaxed), 31);
    assert!(run.metrics.throttle_wait_ms.load(Ordering::Relaxed) > 0, "the limiter, not Graph, paced the run");
}

async fn one_call_after(fault: Fault) -> (Duration, teams_presence::simulator::SimHandle, u64) {
    let sim = Simulator::start(SimConfig::new(10)).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    sim.inject(Endpoint::Presence, fault, 1);
    let run = run(Duration::from_secs(30));
    let started = Instant::now();
    let snapshot = graph.presence(&users(10), &run).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(snapshot.observations.len(), 10, "{:?}", snapshot.failed_batches);
    (elapsed, sim, run.metrics.retries.load(Ordering::Relaxed))
}

#[tokio::test]
async fn retry_after_in_whole_seconds_is_honoured() {
    let fault = Fault::Status { status: 429, retry_after: Some(RetryAfter::Seconds(1)) };
    let (elapsed, sim, retries) = one_call_after(fault).await;
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1_900), "{elapsed:?}");
    assert_eq!((sim.counters().throttled, retries), (1, 1));
}

#[tokio::test]
async fn fractional_retry_after_is_honoured() {
    let fault = Fault::Status { status: 429, retry_after: Some(RetryAfter::Fractional(0.35)) };
    let (elapsed, _, _) = one_call_after(fault).await;
    assert!(elapsed >= Duration::from_millis(350) && elapsed < Duration::from_millis(1_000), "{elapsed:?}");
}

#[tokio::test]
async fn http_date_retry_after_is_honoured() {
    // HTTP dates have whole-second resolution: "2 s from now" is between 1 and 2 s away.
    let fault = Fault::Status { status: 503, retry_after: Some(RetryAfter::HttpDate(Duration::from_secs(2))) };
    let (elapsed, _, _) = one_call_after(fault).await;
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(2_900), "{elapsed:?}");
}

#[tokio::test]
async fn retry_after_on_a_503_is_honoured_too() {
    let fault = Fault::Status { status: 503, retry_after: Some(RetryAfter::Seconds(1)) };
    let (elapsed, _sim, retries) = one_call_after(fault).await;
    assert!(elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1_900), "{elapsed:?}");
    assert_eq!(retries, 1);
}

#[tokio::test]
async fn server_errors_are_retried_on_a_new_connection() {
    let (_, sim, retries) = one_call_after(Fault::Status { status: 500, retry_after: None }).await;
    let peers = sim.presence_peers();
    assert_eq!(retries, 1);
    assert_eq!(peers.len(), 2);
    assert_ne!(peers[0], peers[1], "the retry came from a different local port");
}

#[tokio::test]
async fn a_hung_call_times_out_and_is_retried() {
    let sim = Simulator::start(SimConfig::new(10)).await.unwrap();
    let mut settings = settings(&sim);
    settings.tuning.request_timeout = Duration::from_millis(300);
    let graph = client(&sim, &settings);
    sim.inject(Endpoint::Presence, Fault::Hang, 1);
    let started = Instant::now();
    let snapshot = graph.presence(&users(10), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(snapshot.observations.len(), 10);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_slow_answer_within_the_request_timeout_is_waited_for_not_retried() {
    let (elapsed, sim, retries) = one_call_after(Fault::Slow(Duration::from_millis(400))).await;
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert_eq!((retries, sim.counters().presence_calls), (0, 1));
}

#[tokio::test]
async fn a_slow_answer_past_the_request_timeout_is_retried_on_a_new_connection() {
    let sim = Simulator::start(SimConfig::new(10)).await.unwrap();
    let mut settings = settings(&sim);
    settings.tuning.request_timeout = Duration::from_millis(300);
    let graph = client(&sim, &settings);
    sim.inject(Endpoint::Presence, Fault::Slow(Duration::from_secs(2)), 1);
    let run = run(Duration::from_secs(30));
    let started = Instant::now();
    let snapshot = graph.presence(&users(10), &run).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(snapshot.observations.len(), 10, "{:?}", snapshot.failed_batches);
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(run.metrics.retries.load(Ordering::Relaxed), 1);
    let peers = sim.presence_peers();
    assert_eq!(peers.len(), 2);
    assert_ne!(peers[0], peers[1], "the retry came from a different local port");
}

#[tokio::test]
async fn a_wait_past_the_deadline_gives_up_at_once() {
    let sim = Simulator::start(SimConfig::new(10)).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    sim.inject(Endpoint::Presence, Fault::Status { status: 429, retry_after: Some(RetryAfter::Seconds(30)) }, 1);
    let started = Instant::now();
    let snapshot = graph.presence(&users(10), &run(Duration::from_secs(2))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(snapshot.unobserved.len(), 10);
    assert!(snapshot.failed_batches[0].reason.contains("deadline"), "{:?}", snapshot.failed_batches);
}

#[tokio::test]
async fn ids_missing_from_the_response_are_unobserved_not_changed() {
    let sim = Simulator::start(SimConfig::new(1_000).missing_users([3, 700])).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    sim.inject(Endpoint::Presence, Fault::DropIds(2), 1);
    let snapshot = graph.presence(&users(1_000), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(snapshot.observations.len(), 1_000 - 4);
    assert_eq!(snapshot.unobserved.len(), 4);
    for id in [user_id(3), user_id(700)] {
        assert!(snapshot.unobserved.contains(&id));
        assert!(!snapshot.observations.iter().any(|o| o.user_id == id));
    }
}

#[tokio::test]
async fn malformed_and_truncated_bodies_fail_that_call_with_a_clear_error() {
    for fault in [Fault::Malformed, Fault::Truncated] {
        let sim = Simulator::start(SimConfig::new(1_300)).await.unwrap();
        let mut settings = settings(&sim);
        settings.presence_concurrency = 1;
        let graph = client(&sim, &settings);
        sim.inject(Endpoint::Presence, fault.clone(), 1);
        let snapshot = graph.presence(&users(1_300), &run(Duration::from_secs(30))).await.unwrap();
        assert_eq!(snapshot.observations.len(), 650, "{fault:?}: the other batch is kept");
        assert_eq!(snapshot.unobserved.len(), 650);
        let reason = &snapshot.failed_batches[0].reason;
        assert!(reason.contains("getPresencesByUserId") && reason.contains("not the expected JSON"), "{reason}");
    }
}

#[tokio::test]
async fn a_refused_batch_is_bisected_down_to_the_bad_id() {
    let sim = Simulator::start(SimConfig::new(600).rejected_users([123])).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    let snapshot = graph.presence(&users(600), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(snapshot.observations.len(), 599);
    assert_eq!(snapshot.unobserved, [user_id(123)]);
    assert_eq!(snapshot.failed_batches.len(), 1);
    assert_eq!(snapshot.failed_batches[0].ids, 1);
    // 1 + 2 per level of a binary search over 600 ids.
    assert!(sim.counters().presence_calls <= 1 + 2 * 10, "{:?}", sim.counters());
}

#[tokio::test]
async fn presence_follows_the_epochs_of_the_model() {
    let sim = Simulator::start(SimConfig::new(2_000).change_rate(0.1)).await.unwrap();
    let graph = client(&sim, &settings(&sim));
    let mut first = graph.presence(&users(2_000), &run(Duration::from_secs(30))).await.unwrap();
    assert_eq!(sim.advance_epoch(), 1);
    let mut second = graph.presence(&users(2_000), &run(Duration::from_secs(30))).await.unwrap();
    // Batches complete in any order.
    first.observations.sort_by_key(|o| o.user_id);
    second.observations.sort_by_key(|o| o.user_id);
    let changed = first
        .observations
        .iter()
        .zip(&second.observations)
        .filter(|(a, b)| {
            assert_eq!(a.user_id, b.user_id);
            a.availability != b.availability
        })
        .count();
    assert!((120..280).contains(&changed), "{changed} of 2,000 changed at a 10 % rate");
    for o in &second.observations {
        assert_eq!(Some(o.availability.as_str()), sim.truth(&o.user_id, 1));
    }
    assert_eq!(sim.counters().served_epochs.into_iter().collect::<Vec<_>>(), [(0, 4), (1, 4)]);
}
