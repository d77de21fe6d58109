//! Existing tenants brought to a newer tenant schema release (issue 14's foundation): the
//! control plane onboards tenants on an older release read from `tenant_schema_dir`, restarts
//! on a newer one (a platform migration plus a product migration), and the `migrate` workflow
//! brings each tenant database forward in one transaction: applied once, recorded in the
//! tenant's audit log and in the catalog, and a tenant whose data the release cannot take stays
//! exactly at its old version.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use axum::http::{Method, StatusCode};
use catalog::OperationRecord;
use engine::Release;
use serde_json::json;
use tcp_tests::releases::{
    add_duplicate_emails, fix_duplicate_emails, migrated_events, product_migration, schema_version,
    write_release,
};
use tcp_tests::{conformance, EngineUnderTest, TestEnv};
use workflows::Faults;

/// Every one of `slugs` has the same schema, by its live fingerprint.
async fn assert_one_schema(env: &TestEnv, slugs: &[&str]) {
    let mut fingerprints = std::collections::BTreeSet::new();
    for slug in slugs {
        let snapshot = env
            .app
            .engine
            .schema_snapshot(&env.names(slug))
            .await
            .unwrap();
        fingerprints.insert(snapshot.fingerprint);
    }
    assert_eq!(fingerprints.len(), 1, "{fingerprints:?}");
}

