//! The credential check: does each of a tenant's connection strings still log in?
//!
//! A tenant's app login may change its own password (PostgreSQL lets any role `ALTER ROLE` its
//! own password; a SQL Server contained user may `ALTER USER ... OLD_PASSWORD`), and neither
//! engine lets us forbid it. The secret store then holds a string that no longer works, and the
//! next application instance that reads it cannot log in. So the control plane detects it: for
//! every active tenant it reads the *current* version of each of its three secrets and logs in
//! with it ([`engine::Engine::check_login`]), and records in the catalog which did not
//! ([`catalog::CatalogStore::record_credential_check`]). It only reads secrets and logs in; it
//! never changes a password, a secret or a tenant's state. A rotation repairs a failing
//! credential, and checks the tenant again before it reports success.
//!
//! Bounds: tenants are checked a few at a time ([`CredentialCheckLimits::concurrency`]), their
//! three logins at once, each login and each secret read under a timeout, so an unreachable
//! server or a hanging login never stalls a pass. A tenant with an operation running is skipped
//! (a rotation changes passwords on purpose), and a result is recorded only when no operation
//! started while it was taken (the catalog checks that under the tenant's row lock).
//!
//! A credential is *failing* when its secret cannot be read as the application would read it
//! (missing, disabled) or when logging in with it does not succeed in time, for whatever reason
//! (refused password, disabled login, server unreachable): `detail` says which. When the secret
//! store itself cannot be used (unavailable, permission denied), the check says nothing about
//! the tenant's credentials, so nothing is recorded and the last result stays.

use std::time::{Duration, Instant};

use api_types::{CredentialName, TenantSecrets, TenantState};
use catalog::{CatalogError, CredentialCheck, TenantRecord};
use futures::StreamExt as _;
use secrets::{SecretError, SecretName, SecretValue};
use tracing::{info, warn};

use crate::{Orchestrator, Services};

/// At most this many characters of one credential's reason are kept (engine messages are
/// short; this bounds what a misbehaving server could make us store).
const MAX_REASON_CHARS: usize = 300;

/// How much work one pass may do at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CredentialCheckLimits {
    /// Tenants checked at once (each opens up to three logins at once).
    pub concurrency: usize,
    /// How long one secret read, and then one login, may take before it counts as failed.
    pub login_timeout: Duration,
}

impl Default for CredentialCheckLimits {
    fn default() -> Self {
        CredentialCheckLimits {
            concurrency: 4,
            login_timeout: Duration::from_secs(10),
        }
    }
}

/// What one pass did, counted by tenant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredentialCheckPass {
    /// Checked and recorded: every credential logged in.
    pub ok: usize,
    /// Checked and recorded: at least one credential did not log in.
    pub failing: usize,
    /// Not recorded because an operation was running or started meanwhile.
    pub skipped: usize,
    /// Not recorded because the check could not be carried out (secret store or catalog).
    pub errors: usize,
}

impl CredentialCheckPass {
    /// Tenants whose result was recorded.
    pub fn checked(&self) -> usize {
        self.ok + self.failing
    }

    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Failing => self.failing += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Error => self.errors += 1,
        }
    }
}

/// What became of one tenant's check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Failing,
    Skipped,
    Error,
}

impl Outcome {
    /// The metric label (a closed set).
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failing => "failing",
            Outcome::Skipped => "skipped",
            Outcome::Error => "error",
        }
    }
}

/// What one credential's login found.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Login {
    Works,
    /// It does not log in; why (no secret value in it).
    Fails(String),
    /// The secret store could not be used; nothing can be said about the credential.
    Unknown(String),
}

