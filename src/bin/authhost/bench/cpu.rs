//! CPU time of the benchmark's threads, from Linux's `/proc` (`None` elsewhere): how much of
//! the cores the submitting thread takes, and what a request costs the workers.

use std::time::Duration;

/// The calling thread's CPU time so far.
pub fn this_thread() -> Option<Duration> {
    run_time("/proc/thread-self/schedstat")
}

/// The CPU time of the host's worker threads that are alive now. A worker that failed and
/// was replaced during the run takes its time with it; the run's errors would show that.
pub fn workers() -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if name.starts_with("authhost-worker") {
            total += run_time(path.join("schedstat")).unwrap_or_default();
        }
    }
    Some(total)
}

/// The first field of a `schedstat` file: nanoseconds spent on a CPU.
fn run_time(schedstat: impl AsRef<std::path::Path>) -> Option<Duration> {
    let text = std::fs::read_to_string(schedstat).ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}
