//! Local encrypted secret store for development and single-machine installs.
//!
//! It mimics Azure Key Vault's semantics (versions, soft delete, recovery,
//! purge protection) so that code written against it behaves the same when the
//! Key Vault backend is configured.
//!
//! Layout of the store directory (created with mode 0700):
//!
//! * `secret-store.key`: 32 random bytes, base64-encoded, mode 0600. This is
//!   the AES-256-GCM key for every value in the store; losing it makes the
//!   store unreadable, and anyone who can read it can read every secret.
//! * `secrets/<lowercased name>.json`: one file per secret name (mode 0600)
//!   holding each version's properties, nonce and ciphertext, plus the
//!   soft-delete state. Plaintext is never written to disk.
//!
//! Each value is encrypted with a fresh random 96-bit nonce and the additional
//! authenticated data `"<name>/<version>"`, so a ciphertext copied to another
//! secret or version fails to decrypt ([`SecretError::Corrupt`]).
//!
//! Names are case-insensitive, as in Key Vault: `Db-Pass` and `db-pass` are the
//! same secret, and the case used when it was first created is kept.
//!
//! Files are replaced atomically (temporary file, fsync, rename, directory
//! fsync), so readers in other processes (such as the CLI) always see a whole
//! file. Writes are serialised within one process only; run a single writing
//! process per store directory.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::{
    DeletedSecret, PropertiesUpdate, Secret, SecretError, SecretName, SecretProperties,
    SecretStore, SecretValue, SetOptions,
};

/// Name of the key file inside the store directory.
const KEY_FILE: &str = "secret-store.key";
/// Name of the directory holding one JSON file per secret.
const SECRETS_DIR: &str = "secrets";
/// AES-256 key length in bytes.
const KEY_LEN: usize = 32;
/// AES-GCM nonce length in bytes.
const NONCE_LEN: usize = 12;
/// Version of the per-secret file format.
const FILE_FORMAT: u32 = 1;
/// Longest retention period accepted, in days.
const MAX_RETENTION_DAYS: i64 = 36_500;

/// Options for [`LocalSecretStore::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalStoreOptions {
    /// When true, soft-deleted secrets cannot be purged before their scheduled
    /// purge date (default false).
    pub purge_protection: bool,
    /// Days a soft-deleted secret is kept before its scheduled purge date
    /// (default 90, 0 to 36500).
    pub retention_days: i64,
}

impl Default for LocalStoreOptions {
    fn default() -> Self {
        Self {
            purge_protection: false,
            retention_days: 90,
        }
    }
}

/// Encrypted secret store in a local directory. See the [module docs](self).
pub struct LocalSecretStore {
    inner: Arc<Inner>,
    /// Serialises writes within this process. Owned guards are moved into the
    /// blocking task so a cancelled caller cannot let two writes overlap.
    write_lock: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for LocalSecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSecretStore")
            .field("dir", &self.inner.dir)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl LocalSecretStore {
    /// Opens the store in `dir`, creating the directory (0700) and a new random
    /// key file (0600) if they do not exist. A key file that does not hold 32
    /// base64-encoded bytes gives [`SecretError::Corrupt`].
    pub fn open(dir: impl AsRef<Path>, options: LocalStoreOptions) -> Result<Self, SecretError> {
        if !(0..=MAX_RETENTION_DAYS).contains(&options.retention_days) {
            return Err(SecretError::Unavailable {
                detail: format!(
                    "retention_days must be between 0 and {MAX_RETENTION_DAYS}, got {}",
                    options.retention_days
                ),
            });
        }
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir)?;
        let secrets_dir = dir.join(SECRETS_DIR);
        create_private_dir(&secrets_dir)?;
        let key = load_or_create_key(&dir)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| SecretError::Corrupt {
            detail: format!(
                "key file {} has the wrong length",
                dir.join(KEY_FILE).display()
            ),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                secrets_dir,
                cipher,
                options,
            }),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Synchronous [`SecretStore::get`], for callers without a runtime (the CLI).
    pub fn get_blocking(
        &self,
        name: &SecretName,
        version: Option<&str>,
    ) -> Result<Secret, SecretError> {
        self.inner.get(name, version)
    }

