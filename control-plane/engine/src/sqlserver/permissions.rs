//! Effective permissions of a SQL Server database principal, computed from what the catalog
//! views store: `sys.database_permissions` (GRANT, GRANT_WITH_GRANT_OPTION and DENY on the
//! database, a schema, an object or a principal) and `sys.database_role_members`.
//!
//! SQL Server's own answer (`fn_my_permissions`, `HAS_PERMS_BY_NAME`) is per caller, so it would
//! mean impersonating every user; the catalog holds everything needed for the permissions the
//! evidence cares about. The rules applied, after Microsoft's "Permissions hierarchy" and
//! "GRANT/DENY Object Permissions" pages:
//! - a principal holds what it, every role it belongs to (transitively) and, for users, the
//!   `public` role hold;
//! - a permission on the database covers every schema and object in it, one on a schema every
//!   object in the schema, and CONTROL implies every permission on its securable;
//! - a DENY at any of those levels, to any of those principals, wins over every GRANT;
//! - the fixed roles count as what they are documented to hold: `db_owner` CONTROL on the
//!   database, `db_datareader` SELECT, `db_datawriter` INSERT, UPDATE and DELETE, and
//!   `db_denydatareader` / `db_denydatawriter` the matching DENYs.
//!
//! Column-level grants are reported as stored and left out of the effective set, and
//! ownership chaining (how `app_rw` reaches tables through dbo-owned procedures) is not a
//! permission at all, so it does not appear here either: that is the point of the model.

use std::collections::{BTreeMap, BTreeSet};

use crate::evidence::Effective;

/// Where a stored permission applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Securable {
    /// The database (class 0).
    Database,
    /// A schema (class 3).
    Schema(String),
    /// An object (class 1, `minor_id` 0).
    Object {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
    },
    /// A column of an object (class 1, `minor_id` > 0): reported, not evaluated.
    Column,
    /// A database principal (class 4), e.g. IMPERSONATE on a user.
    Principal(String),
    /// Anything else (certificates, types, ...): reported, not evaluated.
    Other,
}

/// One row of `sys.database_permissions`, with names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPermission {
    /// The grantee's name.
    pub grantee: String,
    /// Where it applies.
    pub securable: Securable,
    /// `permission_name`.
    pub permission: String,
    /// `state = 'D'`.
    pub deny: bool,
}

/// One object of the tenant's schemas (`sys.objects`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseObject {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// `type_desc`, e.g. `USER_TABLE`, `SQL_STORED_PROCEDURE`.
    pub type_desc: String,
}

