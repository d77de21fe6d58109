//! Issue 16, the restore window. An offboarding with `"retention"` leaves the tenant `retained`:
//! its logins refused at once, its secrets soft-deleted, its database and data kept. A restore
//! within the window brings it back with new credentials (the old connection strings stay dead);
//! when the window ends, the purge offboards it and the deletion certificate says until when the
//! data was kept. Crash, fail-at-every-step and run-twice for both workflows are the generic
//! suite's (`workflows.rs`, `crash.rs`): they iterate the registry.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use api_types::{OperationState, TenantSlug, TenantState};
use axum::http::{Method, StatusCode};
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(
    a_retained_tenant_is_closed_kept_and_restored_with_new_credentials,
    when_the_window_ends_the_purge_removes_everything_and_certifies_it,
    retention_requests_are_checked_and_a_restore_needs_a_retained_tenant,
    a_restore_that_fails_is_undone_and_leaves_the_tenant_closed,
    a_purge_that_failed_is_tried_again_after_its_back_off,
);

async fn tenant(env: &TestEnv, slug: &str) -> catalog::TenantRecord {
    env.app
        .catalog
        .tenant_by_slug(&TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap()
}

async fn a_retained_tenant_is_closed_kept_and_restored_with_new_credentials(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "kept-co";
    env.onboard(slug).await;
    let names = env.secret_names(slug);
    let old_app = env.secret(&names.app).await;
    let old_investigator = env.secret(&names.investigator).await;
    let mut app = env.probe().login(&old_app).await.unwrap();
    let customer = app.customer_upsert(None, "Ada", None).await.unwrap();
    drop(app);

    let asked = chrono::Utc::now();
    let op = env.retain(slug, "P7D").await;
    assert_eq!(op.kind.as_str(), "retain");
    let t = tenant(&env, slug).await;
    assert_eq!(t.state, TenantState::Retained);
    let until = t.retained_until.unwrap();
    let week = chrono::Duration::days(7);
    assert!(
        until >= asked + week && until <= chrono::Utc::now() + week,
        "{until}"
    );
    let (status, shown) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["state"], "retained");
    assert!(shown["retained_until"].is_string(), "{shown}");

    // Closed to everyone, but nothing is gone.
    assert!(
        env.probe().login(&old_app).await.is_err(),
        "the app still logs in"
    );
    assert!(
        env.probe().login(&old_investigator).await.is_err(),
        "the investigator still logs in"
    );
    let snap = env.snapshot(&[slug]).await;
    assert_eq!(snap.databases.len(), 1, "{snap:?}");
    assert_eq!(snap.principals.len(), env.full_principals(), "{snap:?}");
    assert_eq!(
        snap.secrets.len(),
        3,
        "soft-deleted secrets are kept: {snap:?}"
    );
    let app_secret = secrets::SecretName::new(&names.app).unwrap();
    assert!(env.app.secrets.get(&app_secret, None).await.is_err());
    assert!(env.app.secrets.get_deleted(&app_secret).await.is_ok());

    // Restored: active again, new credentials that work, the old ones still dead, data intact.
    let op = env.restore(slug).await;
    assert_eq!(op.kind.as_str(), "restore");
    let t = tenant(&env, slug).await;
    assert_eq!(t.state, TenantState::Active);
    assert_eq!(t.retained_until, None);
    let new_app = env.secret(&names.app).await;
    assert_ne!(new_app.expose(), old_app.expose());
    let mut app = env.probe().login(&new_app).await.unwrap();
    assert_eq!(app.customer_name(customer).await.unwrap(), "Ada");
    app.customer_upsert(None, "Grace", None).await.unwrap();
    assert!(
        env.probe().login(&old_app).await.is_err(),
        "the old string works again"
    );
    let new_investigator = env.secret(&names.investigator).await;
    env.probe().login(&new_investigator).await.unwrap();
    let (status, shown) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.get("retained_until").is_none(), "{shown}");

    // The audit log is whole (the chain verifies across the window), and an ordinary
    // offboarding afterwards certifies no window.
    let (status, verified) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/audit/verify"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_eq!(verified["valid"], true, "{verified}");
    env.offboard(slug).await;
    let (status, certificate) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/deletion-certificate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{certificate}");
    assert!(
        certificate["payload"]["restore_window"].is_null(),
        "{certificate}"
    );
    assert_eq!(env.snapshot(&[slug]).await.databases.len(), 0);
}

