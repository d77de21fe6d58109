//! A tenant's audit archive: every event of its audit log as the database stored it (each with
//! its predecessor's hash and its own), written before the database is dropped, as the payload
//! of a signed document. [`verify_archive`] checks it without any database: every format 2 hash
//! recomputed ([`crate::audit_hash`]), every link from one event to the next, and the head the
//! payload names. With the envelope's signature ([`crate::verify`]) and the file's SHA-256 (the
//! deletion certificate quotes it), a change to any byte is found.
//!
//! ```json
//! {
//!   "document": "tenant-audit-archive", "format": 1,
//!   "tenant": {"id": "...", "slug": "acme-corp"},
//!   "engine": "postgres", "server": "db1:5432", "database": "tenant_acme_corp",
//!   "operation_id": "...", "archived_at": "2026-12-07T10:00:00Z",
//!   "chain": {"events": 42, "first_prev_hash": "00…00", "head": {"id": 42, "hash": "…"}},
//!   "events": [{"id": 1, "occurred_at": "…", "origin": "control_plane", "principal": "…",
//!               "actor": "…", "action": "tenant.provisioned", "detail": "{\"database\": …}",
//!               "request_id": null, "hash_version": 2, "prev_hash": "00…00", "hash": "…"}]
//! }
//! ```
//!
//! `detail` is the stored JSON *text*, byte for byte (the hash covers that text, and PostgreSQL's
//! `jsonb` output is not what a JSON serializer writes). The first event chains to genesis (32
//! zero bytes) unless an audit purge removed the events before it; then its `prev_hash` is the
//! purge's anchor, which the purge event in the archive names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit_hash::{event_hash_v2, EventFields};

/// The payload's `document` member.
pub const DOCUMENT: &str = "tenant-audit-archive";
/// The payload's `format` member.
pub const FORMAT: u32 = 1;
/// The hash a chain starts from: 32 zero bytes, hex.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event as its tenant database stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivedEvent {
    /// Position in the chain.
    pub id: i64,
    /// When it was appended.
    pub occurred_at: DateTime<Utc>,
    /// Verified by the database: `control_plane` or `application` (`None` before format 2).
    pub origin: Option<String>,
    /// Verified by the database: the login that wrote it.
    pub principal: String,
    /// Asserted by the writer.
    pub actor: String,
    /// What happened.
    pub action: String,
    /// The stored JSON text, byte for byte.
    pub detail: String,
    /// Asserted by the writer.
    pub request_id: Option<String>,
    /// 1 or 2 (format 1 hashes are linked but not recomputed here).
    pub hash_version: i16,
    /// The predecessor's hash (genesis for the first event), lower-case hex.
    pub prev_hash: String,
    /// This event's hash, lower-case hex.
    pub hash: String,
}

/// The chain a payload declares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSummary {
    /// How many events the archive holds.
    pub events: usize,
    /// The first event's predecessor: genesis, or the anchor of the purge before it.
    pub first_prev_hash: Option<String>,
    /// The last event.
    pub head: Option<ChainHead>,
}

/// An event of the chain by id and hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    /// Its id.
    pub id: i64,
    /// Its hash, lower-case hex.
    pub hash: String,
}

/// The chain part of a payload for `events` (oldest first).
pub fn summarize(events: &[ArchivedEvent]) -> ChainSummary {
    ChainSummary {
        events: events.len(),
        first_prev_hash: events.first().map(|e| e.prev_hash.clone()),
        head: events.last().map(|e| ChainHead {
            id: e.id,
            hash: e.hash.clone(),
        }),
    }
}

/// What [`verify_archive`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedArchive {
    /// The tenant's slug.
    pub slug: String,
    /// Events in the archive.
    pub events: usize,
    /// Of those, format 2 events whose hash was recomputed.
    pub recomputed: usize,
    /// Whether the first event chains to genesis (else to a purge's anchor).
    pub from_genesis: bool,
    /// The head.
    pub head: Option<ChainHead>,
}

