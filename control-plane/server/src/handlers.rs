//! Layer: handlers, one module per resource. Each owns its request and response types (and
//! their `#[utoipa::path]`s and schemas) and exposes `routes()`, which `router.rs` merges. A
//! handler module uses the layers below it (state and extractors, services and views, and
//! middleware types such as the investigation events the idempotency layer replays), never
//! another handler module or the router; what two resources share belongs in `service.rs` or
//! `view.rs`.

pub mod audit;
pub mod evidence;
pub mod exports;
pub mod fleet;
pub mod health;
pub mod investigations;
pub mod metrics;
pub mod migrations;
pub mod operations;
pub mod reconciliation;
pub mod rollouts;
pub mod rotations;
pub mod servers;
pub mod tenants;
