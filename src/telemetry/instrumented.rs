//! Phase spans around the poll cycle's Graph and store operations, without touching either:
//! wrappers that implement [`Tenant`] and [`RunStore`] by delegating, each call in one span.
//!
//! They show how a run's time splits between reading members, reading presence and the store
//! (App Insights `dependencies` of type `InProc`, children of the run), and they are the parents
//! of the per-request spans the Graph client and store make with [`crate::spans`]. Counts go
//! on the spans; ids never do. The Graph phase spans are built by [`crate::graph::phases`], which
//! the Graph client also uses when it overlaps the two phases itself.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;
use tracing::field::Empty;

use crate::graph::phases::{members_span, presence_span, record_members, record_presence};
use crate::graph::{GraphError, Membership, PresenceSnapshot, Tenant};
use crate::model::{GroupId, UserId};
use crate::run::RunContext;
use crate::spans::{DEPENDENCY_TARGET, record_outcome as outcome};
use crate::store::state::LastKnown;
use crate::store::{RecordOutcome, RecordPlan, RunStore, StoreError};

/// A [`Tenant`] whose calls are timed as `graph.members` and `graph.presence` spans.
pub struct InstrumentedTenant(pub Arc<dyn Tenant>);

#[async_trait]
impl Tenant for InstrumentedTenant {
    async fn members(&self, groups: &[GroupId], run: &RunContext) -> Result<Membership, GraphError> {
        let span = members_span(groups.len());
        let result = self.0.members(groups, run).instrument(span.clone()).await;
        record_members(&span, &result);
        result
    }

    async fn presence(&self, users: &[UserId], run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        let span = presence_span();
        let result = self.0.presence(users, run).instrument(span.clone()).await;
        record_presence(&span, &result);
        result
    }

    /// Delegated as one call, not as `members` then `presence` (the trait's default), so that the
    /// wrapped client still overlaps the two; the Graph client opens the two phase spans itself,
    /// side by side, since only it knows where one phase ends.
    async fn members_and_presence(
        &self,
        groups: &[GroupId],
        run: &RunContext,
    ) -> Result<(Membership, PresenceSnapshot), GraphError> {
        self.0.members_and_presence(groups, run).await
    }
}

/// A [`RunStore`] whose calls are timed as `store.last_known` and `store.record`. The rights
/// contract is not wrapped: export, erasure and the audit trail are not part of a run.
pub struct InstrumentedStore(pub Arc<dyn RunStore>);

#[async_trait]
impl RunStore for InstrumentedStore {
    async fn last_known(&self, run: &RunContext) -> Result<Arc<LastKnown>, StoreError> {
        let span = tracing::info_span!(target: DEPENDENCY_TARGET, "store.last_known",
            users = Empty, otel.status_code = Empty, otel.status_description = Empty);
        let result = self.0.last_known(run).instrument(span.clone()).await;
        if let Ok(known) = &result {
            span.record("users", known.len());
        }
        outcome(&span, &result);
        result
    }

    async fn record(&self, run: &RunContext, plan: RecordPlan) -> Result<RecordOutcome, StoreError> {
        let span = tracing::info_span!(target: DEPENDENCY_TARGET, "store.record",
            changes = plan.changes.len(), written = Empty, already_recorded = Empty,
            otel.status_code = Empty, otel.status_description = Empty);
        let result = self.0.record(run, plan).instrument(span.clone()).await;
        if let Ok(done) = &result {
            span.record("written", done.written);
            span.record("already_recorded", done.already_recorded);
        }
        outcome(&span, &result);
        result
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}
