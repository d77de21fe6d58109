//! API error cases through the real router; none of them may leave anything behind.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use axum::http::{Method, StatusCode};
use serde_json::json;
use tcp_tests::{EngineUnderTest, TestEnv};

async fn expect_problem(
    env: &TestEnv,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    status: StatusCode,
) -> serde_json::Value {
    let (got, ctype, problem) = env.call_raw(method.clone(), path, token, body).await;
    assert_eq!(got, status, "{method} {path}: {problem}");
    assert_eq!(ctype, "application/problem+json", "{method} {path}");
    assert_eq!(problem["status"], status.as_u16());
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    problem
}

fn body(v: serde_json::Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

tcp_tests::conformance!(
    bad_input_gets_a_clear_problem_and_leaves_nothing_behind,
    listing_and_operation_views_have_the_documented_shape,
    the_tenant_list_pages_every_tenant_exactly_once_and_filters,
    one_waiting_request_follows_an_operation_to_its_end,
);

/// `GET /v1/operations/{id}?wait_ms=` answers as soon as the operation ends: right after the
/// `POST`, one request sees the onboarding succeeded (without `wait_ms` it is still running),
/// long before the wait is over. A wait beyond the bound is a clear 400.
async fn one_waiting_request_follows_an_operation_to_its_end(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let (status, created) = env
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": "waiting-one", "display_name": "Waiting One"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["operation"]["id"].as_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let (status, op) = env
        .call(
            Method::GET,
            &format!("/v1/operations/{id}?wait_ms=20000"),
            None,
        )
        .await;
    let waited = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{op}");
    assert_eq!(op["state"], "succeeded", "{op}");
    assert!(
        waited < std::time::Duration::from_secs(15),
        "answered after {waited:?}, not when the operation ended"
    );
    let viewer = env.token("operator");
    for bad in ["wait_ms=20001", "wait_ms=-1", "wait_ms=soon", "wait=5"] {
        expect_problem(
            &env,
            Method::GET,
            &format!("/v1/operations/{id}?{bad}"),
            Some(&viewer),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    env.offboard("waiting-one").await;
}

/// Follows `GET /v1/tenants` page by page through its `Link` headers; the ids in order.
async fn every_page(env: &TestEnv, first: &str) -> (Vec<String>, usize) {
    let token = env.token("operator");
    let (mut ids, mut pages, mut next) = (Vec::new(), 0, Some(first.to_owned()));
    while let Some(path) = next.take() {
        let (status, headers, page) = env
            .call_with_headers(Method::GET, &path, Some(&token), None, &[])
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        pages += 1;
        ids.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_owned()),
        );
        next = headers.get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_owned()
        });
        assert!(pages <= 20, "the pages do not end: {path}");
    }
    (ids, pages)
}