    /// Runs a read on the blocking thread pool.
    async fn read<T, F>(&self, f: F) -> Result<T, SecretError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, SecretError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(join_error)?
    }

    /// Runs a write on the blocking thread pool while holding the write lock.
    async fn write<T, F>(&self, f: F) -> Result<T, SecretError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, SecretError> + Send + 'static,
    {
        let guard = Arc::clone(&self.write_lock).lock_owned().await;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let result = f(&inner);
            drop(guard);
            result
        })
        .await
        .map_err(join_error)?
    }
}

fn join_error(e: tokio::task::JoinError) -> SecretError {
    SecretError::Unavailable {
        detail: format!("secret store task failed: {e}"),
    }
}

#[async_trait::async_trait]
impl SecretStore for LocalSecretStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn location(&self) -> String {
        self.inner.dir.display().to_string()
    }

    async fn set(
        &self,
        name: &SecretName,
        value: SecretValue,
        options: SetOptions,
    ) -> Result<SecretProperties, SecretError> {
        let name = name.clone();
        self.write(move |inner| inner.set(&name, &value, options))
            .await
    }

    async fn get(&self, name: &SecretName, version: Option<&str>) -> Result<Secret, SecretError> {
        let name = name.clone();
        let version = version.map(str::to_owned);
        self.read(move |inner| inner.get(&name, version.as_deref()))
            .await
    }

    async fn list_versions(&self, name: &SecretName) -> Result<Vec<SecretProperties>, SecretError> {
        let name = name.clone();
        self.read(move |inner| {
            let file = inner.load_live(&name)?;
            Ok(file.versions.into_iter().map(|v| v.properties).collect())
        })
        .await
    }

    async fn list_names(&self) -> Result<Vec<SecretName>, SecretError> {
        self.read(Inner::list_names).await
    }

    async fn update_properties(
        &self,
        name: &SecretName,
        version: &str,
        update: PropertiesUpdate,
    ) -> Result<SecretProperties, SecretError> {
        let name = name.clone();
        let version = version.to_owned();
        self.write(move |inner| inner.update_properties(&name, &version, update))
            .await
    }

    async fn delete(&self, name: &SecretName) -> Result<DeletedSecret, SecretError> {
        let name = name.clone();
        self.write(move |inner| inner.delete(&name)).await
    }

    async fn get_deleted(&self, name: &SecretName) -> Result<DeletedSecret, SecretError> {
        let name = name.clone();
        self.read(move |inner| inner.load_deleted(&name).map(|(_, d)| d))
            .await
    }

    async fn purge(&self, name: &SecretName) -> Result<(), SecretError> {
        let name = name.clone();
        self.write(move |inner| inner.purge(&name)).await
    }

    async fn recover(&self, name: &SecretName) -> Result<SecretProperties, SecretError> {
        let name = name.clone();
        self.write(move |inner| inner.recover(&name)).await
    }
}

/// On-disk form of one secret name.
#[derive(Serialize, Deserialize)]
struct SecretFile {
    format: u32,
    name: SecretName,
    versions: Vec<StoredVersion>,
    deleted: Option<DeletedState>,
}

impl SecretFile {
    fn deleted_secret(&self) -> Option<DeletedSecret> {
        self.deleted.as_ref().map(|d| DeletedSecret {
            name: self.name.clone(),
            deleted_at: d.deleted_at,
            scheduled_purge_at: d.scheduled_purge_at,
        })
    }

    fn current(&self) -> Result<&StoredVersion, SecretError> {
        self.versions.last().ok_or_else(|| SecretError::Corrupt {
            detail: format!("secret {} has no versions", self.name),
        })
    }
}

/// One encrypted version.
#[derive(Serialize, Deserialize)]
struct StoredVersion {
    properties: SecretProperties,
    /// Base64 96-bit nonce.
    nonce: String,
    /// Base64 AES-256-GCM ciphertext with tag.
    ciphertext: String,
}

/// Soft-delete state.
#[derive(Serialize, Deserialize)]
struct DeletedState {
    deleted_at: DateTime<Utc>,
    scheduled_purge_at: DateTime<Utc>,
}

struct Inner {
    dir: PathBuf,
    secrets_dir: PathBuf,
    cipher: Aes256Gcm,
    options: LocalStoreOptions,
}

