//! Layer: services (beside `service.rs`). The API's views of catalog rows that several
//! resources answer with: a tenant (tenants, rotations) and an operation (tenants, rotations,
//! operations), and the `202 Accepted` answer of a request that started an operation. A view
//! only one resource uses stays in that resource's handler module.

use api_types::{Accepted, Operation, Tenant, TenantSecrets};
use axum::http::StatusCode;
use axum::Json;
use catalog::{OperationRecord, TenantRecord};

/// The answer to a request that started an operation: `202 Accepted` with the tenant and the
/// operation to follow (`GET /v1/operations/{id}`).
pub fn accepted(tenant: &TenantRecord, op: &OperationRecord) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            tenant: tenant_view(tenant),
            operation: operation_view(op),
        }),
    )
}

/// The API view of an operation, with its workflow's hint when it did not succeed.
pub fn operation_view(op: &OperationRecord) -> Operation {
    let mut view = op.to_api();
    if matches!(
        op.state,
        api_types::OperationState::Failed | api_types::OperationState::RolledBack
    ) {
        view.hint = workflows::registry::find(&op.kind)
            .and_then(|w| w.hint(op.state, op.tenant_slug.as_str()));
    }
    view
}

/// The API view of a tenant row.
pub fn tenant_view(t: &TenantRecord) -> Tenant {
    Tenant {
        id: t.id,
        slug: t.slug.clone(),
        display_name: t.display_name.clone(),
        state: t.state,
        engine: t.engine.clone(),
        server: t.server.clone(),
        database: t.database.clone(),
        schema_version: t.schema_version,
        created_at: t.created_at,
        secrets: TenantSecrets::for_slug(&t.slug),
        credentials: t.credential_health(),
        retained_until: t
            .retained_until
            .filter(|_| t.state == api_types::TenantState::Retained),
    }
}
