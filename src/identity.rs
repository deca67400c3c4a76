//! The token credential shared by Graph and Cosmos DB.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no credential could be built: {0}")]
    Unavailable(String),
}

/// Selects the credential from the environment (filled in by the Graph capability).
pub fn credential() -> Result<Arc<dyn TokenCredential>, IdentityError> {
    Err(IdentityError::Unavailable("credential selection is not implemented yet".into()))
}
