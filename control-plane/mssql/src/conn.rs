//! One connection, which knows when it can no longer be trusted.

use tiberius::{Row, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tracing::debug;

use crate::{MssqlError, Target};

/// The tiberius client over a tokio TCP stream.
pub type Client = tiberius::Client<Compat<TcpStream>>;

/// A connection that tracks whether it is still in a known state.
///
/// tiberius cannot tell whether a request finished, so every call marks the connection busy
/// first and clears the mark when the server's answer was read in full (success or a server
/// error). A call whose future was dropped midway (a timeout, a cancelled request) or that
/// failed on I/O leaves the mark set, and the pool throws the connection away.
pub struct Conn {
    client: Client,
    busy: bool,
    broken: bool,
    /// Its place under the server's connection cap, given back when it closes.
    _permit: Option<crate::CapPermit>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("busy", &self.busy)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

async fn open(config: tiberius::Config) -> tiberius::Result<Client> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

impl Conn {
    /// Connects and logs in, following one server redirect (Azure SQL's gateway), within the
    /// target's connect timeout.
    pub async fn connect(target: &Target) -> Result<Conn, MssqlError> {
        Self::connect_within(target, None).await
    }

    /// [`Conn::connect`] under a connection cap: waits for a place first and holds it for life.
    pub async fn connect_within(
        target: &Target,
        cap: Option<&crate::ConnectionCap>,
    ) -> Result<Conn, MssqlError> {
        let permit = match cap {
            Some(cap) => Some(cap.acquire().await?),
            None => None,
        };
        let config = target.config().await?;
        let attempt = async {
            match open(config.clone()).await {
                Err(tiberius::error::Error::Routing { host, port }) => {
                    debug!(%host, port, "sql server redirected the connection");
                    let mut redirected = config;
                    redirected.host(host);
                    redirected.port(port);
                    open(redirected).await
                }
                other => other,
            }
        };
        let client = match tokio::time::timeout(target.connect_timeout, attempt).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(MssqlError::Connect {
                    target: target.describe(),
                    number: e.code(),
                    detail: match &e {
                        tiberius::error::Error::Server(t) => t.message().to_owned(),
                        other => other.to_string(),
                    },
                })
            }
            Err(_) => {
                return Err(MssqlError::Connect {
                    target: target.describe(),
                    number: None,
                    detail: format!("timed out after {:?}", target.connect_timeout),
                })
            }
        };
        Ok(Conn {
            client,
            busy: false,
            broken: false,
            _permit: permit,
        })
    }

    fn settle<T>(&mut self, result: tiberius::Result<T>) -> Result<T, MssqlError> {
        match result {
            Ok(v) => {
                self.busy = false;
                Ok(v)
            }
            // The server answered in full; the connection is still in step.
            Err(e @ tiberius::error::Error::Server(_)) => {
                self.busy = false;
                Err(e.into())
            }
            Err(e) => {
                self.broken = true;
                Err(e.into())
            }
        }
    }

    /// Whether the connection must not be reused.
    pub fn is_broken(&self) -> bool {
        self.broken || self.busy
    }

    /// Runs a parameterised statement (`@P1`, `@P2`, ...) and returns the rows affected.
    pub async fn execute(&mut self, sql: &str, params: &[&dyn ToSql]) -> Result<u64, MssqlError> {
        self.busy = true;
        let result = self.client.execute(sql, params).await;
        self.settle(result).map(|r| r.total())
    }

    /// Runs a parameterised query and returns the rows of its first result set.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Vec<Row>, MssqlError> {
        self.busy = true;
        let result = match self.client.query(sql, params).await {
            Ok(stream) => stream.into_first_result().await,
            Err(e) => Err(e),
        };
        self.settle(result)
    }

    /// Runs a parameterised query and returns its rows as they arrive ([`Rows::next`]), so a
    /// large result is never held whole. Until the last row is read the connection counts as
    /// busy: dropped midway, it is never reused with a half-read result on the wire.
    pub async fn query_rows<'a>(
        &'a mut self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Rows<'a>, MssqlError> {
        let Conn { client, busy, .. } = self;
        *busy = true;
        let stream = client.query(sql, params).await?.into_row_stream();
        Ok(Rows { stream, busy })
    }

    /// Runs a parameterised query and returns its first row, if any.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&dyn ToSql],
    ) -> Result<Option<Row>, MssqlError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs a batch without parameters (DDL, several statements) and returns every result set.
    pub async fn batch(&mut self, sql: &str) -> Result<Vec<Vec<Row>>, MssqlError> {
        self.busy = true;
        let result = match self.client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await,
            Err(e) => Err(e),
        };
        self.settle(result)
    }

    /// The raw client, for tools that drive it themselves (refinery). The connection counts as
    /// busy from then on, so it is never returned to a pool.
    pub fn into_client(self) -> Client {
        self.client
    }
}

/// The rows of [`Conn::query_rows`], read one at a time.
pub struct Rows<'a> {
    stream: futures::stream::BoxStream<'a, tiberius::Result<Row>>,
    busy: &'a mut bool,
}

impl Rows<'_> {
    /// The next row; `None` once all were read (the connection is then free again).
    pub async fn next(&mut self) -> Result<Option<Row>, MssqlError> {
        use futures::TryStreamExt as _;
        let row = self.stream.try_next().await?;
        if row.is_none() {
            *self.busy = false;
        }
        Ok(row)
    }
}
