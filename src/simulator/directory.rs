//! The simulated directory: users derived from an index, groups as ranges of those indexes plus
//! nested groups and non-user members, and `transitiveMembers` pages computed on demand. Nothing
//! is stored per user, so a million-user tenant costs a few kilobytes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::ops::Range;

use uuid::Uuid;

use crate::model::{GroupId, UserId};

const USER_BASE: u128 = 0x5eed0000_0000_4000_8000_000000000000;
const OTHER_BASE: u128 = 0x0dd00000_0000_4000_8000_000000000000;
const INDEX_MASK: u128 = 0xffff_ffff;

/// The simulated user with index `i` (0-based).
pub fn user_id(i: u32) -> UserId {
    UserId::from_u128(USER_BASE | u128::from(i))
}

/// The index of a simulated user id, if it is one.
pub fn user_index(id: &UserId) -> Option<u32> {
    let v = id.expose_object_id().as_u128();
    (v & !INDEX_MASK == USER_BASE).then_some((v & INDEX_MASK) as u32)
}

/// One configured group: its direct user members (as index ranges), direct child groups, and
/// how many non-user objects (devices, service principals, contacts) it holds directly.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub id: GroupId,
    pub users: Vec<Range<u32>>,
    pub nested: Vec<GroupId>,
    pub others: u32,
}

impl GroupSpec {
    pub fn new(id: GroupId) -> Self {
        Self { id, users: Vec::new(), nested: Vec::new(), others: 0 }
    }

    pub fn users(mut self, range: Range<u32>) -> Self {
        self.users.push(range);
        self
    }

    pub fn nested(mut self, child: GroupId) -> Self {
        self.nested.push(child);
        self
    }

    pub fn others(mut self, count: u32) -> Self {
        self.others = count;
        self
    }
}

/// A group's flattened membership, as `transitiveMembers` lists it: each member once.
#[derive(Debug)]
pub struct Flattened {
    /// Disjoint, sorted user index ranges, with the running count before each.
    ranges: Vec<(Range<u32>, u64)>,
    user_count: u64,
    /// Non-user members: nested groups first, then other objects.
    non_users: Vec<(Uuid, &'static str)>,
}

pub struct Member {
    pub id: Uuid,
    pub odata_type: &'static str,
}

impl Flattened {
    pub fn len(&self) -> u64 {
        self.user_count + self.non_users.len() as u64
    }

    #[cfg(test)]
    pub fn user_count(&self) -> u64 {
        self.user_count
    }

    /// The member at position `p`: non-users are spread evenly among the users, so that paging
    /// mixes them in as a real directory does.
    pub fn member(&self, p: u64) -> Option<Member> {
        if p >= self.len() {
            return None;
        }
        let n = self.non_users.len() as u64;
        let step = self.len().checked_div(n).map_or(u64::MAX, |s| s.max(1));
        if n > 0 && p.is_multiple_of(step) && p / step < n {
            let (id, odata_type) = self.non_users[(p / step) as usize];
            return Some(Member { id, odata_type });
        }
        let before = if n == 0 { 0 } else { n.min(p / step + 1) };
        let k = p - before;
        let i = self.ranges.partition_point(|(_, start)| *start <= k) - 1;
        let (range, start) = &self.ranges[i];
        Some(Member {
            id: user_id(range.start + (k - start) as u32).expose_object_id(),
            odata_type: "#microsoft.graph.user",
        })
    }

    pub fn user_indexes(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|(r, _)| r.clone())
    }
}

/// All configured groups, flattened once at start.
pub struct Directory {
    groups: HashMap<GroupId, Flattened>,
}

impl Directory {
    pub fn new(specs: &[GroupSpec], users: u32) -> Self {
        let by_id: HashMap<GroupId, &GroupSpec> = specs.iter().map(|s| (s.id, s)).collect();
        let groups = specs.iter().map(|s| (s.id, flatten(s, &by_id, users))).collect();
        Self { groups }
    }

