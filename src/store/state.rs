//! The last-known state: each tracked user's last recorded availability and when it was recorded.
//!
//! Entries carry their record's timestamp so that state assembled from several sources (a
//! snapshot plus the records written since) can be merged in any order: the later record wins.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, Utc};

use crate::model::{Availability, SubjectId};

/// One user's last recorded availability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub availability: Availability,
    /// The timestamp of the record that holds this availability.
    pub at: DateTime<Utc>,
}

/// Every tracked user's [`Known`], held compactly: at a million users a `HashMap<SubjectId, Known>`
/// took 103 MB (48-byte entries); this one 69 MB. An entry is the time and an index into the few
/// distinct availability values, which are held once.
#[derive(Clone, Debug, Default)]
pub struct LastKnown {
    users: HashMap<SubjectId, Packed>,
    values: Vec<Availability>,
}

/// A [`Known`] in 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Packed {
    secs: i64,
    nanos: u32,
    /// Index into `values`; four bytes fit in the padding anyway.
    value: u32,
}

impl LastKnown {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { users: HashMap::with_capacity(capacity), values: Vec::new() }
    }

    pub fn get(&self, user: &SubjectId) -> Option<Known> {
        self.users.get(user).map(|p| self.unpack(p))
    }

    pub fn availability(&self, user: &SubjectId) -> Option<&Availability> {
        self.users.get(user).map(|p| &self.values[p.value as usize])
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SubjectId, Known)> + '_ {
        self.users.iter().map(|(user, p)| (*user, self.unpack(p)))
    }

    pub fn users(&self) -> impl Iterator<Item = &SubjectId> {
        self.users.keys()
    }

    /// Sets `user` to `known` unconditionally (the result of a write this run).
    pub fn set(&mut self, user: SubjectId, known: Known) {
        let packed = self.pack(&known);
        self.users.insert(user, packed);
    }

    /// Keeps whichever of the current entry and `known` was recorded later.
    pub fn merge(&mut self, user: SubjectId, known: Known) {
        let packed = self.pack(&known);
        match self.users.entry(user) {
            Entry::Occupied(mut current) => {
                if (packed.secs, packed.nanos) >= (current.get().secs, current.get().nanos) {
                    current.insert(packed);
                }
            }
            Entry::Vacant(slot) => {
                slot.insert(packed);
            }
        }
    }

    /// Drops `user` if their entry is not newer than a departure observed at `at`.
    pub fn depart(&mut self, user: &SubjectId, at: DateTime<Utc>) {
        if self.users.get(user).is_some_and(|p| (p.secs, p.nanos) <= (at.timestamp(), at.timestamp_subsec_nanos())) {
            self.users.remove(user);
        }
    }

    pub fn remove(&mut self, user: &SubjectId) -> Option<Known> {
        let packed = self.users.remove(user)?;
        Some(self.unpack(&packed))
    }

    fn pack(&mut self, known: &Known) -> Packed {
        let value = match self.values.iter().position(|v| v == &known.availability) {
            Some(i) => i,
            None => {
                self.values.push(known.availability.clone());
                self.values.len() - 1
            }
        };
        // Each value is an allocation of its own: there cannot be more than fit in a u32.
        let value = value as u32;
        Packed { secs: known.at.timestamp(), nanos: known.at.timestamp_subsec_nanos(), value }
    }

    fn unpack(&self, packed: &Packed) -> Known {
        Known {
            availability: self.values[packed.value as usize].clone(),
            // Every entry came from a valid `DateTime`, so this cannot be out of range.
            at: DateTime::from_timestamp(packed.secs, packed.nanos).unwrap_or_default(),
        }
    }
}

/// Equal when every user has the same [`Known`], however the values were interned.
impl PartialEq for LastKnown {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(user, known)| other.get(&user).is_some_and(|k| k == known))
    }
}

impl Eq for LastKnown {}

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
        let user = SubjectId::from_u128(1);
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
        let user = SubjectId::from_u128(1);
        let mut state = LastKnown::default();
        state.set(user, known("Away", 10));
        state.depart(&user, at(5));
        assert!(state.get(&user).is_some());
        state.depart(&user, at(10));
        assert!(state.get(&user).is_none());
    }

    #[test]
    fn entries_are_compact_and_times_exact() {
        assert_eq!(std::mem::size_of::<Packed>(), 16);
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
        let mut state = LastKnown::default();
        state.set(SubjectId::from_u128(1), Known { availability: "Busy".into(), at });
        assert_eq!(state.get(&SubjectId::from_u128(1)), Some(Known { availability: "Busy".into(), at }));
    }

    #[test]
    fn equality_does_not_depend_on_the_order_values_were_seen() {
        let (a, b) = (SubjectId::from_u128(1), SubjectId::from_u128(2));
        let mut one = LastKnown::default();
        one.set(a, known("Away", 1));
        one.set(b, known("Busy", 2));
        let mut two = LastKnown::default();
        two.set(b, known("Busy", 2));
        two.set(a, known("Away", 1));
        assert_eq!(one, two);
        two.set(a, known("Busy", 1));
        assert_ne!(one, two);
    }

    #[test]
    fn interning_shares_values() {
        let mut interner = Interner::default();
        let a = interner.intern("Available");
        let b = interner.intern("Available");
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
