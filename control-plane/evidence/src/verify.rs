//! Offline verification of signed documents: no network, no private key, no server code.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::{key_id, signing_input, Protected, SignedDocument, ALG, B64};

/// Why a signed document was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not a signed document: missing or extra members, bad encodings, a key id that does not
    /// belong to the key, a payload without a canonical form.
    #[error("malformed signed document: {0}")]
    Malformed(String),
    /// `signature.alg` names an algorithm we do not verify.
    #[error("unknown signature algorithm {0:?} (only Ed25519 is supported)")]
    UnknownAlgorithm(String),
    /// The given trusted key is not an Ed25519 public key.
    #[error("the trusted public key is not usable: {0}")]
    InvalidTrustedKey(String),
    /// The document was signed with another key than the trusted one.
    #[error("signed with key {found_kid}, not with the trusted key {trusted_kid}")]
    KeyMismatch {
        /// Key id of the trusted key.
        trusted_kid: String,
        /// Key id the document was signed with.
        found_kid: String,
    },
    /// The signature does not match the document: it was changed after signing.
    #[error("signature does not match the document (key {kid}): it was changed after signing")]
    BadSignature {
        /// Key id the document claims.
        kid: String,
    },
}

/// A document whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The signed payload.
    pub payload: Value,
    /// Id of the key that signed it.
    pub kid: String,
    /// That key, base64url.
    pub public_key: String,
    /// When it was signed (a signed member).
    pub signed_at: DateTime<Utc>,
    /// Whether the key was compared with a trusted key; `false` proves integrity only.
    pub key_trusted: bool,
}

/// Parses an Ed25519 public key: 32 bytes in base64url (padding and the standard alphabet are
/// tolerated, so a key pasted from elsewhere works).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let normalized: String = text
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    let bytes = B64
        .decode(normalized.as_bytes())
        .map_err(|_| "not base64url".to_owned())?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{} bytes instead of 32", b.len()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| "not a point of the Ed25519 curve".to_owned())?;
    Ok(bytes)
}

/// Checks a signed document and returns its payload.
///
/// With `trusted_public_key` (base64url, as `GET /v1/signing-key` gives it) the document must be
/// signed with that key; without it, only with the key it names itself (integrity, not origin).
pub fn verify(envelope: &Value, trusted_public_key: Option<&str>) -> Result<Value, VerifyError> {
    verify_document(envelope, trusted_public_key).map(|v| v.payload)
}

/// Like [`verify`], returning the key id, signing time and whether the key was trusted.
pub fn verify_document(
    envelope: &Value,
    trusted_public_key: Option<&str>,
) -> Result<Verified, VerifyError> {
    let malformed = |m: String| VerifyError::Malformed(m);
    if !envelope.is_object() {
        return Err(malformed(
            "expected a JSON object with members payload and signature".into(),
        ));
    }
    let doc: SignedDocument =
        serde_json::from_value(envelope.clone()).map_err(|e| malformed(e.to_string()))?;
    let sig = &doc.signature;
    if sig.alg != ALG {
        return Err(VerifyError::UnknownAlgorithm(sig.alg.clone()));
    }
    let public: [u8; 32] = B64
        .decode(sig.public_key.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("signature.public_key is not 32 bytes of base64url".into()))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&public)
        .map_err(|_| malformed("signature.public_key is not an Ed25519 public key".into()))?;
    let kid = key_id(&public);
    if sig.kid != kid {
        return Err(malformed(format!(
            "signature.kid {:?} does not belong to signature.public_key (whose kid is {kid})",
            sig.kid
        )));
    }
    if let Some(trusted) = trusted_public_key {
        let trusted = parse_public_key(trusted).map_err(VerifyError::InvalidTrustedKey)?;
        if trusted != public {
            return Err(VerifyError::KeyMismatch {
                trusted_kid: key_id(&trusted),
                found_kid: kid,
            });
        }
    }
    let signed_at = DateTime::parse_from_rfc3339(&sig.signed_at)
        .map_err(|_| {
            malformed(format!(
                "signature.signed_at {:?} is not RFC 3339",
                sig.signed_at
            ))
        })?
        .with_timezone(&Utc);
    let value: [u8; 64] = B64
        .decode(sig.value.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| malformed("signature.value is not 64 bytes of base64url".into()))?;
    let input = signing_input(
        &doc.payload,
        Protected {
            alg: &sig.alg,
            kid: &sig.kid,
            public_key: &sig.public_key,
            signed_at: &sig.signed_at,
        },
    )
    .map_err(|e| malformed(e.to_string()))?;
    key.verify_strict(&input, &ed25519_dalek::Signature::from_bytes(&value))
        .map_err(|_| VerifyError::BadSignature { kid: kid.clone() })?;
    Ok(Verified {
        payload: doc.payload,
        kid,
        public_key: sig.public_key.clone(),
        signed_at,
        key_trusted: trusted_public_key.is_some(),
    })
}
