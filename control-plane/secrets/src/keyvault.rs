//! Azure Key Vault backend, through the official SDK (`azure_security_keyvault_secrets` 1.x).
//!
//! What it stores: each [`SecretName`] is one Key Vault secret; every [`SecretStore::set`] is a
//! new Key Vault version; tags, expiry (`attributes.exp`), enabled and content type are Key
//! Vault's own attributes. Nothing is kept locally: the vault is the only copy.
//!
//! How it talks to the vault:
//!
//! * one [`SecretClient`] over our own reqwest client (rustls, optional extra trusted roots from
//!   [`KeyVaultOptions::ca_bundle`], per-attempt timeouts, no redirects);
//! * the credential the operator configured ([`AzureCredential`]; there is no implicit chain);
//! * the SDK's challenge authentication: the first request goes without a token, the vault
//!   answers 401 with the tenant and resource to ask for, and the SDK checks that the resource's
//!   host is a parent domain of the vault's host before it fetches a token;
//! * our retry policy inside the SDK pipeline ([`retry`]): throttling (honouring `Retry-After`
//!   up to `max_delay`), 5xx and network errors, exponential backoff with full jitter, bounded
//!   attempts.
//!
//! Key Vault's soft delete and recovery finish a moment after the call that started them returns.
//! [`KeyVaultStore::delete`] and [`KeyVaultStore::recover`] therefore wait until the new state can
//! be read, and a purge or write that meets a "still being deleted / recovered" conflict waits and
//! tries again, all within [`KeyVaultOptions::settle_timeout`]. This waiting is not a retry of a
//! failed request (those happen in the pipeline only): it polls for a state change.
//!
//! Key Vault's timestamps have one-second resolution. Versions written within the same second
//! have no recorded order; [`KeyVaultStore::list_versions`] puts the current one last among them
//! and orders the rest by version id.

pub mod credential;
mod error;
mod model;
pub mod retry;

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::http::{ClientOptions, RequestContent, Transport};
use azure_security_keyvault_secrets::models::{
    DeletedSecret as KvDeletedSecret, SecretAttributes, SecretClientGetSecretOptions,
    SecretClientUpdateSecretPropertiesOptions, SetSecretParameters,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt as _;

pub use credential::{
    AzureCredential, AzureTokenProvider, StaticTokenCredential, UserAssignedIdentity,
};
use error::{classify, Context, Failure, Op};
use model::{
    bundle_properties, name_from_id, properties, purgeable, to_chrono, to_time, valid_version,
};
pub use retry::RetryOptions;

use crate::{
    DeletedSecret, PropertiesUpdate, Secret, SecretError, SecretName, SecretProperties,
    SecretStore, SecretValue, SetOptions,
};

/// How to reach a vault. `Debug` never prints a secret (credentials redact themselves).
#[derive(Clone, Debug)]
pub struct KeyVaultOptions {
    /// The vault URL, `https://<vault-name>.vault.azure.net/` (or a sovereign cloud's, or a
    /// Managed HSM's). Must be https.
    pub vault_url: String,
    /// The identity to authenticate as.
    pub credential: AzureCredential,
    /// Retries of throttled and failed calls.
    pub retry: RetryOptions,
    /// Extra trusted root certificates (PEM, one or more), on top of the built-in web roots: for
    /// a TLS-inspecting proxy with a private CA, or the test double.
    pub ca_bundle: Option<PathBuf>,
    /// Connect to this address instead of resolving the vault's host name (like curl's
    /// `--resolve`; the port still comes from the URL, and the certificate is still checked
    /// against the host name). For a private endpoint without private DNS, and for the test
    /// double, whose `*.localhost` name does not resolve everywhere.
    pub connect_to: Option<IpAddr>,
    /// Time to establish a connection, per attempt. Default 10 s.
    pub connect_timeout: Duration,
    /// Time for one whole request, per attempt. Default 30 s.
    pub request_timeout: Duration,
    /// How long to wait for a soft delete, recovery or purge to settle. Default 60 s.
    pub settle_timeout: Duration,
}

impl KeyVaultOptions {
    /// Options with the defaults for everything but the vault and the credential.
    pub fn new(vault_url: impl Into<String>, credential: AzureCredential) -> Self {
        Self {
            vault_url: vault_url.into(),
            credential,
            retry: RetryOptions::default(),
            ca_bundle: None,
            connect_to: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            settle_timeout: Duration::from_secs(60),
        }
    }
}

/// How our HTTP client reaches an Azure service (Key Vault, Blob Storage).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Extra trusted root certificates (PEM), on top of the built-in web roots.
    pub ca_bundle: Option<PathBuf>,
    /// Connect to this address instead of resolving the URL's host (the certificate is still
    /// checked against the host name).
    pub connect_to: Option<IpAddr>,
    /// Time to establish a connection, per attempt.
    pub connect_timeout: Duration,
    /// Time for one whole request, per attempt.
    pub request_timeout: Duration,
}

