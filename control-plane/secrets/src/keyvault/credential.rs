//! The identity the control plane presents to Key Vault.
//!
//! The Rust Azure SDK has no `DefaultAzureCredential` (no implicit chain that tries one source
//! after another), so the operator names exactly one kind in the configuration. That is also
//! what we want: a control plane that silently falls back from its managed identity to whatever
//! `az login` session happens to be on the machine is a control plane whose effective
//! permissions nobody can predict.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::time::{Duration, OffsetDateTime};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientSecretCredential,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::{SecretError, SecretValue};

/// Which user-assigned managed identity to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserAssignedIdentity {
    /// By its client (application) id.
    ClientId(String),
    /// By its object (principal) id.
    ObjectId(String),
    /// By its Azure resource id (`/subscriptions/.../userAssignedIdentities/NAME`).
    ResourceId(String),
}

/// The credential the Key Vault backend authenticates with. Exactly one is configured.
///
/// `Debug` prints the kind and the (non-secret) ids, never a client secret or token.
#[derive(Clone, Debug)]
pub enum AzureCredential {
    /// The managed identity of the VM, App Service, Container App or AKS node the control plane
    /// runs on: the system-assigned one when `user_assigned` is `None`.
    ManagedIdentity {
        /// A user-assigned identity to use instead of the system-assigned one.
        user_assigned: Option<UserAssignedIdentity>,
    },
    /// AKS workload identity (a federated Kubernetes service-account token). Unset fields come
    /// from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`, which the
    /// workload identity webhook injects into the pod.
    WorkloadIdentity {
        /// Entra tenant id.
        tenant_id: Option<String>,
        /// Client id of the federated identity.
        client_id: Option<String>,
        /// Path of the projected service-account token.
        token_file: Option<PathBuf>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// Entra tenant id.
        tenant_id: String,
        /// The application (client) id.
        client_id: String,
        /// The client secret. Redacted in `Debug`.
        secret: SecretValue,
    },
    /// The signed-in Azure CLI (`az login`): for an operator's workstation.
    AzureCli {
        /// Ask the CLI for a token of this tenant rather than its default one.
        tenant_id: Option<String>,
    },
    /// A fixed bearer token, for tests against the Key Vault test double only. The server accepts
    /// it only under the deliberately awkward name `static_token_for_tests`.
    StaticTokenForTests {
        /// The token. Redacted in `Debug`.
        token: SecretValue,
    },
}

impl AzureCredential {
    /// The configuration name of this kind (`managed_identity`, `workload_identity`,
    /// `client_secret`, `azure_cli`, `static_token_for_tests`), used in error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            AzureCredential::ManagedIdentity { .. } => "managed_identity",
            AzureCredential::WorkloadIdentity { .. } => "workload_identity",
            AzureCredential::ClientSecret { .. } => "client_secret",
            AzureCredential::AzureCli { .. } => "azure_cli",
            AzureCredential::StaticTokenForTests { .. } => "static_token_for_tests",
        }
    }

    /// A short description for messages: the kind plus the identity it names, if any.
    pub fn describe(&self) -> String {
        match self {
            AzureCredential::ManagedIdentity {
                user_assigned: None,
            } => "managed_identity (system-assigned)".to_owned(),
            AzureCredential::ManagedIdentity {
                user_assigned: Some(id),
            } => match id {
                UserAssignedIdentity::ClientId(v) => format!("managed_identity (client id {v})"),
                UserAssignedIdentity::ObjectId(v) => format!("managed_identity (object id {v})"),
                UserAssignedIdentity::ResourceId(v) => {
                    format!("managed_identity (resource id {v})")
                }
            },
            AzureCredential::WorkloadIdentity {
                client_id: Some(id),
                ..
            } => format!("workload_identity (client id {id})"),
            AzureCredential::ClientSecret { client_id, .. } => {
                format!("client_secret (client id {client_id})")
            }
            other => other.kind().to_owned(),
        }
    }

    /// Builds the SDK credential. Fails with [`SecretError::Unavailable`] naming the kind when the
    /// configuration is incomplete (for example workload identity outside a pod that has it).
    pub fn build(&self) -> Result<Arc<dyn TokenCredential>, SecretError> {
        let unavailable = |e: azure_core::Error| SecretError::Unavailable {
            detail: format!("cannot set up the {} credential: {e}", self.kind()),
        };
        Ok(match self {
            AzureCredential::ManagedIdentity { user_assigned } => {
                let user_assigned_id = user_assigned.as_ref().map(|id| match id {
                    UserAssignedIdentity::ClientId(v) => UserAssignedId::ClientId(v.clone()),
                    UserAssignedIdentity::ObjectId(v) => UserAssignedId::ObjectId(v.clone()),
                    UserAssignedIdentity::ResourceId(v) => UserAssignedId::ResourceId(v.clone()),
                });
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id,
                    ..Default::default()
                }))
                .map_err(unavailable)?
            }
            AzureCredential::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                tenant_id: tenant_id.clone(),
                client_id: client_id.clone(),
                token_file_path: token_file.clone(),
                ..Default::default()
            }))
            .map_err(unavailable)?,
            AzureCredential::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                azure_core::credentials::Secret::new(secret.expose().to_owned()),
                None,
            )
            .map_err(unavailable)?,
            AzureCredential::AzureCli { tenant_id } => {
                AzureCliCredential::new(Some(AzureCliCredentialOptions {
                    tenant_id: tenant_id.clone(),
                    ..Default::default()
                }))
                .map_err(unavailable)?
            }
            AzureCredential::StaticTokenForTests { token } => {
                Arc::new(StaticTokenCredential::new(token.clone()))
            }
        })
    }
}

