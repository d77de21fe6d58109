//! A fleet of database servers: two real PostgreSQL clusters (the harness starts both), one
//! registered from the configuration as `default`, the other through `POST /v1/servers`.
//! Placement spreads tenants and honours engine, labels, draining and capacity; a full fleet
//! answers 503; a stopped server touches only its own tenants, whose operations wait and
//! converge once it is back. Where `MSSQL_URL` names a SQL Server, a mixed fleet places by
//! engine.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use std::time::{Duration, Instant};

use api_types::OperationState;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tcp_tests::{EngineUnderTest, PgCluster, TestEnv};
use workflows::Orchestrator;

tcp_tests::conformance!(azure_sql_servers_keep_their_elastic_pool);

async fn admin(
    env: &TestEnv,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    env.call_as("admin", method, path, body).await
}

async fn register(env: &TestEnv, name: &str, url: &str, capacity: i32, labels: Value) -> Value {
    let (status, body) = admin(
        env,
        Method::POST,
        "/v1/servers",
        Some(json!({"name": name, "engine": "postgres", "admin_url": url,
                    "capacity": capacity, "labels": labels})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Starts onboarding with a placement; returns (status, body).
async fn onboard(env: &TestEnv, slug: &str, placement: Option<Value>) -> (StatusCode, Value) {
    let mut body = json!({"slug": slug, "display_name": slug});
    if let Some(p) = placement {
        body["placement"] = p;
    }
    env.call(Method::POST, "/v1/tenants", Some(body)).await
}

/// Onboards and waits; returns the server the tenant was placed on.
async fn onboarded(env: &TestEnv, slug: &str, placement: Option<Value>) -> String {
    let (status, body) = onboard(env, slug, placement).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{slug}: {body}");
    let id = body["operation"]["id"].as_str().unwrap().parse().unwrap();
    let op = env.wait(id).await;
    assert_eq!(op.state, OperationState::Succeeded, "{slug}: {op:#?}");
    assert!(
        op.params["placement"]["reason"]
            .as_str()
            .unwrap()
            .contains("least loaded"),
        "{:?}",
        op.params
    );
    let (_, tenant) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    tenant["server"].as_str().unwrap().to_owned()
}

async fn server(env: &TestEnv, name: &str) -> Value {
    let (status, body) = admin(env, Method::GET, &format!("/v1/servers/{name}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn placement_spreads_tenants_and_honours_labels_draining_and_capacity() {
    let env = TestEnv::with(EngineUnderTest::Postgres, workflows::Faults::none(), |c| {
        c.server_capacity = 3;
        c.server_labels = [("region".to_owned(), "a".to_owned())].into();
    })
    .await;
    let second = PgCluster::second();
    // Bad registrations: nothing is stored.
    for (body, status, says) in [
        (
            json!({"name": "pg-bad", "engine": "postgres", "capacity": 3,
                   "admin_url": second.admin_url.replace(&second.password, "wrong")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "password",
        ),
        (
            json!({"name": "pg-bad", "engine": "postgres", "capacity": 3, "admin_url": "nonsense"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin_url",
        ),
        (
            json!({"name": "Bad Name", "engine": "postgres", "capacity": 3, "admin_url": second.admin_url}),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            json!({"name": "default", "engine": "postgres", "capacity": 3, "admin_url": second.admin_url}),
            StatusCode::CONFLICT,
            "already registered",
        ),
        // Azure SQL Database: the elastic pool is required there and refused elsewhere.
        (
            json!({"name": "az-1", "engine": "azure_sql", "capacity": 3,
                   "admin_url": "sqlserver://admin:pw@127.0.0.1:9"}),
            StatusCode::BAD_REQUEST,
            "needs elastic_pool",
        ),
        (
            json!({"name": "pg-bad", "engine": "postgres", "capacity": 3,
                   "admin_url": second.admin_url, "elastic_pool": "pool-1"}),
            StatusCode::BAD_REQUEST,
            "azure_sql servers only",
        ),
        // Checked like any other before anything is stored, and refused at once when nothing
        // answers there (not after the pool's 30 s).
        (
            json!({"name": "az-1", "engine": "azure_sql", "capacity": 3,
                   "admin_url": "sqlserver://admin:pw@127.0.0.1:9", "elastic_pool": "pool-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "127.0.0.1:9",
        ),
    ] {
        let (got, problem) = admin(&env, Method::POST, "/v1/servers", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{body}: {problem}"
        );
        // The admin URL is never echoed.
        assert!(!problem.to_string().contains(&second.password), "{problem}");
    }
    let (_, list) = admin(&env, Method::GET, "/v1/servers", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    let registered = register(&env, "pg-2", &second.admin_url, 3, json!({"region": "b"})).await;
    assert_eq!(registered["tenants"], 0);
    assert_eq!(registered["state"], "active");
    assert!(!registered.to_string().contains(&second.password));

    // Unconstrained tenants spread (least loaded first, name breaking ties).
    let a = onboarded(&env, "fleet-a", None).await;
    let b = onboarded(&env, "fleet-b", None).await;
    assert_eq!((a.as_str(), b.as_str()), ("default", "pg-2"));
    // Labels are honoured.
    assert_eq!(
        onboarded(&env, "fleet-c", Some(json!({"labels": {"region": "b"}}))).await,
        "pg-2"
    );
    assert_eq!(server(&env, "pg-2").await["tenants"], 2);
    // A draining server gets none, and says so when it is the only match.
    let (status, _) = admin(&env, Method::POST, "/v1/servers/pg-2/drain", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(onboarded(&env, "fleet-d", None).await, "default");
    let (status, problem) =
        onboard(&env, "fleet-e", Some(json!({"labels": {"region": "b"}}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("pg-2 is draining"),
        "{problem}"
    );
    admin(&env, Method::POST, "/v1/servers/pg-2/undrain", None).await;
    // Full: pg-2 takes one more, then the fleet (capacity 3 each) is full.
    assert_eq!(
        onboarded(&env, "fleet-f", Some(json!({"labels": {"region": "b"}}))).await,
        "pg-2"
    );
    assert_eq!(onboarded(&env, "fleet-g", None).await, "default");
    let (status, problem) = onboard(&env, "fleet-h", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("default is full (3 of 3)") && detail.contains("pg-2 is full (3 of 3)"),
        "{detail}"
    );
    let (status, problem) = onboard(&env, "fleet-h", Some(json!({"engine": "sqlserver"}))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("matches engine sqlserver"),
        "{problem}"
    );
    // Capacity can change: never below the tenants a server holds; a raised one takes the next.
    for (name, body, status, says) in [
        (
            "pg-2",
            json!({}),
            StatusCode::BAD_REQUEST,
            "capacity is required",
        ),
        (
            "pg-2",
            json!({"capacity": 0}),
            StatusCode::BAD_REQUEST,
            "1 to 100000",
        ),
        (
            "pg-2",
            json!({"capacity": 2}),
            StatusCode::CONFLICT,
            "holds 3 tenant(s)",
        ),
        (
            "pg-9",
            json!({"capacity": 2}),
            StatusCode::NOT_FOUND,
            "pg-9",
        ),
    ] {
        let (got, problem) = admin(
            &env,
            Method::PUT,
            &format!("/v1/servers/{name}/capacity"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{body}: {problem}"
        );
    }
    let (status, raised) = admin(
        &env,
        Method::PUT,
        "/v1/servers/pg-2/capacity",
        Some(json!({"capacity": 4})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{raised}");
    assert_eq!(raised["capacity"], 4);
    assert_eq!(onboarded(&env, "fleet-h", None).await, "pg-2");
    // A server with tenants cannot be removed; an empty one can, and its secret goes too.
    let (status, problem) = admin(&env, Method::DELETE, "/v1/servers/pg-2", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    for slug in ["fleet-b", "fleet-c", "fleet-f", "fleet-h"] {
        env.offboard(slug).await;
    }
    let (status, body) = admin(&env, Method::DELETE, "/v1/servers/pg-2", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret =
        secrets::SecretName::new(body["admin_secret"].as_str().unwrap_or("server-pg-2-admin"))
            .unwrap();
    assert!(env.app.secrets.get(&secret, None).await.is_err());
    for slug in ["fleet-a", "fleet-d", "fleet-g"] {
        env.offboard(slug).await;
    }
}

#[tokio::test]
async fn a_stopped_server_touches_only_its_own_tenants_which_converge_once_it_is_back() {
    let env = TestEnv::with(EngineUnderTest::Postgres, workflows::Faults::none(), |c| {
        c.server_labels = [("region".to_owned(), "a".to_owned())].into();
        c.investigation_timeout_ms = 3000;
    })
    .await;
    let second = PgCluster::second();
    register(
        &env,
        "pg-down",
        &second.admin_url,
        100,
        json!({"region": "b"}),
    )
    .await;
    let here = onboarded(&env, "up-tenant", Some(json!({"labels": {"region": "a"}}))).await;
    let there = onboarded(
        &env,
        "down-tenant",
        Some(json!({"labels": {"region": "b"}})),
    )
    .await;
    assert_eq!((here.as_str(), there.as_str()), ("default", "pg-down"));

    second.stop();
    let orchestrator = Orchestrator::new(env.app.runner.clone());
    let health = orchestrator.check_servers_once().await.unwrap();
    assert!(
        health.contains(&("pg-down".to_owned(), false)),
        "{health:?}"
    );
    assert!(health.contains(&("default".to_owned(), true)), "{health:?}");
    let down = server(&env, "pg-down").await;
    assert_eq!(down["state"], "unreachable", "{down}");
    assert!(down["last_health_check"]["error"].is_string(), "{down}");

    // The other server's tenants work as before, and new tenants avoid the stopped one.
    assert_eq!(onboarded(&env, "new-tenant", None).await, "default");
    env.rotate("up-tenant", "scheduled").await;
    let (status, body) = env
        .call_as(
            "support",
            Method::POST,
            "/v1/tenants/up-tenant/investigations",
            Some(json!({"ticket": "INC-1", "reason": "fleet", "sql": "SELECT 1 AS one", "max_rows": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its own tenants: an investigation is refused clearly; a rotation waits, saying why.
    let (status, problem) = env
        .call_as(
            "support",
            Method::POST,
            "/v1/tenants/down-tenant/investigations",
            Some(json!({"ticket": "INC-2", "reason": "fleet", "sql": "SELECT 1 AS one", "max_rows": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("pg-down"),
        "{problem}"
    );
    let id = env.start_rotate("down-tenant", "scheduled").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let op = env.app.catalog.operation(id).await.unwrap().unwrap();
        assert!(
            !op.state.is_terminal(),
            "the rotation ended while its server was down: {op:#?}"
        );
        if op
            .steps
            .iter()
            .any(|s| s.error.as_deref().is_some_and(|e| e.contains("waiting")))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no step says it waits: {op:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.restart();
    let op = env.wait(id).await;
    assert_eq!(op.state, OperationState::Succeeded, "{op:#?}");
    orchestrator.check_servers_once().await.unwrap();
    assert_eq!(server(&env, "pg-down").await["state"], "active");
    for slug in ["up-tenant", "down-tenant", "new-tenant"] {
        env.offboard(slug).await;
    }
    let (status, body) = admin(&env, Method::DELETE, "/v1/servers/pg-down", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A fleet of PostgreSQL (the configured server) and the SQL Server named by `MSSQL_URL`:
/// placement by engine puts each tenant on its engine's server.
#[tokio::test]
async fn a_mixed_fleet_places_by_engine() {
    let Some(EngineUnderTest::SqlServer { url }) = EngineUnderTest::sqlserver() else {
        return;
    };
    // An Azure SQL run registers its server as azure_sql, which this test does not.
    if tcp_tests::env::azure_sql_pool().is_some() {
        return;
    }
    let env = TestEnv::new(EngineUnderTest::Postgres).await;
    let (status, body) = admin(
        &env,
        Method::POST,
        "/v1/servers",
        Some(json!({"name": "mssql", "engine": "sqlserver", "admin_url": url, "capacity": 10})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        onboarded(&env, "mixed-ms", Some(json!({"engine": "sqlserver"}))).await,
        "mssql"
    );
    assert_eq!(
        onboarded(&env, "mixed-pg", Some(json!({"engine": "postgres"}))).await,
        "default"
    );
    let (_, t) = env.call(Method::GET, "/v1/tenants/mixed-ms", None).await;
    assert_eq!(t["engine"], "sqlserver");
    env.offboard("mixed-ms").await;
    env.offboard("mixed-pg").await;
    admin(&env, Method::DELETE, "/v1/servers/mssql", None).await;
}

/// An Azure SQL Database server keeps its elastic pool (and the pool's resource id) in the
/// catalog (either backend), and the catalog itself refuses an `azure_sql` server without one,
/// a pool on another engine, or a pool id without a pool; its capacity can be changed.
async fn azure_sql_servers_keep_their_elastic_pool(engine: EngineUnderTest) {
    let env = TestEnv::new(engine).await;
    let server = |name: &str, engine: &str, pool: Option<&str>| catalog::NewServer {
        name: name.to_owned(),
        engine: engine.to_owned(),
        elastic_pool: pool.map(str::to_owned),
        elastic_pool_id: None,
        admin_secret: format!("server-{name}-admin"),
        host: format!("{name}.database.windows.net"),
        port: 1433,
        capacity: 100,
        labels: Default::default(),
        pool_size: None,
    };
    let pool_id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql/servers/az-1/elasticPools/tenant-pool-1";
    let record = env
        .app
        .catalog
        .create_server(
            catalog::NewServer {
                elastic_pool_id: Some(pool_id.to_owned()),
                ..server("az-1", "azure_sql", Some("tenant-pool-1"))
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(record.engine, "azure_sql");
    assert_eq!(record.elastic_pool.as_deref(), Some("tenant-pool-1"));
    assert_eq!(record.elastic_pool_id.as_deref(), Some(pool_id));
    let record = env
        .app
        .catalog
        .set_server_capacity("az-1", 42, "test")
        .await
        .unwrap();
    assert_eq!(record.capacity, 42);
    let missing = env
        .app
        .catalog
        .set_server_capacity("az-9", 42, "test")
        .await;
    assert!(
        matches!(missing, Err(catalog::CatalogError::NotFound { .. })),
        "{missing:?}"
    );
    let (status, shown) = admin(&env, Method::GET, "/v1/servers/az-1", None).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["engine"], "azure_sql");
    assert_eq!(shown["elastic_pool"], "tenant-pool-1");
    assert_eq!(shown["elastic_pool_id"], pool_id);
    let refused = env
        .app
        .catalog
        .create_server(
            catalog::NewServer {
                elastic_pool_id: Some(pool_id.to_owned()),
                ..server("ms-3", "sqlserver", None)
            },
            "test",
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    for (name, engine, pool) in [
        ("az-2", "azure_sql", None),
        ("ms-2", "sqlserver", Some("tenant-pool-1")),
    ] {
        let refused = env
            .app
            .catalog
            .create_server(server(name, engine, pool), "test")
            .await;
        assert!(refused.is_err(), "{name}: {refused:?}");
        assert!(env.app.catalog.server(name).await.unwrap().is_none());
    }
    env.app.catalog.delete_server("az-1", "test").await.unwrap();
}
