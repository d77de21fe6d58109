//! Fleet schema rollouts (issue 14): a control plane onboards tenants on an older tenant schema
//! release, restarts on a newer one, and `POST /v1/rollouts` brings the fleet forward, one
//! `migrate` operation per tenant, in waves after a canary, within a per-server limit, halting
//! at a failure threshold. A tenant whose data the release cannot take stays at its old
//! version; resuming after the fix retries it; a pass with nothing to apply starts no
//! operation; pause, abort and a crash of the real binary mid-rollout behave.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::releases::{
    add_duplicate_emails, fix_duplicate_emails, migrated_events, old_and_new, product_migration,
    schema_version,
};
use tcp_tests::{conformance, EngineUnderTest, PgCluster, RealServer, TestEnv};
use workflows::Faults;

const NEW_VERSION: i32 = 100;

fn engine_name(engine: &EngineUnderTest) -> &'static str {
    match engine {
        EngineUnderTest::Postgres => "postgres",
        EngineUnderTest::SqlServer { .. } => "sqlserver",
    }
}

async fn admin(
    env: &TestEnv,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    env.call_as("admin", method, path, body).await
}

/// Starts a rollout (expects 202) and returns its id.
async fn start(env: &TestEnv, body: Value) -> String {
    let (status, rollout) = admin(env, Method::POST, "/v1/rollouts", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rollout}");
    assert_eq!(rollout["state"], "running", "{rollout}");
    rollout["id"].as_str().unwrap().to_owned()
}

