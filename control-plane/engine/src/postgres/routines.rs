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
//! Only a file that is one `CREATE [OR REPLACE] FUNCTION|PROCEDURE` of the routine its stem
//! names, in PL/pgSQL, is ever left out ([`leavable`], read with the investigation check's
//! PostgreSQL lexer): a file that also creates a helper, drops or comments on something, would
//! change what the `routine` lines of its stem do not show; and a `LANGUAGE sql` body is
//! checked against the tables when it is created, which re-creating it keeps doing (a migration
//! that breaks such a routine is still refused). Every other file is applied every time.

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

/// Whether a migration may leave the file out when its routine is what the file makes: its text
/// is one statement, `CREATE [OR REPLACE] FUNCTION|PROCEDURE <stem>(…)`, in `LANGUAGE plpgsql`
/// (whose body PostgreSQL only parses at `CREATE`, never checks against the tables).
fn leavable(stem: &str, text: &str) -> bool {
    let Ok(statements) = crate::investigation::check::pg_statements(text) else {
        return false;
    };
    let [words] = statements.as_slice() else {
        return false;
    };
    let mut rest = words.iter().map(String::as_str).peekable();
    if rest.next() != Some("create") {
        return false;
    }
    if rest.peek() == Some(&"or") {
        rest.next();
        if rest.next() != Some("replace") {
            return false;
        }
    }
    if !matches!(rest.next(), Some("function" | "procedure")) {
        return false;
    }
    let name: String = rest.by_ref().take_while(|w| *w != "(").collect();
    let words: Vec<&str> = rest.collect();
    name == stem && words.windows(2).any(|w| w == ["language", "plpgsql"])
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
                !made.contains_key(&digest(stem, text))
                    || needed.contains(stem)
                    || !leavable(stem, text)
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

    fn routine(name: &str, body: &str) -> String {
        format!(
            "-- {name}\nCREATE OR REPLACE FUNCTION {name}(x int) RETURNS int\n\
             LANGUAGE plpgsql AS $$ BEGIN RETURN x; -- {body}\n END $$;\n"
        )
    }

    fn files(get: &str) -> Vec<(String, String)> {
        vec![
            ("app.a_get".into(), routine("app.a_get", get)),
            ("app.b_put".into(), routine("app.b_put", "b")),
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
        let odd = vec![("app.helpers".to_owned(), routine("app.x", "x"))];
        let s = schema(&["routine app.x(x int) aaa"]);
        r.learn(&odd, &[0], &[], &s, 1);
        assert_eq!(r.first_pass(&odd, 1), [0]);
        assert_eq!(r.differing(&odd, &[], &s), [0]);
    }

    #[test]
    fn every_routine_file_of_the_embedded_release_may_be_left_out() {
        let release = crate::Release::embedded("postgres").unwrap();
        assert!(!release.procedures.is_empty());
        for (stem, text) in &release.procedures {
            assert!(leavable(stem, text), "{stem}");
        }
    }

    #[test]
    fn only_a_file_that_is_its_one_plpgsql_routine_may_be_left_out() {
        assert!(leavable("app.a_get", &routine("app.a_get", "a")));
        assert!(leavable(
            "app.a_get",
            "CREATE FUNCTION app.a_get() RETURNS int LANGUAGE plpgsql AS $f$ BEGIN \
             CREATE TABLE t (); DROP FUNCTION app.other(); RETURN 1; END $f$"
        ));
        assert!(leavable(
            "app.p",
            "create procedure app.p() language plpgsql as $$ begin end $$"
        ));
        // A second statement: a helper, a comment, a drop.
        for extra in [
            "CREATE FUNCTION app.helper() RETURNS int LANGUAGE sql AS 'SELECT 1';",
            "COMMENT ON FUNCTION app.a_get(int) IS 'x';",
            "DROP FUNCTION app.old();",
        ] {
            let text = format!("{}{extra}", routine("app.a_get", "a"));
            assert!(!leavable("app.a_get", &text), "{extra}");
        }
        // Another routine's name, another language, not a routine, not tokenizable.
        assert!(!leavable("app.a_get", &routine("app.b_put", "b")));
        assert!(!leavable("app.a", &routine("app.a_get", "a")));
        assert!(!leavable(
            "app.s",
            "CREATE FUNCTION app.s() RETURNS int LANGUAGE sql AS 'SELECT 1'"
        ));
        assert!(!leavable("app.v", "CREATE VIEW app.v AS SELECT 1"));
        assert!(!leavable(
            "app.a_get",
            "CREATE FUNCTION app.a_get() AS $$ unterminated"
        ));
    }
}
