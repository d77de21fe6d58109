//! The catalog's PostgreSQL connections, with their statements prepared once per connection.
//!
//! `tokio_postgres::Client::query` with SQL text prepares an unnamed statement on every call:
//! a round trip of its own, and the server parses and plans the text again each time. The
//! catalog runs the same few dozen statements all day (a migration of one tenant runs about
//! thirty), so each pooled connection keeps the statements it prepared, by their text. The
//! cache is bounded ([`MAX_STATEMENTS`]; past it, statements are prepared and not kept), and a
//! statement the server no longer accepts as prepared (the catalog's schema changed under it,
//! "cached plan must not change result type") is forgotten, so the next call prepares it again.

use std::collections::HashMap;
use std::sync::Mutex;

use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, NoTls, Row, Statement, Transaction};

/// At most this many statements are kept per connection.
const MAX_STATEMENTS: usize = 256;

/// Statements prepared on one connection, by their SQL text.
#[derive(Default)]
pub(crate) struct Statements(Mutex<HashMap<String, Statement>>);

impl Statements {
    fn get(&self, sql: &str) -> Option<Statement> {
        self.0.lock().ok().and_then(|m| m.get(sql).cloned())
    }

    fn keep(&self, sql: &str, statement: &Statement) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() < MAX_STATEMENTS {
                m.insert(sql.to_owned(), statement.clone());
            }
        }
    }

    /// Forgets `sql`'s statement when the server refused to run it as prepared.
    fn forget_if_stale(&self, sql: &str, e: &Error) {
        if e.code() == Some(&tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED) {
            if let Ok(mut m) = self.0.lock() {
                m.remove(sql);
            }
        }
    }
}

/// Runs SQL text as a prepared statement, prepared once per connection: a pooled connection
/// ([`CatalogConn`]) or a transaction on one ([`CatalogTx`]).
pub(crate) trait Db: Sync {
    /// The client (or transaction) and the connection's statements.
    fn parts(&self) -> (&(dyn DbClient + Sync), &Statements);

    /// The prepared statement for `sql`.
    fn statement(
        &self,
        sql: &str,
    ) -> impl std::future::Future<Output = Result<Statement, Error>> + Send {
        async move {
            let (client, statements) = self.parts();
            if let Some(s) = statements.get(sql) {
                return Ok(s);
            }
            let s = client.prepare_text(sql).await?;
            statements.keep(sql, &s);
            Ok(s)
        }
    }

    /// Rows of `sql`.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Vec<Row>, Error>> + Send {
        async move {
            let statement = self.statement(sql).await?;
            let (client, statements) = self.parts();
            client
                .query_statement(&statement, params)
                .await
                .inspect_err(|e| statements.forget_if_stale(sql, e))
        }
    }

    /// The one row of `sql`, or an error.
    fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Row, Error>> + Send {
        async move {
            let statement = self.statement(sql).await?;
            let (client, statements) = self.parts();
            client
                .query_one_statement(&statement, params)
                .await
                .inspect_err(|e| statements.forget_if_stale(sql, e))
        }
    }

    /// The row of `sql`, if any (more than one is an error).
    fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<Option<Row>, Error>> + Send {
        async move {
            let statement = self.statement(sql).await?;
            let (client, statements) = self.parts();
            client
                .query_opt_statement(&statement, params)
                .await
                .inspect_err(|e| statements.forget_if_stale(sql, e))
        }
    }

    /// Runs `sql`; the number of rows it changed.
    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl std::future::Future<Output = Result<u64, Error>> + Send {
        async move {
            let statement = self.statement(sql).await?;
            let (client, statements) = self.parts();
            client
                .execute_statement(&statement, params)
                .await
                .inspect_err(|e| statements.forget_if_stale(sql, e))
        }
    }
}

/// What [`Db`] needs of a client or a transaction, object-safe.
#[async_trait::async_trait]
pub(crate) trait DbClient {
    async fn prepare_text(&self, sql: &str) -> Result<Statement, Error>;
    async fn query_statement(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error>;
    async fn query_one_statement(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>;
    async fn query_opt_statement(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>;
    async fn execute_statement(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error>;
}

macro_rules! db_client {
    ($t:ty) => {
        #[async_trait::async_trait]
        impl DbClient for $t {
            async fn prepare_text(&self, sql: &str) -> Result<Statement, Error> {
                self.prepare(sql).await
            }
            async fn query_statement(
                &self,
                statement: &Statement,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error> {
                self.query(statement, params).await
            }
            async fn query_one_statement(
                &self,
                statement: &Statement,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Row, Error> {
                self.query_one(statement, params).await
            }
            async fn query_opt_statement(
                &self,
                statement: &Statement,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error> {
                self.query_opt(statement, params).await
            }
            async fn execute_statement(
                &self,
                statement: &Statement,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<u64, Error> {
                self.execute(statement, params).await
            }
        }
    };
}
db_client!(Client);
db_client!(Transaction<'_>);

/// A pooled catalog connection and the statements prepared on it.
pub(crate) struct CatalogConn {
    client: Client,
    statements: Statements,
    /// When it last came back to the pool open ([`Manager::has_broken`]).
    returned: std::time::Instant,
}

/// A pooled connection that came back open this recently is handed out again without the
/// pool's round trip to test it: it was just in use, and one the server closed meanwhile is
/// seen as closed (`Client::is_closed`) and tested, which fails it. Under load that round
/// trip was one in every two or three of the catalog's.
pub(crate) const TESTED_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

impl CatalogConn {
    /// Starts a transaction; its statements are this connection's.
    pub(crate) async fn transaction(&mut self) -> Result<CatalogTx<'_>, Error> {
        let CatalogConn {
            client, statements, ..
        } = self;
        Ok(CatalogTx {
            tx: client.transaction().await?,
            statements,
        })
    }
}

impl Db for CatalogConn {
    fn parts(&self) -> (&(dyn DbClient + Sync), &Statements) {
        (&self.client, &self.statements)
    }
}

/// A transaction on a [`CatalogConn`].
pub(crate) struct CatalogTx<'a> {
    tx: Transaction<'a>,
    statements: &'a Statements,
}

impl CatalogTx<'_> {
    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), Error> {
        self.tx.commit().await
    }
}

impl Db for CatalogTx<'_> {
    fn parts(&self) -> (&(dyn DbClient + Sync), &Statements) {
        (&self.tx, self.statements)
    }
}

/// The pool's manager: tokio-postgres connections, each with its statements.
pub(crate) struct Manager(pub(crate) PostgresConnectionManager<NoTls>);

impl bb8::ManageConnection for Manager {
    type Connection = CatalogConn;
    type Error = Error;

    async fn connect(&self) -> Result<CatalogConn, Error> {
        Ok(CatalogConn {
            client: self.0.connect().await?,
            statements: Statements::default(),
            returned: std::time::Instant::now(),
        })
    }

    async fn is_valid(&self, conn: &mut CatalogConn) -> Result<(), Error> {
        if !conn.client.is_closed() && conn.returned.elapsed() < TESTED_IF_IDLE_FOR {
            return Ok(());
        }
        self.0.is_valid(&mut conn.client).await
    }

    /// Called each time a connection comes back to the pool.
    fn has_broken(&self, conn: &mut CatalogConn) -> bool {
        conn.returned = std::time::Instant::now();
        self.0.has_broken(&mut conn.client)
    }
}
