//! The warm pool in the SQL Server catalog (`catalog.PoolDatabases`, migration V26), the
//! counterpart of `postgres/pool.rs`. A claim is one `UPDATE` through a `TOP (1)` CTE read
//! `WITH (UPDLOCK, READPAST, ROWLOCK)`: it skips rows another claim holds (SQL Server's
//! `FOR UPDATE SKIP LOCKED`), so concurrent onboardings never take the same database and never
//! wait for each other. Every statement is in [`sql`] and listed in [`generated_statements`],
//! which `infra/tsql-gate.sh` hands to Microsoft's parser.

use mssql::{MssqlError, Row};
use uuid::Uuid;

use super::rows::{column, parsed, required, text, timestamp};
use super::SqlServerCatalog;
use crate::error::CatalogError;
use crate::pool::{NewPooledDatabase, PoolState, PooledDatabase};

/// The statements of the warm pool.
pub(super) mod sql {
    /// Every column of a pooled database, as `pooled_from_row` reads them.
    macro_rules! columns {
        ($p:literal) => {
            concat!(
                $p,
                "Id, ",
                $p,
                "Server, ",
                $p,
                "DatabaseName, ",
                $p,
                "Generation, ",
                $p,
                "State, ",
                $p,
                "TenantId, ",
                $p,
                "Node, ",
                $p,
                "CreatedAt, ",
                $p,
                "UpdatedAt"
            )
        };
    }

    /// Records pooled database `@P1` (server `@P2`, name `@P3`, generation `@P4`, node `@P5`)
    /// in state `creating`, returning it as stored.
    pub const ADD: &str = concat!(
        "INSERT INTO catalog.PoolDatabases (Id, Server, DatabaseName, Generation, State, Node) \
         OUTPUT ",
        columns!("inserted."),
        " VALUES (@P1, @P2, @P3, @P4, N'creating', @P5);"
    );

    /// Moves `@P1` from state `@P2` to `@P3`; returns its id when it was in `@P2`.
    pub const TRANSITION: &str = "UPDATE catalog.PoolDatabases \
            SET State = @P3, UpdatedAt = SYSUTCDATETIME() \
         OUTPUT inserted.Id \
          WHERE Id = @P1 AND State = @P2;";

    /// The pooled database tenant `@P1` claimed.
    pub const CLAIM_OF: &str = concat!(
        "SELECT ",
        columns!(""),
        " FROM catalog.PoolDatabases WHERE TenantId = @P1;"
    );

    /// The pooled database claimed for tenant `@P3`: the one it claimed before, else the oldest
    /// `ready` one of generation `@P2` on server `@P1`, now claimed by it; no row when the pool
    /// is empty. The `UPDATE` goes through a one-row CTE whose read takes an update lock on the
    /// row it returns (`UPDLOCK`, one row: `ROWLOCK`) and skips rows locked by anyone else
    /// (`READPAST`): two claims never take the same row, and neither waits for the other. Its
    /// `OUTPUT` is the claimed row, so the claim is one statement and one round trip.
    pub const CLAIM: &str = concat!(
        "IF EXISTS (SELECT 1 FROM catalog.PoolDatabases WHERE TenantId = @P3) \
             SELECT ",
        columns!(""),
        " FROM catalog.PoolDatabases WHERE TenantId = @P3; \
         ELSE \
         BEGIN \
             WITH Oldest AS ( \
                 SELECT TOP (1) ",
        columns!(""),
        " FROM catalog.PoolDatabases WITH (UPDLOCK, READPAST, ROWLOCK) \
                  WHERE Server = @P1 AND Generation = @P2 AND State = N'ready' \
                  ORDER BY CreatedAt) \
             UPDATE Oldest \
                SET State = N'claimed', TenantId = @P3, UpdatedAt = SYSUTCDATETIME() \
             OUTPUT ",
        columns!("inserted."),
        "; \
         END;"
    );

    /// Deletes `@P1`'s row.
    pub const REMOVE: &str = "DELETE FROM catalog.PoolDatabases WHERE Id = @P1;";

