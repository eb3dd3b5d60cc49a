//! The pool's queue: one bounded channel that callers submit to, a small deque per worker
//! that the worker takes runs of jobs into when the channel is long, which idle workers steal
//! from, and a lane where the watchdog puts the jobs it takes out to watch their deadlines.
//!
//! Why not just the channel: every take from it is a compare-and-swap on its head, and with
//! two workers taking in turn, that cache line moves between their cores on every request
//! (about a tenth of a 3 µs database lookup). A worker that takes its share of a long queue
//! in one go keeps the line for the whole run. Taking never leaves work stranded: a worker
//! takes at most its share, other workers steal from it before they sleep, and the watchdog
//! moves the jobs of a worker whose call outlived its deadline to the lane.
//!
//! Deadlines: every job has the same timeout, so in the channel and in each deque (FIFO, fed
//! from the channel) the oldest job, at the front, is due first. The channel and the deques
//! cannot be peeked at, so the watchdog takes each front out: an expired one it answers, the
//! first one still in time it moves to the lane, which workers serve before anything else.
//! Everything left behind is due no sooner than what the lane holds, so the watchdog can
//! sleep until the lane's first deadline ([`Queue::expire`]) and still answer every queued
//! job at its deadline, however stuck the workers are.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use crossbeam_deque::{Steal, Stealer, Worker as Deque};
use crossbeam_utils::CachePadded;

use super::Job;
use crate::lock::lock;

/// The most jobs a worker takes from the channel in one go.
const MAX_RUN: usize = 16;

/// How long a worker that ran out of jobs keeps looking for the next before it sleeps, when
/// its last wait was that short (see [`Local::spin`]), as a number of looks: the first
/// [`SPIN_PAUSES`] with a pause instruction in between, the rest with a yield of the core.
const SPIN_LOOKS: u32 = 100;
const SPIN_PAUSES: u32 = 64;

/// A wait shorter than this means jobs come often enough that the next one is likely to
/// come within a spin (which [`SPIN_LOOKS`] takes about this long for).
const SHORT_WAIT: Duration = Duration::from_micros(50);

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
    /// One per worker, by worker index; swapped when a stuck worker is replaced.
    stealers: Box<[ArcSwap<Stealer<Job>>]>,
    /// Jobs the watchdog took out, earliest deadline first (stop messages last).
    lane: Mutex<VecDeque<Message>>,
    /// How many messages the lane holds: workers read it before every take, and lock the
    /// lane only when it is not zero.
    lane_len: CachePadded<AtomicUsize>,
    /// Rings to wake the workers sleeping on an empty channel when the lane gets jobs. A
    /// channel of its own, so that rings take no place from jobs and are never counted as
    /// queued; a stale ring only makes a worker look once more.
    bell: Sender<()>,
    rings: Receiver<()>,
    /// Jobs submitted and not yet taken to run or answered, wherever they wait. The bound
    /// is checked on this count, not on the channel: jobs a worker took into its deque or
    /// the watchdog moved to the lane leave places in the channel behind them, and callers
    /// must not fill those.
    waiting: CachePadded<AtomicUsize>,
    /// The most jobs that may wait.
    capacity: usize,
}

/// A worker's own end of the queue: its deque, and whether it has taken its stop message.
/// It outlives a worker thread that fails: the replacement takes it over, jobs and all.
pub(super) struct Local {
    deque: Deque<Job>,
    index: usize,
    stopping: bool,
    /// Whether to look for the next job a little before sleeping: set when the last wait
    /// was short. Waking a sleeping worker costs its caller a system call and the worker a
    /// switch back in, several microseconds each, more than a trivial policy's whole call:
    /// when jobs come every few tens of microseconds (an HTTP front with its keep-alive
    /// connections, say) looking for them is cheaper. At a slower pace the looks would
    /// find nothing, so a worker whose last wait was long sleeps at once.
    spin: bool,
}

impl Queue {
    /// A queue of `capacity` places in the channel for `workers` workers, and each worker's
    /// own end, by index.
    pub fn new(workers: usize, capacity: usize) -> (Queue, Vec<Local>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let (bell, rings) = crossbeam_channel::bounded(workers);
        let locals: Vec<Local> = (0..workers).map(Local::new).collect();
        let stealers = locals
            .iter()
            .map(|l| ArcSwap::from_pointee(l.deque.stealer()))
            .collect();
        let queue = Queue {
            sender,
            receiver,
            stealers,
            lane: Mutex::new(VecDeque::new()),
            lane_len: CachePadded::new(AtomicUsize::new(0)),
            bell,
            rings,
            waiting: CachePadded::new(AtomicUsize::new(0)),
            capacity,
        };
        (queue, locals)
    }

