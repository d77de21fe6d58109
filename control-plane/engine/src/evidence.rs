//! Facts about one tenant database, read live from its server for the evidence bundle
//! (`GET /v1/tenants/{slug}/evidence`): who its principals are and what they may do, proof that
//! the application principal cannot change audit events or history (statements it really sent,
//! each refused and rolled back), and which business tables keep history.
//!
//! The gathering is written once ([`gather`]: the order of the reads, the probe loop between two
//! row counts, the assembly of these types); each engine supplies only its sessions and SQL
//! through [`gather::EvidenceDialect`] (`postgres/evidence.rs`, `sqlserver/engine/evidence.rs`),
//! so the bundle and its checks ([`EngineEvidence::principal_findings`]) are written once too.
//! Nothing here is a secret: the probes log in with the app's connection string, but only names
//! and the server's answers are kept.

pub(crate) mod gather;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::TenantNames;

/// Everything the evidence bundle needs from a tenant's server, read at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EngineEvidence {
    /// The tenant's principals: attributes, memberships, grants and effective permissions.
    pub principals: Vec<PrincipalFacts>,
    /// Grants (and, on SQL Server, denials) on the tenant's objects held by anyone who is not a
    /// tenant principal, `PUBLIC` / `public` included.
    pub other_grants: Vec<Grant>,
    /// UPDATE and DELETE attempts of the app principal on audit events and history.
    pub probes: LiveProbes,
    /// Which business tables keep history.
    pub temporal: TemporalCoverage,
}

/// One principal of the tenant and what it may do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrincipalFacts {
    /// The name on the server.
    pub name: String,
    /// Which tenant principal it is (`owner`, `app_rw`, `app_a`, `app_b`, `audit_admin`,
    /// `reader`, `investigator`, SQL Server's roles `audit_admin_role` and `reader_role`), or
    /// `unexpected` for a principal the control plane did not create.
    pub purpose: String,
    /// The server's word for it (PostgreSQL `role`; SQL Server `type_desc`, e.g. `SQL_USER`).
    pub kind: String,
    /// Whether it can open a session (PostgreSQL `rolcanlogin`; SQL Server: a user that
    /// authenticates and holds CONNECT).
    pub can_login: bool,
    /// Whether permission checks do not apply to it (PostgreSQL superuser; SQL Server member of
    /// `db_owner`).
    pub bypasses_permissions: bool,
    /// The rest of what the server says about it, by the server's own names.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// The roles it is a direct member of.
    pub member_of: Vec<String>,
    /// The grants (and denials) held by it directly, as the server stores them.
    pub grants: Vec<Grant>,
    /// What it can actually do, through its memberships too, per object; objects it can do
    /// nothing with are left out.
    pub effective: Vec<Effective>,
}

/// Whether a permission is granted or denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrantState {
    /// Granted.
    Grant,
    /// Granted, and may be granted on.
    GrantWithGrantOption,
    /// Denied (SQL Server; overrides any grant).
    Deny,
}

/// One stored grant or denial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who holds it (`PUBLIC` in PostgreSQL, `public` in SQL Server).
    pub grantee: String,
    /// `database`, `schema`, `table`, `view`, `sequence`, `function`, `procedure`, `column`,
    /// `user`, ...
    pub object_type: String,
    /// The object, schema-qualified where it has a schema.
    pub object: String,
    /// The permission (`SELECT`, `EXECUTE`, `CONNECT`, ...).
    pub permission: String,
    /// Granted or denied.
    pub state: GrantState,
    /// Who granted it.
    pub grantor: Option<String>,
}

/// What a principal can do with one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effective {
    /// As in [`Grant::object_type`].
    pub object_type: String,
    /// As in [`Grant::object`].
    pub object: String,
    /// The permissions it holds, sorted.
    pub permissions: Vec<String>,
}

/// The app principal's attempts to change audit events and history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveProbes {
    /// The login of the connection string the probes used.
    pub login: String,
    /// Who the server said the session was (PostgreSQL `session_user`, SQL Server
    /// `USER_NAME()`): the app principal itself, not the administrator.
    pub session_user: String,
    /// One entry per statement sent.
    pub probes: Vec<ProbeResult>,
    /// Rows in each probed table just before the probes, counted by the administrator.
    pub row_counts_before: BTreeMap<String, i64>,
    /// The same, just after.
    pub row_counts_after: BTreeMap<String, i64>,
}

impl LiveProbes {
    /// Every statement was refused by a permission check or the audit/history protection, and
    /// its transaction was rolled back.
    pub fn all_refused(&self) -> bool {
        !self.probes.is_empty() && self.probes.iter().all(|p| p.refused && p.rolled_back)
    }

