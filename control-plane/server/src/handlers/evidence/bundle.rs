//! Layer: handlers (part of `handlers::evidence`). The evidence bundle's payload: one section per
//! control, each naming the SOC 2 criteria it evidences, a status and a one-line summary, built
//! from facts the handler gathered (the engine's live reading, the catalog's rotations, the
//! tenant's investigation events). No I/O happens here, so every rule is unit-tested below.
//!
//! Statuses: `pass` / `fail` for sections that check something (principals, live probes,
//! temporal coverage), `recorded` for histories (rotations, investigations), and whatever the
//! audit-chain section reports.

use std::collections::HashMap;

use api_types::Rotation;
use catalog::TenantRecord;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use engine::evidence::{LiveProbes, TemporalCoverage};
use engine::{EngineEvidence, InvestigationEvent};
use serde_json::{json, Value};

/// `payload.document` of an evidence bundle.
pub const DOCUMENT: &str = "tenant-evidence";
/// The period when the request names none: the last 90 days.
pub const DEFAULT_PERIOD_DAYS: i64 = 90;
/// Most investigation events one bundle lists (two per investigation).
pub const MAX_INVESTIGATION_EVENTS: u32 = 10_000;

/// The SOC 2 trust services criteria each section evidences.
pub mod criteria {
    /// Logical access: principals and what they may do.
    pub const PRINCIPALS: [&str; 2] = ["CC6.1", "CC6.3"];
    /// The app principal cannot change audit events or history.
    pub const LIVE_PROBES: [&str; 2] = ["CC6.1", "CC8.1"];
    /// Every change to business data is kept.
    pub const TEMPORAL_COVERAGE: [&str; 1] = ["CC8.1"];
    /// The audit log is complete and unaltered.
    pub const AUDIT_CHAIN: [&str; 1] = ["CC7.2"];
    /// Credentials are rotated.
    pub const ROTATIONS: [&str; 2] = ["CC6.2", "CC6.1"];
    /// Every look at tenant data by support staff is on the record.
    pub const INVESTIGATIONS: [&str; 2] = ["CC7.2", "CC6.3"];
}

/// The period the histories cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    /// Start (inclusive).
    pub since: DateTime<Utc>,
    /// End (inclusive): when the bundle was generated.
    pub until: DateTime<Utc>,
}

impl Period {
    /// `since` from the query (RFC 3339), else [`DEFAULT_PERIOD_DAYS`] before `now`; it must
    /// not be after `now`.
    pub fn parse(since: Option<&str>, now: DateTime<Utc>) -> Result<Period, String> {
        let since = match since.map(str::trim) {
            None | Some("") => now - Duration::days(DEFAULT_PERIOD_DAYS),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    format!("since must be an RFC 3339 time such as 2026-01-01T00:00:00Z: {e}")
                })?
                .with_timezone(&Utc),
        };
        if since > now {
            return Err(format!(
                "since ({}) is in the future",
                since.to_rfc3339_opts(SecondsFormat::Secs, true)
            ));
        }
        Ok(Period { since, until: now })
    }

    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.since <= t && t <= self.until
    }
}

/// Everything a bundle is made of.
pub struct Facts<'a> {
    /// The tenant.
    pub tenant: &'a TenantRecord,
    /// The auditor who asked (token subject).
    pub generated_by: &'a str,
    /// The period; `until` is the generation time.
    pub period: Period,
    /// The engine's live reading.
    pub engine: &'a EngineEvidence,
    /// Every rotation of the tenant (filtered to the period here).
    pub rotations: &'a [Rotation],
    /// The investigation events of the period.
    pub investigation_events: &'a [InvestigationEvent],
    /// Whether there were more events than [`MAX_INVESTIGATION_EVENTS`].
    pub investigations_truncated: bool,
    /// The audit-chain section, as built by `audit_chain_section`.
    pub audit_chain: Value,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "fail"
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The signed payload.
pub fn payload(f: &Facts<'_>) -> Value {
    json!({
        "document": DOCUMENT,
        "version": 1,
        "tenant": {
            "slug": f.tenant.slug.as_str(),
            "id": f.tenant.id,
            "engine": f.tenant.engine,
            "server": f.tenant.server,
            "database": f.tenant.database,
        },
        "generated_at": time(f.period.until),
        "generated_by": f.generated_by,
        "period": {"since": time(f.period.since), "until": time(f.period.until)},
        "sections": {
            "principals": principals_section(f.engine),
            "live_probes": probes_section(&f.engine.probes),
            "temporal_coverage": temporal_section(&f.engine.temporal),
            "audit_chain": f.audit_chain,
            "rotations": rotations_section(f.rotations, f.period),
            "investigations": investigations_section(
                f.investigation_events,
                f.investigations_truncated,
            ),
        },
    })
}

