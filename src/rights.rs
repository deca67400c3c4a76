//! A person's rights over their data, exercised by an admin: export and erasure of one user's
//! records, each leaving an audit entry that does not name the person in clear.
//!
//! The CLI (`handler export` / `handler erase`) and the HTTP functions (`function-export`,
//! `function-erase`) both go through [`Rights`], so they cannot drift apart.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::info;

use crate::model::{Availability, UserId};
use crate::privacy::{AuditEntry, AuditOperation, Erasure, Subjects};
use crate::store::{RightsStore, StoreError, SubjectRequest};

/// An erasure (Cosmos DB) stops well inside the host's function timeout of 4 min 30 s; the CLI has
/// the same budget.
const ERASURE_BUDGET: std::time::Duration = std::time::Duration::from_secs(240);

/// A record as the person it is about receives it: under their own object id, whatever the
/// storage mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportedRecord {
    pub user_id: UserId,
    pub availability: Availability,
    /// UTC observation time of the run that saw this availability.
    pub timestamp: DateTime<Utc>,
}

/// A person's rights, exercised by an admin: export and erasure of one user's data.
pub struct Rights {
    store: Arc<dyn RightsStore>,
    subjects: Subjects,
}

impl Rights {
    pub fn new(store: Arc<dyn RightsStore>, subjects: Subjects) -> Self {
        Self { store, subjects }
    }

    /// Every record of `user`, oldest first, under their own object id whatever the storage mode.
    pub async fn export(&self, user: UserId, invocation_id: &str) -> Result<Vec<ExportedRecord>, StoreError> {
        let stored = self.store.export_subject(self.subjects.stored_id(user)).await?;
        let records: Vec<ExportedRecord> = stored
            .into_iter()
            .map(|r| ExportedRecord { user_id: user, availability: r.availability, timestamp: r.timestamp })
            .collect();
        self.audit(AuditOperation::Export, user, records.len(), 0, invocation_id).await?;
        Ok(records)
    }

    /// Deletes every record and every piece of state of `user`.
    pub async fn erase(&self, user: UserId, invocation_id: &str) -> Result<Erasure, StoreError> {
        let request = SubjectRequest::new(ERASURE_BUDGET);
        let erased = self.store.erase_subject(&request, self.subjects.stored_id(user)).await?;
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
pub fn records_csv(records: &[ExportedRecord]) -> String {
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
            // The person's own id, in the export they asked for.
            r.user_id.expose_object_id(),
            availability,
            r.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let at = DateTime::parse_from_rfc3339("2026-03-31T12:00:00Z").unwrap().with_timezone(&Utc);
        let user = UserId::from_u128(1);
        let records = [
            ExportedRecord { user_id: user, availability: "Busy".into(), timestamp: at },
            ExportedRecord { user_id: user, availability: "odd, \"value\"".into(), timestamp: at },
        ];
        let user = user.expose_object_id();
        assert_eq!(
            records_csv(&records),
            format!(
                "userId,availability,timestamp\n{user},Busy,2026-03-31T12:00:00.000Z\n{user},\"odd, \"\"value\"\"\",2026-03-31T12:00:00.000Z\n"
            )
        );
    }
}
