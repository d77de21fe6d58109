//! Credential rotation: alternating app logins, in-place rotation of the control plane's own
//! principals, emergency rotation, the scheduler, and a load test that must see no failure.
//! A conformance suite: every test runs on PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use std::time::{Duration, Instant};

use api_types::{OperationKind, OperationState};
use axum::http::{Method, StatusCode};
use secrets::SecretName;
use tcp_tests::probe::Probe;
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

tcp_tests::conformance!(
    scheduled_rotation_alternates_and_keeps_the_previous_login,
    emergency_rotation_refuses_the_previous_login_and_ends_its_sessions,
    twenty_rotations_under_load_without_a_single_failure,
    rotation_converges_when_every_step_runs_twice_or_fails,
    scheduler_rotates_due_tenants,
    rotation_requests_are_checked,
);

async fn app_call(probe: &dyn Probe, url: &secrets::SecretValue, who: &str) -> Result<(), String> {
    let mut s = probe
        .login(url)
        .await
        .map_err(|e| format!("login: {e:?}"))?;
    s.customer_upsert(None, who, None)
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e:?}"))
}

async fn versions(env: &TestEnv, name: &str) -> Vec<secrets::SecretProperties> {
    env.app
        .secrets
        .list_versions(&SecretName::new(name).unwrap())
        .await
        .unwrap()
}

async fn scheduled_rotation_alternates_and_keeps_the_previous_login(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let slug = "rot-sched";
    env.onboard(slug).await;
    let probe = env.probe();
    let names = env.secret_names(slug);
    let first_app = env.secret(&names.app).await;
    let first_admin = env.secret(&names.audit_admin).await;
    let first_investigator = env.secret(&names.investigator).await;

    let op = env.rotate(slug, "scheduled").await;
    assert_eq!(op.kind, OperationKind::ROTATE);
    let steps: Vec<&str> = op.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        steps,
        tcp_tests::step_names(&OperationKind::ROTATE, env.app.engine.as_ref())
    );

    // The app secret now names app_b, with a new password; both logins work.
    let second_app = env.secret(&names.app).await;
    assert_ne!(second_app.expose(), first_app.expose());
    let v = versions(&env, &names.app).await;
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].tags["principal"], "app_a");
    assert_eq!(v[0].tags["active"], "false");
    assert_eq!(v[1].tags["principal"], "app_b");
    assert_eq!(v[1].tags["active"], "true");
    assert_eq!(v[1].tags["operation"], op.id.to_string());
    assert_eq!(v[1].tags["tenant"], slug);
    assert!(
        v.iter().all(|p| p.enabled),
        "scheduled keeps versions readable"
    );
    // Expiry: two cryptoperiods (30 days by default) after the write.
    let expires = v[1].expires_at.expect("rotated versions carry an expiry");
    let days = (expires - chrono::Utc::now()).num_days();
    assert!((59..=60).contains(&days), "expires in {days} days");
    app_call(probe.as_ref(), &first_app, "old login")
        .await
        .unwrap();
    app_call(probe.as_ref(), &second_app, "new login")
        .await
        .unwrap();

    // The control plane's own principals got new passwords in place: old ones are refused.
    let admin = env.secret(&names.audit_admin).await;
    let investigator = env.secret(&names.investigator).await;
    assert_ne!(admin.expose(), first_admin.expose());
    assert_ne!(investigator.expose(), first_investigator.expose());
    assert!(probe.login(&first_admin).await.is_err());
    assert!(probe.login(&first_investigator).await.is_err());
    probe.login(&admin).await.unwrap();
    probe.login(&investigator).await.unwrap();

    // The next rotation returns to app_a: the first string stops working, the second keeps on.
    env.rotate(slug, "scheduled").await;
    let third_app = env.secret(&names.app).await;
    assert!(
        probe.login(&first_app).await.is_err(),
        "app_a's old password"
    );
    app_call(probe.as_ref(), &second_app, "previous")
        .await
        .unwrap();
    app_call(probe.as_ref(), &third_app, "current")
        .await
        .unwrap();
    let v = versions(&env, &names.app).await;
    let active: Vec<_> = v
        .iter()
        .filter(|p| p.tags.get("active").map(String::as_str) == Some("true"))
        .map(|p| p.tags["principal"].as_str())
        .collect();
    assert_eq!(active, ["app_a"], "exactly one active version");

    // History, newest first.
    let (status, history) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}/rotations"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0]["from"], "app_b");
    assert_eq!(history[0]["to"], "app_a");
    assert_eq!(history[1]["from"], "app_a");
    assert_eq!(history[1]["to"], "app_b");
    assert_eq!(history[1]["mode"], "scheduled");
    assert_eq!(history[1]["state"], "succeeded");
    assert_eq!(history[1]["actor"], "test-operator");
    env.offboard(slug).await;
}

