//! Layer: top (with `router.rs`). The OpenAPI 3.1 document of the API, generated from the code: the
//! request and response types of `api-types` (`ToSchema`), one `#[utoipa::path]` attribute per
//! handler (its parameters, body and the statuses the handler itself answers), and [`Conventions`],
//! which adds what every route shares from one place: the bearer scheme and 401/403/429 from
//! [`crate::policy::POLICY`], the `Idempotency-Key` header and body rejections of every POST,
//! 408/431/500, and the `X-Request-Id` header of every response.
//!
//! Served at `GET /v1/openapi.json` (public) and committed as `docs/openapi.json`
//! (`make openapi` regenerates it). Tests below fail when the document's operations differ from
//! the policy table (which the policy test proves equal to the router's registrations), and when
//! the committed copy is stale. `GET /metrics` (OpenMetrics text for scrapers, not the JSON API)
//! is left out on purpose: see [`UNDOCUMENTED`].

use std::sync::LazyLock;

use api_types::{Problem, TenantSlug};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, HeaderBuilder, ObjectBuilder, Ref, RefOr, Required, Response as ApiResponse,
    ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use crate::handlers;
use crate::policy::{self, Access};
use crate::state::AppState;

/// Routes of the router that the document leaves out on purpose, as `(method, template)`.
pub const UNDOCUMENTED: &[(&str, &str)] = &[
    // Prometheus/OpenMetrics text for scrapers, not part of the JSON API.
    ("GET", "/metrics"),
];

/// The route of this module, merged into [`crate::router::router`].
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/openapi.json", get(openapi_json))
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(document);

