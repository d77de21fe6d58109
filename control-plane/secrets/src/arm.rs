//! Azure Resource Manager reads: how many databases an Azure SQL Database elastic pool holds.
//!
//! T-SQL cannot tell: no catalog view or DMV names a pool's database limit
//! (`sys.database_service_objectives` names the pool, `sys.elastic_pool_resource_stats` its DTU
//! and storage limits). Resource Manager can, in two reads with the same credential and transport
//! as every other Azure client of ours:
//!
//! 1. `GET <pool id>` (Elastic Pools - Get): the pool's region and SKU (`GP_Gen5` / 4 vCores,
//!    `StandardPool` / 100 eDTU, …). Needs `Microsoft.Sql/servers/elasticPools/read`: the
//!    built-in **Reader** role on the pool or its logical server.
//! 2. `GET /subscriptions/<id>/providers/Microsoft.Sql/locations/<region>/capabilities?include=supportedElasticPoolEditions`
//!    (Capabilities - List By Location): every pool SKU the region offers, each with its
//!    `maxDatabaseCount`. Needs `Microsoft.Sql/locations/capabilities/read` on the
//!    subscription: `infra/azure/` grants exactly that action through a custom role.
//!
//! The limit is Microsoft's current one for the pool's current SKU, not a copy of a documentation
//! table that goes stale when Azure changes it.

use std::fmt;
use std::sync::Arc;

use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::Policy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, StatusCode,
};
use serde::Deserialize;
use url::Url;

use crate::keyvault::{azure_transport, retry::azure_retry, HttpOptions, RetryOptions};
use crate::AzureCredential;

/// The Resource Manager API version of both reads.
pub const API_VERSION: &str = "2021-11-01";

/// The public cloud's Resource Manager endpoint.
pub const PUBLIC_CLOUD: &str = "https://management.azure.com";

/// An elastic pool's Azure resource id:
/// `/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Sql/servers/<server>/elasticPools/<pool>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElasticPoolId {
    subscription: String,
    resource_group: String,
    server: String,
    pool: String,
}

impl ElasticPoolId {
    /// Whether `s` is written as a resource id (rather than a plain pool name).
    pub fn looks_like_id(s: &str) -> bool {
        s.trim_start().starts_with('/')
    }

    /// Parses a resource id; the provider and type segments match case-insensitively, as
    /// Resource Manager's do.
    pub fn parse(s: &str) -> Result<Self, String> {
        let shape = "an elastic pool id is /subscriptions/<id>/resourceGroups/<group>/providers/\
                     Microsoft.Sql/servers/<server>/elasticPools/<pool>";
        let parts: Vec<&str> = s.trim().trim_matches('/').split('/').collect();
        let [sub_kw, subscription, rg_kw, resource_group, prov_kw, provider, servers_kw, server, pools_kw, pool] =
            parts[..]
        else {
            return Err(shape.to_owned());
        };
        let keywords = [
            (sub_kw, "subscriptions"),
            (rg_kw, "resourceGroups"),
            (prov_kw, "providers"),
            (provider, "Microsoft.Sql"),
            (servers_kw, "servers"),
            (pools_kw, "elasticPools"),
        ];
        if keywords
            .iter()
            .any(|(got, want)| !got.eq_ignore_ascii_case(want))
        {
            return Err(shape.to_owned());
        }
        // Azure's names: no `.`/`..` segment (the URL would resolve it elsewhere), no trailing
        // dot (Azure refuses one).
        let valid = |v: &str| {
            !v.is_empty()
                && v.len() <= 128
                && !v.ends_with('.')
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
        };
        if ![subscription, resource_group, server, pool]
            .into_iter()
            .all(valid)
        {
            return Err(format!(
                "{shape}; each part is 1 to 128 letters, digits or -_.(), not ending in a dot"
            ));
        }
        Ok(Self {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            server: server.to_owned(),
            pool: pool.to_owned(),
        })
    }

    /// The pool's name.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// The logical server's name (the first label of `<server>.database.windows.net`).
    pub fn server(&self) -> &str {
        &self.server
    }
}

impl fmt::Display for ElasticPoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Sql/servers/{}/elasticPools/{}",
            self.subscription, self.resource_group, self.server, self.pool
        )
    }
}

/// What Resource Manager says about a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolLimit {
    /// SKU name, e.g. `GP_Gen5`, `StandardPool`.
    pub sku: String,
    /// Service tier, e.g. `GeneralPurpose`, `Standard`.
    pub tier: String,
    /// vCores or eDTUs.
    pub capacity: i64,
    /// Azure region, e.g. `westeurope`.
    pub location: String,
    /// Most databases the pool holds at this SKU.
    pub max_databases: i64,
}

