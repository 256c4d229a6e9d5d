//! The byte budget of one client's queue (`client_buffer`): what the proxy holds for a client,
//! counted in payload bytes, shared by the producer (an upstream reader) and the consumer (the
//! client's writer or response body).
//!
//! A full budget makes the producer wait, which holds back that client's own upstream and
//! nobody else's. A client that takes nothing for [`SLOW_CLIENT_GRACE`] while its budget is full
//! cannot keep up and is cut (SPEC 10 "Slow clients"). A client that reads at full speed never
//! is, however the upstream bursts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a full queue may go without the client taking anything before the client is cut.
pub const SLOW_CLIENT_GRACE: Duration = Duration::from_millis(250);

/// The client did not take what was queued for it within its `client_buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

#[derive(Debug)]
pub struct Budget {
    queued: AtomicUsize,
    limit: usize,
    drained: Notify,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget {
            queued: AtomicUsize::new(0),
            limit,
            drained: Notify::new(),
        }
    }

    /// Takes room for `len` bytes without waiting (for small control messages).
    pub fn try_reserve(&self, len: usize) -> Result<(), Overflow> {
        let queued = self.queued.load(Ordering::Acquire);
        // One message larger than the whole budget still goes through an empty queue.
        if queued > 0 && queued + len > self.limit {
            return Err(Overflow);
        }
        self.queued.fetch_add(len, Ordering::AcqRel);
        Ok(())
    }

    /// Takes room for `len` bytes, waiting while the client drains its queue; `Overflow` when it
    /// takes nothing for [`SLOW_CLIENT_GRACE`]. One producer per budget.
    pub async fn reserve(&self, len: usize) -> Result<(), Overflow> {
        // The common case, room at once, without registering with `drained` (a lock).
        if self.try_reserve(len).is_ok() {
            return Ok(());
        }
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.try_reserve(len).is_ok() {
                return Ok(());
            }
            if tokio::time::timeout(SLOW_CLIENT_GRACE, drained)
                .await
                .is_err()
            {
                return Err(Overflow);
            }
        }
    }

    /// The client took `len` bytes.
    pub fn release(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
        self.drained.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn full_budget_waits_for_the_client_then_cuts_a_client_that_takes_nothing() {
        let budget = std::sync::Arc::new(Budget::new(100));
        budget.reserve(80).await.unwrap();
        // Over the limit: a client that drains in time lets the producer through.
        let drainer = budget.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SLOW_CLIENT_GRACE / 2).await;
            drainer.release(80);
        });
        budget.reserve(80).await.unwrap();
        // Nobody drains: cut after the grace.
        assert_eq!(budget.reserve(80).await, Err(Overflow));
    }

    #[tokio::test]
    async fn a_message_larger_than_the_budget_passes_an_empty_queue() {
        let budget = Budget::new(10);
        budget.reserve(1000).await.unwrap();
        assert_eq!(budget.try_reserve(1), Err(Overflow));
    }
}
