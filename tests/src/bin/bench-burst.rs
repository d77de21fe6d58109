//! `make bench-burst`: a burst of onboardings from several concurrent clients through the HTTP
//! API of the real server binary (a warm pool filled first), then as many offboardings, on a
//! durable PostgreSQL cluster the benchmark starts itself. Records wall time, per-operation
//! latency, failures (any answer but 202, any operation that did not succeed), warm-pool hits,
//! the control plane's peak resident memory, and the peak number of client connections on the
//! server; writes its section of docs/benchmarks.md.
//!
//! ```text
//! bench-burst --tenants 1000 --clients 8 --pool 50 --out docs/benchmarks.md
//! ```

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tcp_tests::bench::{rss_kb, BenchServer};
use tcp_tests::PgCluster;

const START: &str = "<!-- bench-burst:start -->";
const END: &str = "<!-- bench-burst:end -->";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Resident memory of a process, kB (`VmRSS`).
#[derive(Default)]
struct Phase {
    latencies: Vec<f64>,
    failures: Vec<String>,
}

/// Runs `n` operations from `clients` concurrent clients; `request(i)` gives the path and body.
async fn burst(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n: usize,
    clients: usize,
    poll_ms: u64,
    request: fn(usize) -> (String, serde_json::Value),
) -> (Phase, f64) {
    let next = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(Mutex::new(Phase::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, base, token) = (client.clone(), base.to_owned(), token.to_owned());
            let (next, phase) = (next.clone(), phase.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let (path, body) = request(i);
                    let t = Instant::now();
                    let outcome = run_one(&client, &base, &token, &path, body, poll_ms).await;
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    let mut p = phase.lock().unwrap();
                    match outcome {
                        Ok(()) => p.latencies.push(ms),
                        Err(e) => p.failures.push(format!("{path}: {e}")),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let phase = Arc::try_unwrap(phase).ok().unwrap().into_inner().unwrap();
    (phase, wall)
}

async fn run_one(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: serde_json::Value,
    poll_ms: u64,
) -> Result<(), String> {
    let r = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    if status != 202 {
        return Err(format!("{status}: {v}"));
    }
    let id = v["operation"]["id"]
        .as_str()
        .ok_or("no operation id")?
        .to_owned();
    // `poll_ms` 0: one waiting request (`?wait_ms=`), answered when the operation ends; else a
    // plain read every `poll_ms`, as a client that does not wait would.
    let path = if poll_ms == 0 {
        format!("{base}/v1/operations/{id}?wait_ms=20000")
    } else {
        format!("{base}/v1/operations/{id}")
    };
    loop {
        let v: serde_json::Value = client
            .get(&path)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match v["state"].as_str() {
            Some("succeeded") => return Ok(()),
            Some("running") | Some("pending") => {
                tokio::time::sleep(Duration::from_millis(poll_ms)).await
            }
            other => return Err(format!("operation {id} ended {other:?}: {}", v["error"])),
        }
    }
}

fn summary(name: &str, n: usize, phase: &mut Phase, wall: f64) -> String {
    phase.latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let l = &phase.latencies;
    format!(
        "| {name} | {n} | {wall:.1} | {rate:.1} | {p50:.0} | {p95:.0} | {max:.0} | {failed} |\n",
        rate = n as f64 / wall,
        p50 = percentile(l, 0.5),
        p95 = percentile(l, 0.95),
        max = l.last().copied().unwrap_or(0.0),
        failed = phase.failures.len(),
    )
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
    let n: usize = arg("--tenants")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let clients: usize = arg("--clients").and_then(|s| s.parse().ok()).unwrap_or(8);
    // 0: clients follow each operation with one waiting request; else they read it every N ms.
    let poll_ms: u64 = arg("--poll-ms").and_then(|s| s.parse().ok()).unwrap_or(0);
    let pool: usize = arg("--pool").and_then(|s| s.parse().ok()).unwrap_or(50);
    let out = arg("--out").unwrap_or_else(|| "docs/benchmarks.md".into());

    let cluster = PgCluster::durable();
    let server = BenchServer::start(
        &cluster.admin_url,
        &[
            ("TENANT_CP_WARM_POOL_SIZE", pool.to_string()),
            // Tenants and pooled databases both count toward a server's capacity.
            ("TENANT_CP_SERVER_CAPACITY", (n + pool + 10).to_string()),
        ],
    )
    .await;
    let base = server.base.clone();
    let pid = server.pid();
    let client = reqwest::Client::new();
    let operator = server.token("operator");
    let admin = server.token("admin");
    let fill = Instant::now();
    loop {
        let s: serde_json::Value = client
            .get(format!("{base}/v1/servers/default"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["pool"]["ready"].as_u64() >= Some(pool as u64) {
            break;
        }
        assert!(
            fill.elapsed() < Duration::from_secs(900),
            "pool not filled: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fill_secs = fill.elapsed().as_secs_f64();

    // Samplers: the control plane's resident memory, and client connections on the server.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peaks = Arc::new(Mutex::new((rss_kb(pid), 0i64)));
    let sampler = {
        let (stop, peaks, url) = (stop.clone(), peaks.clone(), cluster.admin_url.clone());
        tokio::spawn(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            while !stop.load(Ordering::SeqCst) {
                let conns: i64 = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .await
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                {
                    let mut p = peaks.lock().unwrap();
                    p.0 = p.0.max(rss_kb(pid));
                    p.1 = p.1.max(conns);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let (mut onboard, on_wall) = burst(&client, &base, &operator, n, clients, poll_ms, |i| {
        let slug = format!("burst-{i:04}");
        (
            "/v1/tenants".into(),
            serde_json::json!({"slug": slug, "display_name": slug}),
        )
    })
    .await;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let claims = |outcome: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "tcp_pool_claims_total{{server=\"default\",outcome=\"{outcome}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or("0")
            .to_owned()
    };
    let (hits, misses) = (claims("hit"), claims("miss"));
    // Idle with every tenant active and the background passes running.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let rss_with_tenants = rss_kb(pid);
    let (mut offboard, off_wall) = burst(&client, &base, &operator, n, clients, poll_ms, |i| {
        let slug = format!("burst-{i:04}");
        (
            format!("/v1/tenants/{slug}/offboard"),
            serde_json::json!({"confirm": slug, "reason": "bench"}),
        )
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    let (peak_rss, peak_conns) = *peaks.lock().unwrap();
    drop(server);

    let failures: Vec<String> = onboard
        .failures
        .iter()
        .chain(offboard.failures.iter())
        .take(5)
        .cloned()
        .collect();
    let section = format!(
        "{START}\n## A burst of {n} onboardings, then {n} offboardings ({clients} clients)\n\n\
         Produced by `make bench-burst` (`target/release/bench-burst --tenants {n} --clients {clients} \
         --pool {pool}{poll_arg} --out {out}`) on {date}, on a 2-core machine, against a PostgreSQL 15 cluster \
         the benchmark starts itself with the durable defaults `make run`'s cluster has (`fsync`, \
         `full_page_writes`, `synchronous_commit` on). The release server binary with a warm pool of \
         {pool} (filled in {fill_secs:.1} s before the burst); {clients} clients each start an \
         operation (`POST`), follow it until it ends ({follow}), and take the next. Latency is per \
         operation, from the `POST` to the end; a failure is any answer but 202 or an operation \
         that did not succeed.\n\n\
         | phase | operations | wall (s) | per second | p50 (ms) | p95 (ms) | max (ms) | failures |\n\
         |---|---|---|---|---|---|---|---|\n{on}{off}\n\
         - Warm-pool claims: {hits} hits, {misses} misses (`tcp_pool_claims_total`); the refill waits \
         while the process runs more than `warm_pool_busy_operations` operations.\n\
         - Control-plane resident memory: peak {peak_mb:.0} MB; {idle_mb:.0} MB with {n} active \
         tenants after 15 s idle (background passes running).\n\
         - Client connections on the server (catalog, engine admin pool, tenant logins): peak \
         {peak_conns}.\n{failure_lines}{END}\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        poll_arg = if poll_ms == 0 { String::new() } else { format!(" --poll-ms {poll_ms}") },
        follow = if poll_ms == 0 {
            "one `GET /v1/operations/{id}?wait_ms=20000`, answered when it ends, as `tenantctl` \
             follows one"
                .to_owned()
        } else {
            format!("a plain `GET /v1/operations/{{id}}` every {poll_ms} ms")
        },
        on = summary("onboarding", n, &mut onboard, on_wall),
        off = summary("offboarding", n, &mut offboard, off_wall),
        peak_mb = peak_rss as f64 / 1024.0,
        idle_mb = rss_with_tenants as f64 / 1024.0,
        failure_lines = if failures.is_empty() {
            String::new()
        } else {
            format!("- First failures: {}\n", failures.join("; "))
        },
    );
    tcp_tests::bench::write_section(&out, START, END, &section);
    println!("{section}");
}