    pub fn group(&self, id: &GroupId) -> Option<&Flattened> {
        self.groups.get(id)
    }
}

fn flatten(spec: &GroupSpec, by_id: &HashMap<GroupId, &GroupSpec>, users: u32) -> Flattened {
    let mut ranges: Vec<Range<u32>> = Vec::new();
    let mut nested_groups = Vec::new();
    let mut others: Vec<(Uuid, &'static str)> = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![spec.id];
    while let Some(g) = stack.pop() {
        if !seen.insert(g) {
            continue; // cycles and diamonds list each member once
        }
        let Some(s) = by_id.get(&g) else { continue };
        if g != spec.id {
            nested_groups.push((g.as_uuid(), "#microsoft.graph.group"));
        }
        ranges.extend(s.users.iter().map(|r| r.start.min(users)..r.end.min(users)).filter(|r| !r.is_empty()));
        let group_tag =
            u128::from(u32::from_le_bytes(g.as_uuid().as_bytes()[..4].try_into().unwrap_or_default())) << 32;
        for j in 0..s.others {
            let kind = ["#microsoft.graph.device", "#microsoft.graph.servicePrincipal", "#microsoft.graph.orgContact"]
                [j as usize % 3];
            others.push((Uuid::from_u128(OTHER_BASE | group_tag | u128::from(j)), kind));
        }
        stack.extend(s.nested.iter().copied());
    }
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u32>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut count = 0u64;
    let ranges = merged
        .into_iter()
        .map(|r| {
            let start = count;
            count += u64::from(r.end - r.start);
            (r, start)
        })
        .collect();
    nested_groups.extend(others);
    Flattened { ranges, user_count: count, non_users: nested_groups }
}

/// One page of members from `offset`, as Graph's JSON, and the offset of the next page.
pub fn page_json(group: &Flattened, offset: u64, top: u64) -> (String, Option<u64>) {
    let end = (offset + top).min(group.len());
    let mut body = String::with_capacity(((end - offset) as usize) * 90 + 64);
    body.push_str(r#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#directoryObjects(id)","value":["#);
    for p in offset..end {
        if let Some(m) = group.member(p) {
            if p > offset {
                body.push(',');
            }
            let _ = write!(body, r#"{{"@odata.type":"{}","id":"{}"}}"#, m.odata_type, m.id);
        }
    }
    body.push_str("]}");
    (body, (end < group.len()).then_some(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_overlapping_groups_flatten_to_each_member_once() {
        let a = GroupId::from_u128(1);
        let b = GroupId::from_u128(2);
        let c = GroupId::from_u128(3);
        let specs = vec![
            GroupSpec::new(a).users(0..10).users(5..15).nested(b).others(4),
            GroupSpec::new(b).users(12..20).nested(c).nested(a),
            GroupSpec::new(c).users(100..103),
        ];
        let dir = Directory::new(&specs, 1000);
        let g = dir.group(&a).unwrap();
        assert_eq!(g.user_count(), 23);
        assert_eq!(g.len(), 23 + 2 + 4);
        let members: Vec<Member> = (0..g.len()).map(|p| g.member(p).unwrap()).collect();
        let users: Vec<u32> = members
            .iter()
            .filter(|m| m.odata_type.ends_with("user"))
            .map(|m| user_index(&UserId::from_uuid(m.id)).unwrap())
            .collect();
        let expected: Vec<u32> = (0..20).chain(100..103).collect();
        assert_eq!(users, expected);
        assert_eq!(members.iter().filter(|m| m.odata_type.ends_with("group")).count(), 2);
        assert!(g.member(g.len()).is_none());
    }

    #[test]
    fn user_ids_round_trip() {
        for i in [0, 1, 999_999, u32::MAX] {
            assert_eq!(user_index(&user_id(i)), Some(i));
        }
        assert_eq!(user_index(&UserId::from_u128(7)), None);
    }
}
