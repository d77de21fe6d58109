//! The server registry in the SQL Server catalog (`catalog.Servers`, migration V22), the
//! counterpart of `postgres/servers.rs`. Every batch is one transaction with its audit row
//! (`catalog.AuditAppend`); every statement is in [`sql`] and listed in
//! [`generated_statements`], which `infra/tsql-gate.sh` hands to Microsoft's parser.

use std::collections::BTreeMap;

use mssql::{MssqlError, Row};
use serde_json::json;

use super::rows::{column, optional_text, optional_timestamp, required, text, timestamp};
use super::SqlServerCatalog;
use crate::error::CatalogError;
use crate::servers::{NewServer, ServerHealth, ServerRecord, ServerState};

/// The statements of the server registry.
pub(super) mod sql {
    /// Every column of a server and its live tenant count.
    pub const SELECT: &str = "SELECT s.Name, s.Engine, s.ElasticPool, s.ElasticPoolId, s.AdminSecret, s.Host, s.Port, \
         s.Capacity, s.Labels, s.PoolSize, s.State, s.CheckedAt, s.CheckOk, s.CheckLatencyMs, s.CheckError, \
         s.EngineVersion, s.CreatedAt, \
         (SELECT COUNT_BIG(*) FROM catalog.Tenants AS t \
           WHERE t.Server = s.Name AND t.ReleasedAt IS NULL) AS Tenants \
         FROM catalog.Servers AS s";