/// Why an archive does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// Not an audit archive of this format.
    #[error("not a tenant audit archive of format {FORMAT}: {0}")]
    Shape(String),
    /// An event's stored hash is not the hash of its content.
    #[error("event {id}: its hash does not match its content (changed after it was written)")]
    Hash {
        /// The event.
        id: i64,
    },
    /// An event does not chain to the one before it.
    #[error(
        "event {id}: does not chain to event {previous} (an event was removed, added or reordered)"
    )]
    Link {
        /// The event.
        id: i64,
        /// The one before it in the archive.
        previous: i64,
    },
    /// The first event chains neither to genesis nor to a purge's anchor in the archive.
    #[error("event {id}: chains to {prev_hash}, which is neither genesis nor the anchor of a purge in the archive")]
    Start {
        /// The first event.
        id: i64,
        /// What it chains to.
        prev_hash: String,
    },
    /// The declared chain (count, start or head) is not the events'.
    #[error("the archive declares {declared}, its events show {actual}")]
    Declared {
        /// What the payload says.
        declared: String,
        /// What the events show.
        actual: String,
    },
}

/// Checks an archive's payload (the signed envelope's `payload`): its shape, every format 2
/// hash, every link, and the declared count and head.
pub fn verify_archive(payload: &Value) -> Result<VerifiedArchive, ArchiveError> {
    let shape = |m: &str| ArchiveError::Shape(m.to_owned());
    if payload.get("document").and_then(Value::as_str) != Some(DOCUMENT) {
        return Err(shape("document is not tenant-audit-archive"));
    }
    if payload.get("format").and_then(Value::as_u64) != Some(u64::from(FORMAT)) {
        return Err(shape("unknown format"));
    }
    let slug = payload
        .pointer("/tenant/slug")
        .and_then(Value::as_str)
        .ok_or_else(|| shape("no tenant.slug"))?
        .to_owned();
    let events: Vec<ArchivedEvent> = serde_json::from_value(
        payload
            .get("events")
            .cloned()
            .ok_or_else(|| shape("no events"))?,
    )
    .map_err(|e| ArchiveError::Shape(format!("events: {e}")))?;
    let declared: ChainSummary = serde_json::from_value(
        payload
            .get("chain")
            .cloned()
            .ok_or_else(|| shape("no chain"))?,
    )
    .map_err(|e| ArchiveError::Shape(format!("chain: {e}")))?;
    let mut recomputed = 0;
    for (i, e) in events.iter().enumerate() {
        hex_32(&e.prev_hash).ok_or_else(|| shape("a prev_hash is not 32 bytes of hex"))?;
        hex_32(&e.hash).ok_or_else(|| shape("a hash is not 32 bytes of hex"))?;
        if e.hash_version == 2 {
            if !hash_matches(e) {
                return Err(ArchiveError::Hash { id: e.id });
            }
            recomputed += 1;
        }
        if i > 0 {
            let before = &events[i - 1];
            if e.id <= before.id || e.prev_hash != before.hash {
                return Err(ArchiveError::Link {
                    id: e.id,
                    previous: before.id,
                });
            }
        }
    }
    let from_genesis = events.first().is_none_or(|e| e.prev_hash == GENESIS);
    if let Some(first) = events.first().filter(|_| !from_genesis) {
        // A purge records the anchor it left (the hash the first remaining event chains to):
        // its event is in the archive, or beside it as `anchored_by` (a purge archive ends
        // before the purge that came after its first event), its hash checked like the others.
        let beside = payload
            .get("anchored_by")
            .filter(|v| !v.is_null())
            .map(|v| serde_json::from_value::<ArchivedEvent>(v.clone()))
            .transpose()
            .map_err(|e| ArchiveError::Shape(format!("anchored_by: {e}")))?;
        if let Some(purge) = &beside {
            if purge.hash_version == 2 && !hash_matches(purge) {
                return Err(ArchiveError::Hash { id: purge.id });
            }
        }
        let anchored = events
            .iter()
            .chain(beside.iter())
            .any(|e| names_anchor(e, &first.prev_hash));
        if !anchored {
            return Err(ArchiveError::Start {
                id: first.id,
                prev_hash: first.prev_hash.clone(),
            });
        }
    }
    let actual = summarize(&events);
    if declared != actual {
        return Err(ArchiveError::Declared {
            declared: serde_json::to_string(&declared).unwrap_or_default(),
            actual: serde_json::to_string(&actual).unwrap_or_default(),
        });
    }
    Ok(VerifiedArchive {
        slug,
        events: events.len(),
        recomputed,
        from_genesis,
        head: actual.head,
    })
}

/// Whether `event` is an audit purge whose recorded anchor is `anchor` (the hash the first
/// event after the purged range chains to).
pub fn names_anchor(event: &ArchivedEvent, anchor: &str) -> bool {
    event.action == "audit.purge"
        && serde_json::from_str::<Value>(&event.detail)
            .ok()
            .and_then(|d| d.get("anchor").and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|a| a.eq_ignore_ascii_case(anchor))
}

