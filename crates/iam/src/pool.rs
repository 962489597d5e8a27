//! [`PasswordPool`]: the bounded set of threads every password hash and verification runs on.
//!
//! An argon2 hash costs ~19 MiB and ~0.1-0.2 s of one core. Run on `spawn_blocking`, a burst of
//! logins gets one fresh thread (and with glibc one fresh malloc arena) per request, so memory and
//! CPU grow with the attacker's concurrency. Here a fixed number of long-lived worker threads
//! (default: [`std::thread::available_parallelism`]) compute hashes; a caller first waits for a free
//! worker in a bounded queue ([`PoolConfig::queue_len`] callers at most, each for at most
//! [`PoolConfig::queue_wait`]) and is otherwise refused with [`PoolBusy`], which the API answers
//! with 429 and `Retry-After`. So at most `workers` hashes are ever computed at once, whatever the
//! load, and a caller never waits longer than the queue wait for a worker.
//!
//! The workers stop when the pool is dropped (their channel closes).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Sizes and waits of a [`PasswordPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Worker threads, i.e. hashes computed at once; `0` means
    /// [`std::thread::available_parallelism`].
    pub workers: usize,
    /// Callers that may wait for a worker at once; more are refused at once.
    pub queue_len: usize,
    /// How long a caller waits for a worker before it is refused.
    pub queue_wait: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { workers: 0, queue_len: 16, queue_wait: Duration::from_millis(1000) }
    }
}

impl PoolConfig {
    /// The number of workers this configuration starts.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        }
    }
}

/// No worker became free within the queue wait, or the queue was full: retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all password workers are busy; retry after {retry_after:?}")]
pub struct PoolBusy {
    /// A suggested wait before retrying.
    pub retry_after: Duration,
}

/// Counters of a pool (for tests, benchmarks and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub workers: usize,
    /// Jobs running now.
    pub running: usize,
    /// The most jobs ever seen running at once.
    pub peak_running: usize,
    /// Callers waiting for a worker now.
    pub waiting: usize,
    pub completed: u64,
    /// Callers refused with [`PoolBusy`].
    pub rejected: u64,
}

#[derive(Debug, Default)]
struct Counters {
    running: AtomicUsize,
    peak_running: AtomicUsize,
    waiting: AtomicUsize,
    completed: AtomicU64,
    rejected: AtomicU64,
}

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads for password hashing (see the module docs).
pub struct PasswordPool {
    config: PoolConfig,
    workers: usize,
    /// One permit per worker: a caller holding one is guaranteed an idle worker.
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for PasswordPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordPool").field("config", &self.config).field("workers", &self.workers).finish()
    }
}

/// Decrements the waiting count when a caller stops waiting (also when its future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts a job as running from its start until it ends (also by panicking).
struct Running<'a>(&'a Counters);

impl<'a> Running<'a> {
    fn start(c: &'a Counters) -> Self {
        let now = c.running.fetch_add(1, Ordering::SeqCst) + 1;
        c.peak_running.fetch_max(now, Ordering::SeqCst);
        Self(c)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.completed.fetch_add(1, Ordering::SeqCst);
    }
}

