//! The tenant audit chain's hash, format 2, computed the way both engines compute it
//! (`audit.event_hash_v2` in PostgreSQL, `audit.EventHashV2` in SQL Server), so an exported log
//! can be checked without the database and the three implementations can be held to one
//! definition by tests.
//!
//! Format 1 joined the fields with `|`, which let text move between fields without changing the
//! hash (`actor = "a|b", action = "c"` hashed like `actor = "a", action = "b|c"`). Format 2
//! length-prefixes every field, so the input names each field's bytes exactly:
//!
//! ```text
//! hash  = SHA-256(prev_hash || UTF-8(input))
//! input = "tcp-audit-v2," F(id) F(occurred_at) F(origin) F(principal) F(actor) F(action)
//!         F(detail) F(request_id)
//! F(x)  = "-," when x is null, else <UTF-8 byte length of x> ":" x ","
//! ```
//!
//! `id` is its decimal text; `occurred_at` is UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`; `detail` is
//! the JSON text exactly as the database stores it (PostgreSQL: `jsonb` text output).

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The fields of one format 2 event, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFields<'a> {
    /// Position in the chain.
    pub id: i64,
    /// When it was appended (microsecond precision).
    pub occurred_at: DateTime<Utc>,
    /// `control_plane` or `application` (verified by the database).
    pub origin: Option<&'a str>,
    /// The database login that wrote it (verified).
    pub principal: &'a str,
    /// Who it was written for (asserted by the writer).
    pub actor: &'a str,
    /// What happened.
    pub action: &'a str,
    /// The stored JSON text.
    pub detail: &'a str,
    /// The request id (asserted by the writer).
    pub request_id: Option<&'a str>,
}

/// The hash input of a format 2 event (the bytes after `prev_hash`).
pub fn input_v2(e: &EventFields<'_>) -> String {
    fn field(out: &mut String, value: Option<&str>) {
        match value {
            None => out.push_str("-,"),
            Some(v) => {
                out.push_str(&v.len().to_string());
                out.push(':');
                out.push_str(v);
                out.push(',');
            }
        }
    }
    let mut out = String::from("tcp-audit-v2,");
    field(&mut out, Some(&e.id.to_string()));
    field(
        &mut out,
        Some(&e.occurred_at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
    );
    field(&mut out, e.origin);
    field(&mut out, Some(e.principal));
    field(&mut out, Some(e.actor));
    field(&mut out, Some(e.action));
    field(&mut out, Some(e.detail));
    field(&mut out, e.request_id);
    out
}

/// SHA-256 of `prev_hash` followed by the event's format 2 input.
pub fn event_hash_v2(prev_hash: &[u8], e: &EventFields<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(input_v2(e).as_bytes());
    h.finalize().into()
}

/// A fixed example event and its hash, checked against each engine's own function by the
/// conformance suite (`audit_hash_matches_the_specification`).
pub fn test_vector() -> (EventFields<'static>, &'static str) {
    use chrono::TimeZone as _;
    let occurred_at = Utc
        .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
        .single()
        .unwrap_or_default()
        + chrono::Duration::microseconds(6);
    (
        EventFields {
            id: 7,
            occurred_at,
            origin: Some("control_plane"),
            principal: "t_acme_audit_admin",
            actor: "Zoë|ops ✓ 🦀",
            action: "audit.purge",
            detail: r#"{"a": 1}"#,
            request_id: None,
        },
        "28d723fa1657e5982a200ea38695702fdbff4e03a39e2531807252d899e61810",
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_input_length_prefixes_every_field() {
        let (e, _) = test_vector();
        assert_eq!(
            input_v2(&e),
            "tcp-audit-v2,1:7,27:2026-01-02T03:04:05.000006Z,13:control_plane,\
             18:t_acme_audit_admin,17:Zoë|ops ✓ 🦀,11:audit.purge,8:{\"a\": 1},-,"
        );
    }

    #[test]
    fn text_cannot_move_between_fields() {
        let (e, _) = test_vector();
        let a = EventFields {
            actor: "a|b",
            action: "c",
            ..e.clone()
        };
        let b = EventFields {
            actor: "a",
            action: "b|c",
            ..e.clone()
        };
        assert_ne!(event_hash_v2(&[0; 32], &a), event_hash_v2(&[0; 32], &b));
        // An absent request id differs from an empty one.
        let empty = EventFields {
            request_id: Some(""),
            ..e.clone()
        };
        assert_ne!(event_hash_v2(&[0; 32], &e), event_hash_v2(&[0; 32], &empty));
    }

    #[test]
    fn the_test_vector_holds() {
        let (e, expected) = test_vector();
        assert_eq!(crate::archive::hex(&event_hash_v2(&[0; 32], &e)), expected);
    }
}
