//! SQL files embedded at build time (see `build.rs`): `(file stem, contents)` in file-name order.

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

use sha2::{Digest, Sha256};

/// A short fingerprint of a set of SQL assets; a template built from other files gets another name.
pub fn fingerprint(sets: &[&[(&str, &str)]]) -> String {
    let mut h = Sha256::new();
    for set in sets {
        for (name, body) in *set {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(body.as_bytes());
            h.update([0]);
        }
    }
    hex::encode(&h.finalize()[..6])
}

/// The highest `V<n>__` version among migration file stems.
pub fn latest_version(migrations: &[(&str, &str)]) -> i32 {
    migrations
        .iter()
        .filter_map(|(name, _)| name.strip_prefix('V')?.split("__").next()?.parse().ok())
        .max()
        .unwrap_or(0)
}
