//! Faults a test injects into the next calls of an endpoint.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Members,
    Presence,
    /// Both token endpoints (managed identity and client credentials): a failing identity
    /// endpoint, as when the platform's token service is down or slow.
    Token,
}

/// How a throttled or unavailable response says when to come back.
#[derive(Clone, Debug, PartialEq)]
pub enum RetryAfter {
    Seconds(u64),
    /// Written with three decimals, as Graph's documented sample `2.128`.
    Fractional(f64),
    /// An HTTP date this far in the future.
    HttpDate(Duration),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// This status with Graph's error body, and optionally a `Retry-After`.
    Status { status: u16, retry_after: Option<RetryAfter> },
    /// The normal answer after this extra delay.
    Slow(Duration),
    /// No answer at all (until the server stops).
    Hang,
    /// A 200 whose body is not JSON.
    Malformed,
    /// A 200 whose JSON body is cut off half-way.
    Truncated,
    /// A normal presence answer missing this many of the ids asked for.
    DropIds(usize),
    /// The normal answer, unchanged: queued before another fault it makes that fault hit a later
    /// call (a group deleted between two pages of one run: `Pass`, then a 404).
    Pass,
}

#[derive(Default)]
pub struct FaultQueue {
    members: Mutex<VecDeque<Fault>>,
    presence: Mutex<VecDeque<Fault>>,
    token: Mutex<VecDeque<Fault>>,
}

impl FaultQueue {
    fn queue(&self, endpoint: Endpoint) -> &Mutex<VecDeque<Fault>> {
        match endpoint {
            Endpoint::Members => &self.members,
            Endpoint::Presence => &self.presence,
            Endpoint::Token => &self.token,
        }
    }

    pub fn push(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        let mut q = self.queue(endpoint).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        q.extend(std::iter::repeat_n(fault, times));
    }

    pub fn next(&self, endpoint: Endpoint) -> Option<Fault> {
        self.queue(endpoint).lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop_front()
    }
}
