//! Request correlation: every Graph attempt carries its own `client-request-id`, and a failed call
//! logs it beside the `request-id` Graph answered with, which is what Microsoft support asks for.
//! A scripted Graph endpoint records what it was sent; the production client talks to it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use common::graph_sim::{FIXED_TOKEN, FixedToken};
use common::log_capture::capture;
use teams_presence::config::{GraphSettings, GraphTuning};
use teams_presence::graph::Tenant;
use teams_presence::graph::client::GraphClient;
use teams_presence::model::{Slot, UserId};
use teams_presence::run::RunContext;

#[derive(Clone, Default)]
struct Script {
    /// `client-request-id` of every call, in arrival order.
    seen: Arc<Mutex<Vec<String>>>,
    /// Status and `request-id` of each answer in turn; afterwards 200.
    answers: Arc<Mutex<Vec<(u16, &'static str)>>>,
}

async fn presence(State(script): State<Script>, headers: HeaderMap, body: String) -> Response {
    let id = headers.get("client-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    script.seen.lock().unwrap().push(id);
    let next = {
        let mut answers = script.answers.lock().unwrap();
        if answers.is_empty() { None } else { Some(answers.remove(0)) }
    };
    if let Some((status, request_id)) = next {
        let body = format!(
            r#"{{"error":{{"code":"ServiceUnavailable","message":"x","innerError":{{"request-id":"{request_id}"}}}}}}"#
        );
        return (StatusCode::from_u16(status).unwrap(), [("request-id", request_id)], body).into_response();
    }
    let asked: serde_json::Value = serde_json::from_str(&body).unwrap();
    let value: Vec<_> = asked["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| serde_json::json!({"id": id, "availability": "Available", "activity": "Available"}))
        .collect();
    axum::Json(serde_json::json!({ "value": value })).into_response()
}

async fn start(script: Script) -> String {
    let app = Router::new().route("/v1.0/communications/getPresencesByUserId", post(presence)).with_state(script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1.0", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn client(base: &str) -> GraphClient {
    let settings = GraphSettings {
        base_url: base.parse().unwrap(),
        presence_concurrency: 1,
        presence_calls_per_30s: 1_500,
        tuning: GraphTuning {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(50),
            ..GraphTuning::default()
        },
    };
    GraphClient::new(&settings, Arc::new(FixedToken)).unwrap()
}

fn is_uuid(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok()
}

#[tokio::test(flavor = "current_thread")]
async fn each_attempt_sends_its_own_client_request_id_and_failures_log_graphs_request_id() {
    let (captured, _guard) = capture(tracing::Level::INFO);
    let script = Script::default();
    script
        .answers
        .lock()
        .unwrap()
        .extend([(503, "9a0c1d2e-0000-4000-8000-00000000f001"), (500, "9a0c1d2e-0000-4000-8000-00000000f002")]);
    let graph = client(&start(script.clone()).await);
    let users: Vec<UserId> = (0..3).map(teams_presence::simulator::user_id).collect();
    let run = RunContext::new("request-id-test", Slot::new(Utc::now()), Duration::from_secs(30));

    let snapshot = graph.presence(&users, &run).await.unwrap();

    assert_eq!(snapshot.observations.len(), 3);
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "two failures and the success");
    assert!(seen.iter().all(|id| is_uuid(id)), "{seen:?}");
    assert!(seen[0] != seen[1] && seen[1] != seen[2], "a new client-request-id per attempt: {seen:?}");
    let logs = captured.text();
    let failures: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["fields"]["message"] == "Graph call failed; retrying")
        .collect();
    assert_eq!(failures.len(), 2, "{logs}");
    for (event, (sent, answered)) in failures
        .iter()
        .zip([(&seen[0], "9a0c1d2e-0000-4000-8000-00000000f001"), (&seen[1], "9a0c1d2e-0000-4000-8000-00000000f002")])
    {
        assert_eq!(event["fields"]["client_request_id"], sent.as_str(), "{event}");
        assert_eq!(event["fields"]["request_id"], answered, "{event}");
    }
    assert!(!logs.contains(FIXED_TOKEN));
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_that_fails_for_good_names_graphs_request_id_in_its_error() {
    let (captured, _guard) = capture(tracing::Level::INFO);
    let script = Script::default();
    script.answers.lock().unwrap().extend(std::iter::repeat_n((500, "9a0c1d2e-0000-4000-8000-00000000f0ff"), 20));
    let graph = client(&start(script.clone()).await);
    let users: Vec<UserId> = (0..3).map(teams_presence::simulator::user_id).collect();
    let run = RunContext::new("request-id-test", Slot::new(Utc::now()), Duration::from_secs(30));

    let snapshot = graph.presence(&users, &run).await.unwrap();

    assert_eq!(snapshot.unobserved.len(), 3, "the batch failed as a whole");
    let attempts = script.seen.lock().unwrap().len();
    let logs = captured.text();
    let said = |message: &str| logs.lines().filter(|l| l.contains(&format!(r#""message":"{message}""#))).count();
    assert_eq!(said("Graph call failed; retrying"), attempts - 1, "{logs}");
    assert_eq!(said("Graph call failed; no attempts left"), 1, "{logs}");
    let reason = &snapshot.failed_batches[0].reason;
    assert!(reason.contains("9a0c1d2e-0000-4000-8000-00000000f0ff") && reason.contains("HTTP 500"), "{reason}");
}