/// The SDK transport every Azure client of ours uses: reqwest over rustls, `options`' extra
/// roots and address pin, per-attempt timeouts, and no redirects (REST API guidelines
/// discourage them, and following one would send our bearer token somewhere else). It never
/// decompresses (reqwest is built without those features), as the storage SDK requires of a
/// transport it is given: partitioned downloads need the bytes as stored. `what`
/// names the service in errors ("key vault", "archive container").
pub fn azure_transport(
    what: &str,
    url: &url::Url,
    options: &HttpOptions,
) -> Result<Transport, String> {
    let host = url
        .host_str()
        .ok_or_else(|| format!("{what} URL {url} has no host"))?;
    let mut http = reqwest_013::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .redirect(reqwest_013::redirect::Policy::none());
    if let Some(path) = &options.ca_bundle {
        let pem =
            std::fs::read(path).map_err(|e| format!("{what} CA bundle {}: {e}", path.display()))?;
        let certs = reqwest_013::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{what} CA bundle {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{what} CA bundle {} holds no PEM certificate",
                path.display()
            ));
        }
        http = http.tls_certs_merge(certs);
    }
    if let Some(ip) = options.connect_to {
        let port = url.port_or_known_default().unwrap_or(443);
        http = http.resolve(host, std::net::SocketAddr::new(ip, port));
    }
    let http = http
        .build()
        .map_err(|e| format!("building the HTTP client for {url}: {e}"))?;
    Ok(Transport::new(Arc::new(http)))
}

/// The Azure Key Vault backend. See the [module docs](self).
pub struct KeyVaultStore {
    client: SecretClient,
    /// The vault URL, normalised to end with `/`.
    vault_url: String,
    credential: String,
    retry: RetryOptions,
    settle_timeout: Duration,
}

impl fmt::Debug for KeyVaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVaultStore")
            .field("vault_url", &self.vault_url)
            .field("credential", &self.credential)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Outcome of one poll of a settling operation.
enum Poll<T> {
    Done(T),
    Pending,
}

