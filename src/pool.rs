//! The worker pool: threads that own interpreters, one bounded queue, and deadlines.
//!
//! Jobs cross threads over a bounded queue ([`queue`]); interpreters never do. Each worker keeps one
//! [`Instance`] per engine for the plugin set it last saw, and moves to a newer set before
//! its next request, so a reload never interrupts a running call.
//!
//! Every caller has its answer at its deadline, whatever the workers are doing: engines stop
//! their own scripts (Lua's hook); a watchdog thread answers, at their deadlines, the jobs
//! still queued and the calls still running, and interrupts the calls (Python); and a worker
//! still busy [`STUCK_GRACE`] after its call's deadline (Python blocked in native code, say)
//! is abandoned: its thread is left to finish on its own, answering nothing, and a fresh
//! thread takes its place, so the pool's capacity comes back. At most
//! [`ABANDONED_PER_WORKER`] × workers abandoned threads may be alive at once; past that a
//! stuck worker stays in place, and when every worker is stuck so, requests are refused at
//! once with an error that says so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::args::Args;
use crate::completion::Completion;
use crate::config::Config;
use crate::decision::{Callback, DecisionError, ErrorKind, Outcome};
use crate::engine::{Engine, Interrupt};
use crate::error::Error;
use crate::live_set::LiveSet;
use crate::lock::lock;
use crate::plugins::PluginSet;
use crate::stats::Counters;

mod queue;
mod watchdog;
mod worker;

use queue::Queue;
use worker::spawn_worker;

/// One request waiting for a worker.
pub(crate) struct Job {
    /// The callback's arguments; `new_node` uses only the first.
    pub args: Args,
    /// When the request's time runs out (submission + timeout).
    pub deadline: Instant,
    /// Where the answer goes.
    pub completion: Completion,
}

/// How long a worker may stay busy past its call's deadline before it is abandoned and
/// replaced. Long enough that a script the engine stops at the deadline (Lua's hook, Python's
/// `PolicyTimeout`) has ended by then on a loaded machine; short enough that the pool's
/// capacity comes back before most queued requests run out of time.
pub(crate) const STUCK_GRACE: Duration = Duration::from_millis(100);

/// How many abandoned threads, per worker, may be alive at once. Each holds its interpreters
/// and its stack until its call ends; the bound keeps a policy that gets stuck on every
/// request from growing the process without limit.
pub(crate) const ABANDONED_PER_WORKER: usize = 4;

/// A call a worker is running, visible to the watchdog.
struct Running {
    ticket: u64,
    /// Which thread serves this worker slot (a replacement gets a new number).
    incarnation: u64,
    deadline: Instant,
    /// Taken by whoever answers first: the worker, or the watchdog at the deadline, which
    /// leaves the rest in the slot to see whether the worker gets stuck.
    completion: Option<Completion>,
    interrupt: Option<Arc<dyn Interrupt>>,
    callback: Callback,
    /// The plugin running the call, once routed, as its set's generation and its index in
    /// the set (for the log when the worker gets stuck; a name would cost a reference count
    /// per request).
    plugin: Option<(u64, usize)>,
    /// The worker is stuck past the grace but the bound on abandoned threads kept it from
    /// being replaced (counted in [`Shared::unreplaced`]).
    unreplaced: bool,
}

/// State shared by the pool's handle, its workers and its watchdog.
struct Shared {
    config: Config,
    engines: Vec<Arc<dyn Engine>>,
    /// The live plugin set, which reloads swap and workers follow.
    live: LiveSet,
    counters: Counters,
    queue: Queue,
    /// Padded: each worker locks its own slot twice per request, and must not bounce its
    /// neighbour's cache line while doing so.
    running: Box<[CachePadded<Mutex<Option<Running>>>]>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    /// Worker threads serving a slot (abandoned ones are counted by `counters`).
    live_workers: Mutex<usize>,
    /// Numbers for worker threads, so that an abandoned one knows its slot is not its own.
    incarnations: std::sync::atomic::AtomicU64,
    /// Workers stuck past the grace and not replaced, the bound on abandoned threads being
    /// reached; when it equals the number of workers, requests are refused at once.
    unreplaced: std::sync::atomic::AtomicUsize,
    workers_gone: Condvar,
    closing: AtomicBool,
    watchdog_stop: AtomicBool,
    /// When the watchdog looks next, and how workers wake it sooner.
    alarm: watchdog::Alarm,
    queue_capacity: usize,
}

/// The pool: submit jobs; shut down on drop.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    watchdog: Mutex<Option<JoinHandle<()>>>,
}

