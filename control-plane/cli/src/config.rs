//! Where `tenantctl` finds the control plane and its token: a flag, else an environment variable,
//! else the config file, else a default. `tenantctl config show` prints what won and why.
//!
//! The config file is TOML at `--config FILE`, `$TENANTCTL_CONFIG`, or
//! `$XDG_CONFIG_HOME/tenantctl/config.toml` (`~/.config/tenantctl/config.toml`), with the keys
//! `server`, `token`, `token_command` and `data_dir`. A file holding a `token` must be readable by
//! its owner only; `token_command` (run with `sh -c` when no token is given) keeps tokens out of
//! files altogether and is how an OIDC user (Entra ID: `az account get-access-token ...`) logs in.
//!
//! Token values never reach `Debug`, `Display`, errors or `config show`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Failure;

/// Environment variable naming the control plane's base URL.
pub const ENV_SERVER: &str = "TENANTCTL_SERVER";
/// Environment variable holding a bearer token.
pub const ENV_TOKEN: &str = "TENANTCTL_TOKEN";
/// Environment variable holding a command that prints a bearer token.
pub const ENV_TOKEN_COMMAND: &str = "TENANTCTL_TOKEN_COMMAND";
/// Environment variable naming the control plane's data directory (shared with the server).
pub const ENV_DATA_DIR: &str = "TENANT_CP_DATA_DIR";
/// Environment variable naming the config file.
pub const ENV_CONFIG: &str = "TENANTCTL_CONFIG";
/// The server used when none is configured.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// The data directory used when none is configured (the one `make run` uses).
pub const DEFAULT_DATA_DIR: &str = ".data";

/// Where a setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag (named).
    Flag(&'static str),
    /// An environment variable (named).
    Env(&'static str),
    /// The config file.
    File,
    /// The built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File => f.write_str("config file"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A token as given by the operator; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct TokenValue(String);

impl TokenValue {
    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenValue([redacted])")
    }
}

impl std::str::FromStr for TokenValue {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(TokenValue(s.to_owned()))
    }
}

/// The keys of the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL of the control plane.
    pub server: Option<String>,
    /// A bearer token (the file must then be private to its owner).
    pub token: Option<TokenValue>,
    /// A shell command printing a bearer token on stdout.
    pub token_command: Option<String>,
    /// The control plane's data directory (local mode: where the signing key is).
    pub data_dir: Option<PathBuf>,
}

/// The global flags, as parsed.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--server`.
    pub server: Option<String>,
    /// `--token`.
    pub token: Option<TokenValue>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
}

/// How the bearer token is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSetting {
    /// A token given outright.
    Value(TokenValue, Source),
    /// A command that prints one, run when a request needs it.
    Command(String, Source),
    /// Nothing configured: minted from the local signing key when there is one.
    Unset,
}

/// The config file that was read, or where one was looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigFile {
    /// Read from this path.
    Loaded(PathBuf),
    /// None at this (default) path.
    Absent(PathBuf),
    /// No default path could be formed (no `$XDG_CONFIG_HOME` nor `$HOME`).
    Unknown,
}

/// The resolved settings with their origins.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the control plane.
    pub server: (String, Source),
    /// The control plane's data directory.
    pub data_dir: (PathBuf, Source),
    /// How to get a token.
    pub token: TokenSetting,
    /// The config file.
    pub file: ConfigFile,
}

