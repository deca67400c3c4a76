//! The binary formats of the state container: snapshot shards and the head's departures.
//!
//! Both are base64 of fixed-size little-endian entries, so that a shard of ~1,700 users stays
//! below 64 KiB (Cosmos DB charges writes by size in power-of-two KiB steps) and the head, read on
//! every run, below 1 KiB. Which user goes into which shard is the layout's business
//! ([`super::layout`]); this file only turns entries into text and back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::SubjectId;
use crate::store::state::Interner;
use crate::store::{Known, LastKnown, StoreError};

/// Bytes of a shard entry: user id (16), value index (u16 LE), unix ms (i64 LE).
pub(super) const SHARD_ENTRY: usize = 16 + 2 + 8;
/// Bytes of a departure: user id (16), unix ms (i64 LE).
const GONE_ENTRY: usize = 16 + 8;

/// One snapshot shard as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct ShardDoc {
    pub id: String,
    /// The distinct availability values of this shard; entries refer to them by index.
    pub values: Vec<String>,
    /// base64 of [`SHARD_ENTRY`]-byte entries.
    pub data: String,
}

/// Collects the entries of one shard.
#[derive(Default)]
pub(super) struct ShardWriter {
    values: Vec<String>,
    data: Vec<u8>,
}

impl ShardWriter {
    pub fn push(&mut self, user: SubjectId, known: &Known) -> Result<(), StoreError> {
        let index = match self.values.iter().position(|v| v == known.availability.as_str()) {
            Some(index) => index,
            None => {
                self.values.push(known.availability.as_str().to_string());
                self.values.len() - 1
            }
        };
        let index = u16::try_from(index).map_err(|_| StoreError::Corrupt {
            what: "availability values".into(),
            message: "more than 65,536 distinct values in one snapshot shard".into(),
        })?;
        self.data.extend_from_slice(user.as_bytes());
        self.data.extend_from_slice(&index.to_le_bytes());
        self.data.extend_from_slice(&known.at.timestamp_millis().to_le_bytes());
        Ok(())
    }

    pub fn finish(self, id: String) -> ShardDoc {
        ShardDoc { id, values: self.values, data: BASE64.encode(self.data) }
    }
}

/// A shard's entries as bytes, checked to be whole entries.
fn shard_entries(shard: &ShardDoc) -> Result<Vec<u8>, StoreError> {
    let bytes = BASE64.decode(&shard.data).map_err(|e| bad_shard(shard, e.to_string()))?;
    if bytes.len() % SHARD_ENTRY != 0 {
        return Err(bad_shard(
            shard,
            format!("{} bytes is not a whole number of {SHARD_ENTRY}-byte entries", bytes.len()),
        ));
    }
    Ok(bytes)
}

fn bad_shard(shard: &ShardDoc, message: String) -> StoreError {
    StoreError::Corrupt { what: format!("snapshot shard {}", shard.id), message }
}

/// Merges every entry of `shard` into `state`.
pub(super) fn decode_shard(shard: &ShardDoc, interner: &mut Interner, state: &mut LastKnown) -> Result<(), StoreError> {
    let bytes = shard_entries(shard)?;
    let values: Vec<_> = shard.values.iter().map(|v| interner.intern(v)).collect();
    for entry in bytes.chunks_exact(SHARD_ENTRY) {
        let (user, rest) = entry.split_at(16);
        let (index, millis) = rest.split_at(2);
        let user = SubjectId::from_stored_bytes(user).map_err(|e| bad_shard(shard, e.to_string()))?;
        let index = usize::from(u16::from_le_bytes([index[0], index[1]]));
        let availability =
            values.get(index).cloned().ok_or_else(|| bad_shard(shard, format!("value index {index} out of range")))?;
        let at = millis_to_time(millis).ok_or_else(|| bad_shard(shard, "timestamp out of range".into()))?;
        state.merge(user, Known { availability, at });
    }
    Ok(())
}

/// `shard` without the entry of `user`, or `None` when it has none.
pub(super) fn shard_without(shard: &ShardDoc, user: SubjectId) -> Result<Option<ShardDoc>, StoreError> {
    let bytes = shard_entries(shard)?;
    let kept: Vec<u8> =
        bytes.chunks_exact(SHARD_ENTRY).filter(|entry| entry[..16] != user.as_bytes()[..]).flatten().copied().collect();
    if kept.len() == bytes.len() {
        return Ok(None);
    }
    Ok(Some(ShardDoc { id: shard.id.clone(), values: shard.values.clone(), data: BASE64.encode(kept) }))
}

