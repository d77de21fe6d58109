//! Issue 17: an `azure_sql` server's capacity comes from its elastic pool. The production
//! `ArmClient` (`secrets::arm`) reads the pool's SKU and the region's SQL capabilities through
//! azure_core's pipeline from an HTTPS double of Azure Resource Manager (`tcp_tests::arm`);
//! the control plane's registration takes the pool's database limit less the template, refuses
//! a capacity that does not fit, and names the missing role when Resource Manager refuses.

#![allow(clippy::unwrap_used)]

use axum::http::{Method, StatusCode};
use secrets::arm::{ArmError, ElasticPoolId};
use serde_json::json;
use tcp_tests::arm::{ArmDouble, PoolSku};
use tcp_tests::{EngineUnderTest, TestEnv};

fn gp(capacity: i64) -> PoolSku {
    PoolSku {
        name: "GP_Gen5",
        tier: "GeneralPurpose",
        family: Some("Gen5"),
        capacity,
    }
}

#[tokio::test]
async fn a_pools_database_limit_is_read_from_resource_manager() {
    let double = ArmDouble::start().await;
    let vcore = double.add_pool("tcp-sql", "tenants", "West Europe", gp(2));
    let dtu = double.add_pool(
        "tcp-sql",
        "legacy",
        "westeurope",
        PoolSku {
            name: "StandardPool",
            tier: "Standard",
            family: None,
            capacity: 200,
        },
    );
    let client = double.client();
    let limit = client
        .pool_limit(&ElasticPoolId::parse(&vcore).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (
            limit.sku.as_str(),
            limit.tier.as_str(),
            limit.capacity,
            limit.max_databases
        ),
        ("GP_Gen5", "GeneralPurpose", 2, 100)
    );
    // "West Europe" (a display name) is asked for as the region's name.
    assert_eq!(limit.location, "westeurope");
    let limit = client
        .pool_limit(&ElasticPoolId::parse(&dtu).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (limit.sku.as_str(), limit.max_databases),
        ("StandardPool", 500)
    );
    // Two reads each: the pool, then the region's capabilities.
    let requests = double.requests();
    assert_eq!(requests.len(), 4, "{requests:?}");
    assert!(requests[1]
        .path
        .ends_with("/providers/Microsoft.Sql/locations/westeurope/capabilities"));
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
}

#[tokio::test]
async fn refusals_name_the_role_and_outages_are_retried() {
    let double = ArmDouble::start().await;
    let id =
        ElasticPoolId::parse(&double.add_pool("tcp-sql", "tenants", "westeurope", gp(4))).unwrap();
    let client = double.client();

    // Two 503s: retried by the pipeline, then answered.
    double.fail(2);
    assert_eq!(client.pool_limit(&id).await.unwrap().max_databases, 200);
    let busy = double.requests().iter().filter(|r| r.status == 503).count();
    assert_eq!(busy, 2);
    // Longer than the retries: unavailable, a reason to try again.
    double.fail(50);
    let err = client.pool_limit(&id).await.unwrap_err();
    assert!(matches!(err, ArmError::Unavailable(_)), "{err}");
    double.fail(0);

    double.deny(true, false);
    let err = client.pool_limit(&id).await.unwrap_err();
    assert!(
        matches!(&err, ArmError::Forbidden(m) if m.contains("Reader") && m.contains("403 AuthorizationFailed")),
        "{err}"
    );
    double.deny(false, true);
    let err = client.pool_limit(&id).await.unwrap_err();
    assert!(
        matches!(&err, ArmError::Forbidden(m) if m.contains("Microsoft.Sql/locations/capabilities/read")),
        "{err}"
    );
    double.deny(false, false);

    let missing = ElasticPoolId::parse(&id.to_string().replace("tenants", "gone")).unwrap();
    let err = client.pool_limit(&missing).await.unwrap_err();
    assert!(
        matches!(&err, ArmError::NotFound(m) if m.contains("elasticPools/gone")),
        "{err}"
    );

    // A SKU the region does not list: said, not guessed.
    let odd =
        ElasticPoolId::parse(&double.add_pool("tcp-sql", "odd", "westeurope", gp(3))).unwrap();
    let err = client.pool_limit(&odd).await.unwrap_err();
    assert!(
        matches!(&err, ArmError::Unexpected(m) if m.contains("GP_Gen5") && m.contains("by hand")),
        "{err}"
    );

    // Another token: refused (401: the credential, not a role), and the error carries no token.
    let mut options = double.options();
    options.credential = secrets::AzureCredential::StaticTokenForTests {
        token: secrets::SecretValue::new("not-the-token"),
    };
    let err = secrets::arm::ArmClient::new(options)
        .unwrap()
        .pool_limit(&id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ArmError::Credential(m) if m.contains("static_token_for_tests")),
        "{err}"
    );
    assert!(!format!("{err:?}").contains("not-the-token"), "{err:?}");
}

