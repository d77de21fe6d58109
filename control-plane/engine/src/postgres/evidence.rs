//! The PostgreSQL side of the evidence bundle: sessions and SQL for
//! [`crate::evidence::gather`], which owns the control flow.
//!
//! Principals and permissions come from the catalogs as the superuser sees them: role attributes
//! from `pg_roles`/`pg_authid`, memberships from `pg_auth_members`, stored grants by
//! `aclexplode` of each object's ACL (or its default ACL when none was set, as PostgreSQL does),
//! and effective permissions from the server's own `has_*_privilege` functions, which follow
//! memberships and `INHERIT` exactly as a session would; a right on an object in a schema counts
//! only with `USAGE` on that schema.
//!
//! A probe sends its UPDATE or DELETE inside `BEGIN; ... SAVEPOINT`, then rolls back to the
//! savepoint, asks `pg_current_xact_id_if_assigned()` (null: the transaction never wrote anything,
//! not even a row it later rolled back) and rolls back.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrets::SecretValue;
use serde_json::json;

use super::{Capped, PostgresEngine};
use crate::evidence::gather::{EvidenceDialect, Login, ProbeOutcome, ProbeTarget, StoredPrincipal};
use crate::evidence::{
    Effective, Grant, GrantState, InvestigationEvent, ProbedTable, Refusal, TableVersioning,
    TemporalCoverage, INVESTIGATION_ACTIONS,
};
use crate::sql::pg_ident;
use crate::{EngineError, TenantNames};

/// The tenant database's schemas whose objects the evidence covers.
const SCHEMAS: [&str; 5] = ["app", "audit", "history", "platform", "public"];

/// Every object of the tenant's schemas, and the database, with its ACL (`kind` is the object
/// type letter `acldefault` takes). `$1`: the schemas.
const OBJECTS: &str = "\
    SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' \
                ELSE 'table' END AS object_type, \
           format('%I.%I', n.nspname, c.relname) AS object, c.oid, n.oid AS nsp, \
           c.relacl AS acl, c.relowner AS owner, \
           CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END AS kind \
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
    UNION ALL \
    SELECT CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END, \
           format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)), \
           p.oid, n.oid, p.proacl, p.proowner, 'f' \
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
     WHERE n.nspname = ANY($1) \
    UNION ALL \
    SELECT 'schema', quote_ident(n.nspname), n.oid, n.oid, n.nspacl, n.nspowner, 'n' \
      FROM pg_namespace n WHERE n.nspname = ANY($1) \
    UNION ALL \
    SELECT 'database', quote_ident(d.datname), d.oid, NULL, d.datacl, d.datdba, 'd' \
      FROM pg_database d WHERE d.datname = current_database()";

/// The tenant roles (`$1`) with their attributes and direct memberships.
const PRINCIPALS: &str = "\
    SELECT r.rolname::text, r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole, \
           r.rolcreatedb, r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil, \
           a.rolpassword IS NOT NULL AS password_set, \
           ARRAY(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                  WHERE m.member = r.oid ORDER BY 1) AS member_of \
      FROM pg_roles r JOIN pg_authid a ON a.oid = r.oid \
     WHERE r.rolname = ANY($1) ORDER BY r.rolname";

/// Business tables and how each keeps history: `platform.keep_history` enabled as a row trigger
/// on UPDATE and DELETE, writing to `history.<table>_history`, which refuses UPDATE and DELETE
/// through `platform.refuse_history_change` (trigger type bits: 1 row, 8 delete, 16 update).
const TEMPORAL: &str = "\
    SELECT format('%I.%I', n.nspname, c.relname) AS business_table, \
           CASE WHEN h.oid IS NULL THEN NULL ELSE format('%I.%I', 'history', h.relname) END, \
           (SELECT string_agg(t.tgname::text, ', ' ORDER BY t.tgname) FROM pg_trigger t \
             WHERE t.tgrelid = c.oid AND t.tgfoid = 'platform.keep_history()'::regprocedure \
               AND t.tgenabled IN ('O', 'A') AND t.tgtype & 25 = 25) AS keep_history, \
           EXISTS (SELECT 1 FROM pg_trigger t \
                    WHERE t.tgrelid = c.oid AND t.tgfoid = 'platform.refuse_truncate()'::regprocedure \
                      AND t.tgenabled IN ('O', 'A')) AS truncate_refused, \
           h.oid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_trigger t \
                    WHERE t.tgrelid = h.oid \
                      AND t.tgfoid = 'platform.refuse_history_change()'::regprocedure \
                      AND t.tgenabled IN ('O', 'A') AND t.tgtype & 25 = 25) AS history_append_only \
      FROM pg_class c \
      JOIN pg_namespace n ON n.oid = c.relnamespace \
      LEFT JOIN pg_class h ON h.relnamespace = 'history'::regnamespace \
                          AND h.relname = c.relname || '_history' AND h.relkind IN ('r', 'p') \
     WHERE n.nspname = 'app' AND c.relkind IN ('r', 'p') \
     ORDER BY 1";