pub(super) fn encode_departures(departures: &[(SubjectId, DateTime<Utc>)]) -> String {
    let mut bytes = Vec::with_capacity(departures.len() * GONE_ENTRY);
    for (user, at) in departures {
        bytes.extend_from_slice(user.as_bytes());
        bytes.extend_from_slice(&at.timestamp_millis().to_le_bytes());
    }
    BASE64.encode(bytes)
}

pub(super) fn decode_departures(text: &str) -> Result<Vec<(SubjectId, DateTime<Utc>)>, StoreError> {
    let bad = |message: String| StoreError::Corrupt { what: "departures in the state head".into(), message };
    let bytes = BASE64.decode(text).map_err(|e| bad(e.to_string()))?;
    if bytes.len() % GONE_ENTRY != 0 {
        return Err(bad(format!("{} bytes is not a whole number of {GONE_ENTRY}-byte entries", bytes.len())));
    }
    bytes
        .chunks_exact(GONE_ENTRY)
        .map(|entry| {
            let (user, millis) = entry.split_at(16);
            let user = SubjectId::from_stored_bytes(user).map_err(|e| bad(e.to_string()))?;
            let at = millis_to_time(millis).ok_or_else(|| bad("timestamp out of range".into()))?;
            Ok((user, at))
        })
        .collect()
}

fn millis_to_time(bytes: &[u8]) -> Option<DateTime<Utc>> {
    let millis = i64::from_le_bytes(bytes.try_into().ok()?);
    DateTime::from_timestamp_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    fn known(value: &str, millis: i64) -> Known {
        Known { availability: value.into(), at: DateTime::from_timestamp_millis(millis).unwrap() }
    }

    #[test]
    fn a_shard_round_trips_and_shares_its_values() {
        let mut writer = ShardWriter::default();
        let entries = [(1, known("Busy", 1_700_000_000_123)), (2, known("Away", 5)), (3, known("Busy", 6))];
        for (user, known) in &entries {
            writer.push(SubjectId::from_u128(*user), known).unwrap();
        }
        let doc = writer.finish("snapshot-0-3".into());
        assert_eq!(doc.values, ["Busy", "Away"]);
        assert_eq!(BASE64.decode(&doc.data).unwrap().len(), 3 * SHARD_ENTRY);
        let mut state = LastKnown::default();
        decode_shard(&doc, &mut Interner::default(), &mut state).unwrap();
        for (user, known) in entries {
            assert_eq!(state.get(&SubjectId::from_u128(user)), Some(known));
        }
    }

    #[test]
    fn a_damaged_shard_is_named_with_what_is_wrong() {
        let doc = ShardDoc { id: "snapshot-1-7".into(), values: vec![], data: BASE64.encode([0u8; 25]) };
        let message = decode_shard(&doc, &mut Interner::default(), &mut LastKnown::default()).unwrap_err().to_string();
        assert!(message.contains("snapshot shard snapshot-1-7") && message.contains("26-byte entries"), "{message}");
        let mut writer = ShardWriter::default();
        writer.push(SubjectId::from_u128(1), &known("Busy", 0)).unwrap();
        let doc = ShardDoc { values: vec![], ..writer.finish("snapshot-0-0".into()) };
        let message = decode_shard(&doc, &mut Interner::default(), &mut LastKnown::default()).unwrap_err().to_string();
        assert!(message.contains("value index 0 out of range"), "{message}");
    }

    #[test]
    fn a_user_is_taken_out_of_a_shard_and_only_that_user() {
        let mut writer = ShardWriter::default();
        for user in 1..=3 {
            writer.push(SubjectId::from_u128(user), &known("Away", 0)).unwrap();
        }
        let doc = writer.finish("snapshot-0-0".into());
        let without = shard_without(&doc, SubjectId::from_u128(2)).unwrap().unwrap();
        let mut state = LastKnown::default();
        decode_shard(&without, &mut Interner::default(), &mut state).unwrap();
        let mut users: Vec<SubjectId> = state.users().copied().collect();
        users.sort();
        assert_eq!(users, [SubjectId::from_u128(1), SubjectId::from_u128(3)]);
        assert!(shard_without(&doc, SubjectId::from_u128(9)).unwrap().is_none(), "nobody to take out");
    }

    #[test]
    fn departures_round_trip_and_reject_garbage() {
        let at = Utc.with_ymd_and_hms(2025, 1, 31, 12, 0, 0).unwrap();
        let list = vec![(SubjectId::from_u128(1), at), (SubjectId::from_u128(2), at + TimeDelta::seconds(1))];
        assert_eq!(decode_departures(&encode_departures(&list)).unwrap(), list);
        assert!(decode_departures("").unwrap().is_empty());
        assert!(decode_departures("AAAA").is_err());
    }
}
