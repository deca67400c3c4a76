//! The poll cycle: in-scope users and their availability in, change records out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use crate::graph::{GraphError, Tenant};
use crate::model::{ChangeRecord, GroupId, Slot};
use crate::store::{HistoryStore, StoreError};

/// Everything one run carries through the Graph client and the store.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// The host's `X-Azure-Functions-InvocationId` (or a generated id for CLI runs).
    pub invocation_id: String,
    pub slot: Slot,
    /// Work that would end after this is given up, so the run returns before the host's timeout.
    pub deadline: Instant,
    pub metrics: Arc<RunMetrics>,
}

impl RunContext {
    pub fn new(invocation_id: impl Into<String>, slot: Slot, budget: Duration) -> Self {
        Self { invocation_id: invocation_id.into(), slot, deadline: Instant::now() + budget, metrics: Arc::default() }
    }
}

/// Counters filled in by the Graph client and the store during one run.
#[derive(Debug, Default)]
pub struct RunMetrics {
    pub member_pages: AtomicU64,
    pub presence_calls: AtomicU64,
    pub throttled: AtomicU64,
    pub throttle_wait_ms: AtomicU64,
    pub retries: AtomicU64,
    /// Request units charged by the store, in thousandths so that an atomic integer can hold them.
    pub store_request_milli_units: AtomicU64,
}

impl RunMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The outcome of one successful run, reported in the host response's `Logs` and in telemetry.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub slot: Slot,
    pub observed_at: DateTime<Utc>,
    pub users_in_scope: usize,
    pub observed: usize,
    pub unobserved: usize,
    pub changes: usize,
    pub unreadable_groups: usize,
    pub member_pages: u64,
    pub presence_calls: u64,
    pub throttled: u64,
    pub throttle_wait_ms: u64,
    pub retries: u64,
    pub store_request_units: f64,
    pub duration_ms: u64,
}

impl RunSummary {
    /// One line for `Logs` and the console.
    pub fn line(&self) -> String {
        format!(
            "run slot={} users={} observed={} unobserved={} changes={} unreadable_groups={} \
             presence_calls={} member_pages={} throttled={} throttle_wait_ms={} retries={} \
             store_ru={:.2} duration_ms={}",
            self.slot,
            self.users_in_scope,
            self.observed,
            self.unobserved,
            self.changes,
            self.unreadable_groups,
            self.presence_calls,
            self.member_pages,
            self.throttled,
            self.throttle_wait_ms,
            self.retries,
            self.store_request_units,
            self.duration_ms,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct PollCycle {
    groups: Vec<GroupId>,
    tenant: Arc<dyn Tenant>,
    store: Arc<dyn HistoryStore>,
}

impl PollCycle {
    pub fn new(groups: Vec<GroupId>, tenant: Arc<dyn Tenant>, store: Arc<dyn HistoryStore>) -> Self {
        Self { groups, tenant, store }
    }

    pub fn store(&self) -> &Arc<dyn HistoryStore> {
        &self.store
    }

    pub async fn run(&self, run: &RunContext) -> Result<RunSummary, CycleError> {
        let started = Instant::now();
        let membership = self.tenant.members(&self.groups, run).await?;
        let observed_at = Utc::now();
        let snapshot = self.tenant.presence(&membership.users, run).await?;
        let last_known = self.store.last_known().await?;

        let changes: Vec<ChangeRecord> = snapshot
            .observations
            .iter()
            .filter(|o| last_known.get(&o.user_id) != Some(&o.availability))
            .map(|o| ChangeRecord { user_id: o.user_id, availability: o.availability.clone(), timestamp: observed_at })
            .collect();
        self.store.record(run.slot, &changes).await?;

        let m = &run.metrics;
        Ok(RunSummary {
            slot: run.slot,
            observed_at,
            users_in_scope: membership.users.len(),
            observed: snapshot.observations.len(),
            unobserved: snapshot.unobserved.len(),
            changes: changes.len(),
            unreadable_groups: membership.unreadable_groups.len(),
            member_pages: RunMetrics::get(&m.member_pages),
            presence_calls: RunMetrics::get(&m.presence_calls),
            throttled: RunMetrics::get(&m.throttled),
            throttle_wait_ms: RunMetrics::get(&m.throttle_wait_ms),
            retries: RunMetrics::get(&m.retries),
            store_request_units: RunMetrics::get(&m.store_request_milli_units) as f64 / 1000.0,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}
