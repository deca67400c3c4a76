//! Azure Cosmos DB for NoSQL: history partitioned by user, plus a small state container.
//!
//! - History (`/userId`): one document per change ([`history`]).
//! - State (`/id`): a `head` document and two banks of snapshot shards ([`layout`], in the
//!   binary form of [`codec`]), and the audit trail of data-subject requests ([`audit`]). The
//!   last-known state is the current bank's shards plus every history record dated after the
//!   snapshot (less a margin), minus the departures listed in the head. A warm instance keeps it
//!   in memory and only reads the head (~1 RU) to check that nobody else advanced it; after
//!   writing a run's records it replaces the head with `If-Match`. Shards are rewritten, into the
//!   other bank, only once as many records as tracked users have accumulated since the last
//!   snapshot, and then a few per run over [`SNAPSHOT_RUNS`] runs (the head tracks the progress;
//!   the other bank stays the one loaded until the last shard is in), so that every run costs its
//!   record writes plus a small share. See `docs/storage.md` for the figures.
//!
//! Every SDK call goes through [`sdk`], which charges it to the run and maps its status. The SDK
//! retries 429 itself; this module makes retries safe instead of adding a loop.

mod audit;
mod codec;
mod history;
mod layout;
mod sdk;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::Etag;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{
    AccountEndpoint, AccountReference, CosmosClient, CosmosClientBuilder, CosmosError, RoutingStrategy,
};
use futures::{StreamExt, TryStreamExt};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use self::codec::{ShardDoc, decode_departures, decode_shard, shard_without};
pub use self::history::HISTORY_FIELDS;
use self::history::WriteResult;
use self::layout::{HEAD_ID, Head, Recorded, encode_shards, shard_id};
pub use self::layout::{SNAPSHOT_RUNS, Tuning};
use self::sdk::{Call, On, Sdk, corrupt, cosmos_error};
use super::state::Interner;
use super::{LastKnown, RecordOutcome, RecordPlan, RightsStore, RunStore, StoreError, SubjectRequest};
use crate::config::CosmosSettings;
use crate::model::{ChangeRecord, SubjectId};
use crate::privacy::{AuditEntry, Erasure};
use crate::run::RunContext;

/// Attempts at an optimistic update (head or audit) that another writer keeps getting ahead of.
const OPTIMISTIC_ATTEMPTS: usize = 5;
/// Snapshot shards read or written at once.
const SHARD_CONCURRENCY: usize = 8;

