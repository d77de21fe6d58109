//! Crash safety: the real `tenant-control-plane` binary is killed with SIGKILL right after a
//! step's side effect, restarted, and must converge. Every registered workflow goes through
//! `tcp_tests::workflow_suite::crash_after_every_step` (each step, and each undo of an
//! undo-workflow); emergency rotation is checked here beyond that.
//!
//! An in-process control plane with a sweeper that never runs observes the catalog, the server
//! and the secret store; only the child process runs operations.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use api_types::{OperationKind, OperationState};
use tcp_tests::{workflow_suite, EngineUnderTest, RealServer, TestEnv};
use workflows::Faults;

tcp_tests::conformance!(
    every_workflow_converges_after_a_crash_after_every_step,
    emergency_rotation_converges_after_a_crash_after_every_step,
);

async fn observer(engine: EngineUnderTest) -> TestEnv {
    TestEnv::with(engine, Faults::none(), |c| {
        c.sweep_interval_secs = 3600;
        c.node_id = Some(format!("observer-{}", uuid::Uuid::new_v4().simple()));
    })
    .await
}

async fn every_workflow_converges_after_a_crash_after_every_step(engine: EngineUnderTest) {
    workflow_suite::crash_after_every_step(engine).await;
}

async fn emergency_rotation_converges_after_a_crash_after_every_step(engine: EngineUnderTest) {
    let env = observer(engine).await;
    let slug = "crash-rot";
    env.onboard(slug).await;
    let names = env.secret_names(slug);
    let mut rotations = 0;
    // Scheduled rotations are covered step by step by the generic suite; here the emergency
    // mode, and what only rotation promises: one version per rotation, one marked active, the
    // previous login refused.
    let steps = tcp_tests::step_names(&OperationKind::ROTATE, env.app.engine.as_ref());
    let mode = "emergency";
    {
        for step in &steps {
            let before = env.secret(&names.app).await;
            let server =
                RealServer::spawn(&env, "crash-node", &format!("crash:rotate:{step}"), &[]).await;
            let id = server
                .start(
                    &env,
                    &format!("/v1/tenants/{slug}/rotate"),
                    serde_json::json!({ "mode": mode }),
                )
                .await;
            server.wait_killed(&env, Some(id)).await;
            let _server = RealServer::spawn(&env, "crash-node", "", &[]).await;
            let op = env.wait(id).await;
            assert_eq!(
                op.state,
                OperationState::Succeeded,
                "{mode} rotation after a crash at {step}: {op:#?}"
            );
            rotations += 1;
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
