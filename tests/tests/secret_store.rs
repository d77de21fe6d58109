//! The secret-store contract, written once and run against every backend: `local::*` on a
//! `LocalSecretStore` in a temp dir, `key_vault::*` on the production `KeyVaultStore` talking to
//! the Key Vault test double over HTTPS (real SDK client, challenge authentication, paging).
//! `key_vault_only::*` covers what only a remote store has: retries, throttling, refusals, TLS.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use secrets::{
    ensure_absent, LocalSecretStore, LocalStoreOptions, PropertiesUpdate, Removal, SecretError,
    SecretName, SecretProperties, SecretStore, SecretValue, SetOptions,
};
use tcp_tests::{KeyVaultDouble, KeyVaultDoubleOptions};

const PLAIN: &str = "Server=db;Password=s3cr3t-Pl41ntext!";

/// Which backend a contract test runs on.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    KeyVault,
}

/// Backend-specific knobs a test may need.
#[derive(Clone, Copy, Debug, Default)]
struct Knobs {
    purge_protection: bool,
}

/// A store under test and what keeps it alive.
struct Fixture {
    store: Box<dyn SecretStore>,
    /// The double behind a Key Vault store, for backend-specific checks.
    double: Option<KeyVaultDouble>,
    retention_days: i64,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    fn store(&self) -> &dyn SecretStore {
        self.store.as_ref()
    }
}

impl Backend {
    async fn fixture(self) -> Fixture {
        self.fixture_with(Knobs::default()).await
    }

    async fn fixture_with(self, knobs: Knobs) -> Fixture {
        let retention_days = if knobs.purge_protection { 7 } else { 90 };
        match self {
            Backend::Local => {
                let dir = tempfile::tempdir().unwrap();
                let store = LocalSecretStore::open(
                    dir.path(),
                    LocalStoreOptions {
                        purge_protection: knobs.purge_protection,
                        retention_days,
                    },
                )
                .unwrap();
                Fixture {
                    store: Box::new(store),
                    double: None,
                    retention_days,
                    _dir: Some(dir),
                }
            }
            Backend::KeyVault => {
                let double = KeyVaultDouble::start(KeyVaultDoubleOptions {
                    purge_protection: knobs.purge_protection,
                    retention_days,
                    // Distinct one-second timestamps without sleeping.
                    seconds_per_write: 1,
                    // Every delete and recover settles in the background, as in Key Vault.
                    settle_lag: 1,
                    ..KeyVaultDoubleOptions::default()
                })
                .await;
                Fixture {
                    store: Box::new(double.store()),
                    double: Some(double),
                    retention_days,
                    _dir: None,
                }
            }
        }
    }
}

fn name(s: &str) -> SecretName {
    SecretName::new(s).unwrap()
}

async fn set(store: &dyn SecretStore, n: &str, value: &str) -> SecretProperties {
    store
        .set(&name(n), SecretValue::new(value), SetOptions::default())
        .await
        .unwrap()
}

/// A whole-second time (Key Vault keeps seconds).
fn whole_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap()
}

macro_rules! contract {
    ($($test:ident),+ $(,)?) => {
        mod local {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::Local).await;
                }
            )+
        }
        mod key_vault {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::KeyVault).await;
                }
            )+
        }
    };
}

contract!(
    round_trip,
    versions_oldest_first_and_by_version,
    options_persisted,
    update_properties_disables_and_enables,
    list_names_sorted_and_paged,
    names_are_case_insensitive,
    soft_delete_hides_the_secret,
    set_on_deleted_is_deleted_but_recoverable,
    recover_brings_it_back,
    purge_removes_for_good,
    ensure_absent_is_idempotent,
    purge_protection_keeps_until_scheduled_date,
    values_never_in_debug_or_errors,
);