pub struct CosmosStore {
    sdk: Sdk,
    description: String,
    tuning: Tuning,
    warm: Mutex<Option<Warm>>,
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
        let sdk = Sdk::new(history, state, settings);
        Ok(Self { sdk, description, tuning, warm: Mutex::new(None) })
    }

    fn warm(&self) -> Option<Warm> {
        self.warm.lock().ok()?.clone()
    }

    fn set_warm(&self, warm: Option<Warm>) {
        if let Ok(mut guard) = self.warm.lock() {
            *guard = warm;
        }
    }

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

    /// Rebuilds the state from the snapshot the head names and the records written since.
    async fn load(&self, units: &AtomicU64, head: Option<&Head>) -> Result<LastKnown, StoreError> {
        let mut state = LastKnown::default();
        let mut interner = Interner::default();
        let mut since = None;
        if let Some(head) = head {
            let shards: Vec<ShardDoc> = futures::stream::iter(head.snapshot_ids())
                .map(|id| self.read_shard(units, id))
                .buffer_unordered(SHARD_CONCURRENCY)
                .try_collect()
                .await?;
            for shard in &shards {
                decode_shard(shard, &mut interner, &mut state)?;
            }
            since = self.tuning.records_since(head)?;
        }
        let records = history::merge_since(&self.sdk, units, since, &mut interner, &mut state).await?;
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

        let run_recorded = Recorded {
            written: outcome.written as u64,
            recorded: &recorded,
            departed: &plan.departed,
            observed_at: plan.observed_at,
            tracked: state.len(),
        };
        let (mut head, departures) = self.tuning.head_after(warm.head.as_ref().map(|(h, _)| h), &run_recorded)?;
        if let Some(share) = self.tuning.snapshot_share(&head, departures, warm.loaded) {
            self.write_snapshot_share(units, state, &mut head, share).await?;
        }
        warm.loaded = false;
        let etag = warm.head.as_ref().map(|(_, etag)| etag);
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

    /// Writes every record of the run; what was written before a failure stays written.
    async fn write_records(&self, run: &RunContext, plan: &RecordPlan) -> Result<Vec<WriteResult>, StoreError> {
        let units = &run.metrics.store_request_milli_units;
        let writes = futures::stream::iter(plan.changes.iter().cloned())
            .map(|change| history::write(&self.sdk, units, change, run.slot))
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

    /// Writes shards `share` of the snapshot in progress and, once its last shard is in, makes
    /// it the current snapshot in `head` and deletes what a larger earlier one left in its bank.
    async fn write_snapshot_share(
        &self,
        units: &AtomicU64,
        state: &LastKnown,
        head: &mut Head,
        share: std::ops::Range<u32>,
    ) -> Result<(), StoreError> {
        let Some(next) = &head.next else { return Ok(()) };
        let docs = encode_shards(state, next.shards as usize, next.bank, share.start as usize..share.end as usize)?;
        futures::stream::iter(docs)
            .map(|doc| async move { self.upsert_shard(units, &doc).await })
            .buffer_unordered(SHARD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        debug!(written = share.end, shards = next.shards, "wrote snapshot shards");
        let Some(surplus) = self.tuning.snapshot_written(head, share.end)? else { return Ok(()) };
        for i in surplus.shards {
            let id = shard_id(surplus.bank, i);
            let call = Call::new(On::State, "delete_item", "delete a surplus snapshot shard", units);
            self.sdk.call(call, |c| c.delete_item(id.clone(), &id, None)).await.if_present()?;
        }
        info!(shards = head.snap.shards, tracked = state.len(), "wrote a state snapshot");
        Ok(())
    }

    async fn read_head(&self, units: &AtomicU64) -> Result<Option<(Head, Etag)>, StoreError> {
        let call = Call::new(On::State, "read_item", "read the state head", units);
        self.sdk.call(call, |c| c.read_item(HEAD_ID, HEAD_ID, None)).await.document_and_etag("the state head")
    }

    /// Replaces (or first creates) the head, only if nobody else changed it since it was read.
    /// Returns the new ETag, or `None` when another instance got there first.
    async fn write_head(
        &self,
        units: &AtomicU64,
        head: &Head,
        expected: Option<&Etag>,
    ) -> Result<Option<Etag>, StoreError> {
        const DOING: &str = "advance the state head";
        let written = match expected {
            Some(etag) => {
                let options = ItemWriteOptions::default().with_precondition(Precondition::if_match(etag.clone()));
                let call = Call::new(On::State, "replace_item", DOING, units);
                self.sdk
                    .call(call, |c| c.replace_item(HEAD_ID, HEAD_ID, head, Some(options)))
                    .await
                    .unless_conflict()?
            }
            None => {
                let call = Call::new(On::State, "create_item", DOING, units);
                self.sdk.call(call, |c| c.create_item(HEAD_ID, HEAD_ID, head, None)).await.unless_conflict()?
            }
        };
        Ok(written.and_then(|response| response.headers().etag().cloned()))
    }

    /// A shard the head names must exist: its absence is corruption, not an empty shard.
    async fn read_shard(&self, units: &AtomicU64, id: String) -> Result<ShardDoc, StoreError> {
        self.read_shard_if_any(units, &id).await?.ok_or_else(|| StoreError::Corrupt {
            what: format!("snapshot shard {id}"),
            message: "the state head names it, but it does not exist".into(),
        })
    }

    async fn read_shard_if_any(&self, units: &AtomicU64, id: &str) -> Result<Option<ShardDoc>, StoreError> {
        let call = Call::new(On::State, "read_item", "read a state snapshot shard", units);
        let Some(response) = self.sdk.call(call, |c| c.read_item(id.to_string(), id, None)).await.if_present()? else {
            return Ok(None);
        };
        response.into_model().map(Some).map_err(|e| corrupt(&format!("snapshot shard {id}"), e))
    }

    async fn upsert_shard(&self, units: &AtomicU64, shard: &ShardDoc) -> Result<(), StoreError> {
        let call = Call::new(On::State, "upsert_item", "write a state snapshot shard", units);
        self.sdk.call(call, |c| c.upsert_item(shard.id.clone(), &shard.id, shard, None)).await.required()?;
        Ok(())
    }

    /// Removes `user` from the snapshot shards of both banks and from the head's departures, then
    /// replaces the head so that every warm instance reloads a state without them.
    async fn erase_from_state(&self, units: &AtomicU64, user: SubjectId) -> Result<(), StoreError> {
        for _ in 0..OPTIMISTIC_ATTEMPTS {
            let Some((head, etag)) = self.read_head(units).await? else { return Ok(()) };
            for id in head.shards_holding(&user) {
                if let Some(shard) = self.read_shard_if_any(units, &id).await?
                    && let Some(shard) = shard_without(&shard, user)?
                {
                    self.upsert_shard(units, &shard).await?;
                }
            }
            if self.write_head(units, &head.without(user)?, Some(&etag)).await?.is_some() {
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

#[async_trait]
impl RightsStore for CosmosStore {
    async fn export_subject(&self, user: SubjectId) -> Result<Vec<ChangeRecord>, StoreError> {
        history::of_subject(&self.sdk, user).await
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
        let deletes = history::delete_of_subject(&self.sdk, units, user, self.tuning.write_concurrency);
        let history_records = tokio::time::timeout_at(request.deadline, deletes).await.map_err(|_| deadline())??;
        self.erase_from_state(units, user).await?;
        self.set_warm(None);
        let store_request_units = charged.into_inner() as f64 / 1000.0;
        debug!(history_records, tracked, store_request_units, "erased a user from history and state");
        Ok(Erasure { history_records, state_entries: usize::from(tracked) })
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        audit::append(&self.sdk, entry).await
    }

    async fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        audit::trail(&self.sdk).await
    }
}
