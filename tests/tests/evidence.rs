//! The evidence bundle: an auditor fetches a tenant's signed evidence, which verifies offline
//! against `GET /v1/signing-key` and breaks on any changed byte; its live probes really ran as
//! the app principal (every history table and the audit events, each refused with the server's
//! own code, nothing changed); every business table is versioned; the rotation and the
//! investigation of the period are in it. A conformance suite: every test runs on PostgreSQL
//! and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use evidence::VerifyError;
use serde_json::{json, Value};
use tcp_tests::probe::Table;
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(
    evidence_is_signed_and_its_probes_really_ran,
    evidence_needs_an_auditor_and_an_active_tenant,
);

const PROBLEM: &str = "application/problem+json";

async fn get(env: &TestEnv, path: &str, role: Option<&str>) -> (StatusCode, String, Value) {
    let token = role.map(|r| env.token(r));
    env.call_raw(Method::GET, path, token.as_deref(), None)
        .await
}

/// What the engine under test calls its audit table and history tables, and the codes its
/// refusals carry (PostgreSQL: insufficient privilege; SQL Server: permission denied, or a
/// system-versioned history table refusing DML).
fn expected(env: &TestEnv) -> (&'static str, [&'static str; 4], &'static [&'static str]) {
    if env.app.engine.contained_principals() {
        (
            "audit.AuditEvents",
            [
                "history.AccountingPeriodsHistory",
                "history.CustomersHistory",
                "history.InvoiceLinesHistory",
                "history.InvoicesHistory",
            ],
            &["229", "230", "13560", "13561"],
        )
    } else {
        (
            "audit.audit_events",
            [
                "history.accounting_periods_history",
                "history.customers_history",
                "history.invoice_lines_history",
                "history.invoices_history",
            ],
            &["42501"],
        )
    }
}

/// Audit events and history rows, counted by the server's administrator.
async fn counts(env: &TestEnv, slug: &str) -> (usize, i64, i64) {
    let mut admin = env.probe().admin(&env.names(slug).database).await;
    (
        admin.audit_actions().await.unwrap().len(),
        admin.count(Table::CustomersHistory).await.unwrap(),
        admin.count(Table::InvoicesHistory).await.unwrap(),
    )
}

