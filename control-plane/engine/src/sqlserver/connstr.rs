//! ADO.NET (`SqlConnection`) connection strings for tenant principals.
//!
//! Tenants' applications get a ready-made connection string, so the engine must write one that
//! `SqlConnectionStringBuilder` reads back exactly, whatever the password holds, and read its own
//! strings back to recover the password at rotation time ([`parse`]).
//!
//! Values are escaped the way `DbConnectionStringBuilder` itself writes them: a value made only of
//! characters other than `"`, `'`, `=`, `;`, whitespace and control characters is written as is;
//! otherwise it is wrapped in single quotes when it contains `"` but no `'`, else in double quotes
//! with every inner `"` doubled. Keys are fixed (`Server`, `Database`, `User ID`, `Password`,
//! `Encrypt`, `TrustServerCertificate`).

use std::fmt;

use thiserror::Error;

use crate::EngineError;

/// The SQL Server port used when a `Server` value names none.
pub const DEFAULT_PORT: u16 = 1433;

/// A SQL Server connection string with SQL authentication, built field by field.
///
/// `Debug` never shows the password; [`to_secret_string`](Self::to_secret_string) does.
#[derive(Clone, PartialEq, Eq)]
pub struct AdoConnectionString {
    /// Host name or address (written as `Server=tcp:host,port`).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Initial catalog (the tenant database; required for contained users).
    pub database: String,
    /// Login or contained user name.
    pub user: String,
    /// The password (a secret).
    pub password: String,
    /// Whether to require TLS (`Encrypt=True`).
    pub encrypt: bool,
    /// Whether to skip validating the server certificate. Only for test servers.
    pub trust_server_certificate: bool,
}

impl AdoConnectionString {
    /// A connection string to `host,port` with empty database, user and password,
    /// `Encrypt=True` and `TrustServerCertificate=False`.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        AdoConnectionString {
            host: host.into(),
            port,
            database: String::new(),
            user: String::new(),
            password: String::new(),
            encrypt: true,
            trust_server_certificate: false,
        }
    }

    /// Sets the server (`Server=tcp:host,port`).
    pub fn server(mut self, host: impl Into<String>, port: u16) -> Self {
        self.host = host.into();
        self.port = port;
        self
    }

    /// Sets the database (`Database=`).
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    /// Sets the user (`User ID=`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the password (`Password=`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = password.into();
        self
    }

    /// Sets `Encrypt=`.
    pub fn encrypt(mut self, encrypt: bool) -> Self {
        self.encrypt = encrypt;
        self
    }

    /// Sets `TrustServerCertificate=`.
    pub fn trust_server_certificate(mut self, trust: bool) -> Self {
        self.trust_server_certificate = trust;
        self
    }

    /// The connection string, password included, e.g.
    /// `Server=tcp:db.example,1433;Database=tenant_acme;User ID=app_a;Password=...;Encrypt=True;TrustServerCertificate=False`.
    pub fn to_secret_string(&self) -> String {
        let server = format!("tcp:{},{}", self.host, self.port);
        let pairs = [
            ("Server", server.as_str()),
            ("Database", &self.database),
            ("User ID", &self.user),
            ("Password", &self.password),
            ("Encrypt", bool_value(self.encrypt)),
            (
                "TrustServerCertificate",
                bool_value(self.trust_server_certificate),
            ),
        ];
        let mut out = String::new();
        for (key, value) in pairs {
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(&escape_value(value));
        }
        out
    }
}

impl fmt::Debug for AdoConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdoConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &"[redacted]")
            .field("encrypt", &self.encrypt)
            .field("trust_server_certificate", &self.trust_server_certificate)
            .finish()
    }
}

fn bool_value(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// Escapes one value the way `DbConnectionStringBuilder` writes it (see the module docs).
fn escape_value(value: &str) -> String {
    let plain = !value
        .chars()
        .any(|c| matches!(c, '"' | '\'' | '=' | ';') || c.is_whitespace() || c.is_control());
    if plain {
        value.to_owned()
    } else if value.contains('"') && !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("\"{}\"", value.replace('"', "\"\""))
    }
}

