//! Polling helpers: tests wait for conditions, never for fixed amounts of time.

use std::time::{Duration, Instant};

use anyhow::anyhow;

/// Deadlines sized for debug builds on a small, busy machine. A healthy run takes a fraction of
/// each; they only bound how long a broken run takes to fail.
pub mod deadline {
    use std::time::Duration;

    /// Three pristine replicas forming a cluster and electing a leader.
    pub const STARTUP: Duration = Duration::from_secs(60);
    /// A new leader after the old one died.
    pub const ELECTION: Duration = Duration::from_secs(30);
    /// Every live replica applying up to the same index (includes a restarted replica catching up).
    pub const CONVERGE: Duration = Duration::from_secs(60);
    /// A write succeeding while the cluster recovers.
    pub const WRITE: Duration = Duration::from_secs(30);
    /// A process exiting on its own.
    pub const EXIT: Duration = Duration::from_secs(30);
}

/// How often conditions are re-checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Ok`, every [`POLL_INTERVAL`], for at most `timeout`.
///
/// `check` reports why the condition does not hold yet as an error; on timeout that last error is
/// returned with `what` and the elapsed time, so a failing test says what it last saw.
pub async fn wait_until<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    wait_until_every(what, timeout, POLL_INTERVAL, check).await
}

/// [`wait_until`], re-checking every `interval`: for checks that cost the system under test
/// enough that polling them every [`POLL_INTERVAL`] would measure the polling.
pub async fn wait_until_every<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = timeout.saturating_sub(start.elapsed());
        // One slow check must not overrun the deadline by a whole request timeout.
        let outcome =
            tokio::time::timeout(remaining.max(Duration::from_millis(100)), check()).await;
        let last_error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => e,
            Err(_) => anyhow!("check still running at the deadline"),
        };
        if start.elapsed() >= timeout {
            return Err(last_error.context(format!(
                "timed out after {:.1?} ({attempts} checks) waiting for {what}",
                start.elapsed()
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_success() {
        let mut calls = 0;
        let got = wait_until("third call", Duration::from_secs(5), async || {
            calls += 1;
            anyhow::ensure!(calls >= 3, "only {calls} calls");
            Ok(calls)
        })
        .await
        .expect("succeeds on the third call");
        assert_eq!(got, 3);
    }

    #[tokio::test]
    async fn reports_the_last_error_on_timeout() {
        let err = wait_until(
            "never",
            Duration::from_millis(200),
            async || -> anyhow::Result<()> { anyhow::bail!("still false") },
        )
        .await
        .expect_err("times out");
        let text = format!("{err:#}");
        assert!(text.contains("waiting for never"), "{text}");
        assert!(text.contains("still false"), "{text}");
    }
}
