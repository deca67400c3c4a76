//! Membership carried over between runs, for tenants whose membership takes long to read.
//!
//! Member pages of one group come one after another (each `@odata.nextLink` arrives with the page
//! before it), so at a million users reading membership takes about a minute, twice what the
//! presence throttle needs for everyone. Once paging took longer than `inline_limit`, a run
//! fetches presence at once for the membership an earlier run read, while a background task reads
//! membership again for the next run. Joiners and leavers then take effect one run later. Smaller
//! tenants read membership in every run, overlapped with presence (`members_and_presence`).
//!
//! The read membership lives in this process only: after a restart the first run reads it again.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use super::{GraphError, Membership, PresenceSnapshot, Tenant};
use crate::model::{GroupId, UserId};
use crate::run::RunContext;

/// A membership older than this is not reused (its refreshes kept failing): the run reads it.
pub const REUSE_AT_MOST: Duration = Duration::from_secs(15 * 60);

/// A [`Tenant`] that reuses the previous read of a slow membership (see the module docs).
pub struct MembershipReuse {
    inner: Arc<dyn Tenant>,
    inline_limit: Duration,
    state: Arc<Mutex<Reusable>>,
}

#[derive(Default)]
struct Reusable {
    latest: Option<Arc<Read>>,
    refresh: Option<JoinHandle<()>>,
}

/// One complete read of the membership of `groups`.
struct Read {
    groups: Vec<GroupId>,
    membership: Membership,
    at: Instant,
}

