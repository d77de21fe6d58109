//! The SQL Server probe: the suite's calls in T-SQL, on the server named by `MSSQL_URL`.
//!
//! Tenant principals are contained database users, so a session logs in to the tenant database
//! named by the ADO.NET connection string the control plane wrote. The business procedures
//! (`procedures/sqlserver`) return their ids and documents both as OUTPUT parameters and as a
//! one-row result set; the probe reads the result set, which needs no `DECLARE ... OUTPUT`
//! wrapper. Values reach the server as `@Pn` parameters only; the names spliced into statement
//! text (tables, the reader user) are fixed here.
//!
//! What the server cannot tell us portably is mapped in [`classify`]: SQL Server has no SQLSTATE,
//! only error numbers, and several of them mean "not allowed" in different words.

use async_trait::async_trait;
use engine::sqlserver::{connstr, AdoConnectionString};
use mssql::{Conn, MssqlError, Row, Target};
use secrets::SecretValue;
use tiberius::ColumnData;
use uuid::Uuid;

use super::{Attempt, Probe, Refusal, Session, Table};

/// The user the investigator impersonates to read (see `tenant-schema/sqlserver/V1__platform.sql`).
const READER_USER: &str = "investigator_reader";

/// The INSTEAD OF UPDATE trigger that keeps the audit log append-only (V3).
const AUDIT_NO_UPDATE_TRIGGER: &str = "[audit].[AuditEvents_NoUpdate]";

/// A stored event's hash recomputed in its own format (`e` is the row, `@Prev` its new
/// predecessor's hash), for the probes that rewrite the chain as an insider would.
const HASH_OF_ROW: &str = "CASE e.[HashVersion] \
     WHEN 1 THEN [audit].[EventHash](@Prev, e.[Id], e.[OccurredAt], e.[Principal], e.[Actor], \
                                     e.[Action], e.[Detail], e.[RequestId]) \
     ELSE [audit].[EventHashV2](@Prev, e.[Id], e.[OccurredAt], e.[Origin], e.[Principal], \
                                e.[Actor], e.[Action], e.[Detail], e.[RequestId]) END";

/// The INSTEAD OF DELETE trigger that lets only the purge routine delete audit events (V4).
const AUDIT_GUARD_DELETE_TRIGGER: &str = "[audit].[AuditEvents_GuardDelete]";

/// The probe for a SQL Server reached with an administrator (sysadmin) target.
#[derive(Debug)]
pub struct SqlServerProbe {
    admin: mssql::Target,
}

impl SqlServerProbe {
    /// A probe that uses `admin` (parsed from `MSSQL_URL`) for administrator sessions and as the
    /// source of TLS settings the connection strings cannot carry (a CA bundle).
    pub fn new(admin: mssql::Target) -> Self {
        SqlServerProbe { admin }
    }
}

/// One SQL Server session.
pub struct SqlServerSession {
    conn: Conn,
}

/// How SQL Server refused something, from its error number.
///
/// Denied: permission checks (229 object, 230 column, 262 statement, 297/300 securable),
/// refused logins and databases (18456, 4060, 916), "cannot find ... or you do not have
/// permission" (15151 principal, 3701 drop, 4701 truncate, 1088 object, 2760 schema, 15247,
/// 15517/15406 EXECUTE AS without IMPERSONATE, 15562 untrusted module), and the purge
/// procedure's own caller check (50111). 208 ("Invalid object name") and 2812 ("Could not find
/// stored procedure") count as Denied too: a principal that holds no permission at all on an
/// object may not see its metadata, and then SQL Server reports it as missing rather than
/// forbidden. That can hide a misspelt name, but the names come from the fixed mapping below.
///
/// Protected: the audit triggers (50001 append-only, 50002 chain head), the FOREIGN KEY from
/// `audit.TruncateGuard` that blocks TRUNCATE (4712), and the temporal tables' own refusals:
/// 13545 (TRUNCATE on a system-versioned table), 13559/13560/13561/13562 (INSERT, DELETE,
/// UPDATE, MERGE on a history table while versioning is on) and 13599.
pub fn classify(number: Option<u32>, text: String) -> Refusal {
    match number {
        Some(
            229 | 230 | 262 | 297 | 300 | 916 | 4060 | 18456 | 15151 | 3701 | 4701 | 1088 | 2760
            | 15247 | 15517 | 15406 | 15562 | 50111 | 208 | 2812,
        ) => Refusal::Denied(text),
        Some(50001 | 50002 | 4712 | 13545 | 13559 | 13560 | 13561 | 13562 | 13599) => {
            Refusal::Protected(text)
        }
        _ => Refusal::Other(text),
    }
}

fn refusal(e: MssqlError) -> Refusal {
    classify(e.number(), e.to_string())
}

fn table(t: Table) -> &'static str {
    match t {
        Table::Customers => "[app].[Customers]",
        Table::Invoices => "[app].[Invoices]",
        Table::InvoiceLines => "[app].[InvoiceLines]",
        Table::AccountingPeriods => "[app].[AccountingPeriods]",
        Table::CustomersHistory => "[history].[CustomersHistory]",
        Table::InvoicesHistory => "[history].[InvoicesHistory]",
    }
}

