//! Counters for `status`: requests per callback, decisions per kind, timeouts, refusals.
//!
//! Each worker counts into its own cache-padded block so that counting costs no cross-core
//! traffic on the hot path; `status` adds the blocks up.

use std::sync::atomic::{AtomicU64, Ordering};

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
        })
    }
}
