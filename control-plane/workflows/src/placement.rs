//! Placement: which database server a new tenant goes to. Among the registered servers that are
//! active, answered their last health check, run the requested engine, carry every requested
//! label and have room, the least loaded (tenants / capacity) wins, the name breaking ties, so
//! the choice is deterministic. The decision and its reason are recorded in the onboarding's
//! parameters; when no server can take the tenant, the reason names why (none matches, all full,
//! all draining, unreachable).

use std::collections::BTreeMap;

use catalog::{ServerRecord, ServerState};
use serde::{Deserialize, Serialize};

/// What a new tenant asks of its server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// `postgres` or `sqlserver`; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Labels the server must carry with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl PlacementRequest {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(e) = &self.engine {
            parts.push(format!("engine {e}"));
        }
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.push(format!("labels {}", labels.join(",")));
        }
        if parts.is_empty() {
            "any server".into()
        } else {
            parts.join(" and ")
        }
    }

    fn matches(&self, server: &ServerRecord) -> bool {
        self.engine.as_ref().is_none_or(|e| *e == server.engine)
            && self
                .labels
                .iter()
                .all(|(k, v)| server.labels.get(k) == Some(v))
    }
}

/// Where a tenant was placed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementDecision {
    /// The server chosen.
    pub server: String,
    /// What the tenant asked for.
    pub requested: PlacementRequest,
    /// Why this server: the candidates and their load.
    pub reason: String,
}

fn load(s: &ServerRecord) -> f64 {
    s.tenants as f64 / f64::from(s.capacity.max(1))
}

/// The servers able to take a new tenant, best first, each with the decision that would place
/// it there; or why none can.
pub fn candidates(
    servers: &[ServerRecord],
    request: &PlacementRequest,
) -> Result<Vec<PlacementDecision>, String> {
    let matching: Vec<&ServerRecord> = servers.iter().filter(|s| request.matches(s)).collect();
    if matching.is_empty() {
        return Err(if servers.is_empty() {
            "no database server is registered".into()
        } else {
            format!(
                "no database server matches {} ({} registered)",
                request.describe(),
                servers.len()
            )
        });
    }
    let mut able: Vec<&ServerRecord> = matching
        .iter()
        .copied()
        .filter(|s| {
            s.state == ServerState::Active && !s.unreachable() && s.tenants < i64::from(s.capacity)
        })
        .collect();
    if able.is_empty() {
        let why: Vec<String> = matching
            .iter()
            .map(|s| {
                if s.state == ServerState::Draining {
                    format!("{} is draining", s.name)
                } else if s.unreachable() {
                    format!("{} is unreachable", s.name)
                } else {
                    format!("{} is full ({} of {})", s.name, s.tenants, s.capacity)
                }
            })
            .collect();
        return Err(format!(
            "no database server can take a new tenant ({}): {}",
            request.describe(),
            why.join(", ")
        ));
    }
    able.sort_by(|a, b| {
        load(a)
            .partial_cmp(&load(b))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.name.cmp(&b.name))
    });
    let loads: Vec<String> = able
        .iter()
        .map(|s| format!("{} {}/{}", s.name, s.tenants, s.capacity))
        .collect();
    Ok(able
        .iter()
        .map(|s| PlacementDecision {
            server: s.name.clone(),
            requested: request.clone(),
            reason: format!(
                "least loaded of {} server(s) that match {} and have room ({})",
                able.len(),
                request.describe(),
                loads.join(", ")
            ),
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use catalog::ServerHealth;

    fn server(
        name: &str,
        engine: &str,
        tenants: i64,
        capacity: i32,
        labels: &[(&str, &str)],
    ) -> ServerRecord {
        ServerRecord {
            name: name.into(),
            engine: engine.into(),
            elastic_pool: (engine == "azure_sql").then(|| "pool-1".to_owned()),
            elastic_pool_id: None,
            admin_secret: format!("server-{name}-admin"),
            host: "h".into(),
            port: 5432,
            capacity,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            pool_size: None,
            state: ServerState::Active,
            tenants,
            health: ServerHealth::default(),
            created_at: chrono::Utc::now(),
        }
    }

    fn names(d: &[PlacementDecision]) -> Vec<&str> {
        d.iter().map(|d| d.server.as_str()).collect()
    }

    #[test]
    fn least_loaded_first_then_by_name() {
        let servers = [
            server("b", "postgres", 5, 10, &[]),
            server("a", "postgres", 1, 10, &[]),
            server("c", "postgres", 20, 100, &[]),
            server("d", "postgres", 1, 10, &[]),
        ];
        let all = candidates(&servers, &PlacementRequest::default()).unwrap();
        assert_eq!(names(&all), ["a", "d", "c", "b"]);
        assert!(
            all[0].reason.contains("least loaded of 4"),
            "{}",
            all[0].reason
        );
    }

    #[test]
    fn engine_and_labels_must_match() {
        let servers = [
            server(
                "eu",
                "postgres",
                9,
                10,
                &[("region", "westeurope"), ("tier", "premium")],
            ),
            server("us", "postgres", 0, 10, &[("region", "eastus")]),
            server("ms", "sqlserver", 0, 10, &[("region", "westeurope")]),
        ];
        let eu = PlacementRequest {
            engine: Some("postgres".into()),
            labels: [("region".to_owned(), "westeurope".to_owned())].into(),
        };
        assert_eq!(names(&candidates(&servers, &eu).unwrap()), ["eu"]);
        let none = PlacementRequest {
            labels: [("region".to_owned(), "mars".to_owned())].into(),
            ..Default::default()
        };
        let why = candidates(&servers, &none).unwrap_err();
        assert!(
            why.contains("no database server matches labels region=mars"),
            "{why}"
        );
    }

    #[test]
    fn full_draining_and_unreachable_servers_are_named() {
        let mut draining = server("d", "postgres", 0, 10, &[]);
        draining.state = ServerState::Draining;
        let mut down = server("u", "postgres", 0, 10, &[]);
        down.health.ok = Some(false);
        let full = server("f", "postgres", 3, 3, &[]);
        let why = candidates(&[draining, down, full], &PlacementRequest::default()).unwrap_err();
        assert!(why.contains("d is draining"), "{why}");
        assert!(why.contains("u is unreachable"), "{why}");
        assert!(why.contains("f is full (3 of 3)"), "{why}");
        assert!(candidates(&[], &PlacementRequest::default())
            .unwrap_err()
            .contains("no database server is registered"));
    }
}
