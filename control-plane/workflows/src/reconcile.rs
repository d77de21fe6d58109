//! The reconciler: compares what the catalog believes with what exists on every database
//! server and in the secret store, and reports the differences ([`ReconciliationReport`]).
//!
//! A pass reads the catalog (snapshot A), then each server's marked objects
//! (`Engine::marked_objects`) and each active tenant's objects (`Engine::inventory`) and the
//! secret store's names, then the catalog again (snapshot B). Every workflow writes its catalog
//! row before it creates an object and removes the row only after the object is gone, so:
//! - an object carrying **this deployment's** marker ([`engine::marker`]) is an orphan only if
//!   neither snapshot explains it (no live tenant owns it, no pooled database row names it): one
//!   created during the pass has its row in B, one dropped during the pass had its row in A;
//! - an active tenant lacks something only if it was active, with no operation running, in both
//!   snapshots (an offboarding that started meanwhile is not a loss).
//!
//! An object without a marker, or with another deployment's, is never reported as an orphan
//! and never touched. A tenant's secrets carry the marker as tags ([`DEPLOYMENT_TAG`],
//! [`TENANT_ID_TAG`]; a vault may be shared, so a name alone proves nothing): one tagged as this
//! deployment's whose tenant is live in neither snapshot is an orphan secret. Repairs ([`Orchestrator::repair_finding`], and `auto_repair` of orphans
//! after a pass) drop an orphan only after checking it again, and `Engine::drop_marked` drops it
//! only if it still carries the same marker when it does; each repair appends a
//! `reconciliation.repaired` audit row. What the reconciler does not repair names the
//! operation that does (`hint`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use api_types::{
    CredentialState, Finding, FindingKind, ReconciliationReport, RepairOutcome, ServerCheck,
    TenantSecrets, TenantState,
};
use catalog::{PooledDatabase, ReconciliationRecord, ServerRecord, TenantRecord};
use engine::marker::Marker;
use engine::{Engine, MarkedObject, ObjectKind};
use serde_json::json;
use tracing::{info, warn};
use uuid::Uuid;

use crate::{Orchestrator, Services, WorkflowError};

/// The tag of a tenant secret version naming the deployment that wrote it (its instance id).
pub const DEPLOYMENT_TAG: &str = "deployment";
/// The tag of a tenant secret version naming its tenant's id.
pub const TENANT_ID_TAG: &str = "tenant-id";

/// The slug a tenant secret's name is made of (`tenant-<slug>-app`, `-audit-admin`,
/// `-investigator`), if it is one.
fn secret_slug(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("tenant-")?;
    ["-audit-admin", "-investigator", "-app"]
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix))
        .filter(|slug| !slug.is_empty())
}

/// How the reconciler runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcilePolicy {
    /// How often a pass runs (`None`: only on request).
    pub interval: Option<Duration>,
    /// Whether a pass drops the orphans it found (`auto_repair = ["orphans"]`).
    pub repair_orphans: bool,
}

/// What the catalog said at one moment.
struct Snapshot {
    tenants: Vec<TenantRecord>,
    pool: Vec<PooledDatabase>,
    /// Tenants with an operation running.
    busy: BTreeSet<Uuid>,
}

impl Snapshot {
    async fn read(svc: &Services) -> Result<Snapshot, WorkflowError> {
        let tenants = svc.catalog.list_tenants().await?;
        let pool = svc.catalog.pool_databases(None).await?;
        let mut busy = BTreeSet::new();
        for t in tenants.iter().filter(|t| t.released_at.is_none()) {
            if svc.catalog.active_operation(t.id).await?.is_some() {
                busy.insert(t.id);
            }
        }
        Ok(Snapshot {
            tenants,
            pool,
            busy,
        })
    }

