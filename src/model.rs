//! Domain types shared by the Graph client, the poll cycle and the stores.
//!
//! A person is only ever represented by their Entra object id; nothing else about them exists in
//! this crate's types, which is how data minimisation is enforced by construction.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An Entra ID user's object id.
pub type UserId = Uuid;

/// An Entra ID group's object id.
pub type GroupId = Uuid;

/// Graph's `availability` string, kept verbatim.
///
/// Values drift between Graph versions (`PresenceUnknown`, camelCase, new values such as
/// `focusing`), so this is an open string rather than an enum. Comparison is exact: a change of
/// spelling is recorded as a change, because the record must say what Graph said.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Availability(Arc<str>);

impl Availability {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Availability {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// The schedule slot a run belongs to: the scheduled UTC time of the timer occurrence.
///
/// Runs are keyed by their slot, not by the process clock, so that a repeated run of the same
/// occurrence (manual re-run, restart, lease failover) writes the same record ids again.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Slot(DateTime<Utc>);

impl Slot {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(at)
    }

    pub fn at(&self) -> DateTime<Utc> {
        self.0
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// One user's availability as seen by one presence call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub user_id: UserId,
    pub availability: Availability,
}

/// A stored history entry: the only thing the product keeps about a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    pub user_id: UserId,
    pub availability: Availability,
    /// UTC observation time of the run that saw this availability.
    pub timestamp: DateTime<Utc>,
}

/// A GUID in its usual hyphenated form, optionally in braces (as Windows tools print them).
pub fn parse_guid(value: &str) -> Option<Uuid> {
    let inner = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')).unwrap_or(value);
    if inner.len() != 36 {
        return None;
    }
    Uuid::try_parse(inner).ok()
}

/// A user object id as an admin types it, or an error that names it and says what is expected.
pub fn parse_user_id(value: &str) -> Result<UserId, String> {
    parse_guid(value.trim()).ok_or_else(|| {
        format!("{value:?} is not a user object id: expected a GUID such as 6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c")
    })
}
