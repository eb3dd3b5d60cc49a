//! One request on a thread: the deadline SQLite honours (its progress and busy handlers) and
//! the handle bindings reach through [`Database::current`].

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::{Database, CURRENT};

/// SQLite VM instructions between two deadline checks of the progress handler: a check reads
/// the clock, so this keeps its cost negligible while stopping a query within microseconds.
pub(super) const PROGRESS_OPS: i32 = 1000;

/// How long a lock is waited for outside of any request (no deadline), as SQLite's default.
pub(super) const IDLE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// The running request's deadline, read by the busy and progress handlers.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// One request (or `setup()`) on this thread: sets the deadline SQLite honours and the
/// [`Database::current`] handle; when dropped, rolls back any transaction the request left
/// open, so the worker's next request starts clean.
pub struct RequestScope {
    database: Database,
    previous_deadline: Option<Instant>,
    previous_current: Option<Database>,
    keep_snapshot: bool,
    previous_keep: bool,
}

impl RequestScope {
    /// Enters a request on `database` that must end by `deadline`. Its reads run in their
    /// own transactions.
    pub fn enter(database: &Database, deadline: Instant) -> RequestScope {
        RequestScope::begin(database, deadline, false)
    }

    /// Enters a pool worker's request: as [`RequestScope::enter`], but the read snapshot its
    /// `SELECT`s run in may be kept for the worker's next requests, for as long as the
    /// database has not changed (see the `snapshot` module). The worker must call
    /// [`Database::release_snapshot`] before it waits for work.
    pub fn enter_worker(database: &Database, deadline: Instant) -> RequestScope {
        RequestScope::begin(database, deadline, true)
    }

    fn begin(database: &Database, deadline: Instant, keep_snapshot: bool) -> RequestScope {
        let previous_deadline = DEADLINE.with(|d| d.replace(Some(deadline)));
        let previous_current = CURRENT.with(|c| c.replace(Some(database.clone())));
        let previous_keep =
            std::mem::replace(&mut database.handle.reader.borrow_mut().keep, keep_snapshot);
        RequestScope {
            database: database.clone(),
            previous_deadline,
            previous_current,
            keep_snapshot,
            previous_keep,
        }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        self.database.end_request(self.keep_snapshot);
        self.database.handle.reader.borrow_mut().keep = self.previous_keep;
        DEADLINE.with(|d| d.set(self.previous_deadline));
        let previous = self.previous_current.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Runs `f` with no deadline on this thread (for rollbacks, which must not be interrupted).
pub(super) fn without_deadline<T>(f: impl FnOnce() -> T) -> T {
    let saved = DEADLINE.with(|d| d.replace(None));
    let result = f();
    DEADLINE.with(|d| d.set(saved));
    result
}

pub(crate) fn deadline() -> Option<Instant> {
    DEADLINE.with(|d| d.get())
}

/// SQLite's progress handler: `true` stops the statement.
pub(super) fn past_deadline() -> bool {
    deadline().is_some_and(|deadline| Instant::now() >= deadline)
}

/// SQLite's busy handler: waits a little and tries again, until the request's deadline (or,
/// outside a request, for [`IDLE_BUSY_TIMEOUT`]).
pub(super) fn wait_for_lock(attempt: i32) -> bool {
    // Short sleeps first: most locks here are held for well under a millisecond.
    const STEPS_US: [u64; 8] = [50, 100, 200, 500, 1000, 2000, 5000, 10_000];
    let step = STEPS_US[usize::try_from(attempt)
        .unwrap_or(0)
        .min(STEPS_US.len() - 1)];
    let pause = Duration::from_micros(step);
    let now = Instant::now();
    match deadline() {
        Some(deadline) if now >= deadline => false,
        Some(deadline) => {
            std::thread::sleep(pause.min(deadline - now));
            true
        }
        None => {
            // Without a clock to read against, count: past the first steps each is 10 ms.
            let waited: u64 = STEPS_US
                .iter()
                .take(usize::try_from(attempt).unwrap_or(0))
                .sum::<u64>()
                + u64::try_from(attempt)
                    .unwrap_or(0)
                    .saturating_sub(STEPS_US.len() as u64)
                    * 10_000;
            if waited >= IDLE_BUSY_TIMEOUT.as_micros() as u64 {
                return false;
            }
            std::thread::sleep(pause);
            true
        }
    }
}
