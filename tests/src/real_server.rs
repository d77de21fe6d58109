//! The real `tenant-control-plane` binary as a child process on a test's catalog and data
//! directory: the crash tests kill it with injected faults, the CLI tests drive it with
//! `tenantctl`. One helper, so every such test starts it the same way.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, server_binary, TestEnv};

/// A running server binary; killed when dropped.
pub struct RealServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealServer {
    /// Starts the binary configured like `env` (engine, catalog, data directory, local tokens)
    /// as node `node`, with `TENANT_CP_FAULTS=faults`, a one-second sweep, no rotation
    /// scheduler, and `extra` environment variables; waits until `/healthz` answers.
    pub async fn spawn(env: &TestEnv, node: &str, faults: &str, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(server_binary())
            .envs(env.server_env())
            .env("TENANT_CP_AUTH_MODE", "local")
            .env("TENANT_CP_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANT_CP_DATA_DIR", env.data_dir())
            .env("TENANT_CP_NODE_ID", node)
            .env("TENANT_CP_SWEEP_INTERVAL_SECS", "1")
            .env("TENANT_CP_ROTATION_SCHEDULER", "false")
            .env("TENANT_CP_FAULTS", faults)
            .env("TENANT_CP_LOG", "warn")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = RealServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", server.base)).await {
                if r.status().is_success() {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs as an operator and returns the started operation's id (expects 202).
    pub async fn start(&self, env: &TestEnv, path: &str, body: serde_json::Value) -> uuid::Uuid {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(env.token("operator"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "POST {path}");
        let v: serde_json::Value = resp.json().await.unwrap();
        v["operation"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// Waits until an injected `crash` fault killed the process (SIGKILL), at most 60 s. On a
    /// timeout the panic shows `operation` (state, steps, errors) as the catalog has it, so a
    /// crash point that was never reached says which step the run was at instead.
    pub async fn wait_killed(mut self, env: &TestEnv, operation: Option<uuid::Uuid>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.signal(), Some(9), "expected SIGKILL, got {status:?}");
                return;
            }
            if Instant::now() >= deadline {
                let op = match operation {
                    Some(id) => format!("{:#?}", env.app.catalog.operation(id).await),
                    None => "-".to_owned(),
                };
                panic!("the injected crash did not happen within 60 s; the operation: {op}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