/// Migrates a tenant through the API, as an admin, and waits for the operation.
async fn migrate(env: &TestEnv, slug: &str) -> OperationRecord {
    let (status, body) = env
        .call_as(
            "admin",
            Method::POST,
            &format!("/v1/tenants/{slug}/migrate"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["operation"]["id"].as_str().unwrap().parse().unwrap();
    env.wait(id).await
}

async fn existing_tenants_reach_the_new_release_once_and_a_failing_one_stays_intact(
    engine: EngineUnderTest,
) {
    let embedded = Release::embedded(match engine {
        EngineUnderTest::Postgres => "postgres",
        EngineUnderTest::SqlServer { .. } => "sqlserver",
    })
    .unwrap();
    let dirs = tempfile::tempdir().unwrap();
    let (old_dir, new_dir) = (dirs.path().join("old"), dirs.path().join("new"));
    // The older release: this one without its newest platform migration.
    write_release(&old_dir, &embedded, 1, &[]);
    let product = product_migration(embedded.engine);
    write_release(&new_dir, &embedded, 0, &[product]);
    let old_version = Release::from_dir(&old_dir, embedded.engine)
        .unwrap()
        .version;
    let newest_platform = embedded.migrations.last().unwrap().0.clone();

    let env = TestEnv::with(engine, Faults::none(), |c| {
        c.tenant_schema_dir = Some(old_dir.clone())
    })
    .await;
    env.onboard("mig-clean").await;
    env.onboard("mig-dupes").await;
    assert_eq!(schema_version(&env, "mig-clean").await, Some(old_version));
    // Two customers with one email: the release's unique index cannot be built here.
    let bob = add_duplicate_emails(&env, "mig-dupes").await;

    // The operator ships the newer release and restarts.
    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;
    assert_eq!(env.app.engine.schema_version(), 100);
    // A tenant onboarded now gets the new release from the start.
    env.onboard("mig-new").await;
    assert_eq!(schema_version(&env, "mig-new").await, Some(100));

    // A version the release does not have is refused before anything starts.
    let (status, problem) = env
        .call_as(
            "admin",
            Method::POST,
            "/v1/tenants/mig-clean/migrate",
            Some(json!({"target_version": 101})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("1 to 100"),
        "{problem}"
    );

    let op = migrate(&env, "mig-clean").await;
    assert_eq!(op.state.as_str(), "succeeded", "{:?}", op.error);
    let applied = workflows::output_of::<workflows::tenant_migrate::ApplyMigrations>(&op).unwrap();
    // A platform migration was pending: the grants ran (PostgreSQL skips them only where
    // nothing but product migrations is pending).
    assert!(!applied.grants_skipped, "{applied:?}");
    assert_eq!(
        (applied.from, applied.to, applied.applied.clone()),
        (
            old_version,
            100,
            vec![newest_platform.clone(), product.0.to_owned()]
        )
    );
    assert_eq!(schema_version(&env, "mig-clean").await, Some(100));
    let events = migrated_events(&env, "mig-clean").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["actor"].as_str().is_some_and(|a| !a.is_empty()),
        "{events:?}"
    );
    assert_eq!(events[0]["detail"]["to"], 100);
    // Its event is anchored outside the database when the migration ends (issue 12: after
    // every control-plane operation), not only by the next periodic pass.
    let tenant = env
        .app
        .catalog
        .tenant_by_slug(&"mig-clean".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let anchors = env.app.catalog.anchors(tenant.id).await.unwrap();
    assert!(
        anchors
            .iter()
            .any(|a| a.reason == "migration" && events[0]["id"] == a.head_id),
        "{anchors:?} {events:?}"
    );
    // On PostgreSQL the head was verified inside the migration's own transaction (no second
    // connection); SQL Server reads it on a connection of its own.
    if embedded.engine == "postgres" {
        let head = applied.audit_head.clone().unwrap();
        assert!(head.valid, "{head:?}");
        assert_eq!(events[0]["id"], head.head_id.unwrap(), "{head:?}");
    }

    // The migrated tenant's application keeps working, history included: an update of the
    // table that gained a column keeps the old row (PostgreSQL: platform.sync_history and the
    // column-by-name history copy; SQL Server: system versioning).
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names("mig-clean").app).await)
        .await
        .unwrap();
    let cy = app
        .customer_upsert(None, "Cy", Some("cy@example.com"))
        .await
        .unwrap();
    app.customer_upsert(Some(cy), "Cy Renamed", Some("cy@example.com"))
        .await
        .unwrap();
    drop(app);

    // Again: nothing is pending, nothing is applied twice, no second event.
    let again = migrate(&env, "mig-clean").await;
    assert_eq!(again.state.as_str(), "succeeded", "{:?}", again.error);
    let applied =
        workflows::output_of::<workflows::tenant_migrate::ApplyMigrations>(&again).unwrap();
    assert!(applied.applied.is_empty(), "{applied:?}");
    assert_eq!(migrated_events(&env, "mig-clean").await.len(), 1);

    // The tenant whose data the release cannot take: failed, named, and at its old version
    // (the platform migration applied before the failing one was rolled back with it).
    let failed = migrate(&env, "mig-dupes").await;
    assert_eq!(failed.state.as_str(), "failed");
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains(product.0), "{error}");
    assert_eq!(schema_version(&env, "mig-dupes").await, Some(old_version));
    let names = env.names("mig-dupes");
    let untouched = env
        .app
        .engine
        .migrate_database(&names, old_version, "test", None)
        .await
        .unwrap()
        .0;
    assert_eq!((untouched.from, untouched.to), (old_version, old_version));
    assert!(untouched.applied.is_empty());
    // Its application still works on the old schema; once it fixes its data, migrating again
    // succeeds.
    fix_duplicate_emails(&env, "mig-dupes", bob).await;
    let retried = migrate(&env, "mig-dupes").await;
    assert_eq!(retried.state.as_str(), "succeeded", "{:?}", retried.error);
    assert_eq!(schema_version(&env, "mig-dupes").await, Some(100));

    // Who is on what: every active tenant of this control plane is on 100 now.
    let (status, _, text) = env.call_text(Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let on_100 = text
        .lines()
        .find(|l| l.starts_with("tcp_tenants_by_schema_version{version=\"100\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(on_100.ends_with(" 3"), "{on_100}");
    assert!(
        !text.contains(&format!(
            "tcp_tenants_by_schema_version{{version=\"{old_version}\"}}"
        )),
        "{text}"
    );
}

/// A release that breaks a platform rule stops the control plane before it touches a server,
/// naming the file and the rule.
#[tokio::test]
async fn a_release_breaking_a_platform_rule_stops_the_start_naming_file_and_rule() {
    let dirs = tempfile::tempdir().unwrap();
    let release = dirs.path().join("release");
    write_release(
        &release,
        &Release::postgres(),
        0,
        &[("V100__bare", "CREATE TABLE app.bare (id int);")],
    );
    let config = server::config::Config {
        data_dir: dirs.path().join("data"),
        auth_mode: Some(server::config::AuthMode::Local),
        // Nothing listens there: the release is refused before any connection.
        postgres_admin_url: Some("postgresql://nobody@127.0.0.1:9/postgres".into()),
        catalog_url: Some("postgresql://nobody@127.0.0.1:9/catalog".into()),
        tenant_schema_dir: Some(release),
        ..server::config::Config::default()
    };
    let e = server::start(&config, Some(Faults::none()))
        .await
        .err()
        .expect("refused");
    let text = format!("{e:#}");
    assert!(text.contains("V100__bare.sql"), "{text}");
    assert!(text.contains("app.bare has no history"), "{text}");
}

/// Starting an operation while the tenant's previous one is finishing answers 202 or 409, never
/// 500: the catalog's finish and start lock the tenant's row in the same order (a finish that
/// changes the tenant, as a migration's does, once deadlocked with a start waiting on the
/// one-active-operation index).
async fn starts_racing_a_finishing_operation_never_fail(engine: EngineUnderTest) {
    // No rate limits: four callers as fast as they can go (as in the fuzz run that found it).
    let env = std::sync::Arc::new(
        TestEnv::with(engine, Faults::none(), |c| {
            c.rate_limit_per_subject = 0;
            c.rate_limit_per_ip = 0;
        })
        .await,
    );
    env.onboard("mig-race").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let mut callers = Vec::new();
    for _ in 0..4 {
        let env = env.clone();
        callers.push(tokio::spawn(async move {
            let mut started = 0;
            while std::time::Instant::now() < deadline {
                let (status, body) = env
                    .call_as(
                        "admin",
                        Method::POST,
                        "/v1/tenants/mig-race/migrate",
                        Some(json!({})),
                    )
                    .await;
                match status {
                    StatusCode::ACCEPTED => started += 1,
                    StatusCode::CONFLICT => {}
                    other => panic!("{other}: {body}"),
                }
            }
            started
        }));
    }
    let mut started = 0;
    for c in callers {
        started += c.await.unwrap();
    }
    assert!(started >= 3, "only {started} migrations started");
}

conformance!(
    existing_tenants_reach_the_new_release_once_and_a_failing_one_stays_intact,
    starts_racing_a_finishing_operation_never_fail
);

/// PostgreSQL grants per object, so a migration applies the grants again
/// (`platform.apply_grants`), except where that would change nothing: only product migrations
/// pending, and the schema, grant for grant, plus the database's own privileges, the default
/// privileges and the built-in functions the grants close, are what the engine left in another
/// database where they changed nothing. A hand-made change the grants repair takes the full
/// path and is repaired.
#[tokio::test]
async fn grants_are_applied_again_only_where_they_would_change_something() {
    let embedded = Release::postgres();
    let dirs = tempfile::tempdir().unwrap();
    let new_dir = dirs.path().join("new");
    write_release(
        &new_dir,
        &embedded,
        0,
        &[product_migration(embedded.engine)],
    );
    let env = TestEnv::new(EngineUnderTest::Postgres).await;
    let slugs = [
        "gr-first",
        "gr-second",
        "gr-routine",
        "gr-database",
        "gr-settings",
    ];
    for slug in slugs {
        env.onboard(slug).await;
    }
    // By hand: the app loses a routine; PUBLIC may connect to a tenant database; the role
    // names the audit functions read are another's (as a pooled database's were before the
    // claim set them).
    let (routine, database, settings) = (
        env.names("gr-routine"),
        env.names("gr-database"),
        env.names("gr-settings"),
    );
    for (names, sql) in [
        (
            &routine,
            format!(
                "REVOKE EXECUTE ON FUNCTION app.customer_get(uuid) FROM {}",
                routine.app_rw
            ),
        ),
        (
            &database,
            format!("GRANT CONNECT ON DATABASE {} TO PUBLIC", database.database),
        ),
        (
            &settings,
            "UPDATE platform.settings SET value = 'tcp_pool_x' WHERE key = 'audit_admin_role'"
                .to_owned(),
        ),
    ] {
        tcp_tests::env::superuser(&names.database)
            .await
            .batch_execute(&sql)
            .await
            .unwrap();
    }

    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;
    let mut skipped = Vec::new();
    for slug in slugs.iter().chain(&["gr-second"]) {
        let op = migrate(&env, slug).await;
        assert_eq!(op.state.as_str(), "succeeded", "{slug}: {:?}", op.error);
        let applied =
            workflows::output_of::<workflows::tenant_migrate::ApplyMigrations>(&op).unwrap();
        skipped.push(applied.grants_skipped);
    }
    // The first after the restart applies them (and they change nothing there); the second
    // finds its schema and privileges as the first had them; the three hand-made changes take
    // the full path; nothing pending skips.
    assert_eq!(skipped, [false, true, false, false, false, true]);

    let client = tcp_tests::env::superuser(&routine.database).await;
    let can: bool = client
        .query_one(
            "SELECT has_function_privilege($1, 'app.customer_get(uuid)', 'EXECUTE')",
            &[&routine.app_rw],
        )
        .await
        .unwrap()
        .get(0);
    assert!(can, "the app's grant is back");
    let client = tcp_tests::env::superuser(&database.database).await;
    let public: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database d, aclexplode(d.datacl) a \
              WHERE d.datname = current_database() AND a.grantee = 0)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public, "PUBLIC's CONNECT is revoked again");
    let admin: String = tcp_tests::env::superuser(&settings.database)
        .await
        .query_one(
            "SELECT value FROM platform.settings WHERE key = 'audit_admin_role'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(admin, settings.audit_admin);
    // Every tenant ends on the same schema.
    assert_one_schema(&env, &slugs).await;
}

/// A migration applies a routine file only where the routine is not already what the file makes
/// (PostgreSQL): the first database after a restart takes every file, later ones from the same
/// version only the file a database before them needed, and a routine changed or dropped by
/// hand is found in the schema the migration reads before committing and replaced in the same
/// transaction. Every tenant ends with the same schema.
#[tokio::test]
async fn routines_are_applied_again_only_where_they_differ() {
    let embedded = Release::postgres();
    let dirs = tempfile::tempdir().unwrap();
    let new_dir = dirs.path().join("new");
    let mut new = embedded.clone();
    for (stem, sql) in new.procedures.iter_mut() {
        if stem == "app.customer_get" {
            *sql = sql.replacen("BEGIN", "BEGIN\n    -- the newer release", 1);
        }
    }
    write_release(&new_dir, &new, 0, &[product_migration(embedded.engine)]);
    let env = TestEnv::new(EngineUnderTest::Postgres).await;
    let slugs = [
        "rt-first",
        "rt-second",
        "rt-third",
        "rt-changed",
        "rt-dropped",
    ];
    for slug in slugs {
        env.onboard(slug).await;
    }
    // By hand: one routine gets another cost, another is dropped.
    let by_name = |name: &str| {
        format!(
            "(SELECT p.oid::regprocedure FROM pg_proc p \
               WHERE p.pronamespace = 'app'::regnamespace AND p.proname = '{name}')"
        )
    };
    for (slug, sql) in [
        (
            "rt-changed",
            format!(
                "DO $$ BEGIN EXECUTE format('ALTER FUNCTION %s COST 321', {}); END $$",
                by_name("invoice_get")
            ),
        ),
        (
            "rt-dropped",
            format!(
                "DO $$ BEGIN EXECUTE format('DROP FUNCTION %s', {}); END $$",
                by_name("period_close")
            ),
        ),
    ] {
        tcp_tests::env::superuser(&env.names(slug).database)
            .await
            .batch_execute(&sql)
            .await
            .unwrap();
    }

    let mut env = env;
    env.config.tenant_schema_dir = Some(new_dir.clone());
    let env = env.restart(Faults::none()).await;
    let mut kept = Vec::new();
    for slug in slugs {
        let op = migrate(&env, slug).await;
        assert_eq!(op.state.as_str(), "succeeded", "{slug}: {:?}", op.error);
        let applied =
            workflows::output_of::<workflows::tenant_migrate::ApplyMigrations>(&op).unwrap();
        kept.push(applied.routines_kept);
    }
    let files = new.procedures.len();
    // The first takes every file; the second leaves them all out, finds app.customer_get
    // differing and applies it; the third applies that one at once; the hand-made changes
    // are found and replaced, and from then on the files databases before needed are applied
    // at once (the hand-changed one's too: from the outside, drift and a release look alike).
    assert_eq!(kept, [0, files - 1, files - 1, files - 2, files - 3]);

    assert_one_schema(&env, &slugs).await;
    let client = tcp_tests::env::superuser(&env.names("rt-third").database).await;
    let body: String = client
        .query_one(
            &format!(
                "SELECT prosrc FROM pg_proc WHERE oid = {}",
                by_name("customer_get")
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(body.contains("the newer release"), "{body}");
}
