//! Lifecycle: onboard → use the app connection string → offboard → nothing left anywhere.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use api_types::{OperationState, TenantState};
use axum::http::{Method, StatusCode};
use engine::postgres::Provisioning;
use tcp_tests::env::connect;
use tcp_tests::probe::Refusal;
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

async fn lifecycle_on(env: &TestEnv, slug: &str) {
    let probe = env.probe();
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
    assert_eq!(tenant["engine"], env.app.engine.name());
    assert_eq!(tenant["schema_version"], env.app.engine.schema_version());
    assert_eq!(tenant["secrets"]["app"], format!("tenant-{slug}-app"));
    let body = tenant.to_string();
    let secrets = env.secret_names(slug);
    let app_url = env.secret(&secrets.app).await;
    assert!(
        !body.contains(app_url.expose()),
        "secret value leaked into the API"
    );

    // The application works through the named procedures only.
    let mut app = probe.login(&app_url).await.unwrap();
    let customer = app
        .customer_upsert(None, "Ada", Some("ada@example.com"))
        .await
        .unwrap();
    let period = app.period_open("2026-01-01", "2026-01-31").await.unwrap();
    let invoice = app
        .invoice_create(customer, period, "INV-1", "2026-01-15")
        .await
        .unwrap();
    app.invoice_add_line(invoice, "Consulting", 3, "100.50")
        .await
        .unwrap();
    app.invoice_post(invoice).await.unwrap();
    app.period_close(period).await.unwrap();
    assert_eq!(app.invoice_status(invoice).await.unwrap(), "posted");
    assert_eq!(app.customer_name(customer).await.unwrap(), "Ada");
    drop(app);

    // Every business call left an audit event, and the chain verifies.
    let mut admin = probe.admin(&env.names(slug).database).await;
    let actions = admin.audit_actions().await.unwrap();
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
    assert_eq!(admin.verify_chain().await.unwrap(), (true, None));
    drop(admin);

    let audit_url = env.secret(&secrets.audit_admin).await;
    let investigator_url = env.secret(&secrets.investigator).await;

    let op = env.offboard(slug).await;
    assert_eq!(op.state, OperationState::Succeeded);
    let after = env.snapshot(&[slug]).await;
    assert!(after.databases.is_empty(), "{after:?}");
    assert!(after.principals.is_empty(), "{after:?}");
    assert!(after.secrets.is_empty(), "{after:?}");
    assert!(after.live_tenants.is_empty(), "{after:?}");

    let (status, tenant) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tenant["state"], TenantState::Offboarded.as_str());

    // The old connection strings no longer authenticate.
    for url in [&app_url, &audit_url, &investigator_url] {
        match probe.login(url).await {
            Err(Refusal::Denied(_)) => {}
            Err(other) => panic!("old connection string refused oddly: {other:?}"),
            Ok(_) => panic!("old connection string still connects"),
        }
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
        env.full_principals(),
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

tcp_tests::conformance!(
    lifecycle,
    control_plane_audit_log_records_every_state_change_with_actor_and_request_id
);

async fn lifecycle(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    lifecycle_on(&env, "life-cycle").await;
}

/// PostgreSQL's second provisioning path (migrations instead of a template clone).
#[tokio::test]
async fn postgres_lifecycle_with_migrations() {
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.provisioning = Provisioning::Migrations
    })
    .await;
    lifecycle_on(&env, "life-migrations").await;
}

async fn control_plane_audit_log_records_every_state_change_with_actor_and_request_id(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
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

    // The steps ran in database sessions tagged with the request id (PostgreSQL's
    // application_name, SQL Server's SESSION_CONTEXT), so the tenant database's own audit event
    // of the provisioning names the API call too.
    let (status, events) = env
        .call_as(
            "auditor",
            Method::GET,
            "/v1/tenants/audit-trail/audit-events",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let provisioned = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "tenant.provisioned")
        .unwrap_or_else(|| panic!("no tenant.provisioned event in {events}"));
    assert_eq!(
        provisioned["request_id"], "req-audit-trail-1",
        "{provisioned}"
    );

    // An id that is not a plain token is replaced by a generated one (it would otherwise reach
    // log lines and session tags as given).
    let req = axum::http::Request::builder()
        .uri("/healthz")
        .header("x-request-id", "x'; DROP TABLE t; --")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(env.app.router.clone(), req)
        .await
        .unwrap();
    let replaced = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");

    // The catalog's log is append-only, even for the superuser, and tampering is detected
    // (checked on the PostgreSQL catalog; the SQL Server catalog's trigger is its mirror).
    if env.app.catalog.backend() != "postgres" {
        return;
    }
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