/// The document as pretty JSON with a trailing newline (the bytes of `docs/openapi.json`).
pub fn document() -> String {
    let mut value = serde_json::to_value(ApiDoc::openapi())
        .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
    camel_case_links(&mut value);
    let mut text =
        serde_json::to_string_pretty(&value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// utoipa 5.5 writes a Link Object's fields in snake case (`operation_id`, `operation_ref`,
/// `request_body`); OpenAPI spells them `operationId`, `operationRef`, `requestBody`, and tools
/// (schemathesis' stateful phase) ignore a link without them.
fn camel_case_links(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let serde_json::Value::Object(link) = link {
                        for (from, to) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(v) = link.remove(from) {
                                link.insert(to.to_owned(), v);
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(camel_case_links);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "This document", body = Object, content_type = "application/json"))
)]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenant-control-plane",
        description = "Onboards tenants (one database each), keeps their connection strings in a \
                       secret store, rotates them and offboards them. Errors are \
                       `application/problem+json` (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        handlers::health::healthz,
        handlers::health::readyz,
        handlers::tenants::create_tenant,
        handlers::tenants::list_tenants,
        handlers::tenants::show_tenant,
        handlers::tenants::offboard_tenant,
        handlers::tenants::restore_tenant,
        handlers::rotations::rotate_tenant,
        handlers::migrations::migrate_tenant,
        handlers::exports::start_export,
        handlers::exports::list_exports,
        handlers::rollouts::start_rollout,
        handlers::rollouts::list_rollouts,
        handlers::rollouts::show_rollout,
        handlers::rollouts::pause_rollout,
        handlers::rollouts::resume_rollout,
        handlers::rollouts::abort_rollout,
        handlers::fleet::fleet_schema,
        handlers::rotations::list_rotations,
        handlers::investigations::investigate,
        handlers::rotations::rotations_due,
        handlers::operations::show_operation,
        handlers::audit::list_events,
        handlers::audit::verify,
        handlers::audit::purge,
        handlers::evidence::signing_key,
        handlers::evidence::deletion_certificate,
        handlers::evidence::audit_archive,
        handlers::evidence::tenant_evidence,
        handlers::servers::register_server,
        handlers::servers::list_servers,
        handlers::servers::show_server,
        handlers::servers::drain_server,
        handlers::servers::undrain_server,
        handlers::servers::set_pool_size,
        handlers::servers::set_capacity,
        handlers::servers::remove_server,
        handlers::reconciliation::latest_report,
        handlers::reconciliation::run_reconciliation,
        handlers::reconciliation::repair_finding,
        openapi_json,
    ),
    components(schemas(Problem, TenantSlug)),
    modifiers(&Conventions),
    tags(
        (name = "probes", description = "Liveness and readiness (no token)"),
        (name = "tenants", description = "Onboarding, offboarding and reading tenants (role operator)"),
        (name = "rotations", description = "Credential rotation (role operator)"),
        (name = "schema", description = "Tenant schema migrations and fleet rollouts (role admin)"),
        (name = "operations", description = "Long-running operations (role operator)"),
        (name = "investigations", description = "Audited read-only queries (role support)"),
        (name = "audit", description = "A tenant's own audit log (roles auditor, admin)"),
        (name = "evidence", description = "Signed deletion certificates and evidence bundles"),
        (name = "servers", description = "The fleet's database servers (role admin)"),
        (name = "reconciliation", description = "The catalog compared with the servers and the secret store (role admin; the report also auditor)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Adds what every operation shares (see the module documentation).
struct Conventions;

const PROBLEM: &str = "application/problem+json";

fn problem(description: &str) -> ApiResponse {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

fn string_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(Type::String))
        .description(Some(description))
        .build()
}

/// Every operation of a path item, with its method.
fn operations_mut(item: &mut PathItem) -> Vec<(&'static str, &mut Operation)> {
    [
        ("GET", item.get.as_mut()),
        ("PUT", item.put.as_mut()),
        ("POST", item.post.as_mut()),
        ("DELETE", item.delete.as_mut()),
        ("PATCH", item.patch.as_mut()),
        ("HEAD", item.head.as_mut()),
        ("OPTIONS", item.options.as_mut()),
        ("TRACE", item.trace.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// The shared responses, kept once under `components/responses`: `(status, name, description)`.
const SHARED: &[(&str, &str, &str)] = &[
    ("400", "BadRequest", "The body is not valid JSON, or a field is invalid"),
    ("401", "Unauthorized", "No valid bearer token"),
    ("403", "Forbidden", "The token lacks the role this endpoint needs (admin passes every role check)"),
    ("408", "RequestTimeout", "The request took longer than the server's timeout"),
    ("409", "IdempotencyConflict", "A conflicting operation is running, or a request with this `Idempotency-Key` is still running"),
    ("413", "PayloadTooLarge", "The body is larger than the limit"),
    ("415", "UnsupportedMediaType", "The body is not `application/json`"),
    ("422", "UnprocessableBody", "The body does not fit the schema, or this `Idempotency-Key` was used with another body"),
    ("429", "TooManyRequests", "Too many requests; retry after `Retry-After` seconds"),
    ("431", "HeadersTooLarge", "The request headers are too large"),
    ("500", "Internal", "Internal error (details are in the server log, under the request id)"),
];

fn shared(status: &str) -> RefOr<ApiResponse> {
    let name = SHARED
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, n, _)| *n)
        .unwrap_or("Internal");
    RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
}

fn with_request_id(mut response: ApiResponse) -> ApiResponse {
    response.headers.insert(
        "X-Request-Id".to_owned(),
        string_header("The request's id (the client's `X-Request-Id`, or a generated UUID)"),
    );
    response
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT: an access token from the OIDC issuer (`auth_mode = \"oidc\"`), \
                         or a local token from `tenantctl token --role ROLE` (`auth_mode = \"local\"`)",
                    ))
                    .build(),
            ),
        );
        for (status, name, description) in SHARED {
            let mut response = with_request_id(problem(description));
            match *status {
                "401" => {
                    response
                        .headers
                        .insert("WWW-Authenticate".to_owned(), string_header("`Bearer`"));
                }
                "429" => {
                    response
                        .headers
                        .insert("Retry-After".to_owned(), string_header("Seconds to wait"));
                }
                _ => {}
            }
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response));
        }
        // The operation kinds are the workflow registry's, listed from it.
        if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(kind))) =
            components.schemas.get_mut("OperationKind")
        {
            kind.enum_values = Some(
                workflows::registry()
                    .iter()
                    .map(|w| serde_json::Value::from(w.kind.as_str()))
                    .collect(),
            );
            kind.description = Some(
                workflows::registry()
                    .iter()
                    .map(|w| format!("`{}`: {}", w.kind, w.description))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in operations_mut(item) {
                let access = policy::lookup(method, path).map(|r| r.access);
                conventions(method, access, op);
                add_links(op);
            }
        }
    }
}

