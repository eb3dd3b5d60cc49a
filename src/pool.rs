//! The worker pool: threads that own interpreters, one bounded queue, and deadlines.
//!
//! Jobs cross threads over a bounded queue ([`queue`]); interpreters never do. Each worker keeps one
//! [`Instance`] per engine for the plugin set it last saw, and moves to a newer set before
//! its next request, so a reload never interrupts a running call.
//!
//! Deadlines are enforced three ways, so that a caller never waits past its own: a job found
//! expired in the queue is answered at once; engines stop their own scripts (Lua's hook); and
//! a watchdog thread answers and interrupts calls that outlive their deadline (Python blocked
//! in native code, say).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::args::Args;
use crate::completion::Completion;
use crate::config::Config;
use crate::decision::{DecisionError, ErrorKind, Outcome};
use crate::engine::{Engine, Interrupt};
use crate::live_set::LiveSet;
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

/// A call a worker is running, visible to the watchdog.
struct Running {
    ticket: u64,
    deadline: Instant,
    completion: Completion,
    interrupt: Option<Arc<dyn Interrupt>>,
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
    live_workers: Mutex<usize>,
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
    pub fn start(config: Config, engines: Vec<Arc<dyn Engine>>, set: Arc<PluginSet>) -> Pool {
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
            workers_gone: Condvar::new(),
            closing: AtomicBool::new(false),
            watchdog_stop: AtomicBool::new(false),
            alarm: watchdog::Alarm::new(),
            queue_capacity,
        });
        for local in locals {
            spawn_worker(&shared, local);
        }
        let watchdog = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("authhost-watchdog".into())
                .spawn(move || watchdog::run(&shared))
                .expect("spawning the watchdog thread")
        };
        Pool {
            shared,
            watchdog: Mutex::new(Some(watchdog)),
        }
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

    /// Queues a job, or answers it at once with `error` when the queue is full or the pool
    /// is shutting down. Never blocks.
    #[inline]
    pub fn submit(&self, job: Job) {
        if self.shared.closing.load(Ordering::Acquire) {
            return self
                .shared
                .refuse(job.completion, ErrorKind::ShuttingDown, SHUTTING_DOWN);
        }
        if let Some(job) = self.shared.queue.submit(job) {
            let message = format!(
                "overloaded: all {} queue places are taken",
                self.shared.queue_capacity
            );
            self.shared
                .refuse(job.completion, ErrorKind::Overloaded, message)
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
        let live = self
            .shared
            .live_workers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
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
        let all_gone = *live == 0;
        drop(live);
        let handles = std::mem::take(
            &mut *self
                .shared
                .handles
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for handle in handles.into_iter().filter(|h| all_gone || h.is_finished()) {
            let _ = handle.join();
        }
        self.shared.watchdog_stop.store(true, Ordering::Release);
        if let Some(watchdog) = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
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

    fn ask(pool: &Pool, arg: &str) -> Outcome {
        let timeout = Duration::from_secs(20);
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
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.lua");
        std::fs::write(&file, "").unwrap();
        let config = Config {
            plugins: file,
            workers: 1,
            ..Config::default()
        };
        let engines: Vec<Arc<dyn Engine>> = vec![Arc::new(PanickingEngine)];
        let set = Arc::new(PluginSet::load(&engines, &config, 1).unwrap());
        let pool = Pool::start(config, engines, set);
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
