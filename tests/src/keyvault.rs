//! A Key Vault test double: the Key Vault secrets REST API (api-version 2025-07-01 shapes) over
//! HTTPS on 127.0.0.1, so the production `KeyVaultStore` and the real SDK client underneath it
//! run end to end: TLS, challenge authentication, paging, error bodies, retries.
//!
//! * **TLS**: a private CA and a leaf certificate for `<vault>.vault.localhost` are generated
//!   with rcgen at start; the CA's PEM is written to a temp file that
//!   [`KeyVaultDouble::store_options`] passes as `ca_bundle`, exactly as an operator would for a
//!   private CA. Served by axum-server over rustls (ring provider).
//! * **Name resolution**: `*.localhost` names do not resolve on every machine (glibc with
//!   `files dns` does not special-case them), so the store is given `connect_to = 127.0.0.1`, a
//!   documented option of `KeyVaultOptions` that pins the vault host to an address (the port
//!   still comes from the URL, and the certificate is still checked against the name).
//! * **Challenge**: a request without a bearer token gets 401 with
//!   `WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
//!   resource="https://vault.localhost"`. The SDK only accepts a challenge whose resource host
//!   is a parent domain of the vault host (`verify_challenge_resource`), which
//!   `<vault>.vault.localhost` under `vault.localhost` satisfies, just as
//!   `<vault>.vault.azure.net` does under `vault.azure.net`. Requests with any other token than
//!   the configured one get 401 too.
//! * **Semantics**: versions (32 hex characters), tags, `attributes.exp`, enabled, content type,
//!   soft delete with `recoveryId`, `deletedDate`, `scheduledPurgeDate`, recovery, purge, purge
//!   protection, case-insensitive names, `nextLink` paging, and Key Vault's error bodies and
//!   codes (see `secrets::keyvault` for the list the store relies on).
//! * **Knobs**: faults (N×429 with `Retry-After`, N×any status), a deny-everything mode (403
//!   `ForbiddenByRbac`), purge protection, a settling lag after delete and recover, a clock that
//!   advances per write, and a request log.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use rand::RngCore;
use secrets::keyvault::{AzureCredential, KeyVaultOptions, KeyVaultStore, RetryOptions};
use secrets::SecretValue;
use serde_json::{Map, Value};

mod vault;

use vault::{error, valid_name, Answer, Vault};

/// How to start a [`KeyVaultDouble`].
#[derive(Clone, Debug)]
pub struct KeyVaultDoubleOptions {
    /// The vault's name: the host is `<name>.vault.localhost`.
    pub vault_name: String,
    /// Purge of a soft-deleted secret is refused (403), as in a vault with purge protection.
    pub purge_protection: bool,
    /// Soft-delete retention (7 to 90 days, as in Key Vault).
    pub retention_days: i64,
    /// Items per page of `GET /secrets` and `GET /secrets/{n}/versions` (unless the client
    /// asks for fewer with `maxresults`).
    pub page_size: usize,
    /// The bearer token the double accepts.
    pub token: String,
    /// The tenant named in the challenge.
    pub tenant: String,
    /// Seconds the double's clock moves forward on every write, so versions written in quick
    /// succession get distinct (one-second resolution) timestamps without sleeping. 0 = the
    /// real clock.
    pub seconds_per_write: i64,
    /// After a delete (recover), the deleted (recovered) secret is invisible for this many reads,
    /// and a purge (recover) in the meantime answers 409 `ObjectIsBeingDeleted`, as Key Vault's
    /// background processing does.
    pub settle_lag: u32,
}

impl Default for KeyVaultDoubleOptions {
    fn default() -> Self {
        Self {
            vault_name: "tcp-double".into(),
            purge_protection: false,
            retention_days: 90,
            page_size: 3,
            token: format!("kv-double-token-{}", random_hex()),
            tenant: "00000000-0000-0000-0000-00000000d0b1".into(),
            seconds_per_write: 0,
            settle_lag: 0,
        }
    }
}

