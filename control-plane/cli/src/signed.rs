//! Signed documents on the operator's side: fetching and saving them, and verifying a saved
//! one offline (`tenantctl verify`), with the `evidence` crate's verifier. No server code runs
//! for verification and nothing is sent anywhere.

use std::io::Write as _;
use std::path::Path;

use chrono::SecondsFormat;
use evidence::{Verified, VerifyError};
use serde_json::Value;

use crate::client::Client;
use crate::error::{one_line, Failure};

const HINT_KEY: &str = "pass the public_key of `GET /v1/signing-key` (base64url), or a file \
     holding that key or the endpoint's JSON answer";

/// Fetches a signed document and checks that it is well formed and that its signature matches
/// the key it names (so a damaged answer is never saved).
pub async fn fetch(client: &Client, path: &str) -> Result<(Value, Verified), Failure> {
    let (raw, _): (Value, _) = client.get(path).await?;
    let verified = evidence::verify_document(&raw, None).map_err(|e| {
        Failure::new(format!(
            "the control plane sent a document that does not verify: {e}"
        ))
        .hint("look at the server log; this is a bug or a proxy that changes answers")
    })?;
    Ok((raw, verified))
}

/// Writes a signed document to `out` as pretty JSON. It is written to a temporary file first
/// and renamed, so `out` is never left half written.
pub fn save(out: &Path, envelope: &Value) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(format!("cannot write {}: {e}", out.display()));
    let mut text = serde_json::to_string_pretty(envelope)
        .map_err(|e| Failure::new(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let temp = out.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, out)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(fail)
}

/// `tenantctl verify FILE [--public-key KEY]`: reads and verifies a saved document.
pub fn verify_file(file: &Path, public_key: Option<&str>) -> Result<Verified, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", file.display())))?;
    let envelope: Value = serde_json::from_str(&text).map_err(|e| {
        Failure::new(format!("{} is not JSON: {e}", file.display())).hint(
            "pass a file written by `tenantctl tenants deletion-certificate --out FILE` or \
                 `tenantctl evidence SLUG --out FILE`",
        )
    })?;
    let trusted = public_key.map(trusted_key).transpose()?;
    evidence::verify_document(&envelope, trusted.as_deref()).map_err(|e| verify_failure(file, &e))
}

/// The trusted key given on the command line: the key itself, or a file holding it (as text, or
/// as the JSON answer of `GET /v1/signing-key`).
pub fn trusted_key(arg: &str) -> Result<String, Failure> {
    let path = Path::new(arg.trim());
    if !path.is_file() {
        return Ok(arg.trim().to_owned());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("cannot read {}: {e}", path.display())))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => map
            .get("public_key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::new(format!("{} has no public_key member", path.display())).hint(HINT_KEY)
            }),
        Ok(Value::String(key)) => Ok(key),
        _ => Ok(text.trim().to_owned()),
    }
}

fn verify_failure(file: &Path, e: &VerifyError) -> Failure {
    let failure = Failure::new(format!("{}: {e}", file.display()));
    match e {
        VerifyError::BadSignature { .. } => failure
            .hint("do not rely on its content; fetch the document again from the control plane"),
        VerifyError::KeyMismatch { .. } => failure.hint(
            "it was signed by another control plane or an earlier key; compare the kid with \
             `GET /v1/signing-key` of the control plane that should have signed it",
        ),
        VerifyError::InvalidTrustedKey(_) => failure.hint(HINT_KEY),
        VerifyError::UnknownAlgorithm(_) => {
            failure.hint("this tenantctl verifies Ed25519 signatures only")
        }
        VerifyError::Malformed(_) => failure.hint(
            "pass the document exactly as `tenantctl tenants deletion-certificate --out FILE`, \
             `tenantctl evidence SLUG --out FILE` (or the API) wrote it",
        ),
    }
}

