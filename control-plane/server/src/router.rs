//! Layer: top (with `openapi.rs`). The HTTP application put together: every handler module's
//! routes merged, the middleware applied in its order (idempotency inside the policy check on
//! every matched route, then the guard, the request span and the request id around everything)
//! and the problem+json fallback for unmatched paths. `lib.rs::start` builds it with [`app`].
//! Nothing imports this module but `lib.rs`.

use axum::Router;

use crate::error::AppError;
use crate::extract::REQUEST_ID;
use crate::handlers::{self, metrics::MetricsState};
use crate::state::AppState;
use crate::{guard, idempotency, openapi, policy, request_id};

/// The whole application: the API [`router`], `/metrics` (public in the policy table, checked
/// like every route), the [`edge`] layers, and the HTTP metrics middleware around every route,
/// the fallback included.
pub fn app(state: AppState, scrape: MetricsState) -> Router {
    let metrics = scrape.metrics.clone();
    let scrape = handlers::metrics::routes(scrape).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), policy::authorize),
    );
    edge(router(state.clone()).merge(scrape), &state).layer(axum::middleware::from_fn_with_state(
        metrics,
        crate::metrics::track_http,
    ))
}

/// The answer to a path no route matches (404, problem+json; a matched path with another
/// method gets 405 from the policy middleware).
async fn not_found() -> AppError {
    AppError::not_found("no such endpoint")
}

/// The API router: every resource's routes, the idempotency middleware inside the policy check
/// on each of them, the OpenAPI document, the policy check on every matched route, the
/// problem+json fallback and the body limit.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .merge(handlers::health::routes())
        .merge(handlers::tenants::routes())
        .merge(handlers::rotations::routes())
        .merge(handlers::migrations::routes())
        .merge(handlers::exports::routes())
        .merge(handlers::investigations::routes())
        .merge(handlers::operations::routes())
        .merge(handlers::audit::routes())
        .merge(handlers::evidence::routes())
        .merge(handlers::servers::routes())
        .merge(handlers::rollouts::routes())
        .merge(handlers::fleet::routes())
        .merge(handlers::reconciliation::routes())
        // Inside the policy check: Idempotency-Key on POSTs, scoped by the authorized caller.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .merge(openapi::routes())
        // Every matched route passes the policy table first (after all merges, so it covers
        // every route; before the fallback, which needs no token).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            policy::authorize,
        ))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The layers every response passes, outermost last: the guard (head size, per-address rate,
/// deadline), the request span, the request id. Applied once the public routes are merged in.
pub fn edge(router: Router, state: &AppState) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(
            state.limits.clone(),
            guard::guard,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |req: &axum::http::Request<axum::body::Body>| {
                    let rid = req
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(),
                                        request_id = %rid, subject = tracing::field::Empty)
                },
            ),
        )
        .layer(axum::middleware::from_fn(request_id::layer))
}
