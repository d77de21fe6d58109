//! The warm pool: databases created ahead of time that onboardings claim and rename. A claim
//! takes a pooled database and the tenant works exactly like a cloned one (its evidence has no
//! finding); an empty pool clones; a new schema release replaces the pool; claims racing refills
//! and each other never share a database; a failure at a claim's every point leaves nothing
//! behind; a kill during a claim or a refill leaves no orphan (the real binary, killed with
//! SIGKILL). A conformance suite where it can be: the kill test runs on PostgreSQL, whose
//! databases the test lists directly.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use api_types::{OperationState, TenantState};
use axum::http::{Method, StatusCode};
use catalog::{PoolState, PooledDatabase};
use serde_json::{json, Value};
use tcp_tests::releases::{product_migration, write_release};
use tcp_tests::{conformance, EngineUnderTest, RealServer, TestEnv};
use workflows::pool::PoolPolicy;
use workflows::{Faults, Orchestrator};

conformance!(
    onboarding_claims_pooled_databases_and_clones_when_the_pool_is_empty,
    a_new_release_replaces_the_pool,
    claims_racing_refills_and_each_other_never_share_a_database,
    a_failure_at_every_point_of_a_claim_leaves_nothing_behind,
    a_claim_whose_onboarding_ended_is_dropped_by_the_next_pass,
);

/// A control plane whose pool keeps `size` databases per server, refilled only when a test asks
/// (and once at start-up), so the tests decide when it fills.
async fn env_with_pool(engine: EngineUnderTest, size: u32, faults: Faults) -> TestEnv {
    TestEnv::with(engine, faults, |c| pooled(c, size)).await
}

fn pooled(c: &mut server::config::Config, size: u32) {
    c.warm_pool_size = size;
    c.warm_pool_interval_secs = 3600;
    // The tests run operations while they refill.
    c.warm_pool_busy_operations = 1000;
}

fn policy(env: &TestEnv) -> PoolPolicy {
    env.config.pool()
}

async fn rows(env: &TestEnv) -> Vec<PooledDatabase> {
    env.app
        .catalog
        .pool_databases(Some("default"))
        .await
        .unwrap()
}

async fn ready(env: &TestEnv) -> Vec<PooledDatabase> {
    rows(env)
        .await
        .into_iter()
        .filter(|r| r.state == PoolState::Ready)
        .collect()
}

/// Refills until the default server's pool holds `n` ready databases.
async fn fill(env: &TestEnv, n: usize) {
    let orchestrator = Orchestrator::new(env.app.runner.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let passes = orchestrator.refill_pools_once(&policy(env)).await.unwrap();
        for p in &passes {
            assert!(p.errors.is_empty(), "{p:?}");
        }
        if ready(env).await.len() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not fill: {:?}",
            rows(env).await
        );
    }
}

/// Whether a database of this name exists on the test's server.
async fn database_exists(env: &TestEnv, name: &str) -> bool {
    env.probe().database_exists(name).await
}

/// The pooled database an onboarding took (`None`: it cloned).
fn pooled_of(op: &catalog::OperationRecord) -> Option<String> {
    op.step_output("claim_pooled")
        .and_then(|v| v["pooled"].as_str().map(str::to_owned))
}

