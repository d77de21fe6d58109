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

    /// Whether `names`' database exists; `Foreign` when it carries another tenant's or
    /// deployment's marker (a leftover this tenant must not take over).
    pub(super) async fn database_mine(&self, names: &TenantNames) -> Result<bool, EngineError> {
        let row = self
            .admin()
            .await?
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&names.database],
            )
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let text: Option<&str> = row.get(0);
        match self.marker_for(names) {
            Some(ours) if ours.foreign(text) => {
                Err(ours.refuse(&format!("database {}", names.database), text))
            }
            _ => Ok(true),
        }
    }

    /// The roles of `names` that exist, but those carrying another tenant's or deployment's
    /// marker (left alone, with a warning: an onboarding refused them, and its undo must not
    /// drop them).
    pub(super) async fn roles_mine(&self, names: &TenantNames) -> Result<Vec<String>, EngineError> {
        let roles: Vec<&str> = names.principals_drop_order().to_vec();
        let rows = self
            .admin()
            .await?
            .query(
                "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
                 WHERE rolname = ANY($1)",
                &[&roles],
            )
            .await?;
        let ours = self.marker_for(names);
        let mut mine = Vec::new();
        for r in &rows {
            let (role, text): (String, Option<&str>) = (r.get(0), r.get(1));
            match &ours {
                Some(ours) if ours.foreign(text) => {
                    tracing::warn!(%role, "not touching another tenant's role");
                }
                _ => mine.push(role),
            }
        }
        // In the drop order.
        mine.sort_by_key(|r| roles.iter().position(|x| x == r));
        Ok(mine)
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
                let text: &str = r.get::<_, Option<&str>>(2)?;
                Some(MarkedObject {
                    kind,
                    name: r.get::<_, String>(1),
                    marker: Marker::parse(text)?,
                    text: text.to_owned(),
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
        text: &str,
    ) -> Result<bool, EngineError> {
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
                    // What it owns or was granted in the maintenance database goes with it (its
                    // database, if an orphan too, is repaired first).
                    tx.batch_execute(&format!(
                        "DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}",
                        r = pg_ident(name)
                    ))
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
