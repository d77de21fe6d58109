//! Layer: foundation. The control plane's document-signing key (Ed25519), kept under the data
//! directory.
//!
//! `<data_dir>/evidence-ed25519.key` holds the 32-byte Ed25519 secret seed as base64, mode 0600,
//! created on first start like the HS256 token key (see [`crate::keyfile`]). Every replica that
//! shares the data directory signs with the same key. The key signs deletion certificates and
//! evidence bundles; the format and its verification live in the `evidence` crate, so `tenantctl`
//! verifies documents without this server. The private key is never logged, printed by `Debug`,
//! or sent anywhere; `GET /v1/signing-key` publishes the public half.
//!
//! Rotation is absent for now: a new key means deleting the file and restarting, after which
//! documents signed earlier still verify against the public key they carry but no longer against
//! `/v1/signing-key` (keep the old public key to check them).

use std::path::{Path, PathBuf};

pub use evidence::{PublicKeyInfo, SignedDocument, Signer};

use crate::keyfile::{self, KeyFileError};

/// File name of the signing key under the data directory.
pub const SIGNING_KEY_FILE: &str = "evidence-ed25519.key";

/// Where the signing key of `data_dir` lives.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SIGNING_KEY_FILE)
}

/// Reads the signing key under `data_dir`, creating it (mode 0600) if it does not exist.
pub fn load_or_create(data_dir: &Path) -> Result<Signer, KeyFileError> {
    let path = key_path(data_dir);
    let bytes = keyfile::load_or_create(&path, 32)?;
    let seed: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| KeyFileError {
        path: path.display().to_string(),
        detail: format!(
            "holds {} bytes; an Ed25519 seed is exactly 32 bytes",
            b.len()
        ),
    })?;
    let signer = Signer::from_seed(&seed);
    tracing::info!(kid = %signer.kid(), path = %path.display(), "document signing key loaded");
    Ok(signer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(again.public_key(), first.public_key());
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path()).unwrap().kid(), first.kid());
        // Signed with one, verified against the published key of the reloaded one.
        let doc = first.sign(&serde_json::json!({"x": "y"})).unwrap();
        assert!(evidence::verify(&doc.to_value(), Some(&again.public_key().public_key)).is_ok());
    }

    #[test]
    fn the_private_key_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let signer = load_or_create(dir.path()).unwrap();
        let file = std::fs::read_to_string(key_path(dir.path())).unwrap();
        let shown = format!("{signer:?}");
        assert!(!shown.contains(file.trim()), "{shown}");
        let public = serde_json::to_string(signer.public_key()).unwrap();
        assert!(!public.contains(file.trim()));
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        use base64::Engine as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            key_path(dir.path()),
            base64::engine::general_purpose::STANDARD.encode([7u8; 64]),
        )
        .unwrap();
        let e = load_or_create(dir.path()).unwrap_err();
        assert!(e.detail.contains("exactly 32 bytes"), "{e}");
    }
}
