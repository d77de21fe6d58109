//! `tenant-control-plane`: the server binary.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The tenant control plane server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (also `TENANT_CP_CONFIG`); `TENANT_CP_*` variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = server::Config::load(args.config.as_deref())?;
    let filter =
        EnvFilter::try_from_env("TENANT_CP_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if config.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let app = server::start(&config, None).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    tracing::info!(listen = %config.listen, node = %config.node_id(), "tenant control plane ready");
    eprintln!("tenant control plane listening on http://{}", config.listen);
    match config.auth_mode {
        Some(server::config::AuthMode::Local) => eprintln!(
            "\n  !! LOCAL AUTHENTICATION (auth_mode = \"local\"): tokens are minted from {} on this\n  \
             !! machine. For development only, NOT for production: set auth_mode = \"oidc\".\n\n  \
             get a token:   target/release/tenantctl token --role operator\n  \
             or simply:     target/release/tenantctl tenants list   (mints a local operator token itself)",
            config.data_dir.join(server::auth::LOCAL_KEY_FILE).display()
        ),
        _ => eprintln!(
            "  authentication: OIDC tokens of {} (audience {})\n  \
             pass an access token from your identity provider: export TENANTCTL_TOKEN=...",
            config.oidc_issuer.as_deref().unwrap_or_default(),
            config.oidc_audience.join(", ")
        ),
    }
    // Connect info: the per-address rate limit needs the peer address.
    let service = app
        .router
        .clone()
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
            }
        })
        .await?;
    Ok(())
}
