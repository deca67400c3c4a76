//! The audit trail of data-subject requests: one small document in the state container,
//! appended with `If-Match` (requests are rare; 2 MB holds about ten thousand entries). It is
//! kept beyond retention, and its calls are charged to nothing: no figure reports them.

use azure_core::http::Etag;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use serde::{Deserialize, Serialize};

use super::OPTIMISTIC_ATTEMPTS;
use super::sdk::{Call, On, Sdk};
use crate::privacy::AuditEntry;
use crate::store::StoreError;

const AUDIT_ID: &str = "audit";

#[derive(Default, Serialize, Deserialize)]
struct AuditDoc {
    id: String,
    entries: Vec<AuditEntry>,
}

pub(super) async fn append(sdk: &Sdk, entry: &AuditEntry) -> Result<(), StoreError> {
    const DOING: &str = "append to the audit trail";
    for _ in 0..OPTIMISTIC_ATTEMPTS {
        let (mut doc, etag) = match read(sdk).await? {
            Some((doc, etag)) => (doc, Some(etag)),
            None => (AuditDoc { id: AUDIT_ID.into(), entries: Vec::new() }, None),
        };
        doc.entries.push(entry.clone());
        let written = match etag {
            Some(etag) => {
                let options = ItemWriteOptions::default().with_precondition(Precondition::if_match(etag));
                let call = Call::uncharged(On::State, "replace_item", DOING);
                sdk.call(call, |c| c.replace_item(AUDIT_ID, AUDIT_ID, &doc, Some(options))).await.unless_conflict()?
            }
            None => {
                let call = Call::uncharged(On::State, "create_item", DOING);
                sdk.call(call, |c| c.create_item(AUDIT_ID, AUDIT_ID, &doc, None)).await.unless_conflict()?
            }
        };
        if written.is_some() {
            return Ok(());
        }
    }
    Err(StoreError::Cosmos {
        operation: DOING,
        message: format!("another writer got ahead {OPTIMISTIC_ATTEMPTS} times; retry"),
    })
}

/// The trail, oldest first.
pub(super) async fn trail(sdk: &Sdk) -> Result<Vec<AuditEntry>, StoreError> {
    let mut entries = read(sdk).await?.map(|(doc, _)| doc.entries).unwrap_or_default();
    entries.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
    Ok(entries)
}

async fn read(sdk: &Sdk) -> Result<Option<(AuditDoc, Etag)>, StoreError> {
    let call = Call::uncharged(On::State, "read_item", "read the audit trail");
    sdk.call(call, |c| c.read_item(AUDIT_ID, AUDIT_ID, None)).await.document_and_etag("the audit trail")
}
