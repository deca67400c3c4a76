//! Where history lives: Azure Cosmos DB for NoSQL, or an embedded SQLite file for local runs.

use std::collections::HashMap;

use async_trait::async_trait;

use crate::model::{Availability, ChangeRecord, Slot, UserId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// The last recorded availability of every tracked user.
    async fn last_known(&self) -> Result<HashMap<UserId, Availability>, StoreError>;

    /// Writes the change records of `slot`, then advances the last-known state.
    async fn record(&self, slot: Slot, changes: &[ChangeRecord]) -> Result<(), StoreError>;

    /// One user's records, oldest first.
    async fn export_user(&self, user: UserId) -> Result<Vec<ChangeRecord>, StoreError>;

    /// Human-readable description of where the data is, for `check` and the demo summary.
    fn describe(&self) -> String;
}

use std::sync::Arc;

use crate::config::StoreSettings;

/// Opens the configured store (filled in by the store capability). `credential` is the managed
/// identity shared with Graph; Cosmos DB needs it unless an emulator key is configured.
pub async fn open(
    settings: &StoreSettings,
    _retention_days: u32,
    _credential: Option<Arc<dyn azure_core::credentials::TokenCredential>>,
) -> Result<Arc<dyn HistoryStore>, StoreError> {
    Err(StoreError::Unavailable(format!("{settings:?}: not implemented yet")))
}
