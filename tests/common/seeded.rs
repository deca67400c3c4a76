//! Seeded randomness for the reliability suites: a failing run prints its seed, and
//! `RELIABILITY_SEED=<n>` replays the same choices (timing on a busy machine still varies).

/// splitmix64: small, fast and good enough to pick faults, delays and slots.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// `RELIABILITY_SEED`, or a fresh seed from the clock.
pub fn seed() -> u64 {
    std::env::var("RELIABILITY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
    })
}

/// `RELIABILITY_PROFILE=long`: the long runs whose figures docs/reliability.md quotes.
pub fn long_profile() -> bool {
    std::env::var("RELIABILITY_PROFILE").is_ok_and(|p| p == "long")
}
