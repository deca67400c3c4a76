//! Runs poll cycles with App Insights export pointed at a loopback ingestion server and checks
//! what arrives: the per-run metrics with their values, the run, phase and call spans as
//! dependencies with their parent links, warnings as correlated traces, nothing else, no user
//! id, and all of it before the invocation returns.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use chrono::{TimeZone, Utc};
use common::ingestion::{INSTRUMENTATION_KEY, IngestionServer, envelope};
use common::scripted_tenant::{MemoryStore, ScriptedTenant};
use serde_json::Value;
use teams_presence::cycle::{CycleError, PollCycle, RunContext, RunSummary};
use teams_presence::model::{GroupId, Slot};
use teams_presence::telemetry::instrumented::{InstrumentedStore, InstrumentedTenant};
use teams_presence::telemetry::run_metrics::{FIGURES, RUNS};
use teams_presence::telemetry::{ExportSettings, FailedStage, Telemetry};
use tracing_subscriber::EnvFilter;

/// Console output captured as the Functions host would see it (one JSON line per event).
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Write for Console {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Console {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("console lines are JSON"))
            .collect()
    }
}

fn group(n: u128) -> GroupId {
    uuid::Uuid::from_u128(0x6000_0000_0000_4000_8000_0000_0000_0000 + n)
}

fn no_credential() -> Result<Arc<dyn TokenCredential>, &'static str> {
    Err("instrumentation-key ingestion needs no credential")
}

