//! Turning the SDK's errors into [`SecretError`]s.
//!
//! Key Vault answers every failure with `{"error": {"code", "message", "innererror": {"code"}}}`.
//! The codes this module relies on (see ARCHITECTURE.md for where each was checked):
//!
//! | answer | meaning | variant |
//! |---|---|---|
//! | 404 `SecretNotFound` | no live secret (absent or soft-deleted), or no such version | `NotFound` / `VersionNotFound` |
//! | 409 `Conflict`, inner `ObjectIsDeletedButRecoverable` | write to a soft-deleted name | `DeletedButRecoverable` |
//! | 409 `Conflict`, inner `ObjectIsBeingDeleted` / `ObjectIsBeingRecovered` | a delete or recover is still settling | waited out, then `Unavailable` |
//! | 403 `Forbidden`, inner `SecretDisabled` | read of a disabled version | `Disabled` |
//! | 403 `Forbidden` on purge, "purge protection is enabled" | purge protection | `PurgeProtected` (checked against the deleted secret's recovery level) |
//! | 403 `Forbidden`, inner `ForbiddenByRbac` / `ForbiddenByPolicy` / `AccessDenied` | role or access policy missing | `PermissionDenied` |
//! | 403 `Forbidden`, inner `ForbiddenByFirewall` / `ForbiddenByConnection` | network rules | `PermissionDenied` |
//! | 401 `Unauthorized` after a token was sent | token of the wrong tenant or audience | `PermissionDenied` |
//! | 408, 429, 5xx, connection and I/O errors | transient | retried by the pipeline, then `Unavailable` |
//!
//! Messages never include a secret value: Key Vault's own messages do not echo values, and we
//! only ever quote the first line of them.

use std::error::Error as _;

use azure_core::error::ErrorKind;
use serde::Deserialize;

use crate::SecretError;

/// A Key Vault operation, for messages that name the permission it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Set,
    Get,
    ListVersions,
    ListNames,
    UpdateProperties,
    Delete,
    GetDeleted,
    Purge,
    Recover,
}

impl Op {
    /// The access-policy permission (and the name used in messages: `secrets/<permission>`).
    pub(crate) fn permission(self) -> &'static str {
        match self {
            Op::Set | Op::UpdateProperties => "set",
            Op::Get | Op::GetDeleted => "get",
            Op::ListVersions | Op::ListNames => "list",
            Op::Delete => "delete",
            Op::Purge => "purge",
            Op::Recover => "recover",
        }
    }
}

/// A Key Vault error answer, reduced to what we act on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceError {
    pub status: u16,
    pub code: Option<String>,
    pub inner_code: Option<String>,
    /// The first line of the service's message.
    pub message: String,
}

impl ServiceError {
    pub(crate) fn inner_is(&self, code: &str) -> bool {
        self.inner_code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(code))
    }

    fn message_has(&self, needle: &str) -> bool {
        self.message
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
    }

    /// A 403 for reading a disabled version.
    pub(crate) fn is_disabled(&self) -> bool {
        // Not just "disabled": "Public network access is disabled" is a firewall refusal.
        self.status == 403
            && (self.inner_is("SecretDisabled") || self.message_has("on a disabled secret"))
    }

    /// A 409 for writing a soft-deleted name.
    pub(crate) fn is_deleted_but_recoverable(&self) -> bool {
        self.status == 409
            && (self.inner_is("ObjectIsDeletedButRecoverable")
                || self.message_has("deleted but recoverable"))
    }

    /// A 403 that says purge protection refused a purge.
    pub(crate) fn mentions_purge_protection(&self) -> bool {
        self.status == 403 && self.message_has("purge protection")
    }

    /// A 403 from the vault's network rules rather than its permissions.
    fn is_firewall(&self) -> bool {
        self.inner_is("ForbiddenByFirewall") || self.inner_is("ForbiddenByConnection")
    }

    /// `code/inner: message`, for the end of our messages.
    fn said(&self) -> String {
        let mut s = format!("{}", self.status);
        if let Some(code) = &self.code {
            s.push(' ');
            s.push_str(code);
        }
        if let Some(inner) = &self.inner_code {
            s.push('/');
            s.push_str(inner);
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&self.message);
        }
        s
    }
}

#[derive(Deserialize)]
struct Body {
    error: Option<Detail>,
}

#[derive(Deserialize)]
struct Detail {
    code: Option<String>,
    message: Option<String>,
    #[serde(alias = "innerError")]
    innererror: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    code: Option<String>,
}

/// What went wrong with one SDK call.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Key Vault answered with an error status.
    Service(ServiceError),
    /// The request never got an answer (connection, TLS, timeout), after retries.
    Transport(String),
    /// The credential could not get a token. `rejected` when Entra ID (or the IMDS endpoint)
    /// answered and refused, rather than being unreachable.
    Credential { rejected: bool, message: String },
    /// Anything else (bad answer, invalid URL).
    Other(String),
}

/// The error's message followed by its sources', without repeats, on one line.
fn chain(e: &azure_core::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    first_line(&parts.join(": "))
}

fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let line = line.trim();
    if line.chars().count() > 400 {
        let cut: String = line.chars().take(400).collect();
        format!("{cut}…")
    } else {
        line.to_owned()
    }
}

/// Whether any error in `e`'s source chain is an HTTP answer with a 4xx status.
fn rejected_by_service(e: &azure_core::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(az) = s.downcast_ref::<azure_core::Error>() {
            if az.http_status().is_some_and(|st| st.is_client_error()) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// Classifies an SDK error.
pub(crate) fn classify(e: &azure_core::Error) -> Failure {
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let parsed = raw_response
                .as_ref()
                .and_then(|raw| serde_json::from_slice::<Body>(raw.body()).ok())
                .and_then(|b| b.error);
            let (code, message, inner_code) = match parsed {
                Some(d) => (
                    d.code.or_else(|| error_code.clone()),
                    d.message.unwrap_or_default(),
                    d.innererror.and_then(|i| i.code),
                ),
                None => (error_code.clone(), String::new(), None),
            };
            Failure::Service(ServiceError {
                status: u16::from(*status),
                code,
                inner_code,
                message: first_line(&message),
            })
        }
        ErrorKind::Connection | ErrorKind::Io => Failure::Transport(chain(e)),
        ErrorKind::Credential => Failure::Credential {
            rejected: rejected_by_service(e),
            message: chain(e),
        },
        _ => Failure::Other(chain(e)),
    }
}

/// What the messages need to know about the store.
pub(crate) struct Context<'a> {
    pub vault_url: &'a str,
    pub credential: &'a str,
    pub max_attempts: u32,
}

/// The role and permissions we need, said once.
const WHAT_TO_GRANT: &str =
    "grant it the 'Key Vault Secrets Officer' role (RBAC) or the set, get, \
                             list, delete, recover, purge secret permissions (access policy)";

