//! [`catch_quietly`]: runs a third-party parser that may panic on malformed input, turning
//! the panic into an error message without printing it.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs a guarded parser: its panics are expected and reported
    /// as errors, so the panic hook stays silent.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Installs, once per process, a panic hook that defers to the previous one except on
/// threads inside [`catch_quietly`].
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err` with the panic's message, and is not printed.
pub(super) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_quiet_hook();
    let was_quiet = QUIET.with(|q| q.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was_quiet));
    outcome.map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "the parser panicked".to_owned()
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_their_message() {
        assert_eq!(catch_quietly(|| 7).unwrap(), 7);
        let err = catch_quietly(|| -> u8 { panic!("bad xref at {}", 12) }).unwrap_err();
        assert_eq!(err, "bad xref at 12");
        assert!(!QUIET.with(Cell::get));
    }
}