/// Verifies a tenant's chain from a trusted anchor to its head here, without the database's own
/// verification: `Some(events checked after the anchor)` when `events` (oldest first) begin with
/// the anchor event itself (its id and hash, its hash recomputed), every later event is format
/// 2, one id after its predecessor, chains to its hash and recomputes, and the last of them is
/// `head` (the database's chain head, read in the same snapshot). `None` whenever any of that
/// does not hold or cannot be told here (a format 1 event, a gap, more events than were read,
/// an anchor gone): the caller then asks the database's own verification, which also names the
/// first broken event. So this only ever confirms a chain the database's verification would
/// confirm too; it never reports one broken.
pub fn verify_from_anchor(
    anchor: &ChainHead,
    events: &[ArchivedEvent],
    head: &ChainHead,
) -> Option<i64> {
    let first = events.first()?;
    if first.id != anchor.id || !first.hash.eq_ignore_ascii_case(&anchor.hash) {
        return None;
    }
    verify_run(events, head).map(|n| n - 1)
}

/// [`verify_from_anchor`] from genesis: `Some(events checked)` when the first event is id 1
/// chained to genesis and the rest holds as there; `None` otherwise (a purged log starts at a
/// purge's anchor, left to the database).
pub fn verify_from_genesis(events: &[ArchivedEvent], head: &ChainHead) -> Option<i64> {
    let first = events.first()?;
    if first.id != 1 || first.prev_hash != GENESIS {
        return None;
    }
    verify_run(events, head)
}

/// `Some(events.len())` when every event is format 2 with a hash that recomputes, each after
/// the first one id after its predecessor and chained to its hash, and the last is `head`.
/// An event dated outside the years 1 to 9999 is left to the database: there chrono's `%Y` and
/// PostgreSQL's `YYYY` write the year differently.
fn verify_run(events: &[ArchivedEvent], head: &ChainHead) -> Option<i64> {
    use chrono::Datelike;
    let plain = |e: &ArchivedEvent| {
        e.hash_version == 2 && (1..=9999).contains(&e.occurred_at.year()) && hash_matches(e)
    };
    let (first, rest) = events.split_first()?;
    if !plain(first) {
        return None;
    }
    let mut before = first;
    for e in rest {
        if !plain(e) || e.id != before.id.checked_add(1)? || e.prev_hash != before.hash {
            return None;
        }
        before = e;
    }
    (before.id == head.id && before.hash.eq_ignore_ascii_case(&head.hash))
        .then(|| i64::try_from(events.len()).unwrap_or(i64::MAX))
}

/// Whether a format 2 event's stored hash is the hash of its content and predecessor.
fn hash_matches(e: &ArchivedEvent) -> bool {
    let Some(prev) = hex_32(&e.prev_hash) else {
        return false;
    };
    hex(&event_hash_v2(&prev, &e.fields())) == e.hash
}

impl ArchivedEvent {
    /// The fields its format 2 hash covers.
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            id: self.id,
            occurred_at: self.occurred_at,
            origin: self.origin.as_deref(),
            principal: &self.principal,
            actor: &self.actor,
            action: &self.action,
            detail: &self.detail,
            request_id: self.request_id.as_deref(),
        }
    }
}

