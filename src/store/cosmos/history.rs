//! The history container (partition key `/userId`): one document per change, exactly `id`,
//! `userId`, `availability`, `timestamp`. The id is derived from (user, slot), so a retried write
//! conflicts instead of doubling; a conflict counts as success and the stored document stands.

use std::sync::atomic::AtomicU64;

use azure_data_cosmos::{FeedScope, Query};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::sdk::{Call, On, Sdk, corrupt, cosmos_error};
use crate::model::{ChangeRecord, Slot, SubjectId};
use crate::store::state::Interner;
use crate::store::{Known, LastKnown, StoreError, format_timestamp, parse_subject, parse_timestamp, record_id};

/// Used by tests and tools to check the exact shape of stored history.
pub const HISTORY_FIELDS: [&str; 4] = ["id", "userId", "availability", "timestamp"];

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryDoc {
    id: String,
    user_id: String,
    availability: String,
    timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRow {
    user_id: String,
    availability: String,
    timestamp: String,
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// How one record write came out.
pub(super) enum WriteResult {
    Written(SubjectId, Known),
    /// A repeated slot: the stored record stands; `differs` when it holds another value.
    AlreadyRecorded {
        user: SubjectId,
        stored: Known,
        differs: bool,
    },
}

/// Creates the record of `change` in `slot`; a record of that id already there is read back.
pub(super) async fn write(
    sdk: &Sdk,
    units: &AtomicU64,
    change: ChangeRecord,
    slot: Slot,
) -> Result<WriteResult, StoreError> {
    let id = record_id(change.subject, slot).to_string();
    let user = change.subject.to_string();
    let doc = HistoryDoc {
        id: id.clone(),
        user_id: user.clone(),
        availability: change.availability.as_str().to_string(),
        timestamp: format_timestamp(change.timestamp),
    };
    let call = Call::new(On::History, "create_item", "write a history record", units).untraced();
    if sdk.call(call, |c| c.create_item(user.clone(), &id, &doc, None)).await.unless_conflict()?.is_some() {
        let known = Known { availability: change.availability.clone(), at: change.timestamp };
        return Ok(WriteResult::Written(change.subject, known));
    }
    let call = Call::new(On::History, "read_item", "read an existing history record", units).untraced();
    let response = sdk.call(call, |c| c.read_item(user, &id, None)).await.required()?;
    let doc: HistoryDoc = response.into_model().map_err(|e| corrupt("a history record", e))?;
    let stored = Known { availability: doc.availability.as_str().into(), at: parse_timestamp(&doc.timestamp)? };
    let differs = stored.availability != change.availability;
    if differs {
        debug!(user = %change.subject, "a repeated slot saw another value: the stored record stands");
    }
    Ok(WriteResult::AlreadyRecorded { user: change.subject, stored, differs })
}

/// Merges every record dated `since` or later (all of them without `since`) into `state`;
/// returns how many were read.
pub(super) async fn merge_since(
    sdk: &Sdk,
    units: &AtomicU64,
    since: Option<DateTime<Utc>>,
    interner: &mut Interner,
    state: &mut LastKnown,
) -> Result<usize, StoreError> {
    let query = match since {
        Some(since) => Query::from("SELECT c.userId, c.availability, c.timestamp FROM c WHERE c.timestamp >= @since")
            .with_parameter("@since", format_timestamp(since))
            .map_err(|e| cosmos_error("build the history query", e))?,
        None => Query::from("SELECT c.userId, c.availability, c.timestamp FROM c"),
    };
    let mut count = 0;
    let call = Call::new(On::History, "query_items", "query recent history", units);
    sdk.query(call, query, FeedScope::full_container(), |row: HistoryRow| {
        let user = parse_subject(&row.user_id)?;
        let known = Known { availability: interner.intern(&row.availability), at: parse_timestamp(&row.timestamp)? };
        state.merge(user, known);
        count += 1;
        Ok(())
    })
    .await?;
    Ok(count)
}

/// One subject's records, oldest first.
pub(super) async fn of_subject(sdk: &Sdk, user: SubjectId) -> Result<Vec<ChangeRecord>, StoreError> {
    let query = Query::from("SELECT c.userId, c.availability, c.timestamp FROM c");
    let call = Call::uncharged(On::History, "query_items", "query a user's history");
    let rows: Vec<HistoryRow> = sdk.query_all(call, query, FeedScope::partition(user.to_string())).await?;
    let mut records = rows
        .into_iter()
        .map(|row| {
            Ok(ChangeRecord {
                subject: user,
                availability: row.availability.as_str().into(),
                timestamp: parse_timestamp(&row.timestamp)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    records.sort_by_key(|r| r.timestamp);
    Ok(records)
}

/// Deletes every history document of `user` (one partition); returns how many were deleted.
pub(super) async fn delete_of_subject(
    sdk: &Sdk,
    units: &AtomicU64,
    user: SubjectId,
    concurrency: usize,
) -> Result<usize, StoreError> {
    let partition = user.to_string();
    let call = Call::uncharged(On::History, "query_items", "list a user's history for erasure");
    let query = Query::from("SELECT c.id FROM c");
    let ids: Vec<IdRow> = sdk.query_all(call, query, FeedScope::partition(partition.clone())).await?;
    let delete = Call::new(On::History, "delete_item", "delete a history record", units).untraced();
    let deleted = futures::stream::iter(ids)
        .map(|row| {
            let partition = partition.clone();
            async move {
                // Gone already (a retried erasure, or the TTL got there first) deletes nothing.
                let gone = sdk.call(delete, |c| c.delete_item(partition, &row.id, None)).await.if_present()?;
                Ok::<_, StoreError>(usize::from(gone.is_some()))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<usize>>()
        .await?;
    Ok(deleted.into_iter().sum())
}