    /// The live tenants (not released) on `server`.
    fn live_on<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a TenantRecord> + 'a {
        self.tenants
            .iter()
            .filter(move |t| t.released_at.is_none() && t.server == server)
    }

    /// Who in this snapshot owns `object` (`engine` names the tenants' principals). Live
    /// tenants and pooled databases of **every** server count: one database server registered
    /// under two names (an alias host, a renamed configured server) must not make a tenant of
    /// one name an orphan of the other.
    fn owner(&self, engine: &dyn Engine, object: &MarkedObject) -> Owner {
        let live = self.tenants.iter().filter(|t| t.released_at.is_none());
        let tenant = match object.kind {
            ObjectKind::Database => live.clone().find(|t| t.database == object.name),
            ObjectKind::Login => live.clone().find(|t| {
                engine
                    .names(&t.slug)
                    .principals_drop_order()
                    .contains(&object.name.as_str())
            }),
        };
        if let Some(t) = tenant {
            // A leftover of a former tenant of the same slug carries that tenant's id.
            return match object.marker.tenant {
                Some(id) if id != t.id => Owner::Other(Box::new(t.clone())),
                _ => Owner::Explained,
            };
        }
        let pooled = match object.kind {
            ObjectKind::Database => self.pool.iter().any(|p| p.database == object.name),
            ObjectKind::Login => self
                .pool
                .iter()
                .any(|p| object.name.starts_with(&format!("{}_", p.database))),
        };
        if pooled {
            Owner::Explained
        } else {
            Owner::Nobody
        }
    }

    /// Whether a live tenant (in this snapshot) has the slug `slug`.
    fn slug_live(&self, slug: &str) -> bool {
        self.tenants
            .iter()
            .any(|t| t.released_at.is_none() && t.slug.as_str() == slug)
    }

    /// Whether `marker` is one a repair may act on without an operator: a pooled database's
    /// (no tenant data), or one naming a tenant this catalog released. A marker naming a tenant
    /// the catalog never knew (a catalog restored from an older backup) is left to an operator.
    fn auto_repairable(&self, marker: &Marker) -> bool {
        marker.pooled
            || marker.tenant.is_some_and(|id| {
                self.tenants
                    .iter()
                    .any(|t| t.id == id && t.released_at.is_some())
            })
    }

    /// The tenant `id` if it is active with no operation running.
    fn settled(&self, id: Uuid) -> Option<&TenantRecord> {
        self.tenants
            .iter()
            .find(|t| t.id == id && t.state == TenantState::Active && t.released_at.is_none())
            .filter(|t| !self.busy.contains(&t.id))
    }
}

/// Who owns a marked object, in one snapshot.
enum Owner {
    /// A live tenant (whose id the marker names, or names none) or a pooled database.
    Explained,
    /// A live tenant holds the name, but the marker names another tenant: a leftover of a
    /// former tenant of the same slug.
    Other(Box<TenantRecord>),
    /// Nobody.
    Nobody,
}

/// A finding's stable id: its kind, server and object, hashed.
fn finding_id(kind: FindingKind, server: Option<&str>, object: &str) -> String {
    let key = format!("{}\n{}\n{object}", kind.as_str(), server.unwrap_or(""));
    evidence::archive::sha256_hex(key.as_bytes())[..16].to_owned()
}

fn finding(
    kind: FindingKind,
    server: Option<&str>,
    object: &str,
    tenant: Option<&TenantRecord>,
    detail: String,
) -> Finding {
    let hint = match kind {
        FindingKind::OrphanDatabase | FindingKind::OrphanLogin | FindingKind::OrphanSecret => None,
        FindingKind::MissingDatabase => Some(
            "the tenant's data is gone from its server: restore the database from a backup, or \
             offboard the tenant"
                .to_owned(),
        ),
        FindingKind::MissingPrincipal => Some(
            "the tenant's principals are incomplete and no operation recreates one: offboard \
             the tenant (or restore the server from a backup)"
                .to_owned(),
        ),
        FindingKind::MissingSecret => Some(format!(
            "an emergency rotation writes the connection strings again: POST \
             /v1/tenants/{}/rotate {{\"mode\": \"emergency\"}}",
            tenant.map_or("<slug>".to_owned(), |t| t.slug.to_string())
        )),
        FindingKind::CredentialFailing => Some(format!(
            "a rotation stores working credentials again: POST /v1/tenants/{}/rotate",
            tenant.map_or("<slug>".to_owned(), |t| t.slug.to_string())
        )),
        FindingKind::SchemaDrift => Some(
            "GET /v1/fleet/schema lists the differences; undo the hand-made change (the \
             control plane does not overwrite a tenant database's objects)"
                .to_owned(),
        ),
    };
    Finding {
        id: finding_id(kind, server, object),
        kind,
        server: server.map(str::to_owned),
        object: object.to_owned(),
        tenant: tenant.map(|t| t.slug.to_string()),
        marker_tenant: None,
        detail,
        repairable: kind.repairable(),
        hint,
    }
}