async fn when_the_window_ends_the_purge_removes_everything_and_certifies_it(
    engine: EngineUnderTest,
) {
    // The server's own purge task, looking every second.
    let env = TestEnv::with(engine, workflows::Faults::none(), |c| {
        c.retention_purge_interval_secs = 1;
    })
    .await;
    let slug = "purged-co";
    let empty = env.snapshot(&[slug]).await;
    env.onboard(slug).await;
    let retain = env.retain(slug, "PT2S").await;
    let until = tenant(&env, slug).await.retained_until.unwrap();

    // Waiting for the purge: the tenant is offboarded and released, nothing is left.
    let started = Instant::now();
    let t = loop {
        let t = tenant(&env, slug).await;
        if t.state == TenantState::Offboarded {
            break t;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not purged: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(t.released_at.is_some());
    assert_eq!(t.retained_until, None);
    assert_eq!(
        env.snapshot(&[slug]).await,
        empty,
        "leftovers after the purge"
    );

    // A restore now is refused: there is nothing to restore.
    let (status, problem) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/restore"),
            Some(serde_json::json!({"confirm": slug, "reason": "too late"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // The certificate: who asked for the window and until when, the purge's own reason, the
    // archived audit log, and when the data was really gone (after the window ended).
    let (status, certificate) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/deletion-certificate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{certificate}");
    let payload = &certificate["payload"];
    let window = &payload["restore_window"];
    assert_eq!(window["operation_id"], retain.id.to_string(), "{payload}");
    assert_eq!(window["reason"], "test");
    let certified_until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(window["until"].clone()).unwrap();
    assert_eq!(certified_until, until);
    let completed: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(payload["completed_at"].clone()).unwrap();
    assert!(
        completed >= until,
        "gone at {completed}, before the window ended"
    );
    assert!(payload["reason"]
        .as_str()
        .unwrap()
        .contains("restore window ended"));
    assert_eq!(payload["requested_by"], workflows::PURGE_ACTOR);
    assert_eq!(payload["audit_archive"]["chain_valid"], true, "{payload}");
    assert_eq!(payload["verified_absent"], true);
}

async fn retention_requests_are_checked_and_a_restore_needs_a_retained_tenant(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "window-rules";
    env.onboard(slug).await;
    let offboard = format!("/v1/tenants/{slug}/offboard");
    let restore = format!("/v1/tenants/{slug}/restore");

    // A window with no fixed length, or none at all that parses, is refused naming why (422, as
    // every body that does not fit its type).
    for (retention, why) in [("P1M", "no fixed length"), ("7 days", "must start with P")] {
        let (status, problem) = env
            .call(
                Method::POST,
                &offboard,
                Some(serde_json::json!({"confirm": slug, "reason": "r", "retention": retention})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{retention}: {problem}"
        );
        assert!(
            problem["detail"].as_str().unwrap_or_default().contains(why),
            "{retention}: {problem}"
        );
    }
    // An active tenant has nothing to restore; a wrong confirmation is a 400.
    let (status, problem) = env
        .call(
            Method::POST,
            &restore,
            Some(serde_json::json!({"confirm": slug, "reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    env.retain(slug, "P1D").await;
    let (status, problem) = env
        .call(
            Method::POST,
            &restore,
            Some(serde_json::json!({"confirm": "other", "reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    // A retained tenant is not retained again, nor migrated, exported or rotated; P0D removes
    // it now.
    for (role, path) in [
        ("admin", format!("/v1/tenants/{slug}/migrate")),
        ("operator", format!("/v1/tenants/{slug}/exports")),
    ] {
        let (status, problem) = env
            .call_as(role, Method::POST, &path, Some(serde_json::json!({})))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {problem}");
    }
    let (status, problem) = env
        .call(
            Method::POST,
            &offboard,
            Some(serde_json::json!({"confirm": slug, "reason": "r", "retention": "P2D"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, problem) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/rotate"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, accepted) = env
        .call(
            Method::POST,
            &offboard,
            Some(serde_json::json!({"confirm": slug, "reason": "now", "retention": "P0D"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["operation"]["kind"], "offboard");
    let id = accepted["operation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
    assert_eq!(env.snapshot(&[slug]).await.databases.len(), 0);
}

/// A restore that fails at its last step (every login renewed, the database open) is undone:
/// the tenant reads `retained` and is closed as it was: secrets soft-deleted, and even the
/// password the failed restore gave the app refused.
async fn a_restore_that_fails_is_undone_and_leaves_the_tenant_closed(engine: EngineUnderTest) {
    let env = TestEnv::with(
        engine,
        workflows::Faults::single(workflows::FaultAction::Fail, "restore", "check_credentials"),
        |_| {},
    )
    .await;
    let slug = "undone-co";
    env.onboard(slug).await;
    env.retain(slug, "P1D").await;
    let op = env.wait(env.start_restore(slug).await).await;
    assert_eq!(op.state, OperationState::RolledBack, "{op:#?}");
    let t = tenant(&env, slug).await;
    assert_eq!(t.state, TenantState::Retained);
    assert!(t.retained_until.is_some());
    let app = secrets::SecretName::new(&env.secret_names(slug).app).unwrap();
    assert!(
        env.app.secrets.get(&app, None).await.is_err(),
        "the app secret resolves"
    );
    // What the failed restore published, read back by recovering it by hand: refused.
    env.app.secrets.recover(&app).await.unwrap();
    let renewed = env.secret(&env.secret_names(slug).app).await;
    let current = env.app.secrets.get(&app, None).await.unwrap();
    assert_eq!(current.properties.tags["operation"], op.id.to_string());
    assert!(
        env.probe().login(&renewed).await.is_err(),
        "the login a failed restore renewed still works"
    );
    env.app.secrets.delete(&app).await.unwrap();
    // Without the fault it restores.
    let env = env.restart(workflows::Faults::none()).await;
    env.restore(slug).await;
    env.probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
}

/// The purge's offboarding fails: the tenant keeps its window's end (offboarding), so the purge
/// finds it again, once its back-off has passed and not before.
async fn a_purge_that_failed_is_tried_again_after_its_back_off(engine: EngineUnderTest) {
    let env = TestEnv::with(
        engine,
        workflows::Faults::single(workflows::FaultAction::Fail, "offboard", "drop_principals"),
        |_| {},
    )
    .await;
    let slug = "retried-co";
    env.onboard(slug).await;
    env.retain(slug, "PT1S").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let purge = workflows::Orchestrator::new(env.app.runner.clone());
    let started = purge.purge_due_once(16).await.unwrap();
    assert_eq!(started.len(), 1);
    let op = env.wait(started[0].id).await;
    assert_eq!(op.state, OperationState::Failed, "{op:#?}");
    let t = tenant(&env, slug).await;
    assert_eq!(t.state, TenantState::Offboarding);
    assert!(
        t.retained_until.is_some(),
        "the failed purge forgot the window"
    );
    let now = chrono::Utc::now();
    let hour = chrono::Duration::hours(1);
    let catalog = &env.app.catalog;
    assert!(catalog
        .retention_due(now, now - hour, 16)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        catalog.retention_due(now, now + hour, 16).await.unwrap(),
        vec![t.id],
        "a failed purge is never tried again"
    );
    // The next purge (here, an operator's offboarding) finishes it and clears the window.
    let env = env.restart(workflows::Faults::none()).await;
    env.offboard(slug).await;
    let t = tenant(&env, slug).await;
    assert_eq!(t.state, TenantState::Offboarded);
    assert_eq!(t.retained_until, None);
}