impl Context<'_> {
    /// A refusal of `op`: 401, or a 403 that is not about a disabled secret or purge protection.
    pub(crate) fn permission_denied(&self, op: Op, e: &ServiceError) -> SecretError {
        let url = self.vault_url;
        let cred = self.credential;
        let perm = op.permission();
        let detail = if e.status == 401 {
            format!(
                "Key Vault {url} rejected the token of the control plane's identity ({cred}) for \
                 secrets/{perm}: check that the identity belongs to the vault's tenant ({})",
                e.said()
            )
        } else if e.is_firewall() {
            format!(
                "Key Vault {url} refused secrets/{perm} by its network rules: allow the control \
                 plane's network (firewall, private endpoint) or its address ({})",
                e.said()
            )
        } else {
            format!(
                "Key Vault {url} refused secrets/{perm} for the control plane's identity \
                 ({cred}): {WHAT_TO_GRANT} ({})",
                e.said()
            )
        };
        SecretError::PermissionDenied { detail }
    }

    /// The generic mapping; operations handle their own special cases (404 of a version,
    /// purge protection, settling conflicts) before falling back to it.
    pub(crate) fn map(&self, op: Op, name: &str, failure: Failure) -> SecretError {
        let url = self.vault_url;
        let perm = op.permission();
        match failure {
            Failure::Service(e) => match e.status {
                404 => SecretError::NotFound {
                    name: name.to_owned(),
                },
                409 if e.is_deleted_but_recoverable() => SecretError::DeletedButRecoverable {
                    name: name.to_owned(),
                },
                403 if e.is_disabled() => SecretError::Disabled {
                    name: name.to_owned(),
                },
                401 | 403 => self.permission_denied(op, &e),
                408 | 429 | 500..=599 => SecretError::Unavailable {
                    detail: format!(
                        "Key Vault {url} answered secrets/{perm} with {} after {} attempts",
                        e.said(),
                        self.max_attempts
                    ),
                },
                _ => SecretError::Unavailable {
                    detail: format!("Key Vault {url} refused secrets/{perm}: {}", e.said()),
                },
            },
            Failure::Transport(msg) => SecretError::Unavailable {
                detail: format!(
                    "cannot reach Key Vault {url} for secrets/{perm} after {} attempts: {msg}",
                    self.max_attempts
                ),
            },
            Failure::Credential {
                rejected: true,
                message,
            } => SecretError::PermissionDenied {
                detail: format!(
                    "the {} credential could not get a token for Key Vault {url}: {message}",
                    self.credential
                ),
            },
            Failure::Credential {
                rejected: false,
                message,
            } => SecretError::Unavailable {
                detail: format!(
                    "the {} credential could not get a token for Key Vault {url}: {message}",
                    self.credential
                ),
            },
            Failure::Other(msg) => SecretError::Unavailable {
                detail: format!("Key Vault {url} secrets/{perm} failed: {msg}"),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use azure_core::http::headers::Headers;
    use azure_core::http::{RawResponse, StatusCode};

    fn http_error(status: u16, body: &str) -> azure_core::Error {
        let raw = RawResponse::from_bytes(
            StatusCode::from(status),
            Headers::new(),
            body.as_bytes().to_vec(),
        );
        azure_core::Error::with_message(
            ErrorKind::HttpResponse {
                status: StatusCode::from(status),
                error_code: None,
                raw_response: Some(Box::new(raw)),
            },
            "x",
        )
    }

    fn ctx() -> Context<'static> {
        Context {
            vault_url: "https://x.vault.azure.net/",
            credential: "managed_identity (system-assigned)",
            max_attempts: 4,
        }
    }

    fn service(e: &azure_core::Error) -> ServiceError {
        match classify(e) {
            Failure::Service(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn disabled_is_recognised() {
        let e = http_error(
            403,
            r#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#,
        );
        let s = service(&e);
        assert_eq!(s.inner_code.as_deref(), Some("SecretDisabled"));
        assert!(s.is_disabled());
        assert!(matches!(
            ctx().map(Op::Get, "n", classify(&e)),
            SecretError::Disabled { name } if name == "n"
        ));
    }

    #[test]
    fn deleted_but_recoverable_is_recognised() {
        let e = http_error(
            409,
            r#"{"error":{"code":"Conflict","message":"Secret n is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged.","innererror":{"code":"ObjectIsDeletedButRecoverable"}}}"#,
        );
        assert!(matches!(
            ctx().map(Op::Set, "n", classify(&e)),
            SecretError::DeletedButRecoverable { .. }
        ));
        let settling = http_error(
            409,
            r#"{"error":{"code":"Conflict","message":"Secret n is currently being deleted.","innererror":{"code":"ObjectIsBeingDeleted"}}}"#,
        );
        assert!(!service(&settling).is_deleted_but_recoverable());
    }

    #[test]
    fn rbac_refusal_names_vault_operation_and_role() {
        let e = http_error(
            403,
            "{\"error\":{\"code\":\"Forbidden\",\"message\":\"Caller is not authorized to perform action on resource.\\r\\nAction: 'Microsoft.KeyVault/vaults/secrets/setSecret/action'\",\"innererror\":{\"code\":\"ForbiddenByRbac\"}}}",
        );
        let msg = ctx().map(Op::Set, "n", classify(&e)).to_string();
        assert!(msg.contains("https://x.vault.azure.net/"), "{msg}");
        assert!(msg.contains("secrets/set"), "{msg}");
        assert!(msg.contains("Key Vault Secrets Officer"), "{msg}");
        assert!(msg.contains("ForbiddenByRbac"), "{msg}");
        // Only the first line of the service's message.
        assert!(!msg.contains("Microsoft.KeyVault/vaults"), "{msg}");
    }

    #[test]
    fn disabled_network_access_is_not_a_disabled_secret() {
        let e = http_error(
            403,
            r#"{"error":{"code":"Forbidden","message":"Public network access is disabled and request is not from a trusted service nor via an approved private link.","innererror":{"code":"ForbiddenByConnection"}}}"#,
        );
        let err = ctx().map(Op::Get, "n", classify(&e));
        assert!(
            matches!(err, SecretError::PermissionDenied { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("network rules"), "{err}");
    }

    #[test]
    fn firewall_and_token_refusals_say_so() {
        let fw = http_error(
            403,
            r#"{"error":{"code":"Forbidden","message":"Client address is not authorized and caller is not a trusted service.","innererror":{"code":"ForbiddenByFirewall"}}}"#,
        );
        let msg = ctx().map(Op::Get, "n", classify(&fw)).to_string();
        assert!(msg.contains("network rules"), "{msg}");
        let unauth = http_error(
            401,
            r#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#,
        );
        let err = ctx().map(Op::Get, "n", classify(&unauth));
        assert!(matches!(err, SecretError::PermissionDenied { .. }));
        assert!(err.to_string().contains("rejected the token"), "{err}");
    }

    #[test]
    fn throttling_after_retries_is_unavailable() {
        let e = http_error(
            429,
            r#"{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received."}}"#,
        );
        let err = ctx().map(Op::ListNames, "n", classify(&e));
        assert!(matches!(err, SecretError::Unavailable { .. }));
        assert!(err.to_string().contains("after 4 attempts"), "{err}");
    }

    #[test]
    fn unparsable_bodies_still_map_by_status() {
        let e = http_error(404, "<html>not json</html>");
        assert!(matches!(
            ctx().map(Op::Get, "n", classify(&e)),
            SecretError::NotFound { .. }
        ));
    }

    #[test]
    fn credential_errors_name_the_credential() {
        let e = azure_core::Error::with_message(ErrorKind::Credential, "no token file");
        let err = ctx().map(Op::Get, "n", classify(&e));
        assert!(matches!(err, SecretError::Unavailable { .. }));
        assert!(err.to_string().contains("managed_identity"), "{err}");
        let inner = http_error(401, r#"{"error":"invalid_client"}"#);
        let e = azure_core::Error::with_error(ErrorKind::Credential, inner, "refused");
        assert!(matches!(
            ctx().map(Op::Get, "n", classify(&e)),
            SecretError::PermissionDenied { .. }
        ));
    }
}
