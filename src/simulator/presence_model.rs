//! The simulated truth: every user's availability at each epoch, one byte per user per epoch.
//! An epoch is one "moment" of the tenant; a fixed share of users changes availability at each.

use std::collections::VecDeque;
use std::sync::Arc;

use uuid::Uuid;

/// Values as Graph spells them, including the ones that drift (`PresenceUnknown`, `focusing`).
pub const AVAILABILITIES: [&str; 9] = [
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
    "PresenceUnknown",
];

/// Epochs kept for `truth`; older ones are forgotten (a megabyte each at a million users).
const HISTORY: usize = 64;

pub struct PresenceModel {
    seed: u64,
    /// Probability, in 1/2^32 units, that a user changes at an epoch step.
    change_threshold: u64,
    /// `(epoch, state)`, oldest first; the last is the current epoch.
    epochs: VecDeque<(u64, Arc<Vec<u8>>)>,
}

impl PresenceModel {
    pub fn new(users: u32, change_rate: f64, seed: u64) -> Self {
        let state: Vec<u8> =
            (0..users).map(|u| (mix(seed, u64::from(u), 0) % AVAILABILITIES.len() as u64) as u8).collect();
        let change_threshold = (change_rate.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64;
        Self { seed, change_threshold, epochs: VecDeque::from([(0, Arc::new(state))]) }
    }

    pub fn current(&self) -> (u64, Arc<Vec<u8>>) {
        self.epochs.back().cloned().unwrap_or_default()
    }

    /// Moves to the next epoch: each user changes with the configured probability, always to a
    /// different value, so "10 % change" means 10 % of users have a new availability.
    pub fn advance(&mut self) -> u64 {
        let (epoch, state) = self.current();
        let next = epoch + 1;
        let k = AVAILABILITIES.len() as u64;
        let new: Vec<u8> = state
            .iter()
            .enumerate()
            .map(|(u, &old)| {
                let h = mix(self.seed, u as u64, next);
                if h & 0xffff_ffff < self.change_threshold {
                    ((u64::from(old) + 1 + (h >> 32) % (k - 1)) % k) as u8
                } else {
                    old
                }
            })
            .collect();
        self.epochs.push_back((next, Arc::new(new)));
        while self.epochs.len() > HISTORY {
            self.epochs.pop_front();
        }
        next
    }

    pub fn truth(&self, user: u32, epoch: u64) -> Option<&'static str> {
        let (_, state) = self.epochs.iter().find(|(e, _)| *e == epoch)?;
        state.get(user as usize).map(|&v| AVAILABILITIES[v as usize])
    }
}

/// What Graph's `activity` would plausibly be for an availability (the simulator sends it so
/// that the client's dropping of it is tested).
pub fn activity(availability: &str) -> &'static str {
    match availability {
        "Busy" => "InAMeeting",
        "DoNotDisturb" => "Presenting",
        "Offline" => "OffWork",
        "AvailableIdle" | "BusyIdle" => "Inactive",
        "Available" => "Available",
        "Away" => "Away",
        "BeRightBack" => "BeRightBack",
        _ => "PresenceUnknown",
    }
}

/// A stable 64-bit hash of `(seed, user, epoch)` (splitmix64 finaliser).
fn mix(seed: u64, user: u64, epoch: u64) -> u64 {
    let mut z = seed ^ user.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ epoch.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic sequence number for a presence object, as Graph's lexicographic stamp.
pub fn sequence_number(user: u32, epoch: u64) -> String {
    format!("C{epoch:012}{:08x}", Uuid::from_u128(u128::from(user)).as_u128() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_share_of_users_changes_per_epoch() {
        let mut model = PresenceModel::new(100_000, 0.1, 7);
        let before: Vec<_> = (0..100_000).map(|u| model.truth(u, 0).unwrap()).collect();
        assert_eq!(model.advance(), 1);
        let changed = (0..100_000).filter(|&u| model.truth(u, 1).unwrap() != before[u as usize]).count();
        assert!((9_500..10_500).contains(&changed), "{changed}");
        assert_eq!(model.truth(5, 0), Some(before[5]));
        assert_eq!(model.truth(5, 9), None);
    }
}
