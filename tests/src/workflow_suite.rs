//! The checks every registered workflow must pass, whatever it does: they iterate
//! `workflows::registry()`, so a workflow added to the registry is covered without a line here.
//!
//! - [`fail_at_every_step`]: a failure injected right after each step's side effect; an
//!   undo-workflow ends `rolled_back` with exactly what was there before, a stop-workflow ends
//!   `failed`; either way, starting it again (without the fault) converges.
//! - [`fail_at_every_undo`]: for undo-workflows, the last step fails and then the undo of each
//!   step fails in turn; the operation ends `failed` and offboarding removes what is left.
//! - [`every_step_twice`]: every action runs twice in a row and the workflow still converges.
//! - [`crash_after_every_step`]: the real binary is killed (SIGKILL) after each step's side
//!   effect (and, for undo-workflows, after each undo), restarted, and must converge.
//!
//! "Converged" is the workflow's own declaration: the tenant ends in the state its
//! `ON_SUCCESS` says (an active tenant's app still logs in and writes), or released with nothing
//! left anywhere.

use api_types::{OperationState, TenantSlug, TenantState};
use catalog::{OperationRecord, TenantRecord};
use uuid::Uuid;
use workflows::{FaultAction, Faults, OnFailure, Orchestrator, WorkflowDef};

use crate::real_server::RealServer;
use crate::{EngineUnderTest, Snapshot, TestEnv};

/// The engine's name, as workflows fix their steps by it.
fn engine_name(engine: &EngineUnderTest) -> &'static str {
    match engine {
        EngineUnderTest::Postgres => "postgres",
        EngineUnderTest::SqlServer { .. } => "sqlserver",
    }
}

/// A slug for one case: the workflow's kind, what is tested, and the step's position.
fn slug_for(def: &WorkflowDef, what: &str, i: usize) -> String {
    format!("{}-{what}-{i}", def.kind.as_str().replace('_', "-"))
}

async fn tenant(env: &TestEnv, slug: &str) -> Option<TenantRecord> {
    env.app
        .catalog
        .tenant_by_slug(&TenantSlug::parse(slug).unwrap())
        .await
        .unwrap()
}

/// Brings a new tenant to a state `def` starts from: nothing for a workflow that creates its
/// tenant, an active tenant, or a retained one (onboarded, then offboarded into a window).
async fn prepare(env: &TestEnv, def: &WorkflowDef, slug: &str) {
    if def.allowed_from.is_empty() {
        return;
    }
    if def.allowed_from.contains(&TenantState::Active) {
        env.onboard(slug).await;
        return;
    }
    assert!(
        def.allowed_from.contains(&TenantState::Retained),
        "{}: the suite prepares active and retained tenants; teach it this workflow's start state",
        def.kind
    );
    env.onboard(slug).await;
    env.retain(slug, "P7D").await;
}

/// Starts `def` on `slug` in this process and returns the operation id.
async fn start(env: &TestEnv, def: &WorkflowDef, slug: &str) -> Uuid {
    if def.allowed_from.is_empty() {
        return env.start_onboard(slug).await;
    }
    let t = tenant(env, slug).await.unwrap();
    Orchestrator::new(env.app.runner.clone())
        .start_kind(&def.kind, &t, def.example_params(), "suite", None, None)
        .await
        .unwrap_or_else(|e| panic!("starting {} on {slug}: {e}", def.kind))
        .id
}

/// Records `def` on `slug` for another process to run (the real binary's sweeper).
async fn record(env: &TestEnv, server: &RealServer, def: &WorkflowDef, slug: &str) -> Uuid {
    if def.allowed_from.is_empty() {
        return server
            .start(
                env,
                "/v1/tenants",
                serde_json::json!({"slug": slug, "display_name": slug}),
            )
            .await;
    }
    let t = tenant(env, slug).await.unwrap();
    Orchestrator::new(env.app.runner.clone())
        .record_kind(&def.kind, &t, def.example_params(), "suite", None, None)
        .await
        .unwrap_or_else(|e| panic!("recording {} on {slug}: {e}", def.kind))
        .id
}

