//! The production Microsoft Graph client (filled in by the Graph capability).

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;

use super::{GraphError, Membership, PresenceSnapshot, Tenant};
use crate::config::GraphSettings;
use crate::cycle::RunContext;
use crate::model::{GroupId, UserId};

pub struct GraphClient {
    _settings: GraphSettings,
    _credential: Arc<dyn TokenCredential>,
}

impl GraphClient {
    pub fn new(settings: &GraphSettings, credential: Arc<dyn TokenCredential>) -> Result<Self, GraphError> {
        Ok(Self { _settings: settings.clone(), _credential: credential })
    }
}

#[async_trait]
impl Tenant for GraphClient {
    async fn members(&self, _groups: &[GroupId], _run: &RunContext) -> Result<Membership, GraphError> {
        Err(GraphError::Call { operation: "transitiveMembers".into(), message: "not implemented yet".into() })
    }

    async fn presence(&self, _users: &[UserId], _run: &RunContext) -> Result<PresenceSnapshot, GraphError> {
        Err(GraphError::Call { operation: "getPresencesByUserId".into(), message: "not implemented yet".into() })
    }
}
