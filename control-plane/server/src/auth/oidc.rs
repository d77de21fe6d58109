//! Layer: foundation (part of `auth`). OIDC mode: JWT access tokens of one issuer (Microsoft Entra
//! ID, Auth0, ...), checked against the issuer's published signing keys (JWKS).
//!
//! What a token must satisfy, in order:
//! * its header names an asymmetric algorithm (RS256/384/512, PS256/384/512, ES256/384): HS*
//!   (a shared secret, the local mode's tokens, or the key-confusion trick of "HMAC keyed with
//!   the issuer's public key") and `none` are refused before any key is looked at;
//! * its `kid` names a key of the cached JWKS, and the algorithm fits that key (the JWK's `alg`
//!   when it has one, else its type and curve); keys embedded in the token (`jwk`, `jku`) are
//!   never used;
//! * the signature verifies; `iss` equals `oidc_issuer` exactly; `aud` holds one of
//!   `oidc_audience`; `exp` is present and not past, and `nbf` (when present) not ahead, each
//!   with `oidc_leeway_secs` of clock skew;
//! * the subject claim is a non-empty string. The roles claim (a string or an array of strings)
//!   is mapped to our role names; values we do not know are dropped, so a token without any of
//!   our roles authenticates but the policy table then refuses it (403).
//!
//! The JWKS cache: fetched at start-up (failure stops start-up), then again when it is older
//! than `oidc_jwks_ttl_secs` (a successful fetch replaces the set, so removed keys stop being
//! accepted). A token naming an unknown `kid` triggers one fetch (single-flight: concurrent
//! requests wait for the same fetch), at most once per [`UNKNOWN_KID_REFRESH_INTERVAL`] so a
//! flood of made-up `kid`s cannot hammer the identity provider. A failed fetch keeps the cached
//! keys and logs a warning; a token whose key is unknown while the last fetch failed gets 503
//! (it may be valid), otherwise 401.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::{AuthError, Authenticated, ROLES};
use crate::config::Config;

/// Least time between two JWKS fetches triggered by unknown `kid`s.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed fetch, how long before the periodic refresh tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Time limit of one discovery or JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest discovery document or JWKS accepted, bytes.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The OIDC settings, checked.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// The exact `iss` accepted.
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// The JWKS URL; discovered from the issuer when `None`.
    pub jwks_url: Option<String>,
    /// The claim holding roles.
    pub roles_claim: String,
    /// Identity-provider role value -> our role (empty: values must be our role names).
    pub role_map: BTreeMap<String, String>,
    /// The claim naming the actor.
    pub subject_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long a fetched key set is used before it is fetched again.
    pub jwks_ttl: Duration,
    /// Extra trusted roots (PEM) for the issuer's TLS.
    pub ca_bundle: Option<PathBuf>,
}

fn setup(detail: impl Into<String>) -> AuthError {
    AuthError::Oidc(detail.into())
}

impl OidcSettings {
    /// The OIDC settings of `config`, or what is missing or wrong.
    pub fn from_config(config: &Config) -> Result<Self, AuthError> {
        let issuer = config
            .oidc_issuer
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .ok_or_else(|| {
                setup(
                    "set oidc_issuer (TENANT_CP_OIDC_ISSUER), e.g. \
                     https://login.microsoftonline.com/<tenant-id>/v2.0",
                )
            })?
            .to_owned();
        check_url("oidc_issuer", &issuer)?;
        if config.oidc_audience.is_empty() {
            return Err(setup(
                "set oidc_audience (TENANT_CP_OIDC_AUDIENCE) to the audience your tokens carry, \
                 e.g. api://tenant-control-plane",
            ));
        }
        let jwks_url = match config.oidc_jwks_url.as_deref().map(str::trim) {
            Some(u) if !u.is_empty() => {
                check_url("oidc_jwks_url", u)?;
                Some(u.to_owned())
            }
            _ => None,
        };
        for (theirs, ours) in &config.oidc_role_map {
            if !ROLES.contains(&ours.as_str()) {
                return Err(setup(format!(
                    "oidc_role_map maps {theirs:?} to {ours:?}, which is not one of our roles \
                     ({})",
                    ROLES.join(", ")
                )));
            }
        }
        let claim = |name: &str, value: &str| {
            let v = value.trim();
            if v.is_empty() {
                Err(setup(format!("{name} must not be empty")))
            } else {
                Ok(v.to_owned())
            }
        };
        Ok(OidcSettings {
            issuer,
            audiences: config.oidc_audience.clone(),
            jwks_url,
            roles_claim: claim("oidc_roles_claim", &config.oidc_roles_claim)?,
            role_map: config.oidc_role_map.clone(),
            subject_claim: claim("oidc_subject_claim", &config.oidc_subject_claim)?,
            leeway: Duration::from_secs(config.oidc_leeway_secs),
            jwks_ttl: Duration::from_secs(config.oidc_jwks_ttl_secs.max(1)),
            ca_bundle: config.oidc_ca_bundle.clone(),
        })
    }
}