impl KeyVaultStore {
    /// Builds the client. Nothing is sent yet; [`KeyVaultStore::check_access`] makes a first
    /// call. Fails with [`SecretError::Unavailable`] for a bad URL, CA bundle or credential setup.
    pub fn new(options: KeyVaultOptions) -> Result<Self, SecretError> {
        let bad = |detail: String| SecretError::Unavailable { detail };
        let mut url = url::Url::parse(options.vault_url.trim())
            .map_err(|e| bad(format!("key vault URL {:?}: {e}", options.vault_url)))?;
        if url.scheme() != "https" {
            return Err(bad(format!(
                "key vault URL {url} must be https://<vault-name>.vault.azure.net/"
            )));
        }
        if url.host_str().is_none() {
            return Err(bad(format!("key vault URL {url} has no host")));
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        let vault_url = url.to_string();

        let transport = azure_transport(
            "key vault",
            &url,
            &HttpOptions {
                ca_bundle: options.ca_bundle.clone(),
                connect_to: options.connect_to,
                connect_timeout: options.connect_timeout,
                request_timeout: options.request_timeout,
            },
        )
        .map_err(bad)?;

        let token_credential = options.credential.build()?;
        let client_options = ClientOptions {
            retry: retry::azure_retry(options.retry.clone()),
            transport: Some(transport),
            ..ClientOptions::default()
        };
        let client = SecretClient::new(
            &vault_url,
            token_credential,
            Some(SecretClientOptions {
                client_options,
                ..SecretClientOptions::default()
            }),
        )
        .map_err(|e| bad(format!("key vault client for {vault_url}: {e}")))?;
        Ok(Self {
            client,
            vault_url,
            credential: options.credential.describe(),
            retry: options.retry,
            settle_timeout: options.settle_timeout,
        })
    }

    /// Lists one page of secret names: proves the vault answers, the credential gets a token and
    /// the identity may list secrets. For a clear error at start-up rather than at the first
    /// onboarding.
    pub async fn check_access(&self) -> Result<(), SecretError> {
        let mut pager = self
            .client
            .list_secret_properties(Some(
                azure_security_keyvault_secrets::models::SecretClientListSecretPropertiesOptions {
                    maxresults: Some(1),
                    ..Default::default()
                },
            ))
            .map_err(|e| self.fail(Op::ListNames, "", e))?;
        pager
            .try_next()
            .await
            .map_err(|e| self.fail(Op::ListNames, "", e))?;
        Ok(())
    }

    fn context(&self) -> Context<'_> {
        Context {
            vault_url: &self.vault_url,
            credential: &self.credential,
            max_attempts: self.retry.max_attempts.max(1),
        }
    }

    fn fail(&self, op: Op, name: &str, e: azure_core::Error) -> SecretError {
        self.context().map(op, name, classify(&e))
    }

    /// Polls `step` until it reports done, waiting a little longer each time, for at most the
    /// settle timeout.
    async fn settle<T, F, Fut>(&self, what: &str, mut step: F) -> Result<T, SecretError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>, SecretError>>,
    {
        let deadline = Instant::now() + self.settle_timeout;
        let cap = self.retry.max_delay.min(Duration::from_secs(2));
        let mut wait = self
            .retry
            .base_delay
            .max(Duration::from_millis(10))
            .min(cap);
        loop {
            if let Poll::Done(v) = step().await? {
                return Ok(v);
            }
            if Instant::now() + wait > deadline {
                return Err(SecretError::Unavailable {
                    detail: format!(
                        "Key Vault {}: {what} did not finish within {} s",
                        self.vault_url,
                        self.settle_timeout.as_secs()
                    ),
                });
            }
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "{what}: waiting for Key Vault"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(cap);
        }
    }

    /// Whether `e` is a 409 that says another operation on the name is still settling (being
    /// deleted, being recovered), as opposed to the name being soft-deleted.
    fn is_settling_conflict(e: &azure_core::Error) -> bool {
        matches!(classify(e), Failure::Service(s) if s.status == 409 && !s.is_deleted_but_recoverable())
    }

    async fn get_raw(
        &self,
        name: &SecretName,
        version: Option<&str>,
    ) -> Result<azure_security_keyvault_secrets::models::Secret, azure_core::Error> {
        self.client
            .get_secret(
                name.as_str(),
                Some(SecretClientGetSecretOptions {
                    secret_version: version.map(str::to_owned),
                    ..Default::default()
                }),
            )
            .await?
            .into_model()
    }

