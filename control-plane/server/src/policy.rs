//! Layer: middleware. Who may call what: one declarative table, enforced by one middleware on
//! every matched route.
//!
//! A route without a rule is refused (deny by default), and a unit test reads the
//! `.route(...)` registrations of every source file and fails when any of them lacks a rule, or
//! a rule names no route. Handlers never check roles themselves.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::AppError;
use crate::extract::Caller;
use crate::state::AppState;

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token (probes and scrapers).
    Public,
    /// Any valid token.
    Authenticated,
    /// A token with one of these roles (`admin` passes every `Roles` rule).
    Roles(&'static [&'static str]),
}

/// One rule: method, route template (as registered), access.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// HTTP method.
    pub method: &'static str,
    /// The route template, e.g. `/v1/tenants/{slug}`.
    pub route: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn rule(method: &'static str, route: &'static str, access: Access) -> Rule {
    Rule {
        method,
        route,
        access,
    }
}

const OPERATOR: Access = Access::Roles(&["operator"]);
const SUPPORT: Access = Access::Roles(&["support"]);
const AUDITOR: Access = Access::Roles(&["auditor"]);
const ADMIN: Access = Access::Roles(&["admin"]);
const ADMIN_OR_AUDITOR: Access = Access::Roles(&["admin", "auditor"]);

/// The policy: every route the API serves.
pub const POLICY: &[Rule] = &[
    rule("GET", "/healthz", Access::Public),
    rule("GET", "/readyz", Access::Public),
    rule("GET", "/metrics", Access::Public),
    rule("POST", "/v1/tenants", OPERATOR),
    rule("GET", "/v1/tenants", OPERATOR),
    rule("GET", "/v1/tenants/{slug}", OPERATOR),
    rule("POST", "/v1/tenants/{slug}/offboard", OPERATOR),
    rule("POST", "/v1/tenants/{slug}/restore", OPERATOR),
    rule("POST", "/v1/tenants/{slug}/rotate", OPERATOR),
    rule("GET", "/v1/tenants/{slug}/rotations", OPERATOR),
    rule("POST", "/v1/tenants/{slug}/exports", OPERATOR),
    rule("GET", "/v1/tenants/{slug}/exports", OPERATOR),
    rule("GET", "/v1/rotations/due", OPERATOR),
    rule("GET", "/v1/operations/{id}", OPERATOR),
    rule("POST", "/v1/tenants/{slug}/investigations", SUPPORT),
    rule("GET", "/v1/tenants/{slug}/audit-events", AUDITOR),
    rule("GET", "/v1/tenants/{slug}/audit/verify", AUDITOR),
    rule("POST", "/v1/tenants/{slug}/audit/purge", ADMIN),
    rule("POST", "/v1/tenants/{slug}/migrate", ADMIN),
    rule("POST", "/v1/rollouts", ADMIN),
    rule("GET", "/v1/rollouts", ADMIN),
    rule("GET", "/v1/rollouts/{id}", ADMIN),
    rule("POST", "/v1/rollouts/{id}/pause", ADMIN),
    rule("POST", "/v1/rollouts/{id}/resume", ADMIN),
    rule("POST", "/v1/rollouts/{id}/abort", ADMIN),
    rule("GET", "/v1/fleet/schema", ADMIN),
    rule("GET", "/v1/tenants/{slug}/deletion-certificate", AUDITOR),
    rule("GET", "/v1/tenants/{slug}/audit-archive", AUDITOR),
    rule("GET", "/v1/tenants/{slug}/evidence", AUDITOR),
    rule("GET", "/v1/signing-key", Access::Authenticated),
    rule("GET", "/v1/openapi.json", Access::Public),
    rule("POST", "/v1/servers", ADMIN),
    rule("GET", "/v1/servers", ADMIN),
    rule("GET", "/v1/servers/{name}", ADMIN),
    rule("DELETE", "/v1/servers/{name}", ADMIN),
    rule("POST", "/v1/servers/{name}/drain", ADMIN),
    rule("POST", "/v1/servers/{name}/undrain", ADMIN),
    rule("PUT", "/v1/servers/{name}/pool", ADMIN),
    rule("PUT", "/v1/servers/{name}/capacity", ADMIN),
    rule("GET", "/v1/reconciliation", ADMIN_OR_AUDITOR),
    rule("POST", "/v1/reconciliation/run", ADMIN),
    rule("POST", "/v1/reconciliation/findings/{id}/repair", ADMIN),
];

/// The rule for a request, if any.
pub fn lookup(method: &str, route: &str) -> Option<&'static Rule> {
    POLICY
        .iter()
        .find(|r| r.method.eq_ignore_ascii_case(method) && r.route == route)
}

