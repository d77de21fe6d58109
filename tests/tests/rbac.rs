//! The authorization matrix: every endpoint against every role (`operator`, `support`,
//! `auditor`, `admin`, and no token) for the exact status. Tenant routes name a tenant that does
//! not exist, so an allowed call ends in a harmless 404 (or the body's validation) and nothing is
//! created. A conformance suite: it runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(every_endpoint_answers_every_role_exactly);

const ROLES: [Option<&str>; 5] = [
    Some("operator"),
    Some("support"),
    Some("auditor"),
    Some("admin"),
    None,
];

async fn every_endpoint_answers_every_role_exactly(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let t = "/v1/tenants/rbac-nobody";
    let op = format!("/v1/operations/{}", uuid::Uuid::new_v4());
    let purge = json!({"before": "2020-01-01T00:00:00Z", "reason": "retention"});
    let investigation = json!({"ticket": "INC-1", "reason": "r", "sql": "SELECT 1"});
    let offboard = json!({"confirm": "rbac-nobody", "reason": "r"});
    // (method, path, body, [operator, support, auditor, admin, none])
    let matrix: Vec<(Method, String, Option<Value>, [u16; 5])> = vec![
        (
            Method::GET,
            "/healthz".into(),
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/readyz".into(),
            None,
            [200, 200, 200, 200, 200],
        ),
        (
            Method::GET,
            "/metrics".into(),
            None,
            [200, 200, 200, 200, 200],
        ),
        // An empty body is refused by validation (422) only after authorization passed.
        (
            Method::POST,
            "/v1/tenants".into(),
            Some(json!({})),
            [422, 403, 403, 422, 401],
        ),
        (
            Method::GET,
            "/v1/tenants".into(),
            None,
            [200, 403, 403, 200, 401],
        ),
        (Method::GET, t.into(), None, [404, 403, 403, 404, 401]),
        (
            Method::POST,
            format!("{t}/offboard"),
            Some(offboard),
            [404, 403, 403, 404, 401],
        ),
        (
            Method::POST,
            format!("{t}/rotate"),
            Some(json!({})),
            [404, 403, 403, 404, 401],
        ),
        (
            Method::GET,
            format!("{t}/rotations"),
            None,
            [404, 403, 403, 404, 401],
        ),
        (
            Method::GET,
            "/v1/rotations/due".into(),
            None,
            [200, 403, 403, 200, 401],
        ),
        (Method::GET, op, None, [404, 403, 403, 404, 401]),
        (
            Method::POST,
            format!("{t}/investigations"),
            Some(investigation),
            [403, 404, 403, 404, 401],
        ),
        (
            Method::GET,
            format!("{t}/audit-events"),
            None,
            [403, 403, 404, 404, 401],
        ),
        (
            Method::GET,
            format!("{t}/audit/verify"),
            None,
            [403, 403, 404, 404, 401],
        ),
        (
            Method::POST,
            format!("{t}/audit/purge"),
            Some(purge),
            [403, 403, 403, 404, 401],
        ),
        (
            Method::POST,
            format!("{t}/migrate"),
            Some(json!({})),
            [403, 403, 403, 404, 401],
        ),
        (
            Method::GET,
            format!("{t}/deletion-certificate"),
            None,
            [403, 403, 404, 404, 401],
        ),
        (
            Method::GET,
            format!("{t}/evidence"),
            None,
            [403, 403, 404, 404, 401],
        ),
        (
            Method::GET,
            "/v1/signing-key".into(),
            None,
            [200, 200, 200, 200, 401],
        ),
        (
            Method::GET,
            "/v1/openapi.json".into(),
            None,
            [200, 200, 200, 200, 200],
        ),
    ];
    let mut wrong = Vec::new();
    for (method, path, body, expected) in &matrix {
        for (role, want) in ROLES.iter().zip(expected) {
            let token = role.map(|r| env.token(r));
            let (status, _, answer) = env
                .call_raw(
                    method.clone(),
                    path,
                    token.as_deref(),
                    body.as_ref().map(|b| serde_json::to_vec(b).unwrap()),
                )
                .await;
            if status != StatusCode::from_u16(*want).unwrap() {
                wrong.push(format!(
                    "{method} {path} as {}: {status}, expected {want}: {answer}",
                    role.unwrap_or("no token")
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Nothing was created along the way.
    let (_, tenants) = env.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(tenants, json!([]));
}
