//! Engine-neutral access to a tenant database for the conformance suite.
//!
//! A test says what it does ("call the customer procedure", "try to delete audit events") and the
//! probe of the engine under test says it in that engine's SQL. The expectations (this is
//! refused as a permission problem, this is refused by the append-only trigger) are the same for
//! both engines, so one test checks both.

pub mod postgres;
pub mod sqlserver;

use async_trait::async_trait;
use secrets::SecretValue;
use uuid::Uuid;

/// How the server answered an attempt that was expected to fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A permission check refused it (PostgreSQL 42501; SQL Server 229, 230, 262, 297, 300, 916,
    /// 15151 or 15247 — "cannot find the object or you do not have permission").
    Denied(String),
    /// The audit or history protection refused it (a trigger's "append-only" error, SQL Server
    /// 50001/50002, a FOREIGN KEY that blocks TRUNCATE (4712), or a system-versioned history
    /// table refusing DML (13560/13561/13562)).
    Protected(String),
    /// Anything else (a bug in the test or the schema).
    Other(String),
}

impl Refusal {
    /// Whether this is a permission refusal.
    pub fn is_denied(&self) -> bool {
        matches!(self, Refusal::Denied(_))
    }
}

/// The business tables and their history tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Customers.
    Customers,
    /// Invoices.
    Invoices,
    /// Invoice lines.
    InvoiceLines,
    /// Accounting periods.
    AccountingPeriods,
    /// History of customers.
    CustomersHistory,
    /// History of invoices.
    InvoicesHistory,
}

/// The business tables (not history).
pub const BUSINESS_TABLES: [Table; 4] = [
    Table::Customers,
    Table::Invoices,
    Table::InvoiceLines,
    Table::AccountingPeriods,
];

/// The history tables the suite probes.
pub const HISTORY_TABLES: [Table; 2] = [Table::CustomersHistory, Table::InvoicesHistory];

/// Something a principal might try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// `SELECT` from a table.
    Select(Table),
    /// `INSERT` a row into a table.
    Insert(Table),
    /// `UPDATE` every row of a table.
    Update(Table),
    /// `DELETE` every row of a table.
    Delete(Table),
    /// `TRUNCATE` a table.
    Truncate(Table),
    /// `SELECT` the audit events.
    SelectAudit,
    /// `UPDATE` the audit events.
    UpdateAudit,
    /// `DELETE` the audit events.
    DeleteAudit,
    /// `TRUNCATE` the audit events.
    TruncateAudit,
    /// Call the purge routine.
    Purge,
    /// Call the audit-append routine directly (forging an event).
    RecordEvent,
    /// Call a writing business routine (customer upsert).
    CallWritingProcedure,
    /// Create a table.
    CreateTable,
    /// Create a schema.
    CreateSchema,
    /// Store data outside `app.*` in something persistent that is not a table (PostgreSQL: a
    /// large object, `lo_create`; SQL Server: a synonym, the nearest persistent object).
    StoreOutsideApp,
    /// Switch the statement timeout off for the session (PostgreSQL `set_config`; SQL Server
    /// has no server-side statement timeout, so the attempt sets the lock timeout to forever).
    DisableStatementTimeout,
}

/// One session on a tenant database.
#[async_trait]
pub trait Session: Send {
    /// Upserts a customer through the business routine; returns its id.
    async fn customer_upsert(
        &mut self,
        id: Option<Uuid>,
        name: &str,
        email: Option<&str>,
    ) -> Result<Uuid, Refusal>;
    /// Opens an accounting period (dates as `YYYY-MM-DD`); returns its id.
    async fn period_open(&mut self, starts: &str, ends: &str) -> Result<Uuid, Refusal>;
    /// Creates an invoice; returns its id.
    async fn invoice_create(
        &mut self,
        customer: Uuid,
        period: Uuid,
        number: &str,
        issued: &str,
    ) -> Result<Uuid, Refusal>;
    /// Adds a line to an invoice.
    async fn invoice_add_line(
        &mut self,
        invoice: Uuid,
        description: &str,
        quantity: i32,
        unit_price: &str,
    ) -> Result<(), Refusal>;
    /// Posts an invoice.
    async fn invoice_post(&mut self, invoice: Uuid) -> Result<(), Refusal>;
    /// Closes a period.
    async fn period_close(&mut self, period: Uuid) -> Result<(), Refusal>;
    /// An invoice's status (`draft`, `posted`) through the business routine.
    async fn invoice_status(&mut self, invoice: Uuid) -> Result<String, Refusal>;
    /// A customer's name through the business routine.
    async fn customer_name(&mut self, customer: Uuid) -> Result<String, Refusal>;

    /// Tries something; `Ok` means the server allowed it.
    async fn attempt(&mut self, attempt: Attempt) -> Result<(), Refusal>;
    /// Rows in a business or history table (needs SELECT on it).
    async fn count(&mut self, table: Table) -> Result<i64, Refusal>;
    /// Switches to the investigator's reader (PostgreSQL `SET ROLE`, SQL Server
    /// `EXECUTE AS USER`); only the investigator may.
    async fn become_reader(&mut self) -> Result<(), Refusal>;

