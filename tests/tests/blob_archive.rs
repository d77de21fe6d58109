//! Issue 16, item 1: the archive store on Azure Blob Storage. The production `BlobArchive` and
//! the official SDK (`azure_storage_blob`) run against an HTTPS double of the Blob REST API
//! (`tcp_tests::blob`): objects are written once (the service's own `If-None-Match: *`, then a
//! read-back compare), large ones go up in blocks and come back in ranges, outages are retried,
//! and start-up refuses a container that nothing protects. End to end, a control plane with the
//! Blob archive offboards a tenant, and the auditor's archive and the export are the blobs the
//! double holds, byte for byte.

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use rand::RngCore as _;
use serde_json::Value;
use tcp_tests::blob::{BlobDouble, BlobDoubleOptions};
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::archive::blob::BlobArchive;
use workflows::archive::{ArchiveStore, ArchiveStoreError};

#[tokio::test]
async fn blobs_are_written_once_and_read_back() {
    let double = BlobDouble::start(BlobDoubleOptions::default()).await;
    let store = double.store();
    assert_eq!(store.backend(), "azure_blob");
    let key = "tenants/0a/audit-archive-1.json";
    store.put(key, b"{\"one\":1}").await.unwrap();
    assert_eq!(double.blob(key).unwrap(), b"{\"one\":1}");
    // The same bytes again (a retried step): the service refuses the write, the compare accepts.
    store.put(key, b"{\"one\":1}").await.unwrap();
    let refused = double
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.status == 409)
        .count();
    assert_eq!(refused, 1, "{:?}", double.requests());
    // Other bytes are refused, and the blob keeps the first ones.
    let err = store.put(key, b"{\"two\":2}").await.unwrap_err();
    assert!(matches!(err, ArchiveStoreError::Exists { .. }), "{err}");
    assert_eq!(store.get(key).await.unwrap().unwrap(), b"{\"one\":1}");
    assert!(store
        .get("tenants/0a/missing.json")
        .await
        .unwrap()
        .is_none());
    // Keys are path segments under the container, as Blob Storage's virtual directories.
    assert_eq!(double.names(), vec![key.to_owned()]);
    // Every request carried the token (none went without: no challenge round trip).
    assert_eq!(double.count(401), 0);
}

#[tokio::test]
async fn large_objects_go_up_in_blocks_and_come_back_in_ranges() {
    let double = BlobDouble::start(BlobDoubleOptions::default()).await;
    let store = double.store();
    let mut big = vec![0u8; 10 * 1024 * 1024 + 17];
    rand::thread_rng().fill_bytes(&mut big);
    let key = "tenants/0b/exports/1/customers-0001.jsonl";
    store.put(key, &big).await.unwrap();
    let requests = double.requests();
    let blocks = requests
        .iter()
        .filter(|r| r.comp.as_deref() == Some("block"))
        .count();
    let lists = requests
        .iter()
        .filter(|r| r.comp.as_deref() == Some("blocklist"))
        .count();
    assert_eq!((blocks, lists), (3, 1), "{requests:?}");
    assert_eq!(double.blob(key).unwrap(), big);
    let back = store.get(key).await.unwrap().unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back == big, "the bytes read back differ");
    let ranged = double
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.status == 206)
        .count();
    assert_eq!(ranged, 3, "three 4 MiB ranges");
    // Written again (a retried export): the conditional block list is refused, the compare
    // accepts; with one byte changed it is refused for good.
    store.put(key, &big).await.unwrap();
    big[5] ^= 1;
    let err = store.put(key, &big).await.unwrap_err();
    assert!(matches!(err, ArchiveStoreError::Exists { .. }), "{err}");
}

#[tokio::test]
async fn outages_are_retried_and_then_reported_without_the_token() {
    let double = BlobDouble::start(BlobDoubleOptions::default()).await;
    let store = double.store();
    double.fail(2, 503);
    store.put("tenants/0c/a.json", b"{}").await.unwrap();
    assert_eq!(double.count(503), 2);
    // Longer than the retries: a clear error naming the container, the status and the code.
    double.fail(50, 503);
    let err = store
        .get("tenants/0c/a.json")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(double.container_url()), "{err}");
    assert!(err.contains("503 ServerBusy"), "{err}");
    double.fail(0, 503);
    // An identity without the role: the error names the role to grant.
    double.deny(true);
    let err = store
        .put("tenants/0c/b.json", b"{}")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("403 AuthorizationPermissionMismatch"), "{err}");
    assert!(err.contains("Storage Blob Data Contributor"), "{err}");
    assert!(!err.contains("blob-double-token"), "{err}");
    double.deny(false);
    // Another token: refused, and said so.
    let mut options = double.store_options();
    options.credential = secrets::AzureCredential::StaticTokenForTests {
        token: secrets::SecretValue::new("not-the-token".to_owned()),
    };
    let err = BlobArchive::new(options)
        .unwrap()
        .get("tenants/0c/a.json")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("401 InvalidAuthenticationInfo"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
}

