//! Human-readable output.

use api_types::{
    CredentialHealth, CredentialState, InvestigateResponse, Operation, OperationStep, Rotation,
    StepState, Tenant,
};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::one_line;

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize) -> String {
    let mut out = s.to_owned();
    out.extend(std::iter::repeat_n(' ', w.saturating_sub(width(s))));
    out
}

/// Rows of cells as aligned columns separated by two spaces (no trailing spaces).
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, c)| pad(c, widths[i]))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `tenants list`: a table.
pub fn tenant_table(tenants: &[Tenant]) -> String {
    if tenants.is_empty() {
        return "no tenants".to_owned();
    }
    let mut rows = vec![["SLUG", "STATE", "ENGINE", "DATABASE", "CREATED"]
        .map(str::to_owned)
        .to_vec()];
    rows.extend(tenants.iter().map(|t| {
        vec![
            t.slug.to_string(),
            t.state.to_string(),
            t.engine.clone(),
            t.database.clone(),
            time(&t.created_at),
        ]
    }));
    columns(&rows)
}

/// `servers list`: one row per server with its load.
pub fn server_table(servers: &[api_types::Server]) -> String {
    if servers.is_empty() {
        return "no servers".to_owned();
    }
    let mut rows = vec![[
        "NAME", "ENGINE", "STATE", "TENANTS", "POOL", "LABELS", "HOST",
    ]
    .map(str::to_owned)
    .to_vec()];
    rows.extend(servers.iter().map(|s| {
        vec![
            s.name.clone(),
            s.engine.as_str().to_owned(),
            s.state.clone(),
            format!("{}/{}", s.tenants, s.capacity),
            format!("{}/{}", s.pool.ready, s.pool.size),
            labels(&s.labels),
            format!("{}:{}", s.host, s.port),
        ]
    }));
    columns(&rows)
}

fn labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `servers show`: every field on its own line.
pub fn server_details(s: &api_types::Server) -> String {
    let check = &s.last_health_check;
    let health = match (check.checked_at, check.ok) {
        (Some(at), Some(true)) => format!(
            "ok in {} ms at {}",
            check.latency_ms.unwrap_or_default(),
            time(&at)
        ),
        (Some(at), _) => format!(
            "failed at {}: {}",
            time(&at),
            one_line(check.error.as_deref().unwrap_or("-"))
        ),
        (None, _) => "not checked yet".into(),
    };
    let rows: Vec<Vec<String>> = [
        ("name", s.name.clone()),
        (
            "engine",
            match &s.elastic_pool {
                Some(pool) => format!("{} (elastic pool {pool})", s.engine.as_str()),
                None => s.engine.as_str().to_owned(),
            },
        ),
        ("state", s.state.clone()),
        ("tenants", format!("{} of {}", s.tenants, s.capacity)),
        ("labels", labels(&s.labels)),
        ("host", format!("{}:{}", s.host, s.port)),
        (
            "version",
            one_line(s.engine_version.as_deref().unwrap_or("-")),
        ),
        ("health", health),
        (
            "warm pool",
            format!(
                "{} ready of {}{} ({} creating, {} claimed, {} retiring)",
                s.pool.ready,
                s.pool.size,
                if s.pool.size_set {
                    ""
                } else {
                    " (deployment default)"
                },
                s.pool.creating,
                s.pool.claimed,
                s.pool.retiring
            ),
        ),
        ("registered", time(&s.created_at)),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_owned(), v])
    .collect();
    columns(&rows)
}

/// `investigate`: the rows as a table, then where the query is on the record.
pub fn investigation_table(answer: &InvestigateResponse) -> String {
    let header: Vec<String> = answer
        .columns
        .iter()
        .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    let mut rows = vec![header];
    rows.extend(answer.rows.iter().map(|r| {
        r.iter()
            .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
            .collect()
    }));
    let more = if answer.truncated {
        " (more rows exist; raise --max-rows)"
    } else {
        ""
    };
    format!(
        "{}\n{} row(s){more}; recorded as audit events {} and {}",
        columns(&rows),
        answer.rows.len(),
        answer.query_event,
        answer.outcome_event
    )
}