/// Every history table with a column an UPDATE may set (not identity, not generated).
const HISTORY_TABLES: &str = "\
    SELECT n.nspname::text, c.relname::text, \
           (SELECT a.attname::text FROM pg_attribute a \
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
               AND a.attidentity = '' AND a.attgenerated = '' ORDER BY a.attnum LIMIT 1) \
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'history' AND c.relkind IN ('r', 'p') \
     ORDER BY c.relname";

/// The evidence's PostgreSQL side.
pub(super) struct PgEvidence<'a> {
    pub(super) engine: &'a PostgresEngine,
}

/// A probe target: `schema.table`, quoted in its statements; the UPDATE sets `set_column` to
/// itself.
fn target(schema: &str, table: &str, kind: ProbedTable, set_column: &str) -> ProbeTarget {
    let quoted = format!("{}.{}", pg_ident(schema), pg_ident(table));
    let column = pg_ident(set_column);
    ProbeTarget {
        table: format!("{schema}.{table}"),
        kind,
        update: format!("UPDATE {quoted} SET {column} = {column}"),
        delete: format!("DELETE FROM {quoted}"),
        count: format!("SELECT count(*) FROM {quoted}"),
    }
}

fn schemas() -> Vec<String> {
    SCHEMAS.iter().map(|s| s.to_string()).collect()
}

