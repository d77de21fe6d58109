//! Layer: middleware. Prometheus metrics, served at `GET /metrics` (OpenMetrics text, through
//! the official `prometheus-client` crate) by `handlers/metrics.rs`; this module holds the
//! registry, the HTTP middleware ([`track_http`]) and the runner's observer.
//!
//! Three sources feed one registry per process:
//! - an HTTP middleware counts and times every request by method, route *template* (axum's
//!   `MatchedPath`, e.g. `/v1/tenants/{slug}`; `unmatched` for anything no route matched) and
//!   status;
//! - the workflow runner reports each finished step, and the credential check each tenant's
//!   outcome and each pass, through [`workflows::StepObserver`];
//! - tenant, credential, rotation and operation gauges are read from the catalog on each
//!   scrape, with the `CatalogStore` methods the API already uses.
//!
//! `/metrics` needs no token, so Prometheus can scrape it; that is safe because no label ever
//! carries a tenant slug, an id, a raw path or a secret: every label value comes from a closed
//! set (methods, route templates, status codes, operation kinds, step names, tenant states,
//! credential states, credential-check outcomes).
//! Restrict who reaches the port if even tenant counts are sensitive.

use std::sync::Arc;
use std::time::Instant;

use api_types::{CredentialState, TenantState};
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use catalog::Catalog;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use workflows::{RotationPolicy, StepObserver};

/// The content type of the OpenMetrics text format, which Prometheus negotiates and parses.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A tenant whose rotation has been due for longer than this counts as overdue.
pub const OVERDUE_AFTER: chrono::Duration = chrono::Duration::days(1);

/// The `route` label of a request no route matched (so raw paths never become labels).
pub const UNMATCHED: &str = "unmatched";

/// The catalog figures are read at most once per this interval (scrapes in between get the
/// last figures).
const MIN_REFRESH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many tenants are counted as due (or overdue) per scrape.
const DUE_LIMIT: i64 = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    kind: String,
    step: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepKindLabels {
    kind: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    /// A tenant schema version (a migration's number; `none` before onboarding recorded one).
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    kind: String,
    state: String,
}

/// A database server of the fleet: its name is an operator's (registered through the admin
/// API, a few per deployment), never a tenant's, so the label set stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerStateLabels {
    server: String,
    state: &'static str,
}

/// A warm-pool claim's outcome on a server: `hit` (a pooled database was taken) or `miss` (the
/// pool was empty: a clone).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    server: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: String,
    state: &'static str,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 1 ms to ~33 s.
fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Step durations: 5 ms to ~5.7 min (a template clone is tens of ms, a retried step minutes).
fn step_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

/// Credential-check pass durations: 10 ms to ~11 min (a few logins per tenant, four tenants
/// at a time; thousands of tenants take minutes).
fn pass_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 17))
}

/// The credential states a tenant can be in, each always reported.
const CREDENTIAL_STATES: [CredentialState; 3] = [
    CredentialState::Ok,
    CredentialState::Failing,
    CredentialState::Unchecked,
];

