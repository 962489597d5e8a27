//! `bypassDocumentValidation`: the node marks the thread of a command that asked for it (and
//! holds the privilege), and every write the engine makes on that thread skips the
//! collection's validator. A thread-local scope, as collations and interrupts are, so the
//! flag reaches `$out`/`$merge`'s writes and upserts without widening every write signature.

use std::cell::Cell;

thread_local! {
    static BYPASS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with document validation bypassed when `bypass` is set; restores the previous
/// state afterwards, also when `f` panics.
pub fn bypassing_validation<R>(bypass: bool, f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BYPASS.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BYPASS.with(|b| b.replace(bypass)));
    f()
}

/// Whether the current thread's writes skip validation.
pub(crate) fn bypassed() -> bool {
    BYPASS.with(Cell::get)
}
