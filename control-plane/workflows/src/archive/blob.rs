//! The Azure Blob Storage archive backend, through the official SDK (`azure_storage_blob` 1.x)
//! with the same credential and HTTP client setup as the Key Vault store
//! ([`secrets::keyvault::azure_transport`], [`secrets::keyvault::retry::azure_retry`]).
//!
//! Objects are block blobs under one container, named by the archive key (`tenants/<id>/…`).
//! Write once:
//!
//! * every upload carries `If-None-Match: *`, so the service itself refuses to replace a blob
//!   (409 `BlobAlreadyExists`); a blob under a locked time-based retention policy refuses it
//!   again (409 `BlobImmutableDueToPolicy`), whoever asks;
//! * after a refusal the blob is read and compared: the same bytes are a retried step's success,
//!   other bytes are [`ArchiveStoreError::Exists`].
//!
//! Large objects (an export part above 4 MiB) go up as blocks and one conditional block list,
//! as the SDK does by default; reads download in ranges pinned to the first answer's ETag.
//!
//! [`BlobArchive::check_access`] runs at start-up: the container must exist, the identity must be
//! able to read its properties, and (unless the operator turned the check off) the container
//! must carry an immutability policy or a legal hold, because the archive is where an audit log
//! lives after its database is gone.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RequestContent, StatusCode};
use azure_storage_blob::models::{
    BlobContainerClientGetPropertiesResultHeaders as _, BlockBlobClientUploadOptions,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions,
};
use secrets::keyvault::{azure_transport, HttpOptions, RetryOptions};
use secrets::AzureCredential;

use super::{check_key, ArchiveStore, ArchiveStoreError};

/// How to reach the archive container. `Debug` never prints a secret (credentials redact
/// themselves).
#[derive(Clone, Debug)]
pub struct BlobArchiveOptions {
    /// The container URL, `https://<account>.blob.core.windows.net/<container>`. Must be https.
    pub container_url: String,
    /// The identity to authenticate as (Microsoft Entra ID; no account keys, no SAS).
    pub credential: AzureCredential,
    /// Retries of throttled and failed calls.
    pub retry: RetryOptions,
    /// Extra trusted roots, address pin and timeouts (as for Key Vault).
    pub http: HttpOptions,
    /// Refuse a container without an immutability policy or legal hold at start-up.
    pub require_immutability: bool,
}

impl BlobArchiveOptions {
    /// Options with the defaults for everything but the container and the credential.
    pub fn new(container_url: impl Into<String>, credential: AzureCredential) -> Self {
        Self {
            container_url: container_url.into(),
            credential,
            retry: RetryOptions::default(),
            http: HttpOptions {
                ca_bundle: None,
                connect_to: None,
                connect_timeout: std::time::Duration::from_secs(10),
                request_timeout: std::time::Duration::from_secs(120),
            },
            require_immutability: true,
        }
    }
}

/// What [`BlobArchive::check_access`] found on the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerFacts {
    /// A time-based retention policy is set (`x-ms-has-immutability-policy`).
    pub immutability_policy: bool,
    /// A legal hold is set (`x-ms-has-legal-hold`).
    pub legal_hold: bool,
    /// Version-level immutability is enabled (`x-ms-immutable-storage-with-versioning-enabled`).
    pub version_level_worm: bool,
}

/// Block blobs in one Azure Blob Storage container. See the [module docs](self).
pub struct BlobArchive {
    /// The container URL, without a trailing `/`, query or fragment.
    container_url: url::Url,
    credential: Arc<dyn TokenCredential>,
    client_options: ClientOptions,
    container: BlobContainerClient,
    describe_credential: String,
    require_immutability: bool,
}

impl std::fmt::Debug for BlobArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobArchive")
            .field("container_url", &self.container_url.as_str())
            .field("credential", &self.describe_credential)
            .finish_non_exhaustive()
    }
}

