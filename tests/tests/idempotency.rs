//! `Idempotency-Key` on POSTs: a replay returns the first answer and starts nothing new, the
//! same key for another request is refused, keys are the caller's own, a request still running
//! holds its key, answers survive a restart (they live in the catalog), and an investigation's
//! rows are never kept. A conformance suite: it runs on PostgreSQL and on SQL Server.

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use server::auth::LocalKey;
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

tcp_tests::conformance!(
    a_replay_returns_the_first_answer_and_starts_nothing,
    keys_are_scoped_checked_and_held_while_running,
    an_investigation_replay_runs_nothing_and_keeps_no_rows,
);

async fn post(
    env: &TestEnv,
    token: &str,
    path: &str,
    body: Value,
    key: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    env.call_with_headers(Method::POST, path, Some(token), Some(body), &headers)
        .await
}

async fn operations_of(env: &TestEnv, slug: &str) -> usize {
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&api_types::TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    env.app
        .catalog
        .tenant_operations(tenant.id)
        .await
        .unwrap()
        .len()
}

async fn a_replay_returns_the_first_answer_and_starts_nothing(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let token = env.token("operator");
    let create = json!({"slug": "idem-one", "display_name": "Idem"});
    let (s1, h1, first) = post(
        &env,
        &token,
        "/v1/tenants",
        create.clone(),
        Some("k-create-1"),
    )
    .await;
    assert_eq!(s1, StatusCode::ACCEPTED, "{first}");
    assert!(h1.get("idempotent-replayed").is_none());
    let (s2, h2, again) = post(
        &env,
        &token,
        "/v1/tenants",
        create.clone(),
        Some("k-create-1"),
    )
    .await;
    assert_eq!(s2, StatusCode::ACCEPTED, "{again}");
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(
        again, first,
        "a replay answers exactly what the first request answered"
    );
    env.wait(first["operation"]["id"].as_str().unwrap().parse().unwrap())
        .await;
    assert_eq!(operations_of(&env, "idem-one").await, 1);
    // Without a key the same request is a new one: refused as a duplicate slug.
    let (s3, _, _) = post(&env, &token, "/v1/tenants", create.clone(), None).await;
    assert_eq!(s3, StatusCode::CONFLICT);

    // A rotation retried with its key starts one rotation, after a restart too (the answer is
    // in the catalog, not in the process).
    let path = "/v1/tenants/idem-one/rotate";
    let (r1, _, rot) = post(
        &env,
        &token,
        path,
        json!({"mode": "scheduled"}),
        Some("k-rot"),
    )
    .await;
    assert_eq!(r1, StatusCode::ACCEPTED, "{rot}");
    env.wait(rot["operation"]["id"].as_str().unwrap().parse().unwrap())
        .await;
    let env = env.restart(Faults::none()).await;
    let token = env.token("operator");
    let (r2, h2, rot2) = post(
        &env,
        &token,
        path,
        json!({"mode": "scheduled"}),
        Some("k-rot"),
    )
    .await;
    assert_eq!(r2, StatusCode::ACCEPTED, "{rot2}");
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(rot2["operation"]["id"], rot["operation"]["id"]);
    assert_eq!(operations_of(&env, "idem-one").await, 2);

    // Refusals are answers too: a bad request replays as the same refusal.
    let bad = json!({"slug": "Not A Slug", "display_name": "x"});
    let (b1, _, p1) = post(&env, &token, "/v1/tenants", bad.clone(), Some("k-bad")).await;
    let (b2, h2, p2) = post(&env, &token, "/v1/tenants", bad, Some("k-bad")).await;
    assert_eq!(
        (b1, b2),
        (StatusCode::BAD_REQUEST, StatusCode::BAD_REQUEST),
        "{p1}"
    );
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(p1["detail"], p2["detail"]);

    // Offboarding with a key: the replay starts no second offboarding.
    let off = json!({"confirm": "idem-one", "reason": "contract ended"});
    let path = "/v1/tenants/idem-one/offboard";
    let (o1, _, first) = post(&env, &token, path, off.clone(), Some("k-off")).await;
    assert_eq!(o1, StatusCode::ACCEPTED, "{first}");
    let (o2, _, again) = post(&env, &token, path, off, Some("k-off")).await;
    assert_eq!(o2, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["operation"]["id"], first["operation"]["id"]);
    env.wait(first["operation"]["id"].as_str().unwrap().parse().unwrap())
        .await;
    assert_eq!(operations_of(&env, "idem-one").await, 3);
}

