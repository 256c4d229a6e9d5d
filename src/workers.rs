//! Connection workers: one single-threaded runtime per thread, like nginx's worker processes.
//!
//! The accept loops hand each new connection to the worker that holds the fewest (the next in
//! turn among those tied); from then on the connection's task, its sockets (client and
//! upstream) and its timers belong to that one thread. An event read from the origin is written
//! to the client by the thread that epoll woke, with no hand-over between threads and no
//! work-stealing wake-ups (a multi-threaded runtime spends a futex wake on a sleeping worker
//! for much of what it schedules).
//!
//! A thread never blocks: everything on it is async, so one worker being busy only delays the
//! connections it owns. Streams are long-lived and never move, so placing by count (not turn
//! by turn) keeps the workers even when connections come and go unevenly: short requests
//! between long streams, or a burst of streams that end together.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::{Builder, Handle};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Where connections are handed to the workers' runtimes.
pub struct Workers {
    handles: Box<[Handle]>,
    /// Tasks each worker holds now (spawned and not yet ended or dropped).
    live: Arc<[AtomicUsize]>,
    /// Where the search for the least-held worker starts: ties go turn by turn.
    next: AtomicUsize,
}

/// Counts a task against its worker for as long as the task lives.
struct Held {
    live: Arc<[AtomicUsize]>,
    worker: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.live[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` workers (at least one), each on its own thread, and returns once all
    /// of them run. They run until the guard is dropped; then each drops the tasks it still
    /// holds. Called once, at startup.
    pub fn start(count: usize) -> io::Result<(Arc<Workers>, DropGuard)> {
        let count = count.max(1);
        let stop = CancellationToken::new();
        // Taken first: should a later thread fail to start, the earlier ones stop.
        let guard = stop.clone().drop_guard();
        let (started_tx, started) = std::sync::mpsc::sync_channel(count);
        for i in 0..count {
            let stop = stop.clone();
            let started_tx = started_tx.clone();
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    // Built here, so that it is also dropped here, never in the caller's
                    // async context (where dropping a runtime panics).
                    let runtime = match Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => runtime,
                        Err(err) => {
                            let _ = started_tx.send((i, Err(err)));
                            return;
                        }
                    };
                    let _ = started_tx.send((i, Ok(runtime.handle().clone())));
                    drop(started_tx);
                    runtime.block_on(stop.cancelled());
                })?;
        }
        drop(started_tx);
        // Microseconds per thread; kept in worker order.
        let mut handles: Vec<Option<Handle>> = vec![None; count];
        for (i, handle) in started.iter() {
            handles[i] = Some(handle?);
        }
        let handles = handles
            .into_iter()
            .collect::<Option<Box<[Handle]>>>()
            .ok_or_else(|| io::Error::other("a worker thread ended while starting"))?;
        let workers = Workers {
            live: (0..handles.len()).map(|_| AtomicUsize::new(0)).collect(),
            handles,
            next: AtomicUsize::new(0),
        };
        Ok((Arc::new(workers), guard))
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never true: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs `task` on the worker that holds the fewest tasks; among those tied, the next in
    /// turn. Called by the accept loops only, so the counts it reads are at most a few
    /// connections behind (tasks that have just ended on their workers).
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let count = self.handles.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let worker = (start..count + start)
            .map(|i| i % count)
            .min_by_key(|&i| self.live[i].load(Ordering::Relaxed))
            .unwrap_or(start);
        self.live[worker].fetch_add(1, Ordering::Relaxed);
        let held = Held {
            live: self.live.clone(),
            worker,
        };
        drop(self.handles[worker].spawn(async move {
            let _held = held;
            task.await;
        }));
    }

    /// Tasks each worker holds now, in worker order.
    pub fn held(&self) -> Vec<usize> {
        self.live
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }
}

/// The default number of workers: one per core this process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread each of `count` spawned tasks ran on, in spawn order.
    async fn threads_of(workers: &Workers, count: usize) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..count {
            let (tx, rx) = tokio::sync::oneshot::channel();
            workers.spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name.unwrap_or_default());
            });
            names.push(rx.await.expect("the task ran"));
        }
        names
    }

    #[tokio::test]
    async fn tasks_go_to_each_worker_in_turn() {
        let (workers, _guard) = Workers::start(3).expect("start");
        assert_eq!(workers.len(), 3);
        let names = threads_of(&workers, 6).await;
        assert_eq!(
            names,
            ["worker-0", "worker-1", "worker-2", "worker-0", "worker-1", "worker-2"]
        );
    }

    /// Spawns a task on `workers` that runs until `release` fires; returns the thread it runs
    /// on once it runs.
    async fn hold(workers: &Workers, release: tokio::sync::oneshot::Receiver<()>) -> String {
        let (tx, rx) = tokio::sync::oneshot::channel();
        workers.spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            let _ = tx.send(name.unwrap_or_default());
            let _ = release.await;
        });
        rx.await.expect("the task ran")
    }

    /// Waits until the workers' counts are `want`: a task's count goes once the task is over
    /// on its own thread, just after what the test saw of its end.
    async fn held_becomes(workers: &Workers, want: &[usize]) {
        let settled = async {
            while workers.held() != want {
                tokio::task::yield_now().await;
            }
        };
        if tokio::time::timeout(std::time::Duration::from_secs(10), settled)
            .await
            .is_err()
        {
            panic!("held {:?}, not {want:?}", workers.held());
        }
    }

    #[tokio::test]
    async fn a_task_goes_to_the_worker_holding_the_fewest() {
        let (workers, _guard) = Workers::start(2).expect("start");
        let mut releases = Vec::new();
        let mut placed = Vec::new();
        for _ in 0..4 {
            let (release, rx) = tokio::sync::oneshot::channel::<()>();
            placed.push(hold(&workers, rx).await);
            releases.push(release);
        }
        assert_eq!(placed, ["worker-0", "worker-1", "worker-0", "worker-1"]);
        assert_eq!(workers.held(), [2, 2]);
        // Both of worker-0's tasks end: the next two go there, not one to each in turn.
        for release in [releases.remove(2), releases.remove(0)] {
            let _ = release.send(());
        }
        held_becomes(&workers, &[0, 2]).await;
        let mut later = Vec::new();
        for _ in 0..2 {
            let (release, rx) = tokio::sync::oneshot::channel::<()>();
            later.push(hold(&workers, rx).await);
            releases.push(release);
        }
        assert_eq!(later, ["worker-0", "worker-0"]);
        assert_eq!(workers.held(), [2, 2]);
    }

    #[tokio::test]
    async fn zero_workers_means_one() {
        let (workers, _guard) = Workers::start(0).expect("start");
        assert_eq!(threads_of(&workers, 2).await, ["worker-0", "worker-0"]);
    }

    #[tokio::test]
    async fn dropping_the_guard_drops_what_the_workers_still_run() {
        let (workers, guard) = Workers::start(2).expect("start");
        let mut held = Vec::new();
        for _ in 0..2 {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            // Never finishes on its own: it holds its sender until its runtime drops it.
            workers.spawn(async move {
                let _tx = tx;
                std::future::pending::<()>().await;
            });
            held.push(rx);
        }
        drop(guard);
        for rx in held {
            assert!(rx.await.is_err(), "the task was dropped with its runtime");
        }
        // A dropped task no longer counts.
        held_becomes(&workers, &[0, 0]).await;
    }
}