impl BlobArchive {
    /// Builds the client. Nothing is sent yet; [`BlobArchive::check_access`] makes a first call.
    pub fn new(options: BlobArchiveOptions) -> Result<Self, ArchiveStoreError> {
        let raw = options.container_url.trim();
        let bad = |detail: String| ArchiveStoreError::Io {
            location: format!("archive container {raw}"),
            detail,
        };
        let mut url = url::Url::parse(raw).map_err(|e| bad(format!("not a URL: {e}")))?;
        if url.scheme() != "https" {
            return Err(bad(
                "must be https://<account>.blob.core.windows.net/<container>".to_owned(),
            ));
        }
        url.set_query(None);
        url.set_fragment(None);
        let path = url.path().trim_end_matches('/').to_owned();
        // One segment: the container (a container URL, not the account's or a blob's).
        if path.len() < 2 || path[1..].contains('/') {
            return Err(bad(
                "name exactly one container: https://<account>.blob.core.windows.net/<container>"
                    .to_owned(),
            ));
        }
        url.set_path(&path);
        let transport = azure_transport("archive container", &url, &options.http).map_err(&bad)?;
        let credential = options.credential.build().map_err(|e| bad(e.to_string()))?;
        let client_options = ClientOptions {
            retry: secrets::keyvault::retry::azure_retry(options.retry.clone()),
            transport: Some(transport),
            ..ClientOptions::default()
        };
        let container = BlobContainerClient::new(
            url.clone(),
            Some(credential.clone()),
            Some(BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..BlobContainerClientOptions::default()
            }),
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            container_url: url,
            credential,
            client_options,
            container,
            describe_credential: options.credential.describe(),
            require_immutability: options.require_immutability,
        })
    }

    /// Reads the container's properties: proves the container answers, the credential gets a
    /// token and the identity may read it; and, unless turned off, that a retention policy or
    /// legal hold keeps what is written there. For a clear error at start-up.
    pub async fn check_access(&self) -> Result<ContainerFacts, ArchiveStoreError> {
        let response = self
            .container
            .get_properties(None)
            .await
            .map_err(|e| self.fail("reading the container's properties", None, &e))?;
        let flag = |v: azure_core::Result<Option<bool>>| v.ok().flatten().unwrap_or(false);
        let facts = ContainerFacts {
            immutability_policy: flag(response.has_immutability_policy()),
            legal_hold: flag(response.has_legal_hold()),
            version_level_worm: flag(response.is_immutable_storage_with_versioning_enabled()),
        };
        if self.require_immutability && !facts.immutability_policy && !facts.legal_hold {
            return Err(ArchiveStoreError::Io {
                location: self.location(),
                detail: "the container has no immutability policy or legal hold, so an archive \
                         written there could be deleted; add a locked time-based retention \
                         policy (README, \"The audit archive on Azure Blob Storage\"), or set \
                         archive_require_immutability = false for a test deployment"
                    .to_owned(),
            });
        }
        Ok(facts)
    }

    /// The client of the blob under `key` (a checked key: its `/`s separate path segments, as
    /// Blob Storage's virtual directories).
    fn blob(&self, key: &str) -> Result<BlobClient, ArchiveStoreError> {
        check_key(key)?;
        let mut url = self.container_url.clone();
        url.path_segments_mut()
            .map_err(|()| ArchiveStoreError::Key(key.to_owned()))?
            .extend(key.split('/'));
        BlobClient::new(
            url,
            Some(self.credential.clone()),
            Some(BlobClientOptions {
                client_options: self.client_options.clone(),
                ..BlobClientOptions::default()
            }),
        )
        .map_err(|e| self.fail("addressing", Some(key), &e))
    }

    /// The error for a failed call: the status, the service's error code and what to do, never
    /// a token (the SDK's errors carry none).
    fn fail(&self, what: &str, key: Option<&str>, e: &azure_core::Error) -> ArchiveStoreError {
        let subject = key.map_or_else(String::new, |k| format!(" {k}"));
        let detail = match e.kind() {
            ErrorKind::HttpResponse {
                status, error_code, ..
            } => {
                let code = error_code.as_deref().unwrap_or("no error code");
                let hint = match (*status, error_code.as_deref()) {
                    (StatusCode::Unauthorized, _) => {
                        "; the credential's token was refused (check azure_credential and its tenant)"
                    }
                    (StatusCode::Forbidden, Some("AuthorizationPermissionMismatch"))
                    | (StatusCode::Forbidden, Some("AuthorizationFailure")) => {
                        "; grant the control plane's identity Storage Blob Data Contributor on the \
                         container (README, \"The audit archive on Azure Blob Storage\")"
                    }
                    (StatusCode::Forbidden, _) => {
                        "; the storage account refused the identity or its network (firewall, \
                         private endpoint)"
                    }
                    (StatusCode::NotFound, Some("ContainerNotFound")) => {
                        "; create the container (the control plane never creates or deletes it)"
                    }
                    _ => "",
                };
                format!("{what}{subject}: {} {code}{hint}", u16::from(*status),)
            }
            _ => format!("{what}{subject}: {}", first_line(&chain(e))),
        };
        let outage = match e.kind() {
            ErrorKind::HttpResponse { status, .. } => {
                status.is_server_error()
                    || matches!(
                        *status,
                        StatusCode::RequestTimeout | StatusCode::TooManyRequests
                    )
            }
            ErrorKind::Io | ErrorKind::Connection => true,
            _ => false,
        };
        if outage {
            ArchiveStoreError::Unavailable {
                location: self.location(),
                detail,
            }
        } else {
            ArchiveStoreError::Io {
                location: self.location(),
                detail,
            }
        }
    }
}

