//! Security invariants of a tenant database, each asserting the exact refusal (SQLSTATE and,
//! where a trigger refuses, its message).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use tcp_tests::env::{connect, sqlstate, superuser};
use tcp_tests::TestEnv;

const PERMISSION_DENIED: &str = "42501";

fn with_password(url: &str, user: &str, password: &str) -> String {
    // postgresql://user:pw@host:port/db → same server/db, other credentials.
    let rest = url.split_once('@').unwrap().1;
    format!("postgresql://{user}:{password}@{rest}")
}

async fn expect_denied(client: &tokio_postgres::Client, sql: &str) {
    let err = client
        .batch_execute(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("{sql} was allowed"));
    assert_eq!(sqlstate(&err), PERMISSION_DENIED, "{sql}: {err:?}");
}

#[tokio::test]
async fn tenant_principals_hold_exactly_their_rights() {
    let env = TestEnv::new().await;
    env.onboard("sec-one").await;
    env.onboard("sec-two").await;
    let one = env.names("sec-one");
    let s1 = env.secret_names("sec-one");
    let s2 = env.secret_names("sec-two");
    let app_url = env.secret(&s1.app).await;
    let app = connect(app_url.expose()).await.unwrap();

    // Seed a little data through the only data path.
    let customer: uuid::Uuid = app
        .query_one("SELECT app.customer_upsert(NULL, 'Grace', NULL)", &[])
        .await
        .unwrap()
        .get(0);
    app.execute(
        "SELECT app.customer_upsert($1, 'Grace Hopper', NULL)",
        &[&customer],
    )
    .await
    .unwrap();

    // app_a: no direct table access at all.
    for table in [
        "app.customers",
        "app.invoices",
        "app.invoice_lines",
        "app.accounting_periods",
    ] {
        expect_denied(&app, &format!("SELECT * FROM {table}")).await;
        expect_denied(&app, &format!("DELETE FROM {table}")).await;
        expect_denied(&app, &format!("UPDATE {table} SET valid_from = now()")).await;
    }
    expect_denied(&app, "INSERT INTO app.customers (name) VALUES ('x')").await;
    // ... not on the audit log ...
    expect_denied(&app, "UPDATE audit.audit_events SET actor = 'x'").await;
    expect_denied(&app, "DELETE FROM audit.audit_events").await;
    expect_denied(&app, "TRUNCATE audit.audit_events").await;
    expect_denied(&app, "SELECT audit.purge_before(now())").await;
    expect_denied(&app, "SELECT audit.record_event('forged', '{}')").await;
    // ... not on history tables ...
    for table in ["history.customers_history", "history.invoices_history"] {
        expect_denied(&app, &format!("SELECT * FROM {table}")).await;
        expect_denied(&app, &format!("UPDATE {table} SET valid_to = now()")).await;
        expect_denied(&app, &format!("DELETE FROM {table}")).await;
        expect_denied(&app, &format!("TRUNCATE {table}")).await;
    }
    // ... and no DDL in its own database.
    expect_denied(&app, "CREATE TABLE public.t (x int)").await;
    expect_denied(&app, "CREATE SCHEMA evil").await;

    // app_a cannot reach another tenant's database, nor the maintenance databases.
    let app_rest = app_url.expose().rsplit_once('/').unwrap().0.to_owned();
    for db in [
        env.names("sec-two").database,
        "postgres".into(),
        "template1".into(),
        "tenant_catalog".into(),
    ] {
        let err = connect(&format!("{app_rest}/{db}"))
            .await
            .err()
            .expect("connected elsewhere");
        let code = sqlstate(&err);
        assert!(
            code == PERMISSION_DENIED || code == "3D000",
            "{db}: {err:?}"
        );
    }
    // Nor can the other tenant's login reach this one.
    let other = env.secret(&s2.app).await;
    let other_rest = other.expose().rsplit_once('/').unwrap().0.to_owned();
    let err = connect(&format!("{other_rest}/{}", one.database))
        .await
        .err()
        .expect("cross-tenant");
    assert_eq!(sqlstate(&err), PERMISSION_DENIED);

    // The owner cannot log in: it is NOLOGIN and has no password; neither do app_rw and the reader.
    let super_db = superuser("postgres").await;
    let can_login: bool = super_db
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&one.owner],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_login);
    for role in [&one.app_rw, &one.reader, &one.owner] {
        let url = with_password(app_url.expose(), role, "whatever");
        assert!(connect(&url).await.is_err(), "{role} logged in");
    }

    // The investigator reads only after SET ROLE to the reader, and can never write.
    let inv = connect(env.secret(&s1.investigator).await.expose())
        .await
        .unwrap();
    expect_denied(&inv, "SELECT * FROM app.customers").await;
    inv.batch_execute(&format!("SET ROLE {}", one.reader))
        .await
        .unwrap();
    let n: i64 = inv
        .query_one("SELECT count(*) FROM app.customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let h: i64 = inv
        .query_one("SELECT count(*) FROM history.customers_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(h, 1, "the rename left one history row");
    expect_denied(&inv, "INSERT INTO app.customers (name) VALUES ('x')").await;
    expect_denied(&inv, "UPDATE app.customers SET name = 'x'").await;
    expect_denied(&inv, "DELETE FROM app.customers").await;
    expect_denied(&inv, "SELECT app.customer_upsert(NULL, 'x', NULL)").await;
    expect_denied(&inv, "SELECT * FROM audit.audit_events").await;

    // audit_admin purges only through the purge function, which leaves a purge event.
    let aa = connect(env.secret(&s1.audit_admin).await.expose())
        .await
        .unwrap();
    expect_denied(&aa, "DELETE FROM audit.audit_events").await;
    expect_denied(&aa, "UPDATE audit.audit_events SET actor = 'x'").await;
    expect_denied(&aa, "SELECT app.customer_upsert(NULL, 'x', NULL)").await;
    let before: i64 = aa
        .query_one("SELECT count(*) FROM audit.audit_events", &[])
        .await
        .unwrap()
        .get(0);
    let deleted: i64 = aa
        .query_one(
            "SELECT audit.purge_before(clock_timestamp(), 'retention test')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(deleted, before);
    let row = aa
        .query_one(
            "SELECT action, detail FROM audit.audit_events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "audit.purge");
    let detail: serde_json::Value = row.get(1);
    assert_eq!(detail["deleted"], before);
    assert_eq!(detail["anchor"].as_str().unwrap().len(), 64, "{detail}");
    let valid: bool = aa
        .query_one("SELECT valid FROM audit.verify_chain()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(valid, "the chain verifies across the purge");

    // The app keeps appending after the purge, and the chain still verifies.
    app.execute("SELECT app.customer_upsert(NULL, 'Linus', NULL)", &[])
        .await
        .unwrap();

    // Even the superuser cannot rewrite or truncate the log or history: the triggers refuse.
    let db = superuser(&one.database).await;
    for sql in [
        "UPDATE audit.audit_events SET actor = 'x'",
        "DELETE FROM audit.audit_events",
        "TRUNCATE audit.audit_events",
    ] {
        let err = db
            .batch_execute(sql)
            .await
            .err()
            .unwrap_or_else(|| panic!("{sql} allowed"));
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }
    let err = db
        .batch_execute("UPDATE history.customers_history SET name = 'x'")
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("append-only"), "{err:?}");

    // A row altered by a superuser who bypasses the triggers is detected by verification.
    let valid: bool = db
        .query_one("SELECT valid FROM audit.verify_chain()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(valid);
    let target: i64 = db
        .query_one(
            "SELECT max(id) FROM audit.audit_events WHERE action = 'customer.upsert'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.batch_execute(&format!(
        "SET session_replication_role = replica; \
         UPDATE audit.audit_events SET actor = 'mallory' WHERE id = {target}; \
         SET session_replication_role = origin"
    ))
    .await
    .unwrap();
    let row = db
        .query_one(
            "SELECT valid, first_broken_id FROM audit.verify_chain()",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<i64>>(1), Some(target));

    // Nothing of these tenants is reachable by PUBLIC.
    let public_connect: bool = super_db
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT')",
            &[&one.database],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_connect);
    let exec_public: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname IN ('app', 'audit', 'platform', 'history') \
               AND has_function_privilege('public', p.oid, 'EXECUTE')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(exec_public, 0, "functions executable by PUBLIC");
    drop(db);

    env.offboard("sec-one").await;
    env.offboard("sec-two").await;
}
