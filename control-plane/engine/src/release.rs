//! The tenant schema as a **release**: one engine's migrations (`tenant-schema/<engine>/`) and
//! routines (`procedures/<engine>/`), identified by its version (the newest migration) and a
//! hash of its content. The control plane runs the copy embedded at build time, or the one in
//! `tenant_schema_dir` (a directory laid out like the repository), so a SaaS team ships its own
//! schema without rebuilding us.
//!
//! A release is checked before any server sees it ([`Release::check`]): file names, the
//! platform's own migrations unchanged, and the product's migrations kept inside the platform's
//! rules (history for every business table, no grants, no audit or platform objects, routines
//! only in `app`). A refused release names the file and the rule. These are text rules, a first
//! line; every migration is checked again live on the tenant database (`verify_schema`).

use std::path::Path;

use crate::assets;
use crate::EngineError;

/// One engine's tenant schema release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    /// `postgres` or `sqlserver`.
    pub engine: &'static str,
    /// `(file stem, SQL)` of each migration, in version order.
    pub migrations: Vec<(String, String)>,
    /// `(file stem, SQL)` of each routine, by name.
    pub procedures: Vec<(String, String)>,
    /// The newest migration's version.
    pub version: i32,
    /// A hash of every file's name and content (12 hex digits).
    pub hash: String,
    /// Where it came from: `embedded` or the directory.
    pub source: String,
}

/// The platform's own migrations: a release must carry them unchanged (they hold the audit log,
/// its hash chain, the history machinery and the grants).
const PLATFORM: &[(&str, &[&str])] = &[
    (
        "postgres",
        &[
            "V1__platform",
            "V3__investigation",
            "V4__audit_format_2",
            "V5__history_helper",
            "V6__history_follows_columns",
            "V7__apply_grants_repairs_only",
        ],
    ),
    (
        "sqlserver",
        &[
            "V1__platform",
            "V2__audit_event_hash",
            "V3__audit_events_no_update",
            "V4__audit_events_guard_delete",
            "V5__chain_head_no_delete",
            "V6__audit_record_event",
            "V7__audit_purge_before",
            "V8__audit_verify_chain",
            "V10__grants",
            "V11__audit_record_investigation",
            "V12__audit_events_format_2",
            "V13__audit_hash_field",
            "V14__audit_event_hash_v2",
            "V15__audit_record_event_v2",
            "V16__audit_purge_before_v2",
            "V17__audit_verify_chain_v2",
            "V18__reader_showplan",
        ],
    ),
];

/// The sample product's migrations, released before the text rules existed (V2 builds its history
/// by hand, exactly as `platform.add_history` does; V9 names its history tables itself). Exempt
/// from the product rules while unchanged; a team replacing the sample deletes them.
const GRANDFATHERED: &[&str] = &["V2__accounting", "V9__accounting"];

/// Product migrations take versions from here on; below are the platform's (and the sample's).
pub const FIRST_PRODUCT_VERSION: i32 = 100;

fn owned(set: &[(&str, &str)]) -> Vec<(String, String)> {
    set.iter()
        .map(|(n, s)| ((*n).to_owned(), (*s).to_owned()))
        .collect()
}

/// `(file stem, SQL)` pairs as `build.rs` embeds them.
type Set = &'static [(&'static str, &'static str)];

fn embedded_sets(engine: &str) -> Option<(Set, Set)> {
    match engine {
        "postgres" => Some((assets::POSTGRES_MIGRATIONS, assets::POSTGRES_PROCEDURES)),
        "sqlserver" => Some((assets::SQLSERVER_MIGRATIONS, assets::SQLSERVER_PROCEDURES)),
        _ => None,
    }
}

fn engine_name(engine: &str) -> Result<&'static str, EngineError> {
    match engine {
        "postgres" => Ok("postgres"),
        "sqlserver" => Ok("sqlserver"),
        other => Err(EngineError::Configuration(format!(
            "no tenant schema for engine {other:?}"
        ))),
    }
}

fn version_of(stem: &str) -> Option<i32> {
    stem.strip_prefix('V')?.split_once("__")?.0.parse().ok()
}

/// The `.sql` files of a directory as `(file stem, content)`, sorted by name.
fn read_sql_dir(dir: &Path) -> Result<Vec<(String, String)>, EngineError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        EngineError::Configuration(format!("tenant schema: cannot read {}: {e}", dir.display()))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| EngineError::Configuration(format!("{}: {e}", dir.display())))?
            .path();
        if path.extension().is_none_or(|x| x != "sql") {
            continue;
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| {
                EngineError::Configuration(format!("{}: not a UTF-8 name", path.display()))
            })?
            .to_owned();
        let sql = std::fs::read_to_string(&path)
            .map_err(|e| EngineError::Configuration(format!("{}: {e}", path.display())))?;
        files.push((stem, sql));
    }
    files.sort();
    Ok(files)
}

