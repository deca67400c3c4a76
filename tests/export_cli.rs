//! `handler export` on a prepared embedded database, through the real binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::store_cases::{plan, run_context, user};
use teams_presence::store::RunStore;
use teams_presence::store::sqlite::SqliteStore;

async fn prepare(path: &Path) {
    let store = SqliteStore::open(path, None).await.unwrap();
    for (run, changes) in
        [(1, vec![(1, "Available"), (2, "Away")]), (2, vec![(1, "Busy, in a call")]), (3, vec![(1, "Offline")])]
    {
        store.last_known(&run_context(run)).await.unwrap();
        store.record(&run_context(run), plan(run, &changes, &[])).await.unwrap();
    }
}

/// The prepared records are from March 2025: a ten-year retention keeps them.
fn export(db: &Path, args: &[&str]) -> std::process::Output {
    export_with_retention(db, args, "3650")
}

fn export_with_retention(db: &Path, args: &[&str], retention_days: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_handler"))
        .arg("export")
        .args(args)
        .env("PRESENCE_DB", db)
        .env("RETENTION_DAYS", retention_days)
        .env_remove("ENTRA_GROUP_IDS")
        .env_remove("COSMOS_ENDPOINT")
        .env_remove("COSMOS_KEY")
        .output()
        .unwrap()
}

#[tokio::test]
async fn json_export_lists_one_users_records_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    prepare(&db).await;
    let id = user(1).expose_object_id().to_string();
    let output = export(&db, &["--user", &id]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let records: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        records,
        serde_json::json!([
            {"userId": id, "availability": "Available", "timestamp": "2025-03-01T08:05:01.250Z"},
            {"userId": id, "availability": "Busy, in a call", "timestamp": "2025-03-01T08:10:01.250Z"},
            {"userId": id, "availability": "Offline", "timestamp": "2025-03-01T08:15:01.250Z"},
        ])
    );
}

#[tokio::test]
async fn csv_export_quotes_what_needs_quoting() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    prepare(&db).await;
    let id = user(1).expose_object_id().to_string();
    let output = export(&db, &["--user", &id.to_uppercase(), "--format", "csv"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "userId,availability,timestamp\n{id},Available,2025-03-01T08:05:01.250Z\n\
             {id},\"Busy, in a call\",2025-03-01T08:10:01.250Z\n{id},Offline,2025-03-01T08:15:01.250Z\n"
        )
    );
}

#[tokio::test]
async fn an_unknown_user_exports_an_empty_list_and_a_bad_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    prepare(&db).await;
    let output = export(&db, &["--user", &user(9).expose_object_id().to_string()]);
    assert!(output.status.success());
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap(), serde_json::json!([]));

    let output = export(&db, &["--user", "not-a-guid"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"not-a-guid\"") && stderr.contains("expected a GUID"), "{stderr}");
}

#[tokio::test]
async fn records_past_the_retention_are_not_exported_because_they_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("presence.db");
    prepare(&db).await;
    let output = export_with_retention(&db, &["--user", &user(1).expose_object_id().to_string()], "90");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap(), serde_json::json!([]));
    let file = std::fs::read(&db).unwrap();
    assert!(
        !String::from_utf8_lossy(&file).contains(&user(1).expose_object_id().to_string()),
        "deleted from the file on open"
    );
}