impl MembershipReuse {
    pub fn new(inner: Arc<dyn Tenant>, inline_limit: Duration) -> Self {
        Self { inner, inline_limit, state: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reusable> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The earlier read this run may use: same groups, slow to read, not too old.
    fn reusable(&self, groups: &[GroupId]) -> Option<Arc<Read>> {
        let latest = self.lock().latest.clone()?;
        let usable = latest.groups == groups
            && latest.membership.read_in > self.inline_limit
            && latest.at.elapsed() <= REUSE_AT_MOST;
        usable.then_some(latest)
    }

    /// Keeps a read for the next run only if paging was slow enough for reuse to pay.
    fn keep(&self, groups: &[GroupId], membership: &Membership) {
        let read = (membership.read_in > self.inline_limit)
            .then(|| Arc::new(Read { groups: groups.to_vec(), membership: membership.clone(), at: Instant::now() }));
        self.lock().latest = read;
    }

    /// Reads membership again in the background, unless a read is still going on; the next run
    /// uses it. It has the run's remaining time, and its log lines carry the run's invocation id.
    fn refresh(&self, groups: &[GroupId], run: &RunContext) {
        let mut state = self.lock();
        if state.refresh.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let budget = run.deadline.saturating_duration_since(Instant::now());
        let context = RunContext::new(run.invocation_id.clone(), run.slot, budget);
        let (inner, shared, groups) = (self.inner.clone(), self.state.clone(), groups.to_vec());
        let task = async move {
            let result = inner.members(&groups, &context).await;
            let pages = context.metrics.member_pages.load(std::sync::atomic::Ordering::Relaxed);
            match result {
                Ok(membership) => {
                    info!(
                        users = membership.users.len(),
                        unreadable_groups = membership.unreadable_groups.len(),
                        member_pages = pages,
                        read_ms = membership.read_in.as_millis() as u64,
                        "membership read in the background for the next run"
                    );
                    let read = Read { groups, membership, at: Instant::now() };
                    shared.lock().unwrap_or_else(PoisonError::into_inner).latest = Some(Arc::new(read));
                }
                Err(e) => warn!(
                    error = %e,
                    member_pages = pages,
                    "membership could not be read in the background; the next run reuses the previous read"
                ),
            }
        };
        state.refresh = Some(tokio::spawn(task.instrument(tracing::Span::current())));
    }

    /// Waits for a background read, if one is going on (for tests: production runs never wait).
    pub async fn settle(&self) {
        let task = self.lock().refresh.take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[async_trait]
impl Tenant for MembershipReuse {
    async fn members(&self, groups: &[GroupId], run: &RunContext) -> Result<Membership, GraphError> {
        self.inner.members(groups, run).await
    }

    async fn presence(&self, users: &[UserId], run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        self.inner.presence(users, run).await
    }

    async fn members_and_presence(
        &self,
        groups: &[GroupId],
        run: &RunContext,
    ) -> Result<(Membership, PresenceSnapshot), GraphError> {
        let Some(read) = self.reusable(groups) else {
            let (membership, snapshot) = self.inner.members_and_presence(groups, run).await?;
            self.keep(groups, &membership);
            return Ok((membership, snapshot));
        };
        let age = read.at.elapsed();
        info!(
            users = read.membership.users.len(),
            age_s = age.as_secs(),
            read_s = read.membership.read_in.as_secs(),
            "membership reused from an earlier read (paging is slow); reading it again for the next run"
        );
        self.refresh(groups, run);
        let snapshot = self.inner.presence(&read.membership.users, run).await?;
        Ok((Membership { age, ..read.membership.clone() }, snapshot))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::model::{Observation, Slot};

    /// A tenant whose membership the test sets; reading it takes `read_in` (paused time).
    struct ScriptedTenant {
        users: Mutex<Vec<UserId>>,
        read_in: Duration,
        fail_reads: Mutex<bool>,
        reads: AtomicUsize,
        presence_calls: AtomicUsize,
    }

    impl ScriptedTenant {
        fn new(users: &[u128], read_in: Duration) -> Arc<Self> {
            Arc::new(Self {
                users: Mutex::new(users.iter().map(|&u| UserId::from_u128(u)).collect()),
                read_in,
                fail_reads: Mutex::new(false),
                reads: AtomicUsize::new(0),
                presence_calls: AtomicUsize::new(0),
            })
        }

        fn set(&self, users: &[u128]) {
            *self.users.lock().unwrap() = users.iter().map(|&u| UserId::from_u128(u)).collect();
        }
    }

    #[async_trait]
    impl Tenant for ScriptedTenant {
        async fn members(&self, _groups: &[GroupId], _run: &RunContext) -> Result<Membership, GraphError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.read_in).await;
            if *self.fail_reads.lock().unwrap() {
                return Err(GraphError::Token("refused".into()));
            }
            let users = self.users.lock().unwrap().clone();
            Ok(Membership { users, read_in: self.read_in, ..Membership::default() })
        }

        async fn presence(&self, users: &[UserId], _run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
            self.presence_calls.fetch_add(1, Ordering::SeqCst);
            let observations =
                users.iter().map(|&user_id| Observation { user_id, availability: "Available".into() }).collect();
            Ok(PresenceSnapshot { observations, ..PresenceSnapshot::default() })
        }
    }

    const GROUPS: &[GroupId] = &[GroupId::from_u128(1)];

    fn run() -> RunContext {
        RunContext::new("test", Slot::new(chrono::DateTime::UNIX_EPOCH), Duration::from_secs(240))
    }

    fn ids(membership: &Membership) -> Vec<u128> {
        membership.users.iter().map(|u| u.expose_object_id().as_u128()).collect()
    }

    async fn poll(reuse: &MembershipReuse) -> Membership {
        let (membership, snapshot) = reuse.members_and_presence(GROUPS, &run()).await.unwrap();
        assert_eq!(snapshot.observations.len(), membership.users.len(), "presence for exactly the membership used");
        membership
    }

    #[tokio::test(start_paused = true)]
    async fn fast_membership_is_read_in_every_run() {
        let tenant = ScriptedTenant::new(&[1, 2], Duration::from_secs(5));
        let reuse = MembershipReuse::new(tenant.clone(), Duration::from_secs(20));
        assert_eq!(ids(&poll(&reuse).await), [1, 2]);
        tenant.set(&[2, 3]);
        let second = poll(&reuse).await;
        assert_eq!((ids(&second), second.age), (vec![2, 3], Duration::ZERO), "a change shows in the next run");
        assert_eq!(tenant.reads.load(Ordering::SeqCst), 2, "no background read");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_membership_is_reused_and_refreshed_for_the_next_run() {
        let tenant = ScriptedTenant::new(&[1, 2], Duration::from_secs(60));
        let reuse = MembershipReuse::new(tenant.clone(), Duration::from_secs(20));
        assert_eq!(ids(&poll(&reuse).await), [1, 2], "the first run reads");
        tenant.set(&[2, 3]);
        tokio::time::advance(Duration::from_secs(240)).await;
        let started = Instant::now();
        let second = poll(&reuse).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "presence starts at once; paging is not waited for");
        assert_eq!(ids(&second), [1, 2], "the earlier read");
        assert!(second.age >= Duration::from_secs(240), "{:?}", second.age);
        reuse.settle().await;
        let third = poll(&reuse).await;
        assert_eq!(ids(&third), [2, 3], "the joiner and the leaver one run later");
        reuse.settle().await;
        assert_eq!(tenant.reads.load(Ordering::SeqCst), 3, "one read per run, two of them in the background");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_still_going_on_is_not_started_twice() {
        let tenant = ScriptedTenant::new(&[1], Duration::from_secs(60));
        let reuse = MembershipReuse::new(tenant.clone(), Duration::from_secs(20));
        poll(&reuse).await;
        poll(&reuse).await;
        poll(&reuse).await;
        reuse.settle().await;
        assert_eq!(tenant.reads.load(Ordering::SeqCst), 2, "the first, inline, and one background read");
    }

    #[tokio::test(start_paused = true)]
    async fn failing_refreshes_keep_the_previous_read_until_it_is_too_old() {
        let tenant = ScriptedTenant::new(&[1, 2], Duration::from_secs(60));
        let reuse = MembershipReuse::new(tenant.clone(), Duration::from_secs(20));
        poll(&reuse).await;
        *tenant.fail_reads.lock().unwrap() = true;
        poll(&reuse).await;
        reuse.settle().await;
        assert_eq!(ids(&poll(&reuse).await), [1, 2], "a failed background read changes nothing");
        reuse.settle().await;
        *tenant.fail_reads.lock().unwrap() = false;
        tenant.set(&[3]);
        tokio::time::advance(REUSE_AT_MOST).await;
        let reads = tenant.reads.load(Ordering::SeqCst);
        let fresh = poll(&reuse).await;
        assert_eq!((ids(&fresh), fresh.age), (vec![3], Duration::ZERO), "too old: the run reads membership itself");
        assert_eq!(tenant.reads.load(Ordering::SeqCst), reads + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn other_groups_are_read_not_reused() {
        let tenant = ScriptedTenant::new(&[1], Duration::from_secs(60));
        let reuse = MembershipReuse::new(tenant.clone(), Duration::from_secs(20));
        poll(&reuse).await;
        let other = [GroupId::from_u128(2)];
        let (membership, _) = reuse.members_and_presence(&other, &run()).await.unwrap();
        assert_eq!(membership.age, Duration::ZERO);
    }
}
