//! Signed documents (deletion certificates, evidence bundles) and their offline verification.
//!
//! A signed document is a JSON envelope:
//!
//! ```json
//! {
//!   "payload": { "...": "the document" },
//!   "signature": {
//!     "alg": "Ed25519",
//!     "kid": "9c1e5d0f3a7b2c48",
//!     "public_key": "<32 bytes, base64url>",
//!     "signed_at": "2026-03-01T12:00:00Z",
//!     "value": "<64 bytes, base64url>"
//!   }
//! }
//! ```
//!
//! - `value` is an Ed25519 signature (RFC 8032, checked with `verify_strict`) over the
//!   **signing input**: the envelope without `signature.value`, that is
//!   `{"payload": …, "signature": {"alg", "kid", "public_key", "signed_at"}}`, serialized as
//!   RFC 8785 canonical JSON ([`canonical_json`]). The signing time and key id are therefore
//!   signed as well as the payload; nothing in the envelope is unsigned but the signature itself,
//!   and a verifier refuses any other member.
//! - `public_key` is the raw 32-byte Ed25519 public key, `value` the 64-byte signature, both
//!   base64url without padding (RFC 4648 §5), as in a JWK's `x`.
//! - `kid` is the first 16 hex characters of SHA-256 of the 32 public-key bytes ([`key_id`]).
//! - `signed_at` is RFC 3339 in UTC.
//!
//! The public key inside the document only proves integrity; who signed it is proven by
//! comparing that key with one obtained independently (`GET /v1/signing-key`), which
//! [`verify`] does when given a trusted key.
//!
//! Nothing here reads files or knows HTTP: the server loads the private key from its data
//! directory, and `tenantctl verify` reads a document from a file.

pub mod archive;
pub mod audit_hash;
mod canonical;
mod verify;

use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest as _;

pub use canonical::{canonical_json, CanonicalError, MAX_EXACT_INTEGER};
pub use verify::{parse_public_key, verify, verify_document, Verified, VerifyError};

/// The one signature algorithm, as written in `signature.alg`.
pub const ALG: &str = "Ed25519";

/// base64url without padding, the encoding of keys and signatures.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The public half of a signing key, as `GET /v1/signing-key` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyInfo {
    /// Always [`ALG`].
    pub alg: String,
    /// Key id: the first 16 hex characters of SHA-256 of the public key bytes.
    pub kid: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
}

/// A signed JSON document: the payload and its signature (see the crate documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDocument {
    /// The document.
    pub payload: Value,
    /// Its signature.
    pub signature: Signature,
}

/// The `signature` member of a signed document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Always [`ALG`].
    pub alg: String,
    /// Id of the signing key.
    pub kid: String,
    /// The signing key's public half, base64url without padding.
    pub public_key: String,
    /// When the document was signed (RFC 3339, UTC).
    pub signed_at: String,
    /// The 64-byte Ed25519 signature over the signing input, base64url without padding.
    pub value: String,
}

impl SignedDocument {
    /// The envelope as a JSON value (what the API returns and `tenantctl` writes).
    pub fn to_value(&self) -> Value {
        let s = &self.signature;
        serde_json::json!({
            "payload": self.payload,
            "signature": {
                "alg": s.alg,
                "kid": s.kid,
                "public_key": s.public_key,
                "signed_at": s.signed_at,
                "value": s.value,
            }
        })
    }
}

/// The signed members of the `signature` block.
#[derive(Serialize)]
struct Protected<'a> {
    alg: &'a str,
    kid: &'a str,
    public_key: &'a str,
    signed_at: &'a str,
}

/// What the signature covers: the envelope without `signature.value`.
#[derive(Serialize)]
struct SigningInput<'a> {
    payload: &'a Value,
    signature: Protected<'a>,
}

/// The canonical bytes of the signing input. The payload's numbers are checked here, so a
/// payload that JCS would round is refused both when signing and when verifying.
fn signing_input(payload: &Value, protected: Protected<'_>) -> Result<Vec<u8>, CanonicalError> {
    canonical::check_numbers(payload, &mut "/payload".to_owned())?;
    canonical::to_canonical(&SigningInput {
        payload,
        signature: protected,
    })
}

/// The key id of a public key: the first 16 hex characters of SHA-256 of its 32 bytes.
pub fn key_id(public_key: &[u8; 32]) -> String {
    sha2::Sha256::digest(public_key)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An Ed25519 private key that signs documents. Its `Debug` shows only the key id; the
/// private half never leaves this type.
#[derive(Clone)]
pub struct Signer {
    key: Arc<ed25519_dalek::SigningKey>,
    info: PublicKeyInfo,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.info.kid)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl Signer {
    /// The key whose 32-byte secret seed (RFC 8032's private key) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = key.verifying_key().to_bytes();
        Signer {
            key: Arc::new(key),
            info: PublicKeyInfo {
                alg: ALG.to_owned(),
                kid: key_id(&public),
                public_key: B64.encode(public),
            },
        }
    }

    /// The public half, with its key id.
    pub fn public_key(&self) -> &PublicKeyInfo {
        &self.info
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.info.kid
    }

    /// Signs `payload` now.
    pub fn sign(&self, payload: &Value) -> Result<SignedDocument, CanonicalError> {
        self.sign_at(payload, Utc::now())
    }

    /// Signs `payload` with `signed_at` as the signing time.
    pub fn sign_at(
        &self,
        payload: &Value,
        signed_at: DateTime<Utc>,
    ) -> Result<SignedDocument, CanonicalError> {
        let signed_at = signed_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let input = signing_input(
            payload,
            Protected {
                alg: ALG,
                kid: &self.info.kid,
                public_key: &self.info.public_key,
                signed_at: &signed_at,
            },
        )?;
        let value = B64.encode(self.key.sign(&input).to_bytes());
        Ok(SignedDocument {
            payload: payload.clone(),
            signature: Signature {
                alg: ALG.to_owned(),
                kid: self.info.kid.clone(),
                public_key: self.info.public_key.clone(),
                signed_at,
                value,
            },
        })
    }
}

#[cfg(test)]
mod tests;
