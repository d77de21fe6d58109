//! Ending sessions, once for every engine: deny new logins, tell the server to end the
//! sessions, wait until they are gone within [`END_TIMEOUT`], and report the ones left as
//! [`EngineError::Timeout`] naming how many. Both engines' "end" returns before every session is
//! gone (a session that must roll back lingers after `KILL` or `pg_terminate_backend`), so the
//! wait is what makes "ended" true when the call returns.
//!
//! Each engine supplies one statement per step through [`SessionDialect`]
//! (`postgres/sessions.rs`, `sqlserver/engine/sessions.rs`); the order, the bound and the error
//! live here alone.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{EngineError, Principal, TenantNames};

/// How long sessions may take to go once they were told to end.
pub(crate) const END_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the flow looks whether they have.
const POLL: Duration = Duration::from_millis(100);

/// Whose sessions end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Whose {
    /// One principal's, wherever they are.
    Principal(Principal),
    /// The tenant's: every session on its database, and every session of its principals.
    Tenant,
}

/// What one engine supplies to end sessions: one statement per step, no control flow.
#[async_trait]
pub(crate) trait SessionDialect: Send + Sync {
    /// Whether the tenant's principals exist at all (SQL Server: its contained users live in its
    /// database, so without the database there is nothing to do). PostgreSQL roles are
    /// server-wide and a missing one has no sessions, so by default: yes.
    async fn principals_exist(&self, _names: &TenantNames) -> Result<bool, EngineError> {
        Ok(true)
    }
    /// No new sessions from here on. For one principal: it may no longer log in and its
    /// password no longer works. For the tenant: none of its login principals may log in.
    /// Principals that do not exist are skipped.
    async fn deny_logins(&self, names: &TenantNames, whose: Whose) -> Result<(), EngineError>;
    /// Tells the server to end every session of `whose` (never the caller's own); it may
    /// return before they are gone.
    async fn end(&self, names: &TenantNames, whose: Whose) -> Result<(), EngineError>;
    /// How many sessions of `whose` are left. For the tenant, only its principals' sessions
    /// count: the control plane's own administrator (or the server's background workers) may
    /// open a session on the database at any moment, and is not what offboarding waits for.
    async fn remaining(&self, names: &TenantNames, whose: Whose) -> Result<i64, EngineError>;
}

/// Which of the engine's three endings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// [`crate::Engine::disable_login`]: the principal may no longer log in, and its sessions
    /// end.
    DisableLogin(Principal),
    /// [`crate::Engine::end_principal_sessions`]: its sessions end; it may log in again.
    PrincipalSessions(Principal),
    /// [`crate::Engine::end_sessions`]: none of the tenant's principals may log in, and every
    /// session on its database ends.
    Tenant,
}

impl Ending {
    fn whose(self) -> Whose {
        match self {
            Ending::DisableLogin(p) | Ending::PrincipalSessions(p) => Whose::Principal(p),
            Ending::Tenant => Whose::Tenant,
        }
    }

    fn denies_logins(self) -> bool {
        !matches!(self, Ending::PrincipalSessions(_))
    }
}

/// Ends sessions as `ending` says, waiting at most [`END_TIMEOUT`] for them to go.
pub(crate) async fn end<D: SessionDialect>(
    dialect: &D,
    names: &TenantNames,
    ending: Ending,
) -> Result<(), EngineError> {
    end_within(dialect, names, ending, END_TIMEOUT).await
}