/// `tenants rotations`: a table, newest first.
pub fn rotation_table(rotations: &[Rotation]) -> String {
    if rotations.is_empty() {
        return "no rotations yet".to_owned();
    }
    let mut rows = vec![["STARTED", "MODE", "STATE", "FROM", "TO", "ACTOR", "ERROR"]
        .map(str::to_owned)
        .to_vec()];
    rows.extend(rotations.iter().map(|r| {
        vec![
            time(&r.started_at),
            r.mode.as_str().to_owned(),
            r.state.to_string(),
            r.from.clone().unwrap_or_else(|| "-".into()),
            r.to.clone().unwrap_or_else(|| "-".into()),
            r.actor.clone(),
            r.error.clone().unwrap_or_default(),
        ]
    }));
    columns(&rows)
}

/// `tenants exports`: one line per export, newest first.
pub fn export_table(exports: &[api_types::TenantExport]) -> String {
    if exports.is_empty() {
        return "no exports yet".to_owned();
    }
    let mut rows = vec![
        ["STARTED", "STATE", "ROWS", "TABLES", "MANIFEST", "SHA-256"]
            .map(str::to_owned)
            .to_vec(),
    ];
    rows.extend(exports.iter().map(|e| {
        vec![
            time(&e.created_at),
            e.state.to_string(),
            e.rows.map_or("-".into(), |r| r.to_string()),
            e.tables.map_or("-".into(), |t| t.to_string()),
            e.manifest.clone().unwrap_or_else(|| "-".into()),
            e.manifest_sha256.clone().unwrap_or_else(|| "-".into()),
        ]
    }));
    columns(&rows)
}

/// `tenants show`: key/value lines.
pub fn tenant_details(t: &Tenant) -> String {
    let rows: Vec<Vec<String>> = [
        ("slug", t.slug.to_string()),
        ("id", t.id.to_string()),
        ("display name", one_line(&t.display_name)),
        (
            "state",
            match t.retained_until {
                Some(until) => format!("{} until {} (restorable)", t.state, time(&until)),
                None => t.state.to_string(),
            },
        ),
        ("engine", t.engine.clone()),
        ("server", t.server.clone()),
        ("database", t.database.clone()),
        (
            "schema version",
            t.schema_version.map_or("-".to_owned(), |v| v.to_string()),
        ),
        ("created", time(&t.created_at)),
        ("secret app", t.secrets.app.clone()),
        ("secret audit admin", t.secrets.audit_admin.clone()),
        ("secret investigator", t.secrets.investigator.clone()),
        ("credentials", credentials(&t.credentials)),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_owned(), v])
    .collect();
    columns(&rows)
}

