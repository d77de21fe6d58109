//! Bursts through the API: many clients at once get answers, never a 5xx, and every operation
//! they start converges (issue 15: a burst of eight clients starved the catalog's connection
//! pool, and a request waiting for a connection answered 500 after 10 s).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

tcp_tests::conformance!(
    sixteen_clients_onboarding_at_once_get_no_5xx_and_all_converge,
    a_new_operation_is_its_creators_until_its_lease_ends
);

const CLIENTS: usize = 16;

async fn sixteen_clients_onboarding_at_once_get_no_5xx_and_all_converge(engine: EngineUnderTest) {
    // Sixteen clients polling share one operator subject: the rate limits (tested elsewhere)
    // are raised so that only the catalog's behaviour under the burst is under test.
    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.rate_limit_per_subject = 100_000;
        c.rate_limit_burst_per_subject = 100_000;
        c.rate_limit_per_ip = 100_000;
        c.rate_limit_burst_per_ip = 100_000;
    })
    .await;
    let slugs: Vec<String> = (0..CLIENTS).map(|i| format!("burst-{i:02}")).collect();
    // Each client onboards its tenant and polls it, all at once.
    let answers = futures::future::join_all(slugs.iter().map(|slug| {
        let env = &env;
        async move {
            let (status, body) = env
                .call(
                    Method::POST,
                    "/v1/tenants",
                    Some(json!({"slug": slug, "display_name": slug})),
                )
                .await;
            let mut seen = vec![(status, body.to_string())];
            if status == StatusCode::ACCEPTED {
                let id = body["operation"]["id"].as_str().unwrap().to_owned();
                for _ in 0..600 {
                    let (status, op) = env
                        .call(Method::GET, &format!("/v1/operations/{id}"), None)
                        .await;
                    let done = matches!(
                        op["state"].as_str(),
                        Some("succeeded" | "failed" | "rolled_back")
                    );
                    seen.push((status, op["state"].to_string()));
                    if done || status.is_server_error() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            (slug.clone(), seen)
        }
    }))
    .await;
    for (slug, seen) in &answers {
        let (first, body) = &seen[0];
        assert_eq!(*first, StatusCode::ACCEPTED, "{slug}: {body}");
        for (status, body) in seen {
            assert!(!status.is_server_error(), "{slug}: {status} {body}");
        }
        assert_eq!(seen.last().unwrap().1, "\"succeeded\"", "{slug}: {seen:?}");
    }
    // And the catalog agrees: every tenant active.
    let (status, list) = env.call(Method::GET, "/v1/tenants", None).await;
    assert_eq!(status, StatusCode::OK);
    let active = list["tenants"]
        .as_array()
        .or_else(|| list.as_array())
        .unwrap()
        .iter()
        .filter(|t| {
            t["slug"].as_str().is_some_and(|s| s.starts_with("burst-")) && t["state"] == "active"
        })
        .count();
    assert_eq!(active, CLIENTS, "{list}");
    for slug in &slugs {
        env.offboard(slug).await;
    }
}

/// With `max_operations_per_server = 1`, onboardings started together run their steps one
/// after another: at no moment has more than one of them a step started and not ended. Each
/// look is one catalog statement (one snapshot), so an operation ending and the next starting
/// between two reads cannot look like two at once.
#[tokio::test]
async fn a_server_runs_at_most_its_limit_of_operations_at_once() {
    let env = tcp_tests::TestEnv::with(
        tcp_tests::EngineUnderTest::Postgres,
        workflows::Faults::none(),
        |c| c.max_operations_per_server = 1,
    )
    .await;
    let catalog = tcp_tests::env::connect(env.config.catalog_url.as_deref().unwrap())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(env.start_onboard(&format!("turn-{i}")).await);
    }
    let mut most = 0;
    loop {
        let row = catalog
            .query_one(
                "SELECT count(*) FILTER (WHERE o.state IN ('pending', 'running') AND EXISTS ( \
                        SELECT 1 FROM operation_steps s \
                         WHERE s.operation_id = o.id AND s.state <> 'pending')), \
                        count(*) FILTER (WHERE o.state NOT IN ('pending', 'running')) \
                   FROM operations o WHERE o.id = ANY($1)",
                &[&ids],
            )
            .await
            .unwrap();
        let (stepping, done): (i64, i64) = (row.get(0), row.get(1));
        most = most.max(stepping);
        if done == ids.len() as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert_eq!(most, 1, "operations ran at once on one server");
    for id in ids {
        assert_eq!(
            env.wait(id).await.state,
            api_types::OperationState::Succeeded
        );
    }
}

/// With `max_connections_per_server = 6`, ten onboardings at once (eight may run steps) never
/// hold more than six connections to the server at any look, and all of them succeed: a
/// connection waits for a place instead of opening beyond the cap. Each look is one
/// `pg_stat_activity` read; the catalog's own database and this look are left out.
#[tokio::test]
async fn connections_to_a_server_stay_under_the_cap() {
    const CAP: i64 = 6;
    let env = tcp_tests::TestEnv::with(
        tcp_tests::EngineUnderTest::Postgres,
        workflows::Faults::none(),
        |c| {
            c.max_connections_per_server = CAP as u32;
            c.max_operations_per_server = 8;
        },
    )
    .await;
    let catalog_url = env.config.catalog_url.clone().unwrap();
    let catalog_db = catalog_url.rsplit('/').next().unwrap().to_owned();
    let admin = tcp_tests::env::connect(env.config.postgres_admin_url.as_deref().unwrap())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(env.start_onboard(&format!("capped-{i}")).await);
    }
    let catalog = tcp_tests::env::connect(&catalog_url).await.unwrap();
    let (mut most, mut looks) = (0, 0);
    loop {
        let held: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                  WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                    AND datname IS DISTINCT FROM $1",
                &[&catalog_db],
            )
            .await
            .unwrap()
            .get(0);
        most = most.max(held);
        looks += 1;
        let done: i64 = catalog
            .query_one(
                "SELECT count(*) FROM operations \
                  WHERE id = ANY($1) AND state NOT IN ('pending', 'running')",
                &[&ids],
            )
            .await
            .unwrap()
            .get(0);
        if done == ids.len() as i64 {
            break;
        }
    }
    assert!(
        most <= CAP,
        "{most} connections at once, over the cap of {CAP}"
    );
    assert!(
        most >= 2,
        "the onboardings were never seen connected ({looks} looks)"
    );
    for id in ids {
        assert_eq!(
            env.wait(id).await.state,
            api_types::OperationState::Succeeded
        );
    }
}