    /// Registers a server (`@P1` name ... `@P7` labels, `@P8` pool size, `@P11` elastic pool,
    /// `@P12` its resource id) with its audit row (`@P9` actor, `@P10` detail).
    pub const CREATE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         INSERT INTO catalog.Servers (Name, Engine, AdminSecret, Host, Port, Capacity, Labels, \
                                      PoolSize, ElasticPool, ElasticPoolId) \
         VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P11, @P12); \
         EXEC catalog.AuditAppend @Actor = @P9, @RequestId = NULL, @TenantId = NULL, \
              @OperationId = NULL, @Action = N'server.registered', @Detail = @P10; \
         COMMIT TRANSACTION;";

    /// Registers or updates a server (`@P1`..`@P7`, `@P11` and `@P12` as in [`CREATE`]), moves tenants recorded
    /// under the legacy `host:port` `@P8` onto it, and appends an audit row (`@P9` actor,
    /// `@P10` detail) when anything changed. Its pool size is left as it is (NULL when new).
    pub const UPSERT: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         DECLARE @Existed bit = 0, @Changed bit = 1, @Adopted int = 0; \
         IF EXISTS (SELECT 1 FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P1) \
         BEGIN \
             SET @Existed = 1; \
             SELECT @Changed = CASE WHEN Engine = @P2 AND AdminSecret = @P3 AND Host = @P4 \
                                     AND Port = @P5 AND Capacity = @P6 AND Labels = @P7 \
                                     AND ISNULL(ElasticPool, N'') = ISNULL(@P11, N'') \
                                     AND ISNULL(ElasticPoolId, N'') = ISNULL(@P12, N'') \
                                    THEN 0 ELSE 1 END \
               FROM catalog.Servers WHERE Name = @P1; \
             UPDATE catalog.Servers SET Engine = @P2, AdminSecret = @P3, Host = @P4, \
                    Port = @P5, Capacity = @P6, Labels = @P7, ElasticPool = @P11, \
                    ElasticPoolId = @P12, \
                    UpdatedAt = SYSUTCDATETIME() \
              WHERE Name = @P1; \
         END \
         ELSE \
             INSERT INTO catalog.Servers (Name, Engine, AdminSecret, Host, Port, Capacity, Labels, \
                                          ElasticPool, ElasticPoolId) \
             VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P11, @P12); \
         IF @P8 IS NOT NULL \
         BEGIN \
             UPDATE catalog.Tenants SET Server = @P1, UpdatedAt = SYSUTCDATETIME() \
              WHERE Server = @P8; \
             SET @Adopted = @@ROWCOUNT; \
         END; \
         IF @Changed = 1 OR @Adopted > 0 \
         BEGIN \
             DECLARE @Detail nvarchar(max) = JSON_MODIFY(@P10, '$.adopted_tenants', @Adopted); \
             DECLARE @Action nvarchar(100) = CASE WHEN @Existed = 1 THEN N'server.updated' \
                                                  ELSE N'server.registered' END; \
             EXEC catalog.AuditAppend @Actor = @P9, @RequestId = NULL, @TenantId = NULL, \
                  @OperationId = NULL, @Action = @Action, @Detail = @Detail; \
         END; \
         COMMIT TRANSACTION;";

    /// Sets `@P1`'s state to `@P2` (with an audit row, action `@P3`, actor `@P4`, detail
    /// `@P5`) when it differs.
    pub const SET_STATE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         UPDATE catalog.Servers SET State = @P2, UpdatedAt = SYSUTCDATETIME() \
          WHERE Name = @P1 AND State <> @P2; \
         IF @@ROWCOUNT > 0 \
             EXEC catalog.AuditAppend @Actor = @P4, @RequestId = NULL, @TenantId = NULL, \
                  @OperationId = NULL, @Action = @P3, @Detail = @P5; \
         COMMIT TRANSACTION;";

    /// Records `@P1`'s health check.
    pub const RECORD_HEALTH: &str = "UPDATE catalog.Servers SET CheckedAt = @P2, CheckOk = @P3, \
         CheckLatencyMs = @P4, CheckError = @P5, EngineVersion = COALESCE(@P6, EngineVersion) \
         WHERE Name = @P1;";

    /// Removes `@P1` unless it holds live tenants (50604) or pooled databases (50605), with an
    /// audit row (`@P2` actor, `@P3` detail); the row lock is the one creating a tenant on the
    /// server takes.
    pub const DELETE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         IF NOT EXISTS (SELECT 1 FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P1) \
             THROW 50404, N'server not found', 1; \
         IF EXISTS (SELECT 1 FROM catalog.Tenants WHERE Server = @P1 AND ReleasedAt IS NULL) \
             THROW 50604, N'server holds tenants', 1; \
         IF EXISTS (SELECT 1 FROM catalog.PoolDatabases WHERE Server = @P1) \
             THROW 50605, N'server holds pooled databases', 1; \
         DELETE FROM catalog.Servers WHERE Name = @P1; \
         EXEC catalog.AuditAppend @Actor = @P2, @RequestId = NULL, @TenantId = NULL, \
              @OperationId = NULL, @Action = N'server.removed', @Detail = @P3; \
         COMMIT TRANSACTION;";

    /// Sets `@P1`'s capacity to `@P2` under its row lock (the one creating a tenant on it
    /// takes), refused below its live tenants (50606), with an audit row (`@P3` actor, `@P4`
    /// detail) when it changed. Answers the capacity it had.
    pub const SET_CAPACITY: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         DECLARE @Was int, @Live int; \
         SELECT @Was = Capacity FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P1; \
         IF @Was IS NULL THROW 50404, N'server not found', 1; \
         SELECT @Live = COUNT(*) FROM catalog.Tenants WHERE Server = @P1 AND ReleasedAt IS NULL; \
         IF @Live > @P2 THROW 50606, N'capacity below the server''s tenants', 1; \
         IF @Was <> @P2 \
         BEGIN \
             UPDATE catalog.Servers SET Capacity = @P2, UpdatedAt = SYSUTCDATETIME() WHERE Name = @P1; \
             DECLARE @Detail nvarchar(max) = JSON_MODIFY(@P4, '$.was', @Was); \
             EXEC catalog.AuditAppend @Actor = @P3, @RequestId = NULL, @TenantId = NULL, \
                  @OperationId = NULL, @Action = N'server.capacity', @Detail = @Detail; \
         END; \
         COMMIT TRANSACTION;";

    /// How many pooled databases server `@P1` holds.
    pub const POOLED: &str =
        "SELECT COUNT_BIG(*) AS Databases FROM catalog.PoolDatabases WHERE Server = @P1;";

    /// Sets `@P1`'s pool size to `@P2` (NULL: the deployment's default) with an audit row
    /// (`@P3` actor, `@P4` detail) when it differs. Written out rather than `IS DISTINCT FROM`,
    /// which SQL Server has only since 2022.
    pub const SET_POOL_SIZE: &str = "SET XACT_ABORT ON; BEGIN TRANSACTION; \
         UPDATE catalog.Servers SET PoolSize = @P2, UpdatedAt = SYSUTCDATETIME() \
          WHERE Name = @P1 \
            AND (PoolSize <> @P2 OR (PoolSize IS NULL AND @P2 IS NOT NULL) \
                 OR (PoolSize IS NOT NULL AND @P2 IS NULL)); \
         IF @@ROWCOUNT > 0 \
             EXEC catalog.AuditAppend @Actor = @P3, @RequestId = NULL, @TenantId = NULL, \
                  @OperationId = NULL, @Action = N'server.pool_size', @Detail = @P4; \
         COMMIT TRANSACTION;";

    /// Checks, under the server's row lock, that a tenant may be created on server `@P5`
    /// (registered: 50601, active: 50602, not full: 50603); put in front of
    /// `catalog.CreateTenant` in the same transaction.
    pub const LOCK_FOR_NEW_TENANT: &str = "DECLARE @Capacity int, @State nvarchar(20), @Live int; \
         SELECT @Capacity = Capacity, @State = State \
           FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P5; \
         IF @Capacity IS NULL THROW 50601, N'the server is not registered', 1; \
         IF @State <> N'active' THROW 50602, N'the server is draining', 1; \
         SELECT @Live = COUNT(*) FROM catalog.Tenants WHERE Server = @P5 AND ReleasedAt IS NULL; \
         IF @Live >= @Capacity THROW 50603, N'the server is full', 1;";
}

