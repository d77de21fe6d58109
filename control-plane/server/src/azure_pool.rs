//! An `azure_sql` server's capacity from its elastic pool: the pool's database limit, read from
//! Azure Resource Manager (`secrets::arm`), less one for the tenant template every copy is made
//! of. Used when a server is registered with its pool's resource id, and at start-up for the
//! configured server.
//!
//! Layer: foundation.

use secrets::arm::{ArmClient, ArmError, ArmOptions, ElasticPoolId, PoolLimit};

/// Databases of ours in the pool that are not tenants: the template (`tcp_template_<generation>`).
pub(crate) const RESERVED: i64 = 1;

/// Why a capacity could not be taken from the pool.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolCapacityError {
    /// The Resource Manager client could not be set up (credential, endpoint, CA bundle).
    #[error("reading elastic pool {pool}'s database limit: {detail}")]
    Setup {
        /// The pool's id.
        pool: String,
        /// What failed.
        detail: String,
    },
    /// Resource Manager refused or failed.
    #[error(transparent)]
    Arm(#[from] ArmError),
    /// The requested capacity does not fit in the pool.
    #[error(
        "capacity {requested} does not fit elastic pool {pool}: at {sku} ({tier}, {size}) it \
         holds at most {max} databases and one is the tenant template, so capacity can be at \
         most {allowed} (omit capacity to take that)"
    )]
    TooLarge {
        /// What was asked for.
        requested: i32,
        /// The pool's name.
        pool: String,
        /// Its SKU.
        sku: String,
        /// Its tier.
        tier: String,
        /// Its vCores or eDTUs.
        size: i64,
        /// Its database limit.
        max: i64,
        /// The most tenants it can take.
        allowed: i32,
    },
    /// The pool cannot take a single tenant.
    #[error("elastic pool {pool} holds at most {max} database(s): no room for a tenant beside the template")]
    NoRoom {
        /// The pool's name.
        pool: String,
        /// Its database limit.
        max: i64,
    },
}

/// The most tenants a pool with `limit` takes.
pub(crate) fn allowed(pool: &str, limit: &PoolLimit) -> Result<i32, PoolCapacityError> {
    let allowed = (limit.max_databases - RESERVED).clamp(0, 100_000);
    if allowed < 1 {
        return Err(PoolCapacityError::NoRoom {
            pool: pool.to_owned(),
            max: limit.max_databases,
        });
    }
    Ok(i32::try_from(allowed).unwrap_or(100_000))
}

/// The capacity of a server in `pool`: `requested`, which must fit, or the most the pool takes
/// when none is requested.
pub(crate) fn fit(
    pool: &str,
    limit: &PoolLimit,
    requested: Option<i32>,
) -> Result<i32, PoolCapacityError> {
    let allowed = allowed(pool, limit)?;
    match requested {
        None => Ok(allowed),
        Some(requested) if requested <= allowed => Ok(requested),
        Some(requested) => Err(PoolCapacityError::TooLarge {
            requested,
            pool: pool.to_owned(),
            sku: limit.sku.clone(),
            tier: limit.tier.clone(),
            size: limit.capacity,
            max: limit.max_databases,
            allowed,
        }),
    }
}

/// Reads the pool's database limit.
pub(crate) async fn read_limit(
    options: &ArmOptions,
    id: &ElasticPoolId,
) -> Result<PoolLimit, PoolCapacityError> {
    let client = ArmClient::new(options.clone()).map_err(|detail| PoolCapacityError::Setup {
        pool: id.to_string(),
        detail,
    })?;
    let limit = client.pool_limit(id).await?;
    tracing::info!(pool = %id, sku = %limit.sku, tier = %limit.tier, size = limit.capacity,
                   max_databases = limit.max_databases, "elastic pool database limit read");
    Ok(limit)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limit(max: i64) -> PoolLimit {
        PoolLimit {
            sku: "GP_Gen5".into(),
            tier: "GeneralPurpose".into(),
            capacity: 4,
            location: "westeurope".into(),
            max_databases: max,
        }
    }

    #[test]
    fn capacity_is_the_pool_limit_less_the_template() {
        assert_eq!(fit("p", &limit(200), None).unwrap(), 199);
        assert_eq!(fit("p", &limit(200), Some(150)).unwrap(), 150);
        assert_eq!(fit("p", &limit(200), Some(199)).unwrap(), 199);
        let err = fit("p", &limit(200), Some(200)).unwrap_err().to_string();
        assert!(
            err.contains("at most 200 databases") && err.contains("at most 199"),
            "{err}"
        );
        assert!(matches!(
            fit("p", &limit(1), None),
            Err(PoolCapacityError::NoRoom { .. })
        ));
        assert_eq!(fit("p", &limit(5_000_000), None).unwrap(), 100_000);
    }
}
