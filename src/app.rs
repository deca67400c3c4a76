//! Wiring: builds the production Graph client, credential and store from the configuration.

use std::sync::Arc;

use crate::config::Config;
use crate::cycle::PollCycle;
use crate::graph::GraphError;
use crate::graph::client::GraphClient;
use crate::identity::{self, IdentityError};
use crate::store::{self, HistoryStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn build_cycle(config: &Config) -> Result<PollCycle, InitError> {
    let credential = identity::credential()?;
    let tenant = GraphClient::new(&config.graph, credential.clone())?;
    let store = open_store(config).await?;
    Ok(PollCycle::new(config.groups.clone(), Arc::new(tenant), store))
}

pub async fn open_store(config: &Config) -> Result<Arc<dyn HistoryStore>, InitError> {
    Ok(store::open(&config.store, config.retention_days).await?)
}
