//! Lifecycle: onboard → use the app connection string → offboard → nothing left anywhere.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use api_types::{OperationState, TenantState};
use axum::http::{Method, StatusCode};
use engine::postgres::Provisioning;
use tcp_tests::env::{connect, sqlstate, superuser};
use tcp_tests::TestEnv;
use workflows::Faults;

async fn lifecycle(env: &TestEnv, slug: &str) {
    let op = env.onboard(slug).await;
    let steps: Vec<_> = op
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect();
    assert!(
        steps
            .iter()
            .all(|(_, s)| *s == api_types::StepState::Succeeded),
        "{steps:?}"
    );

    let (status, tenant) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tenant["state"], "active");
    assert_eq!(tenant["schema_version"], 2);
    assert_eq!(tenant["secrets"]["app"], format!("tenant-{slug}-app"));
    let body = tenant.to_string();
    let secrets = env.secret_names(slug);
    let app_url = env.secret(&secrets.app).await;
    assert!(
        !body.contains(app_url.expose()),
        "secret value leaked into the API"
    );

    // The application works through the named functions only.
    let app = connect(app_url.expose()).await.unwrap();
    let customer: uuid::Uuid = app
        .query_one(
            "SELECT app.customer_upsert(NULL, 'Ada', 'ada@example.com')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let period: uuid::Uuid = app
        .query_one("SELECT app.period_open('2026-01-01', '2026-01-31')", &[])
        .await
        .unwrap()
        .get(0);
    let invoice: uuid::Uuid = app
        .query_one(
            "SELECT app.invoice_create($1, $2, 'INV-1', '2026-01-15')",
            &[&customer, &period],
        )
        .await
        .unwrap()
        .get(0);
    app.execute(
        "SELECT app.invoice_add_line($1, 'Consulting', 3, 100.50)",
        &[&invoice],
    )
    .await
    .unwrap();
    app.execute("SELECT app.invoice_post($1)", &[&invoice])
        .await
        .unwrap();
    app.execute("SELECT app.period_close($1)", &[&period])
        .await
        .unwrap();
    let invoice_json: serde_json::Value = app
        .query_one("SELECT app.invoice_get($1)", &[&invoice])
        .await
        .unwrap()
        .get(0);
    assert_eq!(invoice_json["status"], "posted", "{invoice_json}");
    let name: String = app
        .query_one("SELECT name FROM app.customer_get($1)", &[&customer])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Ada");

    // Every business call left an audit event, and the chain verifies.
    let tenant_db = superuser(&env.names(slug).database).await;
    let actions: Vec<String> = tenant_db
        .query("SELECT action FROM audit.audit_events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "tenant.provisioned",
        "customer.upsert",
        "invoice.create",
        "invoice.post",
        "period.close",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    let valid: bool = tenant_db
        .query_one("SELECT valid FROM audit.verify_chain()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    drop(tenant_db);
    drop(app);

    let audit_url = env.secret(&secrets.audit_admin).await;
    let investigator_url = env.secret(&secrets.investigator).await;

    let op = env.offboard(slug).await;
    assert_eq!(op.state, OperationState::Succeeded);
    let after = env.snapshot(&[slug]).await;
    assert!(after.databases.is_empty(), "{after:?}");
    assert!(after.roles.is_empty(), "{after:?}");
    assert!(after.secrets.is_empty(), "{after:?}");
    assert!(after.live_tenants.is_empty(), "{after:?}");

    let (status, tenant) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tenant["state"], TenantState::Offboarded.as_str());

    // The old connection strings no longer authenticate.
    for url in [&app_url, &audit_url, &investigator_url] {
        let err = connect(url.expose())
            .await
            .err()
            .expect("old connection string still connects");
        assert_eq!(sqlstate(&err), "28P01", "{err}");
    }

    // The deletion certificate names what was removed and the final audit-chain head.
    let tenant_id: uuid::Uuid = tenant["id"].as_str().unwrap().parse().unwrap();
    let cert = env
        .app
        .catalog
        .deletion_certificate(tenant_id)
        .await
        .unwrap()
        .expect("certificate");
    let d = &cert.detail;
    assert_eq!(d["removed"]["database"], env.names(slug).database);
    assert_eq!(
        d["removed"]["principals"].as_array().unwrap().len(),
        7,
        "{d}"
    );
    assert_eq!(d["removed"]["secrets"].as_array().unwrap().len(), 3, "{d}");
    assert_eq!(d["final_audit_chain_head"]["valid"], true, "{d}");
    assert!(
        d["final_audit_chain_head"]["head_hash"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    assert_eq!(d["requested_by"], "test-operator");
    assert_eq!(d["reason"], "test");
    assert!(env.app.catalog.verify_audit_chain().await.unwrap().valid);

    // The slug is free again.
    env.onboard(slug).await;
    env.offboard(slug).await;
}

#[tokio::test]
async fn lifecycle_with_template_clone() {
    let env = TestEnv::new().await;
    lifecycle(&env, "life-template").await;
}

#[tokio::test]
async fn lifecycle_with_migrations() {
    let env = TestEnv::with(Faults::none(), |c| {
        c.provisioning = Provisioning::Migrations
    })
    .await;
    lifecycle(&env, "life-migrations").await;
}

#[tokio::test]
async fn control_plane_audit_log_records_every_state_change_with_actor_and_request_id() {
    let env = TestEnv::new().await;
    let token = env.token("operator");
    let body = serde_json::json!({"slug": "audit-trail", "display_name": "Audit"});
    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/v1/tenants")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-audit-trail-1")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(env.app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["x-request-id"], "req-audit-trail-1");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let op = env
        .wait(v["operation"]["id"].as_str().unwrap().parse().unwrap())
        .await;
    assert_eq!(op.state, OperationState::Succeeded);
    let log = env.app.catalog.audit_log(Some(op.tenant_id)).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.created",
            "operation.created",
            "operation.finished",
            "tenant.state_changed"
        ]
    );
    assert!(log.iter().all(|r| r.actor == "test-operator"));
    assert!(log
        .iter()
        .all(|r| r.request_id.as_deref() == Some("req-audit-trail-1")));
    assert!(env.app.catalog.verify_audit_chain().await.unwrap().valid);

    // The catalog's log is append-only, even for the superuser, and tampering is detected.
    let catalog = connect(env.config.catalog_url.as_deref().unwrap())
        .await
        .unwrap();
    let err = catalog
        .execute("UPDATE audit_log SET actor = 'mallory'", &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"));
    catalog
        .batch_execute(
            "SET session_replication_role = replica; \
             UPDATE audit_log SET actor = 'mallory' WHERE id = 2; \
             SET session_replication_role = origin",
        )
        .await
        .unwrap();
    let v = env.app.catalog.verify_audit_chain().await.unwrap();
    assert!(!v.valid);
    assert_eq!(v.first_broken_id, Some(2));
}