/// The evidence's object type for a `type_desc`, and the permissions evaluated on it.
pub fn object_kind(type_desc: &str) -> Option<(&'static str, &'static [&'static str])> {
    const TABLE: &[&str] = &["DELETE", "INSERT", "SELECT", "UPDATE"];
    match type_desc {
        "USER_TABLE" => Some(("table", TABLE)),
        "VIEW" => Some(("view", TABLE)),
        "SQL_STORED_PROCEDURE" | "CLR_STORED_PROCEDURE" => Some(("procedure", &["EXECUTE"])),
        "SQL_SCALAR_FUNCTION" | "CLR_SCALAR_FUNCTION" => Some(("function", &["EXECUTE"])),
        "SQL_INLINE_TABLE_VALUED_FUNCTION" | "SQL_TABLE_VALUED_FUNCTION" => {
            Some(("function", &["SELECT"]))
        }
        _ => None,
    }
}

/// The roles `principal` belongs to, directly or through other roles; `memberships` holds
/// `(member, role)` pairs. Cycles (which SQL Server refuses anyway) end the walk.
pub fn roles_of(principal: &str, memberships: &[(String, String)]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut queue = vec![principal.to_owned()];
    while let Some(member) = queue.pop() {
        for (m, role) in memberships {
            if *m == member && found.insert(role.clone()) {
                queue.push(role.clone());
            }
        }
    }
    found
}

/// Stored permissions the fixed database roles stand for.
fn fixed_role_permissions(role: &str) -> Vec<(&'static str, bool)> {
    match role {
        "db_owner" => vec![("CONTROL", false)],
        "db_datareader" => vec![("SELECT", false)],
        "db_datawriter" => vec![("INSERT", false), ("UPDATE", false), ("DELETE", false)],
        "db_denydatareader" => vec![("SELECT", true)],
        "db_denydatawriter" => vec![("INSERT", true), ("UPDATE", true), ("DELETE", true)],
        _ => vec![],
    }
}

/// What `principal` can do, per object of `objects`, per principal it holds a permission on,
/// and on the database (`database` is its name). `is_role`: a role does not get `public`'s
/// permissions (only users are members of `public`).
pub fn effective(
    principal: &str,
    is_role: bool,
    database: &str,
    memberships: &[(String, String)],
    stored: &[StoredPermission],
    objects: &[DatabaseObject],
) -> Vec<Effective> {
    let mut holders = roles_of(principal, memberships);
    holders.insert(principal.to_owned());
    if !is_role {
        holders.insert("public".to_owned());
    }
    let mut held: Vec<StoredPermission> = stored
        .iter()
        .filter(|p| holders.contains(&p.grantee))
        .cloned()
        .collect();
    for role in &holders {
        for (permission, deny) in fixed_role_permissions(role) {
            held.push(StoredPermission {
                grantee: role.clone(),
                securable: Securable::Database,
                permission: permission.to_owned(),
                deny,
            });
        }
    }
    // (granted, denied) for one permission over the securables that cover it.
    let decide = |permission: &str, covers: &dyn Fn(&Securable) -> bool| -> bool {
        let matching = |p: &&StoredPermission| {
            covers(&p.securable) && (p.permission == permission || p.permission == "CONTROL")
        };
        let denied = held.iter().filter(matching).any(|p| p.deny);
        let granted = held.iter().filter(matching).any(|p| !p.deny);
        granted && !denied
    };
    let mut out = Vec::new();

    // The database: CONNECT, and whatever database-wide permission is stored for a holder.
    let mut database_permissions: BTreeSet<String> = held
        .iter()
        .filter(|p| p.securable == Securable::Database && p.permission != "CONTROL")
        .map(|p| p.permission.clone())
        .collect();
    database_permissions.insert("CONNECT".to_owned());
    let database_held: Vec<String> = database_permissions
        .into_iter()
        .filter(|perm| decide(perm, &|s| *s == Securable::Database))
        .collect();
    if !database_held.is_empty() {
        out.push(Effective {
            object_type: "database".into(),
            object: database.to_owned(),
            permissions: database_held,
        });
    }

    for object in objects {
        let Some((object_type, candidates)) = object_kind(&object.type_desc) else {
            continue;
        };
        let covers = |s: &Securable| match s {
            Securable::Database => true,
            Securable::Schema(schema) => *schema == object.schema,
            Securable::Object { schema, name } => *schema == object.schema && *name == object.name,
            _ => false,
        };
        let permissions: Vec<String> = candidates
            .iter()
            .filter(|perm| decide(perm, &covers))
            .map(|perm| perm.to_string())
            .collect();
        if !permissions.is_empty() {
            out.push(Effective {
                object_type: object_type.into(),
                object: format!("{}.{}", object.schema, object.name),
                permissions,
            });
        }
    }

    // Principals (IMPERSONATE, ALTER, ...): by what is stored on each, database-wide grants
    // aside.
    let mut on_principals: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in held.iter().filter(|p| !p.deny) {
        if let Securable::Principal(target) = &p.securable {
            on_principals
                .entry(target.clone())
                .or_default()
                .insert(p.permission.clone());
        }
    }
    for (target, permissions) in on_principals {
        let permissions: Vec<String> = permissions
            .into_iter()
            .filter(|perm| {
                decide(perm, &|s| {
                    matches!(s, Securable::Principal(t) if *t == target)
                        || *s == Securable::Database
                })
            })
            .collect();
        if !permissions.is_empty() {
            out.push(Effective {
                object_type: "user".into(),
                object: target,
                permissions,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn grant(grantee: &str, securable: Securable, permission: &str) -> StoredPermission {
        StoredPermission {
            grantee: grantee.into(),
            securable,
            permission: permission.into(),
            deny: false,
        }
    }

    fn deny(grantee: &str, securable: Securable, permission: &str) -> StoredPermission {
        StoredPermission {
            deny: true,
            ..grant(grantee, securable, permission)
        }
    }

    fn object(schema: &str, name: &str) -> Securable {
        Securable::Object {
            schema: schema.into(),
            name: name.into(),
        }
    }

    fn schema(name: &str) -> Securable {
        Securable::Schema(name.into())
    }

    /// The tenant model of V10__grants.sql and the engine's memberships.
    fn tenant() -> (
        Vec<(String, String)>,
        Vec<StoredPermission>,
        Vec<DatabaseObject>,
    ) {
        let memberships = [
            ("app_a", "app_rw"),
            ("app_b", "app_rw"),
            ("audit_admin", "audit_admin_role"),
            ("investigator_reader", "reader_role"),
        ]
        .map(|(m, r)| (m.to_owned(), r.to_owned()))
        .to_vec();
        let mut stored = vec![
            grant("dbo", Securable::Database, "CONNECT"),
            grant("app_a", Securable::Database, "CONNECT"),
            deny("app_b", Securable::Database, "CONNECT"),
            grant("audit_admin", Securable::Database, "CONNECT"),
            grant("readonly_investigator", Securable::Database, "CONNECT"),
            grant("app_rw", schema("app"), "EXECUTE"),
            grant("audit_admin_role", object("audit", "AuditEvents"), "SELECT"),
            grant(
                "audit_admin_role",
                object("audit", "PurgeBefore"),
                "EXECUTE",
            ),
            grant("reader_role", schema("app"), "SELECT"),
            grant("reader_role", schema("history"), "SELECT"),
            deny("reader_role", schema("app"), "EXECUTE"),
            deny("reader_role", schema("history"), "DELETE"),
            grant(
                "readonly_investigator",
                Securable::Principal("investigator_reader".into()),
                "IMPERSONATE",
            ),
            grant(
                "readonly_investigator",
                object("audit", "RecordInvestigation"),
                "EXECUTE",
            ),
            grant(
                "public",
                Securable::Database,
                "VIEW ANY COLUMN MASTER KEY DEFINITION",
            ),
        ];
        for who in ["app_rw", "audit_admin_role", "reader_role", "public"] {
            for perm in ["INSERT", "UPDATE", "DELETE"] {
                stored.push(deny(who, object("audit", "AuditEvents"), perm));
                stored.push(deny(who, object("history", "CustomersHistory"), perm));
            }
        }
        let objects = [
            ("app", "Customers", "USER_TABLE"),
            ("app", "CustomerUpsert", "SQL_STORED_PROCEDURE"),
            ("audit", "AuditEvents", "USER_TABLE"),
            ("audit", "PurgeBefore", "SQL_STORED_PROCEDURE"),
            ("audit", "RecordInvestigation", "SQL_STORED_PROCEDURE"),
            ("history", "CustomersHistory", "USER_TABLE"),
            ("audit", "AuditEvents_NoUpdate", "SQL_TRIGGER"),
        ]
        .map(|(s, n, t)| DatabaseObject {
            schema: s.into(),
            name: n.into(),
            type_desc: t.into(),
        })
        .to_vec();
        (memberships, stored, objects)
    }

    fn summary(e: &[Effective]) -> Vec<String> {
        e.iter()
            .map(|e| format!("{} {}", e.object, e.permissions.join(",")))
            .collect()
    }

    #[test]
    fn the_app_executes_procedures_and_touches_no_table() {
        let (m, s, o) = tenant();
        let e = effective("app_a", false, "tenant_acme", &m, &s, &o);
        assert_eq!(
            summary(&e),
            [
                "tenant_acme CONNECT,VIEW ANY COLUMN MASTER KEY DEFINITION",
                "app.CustomerUpsert EXECUTE"
            ]
        );
        // app_b's CONNECT is denied (an emergency rotation disabled it).
        let e = effective("app_b", false, "tenant_acme", &m, &s, &o);
        assert_eq!(
            summary(&e)[0],
            "tenant_acme VIEW ANY COLUMN MASTER KEY DEFINITION"
        );
        assert_eq!(summary(&e)[1], "app.CustomerUpsert EXECUTE");
    }

    #[test]
    fn the_reader_reads_and_deny_wins() {
        let (m, s, o) = tenant();
        let e = effective("investigator_reader", false, "tenant_acme", &m, &s, &o);
        assert_eq!(
            summary(&e)[1..],
            ["app.Customers SELECT", "history.CustomersHistory SELECT"]
        );
        // A grant of DELETE on the whole database does not reach a history table DENYing it.
        let mut s2 = s.clone();
        s2.push(grant("reader_role", Securable::Database, "DELETE"));
        let e = effective("investigator_reader", false, "tenant_acme", &m, &s2, &o);
        assert!(summary(&e).contains(&"app.Customers DELETE,SELECT".to_owned()));
        assert!(summary(&e).contains(&"history.CustomersHistory SELECT".to_owned()));
    }

    #[test]
    fn the_investigator_only_impersonates_and_records() {
        let (m, s, o) = tenant();
        let e = effective("readonly_investigator", false, "tenant_acme", &m, &s, &o);
        assert_eq!(
            summary(&e)[1..],
            [
                "audit.RecordInvestigation EXECUTE",
                "investigator_reader IMPERSONATE"
            ]
        );
        assert_eq!(e[2].object_type, "user");
    }

    #[test]
    fn fixed_roles_and_control_count() {
        let (mut m, s, o) = tenant();
        m.push(("app_a".into(), "db_owner".into()));
        let e = effective("app_a", false, "tenant_acme", &m, &s, &o);
        // CONTROL on the database, but the DENYs on audit and history still hold.
        assert!(summary(&e).contains(&"audit.AuditEvents SELECT".to_owned()));
        assert!(summary(&e).contains(&"app.Customers DELETE,INSERT,SELECT,UPDATE".to_owned()));
        m.pop();
        m.push(("reader_role".into(), "db_denydatareader".into()));
        let e = effective("investigator_reader", false, "tenant_acme", &m, &s, &o);
        assert!(!summary(&e).iter().any(|l| l.contains("SELECT")), "{e:?}");
        let mut s2 = s.clone();
        s2.push(grant("app_rw", object("audit", "AuditEvents"), "CONTROL"));
        let e = effective("app_a", false, "tenant_acme", &m, &s2, &o);
        assert!(summary(&e).contains(&"audit.AuditEvents SELECT".to_owned()));
    }

    #[test]
    fn roles_are_followed_transitively_without_looping() {
        let m = [("a", "r1"), ("r1", "r2"), ("r2", "r1"), ("b", "r3")]
            .map(|(x, y)| (x.to_owned(), y.to_owned()))
            .to_vec();
        assert_eq!(
            roles_of("a", &m).into_iter().collect::<Vec<_>>(),
            ["r1", "r2"]
        );
        // A role gets nothing from public.
        let s = vec![grant("public", schema("app"), "SELECT")];
        let o = tenant().2;
        assert!(effective("r1", true, "db", &m, &s, &o).is_empty());
        assert!(!effective("a", false, "db", &m, &s, &o).is_empty());
        assert_eq!(object_kind("SQL_TRIGGER"), None);
        assert_eq!(
            object_kind("SQL_INLINE_TABLE_VALUED_FUNCTION").unwrap().1,
            ["SELECT"]
        );
    }
}
