//! The fleet's health check: every registered server is asked, as its admin, for its version,
//! under a timeout, and the answer (or why there was none, and how long it took) is recorded in
//! the catalog. Placement skips a server whose last check failed; its tenants' operations wait
//! for it (see the runner).

use std::time::{Duration, Instant};

use catalog::{CatalogError, ServerHealth};
use tracing::{info, warn};

use crate::Orchestrator;

/// How long one server may take to answer the health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

impl Orchestrator {
    /// Checks every server every `interval`.
    pub fn start_server_health_task(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.check_servers_once().await {
                    warn!(error = %e, "server health check: listing servers failed");
                }
                tokio::time::sleep(interval).await;
            }
        })
    }

    /// One pass of the health check; returns `(server, healthy)` for each server.
    pub async fn check_servers_once(&self) -> Result<Vec<(String, bool)>, CatalogError> {
        let svc = self.runner().services();
        let servers = svc.catalog.servers().await?;
        let checks = servers.iter().map(|server| async move {
            let started = Instant::now();
            let answer = tokio::time::timeout(HEALTH_TIMEOUT, async {
                let engine = svc
                    .engines
                    .get(&server.name)
                    .await
                    .map_err(|e| e.to_string())?;
                engine.health().await.map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", HEALTH_TIMEOUT.as_secs())));
            let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            let health = match answer {
                Ok(version) => ServerHealth {
                    checked_at: Some(chrono::Utc::now()),
                    ok: Some(true),
                    latency_ms: Some(latency_ms),
                    error: None,
                    engine_version: Some(version),
                },
                Err(error) => ServerHealth {
                    checked_at: Some(chrono::Utc::now()),
                    ok: Some(false),
                    latency_ms: Some(latency_ms),
                    error: Some(error.chars().take(1000).collect()),
                    engine_version: None,
                },
            };
            let was_ok = !server.unreachable();
            let ok = health.ok == Some(true);
            if was_ok && !ok {
                warn!(server = %server.name, error = ?health.error, "database server unreachable");
            } else if !was_ok && ok {
                info!(server = %server.name, "database server reachable again");
            }
            if let Some(observer) = &svc.observer {
                observer.server_checked(&server.name, ok, latency_ms as f64 / 1000.0);
            }
            (server.name.clone(), health)
        });
        let results = futures::future::join_all(checks).await;
        let mut out = Vec::new();
        for (name, health) in results {
            svc.catalog.record_server_health(&name, &health).await?;
            out.push((name, health.ok == Some(true)));
        }
        Ok(out)
    }
}
