//! Azure Cosmos DB for NoSQL: history partitioned by user, plus a small state container.
//!
//! - History (`/userId`): one document per change, exactly `id`, `userId`, `availability`,
//!   `timestamp`. The id is derived from (user, slot), so a retried write conflicts instead of
//!   doubling; a conflict counts as success and the stored document stands.
//! - State (`/id`): a `head` document and two banks of snapshot shards. The last-known state is
//!   the current bank's shards plus every history record dated after the snapshot (less a margin),
//!   minus the departures listed in the head. A warm instance keeps it in memory and only reads
//!   the head (~1 RU) to check that nobody else advanced it; after writing a run's records it
//!   replaces the head with `If-Match`. Shards are rewritten, into the other bank, only once as
//!   many records as tracked users have accumulated since the last snapshot, and then a few per
//!   run over [`SNAPSHOT_RUNS`] runs (the head tracks the progress; the other bank stays the one
//!   loaded until the last shard is in), so that every run costs its record writes plus a small
//!   share. See `docs/storage.md` for the figures.
//!
//! The SDK already retries 429 (honouring `x-ms-retry-after-ms`) and 503/408/410 with its own
//! budgets; this module does not add a second retry loop. It makes retries safe instead.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{Etag, StatusCode};
use azure_data_cosmos::clients::ContainerClient;
use azure_data_cosmos::diagnostics::DiagnosticsContext;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosClientBuilder, CosmosError, FeedScope, Query,
    RoutingStrategy,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};
use url::Url;

use super::state::Interner;
use super::{
    Known, LastKnown, RecordOutcome, RecordPlan, RightsStore, RunStore, StoreError, SubjectRequest, format_timestamp,
    parse_subject, parse_timestamp, record_id,
};
use crate::config::CosmosSettings;
use crate::model::{ChangeRecord, Slot, SubjectId};
use crate::privacy::{AuditEntry, Erasure};
use crate::run::{RunContext, RunMetrics};
use crate::spans;

const HEAD_ID: &str = "head";
/// The audit trail of data-subject requests: one small document, appended with `If-Match`
/// (requests are rare; 2 MB holds about ten thousand entries).
const AUDIT_ID: &str = "audit";
/// Attempts at an optimistic update (head or audit) that another writer keeps getting ahead of.
const OPTIMISTIC_ATTEMPTS: usize = 5;
/// Runs a snapshot rewrite is spread over: at 10% changes a run's records cost ~0.7 RU per
/// tracked user and a whole snapshot ~0.33, so an eighth of it adds about 5% to a run (4.3%
/// measured; issue 8: every run within 1.1 x its record writes + 50 RU).
pub const SNAPSHOT_RUNS: u32 = 8;

/// Sizes and thresholds of the state layout. The defaults are what production uses; tests may
/// shrink them to exercise many shards with few users.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// Record writes in flight at once.
    pub write_concurrency: usize,
    /// Mean users per snapshot shard. 1,700 users x 26 bytes, base64-encoded, stay below 64 KiB
    /// even for an unlucky shard: Cosmos charges writes by size in power-of-two KiB steps.
    pub users_per_shard: usize,
    /// A snapshot is rewritten once this many records (at least) have been written since the
    /// last one, and also once as many as there are tracked users.
    pub min_records_between_snapshots: u64,
    /// Departures listed in the head before a snapshot absorbs them (keeps the head under 1 KiB).
    pub max_departures_in_head: usize,
    /// Records this much older than the snapshot are read again on a cold start, so that a
    /// record written by an overlapping run on another instance is not missed.
    pub snapshot_margin: TimeDelta,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            write_concurrency: 32,
            users_per_shard: 1_700,
            min_records_between_snapshots: 500,
            max_departures_in_head: 24,
            snapshot_margin: TimeDelta::minutes(15),
        }
    }
}

pub struct CosmosStore {
    history: ContainerClient,
    state: ContainerClient,
    description: String,
    tuning: Tuning,
    warm: Mutex<Option<Warm>>,
    /// What the dependency spans name: account endpoint, database and container names.
    endpoint: Url,
    database: String,
    history_name: String,
    state_name: String,
}

/// Which container an operation is on, for its dependency span.
#[derive(Clone, Copy)]
enum On {
    History,
    State,
}

/// The state as of one head version.
#[derive(Clone)]
struct Warm {
    head: Option<(Head, Etag)>,
    state: Arc<LastKnown>,
    /// Loaded from storage for the run about to record: that run already paid for the shards
    /// and records it read, so it leaves snapshot writing to the next run.
    loaded: bool,
}

/// The state container's entry point. Small on purpose: it is read on every run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Head {
    id: String,
    snap: SnapshotRef,
    /// Records written since the snapshot.
    since: u64,
    /// Departures since the snapshot: base64 of (user id, unix ms) pairs.
    gone: String,
    /// A snapshot being written into the other bank, a few shards per run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<NextSnapshot>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct NextSnapshot {
    bank: u8,
    shards: u32,
    /// Shards `0..written` of `bank` hold this snapshot; the rest still hold an older one.
    written: u32,
    /// Observation time of the run that wrote the first shard: later shards are newer, and the
    /// records since it bring every shard up to date on a cold start.
    through: String,
    /// Records written since `through`, which become the head's `since` when it completes.
    since: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SnapshotRef {
    /// Which bank holds the current snapshot: 0 or 1; the other is rewritten next.
    bank: u8,
    shards: u32,
    /// Shards of the other bank, deleted beyond the new count when it is rewritten.
    other_shards: u32,
    /// Observation time of the run the snapshot was taken at.
    through: String,
}

