//! The server crate's modules form layers that only point down (ARCHITECTURE.md, invariants):
//! state and extractors at the bottom, services, middleware, handlers per resource, then the
//! router and the OpenAPI document on top. This test reads every module under `src/` and fails
//! when a module uses a module of a higher layer, when a handler module uses another handler
//! module, when a handler reaches through the workflow runner's `services()` instead of the
//! service layer, when the modules' imports form a cycle, or when a module is in no layer or its
//! `//!` block does not name its layer.
//!
//! A module's dependencies are the `crate::…` and `super::…` paths in its code (`use` lines,
//! paths written inline and in attributes such as `#[utoipa::path(body = …)]`), outside comments
//! and outside its `#[cfg(test)]` module, which sits at the end of every file here. A submodule
//! counts as part of its parent entry in [`LAYERS`] (`auth::oidc` is part of `auth`, each
//! `handlers::x::…` part of the resource `handlers::x`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first. A module may use modules of its own layer and of the layers before
/// it; handler modules may not use each other. Every module under `src/` must be listed here (a
/// new module is placed on purpose); `handlers::*` stands for each resource module under
/// `src/handlers/`. `crate` is `lib.rs` (`start`).
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "config",
            "keyfile",
            "auth",
            "signing",
            "error",
            "fleet",
            "azure_pool",
        ],
    ),
    ("state", &["state", "extract", "limits"]),
    ("services", &["service", "view"]),
    (
        "middleware",
        &["request_id", "guard", "policy", "idempotency", "metrics"],
    ),
    ("handlers", &["handlers", "handlers::*"]),
    ("top", &["openapi", "router", "crate"]),
];

const HANDLERS: &str = "handlers";

/// The entry of [`LAYERS`] a module belongs to, as `(unit, layer index)`: the longest entry
/// that is the module or one of its ancestors.
fn unit_of(module: &str) -> Option<(String, usize)> {
    let mut best: Option<(String, usize)> = None;
    for (rank, (_, entries)) in LAYERS.iter().enumerate() {
        for entry in *entries {
            let unit = match entry.strip_suffix("::*") {
                // The resource: the wildcard's parent plus the module's next segment.
                Some(parent) => match module.strip_prefix(&format!("{parent}::")) {
                    Some(rest) => format!("{parent}::{}", rest.split("::").next().unwrap_or("")),
                    None => continue,
                },
                None if module == *entry || module.starts_with(&format!("{entry}::")) => {
                    (*entry).to_owned()
                }
                None => continue,
            };
            if best.as_ref().is_none_or(|(b, _)| unit.len() > b.len()) {
                best = Some((unit, rank));
            }
        }
    }
    best
}

/// The code of a file that counts: before its `#[cfg(test)]` module, without comment lines.
fn code(text: &str) -> String {
    text.split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a `use` tree or an inline path names, from the text right after `crate::` or
/// `super::`: `a::b::C` is one, `{a, b::{c, d}}` three.
fn paths(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .filter(|item| !item.trim().is_empty())
            .flat_map(paths)
            .collect();
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() {
        return vec![Vec::new()];
    }
    match text[ident.len()..].strip_prefix("::") {
        Some(rest) => paths(rest)
            .into_iter()
            .map(|mut p| {
                p.insert(0, ident.clone());
                p
            })
            .collect(),
        None => vec![vec![ident]],
    }
}

/// The modules `module`'s code uses, among `known`.
fn dependencies(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent: Vec<String> = match module.rsplit_once("::") {
        Some((parent, _)) => parent.split("::").map(str::to_owned).collect(),
        None => Vec::new(),
    };
    let mut found = BTreeSet::new();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent)] {
        for (i, _) in code.match_indices(anchor) {
            let before = code[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            for path in paths(&code[i + anchor.len()..]) {
                let full: Vec<String> = base.iter().cloned().chain(path).collect();
                // The longest prefix that is a module; none is the crate root.
                let target = (1..=full.len())
                    .rev()
                    .map(|n| full[..n].join("::"))
                    .find(|m| known.contains(m))
                    .unwrap_or_else(|| "crate".to_owned());
                found.insert(target);
            }
        }
    }
    found
}

