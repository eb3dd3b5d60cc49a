//! A worker thread: takes jobs from the queue, keeps its interpreters on the live plugin set,
//! runs each call inside the request's database scope, and maps what came back to a decision.
//! A worker that panics answers its request `error` and hands its end of the queue to a
//! fresh thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use super::queue::Local;
use super::{Job, Running, Shared};
use crate::decision::{timeout_message, Decision, ErrorKind, Outcome};
use crate::engine::{Call, Engine, Instance};
use crate::plugins::PluginSet;
use crate::script_api::db::{Database, RequestScope};

pub(super) fn spawn_worker(shared: &Arc<Shared>, local: Local) {
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
            .record(self.index, callback, &outcome.decision, outcome.elapsed);
        completion.complete(outcome);
    }

    /// Moves this worker to the live plugin set if it changed since the last request.
    fn follow_live_set(&mut self) {
        let generation = self.shared.live.generation();
        let current = self.state.as_ref().map(|s| s.set.generation());
        if current == Some(generation) || self.failed_generation == Some(generation) {
            return;
        }
        let set = self.shared.live.current();
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
