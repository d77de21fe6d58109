//! An Azure Blob Storage test double: the part of the Blob service REST API the archive store
//! uses, over HTTPS on 127.0.0.1, so the production `BlobArchive` and the real SDK client
//! (`azure_storage_blob`) run end to end: TLS, bearer tokens, conditional writes, block uploads,
//! ranged downloads, retries and Storage's error answers.
//!
//! * **TLS and names**: as for the Key Vault double ([`crate::keyvault`]): a private CA, a
//!   certificate for `<account>.blob.localhost`, and `connect_to = 127.0.0.1`.
//! * **Authentication**: Storage takes the bearer token on the first request (no challenge).
//!   No token: 401 `NoAuthenticationInformation`; another token: 401
//!   `InvalidAuthenticationInfo`. Every request must carry `x-ms-version`.
//! * **Operations**: Get Container Properties (`?restype=container`, with
//!   `x-ms-has-immutability-policy`, `x-ms-has-legal-hold`,
//!   `x-ms-immutable-storage-with-versioning-enabled`), Put Blob, Put Block, Put Block List (the
//!   XML `BlockList` of `Latest`/`Committed`/`Uncommitted` ids), Get Blob (whole, or a `Range`
//!   answered 206 with `Content-Range`; `If-Match` against the ETag), Delete Blob.
//! * **Write once**: `If-None-Match: *` on an existing blob answers 409 `BlobAlreadyExists`;
//!   while the container has an immutability policy or legal hold, replacing or deleting a blob
//!   answers 409 `BlobImmutableDueToPolicy`, as a locked time-based retention policy does.
//! * **Knobs**: N failures with any status (503 `ServerBusy`), a deny mode (403
//!   `AuthorizationPermissionMismatch`), the container's policy flags, a tamper hook that
//!   changes a blob's bytes behind the policy (what an attacker with the account key and a
//!   policy still unlocked could do), and a request log.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use secrets::keyvault::RetryOptions;
use secrets::{AzureCredential, SecretValue};
use workflows::archive::blob::{BlobArchive, BlobArchiveOptions};

use crate::keyvault::{Served, TlsListener};

/// How to start a [`BlobDouble`].
#[derive(Clone, Debug)]
pub struct BlobDoubleOptions {
    /// The storage account: the host is `<account>.blob.localhost`.
    pub account: String,
    /// The one container that exists.
    pub container: String,
    /// The container has a time-based retention policy.
    pub immutability_policy: bool,
    /// The bearer token the double accepts.
    pub token: String,
}

impl Default for BlobDoubleOptions {
    fn default() -> Self {
        let mut bytes = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            account: "tcpdouble".into(),
            container: "audit-archive".into(),
            immutability_policy: true,
            token: format!("blob-double-token-{hex}"),
        }
    }
}

/// One request the double answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobRequest {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/audit-archive/tenants/…/audit.json`.
    pub path: String,
    /// The `comp` query parameter (`block`, `blocklist`), if any.
    pub comp: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// A running double; shut down when dropped.
pub struct BlobDouble {
    container_url: String,
    addr: SocketAddr,
    token: String,
    state: Arc<Shared>,
    served: Served,
}

struct Shared {
    options: BlobDoubleOptions,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    blobs: BTreeMap<String, Blob>,
    /// Uncommitted blocks per blob name, by block id.
    blocks: HashMap<String, HashMap<Vec<u8>, Bytes>>,
    log: Vec<BlobRequest>,
    fail: u32,
    fail_status: u16,
    deny: bool,
    immutability_policy: bool,
    legal_hold: bool,
    etag_counter: u64,
}

struct Blob {
    bytes: Bytes,
    content_type: String,
    etag: String,
    modified: chrono::DateTime<chrono::Utc>,
}

impl BlobDouble {
    /// Starts a double on a free port of 127.0.0.1.
    pub async fn start(options: BlobDoubleOptions) -> BlobDouble {
        let host = format!("{}.blob.localhost", options.account);
        let (listener, tls) = TlsListener::bind(&host, "tcp blob double CA", "blob-double-ca.pem");
        let addr = listener.addr;
        let container_url = format!("https://{host}:{}/{}", addr.port(), options.container);
        let token = options.token.clone();
        let state = Arc::new(Shared {
            inner: Mutex::new(Inner {
                immutability_policy: options.immutability_policy,
                ..Inner::default()
            }),
            options,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&state));
        let served = listener.serve(tls, app, "blob double");
        BlobDouble {
            container_url,
            addr,
            token,
            state,
            served,
        }
    }