/// Asserts `op` succeeded and the tenant is where the workflow says it ends.
async fn assert_converged(
    env: &TestEnv,
    def: &WorkflowDef,
    slug: &str,
    op: &OperationRecord,
    empty: &Snapshot,
    case: &str,
) {
    assert_eq!(
        op.state,
        OperationState::Succeeded,
        "{} {case}: {op:#?}",
        def.kind
    );
    let end = def.success_transition(op);
    if end.as_ref().is_some_and(|e| e.released) {
        assert_eq!(
            &env.snapshot(&[slug]).await,
            empty,
            "{} {case}: leftovers",
            def.kind
        );
        return;
    }
    let t = tenant(env, slug).await.unwrap();
    if let Some(end) = end {
        assert_eq!(t.state, end.state, "{} {case}", def.kind);
    }
    if t.state == TenantState::Active {
        let snap = env.snapshot(&[slug]).await;
        assert_eq!(
            (
                snap.databases.len(),
                snap.principals.len(),
                snap.secrets.len()
            ),
            (1, env.full_principals(), 3),
            "{} {case}: {snap:?}",
            def.kind
        );
        let url = env.secret(&env.secret_names(slug).app).await;
        let mut app =
            env.probe().login(&url).await.unwrap_or_else(|e| {
                panic!("{} {case}: the app no longer logs in: {e:?}", def.kind)
            });
        app.customer_upsert(None, "converged", None)
            .await
            .unwrap_or_else(|e| panic!("{} {case}: the app cannot write: {e:?}", def.kind));
    }
}

/// Offboards what a case left behind (if anything is left), so the shared cluster stays clean.
async fn clean_up(env: &TestEnv, slug: &str, empty: &Snapshot) {
    if let Some(t) = tenant(env, slug).await {
        if t.released_at.is_none() && t.state != TenantState::Offboarded {
            env.offboard(slug).await;
        }
    }
    assert_eq!(&env.snapshot(&[slug]).await, empty, "{slug}: leftovers");
}

/// A failure right after each step's side effect; then a clean start converges.
pub async fn fail_at_every_step(engine: EngineUnderTest) {
    for def in workflows::registry() {
        let steps = def.steps(engine_name(&engine));
        for (i, step) in steps.iter().enumerate() {
            let slug = slug_for(def, "fail", i);
            let env = TestEnv::with(
                engine.clone(),
                Faults::single(FaultAction::Fail, def.kind.as_str(), step.name),
                |_| {},
            )
            .await;
            let empty = env.snapshot(&[&slug]).await;
            prepare(&env, def, &slug).await;
            let before = env.snapshot(&[&slug]).await;
            let before_state = tenant(&env, &slug).await.map(|t| t.state);
            let op = env.wait(start(&env, def, &slug).await).await;
            let failed = op.steps.iter().find(|s| s.name == step.name).unwrap();
            assert!(
                failed
                    .error
                    .as_deref()
                    .unwrap_or_default()
                    .contains("injected"),
                "{} failing at {}: {failed:?}",
                def.kind,
                step.name
            );
            let t = tenant(&env, &slug).await.unwrap();
            match def.on_failure {
                OnFailure::Undo => {
                    assert_eq!(
                        op.state,
                        OperationState::RolledBack,
                        "{} at {}: {op:#?}",
                        def.kind,
                        step.name
                    );
                    assert_eq!(
                        env.snapshot(&[&slug]).await,
                        before,
                        "{} at {}: leftovers",
                        def.kind,
                        step.name
                    );
                    if let Some(end) = def.rolled_back_transition() {
                        assert_eq!(t.state, end.state, "{} at {}", def.kind, step.name);
                        assert_eq!(
                            t.released_at.is_some(),
                            end.released,
                            "{} at {}",
                            def.kind,
                            step.name
                        );
                    }
                }
                OnFailure::Stop => {
                    assert_eq!(
                        op.state,
                        OperationState::Failed,
                        "{} at {}: {op:#?}",
                        def.kind,
                        step.name
                    );
                    let expected = def
                        .failed_transition()
                        .map(|e| e.state)
                        .or(def.running_state)
                        .or(before_state)
                        .unwrap_or(TenantState::Active);
                    assert_eq!(t.state, expected, "{} at {}", def.kind, step.name);
                }
            }
            // Without the fault, starting it again converges (a stop-workflow continues).
            let env = env.restart(Faults::none()).await;
            let op = env.wait(start(&env, def, &slug).await).await;
            assert_converged(
                &env,
                def,
                &slug,
                &op,
                &empty,
                &format!("after failing at {}", step.name),
            )
            .await;
            clean_up(&env, &slug, &empty).await;
        }
    }
}

