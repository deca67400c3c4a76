//! The embedded store: one SQLite file (WAL) holding the history and the last-known state.
//!
//! History and state advance in one transaction, so a run is recorded entirely or not at all.
//! rusqlite blocks, so every statement runs on tokio's blocking pool, never on a runtime worker.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use tracing::debug;

use super::state::Interner;
use super::{
    Known, LastKnown, RecordOutcome, RecordPlan, RightsStore, RunStore, StoreError, SubjectRequest, format_timestamp,
    parse_subject, parse_timestamp,
};
use crate::model::{ChangeRecord, Slot, SubjectId};
use crate::privacy::{AuditEntry, AuditOperation, Erasure, Retention};
use crate::run::RunContext;

/// History is keyed by (user, slot): a repeated slot finds its record, an export reads one key
/// range, and a run that writes its changes in user order touches each B-tree page once. (Keyed
/// by the random record id, a run at a million users wrote all over two trees and took 24 s for
/// 100,000 records; see BENCHMARKS.md.)
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS history (
        user_id TEXT NOT NULL,
        slot TEXT NOT NULL,
        availability TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        PRIMARY KEY (user_id, slot)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS history_by_time ON history (timestamp);
    CREATE TABLE IF NOT EXISTS last_known (
        user_id TEXT PRIMARY KEY,
        availability TEXT NOT NULL,
        timestamp TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS audit (
        id TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        at TEXT NOT NULL,
        subject TEXT NOT NULL,
        records INTEGER NOT NULL,
        state_entries INTEGER NOT NULL,
        invocation_id TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO meta (key, value) VALUES ('state_version', 0);
";

/// How long a writer waits for another process's transaction (e.g. `export` during a run).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SqliteStore {
    path: PathBuf,
    /// Records past it are deleted on open and by every run; `None` keeps everything.
    retention: Option<Retention>,
    conn: Arc<Mutex<Connection>>,
    /// The state as of `state_version`; another process writing the same file bumps the version.
    cache: Mutex<Option<Cached>>,
}

struct Cached {
    version: i64,
    state: Arc<LastKnown>,
}

/// What one recording transaction did, for the in-memory state to follow.
struct Applied {
    outcome: RecordOutcome,
    /// Changes whose slot already had a record: the state follows the stored one. Every other
    /// change was written as planned.
    stored_instead: HashMap<SubjectId, Known>,
    version_before: i64,
    version_after: i64,
    /// State rows past retention were deleted: the in-memory copy is reloaded rather than patched.
    state_purged: bool,
}

impl SqliteStore {
    pub async fn open(path: &Path, retention: Option<Retention>) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || {
            let mut conn = open_connection(&opened)?;
            // A file that saw no run for a while (a local copy, an export after downtime) must
            // not hand out records past retention either.
            if let Some(retention) = retention {
                purge(&mut conn, retention.cutoff(Utc::now()))?;
            }
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite open task failed: {e}")))?
        .map_err(|e| sqlite_error(&path, e))?;
        Ok(Self { path, retention, conn: Arc::new(Mutex::new(conn)), cache: Mutex::new(None) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let path = self.path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| StoreError::Unavailable(format!("SQLite store {path}: a previous statement panicked")))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite task failed: {e}")))?
    }

    fn cached(&self) -> Option<(i64, Arc<LastKnown>)> {
        self.cache.lock().ok()?.as_ref().map(|c| (c.version, c.state.clone()))
    }

    fn set_cache(&self, cached: Option<Cached>) {
        if let Ok(mut guard) = self.cache.lock() {
            *guard = cached;
        }
    }

    /// Follows a committed transaction in memory, or forgets the cache if another writer came
    /// between (the next run then reloads the table).
    fn follow(&self, applied: Applied, plan: &RecordPlan) {
        let Ok(mut guard) = self.cache.lock() else { return };
        match guard.take() {
            Some(mut cached) if cached.version == applied.version_before && !applied.state_purged => {
                let state = Arc::make_mut(&mut cached.state);
                for change in &plan.changes {
                    let known = applied
                        .stored_instead
                        .get(&change.subject)
                        .cloned()
                        .unwrap_or_else(|| Known { availability: change.availability.clone(), at: change.timestamp });
                    state.merge(change.subject, known);
                }
                for user in &plan.departed {
                    state.depart(user, plan.observed_at);
                }
                cached.version = applied.version_after;
                *guard = Some(cached);
            }
            _ => *guard = None,
        }
    }
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    // SQLite quietly opens a file it may not write read-only; refused here, opening fails and is
    // tried again by the next run, which then works once the file is writable (a connection
    // kept read-only would fail every run until a restart).
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("the file is not writable, so SQLite opened it read-only".into()),
        ));
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // WAL with NORMAL survives process crashes; only an OS crash can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Deleted rows (erasure, retention) are overwritten, not left in free pages of the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    migrate_history_keyed_by_id(&mut conn)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Files written before history was keyed by (user, slot) had `history(id, user_id, …)`. Their
/// rows move over with the timestamp standing in for the slot, which the old rows did not keep:
/// one record per user and run either way, so the key stays unique.
fn migrate_history_keyed_by_id(conn: &mut Connection) -> rusqlite::Result<()> {
    let has_id: bool =
        conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('history') WHERE name = 'id'", [], |r| r.get(0))?;
    if !has_id {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "ALTER TABLE history RENAME TO history_by_record_id;
         DROP INDEX IF EXISTS history_by_user;
         DROP INDEX IF EXISTS history_by_time;",
    )?;
    tx.execute_batch(SCHEMA)?;
    let moved = tx.execute(
        "INSERT OR IGNORE INTO history (user_id, slot, availability, timestamp)
         SELECT user_id, timestamp, availability, timestamp FROM history_by_record_id",
        [],
    )?;
    tx.execute_batch("DROP TABLE history_by_record_id;")?;
    tx.commit()?;
    tracing::info!(records = moved, "embedded store: history re-keyed by user and slot");
    Ok(())
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> StoreError {
    let message = match disk_problem(&e) {
        Some(problem) => format!("{e}: {problem}"),
        None => e.to_string(),
    };
    StoreError::Sqlite { path: path.display().to_string(), message }
}

/// SQLite names the symptom ("disk I/O error"); what ops should look at when the disk under the
/// file is the cause. A failed write rolls the whole run back, so each also says that nothing is
/// lost: the next run that can write records what this one saw.
fn disk_problem(e: &rusqlite::Error) -> Option<&'static str> {
    use rusqlite::ffi;
    let rusqlite::Error::SqliteFailure(failure, _) = e else { return None };
    match failure.code {
        rusqlite::ErrorCode::DiskFull => {
            Some("the disk is full; free space on the volume, the next run then records what this one missed")
        }
        rusqlite::ErrorCode::ReadOnly => Some(
            "the store is read-only for this process (the file's or its directory's permissions, or a \
             read-only volume); make it writable, the next run then records what this one missed",
        ),
        rusqlite::ErrorCode::SystemIoFailure
            if [ffi::SQLITE_IOERR_WRITE, ffi::SQLITE_IOERR_FSYNC, ffi::SQLITE_IOERR_TRUNCATE]
                .contains(&failure.extended_code) =>
        {
            Some(
                "could not write the file (a full disk, the process's file-size limit, or a failing \
                 device); once it can, the next run records what this one missed",
            )
        }
        rusqlite::ErrorCode::CannotOpen => {
            Some("could not open the file: its directory must exist and be writable by this process")
        }
        _ => None,
    }
}

/// Deletes history and state past `cutoff`; removing state bumps the state version so that
/// in-memory copies reload.
fn purge(conn: &mut Connection, cutoff: DateTime<Utc>) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let purged = purge_in(&tx, cutoff)?;
    tx.commit()?;
    if purged.any() {
        checkpoint(conn)?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, Default)]
struct Purged {
    history: usize,
    state: usize,
}

impl Purged {
    fn any(&self) -> bool {
        self.history + self.state > 0
    }
}

/// The write-ahead log still holds pages as they were before a delete; this folds it into the
/// database (where `secure_delete` zeroed the deleted rows) and empties it, so that no copy of
/// deleted rows remains. A reader in another process can make it incomplete (it never blocks
/// past the busy timeout); the next checkpoint then finishes the job.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

fn purge_in(tx: &rusqlite::Transaction<'_>, cutoff: DateTime<Utc>) -> rusqlite::Result<Purged> {
    let cutoff = format_timestamp(cutoff);
    let history = tx.prepare_cached("DELETE FROM history WHERE timestamp < ?1")?.execute([&cutoff])?;
    let state = tx.prepare_cached("DELETE FROM last_known WHERE timestamp < ?1")?.execute([&cutoff])?;
    if state > 0 {
        bump_version(tx)?;
    }
    if history + state > 0 {
        debug!(history, state, "deleted records past retention");
    }
    Ok(Purged { history, state })
}

fn bump_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("UPDATE meta SET value = value + 1 WHERE key = 'state_version' RETURNING value", [], |r| r.get(0))
}

