//! The credential check (issue 12, 7b): an application that changes its own password breaks
//! the connection string in the secret store; the periodic check finds it, the tenant JSON and
//! `/metrics` say so, and a rotation repairs it. A conformance suite: every test runs on
//! PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use api_types::{CredentialName, OperationKind, OperationState, TenantState};
use axum::http::{Method, StatusCode};
use catalog::{CredentialCheck, NewOperation};
use secrets::{SecretName, SecretValue};
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::{CredentialCheckLimits, Faults, Orchestrator};

tcp_tests::conformance!(
    an_app_that_changes_its_own_password_is_flagged_and_a_rotation_repairs_it,
    a_tenant_whose_rotation_runs_is_skipped_and_stays_as_it_was,
    zero_turns_the_periodic_check_off,
    a_login_that_hangs_does_not_stall_the_pass,
);

/// The tenant as `GET /v1/tenants/{slug}` shows it.
async fn tenant_json(env: &TestEnv, slug: &str) -> Value {
    let (status, body) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The value of the sample line that starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `/metrics`, read anew (the catalog gauges refresh at most once a second).
async fn metrics(env: &TestEnv) -> String {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, text) = env.call_text(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text
}

async fn version_count(env: &TestEnv, name: &str) -> usize {
    env.app
        .secrets
        .list_versions(&SecretName::new(name).unwrap())
        .await
        .unwrap()
        .len()
}

/// The password inside a connection string the control plane wrote.
fn password_of(env: &TestEnv, cs: &SecretValue) -> String {
    env.app.engine.password_of(cs).unwrap().expose().to_owned()
}

async fn an_app_that_changes_its_own_password_is_flagged_and_a_rotation_repairs_it(
    engine: EngineUnderTest,
) {
    let env = TestEnv::new(engine).await;
    let slug = "cred-drift";
    env.onboard(slug).await;
    let checks = Orchestrator::new(env.app.runner.clone());
    let probe = env.probe();
    let names = env.secret_names(slug);

    // Before any pass the tenant is unchecked.
    let t = tenant_json(&env, slug).await;
    assert_eq!(
        t["credentials"],
        json!({"state": "unchecked", "checked_at": null, "failing": [], "detail": null}),
        "{t}"
    );

    // A pass logs in with every current version and finds them working; it writes nothing to
    // the secret store.
    let versions_before: Vec<usize> = version_counts(&env, &names.all()).await;
    let pass = checks.check_credentials_once().await.unwrap();
    assert_eq!(
        (pass.ok, pass.failing, pass.skipped, pass.errors),
        (1, 0, 0, 0)
    );
    let t = tenant_json(&env, slug).await;
    assert_eq!(t["credentials"]["state"], "ok", "{t}");
    assert_eq!(t["credentials"]["failing"], json!([]), "{t}");
    assert!(t["credentials"]["detail"].is_null(), "{t}");
    let ok_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(t["credentials"]["checked_at"].clone()).unwrap();

    // The application changes its own password: its own string works, the stored one no
    // longer does.
    let stored = env.secret(&names.app).await;
    let chosen = engine::generate_password();
    let own = probe
        .change_own_password(&stored, chosen.expose())
        .await
        .unwrap();
    probe.login(&own).await.unwrap();
    assert!(
        probe.login(&stored).await.is_err(),
        "the stored string still logs in"
    );

    // The next pass flags it, naming the app credential only and why, without a secret.
    let pass = checks.check_credentials_once().await.unwrap();
    assert_eq!((pass.ok, pass.failing), (0, 1), "{pass:?}");
    let t = tenant_json(&env, slug).await;
    let c = &t["credentials"];
    assert_eq!(c["state"], "failing", "{t}");
    assert_eq!(c["failing"], json!(["app"]), "{t}");
    let detail = c["detail"].as_str().unwrap();
    assert!(detail.starts_with("app: "), "{detail}");
    for secret in [password_of(&env, &stored), chosen.expose().to_owned()] {
        assert!(
            !detail.contains(&secret),
            "a password reached the API: {detail}"
        );
        assert!(!t.to_string().contains(&secret));
    }
    let failing_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(c["checked_at"].clone()).unwrap();
    assert!(failing_at > ok_at);
    // The list shows it too.
    let (_, list) = env.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(list[0]["credentials"]["state"], "failing", "{list}");
    assert_eq!(
        version_counts(&env, &names.all()).await,
        versions_before,
        "the check wrote to the secret store"
    );

    // /metrics counts it, by state and never by slug.
    let text = metrics(&env).await;
    assert_eq!(
        sample(&text, "tcp_tenant_credentials{state=\"failing\"} "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tcp_tenant_credentials{state=\"ok\"} "),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tcp_tenant_credentials{state=\"unchecked\"} "),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "tcp_credential_checks_total{outcome=\"failing\"} "),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tcp_credential_checks_total{outcome=\"ok\"} "),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "tcp_credential_check_pass_duration_seconds_count "),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains(slug), "{text}");
    assert!(!text.contains(chosen.expose()));

    // A rotation does not need the broken password, and leaves the tenant `ok` as soon as it
    // has succeeded: no pass in between.
    let op = env.rotate(slug, "scheduled").await;
    let t = tenant_json(&env, slug).await;
    assert_eq!(t["credentials"]["state"], "ok", "{t}");
    assert_eq!(t["credentials"]["failing"], json!([]), "{t}");
    let repaired_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(t["credentials"]["checked_at"].clone()).unwrap();
    assert!(repaired_at > failing_at);
    assert_eq!(op.state, OperationState::Succeeded);
    let repaired = env.secret(&names.app).await;
    let mut session = probe.login(&repaired).await.unwrap();
    session
        .customer_upsert(None, "after repair", None)
        .await
        .unwrap();
    let text = metrics(&env).await;
    assert_eq!(
        sample(&text, "tcp_tenant_credentials{state=\"ok\"} "),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "tcp_tenant_credentials{state=\"failing\"} "),
        Some(0.0)
    );

    // The next pass agrees.
    let pass = checks.check_credentials_once().await.unwrap();
    assert_eq!((pass.ok, pass.failing), (1, 0), "{pass:?}");

    // Only active tenants are checked; an offboarded one reads unchecked.
    env.offboard(slug).await;
    let t = tenant_json(&env, slug).await;
    assert_eq!(t["credentials"]["state"], "unchecked", "{t}");
    let pass = checks.check_credentials_once().await.unwrap();
    assert_eq!(pass.checked() + pass.skipped + pass.errors, 0, "{pass:?}");
}