/// Links from an answer to the operations it makes reachable (OpenAPI 3.1 `links`), which
/// schemathesis' stateful phase follows: every `202` of an operation to its operation and its
/// tenant, a started rollout to reading, pausing, resuming and aborting it, a registered server
/// to reading, draining, undraining and removing it.
fn add_links(op: &mut Operation) {
    use utoipa::openapi::link::LinkBuilder;
    let link = |operation: &str, parameter: &str, value: &str| {
        RefOr::T(
            LinkBuilder::new()
                .operation_id(operation)
                .parameter(parameter, value)
                .build(),
        )
    };
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        match status.as_str() {
            // A rollout's answer is the rollout (`id`), not an operation and its tenant.
            "202" if op.operation_id.as_deref() == Some("start_rollout") => {
                for (name, target) in [
                    ("GetRollout", "show_rollout"),
                    ("PauseRollout", "pause_rollout"),
                    ("ResumeRollout", "resume_rollout"),
                    ("AbortRollout", "abort_rollout"),
                ] {
                    response
                        .links
                        .insert(name.into(), link(target, "id", "$response.body#/id"));
                }
            }
            "202" => {
                response.links.insert(
                    "GetOperation".into(),
                    link("show_operation", "id", "$response.body#/operation/id"),
                );
                response.links.insert(
                    "GetTenant".into(),
                    link("show_tenant", "slug", "$response.body#/tenant/slug"),
                );
            }
            "201" if op.operation_id.as_deref() == Some("register_server") => {
                for (name, target) in [
                    ("GetServer", "show_server"),
                    ("DrainServer", "drain_server"),
                    ("UndrainServer", "undrain_server"),
                    ("RemoveServer", "remove_server"),
                ] {
                    response
                        .links
                        .insert(name.into(), link(target, "name", "$response.body#/name"));
                }
            }
            _ => {}
        }
    }
}