    /// After a 404 for `name/version`: VersionNotFound if the secret itself is live, else
    /// NotFound.
    async fn missing_version(&self, name: &SecretName, version: &str) -> SecretError {
        match self.get_raw(name, None).await {
            Ok(_) => SecretError::VersionNotFound {
                name: name.to_string(),
                version: version.to_owned(),
            },
            Err(e) => match classify(&e) {
                Failure::Service(s) if s.is_disabled() => SecretError::VersionNotFound {
                    name: name.to_string(),
                    version: version.to_owned(),
                },
                failure => self.context().map(Op::Get, name.as_str(), failure),
            },
        }
    }

    async fn get_deleted_raw(&self, name: &SecretName) -> Result<KvDeletedSecret, SecretError> {
        self.client
            .get_deleted_secret(name.as_str(), None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| self.fail(Op::GetDeleted, name.as_str(), e))
    }

    fn deleted_from(
        &self,
        name: &SecretName,
        d: &KvDeletedSecret,
    ) -> Result<DeletedSecret, SecretError> {
        let corrupt = |what: &str| {
            SecretError::Corrupt {
            detail: format!(
                "Key Vault {} answered for deleted secret {name} without {what} (is soft delete on?)",
                self.vault_url
            ),
        }
        };
        let name = match d.id.as_deref().and_then(name_from_id) {
            Some(n) => n,
            None => name.clone(),
        };
        Ok(DeletedSecret {
            deleted_at: to_chrono(d.deleted_date.ok_or_else(|| corrupt("a deletion date"))?),
            scheduled_purge_at: to_chrono(
                d.scheduled_purge_date
                    .ok_or_else(|| corrupt("a scheduled purge date"))?,
            ),
            name,
        })
    }
}

