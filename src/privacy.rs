//! A person's data, as the product promises it: how a user is identified in storage, how long
//! their records are kept, and the admin operations GDPR asks for (export and erasure), each
//! leaving an audit entry that does not name the person in clear.
//!
//! The CLI (`handler export` / `handler erase`) and the HTTP functions (`function-export`,
//! `function-erase`) both go through [`Rights`], so they cannot drift apart.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::info;

use crate::cycle::RunContext;
use crate::model::{ChangeRecord, Slot, UserId};
use crate::store::{HistoryStore, StoreError};

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

/// How a user is identified in storage: their Entra object id, or a keyed pseudonym of it.
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
    pub fn stored_id(&self, user: UserId) -> UserId {
        match &self.key {
            None => user,
            Some(key) => {
                let digest = keyed_digest(key, b"teams-presence/user/v1", user);
                uuid::Builder::from_custom_bytes(truncate(&digest)).into_uuid()
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
                hash.update(user.as_bytes());
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
    mac.update(user.as_bytes());
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

/// An erasure stops well inside the host's function timeout (4 min 30 s).
const ADMIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(240);

/// A person's rights, exercised by an admin: export and erasure of one user's data.
pub struct Rights {
    store: Arc<dyn HistoryStore>,
    subjects: Subjects,
}

impl Rights {
    pub fn new(store: Arc<dyn HistoryStore>, subjects: Subjects) -> Self {
        Self { store, subjects }
    }

    /// Every record of `user`, oldest first, under their own object id whatever the storage mode.
    pub async fn export(&self, user: UserId, invocation_id: &str) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut records = self.store.export_user(self.subjects.stored_id(user)).await?;
        for record in &mut records {
            record.user_id = user;
        }
        self.audit(AuditOperation::Export, user, records.len(), 0, invocation_id).await?;
        Ok(records)
    }

    /// Deletes every record and every piece of state of `user`.
    pub async fn erase(&self, user: UserId, invocation_id: &str) -> Result<Erasure, StoreError> {
        let now = Utc::now();
        let run = RunContext::new(invocation_id, Slot::new(now), ADMIN_DEADLINE);
        let erased = self.store.erase_user(&run, self.subjects.stored_id(user)).await?;
        self.audit(AuditOperation::Erase, user, erased.history_records, erased.state_entries, invocation_id).await?;
        Ok(erased)
    }

    pub async fn audit_trail(&self) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_trail().await
    }

    pub fn audit_reference(&self, user: UserId) -> String {
        self.subjects.audit_reference(user)
    }

    async fn audit(
        &self,
        operation: AuditOperation,
        user: UserId,
        records: usize,
        state_entries: usize,
        invocation_id: &str,
    ) -> Result<(), StoreError> {
        let entry = AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            operation,
            at: Utc::now(),
            subject: self.subjects.audit_reference(user),
            records,
            state_entries,
            invocation_id: invocation_id.to_string(),
        };
        self.store.append_audit(&entry).await?;
        info!(
            operation = operation.as_str(),
            subject = %entry.subject,
            records,
            state_entries,
            audit_id = %entry.id,
            "data subject request completed"
        );
        Ok(())
    }
}

/// The CSV form of an export: a header line, then one line per record, oldest first.
pub fn records_csv(records: &[ChangeRecord]) -> String {
    let mut out = String::from("userId,availability,timestamp\n");
    for r in records {
        let availability = r.availability.as_str();
        // Graph values are plain words, but an unexpected one must not break the columns.
        let availability = if availability.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", availability.replace('"', "\"\""))
        } else {
            availability.to_string()
        };
        out.push_str(&format!(
            "{},{},{}\n",
            r.user_id,
            availability,
            r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
    }
    out
}

/// A user object id as an admin types it, or an error that names it and says what is expected.
pub fn parse_user_id(value: &str) -> Result<UserId, String> {
    crate::config::parse_guid(value.trim()).ok_or_else(|| {
        format!("{value:?} is not a user object id: expected a GUID such as 6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let at = DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z").unwrap().with_timezone(&Utc);
        let user = UserId::from_u128(1);
        let records = [
            ChangeRecord { user_id: user, availability: "Busy".into(), timestamp: at },
            ChangeRecord { user_id: user, availability: "odd, \"value\"".into(), timestamp: at },
        ];
        assert_eq!(
            records_csv(&records),
            format!(
                "userId,availability,timestamp\n{user},Busy,2026-03-31T12:00:00.000Z\n{user},\"odd, \"\"value\"\"\",2026-03-31T12:00:00.000Z\n"
            )
        );
    }

    fn key(byte: u8) -> PseudonymKey {
        PseudonymKey::parse(&BASE64.encode([byte; 32])).unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_unlike_the_id() {
        let user = UserId::from_u128(0x1234);
        let a = Subjects::pseudonymous(key(1));
        let b = Subjects::pseudonymous(key(2));
        assert_eq!(a.stored_id(user), a.stored_id(user));
        assert_ne!(a.stored_id(user), user);
        assert_ne!(a.stored_id(user), b.stored_id(user), "another key, another pseudonym");
        assert_ne!(a.stored_id(user), a.stored_id(UserId::from_u128(0x1235)));
        assert_eq!(a.stored_id(user).get_version_num(), 8, "shaped as a custom (v8) UUID");
        assert_eq!(Subjects::plain().stored_id(user), user);
    }

    #[test]
    fn audit_references_never_contain_the_id() {
        let user = uuid::uuid!("6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c");
        for subjects in [Subjects::plain(), Subjects::pseudonymous(key(3))] {
            let reference = subjects.audit_reference(user);
            assert_eq!(reference.len(), 32);
            assert!(!reference.contains("6f1c2a3b") && !reference.contains(&user.simple().to_string()[..8]));
            assert_eq!(reference, subjects.audit_reference(user));
            assert_ne!(reference, subjects.stored_id(user).simple().to_string(), "not the stored id either");
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