fn conventions(method: &str, access: Option<Access>, op: &mut Operation) {
    // The handler's own responses first (they carry the request id too), then the shared ones
    // it does not describe itself.
    for response in op.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            *response = with_request_id(std::mem::take(response));
        }
    }
    // 429: the per-address limit applies to every route, public ones included.
    let mut statuses = vec!["408", "429", "431", "500"];
    if method == "POST" {
        statuses.extend(["400", "409", "413", "415", "422"]);
    } else if method == "PUT" {
        // A body too, without `Idempotency-Key` (setting a value is idempotent by itself).
        statuses.extend(["400", "413", "415", "422"]);
    }
    match access {
        Some(Access::Public) | None => {}
        Some(access) => {
            statuses.push("401");
            if matches!(access, Access::Roles(_)) {
                statuses.push("403");
            }
            op.security = Some(vec![SecurityRequirement::new::<_, _, String>("bearer", [])]);
        }
    }
    for status in statuses {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| shared(status));
    }
    if method == "POST" {
        let key = ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "1 to 255 visible ASCII characters. A retry with the same key and body returns \
                 the first answer; the same key with another body answers 422; a retry while \
                 the first request still runs answers 409.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some("^[\\x21-\\x7E]+$")),
            ))
            .build();
        op.parameters.get_or_insert_with(Vec::new).push(key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let mut doc = ApiDoc::openapi();
        let mut out = BTreeSet::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, _) in operations_mut(item) {
                out.insert((method.to_owned(), path.clone()));
            }
        }
        out
    }

    /// The policy table is proven equal to the router's registrations (policy's own test), so
    /// comparing the document with it compares the document with the router.
    #[test]
    fn the_document_matches_the_router() {
        let routed: BTreeSet<(String, String)> = policy::POLICY
            .iter()
            .filter(|r| !UNDOCUMENTED.contains(&(r.method, r.route)))
            .map(|r| (r.method.to_owned(), r.route.to_owned()))
            .collect();
        let documented = documented();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "the OpenAPI document differs from the router:\n  routed but not documented \
             (add #[utoipa::path] and list it in ApiDoc, or add it to UNDOCUMENTED): {missing:?}\n  \
             documented but not routed: {extra:?}"
        );
        for (method, route) in UNDOCUMENTED {
            assert!(
                policy::lookup(method, route).is_some(),
                "UNDOCUMENTED names {method} {route}, which is not routed"
            );
        }
    }

    /// Every link reads its parameter from a property the answer's body really has, and
    /// points at an operation the document has (a rollout's 202 once linked to an operation
    /// and a tenant its body does not hold).
    #[test]
    fn every_link_names_a_property_of_its_answer_and_an_existing_operation() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        let resolve = |s: &serde_json::Value| -> serde_json::Value {
            match s["$ref"].as_str() {
                Some(r) => schemas[r.trim_start_matches("#/components/schemas/")].clone(),
                None => s.clone(),
            }
        };
        let mut operation_ids = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                if let Some(id) = op["operationId"].as_str() {
                    operation_ids.insert(id.to_owned());
                }
            }
        }
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    let Some(links) = response["links"].as_object() else {
                        continue;
                    };
                    let body = resolve(&response["content"]["application/json"]["schema"]);
                    for (name, link) in links {
                        let target = link["operationId"].as_str().unwrap();
                        assert!(
                            operation_ids.contains(target),
                            "{method} {path} {status} {name}: no operation {target}"
                        );
                        for value in link["parameters"].as_object().unwrap().values() {
                            let pointer = value.as_str().unwrap();
                            let mut schema = body.clone();
                            for part in pointer.trim_start_matches("$response.body#/").split('/') {
                                let next = &schema["properties"][part];
                                assert!(
                                    !next.is_null(),
                                    "{method} {path} {status} {name}: the body has no {pointer}"
                                );
                                schema = resolve(next);
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert!(checked >= 10, "only {checked} link parameters");
    }

    #[test]
    fn the_committed_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == document(),
            "{} is stale; regenerate it with `make openapi`",
            path.display()
        );
    }

    #[test]
    fn security_and_shared_responses_follow_the_policy() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = &doc["paths"];
        let healthz = &paths["/healthz"]["get"];
        assert!(healthz.get("security").is_none());
        assert!(healthz["responses"].get("401").is_none());
        let create = &paths["/v1/tenants"]["post"];
        assert_eq!(create["security"], serde_json::json!([{"bearer": []}]));
        for status in [
            "202", "400", "401", "403", "409", "413", "415", "422", "429", "500",
        ] {
            assert!(
                create["responses"].get(status).is_some(),
                "POST /v1/tenants lacks {status}"
            );
        }
        assert!(create["responses"]["202"]["headers"]
            .get("X-Request-Id")
            .is_some());
        let shared = &doc["components"]["responses"];
        assert!(shared["TooManyRequests"]["headers"]
            .get("Retry-After")
            .is_some());
        assert!(shared["Internal"]["headers"].get("X-Request-Id").is_some());
        assert!(create["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"));
        // Any token may read the signing key: 401 but no 403.
        let key = &paths["/v1/signing-key"]["get"];
        assert!(key["responses"].get("401").is_some());
        assert!(key["responses"].get("403").is_none());
        assert!(paths.get("/metrics").is_none());
    }
}
