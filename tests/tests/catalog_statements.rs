//! The PostgreSQL catalog prepares each statement once per pooled connection
//! (`catalog/src/postgres/db.rs`), and prepares it again when the server refuses the prepared
//! one after a schema change.

#![allow(clippy::unwrap_used)]

use tcp_tests::env::superuser;
use tcp_tests::PgCluster;

#[tokio::test]
async fn statements_are_prepared_once_and_again_after_their_result_type_changed() {
    let cluster = PgCluster::shared();
    let name = format!(
        "catalog_stmt_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    // One pooled connection: every call runs on the same session.
    let catalog = catalog::PgCatalog::open(&cluster.url_for(&name), 1)
        .await
        .unwrap();
    use catalog::CatalogStore;
    assert!(catalog.verify_audit_chain().await.unwrap().valid);

    // The function the statement reads changes its result type under it.
    let admin = superuser(&name).await;
    admin
        .batch_execute(
            "DROP FUNCTION audit_verify(); \
             CREATE FUNCTION audit_verify(OUT valid boolean, OUT checked bigint, \
                 OUT first_broken_id bigint, OUT head_id bigint, OUT head_hash text, OUT extra int) \
             LANGUAGE sql AS $$ SELECT true, 0::bigint, NULL::bigint, NULL::bigint, NULL::text, 1 $$",
        )
        .await
        .unwrap();

    // Prepared, not parsed again: the server refuses the prepared statement once...
    let e = catalog.verify_audit_chain().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("cached plan must not change result type")
            && e.to_string().contains("0A000"),
        "{e}"
    );
    // ...and the next call prepares it again.
    assert!(catalog.verify_audit_chain().await.unwrap().valid);

    drop(catalog);
    drop(admin);
    superuser("postgres")
        .await
        .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .unwrap();
}
