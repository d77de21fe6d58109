//! Layer: foundation. Key files under the data directory: random bytes, base64 text, mode 0600.
//!
//! A missing key is created atomically: the bytes are written and synced to a temporary file in
//! the same directory (created 0600), which is then linked to the final name. `link(2)`, unlike
//! `rename(2)`, fails when the name exists, so two processes starting at once on one data
//! directory both end up with the key that was published first, and a crash leaves either no
//! key or a complete one, never an empty file.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;

/// A key file that could not be read or written. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key file {path}: {detail}")]
pub struct KeyFileError {
    /// The file.
    pub path: String,
    /// What went wrong.
    pub detail: String,
}

impl KeyFileError {
    fn new(path: &Path, detail: impl Into<String>) -> Self {
        KeyFileError {
            path: path.display().to_string(),
            detail: detail.into(),
        }
    }
}

/// Reads the key at `path`, creating it with `len` random bytes if it does not exist.
pub fn load_or_create(path: &Path, len: usize) -> Result<Vec<u8>, KeyFileError> {
    if !path.exists() {
        create(path, len)?;
    }
    read(path, len)
}

/// Reads an existing key of at least `min_len` bytes.
pub fn read(path: &Path, min_len: usize) -> Result<Vec<u8>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyFileError::new(path, e.to_string()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| KeyFileError::new(path, "not base64"))?;
    if bytes.len() < min_len {
        return Err(KeyFileError::new(
            path,
            format!("shorter than {min_len} bytes"),
        ));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                           "key file is readable by others; chmod 600 it");
        }
    }
    Ok(bytes)
}

fn create(path: &Path, len: usize) -> Result<(), KeyFileError> {
    let err = |detail: String| KeyFileError::new(path, detail);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    let mut bytes = vec![0u8; len];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let temp = temp_path(path);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        f.write_all(encoded.as_bytes())?;
        f.sync_all()
    })();
    let published = written.and_then(|()| match std::fs::hard_link(&temp, path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&temp);
    published.map_err(|e| err(format!("cannot create it: {e}")))?;
    // The new name must survive a crash too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp-{}-{:016x}",
        std::process::id(),
        rand::rngs::OsRng.next_u64()
    ));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("k.key");
        let a = load_or_create(&path, 32).unwrap();
        assert_eq!(a.len(), 32);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path, 32).unwrap(), a);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("k.key")]);
    }

    #[test]
    fn concurrent_creators_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path, 32).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn damaged_files_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        std::fs::write(&path, "").unwrap();
        let e = read(&path, 32).unwrap_err();
        assert!(e.detail.contains("shorter than 32"), "{e}");
        std::fs::write(&path, "s3cr3t!!").unwrap();
        let e = load_or_create(&path, 32).unwrap_err();
        assert_eq!(e.detail, "not base64");
        assert!(!e.to_string().contains("s3cr3t"));
        assert!(read(&dir.path().join("missing"), 32).is_err());
    }
}
