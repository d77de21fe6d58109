//! An Azure Resource Manager test double: the two reads of an elastic pool's database limit
//! (`secrets::arm`), over HTTPS on 127.0.0.1, so the production `ArmClient` runs end to end
//! through azure_core's pipeline: TLS, bearer tokens, retries and Resource Manager's error
//! answers.
//!
//! * **TLS and names**: as for the Key Vault double ([`crate::keyvault`]): a private CA, a
//!   certificate for `management.localhost`, and `connect_to = 127.0.0.1`.
//! * **Authentication**: the bearer token on every request; none or another: 401
//!   `AuthenticationFailed`. Every request must carry `api-version`.
//! * **Operations**: Elastic Pools: Get (`GET <pool id>`: `location`, `sku`) and Capabilities:
//!   List By Location (`GET /subscriptions/<id>/providers/Microsoft.Sql/locations/<region>/capabilities`,
//!   with `include=supportedElasticPoolEditions`): a region offering a few vCore and DTU pool
//!   SKUs with their `maxDatabaseCount`, shaped as Resource Manager answers (api-version
//!   2021-11-01). An unknown pool: 404 `ResourceNotFound`.
//! * **Knobs**: the pools that exist (id → SKU), N failures with any status (503), a deny mode
//!   per read (403 `AuthorizationFailed`), and a request log.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use secrets::arm::{ArmClient, ArmOptions};
use secrets::keyvault::RetryOptions;
use secrets::{AzureCredential, SecretValue};
use serde_json::{json, Value};

use crate::keyvault::{Served, TlsListener};

/// One request the double answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmRequest {
    /// Path.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

/// A pool's SKU, as Resource Manager writes it.
#[derive(Clone, Debug)]
pub struct PoolSku {
    /// e.g. `GP_Gen5`, `StandardPool`.
    pub name: &'static str,
    /// e.g. `GeneralPurpose`, `Standard`.
    pub tier: &'static str,
    /// e.g. `Gen5` (none for DTU pools).
    pub family: Option<&'static str>,
    /// vCores or eDTUs.
    pub capacity: i64,
}

#[derive(Default)]
struct Inner {
    pools: HashMap<String, (String, PoolSku)>,
    fail: u32,
    deny_pool: bool,
    deny_capabilities: bool,
    log: Vec<ArmRequest>,
}

struct Shared {
    token: String,
    inner: Mutex<Inner>,
}

/// The double. Dropping it stops it.
pub struct ArmDouble {
    endpoint: String,
    addr: SocketAddr,
    token: String,
    state: Arc<Shared>,
    served: Served,
}

/// The pool SKUs the double's regions offer, with their database limits (the figures
/// Resource Manager gave for these SKUs when this was written; the double needs some).
fn offered() -> Vec<(PoolSku, i64)> {
    let gp = |capacity, max| {
        (
            PoolSku {
                name: "GP_Gen5",
                tier: "GeneralPurpose",
                family: Some("Gen5"),
                capacity,
            },
            max,
        )
    };
    let standard = |capacity, max| {
        (
            PoolSku {
                name: "StandardPool",
                tier: "Standard",
                family: None,
                capacity,
            },
            max,
        )
    };
    vec![
        gp(2, 100),
        gp(4, 200),
        gp(8, 500),
        standard(50, 100),
        standard(100, 200),
        standard(200, 500),
    ]
}

