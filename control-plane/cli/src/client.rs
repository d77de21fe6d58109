//! A small HTTP client for the control plane's JSON API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{Source, TokenSetting};
use crate::error::{http_failure, transport_failure, Failure};

/// Lifetime of tokens minted on the fly from the local key.
const AUTO_TOKEN_TTL_SECS: i64 = 600;
/// The role most API commands of this CLI need.
pub const OPERATOR_ROLE: &str = "operator";
/// The role of the auditor's commands (deletion certificates).
pub const AUDITOR_ROLE: &str = "auditor";

/// Where the bearer token came from (changes the hint on a 401 or 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token`, `TENANTCTL_TOKEN` or the config file's `token`.
    Given(Source),
    /// Printed by `token_command`.
    Command(Source),
    /// Minted from the key in this data directory.
    Minted(PathBuf),
}

/// The subject recorded for tokens this CLI mints: `$USER`, else `tenantctl`.
pub fn default_subject() -> String {
    std::env::var("USER")
        .ok()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "tenantctl".to_owned())
}

/// Hint when there is no local signing key (and no token was configured).
pub fn hint_no_key(role: &str) -> String {
    format!(
        "in OIDC mode set TENANTCTL_TOKEN, pass --token, or set token_command in the config file \
         (`tenantctl config show`); in local mode run `tenantctl token --role {role}` on the \
         control plane's machine, or pass --data-dir (TENANT_CP_DATA_DIR) pointing at its data \
         directory"
    )
}

/// Mints a token from `<data_dir>/jwt-hs256.key` (local mode only).
pub fn mint(data_dir: &Path, role: &str, subject: &str, ttl_secs: i64) -> Result<String, Failure> {
    let key = data_dir.join(server::auth::LOCAL_KEY_FILE);
    if !key.exists() {
        return Err(
            Failure::new(format!("no local signing key at {}", key.display())).hint(
                "`tenantctl token` works in local mode only, on the control plane's machine \
                 (start it once with `make run`, or pass --data-dir); in OIDC mode get a token \
                 from your identity provider and set TENANTCTL_TOKEN, --token or token_command",
            ),
        );
    }
    server::auth::mint_local_token(data_dir, role, subject, ttl_secs)
        .map_err(|e| Failure::new(format!("cannot mint a token: {e}")))
}

/// Picks the token: the given one, else `token_command`'s, else one minted from the local key,
/// else a failure.
pub fn resolve_token(
    setting: &TokenSetting,
    data_dir: &Path,
    role: &str,
) -> Result<(String, TokenSource), Failure> {
    match setting {
        TokenSetting::Value(token, source) => {
            Ok((token.expose().to_owned(), TokenSource::Given(*source)))
        }
        TokenSetting::Command(command, source) => {
            Ok((run_token_command(command)?, TokenSource::Command(*source)))
        }
        TokenSetting::Unset => {
            let key = data_dir.join(server::auth::LOCAL_KEY_FILE);
            if key.exists() {
                let token = mint(data_dir, role, &default_subject(), AUTO_TOKEN_TTL_SECS)?;
                return Ok((token, TokenSource::Minted(data_dir.to_path_buf())));
            }
            Err(Failure::new(format!(
                "no token configured and no local signing key at {}",
                key.display()
            ))
            .hint(hint_no_key(role)))
        }
    }
}

/// Runs `token_command` with `sh -c`; its stdout, trimmed, is the token. Its stderr and stdin are
/// the operator's (so `az` can say what is wrong or ask); the token is never printed.
pub fn run_token_command(command: &str) -> Result<String, Failure> {
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Failure::new(format!("cannot run token_command `{command}`: {e}")))?;
    let hint = "run the command yourself (for Entra ID: `az login` first); it must print only an \
                access token for the control plane on stdout";
    if !output.status.success() {
        return Err(Failure::new(format!(
            "token_command `{command}` failed ({})",
            output.status
        ))
        .hint(hint));
    }
    let token = String::from_utf8(output.stdout)
        .map_err(|_| {
            Failure::new(format!("token_command `{command}` printed invalid UTF-8")).hint(hint)
        })?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(Failure::new(format!("token_command `{command}` printed nothing")).hint(hint));
    }
    if token.split_whitespace().nth(1).is_some() {
        return Err(Failure::new(format!(
            "token_command `{command}` printed more than a token"
        ))
        .hint(hint));
    }
    Ok(token)
}

/// An authenticated client for one control-plane server.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    source: TokenSource,
    role: String,
}