async fn emergency_rotation_refuses_the_previous_login_and_ends_its_sessions(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "rot-emerg";
    env.onboard(slug).await;
    let probe = env.probe();
    let names = env.secret_names(slug);
    let leaked = env.secret(&names.app).await;
    let leaked_admin = env.secret(&names.audit_admin).await;
    let mut open = probe.login(&leaked).await.unwrap();
    open.customer_upsert(None, "before", None).await.unwrap();
    let mut open_admin = probe.login(&leaked_admin).await.unwrap();
    open_admin.verify_chain().await.unwrap();

    env.rotate(slug, "emergency").await;

    // Refused at once: new logins and the session that was open.
    assert!(
        probe.login(&leaked).await.is_err(),
        "the previous app login must be refused"
    );
    assert!(
        open.customer_upsert(None, "after", None).await.is_err(),
        "the previous app login's open session must have ended"
    );
    assert!(probe.login(&leaked_admin).await.is_err());
    assert!(
        open_admin.verify_chain().await.is_err(),
        "audit_admin's open session must have ended"
    );
    // The new credentials work.
    let current = env.secret(&names.app).await;
    app_call(probe.as_ref(), &current, "after").await.unwrap();
    probe
        .login(&env.secret(&names.audit_admin).await)
        .await
        .unwrap();
    // The leaked version is inactive and unreadable.
    let v = versions(&env, &names.app).await;
    assert_eq!(v.len(), 2);
    assert!(!v[0].enabled, "the leaked version must be disabled");
    assert_eq!(v[0].tags["active"], "false");
    assert!(v[1].enabled);

    // A later scheduled rotation brings the disabled login back with a new password.
    env.rotate(slug, "scheduled").await;
    let back = env.secret(&names.app).await;
    assert_eq!(
        versions(&env, &names.app).await[2].tags["principal"],
        "app_a"
    );
    app_call(probe.as_ref(), &back, "re-enabled").await.unwrap();
    assert!(
        probe.login(&leaked).await.is_err(),
        "old password stays dead"
    );
    env.offboard(slug).await;
}

