//! One contract, two stores: the embedded SQLite file and Cosmos DB (SDK in-memory emulator).

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::cosmos_emulator::Emulator;
use common::store_cases::{self as cases, Backend, StoredBytes};
use teams_presence::store::cosmos::Tuning;
use teams_presence::store::sqlite::SqliteStore;
use teams_presence::store::{RightsStore, RunStore, Store};

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.dir.path().join("presence.db"), None).await.unwrap())
    }

    /// The database file and its write-ahead log, byte for byte (deleted rows included, if any
    /// were left in free pages).
    async fn stored_bytes(&self) -> StoredBytes {
        let mut bytes = Vec::new();
        for name in ["presence.db", "presence.db-wal"] {
            if let Ok(file) = std::fs::read(self.dir.path().join(name)) {
                bytes.extend(file);
            }
        }
        StoredBytes(bytes)
    }
}

struct Cosmos {
    emulator: Emulator,
    tuning: Tuning,
}

impl Cosmos {
    fn new() -> Self {
        Self::with_tuning(Tuning::default())
    }

    /// Small shards and frequent snapshots, so that few users exercise every part of the layout.
    fn small() -> Self {
        Self::with_tuning(Tuning { users_per_shard: 16, min_records_between_snapshots: 40, ..Tuning::default() })
    }

    fn with_tuning(tuning: Tuning) -> Self {
        Self { emulator: Emulator::new(), tuning }
    }
}

#[async_trait]
impl Backend for Cosmos {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.emulator.store(self.tuning.clone(), Vec::new()).await)
    }

    /// Every document of both containers as JSON, plus every string field decoded from base64
    /// (snapshot shards and departures hold ids as raw bytes).
    async fn stored_bytes(&self) -> StoredBytes {
        use base64::Engine as _;
        let mut bytes = Vec::new();
        for container in [&self.emulator.settings.container, &self.emulator.settings.state_container] {
            for doc in self.emulator.documents(container).await {
                bytes.extend(serde_json::to_vec(&doc).unwrap());
                for value in doc.values() {
                    if let Some(decoded) =
                        value.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                    {
                        bytes.extend(decoded);
                    }
                }
            }
        }
        StoredBytes(bytes)
    }
}

macro_rules! contract {
    ($backend:ident, $new:expr, $small:expr) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn an_empty_store_knows_nobody() {
                cases::an_empty_store_knows_nobody($new).await;
            }

            #[tokio::test]
            async fn records_are_exported_oldest_first_and_state_follows() {
                cases::records_are_exported_oldest_first_and_state_follows($new).await;
            }

            #[tokio::test]
            async fn repeating_a_slot_doubles_nothing() {
                cases::repeating_a_slot_doubles_nothing($new).await;
            }

            #[tokio::test]
            async fn a_repeat_that_saw_another_value_keeps_the_stored_record() {
                cases::a_repeat_that_saw_another_value_keeps_the_stored_record($new).await;
            }

            #[tokio::test]
            async fn departed_users_stop_being_tracked_everywhere() {
                cases::departed_users_stop_being_tracked_everywhere($new).await;
            }

            #[tokio::test]
            async fn a_warm_instance_sees_what_another_instance_recorded() {
                cases::a_warm_instance_sees_what_another_instance_recorded($new).await;
            }

            #[tokio::test]
            async fn erasure_leaves_nothing_of_the_user() {
                cases::erasure_leaves_nothing_of_the_user($small).await;
            }

            #[tokio::test]
            async fn the_audit_trail_is_kept_in_order() {
                cases::the_audit_trail_is_kept_in_order($new).await;
            }

            #[tokio::test]
            async fn state_matches_a_model_over_many_runs() {
                cases::state_matches_a_model_over_many_runs($small, 120, 25).await;
            }
        }
    };
}

contract!(sqlite, Sqlite::new(), Sqlite::new());
contract!(cosmos, Cosmos::new(), Cosmos::small());

/// A file from before history was keyed by (user, slot) opens with its records, and runs go on.
#[tokio::test]
async fn an_embedded_store_keyed_by_record_id_is_migrated_with_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presence.db");
    let (a, b) = (cases::subject(1), cases::subject(2));
    let at = |run| teams_presence::store::format_timestamp(cases::observed(run));
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE history (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, availability TEXT NOT NULL,
                 timestamp TEXT NOT NULL) WITHOUT ROWID;
             CREATE INDEX history_by_user ON history (user_id, timestamp);
             CREATE INDEX history_by_time ON history (timestamp);
             CREATE TABLE last_known (user_id TEXT PRIMARY KEY, availability TEXT NOT NULL, timestamp TEXT NOT NULL)
                 WITHOUT ROWID;",
        )
        .unwrap();
        for (run, user, availability) in [(1, a, "Available"), (1, b, "Away"), (2, a, "Busy")] {
            let id = teams_presence::store::record_id(user, cases::slot(run)).to_string();
            conn.execute(
                "INSERT INTO history VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, user.to_string(), availability, at(run)],
            )
            .unwrap();
        }
        for (user, availability, run) in [(a, "Busy", 2), (b, "Away", 1)] {
            conn.execute(
                "INSERT INTO last_known VALUES (?1, ?2, ?3)",
                rusqlite::params![user.to_string(), availability, at(run)],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path, None).await.unwrap();
    let values = |records: Vec<teams_presence::model::ChangeRecord>| -> Vec<String> {
        records.iter().map(|r| r.availability.to_string()).collect()
    };
    assert_eq!(values(store.export_subject(a).await.unwrap()), ["Available", "Busy"]);
    assert_eq!(values(store.export_subject(b).await.unwrap()), ["Away"]);
    let state = store.last_known(&cases::run_context(3)).await.unwrap();
    assert_eq!(state.availability(&a).map(|v| v.as_str()), Some("Busy"));

    let outcome = store.record(&cases::run_context(3), cases::plan(3, &[(1, "Away")], &[])).await.unwrap();
    assert_eq!(outcome.written, 1);
    let again = store.record(&cases::run_context(3), cases::plan(3, &[(1, "Away")], &[])).await.unwrap();
    assert_eq!((again.written, again.already_recorded), (0, 1), "the new key makes a repeated slot idempotent");
    assert_eq!(values(store.export_subject(a).await.unwrap()), ["Available", "Busy", "Away"]);
    drop(store);
    let columns: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT name FROM pragma_table_info('history')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(columns, ["user_id", "slot", "availability", "timestamp"]);
}