    /// The row counts did not change. (A concurrent write by the application, such as a new
    /// history version, would show here too; the per-statement refusals are the primary proof.)
    pub fn unchanged(&self) -> bool {
        self.row_counts_before == self.row_counts_after
    }
}

/// Audit events or history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbedTable {
    /// The audit events table.
    Audit,
    /// A history table.
    History,
}

/// Why a probe was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// A permission check (PostgreSQL 42501; SQL Server 229, 230, 262, 297, 300, 916).
    Permission,
    /// The append-only protection: a trigger's error, or SQL Server refusing DML on a
    /// system-versioned history table (13560, 13561, 13562).
    Protected,
}

/// One statement the app principal sent inside a transaction that was rolled back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The table, schema-qualified.
    pub table: String,
    /// Audit events or history.
    pub kind: ProbedTable,
    /// `UPDATE` or `DELETE`.
    pub operation: String,
    /// The statement exactly as sent.
    pub statement: String,
    /// Whether the server refused it as a permission or protection problem.
    pub refused: bool,
    /// Which of the two.
    pub refusal: Option<Refusal>,
    /// The server's SQLSTATE (PostgreSQL) or error number (SQL Server); `None` if it succeeded.
    pub code: Option<String>,
    /// The server's message.
    pub message: Option<String>,
    /// Whether the transaction was rolled back afterwards (and none is left open).
    pub rolled_back: bool,
    /// PostgreSQL: the transaction never got a transaction id, so it wrote nothing at all
    /// (`pg_current_xact_id_if_assigned()` was null after the statement). `None` where the
    /// server cannot tell.
    pub wrote_nothing: Option<bool>,
}

/// Which business tables keep history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemporalCoverage {
    /// Every business table.
    pub tables: Vec<TableVersioning>,
    /// Every history table in the database.
    pub history_tables: Vec<String>,
}

impl TemporalCoverage {
    /// Every business table is versioned (and there is at least one).
    pub fn all_versioned(&self) -> bool {
        !self.tables.is_empty() && self.tables.iter().all(|t| t.versioned)
    }

    /// Every versioned table's history refuses changes.
    pub fn all_history_append_only(&self) -> bool {
        self.tables.iter().all(|t| t.history_append_only)
    }
}

/// One business table and its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableVersioning {
    /// The table, schema-qualified.
    pub table: String,
    /// Whether every update and delete keeps the previous version.
    pub versioned: bool,
    /// Where previous versions go.
    pub history_table: Option<String>,
    /// How (`system_versioning` on SQL Server; `triggers` on PostgreSQL).
    pub mechanism: String,
    /// Whether the history table refuses UPDATE and DELETE from everybody.
    pub history_append_only: bool,
    /// Engine-specific facts (trigger names, temporal type, retention).
    pub details: BTreeMap<String, serde_json::Value>,
}

/// One `investigation.query` or `investigation.outcome` event of a tenant's audit log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvestigationEvent {
    /// Position in the chain.
    pub id: i64,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The database principal that recorded it (the investigator).
    pub principal: String,
    /// Who asked (the support engineer's token subject).
    pub actor: String,
    /// `investigation.query` or `investigation.outcome`.
    pub action: String,
    /// What was recorded (ticket, reason, query; or rows / error).
    pub detail: serde_json::Value,
    /// The HTTP request id.
    pub request_id: Option<String>,
}

/// The two investigation actions.
pub const INVESTIGATION_ACTIONS: [&str; 2] = ["investigation.query", "investigation.outcome"];

/// Table permissions that change data.
const WRITES: [&str; 4] = ["INSERT", "UPDATE", "DELETE", "TRUNCATE"];

impl TenantNames {
    /// Which tenant principal `name` is (see [`PrincipalFacts::purpose`]).
    pub fn purpose_of(&self, name: &str) -> &'static str {
        [
            (self.owner.as_str(), "owner"),
            (&self.app_rw, "app_rw"),
            (&self.app_a, "app_a"),
            (&self.app_b, "app_b"),
            (&self.audit_admin, "audit_admin"),
            (&self.reader, "reader"),
            (&self.investigator, "investigator"),
            ("audit_admin_role", "audit_admin_role"),
            ("reader_role", "reader_role"),
        ]
        .into_iter()
        .find(|(n, _)| *n == name)
        .map_or("unexpected", |(_, p)| p)
    }
}

