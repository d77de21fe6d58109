//! Layer: handlers. `GET /metrics`: OpenMetrics text for Prometheus (public in the policy
//! table, so scrapers need no token). Each scrape refreshes the catalog gauges (at most once a
//! second) and the connection-pool gauges, then renders the registry of `metrics.rs`. Its state
//! is [`MetricsState`], not `AppState`: `router::app` merges it with the policy check applied.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use catalog::Catalog;
use workflows::RotationPolicy;

use crate::metrics::{Metrics, CONTENT_TYPE};

/// What `GET /metrics` needs.
#[derive(Clone)]
pub struct MetricsState {
    /// The registry.
    pub metrics: Arc<Metrics>,
    /// Where the gauges are read.
    pub catalog: Catalog,
    /// This replica's node id (its claimable operations are the unfinished ones it sees).
    pub node_id: String,
    /// When credentials are due.
    pub rotation: RotationPolicy,
    /// The fleet's engines: their connection pools are reported, named `<server>/<pool>`.
    pub engines: Arc<workflows::Engines>,
}

/// The `/metrics` route.
pub fn routes(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(state): State<MetricsState>) -> Response {
    if let Err(e) = state
        .metrics
        .refresh(&state.catalog, &state.node_id, &state.rotation)
        .await
    {
        tracing::warn!(error = %e, "metrics: catalog gauges not refreshed");
        state.metrics.catalog_read_failed();
    }
    let mut pools = vec![state.catalog.pool_stats()];
    for (server, engine) in state.engines.made().await {
        pools.extend(engine.pool_stats().into_iter().map(|mut p| {
            p.pool = format!("{server}/{}", p.pool);
            p
        }));
    }
    state.metrics.observe_pools(&pools);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}