#[tokio::test]
async fn start_up_refuses_a_container_nothing_protects() {
    let double = BlobDouble::start(BlobDoubleOptions::default()).await;
    let facts = double.store().check_access().await.unwrap();
    assert!(facts.immutability_policy);
    double.set_protection(false, false);
    let err = double.store().check_access().await.unwrap_err().to_string();
    assert!(
        err.contains("no immutability policy or legal hold"),
        "{err}"
    );
    assert!(err.contains("archive_require_immutability"), "{err}");
    // A legal hold protects it too; a test deployment may turn the check off.
    double.set_protection(false, true);
    double.store().check_access().await.unwrap();
    double.set_protection(false, false);
    let mut options = double.store_options();
    options.require_immutability = false;
    BlobArchive::new(options)
        .unwrap()
        .check_access()
        .await
        .unwrap();
    // A container that does not exist: the control plane never creates one.
    let mut options = double.store_options();
    options.container_url = double.container_url().replace("audit-archive", "no-such");
    let err = BlobArchive::new(options)
        .unwrap()
        .check_access()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("404 ContainerNotFound"), "{err}");
    assert!(err.contains("create the container"), "{err}");

    // The control plane does not start on it.
    let mut config = server::Config::default();
    double.configure(&mut config);
    let Err(err) = server::open_archive_store(&config).await else {
        panic!("started on an unprotected container");
    };
    let text = format!("{err:#}");
    assert!(text.contains("no immutability policy"), "{text}");
    double.set_protection(true, false);
    let store = server::open_archive_store(&config).await.unwrap();
    assert_eq!(store.backend(), "azure_blob");
}

/// End to end on a control plane whose archive store is the Blob container: the offboarding's
/// audit archive and an export land there, the certificate names the container and the digest,
/// and the auditor reads the archive back byte for byte; a blob changed behind the policy no
/// longer matches the certificate's digest and fails the offline check.
#[tokio::test]
async fn a_control_plane_archives_and_exports_to_blob_storage() {
    let double = BlobDouble::start(BlobDoubleOptions::default()).await;
    let env = TestEnv::with(EngineUnderTest::Postgres, workflows::Faults::none(), |c| {
        double.configure(c);
    })
    .await;
    let slug = "blob-archived";
    env.onboard(slug).await;

    let (status, accepted) = env
        .call(Method::POST, &format!("/v1/tenants/{slug}/exports"), None)
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
    let (_, list) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}/exports"), None)
        .await;
    let manifest_key = list[0]["manifest"].as_str().unwrap().to_owned();
    let manifest = double.blob(&manifest_key).expect("the manifest is a blob");
    assert_eq!(
        evidence::archive::sha256_hex(&manifest),
        list[0]["manifest_sha256"].as_str().unwrap()
    );

    // The container answers 503 for four whole attempts of the archive step (each after the
    // client's five tries): an outage, waited out, not a failed offboarding.
    double.fail(20, 503);
    let op = env.offboard(slug).await;
    assert_eq!(op.state, api_types::OperationState::Succeeded, "{op:?}");
    assert_eq!(double.count(503), 20);
    let (status, certificate) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/deletion-certificate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{certificate}");
    let archived = &certificate["payload"]["audit_archive"];
    assert_eq!(archived["backend"], "azure_blob", "{archived}");
    assert!(
        archived["location"]
            .as_str()
            .unwrap()
            .contains(double.container_url()),
        "{archived}"
    );
    let key = archived["key"].as_str().unwrap().to_owned();
    let sha256 = archived["sha256"].as_str().unwrap().to_owned();
    let blob = double.blob(&key).expect("the archive is a blob");
    assert_eq!(evidence::archive::sha256_hex(&blob), sha256);

    let auditor = env.token("auditor");
    let (status, _, text) = env
        .call_text(
            Method::GET,
            &format!("/v1/tenants/{slug}/audit-archive"),
            Some(&auditor),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(text.as_bytes(), blob.as_slice());
    let envelope: Value = serde_json::from_str(&text).unwrap();
    let payload = evidence::verify(&envelope, None).unwrap();
    assert!(evidence::archive::verify_archive(&payload).is_ok());

    // Changed behind the policy: the digest no longer matches and the offline check fails.
    double.tamper(
        &key,
        text.replacen("tenant.provisioned", "tenant.provisionex", 1)
            .into_bytes(),
    );
    let (_, _, changed) = env
        .call_text(
            Method::GET,
            &format!("/v1/tenants/{slug}/audit-archive"),
            Some(&auditor),
        )
        .await;
    assert_ne!(evidence::archive::sha256_hex(changed.as_bytes()), sha256);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("archive.json");
    std::fs::write(&saved, changed.as_bytes()).unwrap();
    let bad = tcp_tests::tenantctl(&["audit", "archive", "verify", saved.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
}