/// `kid …, signed at …`.
pub fn signed_by(v: &Verified) -> String {
    format!(
        "kid {}, signed at {}",
        v.kid,
        v.signed_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The one line `tenantctl verify` prints on success.
pub fn verified_line(v: &Verified) -> String {
    let line = format!("signature valid: {}", signed_by(v));
    if v.key_trusted {
        format!("{line}, by the trusted key")
    } else {
        format!("{line} (key taken from the document; pass --public-key to check who signed it)")
    }
}

/// `--json` output of `tenantctl verify`.
pub fn verified_json(v: &Verified) -> Value {
    serde_json::json!({
        "valid": true,
        "kid": v.kid,
        "public_key": v.public_key,
        "signed_at": v.signed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "key_trusted": v.key_trusted,
    })
}

/// A few lines about a deletion certificate (`tenants deletion-certificate` without `--out`).
pub fn certificate_summary(v: &Verified) -> String {
    let p = &v.payload;
    let text = |pointer: &str| {
        p.pointer(pointer)
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_else(|| "-".to_owned())
    };
    let count = |pointer: &str| {
        p.pointer(pointer)
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    };
    let secret_outcomes = p
        .pointer("/removed/secret_removal")
        .and_then(Value::as_object)
        .map(|m| {
            let protected = m
                .values()
                .filter(|o| o.get("outcome").and_then(Value::as_str) == Some("purge_protected"))
                .count();
            if protected > 0 {
                format!(" ({protected} soft-deleted under purge protection)")
            } else {
                String::new()
            }
        })
        .unwrap_or_default();
    [
        format!(
            "deletion certificate of {} ({})",
            text("/tenant/slug"),
            text("/tenant/id")
        ),
        format!("completed:   {}", text("/completed_at")),
        format!(
            "requested:   by {} at {}: {}",
            text("/requested_by"),
            text("/requested_at"),
            text("/reason")
        ),
        format!(
            "removed:     database {}, {} principals, {} secrets{secret_outcomes}",
            text("/removed/database"),
            count("/removed/principals"),
            count("/removed/secrets")
        ),
        format!("signature:   {}", signed_by(v)),
        "save the signed document with --out FILE, check it later with `tenantctl verify FILE`"
            .to_owned(),
    ]
    .join("\n")
}

/// The sections of an evidence bundle in the order they are shown; others follow by name.
const SECTION_ORDER: [&str; 6] = [
    "principals",
    "live_probes",
    "temporal_coverage",
    "audit_chain",
    "rotations",
    "investigations",
];

/// `(name, section)` of an evidence bundle's sections, in [`SECTION_ORDER`].
fn sections(v: &Verified) -> Vec<(&str, &Value)> {
    let Some(map) = v.payload.get("sections").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out: Vec<(&str, &Value)> = SECTION_ORDER
        .iter()
        .filter_map(|name| map.get_key_value(*name))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    out.extend(
        map.iter()
            .filter(|(k, _)| !SECTION_ORDER.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v)),
    );
    out
}

/// `{"section": "status"}` of an evidence bundle (`tenantctl evidence --json`).
pub fn section_statuses(v: &Verified) -> serde_json::Map<String, Value> {
    sections(v)
        .into_iter()
        .map(|(name, s)| {
            (
                name.to_owned(),
                s.get("status").cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

/// What `tenantctl evidence` prints: the tenant, the period, and each section's status, SOC 2
/// criteria and summary.
pub fn evidence_summary(v: &Verified, out: &Path) -> String {
    let p = &v.payload;
    let text = |pointer: &str| {
        p.pointer(pointer)
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_else(|| "-".to_owned())
    };
    let mut lines = vec![
        format!(
            "evidence of {} ({}): {} {} database {}",
            text("/tenant/slug"),
            text("/tenant/id"),
            text("/tenant/engine"),
            text("/tenant/server"),
            text("/tenant/database")
        ),
        format!(
            "period:      {} to {}",
            text("/period/since"),
            text("/period/until")
        ),
        "sections:".to_owned(),
    ];
    for (name, section) in sections(v) {
        let status = section.get("status").and_then(Value::as_str).unwrap_or("-");
        let criteria = section
            .get("criteria")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let summary = section
            .get("summary")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let line = format!(
            "  {name:<18} {:<9} {criteria:<13} {summary}",
            status.to_uppercase()
        );
        lines.push(line.trim_end().to_owned());
    }
    lines.push(format!("signature:   {}", signed_by(v)));
    lines.push(format!(
        "written to {}; check it with `tenantctl verify {}`",
        out.display(),
        out.display()
    ));
    lines.join("\n")
}

/// An audit archive checked offline: its signature, then its chain
/// ([`evidence::archive::verify_archive`]), and the SHA-256 of its bytes (the deletion
/// certificate's `audit_archive.sha256`).
pub struct CheckedArchive {
    /// The signature.
    pub verified: Verified,
    /// The chain.
    pub archive: evidence::archive::VerifiedArchive,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub sha256: String,
}

/// Checks audit-archive bytes (a file, or an answer of `GET /v1/tenants/{slug}/audit-archive`).
pub fn check_archive(
    what: &Path,
    bytes: &[u8],
    public_key: Option<&str>,
    expected_sha256: Option<&str>,
) -> Result<CheckedArchive, Failure> {
    let envelope: Value = serde_json::from_slice(bytes).map_err(|e| {
        Failure::new(format!("{} is not JSON: {e}", what.display()))
            .hint("pass the file `tenantctl audit archive get SLUG --out FILE` wrote")
    })?;
    let trusted = public_key.map(trusted_key).transpose()?;
    let verified = evidence::verify_document(&envelope, trusted.as_deref())
        .map_err(|e| verify_failure(what, &e))?;
    let archive = evidence::archive::verify_archive(&verified.payload).map_err(|e| {
        Failure::new(format!(
            "{}: the signature is valid (the file is as the control plane archived it), but the \
             archived log does not verify: {e}",
            what.display()
        ))
        .hint(
            "the log was already changed inside the tenant database when it was archived (the \
             deletion certificate's audit_archive.chain_valid is false); keep the archive as the \
             evidence of it",
        )
    })?;
    let sha256 = evidence::archive::sha256_hex(bytes);
    if let Some(expected) = expected_sha256 {
        if !expected.trim().eq_ignore_ascii_case(&sha256) {
            return Err(Failure::new(format!(
                "{}: SHA-256 {sha256}, but {} was expected",
                what.display(),
                expected.trim()
            ))
            .hint(
                "compare with the deletion certificate's audit_archive.sha256; the file is not \
                 the one archived (re-saved or changed)",
            ));
        }
    }
    Ok(CheckedArchive {
        verified,
        archive,
        sha256,
    })
}

/// A few lines about a checked audit archive.
pub fn archive_summary(c: &CheckedArchive) -> String {
    let a = &c.archive;
    let head = a.head.as_ref().map_or("none (empty log)".to_owned(), |h| {
        format!("event {} ({})", h.id, h.hash)
    });
    let start = if a.from_genesis {
        "from genesis"
    } else {
        "from an audit purge's anchor"
    };
    [
        format!("audit archive of {}: valid", a.slug),
        format!(
            "events:      {} ({} hashes recomputed), chained {start}",
            a.events, a.recomputed
        ),
        format!("head:        {head}"),
        format!(
            "sha256:      {} (the deletion certificate's audit_archive.sha256)",
            c.sha256
        ),
        format!("signature:   {}", verified_line(&c.verified)),
    ]
    .join("\n")
}

/// `--json` output for a checked audit archive.
pub fn archive_json(c: &CheckedArchive) -> Value {
    let mut v = verified_json(&c.verified);
    v["archive"] = serde_json::to_value(&c.archive).unwrap_or(Value::Null);
    v["sha256"] = c.sha256.clone().into();
    v
}

/// Writes `bytes` to `out` exactly (the digest must stay the archived one), through a temporary
/// file and a rename.
pub fn save_bytes(out: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(format!("cannot write {}: {e}", out.display()));
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let temp = out.with_file_name(name);
    let written = (|| {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&temp, out)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn signed(signer: &evidence::Signer) -> Value {
        signer
            .sign(&json!({
                "certificate": "tenant-deletion",
                "tenant": {"id": "5b0c7a52-6a51-4c8e-9a51-0c5d2a9f1e11", "slug": "acme-corp"},
                "removed": {"database": "t_acme", "principals": ["a", "b"], "secrets": ["s"]},
                "reason": "contract ended – Zürich",
                "completed_at": "2026-03-01T12:00:00Z"
            }))
            .unwrap()
            .to_value()
    }

    #[test]
    fn a_saved_document_verifies_and_a_flipped_byte_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let signer = evidence::Signer::from_seed(&[3; 32]);
        let file = dir.path().join("cert.json");
        save(&file, &signed(&signer)).unwrap();
        let key = signer.public_key().public_key.clone();

        let v = verify_file(&file, Some(&key)).unwrap();
        assert!(v.key_trusted);
        let line = verified_line(&v);
        assert!(
            line.starts_with(&format!(
                "signature valid: kid {}, signed at ",
                signer.kid()
            )),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(!verify_file(&file, None).unwrap().key_trusted);

        // The key from a file: the /v1/signing-key answer, or the bare key.
        let key_json = dir.path().join("signing-key.json");
        std::fs::write(
            &key_json,
            serde_json::to_string(signer.public_key()).unwrap(),
        )
        .unwrap();
        assert!(verify_file(&file, Some(key_json.to_str().unwrap())).is_ok());
        let key_txt = dir.path().join("key.txt");
        std::fs::write(&key_txt, format!("{key}\n")).unwrap();
        assert!(verify_file(&file, Some(key_txt.to_str().unwrap())).is_ok());

        // One byte of the payload changed on disk.
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replacen("acme-corp", "acme-corq", 1)).unwrap();
        let f = verify_file(&file, Some(&key)).unwrap_err();
        assert!(f.message.contains("does not match"), "{f:?}");
        assert!(f.hint.as_deref().unwrap().contains("do not rely"));
        assert_eq!(f.lines().len(), 2);
    }

    #[test]
    fn failures_say_what_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let a = evidence::Signer::from_seed(&[4; 32]);
        let b = evidence::Signer::from_seed(&[5; 32]);
        let file = dir.path().join("cert.json");
        save(&file, &signed(&a)).unwrap();

        let f = verify_file(&file, Some(&b.public_key().public_key)).unwrap_err();
        assert!(
            f.message.contains(a.kid()) && f.message.contains(b.kid()),
            "{f:?}"
        );
        assert!(f.hint.is_some());

        let f = verify_file(&file, Some("nope")).unwrap_err();
        assert!(f.message.contains("trusted public key"), "{f:?}");

        let f = verify_file(&dir.path().join("missing.json"), None).unwrap_err();
        assert!(f.message.starts_with("cannot read"), "{f:?}");

        std::fs::write(&file, "not json").unwrap();
        let f = verify_file(&file, None).unwrap_err();
        assert!(f.message.contains("is not JSON"), "{f:?}");

        std::fs::write(&file, r#"{"payload": {}}"#).unwrap();
        let f = verify_file(&file, None).unwrap_err();
        assert!(f.message.contains("malformed"), "{f:?}");
        assert!(f.hint.is_some());
    }

    #[test]
    fn the_evidence_summary_lists_every_section_in_order() {
        let signer = evidence::Signer::from_seed(&[7; 32]);
        let doc = signer
            .sign(&json!({
                "document": "tenant-evidence",
                "tenant": {"slug": "acme-corp", "id": "5b0c", "engine": "postgres",
                           "server": "db:5432", "database": "tenant_acme_corp"},
                "period": {"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
                "sections": {
                    "investigations": {"criteria": ["CC7.2", "CC6.3"], "status": "recorded",
                                       "summary": "1 investigation in the period"},
                    "audit_chain": {"criteria": ["CC7.2"], "status": "pending"},
                    "zz_extra": {"status": "pass"},
                    "live_probes": {"criteria": ["CC6.1", "CC8.1"], "status": "fail",
                                    "summary": "9 of 10 writes\nrefused"},
                }
            }))
            .unwrap()
            .to_value();
        let v = evidence::verify_document(&doc, None).unwrap();
        let s = evidence_summary(&v, Path::new("e.json"));
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "evidence of acme-corp (5b0c): postgres db:5432 database tenant_acme_corp"
        );
        assert_eq!(
            lines[3],
            "  live_probes        FAIL      CC6.1, CC8.1  9 of 10 writes refused"
        );
        assert_eq!(lines[4], "  audit_chain        PENDING   CC7.2");
        assert!(lines[5].starts_with("  investigations     RECORDED"), "{s}");
        assert_eq!(lines[6], "  zz_extra           PASS");
        assert!(lines[7].contains(signer.kid()));
        assert!(lines[8].contains("tenantctl verify e.json"));
        let statuses = section_statuses(&v);
        assert_eq!(statuses.len(), 4);
        assert_eq!(statuses["audit_chain"], "pending");
        assert_eq!(statuses["live_probes"], "fail");
    }

    #[test]
    fn the_summary_names_the_tenant_and_the_signature() {
        let signer = evidence::Signer::from_seed(&[6; 32]);
        let v = evidence::verify_document(&signed(&signer), None).unwrap();
        let s = certificate_summary(&v);
        assert!(s.contains("deletion certificate of acme-corp"), "{s}");
        assert!(
            s.contains("database t_acme, 2 principals, 1 secrets"),
            "{s}"
        );
        assert!(s.contains(signer.kid()), "{s}");
        assert_eq!(verified_json(&v)["valid"], true);
    }
}
