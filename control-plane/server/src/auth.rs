//! Layer: foundation. Bearer-token authentication: who is calling and with which of our roles.
//! Authorization (which role may do what) is the policy table's job (`policy.rs`), never this
//! module's.
//!
//! Two modes, chosen explicitly by `auth_mode` (no default, so production cannot fall into the
//! development mode by omission):
//! * `local`, for development: HS256 tokens signed with a key generated under the data directory
//!   (`jwt-hs256.key`, mode 0600). `tenantctl token` mints tokens with the same key. Claims:
//!   `sub` (the actor recorded everywhere), `roles` (array), `exp`, `iat`, `iss`.
//! * `oidc`: access tokens of an OIDC issuer (Entra ID, Auth0), signed with an asymmetric key
//!   from the issuer's JWKS ([`oidc`]).

pub mod oidc;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{AuthMode, Config};
use crate::keyfile::{self, KeyFileError};

/// File name of the local HS256 key under the data directory.
pub const LOCAL_KEY_FILE: &str = "jwt-hs256.key";
/// Issuer of local tokens.
pub const LOCAL_ISSUER: &str = "tenant-control-plane-local";

/// Roles known to the control plane.
pub const ROLES: &[&str] = &["operator", "support", "auditor", "admin"];

/// Token claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who is calling.
    pub sub: String,
    /// Roles granted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: i64,
    /// Issued at.
    #[serde(default)]
    pub iat: i64,
    /// Issuer.
    #[serde(default)]
    pub iss: String,
}

/// Errors of key handling and token checks.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is malformed, expired, or signed with another key.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token names a signing key we do not have and the issuer's key set cannot be fetched
    /// now: the token may be valid, so the caller should retry rather than re-authenticate.
    #[error("cannot check the token now: {0}")]
    KeysUnavailable(String),
    /// `auth_mode` is not set.
    #[error(
        "auth_mode is not set: for production set auth_mode = \"oidc\" with oidc_issuer and \
         oidc_audience (TENANT_CP_AUTH_MODE=oidc, TENANT_CP_OIDC_ISSUER, TENANT_CP_OIDC_AUDIENCE), \
         or auth_mode = \"local\" (TENANT_CP_AUTH_MODE=local) for development with locally \
         minted tokens"
    )]
    NoMode,
    /// The OIDC settings are incomplete or wrong, or the issuer cannot be reached at start-up.
    #[error("auth_mode = oidc: {0}")]
    Oidc(String),
    /// The key file could not be read or written.
    #[error("signing key {path}: {detail}")]
    Key {
        /// Key path.
        path: String,
        /// Why.
        detail: String,
    },
    /// Unknown role requested.
    #[error("unknown role {0:?}: use one of operator, support, auditor, admin")]
    UnknownRole(String),
}

/// The local signing key (never printed).
#[derive(Clone)]
pub struct LocalKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey([redacted])")
    }
}

fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOCAL_KEY_FILE)
}

/// Length of a generated HS256 key.
const KEY_BYTES: usize = 32;

impl From<KeyFileError> for AuthError {
    fn from(e: KeyFileError) -> Self {
        AuthError::Key {
            path: e.path,
            detail: e.detail,
        }
    }
}

impl LocalKey {
    /// Reads the key under `data_dir`, creating it (32 random bytes, mode 0600) if missing.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuthError> {
        let secret = keyfile::load_or_create(&key_path(data_dir), KEY_BYTES)?;
        Ok(LocalKey { secret })
    }

    /// Reads an existing key under `data_dir`.
    pub fn load(data_dir: &Path) -> Result<Self, AuthError> {
        let path = key_path(data_dir);
        if !path.exists() {
            return Err(AuthError::Key {
                path: path.display().to_string(),
                detail: "not found (start the control plane once with `make run` to create it; \
                         in OIDC mode there is no local key: pass a token from your identity \
                         provider with --token or TENANTCTL_TOKEN)"
                    .into(),
            });
        }
        let secret = keyfile::read(&path, KEY_BYTES)?;
        Ok(LocalKey { secret })
    }

    /// Mints a token for `subject` with `roles`, valid for `ttl_secs`.
    pub fn mint(
        &self,
        subject: &str,
        roles: &[String],
        ttl_secs: i64,
    ) -> Result<String, AuthError> {
        for r in roles {
            if !ROLES.contains(&r.as_str()) {
                return Err(AuthError::UnknownRole(r.clone()));
            }
        }
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            roles: roles.to_vec(),
            exp: now + ttl_secs,
            iat: now,
            iss: LOCAL_ISSUER.to_owned(),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Checks signature, expiry and issuer.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[LOCAL_ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&self.secret), &validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// Who a verified token names: the subject and those of its roles that are ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    /// The actor recorded in operations and audit events.
    pub subject: String,
    /// Our role names (see [`ROLES`]); values we do not know are dropped.
    pub roles: Vec<String>,
}