async fn keys_are_scoped_checked_and_held_while_running(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let token = env.token("operator");
    let body = json!({"slug": "idem-two", "display_name": "Idem"});
    let (s, _, first) = post(
        &env,
        &token,
        "/v1/tenants",
        body.clone(),
        Some("shared-key"),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    env.wait(first["operation"]["id"].as_str().unwrap().parse().unwrap())
        .await;

    // The same key for another request: refused, nothing started.
    let other = json!({"slug": "idem-three", "display_name": "Idem"});
    let (s, _, p) = post(
        &env,
        &token,
        "/v1/tenants",
        other.clone(),
        Some("shared-key"),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("different request"),
        "{p}"
    );
    let (s, _) = env.call(Method::GET, "/v1/tenants/idem-three", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another caller's key of the same name is another key: their request runs (and is
    // refused on its merits, the slug being taken).
    let someone = LocalKey::load(env.data_dir())
        .unwrap()
        .mint("someone-else", &["operator".to_owned()], 600)
        .unwrap();
    let (s, h, _) = post(
        &env,
        &someone,
        "/v1/tenants",
        body.clone(),
        Some("shared-key"),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(h.get("idempotent-replayed").is_none());

    // A malformed key is refused before anything runs.
    let (s, _, p) = post(&env, &token, "/v1/tenants", other.clone(), Some("bad key")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");

    // A key whose first request is still running (claimed, no answer yet) answers 409.
    let held = server::idempotency::key_hash("test-operator", "held-key");
    let same = server::idempotency::request_hash(
        "POST",
        "/v1/tenants",
        "",
        &serde_json::to_vec(&other).unwrap(),
    );
    let week_ago = chrono::Utc::now() - chrono::Duration::hours(24);
    let claim = env
        .app
        .catalog
        .idempotency_claim(&held, &same, uuid::Uuid::new_v4(), week_ago)
        .await
        .unwrap();
    assert_eq!(claim, catalog::IdempotencyClaim::Claimed);
    // A claim retried by the same call (say after a deadlock) is still its own; another
    // call's is not.
    let token_a = uuid::Uuid::new_v4();
    let retried = server::idempotency::key_hash("test-operator", "retried-key");
    for _ in 0..2 {
        let c = env
            .app
            .catalog
            .idempotency_claim(&retried, &same, token_a, week_ago)
            .await
            .unwrap();
        assert_eq!(c, catalog::IdempotencyClaim::Claimed);
    }
    let c = env
        .app
        .catalog
        .idempotency_claim(&retried, &same, uuid::Uuid::new_v4(), week_ago)
        .await
        .unwrap();
    assert!(
        matches!(c, catalog::IdempotencyClaim::InProgress { .. }),
        "{c:?}"
    );
    let (s, _, p) = post(&env, &token, "/v1/tenants", other.clone(), Some("held-key")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    assert!(
        p["detail"].as_str().unwrap().contains("running since"),
        "{p}"
    );
    let (s, _) = env.call(Method::GET, "/v1/tenants/idem-three", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a held key starts nothing");
    // Released, the key is free again; expired uses are forgotten.
    env.app.catalog.idempotency_release(&held).await.unwrap();
    let (s, _, p) = post(&env, &token, "/v1/tenants", other, Some("held-key")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{p}");
    env.wait(p["operation"]["id"].as_str().unwrap().parse().unwrap())
        .await;
    let claim = env
        .app
        .catalog
        .idempotency_claim(
            &held,
            "yet-another",
            uuid::Uuid::new_v4(),
            chrono::Utc::now() + chrono::Duration::seconds(5),
        )
        .await
        .unwrap();
    assert_eq!(
        claim,
        catalog::IdempotencyClaim::Claimed,
        "an expired use is forgotten"
    );
}

async fn an_investigation_replay_runs_nothing_and_keeps_no_rows(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    env.onboard("idem-inv").await;
    let support = env.token("support");
    let body = json!({"ticket": "INC-9", "reason": "check", "sql": "SELECT 'zq-marker-731' AS answer", "max_rows": 5});
    let path = "/v1/tenants/idem-inv/investigations";
    let (s, _, first) = post(&env, &support, path, body.clone(), Some("inv-1")).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let count = || async {
        env.probe()
            .admin(&env.names("idem-inv").database)
            .await
            .audit_actions()
            .await
            .unwrap()
            .iter()
            .filter(|a| a.starts_with("investigation."))
            .count()
    };
    let before = count().await;
    assert_eq!(before, 2);
    let (s, h, again) = post(&env, &support, path, body, Some("inv-1")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{again}");
    assert_eq!(h["idempotent-replayed"], "true");
    let detail = again["detail"].as_str().unwrap();
    assert!(
        detail.contains(&first["query_event"].to_string()),
        "{detail}"
    );
    assert!(first.to_string().contains("zq-marker-731"), "{first}");
    assert!(
        !again.to_string().contains("zq-marker-731"),
        "no rows are kept: {again}"
    );
    assert_eq!(count().await, before, "the replay ran no query");
}
