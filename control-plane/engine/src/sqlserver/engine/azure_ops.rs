//! The engine's steps that exist on Azure SQL Database only (the statements and the copy
//! state machine are `sqlserver::azure`): dropping without `SINGLE_USER`, the template that
//! tenants are copied from, and [`AzureCopy`], the state machine's probe on `master`.

use async_trait::async_trait;
use mssql::{Conn, MssqlError};
use tracing::{info, warn};

use super::{
    azure, classify, sql, CopyObservation, CopyProbe, Engine as _, EngineError, Flavor,
    SqlServerEngine, SqlServerErrorKind,
};

impl SqlServerEngine {
    /// Drops `database` on Azure SQL Database: every session ended (`RESTRICTED_USER`), then
    /// `DROP DATABASE` alone in its batch; a database gone meanwhile (3701) is dropped. One that
    /// cannot be restricted (a template copy still in flight: an onboarding undone mid-copy) is
    /// dropped all the same, which is how Microsoft cancels a copy.
    pub(super) async fn drop_on_azure(&self, database: &str) -> Result<(), EngineError> {
        self.tenants.forget(database);
        if let Err(e) = self
            .master()
            .await?
            .batch(&azure::sql::restrict(database)?)
            .await
        {
            warn!(%database, error = %e, "azure sql: could not restrict before dropping");
        }
        self.drop_alone(database).await
    }

