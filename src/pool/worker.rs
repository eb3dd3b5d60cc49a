//! A worker thread: takes jobs from the queue, keeps its interpreters on the live plugin set,
//! runs each call inside the request's database scope, and maps what came back to a decision.
//! A worker that panics answers its request `error` and hands its end of the queue to a
//! fresh thread. A worker the watchdog abandoned (stuck past its deadline) finds, when its
//! call ends, that its running slot is no longer its own, and ends without answering.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::queue::Local;
use super::{Job, Running, Shared};
use crate::decision::{timeout_message, Decision, ErrorKind, Outcome};
use crate::engine::{Call, Engine, Instance, SCRIPT_STACK};
use crate::error::{panic_message, Error};
use crate::lock::lock;
use crate::plugins::PluginSet;
use crate::script_api::db::{Database, RequestScope};

/// Starts worker `local.index()` on a thread of its own.
///
/// # Failure
///
/// [`Error::Thread`] when the system will not start the thread.
pub(super) fn spawn_worker(shared: &Arc<Shared>, local: Local) -> Result<(), Error> {
    let index = local.index();
    let name = format!("authhost-worker-{index}");
    *lock(&shared.live_workers) += 1;
    let for_thread = shared.clone();
    let incarnation = shared.incarnations.fetch_add(1, Ordering::Relaxed);
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .stack_size(SCRIPT_STACK)
        .spawn(move || {
            let engines = for_thread.engines.clone();
            let db = Database::at(&for_thread.config.db_location());
            let mut worker = Worker {
                shared: for_thread,
                index,
                incarnation,
                local: Some(local),
                state: None,
                failed_generation: None,
                tickets: 0,
                db,
            };
            let mut ended = Ended::Stopped;
            within_engines(&engines, &mut || ended = worker.run());
            let shared = &worker.shared;
            match ended {
                // The watchdog took it off the live workers when it abandoned it.
                Ended::Abandoned => {
                    log::info!("an abandoned worker's call ended; its thread ends too");
                    shared.counters.abandoned_ended();
                }
                Ended::Stopped => {
                    let mut live = lock(&shared.live_workers);
                    *live -= 1;
                    shared.workers_gone.notify_all();
                }
            }
        });
    match handle {
        Ok(handle) => {
            lock(&shared.handles).push(handle);
            Ok(())
        }
        Err(e) => {
            *lock(&shared.live_workers) -= 1;
            Err(Error::Thread {
                name,
                message: e.to_string(),
            })
        }
    }
}

/// How a worker thread's service ended.
enum Ended {
    /// It took its stop message, or handed its slot to a fresh thread after a panic.
    Stopped,
    /// The watchdog abandoned it while it was stuck in a call, and another thread serves its
    /// slot: it must not touch the slot or the queue again.
    Abandoned,
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
    /// This thread's number, in the running slot while it runs a call.
    incarnation: u64,
    /// This worker's end of the queue; `None` once handed to its replacement.
    local: Option<Local>,
    state: Option<WorkerState>,
    failed_generation: Option<u64>,
    tickets: u64,
    /// This worker's database connection (opened on first use), kept across generations.
    db: Database,
}

impl Worker {
    fn run(&mut self) -> Ended {
        let Some(mut local) = self.local.take() else {
            return Ended::Stopped;
        };
        // Cloned once, not per request: the count is shared by every worker.
        let shared = self.shared.clone();
        loop {
            // Nothing queued: let go of what the instances and the database hold between
            // calls before sleeping on the queue.
            let Some(job) = shared.queue.next(&mut local, &mut || self.idle_instances()) else {
                self.idle_instances();
                return Ended::Stopped;
            };
            match catch_unwind(AssertUnwindSafe(|| self.serve(job))) {
                Ok(Served::Done) => {}
                Ok(Served::Abandoned) => {
                    // Its deque was emptied and replaced when it was abandoned.
                    drop(local);
                    return Ended::Abandoned;
                }
                Err(panic) => {
                    let message = panic_message(&*panic);
                    let Ok(running) = self.take_running() else {
                        log::error!("abandoned worker {} failed: {message}", self.index);
                        return Ended::Abandoned;
                    };
                    log::error!("worker {} failed: {message}; replacing it", self.index);
                    if let Some(completion) = running.and_then(|r| r.completion) {
                        self.shared.refuse(
                            completion,
                            ErrorKind::WorkerFailed,
                            format!("the worker failed: {message}"),
                        );
                    }
                    // The interpreters may be half-way through something: start afresh on a
                    // new thread rather than reuse them.
                    let state = self.state.take();
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(state)));
                    // Without a replacement, the other workers serve the queue.
                    if let Err(e) = spawn_worker(&self.shared, local) {
                        log::error!("cannot replace worker {}: {e}", self.index);
                    }
                    return Ended::Stopped;
                }
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
        lock(&self.shared.running[self.index])
    }

    /// Takes this thread's call out of its running slot: `Ok(None)` when it has none, `Err`
    /// when the slot is no longer this thread's (the watchdog abandoned it).
    fn take_running(&self) -> Result<Option<Running>, Abandoned> {
        let mut running = self.running();
        match &*running {
            Some(call) if call.incarnation == self.incarnation => {
                let call = running.take();
                if call.as_ref().is_some_and(|c| c.unreplaced) {
                    self.shared.unreplaced.fetch_sub(1, Ordering::AcqRel);
                }
                Ok(call)
            }
            Some(_) => Err(Abandoned),
            None => Err(Abandoned),
        }
    }

