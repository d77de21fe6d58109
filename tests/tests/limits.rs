//! Abuse resistance at the edge, over a real socket (the per-address limit needs the peer
//! address): per-subject and per-address rate limits answer 429 with `Retry-After`, an
//! oversized request head 431, a request past its deadline 408; every answer carries a request
//! id. The edge does not depend on the engine, so these run on PostgreSQL only.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use server::auth::LocalKey;
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

/// Serves the env's router on a loopback port, as the binary does (with connect info).
async fn serve(env: &TestEnv) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = env
        .app
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_subject_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.rate_limit_per_subject = 1;
        c.rate_limit_burst_per_subject = 3;
    })
    .await;
    let base = serve(&env).await;
    let http = reqwest::Client::new();
    let alice = env.token("operator");
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let r = http
            .get(format!("{base}/v1/tenants"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        last = Some(r);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    let last = last.unwrap();
    let retry: u64 = last.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(last.headers()["content-type"], "application/problem+json");
    assert!(last.headers().contains_key("x-request-id"));
    let problem: serde_json::Value = last.json().await.unwrap();
    assert!(problem["request_id"].is_string(), "{problem}");

    // Another subject has its own budget.
    let bob = LocalKey::load(env.data_dir())
        .unwrap()
        .mint("bob", &["operator".to_owned()], 600)
        .unwrap();
    let r = http
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn an_address_over_its_rate_gets_429_even_without_a_token() {
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.rate_limit_per_ip = 1;
        c.rate_limit_burst_per_ip = 2;
    })
    .await;
    let base = serve(&env).await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for path in ["/healthz", "/v1/tenants", "/v1/tenants"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    // Unauthenticated guesses spend the address's budget too.
    assert_eq!(statuses, [200, 401, 429]);
}

#[tokio::test]
async fn oversized_heads_get_431_and_slow_requests_408() {
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.max_header_bytes = 4096;
        c.request_timeout_secs = 1;
    })
    .await;
    let base = serve(&env).await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/healthz"))
        .header("x-padding", "p".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 431);
    let r = http
        .get(format!("{base}/healthz"))
        .header("x-padding", "p".repeat(3000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // An investigation that outlives the deadline: 408 to the caller; the investigation itself
    // runs on in its own task and both its audit events are still written.
    env.onboard("slow-one").await;
    let r = http
        .post(format!("{base}/v1/tenants/slow-one/investigations"))
        .bearer_auth(env.token("support"))
        .json(&serde_json::json!({
            "ticket": "INC-7", "reason": "slow",
            "sql": "SELECT count(*) FROM generate_series(1, 25000000) AS g", "max_rows": 1
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 408);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("1 s"),
        "{problem}"
    );
    // (Within its own 10 s statement timeout, the outcome event follows.)
    let mut investigation = Vec::new();
    for _ in 0..100 {
        let actions = env
            .probe()
            .admin(&env.names("slow-one").database)
            .await
            .audit_actions()
            .await
            .unwrap();
        investigation = actions
            .into_iter()
            .filter(|a| a.starts_with("investigation."))
            .collect();
        if investigation.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(investigation.len(), 2, "{investigation:?}");
}
