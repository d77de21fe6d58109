//! A cap on the connections the control plane holds open to one database server, whatever
//! they serve (admin pools, per-database pools, one-off sessions on a tenant database, logins
//! that check a tenant's credentials). Both engines use it: it lives in this crate because the
//! SQL Server pools built here take their permits in [`crate::Manager`].
//!
//! A connection holds a [`CapPermit`] from before it connects until it is closed. A caller that
//! finds every permit taken waits (up to the cap's wait) for one; while it waits, the cap asks
//! its pressure hook (SQL Server: close the idle per-database pools) every quarter second to give
//! some back.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Gives connections back when the cap is reached (closes idle pooled ones); called while a
/// caller waits.
pub type PressureHook = Arc<dyn Fn() + Send + Sync>;

/// At most `limit` connections to one server at once.
#[derive(Clone)]
pub struct ConnectionCap {
    server: Arc<str>,
    limit: u32,
    semaphore: Arc<Semaphore>,
    wait: Duration,
    pressure: Arc<Mutex<Option<PressureHook>>>,
}

impl std::fmt::Debug for ConnectionCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionCap")
            .field("server", &self.server)
            .field("limit", &self.limit)
            .field("in_use", &self.in_use())
            .finish_non_exhaustive()
    }
}

/// One connection's place under the cap; given back when dropped (with the connection).
#[derive(Debug)]
pub struct CapPermit {
    _permit: OwnedSemaphorePermit,
}

/// Every permit stayed taken for the cap's whole wait.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "all {limit} connections the control plane may hold to {server} stayed in use for {waited:?} \
     (max_connections_per_server); try again, or raise the cap if the server allows more"
)]
pub struct CapExhausted {
    /// The server.
    pub server: String,
    /// The cap.
    pub limit: u32,
    /// How long the caller waited.
    pub waited: Duration,
}

impl ConnectionCap {
    /// A cap of `limit` connections to `server`; a caller waits up to `wait` for one.
    pub fn new(server: &str, limit: u32, wait: Duration) -> Self {
        ConnectionCap {
            server: server.into(),
            limit,
            semaphore: Arc::new(Semaphore::new(limit as usize)),
            wait,
            pressure: Arc::default(),
        }
    }

    /// Sets what gives connections back when the cap is reached.
    pub fn on_pressure(&self, hook: PressureHook) {
        if let Ok(mut h) = self.pressure.lock() {
            *h = Some(hook);
        }
    }

    /// The cap.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Connections holding a permit now.
    pub fn in_use(&self) -> u32 {
        let free = u32::try_from(self.semaphore.available_permits()).unwrap_or(u32::MAX);
        self.limit.saturating_sub(free)
    }

    /// A place for one connection: at once if one is free, else once one is given back within
    /// the cap's wait, the pressure hook asked to give some back every quarter second meanwhile
    /// (connections that were busy at the last ask may be idle now).
    pub async fn acquire(&self) -> Result<CapPermit, CapExhausted> {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Ok(CapPermit { _permit: permit });
        }
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            let hook = self.pressure.lock().ok().and_then(|h| h.clone());
            if let Some(hook) = hook {
                hook();
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(CapExhausted {
                    server: self.server.to_string(),
                    limit: self.limit,
                    waited: self.wait,
                });
            }
            let slice = (deadline - now).min(std::time::Duration::from_millis(250));
            if let Ok(Ok(permit)) =
                tokio::time::timeout(slice, self.semaphore.clone().acquire_owned()).await
            {
                return Ok(CapPermit { _permit: permit });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_full_cap_waits_then_says_which_server_and_cap() {
        let cap = ConnectionCap::new("db1:5432", 2, Duration::from_millis(50));
        let a = cap.acquire().await.unwrap();
        let _b = cap.acquire().await.unwrap();
        assert_eq!(cap.in_use(), 2);
        let err = cap.acquire().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("all 2 connections") && text.contains("db1:5432"),
            "{text}"
        );
        drop(a);
        assert_eq!(cap.in_use(), 1);
        let _c = cap.acquire().await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_caller_asks_the_pressure_hook_once() {
        let cap = ConnectionCap::new("db1", 1, Duration::from_secs(5));
        let held = Arc::new(Mutex::new(Some(cap.acquire().await.unwrap())));
        let calls = Arc::new(AtomicUsize::new(0));
        let (h, c) = (held.clone(), calls.clone());
        cap.on_pressure(Arc::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            h.lock().unwrap().take();
        }));
        cap.acquire().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