/// How many versions each secret has.
async fn version_counts(env: &TestEnv, names: &[&str]) -> Vec<usize> {
    let mut out = Vec::new();
    for name in names {
        out.push(version_count(env, name).await);
    }
    out
}

async fn a_tenant_whose_rotation_runs_is_skipped_and_stays_as_it_was(engine: EngineUnderTest) {
    // No sweeper within the test: the rotation below stays pending until the test runs it.
    let env = TestEnv::with(engine, Faults::none(), |c| c.sweep_interval_secs = 3600).await;
    let slug = "cred-skip";
    env.onboard(slug).await;
    let checks = Orchestrator::new(env.app.runner.clone());
    let probe = env.probe();
    let names = env.secret_names(slug);
    let stored = env.secret(&names.app).await;
    probe
        .change_own_password(&stored, engine::generate_password().expose())
        .await
        .unwrap();
    checks.check_credentials_once().await.unwrap();
    let before = tenant_json(&env, slug).await["credentials"].clone();
    assert_eq!(before["state"], "failing", "{before}");

    // A rotation is started (recorded, not yet run): the pass leaves the tenant alone.
    let catalog = &env.app.catalog;
    let tenant = catalog
        .tenant_by_slug(&api_types::TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
        .unwrap();
    let seen_before = catalog.tenant_operations(tenant.id).await.unwrap().len();
    let op = catalog
        .start_operation(
            tenant.id,
            NewOperation {
                kind: OperationKind::ROTATE,
                steps: tcp_tests::step_names(&OperationKind::ROTATE, env.app.engine.as_ref()),
                params: json!({"mode": "scheduled"}),
                actor: "test".into(),
                request_id: None,
                allowed_from: &[TenantState::Active],
                parent: None,
                held_by: None,
            },
            TenantState::Active,
        )
        .await
        .unwrap();
    let pass = checks.check_credentials_once().await.unwrap();
    assert_eq!((pass.checked(), pass.skipped), (0, 1), "{pass:?}");
    assert_eq!(tenant_json(&env, slug).await["credentials"], before);

    // A result taken before the rotation began is refused once it has started, whatever it
    // says: the rotation changes passwords on purpose.
    let taken_before = CredentialCheck {
        checked_at: chrono::Utc::now(),
        failing: vec![],
        detail: None,
    };
    assert!(!catalog
        .record_credential_check(tenant.id, seen_before, &taken_before)
        .await
        .unwrap());
    assert_eq!(tenant_json(&env, slug).await["credentials"], before);

    // The rotation runs; it checks the tenant before reporting success.
    let state = env.app.runner.run(op.id).await.unwrap();
    assert_eq!(state, Some(OperationState::Succeeded));
    let after = tenant_json(&env, slug).await["credentials"].clone();
    assert_eq!(after["state"], "ok", "{after}");
    probe.login(&env.secret(&names.app).await).await.unwrap();

    // A result older than the one recorded never replaces it.
    let seen_now = catalog.tenant_operations(tenant.id).await.unwrap().len();
    let older = CredentialCheck {
        checked_at: serde_json::from_value(before["checked_at"].clone()).unwrap(),
        failing: vec![CredentialName::App],
        detail: Some("app: stale".into()),
    };
    assert!(!catalog
        .record_credential_check(tenant.id, seen_now, &older)
        .await
        .unwrap());
    assert_eq!(tenant_json(&env, slug).await["credentials"], after);
    env.offboard(slug).await;
}

async fn zero_turns_the_periodic_check_off(engine: EngineUnderTest) {
    let off = TestEnv::with(engine.clone(), Faults::none(), |c| {
        c.credential_check_interval_secs = 0
    })
    .await;
    assert!(!off.app.credential_check_running());
    let slug = "cred-off";
    off.onboard(slug).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        tenant_json(&off, slug).await["credentials"]["state"],
        "unchecked"
    );
    off.offboard(slug).await;

    // The same with one second: the task checks the tenant on its own.
    let on = TestEnv::with(engine, Faults::none(), |c| {
        c.credential_check_interval_secs = 1
    })
    .await;
    assert!(on.app.credential_check_running());
    let slug = "cred-on";
    on.onboard(slug).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t = tenant_json(&on, slug).await;
        if t["credentials"]["state"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "never checked: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    on.offboard(slug).await;
}

/// A connection string of the engine under test pointed at `port` on the loopback address.
fn pointed_at(env: &TestEnv, cs: &SecretValue, port: u16) -> SecretValue {
    match env.app.engine.name() {
        "postgres" => {
            let mut url = url::Url::parse(cs.expose()).unwrap();
            url.set_host(Some("127.0.0.1")).unwrap();
            url.set_port(Some(port)).unwrap();
            SecretValue::new(url.to_string())
        }
        _ => SecretValue::new(
            engine::sqlserver::connstr::parse(cs.expose())
                .unwrap()
                .server("127.0.0.1", port)
                .to_secret_string(),
        ),
    }
}

async fn a_login_that_hangs_does_not_stall_the_pass(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let (hung, fine) = ("cred-hung", "cred-fine");
    env.onboard(hung).await;
    env.onboard(fine).await;

    // A server that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let names = env.secret_names(hung);
    let name = SecretName::new(&names.app).unwrap();
    let current = env.app.secrets.get(&name, None).await.unwrap();
    env.app
        .secrets
        .set(
            &name,
            pointed_at(&env, &current.value, port),
            secrets::SetOptions {
                tags: current.properties.tags.clone(),
                expires_at: None,
                content_type: current.properties.content_type.clone(),
            },
        )
        .await
        .unwrap();

    let checks = Orchestrator::new(env.app.runner.clone());
    let started = Instant::now();
    let pass = checks
        .check_credentials_with(CredentialCheckLimits {
            concurrency: 4,
            login_timeout: Duration::from_secs(1),
        })
        .await
        .unwrap();
    let took = started.elapsed();
    silent.abort();
    assert_eq!((pass.ok, pass.failing), (1, 1), "{pass:?}");
    assert!(took < Duration::from_secs(5), "the pass took {took:?}");
    let t = tenant_json(&env, hung).await;
    assert_eq!(t["credentials"]["failing"], json!(["app"]), "{t}");
    assert_eq!(
        t["credentials"]["detail"], "app: no login within 1.0 s",
        "{t}"
    );
    assert_eq!(tenant_json(&env, fine).await["credentials"]["state"], "ok");
    env.offboard(hung).await;
    env.offboard(fine).await;
}
