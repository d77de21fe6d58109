//! The reconciler (issue 16, item 4): every kind of finding, each created by hand behind the
//! control plane's back; databases without this deployment's marker (none, or another
//! deployment's) are never reported nor touched; a repair checks again, drops only the orphan,
//! and is audited.

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use engine::marker::Marker;
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, TestEnv};
use uuid::Uuid;
use workflows::{Faults, Orchestrator};

tcp_tests::conformance!(
    every_kind_of_finding_is_reported_and_only_marked_orphans_are_repaired,
    objects_being_created_or_pooled_are_never_orphans,
    an_onboarding_never_takes_over_a_former_tenants_leftover,
    only_this_deployments_tagged_secrets_are_orphans_and_repaired
);

/// The findings of `report` of `kind`, by object.
fn of_kind(report: &Value, kind: &str) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .map(|f| f["object"].as_str().unwrap().to_owned())
        .collect()
}

fn finding<'a>(report: &'a Value, kind: &str, object: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == kind && f["object"] == object)
        .unwrap_or_else(|| panic!("no {kind} finding for {object}: {report:#}"))
}

async fn run(env: &TestEnv) -> Value {
    let (status, report) = env
        .call_as("admin", Method::POST, "/v1/reconciliation/run", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    report
}

async fn every_kind_of_finding_is_reported_and_only_marked_orphans_are_repaired(
    engine: EngineUnderTest,
) {
    // No background pass: the test runs each.
    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.reconcile_interval_secs = 0;
        c.credential_check_interval_secs = 0;
    })
    .await;
    let probe = env.probe();
    let instance = env.app.catalog.instance_id().await.unwrap();

    // Before any pass there is no report.
    let (status, body) = env
        .call_as("auditor", Method::GET, "/v1/reconciliation", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let slugs = [
        "rec-ok",
        "rec-nodb",
        "rec-noprincipal",
        "rec-nosecret",
        "rec-creds",
    ];
    for slug in slugs {
        env.onboard(slug).await;
    }
    // Every tenant database carries this deployment's marker, naming its tenant.
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&api_types::TenantSlug::parse("rec-ok").unwrap())
        .await
        .unwrap()
        .unwrap();
    let marker = probe
        .database_marker(&env.names("rec-ok").database)
        .await
        .expect("the tenant database carries a marker");
    assert_eq!(
        Marker::parse(&marker),
        Some(Marker::tenant(instance, Some(tenant.id))),
        "{marker}"
    );

    // A fleet as the catalog believes it: nothing to report.
    let clean = run(&env).await;
    assert_eq!(clean["findings"], json!([]), "{clean:#}");
    assert_eq!(clean["tenants_checked"], 5, "{clean:#}");
    assert_eq!(clean["secrets_checked"], true, "{clean:#}");
    assert_eq!(clean["servers"][0]["checked"], true, "{clean:#}");

    // The world changes behind the control plane's back.
    let orphan = "tenant_rec_orphan";
    let former = Uuid::new_v4();
    probe
        .plant_database(orphan, Some(&Marker::tenant(instance, Some(former)).text()))
        .await;
    let unmarked = "tenant_rec_unmarked";
    probe.plant_database(unmarked, None).await;
    let foreign = "tenant_rec_foreign";
    probe
        .plant_database(foreign, Some(&Marker::tenant(Uuid::new_v4(), None).text()))
        .await;
    let orphan_login = "t_rec_orphan_app_a";
    let has_logins = probe
        .plant_login(orphan_login, &Marker::tenant(instance, Some(former)).text())
        .await;
    probe.drop_database(&env.names("rec-nodb").database).await;
    let gone = env.names("rec-noprincipal");
    probe.drop_principal(&gone.database, &gone.app_b).await;
    let secret = env.secret_names("rec-nosecret").investigator;
    env.app
        .secrets
        .delete(&secrets::SecretName::new(&secret).unwrap())
        .await
        .unwrap();
    let app = env.secret(&env.secret_names("rec-creds").app).await;
    probe
        .change_own_password(&app, engine::generate_password().expose())
        .await
        .unwrap();
    Orchestrator::new(env.app.runner.clone())
        .check_credentials_once()
        .await
        .unwrap();

    let report = run(&env).await;
    assert_eq!(
        of_kind(&report, "orphan_database"),
        vec![orphan],
        "{report:#}"
    );
    let f = finding(&report, "orphan_database", orphan);
    assert_eq!(f["marker_tenant"], json!(former), "{f}");
    assert_eq!(f["repairable"], true, "{f}");
    if has_logins {
        assert_eq!(
            of_kind(&report, "orphan_login"),
            vec![orphan_login],
            "{report:#}"
        );
    }
    assert_eq!(
        of_kind(&report, "missing_database"),
        vec![env.names("rec-nodb").database],
        "{report:#}"
    );
    assert!(
        of_kind(&report, "missing_principal").contains(&gone.app_b),
        "{report:#}"
    );
    assert_eq!(
        of_kind(&report, "missing_secret"),
        vec![secret.clone()],
        "{report:#}"
    );
    // The credential check also found the tenants above failing (no database, no secret).
    let failing = of_kind(&report, "credential_failing");
    assert!(failing.contains(&"rec-creds".to_owned()), "{report:#}");
    assert!(
        !failing.contains(&"rec-noprincipal".to_owned()) || has_logins,
        "{report:#}"
    );
    let text = report.to_string();
    assert!(
        !text.contains(unmarked) && !text.contains(foreign),
        "{report:#}"
    );
    assert!(!text.contains("rec-ok"), "{report:#}");
    // Any replica reads the same newest report; the metrics count it by kind.
    let (status, latest) = env
        .call_as("auditor", Method::GET, "/v1/reconciliation", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{latest}");
    assert_eq!(latest["id"], report["id"]);
    let metrics = env.call_text(Method::GET, "/metrics", None).await.2;
    assert!(
        metrics.contains("tcp_reconciliation_findings{kind=\"orphan_database\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tcp_reconciliation_findings{kind=\"missing_secret\"} 1"),
        "{metrics}"
    );

    // Repairs: only orphans, after checking again; unknown ids and other kinds are refused.
    let repair = |id: &str| format!("/v1/reconciliation/findings/{id}/repair");
    let missing = finding(&report, "missing_database", &env.names("rec-nodb").database);
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            &repair(missing["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("offboard"),
        "{body}"
    );
    let (status, body) = env
        .call_as("admin", Method::POST, &repair("0123456789abcdef"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = env
        .call_as(
            "operator",
            Method::POST,
            &repair(f["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            &repair(f["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dropped"], true, "{body}");
    assert!(!probe.database_exists(orphan).await);
    // Again: it is gone, nothing is dropped.
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            &repair(f["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["dropped"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    if has_logins {
        let l = finding(&report, "orphan_login", orphan_login);
        let (status, body) = env
            .call_as(
                "admin",
                Method::POST,
                &repair(l["id"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(
            (status, &body["dropped"]),
            (StatusCode::OK, &json!(true)),
            "{body}"
        );
    }
    let audit = env.app.catalog.audit_log(None).await.unwrap();
    let repaired: Vec<_> = audit
        .iter()
        .filter(|a| a.action == "reconciliation.repaired")
        .collect();
    assert_eq!(
        repaired.len(),
        if has_logins { 2 } else { 1 },
        "{repaired:?}"
    );
    assert_eq!(repaired[0].actor, "test-operator");

    // With auto_repair the pass repairs orphans itself; what carries no marker of ours stays.
    let another = "tenant_rec_orphan_two";
    probe
        .plant_database(another, Some(&Marker::pooled(instance).text()))
        .await;
    let auto = Orchestrator::new(env.app.runner.clone())
        .reconcile_once(&workflows::reconcile::ReconcilePolicy {
            interval: None,
            repair_orphans: true,
        })
        .await
        .unwrap();
    assert_eq!(auto.repaired.len(), 1, "{auto:#?}");
    assert!(!probe.database_exists(another).await);
    assert!(
        probe.database_exists(unmarked).await,
        "an unmarked database was touched"
    );
    assert!(
        probe.database_exists(foreign).await,
        "another deployment's database was touched"
    );
    probe.drop_database(unmarked).await;
    probe.drop_database(foreign).await;

    // A live tenant's database carrying another tenant's marker (a former tenant's leftover
    // under a reused name) is reported, but never repaired: it holds a live tenant's name.
    let ok = env.names("rec-ok").database;
    probe
        .set_database_marker(&ok, &Marker::tenant(instance, Some(former)).text())
        .await;
    let report = run(&env).await;
    let held = finding(&report, "orphan_database", &ok);
    assert_eq!(
        (&held["tenant"], &held["repairable"]),
        (&json!("rec-ok"), &json!(false)),
        "{held}"
    );
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            &repair(held["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(probe.database_exists(&ok).await);
}

/// A database (and on PostgreSQL roles) left by a former tenant of the same slug, carrying its
/// marker, is refused by the onboarding of the new tenant and survives the onboarding's undo;
/// a pass with `auto_repair` does not drop it either (its marker names a tenant this catalog
/// never knew), an explicit repair does.
async fn an_onboarding_never_takes_over_a_former_tenants_leftover(engine: EngineUnderTest) {
    let env = TestEnv::with(engine, Faults::none(), |c| c.reconcile_interval_secs = 0).await;
    let probe = env.probe();
    let instance = env.app.catalog.instance_id().await.unwrap();
    let leftover = env.names("rec-reused").database;
    let former = Marker::tenant(instance, Some(Uuid::new_v4())).text();
    probe.plant_database(&leftover, Some(&former)).await;
    let op = env.wait(env.start_onboard("rec-reused").await).await;
    assert_eq!(op.state, api_types::OperationState::RolledBack, "{op:#?}");
    let why = op.error.clone().unwrap_or_default();
    assert!(why.contains("another tenant's marker"), "{why}");
    assert!(
        probe.database_exists(&leftover).await,
        "the undo dropped the leftover"
    );
    assert_eq!(
        probe.database_marker(&leftover).await.as_deref(),
        Some(former.as_str())
    );

    let auto = Orchestrator::new(env.app.runner.clone())
        .reconcile_once(&workflows::reconcile::ReconcilePolicy {
            interval: None,
            repair_orphans: true,
        })
        .await
        .unwrap();
    assert!(auto.repaired.is_empty(), "{auto:#?}");
    assert!(probe.database_exists(&leftover).await);
    let f = auto
        .findings
        .iter()
        .find(|f| f.object == leftover)
        .unwrap_or_else(|| panic!("{auto:#?}"));
    assert!(f.repairable && f.detail.contains("does not know"), "{f:#?}");
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            &format!("/v1/reconciliation/findings/{}/repair", f.id),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["dropped"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert!(!probe.database_exists(&leftover).await);
    // With the leftover gone, the slug onboards.
    env.onboard("rec-reused").await;
}

/// A pass while tenants are onboarded and the warm pool holds databases reports nothing: every
/// object the control plane is making or keeps in its pool is explained by a catalog row.
async fn objects_being_created_or_pooled_are_never_orphans(engine: EngineUnderTest) {
    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.reconcile_interval_secs = 0;
        c.warm_pool_size = 2;
        c.warm_pool_interval_secs = 1;
    })
    .await;
    let orchestrator = Orchestrator::new(env.app.runner.clone());
    let ids: Vec<Uuid> = futures::future::join_all((0..4).map(|i| {
        let env = &env;
        async move { env.start_onboard(&format!("rec-busy-{i}")).await }
    }))
    .await;
    // Passes run while the onboardings (and the refills after their claims) do.
    let mut passes = 0;
    loop {
        let report = orchestrator
            .reconcile_once(&Default::default())
            .await
            .unwrap();
        let orphans: Vec<_> = report.findings.iter().filter(|f| f.repairable).collect();
        assert!(orphans.is_empty(), "{orphans:#?}");
        passes += 1;
        let mut done = true;
        for id in &ids {
            let op = env.app.catalog.operation(*id).await.unwrap().unwrap();
            done &= op.state.is_terminal();
        }
        if done && passes >= 3 {
            break;
        }
    }
    for id in ids {
        assert_eq!(
            env.wait(id).await.state,
            api_types::OperationState::Succeeded
        );
    }
    let settled = orchestrator
        .reconcile_once(&Default::default())
        .await
        .unwrap();
    assert!(settled.findings.is_empty(), "{settled:#?}");
    assert_eq!(settled.tenants_checked, 4, "{settled:#?}");
}

/// A tenant secret left behind (its tenant gone) is an orphan only when its tags say this
/// deployment wrote it: an untagged one, or another deployment's in a shared vault, is never
/// reported nor touched. One naming a tenant this catalog released is repaired by an
/// `auto_repair` pass; one naming a tenant it never knew waits for an explicit repair.
async fn only_this_deployments_tagged_secrets_are_orphans_and_repaired(engine: EngineUnderTest) {
    use secrets::{SecretName, SecretValue, SetOptions};
    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.reconcile_interval_secs = 0;
        c.credential_check_interval_secs = 0;
    })
    .await;
    let instance = env.app.catalog.instance_id().await.unwrap();
    let store = env.app.secrets.clone();
    env.onboard("rec-sec").await;
    env.onboard("rec-gone").await;
    // Every version a workflow writes carries the deployment and the tenant.
    let live = env
        .app
        .catalog
        .tenant_by_slug(&api_types::TenantSlug::parse("rec-sec").unwrap())
        .await
        .unwrap()
        .unwrap();
    let versions = store
        .list_versions(&SecretName::new(&env.secret_names("rec-sec").app).unwrap())
        .await
        .unwrap();
    let tags = &versions.last().unwrap().tags;
    assert_eq!(
        tags.get("deployment"),
        Some(&instance.to_string()),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("tenant-id"),
        Some(&live.id.to_string()),
        "{tags:?}"
    );
    let gone = env
        .app
        .catalog
        .tenant_by_slug(&api_types::TenantSlug::parse("rec-gone").unwrap())
        .await
        .unwrap()
        .unwrap();
    env.offboard("rec-gone").await;

    let plant = |name: &str, tags: Vec<(&str, String)>| {
        let store = store.clone();
        let name = SecretName::new(name).unwrap();
        let tags = tags.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        async move {
            store
                .set(
                    &name,
                    SecretValue::new("Server=tcp:h,1433;Password=x"),
                    SetOptions {
                        tags,
                        expires_at: None,
                        content_type: None,
                    },
                )
                .await
                .unwrap();
        }
    };
    let stranger = Uuid::new_v4();
    // A leftover of the released tenant, one of a tenant this catalog never knew, one without
    // tags, one of another deployment.
    let leftover = env.secret_names("rec-gone").app;
    plant(
        &leftover,
        vec![
            ("deployment", instance.to_string()),
            ("tenant-id", gone.id.to_string()),
        ],
    )
    .await;
    let ghost = "tenant-rec-ghost-audit-admin";
    plant(
        ghost,
        vec![
            ("deployment", instance.to_string()),
            ("tenant-id", stranger.to_string()),
        ],
    )
    .await;
    let untagged = "tenant-rec-untagged-app";
    plant(untagged, vec![]).await;
    let other = "tenant-rec-other-investigator";
    plant(other, vec![("deployment", Uuid::new_v4().to_string())]).await;

    let report = run(&env).await;
    let mut orphans = of_kind(&report, "orphan_secret");
    orphans.sort();
    let mut expected = vec![ghost.to_owned(), leftover.clone()];
    expected.sort();
    assert_eq!(orphans, expected, "{report:#}");
    let f = finding(&report, "orphan_secret", ghost);
    assert_eq!(f["marker_tenant"], json!(stranger), "{f}");
    assert_eq!(f["repairable"], true, "{f}");
    // The live tenant's secrets are its own.
    assert!(!report.to_string().contains("rec-sec-"), "{report:#}");

    // auto_repair removes the released tenant's leftover, not the unknown tenant's.
    let auto = Orchestrator::new(env.app.runner.clone())
        .reconcile_once(&workflows::reconcile::ReconcilePolicy {
            interval: None,
            repair_orphans: true,
        })
        .await
        .unwrap();
    assert_eq!(auto.repaired.len(), 1, "{auto:#?}");
    let exists = |name: &str| {
        let store = store.clone();
        let name = SecretName::new(name).unwrap();
        async move { store.list_versions(&name).await.is_ok() }
    };
    assert!(
        !exists(&leftover).await,
        "the released tenant's leftover stayed"
    );
    assert!(exists(ghost).await);
    // An explicit repair removes the other, once.
    let repair = format!(
        "/v1/reconciliation/findings/{}/repair",
        f["id"].as_str().unwrap()
    );
    let (status, body) = env.call_as("admin", Method::POST, &repair, None).await;
    assert_eq!(
        (status, &body["dropped"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    assert!(!exists(ghost).await);
    let (status, body) = env.call_as("admin", Method::POST, &repair, None).await;
    assert_eq!(
        (status, &body["dropped"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    // Nothing else was touched.
    assert!(exists(untagged).await, "an untagged secret was touched");
    assert!(
        exists(other).await,
        "another deployment's secret was touched"
    );
    assert!(exists(&env.secret_names("rec-sec").app).await);
    let after = run(&env).await;
    assert_eq!(
        of_kind(&after, "orphan_secret"),
        Vec::<String>::new(),
        "{after:#}"
    );
    env.offboard("rec-sec").await;
}