impl Inner {
    fn path_for(&self, name: &SecretName) -> PathBuf {
        self.secrets_dir
            .join(format!("{}.json", name.as_str().to_ascii_lowercase()))
    }

    /// Reads the file for `name`; `None` if it does not exist.
    fn load(&self, name: &SecretName) -> Result<Option<SecretFile>, SecretError> {
        let path = self.path_for(name);
        let Some(file) = read_secret_file(&path)? else {
            return Ok(None);
        };
        if !file.name.as_str().eq_ignore_ascii_case(name.as_str()) {
            return Err(SecretError::Corrupt {
                detail: format!("{} holds secret {}, not {name}", path.display(), file.name),
            });
        }
        Ok(Some(file))
    }

    /// Reads a live (not soft-deleted) secret; NotFound otherwise.
    fn load_live(&self, name: &SecretName) -> Result<SecretFile, SecretError> {
        match self.load(name)? {
            Some(file) if file.deleted.is_none() => Ok(file),
            _ => Err(not_found(name)),
        }
    }

    /// Reads a soft-deleted secret; NotFound otherwise.
    fn load_deleted(&self, name: &SecretName) -> Result<(SecretFile, DeletedSecret), SecretError> {
        let file = self.load(name)?.ok_or_else(|| not_found(name))?;
        let deleted = file.deleted_secret().ok_or_else(|| not_found(name))?;
        Ok((file, deleted))
    }

    fn save(&self, file: &SecretFile) -> Result<(), SecretError> {
        let bytes = serde_json::to_vec_pretty(file).map_err(|e| SecretError::Corrupt {
            detail: format!("cannot serialise secret {}: {e}", file.name),
        })?;
        write_atomic(&self.secrets_dir, &self.path_for(&file.name), &bytes)
    }

