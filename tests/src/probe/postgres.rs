//! The PostgreSQL probe: the suite's calls in PostgreSQL's SQL, on the shared test cluster.

use async_trait::async_trait;
use secrets::SecretValue;
use tokio_postgres::Client;
use uuid::Uuid;

use super::{Attempt, Probe, Refusal, Session, Table};
use crate::env::connect;
use crate::PgCluster;

/// The probe for the shared PostgreSQL test cluster.
#[derive(Debug, Default)]
pub struct PostgresProbe;

/// One PostgreSQL session.
pub struct PostgresSession {
    client: Client,
    /// The tenant's reader role, derived from the login (`t_<tenant>_<principal>`).
    reader: Option<String>,
}

fn refusal(e: tokio_postgres::Error) -> Refusal {
    let code = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
    let text = match e.as_db_error() {
        Some(db) => format!("{code}: {}", db.message()),
        None => e.to_string(),
    };
    // The append-only triggers raise 42501 too; their message tells them apart.
    if text.contains("append-only") {
        Refusal::Protected(text)
    // 3D000: a database the login cannot even see is as unreachable as a forbidden one.
    } else if matches!(code.as_str(), "42501" | "28P01" | "28000" | "3D000") {
        Refusal::Denied(text)
    } else {
        Refusal::Other(text)
    }
}

fn table(t: Table) -> &'static str {
    match t {
        Table::Customers => "app.customers",
        Table::Invoices => "app.invoices",
        Table::InvoiceLines => "app.invoice_lines",
        Table::AccountingPeriods => "app.accounting_periods",
        Table::CustomersHistory => "history.customers_history",
        Table::InvoicesHistory => "history.invoices_history",
    }
}

fn is_history(t: Table) -> bool {
    matches!(t, Table::CustomersHistory | Table::InvoicesHistory)
}

/// The statement an attempt runs.
pub fn statement(attempt: Attempt) -> String {
    match attempt {
        Attempt::Select(t) => format!("SELECT * FROM {} LIMIT 1", table(t)),
        Attempt::Insert(Table::Customers) => "INSERT INTO app.customers (name) VALUES ('x')".into(),
        Attempt::Insert(t) => format!("INSERT INTO {} DEFAULT VALUES", table(t)),
        Attempt::Update(t) if is_history(t) => {
            format!("UPDATE {} SET valid_to = now()", table(t))
        }
        Attempt::Update(t) => format!("UPDATE {} SET valid_from = now()", table(t)),
        Attempt::Delete(t) => format!("DELETE FROM {}", table(t)),
        Attempt::Truncate(t) => format!("TRUNCATE {}", table(t)),
        Attempt::SelectAudit => "SELECT * FROM audit.audit_events LIMIT 1".into(),
        Attempt::UpdateAudit => "UPDATE audit.audit_events SET actor = 'x'".into(),
        Attempt::DeleteAudit => "DELETE FROM audit.audit_events".into(),
        Attempt::TruncateAudit => "TRUNCATE audit.audit_events".into(),
        Attempt::Purge => "SELECT audit.purge_before(now(), 'probe')".into(),
        Attempt::RecordEvent => "SELECT audit.record_event('forged', '{}')".into(),
        Attempt::CallWritingProcedure => "SELECT app.customer_upsert(NULL, 'x', NULL)".into(),
        Attempt::CreateTable => "CREATE TABLE public.t (x int)".into(),
        Attempt::CreateSchema => "CREATE SCHEMA evil".into(),
        Attempt::StoreOutsideApp => "SELECT lo_create(0)".into(),
        Attempt::DisableStatementTimeout => {
            "SELECT set_config('statement_timeout', '0', false)".into()
        }
    }
}

/// The cluster's superuser on a database (what a rogue administrator would use).
async fn superuser_on(database: &str) -> tokio_postgres::Client {
    connect(&PgCluster::shared().url_for(database))
        .await
        .unwrap_or_else(|e| panic!("superuser on {database}: {e}"))
}

impl PostgresSession {
    async fn one_uuid(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Uuid, Refusal> {
        Ok(self
            .client
            .query_one(sql, params)
            .await
            .map_err(refusal)?
            .get(0))
    }
}

#[async_trait]
impl Session for PostgresSession {
    async fn customer_upsert(
        &mut self,
        id: Option<Uuid>,
        name: &str,
        email: Option<&str>,
    ) -> Result<Uuid, Refusal> {
        self.one_uuid(
            "SELECT app.customer_upsert($1, $2, $3)",
            &[&id, &name, &email],
        )
        .await
    }

