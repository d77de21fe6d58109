//! Test harness: a real PostgreSQL 15 cluster started by the tests themselves (its own temp dir,
//! a free port, a generated superuser password), and a control plane per test with its own
//! catalog database, data directory and node id. Nothing is mocked: the router, the workflow
//! runner, the engine and the secret store are the production ones.
//!
//! The cluster is started once per test process and stopped by a watchdog shell when the process
//! exits (Rust runs no destructors for statics), so no cluster outlives its tests.

#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod env;
pub mod probe;

pub use cluster::{free_port, server_binary, PgCluster};
pub use env::{Snapshot, TestEnv};