/// A column an UPDATE may set and the value it sets. The period columns of the business tables
/// are GENERATED ALWAYS, and setting them fails at compile time (13537) before any permission is
/// checked, so ordinary columns are used; in the history tables `ValidTo` is a plain column.
fn update_set(t: Table) -> &'static str {
    match t {
        Table::Customers => "[Name] = N'x'",
        Table::Invoices => "[Total] = [Total]",
        Table::InvoiceLines => "[Description] = [Description]",
        Table::AccountingPeriods => "[ClosedAt] = [ClosedAt]",
        Table::CustomersHistory | Table::InvoicesHistory => "[ValidTo] = SYSUTCDATETIME()",
    }
}

/// The batch an attempt runs (no parameters; every name in it is fixed).
pub fn statement(attempt: Attempt) -> String {
    match attempt {
        Attempt::Select(t) => format!("SELECT TOP (1) * FROM {};", table(t)),
        Attempt::Insert(Table::Customers) => {
            "INSERT INTO [app].[Customers] ([Name]) VALUES (N'x');".into()
        }
        Attempt::Insert(t) => format!("INSERT INTO {} DEFAULT VALUES;", table(t)),
        Attempt::Update(t) => format!("UPDATE {} SET {};", table(t), update_set(t)),
        Attempt::Delete(t) => format!("DELETE FROM {};", table(t)),
        Attempt::Truncate(t) => format!("TRUNCATE TABLE {};", table(t)),
        Attempt::SelectAudit => "SELECT TOP (1) * FROM [audit].[AuditEvents];".into(),
        Attempt::UpdateAudit => "UPDATE [audit].[AuditEvents] SET [Actor] = N'x';".into(),
        Attempt::DeleteAudit => "DELETE FROM [audit].[AuditEvents];".into(),
        Attempt::TruncateAudit => "TRUNCATE TABLE [audit].[AuditEvents];".into(),
        // EXEC takes no function calls as arguments, hence the variable.
        Attempt::Purge => "DECLARE @Before datetime2(6) = SYSUTCDATETIME();\n\
                           EXEC [audit].[PurgeBefore] @Before = @Before, @Reason = N'probe';"
            .into(),
        Attempt::RecordEvent => "EXEC [audit].[RecordEvent] @Action = N'forged';".into(),
        Attempt::CallWritingProcedure => "EXEC [app].[CustomerUpsert] @Name = N'x';".into(),
        Attempt::CreateTable => "CREATE TABLE [dbo].[t] ([x] int);".into(),
        // CREATE SCHEMA must be the first statement of its batch; here it is the only one.
        Attempt::CreateSchema => "CREATE SCHEMA [evil];".into(),
        Attempt::StoreOutsideApp => {
            "CREATE SYNONYM [dbo].[tcp_probe] FOR [app].[Customers];".into()
        }
        Attempt::DisableStatementTimeout => "SET LOCK_TIMEOUT -1;".into(),
    }
}

/// An integer cell of any width (`COUNT_BIG`, bigint ids); `get::<i64, _>` refuses an int.
fn int_at(row: &Row, idx: usize) -> Option<i64> {
    match row.cells().nth(idx).map(|(_, d)| d) {
        Some(ColumnData::U8(v)) => v.map(i64::from),
        Some(ColumnData::I16(v)) => v.map(i64::from),
        Some(ColumnData::I32(v)) => v.map(i64::from),
        Some(ColumnData::I64(v)) => *v,
        _ => None,
    }
}

fn text_at(row: &Row, idx: usize) -> Result<String, Refusal> {
    row.try_get::<&str, _>(idx)
        .map_err(|e| Refusal::Other(format!("column {idx} is not text: {e}")))?
        .map(str::to_owned)
        .ok_or_else(|| Refusal::Other(format!("column {idx} is NULL")))
}

fn uuid_at(row: &Row, idx: usize) -> Result<Uuid, Refusal> {
    row.try_get::<Uuid, _>(idx)
        .map_err(|e| Refusal::Other(format!("column {idx} is not a uniqueidentifier: {e}")))?
        .ok_or_else(|| Refusal::Other(format!("column {idx} is NULL")))
}

fn first(rows: Vec<Row>, what: &str) -> Result<Row, Refusal> {
    rows.into_iter()
        .next()
        .ok_or_else(|| Refusal::Other(format!("{what} returned no row")))
}

impl SqlServerSession {
    /// Runs a parameterised batch and returns the first row of its first result set.
    async fn one_row(
        &mut self,
        sql: &str,
        params: &[&dyn tiberius::ToSql],
        what: &str,
    ) -> Result<Row, Refusal> {
        let rows = self.conn.query(sql, params).await.map_err(refusal)?;
        first(rows, what)
    }

    /// Runs a procedure that returns its new id as a one-row result set (`Id`).
    async fn new_id(
        &mut self,
        sql: &str,
        params: &[&dyn tiberius::ToSql],
        what: &str,
    ) -> Result<Uuid, Refusal> {
        let row = self.one_row(sql, params, what).await?;
        uuid_at(&row, 0)
    }
}

#[async_trait]
impl Session for SqlServerSession {
    async fn customer_upsert(
        &mut self,
        id: Option<Uuid>,
        name: &str,
        email: Option<&str>,
    ) -> Result<Uuid, Refusal> {
        self.new_id(
            "EXEC [app].[CustomerUpsert] @Id = @P1, @Name = @P2, @Email = @P3;",
            &[&id, &name, &email],
            "app.CustomerUpsert",
        )
        .await
    }

