//! The poll cycle: in-scope users and their availability in, change records out.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::graph::{GraphError, Membership, PresenceSnapshot, Tenant};
use crate::model::{Availability, ChangeRecord, GroupId, SubjectId};
use crate::privacy::{Retention, Subjects};
use crate::run::{RunContext, RunMetrics, RunSummary};
use crate::store::{Known, LastKnown, RecordPlan, RunStore, StoreError};

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
    store: Arc<dyn RunStore>,
    subjects: Subjects,
    retention: Option<Retention>,
}

impl PollCycle {
    /// A cycle that stores object ids as they are and keeps state indefinitely; production adds
    /// [`PollCycle::with_privacy`].
    pub fn new(groups: Vec<GroupId>, tenant: Arc<dyn Tenant>, store: Arc<dyn RunStore>) -> Self {
        Self { groups, tenant, store, subjects: Subjects::plain(), retention: None }
    }

    /// How users are identified in storage, and how long what is known about them is kept.
    pub fn with_privacy(self, subjects: Subjects, retention: Retention) -> Self {
        Self { subjects, retention: Some(retention), ..self }
    }

    pub fn store(&self) -> &Arc<dyn RunStore> {
        &self.store
    }

    pub async fn run(&self, run: &RunContext) -> Result<RunSummary, CycleError> {
        let started = Instant::now();
        // Presence is read while membership is still being paged, so the run's time is taken
        // when both begin.
        let observed_at = observation_time(Utc::now());
        // The state is loaded while Graph is read: at a million users either can take seconds,
        // and neither needs the other.
        let graph = timed(self.tenant.members_and_presence(&self.groups, run));
        let state = timed(self.store.last_known(run));
        let ((graphed, graph_ms), (last_known, store_read_ms)) = tokio::join!(graph, state);
        let (membership, snapshot) = graphed?;
        let last_known = last_known?;
        let recording = Instant::now();
        // From here on users are known only by their stored id (a pseudonym in that mode).
        let view = StoredView::of(&self.subjects, membership, snapshot);
        let expired_before = self.retention.map(|r| r.cutoff(observed_at));
        let plan = plan_changes(&last_known, &view, observed_at, expired_before);
        // Released before recording, so the store can advance its state in place without a copy.
        drop(last_known);
        if view.unreadable_groups > 0 {
            info!(
                unreadable_groups = view.unreadable_groups,
                "some groups could not be read: nobody stops being tracked this run"
            );
        }
        for user in &plan.departed {
            debug!(%user, "left scope: no longer tracked");
        }
        let seen = Seen::of(&view, &plan);
        // At a million users the Graph view is ~50 MB: it is not held while the store writes.
        drop(view);
        debug!(changes = plan.changes.len(), departed = seen.departed, "recording the run");
        let outcome = self.store.record(run, plan).await?;
        let record_ms = recording.elapsed().as_millis() as u64;

        let m = &run.metrics;
        Ok(RunSummary {
            slot: run.slot,
            observed_at,
            users_in_scope: seen.users_in_scope,
            observed: seen.observed,
            unobserved: seen.unobserved,
            changes: outcome.written,
            already_recorded: outcome.already_recorded,
            departed: seen.departed,
            unreadable_groups: seen.unreadable_groups,
            member_pages: RunMetrics::get(&m.member_pages),
            presence_calls: RunMetrics::get(&m.presence_calls),
            throttled: RunMetrics::get(&m.throttled),
            throttle_wait_ms: RunMetrics::get(&m.throttle_wait_ms),
            retries: RunMetrics::get(&m.retries),
            store_request_units: RunMetrics::get(&m.store_request_milli_units) as f64 / 1000.0,
            graph_ms,
            store_read_ms,
            record_ms,
            membership_age_ms: seen.membership_age.as_millis() as u64,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// What a run's summary reports of its Graph view and plan, kept once both are released.
struct Seen {
    users_in_scope: usize,
    observed: usize,
    unobserved: usize,
    departed: usize,
    unreadable_groups: usize,
    membership_age: Duration,
}

impl Seen {
    fn of(view: &StoredView, plan: &RecordPlan) -> Self {
        Self {
            users_in_scope: view.members.len(),
            observed: view.observations.len(),
            unobserved: view.unobserved,
            departed: plan.departed.len(),
            unreadable_groups: view.unreadable_groups,
            membership_age: view.membership_age,
        }
    }
}

/// A future's output and how long it took, in milliseconds.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    let started = Instant::now();
    let output = work.await;
    (output, started.elapsed().as_millis() as u64)
}

/// Stored timestamps have millisecond precision; the run's time is cut to it once, so what is
/// compared in memory is exactly what is stored.
fn observation_time(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(now)
}

/// What a run saw of the tenant, every user known only by their stored id: what change detection
/// compares with the stored state.
#[derive(Debug, Default)]
pub struct StoredView {
    /// The users in scope, sorted.
    pub members: Vec<SubjectId>,
    pub observations: Vec<(SubjectId, Availability)>,
    /// Users asked about without an answer this run.
    pub unobserved: usize,
    pub unreadable_groups: usize,
    /// How old the membership was ([`Membership::age`]).
    pub membership_age: Duration,
}

impl StoredView {
    /// The one place a run turns the object ids Graph gave into the ids the store keeps. Graph's
    /// view is consumed, so no object id outlives this call (and the vectors of 16-byte ids are
    /// converted in place rather than copied).
    pub fn of(subjects: &Subjects, membership: Membership, snapshot: PresenceSnapshot) -> Self {
        for failure in &snapshot.failed_batches {
            if let Some(user) = failure.single_user {
                debug!(user = %subjects.stored_id(user), error = %failure.reason, "Graph refused presence for this user");
            }
        }
        let mut members: Vec<SubjectId> = membership.users.into_iter().map(|u| subjects.stored_id(u)).collect();
        if subjects.is_pseudonymous() {
            // Membership is sorted by contract; pseudonyms are not in the same order.
            members.sort_unstable();
        }
        let observations =
            snapshot.observations.into_iter().map(|o| (subjects.stored_id(o.user_id), o.availability)).collect();
        Self {
            members,
            observations,
            unobserved: snapshot.unobserved.len(),
            unreadable_groups: membership.unreadable_groups.len(),
            membership_age: membership.age,
        }
    }
}

/// Change detection: what one run must record, given the last-known state and what it saw.
///
/// - A user observed for the first time, or with an availability other than the last recorded
///   one, gets a record dated `observed_at`.
/// - A user in the state but no longer a member stops being tracked, unless some group could not
///   be read: membership is then partly unknown, and unknown is not "left".
/// - A user without an observation this run changes nothing.
/// - Retention (`expired_before`): a last-known entry older than the retention period is as good
///   as unknown, since the record it came from has been deleted. An observed user gets a fresh
///   record (so the kept history still starts with what they were); one not observed stops being
///   tracked. Either way nothing older than the retention stays in the state.
pub fn plan_changes(
    last_known: &LastKnown,
    view: &StoredView,
    observed_at: DateTime<Utc>,
    expired_before: Option<DateTime<Utc>>,
) -> RecordPlan {
    let in_scope = SortedUsers::new(&view.members);
    let is_expired = |known: &Known| expired_before.is_some_and(|cutoff| known.at < cutoff);
    let mut changes: Vec<ChangeRecord> = view
        .observations
        .iter()
        .filter(|(user, _)| in_scope.contains(user))
        .filter(|(user, availability)| match last_known.get(user) {
            Some(known) => known.availability != *availability || is_expired(&known),
            None => true,
        })
        .map(|(user, availability)| ChangeRecord {
            subject: *user,
            availability: availability.clone(),
            timestamp: observed_at,
        })
        .collect();
    // One record per user and run: a duplicated observation must not collide on its key. Sorted
    // rather than hashed (no second copy of a million ids), and user order is the stores' key order.
    changes.sort_by_key(|c| c.subject);
    changes.dedup_by_key(|c| c.subject);
    let recorded = |user: &SubjectId| changes.binary_search_by_key(user, |c| c.subject).is_ok();
    let scope_is_known = view.unreadable_groups == 0;
    let mut departed: Vec<SubjectId> = last_known
        .iter()
        .filter(|(user, known)| {
            let left = scope_is_known && !in_scope.contains(user);
            left || (is_expired(known) && !recorded(user))
        })
        .map(|(user, _)| user)
        .collect();
    departed.sort_unstable();
    RecordPlan { changes, departed, observed_at }
}

/// Membership lists are sorted by contract; a defensive copy is made only if one is not.
struct SortedUsers<'a>(std::borrow::Cow<'a, [SubjectId]>);

impl<'a> SortedUsers<'a> {
    fn new(users: &'a [SubjectId]) -> Self {
        if users.is_sorted() {
            Self(std::borrow::Cow::Borrowed(users))
        } else {
            let mut owned = users.to_vec();
            owned.sort_unstable();
            Self(std::borrow::Cow::Owned(owned))
        }
    }

    fn contains(&self, user: &SubjectId) -> bool {
        self.0.binary_search(user).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::graph::GroupProblem;
    use crate::model::{Observation, Slot, UserId};
    use crate::store::RecordOutcome;

    /// How a test's user `u` is stored: by their object id, as the cycle stores it without a key.
    fn subject(u: u128) -> SubjectId {
        Subjects::plain().stored_id(UserId::from_u128(u))
    }

    /// A tenant whose membership and presence the test sets before each run.
    #[derive(Default)]
    struct ScriptedTenant {
        now: Mutex<(Membership, PresenceSnapshot)>,
    }

    impl ScriptedTenant {
        fn set(&self, members: &[u128], unreadable: bool, presence: &[(u128, &str)]) {
            let mut users: Vec<UserId> = members.iter().map(|&u| UserId::from_u128(u)).collect();
            users.sort();
            let unreadable_groups = if unreadable {
                vec![GroupProblem { group_id: GroupId::from_u128(99), reason: "403".into() }]
            } else {
                Vec::new()
            };
            let observations = presence
                .iter()
                .map(|&(u, a)| Observation { user_id: UserId::from_u128(u), availability: Availability::from(a) })
                .collect::<Vec<_>>();
            let unobserved = users.iter().filter(|u| !observations.iter().any(|o| o.user_id == **u)).copied().collect();
            *self.now.lock().unwrap() = (
                Membership { users, unreadable_groups, ..Membership::default() },
                PresenceSnapshot { observations, unobserved, ..Default::default() },
            );
        }
    }

    #[async_trait]
    impl Tenant for ScriptedTenant {
        async fn members(&self, _groups: &[GroupId], _run: &RunContext) -> Result<Membership, GraphError> {
            Ok(self.now.lock().unwrap().0.clone())
        }

        async fn presence(&self, _users: &[UserId], _run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
            Ok(self.now.lock().unwrap().1.clone())
        }
    }

    /// The simplest faithful store: state and history in memory.
    #[derive(Default)]
    struct MemoryStore {
        state: Mutex<(LastKnown, Vec<ChangeRecord>)>,
    }

    #[async_trait]
    impl RunStore for MemoryStore {
        async fn last_known(&self, _run: &RunContext) -> Result<Arc<LastKnown>, StoreError> {
            Ok(Arc::new(self.state.lock().unwrap().0.clone()))
        }

        async fn record(&self, _run: &RunContext, plan: RecordPlan) -> Result<RecordOutcome, StoreError> {
            let mut guard = self.state.lock().unwrap();
            let (state, history) = &mut *guard;
            for c in &plan.changes {
                state.set(c.subject, Known { availability: c.availability.clone(), at: c.timestamp });
                history.push(c.clone());
            }
            for u in &plan.departed {
                state.depart(u, plan.observed_at);
            }
            Ok(RecordOutcome { written: plan.changes.len(), ..RecordOutcome::default() })
        }

        fn describe(&self) -> String {
            "memory".into()
        }
    }

    struct Harness {
        tenant: Arc<ScriptedTenant>,
        store: Arc<MemoryStore>,
        cycle: PollCycle,
        runs: i64,
    }

    impl Harness {
        fn new() -> Self {
            let tenant = Arc::new(ScriptedTenant::default());
            let store = Arc::new(MemoryStore::default());
            let cycle = PollCycle::new(vec![GroupId::from_u128(1)], tenant.clone(), store.clone());
            Self { tenant, store, cycle, runs: 0 }
        }

        async fn run(&mut self) -> RunSummary {
            self.runs += 1;
            let slot = Slot::new(DateTime::UNIX_EPOCH + TimeDelta::minutes(5 * self.runs));
            let run = RunContext::new(format!("test-{}", self.runs), slot, Duration::from_secs(60));
            self.cycle.run(&run).await.unwrap()
        }

        fn records(&self, user: u128) -> Vec<ChangeRecord> {
            let guard = self.store.state.lock().unwrap();
            guard.1.iter().filter(|r| r.subject == subject(user)).cloned().collect()
        }

        fn history(&self, user: u128) -> Vec<String> {
            self.records(user).iter().map(|r| r.availability.to_string()).collect()
        }

        fn tracked(&self, user: u128) -> bool {
            self.store.state.lock().unwrap().0.get(&subject(user)).is_some()
        }
    }

    #[tokio::test]
    async fn first_sighting_then_only_changes_are_recorded() {
        let mut h = Harness::new();
        h.tenant.set(&[1, 2], false, &[(1, "Available"), (2, "Away")]);
        assert_eq!(h.run().await.changes, 2);
        h.tenant.set(&[1, 2], false, &[(1, "Available"), (2, "Away")]);
        assert_eq!(h.run().await.changes, 0);
        h.tenant.set(&[1, 2], false, &[(1, "Busy"), (2, "Away")]);
        let summary = h.run().await;
        assert_eq!(summary.changes, 1);
        assert_eq!(h.history(1), ["Available", "Busy"]);
        assert_eq!(h.history(2), ["Away"]);
    }

    #[tokio::test]
    async fn records_carry_the_run_observation_time() {
        let mut h = Harness::new();
        h.tenant.set(&[1], false, &[(1, "Available")]);
        let summary = h.run().await;
        let records = h.records(1);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].timestamp, summary.observed_at);
        assert_eq!(summary.observed_at.timestamp_subsec_nanos() % 1_000_000, 0, "millisecond precision");
    }

    #[tokio::test]
    async fn an_unobserved_user_changes_nothing() {
        let mut h = Harness::new();
        h.tenant.set(&[1], false, &[(1, "Available")]);
        h.run().await;
        h.tenant.set(&[1], false, &[]);
        let summary = h.run().await;
        assert_eq!((summary.changes, summary.departed, summary.unobserved), (0, 0, 1));
        assert!(h.tracked(1));
        h.tenant.set(&[1], false, &[(1, "Available")]);
        assert_eq!(h.run().await.changes, 0, "the same value after a gap is not a change");
    }

    #[tokio::test]
    async fn users_who_leave_scope_stop_being_tracked_and_return_as_new() {
        let mut h = Harness::new();
        h.tenant.set(&[1, 2], false, &[(1, "Available"), (2, "Away")]);
        h.run().await;
        h.tenant.set(&[1], false, &[(1, "Available")]);
        assert_eq!(h.run().await.departed, 1);
        assert!(!h.tracked(2));
        h.tenant.set(&[1, 2], false, &[(1, "Available"), (2, "Away")]);
        assert_eq!(h.run().await.changes, 1, "a returning user is a first sighting");
        assert_eq!(h.history(2), ["Away", "Away"]);
    }

    #[tokio::test]
    async fn nobody_is_dropped_while_a_group_is_unreadable() {
        let mut h = Harness::new();
        h.tenant.set(&[1, 2], false, &[(1, "Available"), (2, "Away")]);
        h.run().await;
        h.tenant.set(&[1], true, &[(1, "Available")]);
        let summary = h.run().await;
        assert_eq!((summary.departed, summary.unreadable_groups), (0, 1));
        assert!(h.tracked(2));
    }

    #[tokio::test]
    async fn duplicate_and_out_of_scope_observations_are_ignored() {
        let mut h = Harness::new();
        h.tenant.set(&[1], false, &[(1, "Available"), (1, "Busy"), (3, "Away")]);
        assert_eq!(h.run().await.changes, 1);
        assert_eq!(h.history(1), ["Available"]);
        assert!(h.history(3).is_empty());
    }

    /// At a million users Graph's view is tens of megabytes: the stored view takes over its
    /// buffers (same-sized elements, so the conversion collects in place) instead of copying them.
    #[test]
    fn the_stored_view_reuses_the_buffers_of_graphs_view() {
        let users: Vec<UserId> = (0..1_000).map(UserId::from_u128).collect();
        let observations: Vec<Observation> =
            users.iter().map(|&user_id| Observation { user_id, availability: "Away".into() }).collect();
        let (members_at, observations_at) = (users.as_ptr() as usize, observations.as_ptr() as usize);
        let membership = Membership { users, ..Membership::default() };
        let snapshot = PresenceSnapshot { observations, ..PresenceSnapshot::default() };
        let view = StoredView::of(&Subjects::plain(), membership, snapshot);
        assert_eq!(view.members.as_ptr() as usize, members_at);
        assert_eq!(view.observations.as_ptr() as usize, observations_at);
    }

    #[test]
    fn availability_comparison_is_exact() {
        let mut state = LastKnown::default();
        let user = subject(1);
        state.set(user, Known { availability: "Available".into(), at: DateTime::UNIX_EPOCH });
        let view =
            StoredView { members: vec![user], observations: vec![(user, "available".into())], ..StoredView::default() };
        let plan = plan_changes(&state, &view, DateTime::UNIX_EPOCH, None);
        assert_eq!(plan.changes.len(), 1, "a change of spelling is what Graph said: recorded");
    }
}