/// Access tokens from one configured Azure credential, for other Azure resources than Key Vault
/// (SQL Server's Entra ID authentication asks for `https://database.windows.net/.default`).
/// The managed identity, workload identity and client secret credentials cache tokens and
/// refresh them before they expire; the Azure CLI credential runs `az` on every call.
#[derive(Clone)]
pub struct AzureTokenProvider {
    credential: Arc<dyn TokenCredential>,
    describe: String,
}

impl fmt::Debug for AzureTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureTokenProvider")
            .field("credential", &self.describe)
            .finish()
    }
}

impl AzureTokenProvider {
    /// Builds the SDK credential for `credential`.
    pub fn new(credential: &AzureCredential) -> Result<Self, SecretError> {
        Ok(AzureTokenProvider {
            credential: credential.build()?,
            describe: credential.describe(),
        })
    }

    /// A current access token for `scope`. A refusal by Entra ID is `PermissionDenied`, anything
    /// else `Unavailable`; both name the credential, never the token.
    pub async fn token(&self, scope: &str) -> Result<SecretValue, SecretError> {
        match self.credential.get_token(&[scope], None).await {
            Ok(t) => Ok(SecretValue::new(t.token.secret())),
            Err(e) => {
                let detail = format!(
                    "{} could not get an access token for {scope}: {e}",
                    self.describe
                );
                Err(
                    if matches!(e.kind(), azure_core::error::ErrorKind::Credential) {
                        SecretError::PermissionDenied { detail }
                    } else {
                        SecretError::Unavailable { detail }
                    },
                )
            }
        }
    }
}

/// A [`TokenCredential`] that always returns the same token, valid for an hour from each call.
/// For tests against the Key Vault test double; it never talks to Entra ID.
#[derive(Clone)]
pub struct StaticTokenCredential {
    token: SecretValue,
}

impl StaticTokenCredential {
    /// Wraps `token`.
    pub fn new(token: SecretValue) -> Self {
        Self { token }
    }
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokenCredential")
            .field("token", &self.token)
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            self.token.expose().to_owned(),
            OffsetDateTime::now_utc() + Duration::hours(1),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_describe_hide_secrets() {
        let c = AzureCredential::ClientSecret {
            tenant_id: "t".into(),
            client_id: "app-1".into(),
            secret: SecretValue::new("hunter2"),
        };
        for text in [format!("{c:?}"), format!("{c:#?}"), c.describe()] {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert_eq!(c.describe(), "client_secret (client id app-1)");
        let t = AzureCredential::StaticTokenForTests {
            token: SecretValue::new("tok-123"),
        };
        assert!(!format!("{t:?}").contains("tok-123"));
        let s = StaticTokenCredential::new(SecretValue::new("tok-123"));
        assert!(!format!("{s:?}").contains("tok-123"));
    }

    #[test]
    fn kinds_and_descriptions() {
        let mi = AzureCredential::ManagedIdentity {
            user_assigned: Some(UserAssignedIdentity::ClientId("c1".into())),
        };
        assert_eq!(mi.kind(), "managed_identity");
        assert_eq!(mi.describe(), "managed_identity (client id c1)");
        assert_eq!(
            AzureCredential::AzureCli { tenant_id: None }.kind(),
            "azure_cli"
        );
    }

    #[tokio::test]
    async fn static_token_is_returned() {
        let s = StaticTokenCredential::new(SecretValue::new("tok-123"));
        let t = s
            .get_token(&["https://vault.azure.net/.default"], None)
            .await
            .unwrap();
        assert_eq!(t.token.secret(), "tok-123");
        assert!(t.expires_on > OffsetDateTime::now_utc());
    }

    #[test]
    fn bad_configuration_names_the_kind() {
        let c = AzureCredential::WorkloadIdentity {
            tenant_id: Some("not a tenant!".into()),
            client_id: Some("c".into()),
            token_file: Some(PathBuf::from("/nonexistent/token")),
        };
        let e = c.build().unwrap_err();
        assert!(matches!(e, SecretError::Unavailable { .. }), "{e:?}");
        assert!(e.to_string().contains("workload_identity"), "{e}");
        let c = AzureCredential::ClientSecret {
            tenant_id: "00000000-0000-0000-0000-000000000000".into(),
            client_id: "c".into(),
            secret: SecretValue::new(""),
        };
        let e = c.build().unwrap_err();
        assert!(e.to_string().contains("client_secret"), "{e}");
    }
}