/// Why a connection string could not be read. Messages never contain a value, so they cannot
/// leak a password.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConnStrError {
    /// The text is not `key=value;...` (at the given byte offset).
    #[error("syntax error at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A key this engine never writes.
    #[error("unsupported keyword {0:?}")]
    UnknownKey(String),
    /// A key given twice (also through a synonym).
    #[error("keyword {0:?} given more than once")]
    DuplicateKey(String),
    /// A required key is absent.
    #[error("missing keyword {0:?}")]
    Missing(&'static str),
    /// A value that is not valid for its key (never used for the password).
    #[error("invalid value for {0:?}")]
    InvalidValue(&'static str),
}

impl From<ConnStrError> for EngineError {
    fn from(e: ConnStrError) -> Self {
        EngineError::ConnectionString(e.to_string())
    }
}

/// Reads a connection string written by [`AdoConnectionString::to_secret_string`], or by hand
/// with the same keywords or their usual synonyms (`Data Source`, `Address`, `Addr`,
/// `Network Address`; `Initial Catalog`; `UID`, `User`; `PWD`; `Trust Server Certificate`).
///
/// Keywords are case-insensitive; values follow the ADO.NET quoting rules (`"..."` with `""`,
/// `'...'` with `''`, or bare and trimmed). `Server`, `Database`, `User ID` and `Password` are
/// required; `Encrypt` defaults to true and `TrustServerCertificate` to false, as in current
/// SqlClient. Unknown or repeated keywords are refused rather than ignored.
pub fn parse(s: &str) -> Result<AdoConnectionString, ConnStrError> {
    let mut server = None;
    let mut database = None;
    let mut user = None;
    let mut password = None;
    let mut encrypt = None;
    let mut trust = None;

    for (key, value) in pairs(s)? {
        let (slot, name) = match key.to_ascii_lowercase().as_str() {
            "server" | "data source" | "address" | "addr" | "network address" => {
                (&mut server, "Server")
            }
            "database" | "initial catalog" => (&mut database, "Database"),
            "user id" | "uid" | "user" => (&mut user, "User ID"),
            "password" | "pwd" => (&mut password, "Password"),
            "encrypt" => (&mut encrypt, "Encrypt"),
            "trustservercertificate" | "trust server certificate" => {
                (&mut trust, "TrustServerCertificate")
            }
            _ => return Err(ConnStrError::UnknownKey(key)),
        };
        if slot.replace(value).is_some() {
            return Err(ConnStrError::DuplicateKey(name.to_owned()));
        }
    }

    let (host, port) = parse_server(&server.ok_or(ConnStrError::Missing("Server"))?)?;
    Ok(AdoConnectionString {
        host,
        port,
        database: database.ok_or(ConnStrError::Missing("Database"))?,
        user: user.ok_or(ConnStrError::Missing("User ID"))?,
        password: password.ok_or(ConnStrError::Missing("Password"))?,
        encrypt: encrypt
            .map(|v| parse_bool(&v, "Encrypt"))
            .transpose()?
            .unwrap_or(true),
        trust_server_certificate: trust
            .map(|v| parse_bool(&v, "TrustServerCertificate"))
            .transpose()?
            .unwrap_or(false),
    })
}

/// `[tcp:]host[,port]`.
fn parse_server(value: &str) -> Result<(String, u16), ConnStrError> {
    let invalid = ConnStrError::InvalidValue("Server");
    let rest = match value.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("tcp:") => &value[4..],
        _ => value,
    };
    let (host, port) = match rest.rsplit_once(',') {
        Some((host, port)) => (host, port.trim().parse::<u16>().map_err(|_| invalid)?),
        None => (rest, DEFAULT_PORT),
    };
    let host = host.trim();
    if host.is_empty() {
        return Err(ConnStrError::InvalidValue("Server"));
    }
    Ok((host.to_owned(), port))
}

fn parse_bool(value: &str, key: &'static str) -> Result<bool, ConnStrError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "mandatory" => Ok(true),
        "false" | "no" | "optional" => Ok(false),
        _ => Err(ConnStrError::InvalidValue(key)),
    }
}