/// Every statement of this module, for the T-SQL gate.
pub fn generated_statements() -> Vec<(&'static str, String)> {
    vec![
        ("servers_select", sql::SELECT.to_owned()),
        ("servers_create", sql::CREATE.to_owned()),
        ("servers_upsert", sql::UPSERT.to_owned()),
        ("servers_set_state", sql::SET_STATE.to_owned()),
        ("servers_record_health", sql::RECORD_HEALTH.to_owned()),
        ("servers_delete", sql::DELETE.to_owned()),
        ("servers_pooled", sql::POOLED.to_owned()),
        ("servers_set_pool_size", sql::SET_POOL_SIZE.to_owned()),
        ("servers_set_capacity", sql::SET_CAPACITY.to_owned()),
        (
            "servers_lock_for_new_tenant",
            sql::LOCK_FOR_NEW_TENANT.to_owned(),
        ),
    ]
}

fn server_from_row(row: &Row) -> Result<ServerRecord, CatalogError> {
    let labels: BTreeMap<String, String> =
        serde_json::from_str(required::<&str>(row, "Labels")?)
            .map_err(|e| CatalogError::Corrupt(format!("server labels: {e}")))?;
    Ok(ServerRecord {
        name: text(row, "Name")?,
        engine: text(row, "Engine")?,
        elastic_pool: optional_text(row, "ElasticPool")?,
        elastic_pool_id: optional_text(row, "ElasticPoolId")?,
        admin_secret: text(row, "AdminSecret")?,
        host: text(row, "Host")?,
        port: required(row, "Port")?,
        capacity: required(row, "Capacity")?,
        labels,
        pool_size: column::<i32>(row, "PoolSize")?,
        state: text(row, "State")?.parse().map_err(CatalogError::Corrupt)?,
        tenants: required(row, "Tenants")?,
        health: ServerHealth {
            checked_at: optional_timestamp(row, "CheckedAt")?,
            ok: column::<bool>(row, "CheckOk")?,
            latency_ms: column::<i64>(row, "CheckLatencyMs")?,
            error: optional_text(row, "CheckError")?,
            engine_version: optional_text(row, "EngineVersion")?,
        },
        created_at: timestamp(row, "CreatedAt")?,
    })
}

