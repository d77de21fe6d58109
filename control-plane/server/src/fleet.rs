//! Layer: foundation (start-up wiring, below state). The fleet's engines for the server crate:
//! [`Factory`] makes a registered server's engine with this deployment's engine settings, and
//! [`register_configured`] registers (or updates) the server the configuration names (as
//! `server_name`, `default` unless set) at every start, keeping its admin connection string in
//! the secret store like every server's, and moving tenants that earlier versions recorded under
//! the server's `host:port` onto it. So a deployment with one configured server runs as a fleet
//! of one, and `make run` and every existing test are unchanged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use catalog::{Catalog, NewServer, ServerRecord};
use engine::postgres::{PostgresConfig, PostgresEngine, Provisioning};
use engine::sqlserver::{Flavor, SqlServerConfig, SqlServerEngine};
use engine::{Engine, EngineError, Release};
use secrets::{SecretError, SecretName, SecretStore, SecretValue, SetOptions};

use crate::config::Config;

/// The actor of the start-up registration in the catalog's audit log.
const ACTOR: &str = "control-plane";

/// Makes engines with this deployment's settings.
pub struct Factory {
    /// PostgreSQL: template clone or migrations.
    pub provisioning: Provisioning,
    /// PostgreSQL: how clones copy the template.
    pub clone_strategy: engine::postgres::CloneStrategy,
    /// PostgreSQL: revoke PUBLIC's CONNECT on `postgres` and `template1`.
    pub lock_down_maintenance_databases: bool,
    /// SQL Server: pool sizes.
    pub pool: mssql::PoolOptions,
    /// Connections each engine may hold to its server at once (0: no cap).
    pub max_connections: u32,
    /// The tenant schema release per engine (`None`: `tenant_schema_dir` holds none for it).
    pub releases: Releases,
    /// The deployment whose marker every database and role the engines create carries.
    pub instance: uuid::Uuid,
}

/// The tenant schema release of each engine.
#[derive(Clone, Debug)]
pub struct Releases {
    /// PostgreSQL's.
    pub postgres: Option<Arc<Release>>,
    /// SQL Server's.
    pub sqlserver: Option<Arc<Release>>,
}

impl Releases {
    /// The embedded releases, or those in `dir` (each checked; an engine whose
    /// `tenant-schema/<engine>/` is missing there has none, and `required` must have one).
    pub fn load(dir: Option<&Path>, required: &str) -> Result<Releases, EngineError> {
        let one = |engine: &str| -> Result<Option<Arc<Release>>, EngineError> {
            match dir {
                None => Release::embedded(engine).map(|r| Some(Arc::new(r))),
                Some(d) if d.join("tenant-schema").join(engine).is_dir() => {
                    Release::from_dir(d, engine).map(|r| Some(Arc::new(r)))
                }
                Some(_) => Ok(None),
            }
        };
        let releases = Releases {
            postgres: one("postgres")?,
            sqlserver: one("sqlserver")?,
        };
        if releases.get(required).is_none() {
            return Err(EngineError::Configuration(format!(
                "tenant_schema_dir {} holds no tenant-schema/{required}/ for the configured engine",
                dir.map(|d| d.display().to_string()).unwrap_or_default()
            )));
        }
        Ok(releases)
    }

    /// The release of `engine`, if there is one (Azure SQL Database runs SQL Server's).
    pub fn get(&self, engine: &str) -> Option<Arc<Release>> {
        match engine {
            "postgres" => self.postgres.clone(),
            "sqlserver" | "azure_sql" => self.sqlserver.clone(),
            _ => None,
        }
    }
}

impl Factory {
    /// The settings of `config`, with its releases.
    pub fn new(config: &Config, releases: Releases, instance: uuid::Uuid) -> Self {
        Factory {
            instance,
            provisioning: config.provisioning,
            clone_strategy: config.clone_strategy,
            lock_down_maintenance_databases: config.lock_down_maintenance_databases,
            pool: mssql::PoolOptions::default(),
            max_connections: config.max_connections_per_server,
            releases,
        }
    }

    fn release(&self, server: &ServerRecord) -> Result<Arc<Release>, EngineError> {
        self.releases.get(&server.engine).ok_or_else(|| {
            EngineError::Configuration(format!(
                "server {} runs {}, and tenant_schema_dir holds no tenant schema for it",
                server.name, server.engine
            ))
        })
    }
}

fn port(server: &ServerRecord) -> Option<u16> {
    u16::try_from(server.port).ok()
}