/// `e` and its sources, joined.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// The service's error code of `e`, when it is an HTTP answer with `status`.
fn code_of(e: &azure_core::Error, want: StatusCode) -> Option<Option<&str>> {
    match e.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } if *status == want => Some(error_code.as_deref()),
        _ => None,
    }
}

#[async_trait]
impl ArchiveStore for BlobArchive {
    fn backend(&self) -> &'static str {
        "azure_blob"
    }

    fn location(&self) -> String {
        format!("azure blob container {}", self.container_url)
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ArchiveStoreError> {
        let blob = self.blob(key)?;
        let options = BlockBlobClientUploadOptions {
            blob_content_type: Some(if key.ends_with(".json") {
                "application/json".to_owned()
            } else {
                "application/octet-stream".to_owned()
            }),
            ..BlockBlobClientUploadOptions::default()
        }
        .if_not_exists();
        let content = RequestContent::from(bytes.to_vec());
        match blob.upload(content, Some(options)).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                // Refused because a blob is there (the condition, or the retention policy).
                let taken = matches!(
                    code_of(&e, StatusCode::Conflict),
                    Some(Some("BlobAlreadyExists" | "BlobImmutableDueToPolicy"))
                ) || code_of(&e, StatusCode::PreconditionFailed).is_some();
                if !taken {
                    return Err(self.fail("writing", Some(key), &e));
                }
            }
        }
        match self.get(key).await? {
            Some(existing) if existing == bytes => Ok(()),
            _ => Err(ArchiveStoreError::Exists {
                key: key.to_owned(),
            }),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveStoreError> {
        let blob = self.blob(key)?;
        let response = match blob.download(None).await {
            Ok(response) => response,
            Err(e) => {
                return match code_of(&e, StatusCode::NotFound) {
                    Some(Some("BlobNotFound")) => Ok(None),
                    _ => Err(self.fail("reading", Some(key), &e)),
                }
            }
        };
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|e| self.fail("reading", Some(key), &e))?;
        Ok(Some(bytes.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn options(url: &str) -> BlobArchiveOptions {
        BlobArchiveOptions::new(
            url,
            AzureCredential::StaticTokenForTests {
                token: secrets::SecretValue::new("t0ken-never-printed".to_owned()),
            },
        )
    }

    #[test]
    fn the_url_must_name_one_container_over_https() {
        for bad in [
            "http://acct.blob.core.windows.net/archive",
            "https://acct.blob.core.windows.net/",
            "https://acct.blob.core.windows.net/archive/tenants",
            "not a url",
        ] {
            let e = BlobArchive::new(options(bad)).unwrap_err();
            assert!(matches!(e, ArchiveStoreError::Io { .. }), "{bad}: {e}");
        }
        let store =
            BlobArchive::new(options("https://acct.blob.core.windows.net/archive/?x=1")).unwrap();
        assert_eq!(
            store.location(),
            "azure blob container https://acct.blob.core.windows.net/archive"
        );
        let debug = format!("{store:?}");
        assert!(!debug.contains("t0ken"), "{debug}");
    }

    #[test]
    fn keys_become_path_segments_and_cannot_leave_the_container() {
        let store =
            BlobArchive::new(options("https://acct.blob.core.windows.net/archive")).unwrap();
        let blob = store.blob("tenants/a/audit-1.json").unwrap();
        assert_eq!(
            blob.url().as_str(),
            "https://acct.blob.core.windows.net/archive/tenants/a/audit-1.json"
        );
        for bad in ["../x", "a/../../b", "A", "a?b", "a#b", "a%2fb"] {
            assert!(
                matches!(store.blob(bad), Err(ArchiveStoreError::Key(_))),
                "{bad}"
            );
        }
    }
}
