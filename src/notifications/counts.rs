//! Where the receiver keeps its counts: one number per plan, version, event and day, and, for
//! [`RECEIPT_TTL`], the receipts that make a retried delivery count once.
//!
//! Two places, one contract ([`InstallCounts`]): an embedded SQLite file for local runs and tests
//! ([`SqliteCounts`]), and Cosmos DB for NoSQL serverless in Azure ([`super::cosmos::CosmosCounts`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::event::{CountKey, InstallEvent};

/// Azure retries a notification for up to 10 hours (publish-notifications, "Notification
/// retries"); a receipt is kept four times that long, then deleted.
pub const RECEIPT_TTL: Duration = Duration::from_secs(48 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("the count store {0} cannot be opened: {1}")]
    Open(String, String),
    #[error("the count store failed to {0}: {1}")]
    Io(&'static str, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Counted,
    /// A retry of a notification already counted: nothing changed.
    Duplicate,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CountRow {
    #[serde(flatten)]
    pub key: CountKey,
    pub count: u64,
}

#[async_trait]
pub trait InstallCounts: Send + Sync {
    /// Counts the event once, however often it is delivered within [`RECEIPT_TTL`].
    async fn record(&self, event: &InstallEvent, now: DateTime<Utc>) -> Result<Recorded, CountError>;
    /// Every count, ordered by day, plan, version, event.
    async fn counts(&self) -> Result<Vec<CountRow>, CountError>;
    /// Where the counts are, for logs and `install-notifications counts`.
    fn describe(&self) -> String;
}

/// The embedded store: `counts(plan, version, event, day, count)` and
/// `receipts(receipt, expires)`, one transaction per notification.
pub struct SqliteCounts {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl SqliteCounts {
    pub fn open(path: &Path) -> Result<Self, CountError> {
        let open_error = |e: rusqlite::Error| CountError::Open(path.display().to_string(), e.to_string());
        let connection = Connection::open(path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA secure_delete = ON;
                 CREATE TABLE IF NOT EXISTS counts (
                     plan TEXT NOT NULL, version TEXT NOT NULL, event TEXT NOT NULL, day TEXT NOT NULL,
                     count INTEGER NOT NULL, PRIMARY KEY (plan, version, event, day));
                 CREATE TABLE IF NOT EXISTS receipts (receipt TEXT PRIMARY KEY, expires TEXT NOT NULL);",
            )
            .map_err(open_error)?;
        Ok(Self { path: path.to_path_buf(), connection: Mutex::new(connection) })
    }

    fn with<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
        what: &'static str,
    ) -> Result<T, CountError> {
        let mut connection =
            self.connection.lock().map_err(|_| CountError::Io(what, "a previous write panicked".into()))?;
        work(&mut connection).map_err(|e| CountError::Io(what, e.to_string()))
    }
}

#[async_trait]
impl InstallCounts for SqliteCounts {
    async fn record(&self, event: &InstallEvent, now: DateTime<Utc>) -> Result<Recorded, CountError> {
        let expires = now + RECEIPT_TTL;
        self.with(
            |c| {
                let tx = c.transaction()?;
                tx.execute("DELETE FROM receipts WHERE expires <= ?1", params![now.to_rfc3339()])?;
                let seen: Option<String> = tx
                    .query_row(
                        "SELECT receipt FROM receipts WHERE receipt = ?1",
                        params![event.receipt.as_str()],
                        |r| r.get(0),
                    )
                    .optional()?;
                if seen.is_some() {
                    tx.commit()?;
                    return Ok(Recorded::Duplicate);
                }
                tx.execute(
                    "INSERT INTO receipts (receipt, expires) VALUES (?1, ?2)",
                    params![event.receipt.as_str(), expires.to_rfc3339()],
                )?;
                let k = &event.key;
                tx.execute(
                    "INSERT INTO counts (plan, version, event, day, count) VALUES (?1, ?2, ?3, ?4, 1)
                     ON CONFLICT (plan, version, event, day) DO UPDATE SET count = count + 1",
                    params![k.plan, k.version, k.event, k.day.to_string()],
                )?;
                tx.commit()?;
                Ok(Recorded::Counted)
            },
            "record a notification",
        )
    }

    async fn counts(&self) -> Result<Vec<CountRow>, CountError> {
        self.with(
            |c| {
                let mut statement = c.prepare(
                    "SELECT plan, version, event, day, count FROM counts ORDER BY day, plan, version, event",
                )?;
                let rows = statement.query_map([], |r| {
                    let day: String = r.get(3)?;
                    let day = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
                    })?;
                    Ok(CountRow {
                        key: CountKey { plan: r.get(0)?, version: r.get(1)?, event: r.get(2)?, day },
                        count: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })?;
                rows.collect()
            },
            "read the counts",
        )
    }

    fn describe(&self) -> String {
        format!("SQLite file {}", self.path.display())
    }
}
