//! Issue 16: an offboarded tenant's audit log outlives its database. Offboarding writes it to the
//! archive store as a signed document before the drop, the deletion certificate quotes its key and
//! digest, an auditor fetches it after the tenant is gone, and it verifies offline, while any
//! change to it is found.

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use serde_json::Value;
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(
    an_offboarded_tenants_audit_log_is_archived_and_verifies_offline,
    purges_archive_what_they_delete_and_the_archives_chain,
);

async fn an_offboarded_tenants_audit_log_is_archived_and_verifies_offline(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "archived-co";
    env.onboard(slug).await;
    // An audited investigation adds events of its own to the tenant's log (its query, recorded
    // before it runs, and its end).
    let (status, _) = env
        .call_as(
            "support",
            Method::POST,
            &format!("/v1/tenants/{slug}/investigations"),
            Some(
                serde_json::json!({"ticket": "INC-7", "reason": "archive test", "sql": "SELECT 1"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let op = env.offboard(slug).await;
    assert_eq!(op.state, api_types::OperationState::Succeeded);

    // The certificate names the archive and its digest.
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
    let sha256 = archived["sha256"].as_str().unwrap().to_owned();
    let events = archived["events"].as_u64().unwrap();
    assert!(events >= 2, "{archived}");
    assert_eq!(archived["backend"], "local");
    assert_eq!(archived["chain_valid"], true, "{archived}");

    // The auditor reads it after the database is gone, byte for byte as archived.
    let auditor = env.token("auditor");
    let (status, ctype, text) = env
        .call_text(
            Method::GET,
            &format!("/v1/tenants/{slug}/audit-archive"),
            Some(&auditor),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(ctype, "application/json");
    assert_eq!(evidence::archive::sha256_hex(text.as_bytes()), sha256);
    let envelope: Value = serde_json::from_str(&text).unwrap();
    let (_, key) = env
        .call_as("auditor", Method::GET, "/v1/signing-key", None)
        .await;
    let payload = evidence::verify(&envelope, key["public_key"].as_str()).unwrap();
    let verified = evidence::archive::verify_archive(&payload).unwrap();
    assert_eq!(verified.events as u64, events);
    assert_eq!(
        verified.recomputed as u64, events,
        "every event is format 2"
    );
    assert!(verified.from_genesis);
    let actions: Vec<&str> = payload["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions.first(), Some(&"tenant.provisioned"), "{actions:?}");
    // Its head is the final head the certificate recorded.
    assert_eq!(
        verified.head.as_ref().unwrap().id,
        certificate["payload"]["final_audit_chain_head"]["head_id"]
            .as_i64()
            .unwrap()
    );

    // On disk: read-only, where the store says.
    let file = env
        .data_dir()
        .join("archive")
        .join(archived["key"].as_str().unwrap());
    assert_eq!(std::fs::read(&file).unwrap(), text.as_bytes());

    // Changing an event is found by the chain check, even with a signature made afresh over
    // the changed payload (what a forger with the document but not the key cannot do anyway).
    let mut forged = payload.clone();
    forged["events"][0]["actor"] = "someone else".into();
    assert!(matches!(
        evidence::archive::verify_archive(&forged),
        Err(evidence::archive::ArchiveError::Hash { .. })
    ));
    let mut tampered = envelope.clone();
    tampered["payload"]["events"][0]["actor"] = "someone else".into();
    assert!(evidence::verify(&tampered, key["public_key"].as_str()).is_err());

    // Offline, with tenantctl: the file verifies, a changed byte does not.
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("archive.json");
    std::fs::write(&saved, text.as_bytes()).unwrap();
    let ok = tcp_tests::tenantctl(&[
        "audit",
        "archive",
        "verify",
        saved.to_str().unwrap(),
        "--sha256",
        &sha256,
    ]);
    assert!(ok.status.success(), "{ok:?}");
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains(&format!("audit archive of {slug}: valid")),
        "{out}"
    );
    let changed = text.replacen("tenant.provisioned", "tenant.provisionex", 1);
    std::fs::write(&saved, changed).unwrap();
    let bad = tcp_tests::tenantctl(&["audit", "archive", "verify", saved.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("archive.json"), "{err}");
}

/// An archive that cannot be written stops the offboarding before the drop: the database (and
/// its log) is still there, the operation says why, and offboarding again once the store works
/// finishes the job.
#[tokio::test]
async fn no_database_is_dropped_before_its_log_is_archived() {
    let blocked = tempfile::tempdir().unwrap();
    // A file where the store's directory should be: nothing can be written under it.
    let archive_dir = blocked.path().join("archive");
    std::fs::write(&archive_dir, b"not a directory").unwrap();
    let env = TestEnv::with(EngineUnderTest::Postgres, workflows::Faults::none(), |c| {
        c.archive_dir = Some(archive_dir.clone());
    })
    .await;
    let slug = "unarchivable";
    env.onboard(slug).await;
    let id = env.start_offboard(slug).await;
    let op = env.wait(id).await;
    assert_eq!(op.state, api_types::OperationState::Failed, "{op:?}");
    let error = op.error.clone().unwrap_or_default();
    assert!(error.contains("archive_audit"), "{error}");
    let probe = env.probe();
    assert!(
        probe.database_exists(&env.names(slug).database).await,
        "the database was dropped without its archive"
    );
    // The store works again: offboarding again archives, then drops.
    std::fs::remove_file(&archive_dir).unwrap();
    let op = env.offboard(slug).await;
    assert_eq!(op.state, api_types::OperationState::Succeeded);
    assert!(!probe.database_exists(&env.names(slug).database).await);
    assert!(std::fs::read_dir(&archive_dir).unwrap().next().is_some());
}

/// Two retention purges, the second with a cutoff earlier than the first purge ran (so the first
/// purge's event, which names the anchor the remaining log starts from, is not in the second's
/// range): each archives exactly what it deletes, and both archives verify, the second through
/// the purge event it carries beside its events.
async fn purges_archive_what_they_delete_and_the_archives_chain(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "purged-twice";
    env.onboard(slug).await;
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .unwrap();
    for name in ["Ada", "Grace", "Edsger", "Barbara", "Frances"] {
        app.customer_upsert(None, name, None).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (_, page) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/audit-events"),
            None,
        )
        .await;
    let times: Vec<String> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurred_at"].as_str().unwrap().to_owned())
        .collect();
    assert!(times.len() >= 6, "{page}");
    let path = format!("/v1/tenants/{slug}/audit/purge");
    let mut archives = Vec::new();
    for (cut, expected) in [(2, 2), (4, 2)] {
        let (status, v) = env
            .call_as(
                "admin",
                Method::POST,
                &path,
                Some(serde_json::json!({"before": times[cut], "reason": "retention"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "purge before event {cut}: {v}");
        assert_eq!(v["deleted"], expected, "{v}");
        assert_eq!(v["archive"]["events"], expected, "{v}");
        assert_eq!(v["archive"]["chain_valid"], true, "{v}");
        archives.push(v["archive"].clone());
    }
    assert_eq!(archives[0]["from_genesis"], true);
    assert_eq!(archives[1]["from_genesis"], false);
    for archive in &archives {
        let file = env
            .data_dir()
            .join("archive")
            .join(archive["key"].as_str().unwrap());
        let envelope: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
        let payload = evidence::verify(&envelope, None).unwrap();
        evidence::archive::verify_archive(&payload).unwrap();
    }
    env.offboard(slug).await;
}