#[derive(Serialize, Deserialize)]
struct ShardDoc {
    id: String,
    /// The distinct availability values of this shard; entries refer to them by index.
    values: Vec<String>,
    /// base64 of fixed-size entries: user id (16 bytes), value index (u16 LE), unix ms (i64 LE).
    data: String,
}

const SHARD_ENTRY: usize = 16 + 2 + 8;
const GONE_ENTRY: usize = 16 + 8;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryDoc {
    id: String,
    user_id: String,
    availability: String,
    timestamp: String,
}

#[derive(Default, Serialize, Deserialize)]
struct AuditDoc {
    id: String,
    entries: Vec<AuditEntry>,
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRow {
    user_id: String,
    availability: String,
    timestamp: String,
}

enum WriteResult {
    Written(SubjectId, Known),
    AlreadyRecorded { user: SubjectId, stored: Known, differs: bool },
}

impl CosmosStore {
    /// Connects with the managed identity, or with the account key when one is configured (only
    /// meant for an emulator).
    pub async fn connect(
        settings: &CosmosSettings,
        credential: Option<Arc<dyn TokenCredential>>,
    ) -> Result<Self, StoreError> {
        let endpoint: AccountEndpoint = settings.endpoint.as_str().parse().map_err(|e: CosmosError| {
            StoreError::Unavailable(format!(
                "COSMOS_ENDPOINT {:?} is not a Cosmos DB account endpoint: {e}",
                settings.endpoint.as_str()
            ))
        })?;
        let account = match (&settings.key, credential) {
            (Some(key), _) => {
                AccountReference::with_authentication_key(endpoint, Secret::new(key.expose().to_string()))
            }
            (None, Some(credential)) => AccountReference::with_credential(endpoint, credential),
            (None, None) => {
                return Err(StoreError::Unavailable(
                    "Cosmos DB needs the managed identity credential, or COSMOS_KEY for an emulator".into(),
                ));
            }
        };
        // An empty preference list follows the account's own region order.
        let client = CosmosClientBuilder::new()
            .build(account, RoutingStrategy::PreferredRegions(Vec::new()))
            .await
            .map_err(|e| cosmos_error("connect", e))?;
        Self::from_client(client, settings, Tuning::default()).await
    }

    /// Uses an already built client (tests build one on the SDK's in-memory emulator). The
    /// database and both containers must exist: the deployment template creates them.
    pub async fn from_client(
        client: CosmosClient,
        settings: &CosmosSettings,
        tuning: Tuning,
    ) -> Result<Self, StoreError> {
        let database = client.database_client(settings.database.as_str());
        let history = database
            .container_client(settings.container.as_str(), None)
            .await
            .map_err(|e| cosmos_error("open the history container", e))?;
        let state = database
            .container_client(settings.state_container.as_str(), None)
            .await
            .map_err(|e| cosmos_error("open the state container", e))?;
        let description = format!(
            "Cosmos DB {} database {} (history container {}, state container {})",
            settings.endpoint.as_str(),
            settings.database,
            settings.container,
            settings.state_container
        );
        Ok(Self {
            history,
            state,
            description,
            tuning,
            warm: Mutex::new(None),
            endpoint: settings.endpoint.clone(),
            database: settings.database.clone(),
            history_name: settings.container.clone(),
            state_name: settings.state_container.clone(),
        })
    }

    /// Runs one SDK operation (its own retries included) inside a `cosmos` dependency span that
    /// records the final status and the request units charged. Per-record history writes are not
    /// traced: at 100,000 changes a run they would be as many exported rows (see docs/operations.md);
    /// the `store.record` phase span counts them.
    async fn traced<R>(
        &self,
        operation: &'static str,
        on: On,
        work: impl Future<Output = Result<R, CosmosError>>,
        diagnostics: impl FnOnce(&R) -> Option<Arc<DiagnosticsContext>>,
    ) -> Result<R, CosmosError> {
        let container = match on {
            On::History => &self.history_name,
            On::State => &self.state_name,
        };
        let span = spans::cosmos_call(operation, &self.database, container, &self.endpoint);
        let result = work.instrument(span.clone()).await;
        if !span.is_disabled() {
            let (status, found) = match &result {
                Ok(r) => (None, diagnostics(r)),
                Err(e) => (Some(u16::from(e.status().status_code())), e.diagnostics()),
            };
            let charge = found.as_ref().map_or(0.0, |d| f64::from(d.total_request_charge()));
            let status = status
                .or_else(|| found.as_ref().and_then(|d| d.status().map(|s| u16::from(s.status_code()))))
                .unwrap_or(200);
            spans::record_cosmos_status(&span, status, charge);
        }
        result
    }

    fn warm(&self) -> Option<Warm> {
        self.warm.lock().ok()?.clone()
    }

    fn set_warm(&self, warm: Option<Warm>) {
        if let Ok(mut guard) = self.warm.lock() {
            *guard = warm;
        }
    }

    async fn read_head(&self, units: &AtomicU64) -> Result<Option<(Head, Etag)>, StoreError> {
        let read = self.state.read_item(HEAD_ID, HEAD_ID, None);
        match self.traced("read_item", On::State, read, |r| Some(r.diagnostics())).await {
            Ok(response) => {
                charge(units, &response.diagnostics());
                let etag = response.headers().etag().cloned().ok_or_else(|| StoreError::Cosmos {
                    operation: "read the state head",
                    message: "no ETag".into(),
                })?;
                let head: Head = response.into_model().map_err(|e| corrupt("the state head", e))?;
                Ok(Some((head, etag)))
            }
            Err(e) if e.status().status_code() == StatusCode::NotFound => {
                charge_error(units, &e);
                Ok(None)
            }
            Err(e) => {
                charge_error(units, &e);
                Err(cosmos_error("read the state head", e))
            }
        }
    }

