//! Security checks: the listener is reachable from this machine only; no token, secret or key
//! reaches a log line or a response under any fault; the HTTP functions are key-protected by the
//! host, and the handler answers anything that is not the host's invocation with a 4xx and does
//! nothing.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::handler_process::{HandlerProcess, timer_body};
use common::store_cases::{plan, run_context, subject, user};
use common::tls_relay::{CA_PEM, TlsRelay};
use serde_json::{Value, json};
use teams_presence::model::GroupId;
use teams_presence::simulator::{Endpoint, Fault, RetryAfter, SimConfig, Simulator, standard_groups};
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::{RightsStore, RunStore};

const PSEUDONYM_KEY_BYTES: &[u8; 32] = b"pseudonym-key-for-security-test!";
const CLIENT_SECRET: &str = "Z3t~bystander-client-secret-41c9";
const COSMOS_KEY: &str = "c2VjdXJpdHktdGVzdC1jb3Ntb3Mta2V5LTdmM2E=";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn pseudonym_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(PSEUDONYM_KEY_BYTES)
}

/// Everything a process printed plus every response body, for secret scanning.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    fn add(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }

    fn take_process(&mut self, handler: &HandlerProcess) {
        self.0.extend(handler.stdout_lines());
        self.0.extend(handler.stderr_lines());
    }

    /// No secret appears anywhere; each secret is named (not printed) on failure.
    fn assert_free_of(&self, secrets: &[(&str, String)]) {
        assert!(!self.0.is_empty(), "nothing was captured: the scan would prove nothing");
        for (name, secret) in secrets {
            assert!(secret.len() >= 8, "{name} is too short to scan for");
            if let Some(line) = self.0.iter().find(|l| l.contains(secret.as_str())) {
                let redacted = line.replace(secret.as_str(), "<SECRET>");
                panic!("{name} appears in output: {redacted}");
            }
        }
    }
}

async fn invoke(handler: &HandlerProcess, function: &str, invocation_id: &str, body: String) -> (u16, String) {
    handler.invoke(&format!("/{function}"), invocation_id, body).await
}

/// The host's HTTP-trigger payload (not forwarded) for `method` with the query `query`.
fn http_body(method: &str, route: &str, query: &[(&str, &str)]) -> String {
    let query_map: serde_json::Map<String, Value> = query.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "Data": {"req": {
            "Url": format!("https://app.azurewebsites.net/api/{route}?{}", qs.join("&")),
            "Method": method,
            "Query": query_map,
            "Headers": {"x-functions-key": ["host-checked-key"]},
            "Params": {},
        }},
        "Metadata": {},
    })
    .to_string()
}

fn timer(slot_minute: u32) -> String {
    let next = format!("2026-11-22T10:{:02}:00Z", slot_minute);
    let last = format!("2026-11-22T10:{:02}:00Z", slot_minute.saturating_sub(5));
    timer_body(&next, &last, false, &format!("2026-11-22T10:{:02}:00.012Z", slot_minute))
}

// ---------------------------------------------------------------------------------------------
// (a) The listener

/// The listening sockets of `port` as `/proc/net/tcp{,6}` lists them: (file, hex local address).
fn listening_sockets(port: u16) -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(file) else { continue };
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let Some((address, hex_port)) = local.split_once(':') else { continue };
            // 0A is TCP_LISTEN.
            if *state == "0A" && u16::from_str_radix(hex_port, 16).ok() == Some(port) {
                found.push((file, address.to_string()));
            }
        }
    }
    found
}

