//! Conformance-suite harness: every test runs per engine — on a real PostgreSQL 15 cluster
//! started by the tests themselves (its own temp dir, a free port, a generated superuser
//! password), and on the SQL Server named by `MSSQL_URL` when it is set — with a control plane
//! per test that has its own catalog database, data directory and node id. Nothing is mocked:
//! the router, the workflow runner, the engine and the secret store are the production ones;
//! [`probe`] says what a test does to a tenant database in each engine's SQL.
//!
//! The cluster is started once per test process and stopped by a watchdog shell when the process
//! exits (Rust runs no destructors for statics), so no cluster outlives its tests.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod arm;
pub mod bench;
pub mod blob;
pub mod cluster;
pub mod env;
pub mod keyvault;
pub mod probe;
pub mod real_server;
pub mod releases;
pub mod workflow_suite;

pub use cluster::{free_port, server_binary, PgCluster};
pub use env::{EngineUnderTest, Snapshot, TestEnv, SQLSERVER_SKIPPED};
pub use keyvault::{KeyVaultDouble, KeyVaultDoubleOptions, LoggedRequest};
pub use real_server::RealServer;

/// The `tenantctl` binary, built (or brought up to date) once per test process.
pub fn tenantctl_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "tenantctl", "--bin", "tenantctl"])
            .arg("--manifest-path")
            .arg(&manifest)
            .status()
            .unwrap();
        assert!(status.success(), "cargo build of tenantctl failed");
        // target/<profile>/deps/<test exe> → target/<profile>/tenantctl
        let exe = std::env::current_exe().unwrap();
        let bin = exe
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .join("tenantctl");
        assert!(bin.exists(), "tenantctl not found at {}", bin.display());
        bin
    })
    .clone()
}

/// Runs `tenantctl` with `args` (no server, no configuration: for its offline commands).
pub fn tenantctl(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tenantctl_binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("TENANTCTL_") || k.starts_with("TENANT_CP_") || k == "XDG_CONFIG_HOME" {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home.path())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The step names an operation of `kind` gets on `engine` (from the workflow registry).
pub fn step_names(
    kind: &api_types::OperationKind,
    engine: &dyn engine::Engine,
) -> Vec<&'static str> {
    workflows::registry::find(kind)
        .unwrap_or_else(|| panic!("no workflow {kind}"))
        .steps(engine.name())
        .iter()
        .map(|s| s.name)
        .collect()
}

/// Declares conformance tests: each listed `async fn name(engine: EngineUnderTest)` runs once as
/// `postgres::name` on the harness's PostgreSQL and once as `sqlserver::name` on the SQL Server
/// named by `MSSQL_URL` (which prints [`SQLSERVER_SKIPPED`] and returns when it is not set;
/// `make test` leaves those out and prints the same line, so the skip is never silent).
#[macro_export]
macro_rules! conformance {
    ($($test:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::EngineUnderTest::Postgres).await;
                }
            )+
        }
        mod sqlserver {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(engine) = $crate::EngineUnderTest::sqlserver() {
                        super::$test(engine).await;
                    }
                }
            )+
        }
    };
}
