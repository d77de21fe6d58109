#![allow(clippy::unwrap_used)]

use super::*;
use chrono::TimeZone as _;
use serde_json::json;

/// RFC 8032 section 7.1, test 1: secret key and public key.
const RFC8032_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn hex32(s: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

fn signer(n: u8) -> Signer {
    Signer::from_seed(&[n; 32])
}

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn certificate() -> Value {
    json!({
        "certificate": "tenant-deletion",
        "tenant": {"id": "5b0c7a52-6a51-4c8e-9a51-0c5d2a9f1e11", "slug": "acme-corp",
                   "display_name": "Acme Corp"},
        "removed": {"database": "t_acme_corp", "principals": ["t_acme_corp_app_a", "t_acme_corp_owner"],
                    "secrets": ["tenant-acme-corp-app"]},
        "final_audit_chain_head": {"valid": true, "events": 42, "head_hash": "ab12"},
        "completed_at": "2026-03-01T11:59:58.123Z",
        "verified_absent": true,
        "ratio": 0.25,
        "nothing": null
    })
}

/// The envelope as text, re-parsed: what a verifier reading a file sees.
fn through_text(doc: &SignedDocument) -> Value {
    serde_json::from_str(&serde_json::to_string_pretty(&doc.to_value()).unwrap()).unwrap()
}

#[test]
fn rfc8032_key_and_key_id() {
    let s = Signer::from_seed(&hex32(RFC8032_SEED));
    let public = hex32(RFC8032_PUBLIC);
    assert_eq!(s.public_key().public_key, B64.encode(public));
    assert_eq!(s.public_key().alg, "Ed25519");
    assert_eq!(s.kid().len(), 16);
    assert!(s.kid().chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(s.kid(), key_id(&public));
}

#[test]
fn round_trip_with_and_without_a_trusted_key() {
    let s = signer(1);
    let doc = s.sign_at(&certificate(), at()).unwrap();
    assert_eq!(doc.signature.signed_at, "2026-03-01T12:00:00Z");
    let envelope = through_text(&doc);
    assert_eq!(verify(&envelope, None).unwrap(), certificate());
    let v = verify_document(&envelope, Some(&s.public_key().public_key)).unwrap();
    assert_eq!(v.payload, certificate());
    assert_eq!(v.kid, s.kid());
    assert_eq!(v.signed_at, at());
    assert!(v.key_trusted);
    assert!(!verify_document(&envelope, None).unwrap().key_trusted);
    // The serde form and to_value agree.
    assert_eq!(serde_json::to_value(&doc).unwrap(), doc.to_value());
}

#[test]
fn signatures_are_deterministic_and_pinned() {
    // Ed25519 is deterministic: the same key, time and payload give the same bytes. Pinning one
    // value catches any change of the signing input that would orphan documents already issued.
    let s = Signer::from_seed(&hex32(RFC8032_SEED));
    let payload = json!({"b": [1, 2.5, "x"], "a": "ü"});
    let one = s.sign_at(&payload, at()).unwrap();
    let two = s.sign_at(&payload, at()).unwrap();
    assert_eq!(one, two);
    let input = signing_input(
        &payload,
        Protected {
            alg: ALG,
            kid: s.kid(),
            public_key: &s.public_key().public_key,
            signed_at: "2026-03-01T12:00:00Z",
        },
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(input).unwrap(),
        format!(
            r#"{{"payload":{{"a":"ü","b":[1,2.5,"x"]}},"signature":{{"alg":"Ed25519","kid":"{}","public_key":"{}","signed_at":"2026-03-01T12:00:00Z"}}}}"#,
            s.kid(),
            s.public_key().public_key
        )
    );
    assert_eq!(
        one.signature.value, PINNED_SIGNATURE,
        "{}",
        one.signature.value
    );
}

const PINNED_SIGNATURE: &str =
    "gf6RbAVDP9GZjptcyttPhSCjJZ0iHJyNepOF3PaSdk2IJ6vulLSnMMxgzJ0QWz9mQn-yq1h2tcKuSVqTIel2Bw";

#[test]
fn any_changed_byte_of_the_payload_breaks_the_signature() {
    let s = signer(2);
    let doc = s.sign_at(&certificate(), at()).unwrap();
    let text = serde_json::to_string(&doc.payload).unwrap();
    let bytes = text.as_bytes();
    let mut tried = 0;
    for i in 0..bytes.len() {
        for replacement in [b'0', b'a', b' ', b'"', b'1', b'\\', b'Z'] {
            if bytes[i] == replacement {
                continue;
            }
            let mut changed = bytes.to_vec();
            changed[i] = replacement;
            let Ok(payload) = serde_json::from_slice::<Value>(&changed) else {
                continue;
            };
            if payload == doc.payload {
                // Whitespace outside strings: the same document, rightly still valid.
                continue;
            }
            let forged = SignedDocument {
                payload,
                signature: doc.signature.clone(),
            };
            tried += 1;
            assert!(
                matches!(
                    verify(&forged.to_value(), Some(&s.public_key().public_key)),
                    Err(VerifyError::BadSignature { .. })
                ),
                "byte {i} changed to {:?} still verifies: {}",
                replacement as char,
                String::from_utf8_lossy(&changed)
            );
        }
    }
    assert!(tried > 300, "only {tried} changed documents were tried");
}

#[test]
fn the_signing_time_and_key_id_are_signed_too() {
    let s = signer(3);
    let doc = s.sign_at(&certificate(), at()).unwrap();
    let mut later = doc.clone();
    later.signature.signed_at = "2026-03-02T12:00:00Z".into();
    assert!(matches!(
        verify(&later.to_value(), None),
        Err(VerifyError::BadSignature { .. })
    ));
    let mut flipped = doc.to_value();
    let value = flipped["signature"]["value"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = value.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    flipped["signature"]["value"] = Value::String(chars.into_iter().collect());
    assert!(matches!(
        verify(&flipped, None),
        Err(VerifyError::BadSignature { .. }) | Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn another_key_is_rejected() {
    let a = signer(4);
    let b = signer(5);
    let doc = a.sign_at(&certificate(), at()).unwrap().to_value();
    assert_eq!(
        verify(&doc, Some(&b.public_key().public_key)),
        Err(VerifyError::KeyMismatch {
            trusted_kid: b.kid().to_owned(),
            found_kid: a.kid().to_owned()
        })
    );
    // Swapping in the other key (and its kid) does not make a forgery verify.
    let mut swapped = doc.clone();
    swapped["signature"]["public_key"] = json!(b.public_key().public_key);
    swapped["signature"]["kid"] = json!(b.kid());
    assert!(matches!(
        verify(&swapped, Some(&b.public_key().public_key)),
        Err(VerifyError::BadSignature { .. })
    ));
    // A kid that does not belong to the key is malformed.
    let mut wrong_kid = doc;
    wrong_kid["signature"]["kid"] = json!(b.kid());
    assert!(matches!(
        verify(&wrong_kid, None),
        Err(VerifyError::Malformed(m)) if m.contains("does not belong")
    ));
}

#[test]
fn member_order_of_the_input_does_not_matter() {
    let s = signer(6);
    let doc = s
        .sign_at(
            &serde_json::from_str(r#"{"b": {"y": 1, "x": [true, {"q": 1, "p": 2}]}, "a": "z"}"#)
                .unwrap(),
            at(),
        )
        .unwrap();
    let sig = &doc.signature;
    // The same document written by someone else: other member order, other whitespace.
    let rewritten = format!(
        r#"{{ "signature": {{"value": "{}", "signed_at": "{}", "public_key": "{}", "kid": "{}", "alg": "Ed25519"}},
              "payload": {{"a": "z", "b": {{"x": [true, {{"p": 2, "q": 1}}], "y": 1}}}} }}"#,
        sig.value, sig.signed_at, sig.public_key, sig.kid
    );
    let envelope: Value = serde_json::from_str(&rewritten).unwrap();
    assert!(verify(&envelope, Some(&s.public_key().public_key)).is_ok());
}

#[test]
fn non_ascii_text_round_trips() {
    let s = signer(7);
    let payload = json!({
        "display_name": "Zürich Straße – 東京 😀",
        "reason": "line one\nline two\t\"quoted\" \\ \u{0007}",
        "ключ": "значение",
        "😀": "emoji key",
        "\u{fb33}": "sorted after the emoji in UTF-16"
    });
    let doc = s.sign_at(&payload, at()).unwrap();
    let text = serde_json::to_string_pretty(&doc.to_value()).unwrap();
    assert!(text.contains("東京"));
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        verify(&back, Some(&s.public_key().public_key)).unwrap(),
        payload
    );
    // Escaped on the way (as another tool might write it): still the same document.
    let escaped = text.replace("東京", "\\u6771\\u4eac");
    let back: Value = serde_json::from_str(&escaped).unwrap();
    assert!(verify(&back, None).is_ok());
    // One character changed: not the same document.
    let changed: Value = serde_json::from_str(&text.replace("東京", "京都")).unwrap();
    assert!(verify(&changed, None).is_err());
}

#[test]
fn malformed_documents_are_named() {
    let s = signer(8);
    let doc = s.sign_at(&json!({"a": 1}), at()).unwrap().to_value();
    let malformed = |v: &Value| matches!(verify(v, None), Err(VerifyError::Malformed(_)));
    assert!(malformed(&json!([1, 2])));
    assert!(malformed(&json!({"payload": {"a": 1}})));
    let mut extra = doc.clone();
    extra["note"] = json!("unsigned");
    assert!(malformed(&extra));
    let mut extra_in_signature = doc.clone();
    extra_in_signature["signature"]["x5u"] = json!("https://example.com");
    assert!(malformed(&extra_in_signature));
    let mut bad_time = doc.clone();
    bad_time["signature"]["signed_at"] = json!("yesterday");
    assert!(malformed(&bad_time));
    let mut bad_key = doc.clone();
    bad_key["signature"]["public_key"] = json!("not*base64");
    assert!(malformed(&bad_key));
    let mut alg = doc.clone();
    alg["signature"]["alg"] = json!("HS256");
    assert_eq!(
        verify(&alg, None),
        Err(VerifyError::UnknownAlgorithm("HS256".into()))
    );
    assert!(matches!(
        verify(&doc, Some("short")),
        Err(VerifyError::InvalidTrustedKey(_))
    ));
    // A number a double cannot hold is refused on both sides.
    assert!(matches!(
        s.sign(&json!({"n": u64::MAX})),
        Err(CanonicalError::InexactNumber { .. })
    ));
    let mut huge = doc;
    huge["payload"]["a"] = json!(u64::MAX);
    assert!(malformed(&huge));
}

#[test]
fn trusted_keys_are_parsed_leniently_but_exactly() {
    let s = signer(9);
    let url = s.public_key().public_key.clone();
    let bytes = parse_public_key(&url).unwrap();
    let standard = base64::engine::general_purpose::STANDARD.encode(bytes);
    assert_eq!(parse_public_key(&format!("  {standard}\n")).unwrap(), bytes);
    assert!(parse_public_key("").is_err());
    assert!(parse_public_key(&B64.encode([1u8; 31])).is_err());
}

#[test]
fn debug_never_shows_the_private_key() {
    let seed = [0x5a; 32];
    let s = Signer::from_seed(&seed);
    let shown = format!("{s:?} {s:#?}");
    assert!(shown.contains("redacted"), "{shown}");
    assert!(shown.contains(s.kid()));
    for encoding in [
        B64.encode(seed),
        base64::engine::general_purpose::STANDARD.encode(seed),
        "5a5a5a5a".to_owned(),
        "90, 90".to_owned(),
    ] {
        assert!(!shown.contains(&encoding), "{shown}");
    }
}
