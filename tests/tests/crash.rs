//! Crash safety: the real `tenant-control-plane` binary is killed with SIGKILL right after a
//! step's side effect, restarted, and must converge: onboarding to a fully active tenant,
//! offboarding to nothing left, a rollback to exactly the state before.
//!
//! An in-process control plane with a sweeper that never runs observes the catalog, the server
//! and the secret store; only the child process runs operations.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_types::{OperationState, TenantSlug, TenantState};
use tcp_tests::{free_port, server_binary, EngineUnderTest, TestEnv};
use workflows::{onboard_steps, Faults, OFFBOARD_STEPS, ROTATE_STEPS};

tcp_tests::conformance!(
    onboarding_converges_after_a_crash_after_every_step,
    offboarding_converges_after_a_crash_after_every_step,
    rollback_converges_after_a_crash_during_the_undo,
    rotation_converges_after_a_crash_after_every_step,
);

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn observer(engine: EngineUnderTest) -> TestEnv {
    TestEnv::with(engine, Faults::none(), |c| {
        c.sweep_interval_secs = 3600;
        c.node_id = Some(format!("observer-{}", uuid::Uuid::new_v4().simple()));
    })
    .await
}

async fn spawn(env: &TestEnv, faults: &str) -> Server {
    let port = free_port();
    let child = Command::new(server_binary())
        .envs(env.server_env())
        .env("TENANT_CP_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_CP_DATA_DIR", env.data_dir())
        .env("TENANT_CP_NODE_ID", "crash-node")
        .env("TENANT_CP_SWEEP_INTERVAL_SECS", "1")
        .env("TENANT_CP_FAULTS", faults)
        .env("TENANT_CP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
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

async fn post(env: &TestEnv, server: &Server, path: &str, body: serde_json::Value) -> uuid::Uuid {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .bearer_auth(env.token("operator"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["operation"]["id"].as_str().unwrap().parse().unwrap()
}

async fn wait_killed(mut server: Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert_eq!(status.signal(), Some(9), "expected SIGKILL, got {status:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the injected crash did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn onboard_with_crash(env: &TestEnv, slug: &str, faults: &str) -> uuid::Uuid {
    let server = spawn(env, faults).await;
    let id = post(
        env,
        &server,
        "/v1/tenants",
        serde_json::json!({"slug": slug, "display_name": slug}),
    )
    .await;
    wait_killed(server).await;
    id
}

async fn assert_active_and_working(env: &TestEnv, slug: &str) {
    let t = env
        .app
        .catalog
        .tenant_by_slug(&TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.state, TenantState::Active);
    let snap = env.snapshot(&[slug]).await;
    assert_eq!(
        (
            snap.databases.len(),
            snap.principals.len(),
            snap.secrets.len()
        ),
        (1, env.full_principals(), 3),
        "{snap:?}"
    );
    let url = env.secret(&env.secret_names(slug).app).await;
    let mut app = env.probe().login(&url).await.unwrap();
    app.customer_upsert(None, "after crash", None)
        .await
        .unwrap();
}

async fn onboarding_converges_after_a_crash_after_every_step(engine: EngineUnderTest) {
    let env = observer(engine).await;
    for (i, step) in onboard_steps(env.app.engine.contained_principals())
        .iter()
        .enumerate()
    {
        let slug = format!("crash-on-{i}");
        let id = onboard_with_crash(&env, &slug, &format!("crash:onboard:{step}")).await;
        let _server = spawn(&env, "").await;
        let op = env.wait(id).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "after a crash at {step}: {op:#?}"
        );
        assert_active_and_working(&env, &slug).await;
    }
}

async fn offboarding_converges_after_a_crash_after_every_step(engine: EngineUnderTest) {
    let env = observer(engine).await;
    for (i, step) in OFFBOARD_STEPS.iter().enumerate() {
        let slug = format!("crash-off-{i}");
        let empty = env.snapshot(&[&slug]).await;
        {
            let server = spawn(&env, "").await;
            let id = post(
                &env,
                &server,
                "/v1/tenants",
                serde_json::json!({"slug": slug, "display_name": slug}),
            )
            .await;
            assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
        }
        let server = spawn(&env, &format!("crash:offboard:{step}")).await;
        let id = post(
            &env,
            &server,
            &format!("/v1/tenants/{slug}/offboard"),
            serde_json::json!({"confirm": slug, "reason": "crash test"}),
        )
        .await;
        wait_killed(server).await;
        let _server = spawn(&env, "").await;
        let op = env.wait(id).await;
        assert_eq!(
            op.state,
            OperationState::Succeeded,
            "after a crash at {step}: {op:#?}"
        );
        assert_eq!(
            env.snapshot(&[&slug]).await,
            empty,
            "leftovers after a crash at {step}"
        );
        let log = env.app.catalog.audit_log(Some(op.tenant_id)).await.unwrap();
        let certs: Vec<_> = log
            .iter()
            .filter(|r| r.action == "tenant.deletion_certificate")
            .collect();
        assert_eq!(certs.len(), 1, "{step}");
        assert_eq!(
            certs[0].detail["removed"]["principals"]
                .as_array()
                .map(Vec::len),
            Some(env.full_principals()),
            "{step}"
        );
    }
}

async fn rollback_converges_after_a_crash_during_the_undo(engine: EngineUnderTest) {
    let env = observer(engine).await;
    for step in ["store_credentials", "create_principals", "create_database"] {
        let slug = format!("crash-undo-{}", step.replace('_', "-"));
        let empty = env.snapshot(&[&slug]).await;
        let id = onboard_with_crash(
            &env,
            &slug,
            &format!("fail:onboard:bind_database,crash:onboard-undo:{step}"),
        )
        .await;
        let _server = spawn(&env, "").await;
        let op = env.wait(id).await;
        assert_eq!(
            op.state,
            OperationState::RolledBack,
            "crash undoing {step}: {op:#?}"
        );
        assert_eq!(
            env.snapshot(&[&slug]).await,
            empty,
            "leftovers after a crash undoing {step}"
        );
    }
}

async fn rotation_converges_after_a_crash_after_every_step(engine: EngineUnderTest) {
    let env = observer(engine).await;
    let slug = "crash-rot";
    {
        let server = spawn(&env, "").await;
        let id = post(
            &env,
            &server,
            "/v1/tenants",
            serde_json::json!({"slug": slug, "display_name": slug}),
        )
        .await;
        assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
    }
    let names = env.secret_names(slug);
    let mut rotations = 0;
    for mode in ["scheduled", "emergency"] {
        for step in ROTATE_STEPS {
            let before = env.secret(&names.app).await;
            let server = spawn(&env, &format!("crash:rotate:{step}")).await;
            let id = post(
                &env,
                &server,
                &format!("/v1/tenants/{slug}/rotate"),
                serde_json::json!({ "mode": mode }),
            )
            .await;
            wait_killed(server).await;
            let _server = spawn(&env, "").await;
            let op = env.wait(id).await;
            assert_eq!(
                op.state,
                OperationState::Succeeded,
                "{mode} rotation after a crash at {step}: {op:#?}"
            );
            rotations += 1;
            assert_active_and_working(&env, slug).await;
            let after = env.secret(&names.app).await;
            assert_ne!(after.expose(), before.expose(), "{mode} {step}");
            let versions = env
                .app
                .secrets
                .list_versions(&secrets::SecretName::new(&names.app).unwrap())
                .await
                .unwrap();
            // One version per rotation, however often a step ran; exactly one marked active.
            assert_eq!(versions.len(), rotations + 1, "{mode} {step}");
            let active = versions
                .iter()
                .filter(|v| v.tags.get("active").map(String::as_str) == Some("true"))
                .count();
            assert_eq!(active, 1, "{mode} {step}: {versions:#?}");
            if mode == "emergency" {
                assert!(
                    env.probe().login(&before).await.is_err(),
                    "emergency rotation crashed at {step} left the previous login working"
                );
            }
            for name in [&names.audit_admin, &names.investigator] {
                env.probe()
                    .login(&env.secret(name).await)
                    .await
                    .unwrap_or_else(|e| panic!("{name} after a crash at {step}: {e:?}"));
            }
        }
    }
}
