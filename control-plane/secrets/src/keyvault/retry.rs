//! Retries of throttled and failed Key Vault calls.
//!
//! We plug our own policy into the SDK pipeline (`ClientOptions::retry` =
//! `RetryOptions::custom`) rather than wrapping each call in a loop of our own, so there is one
//! retry layer, not two multiplying. The SDK's built-in exponential policy is close but does not
//! fit: it adds at most 256 ms of jitter instead of full jitter, forces `max_delay` to at least a
//! second, and waits for a server's `Retry-After` however long it is. Ours:
//!
//! * retries what the SDK's retry loop hands to a policy: 408, 429, 500, 502, 503, 504 answers and
//!   connection / I/O errors (timeouts included); every other answer returns at once;
//! * waits a uniformly random time in `[0, min(max_delay, base_delay * 2^(retry - 1))]` ("full
//!   jitter"), or the server's `Retry-After` / `retry-after-ms` / `x-ms-retry-after-ms` when it
//!   sent one, capped at `max_delay`;
//! * gives up after `max_attempts` attempts in all (the first one included).
//!
//! The pipeline runs the authentication policy inside the retry loop, so a retried request is
//! re-authorised with the cached token.

use std::time::Duration as StdDuration;

use azure_core::http::headers::{HeaderName, RETRY_AFTER};
use azure_core::http::policies::{RetryHeaders, RetryPolicy};
use azure_core::http::StatusCode;
use azure_core::time::Duration;
use rand::Rng;

/// How Key Vault calls are retried. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOptions {
    /// Attempts in all, the first included (1 = no retries). Default 5.
    pub max_attempts: u32,
    /// Upper bound of the first retry's random wait; doubles with each retry. Default 200 ms.
    pub base_delay: StdDuration,
    /// Longest single wait, also the cap on a server's `Retry-After`. Default 30 s.
    pub max_delay: StdDuration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: StdDuration::from_millis(200),
            max_delay: StdDuration::from_secs(30),
        }
    }
}

impl RetryOptions {
    /// The upper bound of the random wait before retry number `retry` (1-based), without a
    /// server hint.
    pub(crate) fn backoff_ceiling(&self, retry: u32) -> StdDuration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The wait before retry number `retry` (1-based): the server's hint capped at `max_delay`,
    /// or full jitter below [`Self::backoff_ceiling`].
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<StdDuration>) -> StdDuration {
        match retry_after {
            Some(hint) => hint.min(self.max_delay),
            None => {
                let ceiling = self.backoff_ceiling(retry);
                let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
                StdDuration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
            }
        }
    }
}

/// The SDK retry options for `options`: our policy inside the pipeline of any Azure client.
pub fn azure_retry(options: RetryOptions) -> azure_core::http::RetryOptions {
    azure_core::http::RetryOptions::custom(std::sync::Arc::new(BoundedJitterRetry::new(options)))
}

/// The SDK-facing policy built from [`RetryOptions`].
#[derive(Debug)]
pub(crate) struct BoundedJitterRetry {
    options: RetryOptions,
    headers: RetryHeaders,
}

impl BoundedJitterRetry {
    pub(crate) fn new(options: RetryOptions) -> Self {
        Self {
            options,
            headers: RetryHeaders {
                retry_headers: vec![
                    HeaderName::from_static("x-ms-retry-after-ms"),
                    HeaderName::from_static("retry-after-ms"),
                    RETRY_AFTER,
                ],
            },
        }
    }
}

fn to_std(d: Duration) -> StdDuration {
    StdDuration::try_from(d).unwrap_or(StdDuration::ZERO)
}

#[async_trait::async_trait]
impl RetryPolicy for BoundedJitterRetry {
    fn is_expired(&self, _elapsed: Duration, retry_count: u32) -> bool {
        // `retry_count` retries have happened, so `retry_count + 1` attempts.
        retry_count.saturating_add(1) >= self.options.max_attempts
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // Empty means the SDK's defaults: 408, 429, 500, 502, 503, 504.
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> Duration {
        Duration::try_from(self.options.delay(retry_count, None)).unwrap_or(Duration::ZERO)
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<Duration>) {
        let delay = self.options.delay(retry_count, retry_after.map(to_std));
        tracing::debug!(
            retry = retry_count,
            delay_ms = delay.as_millis() as u64,
            server_hint = retry_after.is_some(),
            "retrying an Azure call"
        );
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> RetryOptions {
        RetryOptions {
            max_attempts: 4,
            base_delay: StdDuration::from_millis(100),
            max_delay: StdDuration::from_millis(250),
        }
    }

    #[test]
    fn ceiling_doubles_up_to_max_delay() {
        let o = opts();
        assert_eq!(o.backoff_ceiling(1), StdDuration::from_millis(100));
        assert_eq!(o.backoff_ceiling(2), StdDuration::from_millis(200));
        assert_eq!(o.backoff_ceiling(3), StdDuration::from_millis(250));
        assert_eq!(o.backoff_ceiling(60), StdDuration::from_millis(250));
    }

    #[test]
    fn full_jitter_stays_below_the_ceiling() {
        let o = opts();
        for retry in 1..6 {
            for _ in 0..200 {
                assert!(o.delay(retry, None) <= o.backoff_ceiling(retry));
            }
        }
        // Full jitter spreads over the whole range, not just the top of it.
        let small = (0..400)
            .filter(|_| o.delay(2, None) < StdDuration::from_millis(100))
            .count();
        assert!(small > 50, "{small} of 400 waits were in the lower half");
    }

    #[test]
    fn retry_after_is_honoured_up_to_max_delay() {
        let o = opts();
        assert_eq!(
            o.delay(1, Some(StdDuration::from_millis(120))),
            StdDuration::from_millis(120)
        );
        assert_eq!(
            o.delay(1, Some(StdDuration::from_secs(30))),
            StdDuration::from_millis(250)
        );
    }

    #[test]
    fn attempts_are_bounded() {
        let p = BoundedJitterRetry::new(opts());
        assert!(!p.is_expired(Duration::ZERO, 0));
        assert!(!p.is_expired(Duration::ZERO, 2));
        assert!(p.is_expired(Duration::ZERO, 3));
        let once = BoundedJitterRetry::new(RetryOptions {
            max_attempts: 1,
            ..opts()
        });
        assert!(once.is_expired(Duration::ZERO, 0));
    }
}
