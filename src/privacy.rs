//! A person's data, as the product promises it, in value types: how a user is identified in
//! storage, how long their records are kept, and what an export or erasure leaves in the audit
//! trail (an entry that does not name the person in clear).
//!
//! The operations themselves (export, erasure) are in the `rights` module, one floor up, since
//! they work on the store; this module is on the ground floor and knows no store.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{SubjectId, UserId};

/// The smallest pseudonym key accepted: HMAC-SHA256 keys shorter than its output weaken it.
pub const MIN_PSEUDONYM_KEY_BYTES: usize = 32;

/// The key of the optional pseudonym mode (`USER_ID_PSEUDONYM_KEY`, base64). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct PseudonymKey(Arc<[u8]>);

impl PseudonymKey {
    /// Decodes the app setting. The error never contains the value, only what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bytes = BASE64
            .decode(value.trim())
            .map_err(|e| format!("the value is not base64 ({e}); expected at least {MIN_PSEUDONYM_KEY_BYTES} random bytes in base64, e.g. from `openssl rand -base64 32`"))?;
        if bytes.len() < MIN_PSEUDONYM_KEY_BYTES {
            return Err(format!(
                "the key is {} bytes; expected at least {MIN_PSEUDONYM_KEY_BYTES} random bytes in base64, e.g. from `openssl rand -base64 32`",
                bytes.len()
            ));
        }
        Ok(Self(bytes.into()))
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// How a user is identified in storage: their Entra object id, or a keyed pseudonym of it. The
/// one place a [`UserId`] becomes a [`SubjectId`].
///
/// The pseudonym is HMAC-SHA256(key, object id) cut to 128 bits and shaped as a UUID (version 8),
/// so both modes store the same type and the stores need not know which is in use. Without the
/// key, a stored pseudonym cannot be linked back to a person; with it, an admin who knows a
/// person's object id finds their records (export, erasure). Changing the key makes every user
/// look new: the old pseudonyms leave scope and their history ages out with the retention.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subjects {
    key: Option<PseudonymKey>,
}

impl Subjects {
    /// Object ids are stored as they are.
    pub fn plain() -> Self {
        Self { key: None }
    }

    pub fn pseudonymous(key: PseudonymKey) -> Self {
        Self { key: Some(key) }
    }

    pub fn is_pseudonymous(&self) -> bool {
        self.key.is_some()
    }

    /// The id under which `user` is stored.
    pub fn stored_id(&self, user: UserId) -> SubjectId {
        match &self.key {
            None => SubjectId::new(user.expose_object_id()),
            Some(key) => {
                let digest = keyed_digest(key, b"teams-presence/user/v1", user);
                SubjectId::new(uuid::Builder::from_custom_bytes(truncate(&digest)).into_uuid())
            }
        }
    }

    /// How the audit trail refers to `user`: a digest, never the id itself. An admin who is asked
    /// "was my data erased?" computes the same reference from the id and finds the entry.
    pub fn audit_reference(&self, user: UserId) -> String {
        let digest: [u8; 32] = match &self.key {
            Some(key) => keyed_digest(key, b"teams-presence/audit/v1", user),
            None => {
                let mut hash = Sha256::new();
                hash.update(b"teams-presence/audit/v1");
                hash.update(user.expose_object_id().as_bytes());
                hash.finalize().into()
            }
        };
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn keyed_digest(key: &PseudonymKey, context: &[u8], user: UserId) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it panic-free.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key.0) else { return [0; 32] };
    mac.update(context);
    mac.update(user.expose_object_id().as_bytes());
    mac.finalize().into_bytes().into()
}

fn truncate(digest: &[u8; 32]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes
}

/// How long records are kept (`RETENTION_DAYS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
}

impl Retention {
    pub fn days(days: u32) -> Self {
        Self { days }
    }

    pub fn period(&self) -> TimeDelta {
        TimeDelta::days(i64::from(self.days))
    }

    /// Records dated before this are past retention at `now`.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.period()
    }
}

/// What erasure removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    /// History records deleted.
    pub history_records: usize,
    /// Last-known state entries deleted (0 or 1).
    pub state_entries: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOperation {
    Export,
    Erase,
}

impl AuditOperation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Export => "export",
            Self::Erase => "erase",
        }
    }
}

/// One entry of the audit trail: what was done, when, to how many records, by which invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: String,
    pub operation: AuditOperation,
    pub at: DateTime<Utc>,
    /// [`Subjects::audit_reference`] of the person: not their id.
    pub subject: String,
    /// Records exported, or history records erased.
    pub records: usize,
    /// State entries erased (0 for an export).
    pub state_entries: usize,
    /// The Functions invocation id, or `cli-…` for a command-line operation.
    pub invocation_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PseudonymKey {
        PseudonymKey::parse(&BASE64.encode([byte; 32])).unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_unlike_the_id() {
        let user = UserId::from_u128(0x1234);
        let a = Subjects::pseudonymous(key(1));
        let b = Subjects::pseudonymous(key(2));
        assert_eq!(a.stored_id(user), a.stored_id(user));
        assert_ne!(a.stored_id(user).as_uuid(), user.expose_object_id());
        assert_ne!(a.stored_id(user), b.stored_id(user), "another key, another pseudonym");
        assert_ne!(a.stored_id(user), a.stored_id(UserId::from_u128(0x1235)));
        assert_eq!(a.stored_id(user).as_uuid().get_version_num(), 8, "shaped as a custom (v8) UUID");
        assert_eq!(Subjects::plain().stored_id(user).as_uuid(), user.expose_object_id());
    }

    #[test]
    fn audit_references_never_contain_the_id() {
        let user = UserId::from_uuid(uuid::uuid!("6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c"));
        for subjects in [Subjects::plain(), Subjects::pseudonymous(key(3))] {
            let reference = subjects.audit_reference(user);
            assert_eq!(reference.len(), 32);
            assert!(
                !reference.contains("6f1c2a3b")
                    && !reference.contains(&user.expose_object_id().simple().to_string()[..8])
            );
            assert_eq!(reference, subjects.audit_reference(user));
            assert_ne!(reference, subjects.stored_id(user).as_uuid().simple().to_string(), "not the stored id either");
        }
    }

    #[test]
    fn bad_keys_are_rejected_without_echoing_them() {
        let short = BASE64.encode([7u8; 16]);
        let error = PseudonymKey::parse(&short).unwrap_err();
        assert!(error.contains("16 bytes") && !error.contains(&short), "{error}");
        let error = PseudonymKey::parse("not base64!").unwrap_err();
        assert!(error.contains("not base64") && !error.contains("not base64!"), "{error}");
        assert_eq!(format!("{:?}", key(1)), "<secret>");
    }

    #[test]
    fn the_cutoff_is_the_retention_before_now() {
        let now = DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(Retention::days(30).cutoff(now).to_rfc3339(), "2026-03-01T12:00:00+00:00");
    }
}
