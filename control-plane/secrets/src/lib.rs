//! Secret storage for the control plane.
//!
//! The control plane keeps credentials it must hand to tenants and to its own
//! components (database passwords, signing keys, API tokens) in a secret store
//! rather than in its catalog database, so that a database dump never contains
//! them and access to them can be audited and revoked separately.
//!
//! This crate defines:
//!
//! * [`SecretStore`], the backend-neutral trait. Its semantics follow Azure Key
//!   Vault: every write creates a new immutable *version*, deletes are *soft*
//!   (the secret can be recovered until it is purged), and a store may have
//!   *purge protection*, in which case soft-deleted secrets cannot be purged
//!   before their scheduled purge date.
//! * [`SecretValue`], a wrapper that never prints its contents in `Debug` or
//!   `Display` output, so secret values cannot leak into logs or error messages.
//! * [`SecretName`], a validated name following Key Vault's naming rule.
//! * [`LocalSecretStore`], an encrypted on-disk backend for development and
//!   single-machine installs (see [`local`]).
//! * [`KeyVaultStore`], the Azure Key Vault backend (see [`keyvault`]).
//! * [`ensure_absent`], an idempotent "delete and purge" helper.
//! * [`arm`], the Resource Manager read of an Azure SQL elastic pool's database limit, with
//!   the same credential and transport as the Key Vault backend.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub mod arm;
pub mod keyvault;
pub mod local;

pub use keyvault::{
    AzureCredential, KeyVaultOptions, KeyVaultStore, RetryOptions, UserAssignedIdentity,
};
pub use local::{LocalSecretStore, LocalStoreOptions};

/// A secret value that redacts itself. `Debug` and `Display` print `[redacted]`.
///
/// The only way to read the value is [`SecretValue::expose`], which makes every
/// place that handles plaintext easy to find. It deliberately does not
/// implement `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a plaintext value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// Returns the plaintext. Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A validated secret name: 1 to 127 characters of `[0-9a-zA-Z-]` (Key Vault's rule).
///
/// Serialized as a plain string; deserialization validates it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

impl SecretName {
    /// Longest name Key Vault accepts.
    const MAX_LEN: usize = 127;

    /// Validates `s` and wraps it; [`SecretError::InvalidName`] if it breaks the rule.
    pub fn new(s: &str) -> Result<Self, SecretError> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(SecretError::InvalidName { name: s.to_owned() })
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SecretName {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for SecretName {
    type Error = SecretError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<SecretName> for String {
    fn from(name: SecretName) -> Self {
        name.0
    }
}

/// Options for [`SecretStore::set`].
#[derive(Clone, Debug, Default)]
pub struct SetOptions {
    /// Free-form tags stored with the new version.
    pub tags: BTreeMap<String, String>,
    /// Expiry date of the new version. Informational, as in Key Vault: it is
    /// not enforced on reads.
    pub expires_at: Option<DateTime<Utc>>,
    /// Content type of the value (for example `text/plain`).
    pub content_type: Option<String>,
}

/// Metadata of one secret version. Never contains the value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretProperties {
    /// The secret's name.
    pub name: SecretName,
    /// The version identifier: 32 random lowercase hex characters.
    pub version: String,
    /// When this version was written.
    pub created_at: DateTime<Utc>,
    /// When this version's properties last changed.
    pub updated_at: DateTime<Utc>,
    /// Whether this version can be read.
    pub enabled: bool,
    /// Expiry date (informational).
    pub expires_at: Option<DateTime<Utc>>,
    /// Free-form tags.
    pub tags: BTreeMap<String, String>,
    /// Content type of the value.
    pub content_type: Option<String>,
}

/// A secret version with its value. `Debug` output redacts the value.
#[derive(Clone, Debug)]
pub struct Secret {
    /// The version's metadata.
    pub properties: SecretProperties,
    /// The version's value.
    pub value: SecretValue,
}

/// A soft-deleted secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeletedSecret {
    /// The secret's name.
    pub name: SecretName,
    /// When it was soft-deleted.
    pub deleted_at: DateTime<Utc>,
    /// When its retention period ends (after which it may be purged even under
    /// purge protection).
    pub scheduled_purge_at: DateTime<Utc>,
}

/// Changes for [`SecretStore::update_properties`]; `None` fields are left alone.
#[derive(Clone, Debug, Default)]
pub struct PropertiesUpdate {
    /// Enable or disable the version.
    pub enabled: Option<bool>,
    /// Set (`Some(Some(date))`) or clear (`Some(None)`) the expiry date.
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// Replace all tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// Errors from a secret store. No variant ever carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The name breaks the naming rule.
    #[error("invalid secret name {name:?}: use 1 to 127 characters of 0-9, a-z, A-Z and '-'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// No live secret has this name.
    #[error("secret {name} not found")]
    NotFound {
        /// The secret's name.
        name: String,
    },
    /// The secret exists but has no such version.
    #[error("secret {name} version {version} not found")]
    VersionNotFound {
        /// The secret's name.
        name: String,
        /// The requested version.
        version: String,
    },
    /// The name is soft-deleted, so it cannot be written.
    #[error("secret {name} is deleted but recoverable; recover or purge it first")]
    DeletedButRecoverable {
        /// The secret's name.
        name: String,
    },
    /// The requested version is disabled.
    #[error("secret {name} is disabled")]
    Disabled {
        /// The secret's name.
        name: String,
    },
    /// The store has purge protection and the retention period has not ended.
    #[error("secret {name} cannot be purged before {scheduled_purge_at}: purge protection is on")]
    PurgeProtected {
        /// The secret's name.
        name: String,
        /// When the secret can be (or will automatically be) purged.
        scheduled_purge_at: DateTime<Utc>,
    },
    /// The caller may not perform this operation.
    #[error("secret store permission denied: {detail}")]
    PermissionDenied {
        /// What was denied.
        detail: String,
    },
    /// The store cannot be reached or is misconfigured.
    #[error("secret store unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
    },
    /// Stored data is malformed or fails authentication.
    #[error("secret store data is corrupt or was encrypted under another key: {detail}")]
    Corrupt {
        /// What is wrong (never contains plaintext).
        detail: String,
    },
    /// A file system operation failed.
    #[error("secret store i/o error at {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A secret store backend. Semantics follow Azure Key Vault.
#[async_trait::async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Short backend name for logs and certificates: "local" or "azure-key-vault".
    fn backend(&self) -> &'static str;

