//! `tenantctl` end to end: the real CLI binary against the real `tenant-control-plane` binary on
//! the shared PostgreSQL cluster. Create `--wait` → show → rotate `--wait` → the confirmation
//! refusals → offboard `--confirm --wait` through a config file's `token_command`, plus a failed
//! onboarding's exit code and summary, and the auth failures' hints.
//!
//! stdin is never a terminal here and neither is stderr: this is the CI path (plain progress
//! lines, `--confirm` required).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tcp_tests::{tenantctl_binary, EngineUnderTest, RealServer, TestEnv};
use workflows::Faults;

/// What one `tenantctl` run did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn refused(self) -> Run {
        assert_eq!(
            self.code, 1,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A `tenantctl` with a clean environment: a home of its own (so no operator config leaks in),
/// no TENANTCTL_* variables, stdin closed.
struct Cli {
    home: tempfile::TempDir,
    vars: Vec<(String, String)>,
}

impl Cli {
    fn new() -> Cli {
        Cli {
            home: tempfile::tempdir().unwrap(),
            vars: Vec::new(),
        }
    }

    fn var(mut self, k: &str, v: impl Into<String>) -> Cli {
        self.vars.push((k.to_owned(), v.into()));
        self
    }

    fn config_file(&self) -> PathBuf {
        self.home.path().join(".config/tenantctl/config.toml")
    }

    fn write_config(&self, text: &str) {
        let path = self.config_file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    async fn run(&self, args: &[&str]) -> Run {
        let mut cmd = tokio::process::Command::new(tenantctl_binary());
        for (k, _) in std::env::vars() {
            if k.starts_with("TENANTCTL_") || k.starts_with("TENANT_CP_") || k == "XDG_CONFIG_HOME"
            {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .env("HOME", self.home.path())
            .envs(self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

async fn observer() -> TestEnv {
    TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        // Only the child process runs operations.
        c.sweep_interval_secs = 3600;
        c.node_id = Some(format!("observer-{}", uuid::Uuid::new_v4().simple()));
    })
    .await
}

#[tokio::test]
async fn a_full_lifecycle_through_tenantctl() {
    let env = observer().await;
    let server = RealServer::spawn(&env, "cli-node", "", &[]).await;
    let data_dir = env.data_dir().to_str().unwrap().to_owned();
    // Local mode: the server is found through the environment, the token minted from the key.
    let cli = Cli::new()
        .var("TENANTCTL_SERVER", &server.base)
        .var("TENANT_CP_DATA_DIR", &data_dir);

    let shown = cli.run(&["config", "show"]).await.ok();
    assert!(
        shown.stdout.contains(&format!(
            "server       {}  [from env TENANTCTL_SERVER]",
            server.base
        )),
        "{}",
        shown.stdout
    );
    assert!(
        shown.stdout.contains("[not set; minted from"),
        "{}",
        shown.stdout
    );

    // create --wait: one plain line per step change on stderr, the summary on stdout.
    let created = cli
        .run(&[
            "tenants",
            "create",
            "cli-acme",
            "--display-name",
            "CLI Acme",
            "--wait",
        ])
        .await
        .ok();
    assert!(
        created.stderr.contains("  ✓ verify_access\n"),
        "{}",
        created.stderr
    );
    assert!(
        !created.stderr.contains('\u{1b}'),
        "escape codes without a terminal"
    );
    assert!(
        created
            .stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("onboard cli-acme succeeded in "),
        "{}",
        created.stdout
    );

    // --json: the API's JSON and nothing else.
    let show = cli
        .run(&["--json", "tenants", "show", "cli-acme"])
        .await
        .ok();
    assert_eq!(show.json()["state"], "active");
    assert_eq!(show.stderr, "");
    let list = cli.run(&["tenants", "list"]).await.ok();
    let mut lines = list.stdout.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("SLUG      STATE   ENGINE"));
    assert!(
        lines.any(|l| l.starts_with("cli-acme  active  postgres")),
        "{}",
        list.stdout
    );

    let rotated = cli
        .run(&["tenants", "rotate", "cli-acme", "--wait"])
        .await
        .ok();
    assert!(
        rotated.stderr.contains("  ✓ rotate_app\n"),
        "{}",
        rotated.stderr
    );
    // An export, followed to its end, then listed.
    let exported = cli
        .run(&["tenants", "export", "cli-acme", "--wait"])
        .await
        .ok();
    assert!(
        exported.stderr.contains("  ✓ write_export\n"),
        "{}",
        exported.stderr
    );
    let listed = cli.run(&["tenants", "exports", "cli-acme"]).await.ok();
    assert!(
        listed.stdout.starts_with("STARTED") && listed.stdout.contains("succeeded"),
        "{}",
        listed.stdout
    );
    // A migration with nothing pending still re-applies routines and grants and checks the
    // platform's invariants live; the CLI mints an admin token for it in local mode.
    let migrated = cli
        .run(&["tenants", "migrate", "cli-acme", "--wait"])
        .await
        .ok();
    assert!(
        migrated.stderr.contains("  ✓ apply_migrations\n")
            && migrated.stderr.contains("  ✓ verify_schema\n"),
        "{}",
        migrated.stderr
    );
    // A fleet rollout to the release the control plane runs: nothing to apply, followed to its
    // end; then listed; a selector naming no tenant is refused with the API's reason.
    let rolled = cli
        .run(&[
            "rollout", "start", "--canary", "0", "--tenant", "cli-acme", "--wait",
        ])
        .await
        .ok();
    assert!(rolled.stdout.contains("succeeded"), "{}", rolled.stdout);
    assert!(rolled.stdout.contains("wave 1"), "{}", rolled.stdout);
    let listed = cli.run(&["--json", "rollout", "status"]).await.ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["state"], "succeeded");
    let fleet = cli.run(&["fleet", "schema"]).await.ok();
    assert!(fleet.stdout.contains("0 drifted"), "{}", fleet.stdout);
    // The reconciler: a clean pass, then an orphan carrying this deployment's marker, found
    // (exit 1) and repaired by its id.
    let clean = cli.run(&["reconciliation", "run"]).await.ok();
    assert!(clean.stdout.contains("no findings"), "{}", clean.stdout);
    let instance = env.app.catalog.instance_id().await.unwrap();
    env.probe()
        .plant_database(
            "tenant_cli_orphan",
            Some(&engine::marker::Marker::tenant(instance, None).text()),
        )
        .await;
    let found = cli
        .run(&["--json", "reconciliation", "run"])
        .await
        .refused()
        .json();
    let id = found["findings"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        found["findings"][0]["object"], "tenant_cli_orphan",
        "{found}"
    );
    let shown = cli.run(&["reconciliation", "show"]).await.refused();
    assert!(shown.stdout.contains(&id), "{}", shown.stdout);
    let repaired = cli.run(&["reconciliation", "repair", &id]).await.ok();
    assert!(
        repaired
            .stdout
            .contains("dropped orphan_database tenant_cli_orphan"),
        "{}",
        repaired.stdout
    );
    assert!(!env.probe().database_exists("tenant_cli_orphan").await);
    let refused = cli
        .run(&["rollout", "start", "--tenant", "nobody-here"])
        .await
        .refused();
    assert!(
        refused.stderr.contains("no tenant nobody-here"),
        "{}",
        refused.stderr
    );
    let rotations = cli
        .run(&["--json", "tenants", "rotations", "cli-acme"])
        .await
        .ok()
        .json();
    assert_eq!(rotations.as_array().unwrap().len(), 1);
    assert_eq!(rotations[0]["state"], "succeeded");

    // Destructive commands without a terminal need --confirm, and a wrong one is refused before
    // any request: nothing happens on the server.
    let refused = cli
        .run(&["tenants", "rotate", "cli-acme", "--mode", "emergency"])
        .await
        .refused();
    assert!(
        refused.stderr.ends_with("hint: pass --confirm cli-acme\n"),
        "{}",
        refused.stderr
    );
    let refused = cli
        .run(&["tenants", "offboard", "cli-acme", "--reason", "done"])
        .await
        .refused();
    assert!(
        refused.stderr.contains("not a terminal"),
        "{}",
        refused.stderr
    );
    let refused = cli
        .run(&[
            "tenants",
            "offboard",
            "cli-acme",
            "--reason",
            "done",
            "--confirm",
            "cli-acm",
        ])
        .await
        .refused();
    assert!(
        refused.stderr.contains("does not match"),
        "{}",
        refused.stderr
    );
    let rotations = cli
        .run(&["--json", "tenants", "rotations", "cli-acme"])
        .await
        .ok()
        .json();
    assert_eq!(rotations.as_array().unwrap().len(), 1);
    let show = cli
        .run(&["--json", "tenants", "show", "cli-acme"])
        .await
        .ok();
    assert_eq!(show.json()["state"], "active");

    // An unusable token: one line, one hint, never the token.
    let rejected = cli
        .run(&["--token", "bogus-token-value", "tenants", "list"])
        .await
        .refused();
    assert!(
        rejected
            .stderr
            .starts_with("error: the control plane rejected the token"),
        "{}",
        rejected.stderr
    );
    assert!(rejected
        .stderr
        .contains("hint: the token from flag --token was refused"));
    assert!(!rejected.stderr.contains("bogus-token-value"));
    assert_eq!(rejected.stderr.lines().count(), 2, "{}", rejected.stderr);

    // The OIDC way: a config file with the server and a token_command (here, one that mints a
    // local token), and no key in the data directory tenantctl itself looks at.
    let empty = tempfile::tempdir().unwrap();
    let oidc_like = Cli::new().var("TENANT_CP_DATA_DIR", empty.path().to_str().unwrap());
    let no_token = oidc_like.run(&["tenants", "list"]).await.refused();
    assert!(
        no_token.stderr.contains("in OIDC mode set TENANTCTL_TOKEN"),
        "{}",
        no_token.stderr
    );
    oidc_like.write_config("token_command = 'exit 7'\n");
    let failed = oidc_like.run(&["tenants", "list"]).await.refused();
    assert!(
        failed
            .stderr
            .starts_with("error: token_command `exit 7` failed"),
        "{}",
        failed.stderr
    );
    oidc_like.write_config(&format!(
        "server = '{}'\ntoken_command = \"'{}' --data-dir '{data_dir}' token --role operator\"\n",
        server.base,
        tenantctl_binary().display()
    ));
    let shown = oidc_like
        .run(&["--json", "config", "show"])
        .await
        .ok()
        .json();
    assert_eq!(shown["server"]["source"], "config file");
    assert_eq!(shown["token"]["source"], "config file");
    assert!(shown["token"]["command"]
        .as_str()
        .unwrap()
        .contains("token --role operator"));

    // Into a restore window and back: a window with no fixed length is refused before any
    // request; `tenants show` says until when; `restore` brings it back.
    let bad = oidc_like
        .run(&[
            "tenants",
            "offboard",
            "cli-acme",
            "--reason",
            "r",
            "--confirm",
            "cli-acme",
            "--retention",
            "P1M",
        ])
        .await;
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("years and months"), "{}", bad.stderr);
    let retained = oidc_like
        .run(&[
            "--json",
            "tenants",
            "offboard",
            "cli-acme",
            "--reason",
            "mistake?",
            "--confirm",
            "cli-acme",
            "--retention",
            "P3D",
            "--wait",
        ])
        .await
        .ok()
        .json();
    assert_eq!(retained["kind"], "retain");
    assert_eq!(retained["state"], "succeeded");
    let show = oidc_like.run(&["tenants", "show", "cli-acme"]).await.ok();
    assert!(show.stdout.contains("retained until"), "{}", show.stdout);
    let restored = oidc_like
        .run(&[
            "--json",
            "tenants",
            "restore",
            "cli-acme",
            "--reason",
            "it was",
            "--confirm",
            "cli-acme",
            "--wait",
        ])
        .await
        .ok()
        .json();
    assert_eq!(restored["kind"], "restore");
    assert_eq!(restored["state"], "succeeded");

    let offboarded = oidc_like
        .run(&[
            "--json",
            "tenants",
            "offboard",
            "cli-acme",
            "--reason",
            "contract ended",
            "--confirm",
            "cli-acme",
            "--wait",
        ])
        .await
        .ok();
    // With --json --wait the one document on stdout is the finished operation; no progress.
    let op = offboarded.json();
    assert_eq!(op["state"], "succeeded");
    assert_eq!(op["kind"], "offboard");
    assert_eq!(offboarded.stderr, "");
    let show = oidc_like
        .run(&["--json", "tenants", "show", "cli-acme"])
        .await
        .ok();
    assert_eq!(show.json()["state"], "offboarded");
}

#[tokio::test]
async fn a_failed_operation_exits_non_zero_with_its_step_and_a_hint() {
    let env = observer().await;
    let server = RealServer::spawn(&env, "cli-fail-node", "fail:onboard:verify_access", &[]).await;
    let cli = Cli::new()
        .var("TENANTCTL_SERVER", &server.base)
        .var("TENANT_CP_DATA_DIR", env.data_dir().to_str().unwrap());
    let run = cli
        .run(&[
            "tenants",
            "create",
            "cli-doomed",
            "--display-name",
            "Doomed",
            "--wait",
        ])
        .await
        .refused();
    assert!(
        run.stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("onboard cli-doomed rolled_back in "),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("  ✗ verify_access: injected failure after verify_access (rolled back)\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("error: onboard cli-doomed rolled_back: step verify_access failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint: every step was undone"),
        "{}",
        run.stderr
    );
    // The same operation, followed again with --json: its JSON on stdout, still exit 1.
    let id = run
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "operation")
        .nth(1)
        .unwrap()
        .to_owned();
    let again = cli
        .run(&["--json", "operations", "show", &id, "--wait"])
        .await
        .refused();
    assert_eq!(again.json()["state"], "rolled_back");
}