impl Orchestrator {
    /// Checks every active tenant's credentials every `interval` (the first pass after one
    /// interval, like the anchor task). Passes never overlap: the next waits for the last.
    pub fn start_credential_check_task(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = this.check_credentials_once().await {
                    warn!(error = %e, "credential check: listing tenants failed");
                }
            }
        })
    }

    /// One pass of the credential check with the default limits.
    pub async fn check_credentials_once(&self) -> Result<CredentialCheckPass, CatalogError> {
        self.check_credentials_with(CredentialCheckLimits::default())
            .await
    }

    /// One pass of the credential check: every active tenant without a running operation, a
    /// few at a time. Errors of single tenants are logged and counted, not returned.
    pub async fn check_credentials_with(
        &self,
        limits: CredentialCheckLimits,
    ) -> Result<CredentialCheckPass, CatalogError> {
        let started = Instant::now();
        let svc = self.runner().services();
        let tenants: Vec<TenantRecord> = svc
            .catalog
            .list_tenants()
            .await?
            .into_iter()
            .filter(|t| t.state == TenantState::Active && t.released_at.is_none())
            .collect();
        // Owned records: a stream of futures borrowing from the closure's argument is not
        // `Send` for every lifetime, which `tokio::spawn` needs.
        let outcomes: Vec<Outcome> = futures::stream::iter(tenants)
            .map(|tenant| async move { check_idle_tenant(svc, &tenant, limits).await })
            .buffer_unordered(limits.concurrency.max(1))
            .collect()
            .await;
        let mut pass = CredentialCheckPass::default();
        for outcome in outcomes {
            pass.add(outcome);
        }
        let seconds = started.elapsed().as_secs_f64();
        if let Some(observer) = &svc.observer {
            observer.credential_pass_finished(seconds);
        }
        info!(
            ok = pass.ok,
            failing = pass.failing,
            skipped = pass.skipped,
            errors = pass.errors,
            seconds,
            "credential check pass finished"
        );
        Ok(pass)
    }
}

/// Checks a tenant that has no operation running, for the periodic pass.
async fn check_idle_tenant(
    svc: &Services,
    tenant: &TenantRecord,
    limits: CredentialCheckLimits,
) -> Outcome {
    // The operation count first: an operation that starts after it makes the catalog refuse
    // the result; one that started before it is seen as running just below.
    let seen = match svc.catalog.tenant_operations(tenant.id).await {
        Ok(ops) => ops.len(),
        Err(e) => return catalog_failed(svc, tenant, &e),
    };
    match svc.catalog.active_operation(tenant.id).await {
        Ok(Some(_)) => return observed(svc, Outcome::Skipped),
        Ok(None) => {}
        Err(e) => return catalog_failed(svc, tenant, &e),
    }
    check_and_record(svc, tenant, seen, limits).await
}

fn catalog_failed(svc: &Services, tenant: &TenantRecord, e: &CatalogError) -> Outcome {
    warn!(tenant = %tenant.slug, error = %e, "credential check: catalog read failed");
    observed(svc, Outcome::Error)
}

fn observed(svc: &Services, outcome: Outcome) -> Outcome {
    if let Some(observer) = &svc.observer {
        observer.credential_checked(outcome.as_str());
    }
    outcome
}

/// Logs in with the current version of each of the tenant's secrets and records the result,
/// fenced by `operations_seen` (the tenant's operation count when the check began). Used by
/// the periodic pass and by a rotation that has done its work (which counts itself).
pub(crate) async fn check_and_record(
    svc: &Services,
    tenant: &TenantRecord,
    operations_seen: usize,
    limits: CredentialCheckLimits,
) -> Outcome {
    let checked_at = chrono::Utc::now();
    let secrets = TenantSecrets::for_slug(&tenant.slug);
    // A server that cannot be reached says nothing about the credentials: nothing is recorded.
    let engine = match svc.engines.for_tenant(tenant).await {
        Ok(engine) => engine,
        Err(e) => {
            warn!(tenant = %tenant.slug, error = %e, "credential check: the tenant's server is unavailable");
            return observed(svc, Outcome::Error);
        }
    };
    let logins = futures::future::join_all(
        CredentialName::ALL
            .map(|c| login_with(svc, engine.as_ref(), &secrets, c, limits.login_timeout)),
    )
    .await;
    let mut failing = Vec::new();
    let mut reasons = Vec::new();
    for (credential, login) in CredentialName::ALL.into_iter().zip(logins) {
        match login {
            Login::Works => {}
            Login::Fails(reason) => {
                failing.push(credential);
                reasons.push(format!("{credential}: {reason}"));
            }
            Login::Unknown(reason) => {
                warn!(tenant = %tenant.slug, %credential, %reason,
                      "credential check: not recorded, the secret store could not be used");
                return observed(svc, Outcome::Error);
            }
        }
    }
    let check = CredentialCheck {
        checked_at,
        detail: (!reasons.is_empty()).then(|| reasons.join("; ")),
        failing,
    };
    let outcome = match svc
        .catalog
        .record_credential_check(tenant.id, operations_seen, &check)
        .await
    {
        Ok(false) => Outcome::Skipped,
        Ok(true) if check.failing.is_empty() => Outcome::Ok,
        Ok(true) => {
            warn!(tenant = %tenant.slug, detail = check.detail.as_deref().unwrap_or_default(),
                  "CREDENTIALS DO NOT LOG IN; rotate the tenant's credentials to repair them");
            Outcome::Failing
        }
        Err(e) => {
            warn!(tenant = %tenant.slug, error = %e, "credential check: recording failed");
            Outcome::Error
        }
    };
    observed(svc, outcome)
}

