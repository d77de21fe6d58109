//! The fleet's engines: one per registered database server, keyed by the server's name, made on
//! first use from the catalog's server row and its admin credentials in the secret store, and
//! prepared once per process (start-up checks, the tenant template). Every step, background pass
//! and handler reaches a tenant's database through the engine of the tenant's own server, so one
//! server being down touches only its tenants.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use catalog::{Catalog, ServerRecord, TenantRecord};
use engine::{Engine, EngineError};
use secrets::{SecretName, SecretStore, SecretValue};
use tokio::sync::{Mutex, RwLock};

/// Makes the engine of one server. The server crate implements it: it knows the engine settings
/// (pool sizes, TLS, provisioning) that are the deployment's, not the server's.
#[async_trait]
pub trait EngineFactory: Send + Sync {
    /// The engine for `server`, whose admin connection string is `admin_url`. Makes no
    /// connection (engines connect lazily).
    async fn engine(
        &self,
        server: &ServerRecord,
        admin_url: SecretValue,
    ) -> Result<Arc<dyn Engine>, EngineError>;
}

/// Why a server's engine could not be had.
#[derive(Debug, thiserror::Error)]
pub enum EngineUnavailable {
    /// No server of that name is registered.
    #[error("database server {0} is not registered")]
    UnknownServer(String),
    /// The catalog could not be read.
    #[error("database server {server}: reading the catalog failed: {detail}")]
    Catalog {
        /// The server.
        server: String,
        /// Why.
        detail: String,
    },
    /// Its admin credentials could not be read from the secret store.
    #[error("database server {server}: its admin credentials could not be read: {detail}")]
    Credentials {
        /// The server.
        server: String,
        /// Why (never the value).
        detail: String,
    },
    /// Making or preparing the engine failed (the server is unreachable, refuses the login, or
    /// is not fit).
    #[error("database server {server}: {source}")]
    Engine {
        /// The server.
        server: String,
        /// The engine's error.
        source: EngineError,
    },
}

impl EngineUnavailable {
    /// Whether trying again later may work (the server or a store is down, not misconfigured).
    pub fn is_transient(&self) -> bool {
        match self {
            EngineUnavailable::UnknownServer(_) => false,
            EngineUnavailable::Catalog { .. } | EngineUnavailable::Credentials { .. } => true,
            EngineUnavailable::Engine { source, .. } => source.is_transient(),
        }
    }
}

/// The engines of the registered servers.
pub struct Engines {
    catalog: Catalog,
    secrets: Arc<dyn SecretStore>,
    factory: Arc<dyn EngineFactory>,
    ready: RwLock<HashMap<String, Arc<dyn Engine>>>,
    /// Serialises making and preparing one server's engine (a template build takes seconds).
    making: Mutex<()>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines").finish_non_exhaustive()
    }
}

impl Engines {
    /// An empty registry over the catalog's servers.
    pub fn new(
        catalog: Catalog,
        secrets: Arc<dyn SecretStore>,
        factory: Arc<dyn EngineFactory>,
    ) -> Self {
        Engines {
            catalog,
            secrets,
            factory,
            ready: RwLock::default(),
            making: Mutex::default(),
        }
    }

    /// Adds an engine that is already prepared (the configured server, at start-up).
    pub async fn insert(&self, server: &str, engine: Arc<dyn Engine>) {
        self.ready.write().await.insert(server.to_owned(), engine);
    }

    /// Forgets a server's engine (removed, or its credentials changed).
    pub async fn forget(&self, server: &str) {
        self.ready.write().await.remove(server);
    }

    /// The engine of server `name`, made and prepared on first use.
    pub async fn get(&self, name: &str) -> Result<Arc<dyn Engine>, EngineUnavailable> {
        if let Some(engine) = self.ready.read().await.get(name) {
            return Ok(engine.clone());
        }
        let _making = self.making.lock().await;
        if let Some(engine) = self.ready.read().await.get(name) {
            return Ok(engine.clone());
        }
        let server = self
            .catalog
            .server(name)
            .await
            .map_err(|e| EngineUnavailable::Catalog {
                server: name.to_owned(),
                detail: e.to_string(),
            })?
            .ok_or_else(|| EngineUnavailable::UnknownServer(name.to_owned()))?;
        let engine = self.make(&server).await?;
        self.ready
            .write()
            .await
            .insert(name.to_owned(), engine.clone());
        Ok(engine)
    }

    /// Makes and prepares the engine of a server row (also for a server being registered, to
    /// check it before anything is stored).
    pub async fn make(&self, server: &ServerRecord) -> Result<Arc<dyn Engine>, EngineUnavailable> {
        let credentials = |detail: String| EngineUnavailable::Credentials {
            server: server.name.clone(),
            detail,
        };
        let secret =
            SecretName::new(&server.admin_secret).map_err(|e| credentials(e.to_string()))?;
        let admin_url = self
            .secrets
            .get(&secret, None)
            .await
            .map_err(|e| credentials(e.to_string()))?
            .value;
        self.check(server, admin_url).await
    }

    /// Makes and prepares an engine for `server` with `admin_url` (the credentials of a server
    /// being registered, before anything is stored): the login, the fitness checks and the
    /// tenant template are the registration's checks.
    pub async fn check(
        &self,
        server: &ServerRecord,
        admin_url: SecretValue,
    ) -> Result<Arc<dyn Engine>, EngineUnavailable> {
        let engine = self
            .factory
            .engine(server, admin_url)
            .await
            .map_err(|source| EngineUnavailable::Engine {
                server: server.name.clone(),
                source,
            })?;
        engine
            .prepare()
            .await
            .map_err(|source| EngineUnavailable::Engine {
                server: server.name.clone(),
                source,
            })?;
        Ok(engine)
    }

    /// The engine of the server that holds `tenant`'s database.
    pub async fn for_tenant(
        &self,
        tenant: &TenantRecord,
    ) -> Result<Arc<dyn Engine>, EngineUnavailable> {
        self.get(&tenant.server).await
    }

    /// The engines made so far, by server name (for metrics).
    pub async fn made(&self) -> Vec<(String, Arc<dyn Engine>)> {
        let mut all: Vec<_> = self
            .ready
            .read()
            .await
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}
