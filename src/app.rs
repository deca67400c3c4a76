//! Wiring: builds the production Graph client, credential and store from the configuration.

use std::sync::Arc;

use crate::config::{Config, StoreConfig, StoreSettings};
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
    let store = store::open(&config.store, config.retention_days, Some(credential)).await?;
    Ok(PollCycle::new(config.groups.clone(), Arc::new(tenant), store))
}

/// The store alone, for admin commands; a credential is built only when Cosmos DB needs one.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn HistoryStore>, InitError> {
    let credential = match config.store {
        StoreSettings::Cosmos(_) => Some(identity::credential()?),
        StoreSettings::Sqlite { .. } => None,
    };
    Ok(store::open(&config.store, config.retention_days, credential).await?)
}
