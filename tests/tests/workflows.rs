//! Fail-at-every-step, fail-at-every-undo and run-every-step-twice, through the real runner and
//! engine: the generic checks of `tcp_tests::workflow_suite` for every registered workflow, plus
//! what only onboarding and offboarding promise (one secret version, one provisioning event, a
//! certificate that names everything).
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use api_types::{OperationState, TenantSlug, TenantState};
use tcp_tests::{workflow_suite, EngineUnderTest, TestEnv};
use workflows::{FaultAction, Faults};

tcp_tests::conformance!(
    every_workflow_converges_after_a_failure_at_every_step,
    every_undo_workflow_is_cleaned_up_after_its_undo_fails_at_every_step,
    every_workflow_converges_with_every_step_run_twice,
    every_step_run_twice_reaches_the_same_end_state,
    an_offboarding_that_failed_after_a_removal_still_certifies_everything,
    offboarding_finishes_off_a_tenant_whose_rollback_could_not_finish,
);

async fn every_workflow_converges_after_a_failure_at_every_step(engine: EngineUnderTest) {
    workflow_suite::fail_at_every_step(engine).await;
}

async fn every_undo_workflow_is_cleaned_up_after_its_undo_fails_at_every_step(
    engine: EngineUnderTest,
) {
    workflow_suite::fail_at_every_undo(engine).await;
}

async fn every_workflow_converges_with_every_step_run_twice(engine: EngineUnderTest) {
    workflow_suite::every_step_twice(engine).await;
}

/// A failure after `drop_database` or `drop_principals` leaves the next attempt nothing to see
/// of what was removed: the certificate still names it (the inventories are merged).
async fn an_offboarding_that_failed_after_a_removal_still_certifies_everything(
    engine: EngineUnderTest,
) {
    for step in ["drop_database", "drop_principals"] {
        let slug = format!("cert-{}", step.replace('_', "-"));
        let env = TestEnv::with(
            engine.clone(),
            Faults::single(FaultAction::Fail, "offboard", step),
            |_| {},
        )
        .await;
        let empty = env.snapshot(&[&slug]).await;
        env.onboard(&slug).await;
        let op = env.wait(env.start_offboard(&slug).await).await;
        assert_eq!(op.state, OperationState::Failed, "{step}: {op:#?}");
        let tenant = env
            .app
            .catalog
            .tenant_by_slug(&TenantSlug::parse(&slug).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tenant.state, TenantState::Offboarding, "{step}");
        let env = env.restart(Faults::none()).await;
        env.offboard(&slug).await;
        assert_eq!(env.snapshot(&[&slug]).await, empty, "{step}");
        let cert = env
            .app
            .catalog
            .deletion_certificate(tenant.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            cert.detail["removed"]["principals"]
                .as_array()
                .map(Vec::len),
            Some(env.full_principals()),
            "{step}"
        );
        assert!(cert.detail["removed"]["database"].is_string(), "{step}");
        // The archive the failed offboarding wrote before its drop is the one certified.
        assert!(
            cert.detail["audit_archive"]["key"].is_string(),
            "{step}: {}",
            cert.detail
        );
    }
}

async fn every_step_run_twice_reaches_the_same_end_state(engine: EngineUnderTest) {
    let env = TestEnv::with(engine, Faults::parse("twice:*:*").unwrap(), |_| {}).await;
    let probe = env.probe();
    let slug = "twice-each";
    let empty = env.snapshot(&[slug]).await;
    env.onboard(slug).await;
    let snap = env.snapshot(&[slug]).await;
    assert_eq!(snap.databases.len(), 1);
    assert_eq!(snap.principals.len(), env.full_principals());
    assert_eq!(snap.secrets.len(), 3);
    // The password written to the secret store is the one the principal has (not a second one).
    let mut app = probe
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    app.customer_upsert(None, "Twice", None).await.unwrap();
    let versions = env
        .app
        .secrets
        .list_versions(&secrets::SecretName::new(&env.secret_names(slug).app).unwrap())
        .await
        .unwrap();
    assert_eq!(
        versions.len(),
        1,
        "store_credentials twice wrote one version"
    );
    let actions = probe
        .admin(&env.names(slug).database)
        .await
        .audit_actions()
        .await
        .unwrap();
    let provisioned = actions
        .iter()
        .filter(|a| *a == "tenant.provisioned")
        .count();
    assert_eq!(provisioned, 1, "{actions:?}");
    drop(app);
    let op = env.offboard(slug).await;
    assert_eq!(env.snapshot(&[slug]).await, empty);
    let tenant = env.app.catalog.tenant(op.tenant_id).await.unwrap().unwrap();
    let log = env.app.catalog.audit_log(Some(tenant.id)).await.unwrap();
    let certs = log
        .iter()
        .filter(|r| r.action == "tenant.deletion_certificate")
        .count();
    assert_eq!(certs, 1);
    let cert = env
        .app
        .catalog
        .deletion_certificate(tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cert.detail["removed"]["principals"]
            .as_array()
            .map(Vec::len),
        Some(env.full_principals())
    );
}

async fn offboarding_finishes_off_a_tenant_whose_rollback_could_not_finish(
    engine: EngineUnderTest,
) {
    // Onboarding fails at bind_database and the undo of create_database reports failure every
    // time: the rollback gives up, leaving a failed tenant with leftovers.
    let env = TestEnv::with(
        engine,
        Faults::parse("fail:onboard:bind_database,fail:onboard-undo:create_database").unwrap(),
        |_| {},
    )
    .await;
    let slug = "half-done";
    let empty = env.snapshot(&[slug]).await;
    let op = env.wait(env.start_onboard(slug).await).await;
    assert_eq!(op.state, OperationState::Failed, "{op:#?}");
    assert!(
        op.error
            .as_deref()
            .unwrap_or_default()
            .contains("offboard the tenant"),
        "{op:?}"
    );
    let left = env.snapshot(&[slug]).await;
    // The fault fired after the database was dropped; server-wide principals (PostgreSQL)
    // and secrets are still there. Contained users (SQL Server) went with the database.
    let principals_left = if env.app.engine.contained_principals() {
        0
    } else {
        env.full_principals()
    };
    assert_eq!(left.principals.len(), principals_left, "{left:?}");
    assert_eq!(left.secrets.len(), 3, "{left:?}");
    assert_eq!(
        left.live_tenants,
        vec![(slug.to_owned(), "failed".to_owned())]
    );
    // The slug stays claimed while leftovers exist.
    let (status, _) = env
        .call(
            axum::http::Method::POST,
            "/v1/tenants",
            Some(serde_json::json!({"slug": slug, "display_name": "again"})),
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::CONFLICT);
    let env = env.restart(Faults::none()).await;
    env.offboard(slug).await;
    assert_eq!(env.snapshot(&[slug]).await, empty);
}