    async fn period_open(&mut self, starts: &str, ends: &str) -> Result<Uuid, Refusal> {
        self.new_id(
            "DECLARE @StartsOn date = CONVERT(date, @P1, 23), @EndsOn date = CONVERT(date, @P2, 23);\n\
             EXEC [app].[PeriodOpen] @StartsOn = @StartsOn, @EndsOn = @EndsOn;",
            &[&starts, &ends],
            "app.PeriodOpen",
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
        self.new_id(
            "DECLARE @IssuedOn date = CONVERT(date, @P4, 23);\n\
             EXEC [app].[InvoiceCreate] @CustomerId = @P1, @PeriodId = @P2, @Number = @P3, \
             @IssuedOn = @IssuedOn;",
            &[&customer, &period, &number, &issued],
            "app.InvoiceCreate",
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
        // The procedure returns the line id as a result set; read it so the answer is consumed.
        self.new_id(
            "DECLARE @UnitPrice decimal(14, 2) = CAST(@P4 AS decimal(14, 2));\n\
             EXEC [app].[InvoiceAddLine] @InvoiceId = @P1, @Description = @P2, @Quantity = @P3, \
             @UnitPrice = @UnitPrice;",
            &[&invoice, &description, &quantity, &unit_price],
            "app.InvoiceAddLine",
        )
        .await
        .map(|_| ())
    }

    async fn invoice_post(&mut self, invoice: Uuid) -> Result<(), Refusal> {
        self.conn
            .execute("EXEC [app].[InvoicePost] @InvoiceId = @P1;", &[&invoice])
            .await
            .map_err(refusal)?;
        Ok(())
    }

    async fn period_close(&mut self, period: Uuid) -> Result<(), Refusal> {
        self.conn
            .execute("EXEC [app].[PeriodClose] @PeriodId = @P1;", &[&period])
            .await
            .map_err(refusal)?;
        Ok(())
    }

    async fn invoice_status(&mut self, invoice: Uuid) -> Result<String, Refusal> {
        let row = self
            .one_row(
                "EXEC [app].[InvoiceGet] @InvoiceId = @P1;",
                &[&invoice],
                "app.InvoiceGet",
            )
            .await?;
        let doc: serde_json::Value = serde_json::from_str(&text_at(&row, 0)?)
            .map_err(|e| Refusal::Other(format!("app.InvoiceGet returned no JSON: {e}")))?;
        // The check constraint keeps it lower-case already; PostgreSQL's is, whatever happens.
        Ok(doc["status"].as_str().unwrap_or_default().to_lowercase())
    }

    async fn customer_name(&mut self, customer: Uuid) -> Result<String, Refusal> {
        // Columns: Id, Name, Email, ValidFrom.
        let row = self
            .one_row(
                "EXEC [app].[CustomerGet] @Id = @P1;",
                &[&customer],
                "app.CustomerGet",
            )
            .await?;
        text_at(&row, 1)
    }

    async fn attempt(&mut self, attempt: Attempt) -> Result<(), Refusal> {
        self.conn
            .batch(&statement(attempt))
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    async fn count(&mut self, t: Table) -> Result<i64, Refusal> {
        let row = self
            .one_row(
                &format!("SELECT COUNT_BIG(*) FROM {};", table(t)),
                &[],
                "COUNT_BIG",
            )
            .await?;
        int_at(&row, 0).ok_or_else(|| Refusal::Other("COUNT_BIG returned no number".into()))
    }

    async fn become_reader(&mut self) -> Result<(), Refusal> {
        // A plain batch, not sp_executesql: EXECUTE AS inside dynamic SQL would be reverted when
        // that scope ends, and it must last for the rest of the session.
        self.conn
            .batch(&format!("EXECUTE AS USER = N'{READER_USER}';"))
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    async fn audit_actions(&mut self) -> Result<Vec<String>, Refusal> {
        let rows = self
            .conn
            .query(
                "SELECT [Action] FROM [audit].[AuditEvents] ORDER BY [Id];",
                &[],
            )
            .await
            .map_err(refusal)?;
        rows.iter().map(|r| text_at(r, 0)).collect()
    }

    async fn last_audit_event(&mut self) -> Result<(String, serde_json::Value), Refusal> {
        let row = self
            .one_row(
                "SELECT TOP (1) [Action], [Detail] FROM [audit].[AuditEvents] ORDER BY [Id] DESC;",
                &[],
                "audit.AuditEvents",
            )
            .await?;
        let detail = serde_json::from_str(&text_at(&row, 1)?)
            .map_err(|e| Refusal::Other(format!("audit detail is not JSON: {e}")))?;
        Ok((text_at(&row, 0)?, detail))
    }

    async fn purge_all(&mut self, reason: &str) -> Result<i64, Refusal> {
        // PurgeBefore returns one result set (Deleted bigint); the audit.RecordEvent it calls
        // returns none.
        let row = self
            .one_row(
                "DECLARE @Before datetime2(6) = SYSUTCDATETIME();\n\
                 EXEC [audit].[PurgeBefore] @Before = @Before, @Reason = @P1;",
                &[&reason],
                "audit.PurgeBefore",
            )
            .await?;
        int_at(&row, 0).ok_or_else(|| Refusal::Other("audit.PurgeBefore returned no count".into()))
    }

    async fn verify_chain(&mut self) -> Result<(bool, Option<i64>), Refusal> {
        // One row: Valid bit, Checked, FirstBrokenId, HeadId, HeadHash.
        let row = self
            .one_row("EXEC [audit].[VerifyChain];", &[], "audit.VerifyChain")
            .await?;
        let valid = row
            .try_get::<bool, _>(0)
            .map_err(|e| Refusal::Other(format!("Valid is not a bit: {e}")))?
            .ok_or_else(|| Refusal::Other("Valid is NULL".into()))?;
        Ok((valid, int_at(&row, 2)))
    }

    async fn assert_identity(&mut self, actor: &str, request_id: &str) -> Result<(), Refusal> {
        self.conn
            .execute(
                "EXEC sys.sp_set_session_context @key = N'actor', @value = @P1; \
                 EXEC sys.sp_set_session_context @key = N'request_id', @value = @P2;",
                &[&actor, &request_id],
            )
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    async fn begin(&mut self) -> Result<(), Refusal> {
        self.conn
            .batch("BEGIN TRANSACTION;")
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    async fn rollback(&mut self) -> Result<(), Refusal> {
        self.conn
            .batch("IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;")
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    async fn execute(&mut self, sql: &str) -> Result<(), Refusal> {
        self.conn.batch(sql).await.map(|_| ()).map_err(refusal)
    }
}

/// Reads a connection string the control plane (or this probe) wrote.
fn parse(s: &SecretValue) -> AdoConnectionString {
    connstr::parse(s.expose()).unwrap_or_else(|e| panic!("not an ADO.NET connection string: {e}"))
}

/// The target for logging in with `cs`: its server, database, user, password and TLS switches,
/// plus what a connection string cannot carry, taken from the admin target (the CA bundle, the
/// certificate name when the host is the same, the timeout and the application name).
fn login_target(admin: &Target, cs: &AdoConnectionString) -> Target {
    let mut target = Target::sql_login(
        cs.host.clone(),
        cs.port,
        cs.user.clone(),
        SecretValue::new(cs.password.clone()),
    );
    target.database = Some(cs.database.clone());
    target.tls.encrypt = cs.encrypt;
    target.tls.trust_server_certificate = cs.trust_server_certificate;
    target.tls.ca_bundle = admin.tls.ca_bundle.clone();
    if cs.host == admin.host {
        target
            .tls
            .hostname_in_certificate
            .clone_from(&admin.tls.hostname_in_certificate);
    }
    target.connect_timeout = admin.connect_timeout;
    target.application_name.clone_from(&admin.application_name);
    target
}

#[async_trait]
impl Probe for SqlServerProbe {
    async fn login(&self, connection_string: &SecretValue) -> Result<Box<dyn Session>, Refusal> {
        let target = login_target(&self.admin, &parse(connection_string));
        let conn = Conn::connect(&target).await.map_err(refusal)?;
        Ok(Box::new(SqlServerSession { conn }))
    }

    fn with_credentials(
        &self,
        connection_string: &SecretValue,
        user: &str,
        password: &str,
    ) -> SecretValue {
        SecretValue::new(
            parse(connection_string)
                .user(user)
                .password(password)
                .to_secret_string(),
        )
    }

    async fn change_own_password(
        &self,
        connection_string: &SecretValue,
        new_password: &str,
    ) -> Result<SecretValue, Refusal> {
        let cs = parse(connection_string);
        let mut conn = Conn::connect(&login_target(&self.admin, &cs))
            .await
            .map_err(refusal)?;
        // A contained user may change its own password when it names the old one; the
        // statement takes no parameters, so both are quoted literals.
        let (Some(user), Some(new), Some(old)) = (
            engine::sqlserver::quote_name(&cs.user),
            engine::sqlserver::quote_nstring(new_password),
            engine::sqlserver::quote_nstring(&cs.password),
        ) else {
            return Err(Refusal::Other("unquotable user or password".into()));
        };
        conn.batch(&format!(
            "ALTER USER {user} WITH PASSWORD = {new} OLD_PASSWORD = {old};"
        ))
        .await
        .map_err(refusal)?;
        Ok(SecretValue::new(
            cs.password(new_password).to_secret_string(),
        ))
    }

    fn with_database(&self, connection_string: &SecretValue, database: &str) -> SecretValue {
        SecretValue::new(
            parse(connection_string)
                .database(database)
                .to_secret_string(),
        )
    }

    async fn admin(&self, database: &str) -> Box<dyn Session> {
        let conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        Box::new(SqlServerSession { conn })
    }

    async fn database_exists(&self, database: &str) -> bool {
        let mut conn = Conn::connect(&self.admin.with_database("master"))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on master: {e}"));
        !conn
            .query("SELECT 1 FROM sys.databases WHERE name = @P1", &[&database])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_empty()
    }

    async fn database_marker(&self, database: &str) -> Option<String> {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .ok()?;
        conn.query(
            "SELECT CAST(value AS nvarchar(4000)) FROM sys.extended_properties \
              WHERE class = 0 AND name = N'tenant_control_plane'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .first()
        .and_then(|r| r.get::<&str, _>(0).map(str::to_owned))
    }

    async fn plant_database(&self, database: &str, marker: Option<&str>) {
        let mut master = Conn::connect(&self.admin.with_database("master"))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on master: {e}"));
        // On Azure SQL Database (AZURE_SQL_POOL), in the pool: a standalone one costs more.
        let statement = match crate::env::azure_sql_pool() {
            Some(pool) => engine::sqlserver::azure::sql::create_in_pool(database, &pool)
                .unwrap_or_else(|e| panic!("{e}")),
            None => format!("CREATE DATABASE [{}];", database.replace(']', "]]")),
        };
        master
            .batch(&statement)
            .await
            .unwrap_or_else(|e| panic!("creating {database}: {e}"));
        if let Some(m) = marker {
            let mut conn = Conn::connect(&self.admin.with_database(database))
                .await
                .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
            conn.execute(
                "EXEC sys.sp_addextendedproperty @name = N'tenant_control_plane', @value = @P1;",
                &[&m],
            )
            .await
            .unwrap_or_else(|e| panic!("marking {database}: {e}"));
        }
    }

    async fn plant_login(&self, _name: &str, _marker: &str) -> bool {
        false
    }

    async fn set_database_marker(&self, database: &str, marker: &str) {
        Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"))
            .execute(
                "EXEC sys.sp_updateextendedproperty @name = N'tenant_control_plane', @value = @P1;",
                &[&marker],
            )
            .await
            .unwrap_or_else(|e| panic!("marking {database}: {e}"));
    }

    async fn drop_database(&self, database: &str) {
        let db = format!("[{}]", database.replace(']', "]]"));
        let mut master = Conn::connect(&self.admin.with_database("master"))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on master: {e}"));
        if crate::env::azure_sql_pool().is_some() {
            // No SINGLE_USER there, and DROP DATABASE alone in its batch.
            master
                .batch(&format!(
                    "ALTER DATABASE {db} SET RESTRICTED_USER WITH ROLLBACK IMMEDIATE;"
                ))
                .await
                .unwrap_or_else(|e| panic!("restricting {database}: {e}"));
            master
                .batch(&format!("DROP DATABASE {db};"))
                .await
                .unwrap_or_else(|e| panic!("dropping {database}: {e}"));
            return;
        }
        master
            .batch(&format!(
                "ALTER DATABASE {db} SET SINGLE_USER WITH ROLLBACK IMMEDIATE; DROP DATABASE {db};"
            ))
            .await
            .unwrap_or_else(|e| panic!("dropping {database}: {e}"));
    }

    async fn drop_principal(&self, database: &str, name: &str) {
        Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"))
            .batch(&format!("DROP USER [{}];", name.replace(']', "]]")))
            .await
            .unwrap_or_else(|e| panic!("dropping {name}: {e}"));
    }

    async fn tamper_with_audit_event(&self, database: &str, action: &str) -> i64 {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        // DDL is transactional in SQL Server: with XACT_ABORT a failure rolls the DISABLE back
        // too, so the trigger is never left off.
        let sql = format!(
            "SET XACT_ABORT ON;\n\
             DECLARE @Id bigint = (SELECT MAX([Id]) FROM [audit].[AuditEvents] WHERE [Action] = @P1);\n\
             BEGIN TRANSACTION;\n\
             DISABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             UPDATE [audit].[AuditEvents] SET [Actor] = N'mallory' WHERE [Id] = @Id;\n\
             ENABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             COMMIT TRANSACTION;\n\
             SELECT @Id AS [Id];"
        );
        let rows = conn
            .query(&sql, &[&action])
            .await
            .unwrap_or_else(|e| panic!("tampering with {action} in {database}: {e}"));
        rows.first()
            .and_then(|r| int_at(r, 0))
            .unwrap_or_else(|| panic!("no audit event with action {action} in {database}"))
    }

    async fn delete_audit_event(&self, database: &str, action: &str) -> i64 {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        let sql = "SET XACT_ABORT ON;\n\
             DECLARE @Id bigint = (SELECT MAX([Id]) FROM [audit].[AuditEvents] WHERE [Action] = @P1);\n\
             BEGIN TRANSACTION;\n\
             DISABLE TRIGGER [audit].[AuditEvents_GuardDelete] ON [audit].[AuditEvents];\n\
             DELETE FROM [audit].[AuditEvents] WHERE [Id] = @Id;\n\
             ENABLE TRIGGER [audit].[AuditEvents_GuardDelete] ON [audit].[AuditEvents];\n\
             COMMIT TRANSACTION;\n\
             SELECT @Id AS [Id];";
        let rows = conn
            .query(sql, &[&action])
            .await
            .unwrap_or_else(|e| panic!("deleting {action} in {database}: {e}"));
        rows.first()
            .and_then(|r| int_at(r, 0))
            .unwrap_or_else(|| panic!("no audit event with action {action} in {database}"))
    }

    async fn insert_audit_event(&self, database: &str) -> i64 {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        let sql = "DECLARE @Id bigint, @Prev varbinary(32);\n\
             SELECT TOP (1) @Id = [Id] + 1, @Prev = [Hash] FROM [audit].[AuditEvents] ORDER BY [Id] DESC;\n\
             INSERT INTO [audit].[AuditEvents]\n\
                 ([Id], [OccurredAt], [Principal], [Actor], [Action], [Detail], [RequestId], [PrevHash], [Hash],\n\
                  [HashVersion], [Origin])\n\
             VALUES (@Id, SYSUTCDATETIME(), N'sa', N'mallory', N'customer.upsert', N'{}', NULL, @Prev,\n\
                     HASHBYTES('SHA2_256', N'forged'), 2, N'application');\n\
             SELECT @Id AS [Id];";
        let rows = conn
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("forging an event in {database}: {e}"));
        rows.first()
            .and_then(|r| int_at(r, 0))
            .unwrap_or_else(|| panic!("no audit events in {database}"))
    }

    async fn wipe_audit_log(&self, database: &str) {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        let sql = "SET XACT_ABORT ON;\n\
             BEGIN TRANSACTION;\n\
             DISABLE TRIGGER [audit].[AuditEvents_GuardDelete] ON [audit].[AuditEvents];\n\
             DELETE FROM [audit].[AuditEvents];\n\
             ENABLE TRIGGER [audit].[AuditEvents_GuardDelete] ON [audit].[AuditEvents];\n\
             UPDATE [audit].[ChainHead] SET [Id] = 0, [Hash] = 0x0000000000000000000000000000000000000000000000000000000000000000;\n\
             COMMIT TRANSACTION;";
        conn.batch(sql)
            .await
            .unwrap_or_else(|e| panic!("wiping the log of {database}: {e}"));
    }

    async fn rewrite_audit_chain(&self, database: &str) -> i64 {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        let sql = format!(
            "SET XACT_ABORT ON;\n\
             BEGIN TRANSACTION;\n\
             DISABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             DECLARE @First bigint = (SELECT MIN([Id]) FROM [audit].[AuditEvents]);\n\
             UPDATE [audit].[AuditEvents] SET [Actor] = N'mallory' WHERE [Id] = @First;\n\
             DECLARE @Prev varbinary(32) = (SELECT [PrevHash] FROM [audit].[AuditEvents] WHERE [Id] = @First);\n\
             DECLARE @Id bigint, @Hash varbinary(32);\n\
             DECLARE events CURSOR LOCAL FAST_FORWARD FOR SELECT [Id] FROM [audit].[AuditEvents] ORDER BY [Id];\n\
             OPEN events;\n\
             FETCH NEXT FROM events INTO @Id;\n\
             WHILE @@FETCH_STATUS = 0\n\
             BEGIN\n\
                 SELECT @Hash = {HASH_OF_ROW}\n\
                   FROM [audit].[AuditEvents] AS e WHERE e.[Id] = @Id;\n\
                 UPDATE [audit].[AuditEvents] SET [PrevHash] = @Prev, [Hash] = @Hash WHERE [Id] = @Id;\n\
                 SET @Prev = @Hash;\n\
                 FETCH NEXT FROM events INTO @Id;\n\
             END;\n\
             CLOSE events; DEALLOCATE events;\n\
             UPDATE [audit].[ChainHead] SET [Hash] = @Prev;\n\
             ENABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             COMMIT TRANSACTION;\n\
             SELECT @First AS [Id];"
        );
        let rows = conn
            .query(&sql, &[])
            .await
            .unwrap_or_else(|e| panic!("rewriting the chain of {database}: {e}"));
        rows.first()
            .and_then(|r| int_at(r, 0))
            .unwrap_or_else(|| panic!("no audit events in {database}"))
    }

    async fn forge_purge_of_newest(&self, database: &str) -> i64 {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        let sql = "SET XACT_ABORT ON;\n\
             BEGIN TRANSACTION;\n\
             DECLARE @Tx bigint = CURRENT_TRANSACTION_ID();\n\
             DECLARE @Last bigint = (SELECT MAX([Id]) FROM [audit].[AuditEvents]);\n\
             EXEC sys.sp_set_session_context @key = N'audit_purge', @value = 1;\n\
             EXEC sys.sp_set_session_context @key = N'audit_purge_tx', @value = @Tx;\n\
             DELETE FROM [audit].[AuditEvents] WHERE [Id] = @Last;\n\
             EXEC sys.sp_set_session_context @key = N'audit_purge', @value = NULL;\n\
             UPDATE h SET [Id] = e.[Id], [Hash] = e.[Hash]\n\
               FROM [audit].[ChainHead] AS h\n\
               CROSS JOIN (SELECT TOP (1) [Id], [Hash] FROM [audit].[AuditEvents] ORDER BY [Id] DESC) AS e;\n\
             COMMIT TRANSACTION;\n\
             SELECT @Last AS [Id];";
        let rows = conn
            .query(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("forging a purge in {database}: {e}"));
        rows.first()
            .and_then(|r| int_at(r, 0))
            .unwrap_or_else(|| panic!("no audit events in {database}"))
    }

    async fn take_purge_right(&self, names: &engine::TenantNames) {
        let mut conn = Conn::connect(&self.admin.with_database(&names.database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {}: {e}", names.database));
        let user = names.audit_admin.replace(']', "]]");
        conn.execute(
            &format!("ALTER ROLE [audit_admin_role] DROP MEMBER [{user}];"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("taking the purge right in {}: {e}", names.database));
    }

    async fn cut_and_rechain(&self, database: &str, from_id: i64, to_id: i64) {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        let sql = format!(
            "SET XACT_ABORT ON;\n\
             BEGIN TRANSACTION;\n\
             DISABLE TRIGGER {AUDIT_GUARD_DELETE_TRIGGER} ON [audit].[AuditEvents];\n\
             DISABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             DELETE FROM [audit].[AuditEvents] WHERE [Id] BETWEEN {from_id} AND {to_id};\n\
             DECLARE @Prev varbinary(32) = (SELECT TOP (1) [Hash] FROM [audit].[AuditEvents] WHERE [Id] < {from_id} ORDER BY [Id] DESC);\n\
             DECLARE @Id bigint, @Hash varbinary(32);\n\
             DECLARE events CURSOR LOCAL FAST_FORWARD FOR SELECT [Id] FROM [audit].[AuditEvents] WHERE [Id] > {to_id} ORDER BY [Id];\n\
             OPEN events;\n\
             FETCH NEXT FROM events INTO @Id;\n\
             WHILE @@FETCH_STATUS = 0\n\
             BEGIN\n\
                 SELECT @Hash = {HASH_OF_ROW} FROM [audit].[AuditEvents] AS e WHERE e.[Id] = @Id;\n\
                 UPDATE [audit].[AuditEvents] SET [PrevHash] = @Prev, [Hash] = @Hash WHERE [Id] = @Id;\n\
                 SET @Prev = @Hash;\n\
                 FETCH NEXT FROM events INTO @Id;\n\
             END;\n\
             CLOSE events; DEALLOCATE events;\n\
             UPDATE [audit].[ChainHead] SET [Hash] = @Prev;\n\
             ENABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             ENABLE TRIGGER {AUDIT_GUARD_DELETE_TRIGGER} ON [audit].[AuditEvents];\n\
             COMMIT TRANSACTION;"
        );
        conn.batch(&sql)
            .await
            .unwrap_or_else(|e| panic!("cutting events from {database}: {e}"));
    }

    async fn shift_between_fields(&self, database: &str, id: i64) {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|e| panic!("sysadmin on {database}: {e}"));
        // The last '|' of the actor, found from the end.
        let sql = format!(
            "SET XACT_ABORT ON;\n\
             BEGIN TRANSACTION;\n\
             DISABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             UPDATE [audit].[AuditEvents]\n\
                SET [Actor] = LEFT([Actor], LEN([Actor]) - CHARINDEX(N'|', REVERSE([Actor]))),\n\
                    [Action] = CONCAT(RIGHT([Actor], CHARINDEX(N'|', REVERSE([Actor])) - 1), N'|', [Action])\n\
              WHERE [Id] = {id};\n\
             ENABLE TRIGGER {AUDIT_NO_UPDATE_TRIGGER} ON [audit].[AuditEvents];\n\
             COMMIT TRANSACTION;"
        );
        conn.batch(&sql)
            .await
            .unwrap_or_else(|e| panic!("shifting text in {database}: {e}"));
    }

    async fn event_hash_v2(
        &self,
        database: &str,
        e: &engine::audit_hash::EventFields<'_>,
    ) -> String {
        let mut conn = Conn::connect(&self.admin.with_database(database))
            .await
            .unwrap_or_else(|err| panic!("sysadmin on {database}: {err}"));
        let rows = conn
            .query(
                "SELECT CAST(LOWER(CONVERT(varchar(64), [audit].[EventHashV2](\
                     0x0000000000000000000000000000000000000000000000000000000000000000, \
                     @P1, CAST(@P2 AS datetime2(6)), @P3, @P4, @P5, @P6, @P7, @P8), 2)) AS varchar(64));",
                &[
                    &e.id,
                    &e.occurred_at.naive_utc(),
                    &e.origin,
                    &e.principal,
                    &e.actor,
                    &e.action,
                    &e.detail,
                    &e.request_id,
                ],
            )
            .await
            .unwrap_or_else(|err| panic!("audit.EventHashV2 in {database}: {err}"));
        rows.first()
            .and_then(|r| r.try_get::<&str, _>(0).ok().flatten().map(str::to_owned))
            .unwrap_or_else(|| panic!("audit.EventHashV2 returned nothing in {database}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{BUSINESS_TABLES, HISTORY_TABLES};

    fn probe() -> SqlServerProbe {
        let mut admin = Target::sql_login("db.example", 14330, "sa", SecretValue::new("admin-pw"));
        admin.tls.ca_bundle = Some("/etc/ca.pem".into());
        SqlServerProbe::new(admin)
    }

    fn tenant_string() -> SecretValue {
        SecretValue::new(
            AdoConnectionString::new("db.example", 14330)
                .database("tenant_acme")
                .user("app_a")
                .password("p;w'\"d")
                .encrypt(true)
                .trust_server_certificate(true)
                .to_secret_string(),
        )
    }

    #[test]
    fn attempts_map_to_fixed_statements() {
        let cases = [
            (
                Attempt::Select(Table::Customers),
                "SELECT TOP (1) * FROM [app].[Customers];",
            ),
            (
                Attempt::Insert(Table::Customers),
                "INSERT INTO [app].[Customers] ([Name]) VALUES (N'x');",
            ),
            (
                Attempt::Insert(Table::Invoices),
                "INSERT INTO [app].[Invoices] DEFAULT VALUES;",
            ),
            (
                Attempt::Update(Table::Customers),
                "UPDATE [app].[Customers] SET [Name] = N'x';",
            ),
            (
                Attempt::Update(Table::InvoicesHistory),
                "UPDATE [history].[InvoicesHistory] SET [ValidTo] = SYSUTCDATETIME();",
            ),
            (
                Attempt::Delete(Table::InvoiceLines),
                "DELETE FROM [app].[InvoiceLines];",
            ),
            (
                Attempt::Truncate(Table::CustomersHistory),
                "TRUNCATE TABLE [history].[CustomersHistory];",
            ),
            (
                Attempt::SelectAudit,
                "SELECT TOP (1) * FROM [audit].[AuditEvents];",
            ),
            (
                Attempt::UpdateAudit,
                "UPDATE [audit].[AuditEvents] SET [Actor] = N'x';",
            ),
            (Attempt::DeleteAudit, "DELETE FROM [audit].[AuditEvents];"),
            (
                Attempt::TruncateAudit,
                "TRUNCATE TABLE [audit].[AuditEvents];",
            ),
            (
                Attempt::Purge,
                "DECLARE @Before datetime2(6) = SYSUTCDATETIME();\n\
                 EXEC [audit].[PurgeBefore] @Before = @Before, @Reason = N'probe';",
            ),
            (
                Attempt::RecordEvent,
                "EXEC [audit].[RecordEvent] @Action = N'forged';",
            ),
            (
                Attempt::CallWritingProcedure,
                "EXEC [app].[CustomerUpsert] @Name = N'x';",
            ),
            (Attempt::CreateTable, "CREATE TABLE [dbo].[t] ([x] int);"),
            (Attempt::CreateSchema, "CREATE SCHEMA [evil];"),
        ];
        for (attempt, want) in cases {
            assert_eq!(statement(attempt), want, "{attempt:?}");
        }
    }

    #[test]
    fn updates_never_set_a_generated_period_column() {
        for t in BUSINESS_TABLES {
            let sql = statement(Attempt::Update(t));
            assert!(!sql.contains("Valid"), "{sql}");
        }
        for t in HISTORY_TABLES {
            assert!(statement(Attempt::Update(t)).contains("[ValidTo] ="));
        }
    }

    #[test]
    fn every_table_has_a_schema_qualified_bracketed_name() {
        for t in BUSINESS_TABLES {
            assert!(table(t).starts_with("[app]."), "{t:?}");
        }
        for t in HISTORY_TABLES {
            assert!(table(t).starts_with("[history]."), "{t:?}");
            assert!(table(t).ends_with("History]"), "{t:?}");
        }
    }

    #[test]
    fn error_numbers_map_to_refusals() {
        let kind = |n: u32| match classify(Some(n), format!("sql server error {n}")) {
            Refusal::Denied(_) => "denied",
            Refusal::Protected(_) => "protected",
            Refusal::Other(_) => "other",
        };
        for n in [
            229, 230, 262, 297, 300, 916, 4060, 18456, 15151, 15247, 15517, 3701, 4701, 1088, 2760,
            15562, 50111, 208, 2812,
        ] {
            assert_eq!(kind(n), "denied", "{n}");
        }
        for n in [50001, 50002, 4712, 13545, 13559, 13560, 13561, 13562, 13599] {
            assert_eq!(kind(n), "protected", "{n}");
        }
        for n in [515, 2627, 1205, 50400, 50404, 50409, 50110, 13537, 102] {
            assert_eq!(kind(n), "other", "{n}");
        }
        assert_eq!(
            classify(None, "timed out".into()),
            Refusal::Other("timed out".into())
        );
        assert_eq!(
            classify(Some(229), "no".into()),
            Refusal::Denied("no".into())
        );
    }

    #[test]
    fn server_errors_keep_their_number_in_the_text() {
        let r = refusal(MssqlError::Server {
            number: 229,
            message: "The SELECT permission was denied".into(),
        });
        assert!(r.is_denied());
        assert!(format!("{r:?}").contains("229"), "{r:?}");
        let login = refusal(MssqlError::Connect {
            target: "db".into(),
            number: Some(18456),
            detail: "Login failed".into(),
        });
        assert!(login.is_denied());
    }

    #[test]
    fn with_credentials_changes_only_user_and_password() {
        let p = probe();
        let original = tenant_string();
        let changed = parse(&p.with_credentials(&original, "t_other", "x=y; z"));
        let want = parse(&original).user("t_other").password("x=y; z");
        assert_eq!(changed, want);
        assert_eq!(
            (
                changed.host.as_str(),
                changed.port,
                changed.database.as_str()
            ),
            ("db.example", 14330, "tenant_acme")
        );
        assert!(changed.encrypt && changed.trust_server_certificate);
    }

    #[test]
    fn with_database_changes_only_the_database() {
        let p = probe();
        let original = tenant_string();
        let changed = parse(&p.with_database(&original, "tenant_other"));
        assert_eq!(changed, parse(&original).database("tenant_other"));
        assert_eq!(changed.user, "app_a");
        assert_eq!(changed.password, "p;w'\"d");
    }

    #[test]
    fn login_uses_the_string_and_the_admin_ca_bundle() {
        let p = probe();
        let cs = parse(&tenant_string()).encrypt(false);
        let t = login_target(&p.admin, &cs);
        assert_eq!((t.host.as_str(), t.port), ("db.example", 14330));
        assert_eq!(t.database.as_deref(), Some("tenant_acme"));
        assert_eq!(t.user(), Some("app_a"));
        match &t.auth {
            mssql::Auth::SqlLogin { password, .. } => assert_eq!(password.expose(), "p;w'\"d"),
            other => panic!("{other:?}"),
        }
        assert!(!t.tls.encrypt);
        assert!(t.tls.trust_server_certificate);
        assert_eq!(t.tls.ca_bundle, p.admin.tls.ca_bundle);
    }
}