/// What the handler does around a run (see `handler::run_timer`), with an in-test cycle.
async fn invoke(telemetry: &Telemetry, cycle: &PollCycle, invocation_id: &str) -> Result<RunSummary, CycleError> {
    let work = async {
        let started = tokio::time::Instant::now();
        let slot = Slot::new(Utc.with_ymd_and_hms(2025, 3, 1, 10, 5, 0).unwrap());
        let run = RunContext::new(invocation_id, slot, Duration::from_secs(60));
        tracing::info!(%slot, "run started");
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

#[tokio::test]
async fn runs_export_metrics_spans_and_warnings_before_the_invocation_returns() {
    let ingestion = IngestionServer::start().await;
    let settings = ExportSettings::parse(Some(&ingestion.connection_string()), None).unwrap().unwrap();
    let telemetry = Telemetry::start(&settings, no_credential).unwrap();
    let console = Console::default();
    let sink = console.clone();
    let _subscriber =
        tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("info"), move || sink.clone()));

    let mut tenant = ScriptedTenant::new(1500);
    tenant.unreadable = vec![group(3)];
    tenant.throttles = 2;
    tenant.retry_after = Duration::from_millis(750);
    tenant.silent = 5;
    let expected_pages = tenant.expected_member_pages(2);
    let expected_calls = tenant.expected_presence_calls();
    let user_prefix = tenant.users[0].to_string()[..8].to_string();
    let tenant = Arc::new(InstrumentedTenant(Arc::new(tenant)));
    let store = Arc::new(InstrumentedStore(Arc::new(MemoryStore::default())));
    let cycle = PollCycle::new(vec![group(1), group(2), group(3)], tenant, store.clone());

    // --- Run 1: a successful run. Everything is checked right after it returns: no waiting.
    let summary = invoke(&telemetry, &cycle, "inv-1").await.unwrap();
    let uploads = ingestion.uploads();
    let items = ingestion.items();
    assert!(!uploads.is_empty(), "nothing was sent before the run returned");
    for upload in &uploads {
        assert_eq!(upload.path, "/v2.1/track");
        assert_eq!(upload.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(upload.authorization, None, "instrumentation-key ingestion sends no Authorization header");
    }
    for item in &items {
        assert_eq!(item["iKey"], INSTRUMENTATION_KEY);
        assert_eq!(envelope::tag(item, "ai.cloud.role"), Some("teams-presence"));
        let text = item.to_string();
        assert!(!text.contains(&user_prefix), "a user id was exported: {text}");
    }

    // The summary is what the scripted tenant makes, so the metric checks below are not vacuous.
    assert_eq!(
        (summary.users_in_scope, summary.observed, summary.unobserved, summary.changes, summary.unreadable_groups),
        (1500, 1495, 5, 1495, 1)
    );
    assert_eq!((summary.member_pages, summary.presence_calls), (expected_pages, expected_calls));
    assert_eq!((summary.member_pages, summary.presence_calls, summary.throttled, summary.retries), (4, 5, 2, 2));
    assert_eq!(summary.throttle_wait_ms, 1500);

    let metrics = envelope::metrics(&items);
    let runs = metric(&metrics, RUNS);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].1, 1.0);
    assert_eq!(runs[0].2["outcome"], "success");
    let expected = [
        ("presence.run.duration", summary.duration_ms as f64 / 1000.0),
        ("presence.run.users_in_scope", 1500.0),
        ("presence.run.observed", 1495.0),
        ("presence.run.unobserved", 5.0),
        ("presence.run.changes", 1495.0),
        ("presence.run.already_recorded", 0.0),
        ("presence.run.departed", 0.0),
        ("presence.run.unreadable_groups", 1.0),
        ("presence.run.member_pages", 4.0),
        ("presence.run.presence_calls", 5.0),
        ("presence.run.throttled", 2.0),
        ("presence.run.throttle_wait", 1.5),
        ("presence.run.retries", 2.0),
        ("presence.run.store_request_units", summary.store_request_units),
    ];
    assert_eq!(expected.len(), FIGURES.len(), "every figure is checked");
    for (name, value) in expected {
        let points = metric(&metrics, name);
        assert_eq!(points.len(), 1, "{name}: {points:?}");
        assert!((points[0].1 - value).abs() < 1e-9, "{name} is {} not {value}", points[0].1);
        assert_eq!(points[0].2["outcome"], "success", "{name}");
    }

    // The run span, with the invocation id, parent of the four phases, parents of the calls.
    let run = one(envelope::dependencies(&items, "run"), "run span");
    assert_eq!(envelope::property(run, "invocation_id"), Some("inv-1"));
    assert_eq!(envelope::base(run)["type"], "InProc");
    let operation = envelope::tag(run, "ai.operation.id").unwrap();
    let members = one(envelope::dependencies(&items, "graph.members"), "graph.members");
    for phase in ["graph.members", "graph.presence", "store.last_known", "store.record"] {
        let phase = one(envelope::dependencies(&items, phase), phase);
        assert_eq!(envelope::tag(phase, "ai.operation.id"), Some(operation));
        assert_eq!(envelope::tag(phase, "ai.operation.parentId"), Some(id(run)));
        assert_eq!(envelope::base(phase)["success"], true);
    }
    assert_eq!(envelope::property(members, "users"), Some("1500"));
    assert_eq!(envelope::property(members, "unreadable_groups"), Some("1"));

    let pages = envelope::dependencies(&items, "GET /groups/{id}/transitiveMembers");
    assert_eq!(pages.len(), 5, "four pages and one 403");
    for page in &pages {
        assert_eq!(envelope::tag(page, "ai.operation.parentId"), Some(id(members)));
        assert_eq!(envelope::base(page)["type"], "HTTP");
        assert_eq!(envelope::base(page)["target"], "graph.microsoft.com:443");
        let data = envelope::base(page)["data"].as_str().unwrap();
        assert!(data.starts_with("https://graph.microsoft.com/v1.0/groups/") && !data.contains('?'), "{data}");
    }
    let denied: Vec<_> = pages.iter().filter(|p| envelope::base(p)["resultCode"] == "403").collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(envelope::base(denied[0])["success"], false);

    let calls = envelope::dependencies(&items, "POST /communications/getPresencesByUserId");
    assert_eq!(calls.len(), 5);
    let throttled: Vec<_> = calls.iter().filter(|c| envelope::base(c)["resultCode"] == "429").collect();
    assert_eq!(throttled.len(), 2);
    assert!(throttled.iter().all(|c| envelope::base(c)["success"] == false));
    assert!(throttled.iter().all(|c| envelope::property(c, "retry_after_s") == Some("0.75")));

    let writes = one(envelope::dependencies(&items, "execute_batch history"), "Cosmos write");
    assert_eq!(envelope::base(writes)["type"], "azure.cosmosdb");
    assert_eq!(envelope::base(writes)["success"], true);
    assert_eq!(envelope::property(writes, "azure.cosmosdb.operation.request_charge"), Some("9403.55"));

    // The warning is a correlated trace; info lines ("run started", "run finished") are not sent.
    let traces: Vec<&Value> = items.iter().filter(|i| envelope::base_type(i) == "MessageData").collect();
    let warning = one(traces.clone(), "trace");
    assert!(envelope::base(warning)["message"].as_str().unwrap().starts_with("group could not be read"));
    assert_eq!(envelope::base(warning)["severityLevel"], 2, "Warning");
    assert_eq!(envelope::tag(warning, "ai.operation.id"), Some(operation));
    assert_eq!(envelope::tag(warning, "ai.operation.parentId"), Some(id(denied[0])));

    // Console: the same warning keeps the run's invocation id although it was logged inside a
    // call span; one summary line; no call spans printed.
    let lines = console.lines();
    let warn = lines.iter().find(|l| l["level"] == "WARN").expect("warning on the console");
    assert_eq!(warn["span"]["invocation_id"], "inv-1", "{warn}");
    assert_eq!(lines.iter().filter(|l| l["message"] == "run finished").count(), 1);
    assert!(lines.iter().all(|l| l["span"]["name"] == "run"), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.to_string().contains(&user_prefix)), "user id on the console at info");

    // --- Run 2: Graph fails. The run counts as a failure, with what it had counted so far.
    ingestion.clear();
    let mut failing = ScriptedTenant::new(1500);
    failing.fail_presence = Some("503 Service Unavailable after 3 attempts".into());
    let failing_cycle =
        PollCycle::new(vec![group(1), group(2)], Arc::new(InstrumentedTenant(Arc::new(failing))), store.clone());
    invoke(&telemetry, &failing_cycle, "inv-2").await.unwrap_err();
    let items = ingestion.items();
    let metrics = envelope::metrics(&items);
    let runs = metric(&metrics, RUNS);
    assert_eq!(runs.len(), 1, "only this run's counts are sent (delta): {runs:?}");
    assert_eq!((runs[0].2["outcome"].as_str(), runs[0].2["stage"].as_str()), (Some("failure"), Some("cycle")));
    assert_eq!(metric(&metrics, "presence.run.member_pages")[0].1, 4.0);
    assert_eq!(metric(&metrics, "presence.run.member_pages")[0].2["outcome"], "failure");
    assert_eq!(metric(&metrics, "presence.run.duration").len(), 1);
    assert!(metric(&metrics, "presence.run.users_in_scope").is_empty(), "no summary figures for a failed run");
    let run = one(envelope::dependencies(&items, "run"), "run span");
    assert_eq!(envelope::base(run)["success"], false);
    assert_eq!(envelope::property(run, "invocation_id"), Some("inv-2"));
    let presence = one(envelope::dependencies(&items, "graph.presence"), "graph.presence");
    assert_eq!(envelope::base(presence)["success"], false);
    let failed: Vec<&Value> =
        items.iter().filter(|i| matches!(envelope::base_type(i), "MessageData" | "ExceptionData")).collect();
    let failed = one(failed, "error trace");
    assert!(failed.to_string().contains("503 Service Unavailable"), "{failed}");
    assert_eq!(envelope::tag(failed, "ai.operation.id"), envelope::tag(run, "ai.operation.id"));

    // --- Run 3: success again; only the even-indexed users change (750, less the 3 silent ones).
    ingestion.clear();
    let summary = invoke(&telemetry, &cycle, "inv-3").await.unwrap();
    assert_eq!(summary.changes, 747);
    let metrics = envelope::metrics(&ingestion.items());
    assert_eq!(metric(&metrics, RUNS).len(), 1);
    assert_eq!(metric(&metrics, "presence.run.changes")[0].1, 747.0);

    drop(_subscriber);
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await.unwrap();
}

#[tokio::test]
async fn without_a_connection_string_nothing_is_exported_and_runs_still_log() {
    assert_eq!(ExportSettings::parse(None, None), Ok(None));
    let telemetry = Telemetry::disabled();
    assert!(!telemetry.is_exporting());
    let console = Console::default();
    let sink = console.clone();
    let _subscriber =
        tracing::subscriber::set_default(telemetry.subscriber(EnvFilter::new("info"), move || sink.clone()));
    let cycle = PollCycle::new(
        vec![group(1)],
        Arc::new(InstrumentedTenant(Arc::new(ScriptedTenant::new(10)))),
        Arc::new(InstrumentedStore(Arc::new(MemoryStore::default()))),
    );
    let summary = invoke(&telemetry, &cycle, "inv-local").await.unwrap();
    assert_eq!(summary.users_in_scope, 10);
    let lines = console.lines();
    let finished = lines.iter().find(|l| l["message"] == "run finished").expect("summary line");
    assert_eq!(finished["span"]["invocation_id"], "inv-local");
}