/// Lower-case hex SHA-256 of a file's bytes (the digest a deletion certificate quotes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// A chain of `n` format 2 events from genesis, as a database would store it.
    fn chain(n: i64) -> Vec<ArchivedEvent> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|id| {
                let mut e = ArchivedEvent {
                    id,
                    occurred_at: DateTime::from_timestamp(1_700_000_000 + id, 123_000).unwrap(),
                    origin: Some("control_plane".into()),
                    principal: "t_acme_admin".into(),
                    actor: "ops@example.com".into(),
                    action: "tenant.provisioned".into(),
                    detail: format!(r#"{{"n": {id}}}"#),
                    request_id: None,
                    hash_version: 2,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                rehash(&mut e);
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    /// Sets an event's hash to the one its content and `prev_hash` give.
    fn rehash(e: &mut ArchivedEvent) {
        e.hash = hex(&event_hash_v2(&hex_32(&e.prev_hash).unwrap(), &e.fields()));
    }

    fn payload(events: &[ArchivedEvent]) -> Value {
        json!({
            "document": DOCUMENT, "format": FORMAT,
            "tenant": {"id": "t", "slug": "acme"},
            "chain": summarize(events),
            "events": events,
        })
    }

    #[test]
    fn an_intact_archive_verifies() {
        let v = verify_archive(&payload(&chain(3))).unwrap();
        assert_eq!((v.events, v.recomputed, v.from_genesis), (3, 3, true));
        assert_eq!(v.head.unwrap().id, 3);
        // An empty log is an archive too.
        assert_eq!(verify_archive(&payload(&[])).unwrap().events, 0);
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let events = chain(4);
        let mut changed = events.clone();
        changed[1].actor = "someone else".into();
        assert_eq!(
            verify_archive(&payload(&changed)),
            Err(ArchiveError::Hash { id: 2 })
        );
        let mut removed = events.clone();
        removed.remove(2);
        assert_eq!(
            verify_archive(&payload(&removed)),
            Err(ArchiveError::Link { id: 4, previous: 2 })
        );
        let truncated_head = events[..3].to_vec();
        let mut p = payload(&truncated_head);
        p["chain"] = serde_json::to_value(summarize(&events)).unwrap();
        assert!(matches!(
            verify_archive(&p),
            Err(ArchiveError::Declared { .. })
        ));
        // Dropping the first events leaves a chain that starts nowhere.
        assert!(matches!(
            verify_archive(&payload(&events[1..])),
            Err(ArchiveError::Start { id: 2, .. })
        ));
    }

    #[test]
    fn a_chain_from_an_anchor_verifies_only_when_every_link_and_hash_holds() {
        let events = chain(4);
        let point = |e: &ArchivedEvent| ChainHead {
            id: e.id,
            hash: e.hash.clone(),
        };
        let (anchor, head) = (point(&events[1]), point(&events[3]));
        assert_eq!(verify_from_anchor(&anchor, &events[1..], &head), Some(2));
        // The anchor alone is the head: nothing was appended since.
        assert_eq!(verify_from_anchor(&anchor, &events[1..2], &anchor), Some(0));
        // Upper-case hex from a caller names the same hashes.
        let upper = ChainHead {
            id: anchor.id,
            hash: anchor.hash.to_uppercase(),
        };
        assert_eq!(verify_from_anchor(&upper, &events[1..], &head), Some(2));
        // Every doubt is left to the database's verification.
        let mut changed = events.clone();
        changed[2].actor = "someone else".into();
        assert_eq!(verify_from_anchor(&anchor, &changed[1..], &head), None);
        let mut anchor_changed = events.clone();
        anchor_changed[1].detail = "{}".into();
        assert_eq!(
            verify_from_anchor(&anchor, &anchor_changed[1..], &head),
            None
        );
        let gap = [events[1].clone(), events[3].clone()];
        assert_eq!(verify_from_anchor(&anchor, &gap, &head), None);
        assert_eq!(verify_from_anchor(&anchor, &events[1..3], &head), None);
        assert_eq!(verify_from_anchor(&anchor, &events[2..], &head), None);
        assert_eq!(verify_from_anchor(&anchor, &[], &head), None);
        let other_anchor = ChainHead {
            id: 2,
            hash: events[0].hash.clone(),
        };
        assert_eq!(verify_from_anchor(&other_anchor, &events[1..], &head), None);
        let mut format_1 = events.clone();
        format_1[3].hash_version = 1;
        assert_eq!(verify_from_anchor(&anchor, &format_1[1..], &head), None);
    }

    #[test]
    fn a_chain_from_genesis_verifies_only_from_its_first_event() {
        let events = chain(3);
        let head = ChainHead {
            id: 3,
            hash: events[2].hash.clone(),
        };
        assert_eq!(verify_from_genesis(&events, &head), Some(3));
        // Starting later (a purge's anchor, or events cut from the front): the database's.
        assert_eq!(verify_from_genesis(&events[1..], &head), None);
        let mut changed = events.clone();
        changed[0].principal = "someone else".into();
        assert_eq!(verify_from_genesis(&changed, &head), None);
        // A year the two engines' formats write differently.
        let mut far = events.clone();
        let e = &mut far[2];
        e.occurred_at = DateTime::from_timestamp(253_402_300_800, 0).unwrap();
        rehash(e);
        let far_head = ChainHead {
            id: 3,
            hash: e.hash.clone(),
        };
        assert_eq!(verify_from_genesis(&far, &far_head), None);
        assert_eq!(verify_from_genesis(&[], &head), None);
    }
}