async fn round_trip(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let props = set(store, "db-pass", PLAIN).await;
    assert_eq!(props.name, name("db-pass"));
    assert_eq!(props.version.len(), 32, "{}", props.version);
    assert!(props.version.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(props.enabled);
    assert!(props.tags.is_empty());
    assert_eq!(props.content_type, None);
    let got = store.get(&name("db-pass"), None).await.unwrap();
    assert_eq!(got.value.expose(), PLAIN);
    assert_eq!(got.properties, props);
    let by_version = store
        .get(&name("db-pass"), Some(&props.version))
        .await
        .unwrap();
    assert_eq!(by_version.value.expose(), PLAIN);
    assert!(matches!(
        store.get(&name("nope"), None).await,
        Err(SecretError::NotFound { name }) if name == "nope"
    ));
    match &f.double {
        Some(double) => {
            assert_eq!(store.backend(), "azure-key-vault");
            assert_eq!(store.location(), double.url());
            assert_eq!(double.current_value("db-pass").as_deref(), Some(PLAIN));
        }
        None => assert_eq!(store.backend(), "local"),
    }
}

async fn versions_oldest_first_and_by_version(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let n = name("rotating");
    let mut written = Vec::new();
    for value in ["one", "two", "three"] {
        written.push(set(store, "rotating", value).await);
    }
    let listed = store.list_versions(&n).await.unwrap();
    let versions =
        |ps: &[SecretProperties]| ps.iter().map(|p| p.version.clone()).collect::<Vec<_>>();
    assert_eq!(versions(&listed), versions(&written));
    assert!(listed
        .windows(2)
        .all(|w| w[0].created_at <= w[1].created_at));
    for (props, value) in written.iter().zip(["one", "two", "three"]) {
        let got = store.get(&n, Some(&props.version)).await.unwrap();
        assert_eq!(got.value.expose(), value);
        assert_eq!(got.properties.version, props.version);
    }
    assert_eq!(store.get(&n, None).await.unwrap().value.expose(), "three");
    let missing = "0123456789abcdef0123456789abcdef";
    assert!(matches!(
        store.get(&n, Some(missing)).await,
        Err(SecretError::VersionNotFound { version, .. }) if version == missing
    ));
    assert!(matches!(
        store.get(&name("absent"), Some(missing)).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.list_versions(&name("absent")).await,
        Err(SecretError::NotFound { .. })
    ));
}

async fn options_persisted(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let expires = whole_seconds(Utc::now() + TimeDelta::days(30));
    let tags = BTreeMap::from([
        ("tenant".to_owned(), "acme".to_owned()),
        ("active-principal".to_owned(), "app_a".to_owned()),
    ]);
    let written = store
        .set(
            &name("conn"),
            SecretValue::new(PLAIN),
            SetOptions {
                tags: tags.clone(),
                expires_at: Some(expires),
                content_type: Some("application/x-libpq-url".to_owned()),
            },
        )
        .await
        .unwrap();
    let got = store.get(&name("conn"), None).await.unwrap();
    for props in [&written, &got.properties] {
        assert_eq!(props.tags, tags);
        assert_eq!(props.expires_at, Some(expires));
        assert_eq!(
            props.content_type.as_deref(),
            Some("application/x-libpq-url")
        );
    }
    let listed = store.list_versions(&name("conn")).await.unwrap();
    assert_eq!(listed, vec![written]);
}

async fn update_properties_disables_and_enables(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let n = name("rotating");
    let v1 = set(store, "rotating", "old").await;
    let v2 = set(store, "rotating", "new").await;
    let retired = BTreeMap::from([("state".to_owned(), "retired".to_owned())]);
    let updated = store
        .update_properties(
            &n,
            &v1.version,
            PropertiesUpdate {
                enabled: Some(false),
                tags: Some(retired.clone()),
                ..PropertiesUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(!updated.enabled);
    assert_eq!(updated.version, v1.version);
    assert_eq!(updated.tags, retired);
    assert!(updated.updated_at >= v1.updated_at);
    assert!(matches!(
        store.get(&n, Some(&v1.version)).await,
        Err(SecretError::Disabled { name }) if name == "rotating"
    ));
    assert_eq!(store.get(&n, None).await.unwrap().value.expose(), "new");
    let listed = store.list_versions(&n).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.enabled).collect::<Vec<_>>(),
        vec![false, true]
    );
    // Disabling the current version makes the plain get fail too; enabling it again heals it.
    let disable = PropertiesUpdate {
        enabled: Some(false),
        ..PropertiesUpdate::default()
    };
    store
        .update_properties(&n, &v2.version, disable)
        .await
        .unwrap();
    assert!(matches!(
        store.get(&n, None).await,
        Err(SecretError::Disabled { .. })
    ));
    let expires = whole_seconds(Utc::now() + TimeDelta::days(1));
    let enabled = store
        .update_properties(
            &n,
            &v2.version,
            PropertiesUpdate {
                enabled: Some(true),
                expires_at: Some(Some(expires)),
                ..PropertiesUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(enabled.enabled);
    assert_eq!(enabled.expires_at, Some(expires));
    assert_eq!(store.get(&n, None).await.unwrap().value.expose(), "new");
    // Some(None) clears the expiry; tags untouched when not given.
    let cleared = store
        .update_properties(
            &n,
            &v2.version,
            PropertiesUpdate {
                expires_at: Some(None),
                ..PropertiesUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(cleared.expires_at, None);
    assert_eq!(
        store.get(&n, None).await.unwrap().properties.expires_at,
        None
    );
    assert!(matches!(
        store
            .update_properties(
                &n,
                "0123456789abcdef0123456789abcdef",
                PropertiesUpdate::default()
            )
            .await,
        Err(SecretError::VersionNotFound { .. })
    ));
    assert!(matches!(
        store
            .update_properties(&name("absent"), &v1.version, PropertiesUpdate::default())
            .await,
        Err(SecretError::NotFound { .. })
    ));
}

async fn list_names_sorted_and_paged(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    assert!(store.list_names().await.unwrap().is_empty());
    for n in ["zeta", "alpha", "mid", "gone", "b-1", "b-2", "c-3", "d-4"] {
        set(store, n, PLAIN).await;
    }
    // A disabled secret is still live.
    let d4 = store.get(&name("d-4"), None).await.unwrap().properties;
    store
        .update_properties(
            &name("d-4"),
            &d4.version,
            PropertiesUpdate {
                enabled: Some(false),
                ..PropertiesUpdate::default()
            },
        )
        .await
        .unwrap();
    store.delete(&name("gone")).await.unwrap();
    if let Some(double) = &f.double {
        double.clear_log();
    }
    let names = store.list_names().await.unwrap();
    let expected: Vec<SecretName> = ["alpha", "b-1", "b-2", "c-3", "d-4", "mid", "zeta"]
        .into_iter()
        .map(name)
        .collect();
    assert_eq!(names, expected);
    if let Some(double) = &f.double {
        // 7 names at 3 per page: three pages, all fetched.
        let pages = double
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/secrets" && r.status == 200)
            .count();
        assert_eq!(pages, 3, "{:?}", double.requests());
    }
}

async fn names_are_case_insensitive(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    set(store, "Db-Pass", "one").await;
    let second = set(store, "db-pass", "two").await;
    assert_eq!(second.name.as_str(), "Db-Pass");
    assert_eq!(
        store
            .get(&name("DB-PASS"), None)
            .await
            .unwrap()
            .value
            .expose(),
        "two"
    );
    assert_eq!(
        store.list_versions(&name("db-PASS")).await.unwrap().len(),
        2
    );
    assert_eq!(store.list_names().await.unwrap(), vec![name("Db-Pass")]);
}

async fn soft_delete_hides_the_secret(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let n = name("db-pass");
    set(store, "db-pass", PLAIN).await;
    set(store, "other", PLAIN).await;
    let deleted = store.delete(&n).await.unwrap();
    assert_eq!(deleted.name, n);
    assert_eq!(
        deleted.scheduled_purge_at - deleted.deleted_at,
        TimeDelta::days(f.retention_days)
    );
    assert!((deleted.deleted_at - Utc::now()).num_seconds().abs() < 120);
    // Readable as deleted at once (the store waits for the deletion to settle).
    assert_eq!(store.get_deleted(&n).await.unwrap(), deleted);
    assert!(matches!(
        store.get(&n, None).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.list_versions(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_deleted(&name("other")).await,
        Err(SecretError::NotFound { .. })
    ));
    assert_eq!(store.list_names().await.unwrap(), vec![name("other")]);
}

async fn set_on_deleted_is_deleted_but_recoverable(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let n = name("db-pass");
    let v1 = set(store, "db-pass", PLAIN).await;
    store.delete(&n).await.unwrap();
    let err = store
        .set(&n, SecretValue::new("x"), SetOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SecretError::DeletedButRecoverable { name } if name == "db-pass"),
        "{err:?}"
    );
    assert!(matches!(
        store
            .update_properties(&n, &v1.version, PropertiesUpdate::default())
            .await,
        Err(SecretError::NotFound { .. })
    ));
}

async fn recover_brings_it_back(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let n = name("db-pass");
    set(store, "db-pass", "old").await;
    let v2 = set(store, "db-pass", PLAIN).await;
    store.delete(&n).await.unwrap();
    let recovered = store.recover(&n).await.unwrap();
    assert_eq!(recovered.version, v2.version);
    assert_eq!(recovered.name, n);
    // Readable at once (the store waits for the recovery to settle).
    assert_eq!(store.get(&n, None).await.unwrap().value.expose(), PLAIN);
    assert_eq!(store.list_versions(&n).await.unwrap().len(), 2);
    assert!(matches!(
        store.get_deleted(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.recover(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.recover(&name("never")).await,
        Err(SecretError::NotFound { .. })
    ));
}

async fn purge_removes_for_good(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let n = name("db-pass");
    set(store, "db-pass", PLAIN).await;
    assert!(matches!(
        store.purge(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    store.delete(&n).await.unwrap();
    store.purge(&n).await.unwrap();
    assert!(matches!(
        store.get_deleted(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.get(&n, None).await,
        Err(SecretError::NotFound { .. })
    ));
    assert!(matches!(
        store.purge(&n).await,
        Err(SecretError::NotFound { .. })
    ));
    // The name is free again, with a fresh history.
    set(store, "db-pass", "fresh").await;
    assert_eq!(store.list_versions(&n).await.unwrap().len(), 1);
    if let Some(double) = &f.double {
        assert_eq!(double.current_value("db-pass").as_deref(), Some("fresh"));
    }
}

async fn ensure_absent_is_idempotent(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    set(store, "live", PLAIN).await;
    set(store, "deleted", PLAIN).await;
    store.delete(&name("deleted")).await.unwrap();
    for n in ["live", "deleted"] {
        assert_eq!(
            ensure_absent(store, &name(n)).await.unwrap(),
            Removal::Purged,
            "{n}"
        );
        assert_eq!(
            ensure_absent(store, &name(n)).await.unwrap(),
            Removal::AlreadyAbsent,
            "{n}"
        );
        assert!(matches!(
            store.get_deleted(&name(n)).await,
            Err(SecretError::NotFound { .. })
        ));
    }
    for _ in 0..2 {
        assert_eq!(
            ensure_absent(store, &name("never-existed")).await.unwrap(),
            Removal::AlreadyAbsent
        );
    }
    assert!(store.list_names().await.unwrap().is_empty());
}

async fn purge_protection_keeps_until_scheduled_date(backend: Backend) {
    let f = backend
        .fixture_with(Knobs {
            purge_protection: true,
        })
        .await;
    let store = f.store();
    let n = name("protected");
    set(store, "protected", PLAIN).await;
    for _ in 0..2 {
        let removal = ensure_absent(store, &n).await.unwrap();
        let deleted = store.get_deleted(&n).await.unwrap();
        assert_eq!(
            removal,
            Removal::PurgeProtected {
                scheduled_purge_at: deleted.scheduled_purge_at
            }
        );
        assert_eq!(
            deleted.scheduled_purge_at - deleted.deleted_at,
            TimeDelta::days(7)
        );
    }
    let deleted = store.get_deleted(&n).await.unwrap();
    match store.purge(&n).await {
        Err(SecretError::PurgeProtected {
            name,
            scheduled_purge_at,
        }) => {
            assert_eq!(name, "protected");
            assert_eq!(scheduled_purge_at, deleted.scheduled_purge_at);
        }
        other => panic!("expected PurgeProtected, got {other:?}"),
    }
    // Still recoverable.
    store.recover(&n).await.unwrap();
    assert_eq!(store.get(&n, None).await.unwrap().value.expose(), PLAIN);
}

async fn values_never_in_debug_or_errors(backend: Backend) {
    let f = backend.fixture().await;
    let store = f.store();
    let props = set(store, "db-pass", PLAIN).await;
    let secret = store.get(&name("db-pass"), None).await.unwrap();
    store.delete(&name("db-pass")).await.unwrap();
    let conflict = store
        .set(
            &name("db-pass"),
            SecretValue::new(PLAIN),
            SetOptions::default(),
        )
        .await
        .unwrap_err();
    for text in [
        format!("{secret:?}"),
        format!("{secret:#?}"),
        format!("{}", secret.value),
        format!("{:?}", secret.value),
        format!("{props:?}"),
        format!("{conflict}"),
        format!("{conflict:?}"),
    ] {
        assert!(!text.contains(PLAIN), "{text}");
    }
    assert!(format!("{secret:?}").contains("[redacted]"));
    if let Some(double) = &f.double {
        let store = double.store();
        let text = format!("{store:?}");
        assert!(text.contains(double.url()), "{text}");
        assert!(!text.contains("kv-double-token"), "{text}");
        assert!(!format!("{:?}", double.store_options()).contains("kv-double-token"));
    }
}

/// What only a remote store has: challenge authentication, retries, refusals, TLS.
mod key_vault_only {
    use super::*;

    async fn double() -> KeyVaultDouble {
        KeyVaultDouble::start(KeyVaultDoubleOptions::default()).await
    }

    #[tokio::test]
    async fn challenge_authentication_comes_first() {
        let double = double().await;
        let store = double.store();
        set(&store, "db-pass", PLAIN).await;
        set(&store, "db-pass", PLAIN).await;
        let log = double.requests();
        assert_eq!(log.len(), 3, "{log:?}");
        // The first request goes without a token (and without its body) and is challenged.
        assert_eq!(
            (log[0].method.as_str(), log[0].bearer, log[0].status),
            ("PUT", None, 401)
        );
        // Then the SDK asks the credential for a token and sends it, from then on at once.
        assert_eq!((log[1].bearer, log[1].status), (Some(true), 200));
        assert_eq!((log[2].bearer, log[2].status), (Some(true), 200));
        assert_eq!(double.count(401), 1);
    }

    #[tokio::test]
    async fn wrong_token_is_permission_denied() {
        let double = double().await;
        let store = double.store_with(|o| {
            o.credential = secrets::AzureCredential::StaticTokenForTests {
                token: SecretValue::new("someone-elses-token"),
            };
        });
        let err = store.get(&name("x"), None).await.unwrap_err();
        assert!(
            matches!(err, SecretError::PermissionDenied { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("rejected the token"), "{msg}");
        assert!(msg.contains(double.url()), "{msg}");
        assert!(!msg.contains("someone-elses-token"), "{msg}");
        assert!(double.requests().iter().any(|r| r.bearer == Some(false)));
    }

    #[tokio::test]
    async fn throttling_honours_retry_after() {
        let double = double().await;
        let store = double.store_with(|o| o.retry.max_delay = Duration::from_secs(5));
        set(&store, "warm-up", PLAIN).await;
        double.throttle(1, "1");
        let started = Instant::now();
        set(&store, "db-pass", PLAIN).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(950), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert_eq!(double.count(429), 1);
        assert_eq!(double.current_value("db-pass").as_deref(), Some(PLAIN));
    }

    #[tokio::test]
    async fn retry_after_is_capped_at_max_delay() {
        let double = double().await;
        let store = double.store();
        double.throttle(2, "30");
        let started = Instant::now();
        let props = set(&store, "db-pass", PLAIN).await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(double.count(429), 2);
        assert_eq!(
            store.list_versions(&name("db-pass")).await.unwrap(),
            vec![props]
        );
    }

    #[tokio::test]
    async fn unavailable_is_retried() {
        let double = double().await;
        let store = double.store();
        set(&store, "db-pass", PLAIN).await;
        double.fail(2, 503);
        let got = store.get(&name("db-pass"), None).await.unwrap();
        assert_eq!(got.value.expose(), PLAIN);
        assert_eq!(double.count(503), 2);
        double.fail(1, 500);
        assert_eq!(store.list_names().await.unwrap(), vec![name("db-pass")]);
        assert_eq!(double.count(500), 1);
    }

    #[tokio::test]
    async fn retries_are_bounded() {
        let double = double().await;
        let store = double.store();
        set(&store, "db-pass", PLAIN).await;
        double.fail(1000, 503);
        let started = Instant::now();
        let err = store.get(&name("db-pass"), None).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
        // max_attempts = 4 in the double's store options: the first try and three retries.
        assert_eq!(double.count(503), 4);
        let msg = err.to_string();
        assert!(
            msg.contains("after 4 attempts") && msg.contains("503"),
            "{msg}"
        );
        assert!(msg.contains(double.url()), "{msg}");
        double.fail(0, 503);
        assert!(store.get(&name("db-pass"), None).await.is_ok());
    }

    #[tokio::test]
    async fn non_retryable_answers_return_at_once() {
        let double = double().await;
        let store = double.store();
        set(&store, "db-pass", PLAIN).await;
        double.clear_log();
        assert!(matches!(
            store.get(&name("absent"), None).await,
            Err(SecretError::NotFound { .. })
        ));
        assert_eq!(double.requests().len(), 1, "{:?}", double.requests());
    }

    #[tokio::test]
    async fn refusal_names_vault_permission_and_role() {
        let double = double().await;
        let store = double.store();
        set(&store, "db-pass", PLAIN).await;
        store.delete(&name("db-pass")).await.unwrap();
        double.deny(true);
        double.clear_log();
        let err = store
            .set(
                &name("other"),
                SecretValue::new(PLAIN),
                SetOptions::default(),
            )
            .await
            .unwrap_err();
        let SecretError::PermissionDenied { detail } = &err else {
            panic!("expected PermissionDenied, got {err:?}");
        };
        assert!(detail.contains(double.url()), "{detail}");
        assert!(detail.contains("secrets/set"), "{detail}");
        assert!(detail.contains("Key Vault Secrets Officer"), "{detail}");
        assert!(detail.contains("static_token_for_tests"), "{detail}");
        assert!(!detail.contains(PLAIN), "{detail}");
        // Refusals are not retried.
        assert_eq!(double.count(403), 1);
        // A refused purge is not mistaken for purge protection.
        let err = store.purge(&name("db-pass")).await.unwrap_err();
        assert!(
            matches!(&err, SecretError::PermissionDenied { detail } if detail.contains("secrets/purge")),
            "{err:?}"
        );
        assert!(matches!(
            store.check_access().await,
            Err(SecretError::PermissionDenied { .. })
        ));
        double.deny(false);
        store.check_access().await.unwrap();
    }

    #[tokio::test]
    async fn slow_deletion_and_recovery_are_waited_for() {
        let double = KeyVaultDouble::start(KeyVaultDoubleOptions {
            settle_lag: 3,
            ..KeyVaultDoubleOptions::default()
        })
        .await;
        let store = double.store();
        let n = name("db-pass");
        set(&store, "db-pass", PLAIN).await;
        store.delete(&n).await.unwrap();
        store.get_deleted(&n).await.unwrap();
        store.recover(&n).await.unwrap();
        assert_eq!(store.get(&n, None).await.unwrap().value.expose(), PLAIN);
        // ensure_absent's purge right after its delete must not find "nothing to purge".
        assert_eq!(ensure_absent(&store, &n).await.unwrap(), Removal::Purged);
        assert!(double.current_value("db-pass").is_none());
        assert!(
            double.count(409) + double.count(404) >= 3,
            "{:?}",
            double.requests()
        );
    }

    #[tokio::test]
    async fn same_second_versions_put_the_current_one_last() {
        // The real clock: three writes within (most likely) one second.
        let double = double().await;
        let store = double.store();
        let mut last = None;
        for value in ["one", "two", "three"] {
            last = Some(set(&store, "db-pass", value).await);
        }
        let listed = store.list_versions(&name("db-pass")).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed.last().map(|p| &p.version),
            last.as_ref().map(|p| &p.version)
        );
    }

    #[tokio::test]
    async fn untrusted_certificate_is_refused() {
        let double = double().await;
        let store = double.store_with(|o| o.ca_bundle = None);
        let err = store.get(&name("x"), None).await.unwrap_err();
        assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
        let msg = err.to_string().to_lowercase();
        assert!(msg.contains("cannot reach key vault"), "{msg}");
        assert!(msg.contains("certificate"), "{msg}");
        assert!(double.requests().is_empty());
    }

    #[tokio::test]
    async fn the_server_configuration_opens_key_vault() {
        use server::config::{AzureCredentialKind, SecretStoreKind};
        let double = double().await;
        let token = match &double.store_options().credential {
            secrets::AzureCredential::StaticTokenForTests { token } => token.expose().to_owned(),
            other => panic!("{other:?}"),
        };
        let config = server::Config {
            secret_store: SecretStoreKind::AzureKeyVault,
            key_vault_url: Some(double.url().to_owned()),
            key_vault_ca_bundle: Some(double.ca_bundle().to_path_buf()),
            key_vault_connect_to: Some(double.addr().ip()),
            azure_credential: AzureCredentialKind::StaticTokenForTests,
            azure_static_token: Some(token),
            ..server::Config::default()
        };
        let store = server::open_secret_store(&config).await.unwrap();
        assert_eq!(store.backend(), "azure-key-vault");
        assert_eq!(store.location(), double.url());
        set(store.as_ref(), "db-pass", PLAIN).await;
        assert_eq!(double.current_value("db-pass").as_deref(), Some(PLAIN));
        // Start-up checks access, so a missing role stops it with the reason.
        double.deny(true);
        let err = server::open_secret_store(&config).await.err().unwrap();
        let msg = format!("{err:#}");
        assert!(msg.contains("checking access to Key Vault"), "{msg}");
        assert!(msg.contains("Key Vault Secrets Officer"), "{msg}");
    }

    #[tokio::test]
    async fn unreachable_vault_is_unavailable() {
        // Port 1 (tcpmux) has no listener on our machines; a free_port() could be taken by a
        // parallel test between its probe and our connect.
        let port = 1;
        let double = double().await;
        let store = double.store_with(|o| {
            o.vault_url = format!("https://tcp-double.vault.localhost:{port}/");
        });
        let started = Instant::now();
        let err = store.list_names().await.unwrap_err();
        assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot reach Key Vault"), "{err}");
        // Refused connections are retried a bounded number of times, quickly.
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
