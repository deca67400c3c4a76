//! Where history lives: Azure Cosmos DB for NoSQL, or an embedded SQLite file for local runs.
//!
//! Both stores keep the same two things: the history (one record per availability change, exactly
//! `userId`, `availability`, `timestamp` plus a deterministic id) and the last-known availability
//! of every tracked user, so that a run only compares and writes changes. The layout and its costs
//! are described in `docs/storage.md`.
//!
//! Each store offers two contracts: [`RunStore`], what a poll run needs, and [`RightsStore`], what
//! a data subject's rights need. Users are known here only by their [`SubjectId`]: no function of
//! this module takes or returns an object id.

pub mod cosmos;
pub mod sqlite;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::time::Instant;

use crate::config::StoreSettings;
use crate::model::{ChangeRecord, Slot, SubjectId};
use crate::privacy::{AuditEntry, Erasure, Retention};
use crate::run::RunContext;
pub use state::{Known, LastKnown};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("SQLite store {path}: {message}")]
    Sqlite { path: String, message: String },
    #[error("Cosmos DB {operation} failed: {message}")]
    Cosmos { operation: &'static str, message: String },
    #[error("stored data is not in the expected shape ({what}): {message}")]
    Corrupt { what: String, message: String },
    #[error("the run deadline was reached while {operation}")]
    Deadline { operation: &'static str },
}

/// What one run asks the store to persist.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordPlan {
    /// New history records, at most one per user.
    pub changes: Vec<ChangeRecord>,
    /// Users who left scope: their last-known state is dropped (their history stays).
    pub departed: Vec<SubjectId>,
    /// The run's observation time; departures are dated with it.
    pub observed_at: DateTime<Utc>,
}

/// What [`RunStore::record`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    /// Records created by this call.
    pub written: usize,
    /// Records whose deterministic id already existed (a repeated run of the same slot). The
    /// stored record stands, and the last-known state follows the stored value.
    pub already_recorded: usize,
    /// Of `already_recorded`, those whose stored availability differs from the one this run saw:
    /// the difference is recorded by a later run.
    pub superseded: usize,
}

/// What a run needs of the store: the last-known state to compare with, and a place to record
/// what changed. The poll cycle holds only this; a run ledger (which runs happened, with their
/// figures) would join it.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// The last recorded availability of every tracked user.
    ///
    /// A warm store answers from memory after a cheap check that nobody else advanced the state.
    async fn last_known(&self, run: &RunContext) -> Result<Arc<LastKnown>, StoreError>;

    /// Writes the history records of `run.slot`, then advances the last-known state.
    ///
    /// Record ids are derived from (user, slot), so repeating a slot never doubles a record. When
    /// this fails part-way, what was written stays and the next run completes the rest.
    async fn record(&self, run: &RunContext, plan: RecordPlan) -> Result<RecordOutcome, StoreError>;

    /// Human-readable description of where the data is.
    fn describe(&self) -> String;
}

/// What a data subject's rights need of the store: their records (access, portability), their
/// erasure, and the audit trail of both. Restriction of processing (an opt-out list the runs
/// honour) belongs here too when it comes, with the read a run needs of it on [`RunStore`].
#[async_trait]
pub trait RightsStore: Send + Sync {
    /// One subject's records, oldest first.
    async fn export_subject(&self, subject: SubjectId) -> Result<Vec<ChangeRecord>, StoreError>;

    /// Deletes every history record and the last-known state of `subject`. Another instance's
    /// in-memory state is invalidated too, so nothing of them is written back from memory; a
    /// later run records them again only if they are still in scope. Work that would go past
    /// `request.deadline` is given up (Cosmos DB): what was deleted stays deleted, and repeating
    /// the request completes it.
    async fn erase_subject(&self, request: &SubjectRequest, subject: SubjectId) -> Result<Erasure, StoreError>;