    async fn period_open(&mut self, starts: &str, ends: &str) -> Result<Uuid, Refusal> {
        self.one_uuid(
            "SELECT app.period_open($1::text::date, $2::text::date)",
            &[&starts, &ends],
        )
        .await
    }

    async fn invoice_create(
        &mut self,
        customer: Uuid,
        period: Uuid,
        number: &str,
        issued: &str,
    ) -> Result<Uuid, Refusal> {
        self.one_uuid(
            "SELECT app.invoice_create($1, $2, $3, $4::text::date)",
            &[&customer, &period, &number, &issued],
        )
        .await
    }

    async fn invoice_add_line(
        &mut self,
        invoice: Uuid,
        description: &str,
        quantity: i32,
        unit_price: &str,
    ) -> Result<(), Refusal> {
        self.client
            .execute(
                "SELECT app.invoice_add_line($1, $2, $3::int, $4::text::numeric)",
                &[&invoice, &description, &quantity, &unit_price],
            )
            .await
            .map_err(refusal)?;
        Ok(())
    }

    async fn invoice_post(&mut self, invoice: Uuid) -> Result<(), Refusal> {
        self.client
            .execute("SELECT app.invoice_post($1)", &[&invoice])
            .await
            .map_err(refusal)?;
        Ok(())
    }

    async fn period_close(&mut self, period: Uuid) -> Result<(), Refusal> {
        self.client
            .execute("SELECT app.period_close($1)", &[&period])
            .await
            .map_err(refusal)?;
        Ok(())
    }

    async fn invoice_status(&mut self, invoice: Uuid) -> Result<String, Refusal> {
        let v: serde_json::Value = self
            .client
            .query_one("SELECT app.invoice_get($1)", &[&invoice])
            .await
            .map_err(refusal)?
            .get(0);
        Ok(v["status"].as_str().unwrap_or_default().to_owned())
    }

    async fn customer_name(&mut self, customer: Uuid) -> Result<String, Refusal> {
        Ok(self
            .client
            .query_one("SELECT name FROM app.customer_get($1)", &[&customer])
            .await
            .map_err(refusal)?
            .get(0))
    }

    async fn attempt(&mut self, attempt: Attempt) -> Result<(), Refusal> {
        self.client
            .batch_execute(&statement(attempt))
            .await
            .map_err(refusal)
    }

    async fn count(&mut self, t: Table) -> Result<i64, Refusal> {
        Ok(self
            .client
            .query_one(&format!("SELECT count(*) FROM {}", table(t)), &[])
            .await
            .map_err(refusal)?
            .get(0))
    }

    async fn become_reader(&mut self) -> Result<(), Refusal> {
        let reader = self
            .reader
            .clone()
            .ok_or_else(|| Refusal::Other("not a tenant login".into()))?;
        self.client
            .batch_execute(&format!("SET ROLE \"{reader}\""))
            .await
            .map_err(refusal)
    }

