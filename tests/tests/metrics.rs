//! `GET /metrics`: public, OpenMetrics text, figures from the HTTP layer, the workflow runner and
//! the catalog, and nothing that names a tenant or carries a secret.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::http::{Method, StatusCode};
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

/// The value of the first sample line that starts with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_show_tenants_requests_and_steps_without_names_or_secrets() {
    let slug = "metrics-one";
    // Credentials are due one second after onboarding, so the due gauge has something to count
    // (the scheduler is off in tests, so nothing rotates them).
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        c.rotate_after_secs = 1
    })
    .await;
    let op = env.onboard(slug).await;
    let (status, _) = env
        .call(Method::GET, &format!("/v1/tenants/{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = env
        .call_text(Method::GET, &format!("/no-such-{slug}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // No token: Prometheus scrapes it.
    let (status, ctype, text) = env.call_text(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");

    // Catalog gauges.
    assert!(text.contains("tcp_tenants{state=\"active\"} 1\n"), "{text}");
    assert!(text.contains("tcp_tenants{state=\"failed\"} 0\n"), "{text}");
    assert_eq!(sample(&text, "tcp_rotations_due "), Some(1.0), "{text}");
    assert_eq!(sample(&text, "tcp_rotations_overdue "), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "tcp_operations_unfinished "),
        Some(0.0),
        "{text}"
    );

    // Operations by kind and final state; connection pools by name.
    assert_eq!(
        sample(
            &text,
            "tcp_operations{kind=\"onboard\",state=\"succeeded\"} "
        ),
        Some(1.0),
        "{text}"
    );
    let catalog_open = sample(
        &text,
        "tcp_pool_connections{pool=\"catalog\",state=\"idle\"} ",
    )
    .unwrap_or_else(|| panic!("no catalog pool gauge: {text}"))
        + sample(
            &text,
            "tcp_pool_connections{pool=\"catalog\",state=\"in_use\"} ",
        )
        .unwrap();
    assert!(catalog_open >= 1.0, "{text}");
    assert!(sample(&text, "tcp_pool_max_connections{pool=\"catalog\"} ").unwrap() >= 1.0);
    // Each server's pools carry its name.
    let engine_pool = if env.app.engine.name() == "postgres" {
        "default/engine_admin"
    } else {
        "default/engine_master"
    };
    assert_eq!(
        sample(&text, "tcp_server_capacity{server=\"default\"} "),
        Some(1000.0),
        "{text}"
    );
    assert!(
        sample(&text, "tcp_server_tenants{server=\"default\"} ").is_some(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "tcp_server_state{server=\"default\",state=\"active\"} "
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, &format!("tcp_pool_waits{{pool=\"{engine_pool}\"}} ")).is_some(),
        "{text}"
    );
    assert!(
        text.contains("tcp_pool_wait_seconds{pool=\"catalog\"}"),
        "{text}"
    );

    // HTTP by route template, never the raw path.
    assert!(
        sample(
            &text,
            "tcp_http_requests_total{method=\"POST\",route=\"/v1/tenants\",status=\"202\"}"
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "tcp_http_requests_total{method=\"GET\",route=\"/v1/tenants/{slug}\",status=\"200\"}"
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "tcp_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        )
        .is_some(),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "tcp_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/tenants\"}"
        )
        .is_some(),
        "{text}"
    );

    // Every onboarding step, counted and timed.
    for step in &op.steps {
        let counted = format!(
            "tcp_operation_steps_total{{kind=\"onboard\",step=\"{}\",outcome=\"succeeded\"}} 1",
            step.name
        );
        assert!(text.contains(&counted), "{counted}: {text}");
        let timed = format!(
            "tcp_operation_step_duration_seconds_count{{kind=\"onboard\",step=\"{}\"}} 1",
            step.name
        );
        assert!(text.contains(&timed), "{timed}: {text}");
    }

    // Nothing names the tenant or carries its secrets.
    assert!(
        !text.contains(slug),
        "the slug leaked into /metrics: {text}"
    );
    let names = env.secret_names(slug);
    for name in [&names.app, &names.audit_admin, &names.investigator] {
        let value = env.secret(name).await;
        assert!(
            !text.contains(value.expose()),
            "{name} leaked into /metrics"
        );
        let url = url::Url::parse(value.expose()).unwrap();
        let password = url.password().unwrap();
        assert!(
            !text.contains(password),
            "{name}'s password leaked into /metrics"
        );
    }
}
