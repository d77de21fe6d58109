//! The release's routines in a PostgreSQL migration: each file applied where its routine is not
//! already what the file makes.
//!
//! Re-creating all of a release's routines costs a new session about 0.6 ms each (parse,
//! validation, the catalog rows and their invalidations), most of them changing nothing: a
//! release usually replaces one routine, or none. What a file makes is learnt the first time it
//! is applied (the `routine` lines of the schema the migration committed, named by the file's
//! stem: `app.customer_get.sql` makes `app.customer_get(…)`), and which files a database coming
//! from a given version needed is learnt from the databases before it. A migration applies the
//! files it knows nothing of and the ones databases from its version needed; then, in the schema
//! it reads anyway before committing, every routine it left must be what its file makes,
//! definition hash for definition hash (`pg_get_functiondef`). A routine that is not (changed or
//! dropped by hand, a database unlike the others) has its file applied in the same transaction
//! and the schema read again. So every migration commits exactly the routines applying every
//! file would, and the guesses only decide how often the schema is read twice.
//!
//! What `pg_get_functiondef` does not show is not compared: a file's other statements (a
//! `COMMENT ON FUNCTION`) ride with its `CREATE`, so a file whose only change is such a
//! statement reaches the databases whose routine differs anyway.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::fingerprint::SchemaSnapshot;

/// At most this many files' outcomes and versions' needs are kept (a handful per release).
const KEPT: usize = 1024;

/// What the routine files made, and which ones databases from each version needed, as this
/// process saw them.
#[derive(Debug, Default)]
pub(super) struct Routines {
    /// A file (digest of its stem and text) → the `routine` lines of the schema it made.
    made: Mutex<HashMap<[u8; 32], Vec<String>>>,
    /// A version databases came from → the stems of the files they needed.
    needed: Mutex<HashMap<i32, HashSet<String>>>,
}