    /// Queues `job`, or gives it back when `capacity` jobs already wait. Never blocks.
    /// (The channel cannot be disconnected: the queue holds both of its ends.)
    #[must_use = "a job given back must be answered"]
    #[inline]
    pub fn submit(&self, job: Job) -> Option<Job> {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Some(job);
        }
        // The channel has `capacity` places and holds only counted jobs, so this fails only
        // while stop messages take places at shutdown.
        match self.sender.try_send(Message::Job(job)) {
            Ok(()) => None,
            Err(refused) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                match refused.into_inner() {
                    Message::Job(job) => Some(job),
                    Message::Stop => unreachable!("only jobs are submitted"),
                }
            }
        }
    }

    /// Counts `job` as no longer waiting: a worker takes it to run, or it is answered.
    #[inline]
    fn leaves(&self, job: Job) -> Job {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        job
    }

    /// Queues one worker's stop message behind every job queued so far; blocks only while
    /// the channel is full, which the workers are draining.
    pub fn stop_one(&self) {
        let _ = self.sender.send(Message::Stop);
    }

    /// A stop message for a worker started after the others got theirs (a replacement,
    /// during shutdown), in the lane so that it never waits for a place in the channel.
    pub fn stop_one_more(&self) {
        let mut lane = self.lane();
        lane.push_back(Message::Stop);
        self.lane_len.store(lane.len(), Ordering::Release);
        drop(lane);
        self.wake_sleepers();
    }

    /// Jobs waiting: in the channel, in the lane and in the workers' deques.
    pub fn len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The next job for the worker that owns `local`, or `None` once it has taken its stop
    /// message and run every job it held. Runs `before_sleep` before blocking on an empty
    /// queue.
    pub fn next(&self, local: &mut Local, before_sleep: &mut dyn FnMut()) -> Option<Job> {
        self.take_next(local, before_sleep)
            .map(|job| self.leaves(job))
    }

    fn take_next(&self, local: &mut Local, before_sleep: &mut dyn FnMut()) -> Option<Job> {
        loop {
            // The lane first: its jobs are the oldest, moved there by the watchdog.
            if self.lane_len.load(Ordering::Acquire) != 0 {
                match self.take_from_lane() {
                    Some(Message::Job(job)) => return Some(job),
                    Some(Message::Stop) => local.stopping = true,
                    None => {}
                }
            }
            let taken = match local.deque.pop() {
                Some(job) => Some(job),
                None if local.stopping => return None,
                None => match self.take_run(local) {
                    Some(job) => Some(job),
                    None if local.stopping => return None,
                    None => self.steal(local),
                },
            };
            let job = match taken {
                Some(job) => job,
                None => {
                    if self.lane_len.load(Ordering::Acquire) != 0 {
                        continue;
                    }
                    before_sleep();
                    if local.spin && self.spin_for_a_job() {
                        continue;
                    }
                    let slept = Instant::now();
                    // `None`: a ring, to look at the lane.
                    let woken = crossbeam_channel::select! {
                        recv(self.receiver) -> message => Some(message),
                        recv(self.rings) -> _ => None,
                    };
                    local.spin = slept.elapsed() < SHORT_WAIT;
                    match woken {
                        None => continue,
                        Some(Ok(Message::Job(job))) => job,
                        Some(Ok(Message::Stop) | Err(_)) => {
                            local.stopping = true;
                            return None;
                        }
                    }
                }
            };
            // The watchdog moved an older job to the lane while this one was being taken:
            // serve them in deadline order.
            if self.lane_len.load(Ordering::Acquire) != 0 {
                self.to_lane(job);
                continue;
            }
            return Some(job);
        }
    }

    /// Looks for a job in the channel or the lane for a few microseconds; whether one came.
    fn spin_for_a_job(&self) -> bool {
        for look in 0..SPIN_LOOKS {
            if !self.receiver.is_empty() || self.lane_len.load(Ordering::Acquire) != 0 {
                return true;
            }
            if look < SPIN_PAUSES {
                std::hint::spin_loop();
            } else {
                // Gives the core to a thread that is ready to run (the caller about to
                // queue the next job, say) rather than take it from it.
                std::thread::yield_now();
            }
        }
        false
    }

    /// Marks the lane as about to get jobs, before taking any from the channel or a deque
    /// (with the lane locked): a worker that takes a later job meanwhile then sees the lane
    /// is not empty, and waits on its lock to put its job in order (the channel's and the
    /// deques' own synchronization orders this mark before the worker's take).
    fn moving(&self, lane: &VecDeque<Message>) {
        self.lane_len.store(lane.len() + 1, Ordering::SeqCst);
    }

    /// Puts `job` in the lane in deadline order.
    fn to_lane(&self, job: Job) {
        let mut lane = self.lane();
        insert_by_deadline(&mut lane, job);
        self.lane_len.store(lane.len(), Ordering::Release);
    }

    fn lane(&self) -> MutexGuard<'_, VecDeque<Message>> {
        lock(&self.lane)
    }

    fn take_from_lane(&self) -> Option<Message> {
        let mut lane = self.lane();
        let message = lane.pop_front();
        self.lane_len.store(lane.len(), Ordering::Release);
        message
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
            let stealer = stealer.load();
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

    /// The watchdog's look at the queue at `now`: hands every job past its deadline to
    /// `expired` (to be answered), moves the first job still in time of the channel and of
    /// each deque to the lane, and returns the lane's first deadline, before which no queued
    /// job is due.
    pub fn expire(&self, now: Instant, expired: &mut dyn FnMut(Job)) -> Option<Instant> {
        let mut lane = self.lane();
        let before = lane.len();
        self.moving(&lane);
        while let Some(Message::Job(job)) = lane.front() {
            if job.deadline > now {
                break;
            }
            if let Some(Message::Job(job)) = lane.pop_front() {
                expired(self.leaves(job));
            }
        }
        let mut moved = false;
        loop {
            match self.receiver.try_recv() {
                Ok(Message::Job(job)) if job.deadline <= now => expired(self.leaves(job)),
                Ok(Message::Job(job)) => {
                    insert_by_deadline(&mut lane, job);
                    moved = true;
                    break;
                }
                Ok(Message::Stop) => {
                    lane.push_back(Message::Stop);
                    moved = true;
                }
                Err(_) => break,
            }
        }
        for stealer in self.stealers.iter() {
            let stealer = stealer.load();
            loop {
                match stealer.steal() {
                    Steal::Success(job) if job.deadline <= now => expired(self.leaves(job)),
                    Steal::Success(job) => {
                        insert_by_deadline(&mut lane, job);
                        moved = true;
                        break;
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        let first = lane.iter().find_map(|m| match m {
            Message::Job(job) => Some(job.deadline),
            _ => None,
        });
        self.lane_len.store(lane.len(), Ordering::Release);
        drop(lane);
        if moved || before != 0 {
            self.wake_sleepers();
        }
        first
    }

    /// Moves every job waiting in worker `index`'s deque to the lane, for the other workers:
    /// that worker is stuck in a call past its deadline.
    pub fn evacuate(&self, index: usize) {
        let Some(stealer) = self.stealers.get(index) else {
            return;
        };
        let stealer = stealer.load();
        let mut lane = self.lane();
        self.moving(&lane);
        let mut moved = false;
        loop {
            match stealer.steal() {
                Steal::Success(job) => {
                    insert_by_deadline(&mut lane, job);
                    moved = true;
                }
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
        self.lane_len.store(lane.len(), Ordering::Release);
        drop(lane);
        if moved {
            self.wake_sleepers();
        }
    }

    /// A fresh end of the queue for worker `index`, whose thread was abandoned: what the old
    /// deque still holds goes to the lane, and other workers steal from the new one from now
    /// on. The old deque stays with the abandoned thread, which never takes from it again.
    pub fn replace_local(&self, index: usize) -> Local {
        self.evacuate(index);
        let local = Local::new(index);
        self.stealers[index].store(Arc::new(local.deque.stealer()));
        local
    }

    /// Wakes the workers sleeping on an empty channel to look at the lane.
    fn wake_sleepers(&self) {
        for _ in 0..self.stealers.len() {
            if self.bell.try_send(()).is_err() {
                break;
            }
        }
    }

    /// Every job still queued anywhere, for the pool's shutdown to answer.
    pub fn drain(&self) -> Vec<Job> {
        let mut left: Vec<Job> = Vec::new();
        let mut lane = self.lane();
        left.extend(lane.drain(..).filter_map(|m| match m {
            Message::Job(job) => Some(job),
            _ => None,
        }));
        self.lane_len.store(0, Ordering::Release);
        drop(lane);
        while let Ok(message) = self.receiver.try_recv() {
            if let Message::Job(job) = message {
                left.push(job);
            }
        }
        for stealer in self.stealers.iter() {
            let stealer = stealer.load();
            loop {
                match stealer.steal() {
                    Steal::Success(job) => left.push(job),
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        self.waiting.fetch_sub(left.len(), Ordering::Relaxed);
        left
    }
}

/// Puts `job` in the lane after every job due no later, before the stop messages.
fn insert_by_deadline(lane: &mut VecDeque<Message>, job: Job) {
    let at = lane.partition_point(|m| matches!(m, Message::Job(j) if j.deadline <= job.deadline));
    lane.insert(at, Message::Job(job));
}

impl Local {
    fn new(index: usize) -> Local {
        Local {
            deque: Deque::new_fifo(),
            index,
            stopping: false,
            spin: false,
        }
    }

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
    fn jobs_moved_out_of_the_channel_still_take_their_places() {
        let (queue, mut locals) = queue_of(1, 3, 3);
        assert!(queue.submit(job("over")).is_some());
        // Worker 0 takes j0 to run and j1, j2 into its deque; the watchdog moves j1 to the
        // lane.
        assert_eq!(next_now(&queue, &mut locals[0]).unwrap().args.first(), "j0");
        assert_eq!(locals[0].deque.len(), 2);
        let first = queue.expire(Instant::now(), &mut |_| panic!("nothing is due"));
        assert!(first.is_some());
        assert!(queue.receiver.is_empty());
        assert_eq!(queue.lane_len.load(Ordering::Acquire), 1);
        // The channel is empty, but two jobs wait: one place is free, not three.
        assert_eq!(queue.len(), 2);
        assert!(queue.submit(job("j3")).is_none());
        assert!(queue.submit(job("over")).is_some());
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
    fn a_stuck_workers_jobs_go_to_the_lane_and_are_served_first() {
        let (queue, mut locals) = queue_of(2, 64, 9);
        let running = next_now(&queue, &mut locals[0]).unwrap();
        assert_eq!(running.args.first(), "j0");
        assert_eq!(locals[0].deque.len(), 4);
        queue.evacuate(0);
        assert!(locals[0].deque.is_empty());
        // Worker 1 gets the jobs worker 0 held first (they are older), then the channel's.
        let mut rest = Vec::new();
        while queue.len() != 0 {
            rest.push(next_now(&queue, &mut locals[1]).unwrap());
        }
        assert_eq!(
            names(rest),
            ["j1", "j2", "j3", "j4", "j5", "j6", "j7", "j8"]
        );
    }

    /// A job named `name` due at `deadline`.
    fn due(name: &str, deadline: Instant) -> Job {
        Job {
            deadline,
            ..job(name)
        }
    }

    #[test]
    fn expire_answers_every_queued_job_past_its_deadline_wherever_it_waits() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let (queue, mut locals) = Queue::new(2, 64);
        for (name, ms) in [("a", 10), ("b", 20), ("c", 30), ("d", 40), ("e", 50)] {
            assert!(queue.submit(due(name, at(ms))).is_none());
        }
        // Worker 0 runs a and holds b and c in its deque; d and e stay in the channel.
        assert_eq!(next_now(&queue, &mut locals[0]).unwrap().args.first(), "a");
        assert_eq!(locals[0].deque.len(), 2);
        let mut expired = Vec::new();
        let first = queue.expire(at(25), &mut |job| expired.push(job));
        // b was due, from the deque; c (deque front) and d (channel head) go to the lane.
        assert_eq!(names(expired.drain(..)), ["b"]);
        assert_eq!(first, Some(at(30)));
        assert_eq!(queue.len(), 3);
        // Nothing is due before the lane's first deadline; at 45 c and d are.
        let first = queue.expire(at(45), &mut |job| expired.push(job));
        assert_eq!(names(expired.drain(..)), ["c", "d"]);
        // e moved to the lane in its turn.
        assert_eq!(first, Some(at(50)));
        assert_eq!(names(next_now(&queue, &mut locals[1])), ["e"]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_replaced_workers_jobs_stay_reachable() {
        let (queue, mut locals) = queue_of(2, 64, 9);
        let _stuck = next_now(&queue, &mut locals[0]).unwrap();
        let mut fresh = queue.replace_local(0);
        let mut all = Vec::new();
        while queue.len() != 0 {
            all.push(next_now(&queue, &mut fresh).unwrap());
        }
        assert_eq!(all.len(), 8);
        // The old deque is no longer stolen from: the stealer is the fresh one's.
        assert!(locals[0].deque.is_empty());
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