fn described(s: &NewServer) -> String {
    json!({"name": s.name, "engine": s.engine, "elastic_pool": s.elastic_pool,
           "elastic_pool_id": s.elastic_pool_id,
           "host": s.host, "port": s.port,
           "capacity": s.capacity, "labels": s.labels, "admin_secret": s.admin_secret,
           "pool_size": s.pool_size})
    .to_string()
}

/// A refusal of [`sql::LOCK_FOR_NEW_TENANT`] as the catalog reports it.
pub(super) fn new_tenant_refusal(e: &CatalogError, server: &str) -> Option<CatalogError> {
    let CatalogError::SqlServer(MssqlError::Server { number, .. }) = e else {
        return None;
    };
    let why = match number {
        50601 => "it is not registered",
        50602 => "it is draining",
        50603 => "it is full",
        _ => return None,
    };
    Some(CatalogError::ServerUnavailable {
        name: server.to_owned(),
        why: why.into(),
    })
}

impl SqlServerCatalog {
    async fn one(&self, name: &str) -> Result<Option<ServerRecord>, CatalogError> {
        self.query_opt(&format!("{} WHERE s.Name = @P1;", sql::SELECT), &[&name])
            .await?
            .map(|r| server_from_row(&r))
            .transpose()
    }

    fn required_server(
        record: Option<ServerRecord>,
        name: &str,
    ) -> Result<ServerRecord, CatalogError> {
        record.ok_or_else(|| CatalogError::NotFound {
            what: format!("server {name}"),
        })
    }