    /// Rebuilds the state from the snapshot the head names and the records written since.
    async fn load(&self, units: &AtomicU64, head: Option<&Head>) -> Result<LastKnown, StoreError> {
        let mut state = LastKnown::default();
        let mut interner = Interner::default();
        let mut since = None;
        if let Some(head) = head {
            let ids: Vec<String> = (0..head.snap.shards).map(|i| shard_id(head.snap.bank, i)).collect();
            let shards: Vec<ShardDoc> = futures::stream::iter(ids)
                .map(|id| self.read_shard(units, id))
                .buffer_unordered(8)
                .try_collect()
                .await?;
            for shard in &shards {
                decode_shard(shard, &mut interner, &mut state)?;
            }
            if !head.snap.through.is_empty() {
                since = Some(parse_timestamp(&head.snap.through)? - self.tuning.snapshot_margin);
            }
        }
        let records = self.merge_records_since(units, since, &mut interner, &mut state).await?;
        let departures = head.map(|h| decode_departures(&h.gone)).transpose()?.unwrap_or_default();
        for (user, at) in &departures {
            state.depart(user, *at);
        }
        info!(
            shards = head.map_or(0, |h| h.snap.shards),
            records_since_snapshot = records,
            departures = departures.len(),
            tracked = state.len(),
            "loaded the last-known state from Cosmos DB"
        );
        Ok(state)
    }

    /// A shard the head names must exist: its absence is corruption, not an empty shard.
    async fn read_shard(&self, units: &AtomicU64, id: String) -> Result<ShardDoc, StoreError> {
        self.read_shard_if_any(units, &id).await?.ok_or_else(|| StoreError::Corrupt {
            what: format!("snapshot shard {id}"),
            message: "the state head names it, but it does not exist".into(),
        })
    }

    async fn read_shard_if_any(&self, units: &AtomicU64, id: &str) -> Result<Option<ShardDoc>, StoreError> {
        let read = self.state.read_item(id.to_string(), id, None);
        match self.traced("read_item", On::State, read, |r| Some(r.diagnostics())).await {
            Ok(response) => {
                charge(units, &response.diagnostics());
                response.into_model().map(Some).map_err(|e| corrupt(&format!("snapshot shard {id}"), e))
            }
            Err(e) if e.status().status_code() == StatusCode::NotFound => {
                charge_error(units, &e);
                Ok(None)
            }
            Err(e) => {
                charge_error(units, &e);
                Err(cosmos_error("read a state snapshot shard", e))
            }
        }
    }

    async fn upsert_shard(&self, units: &AtomicU64, shard: &ShardDoc) -> Result<(), StoreError> {
        let upsert = self.state.upsert_item(shard.id.clone(), &shard.id, shard, None);
        match self.traced("upsert_item", On::State, upsert, |r| Some(r.diagnostics())).await {
            Ok(response) => {
                charge(units, &response.diagnostics());
                Ok(())
            }
            Err(e) => {
                charge_error(units, &e);
                Err(cosmos_error("write a state snapshot shard", e))
            }
        }
    }

    async fn merge_records_since(
        &self,
        units: &AtomicU64,
        since: Option<DateTime<Utc>>,
        interner: &mut Interner,
        state: &mut LastKnown,
    ) -> Result<usize, StoreError> {
        let query = match since {
            Some(since) => {
                Query::from("SELECT c.userId, c.availability, c.timestamp FROM c WHERE c.timestamp >= @since")
                    .with_parameter("@since", format_timestamp(since))
                    .map_err(|e| cosmos_error("build the history query", e))?
            }
            None => Query::from("SELECT c.userId, c.availability, c.timestamp FROM c"),
        };
        let mut pages = self
            .history
            .query_items::<HistoryRow>(query, FeedScope::full_container(), None)
            .await
            .map_err(|e| cosmos_error("query recent history", e))?
            .into_pages();
        let mut count = 0;
        loop {
            let next = pages.try_next();
            let page = self.traced("query_items", On::History, next, |p| p.as_ref().map(|p| p.diagnostics())).await;
            let Some(page) = page.map_err(|e| {
                charge_error(units, &e);
                cosmos_error("query recent history", e)
            })?
            else {
                break;
            };
            charge(units, &page.diagnostics());
            for row in page.into_items() {
                let user = parse_subject(&row.user_id)?;
                let known =
                    Known { availability: interner.intern(&row.availability), at: parse_timestamp(&row.timestamp)? };
                state.merge(user, known);
                count += 1;
            }
        }
        Ok(count)
    }

    async fn write_record(
        &self,
        units: &AtomicU64,
        change: ChangeRecord,
        slot: Slot,
    ) -> Result<WriteResult, StoreError> {
        let id = record_id(change.subject, slot).to_string();
        let user = change.subject.to_string();
        let doc = HistoryDoc {
            id: id.clone(),
            user_id: user.clone(),
            availability: change.availability.as_str().to_string(),
            timestamp: format_timestamp(change.timestamp),
        };
        match self.history.create_item(user.clone(), &id, &doc, None).await {
            Ok(response) => {
                charge(units, &response.diagnostics());
                Ok(WriteResult::Written(
                    change.subject,
                    Known { availability: change.availability.clone(), at: change.timestamp },
                ))
            }
            Err(e) if e.status().status_code() == StatusCode::Conflict => {
                charge_error(units, &e);
                let stored = self.read_record(units, &user, &id).await?;
                let differs = stored.availability != change.availability;
                if differs {
                    debug!(user = %change.subject, "a repeated slot saw another value: the stored record stands");
                }
                Ok(WriteResult::AlreadyRecorded { user: change.subject, stored, differs })
            }
            Err(e) => {
                charge_error(units, &e);
                Err(cosmos_error("write a history record", e))
            }
        }
    }