fn digest(stem: &str, text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(stem.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.finalize().into()
}

/// The `routine` lines of `schema` for the routine a file named `stem` makes.
fn lines_of(schema: &SchemaSnapshot, stem: &str) -> Vec<String> {
    let prefix = format!("routine {stem}(");
    schema
        .objects
        .iter()
        .filter(|l| l.starts_with(&prefix))
        .cloned()
        .collect()
}

impl Routines {
    /// The files (indexes into `files`, in order) a migration from version `from` applies
    /// before reading its schema: the ones whose outcome is unknown, and the ones databases
    /// from `from` needed.
    pub(super) fn first_pass(&self, files: &[(String, String)], from: i32) -> Vec<usize> {
        let made = self.made.lock().map(|m| m.clone()).unwrap_or_default();
        let needed = self
            .needed
            .lock()
            .ok()
            .and_then(|n| n.get(&from).cloned())
            .unwrap_or_default();
        files
            .iter()
            .enumerate()
            .filter(|(_, (stem, text))| {
                !made.contains_key(&digest(stem, text)) || needed.contains(stem)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The files left out of `applied` whose routine in `schema` is not what the file makes.
    pub(super) fn differing(
        &self,
        files: &[(String, String)],
        applied: &[usize],
        schema: &SchemaSnapshot,
    ) -> Vec<usize> {
        let Ok(made) = self.made.lock() else {
            // Nothing known: every file left out is applied.
            return (0..files.len()).filter(|i| !applied.contains(i)).collect();
        };
        files
            .iter()
            .enumerate()
            .filter(|(i, _)| !applied.contains(i))
            .filter(|(_, (stem, text))| {
                made.get(&digest(stem, text))
                    .is_none_or(|lines| *lines != lines_of(schema, stem))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// After a committed migration from `from`: what each applied file made in `schema`, and
    /// which files (`missed`: left out, then found differing) databases from `from` need.
    pub(super) fn learn(
        &self,
        files: &[(String, String)],
        applied: &[usize],
        missed: &[usize],
        schema: &SchemaSnapshot,
        from: i32,
    ) {
        if let Ok(mut made) = self.made.lock() {
            if made.len() >= KEPT {
                made.clear();
            }
            for &i in applied.iter().chain(missed) {
                let (stem, text) = &files[i];
                let lines = lines_of(schema, stem);
                // A file named otherwise than its routine stays unknown: always applied.
                if !lines.is_empty() {
                    made.insert(digest(stem, text), lines);
                }
            }
        }
        if missed.is_empty() {
            return;
        }
        if let Ok(mut needed) = self.needed.lock() {
            if needed.len() >= KEPT {
                needed.clear();
            }
            let stems = needed.entry(from).or_default();
            stems.extend(missed.iter().map(|&i| files[i].0.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schema(lines: &[&str]) -> SchemaSnapshot {
        SchemaSnapshot {
            fingerprint: String::new(),
            objects: lines.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn files(get: &str) -> Vec<(String, String)> {
        vec![
            ("app.a_get".into(), get.into()),
            ("app.b_put".into(), "create b".into()),
        ]
    }

    #[test]
    fn files_are_applied_when_unknown_needed_or_found_differing() {
        let r = Routines::default();
        let old = files("create a v1");
        // Nothing known: everything applied, and learnt.
        assert_eq!(r.first_pass(&old, 1), [0, 1]);
        let v1 = schema(&[
            "routine app.a_get(x int) aaa",
            "routine app.b_put(y int) bbb",
        ]);
        r.learn(&old, &[0, 1], &[], &v1, 1);
        // A new release replaces app.a_get: its file is unknown, so applied; b is left out
        // and checked.
        let new = files("create a v2");
        assert_eq!(r.first_pass(&new, 1), [0]);
        let v2 = schema(&[
            "routine app.a_get(x int) ccc",
            "routine app.b_put(y int) bbb",
        ]);
        assert!(r.differing(&new, &[0], &v2).is_empty());
        r.learn(&new, &[0], &[], &v2, 1);
        // The next database from version 1: a_get's new file is known now, so left out and
        // found differing (its database still has v1); databases from 1 need it from now on.
        assert!(r.first_pass(&new, 1).is_empty());
        assert_eq!(r.differing(&new, &[], &v1), [0]);
        r.learn(&new, &[], &[0], &v2, 1);
        assert_eq!(r.first_pass(&new, 1), [0]);
        // From another version nothing is assumed.
        assert!(r.first_pass(&new, 2).is_empty());
        // A routine changed or dropped by hand is found.
        let hand = schema(&[
            "routine app.a_get(x int) ccc",
            "routine app.b_put(y int) zzz",
        ]);
        assert_eq!(r.differing(&new, &[0], &hand), [1]);
        let dropped = schema(&["routine app.a_get(x int) ccc"]);
        assert_eq!(r.differing(&new, &[0], &dropped), [1]);
        // So is an overload added beside it.
        let overload = schema(&[
            "routine app.a_get(x int) ccc",
            "routine app.b_put(y int) bbb",
            "routine app.b_put(y text) ddd",
        ]);
        assert_eq!(r.differing(&new, &[0], &overload), [1]);
        // A name prefix of another routine is not that routine.
        let longer = schema(&[
            "routine app.a_get(x int) ccc",
            "routine app.a_get_all() eee",
            "routine app.b_put(y int) bbb",
        ]);
        assert!(r.differing(&new, &[], &longer).is_empty());
    }

    #[test]
    fn a_file_named_otherwise_than_its_routine_is_always_applied() {
        let r = Routines::default();
        let odd = vec![("app.helpers".to_owned(), "create app.x".to_owned())];
        let s = schema(&["routine app.x() aaa"]);
        r.learn(&odd, &[0], &[], &s, 1);
        assert_eq!(r.first_pass(&odd, 1), [0]);
        assert_eq!(r.differing(&odd, &[], &s), [0]);
    }
}