fn read_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE key = 'state_version'", [], |row| row.get(0))
}

fn parse_operation(text: &str) -> Result<AuditOperation, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|e| StoreError::Corrupt {
        what: format!("audit operation {text:?}"),
        message: format!("{e}: expected export or erase"),
    })
}

fn load_state(conn: &Connection) -> Result<(i64, LastKnown), Failure> {
    let version = read_version(conn)?;
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM last_known", [], |r| r.get(0))?;
    let mut state = LastKnown::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut interner = Interner::default();
    let mut stmt = conn.prepare("SELECT user_id, availability, timestamp FROM last_known")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let user = parse_subject(&row.get::<_, String>(0)?)?;
        let availability = interner.intern(&row.get::<_, String>(1)?);
        let at = parse_timestamp(&row.get::<_, String>(2)?)?;
        state.set(user, Known { availability, at });
    }
    Ok((version, state))
}

fn apply_plan(
    conn: &mut Connection,
    slot: Slot,
    plan: &RecordPlan,
    retention: Option<Retention>,
) -> Result<Applied, Failure> {
    let tx = conn.transaction()?;
    let version_before = read_version(&tx)?;
    let mut outcome = RecordOutcome::default();
    let mut stored_instead = HashMap::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO history (user_id, slot, availability, timestamp) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id, slot) DO NOTHING",
        )?;
        let mut stored =
            tx.prepare_cached("SELECT availability, timestamp FROM history WHERE user_id = ?1 AND slot = ?2")?;
        // The later record wins, as in memory: repeating an old slot cannot roll the state back.
        let mut advance = tx.prepare_cached(
            "INSERT INTO last_known (user_id, availability, timestamp) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id) DO UPDATE SET availability = excluded.availability, timestamp = excluded.timestamp
             WHERE excluded.timestamp >= last_known.timestamp",
        )?;
        let slot = format_timestamp(slot.at());
        // In key order: history and last_known are both keyed by user first.
        let mut changes: Vec<&ChangeRecord> = plan.changes.iter().collect();
        changes.sort_unstable_by_key(|c| c.subject);
        for change in changes {
            let user = change.subject.to_string();
            let timestamp = format_timestamp(change.timestamp);
            if insert.execute(params![user, slot, change.availability.as_str(), timestamp])? == 1 {
                outcome.written += 1;
                advance.execute(params![user, change.availability.as_str(), timestamp])?;
            } else {
                let (availability, at): (String, String) =
                    stored.query_row([&user, &slot], |r| Ok((r.get(0)?, r.get(1)?)))?;
                outcome.already_recorded += 1;
                if availability != change.availability.as_str() {
                    outcome.superseded += 1;
                }
                advance.execute(params![user, availability, at])?;
                stored_instead.insert(
                    change.subject,
                    Known { availability: availability.as_str().into(), at: parse_timestamp(&at)? },
                );
            }
        }
        let mut depart = tx.prepare_cached("DELETE FROM last_known WHERE user_id = ?1 AND timestamp <= ?2")?;
        let departed_at = format_timestamp(plan.observed_at);
        for user in &plan.departed {
            depart.execute(params![user.to_string(), departed_at])?;
        }
    }
    // The cycle already stops tracking users whose state is past retention, so purging state
    // here normally finds nothing; when it does, the in-memory copy is reloaded.
    let purged = match retention {
        Some(retention) => purge_in(&tx, retention.cutoff(plan.observed_at))?,
        None => Purged::default(),
    };
    let version_after = bump_version(&tx)?;
    tx.commit()?;
    if purged.any() {
        checkpoint(conn)?;
    }
    Ok(Applied { outcome, stored_instead, version_before, version_after, state_purged: purged.state > 0 })
}

