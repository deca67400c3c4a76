//! The store contracts: cases every store must pass, through both its `RunStore` and its
//! `RightsStore`, written once against a backend that can open any number of store instances over
//! the same data (one per "process").

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rand::{RngExt, SeedableRng};
use teams_presence::model::{Availability, ChangeRecord, Slot, SubjectId, UserId};
use teams_presence::privacy::Subjects;
use teams_presence::run::RunContext;
use teams_presence::store::{LastKnown, RecordPlan, Store, SubjectRequest};

#[async_trait]
pub trait Backend: Send + Sync {
    /// A new store instance over the backend's data, as a freshly started process opens it.
    async fn open(&self) -> Arc<dyn Store>;

    /// All the backend holds (files, documents, decoded binary fields).
    async fn stored_bytes(&self) -> StoredBytes;
}

pub fn slot(run: i64) -> Slot {
    Slot::new(Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap() + TimeDelta::minutes(5 * run))
}

pub fn observed(run: i64) -> DateTime<Utc> {
    slot(run).at() + TimeDelta::milliseconds(1_250)
}

pub fn run_context(run: i64) -> RunContext {
    RunContext::new(format!("contract-{run}"), slot(run), Duration::from_secs(120))
}

/// A data-subject request with the time an erasure normally has.
pub fn request() -> SubjectRequest {
    SubjectRequest::new(Duration::from_secs(120))
}

pub fn user(n: u128) -> UserId {
    // Spread like real object ids, so users fall into different shards.
    UserId::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ 0x4000_8000)
}

/// How [`user`] `n` is stored without a pseudonym key: what the stores are handed.
pub fn subject(n: u128) -> SubjectId {
    Subjects::plain().stored_id(user(n))
}

pub fn plan(run: i64, changes: &[(u128, &str)], departed: &[u128]) -> RecordPlan {
    RecordPlan {
        changes: changes
            .iter()
            .map(|&(u, a)| ChangeRecord {
                subject: subject(u),
                availability: Availability::from(a),
                timestamp: observed(run),
            })
            .collect(),
        departed: departed.iter().map(|&u| subject(u)).collect(),
        observed_at: observed(run),
    }
}

async fn availability(store: &dyn Store, run: i64, u: u128) -> Option<String> {
    store.last_known(&run_context(run)).await.unwrap().availability(&subject(u)).map(|a| a.to_string())
}

async fn history(store: &dyn Store, u: u128) -> Vec<(String, DateTime<Utc>)> {
    store
        .export_subject(subject(u))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.availability.to_string(), r.timestamp))
        .collect()
}

pub async fn an_empty_store_knows_nobody(backend: impl Backend) {
    let store = backend.open().await;
    assert!(store.last_known(&run_context(0)).await.unwrap().is_empty());
    assert!(store.export_subject(subject(1)).await.unwrap().is_empty());
}

pub async fn records_are_exported_oldest_first_and_state_follows(backend: impl Backend) {
    let store = backend.open().await;
    for (run, changes) in [(2, vec![(1, "Busy")]), (1, vec![(1, "Available"), (2, "Away")])] {
        store.last_known(&run_context(run)).await.unwrap();
        let outcome = store.record(&run_context(run), plan(run, &changes, &[])).await.unwrap();
        assert_eq!(outcome.written, changes.len());
    }
    assert_eq!(history(&*store, 1).await, [("Available".into(), observed(1)), ("Busy".into(), observed(2))]);
    assert_eq!(history(&*store, 2).await, [("Away".into(), observed(1))]);
    // Recorded out of order, the later record still wins.
    assert_eq!(availability(&*store, 3, 1).await.as_deref(), Some("Busy"));
    let cold = backend.open().await;
    assert_eq!(availability(&*cold, 3, 1).await.as_deref(), Some("Busy"));
    assert_eq!(availability(&*cold, 3, 2).await.as_deref(), Some("Away"));
}

pub async fn repeating_a_slot_doubles_nothing(backend: impl Backend) {
    let store = backend.open().await;
    let first = plan(1, &[(1, "Available"), (2, "Away")], &[]);
    store.last_known(&run_context(1)).await.unwrap();
    store.record(&run_context(1), first.clone()).await.unwrap();
    // A repeat of the slot by another process: same ids, conflicts count as success.
    let other = backend.open().await;
    other.last_known(&run_context(1)).await.unwrap();
    let again = other.record(&run_context(1), first).await.unwrap();
    assert_eq!((again.written, again.already_recorded, again.superseded), (0, 2, 0));
    assert_eq!(history(&*store, 1).await.len(), 1);
    assert_eq!(history(&*store, 2).await.len(), 1);
}

