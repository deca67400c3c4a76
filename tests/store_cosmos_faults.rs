//! Cosmos DB faults injected below the SDK's retry policy (429, 503, timeouts, failures part-way):
//! every change ends up recorded exactly once.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::http::StatusCode;
use azure_data_cosmos::fault_injection::{
    CustomResponseBuilder, FaultInjectionConditionBuilder, FaultInjectionErrorType, FaultInjectionResultBuilder,
    FaultInjectionRule, FaultInjectionRuleBuilder, FaultOperationType,
};
use common::cosmos_emulator::Emulator;
use common::store_cases::{plan, run_context, subject};
use teams_presence::store::RunStore;
use teams_presence::store::cosmos::{HISTORY_FIELDS, Tuning};

const USERS: u128 = 60;

fn rule(
    id: &str,
    operation: FaultOperationType,
    result: azure_data_cosmos::fault_injection::FaultInjectionResult,
    hits: Option<u32>,
) -> Arc<FaultInjectionRule> {
    let condition = FaultInjectionConditionBuilder::new().with_operation_type(operation).build();
    let mut builder = FaultInjectionRuleBuilder::new(id, result).with_condition(condition);
    if let Some(hits) = hits {
        builder = builder.with_hit_limit(hits);
    }
    Arc::new(builder.build())
}

fn changes(run: i64) -> Vec<(u128, &'static str)> {
    let value = if run % 2 == 0 { "Away" } else { "Available" };
    (0..USERS).map(|u| (u, value)).collect()
}

/// History holds exactly one record per (user, run) given, with exactly the allowed fields.
async fn assert_history_is_exactly(emulator: &Emulator, runs: &[i64]) {
    let docs = emulator.history_documents().await;
    let mut per_user: HashMap<String, usize> = HashMap::new();
    for doc in &docs {
        let mut keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut allowed = HISTORY_FIELDS.to_vec();
        allowed.sort_unstable();
        assert_eq!(keys, allowed, "{doc:?}");
        *per_user.entry(doc["userId"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(docs.len(), USERS as usize * runs.len(), "nothing lost, nothing doubled");
    assert!(per_user.values().all(|&n| n == runs.len()), "{per_user:?}");
}

async fn record_run(
    store: &dyn RunStore,
    run: i64,
) -> Result<teams_presence::store::RecordOutcome, teams_presence::store::StoreError> {
    store.last_known(&run_context(run)).await?;
    store.record(&run_context(run), plan(run, &changes(run), &[])).await
}

#[tokio::test]
async fn throttled_writes_are_retried_after_the_advertised_delay() {
    let emulator = Emulator::new();
    let throttled = FaultInjectionResultBuilder::new()
        .with_custom_response(
            CustomResponseBuilder::new(StatusCode::TooManyRequests).with_header("x-ms-retry-after-ms", "15").build(),
        )
        .build();
    let rule = rule("429", FaultOperationType::CreateItem, throttled, Some(40));
    let store = emulator.store(Tuning::default(), vec![rule.clone()]).await;
    let run = run_context(1);
    store.last_known(&run).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = store.record(&run, plan(1, &changes(1), &[])).await.unwrap();
    assert_eq!(rule.hit_count(), 40);
    assert_eq!(outcome.written, USERS as usize);
    // 40 throttles over 32 concurrent writers: at least two waits of 15 ms in sequence.
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
    assert_history_is_exactly(&emulator, &[1]).await;
    let charged = run.metrics.store_request_milli_units.load(std::sync::atomic::Ordering::Relaxed);
    assert!(charged >= USERS as u64 * 7_000, "every write charged: {charged} milli-RU");
}

#[tokio::test]
async fn unavailable_service_loses_and_doubles_nothing() {
    let emulator = Emulator::new();
    let unavailable =
        FaultInjectionResultBuilder::new().with_error(FaultInjectionErrorType::ServiceUnavailable).build();
    let faults = rule("503", FaultOperationType::CreateItem, unavailable, Some(15));
    let store = emulator.store(Tuning::default(), vec![faults.clone()]).await;
    let first = record_run(&store, 1).await;
    assert_eq!(faults.hit_count(), 15);
    // The SDK retries 503 within its own budget; a write that exhausts it fails the run, and a
    // repeat of the slot completes it. Either way each change is stored once.
    match first {
        Ok(outcome) => assert_eq!(outcome.written, USERS as usize),
        Err(e) => {
            assert!(e.to_string().contains("503"), "{e}");
            let repeat = record_run(&store, 1).await.expect("the repeat completes the run");
            assert_eq!(repeat.written + repeat.already_recorded, USERS as usize);
            assert!(repeat.already_recorded > 0, "what the failed attempt wrote is recognised");
        }
    }
    assert_history_is_exactly(&emulator, &[1]).await;
}

#[tokio::test]
async fn a_write_whose_response_was_lost_is_not_doubled() {
    let emulator = Emulator::new();
    // The write commits, then its response is lost: the SDK retries and meets the stored document.
    let lost_response =
        FaultInjectionResultBuilder::new().with_error(FaultInjectionErrorType::ResponseTimeoutAfterService).build();
    let faults = rule("lost-response", FaultOperationType::CreateItem, lost_response, Some(5));
    let store = emulator.store(Tuning::default(), vec![faults.clone()]).await;
    let outcome = record_run(&store, 1).await;
    assert_eq!(faults.hit_count(), 5);
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(_) => record_run(&store, 1).await.expect("the repeat completes the run"),
    };
    assert_eq!(outcome.written + outcome.already_recorded, USERS as usize);
    assert!(outcome.already_recorded >= 5, "{outcome:?}");
    assert_eq!(outcome.superseded, 0);
    assert_history_is_exactly(&emulator, &[1]).await;
}

#[tokio::test]
async fn a_run_that_fails_part_way_is_completed_by_the_next_one() {
    let emulator = Emulator::new();
    let failing = FaultInjectionResultBuilder::new()
        .with_error(FaultInjectionErrorType::InternalServerError)
        .with_probability(0.8)
        .build();
    let faults = rule("500", FaultOperationType::CreateItem, failing, None);
    let store = emulator.store(Tuning::default(), vec![faults.clone()]).await;
    let error = record_run(&store, 1).await.expect_err("most writes fail");
    assert!(error.to_string().contains("history record"), "{error}");
    let written_before = emulator.history_documents().await.len();
    assert!(written_before > 0 && written_before < USERS as usize, "part-way: {written_before}");

    // The next run (next slot, same observations) writes only what is missing.
    faults.disable();
    let cold = emulator.store(Tuning::default(), Vec::new()).await;
    for store in [&store as &dyn RunStore, &cold] {
        let state = store.last_known(&run_context(2)).await.unwrap();
        assert_eq!(state.len(), written_before, "what was written is known");
    }
    let state = store.last_known(&run_context(2)).await.unwrap();
    let next: Vec<(u128, &str)> = changes(1)
        .into_iter()
        .filter(|(u, a)| state.availability(&subject(*u)).map(|k| k.as_str()) != Some(*a))
        .collect();
    assert_eq!(next.len(), USERS as usize - written_before);
    let outcome = store.record(&run_context(2), plan(2, &next, &[])).await.unwrap();
    assert_eq!(outcome.written, next.len());
    let docs = emulator.history_documents().await;
    assert_eq!(docs.len(), USERS as usize, "every user recorded exactly once across the two runs");
    let state = cold.last_known(&run_context(3)).await.unwrap();
    assert_eq!(state.len(), USERS as usize);
}
