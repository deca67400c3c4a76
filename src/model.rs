//! Domain types shared by the Graph client, the poll cycle and the stores: the ids, what Graph
//! says about a user, and what is stored about them. The ground floor: it imports nothing of this
//! crate.
//!
//! A person is only ever represented by an id; nothing else about them exists in this crate's
//! types, which is how data minimisation is enforced by construction. Which id is which is a
//! matter of type, not of comments:
//! - [`UserId`], the Entra object id Graph names a user by. It is a person's identifier in clear,
//!   so it cannot be printed: no `Display`, a `Debug` without digits, and one explicit way to its
//!   value ([`UserId::expose_object_id`]) that the architecture test allows only where the id goes
//!   to Graph or back to the person it names.
//! - [`SubjectId`], how storage knows a user: the keyed pseudonym in pseudonym mode, the object id
//!   otherwise. `Subjects` (in `privacy`) is the only maker of one from a [`UserId`]; the stores
//!   take and return nothing else, and it is what a log line may name (at debug level).
//! - [`GroupId`], a configured group: not about a person, printed freely.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An Entra ID user's object id, as Microsoft Graph names the user (see the module docs for why
/// it cannot be printed).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(Uuid);

impl UserId {
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn from_u128(id: u128) -> Self {
        Self(Uuid::from_u128(id))
    }

    /// The object id itself, for the few places that must hand it on: Graph, the person's own
    /// export, the admin's command line, the pseudonym function. Never for a log line: in
    /// pseudonym mode that would undo the mode (log the [`SubjectId`] instead).
    pub fn expose_object_id(&self) -> Uuid {
        self.0
    }
}

/// Shows that there is an id, not which: a `{:?}` of a struct holding one must not put a person's
/// object id into a log line or a panic message.
impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserId(..)")
    }
}

/// Graph's `id` fields, in any form a UUID is written (hyphenated, simple, braced, URN).
impl FromStr for UserId {
    type Err = uuid::Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Uuid::from_str(value).map(Self)
    }
}

/// How storage knows a user: the keyed pseudonym of their object id in pseudonym mode, the object
/// id itself otherwise. Made from a [`UserId`] only by `Subjects::stored_id` (in `privacy`);
/// the stores read their own back with [`SubjectId::parse_stored`] and
/// [`SubjectId::from_stored_bytes`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize)]
#[serde(transparent)]
pub struct SubjectId(Uuid);

impl SubjectId {
    /// Only `Subjects` (in `privacy`) makes one from an object id (or from a pseudonym of one).
    pub(crate) const fn new(id: Uuid) -> Self {
        Self(id)
    }

    /// A stored id as the stores write it in text (a hyphenated UUID).
    pub fn parse_stored(text: &str) -> Result<Self, uuid::Error> {
        Uuid::try_parse(text).map(Self)
    }

    /// A stored id as the stores write it in binary (16 bytes).
    pub fn from_stored_bytes(bytes: &[u8]) -> Result<Self, uuid::Error> {
        Uuid::from_slice(bytes).map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

#[cfg(test)]
impl SubjectId {
    pub(crate) const fn from_u128(id: u128) -> Self {
        Self(Uuid::from_u128(id))
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// An Entra ID group's object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupId(Uuid);

impl GroupId {
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub const fn from_u128(id: u128) -> Self {
        Self(Uuid::from_u128(id))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRecord {
    pub subject: SubjectId,
    pub availability: Availability,
    /// UTC observation time of the run that saw this availability.
    pub timestamp: DateTime<Utc>,
}

/// A GUID in its usual hyphenated form, optionally in braces (as Windows tools print them): how
/// ids are typed into settings and admin commands, where a stricter form catches typos.
pub fn parse_guid(value: &str) -> Option<Uuid> {
    let inner = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')).unwrap_or(value);
    if inner.len() != 36 {
        return None;
    }
    Uuid::try_parse(inner).ok()
}

/// A user object id as an admin types it, or an error that names it and says what is expected.
pub fn parse_user_id(value: &str) -> Result<UserId, String> {
    parse_guid(value.trim()).map(UserId).ok_or_else(|| {
        format!("{value:?} is not a user object id: expected a GUID such as 6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c")
    })
}

/// A group object id as configured, or `None` (the caller names the setting and what is expected).
pub fn parse_group_id(value: &str) -> Option<GroupId> {
    parse_guid(value).map(GroupId)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c";

    #[test]
    fn a_user_id_prints_no_digit_of_itself() {
        let user = parse_user_id(ID).unwrap();
        assert_eq!(format!("{user:?}"), "UserId(..)");
        assert!(!format!("{:?}", Observation { user_id: user, availability: "Busy".into() }).contains("6f1c"));
        assert_eq!(user.expose_object_id().to_string(), ID);
    }

    #[test]
    fn ids_typed_by_people_are_strict_and_ids_from_graph_are_not() {
        assert_eq!(parse_user_id(&format!(" {{{ID}}} ")).map(|u| u.expose_object_id().to_string()), Ok(ID.into()));
        let simple = ID.replace('-', "");
        let error = parse_user_id(&simple).unwrap_err();
        assert!(error.contains(&format!("{simple:?} is not a user object id")), "{error}");
        assert_eq!(simple.parse::<UserId>().map(|u| u.expose_object_id().to_string()), Ok(ID.into()));
        assert_eq!(parse_group_id(ID).map(|g| g.to_string()), Some(ID.into()));
        assert_eq!(parse_group_id(&simple), None);
    }

    #[test]
    fn stored_ids_read_back_what_they_print() {
        let subject = SubjectId::parse_stored(ID).unwrap();
        assert_eq!(subject.to_string(), ID);
        assert_eq!(SubjectId::from_stored_bytes(subject.as_bytes()), Ok(subject));
        assert!(SubjectId::from_stored_bytes(&[0; 15]).is_err());
    }
}