/// One request the double answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/secrets/db-pass/`.
    pub path: String,
    /// `None`: no bearer token; `Some(valid)`: a token, and whether it was the accepted one.
    pub bearer: Option<bool>,
    /// The status answered.
    pub status: u16,
}

/// A running double; shut down when dropped.
pub struct KeyVaultDouble {
    url: String,
    addr: SocketAddr,
    token: String,
    state: Arc<Shared>,
    served: Served,
}

struct Shared {
    options: KeyVaultDoubleOptions,
    base: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    secrets: BTreeMap<String, Entry>,
    log: Vec<LoggedRequest>,
    clock_offset: i64,
    throttle: u32,
    retry_after: String,
    fail: u32,
    fail_status: u16,
    deny: bool,
    purge_protection: bool,
}

struct Entry {
    name: String,
    versions: Vec<Version>,
    deleted: Option<(i64, i64)>,
    /// Reads left before a delete or recover becomes visible.
    settling: u32,
}

#[derive(Clone)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: Option<Map<String, Value>>,
    enabled: bool,
    exp: Option<i64>,
    nbf: Option<i64>,
    created: i64,
    updated: i64,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KeyVaultDouble {
    /// Starts a double on a free port of 127.0.0.1.
    pub async fn start(options: KeyVaultDoubleOptions) -> KeyVaultDouble {
        let host = format!("{}.vault.localhost", options.vault_name);
        let token = options.token.clone();
        let purge_protection = options.purge_protection;
        let (listener, tls) =
            TlsListener::bind(&host, "tcp key vault double CA", "kv-double-ca.pem");
        let addr = listener.addr;
        let url = format!("https://{host}:{}/", addr.port());
        let state = Arc::new(Shared {
            options,
            base: url.clone(),
            inner: Mutex::new(Inner {
                purge_protection,
                ..Inner::default()
            }),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let served = listener.serve(tls, app, "key vault double");
        KeyVaultDouble {
            url,
            addr,
            token,
            state,
            served,
        }
    }

    /// The vault URL, `https://<name>.vault.localhost:<port>/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM file of the CA that signed its certificate.
    pub fn ca_bundle(&self) -> &Path {
        self.served.ca_path()
    }

    /// Options for a store that reaches this double: the static token, its CA, `connect_to`
    /// 127.0.0.1, and fast retries (4 attempts, 5 ms base, 100 ms cap).
    pub fn store_options(&self) -> KeyVaultOptions {
        let mut o = KeyVaultOptions::new(
            self.url.clone(),
            AzureCredential::StaticTokenForTests {
                token: SecretValue::new(self.token.clone()),
            },
        );
        o.ca_bundle = Some(self.served.ca_path().to_path_buf());
        o.connect_to = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        o.retry = RetryOptions {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
        };
        o.connect_timeout = Duration::from_secs(5);
        o.request_timeout = Duration::from_secs(10);
        o.settle_timeout = Duration::from_secs(5);
        o
    }

    /// Points a control plane's configuration at this double, as an operator would point it at
    /// a vault with a private CA (the static-token credential stands in for Entra ID).
    pub fn configure(&self, c: &mut server::Config) {
        c.secret_store = server::config::SecretStoreKind::AzureKeyVault;
        c.key_vault_url = Some(self.url.clone());
        c.key_vault_ca_bundle = Some(self.served.ca_path().to_path_buf());
        c.key_vault_connect_to = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        c.azure_credential = server::config::AzureCredentialKind::StaticTokenForTests;
        c.azure_static_token = Some(self.token.clone());
    }

    /// A store on [`Self::store_options`].
    pub fn store(&self) -> KeyVaultStore {
        KeyVaultStore::new(self.store_options()).expect("a store for the double")
    }

    /// A store on [`Self::store_options`] as changed by `f`.
    pub fn store_with(&self, f: impl FnOnce(&mut KeyVaultOptions)) -> KeyVaultStore {
        let mut o = self.store_options();
        f(&mut o);
        KeyVaultStore::new(o).expect("a store for the double")
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` authenticated requests get 429 `Throttled` with `Retry-After: retry_after`.
    pub fn throttle(&self, n: u32, retry_after: &str) {
        let mut i = self.inner();
        i.throttle = n;
        i.retry_after = retry_after.to_owned();
    }

    /// The next `n` authenticated requests get `status` (e.g. 503) with a Key Vault error body.
    pub fn fail(&self, n: u32, status: u16) {
        let mut i = self.inner();
        i.fail = n;
        i.fail_status = status;
    }

    /// While on, every authenticated request gets 403 `ForbiddenByRbac`.
    pub fn deny(&self, on: bool) {
        self.inner().deny = on;
    }

    /// Turns purge protection on or off.
    pub fn set_purge_protection(&self, on: bool) {
        self.inner().purge_protection = on;
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.inner().log.clone()
    }

    /// How many answered requests had `status`.
    pub fn count(&self, status: u16) -> usize {
        self.inner()
            .log
            .iter()
            .filter(|r| r.status == status)
            .count()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.inner().log.clear();
    }

    /// The stored value of the current version (for checks that bypass the store).
    pub fn current_value(&self, name: &str) -> Option<String> {
        let i = self.inner();
        let e = i.secrets.get(&name.to_ascii_lowercase())?;
        e.versions.last().map(|v| v.value.clone())
    }
}

/// A CA, and a leaf for `host` signed by it: (CA PEM, leaf DER, leaf key PKCS#8 DER).
/// A TLS listener on a free port of 127.0.0.1 for a test double of an Azure service, with a
/// private CA (its PEM in a temp file, to pass as a `ca_bundle`, as an operator would for a
/// private CA) and a leaf certificate for the double's host name.
pub(crate) struct TlsListener {
    listener: std::net::TcpListener,
    pub(crate) addr: SocketAddr,
    ca_path: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsListener {
    /// Binds, and makes the CA (named `ca_name`, written to `ca_file`) and the certificate.
    pub(crate) fn bind(
        host: &str,
        ca_name: &str,
        ca_file: &str,
    ) -> (TlsListener, rustls::ServerConfig) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca_pem, cert_der, key_der) = certificates(host, ca_name);
        let ca_path = dir.path().join(ca_file);
        std::fs::write(&ca_path, ca_pem).expect("write CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert_der.into()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )
            .expect("TLS certificate");
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the double");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        (
            TlsListener {
                listener,
                addr,
                ca_path,
                dir,
            },
            tls,
        )
    }

    /// Serves `app` until the returned [`Served`] is dropped.
    pub(crate) fn serve(
        self,
        tls: rustls::ServerConfig,
        app: Router,
        name: &'static str,
    ) -> Served {
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            self.listener,
            axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
        )
        .handle(handle.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                eprintln!("{name} stopped: {e}");
            }
        });
        Served {
            handle,
            ca_path: self.ca_path,
            _dir: self.dir,
        }
    }
}

/// A test double being served: stopped when dropped, with the PEM file of the CA that signed
/// its certificate (kept in a temp dir that lives as long as it does).
pub(crate) struct Served {
    handle: axum_server::Handle,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    /// The CA's PEM file.
    pub(crate) fn ca_path(&self) -> &Path {
        &self.ca_path
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn certificates(host: &str, ca_name: &str) -> (String, Vec<u8>, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf = CertificateParams::new(vec![host.to_owned()]).expect("leaf params");
    leaf.distinguished_name.push(DnType::CommonName, host);
    let leaf_cert = leaf
        .signed_by(&leaf_key, &ca_cert, &ca_key)
        .expect("leaf certificate");
    (
        ca_cert.pem(),
        leaf_cert.der().to_vec(),
        leaf_key.serialize_der(),
    )
}

/// The Key Vault RBAC data action a route needs, for the deny-mode message.
fn data_action(method: &Method, segments: &[&str]) -> &'static str {
    match (method.as_str(), segments) {
        ("PUT", _) => "secrets/setSecret/action",
        ("PATCH", _) => "secrets/update/action",
        ("GET", ["secrets"]) | ("GET", [_, _, "versions"]) => "secrets/readMetadata/action",
        ("GET", ["secrets", ..]) => "secrets/getSecret/action",
        ("DELETE", ["secrets", ..]) => "secrets/delete",
        ("DELETE", ["deletedsecrets", ..]) => "deletedSecrets/delete",
        ("POST", _) => "deletedSecrets/recover/action",
        _ => "deletedSecrets/read",
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t == shared.options.token);

    let mut inner = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    let mut headers = HeaderMap::new();
    let (status, json) = answer(
        &shared,
        &mut inner,
        &parts.method,
        &path,
        &query,
        bearer,
        &body,
        &mut headers,
    );
    inner.log.push(LoggedRequest {
        method: parts.method.to_string(),
        path,
        bearer,
        status: status.as_u16(),
    });
    drop(inner);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if status == StatusCode::NO_CONTENT {
        return (status, headers).into_response();
    }
    (status, headers, Bytes::from(json.to_string())).into_response()
}

#[allow(clippy::too_many_arguments)]
fn answer(
    shared: &Shared,
    inner: &mut Inner,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    bearer: Option<bool>,
    body: &[u8],
    headers: &mut HeaderMap,
) -> Answer {
    let opts = &shared.options;
    // Challenge authentication: no token, or not ours, gets the challenge.
    if bearer != Some(true) {
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/{}\", resource=\"https://vault.localhost\"",
            opts.tenant
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        let message = match bearer {
            None => "AKV10000: Request is missing a Bearer or PoP token.",
            Some(_) => "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/..., found https://sts.example.invalid/.",
        };
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", message, None);
    }
    if !query.contains_key("api-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid API version.",
            None,
        );
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if inner.deny {
        let message = format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny \
             assignments or role definitions were changed recently, please observe propagation \
             time.\r\nCaller: appid=00000000-0000-0000-0000-0000000000a1;oid=00000000-0000-0000-0000-0000000000b2\r\n\
             Action: 'Microsoft.KeyVault/vaults/{}'\r\nResource: '/subscriptions/x/vaults/{}'\r\n\
             Assignment: (not found)\r\nDecisionReason: 'DeniedWithNoValidRBAC'\r\nVault: {};location=local\r\n",
            data_action(method, &segments),
            opts.vault_name,
            opts.vault_name
        );
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &message,
            Some("ForbiddenByRbac"),
        );
    }
    if inner.throttle > 0 {
        inner.throttle -= 1;
        if let Ok(v) = HeaderValue::from_str(&inner.retry_after) {
            headers.insert(header::RETRY_AFTER, v);
        }
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: A \
             single client has exceeded the maximum number of requests per 10 seconds.",
            None,
        );
    }
    if inner.fail > 0 {
        inner.fail -= 1;
        let status =
            StatusCode::from_u16(inner.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error(
            status,
            "ServiceUnavailable",
            "The service is temporarily unavailable. Please retry.",
            None,
        );
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "The request body is not valid JSON.",
                    None,
                )
            }
        }
    };
    let mut vault = Vault {
        shared,
        inner,
        query,
    };
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["secrets"]) => vault.list_names(),
        ("GET", ["deletedsecrets"]) => vault.list_deleted(),
        (_, [_, name, ..]) if !valid_name(name) => error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The secret name is invalid: use 1 to 127 characters of 0-9, a-z, A-Z and '-'.",
            None,
        ),
        ("PUT", ["secrets", name]) => vault.set(name, &body),
        ("GET", ["secrets", name, "versions"]) => vault.list_versions(name),
        ("GET", ["secrets", name]) => vault.get(name, None),
        ("GET", ["secrets", name, version]) => vault.get(name, Some(version)),
        ("PATCH", ["secrets", name]) => vault.update(name, None, &body),
        ("PATCH", ["secrets", name, version]) => vault.update(name, Some(version), &body),
        ("DELETE", ["secrets", name]) => vault.delete(name),
        ("GET", ["deletedsecrets", name]) => vault.get_deleted(name),
        ("DELETE", ["deletedsecrets", name]) => vault.purge(name),
        ("POST", ["deletedsecrets", name, "recover"]) => vault.recover(name),
        _ => error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("no route {method} {path}"),
            None,
        ),
    }
}
