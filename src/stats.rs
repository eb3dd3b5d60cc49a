//! Counters for `status`: requests per callback, decisions per kind, timeouts, refusals.
//!
//! Each worker counts into its own cache-padded block so that counting costs no cross-core
//! traffic on the hot path; `status` adds the blocks up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use serde_json::{json, Value};

use crate::decision::{Callback, Decision, ErrorKind};

#[derive(Default)]
struct Block {
    requests: [AtomicU64; 3],
    decisions: [AtomicU64; Decision::NAMES.len()],
    timeouts: AtomicU64,
    overloaded: AtomicU64,
    worker_failures: AtomicU64,
}

/// A host's counters: one block per worker, plus one for answers given off the workers
/// (refusals, timeouts answered by the watchdog or the waiting caller).
pub(crate) struct Counters {
    blocks: Box<[CachePadded<Block>]>,
    /// Stuck workers abandoned and replaced by a fresh thread.
    workers_replaced: AtomicU64,
    /// Abandoned worker threads still running (their call has not ended).
    abandoned_live: AtomicUsize,
}

impl Counters {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Counters {
        Counters {
            blocks: (0..=workers)
                .map(|_| CachePadded::new(Block::default()))
                .collect(),
            workers_replaced: AtomicU64::new(0),
            abandoned_live: AtomicUsize::new(0),
        }
    }

    /// Counts a stuck worker's thread abandoned and replaced, if fewer than `bound`
    /// abandoned threads are alive; returns whether it was counted (and may go ahead).
    pub fn abandon_within(&self, bound: usize) -> bool {
        let counted = self
            .abandoned_live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < bound).then_some(live + 1)
            })
            .is_ok();
        if counted {
            self.workers_replaced.fetch_add(1, Ordering::Relaxed);
        }
        counted
    }

    /// An abandoned thread's call has ended, and the thread with it.
    pub fn abandoned_ended(&self) {
        self.abandoned_live.fetch_sub(1, Ordering::AcqRel);
    }

    /// Abandoned worker threads still running.
    pub fn abandoned_live(&self) -> usize {
        self.abandoned_live.load(Ordering::Acquire)
    }

    /// The block index for answers given by no worker.
    pub fn off_worker(&self) -> usize {
        self.blocks.len() - 1
    }

    /// Counts one answered request, in block `block`.
    pub fn record(&self, block: usize, callback: Callback, decision: &Decision) {
        let b = &self.blocks[block.min(self.blocks.len() - 1)];
        b.requests[callback.index()].fetch_add(1, Ordering::Relaxed);
        b.decisions[decision.name_index()].fetch_add(1, Ordering::Relaxed);
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

    /// The totals as JSON: `{"requests":{…},"decisions":{…},"timeouts":n,…}`.
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
        json!({
            "requests": requests,
            "decisions": decisions,
            "timeouts": sum(&|b| &b.timeouts),
            "overloaded": sum(&|b| &b.overloaded),
            "worker_failures": sum(&|b| &b.worker_failures),
            "workers_replaced": self.workers_replaced.load(Ordering::Relaxed),
            "workers_abandoned_live": self.abandoned_live(),
        })
    }
}
