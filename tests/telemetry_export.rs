//! Telemetry through the real pipeline: App Insights export pointed at a loopback ingestion
//! server, poll cycles against the Graph simulator through the production Graph client (with
//! throttling injected), the SQLite store, the Cosmos store on the SDK's in-memory emulator, and
//! the real `handler` binary under timer invocations. Checks that the per-run metrics carry the
//! run summary's values, that runs, phases and every Graph attempt (and Cosmos operation) arrive
//! as dependency rows with templated names, that warnings arrive as correlated traces, and that
//! no token, identity secret or key is in any exported byte.

mod common;

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{SecondsFormat, TimeZone, Utc};
use common::handler_process::{HandlerProcess, tenant_env, timer_body};
use common::ingestion::{INSTRUMENTATION_KEY, IngestionServer, Upload, envelope};
// Console output as the Functions host would see it (one JSON line per event).
use common::log_capture::Captured as Console;
use common::{cosmos_emulator, graph_sim};
use serde_json::Value;
use teams_presence::cycle::{CycleError, PollCycle};
use teams_presence::graph::Tenant;
use teams_presence::model::Slot;
use teams_presence::run::{RunContext, RunSummary};
use teams_presence::simulator::{Endpoint, Fault, RetryAfter, SimConfig, SimHandle, Simulator, standard_groups};
use teams_presence::store::Store;
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::telemetry::instrumented::{InstrumentedStore, InstrumentedTenant};
use teams_presence::telemetry::run_metrics::{FIGURES, RUNS};
use teams_presence::telemetry::{ExportSettings, FailedStage, Telemetry};
use tracing_subscriber::EnvFilter;

const PRESENCE: &str = "POST /communications/getPresencesByUserId";
const MEMBERS: &str = "GET /groups/{id}/transitiveMembers";

fn no_credential() -> Result<Arc<dyn TokenCredential>, &'static str> {
    Err("instrumentation-key ingestion needs no credential")
}

/// What the handler does around a run (see `handler::run_timer`), with the production client.
async fn invoke(
    telemetry: &Telemetry,
    cycle: &PollCycle,
    invocation_id: &str,
    minute: u32,
) -> Result<RunSummary, CycleError> {
    let work = async {
        let started = tokio::time::Instant::now();
        let slot = Slot::new(Utc.with_ymd_and_hms(2025, 3, 1, 10, minute, 0).unwrap());
        let run = RunContext::new(invocation_id, slot, Duration::from_secs(60));
        match cycle.run(&run).await {
            Ok(summary) => {
                telemetry.record_run(&summary);
                tracing::info!(summary = %summary.line(), "run finished");
                Ok(summary)
            }
            Err(e) => {
                tracing::error!(error = %e, "run failed");
                telemetry.record_failed_run(FailedStage::Cycle, Some(&run), started.elapsed(), &e);
                Err(e)
            }
        }
    };
    telemetry.invocation(invocation_id, work).await
}

fn metric<'a>(metrics: &'a [(String, f64, Value)], name: &str) -> Vec<&'a (String, f64, Value)> {
    metrics.iter().filter(|(n, _, _)| n == name).collect()
}

fn one<'a>(items: Vec<&'a Value>, what: &str) -> &'a Value {
    assert_eq!(items.len(), 1, "expected exactly one {what}, got {items:#?}");
    items[0]
}

fn id(item: &Value) -> &str {
    envelope::base(item)["id"].as_str().unwrap()
}

/// Every per-run figure arrives once, with the value the summary has.
fn assert_metrics_match(items: &[Value], summary: &RunSummary) {
    let metrics = envelope::metrics(items);
    let runs = metric(&metrics, RUNS);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!((runs[0].1, runs[0].2["outcome"].as_str()), (1.0, Some("success")));
    for figure in FIGURES {
        let expected = (figure.from_summary)(summary);
        let points = metric(&metrics, figure.name);
        assert_eq!(points.len(), 1, "{}: {points:?}", figure.name);
        assert!((points[0].1 - expected).abs() < 1e-6, "{} is {} not {expected}", figure.name, points[0].1);
        assert_eq!(points[0].2["outcome"], "success", "{}", figure.name);
    }
}

