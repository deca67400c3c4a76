//! An in-test [`Tenant`] and [`HistoryStore`] for telemetry tests, standing in for the Graph
//! client and the Cosmos store (written elsewhere). They behave as those are specified to:
//! member pages of 999, presence batches of 650, 429s counted with their Retry-After, one
//! dependency span per simulated request through `telemetry::dependency`, and counters in the
//! run's `RunMetrics`. Availability changes with the run number, so runs write changes.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use teams_presence::cycle::{RunContext, RunMetrics};
use teams_presence::graph::{GraphError, GroupProblem, Membership, PresenceSnapshot, Tenant};
use teams_presence::model::{Availability, ChangeRecord, GroupId, Observation, UserId};
use teams_presence::privacy::{AuditEntry, Erasure};
use teams_presence::store::state::{Known, LastKnown};
use teams_presence::store::{HistoryStore, RecordOutcome, RecordPlan, StoreError};
use teams_presence::telemetry::dependency;
use url::Url;

pub const MEMBER_PAGE: usize = 999;
pub const PRESENCE_BATCH: usize = 650;
const AVAILABILITIES: [&str; 4] = ["Available", "Busy", "Away", "Offline"];

pub struct ScriptedTenant {
    pub users: Vec<UserId>,
    /// Groups that answer 403 (their members are unknown this run).
    pub unreadable: Vec<GroupId>,
    /// How many presence calls answer 429 first (each then retried), and the wait each asks.
    pub throttles: u32,
    pub retry_after: Duration,
    /// Users Graph leaves out of every presence answer.
    pub silent: usize,
    /// When set, the presence phase fails with this message.
    pub fail_presence: Option<String>,
    run: AtomicU32,
}

impl ScriptedTenant {
    pub fn new(users: usize) -> Self {
        Self {
            users: (0..users)
                .map(|i| uuid::Uuid::from_u128(0x5eed_0000_0000_4000_8000_0000_0000_0000 + i as u128))
                .collect(),
            unreadable: Vec::new(),
            throttles: 0,
            retry_after: Duration::from_millis(0),
            silent: 0,
            fail_presence: None,
            run: AtomicU32::new(0),
        }
    }

    pub fn expected_member_pages(&self, readable_groups: usize) -> u64 {
        (readable_groups * self.users.len().div_ceil(MEMBER_PAGE)) as u64
    }

    pub fn expected_presence_calls(&self) -> u64 {
        self.users.len().div_ceil(PRESENCE_BATCH) as u64 + u64::from(self.throttles)
    }
}

fn graph_url(path: &str) -> Url {
    Url::parse(&format!("https://graph.microsoft.com/v1.0{path}")).unwrap()
}

#[async_trait]
impl Tenant for ScriptedTenant {
    async fn members(&self, groups: &[GroupId], run: &RunContext) -> Result<Membership, GraphError> {
        self.run.fetch_add(1, Ordering::Relaxed);
        let mut unreadable_groups = Vec::new();
        for group in groups {
            let url = graph_url(&format!("/groups/{group}/transitiveMembers/microsoft.graph.user?$select=id&$top=999"));
            if self.unreadable.contains(group) {
                let span = dependency::graph_call("GET /groups/{id}/transitiveMembers", "GET", &url, 1);
                dependency::record_http_status(&span, 403);
                let _inside = span.enter();
                tracing::warn!(group_id = %group, "group could not be read: 403 Authorization_RequestDenied");
                unreadable_groups.push(GroupProblem { group_id: *group, reason: "403".into() });
                continue;
            }
            for _page in 0..self.users.len().div_ceil(MEMBER_PAGE) {
                let span = dependency::graph_call("GET /groups/{id}/transitiveMembers", "GET", &url, 1);
                dependency::record_http_status(&span, 200);
                RunMetrics::add(&run.metrics.member_pages, 1);
            }
        }
        Ok(Membership { users: self.users.clone(), unreadable_groups })
    }

