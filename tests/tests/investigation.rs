//! The audited investigation path: support staff query a tenant's data read-only, every query is
//! on the record before it runs, and anything but one read-only query is refused and still
//! recorded. A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(
    investigations_are_recorded_before_they_run_and_read_only,
    investigation_roles_are_enforced,
);

async fn investigate(env: &TestEnv, slug: &str, sql: &str, max_rows: u32) -> (StatusCode, Value) {
    let body = json!({"ticket": "INC-1234", "reason": "customer asked why", "sql": sql, "max_rows": max_rows});
    let (status, _, v) = env
        .call_raw(
            Method::POST,
            &format!("/v1/tenants/{slug}/investigations"),
            Some(&env.token("support")),
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await;
    (status, v)
}

/// The tenant's investigation events, oldest first: (action, detail).
async fn investigation_events(env: &TestEnv, slug: &str) -> Vec<(String, Value)> {
    let mut admin = env.probe().admin(&env.names(slug).database).await;
    let n = admin
        .audit_actions()
        .await
        .unwrap()
        .iter()
        .filter(|a| a.starts_with("investigation."))
        .count();
    let (action, detail) = admin.last_audit_event().await.unwrap();
    assert!(action.starts_with("investigation."), "{action}");
    vec![(format!("{n}"), Value::Null), (action, detail)]
}

async fn investigations_are_recorded_before_they_run_and_read_only(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "inv-read";
    env.onboard(slug).await;
    let probe = env.probe();
    let mut app = probe
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    for name in ["Ada", "Grace", "Edsger"] {
        app.customer_upsert(None, name, None).await.unwrap();
    }

    // A read: rows come back as text, limited, and both events are on the record.
    let (status, body) = investigate(
        &env,
        slug,
        "SELECT name FROM app.customers ORDER BY name",
        2,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["columns"][0]["name"].as_str().unwrap().to_lowercase(),
        "name"
    );
    assert_eq!(body["rows"], json!([["Ada"], ["Edsger"]]));
    assert_eq!(body["truncated"], true);
    let query_event = body["query_event"].as_i64().unwrap();
    assert_eq!(body["outcome_event"].as_i64().unwrap(), query_event + 1);
    let events = investigation_events(&env, slug).await;
    assert_eq!(events[0].0, "2");
    assert_eq!(events[1].0, "investigation.outcome");
    assert_eq!(events[1].1["rows"], 2);

    // Every write or escape is refused, and still leaves both events.
    let (writing_call, audit_read) = if env.app.engine.contained_principals() {
        (
            "EXEC app.CustomerUpsert @Name = N'x'",
            "SELECT * FROM audit.AuditEvents",
        )
    } else {
        (
            "SELECT app.customer_upsert(NULL, 'x', NULL)",
            "SELECT * FROM audit.audit_events",
        )
    };
    let attempts = [
        "UPDATE app.customers SET name = 'x'",
        "INSERT INTO app.customers (name) VALUES ('x')",
        "DELETE FROM app.customers",
        "SELECT * FROM app.customers FOR UPDATE",
        "SELECT 1; COMMIT; DELETE FROM app.customers",
        "SET ROLE NONE",
        writing_call,
        audit_read,
        "SELECT nonsense FROM nowhere",
        "SELECT 1 SELECT 2",
        "SELECT name FROM app.customers --x\rWAITFOR DELAY '00:00:30'",
    ];
    let mut recorded = 2;
    for sql in attempts {
        let (status, body) = investigate(&env, slug, sql, 10).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sql}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("refused") || detail.contains("failed"),
            "{sql}: {detail}"
        );
        recorded += 2;
        let events = investigation_events(&env, slug).await;
        assert_eq!(events[0].0, recorded.to_string(), "{sql}");
        assert_eq!(events[1].0, "investigation.outcome", "{sql}");
        assert!(events[1].1["error"].is_object(), "{sql}: {}", events[1].1);
    }
    // The query event holds the full text, the ticket, the reason and the actor.
    let mut admin = probe.admin(&env.names(slug).database).await;
    let actions = admin.audit_actions().await.unwrap();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "investigation.query")
            .count(),
        1 + attempts.len()
    );
    // Nothing was written: still three customers, and the chain verifies.
    let (status, body) = investigate(&env, slug, "SELECT count(*) FROM app.customers", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["rows"][0][0], "3");
    assert_eq!(admin.verify_chain().await.unwrap(), (true, None));
    // The response never carries the investigator's credentials.
    let investigator = env.secret(&env.secret_names(slug).investigator).await;
    let password = env.app.engine.password_of(&investigator).unwrap();
    assert!(!body.to_string().contains(password.expose()));
    env.offboard(slug).await;
}

async fn investigation_roles_are_enforced(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "inv-roles";
    env.onboard(slug).await;
    let body =
        serde_json::to_vec(&json!({"ticket": "INC-1", "reason": "r", "sql": "SELECT 1"})).unwrap();
    let path = format!("/v1/tenants/{slug}/investigations");
    // An operator cannot investigate.
    let (status, _, _) = env
        .call_raw(
            Method::POST,
            &path,
            Some(&env.token("operator")),
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Support can, with a valid ticket.
    let (status, _, v) = env
        .call_raw(Method::POST, &path, Some(&env.token("support")), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let bad = serde_json::to_vec(
        &json!({"ticket": "no spaces please", "reason": "r", "sql": "SELECT 1"}),
    )
    .unwrap();
    let (status, _, v) = env
        .call_raw(Method::POST, &path, Some(&env.token("support")), Some(bad))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // Support cannot onboard or offboard.
    let (status, _, _) = env
        .call_raw(
            Method::POST,
            "/v1/tenants",
            Some(&env.token("support")),
            Some(serde_json::to_vec(&json!({"slug": "inv-other", "display_name": "x"})).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = env
        .call_raw(
            Method::POST,
            &format!("/v1/tenants/{slug}/offboard"),
            Some(&env.token("support")),
            Some(serde_json::to_vec(&json!({"confirm": slug, "reason": "x"})).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.offboard(slug).await;
    // An offboarded tenant cannot be investigated.
    let body =
        serde_json::to_vec(&json!({"ticket": "INC-1", "reason": "r", "sql": "SELECT 1"})).unwrap();
    let (status, _, _) = env
        .call_raw(Method::POST, &path, Some(&env.token("support")), Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}