/// The outcomes of one tenant's credential check (see [`workflows::StepObserver`]); anything
/// else is counted as `error`, so the label set stays closed.
const CREDENTIAL_OUTCOMES: [&str; 4] = ["ok", "failing", "skipped", "error"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<RouteLabels>,
    steps: Family<StepLabels, Counter>,
    step_duration: HistogramFamily<StepKindLabels>,
    tenants: Family<StateLabels, Gauge>,
    tenant_credentials: Family<StateLabels, Gauge>,
    tenants_by_schema_version: Family<VersionLabels, Gauge>,
    tenants_drifted: Gauge,
    credential_checks: Family<OutcomeLabels, Counter>,
    credential_pass_duration: Histogram,
    rotations_due: Gauge,
    rotations_overdue: Gauge,
    operations_unfinished: Gauge,
    operations: Family<OperationLabels, Gauge>,
    pool_connections: Family<PoolStateLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_waits: Family<PoolLabels, Gauge>,
    pool_timeouts: Family<PoolLabels, Gauge>,
    pool_wait_seconds: Family<PoolLabels, FloatGauge>,
    server_tenants: Family<ServerLabels, Gauge>,
    server_capacity: Family<ServerLabels, Gauge>,
    server_state: Family<ServerStateLabels, Gauge>,
    server_check_seconds: Family<ServerLabels, FloatGauge>,
    pool_databases: Family<ServerStateLabels, Gauge>,
    pool_claims: Family<ClaimLabels, Counter>,
    reconciliation_findings: Family<FindingLabels, Gauge>,
    reconciliation_last_pass: Gauge,
    scrape_errors: Counter,
    last_refresh: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with every `tcp_*` metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tcp");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(http_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency in seconds by method and route template",
            http_duration.clone(),
        );
        let steps = Family::<StepLabels, Counter>::default();
        registry.register(
            "operation_steps",
            "Workflow steps finished, by operation kind, step and outcome (succeeded, failed)",
            steps.clone(),
        );
        let step_duration: HistogramFamily<StepKindLabels> =
            Family::new_with_constructor(step_histogram);
        registry.register(
            "operation_step_duration_seconds",
            "Workflow step duration in seconds (all attempts of one run), by operation kind and step",
            step_duration.clone(),
        );
        let tenants = Family::<StateLabels, Gauge>::default();
        // Every state from the start (zero until the first scrape reads the catalog).
        for state in ALL_STATES {
            tenants
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(0);
        }
        registry.register(
            "tenants",
            "Tenants in the catalog by state (read at scrape time)",
            tenants.clone(),
        );
        let tenant_credentials = Family::<StateLabels, Gauge>::default();
        for state in CREDENTIAL_STATES {
            tenant_credentials
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(0);
        }
        registry.register(
            "tenant_credentials",
            "Active tenants by the last credential check's finding: ok, failing (a secret's current connection string did not log in; rotate to repair), unchecked (read at scrape time)",
            tenant_credentials.clone(),
        );
        let tenants_by_schema_version = Family::<VersionLabels, Gauge>::default();
        registry.register(
            "tenants_by_schema_version",
            "Active tenants by tenant schema version, as their last migration or onboarding recorded it (read at scrape time)",
            tenants_by_schema_version.clone(),
        );
        let tenants_drifted = Gauge::default();
        registry.register(
            "tenants_drifted",
            "Active tenants whose live schema differed from their baseline at the last drift check (read at scrape time)",
            tenants_drifted.clone(),
        );
        let credential_checks = Family::<OutcomeLabels, Counter>::default();
        // Every outcome from the start, at zero, so an alert on `failing` has a series.
        for outcome in CREDENTIAL_OUTCOMES {
            drop(credential_checks.get_or_create(&OutcomeLabels { outcome }));
        }
        registry.register(
            "credential_checks",
            "Tenant credential checks by outcome: ok, failing (both recorded), skipped (an operation ran), error (secret store or catalog failed)",
            credential_checks.clone(),
        );
        let credential_pass_duration = pass_histogram();
        registry.register(
            "credential_check_pass_duration_seconds",
            "Duration in seconds of each periodic credential-check pass over every active tenant",
            credential_pass_duration.clone(),
        );
        let rotations_due = Gauge::default();
        registry.register(
            "rotations_due",
            "Active tenants whose credentials are due for rotation now (read at scrape time)",
            rotations_due.clone(),
        );
        let rotations_overdue = Gauge::default();
        registry.register(
            "rotations_overdue",
            "Active tenants whose rotation has been due for more than one day (read at scrape time)",
            rotations_overdue.clone(),
        );
        let operations_unfinished = Gauge::default();
        registry.register(
            "operations_unfinished",
            "Pending or running operations this replica runs or may claim (read at scrape time)",
            operations_unfinished.clone(),
        );
        let operations = Family::<OperationLabels, Gauge>::default();
        registry.register(
            "operations",
            "Operations in the catalog by kind and state, final states included (read at scrape time)",
            operations.clone(),
        );
        let pool_connections = Family::<PoolStateLabels, Gauge>::default();
        registry.register(
            "pool_connections",
            "Open connections of each pool (catalog, engine_admin, engine_master, engine_tenant_databases) by state (idle, in_use)",
            pool_connections.clone(),
        );
        let pool_max = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_max_connections",
            "Most connections each pool may open",
            pool_max.clone(),
        );
        let pool_waits = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_waits",
            "Connection checkouts that had to wait for a free connection, since the pool was created",
            pool_waits.clone(),
        );
        let pool_timeouts = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_wait_timeouts",
            "Connection checkouts that gave up waiting, since the pool was created",
            pool_timeouts.clone(),
        );
        let pool_wait_seconds = Family::<PoolLabels, FloatGauge>::default();
        registry.register(
            "pool_wait_seconds",
            "Time spent waiting for connections, since the pool was created",
            pool_wait_seconds.clone(),
        );
        let server_tenants = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_tenants",
            "Live tenants on each database server (read at scrape time)",
            server_tenants.clone(),
        );
        let server_capacity = Family::<ServerLabels, Gauge>::default();
        registry.register(
            "server_capacity",
            "Most tenants each database server takes",
            server_capacity.clone(),
        );
        let server_state = Family::<ServerStateLabels, Gauge>::default();
        registry.register(
            "server_state",
            "1 for each database server's state (active, draining, unreachable), 0 for the others",
            server_state.clone(),
        );
        let server_check_seconds = Family::<ServerLabels, FloatGauge>::default();
        registry.register(
            "server_health_check_seconds",
            "How long each database server's last health check took",
            server_check_seconds.clone(),
        );
        let pool_databases = Family::<ServerStateLabels, Gauge>::default();
        registry.register(
            "pool_databases",
            "Warm-pool databases on each server by state (creating, ready, claimed, retiring; read at scrape time)",
            pool_databases.clone(),
        );
        let pool_claims = Family::<ClaimLabels, Counter>::default();
        registry.register(
            "pool_claims",
            "Onboardings that took a warm-pool database (hit) or found the pool empty and cloned (miss)",
            pool_claims.clone(),
        );
        let reconciliation_findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "reconciliation_findings",
            "Findings of the newest reconciliation pass by kind (orphan_database, missing_secret...; read at scrape time)",
            reconciliation_findings.clone(),
        );
        let reconciliation_last_pass = Gauge::default();
        registry.register(
            "reconciliation_last_pass_timestamp_seconds",
            "When the newest reconciliation pass ended (Unix time; 0 before the first)",
            reconciliation_last_pass.clone(),
        );
        let scrape_errors = Counter::default();
        registry.register(
            "metrics_catalog_errors",
            "Scrapes whose catalog reads failed (the catalog gauges then keep their last values)",
            scrape_errors.clone(),
        );
        Metrics {
            registry,
            http_requests,
            http_duration,
            steps,
            step_duration,
            tenants,
            tenant_credentials,
            tenants_by_schema_version,
            tenants_drifted,
            credential_checks,
            credential_pass_duration,
            rotations_due,
            rotations_overdue,
            operations_unfinished,
            operations,
            pool_connections,
            pool_max,
            pool_waits,
            pool_timeouts,
            pool_wait_seconds,
            server_tenants,
            server_capacity,
            server_state,
            server_check_seconds,
            pool_databases,
            pool_claims,
            reconciliation_findings,
            reconciliation_last_pass,
            scrape_errors,
            last_refresh: std::sync::Mutex::new(None),
        }
    }

    /// Sets the pool gauges.
    pub fn observe_pools(&self, pools: &[api_types::PoolStats]) {
        for p in pools {
            let pool = PoolLabels {
                pool: p.pool.clone(),
            };
            let idle = i64::from(p.idle);
            let in_use = i64::from(p.connections.saturating_sub(p.idle));
            for (state, n) in [("idle", idle), ("in_use", in_use)] {
                self.pool_connections
                    .get_or_create(&PoolStateLabels {
                        pool: p.pool.clone(),
                        state,
                    })
                    .set(n);
            }
            self.pool_max
                .get_or_create(&pool)
                .set(i64::from(p.max_size));
            self.pool_waits
                .get_or_create(&pool)
                .set(i64::try_from(p.gets_waited).unwrap_or(i64::MAX));
            self.pool_timeouts
                .get_or_create(&pool)
                .set(i64::try_from(p.gets_timed_out).unwrap_or(i64::MAX));
            self.pool_wait_seconds
                .get_or_create(&pool)
                .set(p.wait_seconds);
        }
    }

    /// Records one HTTP request. `route` is a route template or `None` (no route matched).
    pub fn observe_http(&self, method: &str, route: Option<&str>, status: u16, seconds: f64) {
        let method = method_label(method);
        let route = route.unwrap_or(UNMATCHED).to_owned();
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.clone(),
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { method, route })
            .observe(seconds);
    }

    /// Reads the catalog gauges: tenants by state, active tenants by credential state,
    /// rotations due and overdue, unfinished operations.
    pub async fn refresh(
        &self,
        catalog: &Catalog,
        node_id: &str,
        rotation: &RotationPolicy,
    ) -> Result<(), catalog::CatalogError> {
        // `/metrics` is public: at most one round of catalog reads per interval, however often
        // it is asked.
        {
            let mut last = self.last_refresh.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < MIN_REFRESH_INTERVAL) {
                return Ok(());
            }
            *last = Some(Instant::now());
        }
        let now = chrono::Utc::now();
        let tenants = catalog.list_tenants().await?;
        let due_before =
            now - chrono::Duration::from_std(rotation.rotate_after).unwrap_or_default();
        // `failed_after = now`: a tenant whose last rotation failed is still due (as in
        // `GET /v1/rotations/due`); the scheduler's slower retry pace is not "not due".
        let due = catalog.rotation_due(due_before, now, DUE_LIMIT).await?;
        let overdue = catalog
            .rotation_due(due_before - OVERDUE_AFTER, now, DUE_LIMIT)
            .await?;
        let unfinished = catalog.claimable_operations(node_id).await?;
        let operations = catalog.operation_counts().await?;
        // Known pairs are reset first so a pair that emptied reads 0, not its old count.
        self.operations.clear();
        for (kind, state, n) in operations {
            self.operations
                .get_or_create(&OperationLabels { kind, state })
                .set(n);
        }
        // Every state is set, zeros included, so a state that emptied does not keep its count.
        for state in ALL_STATES {
            let n = tenants.iter().filter(|t| t.state == state).count();
            self.tenants
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count(n));
        }
        // Active tenants only: the check looks at no other.
        for state in CREDENTIAL_STATES {
            let n = tenants
                .iter()
                .filter(|t| t.state == TenantState::Active)
                .filter(|t| t.credential_health().state == state)
                .count();
            self.tenant_credentials
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count(n));
        }
        // Versions: cleared first, so a version no tenant is on any more leaves no series.
        self.tenants_by_schema_version.clear();
        for t in tenants.iter().filter(|t| t.state == TenantState::Active) {
            let version = t
                .schema_version
                .map_or_else(|| "none".to_owned(), |v| v.to_string());
            self.tenants_by_schema_version
                .get_or_create(&VersionLabels { version })
                .inc();
        }
        let drifted = catalog
            .tenant_schemas(false)
            .await?
            .iter()
            .filter(|s| !s.drift.is_empty())
            .filter(|s| {
                tenants
                    .iter()
                    .any(|t| t.id == s.tenant_id && t.state == TenantState::Active)
            })
            .count();
        self.tenants_drifted.set(count(drifted));
        // The newest reconciliation report (any replica's), every kind set, zeros included.
        let report = catalog.latest_reconciliation().await?;
        let findings: Vec<api_types::FindingKind> = report
            .as_ref()
            .and_then(|r| r.report.get("findings").cloned())
            .and_then(|f| serde_json::from_value::<Vec<api_types::Finding>>(f).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.kind)
            .collect();
        for kind in api_types::FindingKind::ALL {
            self.reconciliation_findings
                .get_or_create(&FindingLabels {
                    kind: kind.as_str(),
                })
                .set(count(findings.iter().filter(|k| **k == kind).count()));
        }
        self.reconciliation_last_pass
            .set(report.map_or(0, |r| r.finished_at.timestamp()));
        // Servers: families cleared first, so a removed server leaves no series behind.
        let servers = catalog.servers().await?;
        self.server_tenants.clear();
        self.server_capacity.clear();
        self.server_state.clear();
        self.server_check_seconds.clear();
        for s in &servers {
            let server = ServerLabels {
                server: s.name.clone(),
            };
            self.server_tenants.get_or_create(&server).set(s.tenants);
            self.server_capacity
                .get_or_create(&server)
                .set(i64::from(s.capacity));
            let current = if s.unreachable() {
                "unreachable"
            } else {
                s.state.as_str()
            };
            for state in ["active", "draining", "unreachable"] {
                self.server_state
                    .get_or_create(&ServerStateLabels {
                        server: s.name.clone(),
                        state,
                    })
                    .set(i64::from(state == current));
            }
            if let Some(ms) = s.health.latency_ms {
                self.server_check_seconds
                    .get_or_create(&server)
                    .set(ms as f64 / 1000.0);
            }
        }
        // Every state of every server, zeros included; a removed server leaves no series.
        let pooled = catalog.pool_databases(None).await?;
        self.pool_databases.clear();
        for s in &servers {
            for state in catalog::PoolState::ALL {
                let n = pooled
                    .iter()
                    .filter(|p| p.server == s.name && p.state == state)
                    .count();
                self.pool_databases
                    .get_or_create(&ServerStateLabels {
                        server: s.name.clone(),
                        state: state.as_str(),
                    })
                    .set(count(n));
            }
        }
        self.rotations_due.set(count(due.len()));
        self.rotations_overdue.set(count(overdue.len()));
        self.operations_unfinished.set(count(unfinished.len()));
        Ok(())
    }

    /// Counts a scrape whose catalog reads failed.
    pub fn catalog_read_failed(&self) {
        self.scrape_errors.inc();
    }

    /// The registry as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

