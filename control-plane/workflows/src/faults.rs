//! Fault injection for the crash and fail-at-every-step tests.
//!
//! Faults are read from `TENANT_CP_FAULTS` (comma-separated `action:kind:step`, e.g.
//! `crash:onboard:create_database`, `fail:offboard:drop_principals`, `twice:*:*`). They fire right
//! *after* a step's side effect, the worst moment: `crash` kills the process with SIGKILL (no
//! graceful stop, no flushed state), `fail` makes the step report an error although its side
//! effect happened, `twice` runs the action a second time. The kind `onboard-undo` targets a
//! step's undo instead of its action. Production configurations set none.

use std::sync::Arc;

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// SIGKILL this process after the step's side effect.
    Crash,
    /// Report an error after the step's side effect.
    Fail,
    /// Run the step's action twice.
    Twice,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    action: FaultAction,
    kind: String,
    step: String,
}

/// A set of fault rules.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    rules: Arc<Vec<Rule>>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Parses `action:kind:step[,...]`; `*` matches any kind or step.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let fields: Vec<&str> = part.split(':').collect();
            let [action, kind, step] = fields[..] else {
                return Err(format!("fault {part:?}: expected action:kind:step"));
            };
            let action = match action {
                "crash" => FaultAction::Crash,
                "fail" => FaultAction::Fail,
                "twice" => FaultAction::Twice,
                other => return Err(format!("fault {part:?}: unknown action {other:?}")),
            };
            rules.push(Rule {
                action,
                kind: kind.to_owned(),
                step: step.to_owned(),
            });
        }
        Ok(Faults {
            rules: Arc::new(rules),
        })
    }

    /// A single rule, for in-process tests.
    pub fn single(action: FaultAction, kind: &str, step: &str) -> Self {
        Faults {
            rules: Arc::new(vec![Rule {
                action,
                kind: kind.to_owned(),
                step: step.to_owned(),
            }]),
        }
    }

    /// Whether any rule is set.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `action` is configured for this step.
    pub fn has(&self, action: FaultAction, kind: &str, step: &str) -> bool {
        self.rules.iter().any(|r| {
            r.action == action
                && (r.kind == "*" || r.kind == kind)
                && (r.step == "*" || r.step == step)
        })
    }

    /// Kills this process with SIGKILL if a crash is configured for the step.
    pub fn maybe_crash(&self, kind: &str, step: &str) {
        if self.has(FaultAction::Crash, kind, step) {
            tracing::warn!(kind, step, "injected crash: SIGKILL");
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            // SIGKILL cannot be caught; should `kill` be missing, die as abruptly as we can.
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_wildcards() {
        let f = Faults::parse("crash:onboard:create_database, twice:*:*").expect("valid");
        assert!(f.has(FaultAction::Crash, "onboard", "create_database"));
        assert!(!f.has(FaultAction::Crash, "offboard", "create_database"));
        assert!(f.has(FaultAction::Twice, "offboard", "drop_database"));
        assert!(Faults::parse("").expect("empty").is_empty());
    }

    #[test]
    fn rejects_malformed_rules() {
        assert!(Faults::parse("crash:onboard").is_err());
        assert!(Faults::parse("explode:onboard:x").is_err());
    }
}