    /// Where the store lives (directory path or vault URL), for certificates and errors.
    fn location(&self) -> String;

    /// Writes a new version (becomes current). Fails with DeletedButRecoverable if the
    /// name is soft-deleted (as Key Vault does).
    async fn set(
        &self,
        name: &SecretName,
        value: SecretValue,
        options: SetOptions,
    ) -> Result<SecretProperties, SecretError>;

    /// Current version when `version` is None. NotFound if absent or soft-deleted;
    /// Disabled if that version is disabled.
    async fn get(&self, name: &SecretName, version: Option<&str>) -> Result<Secret, SecretError>;

    /// Every version's properties, oldest first. NotFound if absent or soft-deleted.
    async fn list_versions(&self, name: &SecretName) -> Result<Vec<SecretProperties>, SecretError>;

    /// Names of all live (not deleted) secrets, sorted.
    async fn list_names(&self) -> Result<Vec<SecretName>, SecretError>;

    /// Changes one version's properties. NotFound if absent or soft-deleted;
    /// VersionNotFound if there is no such version.
    async fn update_properties(
        &self,
        name: &SecretName,
        version: &str,
        update: PropertiesUpdate,
    ) -> Result<SecretProperties, SecretError>;

    /// Soft delete (all versions). NotFound if absent or already deleted.
    async fn delete(&self, name: &SecretName) -> Result<DeletedSecret, SecretError>;

    /// NotFound unless soft-deleted.
    async fn get_deleted(&self, name: &SecretName) -> Result<DeletedSecret, SecretError>;

    /// Permanently removes a soft-deleted secret. NotFound unless soft-deleted;
    /// PurgeProtected if the store has purge protection.
    async fn purge(&self, name: &SecretName) -> Result<(), SecretError>;

    /// Undoes a soft delete and returns the current version's properties.
    /// NotFound unless soft-deleted.
    async fn recover(&self, name: &SecretName) -> Result<SecretProperties, SecretError>;
}

/// Outcome of [`ensure_absent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Removal {
    /// The secret existed (live or soft-deleted) and has been purged.
    Purged,
    /// There was nothing to remove.
    AlreadyAbsent,
    /// The secret is soft-deleted but purge protection keeps it until the given date.
    PurgeProtected {
        /// When the secret can be (or will automatically be) purged.
        scheduled_purge_at: DateTime<Utc>,
    },
}

/// Idempotent "ensure absent": soft-delete if live (tolerating NotFound), then purge if
/// soft-deleted (tolerating NotFound). Safe to call any number of times, including on a
/// name that never existed.
pub async fn ensure_absent(
    store: &dyn SecretStore,
    name: &SecretName,
) -> Result<Removal, SecretError> {
    let deleted_now = match store.delete(name).await {
        Ok(_) => true,
        Err(SecretError::NotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    match store.purge(name).await {
        Ok(()) => Ok(Removal::Purged),
        // Someone else purged it between our delete and purge: it is gone either way.
        Err(SecretError::NotFound { .. }) if deleted_now => Ok(Removal::Purged),
        Err(SecretError::NotFound { .. }) => Ok(Removal::AlreadyAbsent),
        Err(SecretError::PurgeProtected {
            scheduled_purge_at, ..
        }) => Ok(Removal::PurgeProtected { scheduled_purge_at }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for n in ["a", "A-b-9", "db-password", &"x".repeat(127)] {
            assert_eq!(SecretName::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn invalid_names_rejected() {
        let long = "x".repeat(128);
        for n in ["", long.as_str(), "a_b", "a/b", "a.b", "../x", "a b", "é"] {
            assert!(
                matches!(SecretName::new(n), Err(SecretError::InvalidName { .. })),
                "{n:?} accepted"
            );
            assert!(n.parse::<SecretName>().is_err());
        }
    }

    #[test]
    fn name_serde_validates() {
        let n: SecretName = serde_json::from_str("\"db-pass\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"db-pass\"");
        assert!(serde_json::from_str::<SecretName>("\"a_b\"").is_err());
        assert_eq!(n.to_string(), "db-pass");
    }

    #[test]
    fn value_redacts() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v}"), "[redacted]");
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(v.expose(), "hunter2");
    }

    #[test]
    fn removal_serde() {
        assert_eq!(
            serde_json::to_string(&Removal::AlreadyAbsent).unwrap(),
            r#"{"outcome":"already_absent"}"#
        );
    }
}