/// No secret in any byte sent; the instrumentation key only as each envelope's `iKey`.
fn assert_no_secrets(uploads: &[Upload], secrets: &[String]) {
    assert!(!uploads.is_empty());
    for upload in uploads {
        for secret in secrets {
            assert!(!upload.json.contains(secret.as_str()), "a secret is in a telemetry upload: {secret}");
        }
        assert!(!upload.json.to_ascii_lowercase().contains("bearer"), "an auth header is in telemetry");
        let without_ikey = upload.json.replace(&format!("\"iKey\":\"{INSTRUMENTATION_KEY}\""), "");
        assert!(!without_ikey.contains(INSTRUMENTATION_KEY), "the instrumentation key outside the iKey field");
        assert!(!without_ikey.contains("InstrumentationKey="), "the connection string is in telemetry");
    }
}

fn sim_secrets(sim: &SimHandle) -> Vec<String> {
    let mut secrets = sim.issued_tokens();
    assert!(!secrets.is_empty(), "the simulator issued no token: the check would be vacuous");
    secrets.push(sim.identity_header().to_string());
    secrets
}

fn no_user_ids(items: &[Value], sim: &SimHandle) {
    let users = sim.expected_users(&standard_groups()[..3]);
    let text = serde_json::to_string(items).unwrap();
    for user in users.iter().step_by(97) {
        let user = user.expose_object_id().to_string();
        assert!(!text.contains(&user), "user id {user} was exported");
    }
}

/// A simulated tenant of 1,500 users in overlapping groups, 4 users Graph never answers for,
/// member pages of 500; the next two presence calls answer 429 with `Retry-After: 0.2`, and the
/// first member page asked for answers 403.
async fn throttled_tenant() -> SimHandle {
    let sim = Simulator::start(SimConfig::standard(1_500).max_page_size(500).missing_users([3, 700, 701, 1_400]))
        .await
        .unwrap();
    sim.inject(Endpoint::Presence, Fault::Status { status: 429, retry_after: Some(RetryAfter::Fractional(0.2)) }, 2);
    sim.inject(Endpoint::Members, Fault::Status { status: 403, retry_after: None }, 1);
    sim
}

fn instrumented(sim: &SimHandle, store: Arc<dyn Store>) -> PollCycle {
    let client: Arc<dyn Tenant> = Arc::new(graph_sim::client(sim, &graph_sim::settings(sim)));
    PollCycle::new(
        standard_groups()[..3].to_vec(),
        Arc::new(InstrumentedTenant(client)),
        Arc::new(InstrumentedStore(store)),
    )
}