    /// The audit events' actions, oldest first (needs SELECT on the audit events).
    async fn audit_actions(&mut self) -> Result<Vec<String>, Refusal>;
    /// The newest audit event's action and detail.
    async fn last_audit_event(&mut self) -> Result<(String, serde_json::Value), Refusal>;
    /// Purges every event before now through the purge routine; returns how many were deleted.
    async fn purge_all(&mut self, reason: &str) -> Result<i64, Refusal>;
    /// Verifies the audit chain: (valid, first broken id).
    async fn verify_chain(&mut self) -> Result<(bool, Option<i64>), Refusal>;
    /// Claims an actor and a request id for the events this session writes (PostgreSQL
    /// `tcp.actor` and `application_name`, SQL Server `SESSION_CONTEXT`): what any login can
    /// assert about itself.
    async fn assert_identity(&mut self, actor: &str, request_id: &str) -> Result<(), Refusal>;
    /// Opens a transaction that stays open until [`Session::rollback`].
    async fn begin(&mut self) -> Result<(), Refusal>;
    /// Rolls the open transaction back.
    async fn rollback(&mut self) -> Result<(), Refusal>;
    /// Runs a batch of SQL as it is (a test's hand-made change, as a DBA would make it).
    async fn execute(&mut self, sql: &str) -> Result<(), Refusal>;
}

/// The engine-specific side of the suite.
#[async_trait]
pub trait Probe: Send + Sync {
    /// Logs in with a connection string the control plane wrote.
    async fn login(&self, connection_string: &SecretValue) -> Result<Box<dyn Session>, Refusal>;
    /// The same connection string with another user and password (to try principals that must
    /// not log in).
    fn with_credentials(
        &self,
        connection_string: &SecretValue,
        user: &str,
        password: &str,
    ) -> SecretValue;
    /// The same connection string pointed at another database.
    fn with_database(&self, connection_string: &SecretValue, database: &str) -> SecretValue;
    /// Logs in with `connection_string` and, as that principal, changes its own password to
    /// `new_password` (PostgreSQL `ALTER ROLE CURRENT_USER PASSWORD ...`, SQL Server
    /// `ALTER USER <self> WITH PASSWORD = ... OLD_PASSWORD = ...`): what an application may do
    /// behind the control plane's back. Returns the string with the new password.
    async fn change_own_password(
        &self,
        connection_string: &SecretValue,
        new_password: &str,
    ) -> Result<SecretValue, Refusal>;
    /// A session of the server's administrator (superuser / sysadmin) on a tenant database.
    async fn admin(&self, database: &str) -> Box<dyn Session>;
    /// Whether a database of this name exists on the server (read as the administrator).
    async fn database_exists(&self, database: &str) -> bool;
    /// The marker text a database carries (PostgreSQL: its comment; SQL Server: its extended
    /// property `tenant_control_plane`), if any.
    async fn database_marker(&self, database: &str) -> Option<String>;
    /// As the administrator, creates an empty database behind the control plane's back,
    /// carrying `marker` as its marker text when given.
    async fn plant_database(&self, database: &str, marker: Option<&str>);
    /// As the administrator, creates a login carrying `marker`; `false` on an engine whose
    /// tenant principals are not server-level logins (SQL Server's contained users).
    async fn plant_login(&self, name: &str, marker: &str) -> bool;
    /// As the administrator, replaces a database's marker text.
    async fn set_database_marker(&self, database: &str, marker: &str);
    /// As the administrator, drops a database behind the control plane's back.
    async fn drop_database(&self, database: &str);
    /// As the administrator, drops one tenant principal (`name`, of tenant database
    /// `database`) behind the control plane's back.
    async fn drop_principal(&self, database: &str, name: &str);
    /// As the administrator, bypasses the audit triggers and changes the actor of the newest
    /// event with this action (what a rogue DBA could do); returns that event's id.
    async fn tamper_with_audit_event(&self, database: &str, action: &str) -> i64;
    /// As the server's administrator, changes the actor of the oldest audit event and then
    /// recomputes every hash and the chain head, so the chain verifies inside the database
    /// (what a determined insider would do). Returns the changed event's id.
    async fn rewrite_audit_chain(&self, database: &str) -> i64;
    /// As the administrator, deletes the newest event with this action (bypassing the purge
    /// guard); returns its id.
    async fn delete_audit_event(&self, database: &str, action: &str) -> i64;
    /// As the administrator, appends a forged event after the newest one (its hash is not the
    /// chain's); returns its id.
    async fn insert_audit_event(&self, database: &str) -> i64;
    /// As the administrator, deletes every event and resets the chain head to genesis, so the
    /// empty log verifies inside the database.
    async fn wipe_audit_log(&self, database: &str);
    /// As the administrator, forges the purge routine's marker (PostgreSQL `tcp.audit_purge`
    /// naming the current transaction, SQL Server's session-context keys), deletes the newest
    /// event and moves the chain head back to the one before, so the shortened log verifies
    /// inside the database. Returns the deleted event's id.
    async fn forge_purge_of_newest(&self, database: &str) -> i64;
    /// As the administrator, takes from the tenant's audit admin what the purge routine checks
    /// (PostgreSQL: the role `platform.settings` names for purging; SQL Server: its membership
    /// of `audit_admin_role`), so the tenant database refuses its purges.
    async fn take_purge_right(&self, names: &engine::TenantNames);
    /// As the administrator, deletes the events `from_id..=to_id` and re-chains every later
    /// event (hashes recomputed in each event's own format, chain head updated): the links all
    /// hold, only the ids jump.
    async fn cut_and_rechain(&self, database: &str, from_id: i64, to_id: i64);
    /// As the administrator, moves text between two fields of an event without touching its
    /// hash: the part of the actor after its last `|` goes to the front of the action
    /// (`actor = "a|b", action = "c"` becomes `actor = "a", action = "b|c"`).
    async fn shift_between_fields(&self, database: &str, id: i64);
    /// The tenant database's own format 2 hash of these fields after 32 zero bytes, lower-case
    /// hex.
    async fn event_hash_v2(
        &self,
        database: &str,
        e: &engine::audit_hash::EventFields<'_>,
    ) -> String;
}