#[async_trait::async_trait]
impl SecretStore for KeyVaultStore {
    fn backend(&self) -> &'static str {
        "azure-key-vault"
    }

    fn location(&self) -> String {
        self.vault_url.clone()
    }

    async fn set(
        &self,
        name: &SecretName,
        value: SecretValue,
        options: SetOptions,
    ) -> Result<SecretProperties, SecretError> {
        let params = SetSecretParameters {
            value: Some(value.expose().to_owned()),
            content_type: options.content_type,
            tags: (!options.tags.is_empty()).then(|| options.tags.into_iter().collect()),
            secret_attributes: Some(SecretAttributes {
                enabled: Some(true),
                expires: options.expires_at.map(to_time).transpose()?,
                ..Default::default()
            }),
        };
        let params = &params;
        let secret = self
            .settle(&format!("writing secret {name}"), || async move {
                let content: RequestContent<SetSecretParameters> = params
                    .clone()
                    .try_into()
                    .map_err(|e| self.fail(Op::Set, name.as_str(), e))?;
                match self.client.set_secret(name.as_str(), content, None).await {
                    Ok(r) => r
                        .into_model()
                        .map(Poll::Done)
                        .map_err(|e| self.fail(Op::Set, name.as_str(), e)),
                    // Right after a purge or a recovery the name is briefly in limbo.
                    Err(e) if Self::is_settling_conflict(&e) => Ok(Poll::Pending),
                    Err(e) => Err(self.fail(Op::Set, name.as_str(), e)),
                }
            })
            .await?;
        let props = bundle_properties(&self.vault_url, name, &secret)?;
        tracing::info!(secret = %props.name, version = %props.version, vault = %self.vault_url, "stored secret version");
        Ok(props)
    }

    async fn get(&self, name: &SecretName, version: Option<&str>) -> Result<Secret, SecretError> {
        if let Some(v) = version {
            if !valid_version(v) {
                return Err(match self.get_raw(name, None).await {
                    Err(e) if matches!(classify(&e), Failure::Service(ref s) if s.status == 404) => {
                        SecretError::NotFound {
                            name: name.to_string(),
                        }
                    }
                    _ => SecretError::VersionNotFound {
                        name: name.to_string(),
                        version: v.to_owned(),
                    },
                });
            }
        }
        let secret = match self.get_raw(name, version).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match (classify(&e), version) {
                    (Failure::Service(s), Some(v)) if s.status == 404 => {
                        self.missing_version(name, v).await
                    }
                    (failure, _) => self.context().map(Op::Get, name.as_str(), failure),
                })
            }
        };
        let properties = bundle_properties(&self.vault_url, name, &secret)?;
        let value = secret.value.ok_or_else(|| SecretError::Corrupt {
            detail: format!(
                "Key Vault {} answered for secret {name} without a value",
                self.vault_url
            ),
        })?;
        Ok(Secret {
            properties,
            value: SecretValue::new(value),
        })
    }

    async fn list_versions(&self, name: &SecretName) -> Result<Vec<SecretProperties>, SecretError> {
        let fail = |e: azure_core::Error| self.fail(Op::ListVersions, name.as_str(), e);
        let mut pager = self
            .client
            .list_secret_properties_versions(name.as_str(), None)
            .map_err(fail)?;
        let mut versions = Vec::new();
        while let Some(item) = pager.try_next().await.map_err(fail)? {
            versions.push(properties(
                &self.vault_url,
                name,
                item.id.as_deref(),
                item.attributes.as_ref(),
                item.tags.as_ref(),
                item.content_type.as_ref(),
            )?);
        }
        // Key Vault answers an empty list for a name it does not know (or only knows as
        // soft-deleted).
        if versions.is_empty() {
            return Err(SecretError::NotFound {
                name: name.to_string(),
            });
        }
        let mut seconds: Vec<i64> = versions.iter().map(|v| v.created_at.timestamp()).collect();
        seconds.sort_unstable();
        let ties = seconds.windows(2).any(|w| w[0] == w[1]);
        let current = if ties {
            self.get_raw(name, None)
                .await
                .ok()
                .and_then(|s| bundle_properties(&self.vault_url, name, &s).ok())
                .map(|p| p.version)
        } else {
            None
        };
        versions.sort_by(|a, b| {
            let is_current = |p: &SecretProperties| current.as_deref() == Some(p.version.as_str());
            (a.created_at.timestamp(), is_current(a), &a.version).cmp(&(
                b.created_at.timestamp(),
                is_current(b),
                &b.version,
            ))
        });
        Ok(versions)
    }

    async fn list_names(&self) -> Result<Vec<SecretName>, SecretError> {
        let fail = |e: azure_core::Error| self.fail(Op::ListNames, "", e);
        let mut pager = self.client.list_secret_properties(None).map_err(fail)?;
        let mut names = Vec::new();
        while let Some(item) = pager.try_next().await.map_err(fail)? {
            // Certificates' backing secrets and names we could not have written are not ours.
            if item.managed == Some(true) {
                continue;
            }
            if let Some(name) = item.id.as_deref().and_then(name_from_id) {
                names.push(name);
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn update_properties(
        &self,
        name: &SecretName,
        version: &str,
        update: PropertiesUpdate,
    ) -> Result<SecretProperties, SecretError> {
        if !valid_version(version) {
            return Err(self.missing_version(name, version).await);
        }
        // Built by hand rather than from the SDK's model, which cannot express "clear the
        // expiry" (`"exp": null`).
        let mut attributes = serde_json::Map::new();
        if let Some(enabled) = update.enabled {
            attributes.insert("enabled".into(), enabled.into());
        }
        if let Some(expires_at) = update.expires_at {
            let exp = match expires_at {
                Some(t) => serde_json::Value::from(t.timestamp()),
                None => serde_json::Value::Null,
            };
            attributes.insert("exp".into(), exp);
        }
        let mut body = serde_json::Map::new();
        if !attributes.is_empty() {
            body.insert("attributes".into(), attributes.into());
        }
        if let Some(tags) = update.tags {
            body.insert(
                "tags".into(),
                serde_json::to_value(tags).map_err(|e| SecretError::Unavailable {
                    detail: format!("encoding tags for secret {name}: {e}"),
                })?,
            );
        }
        let bytes = serde_json::to_vec(&body).map_err(|e| SecretError::Unavailable {
            detail: format!("encoding the update of secret {name}: {e}"),
        })?;
        let result = self
            .client
            .update_secret_properties(
                name.as_str(),
                RequestContent::from(bytes),
                Some(SecretClientUpdateSecretPropertiesOptions {
                    secret_version: Some(version.to_owned()),
                    ..Default::default()
                }),
            )
            .await
            .and_then(|r| r.into_model());
        let secret = match result {
            Ok(s) => s,
            Err(e) => {
                return Err(match classify(&e) {
                    Failure::Service(s) if s.status == 404 => {
                        self.missing_version(name, version).await
                    }
                    failure => self
                        .context()
                        .map(Op::UpdateProperties, name.as_str(), failure),
                })
            }
        };
        let props = bundle_properties(&self.vault_url, name, &secret)?;
        tracing::info!(secret = %props.name, version = %props.version, enabled = props.enabled, "updated secret properties");
        Ok(props)
    }

    async fn delete(&self, name: &SecretName) -> Result<DeletedSecret, SecretError> {
        let deleted = self
            .client
            .delete_secret(name.as_str(), None)
            .await
            .and_then(|r| r.into_model())
            .map_err(|e| self.fail(Op::Delete, name.as_str(), e))?;
        let deleted = self.deleted_from(name, &deleted)?;
        // The deletion finishes in the background; until it has, a purge or a get_deleted
        // would not find the secret.
        self.settle(&format!("soft delete of secret {name}"), || async move {
            match self.get_deleted_raw(name).await {
                Ok(_) => Ok(Poll::Done(())),
                Err(SecretError::NotFound { .. }) => Ok(Poll::Pending),
                Err(e) => Err(e),
            }
        })
        .await?;
        tracing::info!(secret = %deleted.name, scheduled_purge_at = %deleted.scheduled_purge_at, "soft-deleted secret");
        Ok(deleted)
    }

    async fn get_deleted(&self, name: &SecretName) -> Result<DeletedSecret, SecretError> {
        let d = self.get_deleted_raw(name).await?;
        self.deleted_from(name, &d)
    }

    async fn purge(&self, name: &SecretName) -> Result<(), SecretError> {
        let refused = self
            .settle(&format!("purge of secret {name}"), || async move {
                match self.client.purge_deleted_secret(name.as_str(), None).await {
                    Ok(_) => Ok(Poll::Done(None)),
                    Err(e) if Self::is_settling_conflict(&e) => Ok(Poll::Pending),
                    Err(e) => match classify(&e) {
                        Failure::Service(s) if s.status == 403 => Ok(Poll::Done(Some(s))),
                        failure => Err(self.context().map(Op::Purge, name.as_str(), failure)),
                    },
                }
            })
            .await?;
        let Some(refusal) = refused else {
            tracing::info!(secret = %name, vault = %self.vault_url, "purged secret");
            return Ok(());
        };
        // A 403 is either purge protection or a missing purge permission. The deleted secret's
        // recovery level tells them apart ("Recoverable" without "+Purgeable" means protected),
        // and carries the date the vault will purge it itself.
        match self.get_deleted_raw(name).await {
            Ok(d) => {
                let protected = refusal.mentions_purge_protection()
                    || d.attributes
                        .as_ref()
                        .and_then(|a| a.recovery_level.as_ref())
                        .is_some_and(|level| !purgeable(level));
                if protected {
                    let deleted = self.deleted_from(name, &d)?;
                    tracing::info!(secret = %name, scheduled_purge_at = %deleted.scheduled_purge_at, "purge refused: the vault has purge protection");
                    Err(SecretError::PurgeProtected {
                        name: deleted.name.to_string(),
                        scheduled_purge_at: deleted.scheduled_purge_at,
                    })
                } else {
                    Err(self.context().permission_denied(Op::Purge, &refusal))
                }
            }
            Err(e) if refusal.mentions_purge_protection() => Err(SecretError::Unavailable {
                detail: format!(
                    "Key Vault {} refused to purge secret {name} because of purge protection, \
                     and reading its scheduled purge date failed: {e}",
                    self.vault_url
                ),
            }),
            Err(_) => Err(self.context().permission_denied(Op::Purge, &refusal)),
        }
    }

    async fn recover(&self, name: &SecretName) -> Result<SecretProperties, SecretError> {
        let secret = self
            .settle(&format!("recovery of secret {name}"), || async move {
                match self
                    .client
                    .recover_deleted_secret(name.as_str(), None)
                    .await
                {
                    Ok(r) => r
                        .into_model()
                        .map(Poll::Done)
                        .map_err(|e| self.fail(Op::Recover, name.as_str(), e)),
                    Err(e) if Self::is_settling_conflict(&e) => Ok(Poll::Pending),
                    Err(e) => Err(self.fail(Op::Recover, name.as_str(), e)),
                }
            })
            .await?;
        let props = bundle_properties(&self.vault_url, name, &secret)?;
        let version = props.version.as_str();
        // The recovery finishes in the background; wait until the version can be read (a
        // disabled version answers 403, which also means it is back).
        self.settle(&format!("recovery of secret {name}"), || async move {
            match self.get_raw(name, Some(version)).await {
                Ok(_) => Ok(Poll::Done(())),
                Err(e) => match classify(&e) {
                    Failure::Service(s) if s.status == 404 => Ok(Poll::Pending),
                    Failure::Service(s) if s.is_disabled() => Ok(Poll::Done(())),
                    failure => Err(self.context().map(Op::Get, name.as_str(), failure)),
                },
            }
        })
        .await?;
        tracing::info!(secret = %props.name, "recovered secret");
        Ok(props)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn static_token() -> AzureCredential {
        AzureCredential::StaticTokenForTests {
            token: SecretValue::new("tok-secret"),
        }
    }

    #[test]
    fn vault_url_is_normalised_and_must_be_https() {
        let s = KeyVaultStore::new(KeyVaultOptions::new(
            "https://x.vault.azure.net",
            static_token(),
        ))
        .unwrap();
        assert_eq!(s.location(), "https://x.vault.azure.net/");
        assert_eq!(s.backend(), "azure-key-vault");
        let e = KeyVaultStore::new(KeyVaultOptions::new(
            "http://x.vault.azure.net/",
            static_token(),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("must be https"), "{e}");
        assert!(KeyVaultStore::new(KeyVaultOptions::new("not a url", static_token())).is_err());
    }

    #[test]
    fn bad_ca_bundle_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "no certificates here").unwrap();
        let mut o = KeyVaultOptions::new("https://x.vault.azure.net/", static_token());
        o.ca_bundle = Some(path.clone());
        let e = KeyVaultStore::new(o.clone()).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
        o.ca_bundle = Some(dir.path().join("missing.pem"));
        assert!(KeyVaultStore::new(o).is_err());
    }

    #[test]
    fn debug_hides_credentials() {
        let o = KeyVaultOptions::new(
            "https://x.vault.azure.net/",
            AzureCredential::ClientSecret {
                tenant_id: "00000000-0000-0000-0000-000000000000".into(),
                client_id: "app".into(),
                secret: SecretValue::new("hunter2"),
            },
        );
        assert!(!format!("{o:?}").contains("hunter2"));
        let s = KeyVaultStore::new(o).unwrap();
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("client_secret (client id app)"), "{text}");
        let s = KeyVaultStore::new(KeyVaultOptions::new(
            "https://x.vault.azure.net/",
            static_token(),
        ))
        .unwrap();
        assert!(!format!("{s:?}").contains("tok-secret"));
    }
}
