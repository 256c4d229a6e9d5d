//! What a stream body watches besides its data: the shutdown's drain and the heartbeat timer.
//!
//! Both rarely fire, yet a body is polled for every event. Polling the drain's future takes a
//! lock shared by every stream, and polling a timer touches its entry in the timer wheel, so
//! [`StreamWatch`] polls them only after one of them woke (see `wake`). A busy stream then
//! costs a flag check and one clock read per chunk.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::wake::SideWake;

/// Heartbeat settings and timer of one stream.
pub struct Heartbeat {
    every: Duration,
    padding: usize,
    timer: Pin<Box<Sleep>>,
    last_write: Instant,
}

impl Heartbeat {
    pub fn new(every: Duration, padding: usize) -> Self {
        let now = Instant::now();
        Heartbeat {
            every,
            padding,
            timer: Box::pin(tokio::time::sleep_until(now + every)),
            last_write: now,
        }
    }

    /// When the heartbeat is due if nothing more is written.
    fn due(&self) -> Instant {
        self.last_write + self.every
    }

    /// Sets the timer to `at` and registers it with `cx`; true when it has already passed.
    fn arm(&mut self, at: Instant, cx: &mut Context<'_>) -> bool {
        self.timer.as_mut().reset(at);
        self.timer.as_mut().poll(cx).is_ready()
    }
}

/// The drain and the heartbeat of one stream body, polled only when they woke.
pub struct StreamWatch {
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    drained: bool,
    heartbeat: Option<Heartbeat>,
    /// The heartbeat timer fired and nothing was written for an interval.
    beat: bool,
    side: SideWake,
}

impl StreamWatch {
    pub fn new(drain: CancellationToken, heartbeat: Option<Heartbeat>) -> Self {
        StreamWatch {
            drain: Box::pin(drain.cancelled_owned()),
            drained: false,
            heartbeat,
            beat: false,
            side: SideWake::default(),
        }
    }

    /// Polls the drain and the heartbeat timer if either woke (the task behind `cx` is the one
    /// they wake); true once the drain has begun, and from then on.
    pub fn poll(&mut self, cx: &Context<'_>) -> bool {
        if !self.side.due(cx) {
            return self.drained;
        }
        let mut side_cx = Context::from_waker(self.side.waker());
        if !self.drained && self.drain.as_mut().poll(&mut side_cx).is_ready() {
            self.drained = true;
        }
        if let Some(h) = self.heartbeat.as_mut() {
            // A write since the timer was set moves the heartbeat on: set it again.
            while h.timer.as_mut().poll(&mut side_cx).is_ready() {
                let due = h.due();
                if Instant::now() >= due {
                    self.beat = true;
                    break;
                }
                h.timer.as_mut().reset(due);
            }
        }
        self.drained
    }

    /// Something was written to the client: the heartbeat's interval starts again.
    pub fn wrote(&mut self) {
        if let Some(h) = self.heartbeat.as_mut() {
            h.last_write = Instant::now();
        }
    }

    /// The heartbeat's padding when one is due: nothing written for its interval.
    pub fn heartbeat_due(&mut self) -> Option<usize> {
        if !self.beat {
            return None;
        }
        let h = self.heartbeat.as_mut()?;
        let due = h.due();
        if Instant::now() >= due {
            return Some(h.padding);
        }
        // Written to since the timer fired.
        self.beat = false;
        let mut side_cx = Context::from_waker(self.side.waker());
        if h.arm(due, &mut side_cx) {
            self.side.waker().wake_by_ref();
        }
        None
    }

    /// A heartbeat was written: the next one is an interval away.
    pub fn heartbeat_written(&mut self) {
        self.wrote();
        self.heartbeat_postponed();
    }

    /// The heartbeat was due inside an event and not written: wait another interval.
    pub fn heartbeat_postponed(&mut self) {
        self.beat = false;
        let Some(h) = self.heartbeat.as_mut() else {
            return;
        };
        let mut side_cx = Context::from_waker(self.side.waker());
        let at = Instant::now() + h.every;
        if h.arm(at, &mut side_cx) {
            self.side.waker().wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wake::tests::Counting;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::task::Waker;

    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_is_due_after_an_interval_without_writes_and_wakes_the_task() {
        let counter = Arc::new(Counting::default());
        let task = Waker::from(counter.clone());
        let cx = Context::from_waker(&task);
        let every = Duration::from_secs(10);
        let mut watch = StreamWatch::new(CancellationToken::new(), Some(Heartbeat::new(every, 7)));
        assert!(!watch.poll(&cx));
        assert_eq!(watch.heartbeat_due(), None);
        // A write half-way moves the heartbeat on: not due when the first timer fires.
        tokio::time::advance(every / 2).await;
        watch.wrote();
        tokio::time::advance(every / 2).await;
        tokio::task::yield_now().await;
        assert!(
            counter.0.load(Ordering::SeqCst) >= 1,
            "the timer woke the task"
        );
        watch.poll(&cx);
        assert_eq!(watch.heartbeat_due(), None);
        tokio::time::advance(every / 2).await;
        tokio::task::yield_now().await;
        watch.poll(&cx);
        assert_eq!(watch.heartbeat_due(), Some(7));
        watch.heartbeat_written();
        assert_eq!(watch.heartbeat_due(), None);
        tokio::time::advance(every).await;
        tokio::task::yield_now().await;
        watch.poll(&cx);
        assert_eq!(watch.heartbeat_due(), Some(7));
    }

    #[tokio::test]
    async fn the_drain_is_seen_once_it_began_and_from_then_on() {
        let counter = Arc::new(Counting::default());
        let task = Waker::from(counter.clone());
        let cx = Context::from_waker(&task);
        let drain = CancellationToken::new();
        let mut watch = StreamWatch::new(drain.clone(), None);
        assert!(!watch.poll(&cx));
        drain.cancel();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "the drain woke the task"
        );
        assert!(watch.poll(&cx));
        assert!(watch.poll(&cx));
    }
}