#[async_trait]
impl EvidenceDialect for PgEvidence<'_> {
    type Admin = Capped;
    type Session = Capped;

    async fn admin(&self, names: &TenantNames) -> Result<Capped, EngineError> {
        self.engine.connect_db(&names.database).await
    }

    async fn stored_grants(&self, admin: &mut Capped) -> Result<Vec<Grant>, EngineError> {
        let sql = format!(
            "WITH objects AS ({OBJECTS}) \
             SELECT o.object_type, o.object, \
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END, \
                    pg_get_userbyid(a.grantor)::text, a.privilege_type, a.is_grantable \
               FROM objects o \
               CROSS JOIN LATERAL aclexplode(coalesce(o.acl, acldefault(o.kind::\"char\", o.owner))) a \
              ORDER BY 3, 1, 2, 5"
        );
        let rows = admin.query(&sql, &[&schemas()]).await?;
        Ok(rows
            .iter()
            .map(|r| Grant {
                object_type: r.get(0),
                object: r.get(1),
                grantee: r.get(2),
                grantor: r.get(3),
                permission: r.get(4),
                state: if r.get::<_, bool>(5) {
                    GrantState::GrantWithGrantOption
                } else {
                    GrantState::Grant
                },
            })
            .collect())
    }

    /// The tenant's roles that exist.
    async fn principals(
        &self,
        admin: &mut Capped,
        names: &TenantNames,
    ) -> Result<Vec<StoredPrincipal>, EngineError> {
        let roles: Vec<String> = names
            .principals_drop_order()
            .iter()
            .map(|r| r.to_string())
            .collect();
        let mut out = Vec::new();
        for row in admin.query(PRINCIPALS, &[&roles]).await? {
            let valid_until: Option<DateTime<Utc>> = row.get(9);
            out.push(StoredPrincipal {
                name: row.get(0),
                kind: "role".to_owned(),
                login: Login::Attribute(row.get(1)),
                bypasses_permissions: row.get(2),
                attributes: BTreeMap::from([
                    ("superuser".to_owned(), json!(row.get::<_, bool>(2))),
                    ("inherit".to_owned(), json!(row.get::<_, bool>(3))),
                    ("createrole".to_owned(), json!(row.get::<_, bool>(4))),
                    ("createdb".to_owned(), json!(row.get::<_, bool>(5))),
                    ("replication".to_owned(), json!(row.get::<_, bool>(6))),
                    ("bypassrls".to_owned(), json!(row.get::<_, bool>(7))),
                    ("connection_limit".to_owned(), json!(row.get::<_, i32>(8))),
                    ("valid_until".to_owned(), json!(valid_until)),
                    ("password_set".to_owned(), json!(row.get::<_, bool>(10))),
                ]),
                member_of: row.get(11),
            });
        }
        Ok(out)
    }

    /// By the server's `has_*_privilege` functions.
    async fn effective_permissions(
        &self,
        admin: &mut Capped,
        _names: &TenantNames,
        principals: &[StoredPrincipal],
    ) -> Result<BTreeMap<String, Vec<Effective>>, EngineError> {
        let roles: Vec<&str> = principals.iter().map(|p| p.name.as_str()).collect();
        let sql = format!(
            "WITH objects AS ({OBJECTS}), \
             checks AS ( \
               SELECT r.rolname::text AS role, o.object_type, o.object, p.privilege, \
                      CASE o.object_type \
                        WHEN 'database' THEN has_database_privilege(r.oid, o.oid, p.privilege) \
                        WHEN 'schema' THEN has_schema_privilege(r.oid, o.oid, p.privilege) \
                        WHEN 'sequence' THEN has_schema_privilege(r.oid, o.nsp, 'USAGE') \
                                         AND has_sequence_privilege(r.oid, o.oid, p.privilege) \
                        WHEN 'function' THEN has_schema_privilege(r.oid, o.nsp, 'USAGE') \
                                         AND has_function_privilege(r.oid, o.oid, p.privilege) \
                        WHEN 'procedure' THEN has_schema_privilege(r.oid, o.nsp, 'USAGE') \
                                          AND has_function_privilege(r.oid, o.oid, p.privilege) \
                        ELSE has_schema_privilege(r.oid, o.nsp, 'USAGE') \
                             AND has_table_privilege(r.oid, o.oid, p.privilege) \
                      END AS held \
                 FROM pg_roles r \
                 CROSS JOIN objects o \
                 CROSS JOIN LATERAL unnest(CASE o.object_type \
                        WHEN 'database' THEN ARRAY['CONNECT', 'CREATE', 'TEMPORARY'] \
                        WHEN 'schema' THEN ARRAY['CREATE', 'USAGE'] \
                        WHEN 'sequence' THEN ARRAY['SELECT', 'UPDATE', 'USAGE'] \
                        WHEN 'function' THEN ARRAY['EXECUTE'] \
                        WHEN 'procedure' THEN ARRAY['EXECUTE'] \
                        ELSE ARRAY['DELETE', 'INSERT', 'REFERENCES', 'SELECT', 'TRIGGER', \
                                   'TRUNCATE', 'UPDATE'] END) AS p(privilege) \
                WHERE r.rolname = ANY($2)) \
             SELECT role, object_type, object, array_agg(privilege ORDER BY privilege) \
               FROM checks WHERE held GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        );
        let mut out: BTreeMap<String, Vec<Effective>> = BTreeMap::new();
        for r in admin.query(&sql, &[&schemas(), &roles]).await? {
            out.entry(r.get(0)).or_default().push(Effective {
                object_type: r.get(1),
                object: r.get(2),
                permissions: r.get(3),
            });
        }
        Ok(out)
    }

    async fn temporal_coverage(&self, admin: &mut Capped) -> Result<TemporalCoverage, EngineError> {
        let mut tables = Vec::new();
        for r in admin.query(TEMPORAL, &[]).await? {
            let history_table: Option<String> = r.get(1);
            let keep_history: Option<String> = r.get(2);
            let truncate_refused: bool = r.get(3);
            tables.push(TableVersioning {
                table: r.get(0),
                versioned: history_table.is_some() && keep_history.is_some(),
                history_table,
                mechanism: "triggers".to_owned(),
                history_append_only: r.get(4),
                details: BTreeMap::from([
                    ("keep_history_triggers".to_owned(), json!(keep_history)),
                    ("truncate_refused".to_owned(), json!(truncate_refused)),
                ]),
            });
        }
        let history_tables = admin
            .query(HISTORY_TABLES, &[])
            .await?
            .iter()
            .map(|r| format!("{}.{}", r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        Ok(TemporalCoverage {
            tables,
            history_tables,
        })
    }

    async fn probe_targets(&self, admin: &mut Capped) -> Result<Vec<ProbeTarget>, EngineError> {
        let mut targets = vec![target("audit", "audit_events", ProbedTable::Audit, "actor")];
        for row in admin.query(HISTORY_TABLES, &[]).await? {
            let (schema, table): (String, String) = (row.get(0), row.get(1));
            let column: Option<String> = row.get(2);
            // A history table always has columns; the identity-free one is `id`, the first.
            let column = column.unwrap_or_else(|| "id".to_owned());
            targets.push(target(&schema, &table, ProbedTable::History, &column));
        }
        Ok(targets)
    }

    async fn count_rows(
        &self,
        admin: &mut Capped,
        target: &ProbeTarget,
    ) -> Result<i64, EngineError> {
        Ok(admin.query_one(&target.count, &[]).await?.get(0))
    }

    async fn log_in(
        &self,
        connection_string: &SecretValue,
    ) -> Result<(Capped, String), EngineError> {
        self.engine.log_in(connection_string).await
    }

    async fn session_user(&self, session: &mut Capped) -> Result<String, EngineError> {
        Ok(session
            .query_one("SELECT session_user::text", &[])
            .await?
            .get(0))
    }

    /// Inside a transaction and a savepoint, then rolls both back.
    async fn probe(
        &self,
        session: &mut Capped,
        statement: &str,
    ) -> Result<ProbeOutcome, EngineError> {
        session
            .batch_execute(
                "BEGIN; SET LOCAL statement_timeout = 5000; SET LOCAL lock_timeout = 2000; \
                 SAVEPOINT probe",
            )
            .await?;
        let (code, message) = match session.batch_execute(statement).await {
            Ok(()) => (None, None),
            Err(e) => match e.as_db_error() {
                Some(db) => (
                    Some(db.code().code().to_owned()),
                    Some(db.message().to_owned()),
                ),
                // The connection failed: nothing can be said about this probe.
                None => return Err(e.into()),
            },
        };
        session.batch_execute("ROLLBACK TO SAVEPOINT probe").await?;
        let wrote: bool = session
            .query_one("SELECT pg_current_xact_id_if_assigned() IS NOT NULL", &[])
            .await?
            .get(0);
        session.batch_execute("ROLLBACK").await?;
        let refusal = match (&code, &message) {
            (Some(c), Some(m)) => refusal(c, m),
            _ => None,
        };
        Ok(ProbeOutcome {
            code,
            message,
            refusal,
            rolled_back: true,
            wrote_nothing: Some(!wrote),
        })
    }

    async fn investigation_events(
        &self,
        session: &mut Capped,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<InvestigationEvent>, EngineError> {
        let actions: Vec<&str> = INVESTIGATION_ACTIONS.to_vec();
        let rows = session
            .query(
                "SELECT id, occurred_at, principal, actor, action, detail, request_id \
                   FROM audit.audit_events \
                  WHERE action = ANY($1) AND occurred_at >= $2 AND occurred_at <= $3 \
                  ORDER BY id LIMIT $4",
                &[&actions, &since, &until, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| InvestigationEvent {
                id: r.get(0),
                occurred_at: r.get(1),
                principal: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                detail: r.get(5),
                request_id: r.get(6),
            })
            .collect())
    }
}

/// The refusal a SQLSTATE and message stand for: 42501 is a permission check, unless the
/// append-only triggers raised it (they use the same SQLSTATE and say "append-only").
fn refusal(code: &str, message: &str) -> Option<Refusal> {
    match code {
        "42501" if message.contains("append-only") => Some(Refusal::Protected),
        "42501" => Some(Refusal::Permission),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_statements_quote_every_name() {
        let t = target("history", "customers_history", ProbedTable::History, "id");
        assert_eq!(t.table, "history.customers_history");
        assert_eq!(
            t.update,
            "UPDATE \"history\".\"customers_history\" SET \"id\" = \"id\""
        );
        assert_eq!(t.delete, "DELETE FROM \"history\".\"customers_history\"");
        assert_eq!(
            t.count,
            "SELECT count(*) FROM \"history\".\"customers_history\""
        );
        let odd = target("history", "a\"b", ProbedTable::History, "c\"d");
        assert_eq!(odd.delete, "DELETE FROM \"history\".\"a\"\"b\"");
    }

    #[test]
    fn only_permission_and_protection_errors_are_refusals() {
        assert_eq!(
            refusal("42501", "permission denied for schema audit"),
            Some(Refusal::Permission)
        );
        assert_eq!(
            refusal("42501", "audit.audit_events is append-only"),
            Some(Refusal::Protected)
        );
        assert_eq!(refusal("57014", "canceling statement due to timeout"), None);
        assert_eq!(refusal("42P01", "relation does not exist"), None);
    }
}