const ALL_STATES: [TenantState; 6] = [
    TenantState::Provisioning,
    TenantState::Active,
    TenantState::Offboarding,
    TenantState::Offboarded,
    TenantState::Failed,
    TenantState::Retained,
];

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The method label: standard methods as they are, anything else `other` (clients may send
/// any token as a method, which must not grow the label set).
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

impl StepObserver for Metrics {
    fn step_finished(&self, kind: &str, step: &str, outcome: &str, seconds: f64) {
        self.steps
            .get_or_create(&StepLabels {
                kind: kind.to_owned(),
                step: step.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.step_duration
            .get_or_create(&StepKindLabels {
                kind: kind.to_owned(),
                step: step.to_owned(),
            })
            .observe(seconds);
    }

    fn credential_checked(&self, outcome: &str) {
        let outcome = CREDENTIAL_OUTCOMES
            .into_iter()
            .find(|o| *o == outcome)
            .unwrap_or("error");
        self.credential_checks
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    fn credential_pass_finished(&self, seconds: f64) {
        self.credential_pass_duration.observe(seconds);
    }

    fn pool_claim(&self, server: &str, hit: bool) {
        self.pool_claims
            .get_or_create(&ClaimLabels {
                server: server.to_owned(),
                outcome: if hit { "hit" } else { "miss" },
            })
            .inc();
    }
}

/// Counts and times every request; the route label is the matched template, never the path.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let response = next.run(req).await;
    metrics.observe_http(
        &method,
        route.as_deref(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    fn line_value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn http_requests_are_labelled_by_template_and_status() {
        let m = Metrics::new();
        m.observe_http("GET", Some("/v1/tenants/{slug}"), 200, 0.01);
        m.observe_http("GET", Some("/v1/tenants/{slug}"), 200, 0.02);
        m.observe_http("BREW", None, 404, 0.001);
        let text = m.render();
        assert_eq!(
            line_value(
                &text,
                r#"tcp_http_requests_total{method="GET",route="/v1/tenants/{slug}",status="200"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tcp_http_requests_total{method="other",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        assert_eq!(
            line_value(
                &text,
                r#"tcp_http_request_duration_seconds_count{method="GET",route="/v1/tenants/{slug}"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert!(
            text.contains("# HELP tcp_http_requests HTTP requests"),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }

    #[test]
    fn steps_are_counted_and_timed() {
        let m = Metrics::new();
        m.step_finished("onboard", "create_database", "succeeded", 0.07);
        m.step_finished("onboard", "create_database", "failed", 1.5);
        let text = m.render();
        assert!(text.contains(
            r#"tcp_operation_steps_total{kind="onboard",step="create_database",outcome="succeeded"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"tcp_operation_steps_total{kind="onboard",step="create_database",outcome="failed"} 1"#
        ), "{text}");
        assert_eq!(
            line_value(
                &text,
                r#"tcp_operation_step_duration_seconds_count{kind="onboard",step="create_database"}"#
            ),
            Some(2.0),
            "{text}"
        );
        let sum = line_value(
            &text,
            r#"tcp_operation_step_duration_seconds_sum{kind="onboard",step="create_database"}"#,
        )
        .unwrap();
        assert!((sum - 1.57).abs() < 1e-9, "{text}");
    }

    #[test]
    fn gauges_are_registered_with_help() {
        let text = Metrics::new().render();
        for name in [
            "tcp_tenants",
            "tcp_rotations_due",
            "tcp_rotations_overdue",
            "tcp_operations_unfinished",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
            assert!(
                text.contains(&format!("# TYPE {name} gauge")),
                "{name}: {text}"
            );
        }
        for state in ALL_STATES {
            let line = format!("tcp_tenants{{state=\"{}\"}} 0\n", state.as_str());
            assert!(text.contains(&line), "{line}: {text}");
        }
        for state in ["ok", "failing", "unchecked"] {
            let line = format!("tcp_tenant_credentials{{state=\"{state}\"}} 0\n");
            assert!(text.contains(&line), "{line}: {text}");
        }
    }

    #[test]
    fn credential_checks_are_counted_by_a_closed_set_of_outcomes() {
        let m = Metrics::new();
        m.credential_checked("ok");
        m.credential_checked("failing");
        m.credential_checked("acme-corp");
        m.credential_pass_finished(0.25);
        let text = m.render();
        for (outcome, n) in [("ok", 1), ("failing", 1), ("skipped", 0), ("error", 1)] {
            let line = format!("tcp_credential_checks_total{{outcome=\"{outcome}\"}} {n}\n");
            assert!(text.contains(&line), "{line}: {text}");
        }
        assert!(!text.contains("acme-corp"), "{text}");
        assert_eq!(
            line_value(&text, "tcp_credential_check_pass_duration_seconds_count "),
            Some(1.0),
            "{text}"
        );
    }

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("get"), "other");
        assert_eq!(method_label("X-ANYTHING-1234"), "other");
    }

    /// The middleware sees the matched template, not the path, and `unmatched` for a miss.
    #[tokio::test]
    async fn the_middleware_records_route_templates() {
        let metrics = Arc::new(Metrics::new());
        let app = Router::new()
            .route("/metrics", get(|| async { "ok" }))
            // Only routes the policy table knows: its test reads every route registered in this file.
            .route("/v1/tenants/{slug}", get(|| async { "tenant" }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                track_http,
            ));
        for uri in [
            "/v1/tenants/acme-corp",
            "/v1/tenants/other-co",
            "/nope/secret-x",
        ] {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = metrics.render();
        assert!(
            text.contains(
                r#"tcp_http_requests_total{method="GET",route="/v1/tenants/{slug}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"tcp_http_requests_total{method="GET",route="unmatched",status="404"} 1"#
            ),
            "{text}"
        );
        for raw in ["acme-corp", "other-co", "secret-x"] {
            assert!(!text.contains(raw), "{raw} leaked into labels: {text}");
        }
    }
}