    fn set(
        &self,
        name: &SecretName,
        value: &SecretValue,
        options: SetOptions,
    ) -> Result<SecretProperties, SecretError> {
        let mut file = match self.load(name)? {
            Some(file) if file.deleted.is_some() => {
                return Err(SecretError::DeletedButRecoverable {
                    name: file.name.to_string(),
                })
            }
            Some(file) => file,
            None => SecretFile {
                format: FILE_FORMAT,
                name: name.clone(),
                versions: Vec::new(),
                deleted: None,
            },
        };
        let now = Utc::now();
        let version = loop {
            let v = random_hex::<16>();
            if !file.versions.iter().any(|s| s.properties.version == v) {
                break v;
            }
        };
        let properties = SecretProperties {
            name: file.name.clone(),
            version,
            created_at: now,
            updated_at: now,
            enabled: true,
            expires_at: options.expires_at,
            tags: options.tags,
            content_type: options.content_type,
        };
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = aad(&file.name, &properties.version);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Unavailable {
                detail: format!("encrypting secret {} failed", file.name),
            })?;
        file.versions.push(StoredVersion {
            properties: properties.clone(),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        });
        self.save(&file)?;
        tracing::info!(secret = %file.name, version = %properties.version, "stored secret version");
        Ok(properties)
    }

    fn get(&self, name: &SecretName, version: Option<&str>) -> Result<Secret, SecretError> {
        let file = self.load_live(name)?;
        let stored = match version {
            None => file.current()?,
            Some(v) => file
                .versions
                .iter()
                .find(|s| s.properties.version == v)
                .ok_or_else(|| SecretError::VersionNotFound {
                    name: file.name.to_string(),
                    version: v.to_owned(),
                })?,
        };
        if !stored.properties.enabled {
            return Err(SecretError::Disabled {
                name: file.name.to_string(),
            });
        }
        let value = self.decrypt(&file.name, stored)?;
        Ok(Secret {
            properties: stored.properties.clone(),
            value,
        })
    }

    fn decrypt(
        &self,
        name: &SecretName,
        stored: &StoredVersion,
    ) -> Result<SecretValue, SecretError> {
        let version = &stored.properties.version;
        let corrupt = |what: &str| SecretError::Corrupt {
            detail: format!("secret {name} version {version}: {what}"),
        };
        let nonce = BASE64
            .decode(&stored.nonce)
            .map_err(|_| corrupt("nonce is not base64"))?;
        if nonce.len() != NONCE_LEN {
            return Err(corrupt("nonce has the wrong length"));
        }
        let ciphertext = BASE64
            .decode(&stored.ciphertext)
            .map_err(|_| corrupt("ciphertext is not base64"))?;
        let aad = aad(name, version);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| corrupt("ciphertext failed authentication"))?;
        let plaintext = String::from_utf8(plaintext).map_err(|_| corrupt("value is not UTF-8"))?;
        Ok(SecretValue::new(plaintext))
    }

    fn list_names(&self) -> Result<Vec<SecretName>, SecretError> {
        let entries =
            fs::read_dir(&self.secrets_dir).map_err(|e| io_error(&self.secrets_dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&self.secrets_dir, e))?;
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            // Temporary files start with '.', which no valid name contains.
            if SecretName::new(stem).is_err() {
                continue;
            }
            if let Some(file) = read_secret_file(&entry.path())? {
                if file.deleted.is_none() {
                    names.push(file.name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn update_properties(
        &self,
        name: &SecretName,
        version: &str,
        update: PropertiesUpdate,
    ) -> Result<SecretProperties, SecretError> {
        let mut file = self.load_live(name)?;
        let secret_name = file.name.to_string();
        let stored = file
            .versions
            .iter_mut()
            .find(|s| s.properties.version == version)
            .ok_or_else(|| SecretError::VersionNotFound {
                name: secret_name,
                version: version.to_owned(),
            })?;
        let props = &mut stored.properties;
        if let Some(enabled) = update.enabled {
            props.enabled = enabled;
        }
        if let Some(expires_at) = update.expires_at {
            props.expires_at = expires_at;
        }
        if let Some(tags) = update.tags {
            props.tags = tags;
        }
        props.updated_at = Utc::now();
        let props = props.clone();
        self.save(&file)?;
        tracing::info!(secret = %file.name, version = %props.version, enabled = props.enabled, "updated secret properties");
        Ok(props)
    }

    fn delete(&self, name: &SecretName) -> Result<DeletedSecret, SecretError> {
        let mut file = self.load_live(name)?;
        let deleted_at = Utc::now();
        let retention = TimeDelta::try_days(self.options.retention_days).ok_or_else(|| {
            SecretError::Unavailable {
                detail: "retention_days is out of range".to_owned(),
            }
        })?;
        let scheduled_purge_at =
            deleted_at
                .checked_add_signed(retention)
                .ok_or_else(|| SecretError::Unavailable {
                    detail: "retention_days is out of range".to_owned(),
                })?;
        file.deleted = Some(DeletedState {
            deleted_at,
            scheduled_purge_at,
        });
        self.save(&file)?;
        tracing::info!(secret = %file.name, %scheduled_purge_at, "soft-deleted secret");
        Ok(DeletedSecret {
            name: file.name,
            deleted_at,
            scheduled_purge_at,
        })
    }

    fn purge(&self, name: &SecretName) -> Result<(), SecretError> {
        let (file, deleted) = self.load_deleted(name)?;
        // Once the retention period is over Key Vault would have purged the
        // secret itself, so purge protection no longer applies.
        if self.options.purge_protection && Utc::now() < deleted.scheduled_purge_at {
            return Err(SecretError::PurgeProtected {
                name: deleted.name.to_string(),
                scheduled_purge_at: deleted.scheduled_purge_at,
            });
        }
        let path = self.path_for(&file.name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(name)),
            Err(e) => return Err(io_error(&path, e)),
        }
        sync_dir(&self.secrets_dir)?;
        tracing::info!(secret = %file.name, "purged secret");
        Ok(())
    }

    fn recover(&self, name: &SecretName) -> Result<SecretProperties, SecretError> {
        let (mut file, _) = self.load_deleted(name)?;
        file.deleted = None;
        let props = file.current()?.properties.clone();
        self.save(&file)?;
        tracing::info!(secret = %file.name, "recovered secret");
        Ok(props)
    }
}

fn not_found(name: &SecretName) -> SecretError {
    SecretError::NotFound {
        name: name.to_string(),
    }
}

fn io_error(path: &Path, source: io::Error) -> SecretError {
    SecretError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn aad(name: &SecretName, version: &str) -> String {
    format!("{name}/{version}")
}

/// `N` random bytes as lowercase hex.
fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_secret_file(path: &Path) -> Result<Option<SecretFile>, SecretError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let file: SecretFile = serde_json::from_slice(&bytes).map_err(|e| SecretError::Corrupt {
        detail: format!("{} is not a valid secret file: {e}", path.display()),
    })?;
    if file.format != FILE_FORMAT {
        return Err(SecretError::Corrupt {
            detail: format!("{} has unknown format {}", path.display(), file.format),
        });
    }
    Ok(Some(file))
}

fn create_private_dir(dir: &Path) -> Result<(), SecretError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_error(dir, e))
}

