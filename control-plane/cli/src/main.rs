//! `tenantctl`: the operator CLI of the tenant control plane.

mod client;
mod config;
mod confirm;
mod error;
mod progress;
mod reconciliation;
mod render;
mod rollouts;
mod servers;
mod signed;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use api_types::{
    Accepted, CreateTenantRequest, InvestigateRequest, InvestigateResponse, MigrateRequest,
    OffboardRequest, Operation, RestoreRequest, RotateRequest, Rotation, RotationMode, Tenant,
    TenantSlug,
};
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand, ValueEnum};
use secrets::{LocalSecretStore, LocalStoreOptions, SecretError, SecretName};
use uuid::Uuid;

use client::{Client, AUDITOR_ROLE, OPERATOR_ROLE};
use config::{Flags, Settings, TokenValue};
use confirm::Destructive;
use error::Failure;
use progress::Style;

/// Operator CLI for the tenant control plane.
#[derive(Debug, Parser)]
#[command(name = "tenantctl", version, about)]
struct Cli {
    /// Base URL of the control plane [env: TENANTCTL_SERVER; config: server; default:
    /// http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Bearer token [env: TENANTCTL_TOKEN; config: token or token_command]; without one, a
    /// token is minted from `<data-dir>/jwt-hs256.key` (local mode).
    #[arg(long, global = true, value_name = "TOKEN", hide_default_value = true)]
    token: Option<TokenValue>,
    /// The control plane's data directory: local signing key and secret store [env:
    /// TENANT_CP_DATA_DIR; config: data_dir; default: .data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The config file [env: TENANTCTL_CONFIG; default:
    /// $XDG_CONFIG_HOME/tenantctl/config.toml, else ~/.config/tenantctl/config.toml].
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the API's JSON (only that, on stdout) instead of human-readable output.
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
    /// The fleet's database servers: register, list, show, drain, undrain, remove (role
    /// `admin`).
    #[command(subcommand)]
    Servers(servers::ServersCommand),
    /// Fleet schema rollouts: start, status, pause, resume, abort (role `admin`).
    #[command(subcommand)]
    Rollout(rollouts::RolloutCommand),
    /// The fleet's schema: tenants per version and schema drift (role `admin`).
    #[command(subcommand)]
    Fleet(rollouts::FleetCommand),
    /// The catalog compared with the servers and the secret store: show, run, repair (role
    /// `admin`).
    #[command(subcommand)]
    Reconciliation(reconciliation::ReconciliationCommand),
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
    /// Show the resolved settings (server, token, data dir) and where each came from.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script, e.g. `tenantctl completions bash > ~/.local/share/bash-completion/completions/tenantctl`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Offboarded tenants' audit logs, kept in the archive store.
    #[command(subcommand)]
    Audit(AuditCommand),
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

/// Tenants per page when `tenantctl tenants list` reads the list.
const LIST_PAGE: usize = 500;

/// A tenant state named on the command line.
fn parse_tenant_state(s: &str) -> Result<api_types::TenantState, String> {
    s.parse()
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
        /// Place it on a server of this engine only.
        #[arg(long, value_enum)]
        engine: Option<servers::Engine>,
        /// Place it on a server carrying this label key=value (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = servers::parse_label)]
        labels: Vec<(String, String)>,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// List tenants, newest first (every page of them).
    List {
        /// Only tenants in this state: provisioning, active, offboarding, offboarded, failed.
        #[arg(long, value_parser = parse_tenant_state)]
        state: Option<api_types::TenantState>,
        /// Only tenants on this database server.
        #[arg(long)]
        server: Option<String>,
    },
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
        /// Repeat the slug to confirm (asked interactively when stdin is a terminal; without a
        /// terminal this flag is required).
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
        /// Export the tenant's business data first (to the archive store; the deletion
        /// certificate names the export).
        #[arg(long)]
        export: bool,
        /// Keep the database for a restore window first (ISO 8601: P7D, PT12H; P0D: remove at
        /// once); `tenants restore` brings the tenant back within it. Default: the server's
        /// offboard_retention.
        #[arg(long, value_name = "DURATION")]
        retention: Option<api_types::Retention>,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Bring a retained tenant back within its restore window (new passwords for its logins).
    Restore {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Why; recorded in the audit log.
        #[arg(long)]
        reason: String,
        /// Repeat the slug to confirm (asked interactively when stdin is a terminal; without a
        /// terminal this flag is required).
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Rotate a tenant's credentials (the app login alternates; see README).
    Rotate {
        /// The tenant's slug.
        slug: TenantSlug,
        /// `emergency` disables the previous app login at once and ends its sessions (a
        /// suspected leak); it asks you to type the slug unless --confirm is given.
        #[arg(long, value_enum, default_value_t = Mode::Scheduled)]
        mode: Mode,
        /// Short for --mode emergency.
        #[arg(long, conflicts_with = "mode")]
        emergency: bool,
        /// Repeat the slug to confirm an emergency rotation.
        #[arg(long, value_name = "SLUG")]
        confirm: Option<String>,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Bring a tenant's database to a schema version of the release the control plane runs
    /// (needs the admin role; see README, "Changing the tenant schema").
    Migrate {
        /// The tenant's slug.
        slug: TenantSlug,
        /// The version to reach (default: the release's newest).
        #[arg(long, value_name = "VERSION")]
        target_version: Option<i32>,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// Export an active tenant's business data to the archive store (JSON Lines parts and a
    /// signed manifest); the operation's output names the manifest.
    Export {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Follow the operation until it finishes; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
    },
    /// List a tenant's exports, newest first (`--json`: the API's answer).
    Exports {
        /// The tenant's slug.
        slug: TenantSlug,
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
enum AuditCommand {
    /// Audit archives (the whole audit log of an offboarded tenant, signed).
    #[command(subcommand)]
    Archive(ArchiveCommand),
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    /// Fetch an offboarded tenant's audit archive (needs the auditor role), check it, and write
    /// it byte for byte to a file.
    Get {
        /// The tenant's slug.
        slug: TenantSlug,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a saved audit archive offline: signature, every hash and link of the chain, and
    /// (with --sha256) that it is the file the deletion certificate names.
    Verify {
        /// The archive, as `audit archive get --out` wrote it.
        file: PathBuf,
        /// The trusted public key (as for `tenantctl verify`).
        #[arg(long, value_name = "KEY")]
        public_key: Option<String>,
        /// The digest the deletion certificate quotes (`audit_archive.sha256`).
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
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

/// `tenants rotate --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A routine rotation: the previous app login keeps working until the next rotation.
    Scheduled,
    /// A suspected leak: the previous app login is disabled and its sessions end at once.
    Emergency,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the resolved settings and where each came from (never the token).
    Show,
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
pub(crate) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

pub(crate) fn emit_json(value: &serde_json::Value) -> Result<(), Failure> {
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
        config,
        json,
        command,
    } = cli;
    if let Command::Completions { shell } = command {
        return completions(shell);
    }
    let flags = Flags {
        server,
        token,
        data_dir,
        config,
    };
    let settings = config::resolve(&flags, &|name| std::env::var(name).ok())?;
    let Settings {
        server: (server, _),
        data_dir: (data_dir, _),
        token,
        ..
    } = &settings;
    let connect_as = |role: &str| -> Result<Client, Failure> {
        let (token, source) = client::resolve_token(token, data_dir, role)?;
        Ok(Client::new(server, &token, source)?.for_role(role))
    };
    let connect = || connect_as(OPERATOR_ROLE);
    let style = Style::pick(json, std::io::stderr().is_terminal());
    match command {
        Command::Completions { shell } => completions(shell),
        Command::Config(ConfigCommand::Show) => {
            if json {
                emit_json(&settings.describe_json())?;
            } else {
                emit(&settings.describe());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            role,
            subject,
            ttl_secs,
        } => {
            let subject = subject.unwrap_or_else(client::default_subject);
            let token = client::mint(data_dir, &role, &subject, ttl_secs)?;
            emit(&token);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenants(TenantsCommand::Create {
            slug,
            display_name,
            engine,
            labels,
            wait,
        }) => {
            let client = connect()?;
            let placement =
                (engine.is_some() || !labels.is_empty()).then(|| api_types::PlacementRequest {
                    engine: engine.map(Into::into),
                    labels: labels.into_iter().collect(),
                });
            let body = CreateTenantRequest {
                slug: slug.to_string(),
                display_name,
                placement,
            };
            let (accepted, raw): (Accepted, _) = client.post("/v1/tenants", &body).await?;
            started(&client, &accepted, &raw, style, wait).await
        }
        Command::Servers(command) => servers::run(&connect_as(servers::ROLE)?, command, json).await,
        Command::Rollout(command) => {
            rollouts::run(&connect_as(rollouts::ROLE)?, command, json).await
        }
        Command::Fleet(command) => {
            rollouts::run_fleet(&connect_as(rollouts::ROLE)?, command, json).await
        }
        Command::Reconciliation(command) => {
            reconciliation::run(&connect_as(reconciliation::ROLE)?, command, json).await
        }
        Command::Tenants(TenantsCommand::List { state, server }) => {
            let client = connect()?;
            // Every page: the next one starts after the last tenant of a full page.
            let mut tenants: Vec<Tenant> = Vec::new();
            let mut raw: Vec<serde_json::Value> = Vec::new();
            loop {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(s) = state {
                    query.append_pair("state", s.as_str());
                }
                if let Some(s) = &server {
                    query.append_pair("server", s);
                }
                query.append_pair("limit", &LIST_PAGE.to_string());
                if let Some(last) = tenants.last() {
                    query.append_pair("after", &last.id.to_string());
                }
                let (page, page_raw): (Vec<Tenant>, serde_json::Value) = client
                    .get(&format!("/v1/tenants?{}", query.finish()))
                    .await?;
                let full = page.len() == LIST_PAGE;
                tenants.extend(page);
                if let serde_json::Value::Array(items) = page_raw {
                    raw.extend(items);
                }
                if !full {
                    break;
                }
            }
            let raw = serde_json::Value::Array(raw);
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
            export,
            retention,
            wait,
        }) => {
            let action = Destructive::Offboard;
            // A wrong --confirm, or no terminal to ask at, fails before anything else; the
            // token is resolved before the prompt so a missing one is reported first.
            let plan = confirm::plan(
                &slug,
                action,
                confirm.as_deref(),
                std::io::stdin().is_terminal(),
            )?;
            let client = connect()?;
            let confirmed = plan.resolve(&slug, || confirm::prompt_terminal(&slug, action))?;
            let body = OffboardRequest {
                confirm: confirmed.into_string(),
                reason,
                export,
                retention,
            };
            let (accepted, raw): (Accepted, _) = client
                .post(&format!("/v1/tenants/{slug}/offboard"), &body)
                .await?;
            started(&client, &accepted, &raw, style, wait).await
        }
        Command::Tenants(TenantsCommand::Restore {
            slug,
            reason,
            confirm,
            wait,
        }) => {
            let action = Destructive::Restore;
            let plan = confirm::plan(
                &slug,
                action,
                confirm.as_deref(),
                std::io::stdin().is_terminal(),
            )?;
            let client = connect()?;
            let confirmed = plan.resolve(&slug, || confirm::prompt_terminal(&slug, action))?;
            let body = RestoreRequest {
                confirm: confirmed.into_string(),
                reason,
            };
            let (accepted, raw): (Accepted, _) = client
                .post(&format!("/v1/tenants/{slug}/restore"), &body)
                .await?;
            started(&client, &accepted, &raw, style, wait).await
        }
        Command::Tenants(TenantsCommand::Rotate {
            slug,
            mode,
            emergency,
            confirm,
            wait,
        }) => {
            let mode = if emergency { Mode::Emergency } else { mode };
            let action = Destructive::EmergencyRotation;
            let plan = match (mode, confirm.as_deref()) {
                (Mode::Emergency, given) => Some(confirm::plan(
                    &slug,
                    action,
                    given,
                    std::io::stdin().is_terminal(),
                )?),
                // A scheduled rotation needs no confirmation, but a wrong one is still refused.
                (Mode::Scheduled, Some(given)) => {
                    confirm::plan(&slug, action, Some(given), false)?;
                    None
                }
                (Mode::Scheduled, None) => None,
            };
            let client = connect()?;
            if let Some(plan) = plan {
                plan.resolve(&slug, || confirm::prompt_terminal(&slug, action))?;
            }
            let body = RotateRequest {
                mode: match mode {
                    Mode::Scheduled => RotationMode::Scheduled,
                    Mode::Emergency => RotationMode::Emergency,
                },
            };
            let (accepted, raw): (Accepted, _) = client
                .post(&format!("/v1/tenants/{slug}/rotate"), &body)
                .await?;
            started(&client, &accepted, &raw, style, wait).await
        }
        Command::Tenants(TenantsCommand::Migrate {
            slug,
            target_version,
            wait,
        }) => {
            // Migrations are the admin's, like the server registry.
            let client = connect_as(servers::ROLE)?;
            let (accepted, raw): (Accepted, _) = client
                .post(
                    &format!("/v1/tenants/{slug}/migrate"),
                    &MigrateRequest { target_version },
                )
                .await?;
            started(&client, &accepted, &raw, style, wait).await
        }
        Command::Tenants(TenantsCommand::Export { slug, wait }) => {
            let client = connect()?;
            let (accepted, raw): (Accepted, _) = client
                .post(
                    &format!("/v1/tenants/{slug}/exports"),
                    &serde_json::json!({}),
                )
                .await?;
            started(&client, &accepted, &raw, style, wait).await
        }
        Command::Tenants(TenantsCommand::Exports { slug }) => {
            let (exports, raw): (Vec<api_types::TenantExport>, _) = connect()?
                .get(&format!("/v1/tenants/{slug}/exports"))
                .await?;
            if json {
                emit_json(&raw)?;
            } else {
                emit(&render::export_table(&exports));
            }
            Ok(ExitCode::SUCCESS)
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
        Command::Audit(AuditCommand::Archive(ArchiveCommand::Get { slug, out })) => {
            let client = connect_as(AUDITOR_ROLE)?;
            let bytes = client
                .get_bytes(&format!("/v1/tenants/{slug}/audit-archive"))
                .await?;
            // Saved once its signature holds, whatever its chain says: the archive of a log
            // broken inside the database is the evidence of it (the check below then fails).
            let envelope: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Failure::new(format!("the audit archive of {slug} is not JSON: {e}"))
            })?;
            if evidence::verify_document(&envelope, None).is_ok() {
                signed::save_bytes(&out, &bytes)?;
            }
            let checked = signed::check_archive(&out, &bytes, None, None)?;
            if json {
                let mut v = signed::archive_json(&checked);
                v["out"] = out.display().to_string().into();
                emit_json(&v)?;
            } else {
                emit(&format!(
                    "{}
written to {}; check it later with `tenantctl audit archive verify {}`",
                    signed::archive_summary(&checked),
                    out.display(),
                    out.display()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit(AuditCommand::Archive(ArchiveCommand::Verify {
            file,
            public_key,
            sha256,
        })) => {
            let bytes = std::fs::read(&file)
                .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
            let checked =
                signed::check_archive(&file, &bytes, public_key.as_deref(), sha256.as_deref())?;
            if json {
                emit_json(&signed::archive_json(&checked))?;
            } else {
                emit(&signed::archive_summary(&checked));
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
                progress::follow(&client, id, style).await?;
                Ok(ExitCode::SUCCESS)
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
            show_secret(data_dir, &name, version.as_deref(), json)
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

/// Output after an operation was accepted (create, offboard, rotate), then `--wait` if asked.
async fn started(
    client: &Client,
    accepted: &Accepted,
    raw: &serde_json::Value,
    style: Style,
    wait: bool,
) -> Result<ExitCode, Failure> {
    let op = &accepted.operation;
    if style == Style::Quiet {
        // With --wait, the single JSON document printed is the finished operation.
        if !wait {
            emit_json(raw)?;
        }
    } else {
        emit(&format!(
            "tenant {}: {}; operation {} ({}) started",
            accepted.tenant.slug, accepted.tenant.state, op.id, op.kind
        ));
        if !wait {
            emit(&format!(
                "follow it with: tenantctl operations show {} --wait",
                op.id
            ));
        }
    }
    if wait {
        progress::follow(client, op.id, style).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `completions SHELL`: the script on stdout.
fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    use clap::CommandFactory as _;
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tenantctl", &mut out);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(&out);
    let _ = stdout.flush();
    Ok(ExitCode::SUCCESS)
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
        let cli = Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "migrate",
            "acme-corp",
            "--target-version",
            "100",
            "--wait",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Tenants(TenantsCommand::Migrate {
                target_version: Some(100),
                wait: true,
                ..
            })
        ));
        assert!(Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "migrate",
            "acme-corp",
            "--target-version",
            "newest"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "tenantctl",
            "rollout",
            "start",
            "--canary",
            "5",
            "--wave-size",
            "50",
            "--label",
            "tier=b",
            "--tenant",
            "acme-corp",
            "--wait",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Rollout(rollouts::RolloutCommand::Start {
                canary: 5,
                wave_size: 50,
                max_parallel_per_server: 4,
                max_failures: 3,
                wait: true,
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["tenantctl", "rollout", "start", "--wave-size", "0"]).is_err()
        );
        assert!(Cli::try_parse_from(["tenantctl", "rollout", "pause", "not-a-uuid"]).is_err());
        assert!(Cli::try_parse_from(["tenantctl", "rollout", "status", "--wait"]).is_err());
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
        let cli = Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "rotate",
            "acme-corp",
            "--mode",
            "emergency",
            "--confirm",
            "acme-corp",
            "--wait",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Tenants(TenantsCommand::Rotate {
                mode: Mode::Emergency,
                confirm: Some(_),
                wait: true,
                ..
            })
        ));
        assert!(Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "rotate",
            "acme-corp",
            "--mode",
            "scheduled",
            "--emergency"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "tenantctl",
            "tenants",
            "rotate",
            "acme-corp",
            "--mode",
            "now"
        ])
        .is_err());
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

    #[test]
    fn completions_generate_for_every_shell() {
        use clap::CommandFactory as _;
        for shell in clap_complete::Shell::value_variants() {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "tenantctl", &mut out);
            let text = String::from_utf8(out).unwrap();
            // Every shell's script knows the nested subcommands and the global flags.
            for word in ["tenantctl", "offboard", "deletion-certificate", "server"] {
                assert!(text.contains(word), "{shell}: no {word} in the script");
            }
        }
        let cli = Cli::try_parse_from(["tenantctl", "completions", "zsh"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Completions {
                shell: clap_complete::Shell::Zsh
            }
        ));
        assert!(Cli::try_parse_from(["tenantctl", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn the_token_flag_is_not_in_debug_output() {
        let cli =
            Cli::try_parse_from(["tenantctl", "--token", "s3cret", "config", "show"]).unwrap();
        assert!(!format!("{cli:?}").contains("s3cret"));
        assert_eq!(cli.token.unwrap().expose(), "s3cret");
    }
}
