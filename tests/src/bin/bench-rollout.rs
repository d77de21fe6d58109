//! `make bench` (second part): a fleet schema rollout over N tenants, side by side with the
//! plain baseline, on one durable PostgreSQL cluster in one run.
//!
//! 1. The release server binary onboards N tenants through the API (4 clients at once) on the
//!    embedded release.
//! 2. Baseline: the same kind of migration (a nullable column, its history, one routine
//!    replaced) as one `psql -1` script per tenant database, once sequentially and once with 2
//!    workers, each pass adding its own column.
//! 3. The server restarts on a release with `V100` (a nullable column, its history, one routine
//!    replaced) and `POST /v1/rollouts` brings every tenant to it; the wall time from the POST
//!    until the rollout succeeded, divided by N, is our per-tenant cost.
//! 4. A second rollout with nothing to apply.
//!
//! The report replaces the rollout section of the output file (between its markers) and leaves
//! the rest of the file alone.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::Release;
use tcp_tests::releases::write_release;
use tcp_tests::{free_port, PgCluster};

const START: &str = "<!-- bench-rollout:start -->";
const END: &str = "<!-- bench-rollout:end -->";

/// The routine every migration here replaces: the same function, its body changed.
fn replaced_routine(release: &Release, marker: &str) -> (String, String) {
    let (stem, sql) = release
        .procedures
        .iter()
        .find(|(stem, _)| stem == "app.customer_get")
        .cloned()
        .unwrap();
    // A comment inside the body: a new definition, the same behaviour.
    let sql = sql.replacen("BEGIN", &format!("BEGIN\n    -- {marker}"), 1);
    (stem, sql)
}

struct Server {
    child: Child,
    base: String,
}

