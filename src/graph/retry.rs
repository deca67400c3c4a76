//! The one retry policy every Graph call follows: what to retry, and how long to wait first.

use std::time::{Duration, SystemTime};

use crate::config::GraphTuning;

/// Longest `Retry-After` taken at face value; a larger one is treated as this (the run deadline
/// still wins), so a bad header cannot park a run for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    base: Duration,
    max: Duration,
}

/// What to do with a response status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// 429 / 503: wait `Retry-After` when given, else back off.
    Throttled,
    /// Other 5xx: back off and retry on a fresh connection.
    ServerError,
    /// The token was refused: refresh it once, then give up.
    Unauthorized,
    /// Not retryable (400, 403, 404 ...): the caller decides.
    Fail,
}

impl RetryPolicy {
    pub fn new(tuning: &GraphTuning) -> Self {
        Self { max_attempts: tuning.max_attempts.max(1), base: tuning.backoff_base, max: tuning.backoff_max }
    }

    pub fn verdict(status: u16) -> Verdict {
        match status {
            200..=299 => Verdict::Success,
            429 | 503 => Verdict::Throttled,
            401 => Verdict::Unauthorized,
            500..=599 => Verdict::ServerError,
            _ => Verdict::Fail,
        }
    }

    /// Exponential backoff with full jitter for the `attempt`-th retry (1-based): a random wait in
    /// `[step/2, step]` where `step = base * 2^(attempt-1)`, capped, so that many batches failing
    /// together do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let step = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max);
        let half = step / 2;
        let extra = rand::random_range(0..=half.as_micros().min(u128::from(u64::MAX)) as u64);
        half + Duration::from_micros(extra)
    }
}

/// Parses a `Retry-After` value: whole or fractional seconds (Graph sends `2.128`), or an HTTP
/// date. `None` for anything else, so the caller falls back to backoff.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        return Some(Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 2.128 ", now), Some(Duration::from_millis(2128)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(7)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        for bad in ["", "-1", "soon", "NaN", "inf"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let tuning = GraphTuning {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            ..GraphTuning::default()
        };
        let policy = RetryPolicy::new(&tuning);
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!((Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first), "{first:?}");
            let third = policy.backoff(3);
            assert!((Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third), "{third:?}");
            let late = policy.backoff(30);
            assert!((Duration::from_millis(500)..=Duration::from_secs(1)).contains(&late), "{late:?}");
        }
    }

    #[test]
    fn verdicts() {
        assert_eq!(RetryPolicy::verdict(200), Verdict::Success);
        assert_eq!(RetryPolicy::verdict(429), Verdict::Throttled);
        assert_eq!(RetryPolicy::verdict(503), Verdict::Throttled);
        assert_eq!(RetryPolicy::verdict(504), Verdict::ServerError);
        assert_eq!(RetryPolicy::verdict(401), Verdict::Unauthorized);
        assert_eq!(RetryPolicy::verdict(400), Verdict::Fail);
        assert_eq!(RetryPolicy::verdict(404), Verdict::Fail);
    }
}
