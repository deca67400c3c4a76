//! Wiring: builds the production Graph client, credential and store from the configuration.

use std::sync::Arc;

use crate::config::{Config, StoreConfig, StoreSettings};
use crate::cycle::PollCycle;
use crate::graph::GraphError;
use crate::graph::client::GraphClient;
use crate::identity::{self, IdentityError};
use crate::privacy::Rights;
use crate::store::{self, HistoryStore, StoreError};
use crate::telemetry::instrumented::{InstrumentedStore, InstrumentedTenant};

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
    let store = store::open(&config.store, config.retention(), Some(credential)).await?;
    // The wrappers time each Graph and store phase of a run as a span (exported when App
    // Insights is configured, free otherwise).
    let tenant = Arc::new(InstrumentedTenant(Arc::new(tenant)));
    let store = Arc::new(InstrumentedStore(store));
    Ok(PollCycle::new(config.groups.clone(), tenant, store).with_privacy(config.subjects.clone(), config.retention()))
}

/// The store alone, for admin commands; a credential is built only when Cosmos DB needs one.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn HistoryStore>, InitError> {
    let credential = match config.store {
        StoreSettings::Cosmos(_) => Some(identity::credential()?),
        StoreSettings::Sqlite { .. } => None,
    };
    Ok(store::open(&config.store, config.retention(), credential).await?)
}

/// Export and erasure of one person's data, on the configured store.
pub async fn open_rights(config: &StoreConfig) -> Result<Rights, InitError> {
    Ok(Rights::new(open_store(config).await?, config.subjects.clone()))
}