/// Accepts an https URL, or http to a loopback host (an in-test issuer); anything else would let
/// a network attacker serve us their keys.
pub fn check_url(what: &str, value: &str) -> Result<(), AuthError> {
    let url =
        url::Url::parse(value).map_err(|e| setup(format!("{what} {value:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(setup(format!(
            "{what} must be an https URL (http only to a loopback host, for tests), not {value:?}"
        ))),
    }
}

/// Whether the header algorithm is one we accept at all in OIDC mode.
pub fn accepted_algorithm(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
    )
}

/// Maps the roles claim (a string or an array of strings) to our role names: through `map` when
/// it has entries, else values must be our role names. Unknown values are dropped.
pub fn map_roles(value: Option<&Value>, map: &BTreeMap<String, String>) -> Vec<String> {
    let values: Vec<&str> = match value {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut roles: Vec<String> = Vec::new();
    for value in values {
        let ours = if map.is_empty() {
            Some(value)
        } else {
            map.get(value).map(String::as_str)
        };
        if let Some(role) = ours.filter(|r| ROLES.contains(r)) {
            if !roles.iter().any(|r| r == role) {
                roles.push(role.to_owned());
            }
        }
    }
    roles
}

/// Which key a JWK is, for matching the token's algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
}

/// One usable signing key of the set.
#[derive(Clone)]
struct VerifyKey {
    key: DecodingKey,
    kind: KeyKind,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
}

impl VerifyKey {
    /// Whether a token signed with `alg` may be checked with this key: the JWK's own `alg` when
    /// it names one, else any algorithm of the key's type and curve.
    fn fits(&self, alg: Algorithm) -> bool {
        match self.alg {
            Some(own) => own == alg,
            None => kind_fits(self.kind, alg),
        }
    }
}

fn kind_fits(kind: KeyKind, alg: Algorithm) -> bool {
    match kind {
        KeyKind::Rsa => matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ),
        KeyKind::EcP256 => alg == Algorithm::ES256,
        KeyKind::EcP384 => alg == Algorithm::ES384,
    }
}

fn signing_algorithm(alg: &KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// The usable signing keys of a JWKS document by `kid`. Keys we cannot use (symmetric `oct`
/// keys, encryption keys, unknown types, no `kid`) are skipped, not fatal: identity providers
/// publish more than signing keys.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, VerifyKey>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for value in doc.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                KeyKind::EcP256
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P384 => {
                KeyKind::EcP384
            }
            _ => continue,
        };
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(a) => match signing_algorithm(a) {
                Some(a) => Some(a),
                None => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        // A JWK claiming an algorithm of another key type is not trusted at all.
        if alg.is_some_and(|a| !kind_fits(kind, a)) {
            continue;
        }
        keys.insert(kid, VerifyKey { key, kind, alg });
    }
    Ok(keys)
}

/// The cached key set.
struct KeySet {
    keys: HashMap<String, VerifyKey>,
    /// When the periodic refresh is due.
    next_refresh: Instant,
    /// Whether the last fetch failed.
    last_failed: bool,
}

/// The issuer's JWKS, cached, with the refresh rules of the module docs.
struct JwksCache {
    url: String,
    http: reqwest::Client,
    ttl: Duration,
    set: RwLock<KeySet>,
    /// Held while fetching (single flight); holds when an unknown `kid` last caused a fetch.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    fetches: AtomicU64,
}

/// A reqwest error with its causes (the URL is not secret; no token is ever in it).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn get_document(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let response = http.get(url).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let body = response.bytes().await.map_err(|e| describe(&e))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{url} sent more than {MAX_DOCUMENT_BYTES} bytes"));
    }
    Ok(body.to_vec())
}