/// Why a Resource Manager read failed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// 404: no such pool (or region).
    #[error("{0}")]
    NotFound(String),
    /// 403: the identity lacks the role named.
    #[error("{0}")]
    Forbidden(String),
    /// No token (the credential failed), or Resource Manager refused the token (401).
    #[error("{0}")]
    Credential(String),
    /// Network failure or 5xx after the retries.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else: a malformed answer, a SKU the region does not list.
    #[error("{0}")]
    Unexpected(String),
}

/// How to reach Resource Manager.
#[derive(Clone, Debug)]
pub struct ArmOptions {
    /// The endpoint (default [`PUBLIC_CLOUD`]; sovereign clouds have their own).
    pub endpoint: String,
    /// The identity.
    pub credential: AzureCredential,
    /// Transport options.
    pub http: HttpOptions,
    /// Retries of throttled (429) and failed (5xx, network) reads.
    pub retry: RetryOptions,
}

impl ArmOptions {
    /// The public cloud with `credential` and default transport and retries.
    pub fn new(credential: AzureCredential) -> Self {
        Self {
            endpoint: PUBLIC_CLOUD.to_owned(),
            credential,
            http: HttpOptions {
                ca_bundle: None,
                connect_to: None,
                connect_timeout: std::time::Duration::from_secs(10),
                request_timeout: std::time::Duration::from_secs(30),
            },
            retry: RetryOptions::default(),
        }
    }
}