/// The credential check's finding on one line: `ok checked <time>`, `failing (<detail>)
/// checked <time>`, or `unchecked`.
pub fn credentials(c: &CredentialHealth) -> String {
    let checked = c
        .checked_at
        .map(|t| format!(" checked {}", time(&t)))
        .unwrap_or_default();
    match c.state {
        CredentialState::Failing => {
            let why = match &c.detail {
                Some(d) => one_line(d),
                None => c
                    .failing
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            format!("failing ({why}){checked}; rotate to repair")
        }
        state => format!("{state}{checked}"),
    }
}

/// `operations show`: the operation and a table of its steps.
pub fn operation_details(op: &Operation) -> String {
    let head: Vec<Vec<String>> = [
        ("operation", op.id.to_string()),
        ("kind", op.kind.to_string()),
        ("tenant", op.tenant.to_string()),
        ("state", op.state.to_string()),
        ("created", time(&op.created_at)),
        (
            "finished",
            op.finished_at.as_ref().map_or("-".to_owned(), time),
        ),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_owned(), v])
    .collect();
    let mut out = columns(&head);
    out.push_str("\nsteps:");
    if op.steps.is_empty() {
        out.push_str(" none");
    } else {
        let steps: Vec<Vec<String>> = op
            .steps
            .iter()
            .map(|s| {
                vec![
                    format!("  {}", s.name),
                    s.state.to_string(),
                    s.error.as_deref().map(one_line).unwrap_or_default(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&columns(&steps));
    }
    out
}

/// One line of live progress for a step that just reached its current state.
pub fn step_line(step: &OperationStep) -> String {
    let name = &step.name;
    match step.state {
        StepState::Pending => format!("  · {name} (pending)"),
        StepState::Running => format!("  … {name}"),
        StepState::Succeeded => format!("  ✓ {name}"),
        StepState::Failed => match step.error.as_deref() {
            Some(e) => format!("  ✗ {name}: {}", one_line(e)),
            None => format!("  ✗ {name}"),
        },
        StepState::RollingBack => format!("  ↺ {name} (rolling back)"),
        // The step that failed keeps its error after its undo: still the one to look at.
        StepState::RolledBack => match step.error.as_deref() {
            Some(e) => format!("  ✗ {name}: {} (rolled back)", one_line(e)),
            None => format!("  ↶ {name} (rolled back)"),
        },
    }
}

/// The final line of `--wait`.
pub fn summary_line(op: &Operation, elapsed_secs: f64) -> String {
    format!(
        "{} {} {} in {elapsed_secs:.1}s",
        op.kind, op.tenant, op.state
    )
}

fn counts(c: &std::collections::BTreeMap<String, i64>) -> String {
    ["succeeded", "running", "pending", "failed", "skipped"]
        .iter()
        .filter_map(|k| c.get(*k).filter(|n| **n > 0).map(|n| format!("{n} {k}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rollout status`: one row per rollout.
pub fn rollout_table(rollouts: &[api_types::Rollout]) -> String {
    if rollouts.is_empty() {
        return "no rollouts".to_owned();
    }
    let mut rows = vec![["ID", "STATE", "TARGET", "TENANTS", "STARTED"]
        .map(str::to_owned)
        .to_vec()];
    rows.extend(rollouts.iter().map(|r| {
        vec![
            r.id.to_string(),
            r.state.to_string(),
            r.target_version.to_string(),
            counts(&r.counts),
            time(&r.created_at),
        ]
    }));
    columns(&rows)
}

/// `rollout --wait`: one line with the rollout's state and each wave's counts.
pub fn rollout_progress(r: &api_types::Rollout) -> String {
    let waves: Vec<String> = r
        .waves
        .iter()
        .map(|w| {
            let name = if w.wave == 0 {
                "canary".to_owned()
            } else {
                format!("wave {}", w.wave)
            };
            format!("{name}: {}", counts(&w.counts))
        })
        .collect();
    format!("rollout {} {}: {}", r.id, r.state, waves.join(" | "))
}

/// `rollout status <id>`: the rollout, its waves, and every failed tenant with its error.
pub fn rollout_details(r: &api_types::Rollout) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        vec!["id".into(), r.id.to_string()],
        vec!["state".into(), r.state.to_string()],
        vec![
            "reason".into(),
            one_line(r.reason.as_deref().unwrap_or("-")),
        ],
        vec!["target".into(), r.target_version.to_string()],
        vec!["tenants".into(), counts(&r.counts)],
        vec![
            "started".into(),
            format!("{} by {}", time(&r.created_at), r.actor),
        ],
    ];
    for w in &r.waves {
        let name = if w.wave == 0 {
            "canary".to_owned()
        } else {
            format!("wave {}", w.wave)
        };
        rows.push(vec![name, counts(&w.counts)]);
    }
    for t in &r.failed {
        rows.push(vec![
            format!("failed {}", t.slug),
            one_line(t.message.as_deref().unwrap_or("-")),
        ]);
    }
    let mut out = columns(&rows);
    if r.state == api_types::RolloutState::Halted {
        out.push_str(&format!(
            "\nhint: fix the cause, then `tenantctl rollout resume {}` retries the failed \
             tenants (or `tenantctl rollout abort {}`)",
            r.id, r.id
        ));
    }
    out
}

/// `fleet schema`: tenants per version, then each drifted tenant with what differs.
pub fn fleet_schema(f: &api_types::FleetSchema) -> String {
    let mut rows = vec![["VERSION", "TENANTS"].map(str::to_owned).to_vec()];
    rows.extend(
        f.versions
            .iter()
            .map(|(v, n)| vec![v.clone(), n.to_string()]),
    );
    let mut out = columns(&rows);
    out.push_str(&format!(
        "\n{} drifted, {} not checked yet at their version",
        f.drifted, f.unchecked
    ));
    for t in f.tenants.iter().filter(|t| t.state == "drifted") {
        out.push_str(&format!(
            "\n{} ({}, version {}):",
            t.slug,
            t.server,
            t.version.unwrap_or(0)
        ));
        for d in &t.differences {
            out.push_str(&format!("\n  {}", one_line(d)));
        }
    }
    out
}

/// A reconciliation report: each server's check, then the findings as a table.
pub fn reconciliation(r: &api_types::ReconciliationReport) -> String {
    let mut out = format!(
        "pass {} by {} at {}: {} tenants checked{}",
        r.id,
        r.node,
        r.finished_at.to_rfc3339(),
        r.tenants_checked,
        if r.secrets_checked {
            ""
        } else {
            " (the secret store could not be listed)"
        }
    );
    for s in r.servers.iter().filter(|s| !s.checked) {
        out.push_str(&format!(
            "\nserver {} not checked: {}",
            s.server,
            one_line(s.error.as_deref().unwrap_or("-"))
        ));
        if !s.unchecked_tenants.is_empty() {
            out.push_str(&format!(
                "\n  its tenants, not checked: {}",
                s.unchecked_tenants.join(", ")
            ));
        }
    }
    if r.findings.is_empty() {
        out.push_str("\nno findings");
        return out;
    }
    let mut rows = vec![["ID", "KIND", "SERVER", "OBJECT", "TENANT", "REPAIR"]
        .map(str::to_owned)
        .to_vec()];
    rows.extend(r.findings.iter().map(|f| {
        vec![
            f.id.clone(),
            f.kind.as_str().to_owned(),
            f.server.clone().unwrap_or_else(|| "-".into()),
            f.object.clone(),
            f.tenant.clone().unwrap_or_else(|| "-".into()),
            if f.repairable {
                "tenantctl reconciliation repair".into()
            } else {
                "-".into()
            },
        ]
    }));
    out.push('\n');
    out.push_str(&columns(&rows));
    for f in &r.findings {
        out.push_str(&format!("\n{}: {}", f.id, one_line(&f.detail)));
        if let Some(h) = &f.hint {
            out.push_str(&format!(" ({})", one_line(h)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::{OperationKind, OperationState, TenantSlug};

    #[test]
    fn investigation_rows_print_as_a_table_with_the_record() {
        let answer = InvestigateResponse {
            query_event: 7,
            outcome_event: 8,
            columns: vec![
                serde_json::json!({"name": "name", "type": "text"}),
                serde_json::json!({"name": "email", "type": "text"}),
            ],
            rows: vec![vec![Some("Ada".into()), None]],
            truncated: true,
        };
        let text = investigation_table(&answer);
        assert!(text.starts_with("name  email\nAda   NULL"), "{text}");
        assert!(text.contains("1 row(s) (more rows exist"), "{text}");
        assert!(text.contains("audit events 7 and 8"), "{text}");
    }

    fn step(name: &str, state: StepState, error: Option<&str>) -> OperationStep {
        OperationStep {
            name: name.into(),
            state,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn step_lines() {
        assert_eq!(
            step_line(&step("create_database", StepState::Succeeded, None)),
            "  ✓ create_database"
        );
        assert_eq!(
            step_line(&step("bind_database", StepState::Running, None)),
            "  … bind_database"
        );
        assert_eq!(
            step_line(&step(
                "verify_access",
                StepState::Failed,
                Some("login failed\nfor x")
            )),
            "  ✗ verify_access: login failed for x"
        );
        assert_eq!(
            step_line(&step("create_database", StepState::RolledBack, None)),
            "  ↶ create_database (rolled back)"
        );
        assert_eq!(
            step_line(&step("verify_access", StepState::RolledBack, Some("boom"))),
            "  ✗ verify_access: boom (rolled back)"
        );
    }

    #[test]
    fn operation_rendering_lists_steps() {
        let op = Operation {
            id: uuid::Uuid::nil(),
            tenant: TenantSlug::parse("acme").expect("valid"),
            kind: OperationKind::ONBOARD,
            state: OperationState::RolledBack,
            steps: vec![
                step("create_database", StepState::RolledBack, None),
                step("verify_access", StepState::Failed, Some("boom")),
            ],
            created_at: Utc::now(),
            finished_at: None,
            parent: None,
            hint: None,
        };
        let text = operation_details(&op);
        assert!(text.contains("kind       onboard"));
        assert!(text.contains("  create_database  rolled_back\n"));
        assert!(text.ends_with("  verify_access    failed       boom"));
        assert_eq!(summary_line(&op, 1.34), "onboard acme rolled_back in 1.3s");
    }

    #[test]
    fn tenant_and_rotation_tables_align() {
        let tenant: Tenant = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000001", "slug": "acme-corp",
            "display_name": "Acme\nCorp", "state": "active", "engine": "postgres",
            "server": "127.0.0.1:55432", "database": "t_acme_corp", "schema_version": 3,
            "created_at": "2026-01-02T03:04:05Z",
            "secrets": {"app": "tenant-acme-corp-app", "audit_admin": "tenant-acme-corp-audit-admin",
                        "investigator": "tenant-acme-corp-investigator"}
        }))
        .expect("a tenant");
        let mut other = tenant.clone();
        other.slug = TenantSlug::parse("b2b").expect("valid");
        other.state = api_types::TenantState::Offboarded;
        assert_eq!(
            tenant_table(&[tenant.clone(), other]),
            "SLUG       STATE       ENGINE    DATABASE     CREATED\n\
             acme-corp  active      postgres  t_acme_corp  2026-01-02T03:04:05Z\n\
             b2b        offboarded  postgres  t_acme_corp  2026-01-02T03:04:05Z"
        );
        assert_eq!(tenant_table(&[]), "no tenants");
        let details = tenant_details(&tenant);
        assert!(
            details.contains("display name         Acme Corp\n"),
            "{details}"
        );
        assert!(details.contains("secret investigator  tenant-acme-corp-investigator\n"));
        // A server older than the credential check sends no `credentials`.
        assert!(
            details.ends_with("credentials          unchecked"),
            "{details}"
        );
        assert_eq!(rotation_table(&[]), "no rotations yet");
    }

    #[test]
    fn credentials_read_as_one_line() {
        let failing: CredentialHealth = serde_json::from_value(serde_json::json!({
            "state": "failing", "checked_at": "2026-03-01T12:00:00Z", "failing": ["app"],
            "detail": "app: cannot connect to tenant database as t_acme_app_a:\npassword authentication failed"
        }))
        .expect("credentials");
        assert_eq!(
            credentials(&failing),
            "failing (app: cannot connect to tenant database as t_acme_app_a: password \
             authentication failed) checked 2026-03-01T12:00:00Z; rotate to repair"
        );
        let ok: CredentialHealth = serde_json::from_value(serde_json::json!({
            "state": "ok", "checked_at": "2026-03-01T12:05:00Z", "failing": [], "detail": null
        }))
        .expect("credentials");
        assert_eq!(credentials(&ok), "ok checked 2026-03-01T12:05:00Z");
        assert_eq!(credentials(&CredentialHealth::default()), "unchecked");
    }

    #[test]
    fn columns_align_without_trailing_spaces() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), String::new()],
            vec!["ccc".to_owned(), "d".to_owned(), "e".to_owned()],
        ];
        assert_eq!(columns(&rows), "A    BB\nccc  d   e");
    }
}