    /// Appends one entry to the audit trail of data-subject requests (kept beyond retention).
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;

    /// The audit trail, oldest first.
    async fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError>;
}

/// Both contracts over the same data: what [`open`] returns, for the caller to keep the one it
/// needs (`Arc<dyn Store>` coerces to `Arc<dyn RunStore>` or `Arc<dyn RightsStore>`).
pub trait Store: RunStore + RightsStore {}

impl<T: RunStore + RightsStore> Store for T {}

/// One data-subject request as the store sees it: until when its work may go on. (A run's
/// context is a [`RunContext`]; a request is not a run and has no slot or run figures.)
#[derive(Clone, Copy, Debug)]
pub struct SubjectRequest {
    pub deadline: Instant,
}

impl SubjectRequest {
    pub fn new(budget: Duration) -> Self {
        Self { deadline: Instant::now() + budget }
    }
}

/// Opens the configured store. `credential` is the managed identity shared with Graph; Cosmos DB
/// needs it unless an emulator key is configured.
///
/// Retention: the embedded store deletes records past `retention` itself (on open and on every
/// run); Cosmos DB expires them through the history container's default TTL, which the
/// deployment template sets from the same setting.
pub async fn open(
    settings: &StoreSettings,
    retention: Retention,
    credential: Option<Arc<dyn TokenCredential>>,
) -> Result<Arc<dyn Store>, StoreError> {
    match settings {
        StoreSettings::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path, Some(retention)).await?)),
        StoreSettings::Cosmos(cosmos) => Ok(Arc::new(cosmos::CosmosStore::connect(cosmos, credential).await?)),
    }
}

/// The id of the record of `user` in `slot`: the same on every retry or repeat of that slot.
pub fn record_id(user: SubjectId, slot: Slot) -> uuid::Uuid {
    let mut name = Vec::with_capacity(16 + 25);
    name.extend_from_slice(user.as_bytes());
    name.extend_from_slice(slot.to_string().as_bytes());
    uuid::Uuid::new_v5(&RECORD_ID_NAMESPACE, &name)
}

/// Namespace of record ids (a fixed random UUID: changing it would break idempotence).
const RECORD_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("5f0b6a3e-3c9e-4d52-9a43-0e6f1f3b8c21");

/// Timestamps are stored as RFC 3339 UTC with milliseconds, so that text order is time order.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A stored subject id read back; the error names the value (a stored id, not a typed one).
pub fn parse_subject(text: &str) -> Result<SubjectId, StoreError> {
    SubjectId::parse_stored(text)
        .map_err(|e| StoreError::Corrupt { what: format!("user id {text:?}"), message: e.to_string() })
}

pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::Corrupt {
        what: format!("timestamp {text:?}"),
        message: format!("{e}: expected RFC 3339 such as 2025-01-31T12:05:00.000Z"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn record_ids_depend_on_user_and_slot_only() {
        let user = SubjectId::from_u128(7);
        let slot = Slot::new(Utc.with_ymd_and_hms(2025, 1, 31, 12, 5, 0).unwrap());
        let later = Slot::new(Utc.with_ymd_and_hms(2025, 1, 31, 12, 10, 0).unwrap());
        assert_eq!(record_id(user, slot), record_id(user, slot));
        assert_ne!(record_id(user, slot), record_id(user, later));
        assert_ne!(record_id(user, slot), record_id(SubjectId::from_u128(8), slot));
    }

    #[test]
    fn timestamps_round_trip_and_sort_as_text() {
        let a = Utc.with_ymd_and_hms(2025, 1, 31, 9, 5, 0).unwrap();
        let b = a + chrono::Duration::milliseconds(1);
        assert_eq!(parse_timestamp(&format_timestamp(a)).unwrap(), a);
        assert!(format_timestamp(a) < format_timestamp(b));
        assert!(parse_timestamp("yesterday").unwrap_err().to_string().contains("\"yesterday\""));
    }
}
