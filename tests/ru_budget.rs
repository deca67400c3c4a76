//! The request-unit budget of `common::ru_budget`: it holds the rate it is given, per container
//! and per physical partition, answers 429 / 3200 with a retry-after that is enough to wait,
//! executes nothing it throttles, and spends burst capacity as documented. Every request goes
//! through the real SDK pipeline (its own 429 retries included) onto the in-memory emulator, on
//! tokio's paused clock, so that ten seconds of traffic take a moment.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_core::http::StatusCode;
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::options::{ItemWriteOptions, OperationOptionsBuilder, ThrottlingRetryOptionsBuilder};
use common::cosmos_emulator::Emulator;
use common::ru_budget::{RuBudget, SUBSTATUS_RU_EXHAUSTED, Throughput};
use serde_json::json;
use tokio::time::Instant;

/// Far more than any writer here gets through its time box on a working budget.
const MAX_REQUESTS_PER_WRITER: u64 = 5_000;

const HISTORY: &str = teams_presence::config::DEFAULT_COSMOS_CONTAINER;

async fn history(emulator: &Emulator, budget: &RuBudget) -> ContainerClient {
    emulator.history_container(&emulator.sdk_client_on(budget.runtime_builder(), Vec::new()).await).await
}

/// A history record like the store writes.
fn record(user: &str, n: u64) -> (String, serde_json::Value) {
    let id = uuid::Uuid::new_v4().to_string();
    let doc = json!({"id": id, "userId": user, "availability": "Available",
                     "timestamp": format!("2026-12-01T00:00:{:02}.{:03}Z", n % 60, n % 1000)});
    (id, doc)
}

#[derive(Default)]
struct Load {
    written: AtomicU64,
    failed: AtomicU64,
}

