//! The restore window of an offboarding: an ISO 8601 duration such as `P7D`, `PT12H` or `P1W`.
//!
//! Only exact units are accepted (weeks, days, hours, minutes, seconds): a month or a year has no
//! fixed length, and a window that ends on a different day depending on when it was asked for is
//! not one an operator can promise a customer. `P0D` (or any zero duration) means no window:
//! offboarding removes everything at once, as it always did.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest window accepted: a year of days. A longer one is almost certainly a typo.
pub const MAX_RETENTION_DAYS: u64 = 366;

/// A restore window, in whole seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Retention {
    seconds: u64,
}

impl Retention {
    /// No window: everything is removed at once.
    pub const NONE: Retention = Retention { seconds: 0 };

    /// A window of `seconds`.
    pub fn from_secs(seconds: u64) -> Self {
        Retention { seconds }
    }

    /// Its length in seconds.
    pub fn as_secs(self) -> u64 {
        self.seconds
    }

    /// Whether there is no window.
    pub fn is_zero(self) -> bool {
        self.seconds == 0
    }

    /// Its length as a chrono duration.
    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(self.seconds).unwrap_or(i64::MAX))
    }
}

impl FromStr for Retention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "retention {s:?} is not a restore window: {why} (an ISO 8601 duration in weeks, \
                 days, hours, minutes or seconds, e.g. P7D, PT12H, P1W; P0D for none)"
            )
        };
        let rest = s
            .trim()
            .strip_prefix('P')
            .ok_or_else(|| bad("it must start with P"))?;
        if rest.is_empty() {
            return Err(bad("it names no unit"));
        }
        let (date, time) = match rest.split_once('T') {
            Some((_, "")) => return Err(bad("nothing follows T")),
            Some((d, t)) => (d, t),
            None => (rest, ""),
        };
        let mut seconds: u64 = 0;
        for (part, units) in [
            (date, &[('W', 7 * 86_400), ('D', 86_400)][..]),
            (time, &[('H', 3_600), ('M', 60), ('S', 1)][..]),
        ] {
            let mut number = String::new();
            let mut next_unit = 0;
            for c in part.chars() {
                if c.is_ascii_digit() {
                    number.push(c);
                    continue;
                }
                let Some(at) = units.iter().position(|(u, _)| *u == c) else {
                    return Err(match c {
                        'Y' | 'M' if std::ptr::eq(part, date) => {
                            bad("years and months have no fixed length; use days")
                        }
                        _ => bad(&format!("{c:?} is not a unit here")),
                    });
                };
                if at < next_unit {
                    return Err(bad("units must come in order, each once"));
                }
                if number.is_empty() {
                    return Err(bad(&format!("{c} has no number")));
                }
                let n: u64 = number.parse().map_err(|_| bad("a number is too large"))?;
                seconds = n
                    .checked_mul(units[at].1)
                    .and_then(|v| seconds.checked_add(v))
                    .ok_or_else(|| bad("it is too long"))?;
                number.clear();
                next_unit = at + 1;
            }
            if !number.is_empty() {
                return Err(bad("a number has no unit"));
            }
        }
        if seconds > MAX_RETENTION_DAYS * 86_400 {
            return Err(bad(&format!("at most {MAX_RETENTION_DAYS} days")));
        }
        Ok(Retention { seconds })
    }
}

impl fmt::Display for Retention {
    /// The shortest exact form: `P7D`, `PT1H30M`, `P0D`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seconds == 0 {
            return f.write_str("P0D");
        }
        let (days, rest) = (self.seconds / 86_400, self.seconds % 86_400);
        let (h, m, s) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if rest > 0 {
            f.write_str("T")?;
            for (n, u) in [(h, 'H'), (m, 'M'), (s, 'S')] {
                if n > 0 {
                    write!(f, "{n}{u}")?;
                }
            }
        }
        Ok(())
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exact_units_parse_and_print_back() {
        for (text, secs, shown) in [
            ("P0D", 0, "P0D"),
            ("PT0S", 0, "P0D"),
            ("P7D", 7 * 86_400, "P7D"),
            ("P1W", 7 * 86_400, "P7D"),
            ("P1W2D", 9 * 86_400, "P9D"),
            ("PT12H", 12 * 3_600, "PT12H"),
            ("PT90M", 5_400, "PT1H30M"),
            ("P1DT1S", 86_401, "P1DT1S"),
            ("PT5S", 5, "PT5S"),
            ("P366D", 366 * 86_400, "P366D"),
        ] {
            let r: Retention = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(r.as_secs(), secs, "{text}");
            assert_eq!(r.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Retention>().unwrap(), r, "{shown} round trip");
        }
    }

    #[test]
    fn everything_else_is_refused_with_the_reason() {
        for (text, why) in [
            ("7D", "must start with P"),
            ("P", "names no unit"),
            ("PT", "nothing follows T"),
            ("P1M", "years and months"),
            ("P1Y", "years and months"),
            ("P7", "has no unit"),
            ("PD", "has no number"),
            ("P1D1W", "in order"),
            ("P1D1D", "in order"),
            ("PT1D", "not a unit here"),
            ("P1H", "not a unit here"),
            ("P-1D", "not a unit here"),
            ("P367D", "at most 366 days"),
            ("P99999999999999999999D", "too large"),
            ("P9999999999999999D", "too long"),
        ] {
            let err = text.parse::<Retention>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                err.contains("e.g. P7D"),
                "{text}: the hint is missing: {err}"
            );
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let r: Retention = serde_json::from_str("\"P7D\"").unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"P7D\"");
        assert!(serde_json::from_str::<Retention>("\"P1M\"").is_err());
    }
}