fn erase(conn: &mut Connection, user: SubjectId) -> rusqlite::Result<Erasure> {
    let tx = conn.transaction()?;
    let user = user.to_string();
    let history_records = tx.execute("DELETE FROM history WHERE user_id = ?1", [&user])?;
    let state_entries = tx.execute("DELETE FROM last_known WHERE user_id = ?1", [&user])?;
    // Another process holding this user in memory reloads before its next write.
    bump_version(&tx)?;
    tx.commit()?;
    checkpoint(conn)?;
    Ok(Erasure { history_records, state_entries })
}

/// A failure inside a blocking SQLite call: a statement failed, or a stored value is malformed.
enum Failure {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl Failure {
    fn at(self, path: &Path) -> StoreError {
        match self {
            Self::Sql(e) => sqlite_error(path, e),
            Self::Store(e) => e,
        }
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn last_known(&self, _run: &RunContext) -> Result<Arc<LastKnown>, StoreError> {
        let path = self.path.clone();
        let cached = self.cached();
        let current = self.blocking(move |conn| read_version(conn).map_err(|e| sqlite_error(&path, e))).await?;
        if let Some((version, state)) = cached.filter(|(version, _)| *version == current) {
            debug!(version, tracked = state.len(), "last-known state is current in memory");
            return Ok(state);
        }
        let path = self.path.clone();
        let (version, state) = self.blocking(move |conn| load_state(conn).map_err(|e| e.at(&path))).await?;
        debug!(version, tracked = state.len(), "loaded the last-known state");
        let state = Arc::new(state);
        self.set_cache(Some(Cached { version, state: state.clone() }));
        Ok(state)
    }

    async fn record(&self, run: &RunContext, plan: RecordPlan) -> Result<RecordOutcome, StoreError> {
        let slot = run.slot;
        let path = self.path.clone();
        let retention = self.retention;
        // The plan goes to the blocking pool and comes back: at a million first sightings a
        // copy would be ~50 MB.
        let applied = self
            .blocking(move |conn| {
                let applied = apply_plan(conn, slot, &plan, retention).map_err(|e| e.at(&path))?;
                Ok((applied, plan))
            })
            .await;
        let (applied, plan) = match applied {
            Ok(applied) => applied,
            Err(e) => {
                self.set_cache(None);
                return Err(e);
            }
        };
        let outcome = applied.outcome;
        debug!(
            written = outcome.written,
            already_recorded = outcome.already_recorded,
            departed = plan.departed.len(),
            "recorded"
        );
        self.follow(applied, &plan);
        Ok(outcome)
    }

    fn describe(&self) -> String {
        format!("embedded SQLite file {}", self.path.display())
    }
}

#[async_trait]
impl RightsStore for SqliteStore {
    async fn export_subject(&self, user: SubjectId) -> Result<Vec<ChangeRecord>, StoreError> {
        let path = self.path.clone();
        self.blocking(move |conn| {
            let rows: Vec<(String, String)> = conn
                .prepare_cached(
                    "SELECT availability, timestamp FROM history WHERE user_id = ?1 ORDER BY timestamp, slot",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([user.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()
                })
                .map_err(|e| sqlite_error(&path, e))?;
            rows.into_iter()
                .map(|(availability, at)| {
                    Ok(ChangeRecord {
                        subject: user,
                        availability: availability.as_str().into(),
                        timestamp: parse_timestamp(&at)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// One transaction, which SQLite cannot stop half-way: the request's deadline does not apply.
    async fn erase_subject(&self, _request: &SubjectRequest, user: SubjectId) -> Result<Erasure, StoreError> {
        let path = self.path.clone();
        let erased = self.blocking(move |conn| erase(conn, user).map_err(|e| sqlite_error(&path, e))).await;
        self.set_cache(None);
        erased
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let path = self.path.clone();
        let entry = entry.clone();
        self.blocking(move |conn| {
            conn.execute(
                "INSERT INTO audit (id, operation, at, subject, records, state_entries, invocation_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.id,
                    entry.operation.as_str(),
                    format_timestamp(entry.at),
                    entry.subject,
                    entry.records as i64,
                    entry.state_entries as i64,
                    entry.invocation_id
                ],
            )
            .map(drop)
            .map_err(|e| sqlite_error(&path, e))
        })
        .await
    }

    async fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let path = self.path.clone();
        self.blocking(move |conn| {
            let rows: Vec<(String, String, String, String, i64, i64, String)> = conn
                .prepare_cached(
                    "SELECT id, operation, at, subject, records, state_entries, invocation_id FROM audit ORDER BY at, id",
                )
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                    })?
                    .collect::<Result<_, _>>()
                })
                .map_err(|e| sqlite_error(&path, e))?;
            rows.into_iter()
                .map(|(id, operation, at, subject, records, state_entries, invocation_id)| {
                    Ok(AuditEntry {
                        operation: parse_operation(&operation)?,
                        at: parse_timestamp(&at)?,
                        id,
                        subject,
                        records: usize::try_from(records).unwrap_or(0),
                        state_entries: usize::try_from(state_entries).unwrap_or(0),
                        invocation_id,
                    })
                })
                .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn failure(extended_code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(extended_code), None)
    }

    #[test]
    fn disk_failures_name_the_path_the_symptom_and_what_to_do() {
        let path = Path::new("/data/presence.db");
        let cases = [
            (ffi::SQLITE_FULL, "the disk is full"),
            (ffi::SQLITE_READONLY, "read-only for this process"),
            (ffi::SQLITE_IOERR_WRITE, "could not write the file"),
            (ffi::SQLITE_CANTOPEN, "directory must exist and be writable"),
        ];
        for (code, problem) in cases {
            let message = sqlite_error(path, failure(code)).to_string();
            assert!(message.starts_with("SQLite store /data/presence.db: "), "{message}");
            assert!(message.contains(problem), "{message}");
        }
        // A file SQLite can only read is refused at open, whatever the schema statements do.
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("presence.db");
        drop(open_connection(&db).unwrap());
        let read_only = std::path::PathBuf::from(format!("file:{}?mode=ro", db.display()));
        let message = open_connection(&read_only).map(drop).map_err(|e| sqlite_error(&db, e)).unwrap_err().to_string();
        assert!(message.contains("not writable, so SQLite opened it read-only"), "{message}");
        // Other failures keep SQLite's words alone.
        let message = sqlite_error(path, failure(ffi::SQLITE_IOERR_READ)).to_string();
        assert_eq!(message, "SQLite store /data/presence.db: Error code 266: Error reading from disk");
    }
}