pub async fn a_repeat_that_saw_another_value_keeps_the_stored_record(backend: impl Backend) {
    let store = backend.open().await;
    store.last_known(&run_context(1)).await.unwrap();
    store.record(&run_context(1), plan(1, &[(1, "Available")], &[])).await.unwrap();
    let repeat = backend.open().await;
    repeat.last_known(&run_context(1)).await.unwrap();
    let outcome = repeat.record(&run_context(1), plan(1, &[(1, "Busy")], &[])).await.unwrap();
    assert_eq!((outcome.written, outcome.already_recorded, outcome.superseded), (0, 1, 1));
    // The state reflects what is stored, so the next run records the change: never lost.
    assert_eq!(availability(&*repeat, 2, 1).await.as_deref(), Some("Available"));
    assert_eq!(availability(&*backend.open().await, 2, 1).await.as_deref(), Some("Available"));
    let next = repeat.record(&run_context(2), plan(2, &[(1, "Busy")], &[])).await.unwrap();
    assert_eq!(next.written, 1);
    assert_eq!(history(&*repeat, 1).await, [("Available".into(), observed(1)), ("Busy".into(), observed(2))]);
}

pub async fn departed_users_stop_being_tracked_everywhere(backend: impl Backend) {
    let store = backend.open().await;
    store.last_known(&run_context(1)).await.unwrap();
    store.record(&run_context(1), plan(1, &[(1, "Available"), (2, "Away")], &[])).await.unwrap();
    store.last_known(&run_context(2)).await.unwrap();
    store.record(&run_context(2), plan(2, &[], &[2])).await.unwrap();
    assert_eq!(availability(&*store, 3, 2).await, None);
    assert_eq!(availability(&*backend.open().await, 3, 2).await, None, "a cold instance agrees");
    assert_eq!(history(&*store, 2).await.len(), 1, "history stays");
    // Back in scope: a first sighting again.
    store.record(&run_context(3), plan(3, &[(2, "Away")], &[])).await.unwrap();
    assert_eq!(availability(&*backend.open().await, 4, 2).await.as_deref(), Some("Away"));
}

pub async fn a_warm_instance_sees_what_another_instance_recorded(backend: impl Backend) {
    let a = backend.open().await;
    let b = backend.open().await;
    a.last_known(&run_context(1)).await.unwrap();
    a.record(&run_context(1), plan(1, &[(1, "Available")], &[])).await.unwrap();
    b.last_known(&run_context(2)).await.unwrap();
    b.record(&run_context(2), plan(2, &[(1, "Away")], &[])).await.unwrap();
    assert_eq!(availability(&*a, 3, 1).await.as_deref(), Some("Away"));
}

/// Many runs with random changes, departures and returns: after every run, the warm state, a
/// cold instance's state and a model agree, and history holds exactly the model's records.
pub async fn state_matches_a_model_over_many_runs(backend: impl Backend, users: u128, runs: i64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let values = ["Available", "Away", "Busy", "DoNotDisturb", "Offline", "BeRightBack"];
    let warm = backend.open().await;
    let mut model: std::collections::HashMap<u128, &str> = Default::default();
    let mut expected_records = 0usize;
    for run in 1..=runs {
        warm.last_known(&run_context(run)).await.unwrap();
        let mut changes = Vec::new();
        let mut departed = Vec::new();
        for u in 0..users {
            match model.get(&u) {
                None if rng.random_bool(0.9) => changes.push((u, values[rng.random_range(0..values.len())])),
                Some(_) if rng.random_bool(0.01) => departed.push(u),
                Some(current) if rng.random_bool(0.1) => {
                    let next =
                        values.iter().copied().find(|v| v != current && rng.random_bool(0.5)).unwrap_or("Offline");
                    if next != *current {
                        changes.push((u, next));
                    }
                }
                _ => {}
            }
        }
        let outcome = warm.record(&run_context(run), plan(run, &changes, &departed)).await.unwrap();
        assert_eq!(outcome.written, changes.len());
        expected_records += changes.len();
        for u in &departed {
            model.remove(u);
        }
        for (u, v) in &changes {
            model.insert(*u, v);
        }
        let mut expected = LastKnown::default();
        for (u, v) in &model {
            let known = warm.last_known(&run_context(run + 1)).await.unwrap();
            let at = known.get(&subject(*u)).map(|k| k.at).unwrap_or(DateTime::UNIX_EPOCH);
            expected.set(subject(*u), teams_presence::store::Known { availability: Availability::from(*v), at });
        }
        let warm_state = warm.last_known(&run_context(run + 1)).await.unwrap();
        assert_eq!(*warm_state, expected, "warm state after run {run}");
        if run % 5 == 0 || run == runs {
            let cold_state = backend.open().await.last_known(&run_context(run + 1)).await.unwrap();
            assert_eq!(*cold_state, expected, "cold state after run {run}");
        }
    }
    let mut total = 0;
    for u in 0..users {
        total += warm.export_subject(subject(u)).await.unwrap().len();
    }
    assert_eq!(total, expected_records);
}