impl PasswordPool {
    /// Starts the worker threads. Fails only if the operating system refuses a thread.
    pub fn new(config: PoolConfig) -> std::io::Result<Self> {
        let workers = config.effective_workers();
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new().name(format!("docplane-password-{i}")).spawn(move || {
                loop {
                    // The lock is held only while taking one job, not while running it.
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        // A panicking job must not take its worker down with it; its caller sees
                        // the dropped reply channel.
                        Ok(job) => {
                            if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                                tracing::error!("a password job panicked; its login gets an internal error");
                            }
                        }
                        Err(_) => return,
                    }
                }
            })?;
        }
        Ok(Self {
            permits: Arc::new(Semaphore::new(workers)),
            jobs: tx,
            counters: Arc::new(Counters::default()),
            workers,
            config,
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    pub fn stats(&self) -> PoolStats {
        let c = &self.counters;
        PoolStats {
            workers: self.workers,
            running: c.running.load(Ordering::SeqCst),
            peak_running: c.peak_running.load(Ordering::SeqCst),
            waiting: c.waiting.load(Ordering::SeqCst),
            completed: c.completed.load(Ordering::SeqCst),
            rejected: c.rejected.load(Ordering::SeqCst),
        }
    }

    fn busy(&self) -> PoolBusy {
        self.counters.rejected.fetch_add(1, Ordering::SeqCst);
        let secs = self.config.queue_wait.as_secs_f64().ceil().max(1.0);
        PoolBusy { retry_after: Duration::from_secs_f64(secs) }
    }

    /// Waits (within the queue's bounds) for a free worker.
    async fn acquire(&self) -> Result<OwnedSemaphorePermit, PoolBusy> {
        // Fast path: a worker is idle, no need to queue.
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let c = &self.counters;
        if c.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.queue_len {
            c.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(self.busy());
        }
        let _waiting = Waiting(&c.waiting);
        match tokio::time::timeout(self.config.queue_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            // Timed out (or the semaphore was closed, which this pool never does).
            _ => Err(self.busy()),
        }
    }

    /// Runs `f` on a worker once one is free; [`PoolBusy`] if none is free within the queue wait.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolBusy>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.acquire().await?;
        let (tx, rx) = oneshot::channel();
        let counters = self.counters.clone();
        let job: Job = Box::new(move || {
            let running = Running::start(&counters);
            let out = f();
            drop(running);
            // The worker is free again only once the job is done (also if it panicked: the
            // permit is dropped while unwinding).
            drop(permit);
            if tx.send(out).is_err() {
                // The caller stopped waiting (its request ended); the result has no one to go to.
                tracing::debug!("password job finished after its caller left");
            }
        });
        if self.jobs.send(job).is_err() {
            return Err(self.busy());
        }
        // The reply is lost only if the job panicked: answer as if busy rather than hang.
        rx.await.map_err(|_| self.busy())
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests: a failed unwrap is a failed test")]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn pool(workers: usize, queue_len: usize, wait_ms: u64) -> Arc<PasswordPool> {
        Arc::new(
            PasswordPool::new(PoolConfig { workers, queue_len, queue_wait: Duration::from_millis(wait_ms) })
                .unwrap(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn never_runs_more_than_its_workers_and_refuses_the_excess() {
        let p = pool(2, 3, 300);
        let jobs: Vec<_> = (0..12)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.run(|| std::thread::sleep(Duration::from_millis(100))).await })
            })
            .collect();
        let mut ok = 0;
        let mut busy = 0;
        for j in jobs {
            match j.await.unwrap() {
                Ok(()) => ok += 1,
                Err(b) => {
                    assert_eq!(b.retry_after, Duration::from_secs(1));
                    busy += 1;
                }
            }
        }
        let s = p.stats();
        assert_eq!(s.peak_running, 2, "{s:?}");
        // 2 run at once, 3 more may wait: 5 (plus whatever a freed worker picks up within 300 ms)
        // succeed; the other callers were refused at once.
        assert!(ok >= 5 && busy >= 1, "ok {ok}, busy {busy}");
        assert_eq!(s.rejected, busy);
        assert_eq!(s.completed, ok);
        assert_eq!((s.running, s.waiting), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_is_refused_after_the_queue_wait() {
        let p = pool(1, 8, 50);
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        let long = {
            let p = p.clone();
            tokio::spawn(async move {
                p.run(move || {
                    while !r.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .await
            })
        };
        while p.stats().running == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let t = std::time::Instant::now();
        assert!(p.run(|| ()).await.is_err());
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2), "{waited:?}");
        release.store(true, Ordering::SeqCst);
        long.await.unwrap().unwrap();
        // A worker is free again: the next job runs.
        assert_eq!(p.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_its_worker() {
        let p = pool(1, 1, 1000);
        assert!(p.run(|| panic!("boom")).await.is_err());
        assert_eq!(p.run(|| 1 + 1).await.unwrap(), 2);
    }

    #[test]
    fn zero_workers_means_the_machine_s_parallelism() {
        let n = std::thread::available_parallelism().unwrap().get();
        assert_eq!(PoolConfig { workers: 0, ..PoolConfig::default() }.effective_workers(), n);
        assert_eq!(PoolConfig { workers: 3, ..PoolConfig::default() }.effective_workers(), 3);
    }
}