/// Checks bearer tokens in the configured mode.
#[derive(Clone, Debug)]
pub enum Authenticator {
    /// HS256 tokens of the local key (development).
    Local(LocalKey),
    /// Tokens of an OIDC issuer, checked against its JWKS.
    Oidc(Arc<oidc::OidcVerifier>),
}

impl Authenticator {
    /// The authenticator `config.auth_mode` selects. Local mode creates the key file when
    /// missing and warns loudly; OIDC mode fetches the issuer's keys once, so a wrong issuer or
    /// an unreachable identity provider stops start-up instead of failing every request.
    pub async fn from_config(config: &Config) -> Result<Self, AuthError> {
        match config.auth_mode {
            None => Err(AuthError::NoMode),
            Some(AuthMode::Local) => {
                let key = LocalKey::load_or_create(&config.data_dir)?;
                tracing::warn!(
                    key = %key_path(&config.data_dir).display(),
                    "LOCAL AUTHENTICATION: tokens are minted from a key file on this machine \
                     (tenantctl token); for development only, not for production \
                     (set auth_mode = \"oidc\")"
                );
                Ok(Authenticator::Local(key))
            }
            Some(AuthMode::Oidc) => {
                let settings = oidc::OidcSettings::from_config(config)?;
                let verifier = oidc::OidcVerifier::connect(settings).await?;
                tracing::info!(
                    issuer = %verifier.settings().issuer,
                    audience = ?verifier.settings().audiences,
                    jwks = %verifier.jwks_url(),
                    keys = verifier.key_count(),
                    "authenticating bearer tokens of an OIDC issuer"
                );
                Ok(Authenticator::Oidc(Arc::new(verifier)))
            }
        }
    }

    /// Verifies `token` and returns who it names.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        match self {
            Authenticator::Local(key) => {
                let claims = key.verify(token)?;
                Ok(Authenticated {
                    subject: claims.sub,
                    roles: claims.roles,
                })
            }
            Authenticator::Oidc(verifier) => verifier.verify(token).await,
        }
    }
}

/// Mints a local token from the key under `data_dir` (what `tenantctl token` does).
pub fn mint_local_token(
    data_dir: &Path,
    role: &str,
    subject: &str,
    ttl_secs: i64,
) -> Result<String, AuthError> {
    LocalKey::load(data_dir)?.mint(subject, &[role.to_owned()], ttl_secs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mint_and_verify_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = LocalKey::load_or_create(dir.path()).unwrap();
        let token = key.mint("alice", &["operator".into()], 60).unwrap();
        let claims = key.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.roles, vec!["operator"]);
        assert!(format!("{key:?}").contains("redacted"));
    }

    #[test]
    fn rejects_foreign_expired_and_unknown_roles() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ka = LocalKey::load_or_create(a.path()).unwrap();
        let kb = LocalKey::load_or_create(b.path()).unwrap();
        let token = ka.mint("alice", &["operator".into()], 60).unwrap();
        assert!(kb.verify(&token).is_err());
        let expired = ka.mint("alice", &["operator".into()], -60).unwrap();
        assert!(ka.verify(&expired).is_err());
        assert!(matches!(
            ka.mint("a", &["root".into()], 60),
            Err(AuthError::UnknownRole(_))
        ));
    }
}
