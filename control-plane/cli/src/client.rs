//! A small HTTP client for the control plane's JSON API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{http_failure, transport_failure, Failure, HINT_UNAUTHENTICATED};

/// Lifetime of tokens minted on the fly from the local key.
const AUTO_TOKEN_TTL_SECS: i64 = 600;
/// The role most API commands of this CLI need.
pub const OPERATOR_ROLE: &str = "operator";
/// The role of the auditor's commands (deletion certificates).
pub const AUDITOR_ROLE: &str = "auditor";

/// Where the bearer token came from (changes the hint on a 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `TENANTCTL_TOKEN`.
    Given,
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

/// Mints a token from `<data_dir>/jwt-hs256.key`.
pub fn mint(data_dir: &Path, role: &str, subject: &str, ttl_secs: i64) -> Result<String, Failure> {
    let key = data_dir.join(server::auth::LOCAL_KEY_FILE);
    if !key.exists() {
        return Err(
            Failure::new(format!("no local signing key at {}", key.display())).hint(
                "local mode: start the control plane once with `make run`, or pass --data-dir \
             (TENANT_CP_DATA_DIR) pointing at its data directory; OIDC mode \
             (auth_mode = \"oidc\") has no local key: pass an access token from your identity \
             provider with --token or TENANTCTL_TOKEN",
            ),
        );
    }
    server::auth::mint_local_token(data_dir, role, subject, ttl_secs)
        .map_err(|e| Failure::new(format!("cannot mint a token: {e}")))
}

/// Picks the token: the given one, else one minted from the local key, else a failure.
pub fn resolve_token(
    given: Option<&str>,
    data_dir: &Path,
    role: &str,
) -> Result<(String, TokenSource), Failure> {
    if let Some(token) = given.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok((token.to_owned(), TokenSource::Given));
    }
    if data_dir.join(server::auth::LOCAL_KEY_FILE).exists() {
        let token = mint(data_dir, role, &default_subject(), AUTO_TOKEN_TTL_SECS)?;
        return Ok((token, TokenSource::Minted(data_dir.to_path_buf())));
    }
    Err(Failure::new("no token").hint(format!(
        "pass --token (or set TENANTCTL_TOKEN), or run `tenantctl token --role {role}` \
         on the control plane's machine (no key found at {})",
        data_dir.join(server::auth::LOCAL_KEY_FILE).display()
    )))
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

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, serde_json::Value), Failure> {
        let response = request
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| transport_failure(&self.base, &e))?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .text()
            .await
            .map_err(|e| transport_failure(&self.base, &e))?;
        if !status.is_success() {
            let mut failure = http_failure(status.as_u16(), &body, request_id.as_deref());
            if status.as_u16() == 403 {
                failure = failure.hint(format!(
                    "your token lacks the role this needs ({0}); mint one with \
                     `tenantctl token --role {0}`",
                    self.role
                ));
            }
            if status.as_u16() == 401 {
                failure = failure.hint(match &self.source {
                    TokenSource::Given => HINT_UNAUTHENTICATED.to_owned(),
                    TokenSource::Minted(dir) => format!(
                        "the token was minted from the key in {}; if the server uses another \
                         data directory, pass --data-dir or --token",
                        dir.display()
                    ),
                });
            }
            return Err(failure);
        }
        let raw: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
            Failure::new(format!("the control plane answered with invalid JSON: {e}"))
        })?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| {
            Failure::new(format!("unexpected answer from the control plane: {e}"))
                .hint("tenantctl and the control plane may be different versions")
        })?;
        Ok((typed, raw))
    }
}
