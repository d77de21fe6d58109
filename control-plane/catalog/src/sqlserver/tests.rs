//! Tests of what can be checked without a SQL Server: name quoting, error mapping, the SQL the
//! Rust side sends, and the structure of the migrations (refinery's tiberius runner sends each
//! file as one batch, so the rules of a T-SQL batch apply per file). The same integration suite
//! as for PostgreSQL runs against a real server when `MSSQL_URL` is set.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::setup::{migrations, quote_name};
use super::*;

fn server_error(number: u32, message: &str) -> MssqlError {
    MssqlError::Server {
        number,
        message: message.to_owned(),
    }
}

fn duplicate(number: u32, index: &str) -> MssqlError {
    server_error(
        number,
        &format!(
            "Cannot insert duplicate key row in object 'catalog.Tenants' with unique index \
             '{index}'. The duplicate key value is (acme)."
        ),
    )
}

#[test]
fn quote_name_brackets_and_doubles_closing_brackets() {
    assert_eq!(quote_name("tenant_catalog"), "[tenant_catalog]");
    assert_eq!(quote_name("a]b"), "[a]]b]");
    assert_eq!(
        quote_name("x]]; DROP DATABASE y; --"),
        "[x]]]]; DROP DATABASE y; --]"
    );
}

#[test]
fn catalog_database_defaults_and_refuses_system_or_invalid_names() {
    let base = Target::sql_login("h", 1433, "sa", secrets::SecretValue::new("pw"));
    assert_eq!(catalog_database(&base).unwrap(), "tenant_catalog");
    assert_eq!(
        catalog_database(&base.with_database("cp_catalog")).unwrap(),
        "cp_catalog"
    );
    for bad in ["master", "MSDB", "tempdb", "model", "", "  ", "a\0b"] {
        let e = catalog_database(&base.with_database(bad)).unwrap_err();
        assert!(matches!(e, CatalogError::Migration(_)), "{bad:?}: {e}");
    }
    assert!(catalog_database(&base.with_database("x".repeat(128))).is_ok());
    assert!(catalog_database(&base.with_database("x".repeat(129))).is_err());
}

#[test]
fn ttl_is_whole_milliseconds_capped_to_an_int() {
    assert_eq!(ttl_millis(Duration::from_secs(30)), 30_000);
    assert_eq!(ttl_millis(Duration::from_micros(1_500)), 1);
    assert_eq!(ttl_millis(Duration::from_secs(u64::MAX)), i32::MAX);
}

#[test]
fn duplicate_keys_are_told_apart_by_index_name() {
    assert_eq!(
        refusal(&duplicate(2601, SLUG_CLAIMED_INDEX)),
        Some(Refusal::SlugClaimed)
    );
    assert_eq!(
        refusal(&duplicate(2627, SLUG_CLAIMED_INDEX)),
        Some(Refusal::SlugClaimed)
    );
    assert_eq!(
        refusal(&duplicate(2601, ONE_ACTIVE_INDEX)),
        Some(Refusal::OperationActive)
    );
    // Another index, or a name that merely starts like ours, is no refusal of ours.
    assert_eq!(refusal(&duplicate(2601, "PK_Tenants")), None);
    assert_eq!(refusal(&duplicate(2601, "UX_Tenants_SlugClaimedOld")), None);
    // The index name alone, under another error number, means nothing.
    assert_eq!(refusal(&duplicate(547, SLUG_CLAIMED_INDEX)), None);
}

#[test]
fn thrown_numbers_map_to_refusals() {
    assert_eq!(
        refusal(&server_error(50404, "tenant not found")),
        Some(Refusal::TenantNotFound)
    );
    assert_eq!(
        refusal(&server_error(50410, "lease lost")),
        Some(Refusal::LeaseLost)
    );
    assert_eq!(refusal(&server_error(1205, "deadlock")), None);
    assert_eq!(refusal(&MssqlError::Driver("reset".into())), None);
    assert_eq!(refusal(&MssqlError::PoolTimeout), None);
}