async fn pool_view(env: &TestEnv) -> Value {
    let (status, server) = env
        .call_as("admin", Method::GET, "/v1/servers/default", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{server}");
    server["pool"].clone()
}

async fn evidence_is_clean(env: &TestEnv, slug: &str) {
    let (status, bundle) = env
        .call_as(
            "auditor",
            Method::GET,
            &format!("/v1/tenants/{slug}/evidence"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{bundle}");
    let sections = &bundle["payload"]["sections"];
    for name in [
        "principals",
        "live_probes",
        "temporal_coverage",
        "audit_chain",
    ] {
        assert_eq!(
            sections[name]["status"], "pass",
            "{slug} {name}: {:#}",
            sections[name]
        );
    }
}

async fn onboarding_claims_pooled_databases_and_clones_when_the_pool_is_empty(
    engine: EngineUnderTest,
) {
    let env = env_with_pool(engine, 2, Faults::none()).await;
    fill(&env, 2).await;
    let pool = pool_view(&env).await;
    assert_eq!(
        (
            pool["size"].as_u64(),
            pool["ready"].as_u64(),
            &pool["size_set"]
        ),
        (Some(2), Some(2), &json!(false)),
        "{pool}"
    );
    let pooled: Vec<String> = ready(&env).await.into_iter().map(|r| r.database).collect();

    let op = env.onboard("pool-a").await;
    let taken = pooled_of(&op).expect("the onboarding took a pooled database");
    assert_eq!(
        taken, pooled[0],
        "the oldest pooled database is taken first"
    );
    assert!(!database_exists(&env, &taken).await, "{taken} was renamed");
    assert!(database_exists(&env, &env.names("pool-a").database).await);
    assert!(rows(&env).await.iter().all(|r| r.database != taken));
    // The tenant is what a clone would have made: principals, grants, probes, history.
    evidence_is_clean(&env, "pool-a").await;
    // Its audit admin is the one the database knows as such: it purges (the pooled database
    // named its own roles until the claim renamed them).
    let (status, purged) = env
        .call_as(
            "admin",
            Method::POST,
            "/v1/tenants/pool-a/audit/purge",
            Some(json!({"before": chrono::Utc::now().to_rfc3339(), "reason": "retention"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{purged}");
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&"pool-a".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.state, TenantState::Active);
    assert_eq!(tenant.schema_version, Some(env.app.engine.schema_version()));

    // The pool is set to nothing: the next onboarding clones, and the pool is emptied.
    let (status, server) = env
        .call_as(
            "admin",
            Method::PUT,
            "/v1/servers/default/pool",
            Some(json!({"size": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{server}");
    assert_eq!(server["pool"]["size_set"], json!(true), "{server}");
    fill(&env, 0).await;
    Orchestrator::new(env.app.runner.clone())
        .refill_pools_once(&policy(&env))
        .await
        .unwrap();
    assert!(rows(&env).await.is_empty(), "{:?}", rows(&env).await);
    let op = env.onboard("pool-b").await;
    assert_eq!(pooled_of(&op), None, "an empty pool clones");
    evidence_is_clean(&env, "pool-b").await;
    for name in &pooled[1..] {
        assert!(!database_exists(&env, name).await, "{name} was dropped");
    }

    // The claims and the miss are counted, and the pool's rows are gauges per state.
    let metrics = env.call_text(Method::GET, "/metrics", None).await.2;
    assert!(
        metrics.contains("tcp_pool_claims_total{server=\"default\",outcome=\"hit\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tcp_pool_claims_total{server=\"default\",outcome=\"miss\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tcp_pool_databases{server=\"default\",state=\"ready\"} 0"),
        "{metrics}"
    );

    // Sizes are bounded, and `null` takes the deployment's default again.
    let (status, _) = env
        .call_as(
            "admin",
            Method::PUT,
            "/v1/servers/default/pool",
            Some(json!({"size": 1001})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, server) = env
        .call_as(
            "admin",
            Method::PUT,
            "/v1/servers/default/pool",
            Some(json!({"size": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&server["pool"]["size"], &server["pool"]["size_set"]),
        (&json!(2), &json!(false)),
        "{server}"
    );
}

async fn a_new_release_replaces_the_pool(engine: EngineUnderTest) {
    let name = match engine {
        EngineUnderTest::Postgres => "postgres",
        EngineUnderTest::SqlServer { .. } => "sqlserver",
    };
    let embedded = engine::Release::embedded(name).unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let new_dir = dirs.path().join("new");
    write_release(&new_dir, &embedded, 0, &[product_migration(name)]);

    let env = env_with_pool(engine, 2, Faults::none()).await;
    fill(&env, 2).await;
    let old: Vec<PooledDatabase> = ready(&env).await;
    let old_generation = old[0].generation.clone();

    // The operator ships a new release and restarts: the pooled databases of the old one are
    // dropped and replaced, and a new tenant gets the new version from a pooled database.
    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir);
    let env = env.restart(Faults::none()).await;
    assert_eq!(env.app.engine.schema_version(), 100);
    fill(&env, 2).await;
    let now = rows(&env).await;
    assert!(
        now.iter().all(|r| r.generation != old_generation),
        "{now:?}"
    );
    for r in &old {
        assert!(
            !database_exists(&env, &r.database).await,
            "{} left",
            r.database
        );
    }
    let op = env.onboard("pool-new").await;
    assert!(pooled_of(&op).is_some(), "{op:?}");
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&"pool-new".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tenant.schema_version, Some(100));
    evidence_is_clean(&env, "pool-new").await;
}

async fn claims_racing_refills_and_each_other_never_share_a_database(engine: EngineUnderTest) {
    let env = env_with_pool(engine, 3, Faults::none()).await;
    fill(&env, 3).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refiller = {
        let orchestrator = Orchestrator::new(env.app.runner.clone());
        let policy = policy(&env);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut passes = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for p in orchestrator.refill_pools_once(&policy).await.unwrap() {
                    assert!(p.errors.is_empty(), "{p:?}");
                }
                passes += 1;
            }
            passes
        })
    };
    let slugs: Vec<String> = (0..8).map(|i| format!("pool-race-{i}")).collect();
    let mut ids = Vec::new();
    for slug in &slugs {
        ids.push(env.start_onboard(slug).await);
    }
    let mut taken = HashSet::new();
    let mut hits = 0;
    for id in ids {
        let op = env.wait(id).await;
        assert_eq!(op.state, OperationState::Succeeded, "{op:#?}");
        if let Some(p) = pooled_of(&op) {
            hits += 1;
            assert!(taken.insert(p.clone()), "{p} was taken twice");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(refiller.await.unwrap() > 0);
    assert!(hits >= 3, "at least the pool's three were claimed ({hits})");
    for slug in &slugs {
        assert!(
            database_exists(&env, &env.names(slug).database).await,
            "{slug}"
        );
    }
    for p in &taken {
        assert!(
            !database_exists(&env, p).await,
            "{p} still has its pooled name"
        );
    }
    let left = rows(&env).await;
    assert!(
        left.iter()
            .all(|r| r.state == PoolState::Ready && r.tenant_id.is_none()),
        "{left:?}"
    );
    assert_eq!(left.len(), 3, "{left:?}");
}

async fn a_failure_at_every_point_of_a_claim_leaves_nothing_behind(engine: EngineUnderTest) {
    for point in ["claimed", "adopted"] {
        let env = env_with_pool(
            engine.clone(),
            1,
            Faults::parse(&format!("fail:pool:{point}")).unwrap(),
        )
        .await;
        fill(&env, 1).await;
        let pooled = ready(&env).await[0].database.clone();
        let slug = format!("pool-fail-{point}");
        let id = env.start_onboard(&slug).await;
        let op = env.wait(id).await;
        assert_eq!(op.state, OperationState::RolledBack, "{point}: {op:#?}");
        let snapshot = env.snapshot(&[&slug]).await;
        assert!(snapshot.databases.is_empty(), "{point}: {snapshot:?}");
        assert!(snapshot.principals.is_empty(), "{point}: {snapshot:?}");
        assert!(snapshot.live_tenants.is_empty(), "{point}: {snapshot:?}");
        assert!(
            !database_exists(&env, &pooled).await,
            "{point}: {pooled} left behind"
        );
        assert!(
            rows(&env)
                .await
                .iter()
                .all(|r| r.state != PoolState::Claimed),
            "{point}: {:?}",
            rows(&env).await
        );
    }
}

async fn a_claim_whose_onboarding_ended_is_dropped_by_the_next_pass(engine: EngineUnderTest) {
    let env = env_with_pool(engine, 1, Faults::none()).await;
    env.onboard("pool-ended").await;
    fill(&env, 1).await;
    let pooled = ready(&env).await[0].clone();
    // A claim left behind by an onboarding that has ended (its rename and its undo both
    // failed, say): claimed for a tenant with no operation running.
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&"pool-ended".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let claimed = env
        .app
        .catalog
        .pool_claim("default", &pooled.generation, tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((claimed.id, claimed.state), (pooled.id, PoolState::Claimed));
    Orchestrator::new(env.app.runner.clone())
        .refill_pools_once(&policy(&env))
        .await
        .unwrap();
    assert!(
        !database_exists(&env, &pooled.database).await,
        "{} left",
        pooled.database
    );
    assert!(env
        .app
        .catalog
        .pool_claim_of(tenant.id)
        .await
        .unwrap()
        .is_none());
    // The tenant's own database is not touched.
    assert!(database_exists(&env, &env.names("pool-ended").database).await);
}

/// The real binary, killed right after a claim, right after the rename, and right after a
/// pooled database's creation; started again, it finishes the onboarding or drops the orphan.
#[tokio::test]
async fn a_kill_during_a_claim_or_a_refill_leaves_no_orphan() {
    let env = env_with_pool(EngineUnderTest::Postgres, 1, Faults::none()).await;
    let size = [
        ("TENANT_CP_WARM_POOL_SIZE", "1"),
        ("TENANT_CP_WARM_POOL_BUSY_OPERATIONS", "1000"),
    ];
    for point in ["claimed", "adopted"] {
        fill(&env, 1).await;
        let pooled = ready(&env).await[0].database.clone();
        let slug = format!("pool-kill-{point}");
        let node = format!("pool-kill-{point}");
        let server = RealServer::spawn(&env, &node, &format!("crash:pool:{point}"), &size).await;
        let id = server
            .start(
                &env,
                "/v1/tenants",
                json!({"slug": slug, "display_name": slug}),
            )
            .await;
        server.wait_killed(&env, Some(id)).await;
        let claim = rows(&env).await.into_iter().find(|r| r.database == pooled);
        assert!(
            claim
                .as_ref()
                .is_some_and(|r| r.state == PoolState::Claimed),
            "{point}: {claim:?}"
        );
        let _again = RealServer::spawn(&env, &node, "", &size).await;
        let op = env.wait(id).await;
        assert_eq!(op.state, OperationState::Succeeded, "{point}: {op:#?}");
        assert_eq!(pooled_of(&op).as_deref(), Some(pooled.as_str()), "{point}");
        assert!(!database_exists(&env, &pooled).await, "{point}");
        assert!(
            database_exists(&env, &env.names(&slug).database).await,
            "{point}"
        );
        assert!(
            rows(&env).await.iter().all(|r| r.database != pooled),
            "{point}: {:?}",
            rows(&env).await
        );
        evidence_is_clean(&env, &slug).await;
    }

    // A refill killed between the creation and `ready`: the next start drops what it left.
    let node = "pool-kill-refill";
    let before: HashSet<String> = rows(&env).await.into_iter().map(|r| r.database).collect();
    let mut child = std::process::Command::new(tcp_tests::server_binary())
        .envs(env.server_env())
        .env(
            "TENANT_CP_LISTEN",
            format!("127.0.0.1:{}", tcp_tests::free_port()),
        )
        .env("TENANT_CP_DATA_DIR", env.data_dir())
        .env("TENANT_CP_NODE_ID", node)
        .env("TENANT_CP_ROTATION_SCHEDULER", "false")
        .env("TENANT_CP_FAULTS", "crash:pool:created")
        .env("TENANT_CP_LOG", "warn")
        .env("TENANT_CP_WARM_POOL_SIZE", "3")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the injected crash did not happen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let orphans: Vec<PooledDatabase> = rows(&env)
        .await
        .into_iter()
        .filter(|r| r.node == node && r.state == PoolState::Creating)
        .collect();
    assert!(!orphans.is_empty(), "{:?}", rows(&env).await);
    assert!(database_exists(&env, &orphans[0].database).await);
    let _again = RealServer::spawn(&env, node, "", &[("TENANT_CP_WARM_POOL_SIZE", "3")]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = rows(&env).await;
        let settled = now.iter().all(|r| r.state == PoolState::Ready) && now.len() == 3;
        if settled {
            break;
        }
        assert!(Instant::now() < deadline, "{now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for o in &orphans {
        assert!(!before.contains(&o.database));
        assert!(
            !database_exists(&env, &o.database).await,
            "{} is an orphan",
            o.database
        );
    }
}

/// Removing a server drops its pooled databases first.
#[tokio::test]
async fn removing_a_server_empties_its_pool() {
    let env = env_with_pool(EngineUnderTest::Postgres, 0, Faults::none()).await;
    let second = tcp_tests::PgCluster::second();
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            "/v1/servers",
            Some(
                json!({"name": "pooled", "engine": "postgres", "admin_url": second.admin_url,
                        "capacity": 10, "pool_size": 2}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["pool"]["size"], json!(2), "{body}");
    let orchestrator = Orchestrator::new(env.app.runner.clone());
    let deadline = Instant::now() + Duration::from_secs(120);
    let pooled = loop {
        orchestrator.refill_pools_once(&policy(&env)).await.unwrap();
        let rows = env
            .app
            .catalog
            .pool_databases(Some("pooled"))
            .await
            .unwrap();
        if rows.iter().filter(|r| r.state == PoolState::Ready).count() == 2 {
            break rows;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
    };
    let (status, body) = env
        .call_as("admin", Method::DELETE, "/v1/servers/pooled", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(env
        .app
        .catalog
        .pool_databases(Some("pooled"))
        .await
        .unwrap()
        .is_empty());
    let admin = tokio_postgres::connect(&second.admin_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(admin.1);
    for r in pooled {
        let left = admin
            .0
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&r.database],
            )
            .await
            .unwrap();
        assert!(left.is_none(), "{} left on the removed server", r.database);
    }
}
