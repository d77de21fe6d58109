//! The markers of this engine's objects ([`crate::marker`]): every tenant or pooled database
//! and every role of one carries the deployment's marker as its comment, written in the same
//! batch that revokes PUBLIC's access (databases) or grants the memberships (roles), and again
//! in the claim's rename transaction (a pooled database becomes a tenant's). A rename keeps
//! the comment. The template and its stand-in roles are no instance's and carry none.

use tracing::instrument;

use super::PostgresEngine;
use crate::marker::Marker;
use crate::sql::pg_ident;
use crate::{EngineError, MarkedObject, ObjectKind, TenantNames};

/// Every database and role with a comment that starts like a marker.
const MARKED: &str = "\
    SELECT 'database', d.datname, shobj_description(d.oid, 'pg_database') \
      FROM pg_database d WHERE NOT d.datistemplate \
       AND shobj_description(d.oid, 'pg_database') LIKE 'tenant-control-plane:%' \
    UNION ALL \
    SELECT 'login', r.rolname, shobj_description(r.oid, 'pg_authid') \
      FROM pg_roles r \
     WHERE shobj_description(r.oid, 'pg_authid') LIKE 'tenant-control-plane:%'";

impl PostgresEngine {
    /// The marker of `names`' objects: a pooled database's when the name is a pooled one, else
    /// the tenant's. `None` when the engine was made without an instance (a tool or a test).
    pub(super) fn marker_for(&self, names: &TenantNames) -> Option<Marker> {
        let instance = self.instance?;
        Some(if crate::check_pooled_name(&names.database).is_ok() {
            Marker::pooled(instance)
        } else {
            Marker::tenant(instance, names.tenant_id)
        })
    }

    /// `COMMENT ON DATABASE` with the marker of `names` (empty without an instance).
    pub(super) fn mark_database_sql(&self, names: &TenantNames) -> String {
        match self.marker_for(names) {
            Some(marker) => format!(
                "; COMMENT ON DATABASE {} IS {}",
                pg_ident(&names.database),
                literal(&marker)
            ),
            None => String::new(),
        }
    }

    /// `COMMENT ON ROLE` for each of the seven roles of `names` (empty without an instance).
    pub(super) fn mark_roles_sql(&self, names: &TenantNames) -> String {
        let Some(marker) = self.marker_for(names) else {
            return String::new();
        };
        let text = literal(&marker);
        names
            .principals_drop_order()
            .iter()
            .map(|r| format!("; COMMENT ON ROLE {} IS {text}", pg_ident(r)))
            .collect()
    }

    #[instrument(skip_all)]
    pub(super) async fn marked(&self) -> Result<Vec<MarkedObject>, EngineError> {
        let rows = self.admin().await?.query(MARKED, &[]).await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let kind = match r.get::<_, &str>(0) {
                    "database" => ObjectKind::Database,
                    _ => ObjectKind::Login,
                };
                let marker = Marker::parse(r.get::<_, Option<&str>>(2)?)?;
                Some(MarkedObject {
                    kind,
                    name: r.get::<_, String>(1),
                    marker,
                })
            })
            .collect())
    }

    /// A database is dropped (its sessions ended) only if its comment is still `marker`; a
    /// role only if it is, in the transaction that drops it.
    #[instrument(skip_all, fields(name = %name))]
    pub(super) async fn drop_if_marked(
        &self,
        kind: ObjectKind,
        name: &str,
        marker: &Marker,
    ) -> Result<bool, EngineError> {
        let text = marker.text();
        let mut admin = self.admin().await?;
        match kind {
            ObjectKind::Database => {
                let same = admin
                    .query_opt(
                        "SELECT 1 FROM pg_database d WHERE d.datname = $1 \
                            AND shobj_description(d.oid, 'pg_database') = $2",
                        &[&name, &text],
                    )
                    .await?
                    .is_some();
                if same {
                    admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            pg_ident(name)
                        ))
                        .await?;
                }
                Ok(same)
            }
            ObjectKind::Login => {
                let tx = admin.transaction().await?;
                let same = tx
                    .query_opt(
                        "SELECT 1 FROM pg_roles r WHERE r.rolname = $1 \
                            AND shobj_description(r.oid, 'pg_authid') = $2",
                        &[&name, &text],
                    )
                    .await?
                    .is_some();
                if same {
                    tx.batch_execute(&format!("DROP ROLE IF EXISTS {}", pg_ident(name)))
                        .await?;
                }
                tx.commit().await?;
                Ok(same)
            }
        }
    }
}

/// The marker as a SQL literal (its text holds no NUL and no quote, `Marker::text`; quoted
/// all the same).
fn literal(marker: &Marker) -> String {
    format!("'{}'", marker.text().replace('\'', "''"))
}