#[tokio::test]
async fn graph_calls_runs_and_warnings_export_through_the_production_client() {
    let sim = throttled_tenant().await;
    let ingestion = IngestionServer::start().await;
    let settings = ExportSettings::parse(Some(&ingestion.connection_string()), None).unwrap().unwrap();
    let telemetry = Telemetry::start(&settings, no_credential).unwrap();
    let console = Console::default();
    let sink = console.clone();
    let _subscriber =
        tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("info"), move || sink.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("presence.db"), None).await.unwrap());
    let cycle = instrumented(&sim, store);

    // --- Run 1: everything is checked right after the invocation returns: no waiting.
    let summary = invoke(&telemetry, &cycle, "inv-1", 5).await.unwrap();
    let (uploads, items) = (ingestion.uploads(), ingestion.items());
    for upload in &uploads {
        assert_eq!(upload.path, "/v2.1/track");
        assert_eq!(upload.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(upload.authorization, None, "instrumentation-key ingestion sends no Authorization header");
    }
    for item in &items {
        assert_eq!(item["iKey"], INSTRUMENTATION_KEY);
        assert_eq!(envelope::tag(item, "ai.cloud.role"), Some("teams-presence"));
    }
    // The run saw what was injected, so the checks below are not vacuous.
    assert_eq!((summary.throttled, summary.unreadable_groups), (2, 1), "{}", summary.line());
    assert!((1..=4).contains(&summary.unobserved), "{}", summary.line());
    assert!(summary.throttle_wait_ms >= 400 && summary.retries >= 2, "{}", summary.line());
    assert!(summary.changes > 0 && summary.member_pages > 0, "{}", summary.line());
    assert_metrics_match(&items, &summary);

    // The run span, parent of the phases, parents of one row per HTTP attempt.
    let run = one(envelope::dependencies(&items, "run"), "run span");
    assert_eq!(envelope::property(run, "invocation_id"), Some("inv-1"));
    let operation = envelope::tag(run, "ai.operation.id").unwrap();
    let phase = |name| one(envelope::dependencies(&items, name), name);
    for name in ["graph.members", "graph.presence", "store.last_known", "store.record"] {
        assert_eq!(envelope::tag(phase(name), "ai.operation.parentId"), Some(id(run)), "{name}");
        assert_eq!(envelope::tag(phase(name), "ai.operation.id"), Some(operation), "{name}");
    }
    let pages = envelope::dependencies(&items, MEMBERS);
    assert_eq!(pages.len() as u64, summary.member_pages + 1, "every page and the 403");
    let calls = envelope::dependencies(&items, PRESENCE);
    assert_eq!(calls.len() as u64, summary.presence_calls + summary.throttled, "every call and each 429");
    for (rows, parent) in [(&pages, phase("graph.members")), (&calls, phase("graph.presence"))] {
        for row in rows.iter() {
            assert_eq!(envelope::tag(row, "ai.operation.parentId"), Some(id(parent)));
            assert_eq!(envelope::base(row)["type"], "HTTP");
            assert_eq!(envelope::base(row)["target"], sim.address().to_string());
            let data = envelope::base(row)["data"].as_str().unwrap();
            assert!(data.starts_with(&sim.base_url()) && !data.contains('?'), "{data}");
        }
    }
    let failed = |rows: &[&Value], code: &str| -> Vec<Value> {
        rows.iter().filter(|r| envelope::base(r)["resultCode"] == code).map(|r| (*r).clone()).collect()
    };
    let denied = failed(&pages, "403");
    assert_eq!(denied.len(), 1);
    let throttled = failed(&calls, "429");
    assert_eq!(throttled.len(), 2);
    for row in denied.iter().chain(&throttled) {
        assert_eq!(envelope::base(row)["success"], false);
        let request_id = envelope::property(row, "graph.request_id").expect("Graph's request-id on a failed call");
        assert!(uuid::Uuid::try_parse(request_id).is_ok(), "{request_id}");
    }
    assert!(throttled.iter().all(|c| envelope::property(c, "retry_after_s") == Some("0.2")), "{throttled:#?}");
    assert!(
        failed(&calls, "200").iter().all(|c| envelope::property(c, "graph.request_id").is_none()),
        "successful calls stay small"
    );

    // The skipped group's warning is a trace correlated with the run; info lines are not sent.
    let traces: Vec<&Value> = items.iter().filter(|i| envelope::base_type(i) == "MessageData").collect();
    let warning = traces.iter().find(|t| envelope::base(t)["message"].as_str().unwrap().starts_with("group skipped"));
    let warning = warning.unwrap_or_else(|| panic!("no warning for the unreadable group: {traces:#?}"));
    assert_eq!(envelope::tag(warning, "ai.operation.id"), Some(operation));
    assert!(traces.iter().all(|t| envelope::base(t)["severityLevel"].as_u64() >= Some(2)), "{traces:#?}");
    no_user_ids(&items, &sim);

    // Console: call spans are never printed, so every line keeps the run's invocation id.
    let lines = console.lines();
    // (Lines without a span are from building the client, before the run.)
    let in_run: Vec<&Value> = lines.iter().filter(|l| l.get("span").is_some()).collect();
    assert!(in_run.iter().any(|l| l["level"] == "WARN" && l["request_id"].is_string()), "request-id logged");
    assert!(lines.iter().filter(|l| l["level"] == "WARN").all(|l| l.get("span").is_some()), "{lines:#?}");
    assert!(in_run.iter().all(|l| l["span"]["name"] == "run" && l["span"]["invocation_id"] == "inv-1"), "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| l["message"] == "run finished").count(), 1);

    // --- Run 2: Graph's presence endpoint fails for good. A failed run with its counters.
    ingestion.clear();
    sim.inject(Endpoint::Presence, Fault::Status { status: 503, retry_after: None }, 1_000);
    let _ = invoke(&telemetry, &cycle, "inv-2", 10).await;
    let items = ingestion.items();
    let calls = envelope::dependencies(&items, PRESENCE);
    assert!(!calls.is_empty() && calls.iter().all(|c| envelope::base(c)["resultCode"] == "503"), "{calls:#?}");
    assert!(calls.iter().all(|c| envelope::property(c, "graph.request_id").is_some()));
    let attempts: Vec<&str> = calls.iter().filter_map(|c| envelope::property(c, "retry.attempt")).collect();
    assert!(attempts.contains(&"1") && attempts.contains(&"2"), "retries are their own rows: {attempts:?}");

    assert_no_secrets(&ingestion.uploads(), &sim_secrets(&sim));
    assert_no_secrets(&uploads, &sim_secrets(&sim));
    drop(_subscriber);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
}

#[tokio::test]
async fn cosmos_operations_export_with_status_and_request_charge() {
    let sim = throttled_tenant().await;
    let emulator = cosmos_emulator::Emulator::new();
    let ingestion = IngestionServer::start().await;
    let settings = ExportSettings::parse(Some(&ingestion.connection_string()), None).unwrap().unwrap();
    let telemetry = Telemetry::start(&settings, no_credential).unwrap();
    let _subscriber = tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("off"), std::io::sink));
    let store = Arc::new(emulator.store(Default::default(), Vec::new()).await);
    let cycle = instrumented(&sim, store);

    let first = invoke(&telemetry, &cycle, "inv-c1", 5).await.unwrap();
    assert_metrics_match(&ingestion.items(), &first);
    ingestion.clear();
    sim.advance_epoch();
    let summary = invoke(&telemetry, &cycle, "inv-c2", 10).await.unwrap();
    let items = ingestion.items();
    assert_metrics_match(&items, &summary);
    assert!(summary.store_request_units > 0.0 && summary.changes > 0, "{}", summary.line());

    let cosmos: Vec<&Value> = items
        .iter()
        .filter(|i| envelope::base_type(i) == "RemoteDependencyData" && envelope::base(i)["type"] == "azure.cosmosdb")
        .collect();
    let names: Vec<&str> = cosmos.iter().map(|c| envelope::base(c)["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"read_item state"), "the warm run reads the head: {names:?}");
    assert!(names.contains(&"replace_item state"), "and advances it: {names:?}");
    let record = one(envelope::dependencies(&items, "store.record"), "store.record");
    let last_known = one(envelope::dependencies(&items, "store.last_known"), "store.last_known");
    for row in &cosmos {
        assert_eq!(envelope::base(row)["success"], true, "{row}");
        let charge: f64 = envelope::property(row, "azure.cosmosdb.operation.request_charge").unwrap().parse().unwrap();
        assert!(charge > 0.0, "{row}");
        let parent = envelope::tag(row, "ai.operation.parentId");
        assert!(parent == Some(id(record)) || parent == Some(id(last_known)), "{row}");
    }
    let mut secrets = sim_secrets(&sim);
    secrets.push("dGVzdGtleQ==".to_string()); // the emulator helper's account key
    assert_no_secrets(&ingestion.uploads(), &secrets);
    no_user_ids(&items, &sim);
    drop(_subscriber);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
}

fn summary_field(line: &str, field: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{field}="))?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {line}"))
}