impl EngineEvidence {
    /// What is wrong with the principals, one sentence each; empty when nothing is. Checked:
    /// no principal bypasses permission checks or is unexpected; the owner cannot log in; the
    /// application's and the investigator's principals cannot write any table directly (their
    /// paths are the business routines and the reader's SELECT); nobody outside the tenant's
    /// principals holds a grant on a tenant object, and PUBLIC cannot connect.
    pub fn principal_findings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.principals {
            if p.bypasses_permissions {
                out.push(format!(
                    "{} ({}) bypasses permission checks",
                    p.name, p.purpose
                ));
            }
            if p.purpose == "unexpected" {
                out.push(format!(
                    "{} is not a principal the control plane created",
                    p.name
                ));
            }
            if p.purpose == "owner" && p.can_login {
                out.push(format!("the owner {} can log in", p.name));
            }
            let restricted = [
                "app_rw",
                "app_a",
                "app_b",
                "reader",
                "reader_role",
                "investigator",
            ];
            if restricted.contains(&p.purpose.as_str()) {
                for e in p.effective.iter().filter(|e| is_table(&e.object_type)) {
                    let writes: Vec<&str> = e
                        .permissions
                        .iter()
                        .map(String::as_str)
                        .filter(|w| WRITES.contains(w))
                        .collect();
                    if !writes.is_empty() {
                        out.push(format!(
                            "{} ({}) can {} {} directly",
                            p.name,
                            p.purpose,
                            writes.join(", "),
                            e.object
                        ));
                    }
                }
            }
        }
        for g in &self.other_grants {
            // pg_database_owner is PostgreSQL's stand-in for whoever owns the database (the
            // tenant's owner): it holds the `public` schema.
            if g.state == GrantState::Deny || g.grantee == "pg_database_owner" {
                continue;
            }
            // On the database itself SQL Server stores dbo's CONNECT and, for public, metadata
            // permissions every database has (VIEW ANY COLUMN ... KEY DEFINITION): of those,
            // only public's CONNECT matters.
            let public = g.grantee.eq_ignore_ascii_case("public");
            let flagged = match (g.object_type.as_str(), public) {
                ("database", true) => g.permission == "CONNECT",
                ("database", false) => g.grantee != "dbo",
                _ => true,
            };
            if flagged {
                out.push(format!(
                    "{} holds {} on {} {}",
                    g.grantee, g.permission, g.object_type, g.object
                ));
            }
        }
        out
    }
}