    async fn presence(&self, users: &[UserId], run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        if let Some(message) = &self.fail_presence {
            return Err(GraphError::Call { operation: "getPresencesByUserId".into(), message: message.clone() });
        }
        let url = graph_url("/communications/getPresencesByUserId");
        let name = "POST /communications/getPresencesByUserId";
        for _ in 0..self.throttles {
            let span = dependency::graph_call(name, "POST", &url, 1);
            dependency::record_http_status(&span, 429);
            dependency::record_retry_after(&span, self.retry_after);
            RunMetrics::add(&run.metrics.presence_calls, 1);
            RunMetrics::add(&run.metrics.throttled, 1);
            RunMetrics::add(&run.metrics.throttle_wait_ms, self.retry_after.as_millis() as u64);
            RunMetrics::add(&run.metrics.retries, 1);
        }
        let round = self.run.load(Ordering::Relaxed) as usize;
        let mut observations = Vec::new();
        for (batch_no, batch) in users.chunks(PRESENCE_BATCH).enumerate() {
            let attempt = if batch_no == 0 && self.throttles > 0 { self.throttles + 1 } else { 1 };
            let span = dependency::graph_call(name, "POST", &url, attempt);
            dependency::record_http_status(&span, 200);
            RunMetrics::add(&run.metrics.presence_calls, 1);
            for (i, user) in batch.iter().enumerate() {
                let index = batch_no * PRESENCE_BATCH + i;
                if index < self.silent {
                    continue;
                }
                // Every user changes on each run after the first for even indices only.
                let value =
                    AVAILABILITIES[(index + if index.is_multiple_of(2) { round } else { 0 }) % AVAILABILITIES.len()];
                observations.push(Observation { user_id: *user, availability: Availability::from(value) });
            }
        }
        let unobserved = users[..self.silent.min(users.len())].to_vec();
        Ok(PresenceSnapshot { observations, unobserved, ..PresenceSnapshot::default() })
    }
}

/// History in memory, charging a fixed request charge per write as Cosmos would report it.
#[derive(Default)]
pub struct MemoryStore {
    last: Mutex<LastKnown>,
    pub records: Mutex<Vec<ChangeRecord>>,
    audit: Mutex<Vec<AuditEntry>>,
}

pub const RU_PER_WRITE: f64 = 6.29;

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn last_known(&self, _run: &RunContext) -> Result<Arc<LastKnown>, StoreError> {
        let endpoint = Url::parse("https://presence-test.documents.azure.com:443/").unwrap();
        let span = dependency::cosmos_call("query_items", "presence", "state", &endpoint);
        dependency::record_cosmos_status(&span, 200, 2.83);
        Ok(Arc::new(self.last.lock().unwrap().clone()))
    }

    async fn record(&self, run: &RunContext, plan: &RecordPlan) -> Result<RecordOutcome, StoreError> {
        let endpoint = Url::parse("https://presence-test.documents.azure.com:443/").unwrap();
        let span = dependency::cosmos_call("execute_batch", "presence", "history", &endpoint);
        let charge = RU_PER_WRITE * plan.changes.len() as f64;
        dependency::record_cosmos_status(&span, 200, charge);
        RunMetrics::add(&run.metrics.store_request_milli_units, (charge * 1000.0).round() as u64);
        let mut last = self.last.lock().unwrap();
        for change in &plan.changes {
            last.set(change.user_id, Known { availability: change.availability.clone(), at: change.timestamp });
        }
        for user in &plan.departed {
            last.remove(user);
        }
        self.records.lock().unwrap().extend_from_slice(&plan.changes);
        Ok(RecordOutcome { written: plan.changes.len(), ..RecordOutcome::default() })
    }

    async fn export_user(&self, user: UserId) -> Result<Vec<ChangeRecord>, StoreError> {
        Ok(self.records.lock().unwrap().iter().filter(|r| r.user_id == user).cloned().collect())
    }

    async fn erase_user(&self, _run: &RunContext, user: UserId) -> Result<Erasure, StoreError> {
        let mut records = self.records.lock().unwrap();
        let before = records.len();
        records.retain(|r| r.user_id != user);
        let state_entries = usize::from(self.last.lock().unwrap().remove(&user).is_some());
        Ok(Erasure { history_records: before - records.len(), state_entries })
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.audit.lock().unwrap().push(entry.clone());
        Ok(())
    }

    async fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.audit.lock().unwrap().clone())
    }

    fn describe(&self) -> String {
        "in memory".into()
    }
}
