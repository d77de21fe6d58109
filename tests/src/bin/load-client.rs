//! A tenant application for the rotation load test: in a loop, reads the app connection string's
//! current version from the control plane's local secret store, connects with it, calls a
//! business procedure, and disconnects, until its stdin closes. Then prints one JSON line:
//! `{"calls": N, "failures": N, "first_failures": [...], "logins": ["app_a", "app_b"]}`.
//!
//! ```text
//! load-client STORE_DIR SECRET_NAME        # MSSQL_URL set: the tenant is on SQL Server
//! ```

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use secrets::{LocalSecretStore, LocalStoreOptions, SecretName, SecretStore};
use tcp_tests::EngineUnderTest;

fn fail(message: &str) -> ! {
    eprintln!("load-client: {message}");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(name)) = (args.next(), args.next()) else {
        fail("usage: load-client STORE_DIR SECRET_NAME")
    };
    let store = LocalSecretStore::open(&dir, LocalStoreOptions::default())
        .unwrap_or_else(|e| fail(&e.to_string()));
    let name = SecretName::new(&name).unwrap_or_else(|e| fail(&e.to_string()));
    let engine = match std::env::var("MSSQL_URL") {
        Ok(url) if !url.trim().is_empty() => EngineUnderTest::SqlServer {
            url: url.trim().to_owned(),
        },
        _ => EngineUnderTest::Postgres,
    };
    let probe = engine.probe();
    // The test ends the run by closing our stdin.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let (mut calls, mut failures) = (0u64, 0u64);
    let mut first_failures = Vec::new();
    let mut logins = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) {
        let result = async {
            let secret = store
                .get(&name, None)
                .await
                .map_err(|e| format!("secret: {e}"))?;
            if let Some(p) = secret.properties.tags.get("principal") {
                logins.insert(p.clone());
            }
            let mut session = probe.login(&secret.value).await.map_err(|e| {
                format!(
                    "login as {:?}: {e:?}",
                    secret.properties.tags.get("principal")
                )
            })?;
            session
                .customer_upsert(None, "load", None)
                .await
                .map_err(|e| format!("call: {e:?}"))
        }
        .await;
        calls += 1;
        if let Err(e) = result {
            failures += 1;
            if first_failures.len() < 5 {
                first_failures.push(e);
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "calls": calls,
            "failures": failures,
            "first_failures": first_failures,
            "logins": logins,
        })
    );
}
