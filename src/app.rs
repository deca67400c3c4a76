//! Wiring: builds the production Graph client, credential and store from the configuration.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, StoreConfig, StoreSettings};
use crate::cycle::PollCycle;
use crate::graph::client::GraphClient;
use crate::graph::reuse::MembershipReuse;
use crate::graph::{GraphError, Tenant};
use crate::identity::{self, IdentityError};
use crate::rights::Rights;
use crate::store::{self, RightsStore, StoreError};
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
    let tenant = tenant(GraphClient::new(&config.graph, credential.clone())?, config.membership_inline_limit);
    let store = store::open(&config.store, config.retention(), Some(credential)).await?;
    let store = Arc::new(InstrumentedStore(store));
    Ok(PollCycle::new(config.groups.clone(), tenant, store).with_privacy(config.subjects.clone(), config.retention()))
}

/// The tenant as runs see it: the Graph client, its phases timed as spans (exported when App
/// Insights is configured, free otherwise), and slow membership reused between runs. Reuse sits
/// outside the spans, so that a background membership read is timed as a `graph.members` phase.
pub fn tenant(graph: GraphClient, membership_inline_limit: Duration) -> Arc<dyn Tenant> {
    let instrumented = Arc::new(InstrumentedTenant(Arc::new(graph)));
    Arc::new(MembershipReuse::new(instrumented, membership_inline_limit))
}

/// The store as a data subject's rights see it, for admin commands; a credential is built only
/// when Cosmos DB needs one.
pub async fn open_rights_store(config: &StoreConfig) -> Result<Arc<dyn RightsStore>, InitError> {
    let credential = match config.store {
        StoreSettings::Cosmos(_) => Some(identity::credential()?),
        StoreSettings::Sqlite { .. } => None,
    };
    Ok(store::open(&config.store, config.retention(), credential).await?)
}

/// Export and erasure of one person's data, on the configured store.
pub async fn open_rights(config: &StoreConfig) -> Result<Rights, InitError> {
    Ok(Rights::new(open_rights_store(config).await?, config.subjects.clone()))
}