/// A non-empty, trimmed environment variable.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Reads the config file (if any) and resolves every setting; `env` reads the environment.
pub fn resolve(flags: &Flags, env: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Failure> {
    let (file, config) = load(flags, env)?;
    Ok(combine(flags, env, &config, file))
}

/// Flags over environment over file over defaults (no I/O).
pub fn combine(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
    config: &FileConfig,
    file: ConfigFile,
) -> Settings {
    let server = nonempty(&flags.server)
        .map(|s| (s, Source::Flag("--server")))
        .or_else(|| var(env, ENV_SERVER).map(|s| (s, Source::Env(ENV_SERVER))))
        .or_else(|| nonempty(&config.server).map(|s| (s, Source::File)))
        .unwrap_or_else(|| (DEFAULT_SERVER.to_owned(), Source::Default));
    let data_dir = flags
        .data_dir
        .clone()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| (d, Source::Flag("--data-dir")))
        .or_else(|| var(env, ENV_DATA_DIR).map(|d| (PathBuf::from(d), Source::Env(ENV_DATA_DIR))))
        .or_else(|| {
            config
                .data_dir
                .as_deref()
                .filter(|d| !d.as_os_str().is_empty())
                .map(|d| (expand_home(d, env), Source::File))
        })
        .unwrap_or_else(|| (PathBuf::from(DEFAULT_DATA_DIR), Source::Default));
    let given = |t: &TokenValue| {
        let t = t.0.trim();
        (!t.is_empty()).then(|| TokenValue(t.to_owned()))
    };
    let token = if let Some(t) = flags.token.as_ref().and_then(given) {
        TokenSetting::Value(t, Source::Flag("--token"))
    } else if let Some(t) = var(env, ENV_TOKEN) {
        TokenSetting::Value(TokenValue(t), Source::Env(ENV_TOKEN))
    } else if let Some(c) = var(env, ENV_TOKEN_COMMAND) {
        TokenSetting::Command(c, Source::Env(ENV_TOKEN_COMMAND))
    } else if let Some(t) = config.token.as_ref().and_then(given) {
        TokenSetting::Value(t, Source::File)
    } else if let Some(c) = nonempty(&config.token_command) {
        TokenSetting::Command(c, Source::File)
    } else {
        TokenSetting::Unset
    };
    Settings {
        server,
        data_dir,
        token,
        file,
    }
}

