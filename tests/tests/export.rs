//! Issue 16: a tenant export. `POST /v1/tenants/{slug}/exports` writes a consistent snapshot of
//! the tenant's business data to the archive store (JSON Lines parts and a signed manifest with
//! row counts and checksums); `GET` lists the exports. Every part's checksum and every count in
//! the manifest is checked here against the files.

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use serde_json::Value;
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(an_export_holds_every_row_once_with_counts_and_checksums_that_verify);

async fn an_export_holds_every_row_once_with_counts_and_checksums_that_verify(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "exported-co";
    env.onboard(slug).await;
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    let names = ["Ada", "Grace", "Edsger", "Barbara", "Zoë \"quoted\" | ✓"];
    for name in names {
        app.customer_upsert(None, name, None).await.unwrap();
    }

    let (status, accepted) = env
        .call(Method::POST, &format!("/v1/tenants/{slug}/exports"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id: uuid::Uuid = accepted["operation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let op = env.wait(id).await;
    assert_eq!(op.state, api_types::OperationState::Succeeded, "{op:?}");

    let (status, list) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}/exports"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let export = &list.as_array().unwrap()[0];
    assert_eq!(export["state"], "succeeded", "{list}");
    let manifest_key = export["manifest"].as_str().unwrap();
    let root = env.data_dir().join("archive");
    let manifest_bytes = std::fs::read(root.join(manifest_key)).unwrap();
    assert_eq!(
        evidence::archive::sha256_hex(&manifest_bytes),
        export["manifest_sha256"].as_str().unwrap()
    );
    let envelope: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let (_, key) = env.call(Method::GET, "/v1/signing-key", None).await;
    let manifest = evidence::verify(&envelope, key["public_key"].as_str()).unwrap();
    assert_eq!(manifest["document"], "tenant-export");

    // Every part is the file it says, every count is the lines it holds.
    let mut customers = Vec::new();
    let mut total = 0;
    for table in manifest["tables"].as_array().unwrap() {
        let mut rows = 0;
        for part in table["parts"].as_array().unwrap() {
            let bytes = std::fs::read(root.join(part["key"].as_str().unwrap())).unwrap();
            assert_eq!(
                evidence::archive::sha256_hex(&bytes),
                part["sha256"].as_str().unwrap()
            );
            let lines: Vec<Value> = std::str::from_utf8(&bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len() as u64, part["rows"].as_u64().unwrap());
            rows += lines.len() as u64;
            if table["name"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("app.customers")
            {
                customers.extend(lines);
            }
        }
        assert_eq!(rows, table["rows"].as_u64().unwrap(), "{table}");
        total += rows;
    }
    assert_eq!(total, manifest["rows"].as_u64().unwrap());
    assert_eq!(total, export["rows"].as_u64().unwrap());
    // The customers, each once, with their names as written (the column's name per engine).
    let mut exported: Vec<String> = customers
        .iter()
        .map(|c| {
            c.as_object()
                .unwrap()
                .iter()
                .find(|(k, _)| {
                    k.eq_ignore_ascii_case("name") || k.eq_ignore_ascii_case("display_name")
                })
                .and_then(|(_, v)| v.as_str())
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    exported.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(exported, expected, "{customers:?}");

    // Offboarding with `"export": true` exports the final state first; the certificate names it.
    let (status, accepted) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/offboard"),
            Some(serde_json::json!({"confirm": slug, "reason": "contract ended", "export": true})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id: uuid::Uuid = accepted["operation"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        env.wait(id).await.state,
        api_types::OperationState::Succeeded
    );
    let (status, cert) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/deletion-certificate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cert}");
    let final_export = &cert["payload"]["export"];
    assert_eq!(final_export["rows"].as_u64(), Some(total), "{cert}");
    let final_manifest = root.join(final_export["manifest"].as_str().unwrap());
    assert_eq!(
        evidence::archive::sha256_hex(&std::fs::read(final_manifest).unwrap()),
        final_export["manifest_sha256"].as_str().unwrap()
    );

    // An export of a tenant that is not active is refused.
    let (status, body) = env
        .call(Method::POST, &format!("/v1/tenants/{slug}/exports"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