fn principals_section(e: &EngineEvidence) -> Value {
    let findings = e.principal_findings();
    json!({
        "criteria": criteria::PRINCIPALS,
        "status": pass(findings.is_empty()),
        "summary": format!(
            "{}, {}",
            plural(e.principals.len(), "principal", "principals"),
            match findings.len() {
                0 => "no findings".to_owned(),
                n => plural(n, "finding", "findings"),
            }
        ),
        "findings": findings,
        "principals": e.principals,
        "other_grants": e.other_grants,
    })
}

fn probes_section(p: &LiveProbes) -> Value {
    let refused = p
        .probes
        .iter()
        .filter(|p| p.refused && p.rolled_back)
        .count();
    let (all_refused, unchanged) = (p.all_refused(), p.unchanged());
    json!({
        "criteria": criteria::LIVE_PROBES,
        "status": pass(all_refused && unchanged),
        "summary": format!(
            "{refused} of {} writes by {} refused and rolled back; row counts {}",
            p.probes.len(),
            p.session_user,
            if unchanged { "unchanged" } else { "changed" }
        ),
        "login": p.login,
        "session_user": p.session_user,
        "all_refused": all_refused,
        "unchanged": unchanged,
        "probes": p.probes,
        "row_counts": {"before": p.row_counts_before, "after": p.row_counts_after},
    })
}

fn temporal_section(t: &TemporalCoverage) -> Value {
    let versioned = t.tables.iter().filter(|t| t.versioned).count();
    let (all_versioned, append_only) = (t.all_versioned(), t.all_history_append_only());
    json!({
        "criteria": criteria::TEMPORAL_COVERAGE,
        "status": pass(all_versioned && append_only),
        "summary": format!(
            "{versioned} of {} business tables versioned{}",
            t.tables.len(),
            if append_only { ", history append-only" } else { ", history NOT append-only" }
        ),
        "all_versioned": all_versioned,
        "all_history_append_only": append_only,
        "tables": t.tables,
        "history_tables": t.history_tables,
    })
}

fn rotations_section(all: &[Rotation], period: Period) -> Value {
    let rotations: Vec<&Rotation> = all
        .iter()
        .filter(|r| period.contains(r.started_at))
        .collect();
    let succeeded = rotations
        .iter()
        .filter(|r| r.state == api_types::OperationState::Succeeded)
        .count();
    json!({
        "criteria": criteria::ROTATIONS,
        "status": "recorded",
        "summary": format!(
            "{} in the period ({succeeded} succeeded)",
            plural(rotations.len(), "rotation", "rotations")
        ),
        "rotations": rotations,
    })
}

fn investigations_section(events: &[InvestigationEvent], truncated: bool) -> Value {
    let investigations = pair_investigations(events);
    let unfinished = investigations
        .iter()
        .filter(|i| i["outcome"] == "no_outcome_recorded")
        .count();
    let mut summary = format!(
        "{} in the period",
        plural(investigations.len(), "investigation", "investigations")
    );
    if unfinished > 0 {
        summary.push_str(&format!(", {unfinished} without a recorded outcome"));
    }
    if truncated {
        summary.push_str(&format!(
            " (the first {MAX_INVESTIGATION_EVENTS} events only: narrow the period)"
        ));
    }
    json!({
        "criteria": criteria::INVESTIGATIONS,
        "status": "recorded",
        "summary": summary,
        "truncated": truncated,
        "investigations": investigations,
    })
}