impl ArmDouble {
    /// Starts the double with no pools.
    pub async fn start() -> ArmDouble {
        let host = "management.localhost";
        let (listener, tls) = TlsListener::bind(host, "tcp arm double CA", "arm-double-ca.pem");
        let addr = listener.addr;
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("arm-double-token-{token}");
        let state = Arc::new(Shared {
            token: token.clone(),
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let served = listener.serve(tls, app, "arm double");
        ArmDouble {
            endpoint: format!("https://{host}:{}", addr.port()),
            addr,
            token,
            state,
            served,
        }
    }

    /// The endpoint, `https://management.localhost:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Adds a pool in `location` with `sku`; returns its resource id.
    pub fn add_pool(&self, server: &str, pool: &str, location: &str, sku: PoolSku) -> String {
        let id = format!(
            "/subscriptions/00000000-0000-0000-0000-00000000000a/resourceGroups/rg-tcp/providers/Microsoft.Sql/servers/{server}/elasticPools/{pool}"
        );
        self.inner()
            .pools
            .insert(id.to_ascii_lowercase(), (location.to_owned(), sku));
        id
    }

    /// The next `n` requests answer `503 ServerBusy`.
    pub fn fail(&self, n: u32) {
        self.inner().fail = n;
    }

    /// Refuses (403) the pool read, the capabilities read, or neither.
    pub fn deny(&self, pool: bool, capabilities: bool) {
        let mut inner = self.inner();
        inner.deny_pool = pool;
        inner.deny_capabilities = capabilities;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<ArmRequest> {
        self.inner().log.clone()
    }

    /// Options for a client of this double.
    pub fn options(&self) -> ArmOptions {
        let mut options = ArmOptions::new(AzureCredential::StaticTokenForTests {
            token: SecretValue::new(self.token.clone()),
        });
        options.endpoint = self.endpoint.clone();
        options.http.ca_bundle = Some(self.served.ca_path().to_path_buf());
        options.http.connect_to = Some(self.addr.ip());
        options.retry = RetryOptions {
            max_attempts: 4,
            base_delay: std::time::Duration::from_millis(20),
            max_delay: std::time::Duration::from_millis(100),
        };
        options
    }

    /// A client of this double.
    pub fn client(&self) -> ArmClient {
        ArmClient::new(self.options()).expect("a client for the double")
    }

    /// Points a control plane's configuration at this double (the static-token credential
    /// stands in for Entra ID).
    pub fn configure(&self, c: &mut server::Config) {
        c.azure_management_url = Some(self.endpoint.clone());
        c.azure_management_ca_bundle = Some(self.served.ca_path().to_path_buf());
        c.azure_management_connect_to = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        c.azure_credential = server::config::AzureCredentialKind::StaticTokenForTests;
        c.azure_static_token = Some(self.token.clone());
    }

    /// The CA file of the double's certificate.
    pub fn ca_bundle(&self) -> &Path {
        self.served.ca_path()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn sku_json(sku: &PoolSku) -> Value {
    let mut v = json!({"name": sku.name, "tier": sku.tier, "capacity": sku.capacity});
    if let Some(family) = sku.family {
        v["family"] = json!(family);
    }
    v
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {}", shared.token).as_str());
    let response = answer(&shared, &path, &query, authorized);
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.log.push(ArmRequest {
        path,
        status: response.status().as_u16(),
    });
    response
}

fn answer(shared: &Shared, path: &str, query: &str, authorized: bool) -> Response {
    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed.",
        );
    }
    if !query.contains("api-version=") {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    if inner.fail > 0 {
        inner.fail -= 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusy",
            "The server is busy.",
        );
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("/providers/microsoft.sql/locations/") && lower.ends_with("/capabilities") {
        if inner.deny_capabilities {
            return error(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                "The client does not have authorization to perform action \
                 'Microsoft.Sql/locations/capabilities/read'.",
            );
        }
        let location = lower.rsplit('/').nth(1).unwrap_or_default().to_owned();
        let levels: Vec<Value> = offered()
            .into_iter()
            .map(|(sku, max)| {
                json!({
                    "tier": sku.tier,
                    "sku": sku_json(&sku),
                    "performanceLevel": {"value": sku.capacity,
                                         "unit": if sku.family.is_some() { "VCores" } else { "DTU" }},
                    "maxDatabaseCount": max,
                    "status": "Available",
                })
            })
            .collect();
        let mut editions: Vec<Value> = Vec::new();
        for tier in ["GeneralPurpose", "Standard"] {
            editions.push(json!({
                "name": tier,
                "supportedElasticPoolPerformanceLevels": levels
                    .iter()
                    .filter(|l| l["tier"] == tier)
                    .cloned()
                    .collect::<Vec<_>>(),
                "status": "Available",
            }));
        }
        return ok_json(json!({
            "name": location,
            "supportedServerVersions": [
                {"name": "12.0", "supportedElasticPoolEditions": editions, "status": "Default"}
            ],
            "status": "Available",
        }));
    }
    if let Some((location, sku)) = inner.pools.get(&lower).cloned() {
        if inner.deny_pool {
            return error(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                "The client does not have authorization to perform action \
                 'Microsoft.Sql/servers/elasticPools/read'.",
            );
        }
        return ok_json(json!({
            "id": path,
            "name": path.rsplit('/').next(),
            "type": "Microsoft.Sql/servers/elasticPools",
            "location": location,
            "sku": sku_json(&sku),
            "properties": {"state": "Ready", "maxSizeBytes": 549_755_813_888_i64},
        }));
    }
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        "The Resource was not found.",
    )
}

fn ok_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}