/// A non-loopback address of this machine, if it has one (the address a route out would use).
fn non_loopback_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.254.254.254:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The handler has no way to be told to bind elsewhere (no flag, and settings that other
/// servers read are ignored): its only listening socket is 127.0.0.1, and the port is closed on
/// the machine's other addresses.
#[tokio::test]
async fn the_listener_is_bound_to_127_0_0_1_only_whatever_the_environment_says() {
    let handler = HandlerProcess::start(&env(&[
        ("HOST", "0.0.0.0"),
        ("ASPNETCORE_URLS", "http://0.0.0.0:8080"),
        ("FUNCTIONS_CUSTOMHANDLER_HOST", "0.0.0.0"),
        ("BIND_ADDRESS", "0.0.0.0"),
    ]));
    assert_eq!(handler.address.ip(), std::net::IpAddr::from([127, 0, 0, 1]), "{}", handler.address);
    let sockets = listening_sockets(handler.address.port());
    // 0100007F is 127.0.0.1 in the kernel's byte order; 00000000 would be every address.
    assert_eq!(sockets, vec![("/proc/net/tcp", "0100007F".to_string())], "listening sockets of the port");
    match non_loopback_address() {
        Some(ip) => {
            let refused = tokio::net::TcpStream::connect((ip, handler.address.port())).await;
            assert!(refused.is_err(), "the handler answered on {ip}");
        }
        None => println!("no non-loopback address on this machine: the /proc/net/tcp check stands alone"),
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_handler")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_lowercase();
    assert!(help.contains("--port") && !help.contains("--host") && !help.contains("--bind"), "{help}");
}

// ---------------------------------------------------------------------------------------------
// (b) No secret in any output under faults

/// The real handler with a managed identity on the simulator, the embedded store, the pseudonym
/// key and a client secret configured, debug logging on, through a mix of token-endpoint
/// failures, revoked tokens (401), 401s on fresh tokens, 429s, 5xx, slow answers and malformed
/// bodies, with timer runs and export/erasure requests: neither the tokens the simulator issued,
/// nor IDENTITY_HEADER, the pseudonym key or the client secret appears in anything it printed or
/// answered, and (pseudonym mode) no user object id appears in its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_in_any_log_or_response_under_graph_and_token_faults() {
    let sim = Simulator::start(SimConfig::standard(120).max_page_size(40).token_lifetime(Duration::from_secs(120)))
        .await
        .unwrap();
    let groups: Vec<String> = standard_groups()[..3].iter().map(GroupId::to_string).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db").display().to_string();
    let key = pseudonym_key();
    let handler = HandlerProcess::start(&env(&[
        ("ENTRA_GROUP_IDS", &groups.join(",")),
        ("GRAPH_BASE_URL", &sim.base_url()),
        ("IDENTITY_ENDPOINT", &sim.identity_endpoint()),
        ("IDENTITY_HEADER", sim.identity_header()),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
        ("PRESENCE_DB", &db),
        ("USER_ID_PSEUDONYM_KEY", &key),
        ("RUN_DEADLINE_SECONDS", "20"),
        ("LOG_LEVEL", "debug"),
    ]));
    let mut seen = Seen::default();
    let faults: Vec<Vec<(Endpoint, Fault, usize)>> = vec![
        vec![],
        vec![(Endpoint::Token, Fault::Status { status: 500, retry_after: None }, 2)],
        vec![(Endpoint::Presence, Fault::Status { status: 429, retry_after: Some(RetryAfter::Seconds(0)) }, 3)],
        vec![(Endpoint::Presence, Fault::Status { status: 503, retry_after: None }, 2)],
        vec![(Endpoint::Members, Fault::Status { status: 502, retry_after: None }, 1)],
        vec![(Endpoint::Presence, Fault::Malformed, 1), (Endpoint::Members, Fault::Truncated, 1)],
        // A fresh token refused too: the run reports Graph refusing it.
        vec![(Endpoint::Presence, Fault::Status { status: 401, retry_after: None }, 8)],
        vec![(Endpoint::Token, Fault::Slow(Duration::from_millis(200)), 1)],
        vec![(Endpoint::Members, Fault::Status { status: 403, retry_after: None }, 3)],
        vec![(Endpoint::Token, Fault::Malformed, 3)],
    ];
    let (mut ok, mut failed) = (0, 0);
    for (i, mix) in faults.into_iter().enumerate() {
        if i % 3 == 2 {
            // A token revoked before the run: the 401 path and a refresh.
            sim.revoke_tokens();
        }
        for (endpoint, fault, times) in mix {
            sim.inject(endpoint, fault, times);
        }
        let (status, body) = invoke(&handler, "function-timer", &format!("inv-{i}"), timer(5 * (i as u32 + 1))).await;
        if status == 200 {
            ok += 1
        } else {
            failed += 1
        }
        seen.add(body);
    }
    let member = sim.expected_users(&standard_groups()[..1])[0].expose_object_id().to_string();
    for (function, body) in [
        ("function-export", http_body("GET", "privacy/export", &[("user", &member)])),
        ("function-export", http_body("GET", "privacy/export", &[("user", &member), ("format", "csv")])),
        ("function-export", http_body("GET", "privacy/export", &[("user", "not-a-guid")])),
        ("function-erase", http_body("POST", "privacy/erase", &[("user", &member)])),
        ("function-erase", "{broken".to_string()),
    ] {
        seen.add(invoke(&handler, function, "inv-rights", body).await.1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.take_process(&handler);
    assert!(
        ok >= 3 && failed >= 1,
        "the fault mix should fail some runs and let others through: ok={ok} failed={failed}"
    );
    let tokens = sim.issued_tokens();
    assert!(tokens.len() >= 2, "tokens were issued and replaced: {}", tokens.len());
    let mut secrets: Vec<(&str, String)> = vec![
        ("IDENTITY_HEADER", sim.identity_header().to_string()),
        ("USER_ID_PSEUDONYM_KEY", key.clone()),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
    ];
    secrets.extend(tokens.into_iter().map(|t| ("a Graph access token", t)));
    seen.assert_free_of(&secrets);
    // Debug logging was really on (or the scan above saw little).
    assert!(handler.stdout_lines().iter().any(|l| l.contains("\"DEBUG\"")), "no debug line was printed");
    // Pseudonym mode: object ids are not logged, at any level (responses to the caller may name
    // the id the caller sent).
    let logs: Vec<String> = handler.stdout_lines().into_iter().chain(handler.stderr_lines()).collect();
    for id in sim.expected_users(&standard_groups()[..3]) {
        let id = id.expose_object_id().to_string();
        assert!(!logs.iter().any(|l| l.contains(&id)), "user id {id} in the logs in pseudonym mode");
    }
}

/// The same for the client-secret credential of local runs (`AZURE_CLIENT_SECRET`, the
/// simulator's Entra token endpoint behind TLS): token-endpoint 500s, malformed and slow token
/// answers, revoked tokens, 401s on fresh tokens, 429s and 5xx, debug logging: neither the
/// secret nor any token it bought appears in any output or response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_secret_or_token_in_any_output_under_token_faults() {
    const TENANT: &str = "8e1b2c3d-0000-4000-8000-0000000000aa";
    const CLIENT_ID: &str = "3f0c7a12-0000-4000-8000-0000000000bb";
    const SECRET: &str = "Q7x~security-client-secret-90ab";
    let sim = Simulator::start(
        SimConfig::standard(60).client_credentials(CLIENT_ID, SECRET).token_lifetime(Duration::from_secs(120)),
    )
    .await
    .unwrap();
    let relay = TlsRelay::start(sim.address()).await;
    let dir = tempfile::tempdir().unwrap();
    let groups: Vec<String> = standard_groups()[..2].iter().map(GroupId::to_string).collect();
    let handler = HandlerProcess::start(&env(&[
        ("ENTRA_GROUP_IDS", &groups.join(",")),
        ("GRAPH_BASE_URL", &sim.base_url()),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_CLIENT_ID", CLIENT_ID),
        ("AZURE_CLIENT_SECRET", SECRET),
        ("AZURE_AUTHORITY_HOST", &relay.url()),
        ("SSL_CERT_FILE", CA_PEM),
        ("PRESENCE_DB", &dir.path().join("presence.db").display().to_string()),
        ("RUN_DEADLINE_SECONDS", "20"),
        ("LOG_LEVEL", "debug"),
    ]));
    let mut seen = Seen::default();
    let faults: Vec<(Endpoint, Fault, usize)> = vec![
        (Endpoint::Token, Fault::Status { status: 500, retry_after: None }, 2),
        (Endpoint::Token, Fault::Malformed, 2),
        (Endpoint::Presence, Fault::Status { status: 401, retry_after: None }, 8),
        (Endpoint::Token, Fault::Slow(Duration::from_millis(200)), 1),
        (Endpoint::Presence, Fault::Status { status: 429, retry_after: Some(RetryAfter::Seconds(0)) }, 2),
        (Endpoint::Members, Fault::Status { status: 500, retry_after: None }, 1),
    ];
    let mut ok = 0;
    for (i, (endpoint, fault, times)) in faults.into_iter().enumerate() {
        sim.revoke_tokens();
        sim.inject(endpoint, fault, times);
        let (status, body) = invoke(&handler, "function-timer", &format!("inv-s{i}"), timer(5 * (i as u32 + 1))).await;
        ok += usize::from(status == 200);
        seen.add(body);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.take_process(&handler);
    let tokens = sim.issued_tokens();
    assert!(ok >= 2 && !tokens.is_empty(), "runs got tokens: ok={ok} tokens={}", tokens.len());
    let mut secrets: Vec<(&str, String)> = vec![("AZURE_CLIENT_SECRET", SECRET.to_string())];
    secrets.extend(tokens.into_iter().map(|t| ("a Graph access token", t)));
    seen.assert_free_of(&secrets);
}

/// A Cosmos DB endpoint that answers each request with the next of a fixed list of failures
/// (401, 503, 429 with retry-after, 500, a malformed 200), behind TLS, and keeps every
/// `Authorization` header it received (the key's HMAC signatures).
async fn failing_cosmos() -> (TlsRelay, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let headers_seen = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = headers_seen.clone();
        let count = count.clone();
        async move {
            if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
                seen.lock().unwrap().push(auth.to_string());
            }
            let n = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let json = [("content-type", "application/json")];
            match n % 5 {
                0 => (StatusCode::UNAUTHORIZED, json, r#"{"code":"Unauthorized","message":"bad signature"}"#)
                    .into_response(),
                1 => (StatusCode::SERVICE_UNAVAILABLE, json, r#"{"code":"ServiceUnavailable"}"#).into_response(),
                2 => (StatusCode::TOO_MANY_REQUESTS, [("x-ms-retry-after-ms", "5")], "{}").into_response(),
                3 => (StatusCode::INTERNAL_SERVER_ERROR, json, "oops").into_response(),
                _ => (StatusCode::OK, json, "{not json").into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (TlsRelay::start(upstream).await, seen)
}

/// With `COSMOS_KEY` configured and a Cosmos endpoint that fails every way, debug logging on:
/// neither the key nor a request signature made from it appears in any output or response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cosmos_key_never_appears_when_cosmos_fails() {
    let (relay, signatures) = failing_cosmos().await;
    let handler = HandlerProcess::start(&env(&[
        ("ENTRA_GROUP_IDS", "11111111-1111-4111-8111-111111111111"),
        ("COSMOS_ENDPOINT", &relay.url()),
        ("COSMOS_KEY", COSMOS_KEY),
        ("USER_ID_PSEUDONYM_KEY", &pseudonym_key()),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token"),
        ("IDENTITY_HEADER", "identity-header-not-used-3e9a"),
        ("SSL_CERT_FILE", CA_PEM),
        ("RUN_DEADLINE_SECONDS", "10"),
        ("LOG_LEVEL", "debug"),
    ]));
    let mut seen = Seen::default();
    for i in 0..3 {
        let (status, body) = invoke(&handler, "function-timer", &format!("inv-c{i}"), timer(5 * (i + 1))).await;
        assert_eq!(status, 500, "{body}");
        seen.add(body);
        let export = http_body("GET", "privacy/export", &[("user", &user(1).expose_object_id().to_string())]);
        seen.add(invoke(&handler, "function-export", &format!("inv-e{i}"), export).await.1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen.take_process(&handler);
    let mut secrets: Vec<(&str, String)> = vec![
        ("COSMOS_KEY", COSMOS_KEY.to_string()),
        ("USER_ID_PSEUDONYM_KEY", pseudonym_key()),
        ("IDENTITY_HEADER", "identity-header-not-used-3e9a".to_string()),
    ];
    let signatures = signatures.lock().unwrap().clone();
    assert!(!signatures.is_empty(), "the Cosmos endpoint was never called: the check proves nothing");
    secrets.extend(signatures.into_iter().map(|s| ("a Cosmos request signature", s)));
    seen.assert_free_of(&secrets);
}

/// In process: the production `CosmosStore` with key auth on the emulator, under 429/503/timeout
/// faults, with every log line (debug, the SDK's included) captured: the key never appears.
#[test]
fn the_cosmos_store_logs_no_key_under_store_faults() {
    use azure_core::http::StatusCode;
    use azure_data_cosmos::fault_injection::{
        CustomResponseBuilder, FaultInjectionConditionBuilder, FaultInjectionErrorType, FaultInjectionResultBuilder,
        FaultInjectionRuleBuilder, FaultOperationType,
    };
    let (captured, _guard) = common::log_capture::capture(tracing::Level::DEBUG);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let errors = runtime.block_on(async {
        let emulator = common::cosmos_emulator::Emulator::new();
        let throttled = FaultInjectionResultBuilder::new()
            .with_custom_response(
                CustomResponseBuilder::new(StatusCode::TooManyRequests).with_header("x-ms-retry-after-ms", "1").build(),
            )
            .with_probability(0.3)
            .build();
        let unavailable = FaultInjectionResultBuilder::new()
            .with_error(FaultInjectionErrorType::ServiceUnavailable)
            .with_probability(0.2)
            .build();
        let timeout = FaultInjectionResultBuilder::new()
            .with_error(FaultInjectionErrorType::ResponseTimeout)
            .with_probability(0.2)
            .build();
        // Every write fails for a while, more often than the store retries: some errors must
        // reach the caller, or the check of the errors below would prove nothing.
        let outage = FaultInjectionResultBuilder::new().with_error(FaultInjectionErrorType::ServiceUnavailable).build();
        let writes = FaultInjectionConditionBuilder::new().with_operation_type(FaultOperationType::CreateItem).build();
        let rules = vec![
            Arc::new(
                FaultInjectionRuleBuilder::new("outage", outage).with_condition(writes).with_hit_limit(40).build(),
            ),
            Arc::new(FaultInjectionRuleBuilder::new("429", throttled).build()),
            Arc::new(FaultInjectionRuleBuilder::new("503", unavailable).build()),
            Arc::new(FaultInjectionRuleBuilder::new("timeout", timeout).build()),
        ];
        let store = emulator.store(Default::default(), rules).await;
        let mut errors = Vec::new();
        for run in 1..6 {
            let changes: Vec<(u128, &str)> = (0..40).map(|u| (u, if run % 2 == 0 { "Away" } else { "Busy" })).collect();
            let result = async {
                store.last_known(&run_context(run)).await?;
                store.record(&run_context(run), plan(run, &changes, &[])).await
            }
            .await;
            if let Err(e) = result {
                errors.push(e.to_string());
            }
            if let Err(e) = store.export_subject(subject(1)).await {
                errors.push(e.to_string());
            }
        }
        errors
    });
    let text = captured.text();
    assert!(text.lines().count() > 10, "little was logged: {text}");
    let key = common::cosmos_emulator::KEY;
    assert!(!text.contains(key), "the Cosmos key is in a log line");
    assert!(!errors.is_empty(), "no store error reached the caller: the check of the errors proves nothing");
    assert!(errors.iter().all(|e| !e.contains(key)), "the Cosmos key is in an error");
}

// ---------------------------------------------------------------------------------------------
// (c) HTTP functions: key-protected by the host, and nothing done for anything else

fn function_json(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name).join("function.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn function_folders() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("function.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Every function with an HTTP trigger has a key-requiring `authLevel` (erasure the admin key),
/// and the methods and routes the docs give; the timer is not reachable over HTTP; the host
/// config does not forward raw requests (which would bypass the payload the handler checks) or
/// lower the default authorisation; no function key is published by the deployment template.
#[test]
fn every_http_function_requires_a_key_and_matches_the_docs() {
    assert_eq!(function_folders(), ["function-erase", "function-export", "function-timer"]);
    let expected = [
        ("function-export", "function", vec!["get", "post"], "privacy/export"),
        ("function-erase", "admin", vec!["post", "delete"], "privacy/erase"),
    ];
    for folder in function_folders() {
        let json = function_json(&folder);
        let bindings = json["bindings"].as_array().unwrap();
        let triggers: Vec<&Value> = bindings.iter().filter(|b| b["type"] == "httpTrigger").collect();
        match expected.iter().find(|(name, ..)| *name == folder) {
            None => assert!(triggers.is_empty(), "{folder} has an HTTP trigger nobody reviewed"),
            Some((_, level, methods, route)) => {
                assert_eq!(triggers.len(), 1, "{folder}");
                let trigger = triggers[0];
                let auth = trigger["authLevel"].as_str().expect("authLevel set explicitly");
                assert_ne!(auth, "anonymous", "{folder}");
                assert_eq!(auth, *level, "{folder}");
                let got: Vec<&str> =
                    trigger["methods"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
                assert_eq!(&got, methods, "{folder}");
                assert_eq!(trigger["route"], *route, "{folder}");
                assert!(bindings.iter().any(|b| b["type"] == "http" && b["direction"] == "out" && b["name"] == "res"));
            }
        }
    }
    let host: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("host.json")).unwrap(),
    )
    .unwrap();
    let handler = &host["customHandler"];
    assert_eq!(handler["enableForwardingHttpRequest"], false);
    assert!(handler.get("enableProxyingHttpRequest").is_none_or(|v| v == false));
    assert!(handler.get("http").is_none(), "customHandler.http would change routes or the default auth level");
    assert!(host["extensions"]["http"].get("routePrefix").is_none_or(|p| p == "api"), "the docs use /api/...");

    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data_handling = std::fs::read_to_string(root.join("docs/data-handling.md")).unwrap();
    assert!(data_handling.contains(
        "`GET` or `POST /api/privacy/export?user=<object id>[&format=csv]`, function key (`authLevel: function`)"
    ));
    assert!(
        data_handling.contains(
            "`POST` or `DELETE /api/privacy/erase?user=<object id>`, admin (master) key (`authLevel: admin`)"
        )
    );
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains("/api/privacy/export?user=<object id>&format=csv\" -H \"x-functions-key: <function key>\"")
    );
    assert!(readme.contains("-X POST \"https://<app>.azurewebsites.net/api/privacy/erase?user=<object id>\" -H \"x-functions-key: <master key>\""));
    let template = std::fs::read_to_string(root.join("arm/mainTemplate.json")).unwrap();
    let template: Value = serde_json::from_str(&template).unwrap();
    let outputs = template["outputs"].to_string();
    assert!(
        !outputs.contains("listKeys") && !outputs.contains("functionKeys") && !outputs.contains("masterKey"),
        "{outputs}"
    );
}

/// A prepared embedded store: user 1 has three records, user 2 one.
async fn prepare(path: &Path) {
    let store = SqliteStore::open(path, None).await.unwrap();
    for (run, changes) in [(1, vec![(1, "Available"), (2, "Away")]), (2, vec![(1, "Busy")]), (3, vec![(1, "Offline")])]
    {
        store.last_known(&run_context(run)).await.unwrap();
        store.record(&run_context(run), plan(run, &changes, &[])).await.unwrap();
    }
}

fn audit_trail(db: &Path) -> Value {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("audit")
        .env_clear()
        .env("PRESENCE_DB", db)
        .env("RETENTION_DAYS", "3650")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What reaches the handler other than the host's HTTP-trigger invocation (a raw request sent
/// straight to its port, the public route, a wrong HTTP method, a payload of another trigger, a
/// method the function does not declare, an oversized body) gets a 4xx naming the problem, and
/// nothing is exported or erased: the audit trail stays empty and the records stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_are_not_the_hosts_invocation_get_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    prepare(&db).await;
    let handler =
        HandlerProcess::start(&env(&[("PRESENCE_DB", &db.display().to_string()), ("RETENTION_DAYS", "3650")]));
    let id = user(1).expose_object_id().to_string();
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: String, body: String| {
        let request = client.request(method, handler.url(&path)).header("content-type", "application/json").body(body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap_or_default())
        }
    };
    use reqwest::Method;
    let raw: Vec<(Method, String, String, u16, &str)> = vec![
        // A forwarded-style request: the caller's own query and body, not the host's payload.
        (Method::POST, format!("/function-erase?user={id}"), String::new(), 400, "not JSON"),
        (
            Method::POST,
            "/function-erase".into(),
            json!({"user": id}).to_string(),
            400,
            "not an HTTP-trigger invocation",
        ),
        (
            Method::POST,
            format!("/function-export?user={id}"),
            json!({"user": id}).to_string(),
            400,
            "\"Data\" is missing",
        ),
        (Method::POST, "/function-erase".into(), timer(5), 400, "no HTTP request in Data"),
        (Method::GET, format!("/function-export?user={id}"), String::new(), 405, ""),
        (Method::DELETE, format!("/function-erase?user={id}"), String::new(), 405, ""),
        (Method::PUT, "/function-erase".into(), http_body("POST", "privacy/erase", &[("user", &id)]), 405, ""),
        (Method::POST, format!("/api/privacy/erase?user={id}"), String::new(), 404, "no function at"),
        (Method::DELETE, format!("/api/privacy/erase?user={id}"), String::new(), 404, "no function at"),
        (
            Method::POST,
            "/function-erase".into(),
            format!(
                "{{\"Data\":{{\"req\":{{\"Method\":\"POST\",\"Query\":{{\"user\":\"{id}\"}},\"pad\":\"{}\"}}}}}}",
                "x".repeat(70_000)
            ),
            413,
            "",
        ),
    ];
    for (method, path, body, status, message) in raw {
        let (got, text) = send(method.clone(), path.clone(), body).await;
        assert_eq!(got, status, "{method} {path}: {text}");
        let error = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string));
        let error = error.unwrap_or(text);
        assert!(error.contains(message), "{method} {path}: {error:?} should name {message:?}");
    }
    // The host's shape with a method the function does not declare: the caller gets 400 in
    // Outputs.res (the invocation itself succeeded).
    for (function, method, route) in [
        ("function-erase", "GET", "privacy/erase"),
        ("function-erase", "PUT", "privacy/erase"),
        ("function-export", "DELETE", "privacy/export"),
    ] {
        let (status, text) = invoke(&handler, function, "inv-method", http_body(method, route, &[("user", &id)])).await;
        assert_eq!(status, 200, "{text}");
        let res: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(res["Outputs"]["res"]["statusCode"], 400, "{function} {method}: {text}");
        assert!(res["Outputs"]["res"]["body"].as_str().unwrap().contains(&format!("method {method} is not accepted")));
    }
    assert_eq!(audit_trail(&db), json!([]), "nothing was exported or erased");
    // The records are all still there: a proper export (the host's shape) finds them.
    let (status, text) =
        invoke(&handler, "function-export", "inv-ok", http_body("GET", "privacy/export", &[("user", &id)])).await;
    assert_eq!(status, 200, "{text}");
    let res: Value = serde_json::from_str(&text).unwrap();
    let body: Value = serde_json::from_str(res["Outputs"]["res"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["exported"], 3, "{body}");
    assert_eq!(audit_trail(&db).as_array().unwrap().len(), 1, "the one real export is audited");
}

/// Each method the function.json files declare is one the handler accepts (a mismatch would turn
/// host-authorised requests into 400s, or accept ones the host never lets through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_methods_are_the_ones_the_handler_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    prepare(&db).await;
    let handler =
        HandlerProcess::start(&env(&[("PRESENCE_DB", &db.display().to_string()), ("RETENTION_DAYS", "3650")]));
    for folder in ["function-export", "function-erase"] {
        let json = function_json(folder);
        let trigger = json["bindings"].as_array().unwrap().iter().find(|b| b["type"] == "httpTrigger").unwrap().clone();
        let route = trigger["route"].as_str().unwrap().to_string();
        for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
            let declared = trigger["methods"].as_array().unwrap().iter().any(|m| m == method);
            let who = user(2).expose_object_id().to_string();
            let body = http_body(&method.to_uppercase(), &route, &[("user", &who)]);
            let (status, text) = invoke(&handler, folder, "inv-m", body).await;
            assert_eq!(status, 200, "{text}");
            let res: Value = serde_json::from_str(&text).unwrap();
            let code = &res["Outputs"]["res"]["statusCode"];
            if declared {
                assert_eq!(code, 200, "{folder} {method}: {text}");
            } else {
                assert_eq!(code, 400, "{folder} {method}: {text}");
            }
        }
    }
}