/// Denies new logins first (when the ending does), so no session can start behind the ones
/// ending, then ends the sessions and waits at most `bound` for them to go.
async fn end_within<D: SessionDialect>(
    dialect: &D,
    names: &TenantNames,
    ending: Ending,
    bound: Duration,
) -> Result<(), EngineError> {
    if !dialect.principals_exist(names).await? {
        return Ok(());
    }
    let whose = ending.whose();
    if ending.denies_logins() {
        dialect.deny_logins(names, whose).await?;
    }
    dialect.end(names, whose).await?;
    let deadline = Instant::now() + bound;
    loop {
        let left = dialect.remaining(names, whose).await?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let of = match whose {
                Whose::Principal(p) => names.login(p).to_owned(),
                Whose::Tenant => format!("the tenant's principals on {}", names.database),
            };
            return Err(EngineError::Timeout(format!(
                "{left} session(s) of {of} did not end within {} s",
                bound.as_secs_f64()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Mutex;

    use super::*;

    /// A scripted server: its sessions go one per look after `end`, and it records the steps.
    struct Scripted {
        exists: bool,
        sessions: Mutex<i64>,
        /// Sessions that never go (a backend stuck in a rollback).
        stuck: i64,
        calls: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(sessions: i64, stuck: i64) -> Self {
            Scripted {
                exists: true,
                sessions: Mutex::new(sessions),
                stuck,
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl SessionDialect for Scripted {
        async fn principals_exist(&self, _: &TenantNames) -> Result<bool, EngineError> {
            Ok(self.exists)
        }
        async fn deny_logins(&self, _: &TenantNames, whose: Whose) -> Result<(), EngineError> {
            self.calls.lock().unwrap().push(format!("deny {whose:?}"));
            Ok(())
        }
        async fn end(&self, _: &TenantNames, whose: Whose) -> Result<(), EngineError> {
            self.calls.lock().unwrap().push(format!("end {whose:?}"));
            Ok(())
        }
        async fn remaining(&self, _: &TenantNames, _: Whose) -> Result<i64, EngineError> {
            self.calls.lock().unwrap().push("look".into());
            let mut s = self.sessions.lock().unwrap();
            let left = *s;
            *s = (*s - 1).max(self.stuck);
            Ok(left)
        }
    }

    /// The steps `ending` takes against a server whose `sessions` go one per look.
    async fn steps(ending: Ending, sessions: i64) -> Vec<String> {
        let d = Scripted::new(sessions, 0);
        end(&d, &TenantNames::sample(), ending).await.unwrap();
        d.calls()
    }

    #[tokio::test]
    async fn logins_are_denied_before_sessions_end_and_the_flow_waits_for_them() {
        assert_eq!(
            steps(Ending::DisableLogin(Principal::AppA), 2).await,
            [
                "deny Principal(AppA)",
                "end Principal(AppA)",
                "look",
                "look",
                "look"
            ]
        );
        assert_eq!(
            steps(Ending::Tenant, 0).await,
            ["deny Tenant", "end Tenant", "look"]
        );
        assert_eq!(
            steps(Ending::PrincipalSessions(Principal::AuditAdmin), 1).await,
            ["end Principal(AuditAdmin)", "look", "look"],
            "the principal may log in again: nothing is denied"
        );
    }

    #[tokio::test]
    async fn leftovers_are_a_timeout_naming_how_many() {
        let bound = Duration::from_millis(250);
        let d = Scripted::new(5, 2);
        let ending = Ending::PrincipalSessions(Principal::AppB);
        let e = end_within(&d, &TenantNames::sample(), ending, bound)
            .await
            .unwrap_err();
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            EngineError::Timeout("2 session(s) of t_acme_app_b did not end within 0.25 s".into())
                .to_string()
        );
        let d = Scripted::new(1, 1);
        let e = end_within(&d, &TenantNames::sample(), Ending::Tenant, bound)
            .await
            .unwrap_err();
        assert!(e
            .to_string()
            .contains("1 session(s) of the tenant's principals on tenant_acme"));
    }

    #[tokio::test]
    async fn without_the_principals_nothing_is_done() {
        let mut d = Scripted::new(3, 3);
        d.exists = false;
        for ending in [Ending::Tenant, Ending::DisableLogin(Principal::AppA)] {
            end(&d, &TenantNames::sample(), ending).await.unwrap();
        }
        assert!(d.calls().is_empty());
    }
}
