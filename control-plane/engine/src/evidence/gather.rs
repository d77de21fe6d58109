//! Gathering the evidence, once for every engine: read the stored grants and the principals,
//! work out what each principal may do, read which tables keep history, then log in as the app
//! and send every UPDATE and DELETE probe (each inside a transaction that is rolled back) between
//! two row counts by the administrator; and read the investigation events as audit_admin.
//!
//! Each engine supplies its sessions and its SQL through [`EvidenceDialect`], one engine-specific
//! thing per method; the order of the reads, the probe loop, the before/after counts, what
//! happens to the app's session when a probe fails, and the assembly of [`EngineEvidence`] live
//! here alone, so the two engines cannot drift apart.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrets::SecretValue;

use super::{
    Effective, EngineEvidence, Grant, InvestigationEvent, LiveProbes, PrincipalFacts, ProbeResult,
    ProbedTable, Refusal, TemporalCoverage,
};
use crate::{EngineError, TenantNames};

/// One principal as the server stores it; the flow adds its grants, its effective permissions
/// and its purpose.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StoredPrincipal {
    /// See [`PrincipalFacts::name`].
    pub name: String,
    /// See [`PrincipalFacts::kind`].
    pub kind: String,
    /// What decides whether it can open a session.
    pub login: Login,
    /// See [`PrincipalFacts::bypasses_permissions`].
    pub bypasses_permissions: bool,
    /// See [`PrincipalFacts::attributes`].
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// See [`PrincipalFacts::member_of`].
    pub member_of: Vec<String>,
}

/// What decides whether a principal can open a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// An attribute the server stores (PostgreSQL's `LOGIN`).
    Attribute(bool),
    /// It authenticates, and gets in if it holds CONNECT on the database (a SQL Server user).
    IfItMayConnect,
    /// Never (a SQL Server role, or a user without authentication).
    Never,
}

/// A table the app principal tries to change, with the statements the engine built for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProbeTarget {
    /// The table, schema-qualified, as the evidence names it.
    pub table: String,
    /// Audit events or history.
    pub kind: ProbedTable,
    /// Sets one column to itself on every row.
    pub update: String,
    /// Deletes every row.
    pub delete: String,
    /// Counts its rows (sent by the administrator).
    pub count: String,
}

/// The server's answer to one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProbeOutcome {
    /// The SQLSTATE or error number; `None` if the statement succeeded.
    pub code: Option<String>,
    /// The server's message.
    pub message: Option<String>,
    /// Whether that error is a permission or protection refusal, and which.
    pub refusal: Option<Refusal>,
    /// Whether the transaction was rolled back and none is left open.
    pub rolled_back: bool,
    /// See [`ProbeResult::wrote_nothing`].
    pub wrote_nothing: Option<bool>,
}

/// What one engine supplies to the evidence: sessions and SQL, no control flow.
#[async_trait]
pub(crate) trait EvidenceDialect: Send + Sync {
    /// A session of the control plane's administrator on the tenant database.
    type Admin: Send;
    /// A session logged in with a tenant connection string (the app's, audit_admin's).
    type Session: Send;