#[test]
fn lease_lost_is_mapped_and_other_errors_pass_through() {
    let lease = Lease {
        operation: Uuid::new_v4(),
        owner: "node-a".into(),
    };
    let lost = fenced::<()>(Err(server_error(50410, "lease lost").into()), &lease);
    assert!(
        matches!(lost, Err(CatalogError::LeaseLost { operation }) if operation == lease.operation)
    );
    let other = fenced::<()>(Err(server_error(547, "conflict").into()), &lease);
    assert!(matches!(other, Err(CatalogError::SqlServer(_))));
    assert!(fenced(Ok(7), &lease).is_ok());
}

#[test]
fn only_deadlock_victims_are_retried() {
    assert!(is_deadlock(&server_error(1205, "victim").into()));
    assert!(!is_deadlock(&server_error(2601, "dup").into()));
    assert!(!is_deadlock(&CatalogError::Pool("timeout".into())));
}

#[test]
fn step_changes_carry_their_value_as_the_fourth_parameter() {
    let cases = [
        (StepChange::Started, false),
        (StepChange::Output(json!({"db": "tenant_acme"})), true),
        (StepChange::Succeeded, false),
        (StepChange::SucceededWith(json!({"version": 100})), true),
        (StepChange::Failed("boom".into()), true),
        (StepChange::Error("again".into()), true),
        (StepChange::UndoStarted, false),
        (StepChange::Undone, false),
    ];
    for (change, has_value) in cases {
        let (set, value) = step_change_sql(change.clone());
        assert_eq!(set.contains("@P4"), has_value, "{change:?}");
        assert_eq!(value.is_some(), has_value, "{change:?}");
    }
    let (_, output) = step_change_sql(StepChange::Output(json!({"db": "tenant_acme"})));
    assert_eq!(output.as_deref(), Some(r#"{"db":"tenant_acme"}"#));
}

#[test]
fn steps_travel_as_a_json_array_in_order() {
    let op = NewOperation {
        kind: OperationKind::ONBOARD,
        steps: vec!["create_database", "create_principals"],
        params: json!({}),
        actor: "alice".into(),
        request_id: None,
        allowed_from: &[],
        parent: None,
        held_by: None,
    };
    assert_eq!(
        steps_json(&op),
        r#"["create_database","create_principals"]"#
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&operation_created_detail(&op)).unwrap(),
        json!({"kind": "onboard", "params": {}})
    );
}

#[tokio::test]
async fn debug_shows_the_database_but_no_secret() {
    let target = Target::sql_login("h", 1433, "sa", secrets::SecretValue::new("hunter2-secret"))
        .with_database("tenant_catalog");
    let catalog = SqlServerCatalog {
        pool: mssql::lazy_pool(target, PoolOptions::default()),
        database: "tenant_catalog".into(),
        max_size: 4,
        fingerprints: Default::default(),
    };
    let shown = format!("{catalog:?}");
    assert!(shown.contains("tenant_catalog"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

// --- migrations -------------------------------------------------------------------------------

fn migration_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlserver")
}

/// `(version, file name, text)` of every migration file, by version.
fn migration_files() -> Vec<(u32, String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(migration_dir())
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let (version, rest) = name
                .strip_prefix('V')
                .and_then(|n| n.split_once("__"))
                .unwrap_or_else(|| panic!("{name} is not named V<n>__<name>.sql"));
            let stem = rest
                .strip_suffix(".sql")
                .unwrap_or_else(|| panic!("{name} is not a .sql file"));
            assert!(
                !stem.is_empty()
                    && stem
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{name}: use lowercase snake_case after the version"
            );
            let version: u32 = version.parse().unwrap();
            (version, name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort_by_key(|f| f.0);
    files
}

/// The text without `--` line comments and `/* */` block comments (none of the files puts either
/// marker inside a string literal, which this does not understand).
fn strip_comments(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Upper-cased code with whitespace runs collapsed to one space.
fn normalized(sql: &str) -> String {
    strip_comments(sql)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

const ROUTINES: [&str; 5] = [
    "CREATE PROCEDURE ",
    "CREATE PROC ",
    "CREATE FUNCTION ",
    "CREATE TRIGGER ",
    "CREATE VIEW ",
];

#[test]
fn migration_versions_are_contiguous_from_one() {
    let versions: Vec<u32> = migration_files().iter().map(|f| f.0).collect();
    assert!(!versions.is_empty());
    assert_eq!(versions, (1..=versions.len() as u32).collect::<Vec<_>>());
}

#[test]
fn refinery_embeds_every_migration() {
    let runner = migrations::migrations::runner();
    let mut embedded: Vec<i64> = runner
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .collect();
    embedded.sort_unstable();
    let on_disk: Vec<i64> = migration_files().iter().map(|f| i64::from(f.0)).collect();
    assert_eq!(embedded, on_disk);
}

#[test]
fn migrations_are_single_batches() {
    for (_, name, sql) in migration_files() {
        let code = strip_comments(&sql);
        assert!(
            !code
                .lines()
                .any(|l| l.trim().eq_ignore_ascii_case("go") || l.trim().starts_with("GO ")),
            "{name}: GO is a client-side separator; the runner sends the file as one batch"
        );
        let upper = normalized(&sql);
        assert!(
            !upper.contains("CREATE DATABASE") && !upper.contains("ALTER DATABASE"),
            "{name}: databases are created by the control plane, outside any transaction"
        );
        assert!(
            !upper.contains("BEGIN TRAN T1") && !upper.contains("COMMIT TRAN T1"),
            "{name}: the runner owns the migration's transaction"
        );
        // CREATE SCHEMA must be the first statement of its batch unless run through EXEC.
        for (i, _) in upper.match_indices("CREATE SCHEMA") {
            assert!(
                upper[..i].ends_with("EXEC (N'"),
                "{name}: wrap CREATE SCHEMA in EXEC (N'...')"
            );
        }
        let routines: usize = ROUTINES.iter().map(|r| upper.matches(r).count()).sum();
        assert!(routines <= 1, "{name}: one routine per file");
        if routines == 1 {
            assert!(
                ROUTINES.iter().any(|r| upper.starts_with(r)),
                "{name}: a CREATE PROCEDURE / FUNCTION / TRIGGER must be the file's only statement"
            );
        }
    }
}

#[test]
fn every_routine_lives_in_schema_catalog() {
    for (_, name, sql) in migration_files() {
        let upper = normalized(&sql);
        for r in ROUTINES {
            if let Some(rest) = upper.strip_prefix(r) {
                assert!(rest.starts_with("CATALOG."), "{name}: {r}outside catalog");
            }
        }
    }
}

fn all_migrations() -> String {
    migration_files()
        .into_iter()
        .map(|f| f.2)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_procedure_called_from_rust_is_created_by_a_migration() {
    let source = include_str!("../sqlserver.rs");
    let migrations = normalized(&all_migrations());
    let called: BTreeSet<&str> = source
        .match_indices("EXEC catalog.")
        .map(|(i, m)| {
            let rest = &source[i + m.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(called.len() >= 6, "{called:?}");
    for proc_name in called {
        let create = format!("CREATE PROCEDURE CATALOG.{}", proc_name.to_uppercase());
        assert!(
            migrations.contains(&create),
            "no migration creates catalog.{proc_name}"
        );
    }
}

#[test]
fn the_indexes_and_numbers_rust_relies_on_are_in_the_migrations() {
    let migrations = all_migrations();
    for index in [SLUG_CLAIMED_INDEX, ONE_ACTIVE_INDEX] {
        assert!(
            migrations.contains(&format!("CREATE UNIQUE INDEX {index} ")),
            "{index} missing"
        );
    }
    for n in [number::TENANT_NOT_FOUND, number::LEASE_LOST] {
        assert!(
            migrations.contains(&format!("THROW {n},")),
            "THROW {n} missing"
        );
    }
}

#[test]
fn every_thrown_number_is_documented_in_the_first_migration() {
    let files = migration_files();
    let header = &files[0].2;
    for (_, name, sql) in &files {
        for (i, _) in sql.match_indices("THROW 5") {
            let n = &sql[i + "THROW ".len()..i + "THROW ".len() + 5];
            assert!(
                header.contains(&format!("--   {n}")) || header.contains(&format!("  {n}  ")),
                "{name}: THROW {n} is not listed in V1's header"
            );
        }
    }
}

// --- the warm pool and the server registry's pool statements ----------------------------------

/// The text with whitespace runs collapsed, for substring checks across line breaks.
fn flat(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn the_pool_claim_returns_an_earlier_claim_before_taking_a_row() {
    let claim = flat(pool::sql::CLAIM);
    let earlier = claim
        .find("IF EXISTS (SELECT 1 FROM catalog.PoolDatabases WHERE TenantId = @P3)")
        .unwrap();
    let update = claim.find("UPDATE Oldest").unwrap();
    assert!(earlier < update, "{claim}");
    // The earlier claim is returned as it is, and only otherwise is a row taken.
    assert!(
        claim[..update].contains("FROM catalog.PoolDatabases WHERE TenantId = @P3; ELSE BEGIN"),
        "{claim}"
    );
}

#[test]
fn the_pool_claim_takes_the_oldest_ready_row_skipping_locked_ones_without_waiting() {
    let claim = flat(pool::sql::CLAIM);
    // A CTE must not follow an unterminated statement: it opens the ELSE block.
    assert!(
        claim.contains("ELSE BEGIN WITH Oldest AS ( SELECT TOP (1) Id, Server,"),
        "{claim}"
    );
    assert!(
        claim.contains("FROM catalog.PoolDatabases WITH (UPDLOCK, READPAST, ROWLOCK)"),
        "{claim}"
    );
    assert!(
        claim.contains(
            "WHERE Server = @P1 AND Generation = @P2 AND State = N'ready' ORDER BY CreatedAt)"
        ),
        "{claim}"
    );
    assert!(
        claim.contains(
            "UPDATE Oldest SET State = N'claimed', TenantId = @P3, UpdatedAt = SYSUTCDATETIME() \
             OUTPUT inserted.Id, inserted.Server, inserted.DatabaseName, inserted.Generation, \
             inserted.State, inserted.TenantId, inserted.Node, inserted.CreatedAt, \
             inserted.UpdatedAt; END;"
        ),
        "{claim}"
    );
    // One table hint, on the read the UPDATE goes through; nothing that waits for another
    // claim's rows (no HOLDLOCK / SERIALIZABLE / TABLOCK / XLOCK, no explicit transaction).
    assert_eq!(claim.matches("WITH (").count(), 1, "{claim}");
    for blocking in ["HOLDLOCK", "SERIALIZABLE", "TABLOCK", "XLOCK", "BEGIN TRAN"] {
        assert!(!claim.contains(blocking), "{blocking}: {claim}");
    }
}

#[test]
fn pool_statements_read_the_columns_the_row_decoder_expects() {
    let columns = "Id, Server, DatabaseName, Generation, State, TenantId, Node, CreatedAt, \
                   UpdatedAt";
    let inserted = "inserted.Id, inserted.Server, inserted.DatabaseName, inserted.Generation, \
                    inserted.State, inserted.TenantId, inserted.Node, inserted.CreatedAt, \
                    inserted.UpdatedAt";
    assert!(flat(pool::sql::ADD).contains(&format!("OUTPUT {inserted} VALUES")));
    assert!(pool::sql::ADD.contains("N'creating'"));
    assert!(flat(pool::sql::CLAIM_OF).starts_with(&format!("SELECT {columns} FROM")));
    assert!(flat(pool::sql::LIST).starts_with(&format!("SELECT {columns} FROM")));
    assert!(flat(pool::sql::LIST).contains("ORDER BY CreatedAt, Id;"));
    // A transition is fenced on the state it moves from.
    assert!(flat(pool::sql::TRANSITION).contains("WHERE Id = @P1 AND State = @P2;"));
}

#[test]
fn only_a_duplicate_on_the_one_per_tenant_index_is_a_second_claim() {
    let dup = |number: u32, index: &str| -> CatalogError {
        server_error(
            number,
            &format!(
                "Cannot insert duplicate key row in object 'catalog.PoolDatabases' with unique \
                 index '{index}'. The duplicate key value is (x)."
            ),
        )
        .into()
    };
    assert!(pool::is_second_claim(&dup(2601, "UX_PoolDatabases_Tenant")));
    assert!(!pool::is_second_claim(&dup(
        2627,
        "UQ_PoolDatabases_DatabaseName"
    )));
    assert!(!pool::is_second_claim(&dup(
        2601,
        "UX_PoolDatabases_TenantOld"
    )));
    assert!(!pool::is_second_claim(&dup(547, "UX_PoolDatabases_Tenant")));
    assert!(!pool::is_second_claim(&CatalogError::Pool(
        "timeout".into()
    )));
}

#[tokio::test]
async fn pool_transitions_never_claim() {
    // Refused before any connection is made (the pool below points nowhere).
    let target = Target::sql_login("h", 1433, "sa", secrets::SecretValue::new("pw"));
    let catalog = SqlServerCatalog {
        pool: mssql::lazy_pool(target, PoolOptions::default()),
        database: "tenant_catalog".into(),
        max_size: 1,
        fingerprints: Default::default(),
    };
    for (from, to) in [
        (PoolState::Ready, PoolState::Claimed),
        (PoolState::Claimed, PoolState::Retiring),
    ] {
        let e = catalog
            .pool_transition(Uuid::new_v4(), from, to)
            .await
            .unwrap_err();
        assert!(
            matches!(e, CatalogError::Corrupt(_)),
            "{from:?} -> {to:?}: {e}"
        );
    }
}

#[test]
fn deleting_a_server_refuses_while_it_holds_pooled_databases_under_the_same_lock() {
    let delete = flat(servers::sql::DELETE);
    let lock = delete
        .find("FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P1")
        .unwrap();
    let tenants = delete.find("THROW 50604").unwrap();
    let pooled = delete
        .find(
            "IF EXISTS (SELECT 1 FROM catalog.PoolDatabases WHERE Server = @P1) \
             THROW 50605,",
        )
        .unwrap();
    let gone = delete
        .find("DELETE FROM catalog.Servers WHERE Name = @P1")
        .unwrap();
    assert!(
        lock < tenants && tenants < pooled && pooled < gone,
        "{delete}"
    );
}

#[test]
fn the_pool_size_is_read_inserted_by_create_set_with_an_audit_row_and_left_alone_by_upsert() {
    assert!(servers::sql::SELECT.contains("s.PoolSize"));
    let create = flat(servers::sql::CREATE);
    assert!(
        create.contains(
            "Labels, PoolSize, ElasticPool, ElasticPoolId) \
             VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P11, @P12);"
        ),
        "{create}"
    );
    assert!(create.contains("@Actor = @P9,") && create.contains("@Detail = @P10;"));
    // The elastic pool (azure_sql) and its resource id are written by both, and a change of
    // either is a change.
    assert!(servers::sql::SELECT.contains("s.ElasticPool, s.ElasticPoolId"));
    let upsert = flat(servers::sql::UPSERT);
    assert!(
        upsert.contains("ElasticPool = @P11, ElasticPoolId = @P12,"),
        "{upsert}"
    );
    assert!(
        upsert.contains("ISNULL(ElasticPool, N'') = ISNULL(@P11, N'')")
            && upsert.contains("ISNULL(ElasticPoolId, N'') = ISNULL(@P12, N'')"),
        "{upsert}"
    );
    assert!(
        upsert.contains(
            "Labels, ElasticPool, ElasticPoolId) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P11, @P12);"
        ),
        "{upsert}"
    );
    assert!(!servers::sql::UPSERT.contains("PoolSize"));
    let set = flat(servers::sql::SET_POOL_SIZE);
    assert!(
        set.contains("UPDATE catalog.Servers SET PoolSize = @P2,"),
        "{set}"
    );
    // NULL to a value, a value to NULL and a new value all change it; the same one does not.
    assert!(set.contains("PoolSize <> @P2"), "{set}");
    assert!(
        set.contains("PoolSize IS NULL AND @P2 IS NOT NULL"),
        "{set}"
    );
    assert!(
        set.contains("PoolSize IS NOT NULL AND @P2 IS NULL"),
        "{set}"
    );
    assert!(
        set.contains("IF @@ROWCOUNT > 0 EXEC catalog.AuditAppend @Actor = @P3,"),
        "{set}"
    );
    assert!(set.contains("@Action = N'server.pool_size', @Detail = @P4;"));
}

#[test]
fn the_pool_indexes_rust_relies_on_are_in_the_migrations() {
    let migrations = all_migrations();
    assert!(migrations.contains(&format!(
        "CREATE UNIQUE INDEX {} ",
        pool::ONE_PER_TENANT_INDEX
    )));
    assert!(migrations.contains("CREATE INDEX IX_PoolDatabases_Ready "));
    assert!(migrations.contains("CONSTRAINT FK_PoolDatabases_Servers "));
    // The tenant list's order, newest first then by id, has an index of its own.
    assert!(tenants_page_statement().contains("ORDER BY t.CreatedAt DESC, t.Id DESC"));
    assert!(migrations.contains("ON catalog.Tenants (CreatedAt DESC, Id DESC)"));
}

#[test]
fn a_held_operation_travels_with_its_owner_and_ttl() {
    let mut op = NewOperation {
        kind: OperationKind::ROTATE,
        steps: vec![],
        params: json!({}),
        actor: "alice".into(),
        request_id: None,
        allowed_from: &[],
        parent: None,
        held_by: None,
    };
    assert_eq!((held_owner(&op), held_millis(&op)), (None, 0));
    op.held_by = Some(("node-a".into(), Duration::from_secs(30)));
    assert_eq!(
        (held_owner(&op), held_millis(&op)),
        (Some("node-a"), 30_000)
    );
    // Both batches give the operation they create the lease, inside their transaction.
    for sql in [create_tenant_sql(), start_operation_sql()] {
        let lease = sql.find("SET LeaseOwner").unwrap();
        assert!(sql.find("BEGIN TRANSACTION").unwrap() < lease, "{sql}");
        assert!(lease < sql.find("COMMIT TRANSACTION").unwrap(), "{sql}");
    }
}

#[test]
fn a_capacity_is_set_under_the_row_lock_never_below_the_tenants_and_audited_when_changed() {
    let set = flat(servers::sql::SET_CAPACITY);
    let lock = set
        .find("FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P1")
        .expect("the row lock");
    let below = set
        .find("IF @Live > @P2 THROW 50606")
        .expect("the tenants check");
    let update = set
        .find("IF @Was <> @P2 BEGIN UPDATE catalog.Servers SET Capacity = @P2")
        .expect("an update only when it changes");
    let audit = set
        .find("@Action = N'server.capacity'")
        .expect("the audit row");
    assert!(lock < below && below < update && update < audit, "{set}");
    // The same lock creating a tenant takes, so no tenant lands between the count and the update.
    assert!(flat(servers::sql::LOCK_FOR_NEW_TENANT)
        .contains("FROM catalog.Servers WITH (UPDLOCK, HOLDLOCK) WHERE Name = @P5"));
}
