//! A tenant's audit log through the API: paged reading, verification against the hash chain and
//! the catalog's anchors (a changed row, and a full rewrite of the chain by the server's
//! administrator, are both caught), and purges through the audit_admin principal.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(
    audit_events_are_paged_and_filtered,
    verification_catches_a_changed_row_and_a_rewritten_chain,
    purge_goes_through_audit_admin_and_keeps_verification_working,
    a_purge_the_tenant_database_refuses_is_a_conflict_and_deletes_nothing,
);

async fn as_role(
    env: &TestEnv,
    role: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (s, _, v) = env
        .call_raw(
            method,
            path,
            Some(&env.token(role)),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        )
        .await;
    (s, v)
}

async fn busy_tenant(env: &TestEnv, slug: &str) {
    env.onboard(slug).await;
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    for name in ["Ada", "Grace", "Edsger", "Barbara"] {
        app.customer_upsert(None, name, None).await.unwrap();
    }
}

async fn audit_events_are_paged_and_filtered(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "audit-read";
    busy_tenant(&env, slug).await;
    let base = format!("/v1/tenants/{slug}/audit-events");
    let (status, page) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("{base}?limit=2"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["action"], "tenant.provisioned");
    assert_eq!(events[0]["hash"].as_str().unwrap().len(), 64);
    let next = page["next_after_id"].as_i64().unwrap();
    let (_, rest) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("{base}?after_id={next}&limit=100"),
        None,
    )
    .await;
    let rest = rest["events"].as_array().unwrap();
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert!(rest[0]["id"].as_i64().unwrap() > next);
    assert_eq!(rest.len() + 2, 5);
    // Filters.
    let (_, upserts) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("{base}?action=customer.upsert"),
        None,
    )
    .await;
    assert_eq!(upserts["events"].as_array().unwrap().len(), 4);
    assert_eq!(upserts["next_after_id"], Value::Null);
    let (_, none) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("{base}?since=2999-01-01T00:00:00Z"),
        None,
    )
    .await;
    assert!(none["events"].as_array().unwrap().is_empty());
    // Roles: an operator or support cannot read it; bad paging is a 400.
    for role in ["operator", "support"] {
        let (status, _) = as_role(&env, role, Method::GET, &base, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}");
    }
    let (status, body) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("{base}?limit=0"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    env.offboard(slug).await;
}

