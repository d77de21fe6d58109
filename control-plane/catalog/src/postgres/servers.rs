//! The server registry in the PostgreSQL catalog (`servers`, migration V7). Registering,
//! draining and removing a server append their audit rows in the same transaction; removing
//! locks the server's row, as creating a tenant on it does, so a server cannot disappear under
//! a tenant being created on it.

use std::collections::BTreeMap;

use serde_json::json;
use tokio_postgres::Row;

use super::db::Db;

use super::{append_audit, is_unique_violation, parse, PgCatalog};
use crate::error::CatalogError;
use crate::servers::{NewServer, ServerHealth, ServerRecord, ServerState};

const SELECT: &str =
    "SELECT s.name, s.engine, s.elastic_pool, s.elastic_pool_id, s.admin_secret, s.host, s.port, s.capacity, \
     s.labels, s.pool_size, s.state, s.checked_at, s.check_ok, s.check_latency_ms, s.check_error, \
     s.engine_version, s.created_at, \
     (SELECT count(*) FROM tenants t WHERE t.server = s.name AND t.released_at IS NULL) AS tenants \
     FROM servers s";

fn server_from_row(row: &Row) -> Result<ServerRecord, CatalogError> {
    let labels: serde_json::Value = row.get("labels");
    let labels: BTreeMap<String, String> = serde_json::from_value(labels)
        .map_err(|e| CatalogError::Corrupt(format!("server labels: {e}")))?;
    Ok(ServerRecord {
        name: row.get("name"),
        engine: row.get("engine"),
        elastic_pool: row.get("elastic_pool"),
        elastic_pool_id: row.get("elastic_pool_id"),
        admin_secret: row.get("admin_secret"),
        host: row.get("host"),
        port: row.get("port"),
        capacity: row.get("capacity"),
        labels,
        pool_size: row.get("pool_size"),
        state: parse::<ServerState>(row.get("state"))?,
        tenants: row.get("tenants"),
        health: ServerHealth {
            checked_at: row.get("checked_at"),
            ok: row.get("check_ok"),
            latency_ms: row.get("check_latency_ms"),
            error: row.get("check_error"),
            engine_version: row.get("engine_version"),
        },
        created_at: row.get("created_at"),
    })
}

async fn one(client: &impl Db, name: &str) -> Result<Option<ServerRecord>, CatalogError> {
    client
        .query_opt(&format!("{SELECT} WHERE s.name = $1"), &[&name])
        .await?
        .map(|r| server_from_row(&r))
        .transpose()
}

fn described(s: &NewServer) -> serde_json::Value {
    json!({"name": s.name, "engine": s.engine, "elastic_pool": s.elastic_pool,
           "elastic_pool_id": s.elastic_pool_id,
           "host": s.host, "port": s.port,
           "capacity": s.capacity, "labels": s.labels, "admin_secret": s.admin_secret,
           "pool_size": s.pool_size})
}

/// Checks under the server's row lock that a tenant may be created on it: registered, active
/// and not full. Called inside the transaction that creates the tenant.
pub(super) async fn lock_for_new_tenant(client: &impl Db, name: &str) -> Result<(), CatalogError> {
    let unavailable = |why: String| CatalogError::ServerUnavailable {
        name: name.to_owned(),
        why,
    };
    let Some(row) = client
        .query_opt(
            "SELECT capacity, state FROM servers WHERE name = $1 FOR UPDATE",
            &[&name],
        )
        .await?
    else {
        return Err(unavailable("it is not registered".into()));
    };
    let (capacity, state): (i32, &str) = (row.get(0), row.get(1));
    if state != "active" {
        return Err(unavailable(format!("it is {state}")));
    }
    let live: i64 = client
        .query_one(
            "SELECT count(*) FROM tenants WHERE server = $1 AND released_at IS NULL",
            &[&name],
        )
        .await?
        .get(0);
    if live >= i64::from(capacity) {
        return Err(unavailable(format!("it is full ({live} of {capacity})")));
    }
    Ok(())
}

