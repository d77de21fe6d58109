//! What the benchmark binaries share: their sections of docs/benchmarks.md.

/// Writes `section` (which starts with `start` and ends with `end`) into the Markdown file
/// `out` in place of the one between the same markers, or appends it; the rest of the file
/// stays as it is.
pub fn write_section(out: &str, start: &str, end: &str, section: &str) {
    let existing = std::fs::read_to_string(out).unwrap_or_else(|_| "# Benchmarks\n".into());
    let updated = match (existing.find(start), existing.find(end)) {
        (Some(a), Some(b)) if b > a => format!(
            "{}{}{}",
            &existing[..a],
            section.trim_end_matches('\n'),
            &existing[b + end.len()..]
        ),
        _ => format!("{}\n\n{section}", existing.trim_end()),
    };
    std::fs::write(out, updated).unwrap();
}

/// The release server binary beside the running benchmark binary, started on a free port with
/// its own data directory against `admin_url`, local auth and no rate limits, plus `extra`
/// settings; stopped when dropped.
pub struct BenchServer {
    child: std::process::Child,
    /// Its data directory.
    pub data: tempfile::TempDir,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl BenchServer {
    /// Starts it and waits until `/healthz` answers.
    pub async fn start(admin_url: &str, extra: &[(&str, String)]) -> BenchServer {
        let data = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let bin = std::env::current_exe()
            .unwrap()
            .with_file_name("tenant-control-plane");
        let child = std::process::Command::new(&bin)
            .env("TENANT_CP_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANT_CP_DATA_DIR", data.path())
            .env("TENANT_CP_POSTGRES_ADMIN_URL", admin_url)
            .env("TENANT_CP_LOG", "warn")
            .env("TENANT_CP_RATE_LIMIT_PER_SUBJECT", "0")
            .env("TENANT_CP_RATE_LIMIT_PER_IP", "0")
            .env("TENANT_CP_AUTH_MODE", "local")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let server = BenchServer {
            child,
            data,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        while client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        server
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A local token with `role`.
    pub fn token(&self, role: &str) -> String {
        let key = server::auth::LocalKey::load(self.data.path()).unwrap();
        key.mint("bench", &[role.to_owned()], 7200).unwrap()
    }

    /// Follows operation `id` to its end with waiting requests; its final JSON.
    pub async fn wait(&self, client: &reqwest::Client, token: &str, id: &str) -> serde_json::Value {
        loop {
            let v: serde_json::Value = client
                .get(format!("{}/v1/operations/{id}?wait_ms=20000", self.base))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !matches!(v["state"].as_str(), Some("running" | "pending")) {
                return v;
            }
        }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory, KiB (0 when it is gone).
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
