//! One PostgreSQL cluster per test process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use rand::distributions::{Alphanumeric, DistString};

const BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// A running cluster.
#[derive(Debug)]
pub struct PgCluster {
    /// Superuser URL on the `postgres` database.
    pub admin_url: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Superuser password.
    pub password: String,
    /// Data directory.
    pub dir: PathBuf,
    /// Started with the durability a user's cluster has (fsync, full-page writes, synchronous
    /// commit on), for benchmarks; test clusters turn them off for speed.
    pub durable: bool,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn as_pg(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// The process-wide cluster, started on first use.
    pub fn shared() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start(false))
    }

    /// A cluster with the durability settings of `make run`'s (fsync, full-page writes and
    /// synchronous commit on, PostgreSQL's defaults): what benchmarks measure on. Stopped when
    /// the process exits.
    pub fn durable() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start(true))
    }

    /// Another cluster of this process, beside the shared one (a second database server for
    /// the fleet tests); stopped when the process exits, like the shared one.
    pub fn second() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        CLUSTER.get_or_init(|| PgCluster::start(false))
    }

    /// The server options: a port of its own, the socket in its directory, and (unless durable)
    /// no fsync, full-page writes or synchronous commit.
    fn options(port: u16, dir: &Path, durable: bool) -> String {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=300",
            dir.display()
        );
        if !durable {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        // For profiling a benchmark (`-c shared_preload_libraries=pg_stat_statements`, ...).
        if let Ok(extra) = std::env::var("TCP_PG_EXTRA_OPTIONS") {
            options.push(' ');
            options.push_str(&extra);
        }
        options
    }

    fn pg_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut cmd = as_pg(&format!("{BINDIR}/pg_ctl"));
        cmd.arg("-D").arg(&data);
        if action == "start" {
            cmd.arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(Self::options(self.port, &self.dir, self.durable))
                .arg("start");
        } else {
            // A clean (fast) shutdown. An immediate one is a crash, and this test cluster runs
            // with fsync, full_page_writes and synchronous_commit off: after such a crash it was
            // seen to lose a committed GRANT ON DATABASE (datacl) in recovery.
            cmd.args(["-w", "-m", "fast", "stop"]);
        }
        run(&mut cmd, &format!("pg_ctl {action}"));
    }

    /// Stops the server (to the fleet it is gone until [`PgCluster::restart`]).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        self.pg_ctl("start");
    }

    fn start(durable: bool) -> PgCluster {
        assert!(
            Path::new(&format!("{BINDIR}/initdb")).exists(),
            "PostgreSQL 15 server binaries not found in {BINDIR}: run `make deps` (apt-get install postgresql-15)"
        );
        // Under /tmp, not the checkout: the postgres user must be able to reach it.
        let dir = tempfile::Builder::new()
            .prefix("tcp-test-pg-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let data = dir.join("data");
        let password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        if is_root() {
            run(
                Command::new("chown").args(["-R", "postgres"]).arg(&dir),
                "chown",
            );
        }
        run(
            as_pg(&format!("{BINDIR}/initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["--locale=C.UTF-8", "--no-sync"]),
            "initdb",
        );
        let port = free_port();
        run(
            as_pg(&format!("{BINDIR}/pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "-t", "60", "-o"])
                .arg(Self::options(port, &dir, durable))
                .arg("start"),
            "pg_ctl start",
        );
        // The watchdog stops the cluster and removes its files once this process is gone. It
        // must outlive us, so it is deliberately never waited for.
        let pid = std::process::id();
        let stop = if is_root() {
            format!(
                "runuser -u postgres -- {BINDIR}/pg_ctl -D {} -m immediate stop",
                data.display()
            )
        } else {
            format!("{BINDIR}/pg_ctl -D {} -m immediate stop", data.display())
        };
        #[allow(clippy::zombie_processes)]
        let _watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {}",
                dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        PgCluster {
            admin_url: format!("postgresql://postgres:{password}@127.0.0.1:{port}/postgres"),
            port,
            password,
            dir,
            durable,
        }
    }

    /// URL of the superuser on another database.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgresql://postgres:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }
}

/// The `tenant-control-plane` binary, built (or brought up to date) once per test process.
pub fn server_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        run(
            Command::new(cargo)
                .args([
                    "build",
                    "-q",
                    "-p",
                    "server",
                    "--bin",
                    "tenant-control-plane",
                    "--manifest-path",
                ])
                .arg(&manifest),
            "cargo build of the server binary",
        );
        // target/<profile>/deps/<test exe> → target/<profile>/tenant-control-plane
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap();
        let bin = profile_dir.join("tenant-control-plane");
        let bin = if bin.exists() {
            bin
        } else {
            profile_dir
                .parent()
                .unwrap()
                .join("debug/tenant-control-plane")
        };
        assert!(bin.exists(), "server binary not found at {}", bin.display());
        bin
    })
    .clone()
}