async fn the_tenant_list_pages_every_tenant_exactly_once_and_filters(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slugs = ["page-a", "page-b", "page-c", "page-d", "page-e"];
    for slug in slugs {
        env.onboard(slug).await;
    }
    env.offboard("page-c").await;

    // One page of everything, newest first.
    let (all, pages) = every_page(&env, "/v1/tenants").await;
    assert_eq!(pages, 1);
    assert_eq!(all.len(), slugs.len());
    // Pages of two: the same tenants in the same order, each once, three pages linked.
    let (paged, pages) = every_page(&env, "/v1/tenants?limit=2").await;
    assert_eq!(paged, all);
    assert_eq!(pages, 3);
    // A page size that divides the list: the last full page links to an empty one.
    let (paged, pages) = every_page(&env, "/v1/tenants?limit=5").await;
    assert_eq!((paged, pages), (all.clone(), 2));

    // Filters, kept across pages.
    let (active, _) = every_page(&env, "/v1/tenants?state=active&limit=1").await;
    assert_eq!(active.len(), 4);
    let (gone, _) = every_page(&env, "/v1/tenants?state=offboarded").await;
    assert_eq!(gone.len(), 1);
    let (_, list) = env
        .call(Method::GET, "/v1/tenants?state=offboarded", None)
        .await;
    assert_eq!(list[0]["slug"], "page-c");
    let server = list[0]["server"].as_str().unwrap().to_owned();
    let (on_server, _) = every_page(&env, &format!("/v1/tenants?server={server}&limit=3")).await;
    assert_eq!(on_server, all);
    let (elsewhere, _) = every_page(&env, "/v1/tenants?server=no-such-server").await;
    assert!(elsewhere.is_empty());

    // Bad paging parameters are 400 problems.
    let op = env.token("operator");
    for path in [
        "/v1/tenants?limit=0",
        "/v1/tenants?limit=1001",
        "/v1/tenants?limit=ten",
        "/v1/tenants?state=deleted",
        "/v1/tenants?after=not-a-uuid",
        "/v1/tenants?after=00000000-0000-0000-0000-000000000000",
        "/v1/tenants?sort=slug",
    ] {
        expect_problem(
            &env,
            Method::GET,
            path,
            Some(&op),
            None,
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
}

async fn bad_input_gets_a_clear_problem_and_leaves_nothing_behind(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let op = env.token("operator");
    let op = Some(op.as_str());
    env.onboard("api-existing").await;
    let slugs = ["api-existing", "api-new", "api-other"];
    let before = env.snapshot(&slugs).await;
    let tenants_before = env.app.catalog.list_tenants().await.unwrap().len();

    // Invalid slugs → 400, each naming the rule.
    for slug in [
        "ab",
        "1abc",
        "Acme",
        "ac--me",
        "acme-",
        "ac_me",
        "a\"; DROP DATABASE x; --",
        &"a".repeat(41),
    ] {
        let p = expect_problem(
            &env,
            Method::POST,
            "/v1/tenants",
            op,
            body(json!({"slug": slug, "display_name": "X"})),
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(p["detail"].as_str().unwrap().contains("slug"), "{p}");
    }
    // Bad display name, malformed JSON, unknown fields, missing fields → 400/422.
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        body(json!({"slug": "api-new", "display_name": ""})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        body(json!({"slug": "api-new", "display_name": "a\u{0}b"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        Some(b"{not json".to_vec()),
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        body(json!({"slug": "api-new"})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    // An array is no request object, though serde would build one from it (all defaults).
    for path in ["/v1/tenants", "/v1/tenants/api-new/rotate"] {
        expect_problem(
            &env,
            Method::POST,
            path,
            op,
            Some(b" []".to_vec()),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        body(json!({"slug": "api-new", "display_name": "x", "admin": true})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;

    // Duplicate slug → 409.
    let p = expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        body(json!({"slug": "api-existing", "display_name": "Again"})),
        StatusCode::CONFLICT,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("already exists"));

    // Unknown tenant / operation → 404; malformed ids → 400.
    expect_problem(
        &env,
        Method::GET,
        "/v1/tenants/api-missing",
        op,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants/api-missing/offboard",
        op,
        body(json!({"confirm": "api-missing", "reason": "x"})),
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        &env,
        Method::GET,
        &format!("/v1/operations/{}", uuid::Uuid::new_v4()),
        op,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_problem(
        &env,
        Method::GET,
        "/v1/operations/not-a-uuid",
        op,
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        &env,
        Method::GET,
        "/v1/tenants/NOT_A_SLUG",
        op,
        None,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_problem(
        &env,
        Method::GET,
        "/v1/nothing-here",
        op,
        None,
        StatusCode::NOT_FOUND,
    )
    .await;

    // Offboard with a wrong or missing confirmation → 400; empty reason → 400.
    let p = expect_problem(
        &env,
        Method::POST,
        "/v1/tenants/api-existing/offboard",
        op,
        body(json!({"confirm": "api-other", "reason": "x"})),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("confirm"));
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants/api-existing/offboard",
        op,
        body(json!({"confirm": "api-existing", "reason": "  "})),
        StatusCode::BAD_REQUEST,
    )
    .await;

    // Missing, malformed, foreign, or expired tokens → 401.
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = server::auth::LocalKey::load_or_create(foreign_dir.path())
        .unwrap()
        .mint("eve", &["operator".into()], 60)
        .unwrap();
    let expired = server::auth::LocalKey::load(env.data_dir())
        .unwrap()
        .mint("old", &["operator".into()], -120)
        .unwrap();
    for token in [
        None,
        Some("garbage"),
        Some(foreign.as_str()),
        Some(expired.as_str()),
    ] {
        expect_problem(
            &env,
            Method::POST,
            "/v1/tenants",
            token,
            body(json!({"slug": "api-new", "display_name": "New"})),
            StatusCode::UNAUTHORIZED,
        )
        .await;
        expect_problem(
            &env,
            Method::GET,
            "/v1/tenants",
            token,
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
        expect_problem(
            &env,
            Method::POST,
            "/v1/tenants/api-existing/offboard",
            token,
            body(json!({"confirm": "api-existing", "reason": "x"})),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }

    // Wrong role → 403.
    for role in ["support", "auditor"] {
        let t = env.token(role);
        let t = Some(t.as_str());
        expect_problem(
            &env,
            Method::POST,
            "/v1/tenants",
            t,
            body(json!({"slug": "api-new", "display_name": "New"})),
            StatusCode::FORBIDDEN,
        )
        .await;
        expect_problem(
            &env,
            Method::GET,
            "/v1/tenants/api-existing",
            t,
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
        expect_problem(
            &env,
            Method::POST,
            "/v1/tenants/api-existing/offboard",
            t,
            body(json!({"confirm": "api-existing", "reason": "x"})),
            StatusCode::FORBIDDEN,
        )
        .await;
    }

    // Oversized body → 413.
    let huge = json!({"slug": "api-new", "display_name": "x".repeat(200_000)});
    let p = expect_problem(
        &env,
        Method::POST,
        "/v1/tenants",
        op,
        body(huge),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("too large"));

    // Nothing was created or changed by any of these.
    assert_eq!(env.snapshot(&slugs).await, before);
    assert_eq!(
        env.app.catalog.list_tenants().await.unwrap().len(),
        tenants_before
    );

    // Health endpoints need no token.
    let (s, _, v) = env.call_raw(Method::GET, "/healthz", None, None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, _, _) = env.call_raw(Method::GET, "/readyz", None, None).await;
    assert_eq!(s, StatusCode::OK);

    // A second offboarding while one runs → 409; offboarding an offboarded tenant → 409.
    let id = env.start_offboard("api-existing").await;
    let (s, _) = env
        .call(
            Method::POST,
            "/v1/tenants/api-existing/offboard",
            Some(json!({"confirm": "api-existing", "reason": "again"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "one active operation per tenant");
    env.wait(id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, t) = env
            .call(Method::GET, "/v1/tenants/api-existing", None)
            .await;
        if t["state"] == "offboarded" {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    expect_problem(
        &env,
        Method::POST,
        "/v1/tenants/api-existing/offboard",
        op,
        body(json!({"confirm": "api-existing", "reason": "x"})),
        StatusCode::CONFLICT,
    )
    .await;
}

async fn listing_and_operation_views_have_the_documented_shape(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let id = env.start_onboard("api-shape").await;
    env.wait(id).await;
    let (s, list) = env.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(s, StatusCode::OK);
    let t = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == "api-shape")
        .unwrap();
    for key in [
        "id",
        "slug",
        "display_name",
        "state",
        "engine",
        "server",
        "database",
        "schema_version",
        "created_at",
        "secrets",
    ] {
        assert!(t.get(key).is_some(), "tenant lacks {key}: {t}");
    }
    assert_eq!(t["engine"], "postgres");
    let (s, op) = env
        .call(Method::GET, &format!("/v1/operations/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for key in [
        "id",
        "tenant",
        "kind",
        "state",
        "steps",
        "created_at",
        "finished_at",
    ] {
        assert!(op.get(key).is_some(), "operation lacks {key}: {op}");
    }
    assert_eq!(op["state"], "succeeded");
    assert_eq!(op["kind"], "onboard");
    let names: Vec<&str> = op["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        tcp_tests::step_names(&api_types::OperationKind::ONBOARD, env.app.engine.as_ref())
    );
    env.offboard("api-shape").await;
}
