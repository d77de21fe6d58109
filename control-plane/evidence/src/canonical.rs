//! Canonical JSON: the exact bytes a signature covers.
//!
//! We use the JSON Canonicalization Scheme, RFC 8785 (JCS), through the `serde_jcs` crate:
//! no whitespace; object members sorted by their names compared as UTF-16 code units (not
//! UTF-8 bytes: the two orders differ for characters above U+FFFF); strings with the shortest
//! escapes (only `"`, `\`, and control characters, as `\b \t \n \f \r` or `\u00xx` in lower
//! case; everything else, non-ASCII included, as raw UTF-8); numbers as ECMAScript prints an
//! IEEE 754 double (`4.50` → `4.5`, `1E30` → `1e+30`). Any JCS implementation in any language
//! produces the same bytes, so a document can be verified without our code.
//!
//! JCS works on I-JSON (RFC 7493), whose numbers are doubles. An integer beyond ±(2^53 − 1)
//! would be rounded silently, so two different documents would share one signature; we refuse
//! such numbers instead, when signing and when verifying.

use serde::Serialize;
use serde_json::Value;

/// The largest integer magnitude a double holds exactly (2^53 − 1).
pub const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// An integer that a double cannot hold exactly.
    #[error(
        "number {number} at {pointer} is beyond ±(2^53 - 1), which canonical JSON (RFC 8785) \
         cannot keep exactly; send it as a string"
    )]
    InexactNumber {
        /// JSON pointer (RFC 6901) of the number, `""` for the whole document.
        pointer: String,
        /// The number as written.
        number: String,
    },
    /// The serializer failed (not expected for a `serde_json::Value`).
    #[error("cannot write canonical JSON: {0}")]
    Serialize(String),
}

/// The RFC 8785 canonical serialization of `value`.
pub fn canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    check_numbers(value, &mut String::new())?;
    to_canonical(value)
}

/// Refuses integers a double cannot hold exactly; `pointer` is the JSON pointer of `value`.
pub(crate) fn check_numbers(value: &Value, pointer: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Number(n) => {
            let exact = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_EXACT_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_EXACT_INTEGER,
                // A double: JCS writes it exactly as it is.
                (None, None) => true,
            };
            if exact {
                Ok(())
            } else {
                Err(CanonicalError::InexactNumber {
                    pointer: pointer.clone(),
                    number: n.to_string(),
                })
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                check_numbers(item, pointer)?;
                pointer.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                check_numbers(item, pointer)?;
                pointer.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// JCS bytes of anything serializable (callers check the numbers of untrusted parts first).
pub(crate) fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_jcs::to_vec(value).map_err(|e| CanonicalError::Serialize(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn canonical(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonical_json(&value).unwrap()).unwrap()
    }

    #[test]
    fn rfc8785_example_of_section_3_2_2() {
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            canonical(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        // RFC 8785 section 3.2.3: U+1F600 (surrogates D83D DE00) sorts before U+FB33 in UTF-16,
        // after it in UTF-8.
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                        "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
                        "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let out = canonical(input);
        let order: Vec<&str> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small",
            "Euro Sign",
            "Emoji",
            "Hebrew",
        ]
        .to_vec();
        let positions: Vec<usize> = order.iter().map(|s| out.find(s).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused_with_their_pointer() {
        assert!(
            canonical_json(&json!({"n": MAX_EXACT_INTEGER, "m": -(MAX_EXACT_INTEGER as i64)}))
                .is_ok()
        );
        let err = canonical_json(&json!({"a": [1, {"b/c": MAX_EXACT_INTEGER + 1}]})).unwrap_err();
        assert_eq!(
            err,
            CanonicalError::InexactNumber {
                pointer: "/a/1/b~1c".into(),
                number: "9007199254740992".into()
            }
        );
        assert!(canonical_json(&json!(i64::MIN)).is_err());
        assert!(canonical_json(&json!(1.5e300)).is_ok());
    }
}
