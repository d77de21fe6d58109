//! SQL Server connections for the engine and the catalog.
//!
//! A [`Target`] says where and how to connect (SQL login or Azure AD token; TLS required and
//! validated by default). [`Conn`] wraps one tiberius 0.13 client and knows when it is no longer
//! safe to reuse; [`Manager`] makes it a bb8 pool; [`PoolSet`] keeps one small lazy pool per
//! database, because a SQL Server connection serves one database for life (Azure SQL Database
//! refuses `USE`).

mod cap;
mod conn;
mod error;
mod pool;
mod target;

pub use cap::{CapExhausted, CapPermit, ConnectionCap, PressureHook};
pub use conn::{Client, Conn, Rows};
pub use error::MssqlError;
pub use pool::{lazy_pool, lazy_pool_within, Manager, Pool, PoolOptions, PoolSet};
pub use target::{
    Auth, AzureToken, Target, Tls, TokenFile, TokenSource, DEFAULT_PORT, SQL_TOKEN_SCOPE,
};
pub use tiberius::{Row, ToSql, Uuid};
