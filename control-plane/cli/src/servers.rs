//! `tenantctl servers`: the fleet's database servers (role `admin`): register one (its admin
//! connection string is read from a file or stdin, never from the command line, where it would
//! land in shell history and `ps`), list, show, drain, undrain, remove.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use api_types::{RegisterServerRequest, Server, ServerEngine};
use clap::{Subcommand, ValueEnum};

use crate::client::Client;
use crate::error::Failure;
use crate::render;

/// The role every server command needs.
pub const ROLE: &str = "admin";

/// An engine on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// SQL Server (or Azure SQL Managed Instance).
    Sqlserver,
    /// An Azure SQL Database logical server (with --elastic-pool).
    AzureSql,
}

impl From<Engine> for ServerEngine {
    fn from(e: Engine) -> Self {
        match e {
            Engine::Postgres => ServerEngine::Postgres,
            Engine::Sqlserver => ServerEngine::Sqlserver,
            Engine::AzureSql => ServerEngine::AzureSql,
        }
    }
}

/// Parses `key=value` (a placement label).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!(
            "{s:?} is not a label: write key=value, e.g. region=westeurope"
        )),
    }
}

/// `tenantctl servers ...`.
#[derive(Debug, Subcommand)]
pub enum ServersCommand {
    /// Register a database server: its credentials and fitness are checked first.
    Add {
        /// Unique name, e.g. pg-westeurope-2.
        name: String,
        /// Its engine.
        #[arg(long, value_enum)]
        engine: Engine,
        /// A file holding the admin connection string (`-` reads stdin).
        #[arg(long, value_name = "FILE")]
        admin_url_file: PathBuf,
        /// Most tenants it takes (required, except with --elastic-pool given as a resource id:
        /// then the pool's database limit less one).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100000))]
        capacity: Option<i32>,
        /// A placement label key=value (repeatable).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Host written into tenant connection strings (default: the admin URL's).
        #[arg(long)]
        tenant_host: Option<String>,
        /// Port written into tenant connection strings (default: the admin URL's).
        #[arg(long)]
        tenant_port: Option<u16>,
        /// Pooled databases to keep ready for onboardings (default: the deployment's
        /// `warm_pool_size`); each occupies disk and counts toward the capacity.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1000))]
        pool_size: Option<u32>,
        /// `--engine azure-sql`: the elastic pool its tenant databases are created in: its
        /// resource id (/subscriptions/…/elasticPools/<pool>), from which the control plane
        /// reads the capacity, or its name (then give --capacity).
        #[arg(long, value_name = "POOL")]
        elastic_pool: Option<String>,
    },
    /// List servers with their load and state.
    List,
    /// Show one server.
    Show {
        /// The server's name.
        name: String,
    },
    /// Stop placing new tenants on a server (its tenants stay).
    Drain {
        /// The server's name.
        name: String,
    },
    /// Place new tenants on a drained server again.
    Undrain {
        /// The server's name.
        name: String,
    },
    /// Remove a server that holds no tenant (its admin secret is deleted and purged).
    Remove {
        /// The server's name.
        name: String,
    },
    /// Set how many pooled databases the server keeps ready for onboardings (`default`: the
    /// deployment's `warm_pool_size`); each occupies disk and counts toward the capacity.
    Pool {
        /// The server's name.
        name: String,
        /// A number from 0 to 1000, or `default`.
        #[arg(value_parser = parse_pool_size)]
        size: PoolSize,
    },
    /// Set the most tenants the server takes (no fewer than it holds). Without --capacity, an
    /// azure_sql server registered with its pool's resource id reads the pool's limit again
    /// (after the pool was scaled).
    Capacity {
        /// The server's name.
        name: String,
        /// Most tenants it takes.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100000))]
        capacity: Option<i32>,
    },
}

/// A pool size on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSize {
    /// The deployment's default.
    Default,
    /// This many.
    Size(u32),
}

/// `default` or a number from 0 to 1000.
pub fn parse_pool_size(s: &str) -> Result<PoolSize, String> {
    match s.trim() {
        "default" => Ok(PoolSize::Default),
        n => match n.parse::<u32>() {
            Ok(n) if n <= 1000 => Ok(PoolSize::Size(n)),
            _ => Err(format!(
                "{s:?} is not a pool size: write 0 to 1000, or default"
            )),
        },
    }
}

