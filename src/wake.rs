//! Futures that rarely complete (a drain, a kill, an idle deadline), polled only when they
//! wake rather than on every wake of the task that owns them.
//!
//! A connection task wakes for every event of its stream. Polling a `CancellationToken`'s or a
//! `Notify`'s future takes a lock (the drain token's is shared by every connection), so doing
//! it per event costs more than forwarding the event. [`SideWake`] gives such futures a waker
//! of their own: it marks them due and wakes the task, and the task polls them only then.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// A waker for side futures, and whether one of them has woken since they were last polled.
pub struct SideWake {
    shared: Arc<Shared>,
    waker: Waker,
    /// The task waker last registered, to skip registering the same one again.
    registered: Option<Waker>,
}

struct Shared {
    due: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Default for SideWake {
    fn default() -> Self {
        let shared = Arc::new(Shared {
            // Due at first, so that the first poll registers the side futures.
            due: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        SideWake {
            waker: Waker::from(shared.clone()),
            shared,
            registered: None,
        }
    }
}

impl SideWake {
    /// Whether the side futures must be polled now (with [`SideWake::waker`]); in any case
    /// the task behind `cx` is the one their wake-ups reach.
    pub fn due(&mut self, cx: &Context<'_>) -> bool {
        // Called several times per event: a plain load and a pointer comparison when nothing
        // has changed.
        if !self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            self.shared.task.register(cx.waker());
            self.registered = Some(cx.waker().clone());
        }
        if !self.shared.due.load(Ordering::Acquire) {
            return false;
        }
        // The wake-up that marked them due took the task's waker out of `task`: put it back
        // before clearing the mark, or the next wake-up would reach nobody.
        self.shared.task.register(cx.waker());
        self.shared.due.swap(false, Ordering::AcqRel)
    }

    /// The waker to poll the side futures with.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;

    /// A task waker that counts its wake-ups (for the tests of the side futures' users too).
    #[derive(Default)]
    pub(crate) struct Counting(pub(crate) AtomicUsize);

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn every_side_wake_up_reaches_the_task() {
        let counter = Arc::new(Counting::default());
        let task = Waker::from(counter.clone());
        let cx = Context::from_waker(&task);
        let mut side = SideWake::default();
        assert!(side.due(&cx), "due at first");
        for round in 1..=3 {
            side.waker().wake_by_ref();
            assert_eq!(counter.0.load(Ordering::SeqCst), round, "wake-up {round}");
            assert!(side.due(&cx));
            assert!(!side.due(&cx));
        }
    }

    #[tokio::test]
    async fn a_side_future_is_polled_only_after_it_woke() {
        let notify = tokio::sync::Notify::new();
        let mut side = SideWake::default();
        let mut waited = pin!(notify.notified());
        let mut polls = 0;
        let mut step = |cx: &mut Context<'_>| {
            if side.due(cx) {
                polls += 1;
                let mut side_cx = Context::from_waker(side.waker());
                return waited.as_mut().poll(&mut side_cx);
            }
            Poll::Pending
        };
        let mut cx = Context::from_waker(Waker::noop());
        assert!(step(&mut cx).is_pending());
        assert!(step(&mut cx).is_pending());
        assert!(step(&mut cx).is_pending());
        notify.notify_waiters();
        assert!(step(&mut cx).is_ready());
        assert_eq!(polls, 2, "polled at first and after the wake-up only");
    }
}
