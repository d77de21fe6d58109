//! Bearer-token authentication and role checks.
//!
//! Local mode (the only mode so far): HS256 tokens signed with a key generated under the data
//! directory (`jwt-hs256.key`, mode 0600). `tenantctl token` mints tokens with the same key.
//! Claims: `sub` (the actor recorded everywhere), `roles` (array), `exp`, `iat`, `iss`.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
                detail: "not found (start the control plane once with `make run` to create it)"
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
