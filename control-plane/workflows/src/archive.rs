//! The archive store: where what outlives a tenant database is kept (its audit archive, written
//! by offboarding before the drop). Objects are written once and never changed or removed by the
//! control plane; a retried write of the same bytes succeeds, different bytes under the same key
//! are refused.
//!
//! [`LocalArchive`] keeps them as read-only files under a directory (development and `make
//! run`: `<data_dir>/archive`). [`blob::BlobArchive`] keeps them as block blobs in an Azure Blob
//! Storage container, which production puts under a locked time-based retention policy (WORM),
//! so that nobody, the control plane included, can change or remove them before it ends.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub mod blob;

/// What went wrong with the archive store.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveStoreError {
    /// The key is not one the control plane makes.
    #[error("invalid archive key {0:?}")]
    Key(String),
    /// An object with other bytes is already under the key (objects are written once).
    #[error("archive object {key} already exists with other content; objects are never replaced")]
    Exists {
        /// The key.
        key: String,
    },
    /// The store did not answer, or answered that it cannot now (5xx, throttling), after the
    /// client's own retries: an outage, which a step waits out.
    #[error("archive store {location} is unavailable: {detail}")]
    Unavailable {
        /// Where.
        location: String,
        /// Why.
        detail: String,
    },
    /// The store could not be read or written.
    #[error("archive store {location}: {detail}")]
    Io {
        /// Where.
        location: String,
        /// Why.
        detail: String,
    },
}

impl From<ArchiveStoreError> for crate::StepError {
    fn from(e: ArchiveStoreError) -> Self {
        // An outage is waited for; a store that refuses (a missing role, a full disk) is tried
        // a few times; a key we never make or an object with other bytes will not change.
        let waits = matches!(e, ArchiveStoreError::Unavailable { .. });
        let transient = waits || matches!(e, ArchiveStoreError::Io { .. });
        crate::StepError {
            message: e.to_string(),
            transient,
            waits,
            retry_after: None,
        }
    }
}

/// Where archives are kept.
#[async_trait]
pub trait ArchiveStore: Send + Sync {
    /// The backend (`local`, `azure_blob`).
    fn backend(&self) -> &'static str;
    /// Where, for certificates and errors (a directory, a container URL); never a secret.
    fn location(&self) -> String;
    /// Writes `bytes` under `key` unless an object is there: the same bytes there already are
    /// success (a retried step), other bytes [`ArchiveStoreError::Exists`].
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ArchiveStoreError>;
    /// The object under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveStoreError>;
}

/// Keys are relative paths of lower-case letters, digits, `-`, `_` and `.`, in segments that
/// are neither empty nor `.`/`..`.
pub(crate) fn check_key(key: &str) -> Result<(), ArchiveStoreError> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(ArchiveStoreError::Key(key.to_owned()))
    }
}

/// Read-only files under a directory.
#[derive(Clone, Debug)]
pub struct LocalArchive {
    root: PathBuf,
}

impl LocalArchive {
    /// A store under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalArchive { root: root.into() }
    }

    fn io(&self, e: impl std::fmt::Display) -> ArchiveStoreError {
        ArchiveStoreError::Io {
            location: self.location(),
            detail: e.to_string(),
        }
    }
}

/// Writes `bytes` to a new file beside `path` and links it in place: the link fails when an
/// object is already there, so no write ever replaces one. The file is flushed to disk and made
/// read-only for its owner alone (tenants' logs and data: 0400, directories 0700), and every
/// directory from its own up to `root` is flushed, before this returns.
fn write_once(root: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o400))?;
    let created = match std::fs::hard_link(tmp.path(), path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    let mut synced = Some(dir);
    while let Some(d) = synced {
        std::fs::File::open(d)?.sync_all()?;
        synced = d.parent().filter(|_| d != root);
    }
    Ok(created)
}

#[async_trait]
impl ArchiveStore for LocalArchive {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn location(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), ArchiveStoreError> {
        check_key(key)?;
        let (root, path) = (self.root.clone(), self.root.join(key));
        let data = bytes.to_vec();
        let created = tokio::task::spawn_blocking(move || write_once(&root, &path, &data))
            .await
            .map_err(|e| self.io(e))?
            .map_err(|e| self.io(e))?;
        if created {
            return Ok(());
        }
        match self.get(key).await? {
            Some(existing) if existing == bytes => Ok(()),
            _ => Err(ArchiveStoreError::Exists {
                key: key.to_owned(),
            }),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ArchiveStoreError> {
        check_key(key)?;
        match tokio::fs::read(self.root.join(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn objects_are_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalArchive::new(dir.path());
        store.put("tenants/a/audit-1.json", b"one").await.unwrap();
        // The same bytes again: a retried step.
        store.put("tenants/a/audit-1.json", b"one").await.unwrap();
        let err = store
            .put("tenants/a/audit-1.json", b"two")
            .await
            .unwrap_err();
        assert!(matches!(err, ArchiveStoreError::Exists { .. }), "{err}");
        assert_eq!(
            store.get("tenants/a/audit-1.json").await.unwrap().unwrap(),
            b"one"
        );
        assert!(store.get("tenants/a/none.json").await.unwrap().is_none());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("tenants/a/audit-1.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let dir_mode = std::fs::metadata(dir.path().join("tenants/a"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary file is left beside it.
        assert_eq!(
            std::fs::read_dir(dir.path().join("tenants/a"))
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn keys_cannot_leave_the_store() {
        let store = LocalArchive::new("/nonexistent");
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "A.json",
            "a/./b",
            "a b",
        ] {
            assert!(
                matches!(store.get(bad).await, Err(ArchiveStoreError::Key(_))),
                "{bad:?}"
            );
        }
    }
}
