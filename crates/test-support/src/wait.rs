//! Waiting on real state with a deadline — never a blind sleep.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` naming `what` and the last
/// observation.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