#[async_trait]
impl workflows::EngineFactory for Factory {
    async fn engine(
        &self,
        server: &ServerRecord,
        admin_url: SecretValue,
    ) -> Result<Arc<dyn Engine>, EngineError> {
        Ok(match server.engine.as_str() {
            "postgres" => Arc::new(
                PostgresEngine::new(PostgresConfig {
                    admin_url,
                    tenant_host: Some(server.host.clone()),
                    tenant_port: port(server),
                    provisioning: self.provisioning,
                    lock_down_maintenance_databases: self.lock_down_maintenance_databases,
                    release: Some(self.release(server)?),
                    clone_strategy: self.clone_strategy,
                    max_connections: self.max_connections,
                    instance: Some(self.instance),
                })
                .await?,
            ),
            "sqlserver" | "azure_sql" => Arc::new(SqlServerEngine::new(SqlServerConfig {
                admin: mssql::Target::parse_url(admin_url.expose())
                    .map_err(|e| EngineError::ConnectionString(e.to_string()))?,
                tenant_host: Some(server.host.clone()),
                tenant_port: port(server),
                pool: self.pool,
                release: Some(self.release(server)?),
                max_connections: self.max_connections,
                instance: Some(self.instance),
                flavor: match (&*server.engine, &server.elastic_pool) {
                    ("azure_sql", Some(pool)) => Flavor::AzureSqlDatabase {
                        elastic_pool: pool.clone(),
                        copy_template: self.provisioning == Provisioning::Template,
                    },
                    ("azure_sql", None) => {
                        return Err(EngineError::Configuration(format!(
                            "server {} is azure_sql without an elastic pool",
                            server.name
                        )))
                    }
                    _ => Flavor::SqlServer,
                },
            })),
            other => {
                return Err(EngineError::Configuration(format!(
                    "server {} has engine {other:?}, which this control plane does not know",
                    server.name
                )))
            }
        })
    }
}

/// The name of the secret that holds server `name`'s admin connection string.
pub fn admin_secret_name(name: &str) -> String {
    format!("server-{name}-admin")
}

/// Options of an admin-secret version.
pub fn admin_secret_options(name: &str) -> SetOptions {
    SetOptions {
        tags: BTreeMap::from([
            ("server".to_owned(), name.to_owned()),
            ("purpose".to_owned(), "admin-connection".to_owned()),
        ]),
        expires_at: None,
        content_type: Some("text/x-admin-connection-string".into()),
    }
}

/// `host:port` split (the host may be an IPv6 literal in brackets).
fn host_port(server: &str) -> (String, i32) {
    match server.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.parse().unwrap_or(0),
        ),
        None => (server.to_owned(), 0),
    }
}

/// Registers or updates the configured server as `config.server_name`, with its (already
/// prepared) `engine`: its admin connection string is written to the secret store when it
/// changed, the catalog row is upserted, and tenants recorded under its `host:port` (before the
/// server registry) are moved onto it.
pub async fn register_configured(
    config: &Config,
    admin_url: &SecretValue,
    engine: &Arc<dyn Engine>,
    catalog: &Catalog,
    secrets: &Arc<dyn SecretStore>,
    engines: &workflows::Engines,
) -> anyhow::Result<ServerRecord> {
    let name = config.server_name.clone();
    anyhow::ensure!(
        api_types::valid_server_name(&name),
        "server_name {name:?} is not a server name ({})",
        api_types::SERVER_NAME_PATTERN
    );
    let secret = SecretName::new(&admin_secret_name(&name))?;
    let current = match secrets.get(&secret, None).await {
        Ok(s) => Some(s.value),
        Err(SecretError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if current.as_ref().map(SecretValue::expose) != Some(admin_url.expose()) {
        secrets
            .set(&secret, admin_url.clone(), admin_secret_options(&name))
            .await?;
    }
    let location = engine.server();
    let (host, port) = host_port(&location);
    let mut capacity = config.server_capacity.max(1);
    let mut elastic_pool_id = None;
    let elastic_pool = match config.engine {
        crate::config::EngineKind::AzureSql => {
            let (pool, id) = config.azure_sql_elastic_pool()?;
            if let Some(id) = id {
                elastic_pool_id = Some(id.to_string());
                // Resource Manager down, or a role not yet propagated (a fresh deployment):
                // start all the same, with the capacity the catalog has (or server_capacity).
                match crate::azure_pool::read_limit(&config.arm_options()?, &id).await {
                    Ok(limit) => {
                        let allowed = crate::azure_pool::allowed(&pool, &limit)?;
                        if capacity > allowed {
                            tracing::info!(server = %name, configured = capacity, allowed,
                                           "server_capacity lowered to what the elastic pool holds");
                            capacity = allowed;
                        }
                    }
                    Err(e) => {
                        if let Some(known) = catalog.server(&name).await? {
                            capacity = known.capacity;
                        }
                        tracing::warn!(server = %name, error = %e, capacity,
                                       "the elastic pool's database limit could not be read; \
                                        keeping the capacity (PUT /v1/servers/{name}/capacity \
                                        reads it again)");
                    }
                }
            }
            Some(pool)
        }
        _ => None,
    };
    let record = catalog
        .upsert_server(
            NewServer {
                name: name.clone(),
                engine: config.engine.as_str().to_owned(),
                elastic_pool,
                elastic_pool_id,
                admin_secret: secret.to_string(),
                host,
                port,
                capacity,
                labels: config.server_labels.clone(),
                pool_size: None,
            },
            Some(&location),
            ACTOR,
        )
        .await?;
    engines.insert(&name, engine.clone()).await;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split_from_the_right() {
        assert_eq!(host_port("db.example:5432"), ("db.example".into(), 5432));
        assert_eq!(host_port("[::1]:1433"), ("::1".into(), 1433));
    }
}
