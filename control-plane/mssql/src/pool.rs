//! Pools: a [`bb8::ManageConnection`] for tiberius 0.13, and a lazy set of small pools, one per
//! database (Azure SQL Database refuses `USE`, so a connection serves one database for life).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::{Conn, ConnectionCap, MssqlError, Target};

/// A pool of connections to one target.
pub type Pool = bb8::Pool<Manager>;

/// Opens connections to one target and checks them before reuse.
#[derive(Debug)]
pub struct Manager {
    target: Target,
    cap: Option<ConnectionCap>,
}

impl Manager {
    /// A manager for `target`.
    pub fn new(target: Target) -> Self {
        Manager { target, cap: None }
    }

    /// A manager for `target` whose connections each hold a place under `cap`.
    pub fn within(target: Target, cap: Option<ConnectionCap>) -> Self {
        Manager { target, cap }
    }
}

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = MssqlError;

    async fn connect(&self) -> Result<Conn, MssqlError> {
        Conn::connect_within(&self.target, self.cap.as_ref()).await
    }

    /// A connection is valid when it answers and holds no open transaction (a batch that
    /// failed between BEGIN and COMMIT would otherwise hand its locks to the next user).
    async fn is_valid(&self, conn: &mut Conn) -> Result<(), MssqlError> {
        let row = conn.query_opt("SELECT @@TRANCOUNT", &[]).await?;
        match row.and_then(|r| r.get::<i32, _>(0)) {
            Some(0) => Ok(()),
            _ => Err(MssqlError::Driver(
                "connection holds an open transaction".into(),
            )),
        }
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.is_broken()
    }
}

/// Sizes and timeouts of pools.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Connections per pool at most.
    pub max_size: u32,
    /// Idle connections are closed after this long (none are kept open ahead of need).
    pub idle_timeout: Duration,
    /// How long a caller waits for a connection.
    pub wait_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 4,
            idle_timeout: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(30),
        }
    }
}

/// A pool that opens connections on demand only.
pub fn lazy_pool(target: Target, options: PoolOptions) -> Pool {
    lazy_pool_within(target, options, None)
}

/// [`lazy_pool`] whose connections each hold a place under `cap`.
pub fn lazy_pool_within(target: Target, options: PoolOptions, cap: Option<ConnectionCap>) -> Pool {
    bb8::Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .idle_timeout(Some(options.idle_timeout))
        .connection_timeout(options.wait_timeout)
        .build_unchecked(Manager::within(target, cap))
}

/// One lazy pool per database on one server, created on first use.
#[derive(Clone, Debug)]
pub struct PoolSet {
    base: Target,
    options: PoolOptions,
    pools: Arc<Mutex<HashMap<String, Pool>>>,
    cap: Option<ConnectionCap>,
}

impl PoolSet {
    /// Pools for the databases of `base`'s server, with `base`'s credentials.
    pub fn new(base: Target, options: PoolOptions) -> Self {
        Self::within(base, options, None)
    }

    /// [`PoolSet::new`] whose connections each hold a place under `cap`; when the cap is
    /// reached, the pools with only idle connections are closed to give their places back.
    pub fn within(base: Target, options: PoolOptions, cap: Option<ConnectionCap>) -> Self {
        let pools: Arc<Mutex<HashMap<String, Pool>>> = Arc::default();
        if let Some(cap) = &cap {
            let weak = Arc::downgrade(&pools);
            cap.on_pressure(Arc::new(move || close_idle_pools(&weak)));
        }
        PoolSet {
            base,
            options,
            pools,
            cap,
        }
    }

    /// The pool for `database` (created, without connecting, on first use).
    pub fn pool(&self, database: &str) -> Pool {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools
            .entry(database.to_owned())
            .or_insert_with(|| {
                lazy_pool_within(
                    self.base.with_database(database),
                    self.options,
                    self.cap.clone(),
                )
            })
            .clone()
    }

    /// Forgets the pool for `database`; its idle connections close when the last user lets go.
    /// Call before dropping the database so no pooled session holds it open.
    pub fn forget(&self, database: &str) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.remove(database);
    }

    /// Every pool's state (one per database that has one).
    pub fn states(&self) -> Vec<bb8::State> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.values().map(|p| p.state()).collect()
    }

    /// The per-database pools' size limit.
    pub fn max_size(&self) -> u32 {
        self.options.max_size.max(1)
    }

    /// How many databases have a pool.
    pub fn len(&self) -> usize {
        self.pools.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no database has a pool.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Forgets every pool whose connections are all idle: once no caller holds it, the pool and
/// its connections close, and their places under the cap are free again.
fn close_idle_pools(pools: &Weak<Mutex<HashMap<String, Pool>>>) {
    let Some(pools) = pools.upgrade() else {
        return;
    };
    let mut pools = pools.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(|_, pool| {
        let state = pool.state();
        state.connections == 0 || state.connections != state.idle_connections
    });
}
