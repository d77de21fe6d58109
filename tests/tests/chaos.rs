//! Chaos (issue 16, item 5), the short form `make test` runs: the world breaks while operations
//! run, and each test ends with every operation converged, no tenant lost, and a reconciliation
//! report without findings (so no orphan). Each prints one `chaos:` line with what it injected
//! and what converged; docs/reliability.md keeps the table. `TCP_CHAOS_SCALE` (default 1)
//! multiplies the operations for the long form (`make chaos`).
//!
//! PostgreSQL only: the tests stop and start a database server, which a SQL Server reached
//! through `MSSQL_URL` does not let them do.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use api_types::OperationState;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, PgCluster, RealServer, TestEnv};
use uuid::Uuid;
use workflows::reconcile::ReconcilePolicy;
use workflows::{Faults, Orchestrator};

fn scale() -> usize {
    std::env::var("TCP_CHAOS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize)
        .clamp(1, 50)
}

/// Starts onboarding `slug` (on servers labelled `region`) and returns the operation.
async fn start_onboard_on(env: &TestEnv, slug: &str, region: &str) -> Uuid {
    let (status, body) = env
        .call(
            Method::POST,
            "/v1/tenants",
            Some(json!({"slug": slug, "display_name": slug,
                        "placement": {"labels": {"region": region}}})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{slug}: {body}");
    body["operation"]["id"].as_str().unwrap().parse().unwrap()
}

/// Registers the harness's second cluster as server `name`, labelled `region=b` (the tests
/// stop and start it), and returns it.
async fn register_second_server(env: &TestEnv, name: &str) -> &'static PgCluster {
    let second = PgCluster::second();
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            "/v1/servers",
            Some(
                json!({"name": name, "engine": "postgres", "admin_url": second.admin_url,
                        "capacity": 1000, "labels": {"region": "b"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    second
}

/// Waits for every operation (at most `limit`); returns each final state. An operation that
/// ends other than `succeeded` is printed (its error and each step's).
async fn settle(env: &TestEnv, ids: &[(String, Uuid)], limit: Duration) -> Vec<OperationState> {
    let deadline = Instant::now() + limit;
    let mut states = Vec::new();
    for (what, id) in ids {
        loop {
            let op = env.app.catalog.operation(*id).await.unwrap().unwrap();
            if op.state.is_terminal() {
                if op.state != OperationState::Succeeded {
                    let steps: Vec<String> = op
                        .steps
                        .iter()
                        .filter_map(|s| Some(format!("{}: {}", s.name, s.error.as_deref()?)))
                        .collect();
                    println!(
                        "{what}: {:?}: {} [{}]",
                        op.state,
                        op.error.as_deref().unwrap_or("-"),
                        steps.join("; ")
                    );
                }
                states.push(op.state);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not converge: {op:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    states
}

/// A reconciliation pass now; asserts it found nothing and checked every server.
async fn reconciles_clean(env: &TestEnv) -> usize {
    let report = Orchestrator::new(env.app.runner.clone())
        .reconcile_once(&ReconcilePolicy::default())
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{report:#?}");
    assert!(report.servers.iter().all(|s| s.checked), "{report:#?}");
    assert!(report.secrets_checked, "{report:#?}");
    report.tenants_checked
}

fn count(states: &[OperationState], state: OperationState) -> usize {
    states.iter().filter(|s| **s == state).count()
}

/// The tenants' database server stops for three seconds while onboardings, offboardings and
/// rotations run on it: onboardings finish or roll back cleanly, the others wait for it and
/// finish, and nothing is left behind.
#[tokio::test]
async fn a_database_server_restarting_mid_operation_loses_nothing() {
    let n = 3 * scale();
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.server_labels = [("region".to_owned(), "a".to_owned())].into();
        c.reconcile_interval_secs = 0;
        c.rate_limit_per_subject = 100_000;
        c.rate_limit_burst_per_subject = 100_000;
    })
    .await;
    let second = register_second_server(&env, "chaos").await;
    let old: Vec<String> = (0..2 * n).map(|i| format!("chaos-old-{i}")).collect();
    for slug in &old {
        let id = start_onboard_on(&env, slug, "b").await;
        assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
    }

    let mut ops: Vec<(String, Uuid)> = Vec::new();
    for i in 0..n {
        let slug = format!("chaos-new-{i}");
        ops.push((
            format!("onboard {slug}"),
            start_onboard_on(&env, &slug, "b").await,
        ));
    }
    for slug in &old[..n] {
        ops.push((format!("offboard {slug}"), env.start_offboard(slug).await));
    }
    for slug in &old[n..] {
        ops.push((
            format!("rotate {slug}"),
            env.start_rotate(slug, "scheduled").await,
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    second.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.restart();
    let down = stopped.elapsed();
    let states = settle(&env, &ops, Duration::from_secs(180)).await;
    for ((what, _), state) in ops.iter().zip(&states) {
        let fine = if what.starts_with("onboard") {
            matches!(
                state,
                OperationState::Succeeded | OperationState::RolledBack
            )
        } else {
            *state == OperationState::Succeeded
        };
        assert!(fine, "{what} ended {state:?}");
    }
    Orchestrator::new(env.app.runner.clone())
        .check_servers_once()
        .await
        .unwrap();
    let checked = reconciles_clean(&env).await;
    println!(
        "chaos: database server stopped for {:.1} s | {} operations ({n} onboard, {n} offboard, \
         {n} rotate) | {} succeeded, {} rolled back | reconciliation: {checked} tenants, 0 findings",
        down.as_secs_f64(),
        ops.len(),
        count(&states, OperationState::Succeeded),
        count(&states, OperationState::RolledBack),
    );
}

/// The tenants' database server stops for three seconds while a rollout migrates them to a newer
/// release: every migration waits for it and finishes, the rollout succeeds with no failure, each
/// tenant is on the new version with one `schema.migrated` event, and no schema drifted.
#[tokio::test]
async fn a_database_server_restarting_mid_rollout_loses_nothing() {
    let n = 3 * scale();
    let dirs = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = tcp_tests::releases::old_and_new(dirs.path(), "postgres");
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.tenant_schema_dir = Some(old_dir.clone());
        c.server_labels = [("region".to_owned(), "a".to_owned())].into();
        c.reconcile_interval_secs = 0;
    })
    .await;
    let second = register_second_server(&env, "chaos").await;
    let slugs: Vec<String> = (0..2 * n).map(|i| format!("chaos-ro-{i}")).collect();
    for slug in &slugs {
        let id = start_onboard_on(&env, slug, "b").await;
        assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
    }
    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;

    let (status, rollout) = env
        .call_as(
            "admin",
            Method::POST,
            "/v1/rollouts",
            Some(
                json!({"canary": 1, "wave_size": 4, "max_parallel_per_server": 4,
                        "max_failures": 1, "tenants": {"servers": ["chaos"]}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rollout}");
    let id = rollout["id"].as_str().unwrap().to_owned();
    // Down once the canary has succeeded, while the waves run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done_before = loop {
        let (_, r) = env
            .call_as("admin", Method::GET, &format!("/v1/rollouts/{id}"), None)
            .await;
        let done = r["counts"]["succeeded"].as_u64().unwrap_or(0);
        assert!(
            Instant::now() < deadline,
            "the canary did not finish: {r:#}"
        );
        if done >= 1 {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        (done_before as usize) < slugs.len(),
        "the rollout finished before the server stopped"
    );
    let stopped = Instant::now();
    second.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.restart();
    let down = stopped.elapsed();

    let deadline = Instant::now() + Duration::from_secs(180);
    let rollout = loop {
        let (_, r) = env
            .call_as("admin", Method::GET, &format!("/v1/rollouts/{id}"), None)
            .await;
        if r["state"] != "running" && r["counts"]["running"] == 0 {
            break r;
        }
        assert!(Instant::now() < deadline, "rollout did not settle: {r:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rollout["state"], "succeeded", "{rollout:#}");
    assert_eq!(rollout["counts"]["failed"], 0, "{rollout:#}");
    for slug in &slugs {
        assert_eq!(
            tcp_tests::releases::schema_version(&env, slug).await,
            Some(100),
            "{slug}"
        );
        let migrated = tcp_tests::releases::migrated_events(&env, slug).await;
        assert_eq!(migrated.len(), 1, "{slug}: {migrated:#?}");
    }
    Orchestrator::new(env.app.runner.clone())
        .check_servers_once()
        .await
        .unwrap();
    let checked = reconciles_clean(&env).await;
    println!(
        "chaos: database server stopped for {:.1} s mid-rollout | {} tenants migrated to 100 \
         ({done_before} before the stop) | {} succeeded, {} failed | reconciliation: {checked} \
         tenants, 0 findings",
        down.as_secs_f64(),
        slugs.len(),
        rollout["counts"]["succeeded"],
        rollout["counts"]["failed"],
    );
}

/// Two replicas on one catalog: rotations recorded for "whoever comes first" are raced for by
/// both sweepers and each runs exactly once; the replica that accepted a burst of onboardings is
/// killed, and the other takes them over once their leases expire.
#[tokio::test]
async fn two_replicas_race_for_operations_and_a_killed_one_is_taken_over() {
    let n = 3 * scale();
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.reconcile_interval_secs = 0;
    })
    .await;
    let slugs: Vec<String> = (0..n).map(|i| format!("race-{i}")).collect();
    for slug in &slugs {
        env.onboard(slug).await;
    }
    // Its leases last 5 s: the survivor takes its operations over that long after it died.
    let replica =
        RealServer::spawn(&env, "replica-b", "", &[("TENANT_CP_LEASE_TTL_SECS", "5")]).await;

    // Unleased rotations: both replicas' sweepers (one second apart at most) race for them.
    let orchestrator = Orchestrator::new(env.app.runner.clone());
    let mut ops: Vec<(String, Uuid)> = Vec::new();
    for slug in &slugs {
        let tenant = env
            .app
            .catalog
            .tenant_by_slug(&api_types::TenantSlug::parse(slug).unwrap())
            .await
            .unwrap()
            .unwrap();
        let op = orchestrator
            .record_kind(
                &api_types::OperationKind::ROTATE,
                &tenant,
                json!({"mode": "scheduled"}),
                "chaos",
                None,
                None,
            )
            .await
            .unwrap();
        ops.push((format!("rotate {slug}"), op.id));
    }
    // Onboardings the other replica accepted, then it dies (SIGKILL).
    let mut accepted = Vec::new();
    for i in 0..n {
        let slug = format!("orphaned-{i}");
        let id = replica
            .start(
                &env,
                "/v1/tenants",
                json!({"slug": slug, "display_name": slug}),
            )
            .await;
        accepted.push((
            format!("onboard {slug} (accepted by the killed replica)"),
            id,
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(replica);
    let killed = Instant::now();
    ops.extend(accepted);
    let states = settle(&env, &ops, Duration::from_secs(120)).await;
    for ((what, _), state) in ops.iter().zip(&states) {
        assert_eq!(*state, OperationState::Succeeded, "{what}");
    }
    let took = killed.elapsed();
    // Each raced rotation ran once: one rotation per tenant in its history.
    for slug in &slugs {
        let (status, history) = env
            .call(Method::GET, &format!("/v1/tenants/{slug}/rotations"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        let done: Vec<&Value> = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "succeeded")
            .collect();
        assert_eq!(done.len(), 1, "{slug}: {history:#}");
    }
    let checked = reconciles_clean(&env).await;
    println!(
        "chaos: two replicas, one killed (SIGKILL) | {} operations ({n} raced rotations, {n} \
         onboardings of the killed replica) | {} succeeded, each rotation once; taken over \
         within {:.1} s | reconciliation: {checked} tenants, 0 findings",
        ops.len(),
        count(&states, OperationState::Succeeded),
        took.as_secs_f64(),
    );
}

/// The catalog's database server stops (5 s, `TCP_CHAOS_SCALE` times longer, at most 30 s)
/// while onboardings, offboardings and rotations run on another server: every operation waits
/// for the catalog and finishes; nothing is lost or left behind.
#[tokio::test]
async fn the_catalog_unreachable_mid_operation_loses_nothing() {
    let n = 3 * scale();
    let outage = Duration::from_secs((5 * scale() as u64).min(30));
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.server_labels = [("region".to_owned(), "a".to_owned())].into();
        c.reconcile_interval_secs = 0;
        c.rate_limit_per_subject = 100_000;
        c.rate_limit_burst_per_subject = 100_000;
    })
    .await;
    // The tenants live on the second cluster; the catalog (and the configured server) on the
    // shared one, which is stopped.
    register_second_server(&env, "tenants").await;
    let old: Vec<String> = (0..2 * n).map(|i| format!("cat-old-{i}")).collect();
    for slug in &old {
        let id = start_onboard_on(&env, slug, "b").await;
        assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
    }
    let mut ops: Vec<(String, Uuid)> = Vec::new();
    for i in 0..n {
        let slug = format!("cat-new-{i}");
        ops.push((
            format!("onboard {slug}"),
            start_onboard_on(&env, &slug, "b").await,
        ));
    }
    for slug in &old[..n] {
        ops.push((format!("offboard {slug}"), env.start_offboard(slug).await));
    }
    for slug in &old[n..] {
        ops.push((
            format!("rotate {slug}"),
            env.start_rotate(slug, "scheduled").await,
        ));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let catalog_server = PgCluster::shared();
    catalog_server.stop();
    tokio::time::sleep(outage).await;
    catalog_server.restart();
    let states = settle(&env, &ops, Duration::from_secs(240)).await;
    for ((what, _), state) in ops.iter().zip(&states) {
        assert_eq!(*state, OperationState::Succeeded, "{what}");
    }
    Orchestrator::new(env.app.runner.clone())
        .check_servers_once()
        .await
        .unwrap();
    let checked = reconciles_clean(&env).await;
    println!(
        "chaos: catalog unreachable for {} s | {} operations ({n} onboard, {n} offboard, {n} \
         rotate) | {} succeeded | reconciliation: {checked} tenants, 0 findings",
        outage.as_secs(),
        ops.len(),
        count(&states, OperationState::Succeeded),
    );
}

/// The secret store (Azure Key Vault, through its double and the real SDK) answers 503 to
/// everything for 5 s (`TCP_CHAOS_SCALE` times longer, at most 60 s) while onboardings and
/// rotations run: each step waits and tries again, every operation finishes.
#[tokio::test]
async fn the_secret_store_answering_503_loses_nothing() {
    let n = 3 * scale();
    // The long form holds it for the 60 s issue 16 names.
    let outage = Duration::from_secs(if scale() > 1 { 60 } else { 5 });
    let double =
        tcp_tests::keyvault::KeyVaultDouble::start(tcp_tests::keyvault::KeyVaultDoubleOptions {
            seconds_per_write: 1,
            ..Default::default()
        })
        .await;
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        double.configure(c);
        c.reconcile_interval_secs = 0;
        c.rate_limit_per_subject = 100_000;
        c.rate_limit_burst_per_subject = 100_000;
    })
    .await;
    let old: Vec<String> = (0..n).map(|i| format!("kv-old-{i}")).collect();
    for slug in &old {
        env.onboard(slug).await;
    }
    let mut ops: Vec<(String, Uuid)> = Vec::new();
    double.fail(u32::MAX, 503);
    for i in 0..n {
        let slug = format!("kv-new-{i}");
        ops.push((format!("onboard {slug}"), env.start_onboard(&slug).await));
    }
    for slug in &old {
        ops.push((
            format!("rotate {slug}"),
            env.start_rotate(slug, "scheduled").await,
        ));
    }
    tokio::time::sleep(outage).await;
    double.fail(0, 503);
    let states = settle(&env, &ops, Duration::from_secs(240)).await;
    for ((what, _), state) in ops.iter().zip(&states) {
        assert!(
            matches!(
                state,
                OperationState::Succeeded | OperationState::RolledBack
            ) && (what.starts_with("onboard") || *state == OperationState::Succeeded),
            "{what} ended {state:?}"
        );
    }
    let checked = reconciles_clean(&env).await;
    println!(
        "chaos: Key Vault answering 503 for {} s | {} operations ({n} onboard, {n} rotate) | {} \
         succeeded, {} rolled back | reconciliation: {checked} tenants, 0 findings",
        outage.as_secs(),
        ops.len(),
        count(&states, OperationState::Succeeded),
        count(&states, OperationState::RolledBack),
    );
}

/// A database server disappears for good (its cluster stopped, never started again) while
/// another keeps working: the health check says it is unreachable, the reconciler names it and
/// the tenants on it (and reports none of them missing anything), new tenants go elsewhere, and
/// the other server's tenants are onboarded, rotated and offboarded as if nothing happened.
#[tokio::test]
async fn a_server_gone_for_good_is_reported_and_disturbs_nothing_else() {
    let n = 2 * scale();
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.reconcile_interval_secs = 0;
        c.rate_limit_per_subject = 100_000;
        c.rate_limit_burst_per_subject = 100_000;
    })
    .await;
    let second = PgCluster::second();
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            "/v1/servers",
            Some(
                json!({"name": "doomed", "engine": "postgres", "admin_url": second.admin_url,
                        "capacity": 1000, "labels": {"region": "gone"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let doomed: Vec<String> = (0..n).map(|i| format!("chaos-doomed-{i}")).collect();
    for slug in &doomed {
        let id = start_onboard_on(&env, slug, "gone").await;
        assert_eq!(env.wait(id).await.state, OperationState::Succeeded);
    }
    let kept: Vec<String> = (0..n).map(|i| format!("chaos-kept-{i}")).collect();
    for slug in &kept {
        env.onboard(slug).await;
    }

    second.stop();
    let orchestrator = Orchestrator::new(env.app.runner.clone());
    orchestrator.check_servers_once().await.unwrap();
    let (status, shown) = env
        .call_as("admin", Method::GET, "/v1/servers/doomed", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["state"], "unreachable", "{shown}");

    // The other server's work goes on: new tenants (placed anywhere) land there, its tenants
    // rotate and offboard.
    let mut ops: Vec<(String, Uuid)> = Vec::new();
    for i in 0..n {
        let slug = format!("chaos-after-{i}");
        ops.push((format!("onboard {slug}"), env.start_onboard(&slug).await));
    }
    for slug in &kept {
        ops.push((
            format!("rotate {slug}"),
            env.start_rotate(slug, "scheduled").await,
        ));
    }
    let states = settle(&env, &ops, Duration::from_secs(120)).await;
    assert_eq!(
        count(&states, OperationState::Succeeded),
        ops.len(),
        "{states:?}"
    );
    for i in 0..n {
        let t = env
            .app
            .catalog
            .tenant_by_slug(&api_types::TenantSlug::parse(&format!("chaos-after-{i}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(t.server, "doomed", "placed on an unreachable server");
    }
    let offboards: Vec<(String, Uuid)> = {
        let mut v = Vec::new();
        for slug in &kept {
            v.push((format!("offboard {slug}"), env.start_offboard(slug).await));
        }
        v
    };
    let off_states = settle(&env, &offboards, Duration::from_secs(120)).await;
    assert_eq!(
        count(&off_states, OperationState::Succeeded),
        offboards.len()
    );

    // The reconciler names the server and whom it holds; nothing is reported missing, and the
    // server that works is checked as always.
    let report = orchestrator
        .reconcile_once(&ReconcilePolicy::default())
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{report:#?}");
    let gone = report
        .servers
        .iter()
        .find(|s| s.server == "doomed")
        .unwrap();
    assert!(!gone.checked, "{report:#?}");
    assert!(gone.error.is_some(), "{report:#?}");
    let mut named = gone.unchecked_tenants.clone();
    named.sort();
    let mut doomed = doomed;
    doomed.sort();
    assert_eq!(named, doomed, "{report:#?}");
    let others: Vec<_> = report
        .servers
        .iter()
        .filter(|s| s.server != "doomed")
        .collect();
    assert!(
        !others.is_empty() && others.iter().all(|s| s.checked),
        "{report:#?}"
    );
    let (status, listed) = env
        .call_as("admin", Method::GET, "/v1/reconciliation", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    println!(
        "chaos: database server gone for good | {} tenants on it reported unchecked, 0 findings | \
         {} operations elsewhere ({n} onboard, {n} rotate, {n} offboard), all succeeded",
        gone.unchecked_tenants.len(),
        ops.len() + offboards.len(),
    );
}
