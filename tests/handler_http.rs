//! The real `handler` binary driven over HTTP the way the Functions host drives it.

mod common;

use std::collections::HashMap;

use common::handler_process::{HandlerProcess, timer_body};
use serde_json::Value;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn post(
    handler: &HandlerProcess,
    path: &str,
    invocation_id: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let (status, text) = handler.invoke(path, invocation_id, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn health_probe_answers_on_loopback() {
    let handler = HandlerProcess::start(&env(&[]));
    assert!(handler.address.ip().is_loopback(), "{}", handler.address);
    let body = reqwest::get(handler.url("/")).await.unwrap().text().await.unwrap();
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn malformed_invocations_get_400_naming_the_problem() {
    let handler = HandlerProcess::start(&env(&[("ENTRA_GROUP_IDS", "11111111-1111-4111-8111-111111111111")]));
    let cases = [
        ("{not json", "not JSON"),
        (r#"{"Metadata":{}}"#, "\"Data\" is missing"),
        (r#"{"Data":{"req":{"Url":"x"}}}"#, "no timer binding in Data (keys [\"req\"])"),
        (
            r#"{"Data":{"timer":{"IsPastDue":false,"ScheduleStatus":{"Next":"soon"}}}}"#,
            "ScheduleStatus.Next is \"soon\"",
        ),
        (
            r#"{"Data":{"timer":{"IsPastDue":false,"ScheduleStatus":null}},"Metadata":{"sys":{}}}"#,
            "names no schedule slot",
        ),
        (r#"{"Data":{"timer":{"IsPastDue":3}}}"#, "IsPastDue is 3"),
    ];
    for (body, expected) in cases {
        let (status, json) = post(&handler, "/function-timer", "inv-bad", body).await;
        assert_eq!(status, 400, "{body}");
        let message = json["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{message:?} should contain {expected:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_and_unknown_functions_are_refused() {
    let handler = HandlerProcess::start(&env(&[]));
    let huge = format!(r#"{{"Data":{{"timer":{{"IsPastDue":false,"pad":"{}"}}}}}}"#, "x".repeat(100_000));
    let (status, _) = post(&handler, "/function-timer", "inv-huge", huge).await;
    assert_eq!(status, 413);
    let (status, json) = post(&handler, "/OtherFunction", "inv-404", "{}").await;
    assert_eq!(status, 404);
    assert!(json["error"].as_str().unwrap().contains("POST /function-timer"));
}

#[tokio::test]
async fn bad_configuration_fails_each_run_on_stderr_with_the_invocation_id() {
    // The server still starts (the host would otherwise restart it in a loop and give up).
    let handler = HandlerProcess::start(&env(&[("ENTRA_GROUP_IDS", "not-a-guid")]));
    let body = timer_body("2026-11-22T10:05:00Z", "2026-11-22T10:00:00Z", false, "2026-11-22T10:05:00.012Z");
    let (status, json) = post(&handler, "/function-timer", "3f2b5c1e-0000-4000-8000-00000000abcd", body).await;
    assert_eq!(status, 500);
    assert!(json["error"].as_str().unwrap().contains("\"not-a-guid\""), "{json}");
    let lines = handler.wait_for_stderr("3f2b5c1e-0000-4000-8000-00000000abcd");
    let line = lines.iter().find(|l| l.contains("3f2b5c1e-0000-4000-8000-00000000abcd")).expect("error line on stderr");
    let event: Value = serde_json::from_str(line).expect("one JSON object per line");
    assert_eq!(event["level"], "ERROR");
    assert_eq!(event["span"]["invocation_id"], "3f2b5c1e-0000-4000-8000-00000000abcd");
    assert!(event["error"].as_str().unwrap().contains("ENTRA_GROUP_IDS"), "{event}");
}

/// A run that fails (here: the embedded store's path is a directory, so it cannot be opened)
/// replies 500 with the reason, and writes it to stderr with the invocation id; a run of a working
/// handler replies 200 with `application/json`, which the host's formatter needs.
#[tokio::test]
async fn a_failed_run_replies_500_and_logs_why_and_success_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let handler = HandlerProcess::start(&env(&[
        ("ENTRA_GROUP_IDS", "11111111-1111-4111-8111-111111111111"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"),
        ("IDENTITY_HEADER", "h"),
        ("PRESENCE_DB", &dir.path().display().to_string()),
    ]));
    let body = timer_body("2026-11-22T10:05:00Z", "2026-11-22T10:00:00Z", false, "2026-11-22T10:05:00.012Z");
    let (status, json) = post(&handler, "/function-timer", "inv-fails", body).await;
    assert_eq!(status, 500, "{json}");
    let reason = json["error"].as_str().unwrap();
    assert!(reason.contains("SQLite store") && reason.contains(&dir.path().display().to_string()), "{json}");
    let lines = handler.wait_for_stderr("inv-fails");
    let line = lines.iter().find(|l| l.contains("could not initialise")).expect("the failure on stderr");
    let event: Value = serde_json::from_str(line).unwrap();
    assert_eq!((event["level"].as_str(), event["span"]["invocation_id"].as_str()), (Some("ERROR"), Some("inv-fails")));

    let sim =
        teams_presence::simulator::Simulator::start(teams_presence::simulator::SimConfig::standard(20)).await.unwrap();
    let group = teams_presence::simulator::standard_groups()[0].to_string();
    let working = HandlerProcess::start(&env(&[
        ("ENTRA_GROUP_IDS", &group),
        ("GRAPH_BASE_URL", &sim.base_url()),
        ("IDENTITY_ENDPOINT", &sim.identity_endpoint()),
        ("IDENTITY_HEADER", sim.identity_header()),
        ("PRESENCE_DB", &dir.path().join("p.db").display().to_string()),
    ]));
    let body = timer_body("2026-11-22T10:05:00Z", "2026-11-22T10:00:00Z", false, "2026-11-22T10:05:00.012Z");
    let response = reqwest::Client::new().post(working.url("/function-timer")).body(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let mut handler = HandlerProcess::start(&env(&[]));
    handler.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = handler.child.wait().expect("wait");
        (status, handler)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
}

#[test]
fn check_lists_every_bad_setting_and_exits_non_zero() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("check")
        .env_clear()
        .env("ENTRA_GROUP_IDS", "11111111-1111-4111-8111-111111111111, 1234;zz")
        .env("GRAPH_BASE_URL", "graph.microsoft.com")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "\"1234\" is not a group object id",
        "\"zz\" is not a group object id",
        "GRAPH_BASE_URL: \"graph.microsoft.com\"",
    ] {
        assert!(stderr.contains(expected), "{stderr}");
    }
}

#[test]
fn check_prints_the_configuration_without_secrets() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["check", "--groups", "11111111-1111-4111-8111-111111111111"])
        .env_clear()
        .env("COSMOS_ENDPOINT", "https://acct.documents.azure.com")
        .env("COSMOS_KEY", "c3VwZXItc2VjcmV0")
        .env("AZURE_CLIENT_SECRET", "client-secret-value")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("11111111-1111-4111-8111-111111111111"), "{stdout}");
    assert!(stdout.contains("Cosmos DB https://acct.documents.azure.com/"), "{stdout}");
    assert!(!stdout.contains("c3VwZXItc2VjcmV0") && !stdout.contains("client-secret-value"), "{stdout}");
}

#[tokio::test]
async fn port_falls_back_to_the_legacy_http_worker_variable() {
    let handler =
        HandlerProcess::start(&env(&[("FUNCTIONS_CUSTOMHANDLER_PORT", ""), ("FUNCTIONS_HTTPWORKER_PORT", "0")]));
    let body = reqwest::get(handler.url("/")).await.unwrap().text().await.unwrap();
    assert_eq!(body, "ok");
}

#[test]
fn an_unusable_port_is_named_and_the_process_fails() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "70000")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("FUNCTIONS_CUSTOMHANDLER_PORT is \"70000\": expected a TCP port number"), "{stderr}");
}
