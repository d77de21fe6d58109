//! The tenant slug: the one piece of operator input every database identifier, role name and
//! secret name of a tenant is derived from, so its grammar is deliberately narrow.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a string is not a valid slug.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Shorter than 3 or longer than 40 characters.
    #[error("slug must be 3 to 40 characters long, got {0}")]
    Length(usize),
    /// Does not start with a lowercase ASCII letter.
    #[error("slug must start with a lowercase letter")]
    Start,
    /// Holds a character outside `a-z`, `0-9`, `-`.
    #[error("slug may only hold lowercase letters, digits and single hyphens, found {0:?}")]
    Character(char),
    /// Two hyphens in a row, or a trailing hyphen.
    #[error("slug may not hold two hyphens in a row or end with a hyphen")]
    Hyphen,
}

/// A tenant slug: a lowercase letter first, then lowercase letters, digits or single hyphens,
/// 3 to 40 characters, not ending in a hyphen.
///
/// Because hyphens map one-to-one onto underscores and underscores are not allowed, the derived
/// identifier (`acme-corp` → `acme_corp`) is unique per slug.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Validates and wraps a slug.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        let len = s.chars().count();
        if !(3..=40).contains(&len) {
            return Err(SlugError::Length(len));
        }
        let mut chars = s.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Err(SlugError::Start);
        }
        let mut previous_hyphen = false;
        for c in chars {
            match c {
                'a'..='z' | '0'..='9' => previous_hyphen = false,
                '-' if previous_hyphen => return Err(SlugError::Hyphen),
                '-' => previous_hyphen = true,
                other => return Err(SlugError::Character(other)),
            }
        }
        if previous_hyphen {
            return Err(SlugError::Hyphen);
        }
        Ok(TenantSlug(s.to_owned()))
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The slug with hyphens as underscores, for database identifiers (`acme-corp` → `acme_corp`).
    pub fn ident(&self) -> String {
        self.0.replace('-', "_")
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TenantSlug {
    type Err = SlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantSlug::parse(s)
    }
}

impl<'de> Deserialize<'de> for TenantSlug {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantSlug::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The slug grammar as a regular expression (for the OpenAPI document; [`TenantSlug::parse`] is
/// the authority and says which rule a value breaks).
pub const SLUG_PATTERN: &str = "^[a-z][a-z0-9]*(-[a-z0-9]+)*$";

impl utoipa::PartialSchema for TenantSlug {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(3))
            .max_length(Some(40))
            .pattern(Some(SLUG_PATTERN))
            .description(Some(
                "A lowercase letter first, then lowercase letters, digits or single hyphens; \
                 3 to 40 characters, not ending in a hyphen",
            ))
            .examples(["acme-corp"])
            .into()
    }
}

impl utoipa::ToSchema for TenantSlug {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_slugs() {
        for s in ["acme", "acme-corp", "a1b", "abc-1-2", &"a".repeat(40)] {
            assert!(TenantSlug::parse(s).is_ok(), "{s} should be valid");
        }
    }

    #[test]
    fn rejects_invalid_slugs_with_the_reason() {
        assert_eq!(TenantSlug::parse("ab"), Err(SlugError::Length(2)));
        assert_eq!(
            TenantSlug::parse(&"a".repeat(41)),
            Err(SlugError::Length(41))
        );
        assert_eq!(TenantSlug::parse("1abc"), Err(SlugError::Start));
        assert_eq!(TenantSlug::parse("-abc"), Err(SlugError::Start));
        assert_eq!(TenantSlug::parse("Acme"), Err(SlugError::Start));
        assert_eq!(TenantSlug::parse("acMe"), Err(SlugError::Character('M')));
        assert_eq!(TenantSlug::parse("ac_me"), Err(SlugError::Character('_')));
        assert_eq!(TenantSlug::parse("ac\"me"), Err(SlugError::Character('"')));
        assert_eq!(TenantSlug::parse("ac--me"), Err(SlugError::Hyphen));
        assert_eq!(TenantSlug::parse("acme-"), Err(SlugError::Hyphen));
        assert_eq!(TenantSlug::parse("acmé"), Err(SlugError::Character('é')));
    }

    #[test]
    fn ident_maps_hyphens() {
        let slug = TenantSlug::parse("acme-corp-2").expect("valid");
        assert_eq!(slug.ident(), "acme_corp_2");
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantSlug>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<TenantSlug>("\"A\"").is_err());
    }
}
