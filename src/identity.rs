//! The token credential shared by Graph and Cosmos DB, chosen from the environment:
//! the Function App's managed identity, an app registration's client secret for local runs, or
//! the developer's own Azure CLI / azd login.

use std::sync::Arc;

use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientSecretCredential, DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("no credential could be built: {0}")]
    Unavailable(String),
}

/// Which credential the environment selects; what `credential` builds and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialChoice {
    /// App Service / Functions managed identity (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`);
    /// `client_id` selects a user-assigned identity.
    ManagedIdentity {
        client_id: Option<String>,
    },
    /// `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET`; the authority comes from
    /// `AZURE_AUTHORITY_HOST` (read by `azure_identity` itself).
    ClientSecret {
        tenant_id: String,
        client_id: String,
    },
    DeveloperTools,
}

const CLIENT_SECRET_VARS: [&str; 3] = ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"];

/// Picks the credential from environment values (`var` returns a variable's non-empty value).
pub fn choose(var: impl Fn(&str) -> Option<String>) -> Result<CredentialChoice, IdentityError> {
    let var = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if var("IDENTITY_ENDPOINT").is_some() && var("IDENTITY_HEADER").is_some() {
        return Ok(CredentialChoice::ManagedIdentity { client_id: var("AZURE_CLIENT_ID") });
    }
    let set: Vec<&str> = CLIENT_SECRET_VARS.iter().copied().filter(|n| var(n).is_some()).collect();
    match (var("AZURE_TENANT_ID"), var("AZURE_CLIENT_ID"), var("AZURE_CLIENT_SECRET")) {
        (Some(tenant_id), Some(client_id), Some(_)) => Ok(CredentialChoice::ClientSecret { tenant_id, client_id }),
        // AZURE_CLIENT_ID alone is normal (it names a user-assigned identity elsewhere); a tenant
        // or secret without the rest is a half-done local setup worth naming.
        _ if set.contains(&"AZURE_TENANT_ID") || set.contains(&"AZURE_CLIENT_SECRET") => {
            let missing: Vec<&str> = CLIENT_SECRET_VARS.iter().copied().filter(|n| !set.contains(n)).collect();
            Err(IdentityError::Unavailable(format!(
                "{} set but {} missing: a client-secret credential needs all of {}",
                set.join(", "),
                missing.join(", "),
                CLIENT_SECRET_VARS.join(", ")
            )))
        }
        _ => Ok(CredentialChoice::DeveloperTools),
    }
}

/// Builds the credential the process environment selects.
pub fn credential() -> Result<Arc<dyn TokenCredential>, IdentityError> {
    let choice = choose(|name| std::env::var(name).ok())?;
    let unavailable = |what: &str, e: azure_core::Error| IdentityError::Unavailable(format!("{what}: {e}"));
    let credential: Arc<dyn TokenCredential> = match &choice {
        CredentialChoice::ManagedIdentity { client_id } => {
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                ..ManagedIdentityCredentialOptions::default()
            };
            ManagedIdentityCredential::new(Some(options)).map_err(|e| unavailable("managed identity", e))?
        }
        CredentialChoice::ClientSecret { tenant_id, client_id } => {
            let secret = std::env::var("AZURE_CLIENT_SECRET").unwrap_or_default();
            ClientSecretCredential::new(tenant_id, client_id.clone(), Secret::new(secret.trim().to_string()), None)
                .map_err(|e| unavailable("client secret (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)", e))?
        }
        CredentialChoice::DeveloperTools => {
            DeveloperToolsCredential::new(None).map_err(|e| unavailable("developer tools (az / azd login)", e))?
        }
    };
    match &choice {
        CredentialChoice::ManagedIdentity { client_id } => {
            tracing::info!(user_assigned_client_id = client_id.as_deref(), "using the managed identity")
        }
        CredentialChoice::ClientSecret { tenant_id, client_id } => {
            tracing::info!(tenant_id, client_id, "using an app registration's client secret")
        }
        CredentialChoice::DeveloperTools => tracing::info!("using developer tools credentials (az / azd login)"),
    }
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn choose_from(pairs: &[(&str, &str)]) -> Result<CredentialChoice, IdentityError> {
        let env: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        choose(|name| env.get(name).cloned())
    }

    #[test]
    fn managed_identity_wins_and_client_id_selects_a_user_assigned_one() {
        let mi = [("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi"), ("IDENTITY_HEADER", "h")];
        assert_eq!(choose_from(&mi).unwrap(), CredentialChoice::ManagedIdentity { client_id: None });
        let mut with_all = mi.to_vec();
        with_all.extend([("AZURE_CLIENT_ID", "cid"), ("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_SECRET", "s")]);
        assert_eq!(
            choose_from(&with_all).unwrap(),
            CredentialChoice::ManagedIdentity { client_id: Some("cid".into()) }
        );
    }

    #[test]
    fn client_secret_needs_all_three_and_names_what_is_missing() {
        let all = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c"), ("AZURE_CLIENT_SECRET", "s")];
        assert_eq!(
            choose_from(&all).unwrap(),
            CredentialChoice::ClientSecret { tenant_id: "t".into(), client_id: "c".into() }
        );
        let err = choose_from(&[("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_SECRET", "s")]).unwrap_err().to_string();
        assert!(err.contains("AZURE_CLIENT_ID missing"), "{err}");
        assert!(!err.contains("\"s\""), "{err}");
    }

    #[test]
    fn nothing_set_means_developer_tools() {
        assert_eq!(choose_from(&[]).unwrap(), CredentialChoice::DeveloperTools);
        assert_eq!(choose_from(&[("AZURE_CLIENT_ID", "c")]).unwrap(), CredentialChoice::DeveloperTools);
        assert_eq!(choose_from(&[("IDENTITY_ENDPOINT", "x")]).unwrap(), CredentialChoice::DeveloperTools);
    }
}