/// Each `investigation.query` event with its `investigation.outcome` (the one whose detail
/// names it as `query_event`): who, ticket, reason, the query text, and the rows returned or
/// why there were none. A query whose outcome is not among `events` (it falls after the period,
/// or the control plane died in between) says `no_outcome_recorded`.
pub fn pair_investigations(events: &[InvestigationEvent]) -> Vec<Value> {
    let outcomes: HashMap<i64, &InvestigationEvent> = events
        .iter()
        .filter(|e| e.action == "investigation.outcome")
        .filter_map(|e| Some((e.detail.get("query_event")?.as_i64()?, e)))
        .collect();
    events
        .iter()
        .filter(|e| e.action == "investigation.query")
        .map(|q| {
            let outcome = outcomes.get(&q.id);
            let field = |k: &str| q.detail.get(k).cloned().unwrap_or(Value::Null);
            let (kind, rows, truncated, error) = match outcome.map(|o| &o.detail) {
                None => ("no_outcome_recorded", Value::Null, Value::Null, Value::Null),
                Some(d) => match d.get("error") {
                    Some(e) => (
                        e.get("kind").and_then(Value::as_str).unwrap_or("failed"),
                        Value::Null,
                        Value::Null,
                        e.get("detail").cloned().unwrap_or_else(|| e.clone()),
                    ),
                    None => (
                        "rows",
                        d.get("rows").cloned().unwrap_or(Value::Null),
                        d.get("truncated").cloned().unwrap_or(Value::Null),
                        Value::Null,
                    ),
                },
            };
            json!({
                "query_event": q.id,
                "outcome_event": outcome.map(|o| o.id),
                "at": time(q.occurred_at),
                "finished_at": outcome.map(|o| time(o.occurred_at)),
                "actor": q.actor,
                "principal": q.principal,
                "ticket": field("ticket"),
                "reason": field("reason"),
                "query": field("query"),
                "max_rows": field("max_rows"),
                "request_id": q.request_id,
                "outcome": kind,
                "rows": rows,
                "truncated": truncated,
                "error": error,
            })
        })
        .collect()
}

