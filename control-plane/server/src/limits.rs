//! Layer: state (the bottom, with `state.rs` and `extract.rs`). Abuse resistance, the budgets:
//! rate limits per client address (every request, before authentication, so token guessing is
//! throttled too) and per token subject (after authentication), answered with 429 and
//! `Retry-After`; a bound on the request head (431); a deadline per request (408). [`Limits`] is
//! part of `AppState`, so it sits below it; the middleware that applies the per-address limit,
//! the head bound and the deadline to every request is `guard.rs`, and the per-subject limit is
//! checked in `policy::authorize`. Request bodies are bounded by `max_body_bytes` (413) where
//! they are read.
//!
//! The limits are per replica and in memory (GCRA from `governor`): N replicas behind a load
//! balancer allow up to N times the configured rate.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::error::AppError;

/// The limits of one process.
pub struct Limits {
    per_subject: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    max_header_bytes: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("per_subject", &self.per_subject.is_some())
            .field("per_ip", &self.per_ip.is_some())
            .field("max_header_bytes", &self.max_header_bytes)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limits {
    /// The configured limits.
    pub fn new(config: &Config) -> Limits {
        Limits {
            per_subject: quota(
                config.rate_limit_per_subject,
                config.rate_limit_burst_per_subject,
            )
            .map(RateLimiter::keyed),
            per_ip: quota(config.rate_limit_per_ip, config.rate_limit_burst_per_ip)
                .map(RateLimiter::keyed),
            max_header_bytes: config.max_header_bytes.max(1024),
            timeout: Duration::from_secs(config.request_timeout_secs.max(1)),
        }
    }

    /// Forgets callers whose budget is full again (keeps memory bounded by recent callers).
    pub fn start_cleanup(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let Some(limits) = this.upgrade() else { return };
                if let Some(l) = &limits.per_subject {
                    l.retain_recent();
                }
                if let Some(l) = &limits.per_ip {
                    l.retain_recent();
                }
            }
        })
    }

    /// The per-request deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The largest request head accepted, bytes.
    pub fn max_header_bytes(&self) -> usize {
        self.max_header_bytes
    }

    /// Takes one request from `subject`'s budget, or the 429 to answer.
    pub fn check_subject(&self, subject: &str) -> Result<(), AppError> {
        let Some(limiter) = &self.per_subject else {
            return Ok(());
        };
        limiter.check_key(&subject.to_owned()).map_err(|not_until| {
            too_many(
                "this caller",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }

    /// Takes one request from `ip`'s budget (its /64 for IPv6), or the 429 to answer.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AppError> {
        let Some(limiter) = &self.per_ip else {
            return Ok(());
        };
        limiter.check_key(&client_key(ip)).map_err(|not_until| {
            too_many(
                "this address",
                not_until.wait_time_from(DefaultClock::default().now()),
            )
        })
    }
}

/// The budget an address draws on: itself for IPv4, its /64 for IPv6 (one host usually holds a
/// whole /64, so per-address keys would let it rotate freely).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

fn too_many(who: &str, wait: Duration) -> AppError {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    AppError::too_many_requests(
        format!(
            "too many requests from {who}; retry after {} s",
            secs.max(1)
        ),
        secs,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn a_subject_over_its_burst_waits_and_others_do_not() {
        let config = Config {
            rate_limit_per_subject: 1,
            rate_limit_burst_per_subject: 3,
            ..Config::default()
        };
        let limits = Limits::new(&config);
        for _ in 0..3 {
            limits.check_subject("alice").unwrap();
        }
        let err = limits.check_subject("alice").unwrap_err();
        assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
        limits.check_subject("bob").unwrap();
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let config = Config {
            rate_limit_per_subject: 0,
            rate_limit_per_ip: 0,
            ..Config::default()
        };
        let limits = Limits::new(&config);
        for _ in 0..10_000 {
            limits.check_subject("alice").unwrap();
            limits.check_ip(IpAddr::from([127, 0, 0, 1])).unwrap();
        }
    }
}