async fn show(env: &TestEnv, id: &str) -> Value {
    let (status, rollout) = admin(env, Method::GET, &format!("/v1/rollouts/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{rollout}");
    rollout
}

/// Waits (at most two minutes) until the rollout is no longer running and nothing of it runs.
async fn settled(env: &TestEnv, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let rollout = show(env, id).await;
        if rollout["state"] != "running" && rollout["counts"]["running"] == 0 {
            return rollout;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not settle: {rollout:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tenant<'a>(rollout: &'a Value, slug: &str) -> &'a Value {
    rollout["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == slug)
        .unwrap_or_else(|| panic!("{slug} not in {rollout:#}"))
}

async fn rollout_halts_at_the_threshold_keeps_the_failed_tenant_intact_and_resumes(
    engine: EngineUnderTest,
) {
    let dirs = tempfile::tempdir().unwrap();
    let name = engine_name(&engine);
    let (old_dir, new_dir) = old_and_new(dirs.path(), name);
    let old_version = engine::Release::from_dir(&old_dir, name).unwrap().version;
    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.tenant_schema_dir = Some(old_dir.clone())
    })
    .await;
    let slugs = ["ro-a", "ro-b", "ro-c", "ro-d"];
    for slug in slugs {
        env.onboard(slug).await;
    }
    let bob = add_duplicate_emails(&env, "ro-c").await;
    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;

    // Bad requests are refused before anything is recorded.
    for (body, says) in [
        (json!({"target_version": 101}), "1 to 100"),
        (json!({"wave_size": 0}), "wave_size"),
        (json!({"tenants": {"slugs": ["ro-zz"]}}), "no tenant ro-zz"),
        (
            json!({"tenants": {"servers": ["nowhere"]}}),
            "no server named nowhere",
        ),
    ] {
        let (status, problem) = admin(&env, Method::POST, "/v1/rollouts", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{problem}"
        );
    }
    let (status, _) = env
        .call_as("operator", Method::POST, "/v1/rollouts", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Canary ro-a, then waves {ro-b, ro-c} and {ro-d}; one failure halts it.
    let id = start(
        &env,
        json!({"canary": 1, "wave_size": 2, "max_parallel_per_server": 2, "max_failures": 1}),
    )
    .await;
    // One rollout at a time.
    let (status, problem) = admin(&env, Method::POST, "/v1/rollouts", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains(&id),
        "{problem}"
    );

    let halted = settled(&env, &id).await;
    assert_eq!(halted["state"], "halted", "{halted:#}");
    assert!(
        halted["reason"]
            .as_str()
            .unwrap()
            .contains("max_failures 1"),
        "{halted:#}"
    );
    assert_eq!(halted["target_version"], NEW_VERSION);
    let failed = halted["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{halted:#}");
    assert_eq!(failed[0]["slug"], "ro-c");
    let product = product_migration(name).0;
    assert!(
        failed[0]["message"].as_str().unwrap().contains(product),
        "{halted:#}"
    );
    for (slug, state, wave) in [
        ("ro-a", "succeeded", 0),
        ("ro-b", "succeeded", 1),
        ("ro-c", "failed", 1),
        ("ro-d", "pending", 2),
    ] {
        let t = tenant(&halted, slug);
        assert_eq!(
            (t["state"].as_str().unwrap(), t["wave"].as_i64().unwrap()),
            (state, wave),
            "{halted:#}"
        );
    }
    assert_eq!(halted["waves"][0]["counts"]["succeeded"], 1, "{halted:#}");
    // The failed tenant is exactly at its old version; the one never started too.
    assert_eq!(schema_version(&env, "ro-c").await, Some(old_version));
    assert_eq!(schema_version(&env, "ro-d").await, Some(old_version));
    assert_eq!(schema_version(&env, "ro-a").await, Some(NEW_VERSION));
    let plan = env
        .app
        .engine
        .migration_plan(&env.names("ro-c"), NEW_VERSION)
        .await
        .unwrap();
    assert_eq!(plan.from, old_version);
    assert_eq!(
        plan.pending.len(),
        2,
        "the platform migration went back with it"
    );

    // The tenant fixes its data; resuming retries it and finishes the rollout.
    fix_duplicate_emails(&env, "ro-c", bob).await;
    let (status, resumed) = admin(
        &env,
        Method::POST,
        &format!("/v1/rollouts/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let done = settled(&env, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["counts"]["succeeded"], 4, "{done:#}");
    for slug in slugs {
        assert_eq!(
            schema_version(&env, slug).await,
            Some(NEW_VERSION),
            "{slug}"
        );
        assert_eq!(
            migrated_events(&env, slug).await.len(),
            1,
            "{slug}: applied once"
        );
    }
    // Resuming a finished rollout is a conflict.
    let (status, _) = admin(
        &env,
        Method::POST,
        &format!("/v1/rollouts/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Again: nothing to apply, no operation started, nothing recorded twice.
    let again = start(&env, json!({"canary": 0})).await;
    let done = settled(&env, &again).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for t in done["tenants"].as_array().unwrap() {
        assert!(t["operation"].is_null(), "{t}");
        assert!(
            t["message"].as_str().unwrap().contains("nothing to apply"),
            "{t}"
        );
    }
    for slug in slugs {
        assert_eq!(migrated_events(&env, slug).await.len(), 1, "{slug}");
    }
    let (status, list) = admin(&env, Method::GET, "/v1/rollouts", None).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![again.as_str(), id.as_str()]);
}

/// Two servers: a failed canary halts before any other wave; abort skips what did not start;
/// a rollout over one server's label pauses and resumes; a tenant onboarded meanwhile is on
/// the target already.
#[tokio::test]
async fn canary_halts_abort_skips_pause_holds_and_labels_select_servers() {
    let dirs = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = old_and_new(dirs.path(), "postgres");
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.tenant_schema_dir = Some(old_dir.clone());
        c.server_capacity = 10;
    })
    .await;
    let second = PgCluster::second();
    let (status, body) = admin(
        &env,
        Method::POST,
        "/v1/servers",
        Some(
            json!({"name": "pg-two", "engine": "postgres", "admin_url": second.admin_url,
                    "capacity": 10, "labels": {"tier": "b"}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let slugs = ["tw-1", "tw-2", "tw-3", "tw-4", "tw-5", "tw-6"];
    for slug in slugs {
        env.onboard(slug).await;
    }
    let mut on_default = Vec::new();
    let mut on_two = Vec::new();
    for slug in slugs {
        let (_, t) = env
            .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
            .await;
        match t["server"].as_str().unwrap() {
            "default" => on_default.push(slug),
            _ => on_two.push(slug),
        }
    }
    assert_eq!((on_default.len(), on_two.len()), (3, 3));
    // The canary is the first tenant of the first server by name.
    let canary = on_default[0];
    let bob = add_duplicate_emails(&env, canary).await;
    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;

    let id = start(
        &env,
        json!({"canary": 1, "wave_size": 2, "max_failures": 3}),
    )
    .await;
    let halted = settled(&env, &id).await;
    assert_eq!(halted["state"], "halted", "{halted:#}");
    assert!(
        halted["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("canary tenant {canary}")),
        "{halted:#}"
    );
    assert_eq!(
        halted["counts"]["pending"], 5,
        "no other wave started: {halted:#}"
    );
    let (status, aborted) = admin(
        &env,
        Method::POST,
        &format!("/v1/rollouts/{id}/abort"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{aborted}");
    assert_eq!(aborted["state"], "aborted");
    assert_eq!(aborted["counts"]["skipped"], 5, "{aborted:#}");
    for slug in slugs {
        assert!(
            schema_version(&env, slug).await < Some(NEW_VERSION),
            "{slug}"
        );
    }
    fix_duplicate_emails(&env, canary, bob).await;

    // Only the servers labelled tier=b, one tenant at a time; paused at once.
    let id = start(
        &env,
        json!({"canary": 0, "wave_size": 1, "max_parallel_per_server": 1,
               "tenants": {"labels": {"tier": "b"}}}),
    )
    .await;
    let (status, paused) = admin(
        &env,
        Method::POST,
        &format!("/v1/rollouts/{id}/pause"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["state"], "paused");
    // A pass that began before the pause may still start its tenant; after that, nothing.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let held = settled(&env, &id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = show(&env, &id).await;
    assert_eq!(still["state"], "paused");
    assert_eq!(
        still["counts"], held["counts"],
        "nothing started while paused"
    );
    assert!(
        still["counts"]["pending"].as_i64().unwrap() >= 1,
        "{still:#}"
    );
    // A tenant onboarded now is on the newest release already.
    env.onboard("tw-new").await;
    assert_eq!(schema_version(&env, "tw-new").await, Some(NEW_VERSION));

    let (status, _) = admin(
        &env,
        Method::POST,
        &format!("/v1/rollouts/{id}/resume"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let done = settled(&env, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    let covered: Vec<&str> = done["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(covered.len(), 3, "{done:#}");
    assert!(covered.iter().all(|s| on_two.contains(s)), "{covered:?}");
    for slug in &on_two {
        assert_eq!(
            schema_version(&env, slug).await,
            Some(NEW_VERSION),
            "{slug}"
        );
    }
    for slug in &on_default {
        assert!(
            schema_version(&env, slug).await < Some(NEW_VERSION),
            "{slug}"
        );
    }
}

/// The real binary is killed right after a tenant's migration committed (before the operation
/// recorded it); a restarted control plane finishes the rollout, and every tenant is on the new
/// version with its migration applied once.
#[tokio::test]
async fn a_rollout_survives_a_kill_in_the_middle_of_a_tenant() {
    let dirs = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = old_and_new(dirs.path(), "postgres");
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.tenant_schema_dir = Some(old_dir.clone());
        // The in-process control plane leaves the rollout to the real binaries.
        c.rollout_tick_ms = 60_000;
    })
    .await;
    let slugs = ["rk-1", "rk-2", "rk-3"];
    for slug in slugs {
        env.onboard(slug).await;
    }
    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;

    let server =
        RealServer::spawn(&env, "rollout-node", "crash:migrate:apply_migrations", &[]).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/rollouts", server.base))
        .bearer_auth(env.token("admin"))
        .json(&json!({"canary": 0, "max_parallel_per_server": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_killed(&env, None).await;
    let mid = show(&env, &id).await;
    assert_eq!(mid["state"], "running", "{mid:#}");
    assert_eq!(mid["counts"]["running"], 1, "{mid:#}");
    assert_eq!(mid["counts"]["succeeded"], 0, "{mid:#}");

    let _server = RealServer::spawn(&env, "rollout-node", "", &[]).await;
    let done = settled(&env, &id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    for slug in slugs {
        assert_eq!(
            schema_version(&env, slug).await,
            Some(NEW_VERSION),
            "{slug}"
        );
        assert_eq!(
            migrated_events(&env, slug).await.len(),
            1,
            "{slug}: applied once"
        );
    }
}

/// Waits (at most a minute) until the fleet's schema view satisfies `done`.
async fn fleet_until(env: &TestEnv, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, fleet) = admin(env, Method::GET, "/v1/fleet/schema", None).await;
        assert_eq!(status, StatusCode::OK, "{fleet}");
        if done(&fleet) {
            return fleet;
        }
        assert!(Instant::now() < deadline, "fleet schema: {fleet:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn fleet_tenant<'a>(fleet: &'a Value, slug: &str) -> &'a Value {
    fleet["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["slug"] == slug)
        .unwrap_or_else(|| panic!("{slug} not in {fleet:#}"))
}

/// A hand-made change in a tenant database (a dropped grant, an extra column, a principal put
/// in another role) is reported as
/// drift naming the object, in `GET /v1/fleet/schema` and `tcp_tenants_drifted`.
async fn hand_made_changes_are_reported_as_drift_naming_the_object(engine: EngineUnderTest) {
    let sqlserver = matches!(engine, EngineUnderTest::SqlServer { .. });
    let env = TestEnv::with(engine, Faults::none(), |c| c.schema_check_interval_secs = 1).await;
    env.onboard("dr-grant").await;
    env.onboard("dr-column").await;
    env.onboard("dr-clean").await;
    env.onboard("dr-member").await;
    let fleet = fleet_until(&env, |f| {
        f["tenants"]
            .as_array()
            .is_some_and(|ts| ts.len() == 4 && ts.iter().all(|t| t["state"] == "ok"))
    })
    .await;
    let version = env.app.engine.schema_version().to_string();
    assert_eq!(fleet["versions"][&version], 4, "{fleet:#}");
    // Every tenant on one release has one fingerprint: the principals are named by role.
    let fingerprint = &fleet_tenant(&fleet, "dr-clean")["expected_fingerprint"];
    assert!(fingerprint.is_string());
    assert_eq!(
        &fleet_tenant(&fleet, "dr-grant")["expected_fingerprint"],
        fingerprint
    );

    let (revoke, missing, add, extra, join, joined) = if sqlserver {
        (
            "REVOKE EXECUTE ON SCHEMA::app FROM app_rw;".to_owned(),
            "missing: grant EXECUTE on schema app to app_rw",
            "ALTER TABLE app.Customers ADD Sneaky nvarchar(10) NULL;",
            "extra: column app.Customers.Sneaky",
            "ALTER ROLE db_datareader ADD MEMBER app_rw;".to_owned(),
            "extra: membership member on db_datareader to app_rw",
        )
    } else {
        (
            format!(
                "REVOKE EXECUTE ON FUNCTION app.customer_get(uuid) FROM {};",
                env.names("dr-grant").app_rw
            ),
            "missing: grant EXECUTE on app.customer_get(p_id uuid) to app_rw",
            "ALTER TABLE app.customers ADD COLUMN sneaky text;",
            "extra: column app.customers.sneaky text",
            format!(
                "GRANT pg_read_all_data TO {};",
                env.names("dr-member").app_a
            ),
            "extra: membership member on pg_read_all_data to app_a",
        )
    };
    // Rotation switches logins off and on on purpose: that is no drift.
    env.rotate("dr-clean", "emergency").await;
    let rotated_at = chrono::Utc::now();
    let probe = env.probe();
    probe
        .admin(&env.names("dr-grant").database)
        .await
        .execute(&revoke)
        .await
        .unwrap();
    probe
        .admin(&env.names("dr-column").database)
        .await
        .execute(add)
        .await
        .unwrap();
    // A principal's role membership (what the evidence probes judge) is part of the schema too.
    probe
        .admin(&env.names("dr-member").database)
        .await
        .execute(&join)
        .await
        .unwrap();
    // Three drifted, and the rotated tenant checked since its rotation: a pass that began
    // before the rotation ended may report the three before it reads that one again.
    let checked_since_rotation = |f: &Value| {
        f["tenants"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["slug"] == "dr-clean"
                    && t["checked_at"]
                        .as_str()
                        .and_then(|c| c.parse::<chrono::DateTime<chrono::Utc>>().ok())
                        .is_some_and(|c| c > rotated_at)
            })
        })
    };
    let fleet = fleet_until(&env, |f| f["drifted"] == 3 && checked_since_rotation(f)).await;
    let member = fleet_tenant(&fleet, "dr-member");
    assert!(
        member["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap() == joined),
        "{member:#}"
    );
    let grant = fleet_tenant(&fleet, "dr-grant");
    assert_eq!(grant["state"], "drifted", "{fleet:#}");
    assert!(
        grant["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().starts_with(missing)),
        "{grant:#}"
    );
    assert_ne!(grant["live_fingerprint"], grant["expected_fingerprint"]);
    let column = fleet_tenant(&fleet, "dr-column");
    assert!(
        column["differences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str().unwrap().starts_with(extra)),
        "{column:#}"
    );
    // Read since its rotation, the rotated tenant is no drift.
    let clean = fleet_tenant(&fleet, "dr-clean");
    assert_eq!(clean["state"], "ok", "{clean:#}");
    let (status, _, text) = env.call_text(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.lines().any(|l| l == "tcp_tenants_drifted 3"), "{text}");
}

conformance!(
    rollout_halts_at_the_threshold_keeps_the_failed_tenant_intact_and_resumes,
    hand_made_changes_are_reported_as_drift_naming_the_object
);
