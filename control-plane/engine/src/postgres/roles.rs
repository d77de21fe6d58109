//! A tenant's PostgreSQL roles: the seven created or altered in one batch, and passwords set as
//! SCRAM verifiers, several at once.

use secrets::SecretValue;
use tokio_postgres::Client;

use super::{is_code, PostgresEngine};
use crate::marker::Marker;
use crate::sql::{pg_ident, pg_literal};
use crate::{Credentials, EngineError, TenantNames};

/// A SCRAM verifier of `password` as an SQL literal: the server never sees the password.
fn scram_literal(password: &SecretValue) -> Result<String, EngineError> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    pg_literal(&verifier)
        .ok_or_else(|| EngineError::Configuration("password verifier holds NUL".into()))
}

impl PostgresEngine {
    /// Creates (or alters) the tenant's seven roles with their attributes and memberships;
    /// `passwords` `None` makes every one unable to log in (a pooled database's stand-ins).
    ///
    /// One read finds which roles exist and whose they are, one batch creates or alters all
    /// seven, and the three passwords are set afterwards at once ([`Self::set_passwords`]),
    /// each with `LOGIN`: until then those roles cannot log in at all (whatever the server's
    /// `pg_hba.conf` allows), and a crash in between leaves roles that a retry completes.
    pub(super) async fn ensure_roles(
        &self,
        names: &TenantNames,
        passwords: Option<&Credentials>,
    ) -> Result<(), EngineError> {
        // app_b gets its password at its first rotation; until then it cannot authenticate.
        let app_b = if passwords.is_some() {
            "LOGIN INHERIT"
        } else {
            "NOLOGIN INHERIT"
        };
        // INHERIT so the owner gets `pg_database_owner`'s rights on `public` (refinery keeps its
        // history table there); it is a member of nothing else. NOINHERIT for the
        // investigator: it reads only after an explicit SET ROLE to the reader, which the
        // audited path performs after recording the query.
        let roles = [
            (&names.owner, "NOLOGIN INHERIT"),
            (&names.app_rw, "NOLOGIN NOINHERIT"),
            (&names.app_a, "NOLOGIN INHERIT"),
            (&names.app_b, app_b),
            (&names.audit_admin, "NOLOGIN NOINHERIT"),
            (&names.reader, "NOLOGIN NOINHERIT"),
            (&names.investigator, "NOLOGIN NOINHERIT"),
        ];
        let all: Vec<String> = roles.iter().map(|(r, _)| r.to_string()).collect();
        let ours = self.marker_for(names);
        // A concurrent creator (impossible under the lease, but cheap to tolerate) makes the
        // batch fail with 42710 once; the second pass alters what it created.
        let mut attempt = 0;
        loop {
            let admin = self.admin().await?;
            let existing = admin
                .query(
                    "SELECT rolname::text, shobj_description(oid, 'pg_authid') FROM pg_roles \
                      WHERE rolname = ANY($1)",
                    &[&all],
                )
                .await?;
            let mut batch = String::new();
            for (role, attributes) in &roles {
                let row = existing.iter().find(|r| r.get::<_, String>(0) == **role);
                if let (Some(ours), Some(row)) = (&ours, row) {
                    let text: Option<&str> = row.get(1);
                    if ours.foreign(text) {
                        return Err(ours.refuse(&format!("role {role}"), text));
                    }
                }
                let verb = if row.is_some() { "ALTER" } else { "CREATE" };
                batch.push_str(&format!(
                    "{verb} ROLE {} {attributes} PASSWORD NULL; ",
                    pg_ident(role)
                ));
            }
            batch.push_str(&format!(
                "GRANT {rw} TO {a}; GRANT {rw} TO {b}; GRANT {reader} TO {inv}{mark}",
                rw = pg_ident(&names.app_rw),
                a = pg_ident(&names.app_a),
                b = pg_ident(&names.app_b),
                reader = pg_ident(&names.reader),
                inv = pg_ident(&names.investigator),
                mark = self.mark_roles_sql(names),
            ));
            match admin.batch_execute(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    let e = EngineError::from(e);
                    if attempt == 0 && is_code(&e, "42710") {
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
        if let Some(p) = passwords {
            let roles = [
                (names.app_a.as_str(), &p.app_a),
                (names.audit_admin.as_str(), &p.audit_admin),
                (names.investigator.as_str(), &p.investigator),
            ];
            self.set_passwords(&roles, true).await?;
        }
        Ok(())
    }

    /// Gives each role its password (and `LOGIN` with it if `login`), all at once: the SCRAM
    /// verifiers are computed on blocking threads and each is set from its own admin session. The server only ever sees a verifier,
    /// never the password, so no server log (`log_statement = 'all'`, say) can leak it. Each
    /// `PASSWORD` costs PostgreSQL some 3.5 ms of CPU (it makes sure the verifier is not one of
    /// an empty password: 4,096 HMAC rounds), so three in a row were most of a warm-pool claim.
    pub(super) async fn set_passwords(
        &self,
        roles: &[(&str, &SecretValue)],
        login: bool,
    ) -> Result<(), EngineError> {
        let login = if login { " LOGIN" } else { "" };
        let sets = roles.iter().map(|(role, password)| async move {
            let password = (*password).clone();
            let literal = tokio::task::spawn_blocking(move || scram_literal(&password))
                .await
                .map_err(|e| EngineError::Configuration(format!("password verifier: {e}")))??;
            self.admin()
                .await?
                .batch_execute(&format!(
                    "ALTER ROLE {}{login} PASSWORD {literal}",
                    pg_ident(role)
                ))
                .await?;
            Ok::<(), EngineError>(())
        });
        futures::future::try_join_all(sets).await?;
        Ok(())
    }

    /// Creates or alters `role`; an existing role carrying another tenant's or deployment's
    /// marker (`ours` would be written) is refused, not taken over.
    pub(super) async fn ensure_role(
        &self,
        client: &Client,
        ours: Option<&Marker>,
        role: &str,
        attributes: &str,
        password: Option<&SecretValue>,
    ) -> Result<(), EngineError> {
        let existing = client
            .query_opt(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await?;
        let exists = existing.is_some();
        if let (Some(ours), Some(row)) = (ours, &existing) {
            let text: Option<&str> = row.get(0);
            if ours.foreign(text) {
                return Err(ours.refuse(&format!("role {role}"), text));
            }
        }
        // The server only ever sees a SCRAM verifier, never the password, so no server log
        // (log_statement = 'all', say) can leak it.
        let password_clause = match password {
            Some(p) => format!(" PASSWORD {}", scram_literal(p)?),
            None => " PASSWORD NULL".into(),
        };
        let verb = if exists { "ALTER" } else { "CREATE" };
        let statement = format!(
            "{verb} ROLE {} {attributes}{password_clause}",
            pg_ident(role)
        );
        match client.batch_execute(&statement).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = EngineError::from(e);
                // A concurrent creator (impossible under the lease, but cheap to tolerate).
                if !exists && is_code(&e, "42710") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}
