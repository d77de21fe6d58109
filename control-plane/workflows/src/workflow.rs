//! Workflows as types, in the spirit of omicron's sagas.
//!
//! A [`Step`] is a type: its name, its action, its undo, and the typed value it records for
//! retries and later steps ([`Step::Output`], read back with [`StepContext::output`] or, from
//! another crate, [`output_of`]). A [`Workflow`] is a type: its kind, its typed parameters, its
//! steps in order, what a failed step does ([`OnFailure`]), which tenant states it may start from
//! and which it leaves behind. [`WorkflowDef`] is the same description with the types erased, so
//! one [`crate::registry`] can hold every workflow and the runner, the orchestrator, the OpenAPI
//! document and the API's operation view read it; nothing else matches on kinds or step names.
//!
//! Adding a workflow is one file (`verb_object.rs`: its steps and its `Workflow` impl) plus one
//! line in `registry.rs`, plus its route if the API starts it.

use std::future::Future;
use std::pin::Pin;

use api_types::{OperationKind, OperationState, TenantState};
use async_trait::async_trait;
use catalog::{OperationRecord, TenantTransition};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{StepContext, StepError};

/// A boxed future of a step's action or undo.
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send + 'a>>;

/// One step of a workflow: an idempotent action, an "ensure absent" undo, and a typed output.
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// The step's name, stored in the catalog and shown in the API.
    const NAME: &'static str;
    /// What the step records (never a secret value). `()` records nothing.
    type Output: Serialize + DeserializeOwned + Send + Sync;

    /// Does the step's work. It may run more than once (a retry, a crash, a `twice` fault), so it
    /// must converge; a value it must not change between runs (a name, a plan) is saved with
    /// [`StepContext::save`] before the side effect and read back with [`StepContext::output`].
    /// The returned output is recorded when the step succeeds.
    async fn action(ctx: &StepContext<'_>) -> Result<Self::Output, StepError>;

    /// Makes sure what the action may have created is gone, whether it ran, ran half or not at
    /// all. The default: the step creates nothing that needs undoing.
    async fn undo(_ctx: &StepContext<'_>) -> Result<(), StepError> {
        Ok(())
    }
}

/// What a failed step does to its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Undo every started step in reverse ("ensure absent"); the operation ends `rolled_back`.
    Undo,
    /// Stop; the operation ends `failed` and starting the workflow again continues it.
    Stop,
}

/// A step with its type erased, as the runner drives it.
#[derive(Clone, Copy)]
pub struct StepDef {
    /// The step's name.
    pub name: &'static str,
    action: for<'a, 'b> fn(&'a StepContext<'b>) -> StepFuture<'a, Option<Value>>,
    undo: for<'a, 'b> fn(&'a StepContext<'b>) -> StepFuture<'a, ()>,
}

impl std::fmt::Debug for StepDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepDef").field("name", &self.name).finish()
    }
}

fn erased_action<'a, 'b, S: Step>(ctx: &'a StepContext<'b>) -> StepFuture<'a, Option<Value>> {
    Box::pin(async move {
        let output = S::action(ctx).await?;
        let value = serde_json::to_value(&output).map_err(|e| {
            StepError::permanent(format!("step {}: its output is not JSON: {e}", S::NAME))
        })?;
        Ok((!value.is_null()).then_some(value))
    })
}

fn erased_undo<'a, 'b, S: Step>(ctx: &'a StepContext<'b>) -> StepFuture<'a, ()> {
    S::undo(ctx)
}

/// The erased form of step `S`, for a workflow's step list.
pub fn step<S: Step>() -> StepDef {
    StepDef {
        name: S::NAME,
        action: erased_action::<S>,
        undo: erased_undo::<S>,
    }
}

impl StepDef {
    /// Runs the action; `Some(output)` is recorded when the step succeeds.
    pub fn action<'a, 'b>(&self, ctx: &'a StepContext<'b>) -> StepFuture<'a, Option<Value>> {
        (self.action)(ctx)
    }

    /// Runs the undo.
    pub fn undo<'a, 'b>(&self, ctx: &'a StepContext<'b>) -> StepFuture<'a, ()> {
        (self.undo)(ctx)
    }
}

/// What a workflow does to its tenant when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndState {
    /// The tenant's state afterwards.
    pub state: TenantState,
    /// Whether nothing of the tenant is left anywhere, so its slug is free again.
    pub released: bool,
}

/// A workflow.
pub trait Workflow: Send + Sync + 'static {
    /// Its operation kind.
    const KIND: OperationKind;
    /// One line on what it does (API, OpenAPI, tenantctl).
    const DESCRIPTION: &'static str;
    /// What it is started with (stored as the operation's params). `Default` is the example
    /// the generic test helpers start it with.
    type Params: Serialize + DeserializeOwned + Default + Send + Sync;
    /// What a failed step does.
    const ON_FAILURE: OnFailure;
    /// The tenant states it may start from (checked under the tenant's row lock; empty: it
    /// creates the tenant).
    const ALLOWED_FROM: &'static [TenantState];
    /// The tenant's state while it runs (`None`: unchanged).
    const RUNNING_STATE: Option<TenantState>;
    /// The tenant's state when it succeeds (`None`: unchanged).
    const ON_SUCCESS: Option<EndState>;
    /// The tenant's state when it ends `failed` (a failed step under [`OnFailure::Stop`], or an
    /// undo that could not finish); `None`: unchanged.
    const ON_FAILED: Option<EndState>;
    /// The tenant's state when every started step was undone.
    const ON_ROLLED_BACK: Option<EndState>;

    /// Every step the workflow may have, whatever the engine (the runner finds a stored step's
    /// definition here).
    fn all_steps() -> Vec<StepDef>;

    /// The steps in order, for the engine named `engine` (`postgres`, `sqlserver`): the tenant's
    /// server's. Fixed when the operation is created. Defaults to [`Workflow::all_steps`], for a
    /// workflow whose steps are the same on every engine.
    fn steps(_engine: &str) -> Vec<StepDef> {
        Self::all_steps()
    }

    /// The schema version the tenant has after success, read from the steps' outputs.
    fn schema_version(_op: &OperationRecord) -> Option<i32> {
        None
    }

    /// When the tenant's restore window ends, for a workflow whose success leaves it
    /// `retained` (read from the operation's parameters).
    fn retained_until(_op: &OperationRecord) -> Option<chrono::DateTime<chrono::Utc>> {
        None
    }

    /// What the operator should do when an operation of this kind ended in `state` (tenantctl
    /// shows it after a failure).
    fn hint(state: OperationState, slug: &str) -> Option<String>;
}

