//! `make bench`: onboards N tenants one after another through the HTTP API of the real server
//! binary (waiting for each operation), offboards them, then does the same database work as a
//! plain `psql` script per tenant (roles, template clone, grants, rebind) as the baseline, and
//! writes p50/p95 and the API/baseline ratio to a Markdown file.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::postgres::{
    PostgresConfig, PostgresEngine, Provisioning, TEMPLATE_OWNER, TEMPLATE_STAND_INS,
};
use engine::Engine as _;
use secrets::SecretValue;
use tcp_tests::{free_port, PgCluster};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// p50, p95, mean and max.
fn stats(mut v: Vec<f64>) -> (f64, f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.iter().sum::<f64>() / v.len() as f64,
        v.last().copied().unwrap_or_default(),
    )
}

/// Follows an operation to its end with waiting requests (`?wait_ms=`: one request answered
/// when it ends).
async fn wait_op(client: &reqwest::Client, base: &str, token: &str, id: &str) {
    loop {
        let v: serde_json::Value = client
            .get(format!("{base}/v1/operations/{id}?wait_ms=20000"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match v["state"].as_str() {
            Some("succeeded") => return,
            Some("running") | Some("pending") => {}
            other => panic!("operation {id} ended {other:?}: {v}"),
        }
    }
}

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// POSTs a request that starts an operation and waits until it succeeded.
    async fn start(&self, path: &str, body: serde_json::Value) {
        let r: serde_json::Value = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["operation"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: {r}"));
        wait_op(&self.client, &self.base, &self.token, id).await;
    }
}

/// The server's `/metrics` text.
async fn scrape(client: &reqwest::Client, base: &str) -> String {
    let r = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(r.status().is_success(), "/metrics answered {}", r.status());
    r.text().await.unwrap()
}

/// The sample lines of the figures the issue names (histograms by `_count`/`_sum` only), or
/// only the operation counts.
fn figures(text: &str, operations_only: bool) -> String {
    let wanted: &[&str] = if operations_only {
        &["tcp_operations{"]
    } else {
        &[
            "tcp_operations{",
            "tcp_operations_unfinished",
            "tcp_tenants{",
            "tcp_rotations_",
            "tcp_pool_",
            "tcp_server_",
            "tcp_operation_step_duration_seconds_count",
            "tcp_operation_step_duration_seconds_sum",
            "tcp_http_request_duration_seconds_count",
            "tcp_http_request_duration_seconds_sum",
        ]
    };
    text.lines()
        .filter(|l| !l.starts_with('#') && wanted.iter().any(|w| l.starts_with(w)))
        .filter(|l| !operations_only || !l.ends_with(" 0"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `(sum, count)` of the onboarding step durations by step, from a scrape.
fn step_sums(text: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut out: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in text.lines() {
        for (prefix, sum) in [
            (
                "tcp_operation_step_duration_seconds_sum{kind=\"onboard\",step=\"",
                true,
            ),
            (
                "tcp_operation_step_duration_seconds_count{kind=\"onboard\",step=\"",
                false,
            ),
        ] {
            let Some(rest) = line.strip_prefix(prefix) else {
                continue;
            };
            let Some((step, value)) = rest.split_once("\"} ") else {
                continue;
            };
            let value: f64 = value.trim().parse().unwrap_or(0.0);
            let e = out.entry(step.to_owned()).or_default();
            if sum {
                e.0 = value;
            } else {
                e.1 = value;
            }
        }
    }
    out
}

/// Mean milliseconds per step between two scrapes.
fn step_means(
    before: &std::collections::BTreeMap<String, (f64, f64)>,
    after: &std::collections::BTreeMap<String, (f64, f64)>,
) -> std::collections::BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(step, (sum, count))| {
            let (s0, c0) = before.get(step).copied().unwrap_or_default();
            (count - c0 > 0.0).then(|| (step.clone(), (sum - s0) / (count - c0) * 1000.0))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--tenants").and_then(|s| s.parse().ok()).unwrap_or(50);
    let out = arg("--out").unwrap_or_else(|| "docs/benchmarks.md".into());

    // Durable, as a user's cluster is (fsync, full-page writes, synchronous commit on): the
    // test clusters' shortcuts would flatter the database work the API and the baseline share.
    let cluster = PgCluster::durable();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let bin = std::env::current_exe()
        .unwrap()
        .with_file_name("tenant-control-plane");
    let mut child = Command::new(&bin)
        .env("TENANT_CP_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_CP_DATA_DIR", data.path())
        .env("TENANT_CP_POSTGRES_ADMIN_URL", &cluster.admin_url)
        .env("TENANT_CP_LOG", "warn")
        // The benchmark measures the workflows, not the rate limiter (it polls every 2 ms).
        .env("TENANT_CP_RATE_LIMIT_PER_SUBJECT", "0")
        .env("TENANT_CP_RATE_LIMIT_PER_IP", "0")
        .env("TENANT_CP_AUTH_MODE", "local")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = server::auth::LocalKey::load(data.path())
        .unwrap()
        .mint("bench", &["operator".into()], 3600)
        .unwrap();

    let api = Api {
        client: client.clone(),
        base: base.clone(),
        token,
    };
    // Warm-up (not measured): first connections, caches.
    api.start(
        "/v1/tenants",
        serde_json::json!({"slug": "bench-warm", "display_name": "warm"}),
    )
    .await;
    api.start(
        "/v1/tenants/bench-warm/offboard",
        serde_json::json!({"confirm": "bench-warm", "reason": "warm"}),
    )
    .await;

    let before_clones = step_sums(&scrape(&client, &base).await);
    let mut onboard = Vec::new();
    let mut mid_run = String::new();
    for i in 0..n {
        if i == n / 2 {
            // What Prometheus sees half-way through: the figures an operator watches.
            mid_run = scrape(&client, &base).await;
        }
        let slug = format!("bench-{i:03}");
        let t = Instant::now();
        api.start(
            "/v1/tenants",
            serde_json::json!({"slug": slug, "display_name": slug}),
        )
        .await;
        onboard.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let after_clones = step_sums(&scrape(&client, &base).await);
    // The warm pool: as many pooled databases as tenants to come, filled before they come; the
    // refill runs as it would in production (after each claim, beside the next onboarding).
    let admin = server::auth::LocalKey::load(data.path())
        .unwrap()
        .mint("bench", &["admin".into()], 3600)
        .unwrap();
    let pool_set = client
        .put(format!("{base}/v1/servers/default/pool"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"size": n}))
        .send()
        .await
        .unwrap();
    assert!(
        pool_set.status().is_success(),
        "{}",
        pool_set.text().await.unwrap()
    );
    let fill_started = Instant::now();
    loop {
        let server: serde_json::Value = client
            .get(format!("{base}/v1/servers/default"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if server["pool"]["ready"].as_u64() == Some(n as u64) {
            break;
        }
        assert!(
            fill_started.elapsed() < Duration::from_secs(600),
            "the pool did not fill: {server}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fill_secs = fill_started.elapsed().as_secs_f64();
    let mut pooled = Vec::new();
    for i in 0..n {
        let slug = format!("pool-{i:03}");
        let t = Instant::now();
        api.start(
            "/v1/tenants",
            serde_json::json!({"slug": slug, "display_name": slug}),
        )
        .await;
        pooled.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let with_pool = scrape(&client, &base).await;
    let after_pool = step_sums(&with_pool);
    let clone_steps = step_means(&before_clones, &after_clones);
    let pool_steps = step_means(&after_clones, &after_pool);
    let step_rows: String = clone_steps
        .keys()
        .chain(pool_steps.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|step| {
            let cell = |m: &std::collections::BTreeMap<String, f64>| {
                m.get(step).map_or("-".to_owned(), |v| format!("{v:.1}"))
            };
            format!(
                "| `{step}` | {} | {} |\n",
                cell(&clone_steps),
                cell(&pool_steps)
            )
        })
        .collect();
    let hits = with_pool
        .lines()
        .find(|l| l.starts_with("tcp_pool_claims_total{server=\"default\",outcome=\"hit\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or("0")
        .to_owned();
    let pool_off = client
        .put(format!("{base}/v1/servers/default/pool"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"size": 0}))
        .send()
        .await
        .unwrap();
    assert!(pool_off.status().is_success());
    // Measured without the pool's own drops running beside the offboardings.
    let drain = Instant::now();
    loop {
        let server: serde_json::Value = client
            .get(format!("{base}/v1/servers/default"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let p = &server["pool"];
        let left: u64 = ["ready", "creating", "claimed", "retiring"]
            .iter()
            .map(|k| p[*k].as_u64().unwrap_or(0))
            .sum();
        if left == 0 {
            break;
        }
        assert!(
            drain.elapsed() < Duration::from_secs(300),
            "pool not emptied: {server}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut offboard = Vec::new();
    for slug in (0..n)
        .map(|i| format!("bench-{i:03}"))
        .chain((0..n).map(|i| format!("pool-{i:03}")))
    {
        let t = Instant::now();
        api.start(
            &format!("/v1/tenants/{slug}/offboard"),
            serde_json::json!({"confirm": slug, "reason": "bench"}),
        )
        .await;
        offboard.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let after = scrape(&client, &base).await;
    let _ = child.kill();
    let _ = child.wait();

    // Baseline: the same database work as one psql script per tenant.
    let engine = PostgresEngine::new(PostgresConfig {
        admin_url: SecretValue::new(cluster.admin_url.clone()),
        tenant_host: None,
        tenant_port: None,
        provisioning: Provisioning::Template,
        lock_down_maintenance_databases: true,
        release: None,
        clone_strategy: Default::default(),
        max_connections: 0,
        instance: None,
    })
    .await
    .unwrap();
    let template = engine.template_name().to_owned();
    let mut baseline = Vec::new();
    for i in 0..n {
        let names = engine.names(&api_types::TenantSlug::parse(&format!("base-{i:03}")).unwrap());
        let drops: String = TEMPLATE_STAND_INS
            .iter()
            .chain([&TEMPLATE_OWNER])
            .map(|r| format!("DROP OWNED BY {r};\n"))
            .collect();
        let script = format!(
            "CREATE ROLE {o} NOLOGIN;\nCREATE ROLE {rw} NOLOGIN NOINHERIT;\n\
             CREATE ROLE {a} LOGIN PASSWORD 'pw-a-0123456789abcdef';\nCREATE ROLE {b} LOGIN;\n\
             CREATE ROLE {aa} LOGIN NOINHERIT PASSWORD 'pw-aa-0123456789abcdef';\nCREATE ROLE {rd} NOLOGIN NOINHERIT;\n\
             CREATE ROLE {inv} LOGIN NOINHERIT PASSWORD 'pw-inv-0123456789abcdef';\n\
             GRANT {rw} TO {a}; GRANT {rw} TO {b}; GRANT {rd} TO {inv};\n\
             CREATE DATABASE {db} TEMPLATE {template} OWNER {o};\n\
             REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC;\n\
             \\connect {db}\nREASSIGN OWNED BY {tpl} TO {o};\n{drops}\
             SELECT platform.apply_grants('{o}', '{rw}', '{aa}', '{rd}', '{inv}');\n",
            o = names.owner, rw = names.app_rw, a = names.app_a, b = names.app_b, aa = names.audit_admin,
            rd = names.reader, inv = names.investigator, db = names.database, tpl = TEMPLATE_OWNER,
        );
        let path = data.path().join(format!("base-{i}.sql"));
        std::fs::write(&path, script).unwrap();
        let t = Instant::now();
        let status = Command::new("psql")
            .arg(&cluster.admin_url)
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        baseline.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(status.success(), "baseline script failed");
    }

    let (on50, on95, onmean, onmax) = stats(onboard);
    let (p50, p95, pmean, pmax) = stats(pooled);
    let pool_ratio = p50 / on50;
    let (off50, off95, offmean, offmax) = stats(offboard);
    let (b50, b95, bmean, bmax) = stats(baseline);
    let ratio = on50 / b50;
    let report = format!(
        "# Benchmarks\n\n\
         ## Onboarding and offboarding, one tenant after another\n\n\
         Produced by `make bench` (`target/release/bench-onboarding --tenants {n} --out {out}`) on {date}, \
         on a 2-core machine, against a PostgreSQL 15 cluster that the benchmark starts itself \
         with PostgreSQL's durable defaults as `make run`'s cluster has them (`fsync`, \
         `full_page_writes` and `synchronous_commit` on), the same for the API and the baseline.\n\n\
         API: `POST /v1/tenants` (or `/offboard`) to the release server binary over HTTP, then \
         `GET /v1/operations/{{id}}?wait_ms=20000`, which answers when the operation ends (the \
         way `tenantctl` follows one); the time covers every \
         step (secret-store writes with fsync, catalog step log, roles, template clone, rebind, \
         login check). Baseline: the same database work as one `psql` script per tenant (7 \
         roles, `CREATE DATABASE ... TEMPLATE`, revoke, `REASSIGN OWNED`/`DROP OWNED`, \
         `platform.apply_grants`), including psql's own start-up.\n\n\
         | measurement | tenants | p50 (ms) | p95 (ms) | mean (ms) | max (ms) |\n|---|---|---|---|---|---|\n\
         | onboarding through the API (clone: no warm pool) | {n} | {on50:.1} | {on95:.1} | {onmean:.1} | {onmax:.1} |\n\
         | onboarding through the API from the warm pool | {n} | {p50:.1} | {p95:.1} | {pmean:.1} | {pmax:.1} |\n\
         | offboarding through the API | {n2} | {off50:.1} | {off95:.1} | {offmean:.1} | {offmax:.1} |\n\
         | baseline psql script (onboarding work) | {n} | {b50:.1} | {b95:.1} | {bmean:.1} | {bmax:.1} |\n\n\
         **Onboarding by clone / baseline (p50): {ratio:.2}** (target ≤ 1.2). **Offboarding \
         through {n2} tenants: p95 {off95:.1} ms, max {offmax:.1} ms** (targets ≤ 100 and ≤ 250 ms). \
         **Warm pool: p50 {p50:.1} ms, p95 {p95:.1} ms** (targets ≤ 25 and ≤ 50 ms).\n\n\
         **Warm pool / clone (p50): {pool_ratio:.2}**: {hits} of the {n} onboardings took a pooled \
         database (`tcp_pool_claims_total`); the pool of {n} was filled in {fill_secs:.1} s \
         beforehand; the refill waits for a quiet moment (`warm_pool_busy_operations`), which one \
         onboarding after another does not leave, so none ran beside them. Clones use \
         `STRATEGY FILE_COPY` (`clone_strategy`), the baseline PostgreSQL's default `WAL_LOG`. \
         Mean time of each onboarding step (ms, from `tcp_operation_step_duration_seconds`), \
         by clone and from the pool; the rest of an onboarding is the catalog's step log, the HTTP \
         call and the polling:\n\n\
         | step | clone | warm pool |\n|---|---|---|\n{step_rows}\n\
         ## `/metrics` during the run\n\n\
         Scraped from the server's `GET /metrics` half-way through the onboardings (operations by \
         kind and state, tenants by state, rotations due/overdue, connection pools, database servers, step \
         durations, HTTP latency by route), then the operation counts after the offboardings. \
         Step and HTTP histograms are shown by their `_count` and `_sum` lines only.\n\n\
         ```text\n{mid}```\n\nAfter the offboardings:\n\n```text\n{end}```\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        n2 = 2 * n,
        mid = figures(&mid_run, false),
        end = figures(&after, true),
    );
    if let Some(dir) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    // The other benchmarks' sections (bench-rollout, bench-burst) stay as they are.
    let kept = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| {
            old.find("<!-- bench-")
                .map(|a| old[a..].trim_end().to_owned())
        })
        .map(|sections| format!("\n{sections}\n"))
        .unwrap_or_default();
    std::fs::File::create(&out)
        .unwrap()
        .write_all(format!("{report}{kept}").as_bytes())
        .unwrap();
    println!("{report}");
}