/// A client process calls a business procedure in a loop, each call on a new connection made
/// from the secret store's current connection string, while 20 scheduled rotations run one after
/// the other: not one call may fail.
async fn twenty_rotations_under_load_without_a_single_failure(engine: EngineUnderTest) {
    let env = TestEnv::new(engine.clone()).await;
    let slug = "rot-load";
    env.onboard(slug).await;
    let mut client = std::process::Command::new(env!("CARGO_BIN_EXE_load-client"))
        .arg(env.data_dir().join("secrets"))
        .arg(&env.secret_names(slug).app)
        .env(
            "MSSQL_URL",
            match &engine {
                EngineUnderTest::SqlServer { url } => url.clone(),
                EngineUnderTest::Postgres => String::new(),
            },
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let the client get going before the first rotation.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for _ in 0..20 {
        env.rotate(slug, "scheduled").await;
        // Give the client a moment with each credential.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rotations = started.elapsed();
    drop(client.stdin.take());
    let out = tokio::task::spawn_blocking(move || client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "load client: {:?}", out.status);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("load test: {report}, 20 rotations in {rotations:?}");
    assert_eq!(
        report["failures"], 0,
        "calls failed during rotations: {report}"
    );
    assert!(
        report["calls"].as_u64().unwrap() >= 60,
        "the client made too few calls to mean anything: {report}"
    );
    assert_eq!(
        report["logins"],
        serde_json::json!(["app_a", "app_b"]),
        "the client used both logins: {report}"
    );
    assert_eq!(versions(&env, &env.secret_names(slug).app).await.len(), 21);
    env.offboard(slug).await;
}

/// Every step run twice, and a failure injected after each step followed by a new rotation,
/// still leaves one working, active credential per principal.
async fn rotation_converges_when_every_step_runs_twice_or_fails(engine: EngineUnderTest) {
    let faults = Faults::parse("twice:rotate:*").unwrap();
    let env = TestEnv::with(engine.clone(), faults, |_| {}).await;
    let slug = "rot-twice";
    env.onboard(slug).await;
    let probe = env.probe();
    let names = env.secret_names(slug);
    let before = env.secret(&names.app).await;
    env.rotate(slug, "emergency").await;
    let after = env.secret(&names.app).await;
    app_call(probe.as_ref(), &after, "twice").await.unwrap();
    assert!(probe.login(&before).await.is_err());
    // Run twice, each step still wrote exactly one version.
    assert_eq!(versions(&env, &names.app).await.len(), 2);
    assert_eq!(versions(&env, &names.audit_admin).await.len(), 2);
    env.offboard(slug).await;
    drop(env);

    let steps = {
        let env = TestEnv::new(engine.clone()).await;
        tcp_tests::step_names(&OperationKind::ROTATE, env.app.engine.as_ref())
    };
    for mode in ["scheduled", "emergency"] {
        for step in &steps {
            let faults = Faults::parse(&format!("fail:rotate:{step}")).unwrap();
            let env = TestEnv::with(engine.clone(), faults, |_| {}).await;
            let slug = format!("rot-fail-{}-{}", &mode[..5], step.replace('_', "-"));
            env.onboard(&slug).await;
            let before = env.secret(&env.secret_names(&slug).app).await;
            let op = env.wait(env.start_rotate(&slug, mode).await).await;
            assert_eq!(op.state, OperationState::Failed, "{mode} {step}: {op:#?}");
            // The tenant stays active and its current app string works...
            let (_, tenant) = env
                .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
                .await;
            assert_eq!(tenant["state"], "active", "{mode} {step}");
            let current = env.secret(&env.secret_names(&slug).app).await;
            app_call(probe.as_ref(), &current, "after a failure")
                .await
                .unwrap_or_else(|e| panic!("app after a failure at {mode} {step}: {e}"));
            // ...and a scheduled rotation without the fault completes the failed one rather
            // than re-targeting the login applications were just moved off.
            let env = env.restart(Faults::none()).await;
            env.rotate(&slug, "scheduled").await;
            let names = env.secret_names(&slug);
            let app = env.secret(&names.app).await;
            app_call(probe.as_ref(), &app, "after").await.unwrap();
            if mode == "scheduled" {
                app_call(probe.as_ref(), &before, "previous")
                    .await
                    .unwrap_or_else(|e| {
                        panic!("the login current before the failed rotation at {step}: {e}")
                    });
            } else {
                assert!(
                    probe.login(&before).await.is_err(),
                    "the leaked login works after an emergency rotation failed at {step}"
                );
            }
            for name in [&names.audit_admin, &names.investigator] {
                probe
                    .login(&env.secret(name).await)
                    .await
                    .unwrap_or_else(|e| panic!("{name} after {mode} {step}: {e:?}"));
            }
            env.offboard(&slug).await;
        }
    }
}

async fn scheduler_rotates_due_tenants(engine: EngineUnderTest) {
    let mut env = TestEnv::new(engine).await;
    let slugs = ["rot-due-1", "rot-due-2", "rot-due-3"];
    for slug in slugs {
        env.onboard(slug).await;
    }
    // All three are due at the scheduler's first pass: only the limit keeps it from starting
    // them all at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.config.rotation_scheduler = true;
    env.config.rotate_after_secs = 1;
    env.config.rotation_check_interval_secs = 1;
    env.config.rotation_max_concurrent = 2;
    let env = env.restart(Faults::none()).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Each rotation's life in the catalog, from its creation to its end: the scheduler starts
    // one only after it saw another end, so these intervals are what it ran at once. (Counting
    // running ones while reading tenant after tenant could see one end and the next start in
    // the same pass.)
    let mut lives: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>;
    loop {
        let mut done = 0;
        lives = Vec::new();
        for slug in slugs {
            let t = env
                .app
                .catalog
                .tenant_by_slug(&api_types::TenantSlug::parse(slug).unwrap())
                .await
                .unwrap()
                .unwrap();
            let mut rotated = false;
            for id in env.app.catalog.tenant_operations(t.id).await.unwrap() {
                let op = env.app.catalog.operation(id).await.unwrap().unwrap();
                if op.kind == OperationKind::ROTATE {
                    assert_eq!(op.actor, workflows::SCHEDULER_ACTOR);
                    rotated |= op.state == OperationState::Succeeded;
                    if let Some(end) = op.finished_at {
                        lives.push((op.created_at, end));
                    }
                }
            }
            done += usize::from(rotated);
        }
        if done == slugs.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of 3 due tenants were rotated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The most lives that overlap (an end sorts before a start at the same instant).
    let mut edges: Vec<(chrono::DateTime<chrono::Utc>, i32)> = lives
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    edges.sort();
    let (mut running, mut max_running) = (0, 0);
    for (_, step) in edges {
        running += step;
        max_running = max_running.max(running);
    }
    assert!(lives.len() >= 3, "{lives:?}");
    assert!(
        max_running <= 2,
        "{max_running} rotations ran at once: {lives:?}"
    );
    // Each rotation's string works.
    let probe = env.probe();
    for slug in slugs {
        let app = env.secret(&env.secret_names(slug).app).await;
        app_call(probe.as_ref(), &app, "scheduled").await.unwrap();
    }
    for slug in slugs {
        // The scheduler may be rotating again; offboarding waits for it.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = env
                .call(
                    Method::POST,
                    &format!("/v1/tenants/{slug}/offboard"),
                    Some(serde_json::json!({"confirm": slug, "reason": "test"})),
                )
                .await;
            if status == StatusCode::ACCEPTED {
                let id = body["operation"]["id"].as_str().unwrap().parse().unwrap();
                assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
                break;
            }
            assert_eq!(status, StatusCode::CONFLICT, "{body}");
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn rotation_requests_are_checked(engine: EngineUnderTest) {
    let env = TestEnv::with(engine, Faults::none(), |c| c.rotate_after_secs = 1).await;
    let slug = "rot-checks";
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/rotate"),
            Some(serde_json::json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    env.onboard(slug).await;
    // Due one cryptoperiod (here 1 s) after onboarding; the scheduler is off in tests.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, due) = env.call(Method::GET, "/v1/rotations/due", None).await;
    assert_eq!(status, StatusCode::OK, "{due}");
    assert!(
        due.as_array().unwrap().iter().any(|d| d["tenant"] == slug),
        "{due}"
    );
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/rotate"),
            Some(serde_json::json!({"mode": "sometimes"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("mode"), "{body}");
    // Support staff may not rotate.
    let (status, _, _) = env
        .call_raw(
            Method::POST,
            &format!("/v1/tenants/{slug}/rotate"),
            Some(&env.token("support")),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An empty body means a scheduled rotation; a second one while it runs is refused.
    let first = env.start_rotate(slug, "scheduled").await;
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/rotate"),
            Some(serde_json::json!({})),
        )
        .await;
    assert!(
        status == StatusCode::CONFLICT || status == StatusCode::ACCEPTED,
        "{status} {body}"
    );
    if status == StatusCode::ACCEPTED {
        // The first finished before the second arrived.
        assert_eq!(env.wait(first).await.state, OperationState::Succeeded);
        let id = body["operation"]["id"].as_str().unwrap().parse().unwrap();
        env.wait(id).await;
    } else {
        assert!(body["detail"].as_str().unwrap().contains("in progress"));
        env.wait(first).await;
    }
    env.offboard(slug).await;
    let (_, due) = env.call(Method::GET, "/v1/rotations/due", None).await;
    assert!(
        !due.as_array().unwrap().iter().any(|d| d["tenant"] == slug),
        "an offboarded tenant is never due: {due}"
    );
    // An offboarded tenant has nothing to rotate.
    let (status, body) = env
        .call(
            Method::POST,
            &format!("/v1/tenants/{slug}/rotate"),
            Some(serde_json::json!({"mode": "emergency"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("offboarded"),
        "{body}"
    );
}
