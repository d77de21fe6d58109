//! Layer: handlers. The fleet's database servers (role `admin`): register one (its credentials
//! and fitness are checked before anything is stored; its admin connection string goes to the
//! secret store, never to the catalog or an answer), list, show, drain, undrain, remove (only an
//! empty one).

use std::sync::Arc;

use std::collections::HashMap;

use api_types::{
    Problem, RegisterServerRequest, Server, ServerEngine, ServerHealthCheck, ServerPool,
    SetCapacityRequest, SetPoolSizeRequest,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use catalog::{NewServer, ServerRecord, ServerState};
use secrets::arm::{ArmError, ElasticPoolId};
use secrets::{SecretName, SecretValue};

use crate::error::AppError;
use crate::extract::{ApiJson, Caller};
use crate::state::AppState;

/// The server routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/servers", post(register_server).get(list_servers))
        .route("/v1/servers/{name}", get(show_server).delete(remove_server))
        .route("/v1/servers/{name}/drain", post(drain_server))
        .route("/v1/servers/{name}/undrain", post(undrain_server))
        .route("/v1/servers/{name}/pool", put(set_pool_size))
        .route("/v1/servers/{name}/capacity", put(set_capacity))
}

/// The API view of a server row (never its credentials), with its warm pool's figures
/// (`pools`, by server) and the deployment's pool size.
pub fn server_view(
    s: &ServerRecord,
    pools: &HashMap<String, ServerPool>,
    default_size: u32,
) -> Server {
    let mut pool = pools.get(&s.name).cloned().unwrap_or_default();
    pool.size_set = s.pool_size.is_some();
    pool.size = if s.state == ServerState::Active && !s.unreachable() {
        s.pool_size
            .map_or(default_size, |n| u32::try_from(n).unwrap_or(0))
    } else {
        0
    };
    let state = if s.unreachable() {
        "unreachable"
    } else {
        s.state.as_str()
    };
    Server {
        name: s.name.clone(),
        engine: ServerEngine::parse(&s.engine).unwrap_or(ServerEngine::Postgres),
        elastic_pool: s.elastic_pool.clone(),
        elastic_pool_id: s.elastic_pool_id.clone(),
        state: state.to_owned(),
        tenants: s.tenants,
        capacity: s.capacity,
        labels: s.labels.clone(),
        host: s.host.clone(),
        port: s.port,
        engine_version: s.health.engine_version.clone(),
        last_health_check: ServerHealthCheck {
            checked_at: s.health.checked_at,
            ok: s.health.ok,
            latency_ms: s.health.latency_ms,
            error: s.health.error.clone(),
        },
        pool,
        created_at: s.created_at,
    }
}

fn parse_name(name: &str) -> Result<&str, AppError> {
    if api_types::valid_server_name(name) {
        Ok(name)
    } else {
        Err(AppError::bad_request(format!(
            "invalid server name {name:?}: a lowercase letter, then lowercase letters, digits \
             or '-', at most 40 ({})",
            api_types::SERVER_NAME_PATTERN
        )))
    }
}

/// The host and port an admin URL names (the defaults of tenant connection strings).
fn admin_location(engine: ServerEngine, url: &str) -> Result<(String, u16), AppError> {
    let bad = |why: String| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "admin_url is not a {} connection URL: {why}",
                engine.as_str()
            ),
        )
    };
    match engine {
        ServerEngine::Postgres => {
            engine::postgres::url_location(url).map_err(|e| bad(e.to_string()))
        }
        ServerEngine::Sqlserver | ServerEngine::AzureSql => {
            let target = mssql::Target::parse_url(url).map_err(|e| bad(e.to_string()))?;
            Ok((target.host.clone(), target.port))
        }
    }
}

/// The capacity of a server in elastic pool `pool` (resource id `id`): `requested` if it fits
/// the pool's database limit, read from Resource Manager, else that limit less the template.
/// A limit that cannot be read, or a capacity that does not fit: 422 (what to change), or 503
/// when Resource Manager is unreachable (try again).
async fn capacity_from_pool(
    state: &AppState,
    id: &ElasticPoolId,
    pool: &str,
    requested: Option<i32>,
) -> Result<i32, AppError> {
    use crate::azure_pool::PoolCapacityError;
    let options = state.arm.as_ref().map_err(|e| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("reading elastic pool {id}'s database limit needs an Azure credential: {e}"),
        )
    })?;
    let capacity = match crate::azure_pool::read_limit(options, id).await {
        Ok(limit) => crate::azure_pool::fit(pool, &limit, requested),
        Err(e) => Err(e),
    };
    capacity.map_err(|e| match e {
        PoolCapacityError::Arm(ArmError::Unavailable(detail)) => AppError::unavailable(detail),
        e => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    })
}

