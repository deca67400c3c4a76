//! The install-notification receiver (`install-notifications`, publisher/): the real binary,
//! served as the Functions host forwards HTTP requests, fed the documented notification payloads
//! (tests/fixtures/notifications, copied from learn.microsoft.com/azure/azure-resource-manager/
//! managed-applications/publish-notifications). Its Cosmos DB store is checked on the SDK's
//! in-memory emulator by the unit tests of `notifications::cosmos`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use common::handler_process::HandlerProcess;
use serde_json::{Value, json};
use teams_presence::notifications::sig_digest_hex;

const SIG: &str = "q3N8vX1bT6yK0mR5wZ2cH9fJ4pL7dS3gA8eU1iO6";
const BIN: &str = env!("CARGO_BIN_EXE_install-notifications");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notifications").join(name))
        .unwrap()
}

const FIXTURES: &[&str] = &[
    "service-catalog-put-succeeded.json",
    "service-catalog-put-failed.json",
    "marketplace-put-succeeded.json",
    "marketplace-put-failed.json",
];

/// A documented payload with another documented (eventType, provisioningState).
fn as_event(name: &str, event_type: &str, state: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture(name)).unwrap();
    v["eventType"] = json!(event_type);
    v["provisioningState"] = json!(state);
    v.to_string()
}

/// Every payload the tests send: the four documented samples and the other documented events.
fn payloads() -> Vec<String> {
    let mut all: Vec<String> = FIXTURES.iter().map(|f| fixture(f)).collect();
    for (t, s) in [
        ("PUT", "Accepted"),
        ("PATCH", "Succeeded"),
        ("DELETE", "Deleting"),
        ("DELETE", "Deleted"),
        ("DELETE", "Failed"),
    ] {
        all.push(as_event("marketplace-put-succeeded.json", t, s));
    }
    all
}