/// `~/x` → `$HOME/x`; other paths as written (relative ones are relative to the working
/// directory).
fn expand_home(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match (path.strip_prefix("~"), var(env, "HOME")) {
        (Ok(rest), Some(home)) => Path::new(&home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// The config file's path: `--config`, `$TENANTCTL_CONFIG` (both must exist), else the default
/// path (may be absent).
fn config_path(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, bool /* named explicitly */)> {
    if let Some(p) = flags.config.clone().filter(|p| !p.as_os_str().is_empty()) {
        return Some((p, true));
    }
    if let Some(p) = var(env, ENV_CONFIG) {
        return Some((PathBuf::from(p), true));
    }
    let base = var(env, "XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| var(env, "HOME").map(|h| Path::new(&h).join(".config")))?;
    Some((base.join("tenantctl").join("config.toml"), false))
}

fn load(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(ConfigFile, FileConfig), Failure> {
    let Some((path, explicit)) = config_path(flags, env) else {
        return Ok((ConfigFile::Unknown, FileConfig::default()));
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok((ConfigFile::Absent(path), FileConfig::default()))
        }
        Err(e) => {
            return Err(Failure::new(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
            .hint(format!(
                "fix the path given with --config or {ENV_CONFIG}, or unset it"
            )))
        }
    };
    let config = parse(&text, &path)?;
    if config.token.is_some() {
        check_private(&path)?;
    }
    Ok((ConfigFile::Loaded(path), config))
}

/// Parses the config file; errors name the file and the key, never a value.
pub fn parse(text: &str, path: &Path) -> Result<FileConfig, Failure> {
    toml::from_str(text).map_err(|e| {
        Failure::new(format!(
            "invalid config file {}: {}",
            path.display(),
            e.message()
        ))
        .hint("the keys are server, token, token_command and data_dir (see README, tenantctl)")
    })
}

/// Refuses a config file holding a token that others than its owner may read.
#[cfg(unix)]
pub fn check_private(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| Failure::new(format!("cannot stat {}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Failure::new(format!(
            "the config file {} holds a token and is readable by others (mode {:o})",
            path.display(),
            mode & 0o777
        ))
        .hint(format!(
            "run `chmod 600 {}`, or replace `token` with `token_command`",
            path.display()
        )));
    }
    Ok(())
}

/// Refuses a config file holding a token that others than its owner may read.
#[cfg(not(unix))]
pub fn check_private(_path: &Path) -> Result<(), Failure> {
    Ok(())
}

impl Settings {
    /// `config show`: one line per setting with where it came from; never a token.
    pub fn describe(&self) -> String {
        let file = match &self.file {
            ConfigFile::Loaded(p) => p.display().to_string(),
            ConfigFile::Absent(p) => format!("none (looked for {})", p.display()),
            ConfigFile::Unknown => "none (neither XDG_CONFIG_HOME nor HOME is set)".to_owned(),
        };
        let token = match &self.token {
            TokenSetting::Value(_, source) => format!("[set, from {source}]"),
            TokenSetting::Command(command, source) => {
                format!("from token_command `{command}` [from {source}]")
            }
            TokenSetting::Unset => {
                let key = self.data_dir.0.join(server::auth::LOCAL_KEY_FILE);
                if key.exists() {
                    format!("[not set; minted from {} per command]", key.display())
                } else {
                    "[not set]".to_owned()
                }
            }
        };
        crate::render::columns(&[
            vec!["config file".to_owned(), file],
            vec![
                "server".to_owned(),
                format!("{}  [from {}]", self.server.0, self.server.1),
            ],
            vec![
                "data dir".to_owned(),
                format!("{}  [from {}]", self.data_dir.0.display(), self.data_dir.1),
            ],
            vec!["token".to_owned(), token],
        ])
    }

    /// `config show --json`.
    pub fn describe_json(&self) -> serde_json::Value {
        let file = match &self.file {
            ConfigFile::Loaded(p) => serde_json::json!({"path": p, "loaded": true}),
            ConfigFile::Absent(p) => serde_json::json!({"path": p, "loaded": false}),
            ConfigFile::Unknown => serde_json::json!({"path": null, "loaded": false}),
        };
        let token = match &self.token {
            TokenSetting::Value(_, source) => {
                serde_json::json!({"set": true, "source": source.to_string()})
            }
            TokenSetting::Command(command, source) => serde_json::json!({
                "set": false, "command": command, "source": source.to_string()
            }),
            TokenSetting::Unset => serde_json::json!({"set": false, "source": null}),
        };
        serde_json::json!({
            "config_file": file,
            "server": {"value": self.server.0, "source": self.server.1.to_string()},
            "data_dir": {"value": self.data_dir.0, "source": self.data_dir.1.to_string()},
            "token": token,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn file(text: &str) -> FileConfig {
        parse(text, Path::new("config.toml")).unwrap()
    }

    const FULL_FILE: &str = r#"
        server = "https://file.example"
        token = "file-token"
        token_command = "echo cmd-token"
        data_dir = "~/cp-data"
    "#;

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let config = file(FULL_FILE);
        let flags = Flags {
            server: Some("https://flag.example".into()),
            token: Some(TokenValue("flag-token".into())),
            data_dir: Some("/flag".into()),
            config: None,
        };
        let env = env_of(&[
            (ENV_SERVER, "https://env.example"),
            (ENV_TOKEN, "env-token"),
            (ENV_DATA_DIR, "/env"),
            ("HOME", "/home/op"),
        ]);
        let s = combine(&flags, &env, &config, ConfigFile::Unknown);
        assert_eq!(s.server.1, Source::Flag("--server"));
        assert_eq!(s.data_dir.0, PathBuf::from("/flag"));
        assert_eq!(
            s.token,
            TokenSetting::Value(TokenValue("flag-token".into()), Source::Flag("--token"))
        );

        let s = combine(&Flags::default(), &env, &config, ConfigFile::Unknown);
        assert_eq!(
            s.server,
            ("https://env.example".into(), Source::Env(ENV_SERVER))
        );
        assert_eq!(s.data_dir, ("/env".into(), Source::Env(ENV_DATA_DIR)));
        assert_eq!(
            s.token,
            TokenSetting::Value(TokenValue("env-token".into()), Source::Env(ENV_TOKEN))
        );

        let home = env_of(&[("HOME", "/home/op"), (ENV_TOKEN, "  ")]);
        let s = combine(&Flags::default(), &home, &config, ConfigFile::Unknown);
        assert_eq!(s.server, ("https://file.example".into(), Source::File));
        assert_eq!(s.data_dir, ("/home/op/cp-data".into(), Source::File));
        // A token in the file wins over the file's command; an empty env var counts as unset.
        assert_eq!(
            s.token,
            TokenSetting::Value(TokenValue("file-token".into()), Source::File)
        );

        let only_command = file("token_command = 'echo cmd-token'");
        let s = combine(&Flags::default(), &home, &only_command, ConfigFile::Unknown);
        assert_eq!(
            s.token,
            TokenSetting::Command("echo cmd-token".into(), Source::File)
        );
        // The environment's command beats the file's token.
        let env_cmd = env_of(&[(ENV_TOKEN_COMMAND, "get-token")]);
        let s = combine(&Flags::default(), &env_cmd, &config, ConfigFile::Unknown);
        assert_eq!(
            s.token,
            TokenSetting::Command("get-token".into(), Source::Env(ENV_TOKEN_COMMAND))
        );

        let s = combine(
            &Flags::default(),
            &env_of(&[]),
            &FileConfig::default(),
            ConfigFile::Unknown,
        );
        assert_eq!(s.server, (DEFAULT_SERVER.into(), Source::Default));
        assert_eq!(s.data_dir, (DEFAULT_DATA_DIR.into(), Source::Default));
        assert_eq!(s.token, TokenSetting::Unset);
    }

    #[test]
    fn unknown_keys_are_refused_without_echoing_values() {
        let err = parse("tokne = \"s3cret\"", Path::new("c.toml")).unwrap_err();
        assert!(err.message.contains("tokne"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(parse("server = 1", Path::new("c.toml")).is_err());
    }

    #[test]
    fn config_file_paths_and_explicit_files_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap().to_owned();
        // Default path under $HOME/.config, absent: fine.
        let env = env_of(&[("HOME", &home)]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(
            s.file,
            ConfigFile::Absent(dir.path().join(".config/tenantctl/config.toml"))
        );
        // $XDG_CONFIG_HOME wins over $HOME.
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(xdg.join("tenantctl")).unwrap();
        std::fs::write(
            xdg.join("tenantctl/config.toml"),
            "server = 'https://xdg.example'",
        )
        .unwrap();
        let env = env_of(&[("HOME", &home), ("XDG_CONFIG_HOME", xdg.to_str().unwrap())]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.server, ("https://xdg.example".into(), Source::File));
        assert_eq!(
            s.file,
            ConfigFile::Loaded(xdg.join("tenantctl/config.toml"))
        );
        // A named file that does not exist is an error, not a silent default.
        let env = env_of(&[(ENV_CONFIG, "/nonexistent/tenantctl.toml")]);
        let err = resolve(&Flags::default(), &env).unwrap_err();
        assert!(err.message.contains("/nonexistent/tenantctl.toml"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_token_in_a_readable_file_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "token = 's3cret'\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let err = resolve(&flags, &env_of(&[])).unwrap_err();
        assert!(
            err.message.contains("readable by others (mode 644)"),
            "{err}"
        );
        assert!(err.hint.as_deref().unwrap().contains("chmod 600"), "{err}");
        assert!(!err.to_string().contains("s3cret"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = resolve(&flags, &env_of(&[])).unwrap();
        assert!(matches!(s.token, TokenSetting::Value(_, Source::File)));

        // Without a token, a readable file is fine (server and token_command are not secret).
        std::fs::write(&path, "token_command = 'echo x'\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(resolve(&flags, &env_of(&[])).is_ok());
    }

    #[test]
    fn show_never_prints_the_token() {
        let s = combine(
            &Flags {
                token: Some(TokenValue("s3cret".into())),
                ..Flags::default()
            },
            &env_of(&[]),
            &FileConfig::default(),
            ConfigFile::Unknown,
        );
        let text = s.describe();
        assert!(
            text.contains("token        [set, from flag --token]"),
            "{text}"
        );
        assert!(text.contains("server       http://127.0.0.1:8080  [from default]"));
        assert!(!text.contains("s3cret"));
        assert!(!s.describe_json().to_string().contains("s3cret"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let s = combine(
            &Flags::default(),
            &env_of(&[(ENV_TOKEN, "s3cret")]),
            &FileConfig::default(),
            ConfigFile::Unknown,
        );
        assert!(s.describe().contains("[set, from env TENANTCTL_TOKEN]"));
        assert_eq!(s.describe_json()["token"]["source"], "env TENANTCTL_TOKEN");
    }
}
