//! OIDC mode end to end: a real issuer in the test (axum on 127.0.0.1 serving discovery and a
//! JWKS of ECDSA P-256 keys generated here) and a control plane on PostgreSQL configured for it.
//! Tokens go through the real router: authentication, then the policy table.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use server::config::AuthMode;
use server::Config;
use tcp_tests::{EngineUnderTest, TestEnv};
use tower::ServiceExt as _;
use workflows::Faults;

const AUDIENCE: &str = "api://tenant-control-plane";

/// The private half of a test signing key.
enum Private {
    /// ECDSA P-256.
    Ec(Box<rcgen::KeyPair>),
    /// RSA 2048: PKCS#1 PEM, and the public modulus and exponent (big-endian).
    Rsa { pem: String, n: Vec<u8>, e: Vec<u8> },
}

/// One signing key of the test issuer.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    private: Private,
}

impl SigningKey {
    /// An ES256 key.
    fn new(kid: &str) -> SigningKey {
        SigningKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            private: Private::Ec(Box::new(
                rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            )),
        }
    }

    /// An RSA key signing with `alg` (RS256 is what Entra ID and Auth0 use).
    fn rsa(kid: &str, alg: Algorithm) -> SigningKey {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        SigningKey {
            kid: kid.to_owned(),
            alg,
            private: Private::Rsa {
                pem: key
                    .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                    .unwrap()
                    .to_string(),
                n: key.n().to_bytes_be(),
                e: key.e().to_bytes_be(),
            },
        }
    }

    /// The public JWK, as Entra publishes its keys: `use: sig`, no `alg`.
    fn jwk(&self) -> Value {
        match &self.private {
            Private::Ec(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let raw = pair.public_key_raw();
                assert_eq!(raw.len(), 65);
                json!({
                    "kty": "EC",
                    "use": "sig",
                    "crv": "P-256",
                    "kid": self.kid,
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
                })
            }
            Private::Rsa { n, e, .. } => json!({
                "kty": "RSA",
                "use": "sig",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(n),
                "e": URL_SAFE_NO_PAD.encode(e),
            }),
        }
    }

    /// Public key bytes an attacker has (for the HMAC key-confusion attempts).
    fn public_bytes(&self) -> Vec<Vec<u8>> {
        let mut all = vec![serde_json::to_vec(&self.jwk()).unwrap()];
        match &self.private {
            Private::Ec(pair) => {
                all.push(pair.public_key_raw().to_vec());
                all.push(pair.public_key_pem().into_bytes());
            }
            Private::Rsa { n, .. } => all.push(n.clone()),
        }
        all
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, self.alg, claims)
    }

    /// Signs with this key, naming `kid` and `alg` in the header.
    fn sign_as(&self, kid: &str, alg: Algorithm, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let key = match &self.private {
            Private::Ec(pair) => EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()),
            Private::Rsa { pem, .. } => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// What the test issuer serves; the test changes it while the control plane runs.
struct IssuerState {
    /// The `issuer` its discovery document names (normally its own URL).
    discovery_issuer: Mutex<String>,
    keys: Mutex<Vec<Value>>,
    jwks_fetches: AtomicU64,
}

struct Issuer {
    url: String,
    state: Arc<IssuerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Issuer {
    async fn start(keys: &[&SigningKey]) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        // A path, like Entra's `/<tenant-id>/v2.0`.
        let url = format!("http://{addr}/tenant-1/v2.0");
        let state = Arc::new(IssuerState {
            discovery_issuer: Mutex::new(url.clone()),
            keys: Mutex::new(keys.iter().map(|k| k.jwk()).collect()),
            jwks_fetches: AtomicU64::new(0),
        });
        let jwks_uri = format!("http://{addr}/tenant-1/discovery/v2.0/keys");
        let router = Router::new()
            .route(
                "/tenant-1/v2.0/.well-known/openid-configuration",
                get(move |State(s): State<Arc<IssuerState>>| async move {
                    let issuer = s.discovery_issuer.lock().unwrap().clone();
                    Json(json!({
                        "issuer": issuer,
                        "jwks_uri": jwks_uri,
                        "id_token_signing_alg_values_supported": ["ES256"],
                    }))
                }),
            )
            .route(
                "/tenant-1/discovery/v2.0/keys",
                get(|State(s): State<Arc<IssuerState>>| async move {
                    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = s.keys.lock().unwrap().clone();
                    Json(json!({ "keys": keys }))
                }),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Issuer { url, state, task }
    }

    fn serve_keys(&self, keys: &[&SigningKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    fn fetches(&self) -> u64 {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Claims of a valid operator token of this issuer.
    fn claims(&self, roles: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice-subject",
            "oid": "00000000-0000-0000-0000-00000000a11c",
            "roles": roles,
            "iat": now,
            "nbf": now - 5,
            "exp": now + 600,
        })
    }
}

fn oidc(issuer: &Issuer) -> impl FnOnce(&mut Config) {
    let url = issuer.url.clone();
    move |c: &mut Config| {
        c.auth_mode = Some(AuthMode::Oidc);
        c.oidc_issuer = Some(url);
        c.oidc_audience = vec![AUDIENCE.to_owned()];
    }
}

/// `GET /v1/tenants` with `token`: status, `WWW-Authenticate`, problem detail.
async fn list(env: &TestEnv, token: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut req = Request::get("/v1/tenants");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = env
        .app
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let detail = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, challenge, detail)
}

/// Asserts a 401 for a rejected token, whose detail says `why` and never echoes the token.
async fn refused(env: &TestEnv, token: &str, why: &str) {
    let (status, challenge, detail) = list(env, Some(token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {detail}");
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer error=\"invalid_token\""),
        "{why}"
    );
    assert!(detail.contains(why), "expected {why:?} in {detail:?}");
    assert!(!detail.contains(token), "the detail echoes the token");
}

#[tokio::test]
async fn tokens_are_checked_against_the_issuer() {
    let key = SigningKey::new("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), oidc(&issuer)).await;
    // OIDC mode does not create the local signing key.
    assert!(!env.data_dir().join(server::auth::LOCAL_KEY_FILE).exists());

    let good = issuer.claims(json!(["operator"]));
    let (status, _, detail) = list(&env, Some(&key.sign(&good))).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    // The roles claim may be a single string.
    let (status, _, _) = list(&env, Some(&key.sign(&issuer.claims(json!("operator"))))).await;
    assert_eq!(status, StatusCode::OK);
    // Expired 30 s ago: inside the default 60 s leeway.
    let mut skewed = good.clone();
    skewed["exp"] = json!(chrono::Utc::now().timestamp() - 30);
    assert_eq!(list(&env, Some(&key.sign(&skewed))).await.0, StatusCode::OK);

    // No token: a plain challenge.
    let (status, challenge, _) = list(&env, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.as_deref(), Some("Bearer"));

    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        c
    };
    let now = chrono::Utc::now().timestamp();
    refused(
        &env,
        &key.sign(&with("iss", json!("https://evil.example/v2.0"))),
        "not issued by",
    )
    .await;
    refused(
        &env,
        &key.sign(&with("aud", json!("api://someone-else"))),
        "audience",
    )
    .await;
    refused(&env, &key.sign(&with("exp", json!(now - 120))), "expired").await;
    refused(
        &env,
        &key.sign(&with("nbf", json!(now + 300))),
        "not valid yet",
    )
    .await;
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    refused(&env, &key.sign(&no_exp), "no exp claim").await;
    let mut no_sub = good.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    refused(&env, &key.sign(&no_sub), "no sub claim").await;

    // A key the issuer does not publish, under its own kid and under the published kid.
    let stranger = SigningKey::new("stranger");
    refused(&env, &stranger.sign(&good), "not one of the issuer's keys").await;
    refused(
        &env,
        &stranger.sign_as("key-1", Algorithm::ES256, &good),
        "signature does not verify",
    )
    .await;

    // Key confusion: HS256 "signed" with the issuer's public key bytes, and `alg: none`.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("key-1".into());
    for public in key.public_bytes() {
        let token = jsonwebtoken::encode(&hs, &good, &EncodingKey::from_secret(&public)).unwrap();
        refused(&env, &token, "HS256 tokens are not accepted").await;
    }
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "key-1"}).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    refused(&env, &none, "unsupported algorithm").await;
    // A token of the local mode (what `tenantctl token` mints) is refused too.
    let local_dir = tempfile::tempdir().unwrap();
    let local = server::auth::LocalKey::load_or_create(local_dir.path())
        .unwrap()
        .mint("mallory", &["admin".into()], 600)
        .unwrap();
    refused(&env, &local, "local tokens are refused").await;

    // Authenticated but none of our roles: the policy table answers 403.
    for roles in [
        json!(["Reader", "TenantCP.Operator"]),
        json!([]),
        json!(null),
    ] {
        let (status, _, detail) = list(&env, Some(&key.sign(&with("roles", roles)))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{detail}");
    }
    // Another role of ours: authenticated, but not allowed to list tenants.
    let (status, _, _) = list(&env, Some(&key.sign(&with("roles", json!(["auditor"]))))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nothing above made the issuer fetch more than the start-up fetch and one refresh for the
    // first unknown kid.
    assert!(issuer.fetches() <= 2, "{} JWKS fetches", issuer.fetches());
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let old = SigningKey::new("key-old");
    let issuer = Issuer::start(&[&old]).await;
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), oidc(&issuer)).await;
    assert_eq!(issuer.fetches(), 1, "start-up fetches the JWKS once");
    let claims = issuer.claims(json!(["operator"]));
    assert_eq!(list(&env, Some(&old.sign(&claims))).await.0, StatusCode::OK);

    // The issuer starts signing with a new key (RSA, as Entra ID's) and publishes both.
    let new = SigningKey::rsa("key-new", Algorithm::RS256);
    issuer.serve_keys(&[&old, &new]);
    let (status, _, detail) = list(&env, Some(&new.sign(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(issuer.fetches(), 2, "one refresh for the new kid");
    // Both keys are cached now: no more fetches. An RSA JWK without `alg` takes PS256 too, but
    // never an EC algorithm or HMAC keyed with its modulus.
    assert_eq!(list(&env, Some(&old.sign(&claims))).await.0, StatusCode::OK);
    assert_eq!(list(&env, Some(&new.sign(&claims))).await.0, StatusCode::OK);
    let ps = new.sign_as("key-new", Algorithm::PS256, &claims);
    assert_eq!(list(&env, Some(&ps)).await.0, StatusCode::OK);
    let es_under_rsa_kid = old.sign_as("key-new", Algorithm::ES256, &claims);
    refused(&env, &es_under_rsa_kid, "algorithm does not match").await;
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("key-new".into());
    for public in new.public_bytes() {
        let token = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public)).unwrap();
        refused(&env, &token, "HS256 tokens are not accepted").await;
    }
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_the_jwks_at_most_once() {
    let key = SigningKey::new("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), oidc(&issuer)).await;
    let env = Arc::new(env);
    let claims = issuer.claims(json!(["operator"]));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let env = env.clone();
        let token = key.sign_as(&format!("made-up-{i}"), Algorithm::ES256, &claims);
        tasks.push(tokio::spawn(
            async move { list(&env, Some(&token)).await.0 },
        ));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // Start-up, plus one refresh for the whole flood.
    assert_eq!(issuer.fetches(), 2);
    // Valid tokens still pass, from the cache.
    assert_eq!(list(&env, Some(&key.sign(&claims))).await.0, StatusCode::OK);
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn an_unreachable_issuer_keeps_the_cached_keys_and_says_503_for_unknown_ones() {
    let key = SigningKey::new("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), oidc(&issuer)).await;
    let claims = issuer.claims(json!(["operator"]));
    issuer.task.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A key we never saw may be the issuer's new one: we cannot tell, so "try again later".
    let (status, _, detail) = list(&env, Some(&SigningKey::new("key-2").sign(&claims))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{detail}");
    assert!(detail.contains("cannot be fetched"), "{detail}");
    // Tokens of cached keys keep working.
    assert_eq!(list(&env, Some(&key.sign(&claims))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn removed_keys_stop_being_accepted_after_the_refresh() {
    let old = SigningKey::new("key-old");
    let new = SigningKey::new("key-new");
    let issuer = Issuer::start(&[&old, &new]).await;
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        oidc(&issuer)(c);
        c.oidc_jwks_ttl_secs = 1;
    })
    .await;
    let claims = issuer.claims(json!(["operator"]));
    assert_eq!(list(&env, Some(&old.sign(&claims))).await.0, StatusCode::OK);
    issuer.serve_keys(&[&new]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    refused(&env, &old.sign(&claims), "not one of the issuer's keys").await;
    assert_eq!(list(&env, Some(&new.sign(&claims))).await.0, StatusCode::OK);
}

#[tokio::test]
async fn role_map_custom_claims_and_a_configured_jwks_url() {
    let key = SigningKey::new("key-1");
    let issuer = Issuer::start(&[&key]).await;
    // Discovery names another issuer: a configured JWKS URL skips discovery altogether.
    *issuer.state.discovery_issuer.lock().unwrap() = "https://elsewhere.example/".into();
    let jwks = issuer.url.replace("/v2.0", "/discovery/v2.0/keys");
    let roles_claim = "https://tcp.example.com/roles";
    let env = TestEnv::with(EngineUnderTest::Postgres, Faults::none(), |c| {
        oidc(&issuer)(c);
        c.oidc_jwks_url = Some(jwks);
        c.oidc_audience = vec![
            "11111111-2222-3333-4444-555555555555".into(),
            AUDIENCE.into(),
        ];
        c.oidc_roles_claim = roles_claim.into();
        c.oidc_subject_claim = "oid".into();
        c.oidc_role_map = BTreeMap::from([
            ("TenantCP.Operator".to_owned(), "operator".to_owned()),
            ("TenantCP.Auditor".to_owned(), "auditor".to_owned()),
        ]);
    })
    .await;
    let mut claims = issuer.claims(json!(null));
    claims[roles_claim] = json!(["Other", "TenantCP.Operator"]);
    let (status, _, detail) = list(&env, Some(&key.sign(&claims))).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    // An aud array holding the other accepted audience.
    claims["aud"] = json!(["11111111-2222-3333-4444-555555555555", "x"]);
    assert_eq!(list(&env, Some(&key.sign(&claims))).await.0, StatusCode::OK);
    // With a map, our role names given raw do not count; nor does the default `roles` claim.
    claims[roles_claim] = json!(["operator"]);
    claims["roles"] = json!(["operator"]);
    assert_eq!(
        list(&env, Some(&key.sign(&claims))).await.0,
        StatusCode::FORBIDDEN
    );
    claims[roles_claim] = json!("TenantCP.Auditor");
    assert_eq!(
        list(&env, Some(&key.sign(&claims))).await.0,
        StatusCode::FORBIDDEN
    );
    // The subject claim is `oid` now: a token without it is refused.
    claims[roles_claim] = json!(["TenantCP.Operator"]);
    claims.as_object_mut().unwrap().remove("oid");
    refused(&env, &key.sign(&claims), "no oid claim").await;
}

/// A configuration that fails before anything but authentication is opened.
fn bare(data_dir: &std::path::Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    }
}

async fn start_error(config: &Config) -> String {
    match server::start(config, Some(Faults::none())).await {
        Ok(_) => panic!("start-up succeeded"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn start_up_refuses_an_unset_mode_and_a_wrong_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let e = start_error(&bare(dir.path())).await;
    assert!(e.contains("auth_mode is not set"), "{e}");
    assert!(e.contains("auth_mode = \"oidc\""), "{e}");
    assert!(e.contains("auth_mode = \"local\""), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");

    let key = SigningKey::new("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let mut config = bare(dir.path());
    oidc(&issuer)(&mut config);
    *issuer.state.discovery_issuer.lock().unwrap() =
        "https://login.microsoftonline.com/other/v2.0".into();
    let e = start_error(&config).await;
    assert!(e.contains("names issuer"), "{e}");
    assert!(e.contains("login.microsoftonline.com/other"), "{e}");

    // No audience.
    let mut no_aud = config.clone();
    no_aud.oidc_audience.clear();
    assert!(start_error(&no_aud).await.contains("oidc_audience"));
    // Plain http to a non-loopback host.
    let mut http = config.clone();
    http.oidc_issuer = Some("http://login.example.com/t/v2.0".into());
    let e = start_error(&http).await;
    assert!(e.contains("must be an https URL"), "{e}");
    // Nobody listening.
    drop(issuer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = start_error(&config).await;
    assert!(
        e.contains("cannot fetch the issuer's discovery document"),
        "{e}"
    );
    // A JWKS without usable keys (only a symmetric one).
    let issuer = Issuer::start(&[]).await;
    *issuer.state.keys.lock().unwrap() = vec![json!({"kty": "oct", "kid": "s", "k": "c2VjcmV0"})];
    let mut config = bare(dir.path());
    oidc(&issuer)(&mut config);
    let e = start_error(&config).await;
    assert!(e.contains("no usable signing key"), "{e}");
    assert!(!dir.path().join(server::auth::LOCAL_KEY_FILE).exists());
}

#[tokio::test]
async fn the_binary_says_how_to_choose_a_mode() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(tcp_tests::server_binary())
        .env_remove("TENANT_CP_AUTH_MODE")
        .env_remove("TENANT_CP_CONFIG")
        .env("TENANT_CP_DATA_DIR", dir.path())
        .env(
            "TENANT_CP_LISTEN",
            format!("127.0.0.1:{}", tcp_tests::free_port()),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth_mode is not set"), "{stderr}");
    assert!(stderr.contains("TENANT_CP_AUTH_MODE=local"), "{stderr}");
}