    /// The container URL, `https://<account>.blob.localhost:<port>/<container>`.
    pub fn container_url(&self) -> &str {
        &self.container_url
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
    pub fn store_options(&self) -> BlobArchiveOptions {
        let mut o = BlobArchiveOptions::new(
            self.container_url.clone(),
            AzureCredential::StaticTokenForTests {
                token: SecretValue::new(self.token.clone()),
            },
        );
        o.http.ca_bundle = Some(self.served.ca_path().to_path_buf());
        o.http.connect_to = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        o.http.connect_timeout = Duration::from_secs(5);
        o.http.request_timeout = Duration::from_secs(30);
        o.retry = RetryOptions {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
        };
        o
    }

    /// A store on [`Self::store_options`].
    pub fn store(&self) -> BlobArchive {
        BlobArchive::new(self.store_options()).expect("a store for the double")
    }

    /// Points a control plane's configuration at this double, as an operator would point it at
    /// a container behind a private CA (the static-token credential stands in for Entra ID;
    /// a Key Vault double configured on the same control plane must use the same token).
    pub fn configure(&self, c: &mut server::Config) {
        c.archive_store = server::config::ArchiveStoreKind::AzureBlob;
        c.archive_container_url = Some(self.container_url.clone());
        c.archive_ca_bundle = Some(self.served.ca_path().to_path_buf());
        c.archive_connect_to = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        c.azure_credential = server::config::AzureCredentialKind::StaticTokenForTests;
        c.azure_static_token = Some(self.token.clone());
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.state.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` authenticated requests get `status` (503 answers `ServerBusy`).
    pub fn fail(&self, n: u32, status: u16) {
        let mut i = self.inner();
        i.fail = n;
        i.fail_status = status;
    }

    /// While on, every authenticated request gets 403 `AuthorizationPermissionMismatch`.
    pub fn deny(&self, on: bool) {
        self.inner().deny = on;
    }

    /// Sets the container's immutability policy and legal hold flags.
    pub fn set_protection(&self, immutability_policy: bool, legal_hold: bool) {
        let mut i = self.inner();
        i.immutability_policy = immutability_policy;
        i.legal_hold = legal_hold;
    }

    /// The bytes of the blob named `name` (relative to the container), bypassing the API.
    pub fn blob(&self, name: &str) -> Option<Vec<u8>> {
        self.inner().blobs.get(name).map(|b| b.bytes.to_vec())
    }

    /// The names of every blob, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner().blobs.keys().cloned().collect()
    }

    /// Replaces a blob's bytes behind every policy (a tampering test).
    pub fn tamper(&self, name: &str, bytes: Vec<u8>) {
        let mut i = self.inner();
        let etag = next_etag(&mut i);
        if let Some(b) = i.blobs.get_mut(name) {
            b.bytes = Bytes::from(bytes);
            b.etag = etag;
        }
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<BlobRequest> {
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
}

fn next_etag(i: &mut Inner) -> String {
    i.etag_counter += 1;
    format!("\"0x8DD{:012X}\"", i.etag_counter)
}

fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Storage's error answer: the code in `x-ms-error-code` and in the XML body.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code>\
         <Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\nTime:{}</Message>\
         </Error>",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ")
    );
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(code) {
        h.insert("x-ms-error-code", v);
    }
    r
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 256 << 20)
        .await
        .unwrap_or_default();
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let path = parts.uri.path().to_owned();
    let response = answer(&shared, &parts.method, &path, &query, &parts.headers, body);
    let mut i = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    i.log.push(BlobRequest {
        method: parts.method.to_string(),
        path,
        comp: query.get("comp").cloned(),
        status: response.status().as_u16(),
    });
    response
}

fn answer(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "NoAuthenticationInformation",
                "Server failed to authenticate the request. Please refer to the information in \
                 the www-authenticate header.",
            )
        }
        Some(t) if t != shared.options.token => {
            return error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationInfo",
                "Server failed to authenticate the request.",
            )
        }
        Some(_) => {}
    }
    if !headers.contains_key("x-ms-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
        );
    }
    let mut i = shared.inner.lock().unwrap_or_else(|p| p.into_inner());
    if i.fail > 0 {
        i.fail -= 1;
        let status = StatusCode::from_u16(i.fail_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = if status == StatusCode::SERVICE_UNAVAILABLE {
            "ServerBusy"
        } else {
            "InternalError"
        };
        return error(status, code, "The server is busy.");
    }
    if i.deny {
        return error(
            StatusCode::FORBIDDEN,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        );
    }
    let container = format!("/{}", shared.options.container);
    let Some(rest) = path.strip_prefix(&container) else {
        return error(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
        );
    };
    if rest.is_empty() || rest == "/" {
        if query.get("restype").map(String::as_str) == Some("container")
            && (method == Method::GET || method == Method::HEAD)
        {
            let mut r = StatusCode::OK.into_response();
            let h = r.headers_mut();
            let flag = |b: bool| HeaderValue::from_static(if b { "true" } else { "false" });
            h.insert("etag", HeaderValue::from_static("\"0x8DD000000000001\""));
            if let Ok(v) = HeaderValue::from_str(&http_date(chrono::Utc::now())) {
                h.insert("last-modified", v);
            }
            h.insert("x-ms-has-immutability-policy", flag(i.immutability_policy));
            h.insert("x-ms-has-legal-hold", flag(i.legal_hold));
            h.insert(
                "x-ms-immutable-storage-with-versioning-enabled",
                flag(false),
            );
            h.insert("x-ms-lease-state", HeaderValue::from_static("available"));
            h.insert("x-ms-lease-status", HeaderValue::from_static("unlocked"));
            return r;
        }
        return error(
            StatusCode::BAD_REQUEST,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
        );
    }
    // Blob names are the decoded path after the container.
    let Some(name) = rest.strip_prefix('/') else {
        return error(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
        );
    };
    let name = percent_decode(name);
    let protected = i.immutability_policy || i.legal_hold;
    let if_none_star = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    match (method.clone(), query.get("comp").map(String::as_str)) {
        (Method::PUT, Some("block")) => {
            let Some(id) = query
                .get("blockid")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidQueryParameterValue",
                    "Value for one of the query parameters specified in the request URI is invalid.",
                );
            };
            i.blocks.entry(name).or_default().insert(id, body);
            StatusCode::CREATED.into_response()
        }
        (Method::PUT, Some("blocklist")) => {
            let Some(ids) = block_ids(&body) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidXmlDocument",
                    "XML specified is not syntactically valid.",
                );
            };
            if let Some(refused) = refuse_write(&i, &name, if_none_star, protected) {
                return refused;
            }
            let staged = i.blocks.remove(&name).unwrap_or_default();
            let mut bytes = Vec::new();
            for id in &ids {
                let Some(block) = staged.get(id) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidBlockList",
                        "The specified block list is invalid.",
                    );
                };
                bytes.extend_from_slice(block);
            }
            let content_type = headers
                .get("x-ms-blob-content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            commit(&mut i, name, Bytes::from(bytes), content_type)
        }
        (Method::PUT, None) => {
            if headers.get("x-ms-blob-type").map(HeaderValue::as_bytes) != Some(b"BlockBlob") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidHeaderValue",
                    "The value for one of the HTTP headers is not in the correct format.",
                );
            }
            if let Some(refused) = refuse_write(&i, &name, if_none_star, protected) {
                return refused;
            }
            let content_type = headers
                .get("x-ms-blob-content-type")
                .or_else(|| headers.get(header::CONTENT_TYPE))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            commit(&mut i, name, body, content_type)
        }
        (Method::GET, None) | (Method::HEAD, None) => {
            let Some(blob) = i.blobs.get(&name) else {
                return error(
                    StatusCode::NOT_FOUND,
                    "BlobNotFound",
                    "The specified blob does not exist.",
                );
            };
            if let Some(want) = headers.get(header::IF_MATCH) {
                if want.as_bytes() != blob.etag.as_bytes() && want.as_bytes() != b"*" {
                    return error(
                        StatusCode::PRECONDITION_FAILED,
                        "ConditionNotMet",
                        "The condition specified using HTTP conditional header(s) is not met.",
                    );
                }
            }
            let total = blob.bytes.len();
            let range = headers
                .get("x-ms-range")
                .or_else(|| headers.get(header::RANGE))
                .and_then(|v| v.to_str().ok())
                .and_then(parse_range);
            let (status, slice, content_range) = match range {
                None => (StatusCode::OK, blob.bytes.clone(), None),
                Some((start, _)) if start >= total => {
                    return error(
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "InvalidRange",
                        "The range specified is invalid for the current size of the resource.",
                    )
                }
                Some((start, end)) => {
                    let end = end.map_or(total - 1, |e| e.min(total - 1));
                    (
                        StatusCode::PARTIAL_CONTENT,
                        blob.bytes.slice(start..end + 1),
                        Some(format!("bytes {start}-{end}/{total}")),
                    )
                }
            };
            let mut r = if method == Method::HEAD {
                (status, Bytes::new()).into_response()
            } else {
                (status, slice.clone()).into_response()
            };
            let h = r.headers_mut();
            let set = |h: &mut HeaderMap, k: &'static str, v: &str| {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(k, v);
                }
            };
            set(h, "content-type", &blob.content_type);
            set(h, "etag", &blob.etag);
            set(h, "last-modified", &http_date(blob.modified));
            set(h, "x-ms-creation-time", &http_date(blob.modified));
            set(h, "x-ms-blob-type", "BlockBlob");
            set(h, "accept-ranges", "bytes");
            set(h, "x-ms-server-encrypted", "true");
            if let Some(cr) = content_range {
                set(h, "content-range", &cr);
            }
            r
        }
        (Method::DELETE, None) => {
            if !i.blobs.contains_key(&name) {
                return error(
                    StatusCode::NOT_FOUND,
                    "BlobNotFound",
                    "The specified blob does not exist.",
                );
            }
            if protected {
                return error(
                    StatusCode::CONFLICT,
                    "BlobImmutableDueToPolicy",
                    "This operation is not permitted as the blob is immutable due to a policy.",
                );
            }
            i.blobs.remove(&name);
            StatusCode::ACCEPTED.into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "UnsupportedHttpVerb",
            "The resource doesn't support the specified HTTP verb.",
        ),
    }
}

/// Whether a write of `name` must be refused: a blob is there and the writer asked for none,
/// or the container's policy keeps it.
fn refuse_write(i: &Inner, name: &str, if_none_star: bool, protected: bool) -> Option<Response> {
    if !i.blobs.contains_key(name) {
        return None;
    }
    if if_none_star {
        return Some(error(
            StatusCode::CONFLICT,
            "BlobAlreadyExists",
            "The specified blob already exists.",
        ));
    }
    if protected {
        return Some(error(
            StatusCode::CONFLICT,
            "BlobImmutableDueToPolicy",
            "This operation is not permitted as the blob is immutable due to a policy.",
        ));
    }
    None
}

fn commit(i: &mut Inner, name: String, bytes: Bytes, content_type: String) -> Response {
    let etag = next_etag(i);
    let modified = chrono::Utc::now();
    let mut r = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert("etag", v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(modified)) {
        r.headers_mut().insert("last-modified", v);
    }
    r.headers_mut().insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("true"),
    );
    i.blobs.insert(
        name,
        Blob {
            bytes,
            content_type,
            etag,
            modified,
        },
    );
    r
}

/// `bytes=start-end` or `bytes=start-`.
fn parse_range(v: &str) -> Option<(usize, Option<usize>)> {
    let (start, end) = v.strip_prefix("bytes=")?.split_once('-')?;
    let start = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    Some((start, end))
}

/// The block ids of a `BlockList` document, in order (any of `Latest`, `Committed`,
/// `Uncommitted`: every staged block is uncommitted here).
fn block_ids(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(body).ok()?;
    let inner = text
        .split_once("<BlockList>")?
        .1
        .split_once("</BlockList>")?
        .0;
    let mut ids = Vec::new();
    let mut rest = inner;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let tag_end = after.find('>')?;
        let tag = &after[..tag_end];
        if !matches!(tag, "Latest" | "Committed" | "Uncommitted") {
            return None;
        }
        let content_start = &after[tag_end + 1..];
        let close = format!("</{tag}>");
        let content_end = content_start.find(&close)?;
        ids.push(
            base64::engine::general_purpose::STANDARD
                .decode(content_start[..content_end].trim())
                .ok()?,
        );
        rest = &content_start[content_end + close.len()..];
    }
    Some(ids)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
