//! The warm pool in the PostgreSQL catalog (`pool_databases`, migration V11). A claim is one
//! statement that skips rows another claim holds (`FOR UPDATE SKIP LOCKED`), so concurrent
//! onboardings never take the same database and never wait for each other.

use tokio_postgres::Row;
use uuid::Uuid;

use super::db::Db;
use super::{parse, PgCatalog};
use crate::error::CatalogError;
use crate::pool::{NewPooledDatabase, PoolState, PooledDatabase};

const COLUMNS: &str =
    "id, server, database, generation, state, tenant_id, node, created_at, updated_at";

fn pooled_from_row(row: &Row) -> Result<PooledDatabase, CatalogError> {
    Ok(PooledDatabase {
        id: row.get("id"),
        server: row.get("server"),
        database: row.get("database"),
        generation: row.get("generation"),
        state: parse::<PoolState>(row.get("state"))?,
        tenant_id: row.get("tenant_id"),
        node: row.get("node"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

impl PgCatalog {
    pub(super) async fn pg_pool_add(
        &self,
        p: NewPooledDatabase,
    ) -> Result<PooledDatabase, CatalogError> {
        let row = self
            .conn()
            .await?
            .query_one(
                &format!(
                    "INSERT INTO pool_databases (id, server, database, generation, state, node) \
                     VALUES ($1, $2, $3, $4, 'creating', $5) RETURNING {COLUMNS}"
                ),
                &[&p.id, &p.server, &p.database, &p.generation, &p.node],
            )
            .await?;
        pooled_from_row(&row)
    }

    pub(super) async fn pg_pool_transition(
        &self,
        id: Uuid,
        from: PoolState,
        to: PoolState,
    ) -> Result<bool, CatalogError> {
        if from == PoolState::Claimed || to == PoolState::Claimed {
            return Err(CatalogError::Corrupt(
                "a pooled database is claimed only by pool_claim".into(),
            ));
        }
        Ok(self
            .conn()
            .await?
            .execute(
                "UPDATE pool_databases SET state = $3, updated_at = now() \
                 WHERE id = $1 AND state = $2",
                &[&id, &from.as_str(), &to.as_str()],
            )
            .await?
            > 0)
    }

    pub(super) async fn pg_pool_claim(
        &self,
        server: &str,
        generation: &str,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError> {
        // One round trip (every onboarding asks, pool or not): the tenant's own claim, else a
        // ready row taken now.
        self.conn()
            .await?
            .query_opt(
                &format!(
                    "WITH mine AS (SELECT {COLUMNS} FROM pool_databases WHERE tenant_id = $3), \
                     taken AS ( \
                       UPDATE pool_databases SET state = 'claimed', tenant_id = $3, \
                              updated_at = now() \
                        WHERE NOT EXISTS (SELECT 1 FROM mine) \
                          AND id = (SELECT id FROM pool_databases \
                                     WHERE server = $1 AND generation = $2 AND state = 'ready' \
                                     ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
                       RETURNING {COLUMNS}) \
                     SELECT {COLUMNS} FROM mine UNION ALL SELECT {COLUMNS} FROM taken"
                ),
                &[&server, &generation, &tenant_id],
            )
            .await?
            .map(|r| pooled_from_row(&r))
            .transpose()
    }

    pub(super) async fn pg_pool_claim_of(
        &self,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError> {
        self.conn()
            .await?
            .query_opt(
                &format!("SELECT {COLUMNS} FROM pool_databases WHERE tenant_id = $1"),
                &[&tenant_id],
            )
            .await?
            .map(|r| pooled_from_row(&r))
            .transpose()
    }

    pub(super) async fn pg_pool_remove(&self, id: Uuid) -> Result<(), CatalogError> {
        self.conn()
            .await?
            .execute("DELETE FROM pool_databases WHERE id = $1", &[&id])
            .await?;
        Ok(())
    }

    pub(super) async fn pg_pool_databases(
        &self,
        server: Option<&str>,
    ) -> Result<Vec<PooledDatabase>, CatalogError> {
        self.conn()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM pool_databases \
                     WHERE $1::text IS NULL OR server = $1 ORDER BY created_at, id"
                ),
                &[&server],
            )
            .await?
            .iter()
            .map(pooled_from_row)
            .collect()
    }
}