impl Pool {
    /// Starts `config.workers` workers serving `set`.
    ///
    /// # Failure
    ///
    /// [`Error::Thread`] when the system will not start a worker or the watchdog (too many
    /// threads, no memory for a stack); the threads already started are stopped first.
    pub fn start(
        config: Config,
        engines: Vec<Arc<dyn Engine>>,
        set: Arc<PluginSet>,
    ) -> Result<Pool, Error> {
        let workers = config.workers.max(1);
        let queue_capacity = workers * config.queue_per_worker.max(1);
        let (queue, locals) = Queue::new(workers, queue_capacity);
        let shared = Arc::new(Shared {
            config,
            engines,
            live: LiveSet::new(set),
            counters: Counters::new(workers),
            queue,
            running: (0..workers)
                .map(|_| CachePadded::new(Mutex::new(None)))
                .collect(),
            handles: Mutex::new(Vec::new()),
            live_workers: Mutex::new(0),
            incarnations: std::sync::atomic::AtomicU64::new(0),
            unreplaced: std::sync::atomic::AtomicUsize::new(0),
            workers_gone: Condvar::new(),
            closing: AtomicBool::new(false),
            watchdog_stop: AtomicBool::new(false),
            alarm: watchdog::Alarm::new(),
            queue_capacity,
        });
        // Dropped on a failure below: that stops the workers already started.
        let pool = Pool {
            shared,
            watchdog: Mutex::new(None),
        };
        for local in locals {
            spawn_worker(&pool.shared, local)?;
        }
        let shared = pool.shared.clone();
        let name = "authhost-watchdog";
        let watchdog = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || watchdog::run(&shared))
            .map_err(|e| Error::Thread {
                name: name.into(),
                message: e.to_string(),
            })?;
        *lock(&pool.watchdog) = Some(watchdog);
        Ok(pool)
    }

    /// The live plugin set the workers follow.
    pub fn live(&self) -> &LiveSet {
        &self.shared.live
    }

    /// Requests per callback, decisions per kind, timeouts, refusals, as JSON.
    pub fn counters_json(&self) -> serde_json::Value {
        self.shared.counters.to_json()
    }

    /// How many requests wait in the queue.
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether the pool has begun shutting down.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::Acquire)
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.running.len()
    }

    /// Queues a job, or answers it at once with `error` when the queue is full, every worker
    /// is stuck beyond replacement or the pool is shutting down. Never blocks.
    #[inline]
    pub fn submit(&self, job: Job) {
        let shared = &self.shared;
        if shared.closing.load(Ordering::Acquire) {
            return shared.refuse(job.completion, ErrorKind::ShuttingDown, SHUTTING_DOWN);
        }
        if shared.unreplaced.load(Ordering::Relaxed) >= shared.running.len() {
            let message = format!(
                "overloaded: every worker is stuck in a call past its deadline, and {} abandoned \
                 worker threads, the most allowed, are still running; see the log",
                shared.abandoned_bound()
            );
            return shared.refuse(job.completion, ErrorKind::Overloaded, message);
        }
        let deadline = job.deadline;
        if let Some(job) = shared.queue.submit(job) {
            let message = format!(
                "overloaded: all {} queue places are taken",
                self.shared.queue_capacity
            );
            return shared.refuse(job.completion, ErrorKind::Overloaded, message);
        }
        // The watchdog answers queued jobs at their deadlines too: wake it if it sleeps past
        // this one's (once per busy spell: later jobs are due later).
        std::sync::atomic::fence(Ordering::SeqCst);
        if shared.alarm.must_wake_for(deadline) {
            shared.alarm.wake();
        }
    }

    /// Stops taking jobs, lets queued and running ones finish (each bounded by its deadline),
    /// then stops the workers and the watchdog. Idempotent.
    pub fn shutdown(&self) {
        if self.shared.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        for _ in 0..self.workers() {
            self.shared.queue.stop_one();
        }
        // A worker stuck in native code past its deadline is left behind rather than waited
        // on forever: its caller has had its answer from the watchdog.
        let grace = self.shared.config.timeout + Duration::from_secs(1);
        let live = lock(&self.shared.live_workers);
        let (live, _) = self
            .shared
            .workers_gone
            .wait_timeout_while(live, grace, |live| *live > 0)
            .unwrap_or_else(|e| e.into_inner());
        if *live > 0 {
            log::warn!(
                "{} worker(s) still busy at shutdown; not waiting for them",
                *live
            );
        }
        // When every worker has signed off, the threads are only dropping their interpreters
        // and plugin set: join them, so that a dropped host has freed its sets when drop returns.
        let all_gone = *live == 0 && self.shared.counters.abandoned_live() == 0;
        drop(live);
        let handles = std::mem::take(&mut *lock(&self.shared.handles));
        for handle in handles.into_iter().filter(|h| all_gone || h.is_finished()) {
            let _ = handle.join();
        }
        self.shared.watchdog_stop.store(true, Ordering::Release);
        if let Some(watchdog) = lock(&self.watchdog).take() {
            watchdog.thread().unpark();
            let _ = watchdog.join();
        }
        // Jobs that raced with the stop messages, or that a worker left behind still held:
        // answer them rather than drop them.
        for job in self.shared.queue.drain() {
            self.shared
                .refuse(job.completion, ErrorKind::ShuttingDown, SHUTTING_DOWN);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

const SHUTTING_DOWN: &str = "the host is shutting down";

impl Shared {
    /// The file of `plugin` (a generation and an index in that set), for the log.
    fn plugin_name(&self, plugin: Option<(u64, usize)>) -> String {
        let Some((generation, index)) = plugin else {
            return "(no plugin yet)".into();
        };
        let set = self.live.current();
        match set.plugins().get(index) {
            Some(info) if set.generation() == generation => info.file.display().to_string(),
            _ => format!("plugin {index} of generation {generation}"),
        }
    }

    /// The most abandoned worker threads alive at once.
    fn abandoned_bound(&self) -> usize {
        ABANDONED_PER_WORKER * self.running.len()
    }

    /// Answers a job that no plugin will see, counting it.
    fn refuse(&self, completion: Completion, kind: ErrorKind, message: impl Into<String>) {
        let callback = completion.callback();
        let outcome = Outcome::failed(
            callback,
            DecisionError::new(kind, message),
            completion.submitted().elapsed(),
        );
        self.counters.record(
            self.counters.off_worker(),
            callback,
            &outcome.decision,
            outcome.elapsed,
        );
        completion.complete(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::Waiter;
    use crate::decision::{Callback, ScriptValue, UserDecision};
    use crate::engine::{Call, Instance, Language, PluginSource, Prepared};
    use crate::error::Error;

    /// An engine whose instances panic when asked to, to test that a worker failure is
    /// contained: Rust code in an engine or a script API can have bugs; scripts cannot
    /// panic the host by themselves.
    struct PanickingEngine;
    struct PanickingInstance;

    impl Engine for PanickingEngine {
        fn language(&self) -> Language {
            Language::Lua
        }
        fn prepare(&self, _: Vec<PluginSource>, _: &Config) -> Result<Arc<dyn Prepared>, Error> {
            Ok(Arc::new(PanickingEngine))
        }
    }

    impl Prepared for PanickingEngine {
        fn callbacks(&self) -> Vec<Vec<Callback>> {
            vec![vec![Callback::UserLogin]]
        }
        fn instantiate(&self, _: &Config) -> Result<Box<dyn Instance>, Error> {
            Ok(Box::new(PanickingInstance))
        }
    }

    impl Instance for PanickingInstance {
        fn call(&mut self, call: Call<'_>) -> Result<ScriptValue, DecisionError> {
            if call.args[0] == "panic" {
                panic!("deliberate failure");
            }
            Ok(ScriptValue::Int(7))
        }
    }

    /// An engine whose calls with the argument "block" wait until the test lets them go, like
    /// Python blocked in native code: nothing interrupts them.
    #[derive(Clone, Default)]
    struct BlockingEngine {
        gate: Arc<(Mutex<bool>, Condvar)>,
        /// How many "block" calls a worker has started.
        blocked: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl BlockingEngine {
        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
    }

    impl Engine for BlockingEngine {
        fn language(&self) -> Language {
            Language::Lua
        }
        fn prepare(&self, _: Vec<PluginSource>, _: &Config) -> Result<Arc<dyn Prepared>, Error> {
            Ok(Arc::new(self.clone()))
        }
    }

    impl Prepared for BlockingEngine {
        fn callbacks(&self) -> Vec<Vec<Callback>> {
            vec![vec![Callback::UserLogin]]
        }
        fn instantiate(&self, _: &Config) -> Result<Box<dyn Instance>, Error> {
            Ok(Box::new(self.clone()))
        }
    }

    impl Instance for BlockingEngine {
        fn call(&mut self, call: Call<'_>) -> Result<ScriptValue, DecisionError> {
            if call.args[0] == "block" {
                self.blocked.fetch_add(1, Ordering::SeqCst);
                let open = self.gate.0.lock().unwrap();
                drop(self.gate.1.wait_while(open, |open| !*open).unwrap());
            }
            Ok(ScriptValue::Int(7))
        }
    }

    /// Waits (20 s at most) until `done` holds.
    fn until(what: &str, done: impl Fn() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < give_up, "never: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn stuck_workers_are_replaced_up_to_the_bound_then_requests_are_refused() {
        let engine = BlockingEngine::default();
        // A worker gets stuck only if it takes the request before its deadline: a fresh
        // thread must start and reach the queue within the timeout. 100 ms was too short on a
        // loaded machine (the request expired in the queue, no worker got stuck, and none was
        // replaced); the timeout's length is not what this tests.
        let (_dir, pool) = one_worker_pool(Arc::new(engine.clone()), Duration::from_secs(1));
        let replaced = || pool.counters_json()["workers_replaced"].as_u64().unwrap();
        let started = || engine.blocked.load(Ordering::SeqCst) as u64;
        let bound = ABANDONED_PER_WORKER as u64;
        for stuck in 1..=bound {
            let error = ask(&pool, "block").decision.error_cause().cloned().unwrap();
            assert_eq!(error.kind, ErrorKind::Timeout);
            until("the request reaches a worker", || started() == stuck);
            until("the stuck worker is replaced", || replaced() == stuck);
        }
        assert_eq!(pool.counters_json()["workers_abandoned_live"], bound);
        // One more stuck worker: the bound is reached, it is not replaced, and with no worker
        // left requests are refused at once, saying why.
        assert_eq!(
            ask(&pool, "block").decision.error_cause().unwrap().kind,
            ErrorKind::Timeout
        );
        until("the request reaches a worker", || started() == bound + 1);
        until("the last stuck worker is left in place", || {
            pool.shared.unreplaced.load(Ordering::Acquire) == 1
        });
        let refused = ask(&pool, "fine").decision.error_cause().cloned().unwrap();
        assert_eq!(refused.kind, ErrorKind::Overloaded);
        assert!(
            refused
                .message
                .contains("abandoned worker threads, the most allowed"),
            "{}",
            refused.message
        );
        assert_eq!(replaced(), bound);
        // Their calls end: the abandoned threads end without answering, the one left in place
        // serves again.
        engine.open();
        until("the abandoned threads end", || {
            pool.counters_json()["workers_abandoned_live"] == 0
                && pool.shared.unreplaced.load(Ordering::Acquire) == 0
        });
        assert_eq!(ask(&pool, "fine").user(), Some(&UserDecision::UserId(7)));
        pool.shutdown();
    }

    /// A pool of one worker on `engine` with `timeout`, and the directory of its (empty)
    /// plugin file, to keep while the pool runs.
    fn one_worker_pool(engine: Arc<dyn Engine>, timeout: Duration) -> (tempfile::TempDir, Pool) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.lua");
        std::fs::write(&file, "").unwrap();
        let config = Config {
            plugins: file,
            workers: 1,
            timeout,
            ..Config::default()
        };
        let engines = vec![engine];
        let set = Arc::new(PluginSet::load(&engines, &config, 1).unwrap());
        (dir, Pool::start(config, engines, set).unwrap())
    }

    fn ask(pool: &Pool, arg: &str) -> Outcome {
        let timeout = pool.shared.config.timeout;
        let submitted = Instant::now();
        let (waiter, completion) = Waiter::new(Callback::UserLogin, submitted);
        pool.submit(Job {
            args: Args::new(arg, ""),
            deadline: submitted + timeout,
            completion,
        });
        waiter.wait(submitted + timeout, timeout)
    }

    #[test]
    fn a_panicking_worker_answers_error_and_is_replaced() {
        // Generous: the panic hook runs before the worker answers, and with RUST_BACKTRACE set
        // it resolves a backtrace of this large test binary, which took over 2 s on a loaded
        // machine (the watchdog then answered `timeout`). The timeout is not what this tests.
        let (_dir, pool) = one_worker_pool(Arc::new(PanickingEngine), Duration::from_secs(30));
        let failed = ask(&pool, "panic");
        let error = failed
            .decision
            .error_cause()
            .expect("an error decision")
            .clone();
        assert_eq!(error.kind, ErrorKind::WorkerFailed);
        assert!(
            error.message.contains("deliberate failure"),
            "{}",
            error.message
        );
        // The single worker was replaced and serves the next requests.
        for _ in 0..3 {
            assert_eq!(ask(&pool, "fine").user(), Some(&UserDecision::UserId(7)));
        }
        let counters = pool.counters_json();
        assert_eq!(counters["worker_failures"], 1);
        pool.shutdown();
        assert_eq!(*pool.shared.live_workers.lock().unwrap(), 0);
    }
}