impl JwksCache {
    fn lookup(&self, kid: &str) -> Option<VerifyKey> {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .get(kid)
            .cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyKey>, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        parse_jwks(&get_document(&self.http, &self.url).await?)
    }

    /// Fetches the set now; on failure keeps the cached keys. The caller holds `refresh`.
    async fn refresh_now(&self) {
        let fetched = self.fetch().await;
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(keys) => {
                if keys.is_empty() {
                    tracing::warn!(jwks = %self.url, "the OIDC issuer publishes no usable signing keys");
                }
                tracing::debug!(jwks = %self.url, keys = keys.len(), "refreshed the OIDC signing keys");
                set.keys = keys;
                set.next_refresh = Instant::now() + self.ttl;
                set.last_failed = false;
            }
            Err(error) => {
                tracing::warn!(
                    jwks = %self.url,
                    %error,
                    cached_keys = set.keys.len(),
                    "cannot refresh the OIDC signing keys; keeping the cached ones"
                );
                set.next_refresh = Instant::now() + RETRY_AFTER_FAILURE;
                set.last_failed = true;
            }
        }
    }

    /// The periodic refresh, done by the first request that finds the set due; others keep
    /// using the cached keys meanwhile.
    async fn refresh_if_due(&self) {
        let due = self
            .set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .next_refresh
            <= Instant::now();
        if !due {
            return;
        }
        if let Ok(_guard) = self.refresh.try_lock() {
            let still_due = self
                .set
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .next_refresh
                <= Instant::now();
            if still_due {
                self.refresh_now().await;
            }
        }
    }

    /// The key named `kid`, refreshing the set once for an unknown one.
    async fn key(&self, kid: &str) -> Result<VerifyKey, AuthError> {
        self.refresh_if_due().await;
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        {
            let mut last = self.refresh.lock().await;
            // Another request may have fetched while this one waited.
            if let Some(key) = self.lookup(kid) {
                return Ok(key);
            }
            let allowed = last.is_none_or(|t| t.elapsed() >= UNKNOWN_KID_REFRESH_INTERVAL);
            if allowed {
                *last = Some(Instant::now());
                self.refresh_now().await;
            }
        }
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        if set.last_failed {
            Err(AuthError::KeysUnavailable(
                "the token's signing key is not cached and the issuer's keys cannot be fetched; \
                 try again later"
                    .into(),
            ))
        } else if set.keys.is_empty() {
            Err(AuthError::Invalid(
                "the issuer publishes no usable signing keys".into(),
            ))
        } else {
            Err(AuthError::Invalid(
                "the token's signing key (kid) is not one of the issuer's keys".into(),
            ))
        }
    }
}

/// Verifies OIDC access tokens of one issuer.
pub struct OidcVerifier {
    settings: OidcSettings,
    jwks: JwksCache,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("issuer", &self.settings.issuer)
            .field("jwks", &self.jwks.url)
            .finish_non_exhaustive()
    }
}