impl PgCatalog {
    pub(super) async fn pg_create_server(
        &self,
        server: NewServer,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO servers (name, engine, admin_secret, host, port, capacity, labels, \
                                      pool_size, elastic_pool, elastic_pool_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &server.name,
                    &server.engine,
                    &server.admin_secret,
                    &server.host,
                    &server.port,
                    &server.capacity,
                    &json!(server.labels),
                    &server.pool_size,
                    &server.elastic_pool,
                    &server.elastic_pool_id,
                ],
            )
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e, "servers_pkey") => {
                return Err(CatalogError::ServerExists { name: server.name })
            }
            Err(e) => return Err(e.into()),
        }
        append_audit(
            &tx,
            actor,
            None,
            None,
            None,
            "server.registered",
            described(&server),
        )
        .await?;
        let record = one(&tx, &server.name).await?;
        tx.commit().await?;
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("server {}", server.name),
        })
    }

    pub(super) async fn pg_upsert_server(
        &self,
        server: NewServer,
        legacy: Option<&str>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let before = one(&tx, &server.name).await?;
        tx.execute(
            "INSERT INTO servers (name, engine, admin_secret, host, port, capacity, labels, \
                                  elastic_pool, elastic_pool_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (name) DO UPDATE SET engine = EXCLUDED.engine, \
                 elastic_pool = EXCLUDED.elastic_pool, elastic_pool_id = EXCLUDED.elastic_pool_id, \
                 admin_secret = EXCLUDED.admin_secret, host = EXCLUDED.host, \
                 port = EXCLUDED.port, capacity = EXCLUDED.capacity, labels = EXCLUDED.labels, \
                 updated_at = now()",
            &[
                &server.name,
                &server.engine,
                &server.admin_secret,
                &server.host,
                &server.port,
                &server.capacity,
                &json!(server.labels),
                &server.elastic_pool,
                &server.elastic_pool_id,
            ],
        )
        .await?;
        let adopted = match legacy {
            Some(legacy) => {
                tx.execute(
                    "UPDATE tenants SET server = $1, updated_at = now() WHERE server = $2",
                    &[&server.name, &legacy],
                )
                .await?
            }
            None => 0,
        };
        let changed = before.as_ref().is_none_or(|b| {
            b.engine != server.engine
                || b.elastic_pool != server.elastic_pool
                || b.elastic_pool_id != server.elastic_pool_id
                || b.admin_secret != server.admin_secret
                || b.host != server.host
                || b.port != server.port
                || b.capacity != server.capacity
                || b.labels != server.labels
        });
        if changed || adopted > 0 {
            let mut detail = described(&server);
            detail["adopted_tenants"] = json!(adopted);
            let action = if before.is_some() {
                "server.updated"
            } else {
                "server.registered"
            };
            append_audit(&tx, actor, None, None, None, action, detail).await?;
        }
        let record = one(&tx, &server.name).await?;
        tx.commit().await?;
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("server {}", server.name),
        })
    }

    pub(super) async fn pg_servers(&self) -> Result<Vec<ServerRecord>, CatalogError> {
        self.conn()
            .await?
            .query(&format!("{SELECT} ORDER BY s.name"), &[])
            .await?
            .iter()
            .map(server_from_row)
            .collect()
    }

    pub(super) async fn pg_server(&self, name: &str) -> Result<Option<ServerRecord>, CatalogError> {
        one(&*self.conn().await?, name).await
    }

    pub(super) async fn pg_set_server_state(
        &self,
        name: &str,
        state: ServerState,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE servers SET state = $2, updated_at = now() \
                 WHERE name = $1 AND state <> $2",
                &[&name, &state.as_str()],
            )
            .await?;
        if changed > 0 {
            let action = match state {
                ServerState::Active => "server.undrained",
                ServerState::Draining => "server.drained",
            };
            append_audit(&tx, actor, None, None, None, action, json!({"name": name})).await?;
        }
        let record = one(&tx, name).await?;
        tx.commit().await?;
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("server {name}"),
        })
    }

    pub(super) async fn pg_record_server_health(
        &self,
        name: &str,
        health: &ServerHealth,
    ) -> Result<(), CatalogError> {
        self.conn()
            .await?
            .execute(
                "UPDATE servers SET checked_at = $2, check_ok = $3, check_latency_ms = $4, \
                        check_error = $5, engine_version = coalesce($6, engine_version) \
                 WHERE name = $1",
                &[
                    &name,
                    &health.checked_at,
                    &health.ok,
                    &health.latency_ms,
                    &health.error,
                    &health.engine_version,
                ],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn pg_delete_server(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // The same lock creating a tenant on the server takes.
        tx.execute("SELECT 1 FROM servers WHERE name = $1 FOR UPDATE", &[&name])
            .await?;
        let record = one(&tx, name)
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("server {name}"),
            })?;
        if record.tenants > 0 {
            return Err(CatalogError::ServerInUse {
                name: name.to_owned(),
                tenants: record.tenants,
            });
        }
        let pooled: i64 = tx
            .query_one(
                "SELECT count(*) FROM pool_databases WHERE server = $1",
                &[&name],
            )
            .await?
            .get(0);
        if pooled > 0 {
            return Err(CatalogError::ServerPoolNotEmpty {
                name: name.to_owned(),
                databases: pooled,
            });
        }
        tx.execute("DELETE FROM servers WHERE name = $1", &[&name])
            .await?;
        append_audit(
            &tx,
            actor,
            None,
            None,
            None,
            "server.removed",
            json!({"name": name, "admin_secret": record.admin_secret}),
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    pub(super) async fn pg_set_server_capacity(
        &self,
        name: &str,
        capacity: i32,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // The row lock creating a tenant on the server takes: no tenant lands meanwhile.
        let locked = tx
            .query_opt(
                "SELECT capacity FROM servers WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?
            .ok_or_else(|| CatalogError::NotFound {
                what: format!("server {name}"),
            })?;
        let before: i32 = locked.get(0);
        let live: i64 = tx
            .query_one(
                "SELECT count(*) FROM tenants WHERE server = $1 AND released_at IS NULL",
                &[&name],
            )
            .await?
            .get(0);
        if i64::from(capacity) < live {
            return Err(CatalogError::CapacityBelowTenants {
                name: name.to_owned(),
                tenants: live,
            });
        }
        if before != capacity {
            tx.execute(
                "UPDATE servers SET capacity = $2, updated_at = now() WHERE name = $1",
                &[&name, &capacity],
            )
            .await?;
            append_audit(
                &tx,
                actor,
                None,
                None,
                None,
                "server.capacity",
                json!({"name": name, "capacity": capacity, "was": before}),
            )
            .await?;
        }
        let record = one(&tx, name).await?;
        tx.commit().await?;
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("server {name}"),
        })
    }

    pub(super) async fn pg_set_server_pool_size(
        &self,
        name: &str,
        pool_size: Option<i32>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let changed = tx
            .execute(
                "UPDATE servers SET pool_size = $2, updated_at = now() \
                 WHERE name = $1 AND pool_size IS DISTINCT FROM $2",
                &[&name, &pool_size],
            )
            .await?;
        if changed > 0 {
            append_audit(
                &tx,
                actor,
                None,
                None,
                None,
                "server.pool_size",
                json!({"name": name, "pool_size": pool_size}),
            )
            .await?;
        }
        let record = one(&tx, name).await?;
        tx.commit().await?;
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("server {name}"),
        })
    }
}