/// A snapshot started while the state was small starts again at the right size when the state
/// grows a lot before it is complete, so no shard grows towards Cosmos DB's 2 MB document limit
/// (found by the RU benchmark: a 1-shard snapshot of 100,000 users was refused with 413).
#[tokio::test]
async fn a_cosmos_snapshot_in_progress_is_resized_when_the_state_grows() {
    use base64::Engine as _;
    let emulator = Emulator::new();
    let tuning = Tuning { users_per_shard: 16, min_records_between_snapshots: 40, ..Tuning::default() };
    let store = emulator.store(tuning, Vec::new()).await;
    let values = ["Available", "Away", "Busy"];
    // Run 1 (one user) starts a 1-shard snapshot; run 2 (800 users) would finish it as one shard.
    for run in 1..=4i64 {
        let users: u128 = if run == 1 { 1 } else { 800 };
        let changes: Vec<(u128, &str)> = (0..users).map(|u| (u, values[((u as i64 + run) % 3) as usize])).collect();
        store.last_known(&cases::run_context(run)).await.unwrap();
        store.record(&cases::run_context(run), cases::plan(run, &changes, &[])).await.unwrap();
    }
    let shards: Vec<(String, usize)> = emulator
        .documents(&emulator.settings.state_container.clone())
        .await
        .into_iter()
        .filter(|doc| doc["id"].as_str().is_some_and(|id| id.starts_with("snapshot-")))
        .map(|doc| {
            let data = base64::engine::general_purpose::STANDARD.decode(doc["data"].as_str().unwrap()).unwrap();
            (doc["id"].as_str().unwrap().to_string(), data.len() / 26)
        })
        .collect();
    assert!(shards.len() > 1, "{shards:?}");
    for (id, entries) in &shards {
        assert!(*entries <= 3 * 16, "shard {id} holds {entries} users: {shards:?}");
    }
    let state = emulator.store(Tuning::default(), Vec::new()).await.last_known(&cases::run_context(5)).await.unwrap();
    assert_eq!(state.len(), 800, "a cold instance rebuilds everyone");
}

/// An erasure on Cosmos DB stops at its request's deadline, so the HTTP function answers before
/// the host's timeout: out of time, it starts nothing; slowed down part-way, it gives up at the
/// deadline instead of running on. What it did not delete stays, and a repeat completes it.
#[tokio::test]
async fn a_cosmos_erasure_stops_at_its_deadline_and_a_repeat_completes_it() {
    use azure_data_cosmos::fault_injection::{
        FaultInjectionConditionBuilder, FaultInjectionResultBuilder, FaultInjectionRuleBuilder, FaultOperationType,
    };
    use teams_presence::store::{StoreError, SubjectRequest};
    let emulator = Emulator::new();
    let store = emulator.store(Tuning::default(), Vec::new()).await;
    let runs = 1..=6i64;
    for run in runs.clone() {
        let value = if run % 2 == 0 { "Away" } else { "Busy" };
        store.last_known(&cases::run_context(run)).await.unwrap();
        store.record(&cases::run_context(run), cases::plan(run, &[(1, value), (2, "Away")], &[])).await.unwrap();
    }
    let subject = cases::subject(1);
    let kept = || async { emulator.store(Tuning::default(), Vec::new()).await.export_subject(subject).await.unwrap() };

    let out_of_time = store.erase_subject(&SubjectRequest::new(std::time::Duration::ZERO), subject).await;
    assert!(matches!(out_of_time, Err(StoreError::Deadline { .. })), "{out_of_time:?}");
    assert_eq!(kept().await.len(), runs.clone().count(), "nothing was deleted");

    let slow_deletes = Arc::new(
        FaultInjectionRuleBuilder::new(
            "slow-deletes",
            FaultInjectionResultBuilder::new().with_delay(std::time::Duration::from_secs(5)).build(),
        )
        .with_condition(
            FaultInjectionConditionBuilder::new().with_operation_type(FaultOperationType::DeleteItem).build(),
        )
        .build(),
    );
    let slowed = emulator.store(Tuning::default(), vec![slow_deletes]).await;
    let started = std::time::Instant::now();
    let cut = slowed.erase_subject(&SubjectRequest::new(std::time::Duration::from_millis(300)), subject).await;
    assert!(matches!(cut, Err(StoreError::Deadline { .. })), "{cut:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "gave up at the deadline: {:?}", started.elapsed());
    assert_eq!(kept().await.len(), runs.clone().count(), "the slowed deletes were given up, not half-done");

    let erased = store.erase_subject(&cases::request(), subject).await.unwrap();
    assert_eq!((erased.history_records, erased.state_entries), (runs.clone().count(), 1));
    assert!(kept().await.is_empty());
    let neighbour = store.export_subject(cases::subject(2)).await.unwrap();
    assert_eq!(neighbour.len(), runs.count(), "the neighbour keeps their records");
}
