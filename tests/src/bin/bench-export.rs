//! `make bench-export`: one tenant with a million business rows (`app.customers`, written by the
//! benchmark as the server's admin), exported through the API of the real server binary on a
//! durable PostgreSQL cluster; records the wall time, rows per second, the control plane's peak
//! resident memory during the export, the export's size, and a check of every part's checksum and
//! count against the signed manifest; writes its section of docs/benchmarks.md.
//!
//! ```text
//! bench-export --rows 1000000 --out docs/benchmarks.md
//! ```

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tcp_tests::bench::{rss_kb, BenchServer};
use tcp_tests::PgCluster;

const START: &str = "<!-- bench-export:start -->";
const END: &str = "<!-- bench-export:end -->";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let rows: i64 = arg("--rows")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let out = arg("--out").unwrap_or_else(|| "docs/benchmarks.md".into());

    let cluster = PgCluster::durable();
    let server = BenchServer::start(&cluster.admin_url, &[]).await;
    let client = reqwest::Client::new();
    let operator = server.token("operator");
    let slug = "export-bench";
    let created: serde_json::Value = client
        .post(format!("{}/v1/tenants", server.base))
        .bearer_auth(&operator)
        .json(&serde_json::json!({"slug": slug, "display_name": "Export Bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["operation"]["id"].as_str().unwrap().to_owned();
    let op = server.wait(&client, &operator, &id).await;
    assert_eq!(op["state"], "succeeded", "{op}");

    // The rows, written directly (the benchmark measures the export, not the inserts).
    let load = Instant::now();
    let url = cluster.url_for("tenant_export_bench");
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.execute(
        "INSERT INTO app.customers (name, email) \
         SELECT 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1::bigint, $1) g",
        &[&rows],
    )
    .await
    .unwrap();
    db.batch_execute("VACUUM ANALYZE app.customers")
        .await
        .unwrap();
    let load_secs = load.elapsed().as_secs_f64();

    // The export, with the control plane's memory sampled while it runs.
    let pid = server.pid();
    let before_kb = rss_kb(pid);
    let peak = Arc::new(AtomicU64::new(before_kb));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kb(pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let accepted: serde_json::Value = client
        .post(format!("{}/v1/tenants/{slug}/exports", server.base))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["operation"]["id"].as_str().unwrap().to_owned();
    let op = server.wait(&client, &operator, &id).await;
    let export_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    sampler.await.unwrap();
    assert_eq!(op["state"], "succeeded", "{op}");

    // Every part against the manifest.
    let list: serde_json::Value = client
        .get(format!("{}/v1/tenants/{slug}/exports", server.base))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = server.data.path().join("archive");
    let manifest_bytes = std::fs::read(root.join(list[0]["manifest"].as_str().unwrap())).unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let manifest = evidence::verify(&envelope, None).unwrap();
    let check = Instant::now();
    let (mut bytes_total, mut parts_total, mut customers) = (0u64, 0u64, 0u64);
    for table in manifest["tables"].as_array().unwrap() {
        for part in table["parts"].as_array().unwrap() {
            let bytes = std::fs::read(root.join(part["key"].as_str().unwrap())).unwrap();
            assert_eq!(
                evidence::archive::sha256_hex(&bytes),
                part["sha256"].as_str().unwrap()
            );
            let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64;
            assert_eq!(lines, part["rows"].as_u64().unwrap());
            bytes_total += bytes.len() as u64;
            parts_total += 1;
            if table["name"] == "app.customers" {
                customers += lines;
            }
        }
    }
    assert_eq!(customers, rows as u64, "every customer exported once");
    let check_secs = check.elapsed().as_secs_f64();
    let exported = manifest["rows"].as_u64().unwrap();

    let section = format!(
        "{START}\n## Export of a tenant with {rows} rows\n\n\
         Produced by `make bench-export` (`target/release/bench-export --rows {rows} --out {out}`) \
         on {date}, on a 2-core machine, against a durable PostgreSQL 15 cluster the benchmark starts \
         itself (`fsync`, `full_page_writes`, `synchronous_commit` on), with the release server \
         binary and the local archive store (its data directory, fsync per file). One tenant; \
         {rows} rows written into `app.customers` directly ({load_secs:.1} s), then \
         `POST /v1/tenants/{{slug}}/exports` followed to its end: one `REPEATABLE READ` snapshot \
         read through a portal, {part_rows} rows per JSON Lines part, each part written, \
         flushed and read back, then the signed manifest.\n\n\
         | rows exported | parts | size (MB) | export wall (s) | rows/s | control-plane RSS before → peak (MB) |\n\
         |---|---|---|---|---|---|\n\
         | {exported} | {parts_total} | {mb:.1} | {export_secs:.1} | {rate:.0} | {before:.0} → {peak_mb:.0} |\n\n\
         Afterwards every part's SHA-256 and line count matched the manifest, whose signature \
         verified, and `app.customers` held each of the {rows} rows once ({check_secs:.1} s to \
         check).\n{END}\n",
        date = chrono::Utc::now().format("%Y-%m-%d"),
        part_rows = workflows::tenant_export::PART_ROWS,
        mb = bytes_total as f64 / 1e6,
        rate = exported as f64 / export_secs,
        before = before_kb as f64 / 1024.0,
        peak_mb = peak.load(Ordering::SeqCst) as f64 / 1024.0,
    );
    tcp_tests::bench::write_section(&out, START, END, &section);
    println!("{section}");
}