#[tokio::test]
async fn the_handler_binary_exports_each_timer_run_before_it_answers() {
    let sim = throttled_tenant().await;
    let ingestion = IngestionServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let connection_string = ingestion.connection_string();
    let env = tenant_env(
        &sim,
        &standard_groups()[..3],
        &dir.path().join("presence.db"),
        &[("APPLICATIONINSIGHTS_CONNECTION_STRING", &connection_string)],
    );
    let handler = HandlerProcess::start(&env);
    let http = reqwest::Client::new();
    for (n, minute) in [(1, 5), (2, 10)] {
        ingestion.clear();
        if n == 2 {
            sim.advance_epoch();
        }
        let slot = Utc.with_ymd_and_hms(2025, 3, 1, 10, minute, 0).unwrap();
        let ts = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let body = timer_body(&ts(slot), &ts(slot - chrono::Duration::minutes(5)), false, &ts(Utc::now()));
        let invocation_id = format!("inv-h{n}");
        let reply: Value = http
            .post(handler.url("/function-timer"))
            .header("X-Azure-Functions-InvocationId", &invocation_id)
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let line = reply["Logs"][0].as_str().unwrap_or_else(|| panic!("{reply} {:?}", handler.stderr_lines()));
        // Flushed before the reply: checked at once.
        let items = ingestion.items();
        let metrics = envelope::metrics(&items);
        for (figure, field, scale) in [
            ("presence.run.users_in_scope", "users", 1.0),
            ("presence.run.observed", "observed", 1.0),
            ("presence.run.unobserved", "unobserved", 1.0),
            ("presence.run.changes", "changes", 1.0),
            ("presence.run.unreadable_groups", "unreadable_groups", 1.0),
            ("presence.run.presence_calls", "presence_calls", 1.0),
            ("presence.run.member_pages", "member_pages", 1.0),
            ("presence.run.throttled", "throttled", 1.0),
            ("presence.run.throttle_wait", "throttle_wait_ms", 1000.0),
            ("presence.run.retries", "retries", 1.0),
            ("presence.run.duration", "duration_ms", 1000.0),
        ] {
            let points = metric(&metrics, figure);
            assert_eq!(points.len(), 1, "{figure}: {points:?}");
            let expected = summary_field(line, field) / scale;
            assert!((points[0].1 - expected).abs() < 1e-6, "{figure} is {} not {expected} ({line})", points[0].1);
        }
        let run = one(envelope::dependencies(&items, "run"), "run span");
        assert_eq!(envelope::property(run, "invocation_id"), Some(invocation_id.as_str()));
        let calls = envelope::dependencies(&items, PRESENCE);
        let expected_rows = summary_field(line, "presence_calls") + summary_field(line, "throttled");
        assert_eq!(calls.len() as f64, expected_rows, "{line}");
        if n == 1 {
            assert_eq!(summary_field(line, "throttled"), 2.0, "{line}");
            assert_eq!(calls.iter().filter(|c| envelope::base(c)["resultCode"] == "429").count(), 2);
        }
        assert!(!envelope::dependencies(&items, MEMBERS).is_empty());
        no_user_ids(&items, &sim);
    }
    assert_no_secrets(&ingestion.uploads(), &sim_secrets(&sim));
    // The console (which the host forwards) shows no call spans either.
    assert!(handler.stdout_lines().iter().all(|l| !l.contains("transitiveMembers")), "{:?}", handler.stdout_lines());
}

#[tokio::test]
async fn without_a_connection_string_nothing_is_exported_and_runs_still_log() {
    assert_eq!(ExportSettings::parse(None, None), Ok(None));
    let sim = Simulator::start(SimConfig::standard(50)).await.unwrap();
    let telemetry = Telemetry::disabled();
    assert!(!telemetry.is_exporting());
    let console = Console::default();
    let sink = console.clone();
    let _subscriber =
        tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("info"), move || sink.clone()));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("presence.db"), None).await.unwrap());
    let summary = invoke(&telemetry, &instrumented(&sim, store), "inv-local", 5).await.unwrap();
    assert_eq!(summary.users_in_scope, 50);
    let lines = console.lines();
    let finished = lines.iter().find(|l| l["message"] == "run finished").expect("summary line");
    assert_eq!(finished["span"]["invocation_id"], "inv-local");
}
