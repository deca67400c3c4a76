//! The last-known state: each tracked user's last recorded availability and when it was recorded.
//!
//! Entries carry their record's timestamp so that state assembled from several sources (a
//! snapshot plus the records written since) can be merged in any order: the later record wins.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};

use crate::model::{Availability, UserId};

/// One user's last recorded availability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub availability: Availability,
    /// The timestamp of the record that holds this availability.
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastKnown {
    users: HashMap<UserId, Known>,
}

impl LastKnown {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { users: HashMap::with_capacity(capacity) }
    }

    pub fn get(&self, user: &UserId) -> Option<&Known> {
        self.users.get(user)
    }

    pub fn availability(&self, user: &UserId) -> Option<&Availability> {
        self.users.get(user).map(|k| &k.availability)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&UserId, &Known)> {
        self.users.iter()
    }

    pub fn users(&self) -> impl Iterator<Item = &UserId> {
        self.users.keys()
    }

    /// Sets `user` to `known` unconditionally (the result of a write this run).
    pub fn set(&mut self, user: UserId, known: Known) {
        self.users.insert(user, known);
    }

    /// Keeps whichever of the current entry and `known` was recorded later.
    pub fn merge(&mut self, user: UserId, known: Known) {
        match self.users.entry(user) {
            Entry::Occupied(mut current) => {
                if known.at >= current.get().at {
                    current.insert(known);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(known);
            }
        }
    }

    /// Drops `user` if their entry is not newer than a departure observed at `at`.
    pub fn depart(&mut self, user: &UserId, at: DateTime<Utc>) {
        if self.users.get(user).is_some_and(|k| k.at <= at) {
            self.users.remove(user);
        }
    }

    pub fn remove(&mut self, user: &UserId) -> Option<Known> {
        self.users.remove(user)
    }
}

/// Shares one allocation per distinct availability value while loading state, so a million
/// entries hold a handful of strings, not a million.
#[derive(Default)]
pub struct Interner {
    values: HashMap<String, Availability>,
}

impl Interner {
    pub fn intern(&mut self, value: &str) -> Availability {
        if let Some(existing) = self.values.get(value) {
            return existing.clone();
        }
        let availability = Availability::new(value);
        self.values.insert(value.to_string(), availability.clone());
        availability
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 31, 12, minute, 0).unwrap()
    }

    fn known(value: &str, minute: u32) -> Known {
        Known { availability: value.into(), at: at(minute) }
    }

    #[test]
    fn merge_keeps_the_later_record_in_any_order() {
        let user = UserId::from_u128(1);
        let mut forward = LastKnown::default();
        forward.merge(user, known("Away", 5));
        forward.merge(user, known("Busy", 10));
        let mut backward = LastKnown::default();
        backward.merge(user, known("Busy", 10));
        backward.merge(user, known("Away", 5));
        assert_eq!(forward, backward);
        assert_eq!(forward.availability(&user).unwrap().as_str(), "Busy");
    }

    #[test]
    fn a_departure_does_not_drop_a_later_return() {
        let user = UserId::from_u128(1);
        let mut state = LastKnown::default();
        state.set(user, known("Away", 10));
        state.depart(&user, at(5));
        assert!(state.get(&user).is_some());
        state.depart(&user, at(10));
        assert!(state.get(&user).is_none());
    }

    #[test]
    fn interning_shares_values() {
        let mut interner = Interner::default();
        let a = interner.intern("Available");
        let b = interner.intern("Available");
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