impl Release {
    fn new(
        engine: &'static str,
        mut migrations: Vec<(String, String)>,
        procedures: Vec<(String, String)>,
        source: String,
    ) -> Release {
        migrations.sort_by_key(|(stem, _)| version_of(stem).unwrap_or(i32::MAX));
        let borrowed = |v: &[(String, String)]| -> Vec<(String, String)> { v.to_vec() };
        let all: Vec<(&str, &str)> = migrations
            .iter()
            .chain(procedures.iter())
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect();
        let hash = assets::fingerprint(&[&all]);
        let version = migrations
            .iter()
            .filter_map(|(stem, _)| version_of(stem))
            .max()
            .unwrap_or(0);
        Release {
            engine,
            migrations: borrowed(&migrations),
            procedures,
            version,
            hash,
            source,
        }
    }

    /// The PostgreSQL release built into this binary.
    pub fn postgres() -> Release {
        Release::new(
            "postgres",
            owned(assets::POSTGRES_MIGRATIONS),
            owned(assets::POSTGRES_PROCEDURES),
            "embedded".into(),
        )
    }

    /// The SQL Server release built into this binary.
    pub fn sqlserver() -> Release {
        Release::new(
            "sqlserver",
            owned(assets::SQLSERVER_MIGRATIONS),
            owned(assets::SQLSERVER_PROCEDURES),
            "embedded".into(),
        )
    }

    /// The release built into this binary for `engine`.
    pub fn embedded(engine: &str) -> Result<Release, EngineError> {
        let name = engine_name(engine)?;
        let (migrations, procedures) = embedded_sets(name).ok_or_else(|| {
            EngineError::Configuration(format!("no tenant schema for engine {engine:?}"))
        })?;
        Ok(Release::new(
            name,
            owned(migrations),
            owned(procedures),
            "embedded".into(),
        ))
    }

    /// The release in `root` (`tenant-schema/<engine>/` and `procedures/<engine>/`), checked.
    pub fn from_dir(root: &Path, engine: &str) -> Result<Release, EngineError> {
        let name = engine_name(engine)?;
        let migrations = read_sql_dir(&root.join("tenant-schema").join(name))?;
        let procedures = read_sql_dir(&root.join("procedures").join(name))?;
        let release = Release::new(name, migrations, procedures, root.display().to_string());
        release.check()?;
        Ok(release)
    }

    /// The release of `engine`: from `dir` when given, else the embedded one.
    pub fn load(dir: Option<&Path>, engine: &str) -> Result<Release, EngineError> {
        match dir {
            Some(dir) => Release::from_dir(dir, engine),
            None => Release::embedded(engine),
        }
    }

    /// Migrations and routines as `(name, SQL)` slices, for code that takes the embedded form.
    pub fn migration_refs(&self) -> Vec<(&str, &str)> {
        self.migrations
            .iter()
            .map(|(n, s)| (n.as_str(), s.as_str()))
            .collect()
    }