/// What one server holds, read between the two snapshots.
struct ServerSeen {
    check: ServerCheck,
    engine: Option<std::sync::Arc<dyn Engine>>,
    ours: Vec<MarkedObject>,
    /// Per active tenant: its inventory.
    inventories: BTreeMap<Uuid, engine::Inventory>,
}

/// What one pass found of one object, before it becomes a [`Finding`].
struct Orphan<'a> {
    object: &'a MarkedObject,
    server: &'a str,
    /// The live tenant whose name it holds though its marker names another tenant.
    held_by: Option<TenantRecord>,
}

async fn look_at(
    svc: &Services,
    server: &ServerRecord,
    instance: Uuid,
    a: &Snapshot,
) -> ServerSeen {
    let mut seen = ServerSeen {
        check: ServerCheck {
            server: server.name.clone(),
            checked: false,
            marked_objects: 0,
            error: None,
            unreadable: Vec::new(),
            // Until it is checked: everyone on it.
            unchecked_tenants: a
                .live_on(&server.name)
                .map(|t| t.slug.to_string())
                .collect(),
        },
        engine: None,
        ours: Vec::new(),
        inventories: BTreeMap::new(),
    };
    let engine = match svc.engines.get(&server.name).await {
        Ok(e) => e,
        Err(e) => {
            seen.check.error = Some(e.to_string());
            return seen;
        }
    };
    match engine.marked_objects().await {
        Ok(objects) => {
            seen.ours = objects
                .into_iter()
                .filter(|o| o.marker.instance == instance)
                .collect();
        }
        Err(e) => {
            seen.check.error = Some(format!("listing its objects: {e}"));
            return seen;
        }
    }
    for t in a.live_on(&server.name) {
        if a.settled(t.id).is_none() {
            continue;
        }
        let names = engine.names(&t.slug).for_tenant(t.id);
        // One tenant whose database cannot be read (restoring, held single-user) is named; the
        // others are still checked.
        match engine.inventory(&names).await {
            Ok(inventory) => {
                seen.inventories.insert(t.id, inventory);
            }
            Err(e) => {
                seen.check
                    .unreadable
                    .push(format!("{}: {}", t.slug, one_line(&e.to_string())))
            }
        }
    }
    seen.check.checked = true;
    seen.check.unchecked_tenants.clear();
    seen.check.marked_objects = seen.ours.len();
    seen.engine = Some(engine);
    seen
}

