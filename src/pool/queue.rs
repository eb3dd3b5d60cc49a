//! The pool's queue: one bounded channel that callers submit to, and a small deque per worker
//! that the worker takes runs of jobs into when the channel is long, which idle workers steal
//! from.
//!
//! Why not just the channel: every take from it is a compare-and-swap on its head, and with
//! two workers taking in turn, that cache line moves between their cores on every request
//! (about a tenth of a 3 µs database lookup). A worker that takes its share of a long queue
//! in one go keeps the line for the whole run. Taking never leaves work stranded: a worker
//! takes at most its share, other workers steal from it before they sleep, and the watchdog
//! puts back the jobs of a worker whose call outlived its deadline.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_deque::{Steal, Stealer, Worker as Deque};

use super::Job;

/// The most jobs a worker takes from the channel in one go.
const MAX_RUN: usize = 16;

/// What goes through the channel.
// Jobs travel by value, arguments and all: boxing them would allocate on the caller's
// thread and free on a worker's, for every request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Message {
    Job(Job),
    /// Sent once per worker at shutdown, behind every job already queued.
    Stop,
}

/// The queue shared by the pool's handle, its workers and its watchdog.
pub(super) struct Queue {
    sender: Sender<Message>,
    receiver: Receiver<Message>,
    /// One per worker, by worker index.
    stealers: Box<[Stealer<Job>]>,
}

/// A worker's own end of the queue: its deque, and whether it has taken its stop message.
/// It outlives a worker thread that fails: the replacement takes it over, jobs and all.
pub(super) struct Local {
    deque: Deque<Job>,
    index: usize,
    stopping: bool,
}

impl Queue {
    /// A queue of `capacity` places in the channel for `workers` workers, and each worker's
    /// own end, by index.
    pub fn new(workers: usize, capacity: usize) -> (Queue, Vec<Local>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let locals: Vec<Local> = (0..workers)
            .map(|index| Local {
                deque: Deque::new_fifo(),
                index,
                stopping: false,
            })
            .collect();
        let stealers = locals.iter().map(|l| l.deque.stealer()).collect();
        let queue = Queue {
            sender,
            receiver,
            stealers,
        };
        (queue, locals)
    }

    /// Queues `job`, or gives it back when every place in the channel is taken. Never
    /// blocks. (The channel cannot be disconnected: the queue holds both of its ends.)
    #[must_use = "a job given back must be answered"]
    #[inline]
    pub fn submit(&self, job: Job) -> Option<Job> {
        match self.sender.try_send(Message::Job(job)) {
            Ok(()) => None,
            Err(refused) => match refused.into_inner() {
                Message::Job(job) => Some(job),
                Message::Stop => unreachable!("only jobs are submitted"),
            },
        }
    }

    /// Queues one worker's stop message behind every job queued so far; blocks only while
    /// the channel is full, which the workers are draining.
    pub fn stop_one(&self) {
        let _ = self.sender.send(Message::Stop);
    }

    /// Jobs waiting: in the channel and in the workers' deques.
    pub fn len(&self) -> usize {
        self.receiver.len() + self.stealers.iter().map(Stealer::len).sum::<usize>()
    }

    /// The next job for the worker that owns `local`, or `None` once it has taken its stop
    /// message and run every job it held. Runs `before_sleep` before blocking on an empty
    /// queue.
    pub fn next(&self, local: &mut Local, before_sleep: &mut dyn FnMut()) -> Option<Job> {
        if let Some(job) = local.deque.pop() {
            return Some(job);
        }
        if local.stopping {
            return None;
        }
        if let Some(job) = self.take_run(local) {
            return Some(job);
        }
        if local.stopping {
            return None;
        }
        if let Some(job) = self.steal(local) {
            return Some(job);
        }
        before_sleep();
        match self.receiver.recv() {
            Ok(Message::Job(job)) => Some(job),
            Ok(Message::Stop) | Err(_) => {
                local.stopping = true;
                None
            }
        }
    }

