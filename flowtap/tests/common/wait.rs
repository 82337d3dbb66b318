//! Waiting for something a running process is about to do: asked again
//! every [`EVERY`] up to a bound, and a failed test naming what never
//! happened, with what was seen last, where a fixed sleep would have been
//! either slow or flaky on a loaded machine.

use std::time::{Duration, Instant};

/// How often a condition is asked again: often enough that a test that
/// times how soon something happens (a hub naming a stopped agent within
/// two intervals) measures it to 50 ms.
pub(crate) const EVERY: Duration = Duration::from_millis(50);

/// `check` asked every [`EVERY`] until it gives a value; past `within`, the
/// test fails with `what` and what `check` said the last time.
pub(crate) fn until<T>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(found) => return found,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {last}"
            ),
        }
        std::thread::sleep(EVERY);
    }
}

/// [`until`] for a condition that has nothing to say while it does not hold.
pub(crate) fn until_holds(within: Duration, what: &str, mut holds: impl FnMut() -> bool) {
    until(within, what, || {
        if holds() {
            Ok(())
        } else {
            Err("(not yet)".to_owned())
        }
    })
}