    /// The pooled databases of server `@P1` (every server when NULL), oldest first.
    pub const LIST: &str = concat!(
        "SELECT ",
        columns!(""),
        " FROM catalog.PoolDatabases \
          WHERE @P1 IS NULL OR Server = @P1 ORDER BY CreatedAt, Id;"
    );
}

/// The filtered unique index that holds one pooled database per tenant.
pub(super) const ONE_PER_TENANT_INDEX: &str = "UX_PoolDatabases_Tenant";

/// Every statement of this module, for the T-SQL gate.
pub fn generated_statements() -> Vec<(&'static str, String)> {
    vec![
        ("pool_add", sql::ADD.to_owned()),
        ("pool_transition", sql::TRANSITION.to_owned()),
        ("pool_claim", sql::CLAIM.to_owned()),
        ("pool_claim_of", sql::CLAIM_OF.to_owned()),
        ("pool_remove", sql::REMOVE.to_owned()),
        ("pool_list", sql::LIST.to_owned()),
    ]
}

fn pooled_from_row(row: &Row) -> Result<PooledDatabase, CatalogError> {
    Ok(PooledDatabase {
        id: required(row, "Id")?,
        server: text(row, "Server")?,
        database: text(row, "DatabaseName")?,
        generation: text(row, "Generation")?,
        state: parsed::<PoolState>(row, "State")?,
        tenant_id: column(row, "TenantId")?,
        node: text(row, "Node")?,
        created_at: timestamp(row, "CreatedAt")?,
        updated_at: timestamp(row, "UpdatedAt")?,
    })
}

/// Whether `e` is a second claim for one tenant, refused by [`ONE_PER_TENANT_INDEX`].
pub(super) fn is_second_claim(e: &CatalogError) -> bool {
    matches!(
        e,
        CatalogError::SqlServer(MssqlError::Server { number: 2601 | 2627, message })
            if message.contains(&format!("'{ONE_PER_TENANT_INDEX}'"))
    )
}

impl SqlServerCatalog {
    pub(super) async fn ms_pool_add(
        &self,
        p: NewPooledDatabase,
    ) -> Result<PooledDatabase, CatalogError> {
        let row = self
            .query_opt(
                sql::ADD,
                &[
                    &p.id,
                    &p.server.as_str(),
                    &p.database.as_str(),
                    &p.generation.as_str(),
                    &p.node.as_str(),
                ],
            )
            .await?
            .ok_or_else(|| CatalogError::Corrupt("INSERT ... OUTPUT returned no row".into()))?;
        pooled_from_row(&row)
    }

    pub(super) async fn ms_pool_transition(
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
        let rows = self
            .query(sql::TRANSITION, &[&id, &from.as_str(), &to.as_str()])
            .await?;
        Ok(!rows.is_empty())
    }

    pub(super) async fn ms_pool_claim(
        &self,
        server: &str,
        generation: &str,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError> {
        match self
            .query_opt(sql::CLAIM, &[&server, &generation, &tenant_id])
            .await
        {
            Ok(row) => row.map(|r| pooled_from_row(&r)).transpose(),
            // The same tenant's claim, running at once (a retried step racing the first
            // attempt), took a row first: its row is the claim.
            Err(e) if is_second_claim(&e) => self.ms_pool_claim_of(tenant_id).await,
            Err(e) => Err(e),
        }
    }

    pub(super) async fn ms_pool_claim_of(
        &self,
        tenant_id: Uuid,
    ) -> Result<Option<PooledDatabase>, CatalogError> {
        self.query_opt(sql::CLAIM_OF, &[&tenant_id])
            .await?
            .map(|r| pooled_from_row(&r))
            .transpose()
    }

    pub(super) async fn ms_pool_remove(&self, id: Uuid) -> Result<(), CatalogError> {
        self.query(sql::REMOVE, &[&id]).await?;
        Ok(())
    }

    pub(super) async fn ms_pool_databases(
        &self,
        server: Option<&str>,
    ) -> Result<Vec<PooledDatabase>, CatalogError> {
        self.query(sql::LIST, &[&server])
            .await?
            .iter()
            .map(pooled_from_row)
            .collect()
    }
}