/// A workflow with its types erased: what the registry holds.
#[derive(Clone)]
pub struct WorkflowDef {
    /// Its kind.
    pub kind: OperationKind,
    /// One line on what it does.
    pub description: &'static str,
    /// What a failed step does.
    pub on_failure: OnFailure,
    /// The tenant states it may start from (empty: it creates the tenant).
    pub allowed_from: &'static [TenantState],
    /// The tenant's state while it runs.
    pub running_state: Option<TenantState>,
    on_success: Option<EndState>,
    on_failed: Option<EndState>,
    on_rolled_back: Option<EndState>,
    steps: fn(&str) -> Vec<StepDef>,
    all_steps: fn() -> Vec<StepDef>,
    schema_version: fn(&OperationRecord) -> Option<i32>,
    retained_until: fn(&OperationRecord) -> Option<chrono::DateTime<chrono::Utc>>,
    hint: fn(OperationState, &str) -> Option<String>,
    check_params: fn(&Value) -> Result<(), String>,
    example_params: fn() -> Value,
}

impl std::fmt::Debug for WorkflowDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowDef")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn example_params<W: Workflow>() -> Value {
    serde_json::to_value(W::Params::default()).unwrap_or(Value::Null)
}

fn check_params<W: Workflow>(params: &Value) -> Result<(), String> {
    serde_json::from_value::<W::Params>(params.clone())
        .map(|_| ())
        .map_err(|e| format!("{} parameters: {e}", W::KIND))
}

/// The erased form of workflow `W`, for the registry.
pub fn workflow<W: Workflow>() -> WorkflowDef {
    WorkflowDef {
        kind: W::KIND,
        description: W::DESCRIPTION,
        on_failure: W::ON_FAILURE,
        allowed_from: W::ALLOWED_FROM,
        running_state: W::RUNNING_STATE,
        on_success: W::ON_SUCCESS,
        on_failed: W::ON_FAILED,
        on_rolled_back: W::ON_ROLLED_BACK,
        steps: W::steps,
        all_steps: W::all_steps,
        schema_version: W::schema_version,
        retained_until: W::retained_until,
        hint: W::hint,
        check_params: check_params::<W>,
        example_params: example_params::<W>,
    }
}

fn transition(
    end: Option<EndState>,
    schema_version: Option<i32>,
    retained_until: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<TenantTransition> {
    end.map(|e| TenantTransition {
        state: e.state,
        released: e.released,
        schema_version,
        retained_until: retained_until.filter(|_| e.state == TenantState::Retained),
    })
}

impl WorkflowDef {
    /// The steps an operation of this kind gets on an engine named `engine`.
    pub fn steps(&self, engine: &str) -> Vec<StepDef> {
        (self.steps)(engine)
    }

    /// The definition of a stored step by name.
    pub fn step(&self, name: &str) -> Option<StepDef> {
        (self.all_steps)().into_iter().find(|s| s.name == name)
    }

    /// Every step name the workflow may have.
    pub fn step_names(&self) -> Vec<&'static str> {
        (self.all_steps)().iter().map(|s| s.name).collect()
    }

    /// The tenant transition when an operation succeeded.
    pub fn success_transition(&self, op: &OperationRecord) -> Option<TenantTransition> {
        transition(
            self.on_success,
            (self.schema_version)(op),
            (self.retained_until)(op),
        )
    }

    /// The tenant transition when an operation ended `failed`.
    pub fn failed_transition(&self) -> Option<TenantTransition> {
        transition(self.on_failed, None, None)
    }

    /// The tenant transition when every started step was undone.
    pub fn rolled_back_transition(&self) -> Option<TenantTransition> {
        transition(self.on_rolled_back, None, None)
    }

    /// The operator's next move after an operation ended in `state`.
    pub fn hint(&self, state: OperationState, slug: &str) -> Option<String> {
        (self.hint)(state, slug)
    }

    /// The parameters' default, as JSON (what the generic test helpers start it with).
    pub fn example_params(&self) -> Value {
        (self.example_params)()
    }

    /// Whether `params` are valid parameters of this workflow.
    pub fn check_params(&self, params: &Value) -> Result<(), String> {
        (self.check_params)(params)
    }
}

/// The typed output a step recorded on an operation, if it ran (for code outside the workflow,
/// e.g. the API's rotation history reading rotation's plan).
pub fn output_of<S: Step>(op: &OperationRecord) -> Option<S::Output> {
    op.step_output(S::NAME)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// A workflow's typed parameters from an operation.
pub fn params_of<W: Workflow>(op: &OperationRecord) -> Result<W::Params, StepError> {
    serde_json::from_value(op.params.clone())
        .map_err(|e| StepError::permanent(format!("{} parameters: {e}", W::KIND)))
}