fn sync_dir(dir: &Path) -> Result<(), SecretError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Writes a new 0600 file next to `path` and returns its name.
fn write_temp(dir: &Path, path: &Path, bytes: &[u8]) -> Result<PathBuf, SecretError> {
    let base = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{base}.tmp-{}", random_hex::<8>()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_error(&tmp, e))
        }
    }
}

/// Atomically replaces `path` (in `dir`) with `bytes`.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let tmp = write_temp(dir, path, bytes)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(path, e));
    }
    sync_dir(dir)
}

/// Reads the key file, creating it first if it does not exist. Creation links
/// a complete temporary file into place, so a concurrent opener never sees a
/// partial key and the first creator wins.
fn load_or_create_key(dir: &Path) -> Result<[u8; KEY_LEN], SecretError> {
    let path = dir.join(KEY_FILE);
    if !path.exists() {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        let tmp = write_temp(dir, &path, BASE64.encode(key).as_bytes())?;
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(dir)?;
                tracing::info!(path = %path.display(), "created secret store key");
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&path, e)),
        }
    }
    let text = fs::read_to_string(&path).map_err(|e| io_error(&path, e))?;
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| SecretError::Corrupt {
            detail: format!("key file {} is not base64", path.display()),
        })?;
    let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| SecretError::Corrupt {
        detail: format!("key file {} does not hold {KEY_LEN} bytes", path.display()),
    })?;
    if let Ok(meta) = fs::metadata(&path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "secret store key file is readable by other users; chmod 600 it");
        }
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{ensure_absent, Removal};
    use std::collections::BTreeMap;

    const PLAIN: &str = "correct-horse-battery-staple-42";

    fn name(s: &str) -> SecretName {
        SecretName::new(s).unwrap()
    }

    fn open(dir: &Path) -> LocalSecretStore {
        LocalSecretStore::open(dir, LocalStoreOptions::default()).unwrap()
    }

    async fn set(store: &LocalSecretStore, n: &str, v: &str) -> SecretProperties {
        store
            .set(&name(n), SecretValue::new(v), SetOptions::default())
            .await
            .unwrap()
    }

    fn secret_path(dir: &Path, n: &str) -> PathBuf {
        dir.join(SECRETS_DIR).join(format!("{n}.json"))
    }

    #[tokio::test]
    async fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        assert_eq!(store.backend(), "local");
        assert_eq!(store.location(), tmp.path().display().to_string());
        let props = set(&store, "db-pass", PLAIN).await;
        assert_eq!(props.name.as_str(), "db-pass");
        assert_eq!(props.version.len(), 32);
        assert!(props
            .version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(props.enabled);
        let got = store.get(&name("db-pass"), None).await.unwrap();
        assert_eq!(got.value.expose(), PLAIN);
        assert_eq!(got.properties, props);
        let blocking = store.get_blocking(&name("db-pass"), None).unwrap();
        assert_eq!(blocking.value.expose(), PLAIN);
        // A second handle on the same directory reads it too.
        let again = open(tmp.path());
        assert_eq!(
            again
                .get(&name("db-pass"), None)
                .await
                .unwrap()
                .value
                .expose(),
            PLAIN
        );
        assert!(matches!(
            store.get(&name("missing"), None).await,
            Err(SecretError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn names_are_case_insensitive() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        set(&store, "Db-Pass", "one").await;
        let p2 = set(&store, "db-pass", "two").await;
        assert_eq!(p2.name.as_str(), "Db-Pass");
        let got = store.get(&name("DB-PASS"), None).await.unwrap();
        assert_eq!(got.value.expose(), "two");
        assert_eq!(store.list_names().await.unwrap(), vec![name("Db-Pass")]);
    }

    #[tokio::test]
    async fn versions() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        let v1 = set(&store, "api-token", "one").await;
        let v2 = set(&store, "api-token", "two").await;
        let v3 = set(&store, "api-token", "three").await;
        assert_ne!(v1.version, v2.version);
        let n = name("api-token");
        assert_eq!(store.get(&n, None).await.unwrap().value.expose(), "three");
        for (props, value) in [(&v1, "one"), (&v2, "two"), (&v3, "three")] {
            let got = store.get(&n, Some(&props.version)).await.unwrap();
            assert_eq!(got.value.expose(), value);
            assert_eq!(&got.properties, props);
        }
        let listed = store.list_versions(&n).await.unwrap();
        assert_eq!(listed, vec![v1, v2, v3]);
        assert!(matches!(
            store
                .get(&n, Some("0123456789abcdef0123456789abcdef"))
                .await,
            Err(SecretError::VersionNotFound { .. })
        ));
        assert!(matches!(
            store.list_versions(&name("nope")).await,
            Err(SecretError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn options_persisted() {
        let tmp = tempfile::tempdir().unwrap();
        let expires = Utc::now() + TimeDelta::days(30);
        let tags = BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]);
        {
            let store = open(tmp.path());
            store
                .set(
                    &name("cert"),
                    SecretValue::new(PLAIN),
                    SetOptions {
                        tags: tags.clone(),
                        expires_at: Some(expires),
                        content_type: Some("application/x-pem-file".to_owned()),
                    },
                )
                .await
                .unwrap();
        }
        let store = open(tmp.path());
        let got = store.get(&name("cert"), None).await.unwrap();
        assert_eq!(got.properties.tags, tags);
        assert_eq!(got.properties.expires_at, Some(expires));
        assert_eq!(
            got.properties.content_type.as_deref(),
            Some("application/x-pem-file")
        );
    }

    #[tokio::test]
    async fn update_properties_disables_version() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        let n = name("rotating");
        let v1 = set(&store, "rotating", "old").await;
        let v2 = set(&store, "rotating", "new").await;
        let updated = store
            .update_properties(
                &n,
                &v1.version,
                PropertiesUpdate {
                    enabled: Some(false),
                    expires_at: Some(None),
                    tags: Some(BTreeMap::from([("state".to_owned(), "retired".to_owned())])),
                },
            )
            .await
            .unwrap();
        assert!(!updated.enabled);
        assert_eq!(updated.tags["state"], "retired");
        assert!(updated.updated_at >= v1.updated_at);
        assert!(matches!(
            store.get(&n, Some(&v1.version)).await,
            Err(SecretError::Disabled { .. })
        ));
        assert_eq!(store.get(&n, None).await.unwrap().value.expose(), "new");
        let versions = store.list_versions(&n).await.unwrap();
        assert!(!versions[0].enabled && versions[1].enabled);
        // Disabling the current version makes the plain get fail too.
        store
            .update_properties(
                &n,
                &v2.version,
                PropertiesUpdate {
                    enabled: Some(false),
                    ..PropertiesUpdate::default()
                },
            )
            .await
            .unwrap();
        assert!(matches!(
            store.get(&n, None).await,
            Err(SecretError::Disabled { .. })
        ));
        assert!(matches!(
            store
                .update_properties(&n, "nope", PropertiesUpdate::default())
                .await,
            Err(SecretError::VersionNotFound { .. })
        ));
    }

    #[tokio::test]
    async fn soft_delete_and_recover() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        let n = name("db-pass");
        let v1 = set(&store, "db-pass", PLAIN).await;
        let deleted = store.delete(&n).await.unwrap();
        assert_eq!(deleted.name, n);
        assert_eq!(
            deleted.scheduled_purge_at - deleted.deleted_at,
            TimeDelta::days(90)
        );
        assert!(matches!(
            store.get(&n, None).await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            store.list_versions(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            store.delete(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        assert_eq!(store.get_deleted(&n).await.unwrap(), deleted);
        assert!(matches!(
            store
                .set(&n, SecretValue::new("x"), SetOptions::default())
                .await,
            Err(SecretError::DeletedButRecoverable { .. })
        ));
        assert!(matches!(
            store
                .update_properties(&n, &v1.version, PropertiesUpdate::default())
                .await,
            Err(SecretError::NotFound { .. })
        ));
        let recovered = store.recover(&n).await.unwrap();
        assert_eq!(recovered, v1);
        assert_eq!(store.get(&n, None).await.unwrap().value.expose(), PLAIN);
        assert!(matches!(
            store.get_deleted(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            store.recover(&n).await,
            Err(SecretError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn purge_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        let n = name("db-pass");
        set(&store, "db-pass", PLAIN).await;
        assert!(matches!(
            store.purge(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        store.delete(&n).await.unwrap();
        store.purge(&n).await.unwrap();
        assert!(!secret_path(tmp.path(), "db-pass").exists());
        assert!(matches!(
            store.get_deleted(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            store.get(&n, None).await,
            Err(SecretError::NotFound { .. })
        ));
        assert!(matches!(
            store.purge(&n).await,
            Err(SecretError::NotFound { .. })
        ));
        // The name is free again.
        set(&store, "db-pass", "fresh").await;
        assert_eq!(store.list_versions(&n).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn ensure_absent_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        set(&store, "live", PLAIN).await;
        set(&store, "deleted", PLAIN).await;
        store.delete(&name("deleted")).await.unwrap();
        for n in ["live", "deleted"] {
            assert_eq!(
                ensure_absent(&store, &name(n)).await.unwrap(),
                Removal::Purged
            );
            assert_eq!(
                ensure_absent(&store, &name(n)).await.unwrap(),
                Removal::AlreadyAbsent
            );
            assert!(matches!(
                store.get_deleted(&name(n)).await,
                Err(SecretError::NotFound { .. })
            ));
        }
        for _ in 0..2 {
            assert_eq!(
                ensure_absent(&store, &name("never-existed")).await.unwrap(),
                Removal::AlreadyAbsent
            );
        }
        assert!(store.list_names().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn purge_protection() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalSecretStore::open(
            tmp.path(),
            LocalStoreOptions {
                purge_protection: true,
                retention_days: 7,
            },
        )
        .unwrap();
        let n = name("protected");
        set(&store, "protected", PLAIN).await;
        for _ in 0..2 {
            let removal = ensure_absent(&store, &n).await.unwrap();
            let deleted = store.get_deleted(&n).await.unwrap();
            assert_eq!(
                removal,
                Removal::PurgeProtected {
                    scheduled_purge_at: deleted.scheduled_purge_at
                }
            );
            assert_eq!(
                deleted.scheduled_purge_at - deleted.deleted_at,
                TimeDelta::days(7)
            );
        }
        assert!(matches!(
            store.purge(&n).await,
            Err(SecretError::PurgeProtected { .. })
        ));
        assert!(secret_path(tmp.path(), "protected").exists());
        // Still recoverable.
        store.recover(&n).await.unwrap();
        assert_eq!(store.get(&n, None).await.unwrap().value.expose(), PLAIN);
    }

    #[tokio::test]
    async fn plaintext_not_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        set(&store, "db-pass", PLAIN).await;
        set(&store, "db-pass", PLAIN).await;
        store.delete(&name("db-pass")).await.unwrap();
        store.recover(&name("db-pass")).await.unwrap();
        for entry in fs::read_dir(tmp.path().join(SECRETS_DIR)).unwrap() {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            assert!(
                !bytes.windows(PLAIN.len()).any(|w| w == PLAIN.as_bytes()),
                "plaintext found in {}",
                path.display()
            );
        }
        // Only the one secret file: no temporary files left behind.
        assert_eq!(
            fs::read_dir(tmp.path().join(SECRETS_DIR)).unwrap().count(),
            1
        );
    }

    fn rewrite(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
        let mut json: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
        f(&mut json);
        fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
    }

    #[tokio::test]
    async fn tampered_ciphertext_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        set(&store, "db-pass", PLAIN).await;
        rewrite(&secret_path(tmp.path(), "db-pass"), |json| {
            let field = &mut json["versions"][0]["ciphertext"];
            let mut bytes = BASE64.decode(field.as_str().unwrap()).unwrap();
            bytes[0] ^= 1;
            *field = BASE64.encode(bytes).into();
        });
        let err = store.get(&name("db-pass"), None).await.unwrap_err();
        assert!(matches!(err, SecretError::Corrupt { .. }), "{err:?}");
        assert!(!err.to_string().contains(PLAIN));
    }

    #[tokio::test]
    async fn ciphertext_moved_to_other_secret_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        set(&store, "a", PLAIN).await;
        set(&store, "b", "other").await;
        let a: serde_json::Value =
            serde_json::from_slice(&fs::read(secret_path(tmp.path(), "a")).unwrap()).unwrap();
        rewrite(&secret_path(tmp.path(), "b"), |json| {
            json["versions"][0]["nonce"] = a["versions"][0]["nonce"].clone();
            json["versions"][0]["ciphertext"] = a["versions"][0]["ciphertext"].clone();
        });
        assert!(matches!(
            store.get(&name("b"), None).await,
            Err(SecretError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn other_key_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        set(&open(tmp.path()), "db-pass", PLAIN).await;
        fs::remove_file(tmp.path().join(KEY_FILE)).unwrap();
        let store = open(tmp.path());
        assert!(matches!(
            store.get(&name("db-pass"), None).await,
            Err(SecretError::Corrupt { .. })
        ));
        assert!(matches!(
            store.get_blocking(&name("db-pass"), None),
            Err(SecretError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_key_file_is_corrupt() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(KEY_FILE), BASE64.encode([0u8; 16])).unwrap();
        assert!(matches!(
            LocalSecretStore::open(tmp.path(), LocalStoreOptions::default()),
            Err(SecretError::Corrupt { .. })
        ));
        fs::write(tmp.path().join(KEY_FILE), "not base64!").unwrap();
        assert!(matches!(
            LocalSecretStore::open(tmp.path(), LocalStoreOptions::default()),
            Err(SecretError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_retention_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let options = LocalStoreOptions {
            retention_days: -1,
            ..LocalStoreOptions::default()
        };
        assert!(LocalSecretStore::open(tmp.path(), options).is_err());
    }

    #[tokio::test]
    async fn file_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = open(&dir);
        set(&store, "db-pass", PLAIN).await;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&secret_path(&dir, "db-pass")), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(SECRETS_DIR)), 0o700);
        // Reopening reuses the key.
        let key = fs::read(dir.join(KEY_FILE)).unwrap();
        let again = open(&dir);
        assert_eq!(fs::read(dir.join(KEY_FILE)).unwrap(), key);
        assert_eq!(
            again
                .get(&name("db-pass"), None)
                .await
                .unwrap()
                .value
                .expose(),
            PLAIN
        );
    }

    #[tokio::test]
    async fn nothing_leaks_in_debug() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        set(&store, "db-pass", PLAIN).await;
        let secret = store.get(&name("db-pass"), None).await.unwrap();
        let key = fs::read_to_string(tmp.path().join(KEY_FILE)).unwrap();
        for text in [
            format!("{secret:?}"),
            format!("{:#?}", secret),
            format!("{}", secret.value),
            format!("{:?}", secret.value),
            format!("{store:?}"),
        ] {
            assert!(!text.contains(PLAIN), "{text}");
            assert!(!text.contains(key.trim()), "{text}");
        }
        assert!(format!("{secret:?}").contains("[redacted]"));
    }

    #[tokio::test]
    async fn list_names_excludes_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        for n in ["zeta", "alpha", "mid", "gone"] {
            set(&store, n, PLAIN).await;
        }
        store.delete(&name("gone")).await.unwrap();
        assert_eq!(
            store.list_names().await.unwrap(),
            vec![name("alpha"), name("mid"), name("zeta")]
        );
    }

    #[tokio::test]
    async fn concurrent_writes_keep_every_version() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(open(tmp.path()));
        let mut tasks = Vec::new();
        for i in 0..16 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                store
                    .set(
                        &name("shared"),
                        SecretValue::new(format!("v{i}")),
                        SetOptions::default(),
                    )
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            store.list_versions(&name("shared")).await.unwrap().len(),
            16
        );
    }
}