/// Every rule this test holds, over `modules` (module path → file text); the violations found.
fn violations(modules: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in modules {
        let Some((unit, rank)) = unit_of(module) else {
            out.push(format!(
                "{module} is in no layer: add it to LAYERS in tests/layers.rs"
            ));
            continue;
        };
        let layer = LAYERS[rank].0;
        let doc: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        if !doc.iter().any(|l| l.contains(&format!("Layer: {layer}"))) {
            out.push(format!(
                "{module}: its //! block does not name its layer (\"Layer: {layer}\")"
            ));
        }
        let code = code(text);
        if layer == HANDLERS && code.contains(".services()") {
            out.push(format!(
                "{module} reaches through the runner's services(); handlers call the service \
                 layer (service.rs) instead"
            ));
        }
        for target in dependencies(module, &code, &known) {
            let Some((target_unit, target_rank)) = unit_of(&target) else {
                continue; // reported as a module in no layer
            };
            if target_unit == unit {
                continue;
            }
            if target_rank > rank {
                out.push(format!(
                    "{module} ({layer}) uses {target} ({}), a higher layer",
                    LAYERS[target_rank].0
                ));
            } else if layer == HANDLERS && target_rank == rank {
                out.push(format!(
                    "{module} uses {target}: handlers never import each other (move what they \
                     share to service.rs or view.rs)"
                ));
            }
            graph.entry(unit.clone()).or_default().insert(target_unit);
        }
    }
    if let Some(cycle) = find_cycle(&graph) {
        out.push(format!("import cycle: {}", cycle.join(" -> ")));
    }
    out
}

/// A cycle of `graph`, as the units on it with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// Every module of the library under `dir` (`src/`), by module path (`lib.rs` is `crate`; the
/// binary's `main.rs` is not part of the library).
fn read_modules(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.is_dir() {
            let mut inner = prefix.to_vec();
            inner.push(name);
            read_modules(&path, &inner, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let module = match (prefix.is_empty(), name.as_str()) {
            (true, "main") => continue,
            (true, "lib") => "crate".to_owned(),
            (_, "mod") => prefix.join("::"),
            _ => prefix
                .iter()
                .cloned()
                .chain([name])
                .collect::<Vec<_>>()
                .join("::"),
        };
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        out.insert(module, text);
    }
}

#[test]
fn the_server_crate_points_only_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    read_modules(&src, &[], &mut modules);
    assert!(
        modules.len() >= 20 && modules.contains_key("handlers::tenants"),
        "too few modules read: {:?}",
        modules.keys()
    );
    let mut problems = violations(&modules);
    for (_, entries) in LAYERS {
        for entry in *entries {
            let exists = match entry.strip_suffix("::*") {
                Some(parent) => modules
                    .keys()
                    .any(|m| m.starts_with(&format!("{parent}::"))),
                None => modules.contains_key(*entry),
            };
            if !exists {
                problems.push(format!("LAYERS names {entry}, which is no module of src/"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the server crate's layers do not hold:\n  {}",
        problems.join("\n  ")
    );
}

/// The check itself: it sees the kinds of import this crate used to have (middleware and
/// handlers importing the router module, a handler calling into another) and a cycle.
#[test]
fn the_check_sees_upward_imports_handler_imports_and_cycles() {
    let module = |layer: &str, code: &str| format!("//! Layer: {layer}.\n\n{code}\n");
    let modules: BTreeMap<String, String> = [
        (
            "policy",
            module(
                "middleware",
                "use crate::router::{AppState, Caller};\nuse crate::error::AppError;",
            ),
        ),
        ("error", module("foundation", "")),
        ("state", module("state", "pub struct S(crate::service::Door);")),
        (
            "router",
            module(
                "top",
                "use crate::{handlers::{self, audit}, policy};\nuse crate::state::S;",
            ),
        ),
        ("handlers", module("handlers", "pub mod audit;\npub mod evidence;")),
        (
            "handlers::audit",
            module("handlers", "use crate::state::S;\n// crate::handlers::evidence"),
        ),
        (
            "handlers::evidence",
            module(
                "handlers",
                "fn f() { crate::handlers::audit::verify(); state.orchestrator.runner().services(); }",
            ),
        ),
        ("handlers::evidence::bundle", module("handlers", "use super::f;")),
        ("service", module("services", "use crate::view::V;")),
        ("view", module("state", "use crate::service::Door;")),
        ("stray", module("top", "")),
        (
            "crate",
            module("top", "#[cfg(test)]\nmod tests { use crate::router; }"),
        ),
    ]
    .into_iter()
    .map(|(m, t)| (m.to_owned(), t))
    .collect();
    let found = violations(&modules);
    let expect = [
        "policy (middleware) uses router (top), a higher layer",
        "state (state) uses service (services), a higher layer",
        "handlers::evidence uses handlers::audit: handlers never import each other",
        "handlers::evidence reaches through the runner's services()",
        "view: its //! block does not name its layer (\"Layer: services\")",
        "stray is in no layer",
        "import cycle: ",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "expected {e:?} among {found:#?}"
        );
    }
    // Comments, test modules and a submodule's use of its parent are not violations.
    assert!(
        !found.iter().any(|f| f.starts_with("handlers::audit")
            || f.starts_with("handlers::evidence::bundle")
            || f.starts_with("crate")),
        "{found:#?}"
    );
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}
