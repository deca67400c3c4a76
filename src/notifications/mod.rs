//! The publisher's install-notification receiver: its own small Function App (publisher/), a
//! custom handler like `handler`, that counts Managed Application lifecycle notifications by
//! plan, version, event and day, the anonymous installation telemetry the privacy policy names
//! ("plan, version, anonymized deployment date — no tenant ID, no resource IDs").
//!
//! It shares only the crate's logging with the product ([`crate::telemetry`]); nothing here
//! depends on the poll cycle, Graph or the history store.

pub mod cosmos;
pub mod counts;
pub mod event;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use sha2::{Digest, Sha256};

use counts::{CountError, InstallCounts, SqliteCounts};

pub const DEFAULT_DATABASE: &str = "installs";
pub const DEFAULT_CONTAINER: &str = "installs";

/// The receiver's settings (app settings in Azure, flags or environment locally).
#[derive(Args, Clone, Debug, Default)]
pub struct ReceiverSettings {
    /// SHA-256 (hex) of the `sig` token in the notification endpoint URL; the token itself is
    /// never stored in the app (`install-notifications sig-digest` computes this).
    #[arg(long, env = "NOTIFICATION_SIG_SHA256")]
    pub sig_sha256: Option<String>,
    /// Cosmos DB account endpoint of the counts; empty: the SQLite file at INSTALLS_DB.
    #[arg(long = "cosmos-endpoint", env = "COSMOS_ENDPOINT")]
    pub cosmos_endpoint: Option<String>,
    #[arg(long = "cosmos-database", env = "COSMOS_DATABASE", default_value = DEFAULT_DATABASE)]
    pub cosmos_database: String,
    #[arg(long = "cosmos-container", env = "COSMOS_CONTAINER", default_value = DEFAULT_CONTAINER)]
    pub cosmos_container: String,
    /// SQLite file of the counts for local runs.
    #[arg(long = "installs-db", env = "INSTALLS_DB", default_value = "installs.db")]
    pub installs_db: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverConfigError {
    #[error(
        "NOTIFICATION_SIG_SHA256 is not set: expected the SHA-256 (64 hex digits) of the endpoint's sig token, from `install-notifications sig-digest`"
    )]
    MissingSig,
    #[error("NOTIFICATION_SIG_SHA256 is not 64 hex digits (the SHA-256 of the sig token); got {0} characters")]
    BadSig(usize),
    #[error(transparent)]
    Counts(#[from] CountError),
    #[error("Cosmos DB needs the managed identity: {0}")]
    Identity(String),
}

/// Where the counts go, parsed once.
pub enum CountStore {
    Cosmos { endpoint: String, database: String, container: String },
    Sqlite(PathBuf),
}

pub struct ReceiverConfig {
    pub sig_digest: [u8; 32],
    pub store: CountStore,
}

impl ReceiverConfig {
    pub fn parse(settings: &ReceiverSettings) -> Result<Self, ReceiverConfigError> {
        let hex = settings
            .sig_sha256
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(ReceiverConfigError::MissingSig)?;
        let sig_digest = parse_hex32(hex).ok_or(ReceiverConfigError::BadSig(hex.len()))?;
        let store = match settings.cosmos_endpoint.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(endpoint) => CountStore::Cosmos {
                endpoint: endpoint.to_string(),
                database: settings.cosmos_database.clone(),
                container: settings.cosmos_container.clone(),
            },
            None => CountStore::Sqlite(settings.installs_db.clone()),
        };
        Ok(Self { sig_digest, store })
    }

    pub async fn open_counts(&self) -> Result<Arc<dyn InstallCounts>, ReceiverConfigError> {
        Ok(match &self.store {
            CountStore::Sqlite(path) => Arc::new(SqliteCounts::open(path)?),
            CountStore::Cosmos { endpoint, database, container } => {
                let credential =
                    crate::identity::credential().map_err(|e| ReceiverConfigError::Identity(e.to_string()))?;
                Arc::new(cosmos::CosmosCounts::connect(endpoint, database, container, credential).await?)
            }
        })
    }
}

/// SHA-256 of a sig token, as NOTIFICATION_SIG_SHA256 holds it.
pub fn sig_digest_hex(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sig_digest_round_trips_and_bad_settings_are_named() {
        let hex = sig_digest_hex("token");
        let settings = ReceiverSettings { sig_sha256: Some(hex.clone()), ..Default::default() };
        let config = ReceiverConfig::parse(&settings).unwrap();
        assert_eq!(config.sig_digest.to_vec(), Sha256::digest(b"token").to_vec());
        assert!(matches!(config.store, CountStore::Sqlite(_)));
        let missing = ReceiverConfig::parse(&ReceiverSettings::default()).err().unwrap();
        assert!(missing.to_string().contains("sig-digest"), "{missing}");
        let bad = ReceiverSettings { sig_sha256: Some("abc".into()), ..Default::default() };
        assert!(matches!(ReceiverConfig::parse(&bad), Err(ReceiverConfigError::BadSig(3))));
    }
}
