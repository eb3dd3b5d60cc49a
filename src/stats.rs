//! Counters for `status`: requests per callback, decisions per kind, timeouts, refusals, and
//! a histogram of the time from submission to decision.
//!
//! Each worker counts into its own cache-padded block so that counting costs no cross-core
//! traffic on the hot path; `status` adds the blocks up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use serde_json::{json, Value};

use crate::decision::{Callback, Decision, ErrorKind};

/// The latency histogram's bucket bounds, in microseconds: from a trivial Lua call (tens of
/// µs) to the default timeout (2 s) and past it. A last, unbounded bucket takes the rest.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

#[derive(Default)]
struct Block {
    requests: [AtomicU64; 3],
    decisions: [AtomicU64; Decision::NAMES.len()],
    timeouts: AtomicU64,
    overloaded: AtomicU64,
    worker_failures: AtomicU64,
    /// Answers per latency bucket (not cumulative), the last one unbounded.
    latency: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// A host's counters: one block per worker, plus one for answers given off the workers
/// (refusals, timeouts answered by the watchdog or the waiting caller).
pub(crate) struct Counters {
    blocks: Box<[CachePadded<Block>]>,
}

impl Counters {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Counters {
        Counters {
            blocks: (0..=workers)
                .map(|_| CachePadded::new(Block::default()))
                .collect(),
        }
    }

    /// The block index for answers given by no worker.
    pub fn off_worker(&self) -> usize {
        self.blocks.len() - 1
    }

    /// Counts one answered request, `elapsed` after its submission, in block `block`.
    pub fn record(&self, block: usize, callback: Callback, decision: &Decision, elapsed: Duration) {
        let b = &self.blocks[block.min(self.blocks.len() - 1)];
        b.requests[callback.index()].fetch_add(1, Ordering::Relaxed);
        b.decisions[decision.name_index()].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        b.latency[bucket].fetch_add(1, Ordering::Relaxed);
        b.latency_sum_us.fetch_add(us, Ordering::Relaxed);
        if let Some(error) = decision.error_cause() {
            let counter = match error.kind {
                ErrorKind::Timeout => &b.timeouts,
                ErrorKind::Overloaded => &b.overloaded,
                ErrorKind::WorkerFailed => &b.worker_failures,
                _ => return,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The totals as JSON: `{"requests":{…},"decisions":{…},"timeouts":n,…,"latency_us":{…}}`,
    /// where `latency_us` is `{"buckets":[[bound_us, answers at most that long], …],
    /// "count":n, "sum":µs}` (cumulative, as Prometheus histograms are).
    pub fn to_json(&self) -> Value {
        let sum = |f: &dyn Fn(&Block) -> &AtomicU64| -> u64 {
            self.blocks
                .iter()
                .map(|b| f(b).load(Ordering::Relaxed))
                .sum()
        };
        let requests: serde_json::Map<String, Value> = Callback::ALL
            .iter()
            .map(|c| {
                (
                    c.method_name().to_string(),
                    sum(&|b| &b.requests[c.index()]).into(),
                )
            })
            .collect();
        let decisions: serde_json::Map<String, Value> = Decision::NAMES
            .iter()
            .enumerate()
            .map(|(i, name)| (name.to_string(), sum(&|b| &b.decisions[i]).into()))
            .collect();
        let mut cumulative = 0;
        let buckets: Vec<Value> = LATENCY_BOUNDS_US
            .iter()
            .enumerate()
            .map(|(i, bound)| {
                cumulative += sum(&|b| &b.latency[i]);
                json!([bound, cumulative])
            })
            .collect();
        let count = cumulative + sum(&|b| &b.latency[LATENCY_BOUNDS_US.len()]);
        json!({
            "requests": requests,
            "decisions": decisions,
            "timeouts": sum(&|b| &b.timeouts),
            "overloaded": sum(&|b| &b.overloaded),
            "worker_failures": sum(&|b| &b.worker_failures),
            "latency_us": {
                "buckets": buckets,
                "count": count,
                "sum": sum(&|b| &b.latency_sum_us),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::UserDecision;

    #[test]
    fn latencies_fall_in_cumulative_buckets() {
        let counters = Counters::new(1);
        let decision = Decision::User(UserDecision::UserId(1));
        for us in [10, 50, 51, 3_000, 10_000_000] {
            counters.record(0, Callback::UserLogin, &decision, Duration::from_micros(us));
        }
        let latency = &counters.to_json()["latency_us"];
        assert_eq!(latency["count"], 5);
        assert_eq!(latency["sum"], 10 + 50 + 51 + 3_000 + 10_000_000);
        let buckets = latency["buckets"].as_array().unwrap();
        assert_eq!(
            buckets[0],
            json!([50, 2]),
            "50 µs is within the 50 µs bucket"
        );
        assert_eq!(buckets[1], json!([100, 3]));
        assert_eq!(buckets[6], json!([5_000, 4]));
        assert_eq!(
            buckets.last().unwrap(),
            &json!([5_000_000, 4]),
            "10 s is past every bound"
        );
    }
}
