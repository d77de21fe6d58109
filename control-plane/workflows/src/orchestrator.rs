//! The entry points the API calls: validate the request against the tenant's state, record the
//! operation in the catalog, and hand it to the runner.

use api_types::{OperationKind, TenantSlug, TenantState};
use catalog::{NewOperation, NewTenant, OperationRecord, TenantRecord};
use serde_json::json;

use crate::{tenant_offboard, tenant_onboard, Runner, WorkflowError};

/// Starts workflows.
#[derive(Clone)]
pub struct Orchestrator {
    runner: Runner,
}

impl Orchestrator {
    /// An orchestrator that runs operations on `runner`.
    pub fn new(runner: Runner) -> Self {
        Orchestrator { runner }
    }

    /// The runner.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Records a new tenant in `provisioning` with its onboarding operation and starts it.
    pub async fn onboard(
        &self,
        slug: TenantSlug,
        display_name: String,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<(TenantRecord, OperationRecord), WorkflowError> {
        let svc = self.runner.services();
        let names = svc.engine.names(&slug);
        let (tenant, op) = svc
            .catalog
            .create_tenant(
                NewTenant {
                    slug,
                    display_name,
                    engine: svc.engine.name().to_owned(),
                    server: svc.engine.server(),
                    database: names.database,
                },
                NewOperation {
                    kind: OperationKind::Onboard,
                    steps: tenant_onboard::steps(svc.engine.contained_principals()).to_vec(),
                    params: json!({}),
                    actor: actor.to_owned(),
                    request_id,
                },
            )
            .await?;
        self.runner.spawn(op.id);
        Ok((tenant, op))
    }

    /// Starts offboarding a tenant: allowed when it is active, failed (an onboarding that did
    /// not finish), or offboarding (a previous offboarding failed; this one continues it).
    pub async fn offboard(
        &self,
        tenant: &TenantRecord,
        reason: String,
        actor: &str,
        request_id: Option<String>,
    ) -> Result<OperationRecord, WorkflowError> {
        match tenant.state {
            TenantState::Active | TenantState::Failed | TenantState::Offboarding => {}
            TenantState::Provisioning => {
                return Err(WorkflowError::Conflict(format!(
                    "tenant {} is still being onboarded; wait for its operation to finish",
                    tenant.slug
                )))
            }
            TenantState::Offboarded => {
                return Err(WorkflowError::Conflict(format!(
                    "tenant {} is already offboarded",
                    tenant.slug
                )))
            }
        }
        if tenant.released_at.is_some() {
            return Err(WorkflowError::Conflict(format!(
                "tenant {} was rolled back; nothing is left to offboard",
                tenant.slug
            )));
        }
        let svc = self.runner.services();
        let op = svc
            .catalog
            .start_operation(
                tenant.id,
                NewOperation {
                    kind: OperationKind::Offboard,
                    steps: tenant_offboard::STEPS.to_vec(),
                    params: json!({"reason": reason}),
                    actor: actor.to_owned(),
                    request_id,
                },
                TenantState::Offboarding,
            )
            .await?;
        self.runner.spawn(op.id);
        Ok(op)
    }
}
