//! Security invariants of a tenant database. A conformance suite: the invariants are written
//! once against the probe (what a principal tries, and how it must be refused) and run on
//! PostgreSQL and on SQL Server (`MSSQL_URL`). PostgreSQL's own lock-down (PUBLIC) is checked
//! at the end with its catalog.

#![allow(clippy::unwrap_used, clippy::err_expect)]

use tcp_tests::env::superuser;
use tcp_tests::probe::{Attempt, Refusal, Session, Table, BUSINESS_TABLES, HISTORY_TABLES};
use tcp_tests::{EngineUnderTest, TestEnv};

tcp_tests::conformance!(tenant_principals_hold_exactly_their_rights);

/// The attempt must be refused by a permission check.
async fn expect_denied(session: &mut Box<dyn Session>, attempt: Attempt) {
    match session.attempt(attempt).await {
        Err(Refusal::Denied(_)) => {}
        Err(other) => panic!("{attempt:?} refused, but not as a permission: {other:?}"),
        Ok(()) => panic!("{attempt:?} was allowed"),
    }
}

/// The attempt must be refused by the audit/history protection (which holds even for the
/// server's administrator).
async fn expect_protected(session: &mut Box<dyn Session>, attempt: Attempt) {
    match session.attempt(attempt).await {
        Err(Refusal::Protected(_)) => {}
        Err(other) => panic!("{attempt:?} refused, but not by the protection: {other:?}"),
        Ok(()) => panic!("{attempt:?} was allowed"),
    }
}

/// Writes to history tables: refused by permission or, on SQL Server, possibly first by system
/// versioning (which refuses any DML on a history table before permissions are looked at).
async fn expect_history_write_refused(
    engine: &EngineUnderTest,
    session: &mut Box<dyn Session>,
    attempt: Attempt,
) {
    match (session.attempt(attempt).await, engine) {
        (Err(Refusal::Denied(_)), _) => {}
        (Err(Refusal::Protected(_)), EngineUnderTest::SqlServer { .. }) => {}
        (other, _) => panic!("{attempt:?}: {other:?}"),
    }
}