fn http_client(settings: &OidcSettings) -> Result<reqwest::Client, AuthError> {
    let mut builder = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        // A redirect could lead to a host the URL rules would refuse.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tenant-control-plane/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &settings.ca_bundle {
        let pem = std::fs::read(path)
            .map_err(|e| setup(format!("reading oidc_ca_bundle {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| setup(format!("oidc_ca_bundle {}: {e}", path.display())))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| setup(format!("building the HTTP client: {}", describe(&e))))
}

/// The JWKS URL named by the issuer's discovery document, which must name the same issuer.
async fn discover(http: &reqwest::Client, issuer: &str) -> Result<String, AuthError> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
        jwks_uri: String,
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let body = get_document(http, &url).await.map_err(|e| {
        setup(format!(
            "cannot fetch the issuer's discovery document {url}: {e}"
        ))
    })?;
    let doc: Discovery = serde_json::from_slice(&body)
        .map_err(|e| setup(format!("{url} is not an OpenID discovery document: {e}")))?;
    if doc.issuer != issuer {
        return Err(setup(format!(
            "the discovery document {url} names issuer {:?}, not oidc_issuer {issuer:?}; set \
             oidc_issuer to exactly the issuer your tokens carry (Entra ID v2 tokens: \
             https://login.microsoftonline.com/<tenant-id>/v2.0; Auth0: \
             https://<tenant>.auth0.com/ with the trailing slash)",
            doc.issuer
        )));
    }
    check_url("the discovery document's jwks_uri", &doc.jwks_uri)?;
    Ok(doc.jwks_uri)
}

impl OidcVerifier {
    /// Discovers the JWKS (unless configured) and fetches it once; any failure is a start-up
    /// error naming what to fix.
    pub async fn connect(settings: OidcSettings) -> Result<Self, AuthError> {
        let http = http_client(&settings)?;
        let url = match &settings.jwks_url {
            Some(u) => u.clone(),
            None => discover(&http, &settings.issuer).await?,
        };
        let jwks = JwksCache {
            url,
            http,
            ttl: settings.jwks_ttl,
            set: RwLock::new(KeySet {
                keys: HashMap::new(),
                next_refresh: Instant::now(),
                last_failed: false,
            }),
            refresh: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        };
        let keys = jwks.fetch().await.map_err(|e| {
            setup(format!(
                "cannot fetch the issuer's signing keys from {}: {e}",
                jwks.url
            ))
        })?;
        if keys.is_empty() {
            return Err(setup(format!(
                "{} holds no usable signing key (RSA or EC P-256/P-384 with a kid)",
                jwks.url
            )));
        }
        {
            let mut set = jwks.set.write().unwrap_or_else(|p| p.into_inner());
            set.keys = keys;
            set.next_refresh = Instant::now() + jwks.ttl;
        }
        Ok(OidcVerifier { settings, jwks })
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The JWKS URL in use.
    pub fn jwks_url(&self) -> &str {
        &self.jwks.url
    }

    /// How many signing keys are cached.
    pub fn key_count(&self) -> usize {
        self.jwks
            .set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys
            .len()
    }

    /// How many JWKS fetches were attempted (start-up included).
    pub fn jwks_fetches(&self) -> u64 {
        self.jwks.fetches.load(Ordering::Relaxed)
    }

    /// Verifies `token` (see the module docs) and returns its subject and our roles.
    pub async fn verify(&self, token: &str) -> Result<Authenticated, AuthError> {
        let invalid = |d: &str| AuthError::Invalid(d.to_owned());
        // `alg: none` and unknown algorithms do not even parse.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("malformed token or unsupported algorithm"))?;
        if !accepted_algorithm(header.alg) {
            return Err(AuthError::Invalid(format!(
                "{:?} tokens are not accepted: this control plane accepts only tokens its OIDC \
                 issuer signed with an asymmetric key (local tokens are refused in OIDC mode)",
                header.alg
            )));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| invalid("the token has no kid header"))?;
        let key = self.jwks.key(kid).await?;
        if !key.fits(header.alg) {
            return Err(invalid(
                "the token's algorithm does not match its signing key",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
                .map_err(|e| self.rejection(e.kind()))?;
        let claims = data.claims;
        let subject = claims
            .get(&self.settings.subject_claim)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "the token has no {} claim (oidc_subject_claim)",
                    self.settings.subject_claim
                ))
            })?
            .to_owned();
        let roles = map_roles(
            claims.get(&self.settings.roles_claim),
            &self.settings.role_map,
        );
        Ok(Authenticated { subject, roles })
    }

    /// A client-facing reason; never the token or its claims' values.
    fn rejection(&self, kind: &ErrorKind) -> AuthError {
        let detail = match kind {
            ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
            ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
            ErrorKind::InvalidIssuer => format!(
                "the token was not issued by {} (oidc_issuer)",
                self.settings.issuer
            ),
            ErrorKind::InvalidAudience => format!(
                "the token's audience is not {} (oidc_audience)",
                self.settings.audiences.join(" or ")
            ),
            ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
            ErrorKind::InvalidSignature => "the token's signature does not verify".to_owned(),
            ErrorKind::InvalidAlgorithm => {
                "the token's algorithm does not match its signing key".to_owned()
            }
            _ => "malformed token".to_owned(),
        };
        AuthError::Invalid(detail)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn roles_from_a_string_or_an_array_with_and_without_a_map() {
        let none = BTreeMap::new();
        assert_eq!(map_roles(Some(&json!("operator")), &none), vec!["operator"]);
        assert_eq!(
            map_roles(
                Some(&json!(["auditor", "root", "auditor", 7, "support"])),
                &none
            ),
            vec!["auditor", "support"]
        );
        assert!(map_roles(None, &none).is_empty());
        assert!(map_roles(Some(&json!({"operator": true})), &none).is_empty());
        let map: BTreeMap<String, String> = [
            ("TenantCP.Operator".to_owned(), "operator".to_owned()),
            ("TenantCP.Admin".to_owned(), "admin".to_owned()),
        ]
        .into();
        assert_eq!(
            map_roles(
                Some(&json!(["TenantCP.Admin", "TenantCP.Operator", "Other"])),
                &map
            ),
            vec!["admin", "operator"]
        );
        // With a map, only mapped values count: our own names are not accepted raw.
        assert!(map_roles(Some(&json!(["operator"])), &map).is_empty());
    }

    #[test]
    fn only_asymmetric_algorithms() {
        for alg in [
            Algorithm::HS256,
            Algorithm::HS384,
            Algorithm::HS512,
            Algorithm::EdDSA,
        ] {
            assert!(!accepted_algorithm(alg), "{alg:?}");
        }
        for alg in [
            Algorithm::RS256,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
        ] {
            assert!(accepted_algorithm(alg), "{alg:?}");
        }
    }

    #[test]
    fn urls_must_be_https_or_loopback_http() {
        for ok in [
            "https://login.microsoftonline.com/t/v2.0",
            "http://127.0.0.1:8080/",
            "http://127.1.2.3/",
            "http://localhost:9000",
            "http://[::1]:9000/x",
        ] {
            check_url("oidc_issuer", ok).unwrap();
        }
        for bad in [
            "http://login.microsoftonline.com/t/v2.0",
            "http://10.0.0.1/",
            "http://localhost.evil.example/",
            "ftp://127.0.0.1/",
            "login.microsoftonline.com",
        ] {
            let e = check_url("oidc_issuer", bad).unwrap_err().to_string();
            assert!(e.contains("oidc_issuer"), "{e}");
        }
    }

    #[test]
    fn jwks_skips_keys_it_cannot_use() {
        let doc = json!({"keys": [
            // A symmetric key must never become a verification key.
            {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
            // An encryption key.
            {"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "kid": "sig", "use": "sig", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            // A JWK whose alg does not fit its type.
            {"kty": "EC", "kid": "liar", "alg": "RS256", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"}
        ]});
        let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["sig"]);
        let key = &keys["sig"];
        assert!(key.fits(Algorithm::ES256));
        assert!(!key.fits(Algorithm::ES384));
        assert!(!key.fits(Algorithm::RS256));
        assert!(!key.fits(Algorithm::HS256));
        assert!(parse_jwks(b"{}").is_err());
    }

    #[test]
    fn settings_need_issuer_audience_and_known_roles() {
        let base = Config {
            auth_mode: Some(crate::config::AuthMode::Oidc),
            ..Config::default()
        };
        let e = OidcSettings::from_config(&base).unwrap_err().to_string();
        assert!(e.contains("oidc_issuer"), "{e}");
        let c = Config {
            oidc_issuer: Some("https://login.microsoftonline.com/t/v2.0".into()),
            ..base
        };
        let e = OidcSettings::from_config(&c).unwrap_err().to_string();
        assert!(e.contains("oidc_audience"), "{e}");
        let c = Config {
            oidc_audience: vec!["api://tenant-control-plane".into()],
            ..c
        };
        let s = OidcSettings::from_config(&c).unwrap();
        assert_eq!(s.subject_claim, "sub");
        assert_eq!(s.roles_claim, "roles");
        assert_eq!(s.leeway, Duration::from_secs(60));
        let mut bad_map = c.clone();
        bad_map
            .oidc_role_map
            .insert("TenantCP.Root".into(), "root".into());
        let e = OidcSettings::from_config(&bad_map).unwrap_err().to_string();
        assert!(e.contains("not one of our roles"), "{e}");
        let plain_http = Config {
            oidc_issuer: Some("http://login.microsoftonline.com/t/v2.0".into()),
            ..c
        };
        let e = OidcSettings::from_config(&plain_http)
            .unwrap_err()
            .to_string();
        assert!(e.contains("https"), "{e}");
    }
}
