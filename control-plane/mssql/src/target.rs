//! Where and how to connect: host, database, authentication and TLS, parsed from a
//! `sqlserver://` URL and turned into a tiberius [`Config`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use percent_encoding::percent_decode_str;
use secrets::SecretValue;
use tiberius::{AuthMethod, Config, EncryptionLevel};

use crate::MssqlError;

/// The SQL Server port used when a URL names none.
pub const DEFAULT_PORT: u16 = 1433;

/// Hands out Azure AD (Entra ID) access tokens for `https://database.windows.net/`.
///
/// Asked once per new connection, so a provider that refreshes its token (managed identity,
/// workload identity) keeps new connections working; open connections keep their session.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A current access token.
    async fn token(&self) -> Result<SecretValue, MssqlError>;
}

/// A token read from a file on every new connection (a sidecar or `az account
/// get-access-token --resource https://database.windows.net/` keeps it fresh).
#[derive(Debug, Clone)]
pub struct TokenFile(pub PathBuf);

#[async_trait]
impl TokenSource for TokenFile {
    async fn token(&self) -> Result<SecretValue, MssqlError> {
        let raw = tokio::fs::read_to_string(&self.0).await.map_err(|e| {
            MssqlError::Config(format!(
                "cannot read the access token file {}: {e}",
                self.0.display()
            ))
        })?;
        let token = raw.trim();
        if token.is_empty() {
            return Err(MssqlError::Config(format!(
                "the access token file {} is empty",
                self.0.display()
            )));
        }
        Ok(SecretValue::new(token))
    }
}

/// The scope of an Entra ID access token for Azure SQL and SQL Server with Entra authentication.
pub const SQL_TOKEN_SCOPE: &str = "https://database.windows.net/.default";

/// Tokens from an Azure credential (managed identity, workload identity, Azure CLI), fetched
/// per new connection. Managed and workload identity cache and refresh their tokens; the Azure
/// CLI credential runs `az` for every new connection (fine on a workstation, slow in a pool).
#[derive(Debug, Clone)]
pub struct AzureToken(pub secrets::keyvault::AzureTokenProvider);

#[async_trait]
impl TokenSource for AzureToken {
    async fn token(&self) -> Result<SecretValue, MssqlError> {
        self.0
            .token(SQL_TOKEN_SCOPE)
            .await
            .map_err(|e| MssqlError::Connect {
                target: "Entra ID".into(),
                number: None,
                detail: e.to_string(),
            })
    }
}

/// How a connection authenticates.
#[derive(Clone)]
pub enum Auth {
    /// SQL authentication: a server login, or a contained database user when the target names
    /// its database.
    SqlLogin {
        /// Login or user name.
        user: String,
        /// Its password (a secret).
        password: SecretValue,
    },
    /// Azure AD access token (managed identity in Azure).
    AadToken(Arc<dyn TokenSource>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::SqlLogin { user, .. } => f
                .debug_struct("SqlLogin")
                .field("user", user)
                .finish_non_exhaustive(),
            Auth::AadToken(source) => f.debug_tuple("AadToken").field(source).finish(),
        }
    }
}

/// TLS settings. The default is the secure one: encryption required and the server certificate
/// validated against the system roots (plus `ca_bundle`, when given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Require TLS for the whole session (`false` leaves only the login packet encrypted, for
    /// servers without a certificate; never in production).
    pub encrypt: bool,
    /// Accept any server certificate. Only for test servers with a self-signed certificate.
    pub trust_server_certificate: bool,
    /// Extra CA certificates (PEM bundle or one DER file) to trust.
    pub ca_bundle: Option<PathBuf>,
    /// The name the certificate must carry, when it differs from the host connected to.
    pub hostname_in_certificate: Option<String>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            encrypt: true,
            trust_server_certificate: false,
            ca_bundle: None,
            hostname_in_certificate: None,
        }
    }
}

/// One SQL Server endpoint with credentials: the admin target on `master`, a tenant database,
/// or a tenant principal's login.
#[derive(Clone, Debug)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Initial database (`None`: the login's default, usually `master`).
    pub database: Option<String>,
    /// Authentication.
    pub auth: Auth,
    /// TLS.
    pub tls: Tls,
    /// Reported to the server as the application name (`program_name` in
    /// `sys.dm_exec_sessions`).
    pub application_name: String,
    /// Bound on TCP connect plus login.
    pub connect_timeout: Duration,
}

fn bool_param(key: &str, value: &str) -> Result<bool, MssqlError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(MssqlError::Config(format!(
            "{key}={value} is not a boolean (use true or false)"
        ))),
    }
}

fn decode(s: &str, what: &str) -> Result<String, MssqlError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| MssqlError::Config(format!("the URL's {what} is not UTF-8")))
}