async fn tenant_principals_hold_exactly_their_rights(engine: EngineUnderTest) {
    let env = TestEnv::new(engine.clone()).await;
    let probe = env.probe();
    env.onboard("sec-one").await;
    env.onboard("sec-two").await;
    let one = env.names("sec-one");
    let s1 = env.secret_names("sec-one");
    let s2 = env.secret_names("sec-two");
    let app_url = env.secret(&s1.app).await;
    let mut app = probe.login(&app_url).await.unwrap();

    // Seed a little data through the only data path.
    let customer = app.customer_upsert(None, "Grace", None).await.unwrap();
    app.customer_upsert(Some(customer), "Grace Hopper", None)
        .await
        .unwrap();

    // app_a: no direct table access at all...
    for table in BUSINESS_TABLES {
        expect_denied(&mut app, Attempt::Select(table)).await;
        expect_denied(&mut app, Attempt::Delete(table)).await;
        expect_denied(&mut app, Attempt::Update(table)).await;
    }
    expect_denied(&mut app, Attempt::Insert(Table::Customers)).await;
    // ... not on the audit log ...
    for attempt in [
        Attempt::UpdateAudit,
        Attempt::DeleteAudit,
        Attempt::TruncateAudit,
        Attempt::Purge,
        Attempt::RecordEvent,
    ] {
        expect_denied(&mut app, attempt).await;
    }
    // ... not on history tables ...
    for table in HISTORY_TABLES {
        expect_denied(&mut app, Attempt::Select(table)).await;
        for write in [
            Attempt::Update(table),
            Attempt::Delete(table),
            Attempt::Truncate(table),
        ] {
            expect_history_write_refused(&engine, &mut app, write).await;
        }
    }
    // ... and no DDL in its own database.
    expect_denied(&mut app, Attempt::CreateTable).await;
    expect_denied(&mut app, Attempt::CreateSchema).await;

    // app_a cannot reach another tenant's database, nor the server's own databases.
    let elsewhere: &[&str] = match engine {
        EngineUnderTest::Postgres => &["postgres", "template1", "tenant_catalog"],
        EngineUnderTest::SqlServer { .. } => &["master", "msdb", "tenant_catalog"],
    };
    let two_db = env.names("sec-two").database;
    for db in elsewhere.iter().copied().chain([two_db.as_str()]) {
        match probe.login(&probe.with_database(&app_url, db)).await {
            Err(Refusal::Denied(_)) => {}
            Err(other) => panic!("{db}: {other:?}"),
            Ok(_) => panic!("app_a reached {db}"),
        }
    }
    // Nor can the other tenant's login reach this one.
    let other = env.secret(&s2.app).await;
    assert!(matches!(
        probe
            .login(&probe.with_database(&other, &one.database))
            .await,
        Err(Refusal::Denied(_))
    ));

    // Principals without a login (owner, app_rw, reader) cannot log in.
    for principal in [&one.app_rw, &one.reader, &one.owner] {
        let url = probe.with_credentials(&app_url, principal, "Whatever-123");
        assert!(
            matches!(probe.login(&url).await, Err(Refusal::Denied(_))),
            "{principal} logged in"
        );
    }

    // The investigator reads only after switching to the reader, and can never write.
    let mut inv = probe
        .login(&env.secret(&s1.investigator).await)
        .await
        .unwrap();
    expect_denied(&mut inv, Attempt::Select(Table::Customers)).await;
    inv.become_reader().await.unwrap();
    assert_eq!(inv.count(Table::Customers).await.unwrap(), 1);
    assert_eq!(
        inv.count(Table::CustomersHistory).await.unwrap(),
        1,
        "the rename left one history row"
    );
    expect_denied(&mut inv, Attempt::Insert(Table::Customers)).await;
    expect_denied(&mut inv, Attempt::Update(Table::Customers)).await;
    expect_denied(&mut inv, Attempt::Delete(Table::Customers)).await;
    expect_denied(&mut inv, Attempt::CallWritingProcedure).await;
    expect_denied(&mut inv, Attempt::SelectAudit).await;
    // The app cannot switch to the reader.
    assert!(matches!(app.become_reader().await, Err(Refusal::Denied(_))));

    // audit_admin purges only through the purge routine, which leaves a purge event.
    let mut aa = probe
        .login(&env.secret(&s1.audit_admin).await)
        .await
        .unwrap();
    expect_denied(&mut aa, Attempt::DeleteAudit).await;
    expect_denied(&mut aa, Attempt::UpdateAudit).await;
    expect_denied(&mut aa, Attempt::CallWritingProcedure).await;
    let before = aa.audit_actions().await.unwrap().len() as i64;
    let deleted = aa.purge_all("retention test").await.unwrap();
    assert_eq!(deleted, before);
    let (action, detail) = aa.last_audit_event().await.unwrap();
    assert_eq!(action, "audit.purge");
    assert_eq!(detail["deleted"], before);
    assert_eq!(detail["anchor"].as_str().unwrap().len(), 64, "{detail}");
    assert_eq!(
        aa.verify_chain().await.unwrap(),
        (true, None),
        "the chain verifies across the purge"
    );

    // The app keeps appending after the purge, and the chain still verifies.
    app.customer_upsert(None, "Linus", None).await.unwrap();
    assert_eq!(aa.verify_chain().await.unwrap(), (true, None));

    // Even the server's administrator cannot rewrite or truncate the log or history.
    let mut admin = probe.admin(&one.database).await;
    for attempt in [
        Attempt::UpdateAudit,
        Attempt::DeleteAudit,
        Attempt::TruncateAudit,
        Attempt::Update(Table::CustomersHistory),
    ] {
        expect_protected(&mut admin, attempt).await;
    }

    // A row altered by an administrator who bypasses the triggers is detected by verification.
    let target = probe
        .tamper_with_audit_event(&one.database, "customer.upsert")
        .await;
    assert_eq!(admin.verify_chain().await.unwrap(), (false, Some(target)));
    drop((app, inv, aa, admin));

    if matches!(engine, EngineUnderTest::Postgres) {
        postgres_public_reaches_nothing(&one.database, &one.owner).await;
    }
    env.offboard("sec-one").await;
    env.offboard("sec-two").await;
}

/// PostgreSQL grants PUBLIC a few things by default; none of them may reach a tenant.
async fn postgres_public_reaches_nothing(database: &str, owner: &str) {
    let super_db = superuser("postgres").await;
    let public_connect: bool = super_db
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT')",
            &[&database],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_connect);
    let db = superuser(database).await;
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
    // The owner role cannot log in at all.
    let can_login: bool = super_db
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_login);
}