/// Erasure removes the user from history and from every piece of state, in this instance, in a
/// warm instance that held them in memory, and in storage itself; everyone else is untouched.
pub async fn erasure_leaves_nothing_of_the_user(backend: impl Backend) {
    let store = backend.open().await;
    let values = ["Available", "Away", "Busy"];
    let mut expected_records = 0;
    for run in 1..=12i64 {
        // Everyone changes every run, so (with small shards) snapshots are written to both banks;
        // user 7 also leaves at run 5 and comes back at run 6, so they are in the departures too.
        let changes: Vec<(u128, &str)> = (0..40u128)
            .filter(|&u| !(u == 7 && run == 5))
            .map(|u| (u, values[((u as i64 + run) % 3) as usize]))
            .collect();
        expected_records += usize::from(run != 5);
        let departed: &[u128] = if run == 5 { &[7] } else { &[] };
        store.last_known(&run_context(run)).await.unwrap();
        store.record(&run_context(run), plan(run, &changes, departed)).await.unwrap();
    }
    let warm_elsewhere = backend.open().await;
    assert!(warm_elsewhere.last_known(&run_context(13)).await.unwrap().get(&subject(7)).is_some());
    let neighbour_before = history(&*store, 8).await;
    assert!(backend.stored_bytes().await.contains_subject(subject(7)), "the check below is not vacuous");

    let erased = store.erase_subject(&request(), subject(7)).await.unwrap();
    assert_eq!((erased.history_records, erased.state_entries), (expected_records, 1));

    assert!(store.export_subject(subject(7)).await.unwrap().is_empty());
    assert_eq!(availability(&*store, 13, 7).await, None, "this instance");
    assert_eq!(availability(&*warm_elsewhere, 13, 7).await, None, "a warm instance reloads");
    assert_eq!(availability(&*backend.open().await, 13, 7).await, None, "a cold instance");
    assert!(!backend.stored_bytes().await.contains_subject(subject(7)), "the id is nowhere in storage");
    assert_eq!(history(&*store, 8).await, neighbour_before, "other users keep their history");
    assert_eq!(availability(&*backend.open().await, 13, 8).await.as_deref(), Some(values[((8 + 12) % 3) as usize]));

    let again = store.erase_subject(&request(), subject(7)).await.unwrap();
    assert_eq!((again.history_records, again.state_entries), (0, 0), "a repeated erasure is harmless");
    // A later run that still sees the user records them as a first sighting.
    warm_elsewhere.last_known(&run_context(14)).await.unwrap();
    let outcome = warm_elsewhere.record(&run_context(14), plan(14, &[(7, "Away")], &[])).await.unwrap();
    assert_eq!(outcome.written, 1);
    assert_eq!(history(&*store, 7).await, [("Away".into(), observed(14))]);
}

pub async fn the_audit_trail_is_kept_in_order(backend: impl Backend) {
    use teams_presence::privacy::{AuditEntry, AuditOperation};
    let store = backend.open().await;
    let entry = |n: i64, operation| AuditEntry {
        id: format!("00000000-0000-4000-8000-00000000000{n}"),
        operation,
        at: observed(n),
        subject: format!("{n:032x}"),
        records: n as usize * 10,
        state_entries: 1,
        invocation_id: format!("inv-{n}"),
    };
    store.append_audit(&entry(2, AuditOperation::Erase)).await.unwrap();
    store.append_audit(&entry(1, AuditOperation::Export)).await.unwrap();
    assert_eq!(
        backend.open().await.audit_trail().await.unwrap(),
        [entry(1, AuditOperation::Export), entry(2, AuditOperation::Erase)]
    );
}

/// Everything a backend stores, as bytes, to search for traces of a person.
pub struct StoredBytes(pub Vec<u8>);

impl StoredBytes {
    /// The object id as text (any case, with or without hyphens) or as its 16 raw bytes.
    pub fn contains_user(&self, id: UserId) -> bool {
        self.contains_id(id.expose_object_id())
    }

    /// The stored id (the pseudonym, or the object id without a key), in the same forms.
    pub fn contains_subject(&self, id: SubjectId) -> bool {
        self.contains_id(id.as_uuid())
    }

    pub fn contains_id(&self, id: uuid::Uuid) -> bool {
        let text = String::from_utf8_lossy(&self.0).to_ascii_lowercase();
        let forms = [id.hyphenated().to_string(), id.simple().to_string()];
        forms.iter().any(|f| text.contains(f.as_str())) || self.0.windows(16).any(|w| w == id.as_bytes())
    }
}