impl Target {
    /// A target with SQL authentication, secure TLS defaults and no database.
    pub fn sql_login(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: SecretValue,
    ) -> Self {
        Target {
            host: host.into(),
            port,
            database: None,
            auth: Auth::SqlLogin {
                user: user.into(),
                password,
            },
            tls: Tls::default(),
            application_name: "tenant-control-plane".into(),
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// Parses `sqlserver://user:password@host:port/database?option=value&...`.
    ///
    /// User and password are percent-encoded. Options: `encrypt` (default `true`),
    /// `trust_server_certificate` (default `false`), `ca_bundle` (a file path),
    /// `hostname_in_certificate`, `connect_timeout` (seconds), `application_name`, and
    /// `auth=aad_token` with `token_file=/path` for an Azure AD access token instead of a
    /// password, or Entra ID tokens from an Azure credential: `auth=managed_identity` (with
    /// `client_id=` for a user-assigned identity), `auth=workload_identity` (AKS; from the
    /// `AZURE_*` variables the webhook sets), `auth=azure_cli`. Errors never repeat the password.
    pub fn parse_url(url: &str) -> Result<Self, MssqlError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| MssqlError::Config(format!("not a sqlserver:// URL: {e}")))?;
        if !matches!(parsed.scheme(), "sqlserver" | "mssql") {
            return Err(MssqlError::Config(format!(
                "URL scheme {} is not sqlserver://",
                parsed.scheme()
            )));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| MssqlError::Config("the URL names no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port().unwrap_or(DEFAULT_PORT);
        let database = match parsed.path().trim_start_matches('/') {
            "" => None,
            db => Some(decode(db, "database")?),
        };
        let mut tls = Tls::default();
        let mut aad = false;
        let mut azure: Option<&'static str> = None;
        let mut client_id = None;
        let mut token_file = None;
        let mut application_name = "tenant-control-plane".to_owned();
        let mut connect_timeout = Duration::from_secs(15);
        for (key, value) in parsed.query_pairs() {
            match key.as_ref() {
                "encrypt" => tls.encrypt = bool_param(&key, &value)?,
                "trust_server_certificate" | "TrustServerCertificate" => {
                    tls.trust_server_certificate = bool_param(&key, &value)?
                }
                "ca_bundle" => tls.ca_bundle = Some(PathBuf::from(value.as_ref())),
                "hostname_in_certificate" => tls.hostname_in_certificate = Some(value.into()),
                "application_name" => application_name = value.into_owned(),
                "connect_timeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        MssqlError::Config(format!("connect_timeout={value} is not seconds"))
                    })?;
                    connect_timeout = Duration::from_secs(secs.max(1));
                }
                "auth" => match value.as_ref() {
                    "aad_token" => aad = true,
                    "sql" => aad = false,
                    "managed_identity" => azure = Some("managed_identity"),
                    "workload_identity" => azure = Some("workload_identity"),
                    "azure_cli" => azure = Some("azure_cli"),
                    other => {
                        return Err(MssqlError::Config(format!(
                            "auth={other} is unknown (use sql, aad_token, managed_identity, \
                             workload_identity or azure_cli)"
                        )))
                    }
                },
                "client_id" => client_id = Some(value.into_owned()),
                "token_file" => token_file = Some(PathBuf::from(value.as_ref())),
                other => {
                    return Err(MssqlError::Config(format!(
                        "unknown option {other} in the sqlserver:// URL"
                    )))
                }
            }
        }
        if tls.trust_server_certificate && tls.ca_bundle.is_some() {
            return Err(MssqlError::Config(
                "trust_server_certificate and ca_bundle exclude each other".into(),
            ));
        }
        let auth = if let Some(kind) = azure {
            let credential = match kind {
                "managed_identity" => secrets::AzureCredential::ManagedIdentity {
                    user_assigned: client_id.map(secrets::UserAssignedIdentity::ClientId),
                },
                "workload_identity" => secrets::AzureCredential::WorkloadIdentity {
                    tenant_id: None,
                    client_id,
                    token_file: None,
                },
                _ => secrets::AzureCredential::AzureCli { tenant_id: None },
            };
            let provider = secrets::keyvault::AzureTokenProvider::new(&credential)
                .map_err(|e| MssqlError::Config(format!("auth={kind}: {e}")))?;
            Auth::AadToken(Arc::new(AzureToken(provider)))
        } else if aad {
            let path = token_file.ok_or_else(|| {
                MssqlError::Config("auth=aad_token needs token_file=/path/to/token".into())
            })?;
            Auth::AadToken(Arc::new(TokenFile(path)))
        } else {
            if parsed.username().is_empty() {
                return Err(MssqlError::Config(
                    "the URL names no user (sqlserver://user:password@host)".into(),
                ));
            }
            Auth::SqlLogin {
                user: decode(parsed.username(), "user")?,
                password: SecretValue::new(decode(parsed.password().unwrap_or(""), "password")?),
            }
        };
        Ok(Target {
            host,
            port,
            database,
            auth,
            tls,
            application_name,
            connect_timeout,
        })
    }

    /// The same server and credentials on another database.
    pub fn with_database(&self, database: impl Into<String>) -> Self {
        Target {
            database: Some(database.into()),
            ..self.clone()
        }
    }

    /// `host:port`.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The SQL user, if SQL authentication is used.
    pub fn user(&self) -> Option<&str> {
        match &self.auth {
            Auth::SqlLogin { user, .. } => Some(user),
            Auth::AadToken(_) => None,
        }
    }

    /// A description for errors and logs: server, database and user, never a secret.
    pub fn describe(&self) -> String {
        let who = self.user().unwrap_or("an Azure AD token");
        match &self.database {
            Some(db) => format!("{} database {db} as {who}", self.server()),
            None => format!("{} as {who}", self.server()),
        }
    }

    /// The tiberius configuration (fetches a fresh token for Azure AD authentication).
    pub async fn config(&self) -> Result<Config, MssqlError> {
        let mut config = Config::new();
        config.host(&self.host);
        config.port(self.port);
        if let Some(db) = &self.database {
            config.database(db);
        }
        config.application_name(&self.application_name);
        config.encryption(if self.tls.encrypt {
            EncryptionLevel::Required
        } else {
            EncryptionLevel::Off
        });
        if self.tls.trust_server_certificate {
            config.trust_cert();
        } else if let Some(ca) = &self.tls.ca_bundle {
            config.trust_cert_ca(ca.display());
        }
        if let Some(name) = &self.tls.hostname_in_certificate {
            config.hostname_in_certificate(name);
        }
        config.handshake_timeout(Some(self.connect_timeout));
        match &self.auth {
            Auth::SqlLogin { user, password } => {
                config.authentication(AuthMethod::sql_server(user, password.expose()))
            }
            Auth::AadToken(source) => {
                let token = source.token().await?;
                config.authentication(AuthMethod::aad_token(token.expose()))
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_a_full_url_with_secure_defaults() {
        let t = Target::parse_url("sqlserver://sa:p%40ss%3Bw%3Drd@db.example.com/master").unwrap();
        assert_eq!(t.host, "db.example.com");
        assert_eq!(t.port, 1433);
        assert_eq!(t.database.as_deref(), Some("master"));
        assert_eq!(t.user(), Some("sa"));
        match &t.auth {
            Auth::SqlLogin { password, .. } => assert_eq!(password.expose(), "p@ss;w=rd"),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.tls, Tls::default());
        assert!(t.tls.encrypt && !t.tls.trust_server_certificate);
    }

    #[test]
    fn parses_tls_options_and_port() {
        let t = Target::parse_url(
            "sqlserver://sa:pw@localhost:14330?trust_server_certificate=true&encrypt=true&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(t.port, 14330);
        assert!(t.tls.trust_server_certificate);
        assert_eq!(t.connect_timeout, Duration::from_secs(5));
        assert_eq!(t.database, None);
    }

    #[test]
    fn azure_credentials_from_the_url() {
        let t =
            Target::parse_url("sqlserver://h.database.windows.net?auth=managed_identity").unwrap();
        assert!(matches!(t.auth, Auth::AadToken(_)));
        let t = Target::parse_url("sqlserver://h?auth=managed_identity&client_id=abc").unwrap();
        assert!(
            format!("{:?}", t.auth).contains("client id abc"),
            "{:?}",
            t.auth
        );
        let t = Target::parse_url("sqlserver://h?auth=azure_cli").unwrap();
        assert!(
            format!("{:?}", t.auth).contains("azure_cli"),
            "{:?}",
            t.auth
        );
        let e = Target::parse_url("sqlserver://h?auth=kerberos").unwrap_err();
        assert!(e.to_string().contains("managed_identity"), "{e}");
    }

    #[test]
    fn aad_token_needs_a_token_file() {
        let e = Target::parse_url("sqlserver://h?auth=aad_token").unwrap_err();
        assert!(e.to_string().contains("token_file"), "{e}");
        let t = Target::parse_url("sqlserver://h?auth=aad_token&token_file=/run/token").unwrap();
        assert!(matches!(t.auth, Auth::AadToken(_)));
        assert_eq!(t.user(), None);
    }

    #[test]
    fn rejects_bad_urls_without_echoing_the_password() {
        for (url, needle) in [
            ("postgresql://u:secretpw@h/db", "scheme"),
            ("sqlserver://u:secretpw@h?encrypt=maybe", "boolean"),
            ("sqlserver://u:secretpw@h?colour=blue", "unknown option"),
            ("sqlserver://h", "no user"),
            (
                "sqlserver://u:secretpw@h?trust_server_certificate=true&ca_bundle=/x",
                "exclude",
            ),
        ] {
            let e = Target::parse_url(url).unwrap_err().to_string();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("secretpw"), "{e}");
        }
    }

    #[test]
    fn debug_and_describe_hide_the_password() {
        let t = Target::sql_login("h", 1433, "app_a", SecretValue::new("hunter2-secret"))
            .with_database("tenant_acme");
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_eq!(t.describe(), "h:1433 database tenant_acme as app_a");
    }

    #[tokio::test]
    async fn builds_a_tiberius_config() {
        let t =
            Target::parse_url("sqlserver://sa:pw@h:1500/db?trust_server_certificate=true").unwrap();
        let c = t.config().await.unwrap();
        assert_eq!(c.get_addr(), "h:1500");
    }
}
