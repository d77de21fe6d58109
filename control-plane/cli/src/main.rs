//! `tenantctl`: the operator CLI of the tenant control plane.

mod client;
mod error;
mod render;
mod signed;

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use api_types::{
    Accepted, CreateTenantRequest, InvestigateRequest, InvestigateResponse, OffboardRequest,
    Operation, OperationState, RotateRequest, Rotation, RotationMode, StepState, Tenant,
    TenantSlug,
};
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand};
use secrets::{LocalSecretStore, LocalStoreOptions, SecretError, SecretName};
use uuid::Uuid;

use client::{Client, AUDITOR_ROLE, OPERATOR_ROLE};
use error::Failure;

/// How often `--wait` polls the operation.
const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// Operator CLI for the tenant control plane.
#[derive(Debug, Parser)]
#[command(name = "tenantctl", version, about)]
struct Cli {
    /// Base URL of the control plane.
    #[arg(
        long,
        global = true,
        env = "TENANTCTL_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token; without it, one is minted from `<data-dir>/jwt-hs256.key` if present.
    #[arg(long, global = true, env = "TENANTCTL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The control plane's data directory (local signing key and secret store).
    #[arg(
        long,
        global = true,
        env = "TENANT_CP_DATA_DIR",
        default_value = ".data"
    )]
    data_dir: PathBuf,
    /// Print raw JSON instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a token from the local signing key and print it (only the token).
    Token {
        /// Role granted by the token.
        #[arg(long, value_parser = PossibleValuesParser::new(server::auth::ROLES.iter().copied()))]
        role: String,
        /// Subject recorded as the actor (default: $USER, else `tenantctl`).
        #[arg(long)]
        subject: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..))]
        ttl_secs: i64,
    },
    /// Onboard, list, show and offboard tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Inspect long-running operations.
    #[command(subcommand)]
    Operations(OperationsCommand),
    /// Read the local secret store (on the control plane's machine).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Run one read-only query on a tenant's data through the audited path (role `support`);
    /// the query and its outcome are recorded in the tenant's audit log.
    Investigate {
        /// The tenant's slug.
        slug: TenantSlug,
        /// The support ticket, e.g. INC-1234.
        #[arg(long)]
        ticket: String,
        /// Why the data must be looked at.
        #[arg(long)]
        reason: String,
        /// Most rows to print.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_rows: u32,
        /// One read-only query (SELECT, WITH, TABLE or VALUES).
        sql: String,
    },
    /// Fetch a tenant's signed evidence bundle (role `auditor`): principals and permissions, live
    /// probes, temporal coverage, audit chain, rotations and investigations, each mapped to SOC 2
    /// criteria. Writes it to FILE and prints each section's status.
    Evidence {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Start of the period for rotations and investigations (RFC 3339, e.g.
        /// 2026-01-01T00:00:00Z); default: 90 days ago.
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Write the signed document to this file (check it later with `tenantctl verify`).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check the signature of a saved signed document (deletion certificate, evidence) offline.
    Verify {
        /// The document, as written by `--out`.
        file: PathBuf,
        /// The trusted public key (base64url, from `GET /v1/signing-key`), or a file holding it
        /// or that endpoint's JSON answer; without it only the key the document names is used.
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Start onboarding a tenant.
    Create {
        /// The tenant's slug (3 to 40 of a-z, 0-9 and single hyphens, starting with a letter).
        slug: TenantSlug,
        /// Human-readable name.
        #[arg(long)]
        display_name: String,
        /// Follow the operation until it finishes.
        #[arg(long)]
        wait: bool,
    },
    /// List tenants.
    List,
    /// Show one tenant, including the names of its secrets.
    Show {
        /// The tenant's slug.
        slug: TenantSlug,
    },
    /// Start offboarding a tenant: removes its database, principals and secrets.
    Offboard {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Why; recorded in the deletion certificate.
        #[arg(long)]
        reason: String,
        /// Repeat the slug to confirm (asked interactively when stdin is a terminal).
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
        /// Follow the operation until it finishes.
        #[arg(long)]
        wait: bool,
    },
    /// Rotate a tenant's credentials (the app login alternates; see README).
    Rotate {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Disable the previous app login at once and end its sessions (a suspected leak).
        #[arg(long)]
        emergency: bool,
        /// Follow the operation until it finishes.
        #[arg(long)]
        wait: bool,
    },
    /// Show a tenant's rotation history, newest first.
    Rotations {
        /// The tenant's slug.
        slug: TenantSlug,
    },
    /// Fetch an offboarded tenant's signed deletion certificate (needs the auditor role).
    DeletionCertificate {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Write the signed document to this file (check it later with `tenantctl verify`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum OperationsCommand {
    /// Show an operation and its steps.
    Show {
        /// The operation id.
        id: Uuid,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Print a secret's value (with --json also its properties).
    Show {
        /// The secret's name, e.g. `tenant-acme-app`.
        name: SecretName,
        /// A specific version (default: the latest).
        #[arg(long)]
        version: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(&Failure::new(format!(
                "cannot start the async runtime: {e}"
            )))
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(failure) => fail(&failure),
    }
}

fn fail(failure: &Failure) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    for line in failure.lines() {
        let _ = writeln!(stderr, "{line}");
    }
    ExitCode::from(1)
}

/// Writes one or more lines to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

fn emit_json(value: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::new(format!("cannot print JSON: {e}")))?;
    emit(&text);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let Cli {
        server,
        token,
        data_dir,
        json,
        command,
    } = cli;
    let connect_as = |role: &str| -> Result<Client, Failure> {
        let (token, source) = client::resolve_token(token.as_deref(), &data_dir, role)?;
        Ok(Client::new(&server, &token, source)?.for_role(role))
    };
    let connect = || connect_as(OPERATOR_ROLE);
    match command {
        Command::Token {
            role,
            subject,
            ttl_secs,
        } => {
            let subject = subject.unwrap_or_else(client::default_subject);
            let token = client::mint(&data_dir, &role, &subject, ttl_secs)?;
            emit(&token);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants(TenantsCommand::Create {
            slug,
            display_name,
            wait,
        }) => {
            let client = connect()?;
            let body = CreateTenantRequest {
                slug: slug.to_string(),
                display_name,
            };
            let (accepted, raw): (Accepted, _) = client.post("/v1/tenants", &body).await?;
            started(&client, &accepted, &raw, json, wait).await
        }
        Command::Tenants(TenantsCommand::List) => {
            let (tenants, raw): (Vec<Tenant>, _) = connect()?.get("/v1/tenants").await?;
            if json {
                emit_json(&raw)?;
            } else {
                emit(&render::tenant_table(&tenants));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants(TenantsCommand::Show { slug }) => {
            let (tenant, raw): (Tenant, _) = connect()?.get(&format!("/v1/tenants/{slug}")).await?;
            if json {
                emit_json(&raw)?;
            } else {
                emit(&render::tenant_details(&tenant));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants(TenantsCommand::Offboard {
            slug,
            reason,
            confirm,
            wait,
        }) => {
            // Resolve the token first so a missing token is reported before the prompt.
            let client = connect()?;
            let confirm = resolve_confirm(&slug, confirm, std::io::stdin().is_terminal(), || {
                prompt_confirm(&slug)
            })?;
            let body = OffboardRequest { confirm, reason };
            let (accepted, raw): (Accepted, _) = client
                .post(&format!("/v1/tenants/{slug}/offboard"), &body)
                .await?;
            started(&client, &accepted, &raw, json, wait).await
        }
        Command::Tenants(TenantsCommand::Rotate {
            slug,
            emergency,
            wait,
        }) => {
            let client = connect()?;
            let body = RotateRequest {
                mode: if emergency {
                    RotationMode::Emergency
                } else {
                    RotationMode::Scheduled
                },
            };
            let (accepted, raw): (Accepted, _) = client
                .post(&format!("/v1/tenants/{slug}/rotate"), &body)
                .await?;
            started(&client, &accepted, &raw, json, wait).await
        }
        Command::Tenants(TenantsCommand::Rotations { slug }) => {
            let (rotations, raw): (Vec<Rotation>, _) = connect()?
                .get(&format!("/v1/tenants/{slug}/rotations"))
                .await?;
            if json {
                emit_json(&raw)?;
            } else {
                emit(&render::rotation_table(&rotations));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants(TenantsCommand::DeletionCertificate { slug, out }) => {
            let client = connect_as(AUDITOR_ROLE)?;
            let (raw, verified) =
                signed::fetch(&client, &format!("/v1/tenants/{slug}/deletion-certificate")).await?;
            match (&out, json) {
                (Some(file), _) => {
                    signed::save(file, &raw)?;
                    if json {
                        let mut v = signed::verified_json(&verified);
                        v["out"] = file.display().to_string().into();
                        emit_json(&v)?;
                    } else {
                        emit(&format!(
                            "deletion certificate of {slug} written to {} ({}); check it with \
                             `tenantctl verify {}`",
                            file.display(),
                            signed::signed_by(&verified),
                            file.display()
                        ));
                    }
                }
                (None, true) => emit_json(&raw)?,
                (None, false) => emit(&signed::certificate_summary(&verified)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Investigate {
            slug,
            ticket,
            reason,
            max_rows,
            sql,
        } => {
            let body = InvestigateRequest {
                ticket,
                reason,
                sql,
                max_rows,
            };
            let (answer, raw): (InvestigateResponse, _) = connect()?
                .post(&format!("/v1/tenants/{slug}/investigations"), &body)
                .await?;
            if json {
                emit_json(&raw)?;
            } else {
                emit(&render::investigation_table(&answer));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Evidence { slug, since, out } => {
            let client = connect_as(AUDITOR_ROLE)?;
            let (raw, verified) = signed::fetch(&client, &evidence_path(&slug, since)).await?;
            signed::save(&out, &raw)?;
            if json {
                let mut v = signed::verified_json(&verified);
                v["out"] = out.display().to_string().into();
                v["sections"] = signed::section_statuses(&verified).into();
                emit_json(&v)?;
            } else {
                emit(&signed::evidence_summary(&verified, &out));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { file, public_key } => {
            let verified = signed::verify_file(&file, public_key.as_deref())?;
            if json {
                emit_json(&signed::verified_json(&verified))?;
            } else {
                emit(&signed::verified_line(&verified));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Operations(OperationsCommand::Show { id, wait }) => {
            let client = connect()?;
            if wait {
                follow(&client, id, json).await
            } else {
                let (op, raw): (Operation, _) = client.get(&format!("/v1/operations/{id}")).await?;
                if json {
                    emit_json(&raw)?;
                } else {
                    emit(&render::operation_details(&op));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
        Command::Secret(SecretCommand::Show { name, version }) => {
            show_secret(&data_dir, &name, version.as_deref(), json)
        }
    }
}

/// `--since`: an RFC 3339 time, in UTC from then on.
fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-01-01T00:00:00Z: {e}"))
}

/// `GET /v1/tenants/{slug}/evidence[?since=...]`; the time is sent in UTC (`Z`), so it needs no
/// escaping in the query.
fn evidence_path(slug: &TenantSlug, since: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let path = format!("/v1/tenants/{slug}/evidence");
    match since {
        Some(t) => format!(
            "{path}?since={}",
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ),
        None => path,
    }
}

/// Output after an operation was accepted (create, offboard), then `--wait` if asked.
async fn started(
    client: &Client,
    accepted: &Accepted,
    raw: &serde_json::Value,
    json: bool,
    wait: bool,
) -> Result<ExitCode, Failure> {
    let op = &accepted.operation;
    if json {
        // With --wait, the single JSON document printed is the finished operation.
        if !wait {
            emit_json(raw)?;
        }
    } else {
        emit(&format!(
            "tenant {}: {}",
            accepted.tenant.slug, accepted.tenant.state
        ));
        emit(&format!("operation {} ({})", op.id, op.kind));
        if !wait {
            emit(&format!(
                "follow it with: tenantctl operations show {} --wait",
                op.id
            ));
        }
    }
    if wait {
        follow(client, op.id, json).await
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// `--wait`: polls the operation, printing each step's state change, until it is terminal.
async fn follow(client: &Client, id: Uuid, json: bool) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let path = format!("/v1/operations/{id}");
    let mut seen: HashMap<String, StepState> = HashMap::new();
    loop {
        let (op, raw): (Operation, _) = client.get(&path).await.map_err(|f| {
            let resume = format!(
                "the operation continues on the server; resume with \
                 `tenantctl operations show {id} --wait`"
            );
            match f.hint {
                Some(h) => Failure {
                    hint: Some(format!("{h}; {resume}")),
                    ..f
                },
                None => f.hint(resume),
            }
        })?;
        if !json {
            for step in &op.steps {
                if step_changed(&mut seen, &step.name, step.state) {
                    emit(&render::step_line(step));
                }
            }
        }
        if op.state.is_terminal() {
            let elapsed = match op.finished_at {
                Some(end) => (end - op.created_at).num_milliseconds().max(0) as f64 / 1000.0,
                None => started.elapsed().as_secs_f64(),
            };
            if json {
                emit_json(&raw)?;
            } else {
                emit(&render::summary_line(&op, elapsed));
            }
            return Ok(if op.state == OperationState::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Records a step's state; true if it is worth a progress line (new and started, or changed).
fn step_changed(seen: &mut HashMap<String, StepState>, name: &str, state: StepState) -> bool {
    match seen.insert(name.to_owned(), state) {
        None => state != StepState::Pending,
        Some(previous) => previous != state,
    }
}

/// The confirmation sent with an offboard request: `--confirm`, else typed at a terminal.
///
/// It must repeat the slug exactly; a mismatch fails here, before anything is sent.
fn resolve_confirm(
    slug: &TenantSlug,
    confirm: Option<String>,
    stdin_is_terminal: bool,
    prompt: impl FnOnce() -> std::io::Result<String>,
) -> Result<String, Failure> {
    let typed = match confirm {
        Some(c) => c,
        None if stdin_is_terminal => prompt()
            .map_err(|e| Failure::new(format!("cannot read the confirmation: {e}")))?
            .trim()
            .to_owned(),
        None => {
            return Err(Failure::new(format!(
                "offboarding {slug} needs a confirmation and stdin is not a terminal"
            ))
            .hint(format!("pass --confirm {slug}")))
        }
    };
    if typed != slug.as_str() {
        return Err(Failure::new(format!(
            "confirmation {typed:?} does not match tenant {slug}; nothing was changed"
        ))
        .hint(format!("type the slug exactly, or pass --confirm {slug}")));
    }
    Ok(typed)
}

fn prompt_confirm(slug: &TenantSlug) -> std::io::Result<String> {
    let mut stderr = std::io::stderr().lock();
    write!(
        stderr,
        "Offboarding removes {slug}'s database, principals and secrets; it cannot be undone.\n\
         Type the tenant slug ({slug}) to confirm: "
    )?;
    stderr.flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line)
}

/// `secret show`: reads the local store under `<data-dir>/secrets` directly.
fn show_secret(
    data_dir: &Path,
    name: &SecretName,
    version: Option<&str>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let dir = data_dir.join("secrets");
    // Opening creates a missing store (and key); a typo in --data-dir must not do that.
    if !dir.is_dir() {
        return Err(
            Failure::new(format!("no local secret store at {}", dir.display())).hint(
                "run this on the control plane's machine, or pass --data-dir (TENANT_CP_DATA_DIR) \
             pointing at its data directory",
            ),
        );
    }
    let store = LocalSecretStore::open(&dir, LocalStoreOptions::default())
        .map_err(|e| Failure::new(e.to_string()))?;
    let secret = store.get_blocking(name, version).map_err(|e| {
        let failure = Failure::new(e.to_string());
        match e {
            SecretError::NotFound { .. } => failure.hint(
                "tenant secrets are named tenant-<slug>-app, -audit-admin and -investigator; \
                 see `tenantctl tenants show SLUG`",
            ),
            _ => failure,
        }
    })?;
    if json {
        let mut value = serde_json::to_value(&secret.properties)
            .map_err(|e| Failure::new(format!("cannot print JSON: {e}")))?;
        if let Some(map) = value.as_object_mut() {
            map.insert("value".to_owned(), secret.value.expose().into());
        }
        emit_json(&value)?;
    } else {
        emit(secret.value.expose());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn slug() -> TenantSlug {
        TenantSlug::parse("acme-corp").unwrap()
    }

    fn no_prompt() -> std::io::Result<String> {
        panic!("must not prompt")
    }

    #[test]
    fn confirm_flag_must_match() {
        assert_eq!(
            resolve_confirm(&slug(), Some("acme-corp".into()), false, no_prompt).unwrap(),
            "acme-corp"
        );
        let err = resolve_confirm(&slug(), Some("acme".into()), true, no_prompt).unwrap_err();
        assert!(err.message.contains("does not match"));
    }

    #[test]
    fn confirm_without_terminal_fails_with_hint() {
        let err = resolve_confirm(&slug(), None, false, no_prompt).unwrap_err();
        assert_eq!(err.hint.as_deref(), Some("pass --confirm acme-corp"));
    }

    #[test]
    fn confirm_prompt_is_trimmed_and_checked() {
        let ok = resolve_confirm(&slug(), None, true, || Ok("acme-corp\n".into()));
        assert_eq!(ok.unwrap(), "acme-corp");
        assert!(resolve_confirm(&slug(), None, true, || Ok(String::new())).is_err());
        assert!(resolve_confirm(&slug(), None, true, || Ok("other\n".into())).is_err());
    }

    #[test]
    fn step_changes_are_reported_once() {
        let mut seen = HashMap::new();
        assert!(!step_changed(&mut seen, "a", StepState::Pending));
        assert!(step_changed(&mut seen, "a", StepState::Running));
        assert!(!step_changed(&mut seen, "a", StepState::Running));
        assert!(step_changed(&mut seen, "a", StepState::Succeeded));
        assert!(step_changed(&mut seen, "b", StepState::Failed));
    }

    #[test]
    fn cli_parses_and_rejects_bad_input() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "offboard",
            "acme-corp",
            "--reason",
            "churn",
            "--json",
        ])
        .unwrap();
        assert!(cli.json);
        assert!(Cli::try_parse_from(["tenantctl", "tenants", "show", "Bad_Slug"]).is_err());
        assert!(Cli::try_parse_from(["tenantctl", "token", "--role", "root"]).is_err());
        assert!(Cli::try_parse_from(["tenantctl", "operations", "show", "nope"]).is_err());
        let cli =
            Cli::try_parse_from(["tenantctl", "tenants", "rotate", "acme-corp", "--emergency"])
                .unwrap();
        assert!(matches!(
            cli.command,
            Command::Tenants(TenantsCommand::Rotate {
                emergency: true,
                wait: false,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["tenantctl", "tenants", "rotations", "Bad_Slug"]).is_err());
        let cli = Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "deletion-certificate",
            "acme-corp",
            "--out",
            "cert.json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Tenants(TenantsCommand::DeletionCertificate { out: Some(_), .. })
        ));
        let cli =
            Cli::try_parse_from(["tenantctl", "verify", "cert.json", "--public-key", "k"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Verify {
                public_key: Some(_),
                ..
            }
        ));
        assert!(Cli::try_parse_from(["tenantctl", "verify"]).is_err());
    }

    #[test]
    fn evidence_needs_an_out_file_and_a_valid_since() {
        let cli = Cli::try_parse_from([
            "tenantctl",
            "evidence",
            "acme-corp",
            "--since",
            "2026-01-01T01:00:00+01:00",
            "--out",
            "evidence.json",
        ])
        .unwrap();
        let Command::Evidence { slug, since, out } = cli.command else {
            panic!("not the evidence command")
        };
        assert_eq!(out, PathBuf::from("evidence.json"));
        assert_eq!(
            evidence_path(&slug, since),
            "/v1/tenants/acme-corp/evidence?since=2026-01-01T00:00:00Z"
        );
        assert_eq!(evidence_path(&slug, None), "/v1/tenants/acme-corp/evidence");
        assert!(Cli::try_parse_from(["tenantctl", "evidence", "acme-corp"]).is_err());
        assert!(Cli::try_parse_from([
            "tenantctl",
            "evidence",
            "acme-corp",
            "--since",
            "yesterday",
            "--out",
            "e.json"
        ])
        .is_err());
    }
}