/// What the tenant's audit chain proves, stated once for the bundle (and the README's threat
/// model says the same): which fields the database verified and which the writer only asserted,
/// which events are guaranteed, and the window within which a rewrite by someone inside the
/// database goes unnoticed.
pub fn audit_scope(anchor_interval_secs: u64) -> Value {
    json!({
        "fields": {
            "principal": "verified: the database login that wrote the event",
            "origin": "verified: control_plane or application, derived by the database from that login (events from before audit format 2 have none)",
            "actor": "asserted by the writer; any login can set it",
            "request_id": "asserted by the writer; any login can set it",
        },
        "guaranteed_events": [
            "every business write through app.* (its event commits or rolls back with the write)",
            "every investigation query, committed by the investigator before the query runs, and its outcome",
            "every purge, naming the range it removed",
            "the tenant's provisioning",
        ],
        "not_guaranteed": [
            "reads by the application: a read's event is written in the application's own transaction, so a read the application rolls back (or whose statement fails after returning rows) leaves no event; the application principal is the application itself and is trusted with the data it reads",
        ],
        "rewrite_detection": {
            "by": "the control plane's anchors of the chain head, kept outside the tenant database",
            "anchor_interval_secs": anchor_interval_secs,
            "window": format!(
                "a consistent rewrite of the log by a database superuser or owner is detected unless it is younger than {anchor_interval_secs} s (the latest anchor)"
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use api_types::{OperationState, RotationMode, TenantSlug, TenantState};
    use engine::evidence::{ProbeResult, ProbedTable, Refusal, TableVersioning};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn event(id: i64, action: &str, when: &str, detail: Value) -> InvestigationEvent {
        InvestigationEvent {
            id,
            occurred_at: at(when),
            principal: "t_acme_investigator".into(),
            actor: "ada".into(),
            action: action.into(),
            detail,
            request_id: Some(format!("req-{id}")),
        }
    }

    fn query(id: i64, ticket: &str) -> InvestigationEvent {
        event(
            id,
            "investigation.query",
            "2026-03-01T10:00:00Z",
            json!({"ticket": ticket, "reason": "why", "query": "SELECT 1", "max_rows": 10}),
        )
    }

    #[test]
    fn the_period_defaults_to_ninety_days_and_refuses_the_future() {
        let now = at("2026-03-01T12:00:00Z");
        let p = Period::parse(None, now).unwrap();
        assert_eq!(p.since, at("2025-12-01T12:00:00Z"));
        assert_eq!(p.until, now);
        let p = Period::parse(Some("2026-02-01T00:00:00+01:00"), now).unwrap();
        assert_eq!(p.since, at("2026-01-31T23:00:00Z"));
        assert!(Period::parse(Some("yesterday"), now)
            .unwrap_err()
            .contains("RFC 3339"));
        assert!(Period::parse(Some("2026-03-02T00:00:00Z"), now)
            .unwrap_err()
            .contains("future"));
        assert!(p.contains(now) && p.contains(p.since) && !p.contains(at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn queries_are_paired_with_their_outcomes() {
        let events = vec![
            query(3, "INC-1"),
            query(4, "INC-2"),
            event(
                5,
                "investigation.outcome",
                "2026-03-01T10:00:01Z",
                json!({"query_event": 4, "error": {"kind": "refused", "detail": "UPDATE is not allowed"}}),
            ),
            event(
                6,
                "investigation.outcome",
                "2026-03-01T10:00:02Z",
                json!({"query_event": 3, "rows": 2, "truncated": false}),
            ),
            query(7, "INC-3"),
            // An outcome whose query is before the period: nothing to pair it with.
            event(
                8,
                "investigation.outcome",
                "2026-03-01T10:00:03Z",
                json!({"query_event": 1, "rows": 0}),
            ),
        ];
        let paired = pair_investigations(&events);
        assert_eq!(paired.len(), 3);
        assert_eq!(paired[0]["ticket"], "INC-1");
        assert_eq!(paired[0]["outcome"], "rows");
        assert_eq!(paired[0]["rows"], 2);
        assert_eq!(paired[0]["outcome_event"], 6);
        assert_eq!(paired[0]["finished_at"], "2026-03-01T10:00:02.000000Z");
        assert_eq!(paired[0]["request_id"], "req-3");
        assert_eq!(paired[1]["outcome"], "refused");
        assert_eq!(paired[1]["error"], "UPDATE is not allowed");
        assert_eq!(paired[2]["outcome"], "no_outcome_recorded");
        assert_eq!(paired[2]["outcome_event"], Value::Null);
        let section = investigations_section(&events, true);
        let summary = section["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("3 investigations in the period, 1 without"),
            "{summary}"
        );
        assert!(summary.contains("narrow the period"), "{summary}");
    }

    fn tenant() -> TenantRecord {
        TenantRecord {
            id: uuid::Uuid::nil(),
            slug: TenantSlug::parse("acme").unwrap(),
            display_name: "Acme".into(),
            state: TenantState::Active,
            engine: "postgres".into(),
            server: "db:5432".into(),
            database: "tenant_acme".into(),
            schema_version: Some(3),
            created_at: at("2026-01-01T00:00:00Z"),
            released_at: None,
            credentials: None,
            retained_until: None,
        }
    }

    fn facts() -> EngineEvidence {
        let probe = ProbeResult {
            table: "audit.audit_events".into(),
            kind: ProbedTable::Audit,
            operation: "DELETE".into(),
            statement: "DELETE FROM audit.audit_events".into(),
            refused: true,
            refusal: Some(Refusal::Permission),
            code: Some("42501".into()),
            message: Some("permission denied for schema audit".into()),
            rolled_back: true,
            wrote_nothing: Some(true),
        };
        let counts = BTreeMap::from([("audit.audit_events".to_owned(), 4)]);
        EngineEvidence {
            principals: vec![],
            other_grants: vec![],
            probes: LiveProbes {
                login: "t_acme_app_a".into(),
                session_user: "t_acme_app_a".into(),
                probes: vec![probe],
                row_counts_before: counts.clone(),
                row_counts_after: counts,
            },
            temporal: TemporalCoverage {
                tables: vec![TableVersioning {
                    table: "app.customers".into(),
                    versioned: true,
                    history_table: Some("history.customers_history".into()),
                    mechanism: "triggers".into(),
                    history_append_only: true,
                    details: BTreeMap::new(),
                }],
                history_tables: vec!["history.customers_history".into()],
            },
        }
    }

    fn rotation(started: &str, state: OperationState) -> Rotation {
        Rotation {
            operation: uuid::Uuid::new_v4(),
            mode: RotationMode::Scheduled,
            actor: "scheduler".into(),
            state,
            from: Some("app_a".into()),
            to: Some("app_b".into()),
            started_at: at(started),
            finished_at: None,
            error: None,
        }
    }

    #[test]
    fn every_section_names_its_criteria_and_status() {
        let tenant = tenant();
        let mut engine = facts();
        let rotations = [
            rotation("2026-02-20T00:00:00Z", OperationState::Succeeded),
            rotation("2025-06-01T00:00:00Z", OperationState::Succeeded),
            rotation("2026-02-25T00:00:00Z", OperationState::Failed),
        ];
        let period = Period::parse(None, at("2026-03-01T12:00:00Z")).unwrap();
        let build = |engine: &EngineEvidence| {
            payload(&Facts {
                tenant: &tenant,
                generated_by: "auditor-1",
                period,
                engine,
                rotations: &rotations,
                investigation_events: &[],
                investigations_truncated: false,
                audit_chain: json!({"criteria": criteria::AUDIT_CHAIN, "status": "pending"}),
            })
        };
        let p = build(&engine);
        assert_eq!(p["document"], DOCUMENT);
        assert_eq!(p["tenant"]["slug"], "acme");
        assert_eq!(p["tenant"]["database"], "tenant_acme");
        assert_eq!(p["period"]["since"], "2025-12-01T12:00:00.000000Z");
        assert_eq!(p["generated_by"], "auditor-1");
        let s = &p["sections"];
        let want = [
            ("principals", json!(["CC6.1", "CC6.3"]), "pass"),
            ("live_probes", json!(["CC6.1", "CC8.1"]), "pass"),
            ("temporal_coverage", json!(["CC8.1"]), "pass"),
            ("audit_chain", json!(["CC7.2"]), "pending"),
            ("rotations", json!(["CC6.2", "CC6.1"]), "recorded"),
            ("investigations", json!(["CC7.2", "CC6.3"]), "recorded"),
        ];
        for (name, criteria, status) in want {
            assert_eq!(s[name]["criteria"], criteria, "{name}");
            assert_eq!(s[name]["status"], status, "{name}");
        }
        assert_eq!(s.as_object().unwrap().len(), 6);
        // Only the rotations of the period, with their mode, actor, state and logins.
        let r = s["rotations"]["rotations"].as_array().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["mode"], "scheduled");
        assert_eq!(r[1]["state"], "failed");
        assert_eq!(
            s["rotations"]["summary"],
            "2 rotations in the period (1 succeeded)"
        );
        assert_eq!(
            s["live_probes"]["summary"],
            "1 of 1 writes by t_acme_app_a refused and rolled back; row counts unchanged"
        );
        assert_eq!(s["principals"]["summary"], "0 principals, no findings");
        // The whole payload is signable (no integer beyond what JCS keeps exactly).
        assert!(evidence::canonical_json(&p).is_ok());

        // A probe that went through, a changed count, an unversioned table: each fails.
        engine.probes.probes[0].refused = false;
        assert_eq!(build(&engine)["sections"]["live_probes"]["status"], "fail");
        engine = facts();
        engine
            .probes
            .row_counts_after
            .insert("audit.audit_events".into(), 0);
        assert_eq!(build(&engine)["sections"]["live_probes"]["status"], "fail");
        engine = facts();
        engine.temporal.tables[0].versioned = false;
        let t = &build(&engine)["sections"]["temporal_coverage"];
        assert_eq!(t["status"], "fail");
        assert_eq!(t["all_versioned"], false);
    }
}
