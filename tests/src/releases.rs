//! Tenant schema releases written to disk, laid out like the repository, for the tests that
//! run a control plane on an older release and then a newer one (`tenant_schema_dir`).

use std::path::Path;

use engine::Release;

/// The product migration the tests' newer release adds: a new column, and a unique index that a
/// tenant holding two customers with one email cannot take.
pub fn product_migration(engine: &str) -> (&'static str, &'static str) {
    match engine {
        "postgres" => (
            "V100__customer_notes",
            "ALTER TABLE app.customers ADD COLUMN note text;\n\
             SELECT platform.sync_history('app.customers');\n\
             CREATE UNIQUE INDEX customers_email_unique ON app.customers (email);\n",
        ),
        _ => (
            "V100__customer_notes",
            "ALTER TABLE app.Customers ADD Note nvarchar(200) NULL;\n\
             CREATE UNIQUE INDEX CustomersEmailUnique ON app.Customers (Email) WHERE Email IS NOT NULL;\n",
        ),
    }
}

/// Writes `release`, less its newest `drop_last` migrations, plus `extra`, laid out like the
/// repository under `dir`.
pub fn write_release(dir: &Path, release: &Release, drop_last: usize, extra: &[(&str, &str)]) {
    let engine = release.engine;
    let migrations = dir.join("tenant-schema").join(engine);
    let procedures = dir.join("procedures").join(engine);
    std::fs::create_dir_all(&migrations).expect("release directory");
    std::fs::create_dir_all(&procedures).expect("release directory");
    let keep = release.migrations.len() - drop_last;
    for (stem, sql) in release.migrations[..keep]
        .iter()
        .map(|(s, q)| (s.as_str(), q.as_str()))
        .chain(extra.iter().copied())
    {
        std::fs::write(migrations.join(format!("{stem}.sql")), sql).expect("migration file");
    }
    for (stem, sql) in &release.procedures {
        std::fs::write(procedures.join(format!("{stem}.sql")), sql).expect("procedure file");
    }
}

/// An older release (the embedded one less its newest platform migration) and a newer one (the
/// embedded one plus [`product_migration`]) under `dir`: `(old, new)`.
pub fn old_and_new(dir: &Path, engine: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let embedded = Release::embedded(engine).expect("embedded release");
    let (old, new) = (dir.join("old"), dir.join("new"));
    write_release(&old, &embedded, 1, &[]);
    write_release(&new, &embedded, 0, &[product_migration(engine)]);
    (old, new)
}

/// A tenant's schema version as the catalog records it.
pub async fn schema_version(env: &crate::TestEnv, slug: &str) -> Option<i32> {
    env.app
        .catalog
        .tenant_by_slug(&slug.parse().expect("slug"))
        .await
        .expect("catalog")
        .expect("tenant")
        .schema_version
}

/// The tenant's `schema.migrated` audit events, read through the API as an auditor.
pub async fn migrated_events(env: &crate::TestEnv, slug: &str) -> Vec<serde_json::Value> {
    let (status, page) = env
        .call_as(
            "auditor",
            axum::http::Method::GET,
            &format!("/v1/tenants/{slug}/audit-events?action=schema.migrated"),
            None,
        )
        .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    page["events"].as_array().expect("events").clone()
}

/// Two customers with one email in a tenant, through its app login: the newer release's
/// unique index cannot be built there. Returns the second one, to fix later.
pub async fn add_duplicate_emails(env: &crate::TestEnv, slug: &str) -> uuid::Uuid {
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .expect("app login");
    app.customer_upsert(None, "Ada", Some("same@example.com"))
        .await
        .expect("first customer");
    app.customer_upsert(None, "Bob", Some("same@example.com"))
        .await
        .expect("second customer")
}

/// Gives the customer [`add_duplicate_emails`] returned an email of its own.
pub async fn fix_duplicate_emails(env: &crate::TestEnv, slug: &str, bob: uuid::Uuid) {
    let mut app = env
        .probe()
        .login(&env.secret(&env.secret_names(slug).app).await)
        .await
        .expect("app login");
    app.customer_upsert(Some(bob), "Bob", Some("bob@example.com"))
        .await
        .expect("fixed customer");
}