/// CPU seconds the whole machine spent busy so far (`/proc/stat`: user, nice, system, irq,
/// softirq), so a phase's cost counts the database's backends and psql's processes too.
fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(7)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4) // idle, iowait
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// CPU seconds one process spent so far (`/proc/<pid>/stat`: utime + stime).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn(
    cluster: &PgCluster,
    data: &std::path::Path,
    release: Option<&std::path::Path>,
) -> Server {
    let port = free_port();
    let bin = std::env::current_exe()
        .unwrap()
        .with_file_name("tenant-control-plane");
    let mut cmd = Command::new(&bin);
    cmd.env("TENANT_CP_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANT_CP_DATA_DIR", data)
        .env("TENANT_CP_POSTGRES_ADMIN_URL", &cluster.admin_url)
        .env("TENANT_CP_LOG", "warn")
        .env("TENANT_CP_RATE_LIMIT_PER_SUBJECT", "0")
        .env("TENANT_CP_RATE_LIMIT_PER_IP", "0")
        .env("TENANT_CP_AUTH_MODE", "local")
        .env("TENANT_CP_SERVER_CAPACITY", "100000")
        .env("TENANT_CP_ROTATION_SCHEDULER", "false")
        .env("TENANT_CP_CREDENTIAL_CHECK_INTERVAL_SECS", "0")
        .env("TENANT_CP_SCHEMA_CHECK_INTERVAL_SECS", "0")
        .stdout(Stdio::null());
    if let Some(dir) = release {
        cmd.env("TENANT_CP_TENANT_SCHEMA_DIR", dir);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

async fn onboard(client: &reqwest::Client, base: &str, token: &str, slug: &str) {
    let r: serde_json::Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(token)
        .json(&serde_json::json!({"slug": slug, "display_name": slug}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = r["operation"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{slug}: {r}"))
        .to_owned();
    loop {
        let v: serde_json::Value = client
            .get(format!("{base}/v1/operations/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match v["state"].as_str() {
            Some("succeeded") => return,
            Some("running") | Some("pending") => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            other => panic!("onboarding {slug} ended {other:?}: {v}"),
        }
    }
}

/// Starts a rollout and waits until it stopped; returns (wall seconds, the rollout).
async fn rollout(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    body: serde_json::Value,
) -> (f64, serde_json::Value) {
    let t = Instant::now();
    let resp = client
        .post(format!("{base}/v1/rollouts"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.text().await);
    let r: serde_json::Value = resp.json().await.unwrap();
    let id = r["id"].as_str().unwrap().to_owned();
    loop {
        let v: serde_json::Value = client
            .get(format!("{base}/v1/rollouts/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] != "running" && v["counts"]["running"] == 0 {
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(v["state"], "succeeded", "{v:#}");
            return (secs, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one statement with psql; returns its output.
fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-c", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs one `psql -1` script per database, `workers` at a time; returns the wall seconds.
fn psql_pass(admin_url: &str, databases: &[String], script: &str, workers: usize) -> f64 {
    let base = admin_url.trim_end_matches("/postgres");
    let queue = Arc::new(std::sync::Mutex::new(databases.to_vec()));
    let t = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let queue = queue.clone();
            let script = script.to_owned();
            let base = base.to_owned();
            std::thread::spawn(move || loop {
                let Some(db) = queue.lock().unwrap().pop() else {
                    return;
                };
                let out = Command::new("psql")
                    .arg(format!("{base}/{db}"))
                    .args(["-1", "-q", "-X", "-v", "ON_ERROR_STOP=1", "-c", &script])
                    .stdout(Stdio::null())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "baseline on {db}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    t.elapsed().as_secs_f64()
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
    let n: usize = arg("--tenants").and_then(|s| s.parse().ok()).unwrap_or(200);
    let out = arg("--out").unwrap_or_else(|| "docs/benchmarks.md".into());
    let parallel: u32 = arg("--parallel").and_then(|s| s.parse().ok()).unwrap_or(4);

    let cluster = PgCluster::durable();
    let data = tempfile::tempdir().unwrap();
    let embedded = Release::postgres();

    // 1. N tenants on the embedded release.
    let server = spawn(cluster, data.path(), None).await;
    let key = server::auth::LocalKey::load(data.path()).unwrap();
    let operator = key.mint("bench", &["operator".into()], 7200).unwrap();
    let admin = key.mint("bench", &["admin".into()], 7200).unwrap();
    let client = reqwest::Client::new();
    let t = Instant::now();
    let slugs: Vec<String> = (0..n).map(|i| format!("fleet-{i:04}")).collect();
    let queue = Arc::new(tokio::sync::Mutex::new(slugs.clone()));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (queue, client, base, token) = (
            queue.clone(),
            client.clone(),
            server.base.clone(),
            operator.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let Some(slug) = queue.lock().await.pop() else {
                    return;
                };
                onboard(&client, &base, &token, &slug).await;
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let onboarding = t.elapsed().as_secs_f64();
    eprintln!("onboarded {n} tenants in {onboarding:.1} s");
    let tenants: serde_json::Value = client
        .get(format!("{}/v1/tenants?limit=1000", server.base))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let databases: Vec<String> = tenants
        .as_array()
        .or_else(|| tenants["tenants"].as_array())
        .unwrap()
        .iter()
        .map(|t| t["database"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(databases.len(), n, "{tenants}");
    drop(server);

    // 2. The baseline: the same kind of change per database with psql -1.
    let baseline_script = |column: &str| {
        let (_, routine) = replaced_routine(&embedded, column);
        format!(
            "ALTER TABLE app.customers ADD COLUMN {column} text;\n\
             SELECT platform.sync_history('app.customers');\n{routine}\n"
        )
    };
    let cpu = machine_cpu();
    let seq = psql_pass(
        &cluster.admin_url,
        &databases,
        &baseline_script("note_seq"),
        1,
    );
    let seq_cpu = machine_cpu() - cpu;
    eprintln!("baseline sequential: {seq:.1} s ({seq_cpu:.1} CPU s)");
    let cpu = machine_cpu();
    let par = psql_pass(
        &cluster.admin_url,
        &databases,
        &baseline_script("note_par"),
        2,
    );
    let par_cpu = machine_cpu() - cpu;
    eprintln!("baseline 2 workers: {par:.1} s ({par_cpu:.1} CPU s)");

    // 3. Our rollout of V100 on a new release.
    let release_dir = data.path().join("release");
    let (stem, routine) = replaced_routine(&embedded, "v100");
    let mut new_release = embedded.clone();
    for p in new_release.procedures.iter_mut() {
        if p.0 == stem {
            p.1 = routine.clone();
        }
    }
    write_release(
        &release_dir,
        &new_release,
        0,
        &[(
            "V100__customer_notes",
            "ALTER TABLE app.customers ADD COLUMN note text;\n\
             SELECT platform.sync_history('app.customers');\n",
        )],
    );
    let server = spawn(cluster, data.path(), Some(&release_dir)).await;
    let request = serde_json::json!({"canary": 5, "wave_size": 50,
                                     "max_parallel_per_server": parallel, "max_failures": 3});
    let profile = std::env::var("BENCH_PROFILE").is_ok();
    if profile {
        psql(
            &cluster.admin_url,
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()",
        );
    }
    let (cpu, server_cpu) = (machine_cpu(), process_cpu(server.child.id()));
    let (ours, done) = rollout(&client, &server.base, &admin, request.clone()).await;
    let ours_cpu = machine_cpu() - cpu;
    let ours_server_cpu = process_cpu(server.child.id()) - server_cpu;
    assert_eq!(done["counts"]["succeeded"], n, "{done:#}");
    if profile {
        eprintln!(
            "{}",
            psql(
                &cluster.admin_url,
                "SELECT round(sum(total_exec_time)::numeric, 1) AS ms, sum(calls) AS calls, \
                        left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS q \
                   FROM pg_stat_statements GROUP BY 3 ORDER BY 1 DESC LIMIT 40"
            )
        );
    }
    eprintln!("rollout: {ours:.1} s ({ours_cpu:.1} CPU s, control plane {ours_server_cpu:.1})");
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let steps: String = metrics
        .lines()
        .filter(|l| {
            l.starts_with("tcp_operation_step_duration_seconds_") && l.contains("kind=\"migrate\"")
        })
        .filter(|l| l.contains("_sum") || l.contains("_count"))
        .map(|l| format!("{l}\n"))
        .collect();
    eprintln!("{steps}");
    let fleet: serde_json::Value = client
        .get(format!("{}/v1/fleet/schema", server.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fingerprints: std::collections::BTreeSet<String> = fleet["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["expected_fingerprint"].as_str().map(str::to_owned))
        .collect();
    eprintln!(
        "distinct fingerprints after the rollout: {}",
        fingerprints.len()
    );
    // 4. Nothing to apply.
    let cpu = machine_cpu();
    let (noop, _) = rollout(&client, &server.base, &admin, request.clone()).await;
    let noop_cpu = machine_cpu() - cpu;
    eprintln!("rollout with nothing to apply: {noop:.1} s");
    drop(server);

    let per = |secs: f64| secs * 1000.0 / n as f64;
    let section = format!(
        "{START}\n## Fleet schema rollout, {n} tenants\n\n\
         Produced by `make bench` (`target/release/bench-rollout --tenants {n} --out {out}`) on \
         {date}, on a 2-core machine, against one durable PostgreSQL 15 cluster (`fsync`, \
         `full_page_writes`, `synchronous_commit` on) that the benchmark starts itself, the \
         baseline and ours in the same run on the same tenant databases ({n} tenants onboarded \
         through the API first, 4 clients at once: {onboarding:.1} s).\n\n\
         The change: a nullable column on `app.customers`, its history column \
         (`platform.sync_history`), one routine (`app.customer_get`) replaced. Baseline: that \
         as one `psql -1` script per tenant database (psql's start-up and connection \
         included). Ours: `POST /v1/rollouts` `{request}` with the server on a release holding \
         it as `V100`, timed from the POST until `GET /v1/rollouts/{{id}}` says `succeeded`: \
         per tenant a `migrate` operation (catalog step log and audit rows; one transaction with \
         the migration, its history row, the routine files whose routine is not what the file \
         makes (here the replaced one; the others checked in the schema read), the grants again \
         (`platform.apply_grants`, skipped where they would change nothing), the \
         `schema.migrated` audit event and the schema read \
         inside it; then `verify_schema`: the evidence probes once per distinct schema, and \
         the tenant's schema baseline). The status is polled every 100 ms.\n\n\
         | run | tenants | wall (s) | per tenant (ms) | machine CPU per tenant (ms) |\n\
         |---|---|---|---|---|\n\
         | baseline `psql -1`, sequential | {n} | {seq:.1} | {seqp:.1} | {seqc:.1} |\n\
         | baseline `psql -1`, 2 workers | {n} | {par:.1} | {parp:.1} | {parc:.1} |\n\
         | our rollout (canary 5, waves of 50, {parallel} per server) | {n} | {ours:.1} | {oursp:.1} | {oursc:.1} (control plane {ourss:.1}) |\n\
         | our rollout again, nothing to apply | {n} | {noop:.1} | {noopp:.1} | {noopc:.1} |\n\n\
         Machine CPU: every process's busy time on the machine during the pass (`/proc/stat`), \
         so the database's backends, psql's processes and the control plane all count. Both \
         sides keep the two cores busy, so the wall ratio follows the CPU ratio: ours does, \
         per tenant, what psql does plus the catalog's step log and audit rows, the \
         tenant's audit event and its verification, the grant state and the schema read. \
         `BENCH_PROFILE=1 TCP_PG_EXTRA_OPTIONS=\"-c shared_preload_libraries=pg_stat_statements \
         -c pg_stat_statements.track=all\"` prints where the database's time went.\n\n\
         **Ratio ours / baseline with 2 workers (per tenant): {ratio:.2}** (target ≤ 1); \
         ours / sequential baseline: {ratio_seq:.2}; \
         nothing-to-apply pass: {noop:.1} s for {n} tenants (target ≤ 10 s for 1,000).\n\n\
         The rollout's steps as the server's `/metrics` saw them (seconds summed over tenants):\n\n\
         ```text\n{steps}```\n\nDistinct schema fingerprints after the rollout: {distinct} (the \
         evidence probes ran once per distinct schema).\n{END}\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        seqp = per(seq),
        parp = per(par),
        oursp = per(ours),
        noopp = per(noop),
        seqc = per(seq_cpu),
        parc = per(par_cpu),
        oursc = per(ours_cpu),
        ourss = per(ours_server_cpu),
        noopc = per(noop_cpu),
        ratio = ours / par,
        ratio_seq = ours / seq,
        distinct = fingerprints.len(),
    );
    tcp_tests::bench::write_section(&out, START, END, &section);
    println!("{section}");
}