async fn evidence_is_signed_and_its_probes_really_ran(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "evid-bundle";
    env.onboard(slug).await;
    let names = env.names(slug);

    // Business data with history: an updated customer, an invoice that was posted.
    let probe = env.probe();
    let mut app = probe
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    let customer = app.customer_upsert(None, "Ada", None).await.unwrap();
    app.customer_upsert(Some(customer), "Ada Lovelace", None)
        .await
        .unwrap();
    let period = app.period_open("2026-01-01", "2026-01-31").await.unwrap();
    let invoice = app
        .invoice_create(customer, period, "INV-1", "2026-01-15")
        .await
        .unwrap();
    app.invoice_add_line(invoice, "engine", 2, "10.00")
        .await
        .unwrap();
    app.invoice_post(invoice).await.unwrap();
    drop(app);

    // One investigation, one rotation.
    let body = json!({"ticket": "INC-4242", "reason": "customer asked for their record",
                      "sql": "SELECT name FROM app.customers", "max_rows": 10});
    let (status, _, answer) = env
        .call_raw(
            Method::POST,
            &format!("/v1/tenants/{slug}/investigations"),
            Some(&env.token("support")),
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let rotation = env.rotate(slug, "scheduled").await;

    let before = counts(&env, slug).await;
    assert!(
        before.1 > 0 && before.2 > 0,
        "no history to protect: {before:?}"
    );
    let path = format!("/v1/tenants/{slug}/evidence");
    let (status, ctype, doc) = get(&env, &path, Some("auditor")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(ctype, "application/json");
    assert_eq!(counts(&env, slug).await, before, "the probes changed data");

    // The signature verifies against the published key; a changed byte breaks it.
    let (status, _, key) = get(&env, "/v1/signing-key", Some("auditor")).await;
    assert_eq!(status, StatusCode::OK);
    let trusted = key["public_key"].as_str().unwrap();
    let payload = evidence::verify(&doc, Some(trusted)).unwrap();
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let mut bytes = text.into_bytes();
    let at = String::from_utf8_lossy(&bytes).find("INC-4242").unwrap() + 4;
    bytes[at] ^= 0x01; // '4' → '5'
    let changed: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(matches!(
        evidence::verify(&changed, Some(trusted)),
        Err(VerifyError::BadSignature { .. })
    ));

    assert_eq!(payload["document"], "tenant-evidence");
    assert_eq!(payload["tenant"]["slug"], slug);
    assert_eq!(payload["tenant"]["engine"], env.app.engine.name());
    assert_eq!(payload["tenant"]["database"], names.database.as_str());
    let since: DateTime<Utc> = payload["period"]["since"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let until: DateTime<Utc> = payload["period"]["until"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((until - since).num_days(), 90);
    let sections = &payload["sections"];
    for (name, criteria) in [
        ("principals", json!(["CC6.1", "CC6.3"])),
        ("live_probes", json!(["CC6.1", "CC8.1"])),
        ("temporal_coverage", json!(["CC8.1"])),
        ("audit_chain", json!(["CC7.2"])),
        ("rotations", json!(["CC6.2", "CC6.1"])),
        ("investigations", json!(["CC7.2", "CC6.3"])),
    ] {
        assert_eq!(sections[name]["criteria"], criteria, "{name}");
        assert!(sections[name]["status"].is_string(), "{name}");
    }

    // The audit chain section holds the real verification, chain and anchors.
    let chain = &sections["audit_chain"];
    assert_eq!(chain["status"], "pass", "{chain:#}");
    assert_eq!(chain["verification"]["valid"], true, "{chain:#}");
    assert!(
        chain["verification"]["anchors"]["checked"]
            .as_i64()
            .unwrap()
            >= 2,
        "onboarding and the investigation anchored the head: {chain:#}"
    );

    // The probes ran as the app's current login (app_b since the rotation), on the audit
    // events and every history table, UPDATE and DELETE each, all refused with the server's
    // code and rolled back.
    let (audit_table, history_tables, codes) = expected(&env);
    let probes = &sections["live_probes"];
    assert_eq!(probes["status"], "pass", "{probes:#}");
    assert_eq!(probes["session_user"], names.app_b.as_str());
    assert_eq!(probes["login"], names.app_b.as_str());
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in probes["probes"].as_array().unwrap() {
        assert_eq!(p["refused"], true, "{p}");
        assert_eq!(p["rolled_back"], true, "{p}");
        let code = p["code"].as_str().unwrap();
        assert!(codes.contains(&code), "{p}");
        assert!(!p["message"].as_str().unwrap().is_empty(), "{p}");
        let statement = p["statement"].as_str().unwrap();
        assert!(
            statement.starts_with(p["operation"].as_str().unwrap()),
            "{p}"
        );
        seen.entry(p["table"].as_str().unwrap().to_owned())
            .or_default()
            .insert(p["operation"].as_str().unwrap().to_owned());
    }
    let mut want: Vec<&str> = history_tables.to_vec();
    want.push(audit_table);
    want.sort();
    assert_eq!(seen.keys().map(String::as_str).collect::<Vec<_>>(), want);
    assert!(seen.values().all(|ops| ops.len() == 2), "{seen:?}");
    assert_eq!(probes["unchanged"], true);
    let counted = &probes["row_counts"]["before"];
    assert_eq!(counted[audit_table], before.0);
    assert_eq!(counted[history_tables[1]], before.1);
    assert_eq!(counted[history_tables[3]], before.2);
    assert_eq!(probes["row_counts"]["after"], *counted);

    // Temporal coverage: every business table versioned, into an append-only history.
    let temporal = &sections["temporal_coverage"];
    assert_eq!(temporal["all_versioned"], true, "{temporal:#}");
    assert_eq!(temporal["status"], "pass");
    assert_eq!(temporal["tables"].as_array().unwrap().len(), 4);
    assert_eq!(temporal["history_tables"], json!(history_tables));

    // Principals: no findings; the app login logs in and writes no table directly; the owner
    // (PostgreSQL) cannot log in.
    let principals = &sections["principals"];
    assert_eq!(principals["status"], "pass", "{:#}", principals["findings"]);
    let list = principals["principals"].as_array().unwrap();
    let by_purpose = |purpose: &str| list.iter().find(|p| p["purpose"] == purpose);
    let app_b = by_purpose("app_b").unwrap();
    assert_eq!(app_b["can_login"], true);
    assert_eq!(app_b["bypasses_permissions"], false);
    let tables = app_b["effective"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object_type"] == "table" || e["object_type"] == "view")
        .count();
    assert_eq!(tables, 0, "the app reaches a table directly: {app_b:#}");
    assert!(by_purpose("audit_admin").is_some());
    if let Some(owner) = by_purpose("owner") {
        assert_eq!(owner["can_login"], false);
    }

    // The rotation, and the investigation with its ticket and outcome.
    let rotations = sections["rotations"]["rotations"].as_array().unwrap();
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    assert_eq!(rotations[0]["operation"], rotation.id.to_string());
    assert_eq!(rotations[0]["mode"], "scheduled");
    assert_eq!(rotations[0]["state"], "succeeded");
    assert_eq!(rotations[0]["from"], "app_a");
    assert_eq!(rotations[0]["to"], "app_b");
    let investigations = sections["investigations"]["investigations"]
        .as_array()
        .unwrap();
    assert_eq!(investigations.len(), 1, "{investigations:?}");
    let i = &investigations[0];
    assert_eq!(i["ticket"], "INC-4242");
    assert_eq!(i["reason"], "customer asked for their record");
    assert_eq!(i["query"], "SELECT name FROM app.customers");
    assert_eq!(i["actor"], "test-operator");
    assert_eq!(i["outcome"], "rows");
    assert_eq!(i["rows"], 1);
    assert_eq!(i["query_event"], answer["query_event"]);
    assert_eq!(i["outcome_event"], answer["outcome_event"]);
    // No credential of the tenant is in the document.
    for secret in env.secret_names(slug).all() {
        let value = env.secret(secret).await;
        assert!(!doc
            .to_string()
            .contains(env.app.engine.password_of(&value).unwrap().expose()));
    }

    // A later period holds neither; a period must be a past RFC 3339 time.
    let later = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let (status, _, doc) = get(&env, &format!("{path}?since={later}"), Some("auditor")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let s = &doc["payload"]["sections"];
    assert_eq!(s["rotations"]["rotations"], json!([]));
    assert_eq!(s["investigations"]["investigations"], json!([]));
    assert_eq!(doc["payload"]["period"]["since"], later);
    let future =
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    for query in [
        "since=yesterday",
        &format!("since={future}"),
        "sinse=2026-01-01T00:00:00Z",
    ] {
        let (status, ctype, body) = get(&env, &format!("{path}?{query}"), Some("auditor")).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::BAD_REQUEST, PROBLEM),
            "{query}: {body}"
        );
    }
    env.offboard(slug).await;
}

async fn evidence_needs_an_auditor_and_an_active_tenant(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "evid-roles";
    let path = format!("/v1/tenants/{slug}/evidence");
    let (status, ctype, _) = get(&env, &path, Some("auditor")).await;
    assert_eq!((status, ctype.as_str()), (StatusCode::NOT_FOUND, PROBLEM));
    let (status, _, _) = get(&env, "/v1/tenants/Not_A_Slug/evidence", Some("auditor")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    env.onboard(slug).await;
    for role in ["operator", "support"] {
        let (status, ctype, body) = get(&env, &path, Some(role)).await;
        assert_eq!(
            (status, ctype.as_str()),
            (StatusCode::FORBIDDEN, PROBLEM),
            "{role}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains("auditor"),
            "{body}"
        );
    }
    let (status, _, _) = get(&env, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, doc) = get(&env, &path, Some("admin")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["payload"]["generated_by"], "test-operator");

    env.offboard(slug).await;
    let (status, ctype, body) = get(&env, &path, Some("auditor")).await;
    assert!(
        matches!(status, StatusCode::CONFLICT | StatusCode::NOT_FOUND),
        "{status}: {body}"
    );
    assert_eq!(ctype, PROBLEM);
}
