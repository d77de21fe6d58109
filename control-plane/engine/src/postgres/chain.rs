//! A tenant's audit chain from its newest anchor (or from genesis) to its head, verified by the
//! control plane from the rows ([`::evidence::archive::verify_from_anchor`],
//! [`::evidence::archive::verify_from_genesis`]: every hash recomputed, every link and id
//! checked, the last event the chain head), before `audit.verify_chain_from` (or
//! `audit.verify_chain`) is asked.
//!
//! Anchoring runs after every operation, and onboarding verifies the new log, mostly on a
//! session just opened to the tenant's database, where the PL/pgSQL verification costs its
//! compilation and planning each time (about 1.5 ms of the server's CPU against 0.5 ms for this
//! one statement). The database's
//! verification stays the authority: whatever the rows do not confirm here (a format 1 event, a
//! gap, a purge that removed the anchor or the log's start, a changed hash, more events than
//! one read takes) is left to it, and it names the first broken event.

use tokio_postgres::GenericClient;

use crate::{AuditHead, ChainPoint, EngineError};
use ::evidence::archive::{verify_from_anchor, verify_from_genesis, ArchivedEvent, ChainHead};

/// At most this many events after the anchor (or from genesis) are verified here; a longer
/// chain is the database's to verify.
const EVENTS_READ: i64 = 64;

/// The chain head, and the events from the anchor on, in one snapshot. Origin and hash_version
/// through `to_jsonb`: a database from before audit format 2 has neither column (its events are
/// format 1, left to the database). `detail::text` is the jsonb text output the hash covers.
const FROM_ANCHOR: &str = "\
    SELECT h.id, encode(h.hash, 'hex'), e.id, e.occurred_at, to_jsonb(e) ->> 'origin', \
           e.principal, e.actor, e.action, e.detail::text, e.request_id, \
           coalesce((to_jsonb(e) ->> 'hash_version')::int2, 1::int2), \
           encode(e.prev_hash, 'hex'), encode(e.hash, 'hex') \
      FROM audit.chain_head h \
      LEFT JOIN LATERAL ( \
          SELECT * FROM audit.audit_events x WHERE x.id >= $1 ORDER BY x.id LIMIT $2) e ON true \
     ORDER BY e.id";

/// The head of the chain when the rows verify from `anchor` on, or from genesis without one
/// (`valid`, the events checked as `verify_chain_from` and `verify_chain` count them), `None`
/// when the database's own verification must decide.
pub(super) async fn head_from_anchor<C: GenericClient>(
    client: &C,
    anchor: Option<&ChainPoint>,
) -> Result<Option<AuditHead>, EngineError> {
    // From genesis every row is read (an id below 1 would break the chain there).
    let from = anchor.map_or(i64::MIN, |a| a.id);
    let rows = client
        .query(FROM_ANCHOR, &[&from, &(EVENTS_READ + 1)])
        .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    // A value this read cannot take (a NULL, a timestamp of 'infinity') is the database's to
    // judge.
    let (Ok(id), Ok(hash)) = (first.try_get(0), first.try_get(1)) else {
        return Ok(None);
    };
    let head = ChainHead { id, hash };
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(event) = event_of(r) else {
            return Ok(None);
        };
        events.push(event);
    }
    let checked = match anchor {
        Some(a) => {
            let point = ChainHead {
                id: a.id,
                hash: a.hash.clone(),
            };
            verify_from_anchor(&point, &events, &head)
        }
        None => verify_from_genesis(&events, &head),
    };
    Ok(checked.map(|checked| AuditHead {
        valid: true,
        checked,
        first_broken_id: None,
        head_id: Some(head.id),
        head_hash: Some(head.hash),
    }))
}

/// One row's event, `None` when a column does not decode (no event at all, a NULL, a timestamp
/// out of chrono's range).
fn event_of(r: &tokio_postgres::Row) -> Option<ArchivedEvent> {
    Some(ArchivedEvent {
        id: r.try_get(2).ok()?,
        occurred_at: r.try_get(3).ok()?,
        origin: r.try_get(4).ok()?,
        principal: r.try_get(5).ok()?,
        actor: r.try_get(6).ok()?,
        action: r.try_get(7).ok()?,
        detail: r.try_get(8).ok()?,
        request_id: r.try_get(9).ok()?,
        hash_version: r.try_get(10).ok()?,
        prev_hash: r.try_get(11).ok()?,
        hash: r.try_get(12).ok()?,
    })
}