    async fn read_record(&self, units: &AtomicU64, user: &str, id: &str) -> Result<Known, StoreError> {
        let response = self.history.read_item(user.to_string(), id, None).await.map_err(|e| {
            charge_error(units, &e);
            cosmos_error("read an existing history record", e)
        })?;
        charge(units, &response.diagnostics());
        let doc: HistoryDoc = response.into_model().map_err(|e| corrupt("a history record", e))?;
        Ok(Known { availability: doc.availability.as_str().into(), at: parse_timestamp(&doc.timestamp)? })
    }

    /// Writes every record of the run; what was written before a failure stays written.
    async fn write_records(&self, run: &RunContext, plan: &RecordPlan) -> Result<Vec<WriteResult>, StoreError> {
        let writes = futures::stream::iter(plan.changes.iter().cloned())
            .map(|change| self.write_record(&run.metrics.store_request_milli_units, change, run.slot))
            .buffer_unordered(self.tuning.write_concurrency.max(1))
            .collect::<Vec<_>>();
        let results = tokio::time::timeout_at(run.deadline, writes)
            .await
            .map_err(|_| StoreError::Deadline { operation: "writing history records" })?;
        let failed = results.iter().filter(|r| r.is_err()).count();
        let mut written = Vec::with_capacity(results.len());
        let mut first_error = None;
        for result in results {
            match result {
                Ok(w) => written.push(w),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(written),
            Some(e) => {
                warn!(
                    failed,
                    written = written.len(),
                    "some history records could not be written; the next run completes them"
                );
                Err(e)
            }
        }
    }

    /// Writes a fresh snapshot of `state` into the bank the head does not point to.
    /// Writes this run's share of the snapshot in progress (all that is left when departures
    /// crowd the head), and makes it the current snapshot once its last shard is in.
    async fn advance_snapshot(
        &self,
        units: &AtomicU64,
        state: &LastKnown,
        head: &mut Head,
        departures: usize,
    ) -> Result<(), StoreError> {
        let Some(next) = head.next.as_mut() else { return Ok(()) };
        let per_run = next.shards.div_ceil(SNAPSHOT_RUNS).max(1);
        let end = if departures > self.tuning.max_departures_in_head {
            next.shards
        } else {
            next.written.saturating_add(per_run).min(next.shards)
        };
        let docs = encode_shards(state, next.shards as usize, next.bank, next.written as usize..end as usize)?;
        futures::stream::iter(docs)
            .map(|doc| async move { self.upsert_shard(units, &doc).await })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        next.written = end;
        debug!(written = end, shards = next.shards, "wrote snapshot shards");
        if end < next.shards {
            return Ok(());
        }
        let next = head.next.take().unwrap_or_default();
        self.delete_surplus_shards(units, next.bank, next.shards, head.snap.other_shards).await?;
        let through = parse_timestamp(&next.through)?;
        // Departures before the first shard are in no shard; later ones may be in early shards.
        let mut departures = decode_departures(&head.gone)?;
        departures.retain(|(_, at)| *at >= through - self.tuning.snapshot_margin);
        info!(shards = next.shards, tracked = state.len(), "wrote a state snapshot");
        head.snap =
            SnapshotRef { bank: next.bank, shards: next.shards, other_shards: head.snap.shards, through: next.through };
        head.since = next.since;
        head.gone = encode_departures(&departures);
        Ok(())
    }

    /// Shards beyond `shards` left from a larger earlier snapshot in `bank` would keep stale
    /// entries (and erased users' data).
    async fn delete_surplus_shards(
        &self,
        units: &AtomicU64,
        bank: u8,
        shards: u32,
        before: u32,
    ) -> Result<(), StoreError> {
        for i in shards..before {
            let id = shard_id(bank, i);
            let delete = self.state.delete_item(id.clone(), &id, None);
            match self.traced("delete_item", On::State, delete, |r| Some(r.diagnostics())).await {
                Ok(response) => charge(units, &response.diagnostics()),
                Err(e) if e.status().status_code() == StatusCode::NotFound => charge_error(units, &e),
                Err(e) => {
                    charge_error(units, &e);
                    return Err(cosmos_error("delete a surplus snapshot shard", e));
                }
            }
        }
        Ok(())
    }

    /// Replaces (or first creates) the head, only if nobody else changed it since it was read.
    /// Returns the new ETag, or `None` when another instance got there first.
    async fn write_head(
        &self,
        units: &AtomicU64,
        head: &Head,
        expected: Option<&Etag>,
    ) -> Result<Option<Etag>, StoreError> {
        let result = match expected {
            Some(etag) => {
                let options = ItemWriteOptions::default().with_precondition(Precondition::if_match(etag.clone()));
                let replace = self.state.replace_item(HEAD_ID, HEAD_ID, head, Some(options));
                self.traced("replace_item", On::State, replace, |r| Some(r.diagnostics())).await
            }
            None => {
                let create = self.state.create_item(HEAD_ID, HEAD_ID, head, None);
                self.traced("create_item", On::State, create, |r| Some(r.diagnostics())).await
            }
        };
        match result {
            Ok(response) => {
                charge(units, &response.diagnostics());
                Ok(response.headers().etag().cloned())
            }
            Err(e) if matches!(e.status().status_code(), StatusCode::PreconditionFailed | StatusCode::Conflict) => {
                charge_error(units, &e);
                Ok(None)
            }
            Err(e) => {
                charge_error(units, &e);
                Err(cosmos_error("advance the state head", e))
            }
        }
    }

    /// Deletes every history document of `user` (one partition); returns how many were deleted.
    async fn delete_history_of(&self, units: &AtomicU64, user: SubjectId) -> Result<usize, StoreError> {
        let partition = user.to_string();
        let ids: Vec<IdRow> = self
            .history
            .query_items::<IdRow>(Query::from("SELECT c.id FROM c"), FeedScope::partition(partition.clone()), None)
            .await
            .map_err(|e| cosmos_error("list a user's history for erasure", e))?
            .try_collect()
            .await
            .map_err(|e| cosmos_error("list a user's history for erasure", e))?;
        let deleted = futures::stream::iter(ids)
            .map(|row| {
                let partition = partition.clone();
                async move {
                    match self.history.delete_item(partition, &row.id, None).await {
                        Ok(response) => {
                            charge(units, &response.diagnostics());
                            Ok(1)
                        }
                        // Gone already (a retried erasure, or the TTL got there first).
                        Err(e) if e.status().status_code() == StatusCode::NotFound => {
                            charge_error(units, &e);
                            Ok(0)
                        }
                        Err(e) => {
                            charge_error(units, &e);
                            Err(cosmos_error("delete a history record", e))
                        }
                    }
                }
            })
            .buffer_unordered(self.tuning.write_concurrency.max(1))
            .try_collect::<Vec<usize>>()
            .await?;
        Ok(deleted.into_iter().sum())
    }

    /// Removes `user` from the snapshot shards of both banks and from the head's departures, then
    /// replaces the head so that every warm instance reloads a state without them.
    async fn erase_from_state(&self, units: &AtomicU64, user: SubjectId) -> Result<(), StoreError> {
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let Some((head, etag)) = self.read_head(units).await? else { return Ok(()) };
            let snap = &head.snap;
            let other_bank = 1 - snap.bank.min(1);
            // The other bank holds the older snapshot and, if one is in progress, the new one's
            // first shards, hashed by its own shard count: both can hold the user.
            let in_progress = head.next.as_ref().map(|n| (n.bank, n.shards));
            let banks = [(snap.bank, snap.shards), (other_bank, snap.other_shards)].into_iter().chain(in_progress);
            for (bank, shards) in banks {
                if shards > 0 {
                    let id = shard_id(bank, u32::try_from(shard_of(&user, shards as usize)).unwrap_or(0));
                    self.erase_from_shard(units, id, user).await?;
                }
            }
            let mut departures = decode_departures(&head.gone)?;
            departures.retain(|(u, _)| *u != user);
            let head = Head { gone: encode_departures(&departures), ..head };
            if self.write_head(units, &head, Some(&etag)).await?.is_some() {
                return Ok(());
            }
            // A run on another instance advanced the head meanwhile (possibly with a new
            // snapshot): erase again from what it wrote.
        }
        Err(StoreError::Cosmos {
            operation: "erase a user from the state",
            message: format!("the state head kept changing during {OPTIMISTIC_ATTEMPTS} attempts; retry the erasure"),
        })
    }

