//! Every workflow the control plane runs, in one list. The runner finds an operation's steps,
//! failure rule and tenant transitions here; the orchestrator checks parameters and start states
//! here; the OpenAPI document lists the kinds from here; the API attaches each kind's hint for
//! tenantctl from here. Adding a workflow adds one line below.

use std::sync::LazyLock;

use api_types::OperationKind;

use crate::workflow::{workflow, WorkflowDef};
use crate::{
    tenant_export, tenant_migrate, tenant_offboard, tenant_onboard, tenant_restore, tenant_retain,
    tenant_rotate,
};

static REGISTRY: LazyLock<Vec<WorkflowDef>> = LazyLock::new(|| {
    vec![
        workflow::<tenant_onboard::Onboard>(),
        workflow::<tenant_offboard::Offboard>(),
        workflow::<tenant_rotate::Rotate>(),
        workflow::<tenant_migrate::Migrate>(),
        workflow::<tenant_export::Export>(),
        workflow::<tenant_retain::Retain>(),
        workflow::<tenant_restore::Restore>(),
    ]
});

/// Every registered workflow.
pub fn registry() -> &'static [WorkflowDef] {
    &REGISTRY
}

/// The workflow of a kind.
pub fn find(kind: &OperationKind) -> Option<&'static WorkflowDef> {
    registry().iter().find(|w| &w.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn kinds_and_step_names_are_well_formed_and_unique() {
        let mut kinds = HashSet::new();
        for w in registry() {
            assert!(OperationKind::is_valid(w.kind.as_str()), "{}", w.kind);
            assert!(kinds.insert(w.kind.clone()), "{} twice", w.kind);
            let names = w.step_names();
            let unique: HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{}: a step name twice", w.kind);
            for name in names {
                assert!(
                    name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{}: step {name}",
                    w.kind
                );
                assert!(w.step(name).is_some());
            }
        }
    }
}
