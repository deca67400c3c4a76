//! A client-side limit on call starts per sliding window, so a run stays under Graph's
//! per-app-per-tenant presence limit instead of discovering it through 429s.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `limit` call starts in any `window` (plus a small guard, because Graph counts
/// arrivals, which trail starts by a varying network delay).
#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    /// Start times of the last `limit` calls, oldest first. A fair async mutex: waiters are
    /// served in arrival order, so one waiter sleeping holds back only those behind it.
    starts: Mutex<VecDeque<Instant>>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct PastDeadline;

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        let limit = limit.max(1) as usize;
        Self { limit, window: window + window / 50, starts: Mutex::new(VecDeque::with_capacity(limit)) }
    }

    /// Waits until a call may start; returns how long it waited. Gives up at once, without
    /// taking a slot, when the slot would come after `deadline`.
    pub async fn acquire(&self, deadline: Instant) -> Result<Duration, PastDeadline> {
        let mut starts = self.starts.lock().await;
        let now = Instant::now();
        let ready = if starts.len() >= self.limit {
            // The oldest of the last `limit` starts must leave the window first.
            starts[starts.len() - self.limit] + self.window
        } else {
            now
        };
        if ready > deadline {
            return Err(PastDeadline);
        }
        if ready > now {
            tokio::time::sleep_until(ready).await;
        }
        let started = Instant::now();
        while starts.len() >= self.limit {
            starts.pop_front();
        }
        starts.push_back(started);
        Ok(started - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest number of starts inside any window of `window` length.
    fn max_in_window(starts: &[Instant], window: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..starts.len() {
            while starts[hi] - starts[lo] >= window {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let limiter = std::sync::Arc::new(RateLimiter::new(10, Duration::from_secs(30)));
        let deadline = Instant::now() + Duration::from_secs(3600);
        let begin = Instant::now();
        let tasks: Vec<_> = (0..35)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire(deadline).await.unwrap();
                    Instant::now()
                })
            })
            .collect();
        let mut starts = Vec::new();
        for t in tasks {
            starts.push(t.await.unwrap());
        }
        starts.sort();
        assert_eq!(max_in_window(&starts, Duration::from_secs(30)), 10);
        // 35 calls at 10 per window need three full windows of waiting, and no more.
        let elapsed = *starts.last().unwrap() - begin;
        assert!(elapsed >= Duration::from_secs(90) && elapsed < Duration::from_secs(93), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_after_the_deadline_is_refused_without_waiting() {
        let limiter = RateLimiter::new(1, Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(10);
        limiter.acquire(deadline).await.unwrap();
        let before = Instant::now();
        assert_eq!(limiter.acquire(deadline).await, Err(PastDeadline));
        assert_eq!(Instant::now(), before);
    }
}