struct Receiver {
    process: HandlerProcess,
    db: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Self {
        let db = tempfile::tempdir().unwrap();
        let env: HashMap<String, String> = [
            ("NOTIFICATION_SIG_SHA256", sig_digest_hex(SIG)),
            ("INSTALLS_DB", db.path().join("installs.db").display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Receiver { process: HandlerProcess::start_program(BIN, &env, &[], &["serve"]), db }
    }

    async fn post(&self, path_and_query: &str, body: &str) -> (u16, Value) {
        let (status, text) = self.process.invoke(path_and_query, "7d3c9a1e-host-invocation", body.to_string()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// What `install-notifications counts` prints, one row a line.
    fn counts(&self) -> Vec<Value> {
        let out = std::process::Command::new(BIN)
            .arg("counts")
            .env_clear()
            .env("INSTALLS_DB", self.db.path().join("installs.db"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// Every byte the store holds: the database file and its write-ahead log.
    fn stored_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.db.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        bytes
    }

    fn receipts(&self) -> i64 {
        let c = rusqlite::Connection::open(self.db.path().join("installs.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM receipts", [], |r| r.get(0)).unwrap()
    }

    fn logs(&self) -> String {
        let mut lines = self.process.stdout_lines();
        lines.extend(self.process.stderr_lines());
        lines.join("\n")
    }
}

fn row(plan: &str, version: &str, event: &str, count: u64) -> Value {
    json!({ "plan": plan, "version": version, "event": event, "day": "2019-08-14", "count": count })
}

#[tokio::test]
async fn documented_payloads_are_counted_by_plan_version_event_and_day() {
    let r = Receiver::start();
    // Marketplace: Azure posts to <endpoint>/resource as the docs show it; service catalog: the
    // endpoint URL carries the version the publishing script put there.
    for body in payloads() {
        let path = if body.contains("\"plan\"") {
            format!("/api/notifications/resource?sig={SIG}")
        } else {
            format!("/api/notifications?sig={SIG}&version=2.0.0")
        };
        let (status, answer) = r.post(&path, &body).await;
        assert_eq!((status, &answer), (200, &json!({ "recorded": "counted" })), "{body}");
    }
    let counts: BTreeSet<String> = r.counts().iter().map(Value::to_string).collect();
    let expected: BTreeSet<String> = [
        row("service-catalog", "2.0.0", "PUT/Failed", 1),
        row("service-catalog", "2.0.0", "PUT/Succeeded", 1),
        row("skuName", "1.0.1", "DELETE/Deleted", 1),
        row("skuName", "1.0.1", "DELETE/Deleting", 1),
        row("skuName", "1.0.1", "DELETE/Failed", 1),
        row("skuName", "1.0.1", "PATCH/Succeeded", 1),
        row("skuName", "1.0.1", "PUT/Accepted", 1),
        row("skuName", "1.0.1", "PUT/Failed", 1),
        row("skuName", "1.0.1", "PUT/Succeeded", 1),
    ]
    .iter()
    .map(Value::to_string)
    .collect();
    assert_eq!(counts, expected);
}

#[tokio::test]
async fn retries_and_concurrent_deliveries_count_once() {
    let r = Receiver::start();
    let body = fixture("marketplace-put-succeeded.json");
    let path = format!("/api/notifications/resource?sig={SIG}");
    assert_eq!(r.post(&path, &body).await, (200, json!({ "recorded": "counted" })));
    assert_eq!(r.post(&path, &body).await, (200, json!({ "recorded": "duplicate" })));
    // The same event with the application id in another case is the same delivery.
    let shouted = body.replace("teams-presence-fabrikam", "TEAMS-PRESENCE-FABRIKAM");
    assert_eq!(r.post(&path, &shouted).await, (200, json!({ "recorded": "duplicate" })));
    // Five deliveries of a new event at once: one counts.
    let other = as_event("marketplace-put-succeeded.json", "DELETE", "Deleted");
    let answers = futures::future::join_all((0..5).map(|_| r.post(&path, &other))).await;
    let counted = answers.iter().filter(|(_, a)| a["recorded"] == "counted").count();
    assert_eq!(counted, 1, "{answers:?}");
    assert_eq!(r.counts(), [row("skuName", "1.0.1", "DELETE/Deleted", 1), row("skuName", "1.0.1", "PUT/Succeeded", 1)]);
}

#[tokio::test]
async fn a_missing_or_wrong_sig_is_refused_and_nothing_is_stored() {
    let r = Receiver::start();
    let body = fixture("marketplace-put-succeeded.json");
    for (path, status) in [
        ("/api/notifications/resource".to_string(), 401),
        ("/api/notifications/resource?sig=".to_string(), 403),
        (format!("/api/notifications/resource?sig={}", &SIG[..SIG.len() - 1]), 403),
        (format!("/api/notifications/resource?sig={SIG}x"), 403),
        (format!("/api/notifications/resource?SIG={SIG}"), 401),
    ] {
        let (got, answer) = r.post(&path, &body).await;
        assert_eq!(got, status, "{path}: {answer}");
    }
    // A body that is no notification gets 400 even with the right sig.
    for bad in [
        "{}",
        "not json",
        r#"{"eventType":"PUT","provisioningState":"Running","applicationId":"x","eventTime":"2019-08-14T19:20:08Z"}"#,
    ] {
        let (status, answer) = r.post(&format!("/api/notifications?sig={SIG}"), bad).await;
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    assert_eq!(r.counts(), Vec::<Value>::new());
    assert_eq!(r.receipts(), 0);
    assert!(!r.logs().contains(&SIG[..20]), "a sig value reached the logs");
}

/// Every GUID of a payload, and the names inside its resource ids (resource group, application,
/// definition): none may reach the store or the logs.
fn identifiers(payload: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let chars: Vec<char> = payload.chars().collect();
    for start in 0..chars.len() {
        let candidate: String = chars[start..(start + 36).min(chars.len())].iter().collect();
        if uuid::Uuid::parse_str(&candidate).is_ok() && candidate.len() == 36 {
            found.insert(candidate.to_lowercase());
        }
    }
    let v: Value = serde_json::from_str(payload).unwrap();
    for field in ["applicationId", "applicationDefinitionId"] {
        if let Some(id) = v[field].as_str() {
            let segments: Vec<&str> = id.trim_start_matches('/').split('/').collect();
            // subscriptions/<id>/resourceGroups/<name>/providers/<ns>/<type>/<name>
            for i in [1, 3, 7] {
                found.insert(segments[i].to_lowercase());
            }
        }
    }
    found
}

#[tokio::test]
async fn no_identifier_of_a_payload_is_stored_or_logged() {
    let r = Receiver::start();
    let mut all = BTreeSet::new();
    for body in payloads() {
        all.extend(identifiers(&body));
        assert_eq!(r.post(&format!("/api/notifications/resource?sig={SIG}"), &body).await.0, 200);
        assert_eq!(r.post(&format!("/api/notifications/resource?sig={SIG}"), &body).await.0, 200);
    }
    assert!(all.len() >= 9, "the search must cover the payloads' ids: {all:?}");
    assert!(all.contains("e81f3b5c-2d7a-4c90-9f14-6b3a8d2e5c71") && all.contains("teams-presence-fabrikam"), "{all:?}");
    // The store must hold the counts, or an empty file would pass.
    assert_eq!(r.counts().len(), 9);
    let stored = String::from_utf8_lossy(&r.stored_bytes()).to_lowercase();
    let logs = r.logs().to_lowercase();
    assert!(logs.contains("\"plan\":\"skuname\"") && logs.contains("7d3c9a1e-host-invocation"), "{logs}");
    for id in &all {
        assert!(!stored.contains(id), "the store holds {id}");
        assert!(!logs.contains(id), "the logs hold {id}");
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver's Function App files against the binary

#[test]
fn the_receivers_template_host_and_function_match_the_binary() {
    use clap::Args;
    use common::arm::{Evaluator, read_json};
    let template = read_json("publisher/mainTemplate.json");
    let params = std::collections::BTreeMap::from([("sigSha256".to_string(), json!(sig_digest_hex(SIG)))]);
    let eval =
        Evaluator::new(&template, params).with_template_link("https://releases.contoso.example/v1/mainTemplate.json");
    eval.check_all();
    assert_eq!(eval.errors(), Vec::<String>::new());
    assert!(eval.expressions_evaluated() > 40);

    // Every app setting is one the receiver reads (its clap env names), or the host's storage.
    let site = template["resources"].as_array().unwrap().iter().find(|r| r["type"] == "Microsoft.Web/sites").unwrap();
    let set: BTreeSet<&str> = site["properties"]["siteConfig"]["appSettings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let command = teams_presence::notifications::ReceiverSettings::augment_args(clap::Command::new("x"));
    let read: BTreeSet<String> =
        command.get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect();
    for name in &set {
        assert!(read.contains(*name) || *name == "AzureWebJobsStorage__accountName", "{name} is read by nothing");
    }
    for needed in ["NOTIFICATION_SIG_SHA256", "COSMOS_ENDPOINT", "COSMOS_DATABASE", "COSMOS_CONTAINER"] {
        assert!(set.contains(needed), "the template does not set {needed}");
    }
    // The container is partitioned as the store writes (by day), items expire by their own ttl.
    let container = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
        .unwrap();
    assert_eq!(container["properties"]["resource"]["partitionKey"]["paths"], json!(["/day"]));
    assert_eq!(container["properties"]["resource"]["defaultTtl"], -1, "per-item TTL on, nothing else expires");
    let package = eval.variable("packageUri").render();
    assert_eq!(package, "https://releases.contoso.example/v1/install-notifications.zip");

    let host = read_json("publisher/host.json");
    assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], true, "the handler reads the raw request");
    assert_eq!(host["customHandler"]["description"]["defaultExecutablePath"], "install-notifications");
    assert_eq!(host["extensions"]["http"]["routePrefix"], "api");
    let function = read_json("publisher/function-notifications/function.json");
    let trigger = &function["bindings"][0];
    assert_eq!(
        trigger["authLevel"], "anonymous",
        "the sig in the URL authenticates (publish-notifications, Endpoint authentication)"
    );
    let route = trigger["route"].as_str().unwrap();
    assert_eq!(format!("/api/{}", route.trim_end_matches("/{*rest}")), teams_presence::notifications::server::ROUTE);
}
