//! Configuration: built-in defaults, then a TOML file (`--config FILE` or `TENANT_CP_CONFIG`),
//! then `TENANT_CP_*` environment variables (e.g. `TENANT_CP_LISTEN`), later ones winning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::postgres::Provisioning;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Which engine hosts tenant databases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// PostgreSQL (`postgres_admin_url`).
    #[default]
    Postgres,
    /// SQL Server (`sqlserver_admin_url`).
    Sqlserver,
}

/// The control plane's configuration.
#[derive(Clone, Deserialize, Serialize)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Directory for local state: signing key, local secret store, the local cluster.
    pub data_dir: PathBuf,
    /// The engine that hosts tenant databases: `postgres` or `sqlserver`.
    pub engine: EngineKind,
    /// libpq URL of a PostgreSQL superuser on the maintenance database. When unset, read from
    /// `<data_dir>/pg-admin-url` (written by `make run`'s local cluster).
    pub postgres_admin_url: Option<String>,
    /// `sqlserver://user:password@host:port?...` URL of a SQL Server admin login (sysadmin),
    /// for `engine = "sqlserver"`; options in README (TLS, Azure AD token).
    pub sqlserver_admin_url: Option<String>,
    /// URL of the catalog database: `postgresql://...` or `sqlserver://...` (its scheme picks
    /// the catalog's backend). Defaults to the engine's admin URL with database
    /// `tenant_catalog` (created when missing), so a SQL Server shop needs no PostgreSQL.
    pub catalog_url: Option<String>,
    /// Host written into tenant connection strings (defaults to the admin URL's host).
    pub tenant_host: Option<String>,
    /// Port written into tenant connection strings (defaults to the admin URL's port).
    pub tenant_port: Option<u16>,
    /// `template` (clone a prepared template; fast) or `migrations`.
    pub provisioning: Provisioning,
    /// Revoke PUBLIC's CONNECT on `postgres` and `template1`.
    pub lock_down_maintenance_databases: bool,
    /// Lease owner name; a restart with the same node id resumes its own operations at once.
    /// Defaults to `<hostname>:<listen>`.
    pub node_id: Option<String>,
    /// Lease duration without a heartbeat, seconds.
    pub lease_ttl_secs: u64,
    /// How often to look for operations whose lease expired, seconds.
    pub sweep_interval_secs: u64,
    /// Cryptoperiod: a tenant's credentials are due for rotation this many seconds after its
    /// onboarding or last rotation (default 30 days). Each connection-string version expires
    /// two cryptoperiods after it is written.
    pub rotate_after_secs: u64,
    /// Whether the background scheduler starts due rotations.
    pub rotation_scheduler: bool,
    /// How often the scheduler looks for due tenants, seconds.
    pub rotation_check_interval_secs: u64,
    /// Most rotations the scheduler runs at once (per replica).
    pub rotation_max_concurrent: usize,
    /// After a failed rotation, seconds before the scheduler tries that tenant again.
    pub rotation_retry_failed_after_secs: u64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// `text` or `json` logs.
    pub log_format: String,
    /// Injected faults, for the crash tests only (see `workflows::faults`).
    pub faults: String,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may hold passwords: never print them.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("engine", &self.engine)
            .field("data_dir", &self.data_dir)
            .field("provisioning", &self.provisioning)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from(".data"),
            engine: EngineKind::Postgres,
            postgres_admin_url: None,
            sqlserver_admin_url: None,
            catalog_url: None,
            tenant_host: None,
            tenant_port: None,
            provisioning: Provisioning::Template,
            lock_down_maintenance_databases: true,
            node_id: None,
            lease_ttl_secs: 30,
            sweep_interval_secs: 10,
            rotate_after_secs: 30 * 24 * 3600,
            rotation_scheduler: true,
            rotation_check_interval_secs: 60,
            rotation_max_concurrent: 4,
            rotation_retry_failed_after_secs: 3600,
            max_body_bytes: 64 * 1024,
            log_format: "text".into(),
            faults: String::new(),
        }
    }
}

/// Errors of loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment variable could not be read or has the wrong type.
    #[error("configuration: {0}")]
    Invalid(String),
    /// No admin URL was configured and none was found under the data directory.
    #[error(
        "no PostgreSQL admin URL: set TENANT_CP_POSTGRES_ADMIN_URL (or postgres_admin_url in \
         the config file), or start the local cluster with `make run`, which writes {0}"
    )]
    NoAdminUrl(String),
    /// The SQL Server engine was chosen without an admin URL.
    #[error(
        "engine is sqlserver but no SQL Server admin URL is set: set \
         TENANT_CP_SQLSERVER_ADMIN_URL=sqlserver://USER:PASSWORD@HOST:1433 (or \
         sqlserver_admin_url in the config file)"
    )]
    NoSqlServerUrl,
}