    /// Takes this worker's share of the channel (up to [`MAX_RUN`] jobs) and returns the
    /// first; the rest wait in its deque. Stops at a stop message.
    fn take_run(&self, local: &mut Local) -> Option<Job> {
        let first = match self.receiver.try_recv() {
            Ok(Message::Job(job)) => job,
            Ok(Message::Stop) => {
                local.stopping = true;
                return None;
            }
            Err(_) => return None,
        };
        // Never more than an even share of what is queued, so that no job waits behind
        // this worker while another is free.
        let share = self.receiver.len() / self.stealers.len();
        for _ in 0..share.min(MAX_RUN - 1) {
            match self.receiver.try_recv() {
                Ok(Message::Job(job)) => local.deque.push(job),
                Ok(Message::Stop) => {
                    local.stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        Some(first)
    }

    /// Takes half of another worker's deque, returning one of its jobs.
    fn steal(&self, local: &Local) -> Option<Job> {
        for (index, stealer) in self.stealers.iter().enumerate() {
            if index == local.index {
                continue;
            }
            loop {
                match stealer.steal_batch_and_pop(&local.deque) {
                    Steal::Success(job) => return Some(job),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }

    /// Puts the jobs waiting in worker `index`'s deque back in the channel, for the other
    /// workers: that worker is stuck in a call past its deadline. Stops when the channel is
    /// full (the rest stay, for other workers to steal when they run dry); a job taken out
    /// just as the channel filled is returned, for the caller to answer.
    pub fn put_back(&self, index: usize) -> Option<Job> {
        let stealer = self.stealers.get(index)?;
        let capacity = self.sender.capacity().unwrap_or(usize::MAX);
        while self.sender.len() < capacity {
            match stealer.steal() {
                Steal::Success(job) => {
                    if let Err(TrySendError::Full(Message::Job(job))) =
                        self.sender.try_send(Message::Job(job))
                    {
                        return Some(job);
                    }
                }
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
        None
    }

    /// Every job still queued anywhere, for the pool's shutdown to answer.
    pub fn drain(&self) -> Vec<Job> {
        let mut left = Vec::new();
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Job(job) = message {
                left.push(job);
            }
        }
        for stealer in self.stealers.iter() {
            loop {
                match stealer.steal() {
                    Steal::Success(job) => left.push(job),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        left
    }
}

impl Local {
    /// The worker index this end belongs to.
    pub fn index(&self) -> usize {
        self.index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Args;
    use crate::completion::{Completion, Done};
    use crate::decision::Callback;
    use std::time::{Duration, Instant};

    /// A job whose first argument is `name` (these tests only move jobs, never answer them).
    fn job(name: &str) -> Job {
        Job {
            args: Args::new(name, ""),
            deadline: Instant::now() + Duration::from_secs(60),
            completion: Completion::callback_target(
                Callback::UserLogin,
                Instant::now(),
                Done::new(|_| {}),
            ),
        }
    }

    /// A queue of `capacity` places for `workers` workers, with jobs `j0` … `j{jobs - 1}`.
    fn queue_of(workers: usize, capacity: usize, jobs: usize) -> (Queue, Vec<Local>) {
        let (queue, locals) = Queue::new(workers, capacity);
        for i in 0..jobs {
            assert!(queue.submit(job(&format!("j{i}"))).is_none());
        }
        (queue, locals)
    }

    fn names(jobs: impl IntoIterator<Item = Job>) -> Vec<String> {
        jobs.into_iter()
            .map(|job| job.args.first().to_string())
            .collect()
    }

    /// Takes the worker's next job without ever sleeping (the queue must not be empty).
    fn next_now(queue: &Queue, local: &mut Local) -> Option<Job> {
        queue.next(local, &mut || panic!("the queue looked empty"))
    }

    #[test]
    fn a_long_queue_is_taken_in_runs_of_at_most_a_fair_share_and_in_order() {
        let (queue, mut locals) = queue_of(2, 64, 10);
        let first = next_now(&queue, &mut locals[0]).unwrap();
        assert_eq!(first.args.first(), "j0");
        // 9 were left, so worker 0 took 4 more (an even share) and left 5 for worker 1.
        assert_eq!(locals[0].deque.len(), 4);
        assert_eq!(queue.receiver.len(), 5);
        assert_eq!(queue.len(), 9);
        let mut order = vec![first];
        while let Some(job) = locals[0].deque.pop() {
            order.push(job);
        }
        assert_eq!(names(order), ["j0", "j1", "j2", "j3", "j4"]);
    }

    #[test]
    fn an_idle_worker_steals_what_another_took() {
        let (queue, mut locals) = queue_of(2, 64, 8);
        let (zero, one) = locals.split_at_mut(1);
        let (zero, one) = (&mut zero[0], &mut one[0]);
        assert_eq!(next_now(&queue, zero).unwrap().args.first(), "j0");
        // Worker 1 empties the channel, then steals from worker 0's run.
        let mut taken = Vec::new();
        while !queue.receiver.is_empty() || !one.deque.is_empty() {
            taken.push(next_now(&queue, one).unwrap());
        }
        assert!(!zero.deque.is_empty());
        taken.push(next_now(&queue, one).unwrap());
        // A steal takes half of what the other holds, so each now holds some.
        assert!(!zero.deque.is_empty());
        let mut all = names(taken);
        for deque in [&zero.deque, &one.deque] {
            while let Some(job) = deque.pop() {
                all.push(job.args.first().to_string());
            }
        }
        all.sort();
        assert_eq!(all, ["j1", "j2", "j3", "j4", "j5", "j6", "j7"]);
    }

    #[test]
    fn a_stuck_workers_jobs_go_back_to_the_channel() {
        let (queue, mut locals) = queue_of(2, 64, 9);
        let running = next_now(&queue, &mut locals[0]).unwrap();
        assert_eq!(running.args.first(), "j0");
        let held = locals[0].deque.len();
        assert_eq!(held, 4);
        assert!(queue.put_back(0).is_none());
        assert!(locals[0].deque.is_empty());
        // Worker 1 now gets every other job, the ones worker 0 held last.
        let mut rest = Vec::new();
        while queue.len() != 0 {
            rest.push(next_now(&queue, &mut locals[1]).unwrap());
        }
        assert_eq!(
            names(rest),
            ["j5", "j6", "j7", "j8", "j1", "j2", "j3", "j4"]
        );
    }

    #[test]
    fn put_back_stops_when_the_channel_is_full_and_the_rest_stay_to_be_stolen() {
        let (queue, mut locals) = queue_of(1, 4, 4);
        let _running = next_now(&queue, &mut locals[0]).unwrap();
        assert_eq!(locals[0].deque.len(), 3);
        for name in ["j4", "j5"] {
            assert!(queue.submit(job(name)).is_none());
        }
        assert!(queue.put_back(0).is_none());
        assert_eq!(queue.receiver.len(), 4);
        assert_eq!(names(locals[0].deque.pop()), ["j3"]);
        assert!(queue.submit(job("over")).is_some(), "the channel is full");
    }

    #[test]
    fn a_worker_stops_at_its_stop_message_after_the_jobs_queued_before_it() {
        let (queue, mut locals) = queue_of(2, 64, 6);
        queue.stop_one();
        queue.stop_one();
        let mut zero = Vec::new();
        while let Some(job) = next_now(&queue, &mut locals[0]) {
            zero.push(job);
        }
        // Worker 0 ran what it took, then took one stop message and no more.
        let mut one = Vec::new();
        while let Some(job) = next_now(&queue, &mut locals[1]) {
            one.push(job);
        }
        let mut all = names(zero.into_iter().chain(one));
        all.sort();
        assert_eq!(all, ["j0", "j1", "j2", "j3", "j4", "j5"]);
        assert_eq!(queue.len(), 0);
        assert!(locals.iter().all(|l| l.stopping));
    }

    #[test]
    fn drain_returns_every_job_left_in_the_channel_and_the_deques() {
        let (queue, mut locals) = queue_of(2, 64, 10);
        let running = next_now(&queue, &mut locals[0]).unwrap();
        let mut left = names(queue.drain());
        left.sort();
        assert_eq!(left, ["j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8", "j9"]);
        assert_eq!(running.args.first(), "j0");
        assert_eq!(queue.len(), 0);
    }
}