/// Enforces [`POLICY`] on a matched route: 401 without a valid token, 403 without a role the
/// rule names, 405 (with `Allow`) for a method the route's rules do not name, 500 (and an error
/// log) for a route that has no rule at all.
pub async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    // A GET route answers HEAD too (axum runs the GET handler), under the GET rule.
    let method = match req.method() {
        &axum::http::Method::HEAD => "GET".to_owned(),
        m => m.as_str().to_owned(),
    };
    let Some(rule) = lookup(&method, &route) else {
        // The path is routed, but not for this method: the router's own answer would be 405
        // (this middleware wraps it too); answer it here, as problem+json, from the table.
        let mut allowed: Vec<&str> = POLICY
            .iter()
            .filter(|r| r.route == route)
            .map(|r| r.method)
            .collect();
        if !allowed.is_empty() {
            if allowed.contains(&"GET") {
                allowed.push("HEAD");
            }
            let mut response = AppError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "{route} does not accept {method}; it accepts {}",
                    allowed.join(", ")
                ),
            )
            .into_response();
            if let Ok(value) = axum::http::HeaderValue::from_str(&allowed.join(", ")) {
                response
                    .headers_mut()
                    .insert(axum::http::header::ALLOW, value);
            }
            return response;
        }
        tracing::error!(%method, %route, "route has no authorization policy; refused");
        return AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this endpoint has no authorization policy; refused",
        )
        .into_response();
    };
    if rule.access == Access::Public {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if let Access::Roles(roles) = rule.access {
        let allowed = caller
            .roles
            .iter()
            .any(|r| r == "admin" || roles.contains(&r.as_str()));
        if !allowed {
            return AppError::new(
                StatusCode::FORBIDDEN,
                format!("this endpoint needs the {} role", roles.join(" or ")),
            )
            .into_response();
        }
    }
    if let Err(e) = state.limits.check_subject(&caller.subject) {
        return e.into_response();
    }
    // Inner layers (idempotency keys) scope by the caller.
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `(method, route)` of every `.route("...", get(..).post(..))` in a source file.
    fn registered(source: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = source;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let Some(open) = rest.find('"') else { break };
            let after = &rest[open + 1..];
            let close = after.find('"').unwrap();
            let path = after[..close].to_owned();
            // The method router runs to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut end = 0;
            for (j, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[open + 1 + close..end];
            for (name, method) in [
                ("get(", "GET"),
                ("post(", "POST"),
                ("put(", "PUT"),
                ("patch(", "PATCH"),
                ("delete(", "DELETE"),
            ] {
                let called = methods
                    .match_indices(name)
                    .any(|(k, _)| k == 0 || !methods.as_bytes()[k - 1].is_ascii_alphanumeric());
                if called {
                    out.push((method.to_owned(), path.clone()));
                }
            }
        }
        out
    }

    /// The `.rs` files under `dir`, recursively, in a stable order.
    fn sources(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        files.sort();
        files
    }

    /// Every registration in the crate's code: each file under `src/` (so a new handler module
    /// is read without being listed here), without comments and test modules.
    fn all_registered() -> Vec<(String, String)> {
        let mut routes = Vec::new();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for file in sources(&src) {
            let text = std::fs::read_to_string(&file).unwrap();
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .map(|l| format!("{l}\n"))
                .collect();
            routes.extend(registered(&code));
        }
        routes
    }

    #[test]
    fn every_route_has_a_rule_and_every_rule_a_route() {
        let routes = all_registered();
        assert!(routes.len() >= 17, "too few routes found: {routes:?}");
        for (method, path) in &routes {
            assert!(
                lookup(method, path).is_some(),
                "{method} {path} has no authorization rule in policy::POLICY"
            );
        }
        for rule in POLICY {
            assert!(
                routes
                    .iter()
                    .any(|(m, p)| m == rule.method && p == rule.route),
                "policy rule {} {} names no route",
                rule.method,
                rule.route
            );
        }
    }

    #[test]
    fn the_route_reader_finds_methods() {
        let src = r#".route("/a", post(x).get(y)) .route("/b/{id}", get(z)) .route("/c", delete(budget))"#;
        assert_eq!(
            registered(src),
            [
                ("GET".to_owned(), "/a".to_owned()),
                ("POST".to_owned(), "/a".to_owned()),
                ("GET".to_owned(), "/b/{id}".to_owned()),
                ("DELETE".to_owned(), "/c".to_owned()),
            ]
        );
    }
}
