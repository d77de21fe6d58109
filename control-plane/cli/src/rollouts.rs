//! `tenantctl rollout`: fleet schema rollouts (role `admin`): start one, watch it wave by wave,
//! pause, resume (failed tenants are tried again), abort.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use api_types::{Rollout, RolloutRequest, RolloutSelector, RolloutState, TenantSlug};
use clap::Subcommand;
use uuid::Uuid;

use crate::client::Client;
use crate::error::Failure;
use crate::render;
use crate::servers::parse_label;

/// The role every rollout command needs.
pub const ROLE: &str = "admin";

/// `tenantctl rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start bringing tenants to a schema version: a canary wave, then waves, halting at a
    /// failure threshold.
    Start {
        /// The version to reach (default: the newest of the release the control plane runs).
        #[arg(long)]
        target_version: Option<i32>,
        /// Tenants in the canary wave, which must fully succeed first (0 for none).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1000))]
        canary: u32,
        /// Tenants per later wave.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100000))]
        wave_size: u32,
        /// Most migrations at once on one database server.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
        max_parallel_per_server: u32,
        /// Halt when this many tenants have failed.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100000))]
        max_failures: u32,
        /// Only tenants on this server (repeatable).
        #[arg(long = "on-server", value_name = "NAME")]
        servers: Vec<String>,
        /// Only tenants on servers with this label key=value (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only this tenant (repeatable).
        #[arg(long = "tenant", value_name = "SLUG")]
        slugs: Vec<TenantSlug>,
        /// Follow it until it stops, printing each wave's progress.
        #[arg(long)]
        wait: bool,
    },
    /// Show rollouts (all, or one with every tenant); `--wait` follows one until it stops.
    Status {
        /// The rollout (default: list every rollout).
        id: Option<Uuid>,
        /// Follow it until it stops.
        #[arg(long, requires = "id")]
        wait: bool,
    },
    /// Stop starting new migrations (running ones finish).
    Pause {
        /// The rollout.
        id: Uuid,
    },
    /// Run a paused or halted rollout again; its failed tenants are tried again.
    Resume {
        /// The rollout.
        id: Uuid,
        /// Follow it until it stops.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a rollout for good: tenants not started are skipped.
    Abort {
        /// The rollout.
        id: Uuid,
    },
}

/// Runs a rollout command; prints the API's JSON with `--json`. A rollout followed to a stop
/// other than `succeeded` exits 1.
pub async fn run(
    client: &Client,
    command: RolloutCommand,
    json: bool,
) -> Result<ExitCode, Failure> {
    let (rollout, raw, wait): (Rollout, serde_json::Value, bool) = match command {
        RolloutCommand::Start {
            target_version,
            canary,
            wave_size,
            max_parallel_per_server,
            max_failures,
            servers,
            labels,
            slugs,
            wait,
        } => {
            let body = RolloutRequest {
                target_version,
                canary,
                wave_size,
                max_parallel_per_server,
                max_failures,
                tenants: RolloutSelector {
                    servers,
                    labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                    slugs,
                },
            };
            let (r, raw) = client.post("/v1/rollouts", &body).await?;
            (r, raw, wait)
        }
        RolloutCommand::Status { id: None, .. } => {
            let (rollouts, raw): (Vec<Rollout>, _) = client.get("/v1/rollouts").await?;
            if json {
                crate::emit_json(&raw)?;
            } else {
                crate::emit(&render::rollout_table(&rollouts));
            }
            return Ok(ExitCode::SUCCESS);
        }
        RolloutCommand::Status { id: Some(id), wait } => {
            let (r, raw) = client.get(&format!("/v1/rollouts/{id}")).await?;
            (r, raw, wait)
        }
        RolloutCommand::Pause { id } => {
            let (r, raw) = client
                .post(&format!("/v1/rollouts/{id}/pause"), &serde_json::json!({}))
                .await?;
            (r, raw, false)
        }
        RolloutCommand::Resume { id, wait } => {
            let (r, raw) = client
                .post(&format!("/v1/rollouts/{id}/resume"), &serde_json::json!({}))
                .await?;
            (r, raw, wait)
        }
        RolloutCommand::Abort { id } => {
            let (r, raw) = client
                .post(&format!("/v1/rollouts/{id}/abort"), &serde_json::json!({}))
                .await?;
            (r, raw, false)
        }
    };
    if !wait {
        if json {
            crate::emit_json(&raw)?;
        } else {
            crate::emit(&render::rollout_details(&rollout));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let last = follow(client, rollout.id, json).await?;
    Ok(if last.state == RolloutState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Polls a rollout until it is no longer running and nothing of it runs, printing a progress
/// line per wave whenever the counts change (on a terminal and off it).
async fn follow(client: &Client, id: Uuid, json: bool) -> Result<Rollout, Failure> {
    let mut last_line = String::new();
    loop {
        let (rollout, raw): (Rollout, serde_json::Value) =
            client.get(&format!("/v1/rollouts/{id}")).await?;
        let running = rollout.counts.get("running").copied().unwrap_or(0);
        let done = rollout.state != RolloutState::Running && running == 0;
        if !json {
            let line = render::rollout_progress(&rollout);
            if line != last_line {
                if std::io::stderr().is_terminal() || !done {
                    eprintln!("{line}");
                }
                last_line = line;
            }
        }
        if done {
            if json {
                crate::emit_json(&raw)?;
            } else {
                crate::emit(&render::rollout_details(&rollout));
            }
            return Ok(rollout);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `tenantctl fleet ...`.
#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Active tenants per schema version, and every tenant whose schema drifted (the objects
    /// that differ from its version's fingerprint). Exits 1 when a tenant drifted.
    Schema,
}

/// Runs a fleet command.
pub async fn run_fleet(
    client: &Client,
    command: FleetCommand,
    json: bool,
) -> Result<ExitCode, Failure> {
    match command {
        FleetCommand::Schema => {
            let (fleet, raw): (api_types::FleetSchema, serde_json::Value) =
                client.get("/v1/fleet/schema").await?;
            if json {
                crate::emit_json(&raw)?;
            } else {
                crate::emit(&render::fleet_schema(&fleet));
            }
            Ok(if fleet.drifted > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
