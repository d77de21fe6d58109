//! Signed documents: the deletion certificate of an offboarded tenant, signed with the control
//! plane's Ed25519 key and verified offline against `GET /v1/signing-key`; the key lives in the
//! data directory and survives a restart.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;

use axum::http::{Method, StatusCode};
use evidence::VerifyError;
use serde_json::Value;
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

tcp_tests::conformance!(
    signing_deletion_certificate_verifies_offline,
    signing_key_is_public_to_every_role_and_survives_a_restart,
);

const PROBLEM: &str = "application/problem+json";

/// `GET path` with a token of `role` (none: no token).
async fn get(env: &TestEnv, path: &str, role: Option<&str>) -> (StatusCode, String, Value) {
    let token = role.map(|r| env.token(r));
    env.call_raw(Method::GET, path, token.as_deref(), None)
        .await
}

async fn signing_key(env: &TestEnv) -> Value {
    let (status, _, key) = get(env, "/v1/signing-key", Some("auditor")).await;
    assert_eq!(status, StatusCode::OK, "{key}");
    key
}

async fn signing_deletion_certificate_verifies_offline(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "signing-cert";
    let path = format!("/v1/tenants/{slug}/deletion-certificate");

    // Unknown tenant, bad slug.
    let (status, ctype, body) = get(&env, &path, Some("auditor")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(ctype, PROBLEM);
    assert!(
        body["detail"].as_str().unwrap().contains("not found"),
        "{body}"
    );
    let (status, ctype, _) = get(
        &env,
        "/v1/tenants/Not_A_Slug/deletion-certificate",
        Some("auditor"),
    )
    .await;
    assert_eq!((status, ctype.as_str()), (StatusCode::BAD_REQUEST, PROBLEM));

    // An active tenant has no certificate yet.
    env.onboard(slug).await;
    let (status, ctype, body) = get(&env, &path, Some("auditor")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(ctype, PROBLEM);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("no deletion certificate") && detail.contains("active"),
        "{detail}"
    );

    env.offboard(slug).await;

    // Only auditors (and admins) read certificates; everyone needs a token.
    for role in ["operator", "support"] {
        let (status, ctype, body) = get(&env, &path, Some(role)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role}: {body}");
        assert_eq!(ctype, PROBLEM);
        assert!(
            body["detail"].as_str().unwrap().contains("auditor"),
            "{body}"
        );
    }
    let (status, _, _) = get(&env, &path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&env, &path, Some("admin")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, ctype, doc) = get(&env, &path, Some("auditor")).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(ctype, "application/json");
    let key = signing_key(&env).await;
    assert_eq!(key["alg"], "Ed25519");
    assert_eq!(doc["signature"]["alg"], "Ed25519");
    assert_eq!(doc["signature"]["kid"], key["kid"]);
    assert_eq!(doc["signature"]["public_key"], key["public_key"]);
    let trusted = key["public_key"].as_str().unwrap();

    // Verified offline against the published key, the payload is the recorded certificate.
    let payload = evidence::verify(&doc, Some(trusted)).unwrap();
    assert_eq!(payload["certificate"], "tenant-deletion");
    assert_eq!(payload["tenant"]["slug"], slug);
    assert_eq!(payload["verified_absent"], true);
    let tenant_id: uuid::Uuid = payload["tenant"]["id"].as_str().unwrap().parse().unwrap();
    let recorded = env
        .app
        .catalog
        .deletion_certificate(tenant_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload, recorded.detail);

    // The document as text (what an auditor stores), with one byte changed, no longer verifies.
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let reparsed: Value = serde_json::from_str(&text).unwrap();
    assert!(evidence::verify(&reparsed, Some(trusted)).is_ok());
    let mut bytes = text.into_bytes();
    let at = String::from_utf8_lossy(&bytes)
        .find(&format!("\"{slug}\""))
        .unwrap()
        + 1;
    bytes[at] ^= 0x01; // 's' → 'r'
    let flipped: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(matches!(
        evidence::verify(&flipped, Some(trusted)),
        Err(VerifyError::BadSignature { .. })
    ));

    // After a restart the same key signs, and the earlier document still verifies against it.
    let env = env.restart(Faults::none()).await;
    let after = signing_key(&env).await;
    assert_eq!(after, key);
    assert!(evidence::verify(&doc, Some(after["public_key"].as_str().unwrap())).is_ok());
    let (status, _, again) = get(&env, &path, Some("auditor")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["signature"]["kid"], key["kid"]);
    assert_eq!(evidence::verify(&again, Some(trusted)).unwrap(), payload);

    // The slug is released: a new tenant may take it, and the certificate stays reachable.
    env.onboard(slug).await;
    let (status, _, reused) = get(&env, &path, Some("auditor")).await;
    assert_eq!(status, StatusCode::OK, "{reused}");
    assert_eq!(evidence::verify(&reused, Some(trusted)).unwrap(), payload);
    env.offboard(slug).await;
}

async fn signing_key_is_public_to_every_role_and_survives_a_restart(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let (status, ctype, _) = get(&env, "/v1/signing-key", None).await;
    assert_eq!(
        (status, ctype.as_str()),
        (StatusCode::UNAUTHORIZED, PROBLEM)
    );
    let key = signing_key(&env).await;
    for role in ["operator", "support", "auditor", "admin"] {
        let (status, _, body) = get(&env, "/v1/signing-key", Some(role)).await;
        assert_eq!(status, StatusCode::OK, "{role}");
        assert_eq!(body, key, "{role}");
    }
    let kid = key["kid"].as_str().unwrap();
    assert_eq!(kid.len(), 16);
    assert_eq!(
        key.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["alg", "kid", "public_key"]
    );

    // The private key is a 0600 file in the data directory, and nothing in the answer is it.
    let file = env.data_dir().join(server::signing::SIGNING_KEY_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let private = std::fs::read_to_string(&file).unwrap();
    assert!(!key.to_string().contains(private.trim()));

    let env = env.restart(Faults::none()).await;
    assert_eq!(
        signing_key(&env).await,
        key,
        "the key changed across a restart"
    );
}
