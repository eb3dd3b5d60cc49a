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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use arc_swap::ArcSwap;

use crate::args::Args;
use crate::completion::Completion;
use crate::config::Config;
use crate::decision::timeout_message;
use crate::decision::{Decision, DecisionError, ErrorKind, Outcome};
use crate::engine::{Call, Engine, Instance, Interrupt};
use crate::plugins::PluginSet;
use crate::script_api::db::{Database, RequestScope};
use crate::stats::Counters;

mod queue;
mod watchdog;

use queue::{Local, Queue};

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
pub(crate) struct Shared {
    config: Config,
    engines: Vec<Arc<dyn Engine>>,
    /// The live plugin set; reloads swap it (see [`Shared::publish`]).
    pub sets: ArcSwap<PluginSet>,
    /// The live set's generation, which a worker reads before each request: loading the set
    /// itself would write to arc-swap's per-thread slots every time, for a set that changes
    /// only at a reload.
    live_generation: AtomicU64,
    pub counters: Counters,
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
            live_generation: AtomicU64::new(set.generation()),
            sets: ArcSwap::new(set),
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

    /// The state shared with the workers.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
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
        self.counters
            .record(self.counters.off_worker(), callback, &outcome.decision);
        completion.complete(outcome);
    }

    /// Makes `set` the live plugin set; workers move to it before their next request.
    pub fn publish(&self, set: Arc<PluginSet>) {
        let generation = set.generation();
        self.sets.store(set);
        // After the store: a worker that sees the new generation loads the new set.
        self.live_generation.store(generation, Ordering::Release);
    }

    /// How many requests wait in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the pool has begun shutting down.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

