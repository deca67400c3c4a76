//! The production Microsoft Graph client: one pooled HTTP client, one token source, one retry
//! policy and one presence rate limiter, shared by every run of the process.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;

use super::rate_limit::RateLimiter;
use super::request::Sender;
use super::token::TokenSource;
use super::{GraphError, Membership, PresenceSnapshot, Tenant};
use crate::config::GraphSettings;
use crate::model::{GroupId, UserId};
use crate::run::RunContext;

/// Graph rejects presence calls with more ids than this.
pub const MAX_IDS_PER_PRESENCE_CALL: usize = 650;

pub struct GraphClient {
    pub(super) settings: GraphSettings,
    /// `settings.base_url` as text, without a trailing slash.
    pub(super) base: String,
    pub(super) sender: Sender,
    /// Shared by every run: Graph's limit is per app per tenant, not per run.
    pub(super) presence_limiter: RateLimiter,
}

impl GraphClient {
    pub fn new(settings: &GraphSettings, credential: Arc<dyn TokenCredential>) -> Result<Self, GraphError> {
        let tokens = TokenSource::new(credential, settings.token_scope());
        let sender = Sender::new(&settings.tuning, tokens)?;
        let presence_limiter = RateLimiter::new(settings.presence_calls_per_30s, settings.tuning.presence_window);
        Ok(Self {
            settings: settings.clone(),
            base: settings.base_url.as_str().trim_end_matches('/').to_string(),
            sender,
            presence_limiter,
        })
    }

    pub(super) fn presence_batch_size(&self) -> usize {
        self.settings.tuning.presence_batch_size.clamp(1, MAX_IDS_PER_PRESENCE_CALL)
    }
}

#[async_trait]
impl Tenant for GraphClient {
    async fn members(&self, groups: &[GroupId], run: &RunContext) -> Result<Membership, GraphError> {
        self.transitive_user_members(groups, run, None).await
    }

    async fn presence(&self, users: &[UserId], run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        self.availability_of(users, run).await
    }

    async fn members_and_presence(
        &self,
        groups: &[GroupId],
        run: &RunContext,
    ) -> Result<(Membership, PresenceSnapshot), GraphError> {
        self.members_with_presence(groups, run).await
    }
}
