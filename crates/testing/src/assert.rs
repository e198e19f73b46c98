//! [`assert_code!`](crate::assert_code) and [`eventually`].

use std::fmt;
use std::time::{Duration, Instant};

use tonic::{Code, Status};

/// Asserts that a call failed with status code `code`, like `assert_eq!`: an optional message
/// (with format arguments) names the case. Evaluates to the [`tonic::Status`], so the test can
/// check its message too.
///
/// ```ignore
/// assert_code!(cart.add(p, 0).await, Code::InvalidArgument);
/// let err = assert_code!(place(req).await, Code::InvalidArgument, "{what}");
/// ```
#[macro_export]
macro_rules! assert_code {
    ($result:expr, $code:expr $(,)?) => {
        $crate::check_code($result, $code, ::std::format_args!("call"))
    };
    ($result:expr, $code:expr, $($what:tt)+) => {
        $crate::check_code($result, $code, ::std::format_args!($($what)+))
    };
}

/// What [`assert_code!`](crate::assert_code) runs: panics unless `result` is an error with
/// `code`, naming `what`.
#[track_caller]
pub fn check_code<T: fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    what: fmt::Arguments<'_>,
) -> Status {
    match result {
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
    }
}

/// Polls `check` until it holds; panics naming `what` once `within` has passed. Polls every
/// 100 ms, or more often for short waits (a twentieth of `within`).
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let every = (within / 20).min(Duration::from_millis(100));
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(every).await;
    }
}
