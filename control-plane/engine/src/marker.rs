//! The marker every database (and on PostgreSQL every role) the control plane creates carries:
//! the deployment's instance (the catalog's id, [`Marker::instance`]) and the tenant it is for,
//! or that it is a pooled database. PostgreSQL keeps it as the object's comment (`COMMENT ON
//! DATABASE` / `COMMENT ON ROLE`, which a rename keeps); SQL Server as the database's extended
//! property [`SQLSERVER_PROPERTY`] (SQL Server's contained users live inside the database and
//! go with it).
//!
//! The reconciler (`workflows::reconcile`) reports an object as an orphan, and may drop it,
//! only when its marker names the reconciler's own instance: an object without a marker, or
//! with another deployment's, is never touched.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a marker's text starts with.
pub const PREFIX: &str = "tenant-control-plane:";

/// The name of SQL Server's database-level extended property that holds the marker.
pub const SQLSERVER_PROPERTY: &str = "tenant_control_plane";

/// Who made an object, and for what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The control-plane deployment (`CatalogStore::instance_id`).
    pub instance: Uuid,
    /// The tenant the object is for (`None`: a pooled database or its stand-in roles, or an
    /// object made outside a workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Uuid>,
    /// A warm pool's database (or stand-in role), not yet a tenant's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pooled: bool,
}

impl Marker {
    /// A tenant's object.
    pub fn tenant(instance: Uuid, tenant: Option<Uuid>) -> Marker {
        Marker {
            instance,
            tenant,
            pooled: false,
        }
    }

    /// A pooled database's (or its stand-in roles').
    pub fn pooled(instance: Uuid) -> Marker {
        Marker {
            instance,
            tenant: None,
            pooled: true,
        }
    }

    /// The text stored on the object: [`PREFIX`] and the marker as JSON (only hexadecimal,
    /// dashes, letters and JSON punctuation: no quote a SQL literal would need to escape).
    pub fn text(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("{PREFIX}{json}")
    }

    /// The marker in an object's comment or property; `None` for anything else (no comment, a
    /// DBA's comment, a marker of a format this version does not know).
    pub fn parse(text: &str) -> Option<Marker> {
        serde_json::from_str(text.strip_prefix(PREFIX)?).ok()
    }

    /// Whether an existing object whose marker text is `existing` is someone else's than the
    /// one `self` would mark: another deployment's, or another tenant's (a leftover of a former
    /// tenant of the same slug). An object without a marker (or a pooled one of this deployment
    /// being adopted) is not: creating it may have been interrupted before it was marked.
    pub fn foreign(&self, existing: Option<&str>) -> bool {
        let Some(theirs) = existing.and_then(Marker::parse) else {
            return false;
        };
        theirs.instance != self.instance
            || matches!((theirs.tenant, self.tenant), (Some(a), Some(b)) if a != b)
    }

    /// The error for an object that [`Marker::foreign`] says is someone else's.
    pub fn refuse(&self, what: &str, existing: Option<&str>) -> crate::EngineError {
        crate::EngineError::Foreign(format!(
            "{what} already exists and carries another {} marker ({}); it is not taken over: \
             check whose it is, and drop or rename it by hand",
            if existing.and_then(Marker::parse).map(|m| m.instance) == Some(self.instance) {
                "tenant's"
            } else {
                "deployment's"
            },
            existing.unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_ignores_other_comments() {
        let instance = Uuid::new_v4();
        let tenant = Marker::tenant(instance, Some(Uuid::new_v4()));
        assert_eq!(Marker::parse(&tenant.text()), Some(tenant.clone()));
        assert!(!tenant.text().contains('\''));
        let pooled = Marker::pooled(instance);
        assert_eq!(
            pooled.text(),
            format!("{PREFIX}{{\"instance\":\"{instance}\",\"pooled\":true}}")
        );
        assert_eq!(Marker::parse(&pooled.text()), Some(pooled));
        assert_eq!(Marker::parse("owned by the billing team"), None);
        assert_eq!(Marker::parse(&format!("{PREFIX}{{\"instance\":7}}")), None);
        assert_eq!(Marker::parse(""), None);
    }

    #[test]
    fn another_tenants_or_deployments_object_is_foreign() {
        let instance = Uuid::new_v4();
        let mine = Marker::tenant(instance, Some(Uuid::new_v4()));
        let former = Marker::tenant(instance, Some(Uuid::new_v4()));
        let elsewhere = Marker::tenant(Uuid::new_v4(), mine.tenant);
        assert!(mine.foreign(Some(&former.text())));
        assert!(mine.foreign(Some(&elsewhere.text())));
        assert!(!mine.foreign(Some(&mine.text())));
        assert!(!mine.foreign(Some(&Marker::pooled(instance).text())));
        assert!(!mine.foreign(Some(&Marker::tenant(instance, None).text())));
        assert!(!mine.foreign(None));
        assert!(!mine.foreign(Some("a DBA's note")));
        let e = mine
            .refuse("database tenant_acme", Some(&former.text()))
            .to_string();
        assert!(e.contains("another tenant's marker"), "{e}");
    }
}
