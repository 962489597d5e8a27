//! Cooperative interruption: long-running work calls [`Interrupt::check`] at interrupt points
//! (every chunk of documents, every pipeline stage, every wait) and [`poll`] at the fine-grained
//! ones (every document, every expression evaluated, every few thousand elements of an array
//! operator, every sort comparison), so that a killOp, a shutdown or a maxTimeMS deadline stops it
//! within about a millisecond of work with the right error.
//!
//! [`poll`] reads the interrupt installed for the current thread by [`scoped`] (the node installs
//! its operation's interrupt around every piece of blocking work), so expression evaluation and
//! the matcher need no interrupt argument. It is cheap enough to call per element: one
//! thread-local access and [`Interrupt::pending`] (an atomic load for the node's operations); the
//! full [`Interrupt::check`] runs when something is pending and every [`POLL_FULL_EVERY`] polls.
//! Once a poll has failed, every later poll in the scope fails with the same error and [`scoped`]
//! reports it, so an evaluator that catches errors (`$convert`'s `onError`, ...) cannot turn an
//! interruption into a result.

use std::cell::RefCell;
use std::sync::Arc;

use crate::error::{CommandError, Result};

/// Interrupt points of a running operation.
pub trait Interrupt: Sync {
    /// Returns `Err(interrupted / max_time_ms_expired / interrupted_at_shutdown)` when the
    /// operation must stop.
    fn check(&self) -> Result<()>;
    /// Called when the engine releases and re-takes a lock (counts numYields).
    fn yielded(&self) {}
    /// A cheap hint that [`Interrupt::check`] may fail now (a kill or an expired deadline was
    /// recorded). The default is conservative: always check.
    fn pending(&self) -> bool {
        true
    }
}

/// An [`Interrupt`] that never fires: for tests and internal work.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverInterrupt;

impl Interrupt for NeverInterrupt {
    fn check(&self) -> Result<()> {
        Ok(())
    }
    fn pending(&self) -> bool {
        false
    }
}

/// How many documents a loop may process between two [`Interrupt::check`] calls (which also count
/// yields); finer-grained points use [`poll`].
pub const CHECK_EVERY: usize = 128;

/// A [`poll`] runs the full [`Interrupt::check`] at least this often even when nothing is
/// pending (a deadline without a timer is seen this way).
pub const POLL_FULL_EVERY: u32 = 256;

struct Scope {
    intr: Arc<dyn Interrupt + Send + Sync>,
    polls: u32,
    tripped: Option<CommandError>,
}

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Restores the previous scope when the work ends, also by a panic.
struct Restore(Option<Scope>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        // An error means the thread is being torn down: its scope went with it, there is
        // nothing to restore (and no logger to tell: tracing needs thread-locals too).
        CURRENT.try_with(|c| *c.borrow_mut() = prev).unwrap_or(());
    }
}

/// Runs `f` with `intr` as this thread's interrupt for [`poll`]. Returns `f`'s result and the
/// error a poll failed with, if any (the caller must then fail the whole work with it).
pub fn scoped<R>(intr: Arc<dyn Interrupt + Send + Sync>, f: impl FnOnce() -> R) -> (R, Option<CommandError>) {
    let prev = CURRENT.with(|c| c.borrow_mut().replace(Scope { intr, polls: 0, tripped: None }));
    let restore = Restore(prev);
    let r = f();
    let tripped = CURRENT.with(|c| c.borrow_mut().as_mut().and_then(|s| s.tripped.take()));
    drop(restore);
    (r, tripped)
}

/// A fine-grained interrupt point: fails when this thread's operation (see [`scoped`]) must stop.
/// Without a scope it always succeeds.
pub fn poll() -> Result<()> {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        let Some(s) = c.as_mut() else { return Ok(()) };
        if let Some(e) = &s.tripped {
            return Err(e.clone());
        }
        s.polls = s.polls.wrapping_add(1);
        if (s.intr.pending() || s.polls.is_multiple_of(POLL_FULL_EVERY))
            && let Err(e) = s.intr.check()
        {
            s.tripped = Some(e.clone());
            return Err(e);
        }
        Ok(())
    })
}

/// [`poll`] every `every`-th step of a loop (`i` counts the steps).
#[inline]
pub fn poll_every(i: usize, every: usize) -> Result<()> {
    if i.is_multiple_of(every) { poll() } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn never_interrupt_is_ok() {
        assert!(NeverInterrupt.check().is_ok());
        assert!(!NeverInterrupt.pending());
        NeverInterrupt.yielded();
    }

    #[derive(Default)]
    struct Flag {
        killed: AtomicBool,
        checks: AtomicUsize,
    }

    impl Interrupt for Flag {
        fn check(&self) -> Result<()> {
            self.checks.fetch_add(1, Ordering::Relaxed);
            if self.killed.load(Ordering::Relaxed) { Err(CommandError::interrupted()) } else { Ok(()) }
        }
        fn pending(&self) -> bool {
            self.killed.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn poll_without_scope_is_ok() {
        assert!(poll().is_ok());
    }

    #[test]
    fn poll_sees_a_kill_at_once_and_stays_tripped() {
        let f = Arc::new(Flag::default());
        let (r, tripped) = scoped(f.clone(), || {
            for _ in 0..10 {
                poll().unwrap();
            }
            assert_eq!(f.checks.load(Ordering::Relaxed), 0, "nothing pending: no full check yet");
            f.killed.store(true, Ordering::Relaxed);
            let first = poll().unwrap_err().code;
            f.killed.store(false, Ordering::Relaxed);
            // A swallowed error does not let the work go on.
            (first, poll().unwrap_err().code)
        });
        assert_eq!(r, (11601, 11601));
        assert_eq!(tripped.unwrap().code, 11601);
        assert!(poll().is_ok(), "the scope is gone");
    }

    #[test]
    fn full_check_runs_periodically_and_scopes_nest() {
        let outer = Arc::new(Flag::default());
        let inner = Arc::new(Flag::default());
        let ((), t) = scoped(outer.clone(), || {
            let ((), t) = scoped(inner.clone(), || {
                for _ in 0..POLL_FULL_EVERY * 2 {
                    poll().unwrap();
                }
            });
            assert!(t.is_none());
            poll().unwrap();
        });
        assert!(t.is_none());
        assert_eq!(inner.checks.load(Ordering::Relaxed), 2);
        assert_eq!(outer.checks.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn scope_is_restored_after_a_panic() {
        let f = Arc::new(Flag { killed: AtomicBool::new(true), ..Flag::default() });
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scoped(f.clone(), || panic!("boom"));
        }));
        assert!(r.is_err());
        assert!(poll().is_ok());
    }
}