/// For undo-workflows: the last step fails, then the undo of each step fails in turn; the
/// rollback gives up (`failed`, the tenant keeps its slug) and offboarding removes what is left.
pub async fn fail_at_every_undo(engine: EngineUnderTest) {
    for def in workflows::registry()
        .iter()
        .filter(|d| d.on_failure == OnFailure::Undo)
    {
        let steps = def.steps(engine_name(&engine));
        let last = steps.last().unwrap().name;
        for (i, step) in steps.iter().enumerate() {
            let slug = slug_for(def, "undo", i);
            let kind = def.kind.as_str();
            let faults = Faults::parse(&format!(
                "fail:{kind}:{last},fail:{kind}-undo:{}",
                step.name
            ))
            .unwrap();
            let env = TestEnv::with(engine.clone(), faults, |_| {}).await;
            let empty = env.snapshot(&[&slug]).await;
            prepare(&env, def, &slug).await;
            let op = env.wait(start(&env, def, &slug).await).await;
            assert_eq!(
                op.state,
                OperationState::Failed,
                "{kind} undo of {}: {op:#?}",
                step.name
            );
            let t = tenant(&env, &slug).await.unwrap();
            if let Some(end) = def.failed_transition() {
                assert_eq!(t.state, end.state, "{kind} undo of {}", step.name);
                assert!(
                    t.released_at.is_none(),
                    "{kind} undo of {}: released with leftovers",
                    step.name
                );
            }
            let env = env.restart(Faults::none()).await;
            clean_up(&env, &slug, &empty).await;
        }
    }
}

/// Every action runs twice in a row; the workflow converges to the same end.
pub async fn every_step_twice(engine: EngineUnderTest) {
    for (i, def) in workflows::registry().iter().enumerate() {
        let slug = slug_for(def, "twice", i);
        let faults = Faults::parse(&format!("twice:{}:*", def.kind)).unwrap();
        let env = TestEnv::with(engine.clone(), faults, |_| {}).await;
        let empty = env.snapshot(&[&slug]).await;
        prepare(&env, def, &slug).await;
        let op = env.wait(start(&env, def, &slug).await).await;
        assert_converged(&env, def, &slug, &op, &empty, "with every step twice").await;
        let env = env.restart(Faults::none()).await;
        clean_up(&env, &slug, &empty).await;
    }
}

/// The real binary killed after each step's side effect (and, for undo-workflows, after each
/// undo), restarted: the operation converges.
pub async fn crash_after_every_step(engine: EngineUnderTest) {
    // This process only observes: its sweeper never runs, the child binary runs operations.
    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.sweep_interval_secs = 3600;
        c.node_id = Some(format!("observer-{}", Uuid::new_v4().simple()));
    })
    .await;
    for def in workflows::registry() {
        let kind = def.kind.as_str();
        let steps = def.steps(env.app.engine.name());
        let last = steps.last().unwrap().name;
        let mut cases: Vec<(String, String, OperationState)> = steps
            .iter()
            .map(|s| {
                (
                    format!("crash:{kind}:{}", s.name),
                    format!("after {}", s.name),
                    OperationState::Succeeded,
                )
            })
            .collect();
        if def.on_failure == OnFailure::Undo {
            cases.extend(steps.iter().map(|s| {
                (
                    format!("fail:{kind}:{last},crash:{kind}-undo:{}", s.name),
                    format!("undoing {}", s.name),
                    OperationState::RolledBack,
                )
            }));
        }
        for (i, (faults, case, want)) in cases.into_iter().enumerate() {
            let slug = slug_for(def, "crash", i);
            let empty = env.snapshot(&[&slug]).await;
            prepare(&env, def, &slug).await;
            let before = env.snapshot(&[&slug]).await;
            let server = RealServer::spawn(&env, "crash-node", &faults, &[]).await;
            let id = record(&env, &server, def, &slug).await;
            server.wait_killed(&env, Some(id)).await;
            let _server = RealServer::spawn(&env, "crash-node", "", &[]).await;
            let op = env.wait(id).await;
            if want == OperationState::RolledBack {
                assert_eq!(op.state, want, "{kind} crash {case}: {op:#?}");
                assert_eq!(
                    env.snapshot(&[&slug]).await,
                    before,
                    "{kind} crash {case}: leftovers"
                );
            } else {
                assert_converged(&env, def, &slug, &op, &empty, &format!("crash {case}")).await;
            }
            clean_up(&env, &slug, &empty).await;
        }
    }
}