/// Reads the current version of one secret and logs in with it, each under `timeout`.
async fn login_with(
    svc: &Services,
    engine: &dyn engine::Engine,
    secrets: &TenantSecrets,
    credential: CredentialName,
    timeout: Duration,
) -> Login {
    let name = match SecretName::new(credential.secret(secrets)) {
        Ok(name) => name,
        Err(e) => return Login::Unknown(e.to_string()),
    };
    let secret = match tokio::time::timeout(timeout, svc.secrets.get(&name, None)).await {
        Ok(Ok(secret)) => secret,
        // What the application reading the secret would meet too.
        Ok(Err(
            e @ (SecretError::NotFound { .. }
            | SecretError::VersionNotFound { .. }
            | SecretError::Disabled { .. }
            | SecretError::DeletedButRecoverable { .. }
            | SecretError::Corrupt { .. }),
        )) => return Login::Fails(bounded(&e.to_string())),
        Ok(Err(e)) => return Login::Unknown(e.to_string()),
        Err(_) => {
            return Login::Unknown(format!(
                "reading secret {name} took longer than {}",
                seconds(timeout)
            ))
        }
    };
    match tokio::time::timeout(timeout, engine.check_login(&secret.value)).await {
        Ok(Ok(())) => Login::Works,
        Ok(Err(e)) => Login::Fails(bounded(&scrub(
            &e.to_string(),
            &secret.value,
            engine.password_of(&secret.value).ok().as_ref(),
        ))),
        Err(_) => Login::Fails(format!("no login within {}", seconds(timeout))),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `message` with the connection string and its password taken out. Engine errors never hold
/// either (they name server, database and user); this keeps it so should a driver ever echo
/// one, since the reason is stored in the catalog and shown by the API.
fn scrub(message: &str, connection_string: &SecretValue, password: Option<&SecretValue>) -> String {
    let mut out = message.replace(connection_string.expose(), "[redacted]");
    if let Some(p) = password.filter(|p| p.expose().len() >= 8) {
        out = out.replace(p.expose(), "[redacted]");
    }
    out
}

/// One line of at most [`MAX_REASON_CHARS`] characters.
fn bounded(reason: &str) -> String {
    let line = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_REASON_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_REASON_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_string_and_its_password() {
        let cs = SecretValue::new("postgresql://u:Sup3rSecretPassw0rd@h:5432/db");
        let pw = SecretValue::new("Sup3rSecretPassw0rd");
        let message = format!("cannot connect to {}: bad Sup3rSecretPassw0rd", cs.expose());
        let out = scrub(&message, &cs, Some(&pw));
        assert!(!out.contains("Sup3rSecretPassw0rd"), "{out}");
        assert_eq!(out, "cannot connect to [redacted]: bad [redacted]");
        // A short "password" would mangle ordinary words; generated ones are 32 characters.
        let out = scrub(
            "password authentication failed",
            &cs,
            Some(&SecretValue::new("a")),
        );
        assert_eq!(out, "password authentication failed");
    }

    #[test]
    fn reasons_are_one_bounded_line() {
        assert_eq!(bounded("a\n  b\tc"), "a b c");
        let long = "x".repeat(1000);
        let cut = bounded(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_pass_counts_recorded_tenants_as_checked() {
        let mut pass = CredentialCheckPass::default();
        for o in [
            Outcome::Ok,
            Outcome::Failing,
            Outcome::Skipped,
            Outcome::Error,
            Outcome::Ok,
        ] {
            pass.add(o);
        }
        assert_eq!(
            pass,
            CredentialCheckPass {
                ok: 2,
                failing: 1,
                skipped: 1,
                errors: 1
            }
        );
        assert_eq!(pass.checked(), 3);
    }
}