impl Client {
    /// Builds a client for `server` (a base URL such as `http://127.0.0.1:8080`).
    pub fn new(server: &str, token: &str, source: TokenSource) -> Result<Self, Failure> {
        let base = server.trim().trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| Failure::new(format!("invalid --server URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Failure::new(format!(
                "invalid --server URL {base:?}: use http or https"
            )));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            Failure::new("the token holds characters not allowed in an HTTP header")
        })?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("tenantctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Failure::new(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            base,
            auth,
            source,
            role: OPERATOR_ROLE.to_owned(),
        })
    }

    /// Names the role the calls of this client need (for the hint of a 403; default operator).
    pub fn for_role(mut self, role: &str) -> Self {
        self.role = role.to_owned();
        self
    }

    /// `GET path`, returning the typed answer and the raw JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, serde_json::Value), Failure> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// `POST path` with a JSON body, returning the typed answer and the raw JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(T, serde_json::Value), Failure> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `PUT path` with a JSON body, returning the typed answer and the raw JSON.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(T, serde_json::Value), Failure> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `DELETE path`, returning the typed answer and the raw JSON.
    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, serde_json::Value), Failure> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// `GET path`, returning the body's bytes as sent (a document whose digest matters).
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, Failure> {
        self.send_raw(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, serde_json::Value), Failure> {
        let body = self.send_raw(request).await?;
        let raw: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            Failure::new(format!("the control plane answered with invalid JSON: {e}"))
        })?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| {
            Failure::new(format!("unexpected answer from the control plane: {e}"))
                .hint("tenantctl and the control plane may be different versions")
        })?;
        Ok((typed, raw))
    }

    async fn send_raw(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, Failure> {
        let response = request
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_failure(&self.base, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let request_id = response_header(&headers, "x-request-id");
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_failure(&self.base, &e))?;
        if !status.is_success() {
            let retry_after = response_header(&headers, RETRY_AFTER);
            let mut failure = http_failure(
                status.as_u16(),
                &String::from_utf8_lossy(&body),
                request_id.as_deref(),
                retry_after.as_deref(),
            );
            if status.as_u16() == 403 {
                failure = failure.hint(hint_forbidden(&self.source, &self.role));
            }
            if status.as_u16() == 401 {
                failure = failure.hint(hint_unauthenticated(&self.source));
            }
            return Err(failure);
        }
        Ok(body.to_vec())
    }
}

fn response_header(
    headers: &HeaderMap,
    name: impl reqwest::header::AsHeaderName,
) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// What to do about a 401, by where the token came from.
pub fn hint_unauthenticated(source: &TokenSource) -> String {
    match source {
        TokenSource::Given(from) => format!(
            "the token from {from} was refused (expired, or for another issuer or audience); in \
             OIDC mode set token_command in the config file so a fresh one is fetched each \
             time, or export a new TENANTCTL_TOKEN"
        ),
        TokenSource::Command(from) => format!(
            "the token printed by token_command ({from}) was refused; check that it asks for \
             the control plane's audience (e.g. `az account get-access-token --resource \
             api://tenant-control-plane`) and that you are logged in to the right tenant"
        ),
        TokenSource::Minted(dir) => format!(
            "the token was minted from the key in {}; if the server uses another data \
             directory pass --data-dir, and if it runs in OIDC mode set TENANTCTL_TOKEN, \
             --token or token_command in the config file",
            dir.display()
        ),
    }
}

/// What to do about a 403, by where the token came from.
pub fn hint_forbidden(source: &TokenSource, role: &str) -> String {
    match source {
        TokenSource::Minted(_) => format!(
            "your token lacks the role this needs ({role}); mint one with \
             `tenantctl token --role {role}`"
        ),
        _ => format!(
            "your token lacks the role this needs ({role}); ask your identity provider's \
             administrator to assign you the {role} app role, then get a new token"
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_command_output_is_trimmed_and_checked() {
        assert_eq!(run_token_command("printf ' tok.en \\n'").unwrap(), "tok.en");
        // The command is shown, what it printed is not.
        let err = run_token_command("x=s3cr; echo ${x}et-partial; exit 3").unwrap_err();
        assert!(err.message.contains("failed (exit status: 3)"), "{err}");
        assert!(!err.to_string().contains("s3cret-partial"), "{err}");
        assert!(err.hint.as_deref().unwrap().contains("az login"));
        let err = run_token_command("true").unwrap_err();
        assert!(err.message.ends_with("printed nothing"), "{err}");
        let err = run_token_command("x=two; echo $x words").unwrap_err();
        assert!(err.message.ends_with("printed more than a token"), "{err}");
        assert!(!err.to_string().contains("two words"), "{err}");
    }

    #[test]
    fn no_token_and_no_key_points_at_oidc_settings() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_token(&TokenSetting::Unset, dir.path(), "auditor").unwrap_err();
        assert!(err.message.contains("no local signing key at"), "{err}");
        let hint = err.hint.unwrap();
        assert!(
            hint.contains("TENANTCTL_TOKEN") && hint.contains("token_command"),
            "{hint}"
        );
        assert!(hint.contains("tenantctl token --role auditor"), "{hint}");
        let err = mint(dir.path(), "operator", "me", 60).unwrap_err();
        assert!(err.hint.unwrap().contains("OIDC mode"));
    }

    #[test]
    fn a_given_token_is_used_as_is_and_a_key_mints_one() {
        let dir = tempfile::tempdir().unwrap();
        let given = TokenSetting::Value("abc".parse().unwrap(), Source::Env("TENANTCTL_TOKEN"));
        let (token, source) = resolve_token(&given, dir.path(), "operator").unwrap();
        assert_eq!(token, "abc");
        assert_eq!(source, TokenSource::Given(Source::Env("TENANTCTL_TOKEN")));
        server::auth::LocalKey::load_or_create(dir.path()).unwrap();
        let (_, source) = resolve_token(&TokenSetting::Unset, dir.path(), "operator").unwrap();
        assert_eq!(source, TokenSource::Minted(dir.path().to_path_buf()));
    }

    #[test]
    fn auth_hints_follow_the_token_source() {
        let minted = TokenSource::Minted(PathBuf::from("/d"));
        assert!(hint_forbidden(&minted, "auditor").contains("tenantctl token --role auditor"));
        let oidc = TokenSource::Command(Source::File);
        assert!(hint_forbidden(&oidc, "auditor").contains("assign you the auditor app role"));
        assert!(hint_unauthenticated(&oidc).contains("audience"));
        assert!(hint_unauthenticated(&minted).contains("token_command"));
        assert!(
            hint_unauthenticated(&TokenSource::Given(Source::Flag("--token")))
                .contains("token from flag --token was refused")
        );
    }
}