/// A Resource Manager client for the reads above.
pub struct ArmClient {
    pipeline: Pipeline,
    credential: String,
    endpoint: Url,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Sku {
    name: String,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    capacity: Option<i64>,
}

#[derive(Deserialize)]
struct PoolResource {
    location: String,
    sku: Sku,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Capabilities {
    #[serde(default)]
    supported_server_versions: Vec<ServerVersion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerVersion {
    #[serde(default)]
    supported_elastic_pool_editions: Vec<PoolEdition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolEdition {
    name: String,
    #[serde(default)]
    supported_elastic_pool_performance_levels: Vec<PoolLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolLevel {
    sku: Sku,
    #[serde(default)]
    max_database_count: Option<i64>,
}

impl ArmClient {
    /// A client for `options.endpoint`.
    pub fn new(options: ArmOptions) -> Result<Self, String> {
        let mut endpoint = Url::parse(options.endpoint.trim())
            .map_err(|e| format!("Resource Manager endpoint {}: {e}", options.endpoint))?;
        if endpoint.scheme() != "https" {
            return Err(format!(
                "Resource Manager endpoint {endpoint} must be https (it is sent a bearer token)"
            ));
        }
        endpoint.set_path("");
        endpoint.set_query(None);
        let transport = azure_transport("resource manager", &endpoint, &options.http)?;
        let described = options.credential.describe();
        let credential = options.credential.build().map_err(|e| e.to_string())?;
        let scope = format!("{}/.default", endpoint.as_str().trim_end_matches('/'));
        let auth: Arc<dyn Policy> =
            Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        let client_options = ClientOptions {
            retry: azure_retry(options.retry),
            transport: Some(transport),
            ..ClientOptions::default()
        };
        let pipeline = Pipeline::new(
            option_env!("CARGO_PKG_NAME"),
            option_env!("CARGO_PKG_VERSION"),
            client_options,
            Vec::new(),
            vec![auth],
            None,
        );
        Ok(Self {
            pipeline,
            credential: described,
            endpoint,
        })
    }

    /// The pool's SKU and the most databases it holds.
    pub async fn pool_limit(&self, id: &ElasticPoolId) -> Result<PoolLimit, ArmError> {
        let pool: PoolResource = self
            .get(
                &id.to_string(),
                &[],
                &format!("elastic pool {id}"),
                "Reader on the pool or its logical server (Microsoft.Sql/servers/elasticPools/read)",
            )
            .await?;
        let location = pool.location.replace(' ', "").to_ascii_lowercase();
        let capabilities: Capabilities = self
            .get(
                &format!(
                    "/subscriptions/{}/providers/Microsoft.Sql/locations/{location}/capabilities",
                    id.subscription
                ),
                &[("include", "supportedElasticPoolEditions")],
                &format!("the SQL capabilities of region {location}"),
                "Microsoft.Sql/locations/capabilities/read on the subscription (the custom role \
                 infra/azure/main.bicep assigns)",
            )
            .await?;
        let tier = pool.sku.tier.clone().unwrap_or_default();
        let matches = |level: &PoolLevel| {
            level.sku.name.eq_ignore_ascii_case(&pool.sku.name)
                && level.sku.capacity == pool.sku.capacity
                && match (&level.sku.family, &pool.sku.family) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => true,
                }
        };
        let max = capabilities
            .supported_server_versions
            .iter()
            .flat_map(|v| &v.supported_elastic_pool_editions)
            .filter(|e| tier.is_empty() || e.name.eq_ignore_ascii_case(&tier))
            .flat_map(|e| &e.supported_elastic_pool_performance_levels)
            .filter(|l| matches(l))
            .find_map(|l| l.max_database_count)
            .filter(|n| *n > 0);
        let capacity = pool.sku.capacity.unwrap_or_default();
        let Some(max_databases) = max else {
            return Err(ArmError::Unexpected(format!(
                "region {location} lists no database limit for elastic pool SKU {} ({tier}, \
                 capacity {capacity}); set the server's capacity by hand",
                pool.sku.name
            )));
        };
        Ok(PoolLimit {
            sku: pool.sku.name,
            tier,
            capacity,
            location,
            max_databases,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        what: &str,
        role: &str,
    ) -> Result<T, ArmError> {
        let mut url = self.endpoint.clone();
        url.set_path(path);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("api-version", API_VERSION);
        }
        let mut request = Request::new(url, Method::Get);
        request.insert_header("accept", "application/json");
        let response = self
            .pipeline
            .send(
                &Context::new(),
                &mut request,
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..PipelineSendOptions::default()
                }),
            )
            .await
            .map_err(|e| match e.kind() {
                azure_core::error::ErrorKind::Credential => ArmError::Credential(format!(
                    "reading {what}: the Azure credential ({}) got no token for Resource \
                     Manager: {e}",
                    self.credential
                )),
                _ => ArmError::Unavailable(format!("reading {what}: {e}")),
            })?;
        let status = response.status();
        let body = response.into_body();
        if status.is_success() {
            return body.json::<T>().map_err(|e| {
                ArmError::Unexpected(format!("reading {what}: an answer we cannot read: {e}"))
            });
        }
        // Resource Manager's error body: {"error": {"code", "message"}}; the code is enough.
        let code = serde_json::from_slice::<serde_json::Value>(body.as_ref())
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let answer = format!("{} {code}", u16::from(status)).trim().to_owned();
        Err(match status {
            StatusCode::NotFound => ArmError::NotFound(format!(
                "{what} does not exist (Resource Manager answered {answer})"
            )),
            StatusCode::Unauthorized => ArmError::Credential(format!(
                "reading {what}: Resource Manager refused the token of the Azure credential \
                 ({}) ({answer}): check its tenant and that azure_management_url is this \
                 cloud's",
                self.credential
            )),
            StatusCode::Forbidden => ArmError::Forbidden(format!(
                "reading {what} was refused ({answer}): the control plane's identity needs {role}"
            )),
            s if u16::from(s) >= 500 || s == StatusCode::TooManyRequests => ArmError::Unavailable(
                format!("reading {what}: Resource Manager answered {answer}"),
            ),
            _ => ArmError::Unexpected(format!(
                "reading {what}: Resource Manager answered {answer}"
            )),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pool_ids_parse_and_print_canonically() {
        let id = ElasticPoolId::parse(
            "/subscriptions/0000-1111/resourcegroups/rg-tcp/providers/microsoft.sql/servers/tcp-sql/elasticPools/tenants",
        )
        .unwrap();
        assert_eq!(id.pool(), "tenants");
        assert_eq!(id.server(), "tcp-sql");
        assert_eq!(
            id.to_string(),
            "/subscriptions/0000-1111/resourceGroups/rg-tcp/providers/Microsoft.Sql/servers/tcp-sql/elasticPools/tenants"
        );
        assert!(ElasticPoolId::looks_like_id(" /subscriptions/x"));
        assert!(!ElasticPoolId::looks_like_id("tenants"));
        for bad in [
            "tenants",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql/servers/../elasticPools/p",
            "/subscriptions/s/resourceGroups/./providers/Microsoft.Sql/servers/s/elasticPools/p",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql/servers/s/elasticPools/p.",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql/servers/s/databases/d",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Web/servers/s/elasticPools/p",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql/servers/s/elasticPools/p/x",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Sql/servers/s/elasticPools/a b",
            "/subscriptions//resourceGroups/g/providers/Microsoft.Sql/servers/s/elasticPools/p",
        ] {
            assert!(ElasticPoolId::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn the_endpoint_must_be_https() {
        let options = ArmOptions {
            endpoint: "http://management.azure.com".into(),
            ..ArmOptions::new(AzureCredential::StaticTokenForTests {
                token: crate::SecretValue::new("t"),
            })
        };
        let err = ArmClient::new(options).unwrap_err();
        assert!(err.contains("must be https"), "{err}");
    }
}
