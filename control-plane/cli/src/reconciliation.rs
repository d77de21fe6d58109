//! `tenantctl reconciliation`: the catalog compared with the servers and the secret store (role
//! `admin`): the newest report, a pass now, the repair of one orphan.

use std::process::ExitCode;

use api_types::{ReconciliationReport, RepairOutcome};
use clap::Subcommand;

use crate::client::Client;
use crate::error::Failure;
use crate::render;

/// The role every reconciliation command needs (`show` also works for `auditor`).
pub const ROLE: &str = "admin";

/// `tenantctl reconciliation ...`.
#[derive(Debug, Subcommand)]
pub enum ReconciliationCommand {
    /// The newest report (exits 1 when it has findings).
    Show,
    /// Run a pass now and show its report (exits 1 when it has findings).
    Run,
    /// Drop the orphan a finding of the newest report names, after checking it again.
    Repair {
        /// The finding's id (from `show` or `run`).
        id: String,
    },
}

/// Runs a reconciliation command; prints the API's JSON with `--json`.
pub async fn run(
    client: &Client,
    command: ReconciliationCommand,
    json: bool,
) -> Result<ExitCode, Failure> {
    let (report, raw): (ReconciliationReport, serde_json::Value) = match command {
        ReconciliationCommand::Show => client.get("/v1/reconciliation").await?,
        ReconciliationCommand::Run => {
            client
                .post("/v1/reconciliation/run", &serde_json::json!({}))
                .await?
        }
        ReconciliationCommand::Repair { id } => {
            let (outcome, raw): (RepairOutcome, serde_json::Value) = client
                .post(
                    &format!("/v1/reconciliation/findings/{id}/repair"),
                    &serde_json::json!({}),
                )
                .await?;
            if json {
                crate::emit_json(&raw)?;
            } else if outcome.dropped {
                crate::emit(&format!(
                    "dropped {} {} on {}",
                    outcome.finding.kind.as_str(),
                    outcome.finding.object,
                    outcome.finding.server.as_deref().unwrap_or("-")
                ));
            } else {
                crate::emit(&format!(
                    "{} was already gone; nothing was dropped",
                    outcome.finding.object
                ));
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        crate::emit_json(&raw)?;
    } else {
        crate::emit(&render::reconciliation(&report));
    }
    Ok(if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
