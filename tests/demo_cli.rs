//! `handler demo`, the README's local run, on a small simulated tenant: it must end with a
//! summary whose figures agree with what is in the embedded store it names.

use std::process::Command;

use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::{RightsStore, RunStore};

#[tokio::test]
async fn the_local_run_ends_with_a_summary_that_matches_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let output = Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(["demo", "--users", "300", "--runs", "3", "--interval-ms", "10"])
        .arg("--db")
        .arg(&db)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    for expected in ["run  1/3", "run  3/3", "Summary", "users in scope", "records written"] {
        assert!(stdout.contains(expected), "{expected:?} missing from:\n{stdout}");
    }
    let figure = |label: &str| -> u64 {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap();
        line.split_whitespace().find_map(|w| w.replace(',', "").parse().ok()).unwrap()
    };
    let (users, written) = (figure("users in scope"), figure("records written"));
    assert!(users > 0 && written >= users, "every user has at least a first sighting: {stdout}");

    let store = SqliteStore::open(&db, None).await.unwrap();
    let run = teams_presence::run::RunContext::new(
        "check",
        teams_presence::model::Slot::new(chrono::Utc::now()),
        std::time::Duration::from_secs(10),
    );
    let tracked = store.last_known(&run).await.unwrap();
    assert_eq!(tracked.len() as u64, users, "the store tracks exactly the users in scope");
    let mut records = 0;
    for (user, _) in tracked.iter() {
        records += store.export_subject(user).await.unwrap().len() as u64;
    }
    assert_eq!(records, written, "the summary counts what the store holds");
}
