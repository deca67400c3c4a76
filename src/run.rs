//! One run's context and figures: what the Graph client and the store report into while a run
//! goes on, and the summary the run ends with. The ground floor of the house: it imports only the
//! domain types, so every room above can use it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::time::Instant;

use crate::model::Slot;

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

    pub fn get(counter: &AtomicU64) -> u64 {
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
    /// Records this run wrote (first sightings and changes); a repeated slot's existing records are
    /// counted in `already_recorded` instead.
    pub changes: usize,
    /// Records a previous attempt at the same slot had already written (not in `changes`).
    pub already_recorded: usize,
    /// Users no longer tracked: they left scope, or their last record is past retention and they
    /// were not observed.
    pub departed: usize,
    pub unreadable_groups: usize,
    pub member_pages: u64,
    pub presence_calls: u64,
    pub throttled: u64,
    pub throttle_wait_ms: u64,
    pub retries: u64,
    pub store_request_units: f64,
    /// Membership and presence (overlapped).
    pub graph_ms: u64,
    /// Loading the last-known state; it overlaps the Graph phase, so it is not part of the sum.
    pub store_read_ms: u64,
    /// Change detection and the store write, after the Graph phase.
    pub record_ms: u64,
    /// Zero when the run read membership; otherwise how old the membership it reused was.
    pub membership_age_ms: u64,
    pub duration_ms: u64,
}

impl RunSummary {
    /// One line for `Logs` and the console.
    pub fn line(&self) -> String {
        format!(
            "run slot={} users={} observed={} unobserved={} changes={} already_recorded={} departed={} \
             unreadable_groups={} presence_calls={} member_pages={} throttled={} throttle_wait_ms={} retries={} \
             store_ru={:.2} graph_ms={} store_read_ms={} record_ms={} membership_age_ms={} duration_ms={}",
            self.slot,
            self.users_in_scope,
            self.observed,
            self.unobserved,
            self.changes,
            self.already_recorded,
            self.departed,
            self.unreadable_groups,
            self.presence_calls,
            self.member_pages,
            self.throttled,
            self.throttle_wait_ms,
            self.retries,
            self.store_request_units,
            self.graph_ms,
            self.store_read_ms,
            self.record_ms,
            self.membership_age_ms,
            self.duration_ms,
        )
    }
}