#[utoipa::path(
    post,
    path = "/v1/servers",
    tag = "servers",
    request_body = RegisterServerRequest,
    responses(
        (status = 201, description = "Registered: the credentials logged in and the server is fit (superuser / sysadmin, contained database authentication on SQL Server, the tenant template built)", body = Server),
        (status = 400, description = "The name, capacity, pool size, elastic pool or a label is invalid, or capacity is missing (it may be left out only for an azure_sql server whose elastic_pool is a resource id)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A server of this name is registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The admin URL is malformed, or the server refused it or is not fit, or (an elastic pool given by its resource id) the pool's database limit could not be read or the capacity does not fit it; the detail names what failed (never the URL)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Azure Resource Manager could not be reached to read the pool's database limit; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn register_server(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RegisterServerRequest>,
) -> Result<(StatusCode, Json<Server>), AppError> {
    let name = parse_name(&body.name)?.to_owned();
    if body.capacity.is_some_and(|c| !(1..=100_000).contains(&c)) {
        return Err(AppError::bad_request("capacity must be 1 to 100000"));
    }
    for (key, value) in &body.labels {
        let valid = |s: &str| !s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_control);
        if !valid(key) || !valid(value) {
            return Err(AppError::bad_request(
                "labels must be 1 to 100 characters each, without control characters",
            ));
        }
    }
    if body.pool_size.is_some_and(|n| n > MAX_POOL_SIZE) {
        return Err(AppError::bad_request(format!(
            "pool_size must be 0 to {MAX_POOL_SIZE}"
        )));
    }
    let pool_size = body
        .pool_size
        .map(i32::try_from)
        .transpose()
        .map_err(|e| AppError::internal(&e))?;
    let admin_url = body.admin_url.trim();
    if admin_url.is_empty() || admin_url.chars().any(char::is_control) {
        return Err(AppError::bad_request(
            "admin_url must be one line: the admin connection URL",
        ));
    }
    let (url_host, url_port) = admin_location(body.engine, admin_url)?;
    let mut pool_id = None;
    let elastic_pool = match (body.engine, body.elastic_pool.as_deref().map(str::trim)) {
        (ServerEngine::AzureSql, Some(pool)) if ElasticPoolId::looks_like_id(pool) => {
            let id = ElasticPoolId::parse(pool).map_err(AppError::bad_request)?;
            // `<server>.database.windows.net` (or a sovereign cloud's): the pool must be that
            // server's. An alias or an address is taken as given.
            let server = url_host.split('.').next().unwrap_or_default();
            if url_host.contains(".database.") && !server.eq_ignore_ascii_case(id.server()) {
                return Err(AppError::bad_request(format!(
                    "elastic_pool names a pool of logical server {}, but admin_url is for {url_host}",
                    id.server()
                )));
            }
            let pool_name = id.pool().to_owned();
            pool_id = Some(id);
            Some(pool_name)
        }
        (ServerEngine::AzureSql, Some(pool))
            if !pool.is_empty() && pool.len() <= 128 && !pool.chars().any(char::is_control) =>
        {
            Some(pool.to_owned())
        }
        (ServerEngine::AzureSql, _) => {
            return Err(AppError::bad_request(
                "an azure_sql server needs elastic_pool: the name of the elastic pool its \
                 tenant databases are created in (1 to 128 characters), or its resource id",
            ))
        }
        (_, Some(_)) => {
            return Err(AppError::bad_request(format!(
                "elastic_pool is for azure_sql servers only, not {}",
                body.engine.as_str()
            )))
        }
        (_, None) => None,
    };
    if state.catalog.server(&name).await?.is_some() {
        return Err(AppError::conflict(format!(
            "a server named {name} is already registered"
        )));
    }
    // Capacity: as given, or (an azure_sql pool given by its id) what the pool holds.
    let capacity = match (&pool_id, elastic_pool.as_deref()) {
        (Some(id), Some(pool)) => capacity_from_pool(&state, id, pool, body.capacity).await?,
        _ => body.capacity.ok_or_else(|| {
            AppError::bad_request(
                "capacity is required (1 to 100000); only an azure_sql server whose \
                 elastic_pool is given as its resource id takes it from the pool",
            )
        })?,
    };
    let host = body.tenant_host.clone().unwrap_or(url_host);
    let port = i32::from(body.tenant_port.unwrap_or(url_port));
    let admin_secret = crate::fleet::admin_secret_name(&name);
    let new = NewServer {
        name: name.clone(),
        engine: body.engine.as_str().to_owned(),
        elastic_pool: elastic_pool.clone(),
        elastic_pool_id: pool_id.as_ref().map(ToString::to_string),
        admin_secret: admin_secret.clone(),
        host: host.clone(),
        port,
        capacity,
        labels: body.labels.clone(),
        pool_size,
    };
    // Checked before anything is stored: logs in as the admin, checks fitness, prepares.
    let probe = ServerRecord {
        name: name.clone(),
        engine: new.engine.clone(),
        elastic_pool,
        elastic_pool_id: new.elastic_pool_id.clone(),
        admin_secret: admin_secret.clone(),
        host,
        port,
        capacity,
        labels: body.labels.clone(),
        pool_size,
        state: ServerState::Active,
        tenants: 0,
        health: Default::default(),
        created_at: chrono::Utc::now(),
    };
    let admin_url = SecretValue::new(admin_url);
    let engine = state
        .engines()
        .check(&probe, admin_url.clone())
        .await
        .map_err(|e| AppError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    // The name is claimed in the catalog first, so a concurrent registration of the same name
    // cannot overwrite this one's credentials; a failed secret write takes the row back.
    let record = state.catalog.create_server(new, &caller.subject).await?;
    let secret = SecretName::new(&admin_secret).map_err(|e| AppError::internal(&e))?;
    if let Err(e) = state
        .secrets()
        .set(
            &secret,
            admin_url,
            crate::fleet::admin_secret_options(&name),
        )
        .await
    {
        tracing::error!(server = %name, error = %e, "storing a server's admin credentials failed");
        if let Err(undo) = state.catalog.delete_server(&name, &caller.subject).await {
            tracing::error!(server = %name, error = %undo, "could not take the registration back");
        }
        return Err(AppError::unavailable(format!(
            "the secret store could not keep server {name}'s admin credentials; nothing was \
             registered, try again"
        )));
    }
    state.engines().insert(&name, Arc::clone(&engine)).await;
    tracing::info!(server = %name, engine = %record.engine, capacity = record.capacity, "database server registered");
    Ok((StatusCode::CREATED, Json(view(&state, &record).await?)))
}

#[utoipa::path(
    get,
    path = "/v1/servers",
    tag = "servers",
    responses((status = 200, description = "Every registered server, by name", body = Vec<Server>))
)]
pub(crate) async fn list_servers(
    State(state): State<AppState>,
) -> Result<Json<Vec<Server>>, AppError> {
    let pools = state.pool_figures().await?;
    Ok(Json(
        state
            .catalog
            .servers()
            .await?
            .iter()
            .map(|s| server_view(s, &pools, state.warm_pool_size))
            .collect(),
    ))
}