impl Config {
    /// Loads defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("TENANT_CP_CONFIG").map(PathBuf::from));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment
            .merge(Env::prefixed("TENANT_CP_").ignore(&["config"]))
            .extract()
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// The rotation policy.
    pub fn rotation(&self) -> workflows::RotationPolicy {
        workflows::RotationPolicy {
            rotate_after: Duration::from_secs(self.rotate_after_secs.max(1)),
            scheduler: self.rotation_scheduler,
            check_interval: Duration::from_secs(self.rotation_check_interval_secs.max(1)),
            max_concurrent: self.rotation_max_concurrent.max(1),
            retry_failed_after: Duration::from_secs(self.rotation_retry_failed_after_secs),
        }
    }

    /// The admin URL, from the configuration or the local cluster's file.
    pub fn admin_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.postgres_admin_url {
            return Ok(url.clone());
        }
        let path = self.data_dir.join("pg-admin-url");
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|_| ConfigError::NoAdminUrl(path.display().to_string()))
    }

    /// The SQL Server admin URL.
    pub fn sqlserver_admin_url(&self) -> Result<String, ConfigError> {
        self.sqlserver_admin_url
            .clone()
            .ok_or(ConfigError::NoSqlServerUrl)
    }

    /// Where the catalog lives: `catalog_url` when set, else the engine's admin server with
    /// database `tenant_catalog`.
    pub fn catalog(&self) -> Result<catalog::CatalogConfig, ConfigError> {
        let url = self.catalog_url()?;
        if url.starts_with("sqlserver://") || url.starts_with("mssql://") {
            let target = mssql::Target::parse_url(&url)
                .map_err(|e| ConfigError::Invalid(format!("catalog_url: {e}")))?;
            let target = match &target.database {
                Some(_) => target,
                None => target.with_database("tenant_catalog"),
            };
            Ok(catalog::CatalogConfig::SqlServer { target })
        } else {
            Ok(catalog::CatalogConfig::Postgres {
                url: secrets::SecretValue::new(url),
            })
        }
    }

    /// The catalog URL (the engine's admin URL's server, database `tenant_catalog`, by default).
    pub fn catalog_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.catalog_url {
            return Ok(url.clone());
        }
        let admin = match self.engine {
            EngineKind::Postgres => self.admin_url()?,
            EngineKind::Sqlserver => self.sqlserver_admin_url()?,
        };
        let (base, query) = match admin.split_once('?') {
            Some((b, q)) => (b.to_owned(), format!("?{q}")),
            None => (admin.clone(), String::new()),
        };
        let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
        let base = match base[scheme_end..].find('/') {
            Some(i) => base[..scheme_end + i].to_owned(),
            None => base,
        };
        Ok(format!("{base}/tenant_catalog{query}"))
    }

    /// The node id (lease owner).
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host =
                std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "localhost".into());
            format!("{}:{}", host.trim(), self.listen)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn catalog_url_defaults_to_the_admin_server() {
        let c = Config {
            postgres_admin_url: Some("postgresql://u:p@h:5/postgres?sslmode=disable".into()),
            ..Config::default()
        };
        assert_eq!(
            c.catalog_url().unwrap(),
            "postgresql://u:p@h:5/tenant_catalog?sslmode=disable"
        );
        let c = Config {
            postgres_admin_url: Some("postgresql://u:p@h:5".into()),
            ..Config::default()
        };
        assert_eq!(
            c.catalog_url().unwrap(),
            "postgresql://u:p@h:5/tenant_catalog"
        );
    }

    #[test]
    fn the_catalog_follows_the_engine_unless_configured() {
        let c = Config {
            engine: EngineKind::Sqlserver,
            sqlserver_admin_url: Some(
                "sqlserver://sa:pw@sql:1433/master?trust_server_certificate=true".into(),
            ),
            ..Config::default()
        };
        match c.catalog().unwrap() {
            catalog::CatalogConfig::SqlServer { target } => {
                assert_eq!(target.database.as_deref(), Some("tenant_catalog"));
                assert!(target.tls.trust_server_certificate);
            }
            other => panic!("{other:?}"),
        }
        let c = Config {
            catalog_url: Some("postgresql://u:p@h/cat".into()),
            ..c
        };
        assert!(matches!(
            c.catalog().unwrap(),
            catalog::CatalogConfig::Postgres { .. }
        ));
        let c = Config {
            engine: EngineKind::Sqlserver,
            ..Config::default()
        };
        assert!(c
            .catalog()
            .unwrap_err()
            .to_string()
            .contains("TENANT_CP_SQLSERVER_ADMIN_URL"));
    }

    #[test]
    fn debug_hides_urls() {
        let c = Config {
            postgres_admin_url: Some("postgresql://u:hunter2@h/p".into()),
            sqlserver_admin_url: Some("sqlserver://sa:hunter2@h".into()),
            ..Config::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn missing_admin_url_says_what_to_do() {
        let c = Config {
            data_dir: PathBuf::from("/nonexistent"),
            ..Config::default()
        };
        assert!(c.admin_url().unwrap_err().to_string().contains("make run"));
    }
}