fn spawn_worker(shared: &Arc<Shared>, local: Local) {
    let index = local.index();
    *shared
        .live_workers
        .lock()
        .unwrap_or_else(|e| e.into_inner()) += 1;
    let for_thread = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("authhost-worker-{index}"))
        .spawn(move || {
            let engines = for_thread.engines.clone();
            let db = Database::at(&for_thread.config.db_location());
            let mut worker = Worker {
                shared: for_thread,
                index,
                local: Some(local),
                state: None,
                failed_generation: None,
                tickets: 0,
                db,
            };
            within_engines(&engines, &mut || worker.run());
            let mut live = worker
                .shared
                .live_workers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *live -= 1;
            worker.shared.workers_gone.notify_all();
        });
    match handle {
        Ok(handle) => shared
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle),
        Err(e) => {
            log::error!("cannot start worker {index}: {e}");
            *shared
                .live_workers
                .lock()
                .unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

/// Runs `body` inside every engine's per-thread set-up, innermost last.
fn within_engines(engines: &[Arc<dyn Engine>], body: &mut dyn FnMut()) {
    match engines.split_first() {
        None => body(),
        Some((first, rest)) => first.run_worker(&mut || within_engines(rest, body)),
    }
}

/// One worker's interpreters for one plugin set.
struct WorkerState {
    set: Arc<PluginSet>,
    instances: Vec<Box<dyn Instance>>,
    /// Plugin file names for outcomes: this worker's own references, so that its requests
    /// count them without touching another core's cache line.
    plugin_names: Vec<Arc<str>>,
}

struct Worker {
    shared: Arc<Shared>,
    index: usize,
    /// This worker's end of the queue; `None` once handed to its replacement.
    local: Option<Local>,
    state: Option<WorkerState>,
    failed_generation: Option<u64>,
    tickets: u64,
    /// This worker's database connection (opened on first use), kept across generations.
    db: Database,
}

impl Worker {
    fn run(&mut self) {
        let Some(mut local) = self.local.take() else {
            return;
        };
        // Cloned once, not per request: the count is shared by every worker.
        let shared = self.shared.clone();
        loop {
            // Nothing queued: let go of what the instances and the database hold between
            // calls before sleeping on the queue.
            let Some(job) = shared.queue.next(&mut local, &mut || self.idle_instances()) else {
                return self.idle_instances();
            };
            let served = catch_unwind(AssertUnwindSafe(|| self.serve(job)));
            if let Err(panic) = served {
                let message = panic_message(&panic);
                log::error!("worker {} failed: {message}; replacing it", self.index);
                if let Some(running) = self.running().take() {
                    self.shared.refuse(
                        running.completion,
                        ErrorKind::WorkerFailed,
                        format!("the worker failed: {message}"),
                    );
                }
                // The interpreters may be half-way through something: start afresh on a new
                // thread rather than reuse them.
                let state = self.state.take();
                let _ = catch_unwind(AssertUnwindSafe(move || drop(state)));
                spawn_worker(&self.shared, local);
                return;
            }
        }
    }

    fn idle_instances(&mut self) {
        self.db.release_snapshot();
        for instance in self.state.iter_mut().flat_map(|s| s.instances.iter_mut()) {
            instance.idle();
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.shared.running[self.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn serve(&mut self, job: Job) {
        let Job {
            args,
            deadline,
            completion,
        } = job;
        let callback = completion.callback();
        if Instant::now() >= deadline {
            let message = timeout_message(self.shared.config.timeout);
            return self.shared.refuse(completion, ErrorKind::Timeout, message);
        }
        self.follow_live_set();
        let Some(state) = self.state.as_mut() else {
            return self.shared.refuse(
                completion,
                ErrorKind::WorkerFailed,
                "the worker could not build its interpreters; see the log",
            );
        };
        let Some(route) = state.set.route(callback) else {
            let message = format!("no plugin defines {callback}");
            return self
                .shared
                .refuse(completion, ErrorKind::MissingCallback, message);
        };
        self.tickets += 1;
        let ticket = self.tickets;
        for (index, other) in state.instances.iter_mut().enumerate() {
            if index != route.engine {
                other.idle();
            }
        }
        let instance = &mut state.instances[route.engine];
        let wake_watchdog = {
            let mut running = self.shared.running[self.index]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *running = Some(Running {
                ticket,
                deadline,
                completion,
                interrupt: instance.interrupter(),
            });
            self.shared.alarm.must_wake_for(deadline)
        };
        if wake_watchdog {
            self.shared.alarm.wake();
        }
        // The scope gives SQLite the deadline and rolls back a transaction the call left open;
        // its read snapshot may serve the next requests (released in `idle_instances`).
        let request = RequestScope::enter_worker(&self.db, deadline);
        let args = args.get();
        let returned = instance.call(Call {
            callback,
            plugin: route.plugin,
            args: &args[..callback.arity()],
            deadline,
            ticket,
        });
        drop(request);
        let running = self.shared.running[self.index]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // None: the watchdog answered at the deadline, and this late result goes nowhere.
        let Some(running) = running else { return };
        let decision = match returned {
            Ok(value) => Decision::from_return(callback, &value),
            Err(error) => Decision::error(callback, error),
        };
        let completion = running.completion;
        let outcome = Outcome {
            decision,
            plugin: Some(state.plugin_names[route.info].clone()),
            generation: Some(state.set.generation()),
            elapsed: completion.submitted().elapsed(),
        };
        self.shared
            .counters
            .record(self.index, callback, &outcome.decision);
        completion.complete(outcome);
    }

    /// Moves this worker to the live plugin set if it changed since the last request.
    fn follow_live_set(&mut self) {
        let generation = self.shared.live_generation.load(Ordering::Acquire);
        let current = self.state.as_ref().map(|s| s.set.generation());
        if current == Some(generation) || self.failed_generation == Some(generation) {
            return;
        }
        let set = self.shared.sets.load_full();
        let generation = set.generation();
        let instances: Result<Vec<_>, _> = set
            .prepared()
            .iter()
            .map(|prepared| prepared.instantiate(&self.shared.config))
            .collect();
        match instances {
            Ok(instances) => {
                let plugin_names = set
                    .plugins()
                    .iter()
                    .map(|p| Arc::from(p.file.display().to_string()))
                    .collect();
                self.state = Some(WorkerState {
                    set,
                    instances,
                    plugin_names,
                });
                self.failed_generation = None;
            }
            Err(e) => {
                // Keep answering on the set this worker already has: a reload must not make
                // requests fail.
                log::error!(
                    "worker {}: cannot build generation {generation}: {e}; staying on {:?}",
                    self.index,
                    current
                );
                self.failed_generation = Some(generation);
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::Waiter;
    use crate::decision::{Callback, ScriptValue, UserDecision};
    use crate::engine::{Language, PluginSource, Prepared};
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
        let counters = pool.shared().counters.to_json();
        assert_eq!(counters["worker_failures"], 1);
        pool.shutdown();
        assert_eq!(*pool.shared().live_workers.lock().unwrap(), 0);
    }
}