/// Registration through the API: the capacity is the pool's limit less the template when none
/// is given, and one that does not fit is refused before anything is stored or any SQL runs.
#[tokio::test]
async fn registering_an_azure_sql_server_takes_its_capacity_from_the_pool() {
    let double = ArmDouble::start().await;
    let pool = double.add_pool("tcp-sql", "tenants", "westeurope", gp(2));
    let env = TestEnv::with(EngineUnderTest::Postgres, workflows::Faults::none(), |c| {
        double.configure(c);
    })
    .await;
    // Nothing listens on port 9: a registration that gets past the pool fails at the login.
    let admin_url = "sqlserver://admin:pw@tcp-sql.database.localhost:9";
    let cases = [
        (
            json!({"name": "az-1", "engine": "azure_sql", "capacity": 150,
                   "admin_url": admin_url, "elastic_pool": pool}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "holds at most 100 databases and one is the tenant template, so capacity can be at most 99",
        ),
        (
            json!({"name": "az-1", "engine": "azure_sql", "admin_url": admin_url,
                   "elastic_pool": pool.replace("tcp-sql", "other-sql")}),
            StatusCode::BAD_REQUEST,
            "names a pool of logical server other-sql",
        ),
        (
            json!({"name": "az-1", "engine": "azure_sql", "admin_url": admin_url,
                   "elastic_pool": "tenants"}),
            StatusCode::BAD_REQUEST,
            "capacity is required",
        ),
        (
            json!({"name": "az-1", "engine": "azure_sql", "admin_url": admin_url,
                   "elastic_pool": "/subscriptions/x/resourceGroups/g/providers/Microsoft.Sql/servers/tcp-sql"}),
            StatusCode::BAD_REQUEST,
            "an elastic pool id is",
        ),
        (
            json!({"name": "az-1", "engine": "azure_sql", "admin_url": admin_url,
                   "elastic_pool": pool.replace("tenants", "gone")}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "does not exist",
        ),
        // Within the pool's limit (given, or taken from it): past the pool, refused at the login.
        (
            json!({"name": "az-1", "engine": "azure_sql", "capacity": 99,
                   "admin_url": admin_url, "elastic_pool": pool}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tcp-sql.database.localhost:9",
        ),
        (
            json!({"name": "az-1", "engine": "azure_sql", "admin_url": admin_url,
                   "elastic_pool": pool}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "tcp-sql.database.localhost:9",
        ),
    ];
    let register = |body: serde_json::Value| {
        let env = &env;
        async move {
            env.call_as("admin", Method::POST, "/v1/servers", Some(body))
                .await
        }
    };
    for (body, status, says) in cases {
        let (got, problem) = register(body.clone()).await;
        assert_eq!(got, status, "{body}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains(says),
            "{body}: {problem}"
        );
    }
    // The pool was read for each case that named it by id and got that far.
    let reads = double
        .requests()
        .iter()
        .filter(|r| r.path.contains("/elasticPools/"))
        .count();
    assert_eq!(reads, 4, "{:?}", double.requests());

    // Resource Manager refusing: the detail names the action to grant.
    let by_id = json!({"name": "az-1", "engine": "azure_sql", "admin_url": admin_url,
                       "elastic_pool": pool});
    double.deny(false, true);
    let (got, problem) = register(by_id.clone()).await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Microsoft.Sql/locations/capabilities/read"),
        "{problem}"
    );
    // Resource Manager down: try again later.
    double.deny(false, false);
    double.fail(1000);
    let (got, problem) = register(by_id).await;
    assert_eq!(got, StatusCode::SERVICE_UNAVAILABLE, "{problem}");

    // Nothing was registered by any of it.
    let (_, list) = env.call_as("admin", Method::GET, "/v1/servers", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// A pool scaled after registration: `PUT /v1/servers/{name}/capacity` without a capacity reads
/// its limit again; with one, it must fit.
#[tokio::test]
async fn a_scaled_pool_is_read_again_on_request() {
    let double = ArmDouble::start().await;
    let pool = double.add_pool("tcp-sql", "tenants", "westeurope", gp(2));
    let env = TestEnv::with(EngineUnderTest::Postgres, workflows::Faults::none(), |c| {
        double.configure(c);
    })
    .await;
    // Registered as the API would (an Azure SQL server cannot run here): by its pool's id.
    env.app
        .catalog
        .create_server(
            catalog::NewServer {
                name: "az-1".into(),
                engine: "azure_sql".into(),
                elastic_pool: Some("tenants".into()),
                elastic_pool_id: Some(pool.clone()),
                admin_secret: "server-az-1-admin".into(),
                host: "tcp-sql.database.windows.net".into(),
                port: 1433,
                capacity: 99,
                labels: Default::default(),
                pool_size: None,
            },
            "test",
        )
        .await
        .unwrap();
    let set = |body: serde_json::Value| {
        let env = &env;
        async move {
            env.call_as(
                "admin",
                Method::PUT,
                "/v1/servers/az-1/capacity",
                Some(body),
            )
            .await
        }
    };
    let (status, shown) = set(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(
        (
            shown["capacity"].as_i64(),
            shown["elastic_pool_id"].as_str()
        ),
        (Some(99), Some(pool.as_str()))
    );
    // Scaled to 4 vCores: 200 databases.
    double.add_pool("tcp-sql", "tenants", "westeurope", gp(4));
    let (status, shown) = set(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["capacity"], 199);
    let (status, problem) = set(json!({"capacity": 250})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("at most 199"),
        "{problem}"
    );
    let (status, shown) = set(json!({"capacity": 150})).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["capacity"], 150);
    // Lowering asks nothing of Resource Manager (down here); raising or re-reading does.
    double.fail(1000);
    let before = double.requests().len();
    let (status, shown) = set(json!({"capacity": 120})).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["capacity"], 120);
    assert_eq!(double.requests().len(), before);
    let (status, problem) = set(json!({"capacity": 130})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    double.fail(0);
    // Each change is audited with what it was.
    let changes = env
        .app
        .catalog
        .audit_log(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "server.capacity")
        .count();
    assert_eq!(changes, 3);
}