async fn verification_catches_a_changed_row_and_a_rewritten_chain(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let probe = env.probe();
    let verify = |slug: &'static str| {
        let env = &env;
        async move {
            let (status, v) = as_role(
                env,
                "auditor",
                Method::GET,
                &format!("/v1/tenants/{slug}/audit/verify"),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            v
        }
    };

    // A row changed by the administrator breaks the chain inside the database.
    let slug = "audit-tamper";
    busy_tenant(&env, slug).await;
    let clean = verify(slug).await;
    assert_eq!(clean["valid"], true, "{clean}");
    assert!(
        clean["anchors"]["checked"].as_i64().unwrap() >= 1,
        "{clean}"
    );
    let id = probe
        .tamper_with_audit_event(&env.names(slug).database, "customer.upsert")
        .await;
    let report = verify(slug).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_broken"]["id"], id, "{report}");
    // A log that does not verify is never purged: that would erase the evidence.
    let (status, body) = as_role(
        &env,
        "admin",
        Method::POST,
        &format!("/v1/tenants/{slug}/audit/purge"),
        Some(json!({"before": chrono::Utc::now().to_rfc3339(), "reason": "cover-up"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // The whole log wiped (chain head reset, so it verifies empty inside the database) is
    // caught by the anchors.
    let slug = "audit-wipe";
    busy_tenant(&env, slug).await;
    probe.wipe_audit_log(&env.names(slug).database).await;
    let report = verify(slug).await;
    assert_eq!(report["chain"]["valid"], true, "{report}");
    assert_eq!(report["valid"], false, "{report}");
    assert!(
        report["first_broken"]["problem"]
            .as_str()
            .unwrap()
            .starts_with("missing"),
        "{report}"
    );
    env.offboard(slug).await;

    // The newest row deleted, and a forged row appended, break it too.
    let slug = "audit-delete";
    busy_tenant(&env, slug).await;
    let database = env.names(slug).database;
    probe.delete_audit_event(&database, "customer.upsert").await;
    let report = verify(slug).await;
    assert_eq!(report["valid"], false, "{report}");
    assert!(report["first_broken"]["id"].is_i64(), "{report}");
    let slug = "audit-insert";
    busy_tenant(&env, slug).await;
    let forged = probe.insert_audit_event(&env.names(slug).database).await;
    let report = verify(slug).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_broken"]["id"], forged, "{report}");
    env.offboard("audit-delete").await;
    env.offboard(slug).await;

    // A full, consistent rewrite passes inside the database but not against the anchors.
    let slug = "audit-rewrite";
    busy_tenant(&env, slug).await;
    // Anchor the head after the business calls too (as an investigation would).
    let (status, body) = as_role(
        &env,
        "support",
        Method::POST,
        &format!("/v1/tenants/{slug}/investigations"),
        Some(json!({"ticket": "INC-9", "reason": "check", "sql": "SELECT count(*) FROM app.customers"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(verify(slug).await["valid"], true);
    probe.rewrite_audit_chain(&env.names(slug).database).await;
    let report = verify(slug).await;
    assert_eq!(
        report["chain"]["valid"], true,
        "the rewrite is consistent inside the database: {report}"
    );
    assert_eq!(report["valid"], false, "{report}");
    let broken = report["anchors"]["broken"].as_array().unwrap();
    assert!(!broken.is_empty(), "{report}");
    assert!(
        broken[0]["problem"]
            .as_str()
            .unwrap()
            .starts_with("rewritten"),
        "{report}"
    );
    assert_eq!(report["first_broken"], broken[0]);
    env.offboard(slug).await;

    // Offboarding keeps a broken log as it is (it is the evidence), and the certificate says
    // that the archived log does not verify, and where.
    env.offboard("audit-tamper").await;
    let (status, cert) = as_role(
        &env,
        "auditor",
        Method::GET,
        "/v1/tenants/audit-tamper/deletion-certificate",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cert}");
    let archived = &cert["payload"]["audit_archive"];
    assert_eq!(archived["chain_valid"], false, "{cert}");
    assert!(
        archived["chain_error"]
            .as_str()
            .unwrap()
            .contains(&format!("event {id}:")),
        "{cert}"
    );
}

async fn purge_goes_through_audit_admin_and_keeps_verification_working(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "audit-purge";
    busy_tenant(&env, slug).await;
    let path = format!("/v1/tenants/{slug}/audit/purge");
    let body = json!({"before": chrono::Utc::now().to_rfc3339(), "reason": "retention"});
    // Only an admin may purge.
    for role in ["operator", "auditor", "support"] {
        let (status, _) = as_role(&env, role, Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}");
    }
    let (status, v) = as_role(
        &env,
        "admin",
        Method::POST,
        &path,
        Some(json!({"before": "2999-01-01T00:00:00Z", "reason": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = as_role(&env, "admin", Method::POST, &path, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], 5, "{v}");
    // The five events were archived first: signed, each hash recomputable, from genesis.
    let archive = &v["archive"];
    assert_eq!(archive["events"], 5, "{v}");
    let bytes = std::fs::read(
        env.data_dir()
            .join("archive")
            .join(archive["key"].as_str().unwrap()),
    )
    .unwrap();
    assert_eq!(
        evidence::archive::sha256_hex(&bytes),
        archive["sha256"].as_str().unwrap()
    );
    let envelope: Value = serde_json::from_slice(&bytes).unwrap();
    let payload = evidence::verify(&envelope, None).unwrap();
    let purged = evidence::archive::verify_archive(&payload).unwrap();
    assert_eq!((purged.events, purged.from_genesis), (5, true));
    assert_eq!(payload["purge"]["reason"], "retention", "{payload}");
    // The purge recorded itself (by audit_admin, for the token's subject), and everything
    // still verifies: the chain from the purge anchor, the anchors that survived.
    let (_, events) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/audit-events"),
        None,
    )
    .await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["action"], "audit.purge");
    assert_eq!(events[0]["actor"], "test-operator");
    assert_eq!(events[0]["detail"]["deleted"], 5);
    let (_, report) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/audit/verify"),
        None,
    )
    .await;
    assert_eq!(report["valid"], true, "{report}");
    env.offboard(slug).await;
    // What was left is archived at offboarding; it starts at the purge's anchor, which the
    // purge event in it names, so it verifies.
    let (_, cert) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/deletion-certificate"),
        None,
    )
    .await;
    let rest = &cert["payload"]["audit_archive"];
    assert_eq!(rest["chain_valid"], true, "{cert}");
    assert_eq!(rest["from_genesis"], false, "{cert}");
    let (status, _) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/audit/verify"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

/// The tenant database's own check refuses the tenant's audit admin (someone changed what it
/// reads): the purge answers 409 naming the refusal, not 500, and the log keeps every event.
async fn a_purge_the_tenant_database_refuses_is_a_conflict_and_deletes_nothing(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "refused-purge";
    busy_tenant(&env, slug).await;
    let before = event_count(&env, slug).await;
    env.probe().take_purge_right(&env.names(slug)).await;
    let (status, v) = as_role(
        &env,
        "admin",
        Method::POST,
        &format!("/v1/tenants/{slug}/audit/purge"),
        Some(json!({"before": chrono::Utc::now().to_rfc3339(), "reason": "retention"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("refused the purge") && detail.contains("nothing was purged"),
        "{v}"
    );
    assert_eq!(event_count(&env, slug).await, before);
}

async fn event_count(env: &TestEnv, slug: &str) -> usize {
    let (_, v) = as_role(
        env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/audit-events"),
        None,
    )
    .await;
    v["events"].as_array().unwrap().len()
}
