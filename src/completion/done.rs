//! [`Done`]: a non-blocking request's completion callback, kept inside the request when small.
//!
//! A boxed closure would be allocated on the caller's thread and freed on the worker that
//! runs it, on every request; frees from another thread are the costly kind for an allocator.
//! Closures of up to [`INLINE_WORDS`] words (an index and a reference or two, which is what
//! callers capture) are stored in place instead; larger ones are boxed.

use std::mem::{align_of, size_of, ManuallyDrop, MaybeUninit};

use crate::decision::Outcome;

/// Words of closure state kept inline.
const INLINE_WORDS: usize = 4;

type Storage = MaybeUninit<[usize; INLINE_WORDS]>;

/// A `FnOnce(Outcome) + Send + 'static`, inline or boxed. Calling consumes it; dropping it
/// uncalled drops the closure.
pub struct Done {
    storage: Storage,
    /// Moves the closure out of `storage` and calls it.
    call: unsafe fn(*mut Storage, Outcome),
    /// Drops the closure in `storage` without calling it.
    drop: unsafe fn(*mut Storage),
}

// SAFETY: `Done::new` only accepts `Send` closures, and a `Done` is nothing but one of them
// (inline, or a `Box` of it).
unsafe impl Send for Done {}

impl Done {
    /// Wraps `f`, in place when it fits in [`INLINE_WORDS`] words, boxed otherwise.
    pub fn new<F: FnOnce(Outcome) + Send + 'static>(f: F) -> Done {
        let mut storage = Storage::uninit();
        if size_of::<F>() <= size_of::<Storage>() && align_of::<F>() <= align_of::<Storage>() {
            // SAFETY: `storage` is large and aligned enough for an `F` (checked just above).
            unsafe { storage.as_mut_ptr().cast::<F>().write(f) };
            Done {
                storage,
                call: call_inline::<F>,
                drop: drop_inline::<F>,
            }
        } else {
            let boxed = Box::into_raw(Box::new(f));
            // SAFETY: a pointer fits in the first word of `storage`.
            unsafe { storage.as_mut_ptr().cast::<*mut F>().write(boxed) };
            Done {
                storage,
                call: call_boxed::<F>,
                drop: drop_boxed::<F>,
            }
        }
    }

    /// Runs the closure with `outcome`.
    pub fn call(self, outcome: Outcome) {
        // Not dropped after: `call` moves the closure out of the storage.
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the storage holds the closure that `call` was made for, and `this` is
        // never used again.
        unsafe { (this.call)(&mut this.storage, outcome) }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        // SAFETY: the storage still holds its closure: `call` forgets `self`.
        unsafe { (self.drop)(&mut self.storage) }
    }
}

/// # Safety
/// `storage` holds an `F` written by [`Done::new`], which this moves out.
unsafe fn call_inline<F: FnOnce(Outcome)>(storage: *mut Storage, outcome: Outcome) {
    // SAFETY: the caller guarantees `storage` holds an `F`, moved out exactly once here.
    let f = unsafe { storage.cast::<F>().read() };
    f(outcome)
}

/// # Safety
/// `storage` holds an `F` written by [`Done::new`], which this drops.
unsafe fn drop_inline<F>(storage: *mut Storage) {
    // SAFETY: the caller guarantees `storage` holds an `F`, dropped exactly once here.
    unsafe { storage.cast::<F>().drop_in_place() }
}

/// # Safety
/// `storage` holds a pointer from `Box::into_raw`, which this takes back.
unsafe fn call_boxed<F: FnOnce(Outcome)>(storage: *mut Storage, outcome: Outcome) {
    // SAFETY: the caller guarantees `storage` holds a pointer from `Box::into_raw`, taken
    // back exactly once here.
    let f = unsafe { Box::from_raw(storage.cast::<*mut F>().read()) };
    f(outcome)
}

/// # Safety
/// `storage` holds a pointer from `Box::into_raw`, which this takes back.
unsafe fn drop_boxed<F>(storage: *mut Storage) {
    // SAFETY: the caller guarantees `storage` holds a pointer from `Box::into_raw`, taken
    // back exactly once here.
    drop(unsafe { Box::from_raw(storage.cast::<*mut F>().read()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Callback, DecisionError, ErrorKind};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    fn outcome(message: &str) -> Outcome {
        Outcome::failed(
            Callback::UserLogin,
            DecisionError::new(ErrorKind::Raised, message),
            Duration::ZERO,
        )
    }

    fn message(outcome: &Outcome) -> String {
        outcome.decision.error_cause().unwrap().message.clone()
    }

    /// Counts its drops, to show a closure's captures are dropped exactly once.
    struct Token(Arc<AtomicUsize>);
    impl Drop for Token {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_small_closure_runs_with_its_captures_and_drops_them_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let token = Token(drops.clone());
        let index = 41_u64;
        let done = Done::new(move |o| {
            let _token = &token;
            tx.send((index + 1, message(&o))).unwrap();
        });
        // Sent to another thread and run there, as a worker does.
        std::thread::spawn(move || done.call(outcome("hello")))
            .join()
            .unwrap();
        assert_eq!(rx.recv().unwrap(), (42, "hello".to_string()));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_large_closure_is_boxed_and_runs_the_same() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let token = Token(drops.clone());
        let big = [7_u64; 16];
        assert!(size_of_val(&big) > size_of::<Storage>());
        let done = Done::new(move |o| {
            let _token = &token;
            tx.send((big.iter().sum::<u64>(), message(&o))).unwrap();
        });
        done.call(outcome("boxed"));
        assert_eq!(rx.recv().unwrap(), (112, "boxed".to_string()));
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_closure_dropped_uncalled_drops_its_captures_once_and_never_runs() {
        let drops = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let (small, big) = (Token(drops.clone()), Token(drops.clone()));
        let (ran_small, ran_big) = (ran.clone(), ran.clone());
        let padding = [0_u64; 16];
        drop(Done::new(move |_| {
            let _t = &small;
            ran_small.fetch_add(1, Ordering::SeqCst);
        }));
        drop(Done::new(move |_| {
            let _t = (&big, padding);
            ran_big.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_over_aligned_closure_is_boxed() {
        #[repr(align(64))]
        struct Aligned(u8);
        let value = Aligned(9);
        let (tx, rx) = mpsc::channel();
        let done = Done::new(move |_| tx.send(value.0).unwrap());
        done.call(outcome("x"));
        assert_eq!(rx.recv().unwrap(), 9);
    }
}
