//! The whole lifecycle with tenant secrets in Key Vault (the HTTPS test double behind the real
//! SDK): onboarding writes tagged, expiring versions; rotations add versions; offboarding deletes
//! and purges them, and under purge protection the deletion certificate says so, with the
//! scheduled purge date, instead of failing or looping. A conformance suite: every test runs on
//! PostgreSQL and on SQL Server (`MSSQL_URL`).

#![allow(clippy::unwrap_used, clippy::err_expect)]

use api_types::OperationState;
use tcp_tests::keyvault::{KeyVaultDouble, KeyVaultDoubleOptions};
use tcp_tests::{EngineUnderTest, TestEnv};
use workflows::Faults;

tcp_tests::conformance!(
    tenant_secrets_live_in_key_vault_from_onboarding_to_purge,
    purge_protection_is_reported_in_the_deletion_certificate,
    a_restore_window_soft_deletes_and_recovers_through_key_vault,
);

async fn env_on(engine: EngineUnderTest, double: &KeyVaultDouble) -> TestEnv {
    TestEnv::with(engine, Faults::none(), |c| double.configure(c)).await
}

async fn tenant_secrets_live_in_key_vault_from_onboarding_to_purge(engine: EngineUnderTest) {
    let double = KeyVaultDouble::start(KeyVaultDoubleOptions::default()).await;
    let env = env_on(engine, &double).await;
    assert_eq!(env.app.secrets.backend(), "azure-key-vault");
    let slug = "kv-life";
    env.onboard(slug).await;
    let names = env.secret_names(slug);
    for name in names.all() {
        assert!(
            double.current_value(name).is_some(),
            "{name} is not in the vault"
        );
    }
    let v = env
        .app
        .secrets
        .list_versions(&secrets::SecretName::new(&names.app).unwrap())
        .await
        .unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].tags["principal"], "app_a");
    assert_eq!(v[0].tags["engine"], env.app.engine.name());
    assert!(v[0].expires_at.is_some(), "versions carry an expiry");

    // Rotation through the vault: the application's string changes and works; the old one is
    // refused after an emergency rotation.
    let probe = env.probe();
    let first = env.secret(&names.app).await;
    env.rotate(slug, "scheduled").await;
    let second = env.secret(&names.app).await;
    assert_ne!(first.expose(), second.expose());
    probe.login(&second).await.unwrap();
    probe.login(&first).await.unwrap();
    env.rotate(slug, "emergency").await;
    assert!(probe.login(&second).await.is_err());
    probe.login(&env.secret(&names.app).await).await.unwrap();

    let op = env.offboard(slug).await;
    for name in names.all() {
        assert_eq!(double.current_value(name), None, "{name} left in the vault");
    }
    let cert = env
        .app
        .catalog
        .deletion_certificate(op.tenant_id)
        .await
        .unwrap()
        .unwrap()
        .detail;
    let removed = &cert["removed"];
    assert_eq!(removed["secret_store"]["backend"], "azure-key-vault");
    assert_eq!(removed["secret_store"]["location"], double.url());
    assert_eq!(removed["secrets"].as_array().unwrap().len(), 3, "{cert}");
    for name in names.all() {
        assert_eq!(
            removed["secret_removal"][name]["outcome"], "purged",
            "{cert}"
        );
    }
    // Nothing left: not even a soft-deleted secret.
    assert!(env.snapshot(&[slug]).await.secrets.is_empty());
}

async fn purge_protection_is_reported_in_the_deletion_certificate(engine: EngineUnderTest) {
    let double = KeyVaultDouble::start(KeyVaultDoubleOptions {
        purge_protection: true,
        retention_days: 7,
        ..KeyVaultDoubleOptions::default()
    })
    .await;
    let env = env_on(engine, &double).await;
    let slug = "kv-protected";
    env.onboard(slug).await;
    let names = env.secret_names(slug);
    let op = env.offboard(slug).await;
    assert_eq!(op.state, OperationState::Succeeded);
    let cert = env
        .app
        .catalog
        .deletion_certificate(op.tenant_id)
        .await
        .unwrap()
        .unwrap()
        .detail;
    for name in names.all() {
        let removal = &cert["removed"]["secret_removal"][name];
        assert_eq!(removal["outcome"], "purge_protected", "{cert}");
        let at: chrono::DateTime<chrono::Utc> = removal["scheduled_purge_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let days = (at - chrono::Utc::now()).num_days();
        assert!((6..=7).contains(&days), "purge scheduled in {days} days");
        // Soft-deleted (kept by the vault), not readable.
        let secret = secrets::SecretName::new(name).unwrap();
        env.app.secrets.get_deleted(&secret).await.unwrap();
        assert!(env.app.secrets.get(&secret, None).await.is_err());
    }
    // The slug is released, but its secrets are held until the purge date: onboarding it again
    // fails with a clear message, rolls back, and leaves the held secrets as they were.
    let id = env.start_onboard(slug).await;
    let op = env.wait(id).await;
    assert_eq!(op.state, OperationState::RolledBack, "{op:#?}");
    let error = op
        .steps
        .iter()
        .find_map(|s| s.error.clone())
        .unwrap_or_default();
    assert!(
        error.contains("purge protection") && error.contains(double.url()),
        "{error}"
    );
    let databases = env.snapshot(&[slug]).await.databases;
    assert!(databases.is_empty(), "{databases:?}");
}

/// The restore window through the vault: the retention soft-deletes the three secrets (the
/// vault still holds them as deleted), the restore recovers them, waiting out the vault's
/// background processing, and writes new versions; the old strings never work again.
async fn a_restore_window_soft_deletes_and_recovers_through_key_vault(engine: EngineUnderTest) {
    let double = KeyVaultDouble::start(KeyVaultDoubleOptions {
        settle_lag: 2,
        ..KeyVaultDoubleOptions::default()
    })
    .await;
    let env = env_on(engine, &double).await;
    let slug = "kv-window";
    env.onboard(slug).await;
    let names = env.secret_names(slug);
    let old_app = env.secret(&names.app).await;
    env.retain(slug, "P1D").await;
    for name in names.all() {
        let secret = secrets::SecretName::new(name).unwrap();
        assert!(env.app.secrets.get(&secret, None).await.is_err(), "{name}");
        assert!(env.app.secrets.get_deleted(&secret).await.is_ok(), "{name}");
    }
    assert!(env.probe().login(&old_app).await.is_err());
    env.restore(slug).await;
    let app = secrets::SecretName::new(&names.app).unwrap();
    let versions = env.app.secrets.list_versions(&app).await.unwrap();
    assert_eq!(
        versions.len(),
        2,
        "the old version recovered, one new: {versions:?}"
    );
    let active: Vec<_> = versions
        .iter()
        .filter(|v| v.tags.get("active").map(String::as_str) == Some("true"))
        .collect();
    assert_eq!(active.len(), 1, "{versions:?}");
    let new_app = env.secret(&names.app).await;
    assert_ne!(new_app.expose(), old_app.expose());
    env.probe().login(&new_app).await.unwrap();
    assert!(env.probe().login(&old_app).await.is_err());
    let op = env.offboard(slug).await;
    assert_eq!(op.state, OperationState::Succeeded);
    for name in names.all() {
        assert!(
            double.current_value(name).is_none(),
            "{name} is still in the vault"
        );
    }
}