/// An operation a node creates and runs at once is created with that node's lease: another
/// replica's sweeper does not take it in the moment before the node claims it (it once did, and
/// a crash test's operation ran in the wrong process), and takes it once the lease ended (the
/// creator died). An operation recorded for "whoever comes first" is anyone's at once.
async fn a_new_operation_is_its_creators_until_its_lease_ends(engine: EngineUnderTest) {
    // The in-process node's own sweeper stays out of the way.
    let env = TestEnv::with(engine, Faults::none(), |c| c.sweep_interval_secs = 3600).await;
    let catalog = &env.app.catalog;
    let rotation = |held_by| catalog::NewOperation {
        kind: api_types::OperationKind::ROTATE,
        steps: tcp_tests::step_names(&api_types::OperationKind::ROTATE, env.app.engine.as_ref()),
        params: json!({"mode": "scheduled"}),
        actor: "test".into(),
        request_id: None,
        allowed_from: &[api_types::TenantState::Active],
        parent: None,
        held_by,
    };
    let mut tenants = Vec::new();
    for slug in ["held-op", "free-op"] {
        env.onboard(slug).await;
        let slug = api_types::TenantSlug::parse(slug).unwrap();
        tenants.push(catalog.tenant_by_slug(&slug).await.unwrap().unwrap());
    }
    let ttl = Duration::from_secs(2);
    let held = catalog
        .start_operation(
            tenants[0].id,
            rotation(Some(("node-a".to_owned(), ttl))),
            api_types::TenantState::Active,
        )
        .await
        .unwrap();
    let created = Instant::now();
    assert!(!catalog
        .claimable_operations("node-b")
        .await
        .unwrap()
        .contains(&held.id));
    assert!(catalog
        .claimable_operations("node-a")
        .await
        .unwrap()
        .contains(&held.id));
    assert!(catalog
        .claim(held.id, "node-b", Duration::from_secs(30))
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(
        (created + ttl + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert!(
        catalog
            .claim(held.id, "node-b", Duration::from_secs(30))
            .await
            .unwrap()
            .is_some(),
        "the creator's lease ended: another replica takes the operation"
    );

    let free = catalog
        .start_operation(
            tenants[1].id,
            rotation(None),
            api_types::TenantState::Active,
        )
        .await
        .unwrap();
    assert!(catalog
        .claim(free.id, "node-b", Duration::from_secs(30))
        .await
        .unwrap()
        .is_some());
}
