//! The poller's view of the tenant through Microsoft Graph: who is in scope and their availability.
//!
//! The poll cycle depends only on the [`Tenant`] trait, so tests and the simulator-backed local run
//! go through the same production client ([`client::GraphClient`]) as a real deployment.

use std::time::Duration;

use async_trait::async_trait;

use crate::model::{GroupId, Observation, UserId};
use crate::run::RunContext;

pub mod client;
mod members;
pub mod phases;
mod presence;
pub mod rate_limit;
mod request;
pub mod retry;
pub mod reuse;
mod token;

/// A configured group that could not be read this run; the other groups go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupProblem {
    pub group_id: GroupId,
    pub reason: String,
}

/// The distinct user members (transitive) of the configured groups.
#[derive(Clone, Debug, Default)]
pub struct Membership {
    /// Sorted and de-duplicated across groups.
    pub users: Vec<UserId>,
    /// Groups that could not be read. Their members are unknown this run, which is not the same
    /// as "the group is now empty": callers must not stop tracking users because of them.
    pub unreadable_groups: Vec<GroupProblem>,
    /// How long paging took.
    pub read_in: Duration,
    /// Zero when this run read it; how long ago it was read when the run reused an earlier read
    /// ([`reuse::MembershipReuse`]).
    pub age: Duration,
}

/// A presence call that failed for good: its ids are in `unobserved`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFailure {
    pub ids: usize,
    /// The user of a call for one id that Graph answered with an error: the one it refuses, once
    /// a refused batch is bisected down to them. Not logged here: the cycle names them by their
    /// stored id, since in pseudonym mode their object id must not reach a log line.
    pub single_user: Option<UserId>,
    pub reason: String,
    /// Not a failure of Graph: the run's deadline came before the call could be made or finish.
    pub deadline: bool,
}

/// What one run's presence calls saw.
#[derive(Clone, Debug, Default)]
pub struct PresenceSnapshot {
    pub observations: Vec<Observation>,
    /// Ids asked for but absent from every response (or in batches that failed): no observation.
    pub unobserved: Vec<UserId>,
    /// Calls that failed after their retries (or were cut by the deadline), with the reason.
    pub failed_batches: Vec<BatchFailure>,
}

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("Graph call {operation} failed: {message}")]
    Call { operation: String, message: String },
    #[error(
        "Graph call {operation} failed with HTTP {status} (error code {code:?}, request-id {request_id:?}) {message}"
    )]
    Status { operation: String, status: u16, code: String, request_id: String, message: String },
    #[error("Graph call {operation} returned a body that is not the expected JSON: {detail}")]
    Malformed { operation: String, detail: String },
    #[error("the run deadline was reached during {operation}")]
    Deadline { operation: String },
    #[error("could not get a token for Microsoft Graph: {0}")]
    Token(String),
}

impl GraphError {
    /// Graph's answer for an object that does not exist (or has not replicated yet).
    pub fn is_not_found(&self) -> bool {
        matches!(self, GraphError::Status { status: 404, .. })
    }
}

#[async_trait]
pub trait Tenant: Send + Sync {
    async fn members(&self, groups: &[GroupId], run: &RunContext) -> Result<Membership, GraphError>;

    async fn presence(&self, users: &[UserId], run: &RunContext) -> Result<PresenceSnapshot, GraphError>;

    /// Membership and the presence of every member. This default reads all of membership first;
    /// the Graph client overlaps the two (presence of the first pages' users while later pages
    /// are still being read), since at a million users paging alone takes most of a run.
    async fn members_and_presence(
        &self,
        groups: &[GroupId],
        run: &RunContext,
    ) -> Result<(Membership, PresenceSnapshot), GraphError> {
        let membership = self.members(groups, run).await?;
        let snapshot = self.presence(&membership.users, run).await?;
        Ok((membership, snapshot))
    }
}