    async fn audit_actions(&mut self) -> Result<Vec<String>, Refusal> {
        Ok(self
            .client
            .query("SELECT action FROM audit.audit_events ORDER BY id", &[])
            .await
            .map_err(refusal)?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    async fn last_audit_event(&mut self) -> Result<(String, serde_json::Value), Refusal> {
        let row = self
            .client
            .query_one(
                "SELECT action, detail FROM audit.audit_events ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(refusal)?;
        Ok((row.get(0), row.get(1)))
    }

    async fn purge_all(&mut self, reason: &str) -> Result<i64, Refusal> {
        Ok(self
            .client
            .query_one(
                "SELECT audit.purge_before(clock_timestamp(), $1)",
                &[&reason],
            )
            .await
            .map_err(refusal)?
            .get(0))
    }

    async fn verify_chain(&mut self) -> Result<(bool, Option<i64>), Refusal> {
        let row = self
            .client
            .query_one(
                "SELECT valid, first_broken_id FROM audit.verify_chain()",
                &[],
            )
            .await
            .map_err(refusal)?;
        Ok((row.get(0), row.get(1)))
    }

    async fn assert_identity(&mut self, actor: &str, request_id: &str) -> Result<(), Refusal> {
        // SET, not set_config: the statement needs no function right at all.
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        self.client
            .batch_execute(&format!(
                "SET tcp.actor = {}; SET application_name = {}",
                quote(actor),
                quote(request_id)
            ))
            .await
            .map_err(refusal)
    }

    async fn begin(&mut self) -> Result<(), Refusal> {
        self.client.batch_execute("BEGIN").await.map_err(refusal)
    }

    async fn rollback(&mut self) -> Result<(), Refusal> {
        self.client.batch_execute("ROLLBACK").await.map_err(refusal)
    }

    async fn execute(&mut self, sql: &str) -> Result<(), Refusal> {
        self.client.batch_execute(sql).await.map_err(refusal)
    }
}

/// The tenant's reader role for a tenant login `t_<tenant>_<principal>` (the principal itself
/// may hold an underscore: app_a, audit_admin).
fn reader_of(user: &str) -> Option<String> {
    let rest = user.strip_prefix("t_")?;
    let (tenant, _) = rest.rsplit_once('_')?;
    let tenant = ["_app", "_audit"]
        .iter()
        .find_map(|p| tenant.strip_suffix(p))
        .unwrap_or(tenant);
    Some(format!("t_{tenant}_reader"))
}

fn parse(s: &SecretValue) -> tokio_postgres::Config {
    s.expose()
        .parse()
        .unwrap_or_else(|_| panic!("not a libpq URL"))
}

#[async_trait]
impl Probe for PostgresProbe {
    async fn login(&self, connection_string: &SecretValue) -> Result<Box<dyn Session>, Refusal> {
        let user = parse(connection_string)
            .get_user()
            .unwrap_or_default()
            .to_owned();
        let reader = reader_of(&user);
        let client = connect(connection_string.expose()).await.map_err(refusal)?;
        Ok(Box::new(PostgresSession { client, reader }))
    }

    fn with_credentials(
        &self,
        connection_string: &SecretValue,
        user: &str,
        password: &str,
    ) -> SecretValue {
        let rest = connection_string.expose().split_once('@').map(|(_, r)| r);
        SecretValue::new(format!(
            "postgresql://{user}:{password}@{}",
            rest.unwrap_or_default()
        ))
    }

    async fn change_own_password(
        &self,
        connection_string: &SecretValue,
        new_password: &str,
    ) -> Result<SecretValue, Refusal> {
        let user = parse(connection_string)
            .get_user()
            .unwrap_or_default()
            .to_owned();
        let client = connect(connection_string.expose()).await.map_err(refusal)?;
        // ALTER ROLE takes no parameters; the literal is quoted. Any role may do this to itself.
        let literal = engine::sql::pg_literal(new_password)
            .ok_or_else(|| Refusal::Other("the password holds a NUL character".into()))?;
        client
            .batch_execute(&format!("ALTER ROLE CURRENT_USER PASSWORD {literal}"))
            .await
            .map_err(refusal)?;
        Ok(self.with_credentials(connection_string, &user, new_password))
    }

    fn with_database(&self, connection_string: &SecretValue, database: &str) -> SecretValue {
        let base = connection_string
            .expose()
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or_default();
        SecretValue::new(format!("{base}/{database}"))
    }

    async fn admin(&self, database: &str) -> Box<dyn Session> {
        let client = superuser_on(database).await;
        Box::new(PostgresSession {
            client,
            reader: None,
        })
    }

    async fn database_exists(&self, database: &str) -> bool {
        superuser_on("postgres")
            .await
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_some()
    }

    async fn database_marker(&self, database: &str) -> Option<String> {
        superuser_on("postgres")
            .await
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&database],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .and_then(|r| r.get(0))
    }

    async fn plant_database(&self, database: &str, marker: Option<&str>) {
        let admin = superuser_on("postgres").await;
        let db = engine::sql::pg_ident(database);
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap_or_else(|e| panic!("creating {database}: {e}"));
        if let Some(m) = marker {
            admin
                .batch_execute(&format!(
                    "COMMENT ON DATABASE {db} IS {}",
                    engine::sql::pg_literal(m).unwrap()
                ))
                .await
                .unwrap_or_else(|e| panic!("marking {database}: {e}"));
        }
    }

    async fn plant_login(&self, name: &str, marker: &str) -> bool {
        let role = engine::sql::pg_ident(name);
        superuser_on("postgres")
            .await
            .batch_execute(&format!(
                "CREATE ROLE {role} NOLOGIN; COMMENT ON ROLE {role} IS {}",
                engine::sql::pg_literal(marker).unwrap()
            ))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        true
    }

    async fn set_database_marker(&self, database: &str, marker: &str) {
        superuser_on("postgres")
            .await
            .batch_execute(&format!(
                "COMMENT ON DATABASE {} IS {}",
                engine::sql::pg_ident(database),
                engine::sql::pg_literal(marker).unwrap()
            ))
            .await
            .unwrap_or_else(|e| panic!("marking {database}: {e}"));
    }

    async fn drop_database(&self, database: &str) {
        superuser_on("postgres")
            .await
            .batch_execute(&format!(
                "DROP DATABASE {} WITH (FORCE)",
                engine::sql::pg_ident(database)
            ))
            .await
            .unwrap_or_else(|e| panic!("dropping {database}: {e}"));
    }

    async fn drop_principal(&self, database: &str, name: &str) {
        let role = engine::sql::pg_ident(name);
        superuser_on(database)
            .await
            .batch_execute(&format!("DROP OWNED BY {role}"))
            .await
            .unwrap_or_else(|e| panic!("dropping what {name} owns: {e}"));
        superuser_on("postgres")
            .await
            .batch_execute(&format!("DROP ROLE {role}"))
            .await
            .unwrap_or_else(|e| panic!("dropping {name}: {e}"));
    }

    async fn tamper_with_audit_event(&self, database: &str, action: &str) -> i64 {
        let db = superuser_on(database).await;
        let id: i64 = db
            .query_one(
                "SELECT max(id) FROM audit.audit_events WHERE action = $1",
                &[&action],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0);
        db.batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE audit.audit_events SET actor = 'mallory' WHERE id = {id}; \
             SET session_replication_role = origin"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        id
    }

    async fn delete_audit_event(&self, database: &str, action: &str) -> i64 {
        let db = superuser_on(database).await;
        let id: i64 = db
            .query_one(
                "SELECT max(id) FROM audit.audit_events WHERE action = $1",
                &[&action],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0);
        db.batch_execute(&format!(
            "SET session_replication_role = replica; \
             DELETE FROM audit.audit_events WHERE id = {id}; \
             SET session_replication_role = origin"
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        id
    }

    async fn insert_audit_event(&self, database: &str) -> i64 {
        let db = superuser_on(database).await;
        db.query_one(
            "INSERT INTO audit.audit_events \
                 (id, occurred_at, principal, actor, action, detail, request_id, prev_hash, hash, \
                  hash_version, origin) \
             OVERRIDING SYSTEM VALUE \
             SELECT max(id) + 1, now(), 'postgres', 'mallory', 'customer.upsert', '{}', NULL, \
                    (SELECT hash FROM audit.audit_events ORDER BY id DESC LIMIT 1), \
                    sha256('forged'), 2, 'application' \
               FROM audit.audit_events \
             RETURNING id",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("forging an event in {database}: {e}"))
        .get(0)
    }

    async fn wipe_audit_log(&self, database: &str) {
        let db = superuser_on(database).await;
        db.batch_execute(
            "SET session_replication_role = replica; \
             DELETE FROM audit.audit_events; \
             UPDATE audit.chain_head SET id = 0, hash = decode(repeat('00', 32), 'hex'); \
             SET session_replication_role = origin",
        )
        .await
        .unwrap_or_else(|e| panic!("wiping the log of {database}: {e}"));
    }

    async fn rewrite_audit_chain(&self, database: &str) -> i64 {
        let db = superuser_on(database).await;
        db.batch_execute(
            "SET session_replication_role = replica; \
             UPDATE audit.audit_events SET actor = 'mallory' \
              WHERE id = (SELECT min(id) FROM audit.audit_events); \
             DO $$ DECLARE r record; v_prev bytea; v_hash bytea; BEGIN \
               SELECT prev_hash INTO v_prev FROM audit.audit_events ORDER BY id LIMIT 1; \
               FOR r IN SELECT * FROM audit.audit_events ORDER BY id LOOP \
                 v_hash := audit.hash_of(r.hash_version, v_prev, r.id, r.occurred_at, r.origin, \
                                         r.principal, r.actor, r.action, r.detail, r.request_id); \
                 UPDATE audit.audit_events SET prev_hash = v_prev, hash = v_hash WHERE id = r.id; \
                 v_prev := v_hash; \
               END LOOP; \
               UPDATE audit.chain_head SET hash = v_prev; \
             END $$; \
             SET session_replication_role = origin",
        )
        .await
        .unwrap_or_else(|e| panic!("rewriting the chain of {database}: {e}"));
        db.query_one("SELECT min(id) FROM audit.audit_events", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0)
    }

    async fn forge_purge_of_newest(&self, database: &str) -> i64 {
        let db = superuser_on(database).await;
        let id: i64 = db
            .query_one("SELECT max(id) FROM audit.audit_events", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(0);
        db.batch_execute(&format!(
            "BEGIN; \
             SELECT set_config('tcp.audit_purge', txid_current()::text, true); \
             DELETE FROM audit.audit_events WHERE id = {id}; \
             UPDATE audit.chain_head h SET id = e.id, hash = e.hash \
               FROM (SELECT id, hash FROM audit.audit_events ORDER BY id DESC LIMIT 1) e; \
             COMMIT"
        ))
        .await
        .unwrap_or_else(|e| panic!("forging a purge in {database}: {e}"));
        id
    }

    async fn take_purge_right(&self, names: &engine::TenantNames) {
        superuser_on(&names.database)
            .await
            .batch_execute(
                "UPDATE platform.settings SET value = 'someone_else' \
                  WHERE key = 'audit_admin_role'",
            )
            .await
            .unwrap_or_else(|e| panic!("taking the purge right in {}: {e}", names.database));
    }

    async fn cut_and_rechain(&self, database: &str, from_id: i64, to_id: i64) {
        let db = superuser_on(database).await;
        db.batch_execute(&format!(
            "SET session_replication_role = replica; \
             DELETE FROM audit.audit_events WHERE id BETWEEN {from_id} AND {to_id}; \
             DO $$ DECLARE r record; v_prev bytea; v_hash bytea; BEGIN \
               SELECT hash INTO v_prev FROM audit.audit_events WHERE id < {from_id} \
                ORDER BY id DESC LIMIT 1; \
               FOR r IN SELECT * FROM audit.audit_events WHERE id > {to_id} ORDER BY id LOOP \
                 v_hash := audit.hash_of(r.hash_version, v_prev, r.id, r.occurred_at, r.origin, \
                                         r.principal, r.actor, r.action, r.detail, r.request_id); \
                 UPDATE audit.audit_events SET prev_hash = v_prev, hash = v_hash WHERE id = r.id; \
                 v_prev := v_hash; \
               END LOOP; \
               UPDATE audit.chain_head SET hash = v_prev; \
             END $$; \
             SET session_replication_role = origin"
        ))
        .await
        .unwrap_or_else(|e| panic!("cutting events from {database}: {e}"));
    }

    async fn shift_between_fields(&self, database: &str, id: i64) {
        let db = superuser_on(database).await;
        db.batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE audit.audit_events \
                SET actor = regexp_replace(actor, '\\|[^|]*$', ''), \
                    action = substring(actor from '[^|]*$') || '|' || action \
              WHERE id = {id}; \
             SET session_replication_role = origin"
        ))
        .await
        .unwrap_or_else(|e| panic!("shifting text in {database}: {e}"));
    }

    async fn event_hash_v2(
        &self,
        database: &str,
        e: &engine::audit_hash::EventFields<'_>,
    ) -> String {
        superuser_on(database)
            .await
            .query_one(
                "SELECT encode(audit.event_hash_v2(decode(repeat('00', 32), 'hex'), $1, $2, $3, \
                        $4, $5, $6, $7::text::jsonb, $8), 'hex')",
                &[
                    &e.id,
                    &e.occurred_at,
                    &e.origin,
                    &e.principal,
                    &e.actor,
                    &e.action,
                    &e.detail,
                    &e.request_id,
                ],
            )
            .await
            .unwrap_or_else(|err| panic!("audit.event_hash_v2 in {database}: {err}"))
            .get(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_is_derived_from_any_tenant_login() {
        for (user, want) in [
            ("t_acme_app_a", "t_acme_reader"),
            ("t_acme_corp_app_b", "t_acme_corp_reader"),
            ("t_acme_audit_admin", "t_acme_reader"),
            ("t_acme_investigator", "t_acme_reader"),
        ] {
            assert_eq!(reader_of(user).as_deref(), Some(want), "{user}");
        }
    }
}
