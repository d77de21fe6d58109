//! Fleet schema rollouts in the PostgreSQL catalog (`rollouts`, `rollout_tenants`, migration
//! V8). State changes append their audit rows in the same transaction; one rollout holds the
//! fleet at a time (the unique index `rollouts_one_active`).

use api_types::{RolloutState, RolloutTenantState};
use serde_json::json;
use tokio_postgres::Row;

use super::db::Db;
use uuid::Uuid;

use super::{append_audit, is_unique_violation, parse, PgCatalog};
use crate::error::CatalogError;
use crate::rollouts::{
    NewRollout, RolloutRecord, RolloutTenantChange, RolloutTenantRecord, TenantSchemaRecord,
};

const SELECT: &str = "SELECT id, state, reason, target_version, request, actor, created_at, \
     updated_at FROM rollouts";
const SELECT_TENANTS: &str = "SELECT rollout_id, tenant_id, slug, server, wave, from_version, \
     state, operation_id, message FROM rollout_tenants";

fn rollout_from_row(row: &Row) -> Result<RolloutRecord, CatalogError> {
    Ok(RolloutRecord {
        id: row.get("id"),
        state: parse(row.get("state"))?,
        reason: row.get("reason"),
        target_version: row.get("target_version"),
        request: row.get("request"),
        actor: row.get("actor"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        tenants: Vec::new(),
    })
}

fn tenant_from_row(row: &Row) -> Result<RolloutTenantRecord, CatalogError> {
    Ok(RolloutTenantRecord {
        tenant_id: row.get("tenant_id"),
        slug: row.get("slug"),
        server: row.get("server"),
        wave: row.get("wave"),
        from_version: row.get("from_version"),
        state: parse::<RolloutTenantState>(row.get("state"))?,
        operation: row.get("operation_id"),
        message: row.get("message"),
    })
}

/// Of one rollout's tenants, those its driver works on ([`crate::CatalogStore::rollout_open`]).
const OPEN_TENANTS: &str = "WITH open_waves AS ( \
         SELECT DISTINCT wave FROM rollout_tenants \
          WHERE rollout_id = $1 AND state IN ('pending', 'running') ORDER BY wave LIMIT 2) \
     SELECT rollout_id, tenant_id, slug, server, wave, from_version, state, operation_id, \
            message FROM rollout_tenants \
      WHERE rollout_id = $1 AND (state IN ('running', 'failed') \
            OR (state = 'pending' AND wave IN (SELECT wave FROM open_waves))) \
      ORDER BY wave, slug";

/// The rollouts with these ids (all when `None`), newest first, with their tenants (only the
/// open ones when `open_only`).
async fn load(
    client: &impl Db,
    id: Option<Uuid>,
    open_only: bool,
) -> Result<Vec<RolloutRecord>, CatalogError> {
    let (rows, tenants) = match id {
        Some(id) => (
            client
                .query(&format!("{SELECT} WHERE id = $1"), &[&id])
                .await?,
            if open_only {
                client.query(OPEN_TENANTS, &[&id]).await?
            } else {
                client
                    .query(
                        &format!("{SELECT_TENANTS} WHERE rollout_id = $1 ORDER BY wave, slug"),
                        &[&id],
                    )
                    .await?
            },
        ),
        None => (
            client
                .query(&format!("{SELECT} ORDER BY created_at DESC, id"), &[])
                .await?,
            client
                .query(&format!("{SELECT_TENANTS} ORDER BY wave, slug"), &[])
                .await?,
        ),
    };
    let mut rollouts = rows
        .iter()
        .map(rollout_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    for row in &tenants {
        let rollout: Uuid = row.get("rollout_id");
        if let Some(r) = rollouts.iter_mut().find(|r| r.id == rollout) {
            r.tenants.push(tenant_from_row(row)?);
        }
    }
    Ok(rollouts)
}

impl PgCatalog {
    pub(super) async fn pg_create_rollout(
        &self,
        rollout: NewRollout,
    ) -> Result<RolloutRecord, CatalogError> {
        // The one-active index refuses this rollout while another holds the slot; when that one
        // ended between the refusal and the look at it, the slot is free: try again.
        let mut attempt = 0;
        loop {
            match self.pg_create_rollout_once(&rollout).await? {
                Some(record) => return Ok(record),
                None if attempt < 3 => attempt += 1,
                None => {
                    return Err(CatalogError::Corrupt(
                        "rollouts_one_active kept refusing a rollout while none was active".into(),
                    ))
                }
            }
        }
    }

    /// One try of [`Self::pg_create_rollout`]; `None` when the slot was taken by a rollout that
    /// has ended since.
    async fn pg_create_rollout_once(
        &self,
        rollout: &NewRollout,
    ) -> Result<Option<RolloutRecord>, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO rollouts (id, target_version, request, actor) VALUES ($1, $2, $3, $4)",
                &[
                    &rollout.id,
                    &rollout.target_version,
                    &rollout.request,
                    &rollout.actor,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e, "rollouts_one_active") => {
                drop(tx);
                let active = conn
                    .query_opt(
                        "SELECT id, state FROM rollouts \
                         WHERE state IN ('running', 'paused', 'halted')",
                        &[],
                    )
                    .await?;
                return match active {
                    Some(row) => Err(CatalogError::RolloutActive {
                        id: row.get(0),
                        state: row.get(1),
                    }),
                    None => Ok(None),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let tenant_ids: Vec<Uuid> = rollout.tenants.iter().map(|t| t.tenant_id).collect();
        let slugs: Vec<&str> = rollout.tenants.iter().map(|t| t.slug.as_str()).collect();
        let servers: Vec<&str> = rollout.tenants.iter().map(|t| t.server.as_str()).collect();
        let waves: Vec<i32> = rollout.tenants.iter().map(|t| t.wave).collect();
        let from: Vec<Option<i32>> = rollout.tenants.iter().map(|t| t.from_version).collect();
        tx.execute(
            "INSERT INTO rollout_tenants (rollout_id, tenant_id, slug, server, wave, from_version) \
             SELECT $1, t, s, v, w, f \
               FROM unnest($2::uuid[], $3::text[], $4::text[], $5::int[], $6::int[]) \
                 AS x(t, s, v, w, f)",
            &[&rollout.id, &tenant_ids, &slugs, &servers, &waves, &from],
        )
        .await?;
        append_audit(
            &tx,
            &rollout.actor,
            None,
            None,
            None,
            "rollout.started",
            json!({"rollout": rollout.id, "target_version": rollout.target_version,
                   "request": rollout.request, "tenants": rollout.tenants.len()}),
        )
        .await?;
        let record = load(&tx, Some(rollout.id), false).await?.pop();
        tx.commit().await?;
        record.map(Some).ok_or_else(|| CatalogError::NotFound {
            what: format!("rollout {}", rollout.id),
        })
    }

    pub(super) async fn pg_rollout(&self, id: Uuid) -> Result<Option<RolloutRecord>, CatalogError> {
        let conn = self.conn().await?;
        Ok(load(&*conn, Some(id), false).await?.pop())
    }

    pub(super) async fn pg_rollout_open(
        &self,
        id: Uuid,
    ) -> Result<Option<RolloutRecord>, CatalogError> {
        let conn = self.conn().await?;
        Ok(load(&*conn, Some(id), true).await?.pop())
    }

    pub(super) async fn pg_rollouts(&self) -> Result<Vec<RolloutRecord>, CatalogError> {
        let conn = self.conn().await?;
        load(&*conn, None, false).await
    }

    pub(super) async fn pg_rollouts_to_drive(&self) -> Result<Vec<Uuid>, CatalogError> {
        let conn = self.conn().await?;
        Ok(conn
            .query(
                "SELECT id FROM rollouts r WHERE state = 'running' \
                    OR EXISTS (SELECT 1 FROM rollout_tenants t \
                                WHERE t.rollout_id = r.id AND t.state = 'running') \
                 ORDER BY created_at",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub(super) async fn pg_set_rollout_state(
        &self,
        id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RolloutRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT state FROM rollouts WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
        else {
            return Err(CatalogError::NotFound {
                what: format!("rollout {id}"),
            });
        };
        let state: RolloutState = parse(row.get(0))?;
        if !from.contains(&state) {
            return Err(CatalogError::RolloutState {
                id,
                state: state.as_str().to_owned(),
                needs: from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
            });
        }
        let updated = tx
            .execute(
                "UPDATE rollouts SET state = $2, reason = $3, updated_at = now() WHERE id = $1",
                &[&id, &to.as_str(), &reason],
            )
            .await;
        if let Err(e) = updated {
            if is_unique_violation(&e, "rollouts_one_active") {
                return Err(CatalogError::RolloutState {
                    id,
                    state: state.as_str().to_owned(),
                    needs: "the only active rollout (another one started meanwhile)".into(),
                });
            }
            return Err(e.into());
        }
        let moved = match to {
            RolloutState::Running => {
                tx.execute(
                    "UPDATE rollout_tenants SET state = 'pending', message = NULL, \
                            operation_id = NULL, updated_at = now() \
                      WHERE rollout_id = $1 AND state = 'failed'",
                    &[&id],
                )
                .await?
            }
            RolloutState::Aborted => {
                tx.execute(
                    "UPDATE rollout_tenants SET state = 'skipped', \
                            message = 'the rollout was aborted before it started', \
                            updated_at = now() \
                      WHERE rollout_id = $1 AND state = 'pending'",
                    &[&id],
                )
                .await?
            }
            _ => 0,
        };
        append_audit(
            &tx,
            actor,
            None,
            None,
            None,
            &format!("rollout.{to}"),
            json!({"rollout": id, "from": state.as_str(), "reason": reason,
                   "tenants_changed": moved}),
        )
        .await?;
        let record = load(&tx, Some(id), false).await?.pop();
        tx.commit().await?;
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("rollout {id}"),
        })
    }

    pub(super) async fn pg_update_rollout_tenants(
        &self,
        id: Uuid,
        changes: &[RolloutTenantChange],
    ) -> Result<(), CatalogError> {
        if changes.is_empty() {
            return Ok(());
        }
        let tenant_ids: Vec<Uuid> = changes.iter().map(|c| c.tenant_id).collect();
        let states: Vec<&str> = changes.iter().map(|c| c.state.as_str()).collect();
        let operations: Vec<Option<Uuid>> = changes.iter().map(|c| c.operation).collect();
        let messages: Vec<Option<&str>> = changes.iter().map(|c| c.message.as_deref()).collect();
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE rollout_tenants r SET state = c.s, \
                    operation_id = COALESCE(c.o, r.operation_id), message = c.m, \
                    updated_at = now() \
               FROM unnest($2::uuid[], $3::text[], $4::uuid[], $5::text[]) AS c(t, s, o, m) \
              WHERE r.rollout_id = $1 AND r.tenant_id = c.t",
            &[&id, &tenant_ids, &states, &operations, &messages],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn pg_record_schema_objects(
        &self,
        fingerprint: &str,
        objects: &[String],
    ) -> Result<(), CatalogError> {
        if self.fingerprints.contains(fingerprint) {
            return Ok(());
        }
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO schema_fingerprints (fingerprint, objects) VALUES ($1, $2) \
             ON CONFLICT (fingerprint) DO NOTHING",
            &[&fingerprint, &json!(objects)],
        )
        .await?;
        self.fingerprints.insert(fingerprint);
        Ok(())
    }

    pub(super) async fn pg_record_schema_baseline(
        &self,
        tenant_id: Uuid,
        version: i32,
        fingerprint: &str,
    ) -> Result<(), CatalogError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO tenant_schemas (tenant_id, version, fingerprint, live_fingerprint) \
             VALUES ($1, $2, $3, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET version = EXCLUDED.version, \
                 fingerprint = EXCLUDED.fingerprint, \
                 recorded_at = now(), checked_at = now(), \
                 live_fingerprint = EXCLUDED.fingerprint, drift = '[]'",
            &[&tenant_id, &version, &fingerprint],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn pg_record_schema_check(
        &self,
        tenant_id: Uuid,
        live_fingerprint: &str,
        drift: &[String],
    ) -> Result<(), CatalogError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE tenant_schemas SET checked_at = now(), live_fingerprint = $2, drift = $3 \
              WHERE tenant_id = $1",
            &[&tenant_id, &live_fingerprint, &json!(drift)],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn pg_tenant_schemas(
        &self,
        with_objects: bool,
    ) -> Result<Vec<TenantSchemaRecord>, CatalogError> {
        let conn = self.conn().await?;
        let strings = |v: serde_json::Value, what: &str| -> Result<Vec<String>, CatalogError> {
            serde_json::from_value(v)
                .map_err(|e| CatalogError::Corrupt(format!("tenant_schemas.{what}: {e}")))
        };
        conn.query(
            "SELECT s.tenant_id, s.version, s.fingerprint, \
                    CASE WHEN $1 THEN f.objects ELSE '[]'::jsonb END AS objects, s.recorded_at, \
                    s.checked_at, s.live_fingerprint, s.drift \
               FROM tenant_schemas s JOIN schema_fingerprints f USING (fingerprint)",
            &[&with_objects],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(TenantSchemaRecord {
                tenant_id: r.get(0),
                version: r.get(1),
                fingerprint: r.get(2),
                objects: strings(r.get(3), "objects")?,
                recorded_at: r.get(4),
                checked_at: r.get(5),
                live_fingerprint: r.get(6),
                drift: strings(r.get(7), "drift")?,
            })
        })
        .collect()
    }
}