    async fn erase_from_shard(&self, units: &AtomicU64, id: String, user: SubjectId) -> Result<(), StoreError> {
        let Some(shard) = self.read_shard_if_any(units, &id).await? else { return Ok(()) };
        match shard_without(&shard, user)? {
            Some(shard) => self.upsert_shard(units, &shard).await,
            None => Ok(()),
        }
    }

    async fn read_audit(&self) -> Result<Option<(AuditDoc, Etag)>, StoreError> {
        match self.state.read_item(AUDIT_ID, AUDIT_ID, None).await {
            Ok(response) => {
                let etag = response.headers().etag().cloned().ok_or_else(|| StoreError::Cosmos {
                    operation: "read the audit trail",
                    message: "no ETag".into(),
                })?;
                let doc: AuditDoc = response.into_model().map_err(|e| corrupt("the audit trail", e))?;
                Ok(Some((doc, etag)))
            }
            Err(e) if e.status().status_code() == StatusCode::NotFound => Ok(None),
            Err(e) => Err(cosmos_error("read the audit trail", e)),
        }
    }

    fn snapshot_due(&self, head: &Head, state: &LastKnown, departures: usize, observed_at: DateTime<Utc>) -> bool {
        let threshold = self.tuning.min_records_between_snapshots.max(state.len() as u64);
        let stale = parse_timestamp(&head.snap.through)
            .map(|through| observed_at - through > TimeDelta::hours(12))
            .unwrap_or(true);
        head.snap.shards == 0
            || head.since >= threshold
            || departures > self.tuning.max_departures_in_head
            || (stale && (head.since > 0 || departures > 0))
    }
}

impl CosmosStore {
    async fn record_plan(&self, run: &RunContext, plan: &RecordPlan) -> Result<RecordOutcome, StoreError> {
        let Some(mut warm) = self.warm() else {
            // The cycle reads the state first; without it the head cannot be advanced safely.
            self.current_state(&run.metrics.store_request_milli_units).await?;
            return Box::pin(self.record_plan(run, plan)).await;
        };
        // Forget the warm state until this run completes: on failure the next run reloads it,
        // records written so far included.
        self.set_warm(None);
        let results = self.write_records(run, plan).await?;
        let units = &run.metrics.store_request_milli_units;

        let mut outcome = RecordOutcome::default();
        let state = Arc::make_mut(&mut warm.state);
        let mut recorded = Vec::with_capacity(results.len());
        for result in results {
            match result {
                WriteResult::Written(user, known) => {
                    outcome.written += 1;
                    recorded.push(user);
                    state.merge(user, known);
                }
                WriteResult::AlreadyRecorded { user, stored, differs } => {
                    outcome.already_recorded += 1;
                    outcome.superseded += usize::from(differs);
                    recorded.push(user);
                    state.merge(user, stored);
                }
            }
        }
        for user in &plan.departed {
            state.depart(user, plan.observed_at);
        }

        let (previous, etag) = match &warm.head {
            Some((head, etag)) => (head.clone(), Some(etag)),
            None => (Head { id: HEAD_ID.into(), ..Head::default() }, None),
        };
        let mut departures = decode_departures(&previous.gone)?;
        departures.retain(|(user, _)| !recorded.contains(user) && !plan.departed.contains(user));
        departures.extend(plan.departed.iter().map(|u| (*u, plan.observed_at)));
        let mut head = Head {
            id: HEAD_ID.into(),
            snap: previous.snap.clone(),
            since: previous.since + outcome.written as u64,
            gone: encode_departures(&departures),
            next: previous.next.clone(),
        };
        let wanted = u32::try_from(state.len().div_ceil(self.tuning.users_per_shard.max(1)).max(1)).unwrap_or(u32::MAX);
        let start = NextSnapshot {
            bank: 1 - previous.snap.bank.min(1),
            shards: wanted,
            written: 0,
            through: format_timestamp(plan.observed_at),
            since: 0,
        };
        let due = head.next.is_none() && self.snapshot_due(&head, state, departures.len(), plan.observed_at);
        match &mut head.next {
            // Sized for a much smaller state (a group added meanwhile), its shards would grow
            // towards Cosmos DB's 2 MB document limit: it starts again at the right size.
            Some(next) if wanted > next.shards.saturating_add(next.shards / 4) => *next = start,
            Some(next) => next.since += outcome.written as u64,
            None if due => head.next = Some(start),
            None => {}
        }
        let crowded = departures.len() > self.tuning.max_departures_in_head;
        if head.next.is_some() && (!warm.loaded || crowded) {
            self.advance_snapshot(units, state, &mut head, departures.len()).await?;
        }
        warm.loaded = false;
        match self.write_head(units, &head, etag).await? {
            Some(new_etag) => {
                warm.head = Some((head, new_etag));
                self.set_warm(Some(warm));
            }
            None => warn!("another instance advanced the state during this run: it is reloaded next run"),
        }
        debug!(
            written = outcome.written,
            already_recorded = outcome.already_recorded,
            departed = plan.departed.len(),
            "recorded"
        );
        Ok(outcome)
    }
}

#[async_trait]
impl RunStore for CosmosStore {
    async fn last_known(&self, run: &RunContext) -> Result<Arc<LastKnown>, StoreError> {
        self.current_state(&run.metrics.store_request_milli_units).await
    }

