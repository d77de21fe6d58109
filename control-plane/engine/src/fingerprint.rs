//! A tenant database's schema fingerprint: every table column, index, trigger, routine (by a
//! hash of its definition), owner and permission (GRANT and, on SQL Server, DENY) of the
//! tenant's schemas, and its principals' attributes and role memberships, read live from the
//! database, one line per object, with the tenant's own principal names replaced
//! by their roles (`owner`, `app_rw`, ...) so two tenants on one release compare equal. The
//! fingerprint is a hash of the sorted lines; two snapshots that differ name the lines that
//! differ.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TenantNames;

/// The schemas a fingerprint covers.
pub const SCHEMAS: &[&str] = &["app", "audit", "history", "platform"];

/// One object as the engines read it: its kind, its name, what it is, and the principal a
/// permission is for.
#[derive(Clone, Debug)]
pub struct RawObject {
    /// `column`, `index`, `routine`, `grant`, `deny`.
    pub kind: String,
    /// Qualified name (`app.customers.email`, `app.customer_upsert(uuid, text)`).
    pub name: String,
    /// Its type, definition hash or permission.
    pub detail: String,
    /// For a permission: who holds it.
    pub principal: Option<String>,
}

/// A tenant database's schema, as one sorted line per object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaSnapshot {
    /// The hash of `objects` (16 hex digits).
    pub fingerprint: String,
    /// Every object, sorted.
    pub objects: Vec<String>,
}

/// The role a principal name stands for in `names`, or the name itself (`PUBLIC`, `dbo`, a
/// principal that is no tenant's: worth seeing).
fn role_of<'a>(names: &'a TenantNames, principal: &'a str) -> &'a str {
    let roles = [
        (&names.owner, "owner"),
        (&names.app_rw, "app_rw"),
        (&names.app_a, "app_a"),
        (&names.app_b, "app_b"),
        (&names.audit_admin, "audit_admin"),
        (&names.reader, "reader"),
        (&names.investigator, "investigator"),
    ];
    roles
        .iter()
        .find(|(n, _)| n.as_str() == principal)
        .map_or(principal, |(_, role)| role)
}

impl SchemaSnapshot {
    /// The snapshot of `raw`, the tenant's principals replaced by their roles.
    pub fn of(names: &TenantNames, raw: Vec<RawObject>) -> SchemaSnapshot {
        let mut objects: Vec<String> = raw
            .into_iter()
            .map(|o| {
                // A principal's own name (a role line, a membership) is named by role too.
                let name = role_of(names, &o.name);
                match &o.principal {
                    Some(p) => format!(
                        "{} {} on {} to {}",
                        o.kind,
                        o.detail,
                        name,
                        role_of(names, p)
                    ),
                    None => format!("{} {} {}", o.kind, name, o.detail),
                }
            })
            .collect();
        objects.sort();
        objects.dedup();
        let mut hash = Sha256::new();
        for line in &objects {
            hash.update(line.as_bytes());
            hash.update(b"\n");
        }
        let digest = hash.finalize();
        let fingerprint = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        SchemaSnapshot {
            fingerprint,
            objects,
        }
    }

    /// PostgreSQL: the columns of business tables that their history table lacks (a migration
    /// added a column without `platform.sync_history`; the table's next update would fail).
    /// SQL Server's system versioning keeps the history table's columns in step itself.
    pub fn history_gaps(&self) -> Vec<String> {
        let columns: Vec<(&str, &str)> = self
            .objects
            .iter()
            .filter_map(|l| l.strip_prefix("column app."))
            .filter_map(|rest| rest.split(' ').next())
            .filter_map(|qualified| qualified.split_once('.'))
            .collect();
        let mut gaps = Vec::new();
        for (table, column) in columns {
            let history = format!("column history.{table}_history.");
            if !self.objects.iter().any(|l| l.starts_with(&history)) {
                continue; // no history table at all: the versioning check names it
            }
            let wanted = format!("{history}{column} ");
            if !self.objects.iter().any(|l| l.starts_with(&wanted)) {
                gaps.push(format!(
                    "history.{table}_history lacks column {column} of app.{table} \
                     (call platform.sync_history('app.{table}'))"
                ));
            }
        }
        gaps
    }

    /// What differs from `expected`: lines only there (`-`) and lines only here (`+`).
    pub fn diff(&self, expected: &SchemaSnapshot) -> Vec<String> {
        let mine: std::collections::BTreeSet<&String> = self.objects.iter().collect();
        let theirs: std::collections::BTreeSet<&String> = expected.objects.iter().collect();
        let mut out: Vec<String> = theirs
            .difference(&mine)
            .map(|l| format!("missing: {l}"))
            .collect();
        out.extend(mine.difference(&theirs).map(|l| format!("extra: {l}")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(slug: &str) -> TenantNames {
        let n = |p: &str| format!("t_{slug}_{p}");
        TenantNames {
            tenant_id: None,
            database: n("db"),
            owner: n("owner"),
            app_rw: n("app_rw"),
            app_a: n("app_a"),
            app_b: n("app_b"),
            audit_admin: n("audit_admin"),
            reader: n("reader"),
            investigator: n("investigator"),
        }
    }

    fn raw(slug: &str, extra: bool) -> Vec<RawObject> {
        let mut v = vec![
            RawObject {
                kind: "column".into(),
                name: "app.customers.email".into(),
                detail: "text".into(),
                principal: None,
            },
            RawObject {
                kind: "grant".into(),
                name: "app.customer_upsert(uuid)".into(),
                detail: "EXECUTE".into(),
                principal: Some(format!("t_{slug}_app_rw")),
            },
        ];
        if extra {
            v.push(RawObject {
                kind: "column".into(),
                name: "app.customers.secret".into(),
                detail: "text".into(),
                principal: None,
            });
        }
        v
    }

    #[test]
    fn a_column_its_history_lacks_is_named() {
        let snapshot = SchemaSnapshot {
            fingerprint: String::new(),
            objects: vec![
                "column app.customers.id uuid not null".into(),
                "column app.customers.note text".into(),
                "column app.views_only.x text".into(),
                "column history.customers_history.id uuid".into(),
            ],
        };
        assert_eq!(
            snapshot.history_gaps(),
            vec![
                "history.customers_history lacks column note of app.customers \
                  (call platform.sync_history('app.customers'))"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn two_tenants_on_one_schema_compare_equal_and_a_change_is_named() {
        let a = SchemaSnapshot::of(&names("acme"), raw("acme", false));
        let b = SchemaSnapshot::of(&names("beta"), raw("beta", false));
        assert_eq!(a, b);
        assert!(a
            .objects
            .contains(&"grant EXECUTE on app.customer_upsert(uuid) to app_rw".to_owned()));
        let drifted = SchemaSnapshot::of(&names("beta"), raw("beta", true));
        assert_ne!(drifted.fingerprint, a.fingerprint);
        assert_eq!(
            drifted.diff(&a),
            vec!["extra: column app.customers.secret text".to_owned()]
        );
        assert_eq!(
            a.diff(&drifted),
            vec!["missing: column app.customers.secret text".to_owned()]
        );
    }
}