    /// Answers a request no plugin will run: from the slot if it was published, else
    /// directly.
    fn refuse_unserved(
        &self,
        unpublished: Option<Running>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> Served {
        match unpublished {
            None => self.refuse(kind, message),
            Some(running) => {
                if let Some(completion) = running.completion {
                    self.shared.refuse(completion, kind, message);
                }
                Served::Done
            }
        }
    }

    /// Takes the request back from the running slot to answer it without a plugin.
    fn refuse(&self, kind: ErrorKind, message: impl Into<String>) -> Served {
        match self.take_running() {
            Ok(running) => {
                // None: the watchdog answered it already.
                if let Some(completion) = running.and_then(|r| r.completion) {
                    self.shared.refuse(completion, kind, message);
                }
                Served::Done
            }
            Err(Abandoned) => Served::Abandoned,
        }
    }

    fn serve(&mut self, job: Job) -> Served {
        let Job {
            args,
            deadline,
            completion,
        } = job;
        let callback = completion.callback();
        if Instant::now() >= deadline {
            let message = timeout_message(self.shared.config.timeout);
            self.shared.refuse(completion, ErrorKind::Timeout, message);
            return Served::Done;
        }
        self.tickets += 1;
        let ticket = self.tickets;
        // Building interpreters for a new plugin set runs plugin code: publish the request
        // first then, so that the watchdog answers it at its deadline whatever happens. In the
        // steady state it is published once, below, with everything (one lock per request).
        let mut unpublished = Some(Running {
            ticket,
            incarnation: self.incarnation,
            deadline,
            completion: Some(completion),
            interrupt: None,
            callback,
            plugin: None,
            unreplaced: false,
        });
        if self.must_follow_live_set() {
            if let Some(running) = unpublished.take() {
                publish(&self.shared, self.index, running);
            }
            self.follow_live_set();
        }
        let Some(state) = self.state.as_mut() else {
            let message = "the worker could not build its interpreters; see the log";
            return self.refuse_unserved(unpublished, ErrorKind::WorkerFailed, message);
        };
        let Some(route) = state.set.route(callback) else {
            let message = format!("no plugin defines {callback}");
            return self.refuse_unserved(unpublished, ErrorKind::MissingCallback, message);
        };
        for (index, other) in state.instances.iter_mut().enumerate() {
            if index != route.engine {
                other.idle();
            }
        }
        let instance = &mut state.instances[route.engine];
        let plugin = Some((state.set.generation(), route.info));
        match unpublished {
            Some(mut running) => {
                running.interrupt = instance.interrupter();
                running.plugin = plugin;
                publish(&self.shared, self.index, running);
            }
            None => {
                let mut slot = lock(&self.shared.running[self.index]);
                if let Some(call) = slot.as_mut() {
                    call.interrupt = instance.interrupter();
                    call.plugin = plugin;
                }
            }
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
        let running = {
            let mut slot = lock(&self.shared.running[self.index]);
            match &*slot {
                Some(call) if call.incarnation == self.incarnation => slot.take(),
                // Abandoned while stuck in this call: its caller had its answer, another thread
                // serves this slot now, and this one only ends.
                _ => return Served::Abandoned,
            }
        };
        let Some(running) = running else {
            return Served::Abandoned;
        };
        if running.unreplaced {
            self.shared.unreplaced.fetch_sub(1, Ordering::AcqRel);
        }
        // None: the watchdog answered at the deadline, and this late result goes nowhere.
        let Some(completion) = running.completion else {
            return Served::Done;
        };
        let decision = match returned {
            Ok(value) => {
                let language = state.set.plugins()[route.info].language;
                let decision = Decision::from_return(callback, &value, language);
                if decision.is_error() {
                    let instance = &state.instances[route.engine];
                    decision.name_wrong_return(&state.plugin_names[route.info], callback, |text| {
                        instance.restore_names(text)
                    })
                } else {
                    decision
                }
            }
            Err(error) => Decision::error(callback, error),
        };
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
        Served::Done
    }

    /// Whether the live plugin set changed since this worker last built its interpreters.
    fn must_follow_live_set(&self) -> bool {
        let generation = self.shared.live.generation();
        let current = self.state.as_ref().map(|s| s.set.generation());
        current != Some(generation) && self.failed_generation != Some(generation)
    }

    /// Moves this worker to the live plugin set if it changed since the last request.
    fn follow_live_set(&mut self) {
        if !self.must_follow_live_set() {
            return;
        }
        let current = self.state.as_ref().map(|s| s.set.generation());
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

/// Puts `running` in worker `index`'s slot for the watchdog, waking it if the call is due
/// sooner than it means to look.
fn publish(shared: &Shared, index: usize, running: Running) {
    let deadline = running.deadline;
    let wake_watchdog = {
        let mut slot = lock(&shared.running[index]);
        *slot = Some(running);
        shared.alarm.must_wake_for(deadline)
    };
    if wake_watchdog {
        shared.alarm.wake();
    }
}

/// How one request went for the worker.
enum Served {
    /// Answered (or left to the watchdog's answer): on to the next.
    Done,
    /// The watchdog abandoned this thread while it ran the call.
    Abandoned,
}

/// The running slot is no longer this thread's: the watchdog abandoned it.
struct Abandoned;