    async fn record(&self, run: &RunContext, plan: RecordPlan) -> Result<RecordOutcome, StoreError> {
        self.record_plan(run, &plan).await
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

impl CosmosStore {
    /// The last-known state: the warm copy if the head still names it, else loaded again.
    async fn current_state(&self, units: &AtomicU64) -> Result<Arc<LastKnown>, StoreError> {
        let head = self.read_head(units).await?;
        let current_etag = head.as_ref().map(|(_, etag)| etag);
        if let Some(warm) = self.warm() {
            if warm.head.as_ref().map(|(_, etag)| etag) == current_etag {
                debug!(tracked = warm.state.len(), "last-known state is current in memory");
                return Ok(warm.state);
            }
            info!("another instance advanced the state: reloading it");
        }
        let state = Arc::new(self.load(units, head.as_ref().map(|(h, _)| h)).await?);
        self.set_warm(Some(Warm { head, state: state.clone(), loaded: true }));
        Ok(state)
    }
}

#[async_trait]
impl RightsStore for CosmosStore {
    async fn export_subject(&self, user: SubjectId) -> Result<Vec<ChangeRecord>, StoreError> {
        let query = Query::from("SELECT c.userId, c.availability, c.timestamp FROM c");
        let rows: Vec<HistoryRow> = self
            .history
            .query_items::<HistoryRow>(query, FeedScope::partition(user.to_string()), None)
            .await
            .map_err(|e| cosmos_error("query a user's history", e))?
            .try_collect()
            .await
            .map_err(|e| cosmos_error("query a user's history", e))?;
        let mut records = rows
            .into_iter()
            .map(|row| {
                Ok(ChangeRecord {
                    subject: user,
                    availability: row.availability.as_str().into(),
                    timestamp: parse_timestamp(&row.timestamp)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        records.sort_by_key(|r| r.timestamp);
        Ok(records)
    }

    async fn erase_subject(&self, request: &SubjectRequest, user: SubjectId) -> Result<Erasure, StoreError> {
        let deadline = || StoreError::Deadline { operation: "deleting a user's history" };
        if Instant::now() >= request.deadline {
            return Err(deadline());
        }
        let charged = AtomicU64::new(0);
        let units = &charged;
        // Whether the user is tracked is read from the state as runs see it (snapshot plus recent
        // records), before anything is deleted.
        let tracked = self.current_state(units).await?.get(&user).is_some();
        self.set_warm(None);
        // The deletes grow with the person's history: they stop at the deadline, so the function
        // answers before the host's timeout; a repeated request deletes the rest.
        let history_records = tokio::time::timeout_at(request.deadline, self.delete_history_of(units, user))
            .await
            .map_err(|_| deadline())??;
        self.erase_from_state(units, user).await?;
        self.set_warm(None);
        let store_request_units = charged.into_inner() as f64 / 1000.0;
        debug!(history_records, tracked, store_request_units, "erased a user from history and state");
        Ok(Erasure { history_records, state_entries: usize::from(tracked) })
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let (mut doc, etag) = match self.read_audit().await? {
                Some((doc, etag)) => (doc, Some(etag)),
                None => (AuditDoc { id: AUDIT_ID.into(), entries: Vec::new() }, None),
            };
            doc.entries.push(entry.clone());
            let result = match etag {
                Some(etag) => {
                    let options = ItemWriteOptions::default().with_precondition(Precondition::if_match(etag));
                    self.state.replace_item(AUDIT_ID, AUDIT_ID, &doc, Some(options)).await
                }
                None => self.state.create_item(AUDIT_ID, AUDIT_ID, &doc, None).await,
            };
            match result {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.status().status_code(), StatusCode::PreconditionFailed | StatusCode::Conflict) => {
                }
                Err(e) => return Err(cosmos_error("append to the audit trail", e)),
            }
        }
        Err(StoreError::Cosmos {
            operation: "append to the audit trail",
            message: format!("another writer got ahead {OPTIMISTIC_ATTEMPTS} times; retry"),
        })
    }

    async fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = self.read_audit().await?.map(|(doc, _)| doc.entries).unwrap_or_default();
        entries.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        Ok(entries)
    }
}

/// `shard` without the entry of `user`, or `None` when it has none.
fn shard_without(shard: &ShardDoc, user: SubjectId) -> Result<Option<ShardDoc>, StoreError> {
    let bytes = shard_entries(shard)?;
    let kept: Vec<u8> =
        bytes.chunks_exact(SHARD_ENTRY).filter(|entry| entry[..16] != user.as_bytes()[..]).flatten().copied().collect();
    if kept.len() == bytes.len() {
        return Ok(None);
    }
    Ok(Some(ShardDoc { id: shard.id.clone(), values: shard.values.clone(), data: BASE64.encode(kept) }))
}

fn shard_id(bank: u8, index: u32) -> String {
    format!("snapshot-{bank}-{index}")
}

/// Users are spread over shards by their id, so one user's entry is found in one known shard.
fn shard_of(user: &SubjectId, shards: usize) -> usize {
    let bytes = user.as_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_le_bytes(low) % shards as u64) as usize
}

/// Shards `range` of a snapshot of `state` in `shards` shards.
fn encode_shards(
    state: &LastKnown,
    shards: usize,
    bank: u8,
    range: std::ops::Range<usize>,
) -> Result<Vec<ShardDoc>, StoreError> {
    let mut values: Vec<Vec<String>> = vec![Vec::new(); range.len()];
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); range.len()];
    for (user, known) in state.iter() {
        let Some(shard) = shard_of(&user, shards).checked_sub(range.start).filter(|s| *s < range.len()) else {
            continue;
        };
        let dictionary = &mut values[shard];
        let index = match dictionary.iter().position(|v| v == known.availability.as_str()) {
            Some(index) => index,
            None => {
                dictionary.push(known.availability.as_str().to_string());
                dictionary.len() - 1
            }
        };
        let index = u16::try_from(index).map_err(|_| StoreError::Corrupt {
            what: "availability values".into(),
            message: "more than 65,536 distinct values in one snapshot shard".into(),
        })?;
        let bytes = &mut data[shard];
        bytes.extend_from_slice(user.as_bytes());
        bytes.extend_from_slice(&index.to_le_bytes());
        bytes.extend_from_slice(&known.at.timestamp_millis().to_le_bytes());
    }
    Ok(values
        .into_iter()
        .zip(data)
        .enumerate()
        .map(|(i, (values, data))| ShardDoc {
            id: shard_id(bank, u32::try_from(range.start + i).unwrap_or(u32::MAX)),
            values,
            data: BASE64.encode(data),
        })
        .collect())
}

/// A shard's entries as bytes, checked to be whole entries.
fn shard_entries(shard: &ShardDoc) -> Result<Vec<u8>, StoreError> {
    let bad = |message: String| StoreError::Corrupt { what: format!("snapshot shard {}", shard.id), message };
    let bytes = BASE64.decode(&shard.data).map_err(|e| bad(e.to_string()))?;
    if bytes.len() % SHARD_ENTRY != 0 {
        return Err(bad(format!("{} bytes is not a whole number of {SHARD_ENTRY}-byte entries", bytes.len())));
    }
    Ok(bytes)
}

fn decode_shard(shard: &ShardDoc, interner: &mut Interner, state: &mut LastKnown) -> Result<(), StoreError> {
    let bad = |message: String| StoreError::Corrupt { what: format!("snapshot shard {}", shard.id), message };
    let bytes = shard_entries(shard)?;
    let values: Vec<_> = shard.values.iter().map(|v| interner.intern(v)).collect();
    for entry in bytes.chunks_exact(SHARD_ENTRY) {
        let (user, rest) = entry.split_at(16);
        let (index, millis) = rest.split_at(2);
        let user = SubjectId::from_stored_bytes(user).map_err(|e| bad(e.to_string()))?;
        let index = usize::from(u16::from_le_bytes([index[0], index[1]]));
        let availability =
            values.get(index).cloned().ok_or_else(|| bad(format!("value index {index} out of range")))?;
        let at = millis_to_time(millis).ok_or_else(|| bad("timestamp out of range".into()))?;
        state.merge(user, Known { availability, at });
    }
    Ok(())
}

fn encode_departures(departures: &[(SubjectId, DateTime<Utc>)]) -> String {
    let mut bytes = Vec::with_capacity(departures.len() * GONE_ENTRY);
    for (user, at) in departures {
        bytes.extend_from_slice(user.as_bytes());
        bytes.extend_from_slice(&at.timestamp_millis().to_le_bytes());
    }
    BASE64.encode(bytes)
}

fn decode_departures(text: &str) -> Result<Vec<(SubjectId, DateTime<Utc>)>, StoreError> {
    let bad = |message: String| StoreError::Corrupt { what: "departures in the state head".into(), message };
    let bytes = BASE64.decode(text).map_err(|e| bad(e.to_string()))?;
    if bytes.len() % GONE_ENTRY != 0 {
        return Err(bad(format!("{} bytes is not a whole number of {GONE_ENTRY}-byte entries", bytes.len())));
    }
    bytes
        .chunks_exact(GONE_ENTRY)
        .map(|entry| {
            let (user, millis) = entry.split_at(16);
            let user = SubjectId::from_stored_bytes(user).map_err(|e| bad(e.to_string()))?;
            let at = millis_to_time(millis).ok_or_else(|| bad("timestamp out of range".into()))?;
            Ok((user, at))
        })
        .collect()
}

fn millis_to_time(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let millis = i64::from_le_bytes(bytes.try_into().ok()?);
    DateTime::from_timestamp_millis(millis)
}

/// Adds what an operation cost, retries included, to the request units of the run or the
/// data-subject request it is part of (in thousandths).
fn charge(units: &AtomicU64, diagnostics: &DiagnosticsContext) {
    let charged = f64::from(diagnostics.total_request_charge());
    if charged.is_finite() && charged > 0.0 {
        RunMetrics::add(units, (charged * 1000.0).round() as u64);
    }
}

fn charge_error(units: &AtomicU64, error: &CosmosError) {
    if let Some(diagnostics) = error.diagnostics() {
        charge(units, &diagnostics);
    }
}

fn cosmos_error(operation: &'static str, e: CosmosError) -> StoreError {
    StoreError::Cosmos { operation, message: e.to_string() }
}

fn corrupt(what: &str, e: CosmosError) -> StoreError {
    StoreError::Corrupt { what: what.to_string(), message: e.to_string() }
}

/// Used by tests and tools to check the exact shape of stored history.
pub const HISTORY_FIELDS: [&str; 4] = ["id", "userId", "availability", "timestamp"];

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn shards_round_trip_and_spread_users() {
        let mut state = LastKnown::default();
        let at = Utc.with_ymd_and_hms(2025, 1, 31, 12, 0, 0).unwrap();
        for i in 0..1_000u128 {
            let user = SubjectId::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            let value = ["Available", "Away", "Busy"][(i % 3) as usize];
            state.set(user, Known { availability: value.into(), at: at + TimeDelta::milliseconds(i as i64) });
        }
        let docs = encode_shards(&state, 4, 1, 0..4).unwrap();
        assert_eq!(docs.len(), 4);
        assert!(docs.iter().all(|d| d.id.starts_with("snapshot-1-")));
        let mut back = LastKnown::default();
        let mut interner = Interner::default();
        for doc in &docs {
            let entries = BASE64.decode(&doc.data).unwrap().len() / SHARD_ENTRY;
            assert!((150..350).contains(&entries), "unbalanced shard: {entries}");
            decode_shard(doc, &mut interner, &mut back).unwrap();
        }
        assert_eq!(back, state);
        // A snapshot written a few shards per run is the same shards.
        let (first, rest) = (encode_shards(&state, 4, 1, 0..1).unwrap(), encode_shards(&state, 4, 1, 1..4).unwrap());
        let ids: Vec<&str> = first.iter().chain(&rest).map(|d| d.id.as_str()).collect();
        assert_eq!(ids, docs.iter().map(|d| d.id.as_str()).collect::<Vec<_>>());
        for (part, whole) in first.iter().chain(&rest).zip(&docs) {
            assert_eq!((&part.values, &part.data), (&whole.values, &whole.data));
        }
    }

    #[test]
    fn a_full_shard_stays_below_64_kib() {
        let users = Tuning::default().users_per_shard * 11 / 10;
        let mut state = LastKnown::default();
        for i in 0..users {
            state.set(
                SubjectId::from_u128(i as u128),
                Known { availability: "Available".into(), at: DateTime::UNIX_EPOCH },
            );
        }
        let doc = encode_shards(&state, 1, 0, 0..1).unwrap().remove(0);
        assert!(serde_json::to_vec(&doc).unwrap().len() < 64 * 1024);
    }

    #[test]
    fn departures_round_trip_and_reject_garbage() {
        let at = Utc.with_ymd_and_hms(2025, 1, 31, 12, 0, 0).unwrap();
        let list = vec![(SubjectId::from_u128(1), at), (SubjectId::from_u128(2), at + TimeDelta::seconds(1))];
        assert_eq!(decode_departures(&encode_departures(&list)).unwrap(), list);
        assert!(decode_departures("").unwrap().is_empty());
        assert!(decode_departures("AAAA").is_err());
    }
}
