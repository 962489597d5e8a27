//! Cooperative interruption: long-running work calls [`Interrupt::check`] at interrupt points
//! (every ~128 documents, every pipeline stage, every wait) so that a killOp, a shutdown or a
//! maxTimeMS deadline stops it promptly with the right error.

use crate::error::Result;

/// Interrupt points of a running operation.
pub trait Interrupt: Sync {
    /// Returns `Err(interrupted / max_time_ms_expired / interrupted_at_shutdown)` when the
    /// operation must stop.
    fn check(&self) -> Result<()>;
    /// Called when the engine releases and re-takes a lock (counts numYields).
    fn yielded(&self) {}
}

/// An [`Interrupt`] that never fires: for tests and internal work.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverInterrupt;

impl Interrupt for NeverInterrupt {
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// How many documents a loop may process between two interrupt checks.
pub const CHECK_EVERY: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_interrupt_is_ok() {
        assert!(NeverInterrupt.check().is_ok());
        NeverInterrupt.yielded();
    }
}
