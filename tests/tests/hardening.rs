//! Regressions of a hostile review of tenant databases and the audited paths (issue 12): each
//! test is an attack that worked before the fix. The audit chain (forged purges, gaps, text
//! moved between fields, forged identities, rolled-back reads), the investigation path
//! (timeouts switched off, the head lock held by the application) and the data paths outside
//! `app.*`. A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`);
//! the PostgreSQL-only ones are in `postgres_only`.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::probe::Attempt;
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(
    a_forged_purge_of_the_newest_event_is_caught_within_the_anchor_interval,
    a_periodic_pass_never_anchors_a_log_that_does_not_verify,
    a_gap_cut_from_the_middle_breaks_the_chain,
    purge_events_name_the_range_they_removed,
    text_moved_between_fields_breaks_the_hash,
    audit_hash_matches_the_specification,
    origin_is_verified_and_actor_is_only_asserted,
    application_reads_are_transactional_and_the_evidence_says_so,
    an_investigation_stops_at_its_deadline_whatever_the_query_does,
    the_reviews_lexical_bypasses_are_refused,
    an_application_transaction_holding_the_audit_head_gets_a_clear_409,
    recording_tries_again_while_the_audit_head_is_held_briefly,
    the_app_cannot_store_data_outside_app,
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

/// Every event of the tenant through the API, oldest first.
async fn events(env: &TestEnv, slug: &str) -> Vec<Value> {
    let (status, page) = as_role(
        env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/audit-events?limit=1000"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

async fn verify_api(env: &TestEnv, slug: &str) -> Value {
    let (status, report) = as_role(
        env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/audit/verify"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

/// Onboards and writes `n` customers through the app; returns the app session's connection
/// string's probe session.
async fn tenant_with_customers(
    env: &TestEnv,
    slug: &str,
    n: usize,
) -> Box<dyn tcp_tests::probe::Session> {
    env.onboard(slug).await;
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    for i in 0..n {
        app.customer_upsert(None, &format!("Customer {i}"), None)
            .await
            .unwrap();
    }
    app
}

async fn investigate(env: &TestEnv, slug: &str, sql: &str, max_rows: u32) -> (StatusCode, Value) {
    as_role(
        env,
        "support",
        Method::POST,
        &format!("/v1/tenants/{slug}/investigations"),
        Some(json!({"ticket": "INC-12", "reason": "hostile review", "sql": sql, "max_rows": max_rows})),
    )
    .await
}

/// Item 3: the purge marker forged by the database's administrator, the newest event deleted and
/// the head moved back: the log verifies inside the database, but the periodic anchor (one
/// second here) already holds the deleted event, so the API's verification says broken.
async fn a_forged_purge_of_the_newest_event_is_caught_within_the_anchor_interval(
    engine: EngineUnderTest,
) {
    let env = TestEnv::with(engine, workflows::Faults::none(), |c| {
        c.audit_anchor_interval_secs = 1;
    })
    .await;
    let slug = "forged-purge";
    let _app = tenant_with_customers(&env, slug, 3).await;
    let newest = events(&env, slug).await.last().unwrap()["id"]
        .as_i64()
        .unwrap();
    // Wait for the periodic anchor to reach the newest event.
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&api_types::TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let anchors = env.app.catalog.anchors(tenant.id).await.unwrap();
        if anchors
            .iter()
            .any(|a| a.head_id == newest && a.reason == "periodic")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no periodic anchor: {anchors:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(verify_api(&env, slug).await["valid"], true);

    let database = env.names(slug).database;
    let deleted = env.probe().forge_purge_of_newest(&database).await;
    assert_eq!(deleted, newest);
    // Inside the database the shortened log verifies: only the anchor outside can tell.
    let mut admin = env.probe().admin(&database).await;
    assert_eq!(admin.verify_chain().await.unwrap(), (true, None));
    let report = verify_api(&env, slug).await;
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["first_broken"]["id"], newest, "{report}");
    assert!(
        report["first_broken"]["problem"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{report}"
    );
}

/// Item 3: the periodic pass anchors only a head that verifies from the newest anchor. An event
/// changed in place after it fails its hash; events cut after that anchor (and the rest
/// re-chained) leave a gap; a pass that anchored the head
/// anyway would replace the periodic anchor taken before the cut, and the catalog would hold a
/// head of a log that never verified.
async fn a_periodic_pass_never_anchors_a_log_that_does_not_verify(engine: EngineUnderTest) {
    // The anchor task's own passes stay out of the way; the test runs each pass itself.
    let env = TestEnv::with(engine, workflows::Faults::none(), |c| {
        c.audit_anchor_interval_secs = 3600;
    })
    .await;
    let slug = "unverified-head";
    let mut app = tenant_with_customers(&env, slug, 2).await;
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&api_types::TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    let names = env.names(slug);
    let svc = env.app.runner.services();
    // One pass of the anchor task.
    assert!(
        workflows::anchor_periodic(svc, env.app.engine.as_ref(), tenant.id, &names)
            .await
            .unwrap()
    );
    let anchored = env.app.catalog.anchors(tenant.id).await.unwrap();
    let newest = events(&env, slug).await.last().unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(
        anchored
            .iter()
            .any(|a| a.head_id == newest && a.reason == "periodic"),
        "{anchored:?}"
    );

    for i in 0..3 {
        app.customer_upsert(None, &format!("After {i}"), None)
            .await
            .unwrap();
    }
    // An event after the anchor changed in place: every link still holds, its hash no longer
    // recomputes (the control plane's read of the rows leaves it to the database, which
    // refuses it).
    env.probe()
        .tamper_with_audit_event(&names.database, "customer.upsert")
        .await;
    assert!(
        !workflows::anchor_periodic(svc, env.app.engine.as_ref(), tenant.id, &names)
            .await
            .unwrap(),
        "the periodic pass anchored a head past an event changed in place"
    );
    assert_eq!(env.app.catalog.anchors(tenant.id).await.unwrap(), anchored);
    // Cut one event and re-chain the rest (the changed one's hash recomputed): only the gap
    // is left to find.
    env.probe()
        .cut_and_rechain(&names.database, newest + 2, newest + 2)
        .await;
    assert!(
        !workflows::anchor_periodic(svc, env.app.engine.as_ref(), tenant.id, &names)
            .await
            .unwrap(),
        "the periodic pass anchored a head that does not verify from the newest anchor"
    );
    assert_eq!(env.app.catalog.anchors(tenant.id).await.unwrap(), anchored);
    assert_eq!(verify_api(&env, slug).await["valid"], false);
}

/// Item 3: events cut from the middle and every later event re-chained with recomputed hashes:
/// every link holds, but format 2 ids are contiguous, so the jump breaks the chain inside the
/// database already.
async fn a_gap_cut_from_the_middle_breaks_the_chain(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "chain-gap";
    let _app = tenant_with_customers(&env, slug, 5).await;
    let ids: Vec<i64> = events(&env, slug)
        .await
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let database = env.names(slug).database;
    env.probe().cut_and_rechain(&database, ids[2], ids[3]).await;
    let mut admin = env.probe().admin(&database).await;
    assert_eq!(admin.verify_chain().await.unwrap(), (false, Some(ids[4])));
    assert_eq!(verify_api(&env, slug).await["valid"], false);
}

/// Item 3: a purge names the range it removed, the log still verifies after it, and the first
/// event left chains to the purge's anchor.
async fn purge_events_name_the_range_they_removed(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "purge-range";
    let _app = tenant_with_customers(&env, slug, 3).await;
    let before = events(&env, slug).await;
    let last = before.last().unwrap()["id"].as_i64().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, body) = as_role(
        &env,
        "admin",
        Method::POST,
        &format!("/v1/tenants/{slug}/audit/purge"),
        Some(json!({"before": chrono::Utc::now(), "reason": "retention"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = events(&env, slug).await;
    let purge = after.iter().find(|e| e["action"] == "audit.purge").unwrap();
    assert_eq!(purge["detail"]["from_id"], before[0]["id"], "{purge}");
    assert_eq!(purge["detail"]["to_id"], last, "{purge}");
    assert_eq!(purge["origin"], "control_plane", "{purge}");
    assert_eq!(after[0]["id"].as_i64().unwrap(), last + 1);
    assert_eq!(verify_api(&env, slug).await["valid"], true);
}

/// Item 4: format 1 joined fields with '|', so `actor = "mallory|x"`, `action = "c"` hashed
/// like `actor = "mallory"`, `action = "x|c"`. Format 2 length-prefixes every field.
async fn text_moved_between_fields_breaks_the_hash(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "field-shift";
    let mut app = tenant_with_customers(&env, slug, 0).await;
    app.assert_identity("mallory|x", "req-1").await.unwrap();
    app.customer_upsert(None, "Ada", None).await.unwrap();
    let event = events(&env, slug).await.last().unwrap().clone();
    assert_eq!(event["actor"], "mallory|x", "{event}");
    let id = event["id"].as_i64().unwrap();
    let database = env.names(slug).database;
    env.probe().shift_between_fields(&database, id).await;
    let shifted = events(&env, slug).await.last().unwrap().clone();
    assert_eq!(shifted["actor"], "mallory", "{shifted}");
    assert_eq!(
        shifted["hash"], event["hash"],
        "the stored hash is untouched"
    );
    let mut admin = env.probe().admin(&database).await;
    assert_eq!(admin.verify_chain().await.unwrap(), (false, Some(id)));
}

/// Item 4: the database's format 2 hash is the one the specification (and the control plane's
/// Rust implementation) computes, non-ASCII text and a null field included.
async fn audit_hash_matches_the_specification(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "hash-spec";
    env.onboard(slug).await;
    let (fields, expected) = engine::audit_hash::test_vector();
    assert_eq!(
        hex_of(engine::audit_hash::event_hash_v2(&[0; 32], &fields)),
        expected
    );
    let stored = env
        .probe()
        .event_hash_v2(&env.names(slug).database, &fields)
        .await;
    assert_eq!(stored, expected);
}

fn hex_of(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Item 6: the application can claim any actor and request id, but the principal and the origin
/// come from the database: its events say `application` and its own login, while the control
/// plane's (provisioning, investigations, purges) say `control_plane`.
async fn origin_is_verified_and_actor_is_only_asserted(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "origin";
    let mut app = tenant_with_customers(&env, slug, 0).await;
    app.assert_identity("test-operator", "req-of-the-control-plane")
        .await
        .unwrap();
    app.customer_upsert(None, "Ada", None).await.unwrap();
    let (status, body) = investigate(&env, slug, "SELECT 1 AS one", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names = env.names(slug);
    let all = events(&env, slug).await;
    let by_action = |action: &str| all.iter().find(|e| e["action"] == action).unwrap().clone();
    let upsert = by_action("customer.upsert");
    assert_eq!(upsert["origin"], "application", "{upsert}");
    assert_eq!(upsert["principal"], names.app_a.as_str(), "{upsert}");
    // Asserted, and shown as such: the app said it acted for the operator.
    assert_eq!(upsert["actor"], "test-operator", "{upsert}");
    assert_eq!(upsert["request_id"], "req-of-the-control-plane", "{upsert}");
    for action in [
        "tenant.provisioned",
        "investigation.query",
        "investigation.outcome",
    ] {
        assert_eq!(by_action(action)["origin"], "control_plane", "{action}");
    }
    assert_eq!(
        by_action("investigation.query")["principal"],
        names.investigator.as_str()
    );
}

/// Item 5: a read's event is written in the application's own transaction, so a read it rolls
/// back leaves none. That is the documented promise (reads by the application are not an audit
/// guarantee), and the evidence bundle says so, with which fields are verified and which
/// asserted.
async fn application_reads_are_transactional_and_the_evidence_says_so(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "rolled-back-read";
    let mut app = tenant_with_customers(&env, slug, 0).await;
    let id = app.customer_upsert(None, "Ada", None).await.unwrap();
    app.begin().await.unwrap();
    assert_eq!(app.customer_name(id).await.unwrap(), "Ada");
    app.rollback().await.unwrap();
    let actions: Vec<Value> = events(&env, slug)
        .await
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert!(!actions.contains(&json!("customer.get")), "{actions:?}");

    let (status, doc) = as_role(
        &env,
        "auditor",
        Method::GET,
        &format!("/v1/tenants/{slug}/evidence"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let payload = evidence::verify(&doc, None).unwrap();
    let scope = &payload["sections"]["audit_chain"]["scope"];
    assert!(
        scope["not_guaranteed"][0]
            .as_str()
            .unwrap()
            .contains("reads by the application"),
        "{scope}"
    );
    assert!(scope["fields"]["actor"]
        .as_str()
        .unwrap()
        .starts_with("asserted"));
    assert!(scope["fields"]["principal"]
        .as_str()
        .unwrap()
        .starts_with("verified"));
    assert!(scope["rewrite_detection"]["anchor_interval_secs"].is_u64());
}

/// Item 1: a query that keeps every single FETCH under the statement timeout (PostgreSQL re-arms
/// it per FETCH) or that has no server-side timeout at all (SQL Server) still stops at the
/// deadline: its session is ended, and the outcome event says `timeout`.
async fn an_investigation_stops_at_its_deadline_whatever_the_query_does(engine: EngineUnderTest) {
    let env = TestEnv::with(engine, workflows::Faults::none(), |c| {
        c.investigation_timeout_ms = 1000;
    })
    .await;
    let slug = "slow-query";
    env.onboard(slug).await;
    let sql = if env.app.engine.contained_principals() {
        "WITH n AS (SELECT CAST(1 AS bigint) AS i UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) \
         SELECT COUNT_BIG(*) AS c FROM n OPTION (MAXRECURSION 0)"
    } else {
        // About 8 ms a row: 50 rows (one FETCH) stay under the 1 s statement timeout, 1000 rows
        // take seconds.
        "SELECT n, (SELECT count(*) FROM generate_series(1, 100000 + n)) AS c \
         FROM generate_series(1, 100000) n"
    };
    let started = Instant::now();
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(30), investigate(&env, slug, sql, 1000))
            .await
            .expect("the investigation did not stop");
    let took = started.elapsed();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("timed out"),
        "{body}"
    );
    assert!(
        took < Duration::from_millis(1000 + 2500),
        "the investigation ran {took:?} under a 1000 ms timeout"
    );
    let outcome = events(&env, slug).await.last().unwrap().clone();
    assert_eq!(outcome["action"], "investigation.outcome");
    assert_eq!(outcome["detail"]["error"]["kind"], "timeout", "{outcome}");
}

/// Item 2: the review's bypasses of the lexical check, through the API: each is refused (and
/// recorded) before it reaches the server.
async fn the_reviews_lexical_bypasses_are_refused(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "lexer-bypass";
    env.onboard(slug).await;
    let attempts: &[&str] = if env.app.engine.contained_principals() {
        &[
            "SELECT e'\\' FROM (SELECT 1 AS e) AS t BEGIN TRAN SELECT TOP (1) 1 AS a FROM app.Invoices \
             WITH (TABLOCKX, HOLDLOCK) WAITFOR DELAY '00:00:09' --'",
            "SELECT [Name] FROM app.Customers WITH ([TABLOCKX])",
            "SELECT 1 AS a SAVE TRANSACTION x",
        ]
    } else {
        &[
            "SELECT CASE WHEN n <= 50 THEN \"set_config\"('statement_timeout','0',true) \
             ELSE \"pg_sleep\"(15)::text END FROM generate_series(1,51) n",
            "SELECT (ARRAY[pg_sleep(3)::text])[1]",
            "SELECT \"pg_advisory_lock\"(1)",
            "SELECT \"pg_terminate_backend\"(1)",
            "SELECT \"query_to_xml\"('select 1', true, false, '')",
            "SELECT U&\"\\0070g_sleep\"(1)",
            "SELECT lo_create(0)",
        ]
    };
    for sql in attempts {
        let started = Instant::now();
        let (status, body) = investigate(&env, slug, sql, 10).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{sql}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("refused"),
            "{sql}: {body}"
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{sql} ran");
    }
}

/// Item 7: an application transaction that appended an event and stays open holds the chain
/// head; an investigation must not wait for it forever, and says why.
async fn an_application_transaction_holding_the_audit_head_gets_a_clear_409(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "head-locked";
    let mut app = tenant_with_customers(&env, slug, 0).await;
    app.begin().await.unwrap();
    app.customer_upsert(None, "Ada", None).await.unwrap();
    let started = Instant::now();
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(25),
        investigate(&env, slug, "SELECT 1 AS one", 1),
    )
    .await
    .expect("the investigation waited for the application's transaction");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("locked"),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    app.rollback().await.unwrap();
    let (status, body) = investigate(&env, slug, "SELECT 1 AS one", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Item 7: recording gives up only after several tries: an application transaction that holds
/// the chain head for a moment longer than one lock timeout (2 s) delays the investigation
/// instead of refusing it.
async fn recording_tries_again_while_the_audit_head_is_held_briefly(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "head-held-briefly";
    let mut app = tenant_with_customers(&env, slug, 0).await;
    app.begin().await.unwrap();
    app.customer_upsert(None, "Ada", None).await.unwrap();
    let started = Instant::now();
    let ((status, body), ()) = tokio::join!(investigate(&env, slug, "SELECT 1 AS one", 1), async {
        // Past the first try's lock timeout, well before the last try's.
        tokio::time::sleep(Duration::from_millis(3000)).await;
        app.rollback().await.unwrap();
    });
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(3000),
        "the investigation did not wait for the head: {:?}",
        started.elapsed()
    );
}

/// Item 7: no persistent data path outside `app.*` (PostgreSQL large objects, which PUBLIC may
/// create by default; SQL Server: a synonym, as a persistent object of the app's own).
async fn the_app_cannot_store_data_outside_app(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "no-lo";
    let mut app = tenant_with_customers(&env, slug, 0).await;
    let refused = app.attempt(Attempt::StoreOutsideApp).await.unwrap_err();
    assert!(refused.is_denied(), "{refused:?}");
}

/// What only PostgreSQL has.
mod postgres_only {
    use super::*;
    use engine::postgres::{PostgresConfig, PostgresEngine, Provisioning};
    use engine::Engine as _;
    use secrets::SecretValue;
    use tcp_tests::env::{connect, sqlstate, superuser};
    use tcp_tests::PgCluster;

    /// `platform.apply_grants` (V7) runs a statement only where it would change something, and
    /// leaves exactly the privileges V4's version (every statement, every time) left: V4's
    /// version run on a tenant V7 built changes nothing the fingerprint sees, and V7 repairs
    /// hand-made damage back to the same schema.
    #[tokio::test]
    async fn apply_grants_leaves_exactly_what_granting_everything_again_left() {
        let env = TestEnv::new(EngineUnderTest::Postgres).await;
        let slug = "grants-v7";
        env.onboard(slug).await;
        let names = env.names(slug);
        let engine = env.app.engine.clone();
        let snapshot = || async { engine.schema_snapshot(&names).await.unwrap() };
        let before = snapshot().await;
        let db = superuser(&names.database).await;
        let roles: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
            &names.owner,
            &names.app_rw,
            &names.audit_admin,
            &names.reader,
            &names.investigator,
        ];
        // V4's version, as a temporary function (outside the fingerprint's schemas).
        let v4 = include_str!("../../tenant-schema/postgres/V4__audit_format_2.sql");
        let start = v4
            .find("CREATE OR REPLACE FUNCTION platform.apply_grants(")
            .unwrap();
        let end = start + v4[start..].find("$$;").unwrap() + 3;
        db.batch_execute(
            &v4[start..end].replace("platform.apply_grants(", "pg_temp.apply_grants_v4("),
        )
        .await
        .unwrap();
        db.execute("SELECT pg_temp.apply_grants_v4($1, $2, $3, $4, $5)", &roles)
            .await
            .unwrap();
        assert_eq!(snapshot().await.diff(&before), Vec::<String>::new());
        // Damage of each kind it repairs: a grant lost, PUBLIC let in, the app on a table.
        db.batch_execute(&format!(
            "REVOKE EXECUTE ON FUNCTION app.customer_get(uuid) FROM \"{app}\"; \
             REVOKE SELECT ON history.customers_history FROM \"{reader}\"; \
             GRANT SELECT ON app.customers TO PUBLIC; \
             GRANT EXECUTE ON FUNCTION pg_catalog.lo_import(text) TO PUBLIC; \
             GRANT SELECT ON audit.audit_events TO \"{app}\"",
            app = names.app_rw,
            reader = names.reader
        ))
        .await
        .unwrap();
        let broken = snapshot().await;
        assert_ne!(broken.fingerprint, before.fingerprint);
        db.execute("SELECT platform.apply_grants($1, $2, $3, $4, $5)", &roles)
            .await
            .unwrap();
        assert_eq!(snapshot().await.diff(&before), Vec::<String>::new());
        let lo_import: bool = db
            .query_one(
                "SELECT has_function_privilege('public', 'pg_catalog.lo_import(text)', 'EXECUTE')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!lo_import, "PUBLIC may still call lo_import");
    }

    /// Item 1: the reader cannot change `statement_timeout` (set_config is not the reader's).
    #[tokio::test]
    async fn the_reader_cannot_switch_its_timeout_off() {
        let env = TestEnv::new(EngineUnderTest::Postgres).await;
        let slug = "reader-timeout";
        env.onboard(slug).await;
        let mut investigator = env
            .probe()
            .login(&env.secret(&env.secret_names(slug).investigator).await)
            .await
            .unwrap();
        investigator.become_reader().await.unwrap();
        let refused = investigator
            .attempt(Attempt::DisableStatementTimeout)
            .await
            .unwrap_err();
        assert!(refused.is_denied(), "{refused:?}");
    }

    /// Item 2: the functions that run SQL given as text (`query_to_xml` and its family) are
    /// nobody's in a tenant database: neither the application nor the reader can call them, so a
    /// query the lexical check let through could still not run a statement it carries as text.
    #[tokio::test]
    async fn nobody_runs_sql_given_as_text() {
        let env = TestEnv::new(EngineUnderTest::Postgres).await;
        let slug = "sql-as-text";
        env.onboard(slug).await;
        let names = env.names(slug);
        let app = connect(env.secret(&env.secret_names(slug).app).await.expose())
            .await
            .unwrap();
        let investigator = connect(
            env.secret(&env.secret_names(slug).investigator)
                .await
                .expose(),
        )
        .await
        .unwrap();
        investigator
            .batch_execute(&format!("SET ROLE \"{}\"", names.reader))
            .await
            .unwrap();
        for (who, client) in [("the app", &app), ("the reader", &investigator)] {
            for sql in [
                "SELECT query_to_xml('SELECT 1', true, false, '')",
                "SELECT query_to_xmlschema('SELECT 1', true, false, '')",
                "SELECT query_to_xml_and_xmlschema('SELECT 1', true, false, '')",
            ] {
                let e = client
                    .batch_execute(sql)
                    .await
                    .err()
                    .unwrap_or_else(|| panic!("{who} ran SQL given as text: {sql}"));
                assert_eq!(sqlstate(&e), "42501", "{who}: {sql}: {e}");
            }
        }
    }

    /// Item 7: a new database is created closed to every login (`ALLOW_CONNECTIONS false`), so
    /// the CONNECT PostgreSQL grants PUBLIC on it is revoked before anyone can use it; only
    /// `ensure_database` opens it.
    #[tokio::test]
    async fn new_databases_are_closed_until_public_connect_is_revoked() {
        let env = TestEnv::new(EngineUnderTest::Postgres).await;
        // Another tenant's app login: PUBLIC, as far as the new database is concerned.
        env.onboard("closed-neighbour").await;
        let neighbour = env.secret(&env.secret_names("closed-neighbour").app).await;

        let cluster = PgCluster::shared();
        let engine = PostgresEngine::new(PostgresConfig {
            admin_url: SecretValue::new(cluster.admin_url.clone()),
            tenant_host: None,
            tenant_port: None,
            provisioning: Provisioning::Template,
            lock_down_maintenance_databases: true,
            release: None,
            clone_strategy: Default::default(),
            max_connections: 0,
            instance: None,
        })
        .await
        .unwrap();
        let names = engine.names(&api_types::TenantSlug::parse("closed-db").unwrap());
        let admin = superuser("postgres").await;
        admin
            .batch_execute(&format!("CREATE ROLE \"{}\" NOLOGIN", names.owner))
            .await
            .unwrap();
        // What a crash right after the CREATE leaves behind.
        admin
            .batch_execute(&engine.create_statement(&names))
            .await
            .unwrap();
        let url = |cs: &str| {
            let mut u = url::Url::parse(cs).unwrap();
            u.set_path(&format!("/{}", names.database));
            u.to_string()
        };
        for (who, cs) in [
            ("the superuser", cluster.admin_url.clone()),
            ("another tenant's app", neighbour.expose().to_owned()),
        ] {
            let e = connect(&url(&cs)).await.err().unwrap_or_else(|| {
                panic!("{who} connected to a database whose PUBLIC CONNECT was not revoked yet")
            });
            assert_eq!(sqlstate(&e), "55000", "{who}: {e}");
        }
        engine.ensure_database(&names).await.unwrap();
        connect(&url(&cluster.admin_url)).await.unwrap();
        let e = connect(&url(neighbour.expose())).await.err().unwrap();
        assert_eq!(sqlstate(&e), "42501", "{e}");
        admin
            .batch_execute(&format!(
                "DROP DATABASE \"{}\" WITH (FORCE)",
                names.database
            ))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("DROP ROLE \"{}\"", names.owner))
            .await
            .unwrap();
    }

    /// Item 4: a tenant database of audit format 1 (migrations V1 to V3), with a sequence gap
    /// left by a rolled-back append, keeps verifying after the V4 migration, and the events
    /// after it are format 2 and contiguous.
    #[tokio::test]
    async fn format_1_events_keep_verifying_after_the_migration() {
        let _env = TestEnv::new(EngineUnderTest::Postgres).await;
        let database = format!("legacy_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let admin = superuser("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .unwrap();
        let db = superuser(&database).await;
        let migrations = engine::assets::POSTGRES_MIGRATIONS;
        let (old, new): (Vec<_>, Vec<_>) = migrations.iter().partition(|(name, _)| {
            ["V1", "V2", "V3"]
                .iter()
                .any(|v| name.starts_with(&format!("{v}__")))
        });
        assert_eq!(
            old.len(),
            3,
            "{:?}",
            migrations.iter().map(|m| m.0).collect::<Vec<_>>()
        );
        for (_, sql) in &old {
            db.batch_execute(sql).await.unwrap();
        }
        // One statement per call: a multi-statement string is one implicit transaction.
        for sql in [
            "SELECT audit.record_event('legacy.one')",
            "BEGIN",
            "SELECT audit.record_event('legacy.rolled_back')",
            "ROLLBACK",
            "SELECT audit.record_event('legacy.two', '{\"k\": \"a|b\"}', 'x|y')",
        ] {
            db.batch_execute(sql).await.unwrap();
        }
        let ids: Vec<i64> = db
            .query("SELECT id FROM audit.audit_events ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(ids, [1, 3], "the rolled-back append left a gap");
        for (_, sql) in new.iter().filter(|(name, _)| name.starts_with("V4__")) {
            db.batch_execute(sql).await.unwrap();
        }
        for sql in [
            "SELECT audit.record_event('current.one')",
            "SELECT audit.record_event('current.two')",
        ] {
            db.batch_execute(sql).await.unwrap();
        }
        let rows = db
            .query(
                "SELECT id, hash_version, origin FROM audit.audit_events ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        let rows: Vec<(i64, i16, Option<String>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        assert_eq!(
            rows,
            [
                (1, 1, None),
                (3, 1, None),
                (4, 2, Some("control_plane".into())),
                (5, 2, Some("control_plane".into())),
            ]
        );
        let (valid, first_broken): (bool, Option<i64>) = {
            let r = db
                .query_one(
                    "SELECT valid, first_broken_id FROM audit.verify_chain()",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((valid, first_broken), (true, None));
        // From an anchor on: only the newer events are read.
        let hash: String = db
            .query_one(
                "SELECT encode(hash, 'hex') FROM audit.audit_events WHERE id = 3",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let r = db
            .query_one(
                "SELECT valid, checked FROM audit.verify_chain_from(3, $1)",
                &[&hash],
            )
            .await
            .unwrap();
        assert_eq!((r.get::<_, bool>(0), r.get::<_, i64>(1)), (true, 2));
        drop(db);
        admin
            .batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)"))
            .await
            .unwrap();
    }
}