impl Orchestrator {
    /// One reconciliation pass: compares, records the report in the catalog, repairs orphans
    /// when `policy.repair_orphans`, and returns the report.
    pub async fn reconcile_once(
        &self,
        policy: &ReconcilePolicy,
    ) -> Result<ReconciliationReport, WorkflowError> {
        let svc = self.runner().services();
        let started_at = chrono::Utc::now();
        let instance = svc.instance;
        let a = Snapshot::read(svc).await?;
        let servers = svc.catalog.servers().await?;
        let mut seen = Vec::new();
        for server in &servers {
            seen.push(look_at(svc, server, instance, &a).await);
        }
        let secret_names: Option<BTreeSet<String>> = match svc.secrets.list_names().await {
            Ok(names) => Some(names.into_iter().map(|n| n.as_str().to_owned()).collect()),
            Err(e) => {
                warn!(error = %e, "reconciliation: the secret store could not be listed");
                None
            }
        };
        // Tenant secrets no live tenant explains (in A; B is checked below): their tags say
        // whether they are this deployment's.
        let mut secret_candidates = Vec::new();
        if let Some(names) = &secret_names {
            for name in names {
                let Some(slug) = secret_slug(name) else {
                    continue;
                };
                if a.slug_live(slug) {
                    continue;
                }
                let Ok(secret) = secrets::SecretName::new(name) else {
                    continue;
                };
                match svc.secrets.list_versions(&secret).await {
                    Ok(versions) => {
                        let Some(current) = versions.last() else {
                            continue;
                        };
                        if current.tags.get(DEPLOYMENT_TAG).map(String::as_str)
                            == Some(instance.to_string().as_str())
                        {
                            let tenant = current
                                .tags
                                .get(TENANT_ID_TAG)
                                .and_then(|t| t.parse::<Uuid>().ok());
                            secret_candidates.push((name.clone(), slug.to_owned(), tenant));
                        }
                    }
                    // Deleted meanwhile: nothing left to report.
                    Err(secrets::SecretError::NotFound { .. }) => {}
                    Err(e) => {
                        warn!(secret = %name, error = %e, "reconciliation: a secret could not be read")
                    }
                }
            }
        }
        let b = Snapshot::read(svc).await?;

        let mut findings = Vec::new();
        // Orphans a pass with `repair_orphans` drops by itself.
        let mut auto: BTreeSet<String> = BTreeSet::new();
        for (name, slug, tenant) in &secret_candidates {
            if b.slug_live(slug) {
                continue;
            }
            let mut f = finding(
                FindingKind::OrphanSecret,
                None,
                name,
                None,
                format!(
                    "carries this deployment's tags, but no live tenant {slug} owns it (a former \
                     tenant's{})",
                    tenant.map(|t| format!(", {t}")).unwrap_or_default()
                ),
            );
            f.marker_tenant = *tenant;
            let released = tenant.is_some_and(|id| {
                b.tenants
                    .iter()
                    .any(|t| t.id == id && t.released_at.is_some())
            });
            if released {
                auto.insert(f.id.clone());
            }
            findings.push(f);
        }
        let mut tenants_checked = BTreeSet::new();
        for s in &seen {
            let Some(engine) = &s.engine else { continue };
            let server = s.check.server.as_str();
            for object in &s.ours {
                let held_by = match (
                    a.owner(engine.as_ref(), object),
                    b.owner(engine.as_ref(), object),
                ) {
                    (Owner::Explained, _) | (_, Owner::Explained) => continue,
                    (Owner::Other(t), _) | (_, Owner::Other(t)) => Some(*t),
                    (Owner::Nobody, Owner::Nobody) => None,
                };
                let orphan = Orphan {
                    object,
                    server,
                    held_by,
                };
                let f = orphan_finding(&orphan, &b);
                if orphan.held_by.is_none() && b.auto_repairable(&object.marker) {
                    auto.insert(f.id.clone());
                }
                findings.push(f);
            }
            for (id, inventory) in &s.inventories {
                let (Some(t), Some(_)) = (b.settled(*id), a.settled(*id)) else {
                    continue;
                };
                tenants_checked.insert(*id);
                if !inventory.database {
                    findings.push(finding(
                        FindingKind::MissingDatabase,
                        Some(server),
                        &t.database,
                        Some(t),
                        format!(
                            "tenant {} is active but its database does not exist",
                            t.slug
                        ),
                    ));
                }
                // Contained users live in the database: without it, its absence says it all.
                if !inventory.database && engine.contained_principals() {
                    continue;
                }
                for principal in inventory.missing_principals() {
                    // Contained users have the same names in every tenant database.
                    let object = if engine.contained_principals() {
                        format!("{}.{principal}", t.database)
                    } else {
                        principal.to_owned()
                    };
                    findings.push(finding(
                        FindingKind::MissingPrincipal,
                        Some(server),
                        &object,
                        Some(t),
                        format!(
                            "tenant {} is active but its principal {principal} does not exist",
                            t.slug
                        ),
                    ));
                }
            }
        }
        // Secrets and credentials of every tenant active and settled in both snapshots whose
        // server was checked (the store is not per server, but a tenant whose server could not
        // be read is not judged at all).
        let checked_servers: BTreeSet<&str> = seen
            .iter()
            .filter(|s| s.check.checked)
            .map(|s| s.check.server.as_str())
            .collect();
        for t in b.tenants.iter().filter(|t| {
            b.settled(t.id).is_some()
                && a.settled(t.id).is_some()
                && checked_servers.contains(t.server.as_str())
        }) {
            tenants_checked.insert(t.id);
            if let Some(names) = &secret_names {
                for name in TenantSecrets::for_slug(&t.slug).all() {
                    if !names.contains(name) {
                        findings.push(finding(
                            FindingKind::MissingSecret,
                            None,
                            name,
                            Some(t),
                            format!(
                                "tenant {} is active but its secret {name} is missing",
                                t.slug
                            ),
                        ));
                    }
                }
            }
            let health = t.credential_health();
            if health.state == CredentialState::Failing {
                findings.push(finding(
                    FindingKind::CredentialFailing,
                    Some(&t.server),
                    &t.slug.to_string(),
                    Some(t),
                    format!(
                        "the credential check found {} not logging in{}",
                        if health.failing.is_empty() {
                            "a credential".to_owned()
                        } else {
                            health
                                .failing
                                .iter()
                                .map(|c| c.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        },
                        health
                            .checked_at
                            .map(|at| format!(" at {}", at.to_rfc3339()))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        // The drift check's latest result for each settled tenant at its current version.
        for s in svc.catalog.tenant_schemas(false).await? {
            let Some(t) = b.settled(s.tenant_id).filter(|t| a.settled(t.id).is_some()) else {
                continue;
            };
            if s.drift.is_empty()
                || t.schema_version != Some(s.version)
                || !checked_servers.contains(t.server.as_str())
            {
                continue;
            }
            let shown: Vec<&str> = s.drift.iter().take(3).map(String::as_str).collect();
            findings.push(finding(
                FindingKind::SchemaDrift,
                Some(&t.server),
                &t.database,
                Some(t),
                format!(
                    "{} difference(s) from schema version {} at {}: {}{}",
                    s.drift.len(),
                    s.version,
                    s.checked_at.to_rfc3339(),
                    shown.join("; "),
                    if s.drift.len() > shown.len() {
                        "; ..."
                    } else {
                        ""
                    }
                ),
            ));
        }
        findings
            .sort_by(|x, y| (x.kind, &x.server, &x.object).cmp(&(y.kind, &y.server, &y.object)));

        let mut repaired = Vec::new();
        if policy.repair_orphans {
            for f in findings.iter().filter(|f| auto.contains(&f.id)) {
                match self.repair(f, "reconciler", None).await {
                    Ok(true) => repaired.push(f.id.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(finding = %f.id, error = %e, "reconciliation: repair failed")
                    }
                }
            }
        }
        let report = ReconciliationReport {
            id: Uuid::new_v4(),
            instance,
            node: svc.node_id.clone(),
            started_at,
            finished_at: chrono::Utc::now(),
            servers: seen.into_iter().map(|s| s.check).collect(),
            tenants_checked: tenants_checked.len(),
            secrets_checked: secret_names.is_some(),
            findings,
            repaired,
        };
        svc.catalog
            .record_reconciliation(&ReconciliationRecord {
                id: report.id,
                node: report.node.clone(),
                started_at: report.started_at,
                finished_at: report.finished_at,
                report: serde_json::to_value(&report)
                    .map_err(|e| WorkflowError::Invalid(format!("the report: {e}")))?,
            })
            .await?;
        Ok(report)
    }

    /// The newest report, if a pass ran.
    pub async fn latest_reconciliation(
        &self,
    ) -> Result<Option<ReconciliationReport>, WorkflowError> {
        let Some(record) = self
            .runner()
            .services()
            .catalog
            .latest_reconciliation()
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_value(record.report)
            .map(Some)
            .map_err(|e| WorkflowError::Invalid(format!("a stored reconciliation report: {e}")))
    }

    /// Repairs finding `id` of the newest report: drops the orphan it names, after checking it
    /// again (still carrying this deployment's marker, still explained by no catalog row).
    /// `NotFound` when the newest report has no such finding; `Conflict` when it is not
    /// repairable or no longer an orphan.
    pub async fn repair_finding(
        &self,
        id: &str,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<RepairOutcome, WorkflowError> {
        let report = self.latest_reconciliation().await?;
        let Some(finding) = report.and_then(|r| r.findings.into_iter().find(|f| f.id == id)) else {
            return Err(WorkflowError::NotFound(format!(
                "the newest reconciliation report has no finding {id}; run one \
                 (POST /v1/reconciliation/run) and use an id from it"
            )));
        };
        if !finding.repairable {
            return Err(WorkflowError::Conflict(format!(
                "a {} finding is not repaired by the reconciler; {}",
                finding.kind.as_str(),
                finding.hint.clone().unwrap_or_default()
            )));
        }
        let dropped = self.repair(&finding, actor, request_id).await?;
        Ok(RepairOutcome { finding, dropped })
    }

    /// Checks orphan `f` again and drops it; returns whether it dropped something. A repair
    /// that dropped something appends its audit row.
    async fn repair(
        &self,
        f: &Finding,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<bool, WorkflowError> {
        let svc = self.runner().services();
        let server = f.server.as_deref().unwrap_or_default();
        let kind = match f.kind {
            FindingKind::OrphanDatabase => ObjectKind::Database,
            FindingKind::OrphanLogin => ObjectKind::Login,
            FindingKind::OrphanSecret => return self.repair_secret(f, actor, request_id).await,
            _ => return Ok(false),
        };
        let instance = svc.instance;
        let engine = svc
            .engines
            .get(server)
            .await
            .map_err(|e| WorkflowError::Unavailable(e.to_string()))?;
        let a = Snapshot::read(svc).await?;
        let object = engine
            .marked_objects()
            .await
            .map_err(|e| WorkflowError::Unavailable(format!("database server {server}: {e}")))?
            .into_iter()
            .find(|o| o.kind == kind && o.name == f.object && o.marker.instance == instance);
        let b = Snapshot::read(svc).await?;
        let Some(object) = object else {
            return Ok(false);
        };
        let owners = [
            a.owner(engine.as_ref(), &object),
            b.owner(engine.as_ref(), &object),
        ];
        if owners.iter().any(|o| !matches!(o, Owner::Nobody)) {
            return Err(WorkflowError::Conflict(format!(
                "{} on {server} is not an orphan now: a live tenant or pooled database of the \
                 catalog holds its name",
                f.object
            )));
        }
        let dropped = drop_orphan(engine.as_ref(), &object).await?;
        if dropped {
            info!(server, object = %f.object, kind = f.kind.as_str(), "reconciliation: orphan dropped");
            svc.catalog
                .record_repair(
                    actor,
                    request_id,
                    json!({
                        "finding": f.id, "kind": f.kind, "server": server, "object": f.object,
                        "marker_tenant": object.marker.tenant,
                    }),
                )
                .await?;
        }
        Ok(dropped)
    }
}

impl Orchestrator {
    /// Checks orphan secret `f` again (still tagged as this deployment's, still no live tenant
    /// of its slug, before and after the read) and removes it (deleted and purged); returns
    /// whether it removed something, and appends the audit row when it did.
    async fn repair_secret(
        &self,
        f: &Finding,
        actor: &str,
        request_id: Option<&str>,
    ) -> Result<bool, WorkflowError> {
        let svc = self.runner().services();
        let Some(slug) = secret_slug(&f.object) else {
            return Ok(false);
        };
        let name = secrets::SecretName::new(&f.object)
            .map_err(|e| WorkflowError::Invalid(format!("secret {}: {e}", f.object)))?;
        let a = Snapshot::read(svc).await?;
        let tags = match svc.secrets.list_versions(&name).await {
            Ok(versions) => versions.last().map(|v| v.tags.clone()).unwrap_or_default(),
            Err(secrets::SecretError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(WorkflowError::Unavailable(e.to_string())),
        };
        let b = Snapshot::read(svc).await?;
        if a.slug_live(slug) || b.slug_live(slug) {
            return Err(WorkflowError::Conflict(format!(
                "secret {} is not an orphan now: tenant {slug} is live",
                f.object
            )));
        }
        if tags.get(DEPLOYMENT_TAG).map(String::as_str) != Some(svc.instance.to_string().as_str()) {
            return Ok(false);
        }
        let removal = secrets::ensure_absent(svc.secrets.as_ref(), &name)
            .await
            .map_err(|e| WorkflowError::Unavailable(format!("removing {}: {e}", f.object)))?;
        info!(secret = %f.object, "reconciliation: orphan secret removed");
        svc.catalog
            .record_repair(
                actor,
                request_id,
                json!({
                    "finding": f.id, "kind": f.kind, "object": f.object,
                    "marker_tenant": f.marker_tenant,
                    "removal": format!("{removal:?}"),
                }),
            )
            .await?;
        Ok(true)
    }
}

async fn drop_orphan(engine: &dyn Engine, object: &MarkedObject) -> Result<bool, WorkflowError> {
    engine
        .drop_marked(object.kind, &object.name, &object.text)
        .await
        .map_err(|e| {
            let why = format!("dropping {}: {e}", object.name);
            if e.is_transient() {
                WorkflowError::Unavailable(why)
            } else {
                // A role that still owns objects in a database (its database is an orphan too:
                // repair that one first), or a database the admin may not drop.
                WorkflowError::Conflict(why)
            }
        })
}

/// The finding of an orphan: repairable unless a live tenant holds its name.
fn orphan_finding(o: &Orphan<'_>, b: &Snapshot) -> Finding {
    let object = o.object;
    let kind = match object.kind {
        ObjectKind::Database => FindingKind::OrphanDatabase,
        ObjectKind::Login => FindingKind::OrphanLogin,
    };
    let whose = match (object.marker.pooled, object.marker.tenant) {
        (true, _) => "a pooled database's".to_owned(),
        (false, Some(id)) if b.tenants.iter().any(|t| t.id == id) => {
            format!("tenant {id}'s, released")
        }
        (false, Some(id)) => format!(
            "tenant {id}'s, a tenant this catalog does not know (restored from an older \
             backup?): repair it only if it is not in use"
        ),
        (false, None) => "no tenant's".to_owned(),
    };
    let mut f = finding(
        kind,
        Some(o.server),
        &object.name,
        o.held_by.as_ref(),
        match &o.held_by {
            None => format!(
                "carries this deployment's marker ({whose}), but no live tenant or pooled \
                 database of the catalog owns it"
            ),
            Some(t) => format!(
                "holds the name of live tenant {} but carries the marker of another tenant \
                 ({whose}): a former tenant's leftover",
                t.slug
            ),
        },
    );
    f.marker_tenant = object.marker.tenant;
    if let Some(t) = &o.held_by {
        f.repairable = false;
        f.hint = Some(format!(
            "the control plane neither uses nor drops it; onboarding {} refuses it (if it has not \
             finished). Check whose data it holds, then drop or rename it by hand",
            t.slug
        ));
    }
    f
}

/// `s` on one line (errors of the server may span several).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Orchestrator {
    /// Runs [`Orchestrator::reconcile_once`] every `policy.interval` (nothing when `None`).
    pub fn start_reconcile_task(
        &self,
        policy: ReconcilePolicy,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let interval = policy.interval?;
        let this = self.clone();
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match this.reconcile_once(&policy).await {
                    Ok(r) if !r.findings.is_empty() => {
                        warn!(
                            findings = r.findings.len(),
                            "reconciliation found differences; GET /v1/reconciliation"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "reconciliation pass failed"),
                }
            }
        }))
    }
}