    /// Refuses a release that breaks a platform rule, naming the file and the rule.
    pub fn check(&self) -> Result<(), EngineError> {
        let refuse = |file: &str, rule: &str| {
            Err(EngineError::Migration(format!(
                "release {}: {file}: {rule}",
                self.source
            )))
        };
        if self.migrations.is_empty() {
            return refuse(
                &format!("tenant-schema/{}", self.engine),
                "holds no migration",
            );
        }
        let mut versions = std::collections::HashSet::new();
        for (stem, _) in &self.migrations {
            let Some(v) = version_of(stem) else {
                return refuse(
                    &format!("{stem}.sql"),
                    "a migration is named V<version>__<name>.sql",
                );
            };
            if !versions.insert(v) {
                return refuse(&format!("{stem}.sql"), "another migration has its version");
            }
        }
        let (embedded, _) = embedded_sets(self.engine).unwrap_or((&[], &[]));
        let platform = PLATFORM
            .iter()
            .find(|(e, _)| *e == self.engine)
            .map_or(&[][..], |(_, p)| *p);
        for stem in platform {
            if version_of(stem).is_some_and(|v| v > self.version) {
                // An older release, from before this platform migration: it has none after it.
                continue;
            }
            let ours = embedded.iter().find(|(n, _)| n == stem).map(|(_, s)| *s);
            let theirs = self
                .migrations
                .iter()
                .find(|(n, _)| n == stem)
                .map(|(_, s)| s.as_str());
            if theirs.is_none() {
                return refuse(
                    &format!("{stem}.sql"),
                    "a platform migration is missing (copy it unchanged from the control plane's release)",
                );
            }
            if theirs != ours {
                return refuse(
                    &format!("{stem}.sql"),
                    "a platform migration was changed (the audit log, history and grants are the platform's)",
                );
            }
        }
        for (stem, sql) in &self.migrations {
            if platform.contains(&stem.as_str()) {
                continue;
            }
            let sample = embedded.iter().any(|(n, s)| n == stem && s == sql);
            if sample && GRANDFATHERED.contains(&stem.as_str()) {
                continue;
            }
            if version_of(stem).is_some_and(|v| v < FIRST_PRODUCT_VERSION) {
                return refuse(
                    &format!("{stem}.sql"),
                    &format!(
                        "versions below {FIRST_PRODUCT_VERSION} are the platform's; number product migrations from V{FIRST_PRODUCT_VERSION} on"
                    ),
                );
            }
            if let Some(rule) = product_migration_rule(self.engine, sql) {
                return refuse(&format!("{stem}.sql"), &rule);
            }
        }
        for (stem, sql) in &self.procedures {
            if let Some(rule) = routine_rule(stem, sql) {
                return refuse(&format!("procedures/{}/{stem}.sql", self.engine), &rule);
            }
        }
        Ok(())
    }
}

/// The SQL without comments and string literals, upper-cased, whitespace collapsed: what the
/// text rules read.
fn normalise(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                out.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                out.push(' ');
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                out.push_str("''");
            }
            '"' | '[' | ']' => {}
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.extend(c.to_uppercase()),
        }
    }
    out
}

/// The tables a migration creates in `app`.
fn created_app_tables(text: &str) -> Vec<String> {
    let mut tables = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("CREATE TABLE ") {
        rest = &rest[at + "CREATE TABLE ".len()..];
        let name: String = rest
            .trim_start_matches("IF NOT EXISTS ")
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
            .collect();
        if let Some(table) = name.strip_prefix("APP.") {
            tables.push(table.to_owned());
        }
    }
    tables
}

/// The `app` tables an `ALTER TABLE ... ADD` of the (normalised) text gives a column.
fn altered_app_tables(text: &str) -> Vec<String> {
    let mut tables = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("ALTER TABLE ") {
        let stmt: String = rest[at..].chars().take_while(|c| *c != ';').collect();
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let mut i = 2;
        while matches!(words.get(i), Some(&"IF") | Some(&"EXISTS") | Some(&"ONLY")) {
            i += 1;
        }
        if let Some(name) = words.get(i).and_then(|w| w.strip_prefix("APP.")) {
            if words.iter().skip(i + 1).any(|w| *w == "ADD") {
                let name = name.trim_matches('"').to_owned();
                if !tables.contains(&name) {
                    tables.push(name);
                }
            }
        }
        rest = &rest[at + "ALTER TABLE ".len()..];
    }
    tables
}

/// The first platform rule a product migration breaks, if any.
fn product_migration_rule(engine: &str, sql: &str) -> Option<String> {
    let text = normalise(sql);
    if text.contains("GRANT ") || text.contains("REVOKE ") || text.contains("DENY ") {
        return Some(
            "grants belong to the platform (platform.apply_grants gives the app EXECUTE on app \
             routines only); a migration grants nothing"
                .into(),
        );
    }
    for schema in ["AUDIT.", "PLATFORM.", "HISTORY."] {
        for verb in [
            "CREATE ",
            "ALTER ",
            "DROP ",
            "TRUNCATE ",
            "DELETE ",
            "UPDATE ",
            "INSERT ",
        ] {
            // SQL Server's system versioning names its history table, created beside it; on
            // PostgreSQL `platform.add_history` makes history tables, never a migration by hand.
            if engine == "sqlserver" && schema == "HISTORY." && verb == "CREATE " {
                continue;
            }
            let mut rest = text.as_str();
            while let Some(at) = rest.find(verb) {
                let stmt: String = rest[at..].chars().take_while(|c| *c != ';').collect();
                let touches = stmt
                    .split(' ')
                    .take(6)
                    .any(|w| w.starts_with(schema) && !w.starts_with("PLATFORM.ADD_HISTORY"));
                let calls_helper = stmt.contains("PLATFORM.ADD_HISTORY(");
                if touches && !calls_helper {
                    return Some(format!(
                        "a product migration does not change {} objects (they are the \
                         platform's: the audit log, the history machinery, the grants)",
                        schema.trim_end_matches('.').to_lowercase()
                    ));
                }
                rest = &rest[at + verb.len()..];
            }
        }
    }
    if engine == "postgres" {
        for table in altered_app_tables(&text) {
            let synced = text.contains("PLATFORM.SYNC_HISTORY(''")
                && sql
                    .to_lowercase()
                    .contains(&format!("'app.{}'", table.to_lowercase()));
            if !synced {
                return Some(format!(
                    "business table app.{} gains a column its history lacks (call SELECT \
                     platform.sync_history('app.{}') after the ALTER TABLE)",
                    table.to_lowercase(),
                    table.to_lowercase()
                ));
            }
        }
    }
    for table in created_app_tables(&text) {
        let kept = match engine {
            "postgres" => {
                text.contains("PLATFORM.ADD_HISTORY(''")
                    && sql
                        .to_lowercase()
                        .contains(&format!("'app.{}'", table.to_lowercase()))
            }
            _ => text.contains("SYSTEM_VERSIONING = ON") || text.contains("SYSTEM_VERSIONING=ON"),
        };
        if !kept {
            return Some(format!(
                "business table app.{} has no history ({})",
                table.to_lowercase(),
                if engine == "postgres" {
                    "call SELECT platform.add_history('app.<table>') after creating it"
                } else {
                    "create it WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = history.<Table>History))"
                }
            ));
        }
    }
    None
}

