//! Conversions between the SDK's models and ours: ids, times, recovery levels.

use std::collections::HashMap;

use azure_security_keyvault_secrets::models::{DeletionRecoveryLevel, SecretAttributes};
use chrono::{DateTime, Utc};

use crate::{SecretError, SecretName, SecretProperties};

/// The secret name in a Key Vault id (`https://v.vault.azure.net/secrets/NAME[/VERSION]` or
/// `.../deletedsecrets/NAME`).
pub(crate) fn name_from_id(id: &str) -> Option<SecretName> {
    let url = url::Url::parse(id).ok()?;
    let mut segments = url.path_segments()?.filter(|s| !s.is_empty());
    let collection = segments.next()?;
    if collection != "secrets" && collection != "deletedsecrets" {
        return None;
    }
    SecretName::new(segments.next()?).ok()
}

/// A version id we are willing to put in a URL path: Key Vault's are 32 hex characters.
pub(crate) fn valid_version(version: &str) -> bool {
    !version.is_empty() && version.len() <= 64 && version.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An SDK time as ours.
pub(crate) fn to_chrono(t: time::OffsetDateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond()).unwrap_or_default()
}

/// Our time as the SDK's, truncated to whole seconds (Key Vault's resolution).
pub(crate) fn to_time(t: DateTime<Utc>) -> Result<time::OffsetDateTime, SecretError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| SecretError::Unavailable {
        detail: format!("expiry date {t} cannot be sent to Key Vault: {e}"),
    })
}

/// Whether a deleted secret's recovery level allows a purge (no purge protection).
pub(crate) fn purgeable(level: &DeletionRecoveryLevel) -> bool {
    match level {
        DeletionRecoveryLevel::Purgeable
        | DeletionRecoveryLevel::RecoverablePurgeable
        | DeletionRecoveryLevel::CustomizedRecoverablePurgeable => true,
        DeletionRecoveryLevel::UnknownValue(s) => s.contains("Purgeable"),
        _ => false,
    }
}

/// Our properties from the parts every Key Vault secret answer has.
pub(crate) fn properties(
    vault_url: &str,
    fallback_name: &SecretName,
    id: Option<&str>,
    attributes: Option<&SecretAttributes>,
    tags: Option<&HashMap<String, String>>,
    content_type: Option<&String>,
) -> Result<SecretProperties, SecretError> {
    let corrupt = |what: &str| SecretError::Corrupt {
        detail: format!("Key Vault {vault_url} answered for secret {fallback_name} without {what}"),
    };
    let id = id.ok_or_else(|| corrupt("an id"))?;
    let url = url::Url::parse(id).map_err(|_| corrupt("a valid id"))?;
    let mut segments = url
        .path_segments()
        .ok_or_else(|| corrupt("a valid id"))?
        .filter(|s| !s.is_empty());
    let (Some("secrets"), Some(name), Some(version)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return Err(corrupt("a versioned id"));
    };
    let attributes = attributes.ok_or_else(|| corrupt("attributes"))?;
    let created_at = to_chrono(
        attributes
            .created
            .ok_or_else(|| corrupt("a creation date"))?,
    );
    Ok(SecretProperties {
        name: SecretName::new(name).unwrap_or_else(|_| fallback_name.clone()),
        version: version.to_owned(),
        created_at,
        updated_at: attributes.updated.map(to_chrono).unwrap_or(created_at),
        enabled: attributes.enabled.unwrap_or(true),
        expires_at: attributes.expires.map(to_chrono),
        tags: tags
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        content_type: content_type.cloned(),
    })
}

pub(crate) fn bundle_properties(
    vault_url: &str,
    name: &SecretName,
    s: &azure_security_keyvault_secrets::models::Secret,
) -> Result<SecretProperties, SecretError> {
    properties(
        vault_url,
        name,
        s.id.as_deref(),
        s.attributes.as_ref(),
        s.tags.as_ref(),
        s.content_type.as_ref(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_versions() {
        assert_eq!(
            name_from_id("https://v.vault.azure.net/secrets/Db-Pass/abc"),
            Some(SecretName::new("Db-Pass").unwrap())
        );
        assert_eq!(
            name_from_id("https://v.vault.azure.net/deletedsecrets/x"),
            Some(SecretName::new("x").unwrap())
        );
        assert_eq!(name_from_id("https://v.vault.azure.net/keys/x"), None);
        assert!(valid_version("0123456789abcdef0123456789abcdef"));
        for bad in ["", "../x", "a/b", "a b", "x?y"] {
            assert!(!valid_version(bad), "{bad}");
        }
    }

    #[test]
    fn recovery_levels() {
        assert!(purgeable(&DeletionRecoveryLevel::RecoverablePurgeable));
        assert!(purgeable(
            &DeletionRecoveryLevel::CustomizedRecoverablePurgeable
        ));
        assert!(!purgeable(&DeletionRecoveryLevel::Recoverable));
        assert!(!purgeable(&DeletionRecoveryLevel::CustomizedRecoverable));
        assert!(!purgeable(
            &DeletionRecoveryLevel::RecoverableProtectedSubscription
        ));
    }

    #[test]
    fn times_round_trip_at_second_resolution() {
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        assert_eq!(to_chrono(to_time(t).unwrap()), t);
    }
}