fn read_admin_url(path: &PathBuf) -> Result<String, Failure> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| {
            Failure::new(format!(
                "reading the admin connection string from stdin: {e}"
            ))
        })?
    } else {
        std::fs::read_to_string(path).map_err(|e| {
            Failure::new(format!("reading {}: {e}", path.display()))
                .hint("write the admin connection string to a file only you can read, and pass it")
        })?
    };
    let url = text.trim();
    if url.is_empty() {
        return Err(Failure::new("the admin connection string is empty"));
    }
    Ok(url.to_owned())
}

/// Runs a server command; prints the API's JSON with `--json`.
pub async fn run(
    client: &Client,
    command: ServersCommand,
    json: bool,
) -> Result<ExitCode, Failure> {
    let show = |server: &Server, raw: &serde_json::Value| -> Result<(), Failure> {
        if json {
            crate::emit_json(raw)
        } else {
            crate::emit(&render::server_details(server));
            Ok(())
        }
    };
    match command {
        ServersCommand::Add {
            name,
            engine,
            admin_url_file,
            capacity,
            labels,
            tenant_host,
            tenant_port,
            pool_size,
            elastic_pool,
        } => {
            let body = RegisterServerRequest {
                name,
                engine: engine.into(),
                admin_url: read_admin_url(&admin_url_file)?,
                capacity,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                tenant_host,
                tenant_port,
                pool_size,
                elastic_pool,
            };
            let (server, raw): (Server, _) = client.post("/v1/servers", &body).await?;
            show(&server, &raw)?;
        }
        ServersCommand::List => {
            let (servers, raw): (Vec<Server>, _) = client.get("/v1/servers").await?;
            if json {
                crate::emit_json(&raw)?;
            } else {
                crate::emit(&render::server_table(&servers));
            }
        }
        ServersCommand::Show { name } => {
            let (server, raw): (Server, _) = client.get(&format!("/v1/servers/{name}")).await?;
            show(&server, &raw)?;
        }
        ServersCommand::Drain { name } => {
            let (server, raw): (Server, _) = client
                .post(&format!("/v1/servers/{name}/drain"), &serde_json::json!({}))
                .await?;
            show(&server, &raw)?;
        }
        ServersCommand::Undrain { name } => {
            let (server, raw): (Server, _) = client
                .post(
                    &format!("/v1/servers/{name}/undrain"),
                    &serde_json::json!({}),
                )
                .await?;
            show(&server, &raw)?;
        }
        ServersCommand::Pool { name, size } => {
            let size = match size {
                PoolSize::Default => None,
                PoolSize::Size(n) => Some(n),
            };
            let (server, raw): (Server, _) = client
                .put(
                    &format!("/v1/servers/{name}/pool"),
                    &api_types::SetPoolSizeRequest { size },
                )
                .await?;
            show(&server, &raw)?;
        }
        ServersCommand::Capacity { name, capacity } => {
            let (server, raw): (Server, _) = client
                .put(
                    &format!("/v1/servers/{name}/capacity"),
                    &api_types::SetCapacityRequest { capacity },
                )
                .await?;
            show(&server, &raw)?;
        }
        ServersCommand::Remove { name } => {
            let (server, raw): (Server, _) = client.delete(&format!("/v1/servers/{name}")).await?;
            if json {
                crate::emit_json(&raw)?;
            } else {
                crate::emit(&format!("removed server {}", server.name));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_value_pairs() {
        assert_eq!(
            parse_label(" region = westeurope ").unwrap(),
            ("region".into(), "westeurope".into())
        );
        assert!(parse_label("region").unwrap_err().contains("key=value"));
        assert!(parse_label("=x").is_err());
    }

    #[test]
    fn pool_sizes_are_numbers_or_default() {
        assert_eq!(parse_pool_size("default").unwrap(), PoolSize::Default);
        assert_eq!(parse_pool_size("25").unwrap(), PoolSize::Size(25));
        assert!(parse_pool_size("1001").unwrap_err().contains("0 to 1000"));
        assert!(parse_pool_size("-1").is_err());
    }
}