/// `writers` tasks creating records as fast as the SDK lets them until `until`; each picks its
/// record's partition key with `user`.
async fn load(
    container: &ContainerClient,
    writers: u64,
    until: Instant,
    user: impl Fn(u64, u64) -> String + Send + Sync + 'static,
) -> Arc<Load> {
    let load = Arc::new(Load::default());
    let user = Arc::new(user);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (container, load, user) = (container.clone(), load.clone(), user.clone());
            tokio::spawn(async move {
                let mut n = 0;
                // Bounded, so that a budget that never throttles (paused time then never
                // advances) fails the test instead of hanging it.
                while Instant::now() < until && n < MAX_REQUESTS_PER_WRITER {
                    let user = user(w, n);
                    let (id, doc) = record(&user, n);
                    match container.create_item(user, &id, &doc, None).await {
                        Ok(_) => load.written.fetch_add(1, Ordering::Relaxed),
                        Err(_) => load.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    n += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    load
}

/// RU/s served by `container` between `from` and `from + window` under `writers` writers.
async fn served_rate(
    budget: &RuBudget,
    container: &ContainerClient,
    writers: u64,
    warm_up: Duration,
    window: Duration,
    user: impl Fn(u64, u64) -> String + Send + Sync + 'static,
) -> (f64, Arc<Load>) {
    let started = Instant::now();
    let measuring = {
        let budget = budget.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(started + warm_up).await;
            let before = (budget.container(HISTORY).ru, Instant::now());
            tokio::time::sleep_until(started + warm_up + window).await;
            (budget.container(HISTORY).ru - before.0) / before.1.elapsed().as_secs_f64()
        })
    };
    let load = load(container, writers, started + warm_up + window, user).await;
    (measuring.await.unwrap(), load)
}

#[test]
fn layouts_follow_the_documented_tables() {
    // learn.microsoft.com/azure/cosmos-db/serverless-performance, "Request unit changes".
    for (gb, partitions, container, each) in [
        (40.0, 1, 5_000.0, 5_000.0),
        (100.0, 2, 5_000.0, 2_500.0),
        (150.0, 3, 5_000.0, 5_000.0 / 3.0),
        (250.0, 5, 5_000.0, 1_000.0),
        (300.0, 6, 6_000.0, 1_000.0),
        (1_000.0, 20, 20_000.0, 1_000.0),
    ] {
        let t = Throughput::serverless(gb);
        assert_eq!((t.partitions, t.ru_per_s, t.per_partition), (partitions, container, each), "{gb} GB");
        assert!(!t.with_burst_capacity().burst, "serverless has no burst capacity ({gb} GB)");
    }
    // Provisioned: 50 GB and 10,000 RU/s per physical partition, the RU/s spread evenly.
    assert_eq!(Throughput::provisioned_for_storage(5_000.0, 10.0).partitions, 1);
    let by_storage = Throughput::provisioned_for_storage(5_000.0, 120.0);
    assert_eq!((by_storage.partitions, by_storage.per_partition), (3, 5_000.0 / 3.0));
    assert_eq!(Throughput::provisioned_for_storage(25_000.0, 10.0).partitions, 3);
    // Burst capacity only below 3,000 RU/s per partition.
    assert!(Throughput::provisioned(400.0, 1).with_burst_capacity().burst);
    assert!(!Throughput::provisioned(3_000.0, 1).with_burst_capacity().burst);
    assert!(Throughput::provisioned(9_000.0, 4).with_burst_capacity().burst);
}

#[tokio::test(start_paused = true)]
async fn holds_the_rate_it_is_given() {
    let emulator = Emulator::new();
    let budget = RuBudget::history_and_state(&emulator, Throughput::provisioned(1_000.0, 1));
    let container = history(&emulator, &budget).await;
    // Past the first second, which an idle partition serves from its full bucket.
    let (rate, load) = served_rate(&budget, &container, 16, Duration::from_secs(1), Duration::from_secs(10), |w, n| {
        format!("user-{w}-{}", n % 50)
    })
    .await;
    let figures = budget.container(HISTORY);
    println!(
        "1,000 RU/s: served {rate:.1} RU/s; {} written, {} failed after the SDK's retries, {} 429s, longest retry-after {} ms",
        load.written.load(Ordering::Relaxed),
        load.failed.load(Ordering::Relaxed),
        figures.throttled,
        figures.max_retry_after_ms
    );
    assert!((rate - 1_000.0).abs() <= 30.0, "served {rate:.1} RU/s against a 1,000 RU/s budget");
    assert!(figures.throttled > 0, "16 writers never exceeded 1,000 RU/s: the budget was not tested");
    // Everything executed was charged: the emulator holds exactly the admitted creates.
    let stored = emulator.history_documents().await.len() as u64;
    assert_eq!(stored, figures.requests, "documents stored vs requests admitted");
    assert_eq!(stored, load.written.load(Ordering::Relaxed), "documents stored vs creates that succeeded");
}

#[tokio::test(start_paused = true)]
async fn answers_429_with_a_retry_after_that_is_enough_and_executes_nothing() {
    let emulator = Emulator::new();
    let budget = RuBudget::history_and_state(&emulator, Throughput::provisioned(400.0, 1));
    let container = history(&emulator, &budget).await;
    // The SDK's own 429 retries off, so that the first 429 reaches this test.
    let no_retries = ItemWriteOptions::default().with_operation_options(
        OperationOptionsBuilder::new()
            .with_throttling_retry_options(ThrottlingRetryOptionsBuilder::new().with_max_retry_count(0).build())
            .build(),
    );
    let create = |n: u64| {
        let (container, options) = (container.clone(), no_retries.clone());
        async move {
            let (id, doc) = record("user-1", n);
            container.create_item("user-1", &id, &doc, Some(options)).await.map(|_| ()).map_err(|e| (id, e))
        }
    };
    let mut admitted = 0;
    let (throttled_id, error) = loop {
        match create(admitted).await {
            Ok(()) => admitted += 1,
            Err(failed) => break failed,
        }
        assert!(admitted < 1_000, "1,000 creates within one instant were never throttled");
    };
    assert_eq!(error.status().status_code(), StatusCode::TooManyRequests, "{error}");
    let substatus = error.status().sub_status().map(|s| u32::from(s.value()));
    assert_eq!(substatus, Some(SUBSTATUS_RU_EXHAUSTED), "{error}");
    // An idle partition serves its second's worth at once: 400 RU of 7 RU creates, the last of
    // them taking the bucket into debt.
    let figures = budget.container(HISTORY);
    let record_ru = figures.ru / figures.requests as f64;
    assert_eq!(admitted, (400.0 / record_ru).ceil() as u64, "creates before the first 429, {record_ru} RU each");
    assert_eq!(figures.throttled, 1);
    // The retry-after is the time the debt (less than one record) takes to repay at 400 RU/s.
    let debt = figures.ru - 400.0;
    let wait = figures.max_retry_after_ms;
    assert_eq!(wait, (debt / 400.0 * 1000.0).ceil() as u64, "retry-after for a {debt} RU debt");
    assert!(wait > 1, "this test needs a retry-after of several ms, got {wait}");
    // A millisecond short of it is too early; then the next request goes through.
    tokio::time::sleep(Duration::from_millis(wait - 1)).await;
    assert!(create(10_000).await.is_err(), "admitted a millisecond before the retry-after");
    assert_eq!(budget.container(HISTORY).throttled, 2);
    tokio::time::sleep(Duration::from_millis(1)).await;
    create(10_001).await.map_err(|(_, e)| e).expect("admitted once the retry-after passed");
    // Nothing of the throttled requests was executed.
    let stored = emulator.history_documents().await;
    assert_eq!(stored.len() as u64, admitted + 1);
    assert!(stored.iter().all(|doc| doc["id"] != throttled_id.as_str()));
}

#[tokio::test(start_paused = true)]
async fn provisioned_throughput_is_divided_evenly_over_physical_partitions() {
    let emulator = Emulator::new();
    let budget = RuBudget::history_and_state(&emulator, Throughput::provisioned(4_000.0, 4));
    let container = history(&emulator, &budget).await;
    let window = Duration::from_secs(5);
    // One logical partition (one user) lives on one physical partition: a quarter of the RU/s.
    let (hot, _) = served_rate(&budget, &container, 16, Duration::from_secs(1), window, |_, _| "one-user".into()).await;
    let figures = budget.container(HISTORY);
    let used: Vec<&f64> = figures.ru_by_partition.iter().filter(|ru| **ru > 0.0).collect();
    assert_eq!(used.len(), 1, "one user's records on one partition: {:?}", figures.ru_by_partition);
    assert!((hot - 1_000.0).abs() <= 40.0, "one hot partition served {hot:.1} RU/s of 4,000 / 4");
    // Many users spread over all four: the container's whole RU/s.
    let (spread, _) =
        served_rate(&budget, &container, 32, Duration::from_secs(1), window, |w, n| format!("user-{w}-{n}")).await;
    println!("4 partitions x 1,000 RU/s: one user {hot:.1} RU/s, many users {spread:.1} RU/s");
    assert!((spread - 4_000.0).abs() <= 160.0, "many users served {spread:.1} RU/s of 4,000");
    assert!(budget.container(HISTORY).ru_by_partition.iter().all(|ru| *ru > 0.0));
}

#[tokio::test(start_paused = true)]
async fn burst_capacity_spends_five_minutes_of_idle_capacity_at_up_to_3000_ru_per_s() {
    let emulator = Emulator::new();
    // The burst-capacity page's example: a 100 RU/s partition.
    let budget = RuBudget::history_and_state(&emulator, Throughput::provisioned(100.0, 1).with_burst_capacity());
    let container = history(&emulator, &budget).await;
    // Ten idle minutes accumulate only five minutes' worth: 100 x 300 = 30,000 RU.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let window = Duration::from_secs(5);
    let (rate, _) =
        served_rate(&budget, &container, 32, Duration::from_secs(1), window, |w, n| format!("user-{w}-{n}")).await;
    println!("100 RU/s with burst capacity after 10 idle minutes: {rate:.1} RU/s");
    assert!((rate - 3_000.0).abs() <= 90.0, "bursting at {rate:.1} RU/s, documented: up to 3,000");
    // The rest of the burst lasts ~3 s more at 2,900 RU/s above the provisioned 100; then 100.
    let (after, _) =
        served_rate(&budget, &container, 32, Duration::from_secs(8), window, |w, n| format!("late-{w}-{n}")).await;
    let burst = budget.container(HISTORY).burst_ru;
    println!("then {after:.1} RU/s; {burst:.0} RU served from burst in all");
    assert!((after - 100.0).abs() <= 4.0, "after the burst: {after:.1} RU/s, provisioned 100");
    assert!((burst - 30_000.0).abs() <= 10.0, "burst served {burst:.0} RU of the 30,000 accumulated");
}