    /// `DROP DATABASE` alone in its batch on `master`; one gone meanwhile (3701) is dropped.
    async fn drop_alone(&self, database: &str) -> Result<(), EngineError> {
        self.tenants.forget(database);
        match self
            .master()
            .await?
            .batch(&azure::sql::drop(database)?)
            .await
        {
            Ok(_) | Err(MssqlError::Server { number: 3701, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The generation the template in `conn`'s database was marked ready with, if any.
    async fn template_mark(conn: &mut Conn) -> Result<Option<String>, EngineError> {
        let row = conn.query_opt(azure::sql::READ_TEMPLATE_MARK, &[]).await?;
        Ok(row.and_then(|r| r.get::<&str, _>(0).map(str::to_owned)))
    }

    /// The name of the template that copies are made of on Azure SQL Database.
    pub(super) fn template_name(&self) -> String {
        format!(
            "tcp_template_{}",
            self.pool_generation().to_ascii_lowercase()
        )
    }

    /// Makes the template of this release in the pool unless it is ready: created, migrated,
    /// then marked with its generation (a copy is only ever made of a marked one). Then, once
    /// per process, drops the templates of earlier releases ([`Self::drop_other_templates`]).
    pub(super) async fn ensure_template(&self) -> Result<(), EngineError> {
        self.build_template().await?;
        if !self
            .old_templates_dropped
            .swap(true, std::sync::atomic::Ordering::SeqCst)
            && !self.drop_other_templates().await
        {
            // Not listed (the server busy, a failover): the next template check tries again.
            self.old_templates_dropped
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    }

    /// Drops the templates of earlier releases in this pool: a `tcp_template_*` database of the
    /// pool that carries our template mark (a database without it is never touched) naming a
    /// release version below this one, that no copy is being made from or into. Each takes a
    /// place in the pool (whose database limit, less one for the current template, is the
    /// server's capacity). A template of a later release (an older replica restarting during a
    /// rolling upgrade) is left alone. An older replica that starts a copy of its template
    /// between the listing and the drop sees the copy fail; its step drops the failed copy and
    /// builds the template again, which the next newer process drops. Errors are logged, not
    /// returned; returns whether the templates could be listed.
    async fn drop_other_templates(&self) -> bool {
        let Flavor::AzureSqlDatabase { elastic_pool, .. } = &self.flavor else {
            return true;
        };
        let current = self.template_name();
        let names: Vec<String> = match self.master().await {
            Ok(mut master) => match master
                .query(
                    azure::sql::OTHER_TEMPLATES,
                    &[&current.as_str(), &elastic_pool.as_str()],
                )
                .await
            {
                Ok(rows) => rows
                    .iter()
                    .filter_map(|r| r.get::<&str, _>(0).map(str::to_owned))
                    .collect(),
                Err(e) => {
                    warn!(error = %e, "azure sql: could not list earlier templates");
                    return false;
                }
            },
            Err(e) => {
                warn!(error = %e, "azure sql: could not list earlier templates");
                return false;
            }
        };
        for name in names {
            let mark = match self.connect_tagged(&self.admin.with_database(&name)).await {
                Ok(mut conn) => Self::template_mark(&mut conn).await,
                Err(e) => Err(e),
            };
            let earlier = |mark: &str| {
                azure::sql::mark_version(mark).is_some_and(|v| v < self.release.version)
            };
            match mark {
                Ok(Some(mark)) if earlier(&mark) => match self.drop_on_azure(&name).await {
                    Ok(()) => {
                        info!(template = %name, "azure sql: dropped the template of an earlier release")
                    }
                    Err(e) => {
                        warn!(template = %name, error = %e, "azure sql: could not drop an earlier template")
                    }
                },
                Ok(_) => {}
                Err(e) => {
                    warn!(template = %name, error = %e, "azure sql: could not read an earlier template's mark")
                }
            }
        }
        true
    }

    /// This release's template, built unless it is ready.
    async fn build_template(&self) -> Result<(), EngineError> {
        let Flavor::AzureSqlDatabase { elastic_pool, .. } = &self.flavor else {
            return Ok(());
        };
        let template = self.template_name();
        let generation = self.pool_generation();
        if self.database_exists(&template).await? {
            let mut conn = self
                .connect_tagged(&self.admin.with_database(&template))
                .await?;
            if Self::template_mark(&mut conn).await?.as_deref() == Some(generation.as_str()) {
                return Ok(());
            }
        } else {
            match self
                .master()
                .await?
                .batch(&azure::sql::create_in_pool(&template, elastic_pool)?)
                .await
            {
                Ok(_) => {}
                Err(MssqlError::Server { number, .. })
                    if classify(number) == SqlServerErrorKind::DatabaseExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        // One builder at a time (replicas, concurrent onboardings): an application lock held by
        // this session in the template until it is marked; a waiter finds it marked and leaves.
        let mut conn = self
            .connect_tagged(&self.admin.with_database(&template))
            .await?;
        conn.execute(azure::sql::LOCK_TEMPLATE, &[]).await?;
        if Self::template_mark(&mut conn).await?.as_deref() != Some(generation.as_str()) {
            self.migrate(&template).await?;
            conn.batch(sql::REVOKE_GUEST).await?;
            conn.execute(azure::sql::MARK_TEMPLATE, &[&generation.as_str()])
                .await?;
            info!(%template, "azure sql: template ready to be copied");
        }
        // Closing the session releases the lock.
        drop(conn);
        Ok(())
    }
}

/// [`azure::copy_until_online`] on this engine's `master`.
pub(super) struct AzureCopy<'a> {
    pub(super) engine: &'a SqlServerEngine,
}

#[async_trait]
impl CopyProbe for AzureCopy<'_> {
    async fn observe(&self, database: &str) -> Result<Option<CopyObservation>, EngineError> {
        let row = self
            .engine
            .master()
            .await?
            .query_opt(azure::sql::COPY_STATE, &[&database])
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let bad = |e: tiberius::error::Error| EngineError::Db {
            code: "copy_state".into(),
            message: format!("reading the copy state of {database}: {e}"),
        };
        let utc = |t: Option<chrono::NaiveDateTime>| t.map(|t| t.and_utc());
        Ok(Some(CopyObservation {
            state: r
                .try_get::<&str, _>(0)
                .map_err(bad)?
                .unwrap_or_default()
                .to_owned(),
            percent_complete: r.try_get::<f64, _>(1).map_err(bad)?,
            error_code: r.try_get::<i32, _>(2).map_err(bad)?,
            error_desc: r.try_get::<&str, _>(3).map_err(bad)?.map(str::to_owned),
            error_severity: r.try_get::<i32, _>(4).map_err(bad)?,
            modified: utc(r.try_get::<chrono::NaiveDateTime, _>(5).map_err(bad)?),
            copy_row: r.try_get::<i32, _>(6).map_err(bad)? == Some(1),
            created: utc(r.try_get::<chrono::NaiveDateTime, _>(7).map_err(bad)?),
        }))
    }

    async fn start_copy(&self, database: &str) -> Result<(), EngineError> {
        let Flavor::AzureSqlDatabase { elastic_pool, .. } = &self.engine.flavor else {
            return Err(EngineError::Configuration(
                "a template copy on a server that is not Azure SQL Database".into(),
            ));
        };
        let statement =
            azure::sql::copy_into_pool(database, &self.engine.template_name(), elastic_pool)?;
        match self.engine.master().await?.batch(&statement).await {
            Ok(_) => Ok(()),
            // Another process started it first: poll that one.
            Err(MssqlError::Server { number, .. })
                if classify(number) == SqlServerErrorKind::DatabaseExists =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn drop_copy(&self, database: &str) -> Result<(), EngineError> {
        // Microsoft's way to cancel or clean up a copy: DROP DATABASE on the new database, on
        // master, alone (a copy that is not online cannot be restricted first).
        warn!(%database, "azure sql: dropping a failed or abandoned template copy");
        self.engine.drop_alone(database).await
    }
}