fn is_table(object_type: &str) -> bool {
    matches!(object_type, "table" | "view")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn principal(name: &str, purpose: &str) -> PrincipalFacts {
        PrincipalFacts {
            name: name.into(),
            purpose: purpose.into(),
            kind: "role".into(),
            can_login: false,
            bypasses_permissions: false,
            attributes: BTreeMap::new(),
            member_of: vec![],
            grants: vec![],
            effective: vec![],
        }
    }

    fn grant(grantee: &str, object_type: &str, permission: &str, state: GrantState) -> Grant {
        Grant {
            grantee: grantee.into(),
            object_type: object_type.into(),
            object: "x".into(),
            permission: permission.into(),
            state,
            grantor: None,
        }
    }

    fn evidence(principals: Vec<PrincipalFacts>, other_grants: Vec<Grant>) -> EngineEvidence {
        EngineEvidence {
            principals,
            other_grants,
            probes: LiveProbes {
                login: "a".into(),
                session_user: "a".into(),
                probes: vec![],
                row_counts_before: BTreeMap::new(),
                row_counts_after: BTreeMap::new(),
            },
            temporal: TemporalCoverage {
                tables: vec![],
                history_tables: vec![],
            },
        }
    }

    #[test]
    fn purposes_follow_the_names() {
        let n = TenantNames::sample();
        assert_eq!(n.purpose_of("t_acme_app_b"), "app_b");
        assert_eq!(n.purpose_of("t_acme_owner"), "owner");
        assert_eq!(n.purpose_of("reader_role"), "reader_role");
        assert_eq!(n.purpose_of("mallory"), "unexpected");
    }

    #[test]
    fn a_clean_tenant_has_no_findings() {
        let mut app = principal("t_acme_app_a", "app_a");
        app.can_login = true;
        app.effective = vec![Effective {
            object_type: "function".into(),
            object: "app.customer_upsert(uuid, text, text)".into(),
            permissions: vec!["EXECUTE".into()],
        }];
        let mut reader = principal("t_acme_reader", "reader");
        reader.effective = vec![Effective {
            object_type: "table".into(),
            object: "app.customers".into(),
            permissions: vec!["SELECT".into()],
        }];
        let mut owner = principal("t_acme_owner", "owner");
        owner.effective = vec![Effective {
            object_type: "table".into(),
            object: "app.customers".into(),
            permissions: vec!["DELETE".into(), "SELECT".into()],
        }];
        let e = evidence(
            vec![app, reader, owner],
            vec![
                grant("public", "table", "UPDATE", GrantState::Deny),
                grant(
                    "public",
                    "database",
                    "VIEW ANY COLUMN MASTER KEY DEFINITION",
                    GrantState::Grant,
                ),
            ],
        );
        assert_eq!(e.principal_findings(), Vec::<String>::new());
    }

    #[test]
    fn every_violation_is_named() {
        let mut app = principal("t_acme_app_a", "app_a");
        app.effective = vec![Effective {
            object_type: "table".into(),
            object: "audit.audit_events".into(),
            permissions: vec!["DELETE".into(), "SELECT".into(), "UPDATE".into()],
        }];
        let mut owner = principal("t_acme_owner", "owner");
        owner.can_login = true;
        let mut admin = principal("t_acme_audit_admin", "audit_admin");
        admin.bypasses_permissions = true;
        let rogue = principal("mallory", "unexpected");
        let e = evidence(
            vec![app, owner, admin, rogue],
            vec![
                grant("PUBLIC", "function", "EXECUTE", GrantState::Grant),
                grant("PUBLIC", "database", "CONNECT", GrantState::Grant),
                grant("someone", "table", "SELECT", GrantState::Grant),
                grant("mallory", "database", "CONNECT", GrantState::Grant),
                grant("dbo", "database", "CONNECT", GrantState::Grant),
            ],
        );
        let f = e.principal_findings();
        assert_eq!(f.len(), 8, "{f:#?}");
        assert!(f.contains(&"mallory holds CONNECT on database x".to_owned()));
        assert!(f.contains(
            &"t_acme_app_a (app_a) can DELETE, UPDATE audit.audit_events directly".to_owned()
        ));
        assert!(f.contains(&"the owner t_acme_owner can log in".to_owned()));
        assert!(f.iter().any(|s| s.contains("bypasses permission checks")));
        assert!(f.iter().any(|s| s.starts_with("mallory is not")));
        assert!(f.contains(&"PUBLIC holds CONNECT on database x".to_owned()));
        assert!(f.contains(&"someone holds SELECT on table x".to_owned()));
    }

    #[test]
    fn probes_pass_only_when_every_one_was_refused_and_rolled_back() {
        let probe = |refused, rolled_back| ProbeResult {
            table: "audit.audit_events".into(),
            kind: ProbedTable::Audit,
            operation: "DELETE".into(),
            statement: "DELETE FROM audit.audit_events".into(),
            refused,
            refusal: refused.then_some(Refusal::Permission),
            code: Some("42501".into()),
            message: Some("permission denied for schema audit".into()),
            rolled_back,
            wrote_nothing: Some(true),
        };
        let mut p = evidence(vec![], vec![]).probes;
        assert!(!p.all_refused(), "no probe is no proof");
        p.probes = vec![probe(true, true), probe(true, true)];
        assert!(p.all_refused());
        p.probes.push(probe(true, false));
        assert!(!p.all_refused());
        p.probes = vec![probe(false, true)];
        assert!(!p.all_refused());
        p.row_counts_before.insert("audit.audit_events".into(), 3);
        p.row_counts_after.insert("audit.audit_events".into(), 3);
        assert!(p.unchanged());
        p.row_counts_after.insert("audit.audit_events".into(), 0);
        assert!(!p.unchanged());
        let json = serde_json::to_value(probe(true, true)).unwrap();
        assert_eq!(json["refusal"], "permission");
        assert_eq!(json["kind"], "audit");
    }

    #[test]
    fn coverage_needs_every_table() {
        let table = |versioned| TableVersioning {
            table: "app.t".into(),
            versioned,
            history_table: None,
            mechanism: "triggers".into(),
            history_append_only: versioned,
            details: BTreeMap::new(),
        };
        let mut c = TemporalCoverage {
            tables: vec![],
            history_tables: vec![],
        };
        assert!(!c.all_versioned());
        c.tables = vec![table(true), table(true)];
        assert!(c.all_versioned() && c.all_history_append_only());
        c.tables.push(table(false));
        assert!(!c.all_versioned() && !c.all_history_append_only());
        let json = serde_json::to_value(GrantState::GrantWithGrantOption).unwrap();
        assert_eq!(json, "GRANT_WITH_GRANT_OPTION");
    }
}