    pub(super) async fn ms_create_server(
        &self,
        server: NewServer,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let labels = json!(server.labels).to_string();
        let result = self
            .query(
                sql::CREATE,
                &[
                    &server.name.as_str(),
                    &server.engine.as_str(),
                    &server.admin_secret.as_str(),
                    &server.host.as_str(),
                    &server.port,
                    &server.capacity,
                    &labels.as_str(),
                    &server.pool_size,
                    &actor,
                    &described(&server).as_str(),
                    &server.elastic_pool.as_deref(),
                    &server.elastic_pool_id.as_deref(),
                ],
            )
            .await;
        match result {
            Err(CatalogError::SqlServer(MssqlError::Server { number, message }))
                if matches!(number, 2627 | 2601) && message.contains("PK_Servers") =>
            {
                return Err(CatalogError::ServerExists { name: server.name })
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        Self::required_server(self.one(&server.name).await?, &server.name)
    }

    pub(super) async fn ms_upsert_server(
        &self,
        server: NewServer,
        legacy: Option<&str>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let labels = json!(server.labels).to_string();
        self.query(
            sql::UPSERT,
            &[
                &server.name.as_str(),
                &server.engine.as_str(),
                &server.admin_secret.as_str(),
                &server.host.as_str(),
                &server.port,
                &server.capacity,
                &labels.as_str(),
                &legacy,
                &actor,
                &described(&server).as_str(),
                &server.elastic_pool.as_deref(),
                &server.elastic_pool_id.as_deref(),
            ],
        )
        .await?;
        Self::required_server(self.one(&server.name).await?, &server.name)
    }

    pub(super) async fn ms_servers(&self) -> Result<Vec<ServerRecord>, CatalogError> {
        self.query(&format!("{} ORDER BY s.Name;", sql::SELECT), &[])
            .await?
            .iter()
            .map(server_from_row)
            .collect()
    }

    pub(super) async fn ms_server(&self, name: &str) -> Result<Option<ServerRecord>, CatalogError> {
        self.one(name).await
    }

    pub(super) async fn ms_set_server_state(
        &self,
        name: &str,
        state: ServerState,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let action = match state {
            ServerState::Active => "server.undrained",
            ServerState::Draining => "server.drained",
        };
        let detail = json!({"name": name}).to_string();
        self.query(
            sql::SET_STATE,
            &[&name, &state.as_str(), &action, &actor, &detail.as_str()],
        )
        .await?;
        Self::required_server(self.one(name).await?, name)
    }

    pub(super) async fn ms_record_server_health(
        &self,
        name: &str,
        health: &ServerHealth,
    ) -> Result<(), CatalogError> {
        self.query(
            sql::RECORD_HEALTH,
            &[
                &name,
                &health.checked_at.map(|t| t.naive_utc()),
                &health.ok,
                &health.latency_ms,
                &health.error.as_deref(),
                &health.engine_version.as_deref(),
            ],
        )
        .await?;
        Ok(())
    }

    pub(super) async fn ms_delete_server(
        &self,
        name: &str,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let record = Self::required_server(self.one(name).await?, name)?;
        let detail = json!({"name": name, "admin_secret": record.admin_secret}).to_string();
        match self
            .query(sql::DELETE, &[&name, &actor, &detail.as_str()])
            .await
        {
            Err(CatalogError::SqlServer(MssqlError::Server { number: 50604, .. })) => {
                let tenants = self.one(name).await?.map(|s| s.tenants).unwrap_or(0);
                Err(CatalogError::ServerInUse {
                    name: name.to_owned(),
                    tenants,
                })
            }
            // 547: a pooled database recorded between the check and the DELETE (recording one
            // takes no lock the check's update lock excludes); its foreign key refused the
            // DELETE and the transaction rolled back whole.
            Err(CatalogError::SqlServer(MssqlError::Server { number, message }))
                if number == 50605
                    || (number == 547 && message.contains("FK_PoolDatabases_Servers")) =>
            {
                let databases = self
                    .query_opt(sql::POOLED, &[&name])
                    .await?
                    .map(|r| required::<i64>(&r, "Databases"))
                    .transpose()?
                    .unwrap_or(0);
                Err(CatalogError::ServerPoolNotEmpty {
                    name: name.to_owned(),
                    databases,
                })
            }
            Err(CatalogError::SqlServer(MssqlError::Server { number: 50404, .. })) => {
                Err(CatalogError::NotFound {
                    what: format!("server {name}"),
                })
            }
            Err(e) => Err(e),
            Ok(_) => Ok(record),
        }
    }

    pub(super) async fn ms_set_server_capacity(
        &self,
        name: &str,
        capacity: i32,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let detail = json!({"name": name, "capacity": capacity}).to_string();
        match self
            .query(
                sql::SET_CAPACITY,
                &[&name, &capacity, &actor, &detail.as_str()],
            )
            .await
        {
            Err(CatalogError::SqlServer(MssqlError::Server { number: 50404, .. })) => {
                return Err(CatalogError::NotFound {
                    what: format!("server {name}"),
                })
            }
            Err(CatalogError::SqlServer(MssqlError::Server { number: 50606, .. })) => {
                let tenants = self.one(name).await?.map_or(0, |s| s.tenants);
                return Err(CatalogError::CapacityBelowTenants {
                    name: name.to_owned(),
                    tenants,
                });
            }
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        Self::required_server(self.one(name).await?, name)
    }

    pub(super) async fn ms_set_server_pool_size(
        &self,
        name: &str,
        pool_size: Option<i32>,
        actor: &str,
    ) -> Result<ServerRecord, CatalogError> {
        let detail = json!({"name": name, "pool_size": pool_size}).to_string();
        self.query(
            sql::SET_POOL_SIZE,
            &[&name, &pool_size, &actor, &detail.as_str()],
        )
        .await?;
        Self::required_server(self.one(name).await?, name)
    }
}