async fn view(state: &AppState, record: &ServerRecord) -> Result<Server, AppError> {
    Ok(server_view(
        record,
        &state.pool_figures().await?,
        state.warm_pool_size,
    ))
}

async fn named(state: &AppState, name: &str) -> Result<ServerRecord, AppError> {
    let name = parse_name(name)?;
    state
        .catalog
        .server(name)
        .await?
        .ok_or_else(|| AppError::not_found(format!("server {name} not found")))
}

#[utoipa::path(
    get,
    path = "/v1/servers/{name}",
    tag = "servers",
    params(("name" = String, Path, description = "The server's name")),
    responses(
        (status = 200, description = "The server", body = Server),
        (status = 400, description = "The name is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No server has this name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn show_server(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Server>, AppError> {
    let record = named(&state, &name).await?;
    Ok(Json(view(&state, &record).await?))
}

async fn set_state(
    state: &AppState,
    caller: &Caller,
    name: &str,
    to: ServerState,
) -> Result<Json<Server>, AppError> {
    let server = named(state, name).await?;
    let record = state
        .catalog
        .set_server_state(&server.name, to, &caller.subject)
        .await?;
    tracing::info!(server = %record.name, state = %to.as_str(), "database server state set");
    // A draining server's pool is emptied, an active one's filled again.
    state.wake_pool();
    Ok(Json(view(state, &record).await?))
}

#[utoipa::path(
    post,
    path = "/v1/servers/{name}/drain",
    tag = "servers",
    params(("name" = String, Path, description = "The server's name")),
    responses(
        (status = 200, description = "Draining: it keeps its tenants and takes no new ones", body = Server),
        (status = 400, description = "The name is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No server has this name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn drain_server(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Server>, AppError> {
    set_state(&state, &caller, &name, ServerState::Draining).await
}

#[utoipa::path(
    post,
    path = "/v1/servers/{name}/undrain",
    tag = "servers",
    params(("name" = String, Path, description = "The server's name")),
    responses(
        (status = 200, description = "Active: it takes new tenants again", body = Server),
        (status = 400, description = "The name is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No server has this name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn undrain_server(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Server>, AppError> {
    set_state(&state, &caller, &name, ServerState::Active).await
}

#[utoipa::path(
    delete,
    path = "/v1/servers/{name}",
    tag = "servers",
    params(("name" = String, Path, description = "The server's name")),
    responses(
        (status = 200, description = "Removed; its admin credentials were deleted and purged from the secret store", body = Server),
        (status = 400, description = "The name is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No server has this name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It still holds tenants, it is the server the configuration names, or a pooled database of it is being created or claimed right now (try again)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn remove_server(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Server>, AppError> {
    let server = named(&state, &name).await?;
    if server.name == state.configured_server {
        return Err(AppError::conflict(format!(
            "server {} is the one this control plane's configuration names (server_name); \
             it is registered again at every start: drain it, or configure another server",
            server.name
        )));
    }
    if server.tenants > 0 {
        return Err(catalog::CatalogError::ServerInUse {
            name: server.name.clone(),
            tenants: server.tenants,
        }
        .into());
    }
    let dropped = state.empty_pool(&server.name).await?;
    if dropped > 0 {
        tracing::info!(server = %server.name, dropped, "warm pool emptied for the server's removal");
    }
    let record = state
        .catalog
        .delete_server(&server.name, &caller.subject)
        .await?;
    state.engines().forget(&record.name).await;
    let secret = SecretName::new(&record.admin_secret).map_err(|e| AppError::internal(&e))?;
    if let Err(e) = secrets::ensure_absent(state.secrets().as_ref(), &secret).await {
        tracing::error!(server = %record.name, error = %e, "the removed server's admin secret is left behind");
        return Err(AppError::unavailable(format!(
            "server {} was removed, but its admin credentials could not be purged from the \
             secret store: remove secret {} there",
            record.name, record.admin_secret
        )));
    }
    tracing::info!(server = %record.name, "database server removed");
    Ok(Json(view(&state, &record).await?))
}

#[utoipa::path(
    put,
    path = "/v1/servers/{name}/pool",
    tag = "servers",
    params(("name" = String, Path, description = "The server's name")),
    request_body = SetPoolSizeRequest,
    responses(
        (status = 200, description = "The size is set; the refill pass creates or drops pooled databases to reach it within seconds", body = Server),
        (status = 400, description = "The name or the size is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No server has this name", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_pool_size(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetPoolSizeRequest>,
) -> Result<Json<Server>, AppError> {
    let server = named(&state, &name).await?;
    let size = match body.size {
        Some(n) if n > MAX_POOL_SIZE => {
            return Err(AppError::bad_request(format!(
                "size {n} is too large: at most {MAX_POOL_SIZE}"
            )))
        }
        Some(n) => Some(i32::try_from(n).map_err(|e| AppError::internal(&e))?),
        None => None,
    };
    let record = state
        .catalog
        .set_server_pool_size(&server.name, size, &caller.subject)
        .await?;
    tracing::info!(server = %record.name, size = ?size, "warm pool size set");
    state.wake_pool();
    Ok(Json(view(&state, &record).await?))
}

#[utoipa::path(
    put,
    path = "/v1/servers/{name}/capacity",
    tag = "servers",
    params(("name" = String, Path, description = "The server's name")),
    request_body = SetCapacityRequest,
    responses(
        (status = 200, description = "The capacity is set (an `azure_sql` server registered by its pool's id: read from the pool again)", body = Server),
        (status = 400, description = "The name or the capacity is invalid, or none was given for a server whose pool is not known by id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No server has this name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The server holds more tenants than that", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The pool's database limit could not be read, or the capacity does not fit in the pool; the detail says what to change", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Azure Resource Manager could not be reached; try again", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn set_capacity(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetCapacityRequest>,
) -> Result<Json<Server>, AppError> {
    let server = named(&state, &name).await?;
    if body.capacity.is_some_and(|c| !(1..=100_000).contains(&c)) {
        return Err(AppError::bad_request("capacity must be 1 to 100000"));
    }
    let capacity = match (&server.elastic_pool_id, &server.elastic_pool) {
        // Lowering needs no word from the pool (nor Resource Manager to be up).
        (Some(_), Some(_)) if body.capacity.is_some_and(|c| c <= server.capacity) => {
            body.capacity.unwrap_or(server.capacity)
        }
        (Some(id), Some(pool)) => {
            let id = ElasticPoolId::parse(id).map_err(|e| AppError::internal(&e))?;
            capacity_from_pool(&state, &id, pool, body.capacity).await?
        }
        _ => body.capacity.ok_or_else(|| {
            AppError::bad_request(
                "capacity is required (1 to 100000); only an azure_sql server registered with \
                 its elastic pool's resource id reads it from the pool",
            )
        })?,
    };
    let record = state
        .catalog
        .set_server_capacity(&server.name, capacity, &caller.subject)
        .await?;
    tracing::info!(server = %record.name, capacity, "server capacity set");
    Ok(Json(view(&state, &record).await?))
}

/// The largest warm pool one server may keep.
const MAX_POOL_SIZE: u32 = 1000;