    /// Opens the administrator's session on the tenant database.
    async fn admin(&self, names: &TenantNames) -> Result<Self::Admin, EngineError>;
    /// Every grant (and denial) on the tenant's objects and database, to anyone, as stored.
    async fn stored_grants(&self, admin: &mut Self::Admin) -> Result<Vec<Grant>, EngineError>;
    /// The principals the evidence covers (PostgreSQL: the tenant's roles; SQL Server: every
    /// user and role of the database but the built-in ones) with attributes and memberships.
    async fn principals(
        &self,
        admin: &mut Self::Admin,
        names: &TenantNames,
    ) -> Result<Vec<StoredPrincipal>, EngineError>;
    /// What each of `principals` can actually do, through its memberships too, by name.
    async fn effective_permissions(
        &self,
        admin: &mut Self::Admin,
        names: &TenantNames,
        principals: &[StoredPrincipal],
    ) -> Result<BTreeMap<String, Vec<Effective>>, EngineError>;
    /// Which business tables keep history.
    async fn temporal_coverage(
        &self,
        admin: &mut Self::Admin,
    ) -> Result<TemporalCoverage, EngineError>;
    /// The audit events table and every history table, with their probe statements.
    async fn probe_targets(&self, admin: &mut Self::Admin)
        -> Result<Vec<ProbeTarget>, EngineError>;
    /// Rows in one target, counted by the administrator.
    async fn count_rows(
        &self,
        admin: &mut Self::Admin,
        target: &ProbeTarget,
    ) -> Result<i64, EngineError>;
    /// Logs in with a tenant connection string; returns the session and the login it names.
    async fn log_in(
        &self,
        connection_string: &SecretValue,
    ) -> Result<(Self::Session, String), EngineError>;
    /// Who the server says the session is.
    async fn session_user(&self, session: &mut Self::Session) -> Result<String, EngineError>;
    /// Sends one statement inside a transaction and rolls it back whatever the statement did.
    /// `Err` only when nothing can be said about the probe (the connection failed); the flow
    /// then drops the session, and the server rolls back what a closed session left open.
    async fn probe(
        &self,
        session: &mut Self::Session,
        statement: &str,
    ) -> Result<ProbeOutcome, EngineError>;
    /// The investigation events in `[since, until]`, oldest first, at most `limit`.
    async fn investigation_events(
        &self,
        session: &mut Self::Session,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InvestigationEvent>, EngineError>;
}

/// See [`crate::Engine::evidence`].
pub(crate) async fn evidence<D: EvidenceDialect>(
    dialect: &D,
    names: &TenantNames,
    app: &SecretValue,
) -> Result<EngineEvidence, EngineError> {
    let mut admin = dialect.admin(names).await?;
    let grants = dialect.stored_grants(&mut admin).await?;
    let stored = dialect.principals(&mut admin, names).await?;
    let effective = dialect
        .effective_permissions(&mut admin, names, &stored)
        .await?;
    let (principals, other_grants) = assemble_principals(names, stored, grants, effective);
    let temporal = dialect.temporal_coverage(&mut admin).await?;
    let probes = run_probes(dialect, &mut admin, app).await?;
    Ok(EngineEvidence {
        principals,
        other_grants,
        probes,
        temporal,
    })
}

/// See [`crate::Engine::investigation_events`]: read as audit_admin, which may read the audit
/// log and change nothing.
pub(crate) async fn investigation_events<D: EvidenceDialect>(
    dialect: &D,
    audit_admin: &SecretValue,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<InvestigationEvent>, EngineError> {
    let (mut session, _) = dialect.log_in(audit_admin).await?;
    dialect
        .investigation_events(&mut session, since, until, limit)
        .await
}

/// Gives each principal its own stored grants and effective permissions; the grants nobody of
/// them holds (PUBLIC's, a stranger's, those of a tenant role that no longer exists) are the
/// second value.
fn assemble_principals(
    names: &TenantNames,
    stored: Vec<StoredPrincipal>,
    mut grants: Vec<Grant>,
    mut effective: BTreeMap<String, Vec<Effective>>,
) -> (Vec<PrincipalFacts>, Vec<Grant>) {
    let mut principals = Vec::new();
    for p in stored {
        let (mine, rest): (Vec<Grant>, Vec<Grant>) =
            grants.into_iter().partition(|g| g.grantee == p.name);
        grants = rest;
        let effective = effective.remove(&p.name).unwrap_or_default();
        let can_login = match p.login {
            Login::Attribute(can) => can,
            Login::IfItMayConnect => effective.iter().any(|e| {
                e.object_type == "database" && e.permissions.iter().any(|p| p == "CONNECT")
            }),
            Login::Never => false,
        };
        principals.push(PrincipalFacts {
            purpose: names.purpose_of(&p.name).to_owned(),
            name: p.name,
            kind: p.kind,
            can_login,
            bypasses_permissions: p.bypasses_permissions,
            attributes: p.attributes,
            member_of: p.member_of,
            grants: mine,
            effective,
        });
    }
    (principals, grants)
}

/// Logs in as the app and sends every probe, counting rows as the administrator just before
/// and just after.
async fn run_probes<D: EvidenceDialect>(
    dialect: &D,
    admin: &mut D::Admin,
    app: &SecretValue,
) -> Result<LiveProbes, EngineError> {
    let targets = dialect.probe_targets(admin).await?;
    let (mut session, login) = dialect.log_in(app).await?;
    let session_user = dialect.session_user(&mut session).await?;
    let row_counts_before = row_counts(dialect, admin, &targets).await?;
    let mut probes = Vec::new();
    for target in &targets {
        for (operation, statement) in [("UPDATE", &target.update), ("DELETE", &target.delete)] {
            // On `Err` the session is dropped here, closed, and its transaction rolled back.
            let outcome = dialect.probe(&mut session, statement).await?;
            probes.push(ProbeResult {
                table: target.table.clone(),
                kind: target.kind,
                operation: operation.to_owned(),
                statement: statement.clone(),
                refused: outcome.refusal.is_some(),
                refusal: outcome.refusal,
                code: outcome.code,
                message: outcome.message,
                rolled_back: outcome.rolled_back,
                wrote_nothing: outcome.wrote_nothing,
            });
        }
    }
    // The app's session is closed before the second count, so nothing it did can still be open.
    drop(session);
    let row_counts_after = row_counts(dialect, admin, &targets).await?;
    Ok(LiveProbes {
        login,
        session_user,
        probes,
        row_counts_before,
        row_counts_after,
    })
}

/// Rows in each target, by the table's name.
async fn row_counts<D: EvidenceDialect>(
    dialect: &D,
    admin: &mut D::Admin,
    targets: &[ProbeTarget],
) -> Result<BTreeMap<String, i64>, EngineError> {
    let mut out = BTreeMap::new();
    for t in targets {
        out.insert(t.table.clone(), dialect.count_rows(admin, t).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::evidence::GrantState;

    fn grant(grantee: &str, object: &str) -> Grant {
        Grant {
            grantee: grantee.into(),
            object_type: "table".into(),
            object: object.into(),
            permission: "SELECT".into(),
            state: GrantState::Grant,
            grantor: None,
        }
    }

    fn stored(name: &str, login: Login) -> StoredPrincipal {
        StoredPrincipal {
            name: name.into(),
            kind: "role".into(),
            login,
            bypasses_permissions: false,
            attributes: BTreeMap::new(),
            member_of: vec![],
        }
    }

    fn connect() -> Effective {
        Effective {
            object_type: "database".into(),
            object: "tenant_acme".into(),
            permissions: vec!["CONNECT".into()],
        }
    }

    /// The calls a scripted engine saw, in order (shared with its sessions).
    type Calls = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

    /// A scripted engine: it answers from fixed data and records what the flow asked, in order.
    #[derive(Default)]
    struct Scripted {
        calls: Calls,
        /// Rows counted per call of `count_rows`, in order.
        counts: std::sync::Mutex<Vec<i64>>,
        /// The probe that fails (its statement).
        failing: Option<String>,
    }

    impl Scripted {
        fn note(&self, call: impl Into<String>) {
            self.calls.lock().unwrap().push(call.into());
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    /// Records its own drop, so a test sees when the flow closed the app's session.
    struct Session(Calls);

    impl Drop for Session {
        fn drop(&mut self) {
            self.0.lock().unwrap().push("close session".into());
        }
    }

    #[async_trait]
    impl EvidenceDialect for Scripted {
        type Admin = ();
        type Session = Session;

        async fn admin(&self, _: &TenantNames) -> Result<(), EngineError> {
            self.note("admin");
            Ok(())
        }
        async fn stored_grants(&self, _: &mut ()) -> Result<Vec<Grant>, EngineError> {
            Ok(vec![
                grant("t_acme_app_a", "app.a"),
                grant("PUBLIC", "app.b"),
                grant("t_acme_reader", "app.c"),
                grant("t_acme_app_a", "app.d"),
            ])
        }
        async fn principals(
            &self,
            _: &mut (),
            _: &TenantNames,
        ) -> Result<Vec<StoredPrincipal>, EngineError> {
            Ok(vec![
                stored("t_acme_app_a", Login::IfItMayConnect),
                stored("t_acme_owner", Login::Attribute(false)),
                stored("reader_role", Login::Never),
                stored("mallory", Login::IfItMayConnect),
            ])
        }
        async fn effective_permissions(
            &self,
            _: &mut (),
            _: &TenantNames,
            principals: &[StoredPrincipal],
        ) -> Result<BTreeMap<String, Vec<Effective>>, EngineError> {
            assert_eq!(
                principals.len(),
                4,
                "the principals read are the ones asked about"
            );
            Ok(BTreeMap::from([
                ("t_acme_app_a".to_owned(), vec![connect()]),
                ("reader_role".to_owned(), vec![connect()]),
            ]))
        }
        async fn temporal_coverage(&self, _: &mut ()) -> Result<TemporalCoverage, EngineError> {
            Ok(TemporalCoverage {
                tables: vec![],
                history_tables: vec!["history.h".into()],
            })
        }
        async fn probe_targets(&self, _: &mut ()) -> Result<Vec<ProbeTarget>, EngineError> {
            Ok(["audit.events", "history.h"]
                .iter()
                .map(|t| ProbeTarget {
                    table: (*t).into(),
                    kind: if t.starts_with("audit") {
                        ProbedTable::Audit
                    } else {
                        ProbedTable::History
                    },
                    update: format!("UPDATE {t}"),
                    delete: format!("DELETE {t}"),
                    count: format!("COUNT {t}"),
                })
                .collect())
        }
        async fn count_rows(&self, _: &mut (), target: &ProbeTarget) -> Result<i64, EngineError> {
            self.note(target.count.clone());
            Ok(self.counts.lock().unwrap().remove(0))
        }
        async fn log_in(&self, _: &SecretValue) -> Result<(Session, String), EngineError> {
            self.note("log in");
            Ok((Session(self.calls.clone()), "t_acme_app_a".into()))
        }
        async fn session_user(&self, _: &mut Session) -> Result<String, EngineError> {
            Ok("t_acme_app_a".into())
        }
        async fn probe(
            &self,
            _: &mut Session,
            statement: &str,
        ) -> Result<ProbeOutcome, EngineError> {
            self.note(statement);
            if self.failing.as_deref() == Some(statement) {
                return Err(EngineError::Connect {
                    target: "tenant database".into(),
                    detail: "connection reset".into(),
                });
            }
            Ok(ProbeOutcome {
                code: Some("42501".into()),
                message: Some("permission denied".into()),
                refusal: Some(Refusal::Permission),
                rolled_back: true,
                wrote_nothing: None,
            })
        }
        async fn investigation_events(
            &self,
            _: &mut Session,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
            limit: u32,
        ) -> Result<Vec<InvestigationEvent>, EngineError> {
            self.note(format!("events {limit}"));
            Ok(vec![])
        }
    }

    fn app() -> SecretValue {
        SecretValue::new("app")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_flow_assembles_principals_and_probes_between_two_counts() {
        let d = &Scripted {
            counts: std::sync::Mutex::new(vec![3, 5, 3, 5]),
            ..Scripted::default()
        };
        let e = evidence(d, &TenantNames::sample(), &app()).await.unwrap();

        let by_name = |n: &str| e.principals.iter().find(|p| p.name == n).unwrap();
        let app_a = by_name("t_acme_app_a");
        assert_eq!(app_a.purpose, "app_a");
        assert!(app_a.can_login, "a user that may connect logs in");
        assert_eq!(app_a.grants.len(), 2);
        assert!(!by_name("t_acme_owner").can_login);
        assert!(!by_name("reader_role").can_login, "a role never logs in");
        assert!(!by_name("mallory").can_login, "no CONNECT, no session");
        assert_eq!(by_name("mallory").purpose, "unexpected");
        // Nobody read holds the reader's grant (it no longer exists) nor PUBLIC's.
        let others: Vec<&str> = e.other_grants.iter().map(|g| g.object.as_str()).collect();
        assert_eq!(others, ["app.b", "app.c"]);

        assert_eq!(
            d.calls(),
            [
                "admin",
                "log in",
                "COUNT audit.events",
                "COUNT history.h",
                "UPDATE audit.events",
                "DELETE audit.events",
                "UPDATE history.h",
                "DELETE history.h",
                "close session",
                "COUNT audit.events",
                "COUNT history.h",
            ]
        );
        let p = &e.probes;
        assert_eq!(p.login, "t_acme_app_a");
        assert_eq!(p.probes.len(), 4);
        assert!(p.all_refused() && p.unchanged());
        assert_eq!(p.row_counts_before["history.h"], 5);
        assert_eq!(p.probes[1].operation, "DELETE");
        assert_eq!(p.probes[1].statement, "DELETE audit.events");
        assert_eq!(p.probes[1].kind, ProbedTable::Audit);
        assert_eq!(e.temporal.history_tables, ["history.h"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_failed_probe_closes_the_app_session_and_counts_nothing_more() {
        let d = &Scripted {
            counts: std::sync::Mutex::new(vec![3, 5]),
            failing: Some("UPDATE history.h".into()),
            ..Scripted::default()
        };
        let e = evidence(d, &TenantNames::sample(), &app())
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::Connect { .. }), "{e}");
        let calls = d.calls();
        assert_eq!(
            &calls[calls.len() - 2..],
            ["UPDATE history.h", "close session"]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn investigation_events_are_read_on_a_session_of_their_own() {
        let d = &Scripted::default();
        let now = Utc::now();
        investigation_events(d, &app(), now, now, 7).await.unwrap();
        assert_eq!(d.calls(), ["log in", "events 7", "close session"]);
    }
}