/// Splits `key=value;...` into pairs (keys trimmed, values unquoted).
fn pairs(s: &str) -> Result<Vec<(String, String)>, ConnStrError> {
    let syntax = |offset, reason| ConnStrError::Syntax { offset, reason };
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        // Between pairs: whitespace and empty pairs.
        while chars
            .next_if(|&(_, c)| c.is_whitespace() || c == ';')
            .is_some()
        {}
        let Some(&(key_start, _)) = chars.peek() else {
            return Ok(out);
        };

        // Key, up to a single `=` (`==` is a literal `=`).
        let mut key = String::new();
        loop {
            match chars.next() {
                None => return Err(syntax(s.len(), "keyword without '='")),
                Some((i, ';')) => return Err(syntax(i, "keyword without '='")),
                Some((_, '=')) => {
                    if chars.next_if(|&(_, c)| c == '=').is_some() {
                        key.push('=');
                    } else {
                        break;
                    }
                }
                Some((_, c)) => key.push(c),
            }
        }
        let key = key.trim().to_owned();
        if key.is_empty() {
            return Err(syntax(key_start, "empty keyword"));
        }

        // Value.
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        match chars.peek().map(|&(i, c)| (i, c)) {
            Some((open_at, quote @ ('"' | '\''))) => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(syntax(open_at, "unterminated quoted value")),
                        Some((_, c)) if c == quote => {
                            if chars.next_if(|&(_, c)| c == quote).is_some() {
                                value.push(quote);
                            } else {
                                break;
                            }
                        }
                        Some((_, c)) => value.push(c),
                    }
                }
                while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
                match chars.next() {
                    None | Some((_, ';')) => {}
                    Some((i, _)) => return Err(syntax(i, "text after a quoted value")),
                }
            }
            _ => {
                for (_, c) in chars.by_ref() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                }
                value.truncate(value.trim_end().len());
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> AdoConnectionString {
        AdoConnectionString::new("db.example", 1433)
            .database("tenant_acme")
            .user("app_a")
            .password("s3cretPassw0rd")
    }

    #[test]
    fn writes_the_documented_format() {
        assert_eq!(
            sample().to_secret_string(),
            "Server=tcp:db.example,1433;Database=tenant_acme;User ID=app_a;\
             Password=s3cretPassw0rd;Encrypt=True;TrustServerCertificate=False"
        );
        let s = sample()
            .server("10.0.0.5", 14330)
            .encrypt(false)
            .trust_server_certificate(true)
            .to_secret_string();
        assert_eq!(
            s,
            "Server=tcp:10.0.0.5,14330;Database=tenant_acme;User ID=app_a;\
             Password=s3cretPassw0rd;Encrypt=False;TrustServerCertificate=True"
        );
    }

    #[test]
    fn escapes_like_db_connection_string_builder() {
        assert_eq!(escape_value("plain{x}ü"), "plain{x}ü");
        assert_eq!(escape_value(""), "");
        assert_eq!(escape_value("a;b"), "\"a;b\"");
        assert_eq!(escape_value("p=w"), "\"p=w\"");
        assert_eq!(escape_value("a'b"), "\"a'b\"");
        assert_eq!(escape_value("a\"b"), "'a\"b'");
        assert_eq!(escape_value("a\"b'c"), "\"a\"\"b'c\"");
        assert_eq!(escape_value(" lead"), "\" lead\"");
        assert_eq!(escape_value("trail "), "\"trail \"");
        assert_eq!(escape_value("in side"), "\"in side\"");
        assert_eq!(escape_value("tab\there"), "\"tab\there\"");
    }

    #[test]
    fn round_trips_tricky_passwords() {
        let passwords = [
            "a;b",
            "a'b",
            "a\"b",
            " lead",
            "trail ",
            "p=w",
            "{x}",
            "{x;y}",
            "a==b",
            "''",
            "\"\"",
            "'\"",
            "\"'",
            "x\";Password=evil",
            "x';Password=evil",
            ";",
            "=",
            " ",
            "",
            "ünïcødé-密码-🔑",
            "line\nbreak",
            "back\\slash",
            "  both ends  ",
            "a\"b\"c'd''e",
        ];
        for password in passwords {
            for (encrypt, trust) in [(true, false), (false, true)] {
                let original = sample()
                    .password(password)
                    .encrypt(encrypt)
                    .trust_server_certificate(trust);
                let text = original.to_secret_string();
                let parsed = parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert_eq!(parsed, original, "{text:?}");
            }
        }
    }

    #[test]
    fn round_trips_tricky_other_fields() {
        let original = AdoConnectionString::new("host;x", 1)
            .database("db 'q'")
            .user("u=\"1\"")
            .password("p");
        assert_eq!(parse(&original.to_secret_string()).unwrap(), original);
    }

    #[test]
    fn debug_redacts_the_password() {
        let text = format!("{:?}", sample().password("hunter2-secret"));
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("password: \"[redacted]\""), "{text}");
        assert!(text.contains("db.example"));
        let pretty = format!("{:#?}", sample().password("hunter2-secret"));
        assert!(!pretty.contains("hunter2-secret"));
    }

    #[test]
    fn parses_synonyms_case_and_whitespace() {
        let c = parse(
            " data source = tcp:h.example , 1500 ;INITIAL CATALOG=d; uid=u ;PWD= p w ;;\
             encrypt=yes;Trust Server Certificate=no;",
        )
        .unwrap();
        assert_eq!(
            c,
            AdoConnectionString::new("h.example", 1500)
                .database("d")
                .user("u")
                .password("p w")
        );
    }

    #[test]
    fn server_without_prefix_or_port() {
        let c = parse("Server=h;Database=d;User ID=u;Password=p").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("h", DEFAULT_PORT));
        assert!(c.encrypt);
        assert!(!c.trust_server_certificate);
    }

    #[test]
    fn single_quoted_values_unescape_doubled_quotes() {
        let c = parse("Server=h;Database=d;User ID=u;Password='it''s'").unwrap();
        assert_eq!(c.password, "it's");
        let c = parse("Server=h;Database=d;User ID=u;Password=\"say \"\"hi\"\"\"").unwrap();
        assert_eq!(c.password, "say \"hi\"");
    }

    #[test]
    fn refuses_missing_required_keys() {
        assert_eq!(
            parse("Database=d;User ID=u;Password=p"),
            Err(ConnStrError::Missing("Server"))
        );
        assert_eq!(
            parse("Server=h;Database=d;User ID=u"),
            Err(ConnStrError::Missing("Password"))
        );
        assert_eq!(parse(""), Err(ConnStrError::Missing("Server")));
    }

    #[test]
    fn refuses_unknown_and_duplicate_keys() {
        assert_eq!(
            parse("Server=h;Database=d;User ID=u;Password=p;Pooling=false"),
            Err(ConnStrError::UnknownKey("Pooling".into()))
        );
        assert_eq!(
            parse("Server=h;Database=d;User ID=u;Password=p;PWD=q"),
            Err(ConnStrError::DuplicateKey("Password".into()))
        );
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in [
            "Server=h;Database=d;User ID=u;Password=\"open",
            "Server=h;Database=d;User ID=u;Password='open",
            "Server=h;Database=d;User ID=u;Password=\"a\"b",
            "Server=h;Database",
            "Server=h;Database;x=y",
            "=v",
        ] {
            assert!(
                matches!(parse(bad), Err(ConnStrError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!(
            parse("Server=h,notaport;Database=d;User ID=u;Password=p"),
            Err(ConnStrError::InvalidValue("Server"))
        );
        assert_eq!(
            parse("Server=tcp:,1433;Database=d;User ID=u;Password=p"),
            Err(ConnStrError::InvalidValue("Server"))
        );
        assert_eq!(
            parse("Server=h;Database=d;User ID=u;Password=p;Encrypt=maybe"),
            Err(ConnStrError::InvalidValue("Encrypt"))
        );
    }

    #[test]
    fn errors_never_contain_the_password() {
        let text = "Server=h;Database=d;User ID=u;Password=\"hunter2";
        let err = parse(text).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        let engine: EngineError = err.into();
        assert!(matches!(engine, EngineError::ConnectionString(_)));
        assert!(!engine.to_string().contains("hunter2"));
    }
}