/// The first rule a routine file breaks, if any: named `app.<name>`, creating only routines in
/// `app`, granting nothing.
fn routine_rule(stem: &str, sql: &str) -> Option<String> {
    if !stem.starts_with("app.") {
        return Some(
            "a routine file is named app.<name>.sql: only app routines are callable by the app"
                .into(),
        );
    }
    let text = normalise(sql);
    if text.contains("GRANT ") || text.contains("REVOKE ") || text.contains("DENY ") {
        return Some(
            "a routine grants nothing (the platform grants EXECUTE on app routines)".into(),
        );
    }
    for kind in [
        "FUNCTION ",
        "PROCEDURE ",
        "PROC ",
        "TABLE ",
        "VIEW ",
        "TRIGGER ",
    ] {
        for create in [
            "CREATE ",
            "CREATE OR REPLACE ",
            "CREATE OR ALTER ",
            "ALTER ",
        ] {
            let needle = format!("{create}{kind}");
            let mut rest = text.as_str();
            while let Some(at) = rest.find(&needle) {
                rest = &rest[at + needle.len()..];
                if !rest.starts_with("APP.") {
                    return Some(format!(
                        "a routine file creates only routines in app ({}{}...)",
                        needle.to_lowercase(),
                        rest.chars().take(24).collect::<String>().to_lowercase()
                    ));
                }
                if !matches!(kind, "FUNCTION " | "PROCEDURE " | "PROC ") {
                    return Some(format!(
                        "a routine file creates routines only, not a {}",
                        kind.trim().to_lowercase()
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(engine: &str, extra: &[(&str, &str)], procs: &[(&str, &str)]) -> Release {
        let base = Release::embedded(engine).expect("embedded");
        let mut m = base.migrations.clone();
        m.extend(
            extra
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned())),
        );
        let mut p = base.procedures.clone();
        p.extend(
            procs
                .iter()
                .map(|(n, s)| ((*n).to_owned(), (*s).to_owned())),
        );
        Release::new(base.engine, m, p, "test".into())
    }

    #[test]
    fn the_embedded_releases_pass_their_own_rules() {
        for engine in ["postgres", "sqlserver"] {
            let r = Release::embedded(engine).expect("embedded");
            r.check().unwrap_or_else(|e| panic!("{engine}: {e}"));
            assert_eq!(
                r.version,
                assets::latest_version(embedded_sets(engine).expect("known engine").0)
            );
            assert_eq!(r.hash.len(), 12);
        }
    }

    #[test]
    fn a_new_column_and_a_versioned_table_pass() {
        with(
            "postgres",
            &[(
                "V150__notes",
                "ALTER TABLE app.customers ADD COLUMN note text; \
                 SELECT platform.sync_history('app.customers'); \
                 CREATE TABLE app.notes (id uuid PRIMARY KEY, body text, valid_from timestamptz NOT NULL DEFAULT now()); \
                 SELECT platform.add_history('app.notes');",
            )],
            &[],
        )
        .check()
        .expect("allowed");
        with(
            "sqlserver",
            &[(
                "V150__notes",
                "CREATE TABLE app.Notes (Id int PRIMARY KEY, ValidFrom datetime2 GENERATED ALWAYS AS ROW START, \
                 ValidTo datetime2 GENERATED ALWAYS AS ROW END, PERIOD FOR SYSTEM_TIME (ValidFrom, ValidTo)) \
                 WITH (SYSTEM_VERSIONING = ON (HISTORY_TABLE = history.NotesHistory));",
            )],
            &[],
        )
        .check()
        .expect("allowed");
    }

    #[test]
    fn each_broken_invariant_is_refused_naming_the_file_and_the_rule() {
        // (engine, extra migrations, extra routines, the file named, the rule named)
        type Case<'a> = (&'a str, Set, Set, &'a str, &'a str);
        let cases: &[Case] = &[
            ("postgres", &[("V150__bare", "CREATE TABLE app.bare (id int);")], &[], "V150__bare.sql", "no history"),
            ("postgres", &[("V150__col", "ALTER TABLE app.customers ADD COLUMN note text;")], &[], "V150__col.sql", "history lacks"),
            ("postgres", &[("V150__grant", "GRANT SELECT ON app.customers TO PUBLIC;")], &[], "V150__grant.sql", "grants belong"),
            ("postgres", &[("V150__audit", "ALTER TABLE audit.audit_events DROP COLUMN hash;")], &[], "V150__audit.sql", "audit objects"),
            ("postgres", &[("V150__trg", "DROP TRIGGER customers_keep_history ON app.customers; DROP FUNCTION platform.keep_history();")], &[], "V150__trg.sql", "platform objects"),
            ("postgres", &[], &[("platform.leak", "CREATE FUNCTION platform.leak() RETURNS int LANGUAGE sql AS 'select 1';")], "platform.leak.sql", "app.<name>"),
            ("postgres", &[], &[("app.sneaky", "CREATE OR REPLACE FUNCTION public.sneaky() RETURNS int LANGUAGE sql AS 'select 1';")], "app.sneaky.sql", "only routines in app"),
            ("sqlserver", &[("V150__bare", "CREATE TABLE app.Bare (Id int);")], &[], "V150__bare.sql", "no history"),
            ("sqlserver", &[("V150__deny", "DENY SELECT ON app.Customers TO app_rw;")], &[], "V150__deny.sql", "grants belong"),
            ("sqlserver", &[("V150__audit", "DROP TRIGGER audit.AuditEventsNoUpdate;")], &[], "V150__audit.sql", "audit objects"),
            ("postgres", &[("X__bad", "SELECT 1;")], &[], "X__bad.sql", "V<version>__<name>"),
            ("postgres", &[("V60__low", "ALTER TABLE app.customers ADD COLUMN n int;")], &[], "V60__low.sql", "below 100"),
        ];
        for (engine, migrations, procs, file, rule) in cases {
            let e = with(engine, migrations, procs).check().expect_err(file);
            let msg = e.to_string();
            assert!(
                msg.contains(file) && msg.contains(rule),
                "{engine} {file}: {msg}"
            );
        }
    }

    #[test]
    fn a_changed_platform_migration_is_refused() {
        let mut r = Release::embedded("postgres").expect("embedded");
        r.migrations[0]
            .1
            .push_str("\nDROP TRIGGER audit_events_no_update ON audit.audit_events;");
        let e = r.check().expect_err("changed");
        assert!(e.to_string().contains("V1__platform.sql"), "{e}");
        assert!(
            e.to_string().contains("platform migration was changed"),
            "{e}"
        );
    }

    #[test]
    fn a_release_is_read_from_a_directory_laid_out_like_the_repository() {
        let dir = std::env::temp_dir().join(format!("tcp-release-{}", std::process::id()));
        let base = Release::embedded("postgres").expect("embedded");
        for (sub, files) in [
            ("tenant-schema", &base.migrations),
            ("procedures", &base.procedures),
        ] {
            let d = dir.join(sub).join("postgres");
            std::fs::create_dir_all(&d).expect("mkdir");
            for (stem, sql) in files.iter() {
                std::fs::write(d.join(format!("{stem}.sql")), sql).expect("write");
            }
        }
        let read = Release::from_dir(&dir, "postgres").expect("read");
        assert_eq!((read.version, &read.hash), (base.version, &base.hash));
        std::fs::write(
            dir.join("tenant-schema/postgres/V100__extra.sql"),
            "ALTER TABLE app.customers ADD COLUMN note text; SELECT platform.sync_history('app.customers');",
        )
        .expect("write");
        let newer = Release::from_dir(&dir, "postgres").expect("read");
        assert_eq!(newer.version, 100);
        assert_ne!(newer.hash, base.hash);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
