//! The served OpenAPI document and the answers it promises for requests that match no handler:
//! the document is public and equal to `docs/openapi.json`; an unknown path is a problem+json
//! 404, a known path with another method a problem+json 405 with `Allow`, and a malformed query
//! a problem+json 400 (never axum's plain-text rejections, which the document does not declare).

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tcp_tests::{EngineUnderTest, TestEnv};
use tower::ServiceExt as _;

async fn send(
    env: &TestEnv,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = env
        .app
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

fn problem(status: StatusCode, headers: &axum::http::HeaderMap, body: &[u8]) -> Value {
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/problem+json",
        "{status}: {}",
        String::from_utf8_lossy(body)
    );
    let problem: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(problem["status"], status.as_u16());
    assert!(
        headers.get("x-request-id").is_some(),
        "{status} has no X-Request-Id"
    );
    problem
}

#[tokio::test]
async fn the_document_is_served_and_unmatched_requests_answer_problems() {
    let env = TestEnv::new(EngineUnderTest::Postgres).await;

    // Public, JSON, and the committed copy.
    let (status, headers, body) = send(&env, Method::GET, "/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let served: Value = serde_json::from_slice(&body).unwrap();
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        served, committed,
        "docs/openapi.json is stale: run `make openapi`"
    );
    assert_eq!(served["openapi"], "3.1.0");

    let (status, headers, body) = send(&env, Method::GET, "/v1/no-such-thing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    problem(status, &headers, &body);

    // A known path with a method it lacks: 405, problem+json, and Allow naming its methods;
    // before authorization (no token needed to learn the methods), on /metrics too.
    for (method, path, allow) in [
        (Method::PUT, "/v1/tenants", "GET,HEAD,POST"),
        (Method::DELETE, "/v1/tenants/acme", "GET,HEAD"),
        (Method::POST, "/v1/openapi.json", "GET,HEAD"),
        (Method::DELETE, "/metrics", "GET,HEAD"),
    ] {
        let (status, headers, body) = send(&env, method.clone(), path, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let mut got: Vec<&str> = headers
            .get(header::ALLOW)
            .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
            .to_str()
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        got.sort_unstable();
        assert_eq!(got.join(","), allow, "{method} {path}");
        if path != "/metrics" {
            problem(status, &headers, &body);
        } else {
            assert_eq!(
                headers.get(header::CONTENT_TYPE).unwrap(),
                "application/problem+json"
            );
        }
    }

    // HEAD of a GET route runs under the GET rule (it used to find no rule: 500).
    let (status, _, _) = send(&env, Method::HEAD, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&env, Method::HEAD, "/v1/tenants", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // NUL in text that reaches PostgreSQL is a 400, not the 500 of a failed insert (schemathesis).
    let admin = env.token("admin");
    for (path, body) in [
        (
            "/v1/tenants/acme/audit/purge",
            serde_json::json!({"before": "2020-01-01T00:00:00Z", "reason": "old\0events"}),
        ),
        (
            "/v1/tenants/acme/investigations",
            serde_json::json!({"ticket": "INC-1", "reason": "r", "sql": "SELECT 1\0"}),
        ),
    ] {
        let (status, ctype, answer) = env
            .call_raw(
                Method::POST,
                path,
                Some(&admin),
                Some(serde_json::to_vec(&body).unwrap()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert_eq!(ctype, "application/problem+json");
        assert!(
            answer["detail"].as_str().unwrap().contains("NUL"),
            "{answer}"
        );
    }
    let (status, _, answer) = env
        .call_raw(
            Method::GET,
            "/v1/tenants/acme/audit-events?actor=a%00b",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // A query that does not parse is the handler's problem+json 400, not axum's text.
    let auditor = env.token("auditor");
    for path in [
        "/v1/tenants/acme/audit-events?limit=many",
        "/v1/tenants/acme/audit-events?since=yesterday",
        "/v1/tenants/acme/audit-events?colour=red",
        "/v1/tenants/acme/evidence?colour=red",
    ] {
        let (status, headers, body) = send(&env, Method::GET, path, Some(&auditor)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        problem(status, &headers, &body);
    }
}
