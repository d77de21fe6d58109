//! T-SQL identifier and literal quoting for the statements that cannot take parameters
//! (`CREATE DATABASE`, `CREATE USER ... WITH PASSWORD`, `ALTER ROLE ...`).
//!
//! Inputs are derived from validated types; quoting is the second line of defence. Both
//! functions refuse what SQL Server itself could not hold rather than produce something subtly
//! different.

/// The longest name `QUOTENAME` accepts, in UTF-16 code units (the `sysname` length).
pub const MAX_NAME_LEN: usize = 128;

/// Like T-SQL `QUOTENAME(s)`: `[` + `s` with every `]` doubled + `]`.
///
/// `None` when `s` is longer than [`MAX_NAME_LEN`] UTF-16 code units (where `QUOTENAME` returns
/// NULL) or contains NUL.
pub fn quote_name(s: &str) -> Option<String> {
    if s.contains('\0') || s.encode_utf16().count() > MAX_NAME_LEN {
        return None;
    }
    Some(format!("[{}]", s.replace(']', "]]")))
}

/// A Unicode string literal: `N'` + `s` with every `'` doubled + `'`. `None` when `s` contains
/// NUL, which must not reach a statement text.
pub fn quote_nstring(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| format!("N'{}'", s.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_plain_names() {
        assert_eq!(quote_name("tenant_acme").as_deref(), Some("[tenant_acme]"));
        assert_eq!(quote_name("").as_deref(), Some("[]"));
        assert_eq!(quote_name("a b").as_deref(), Some("[a b]"));
    }

    #[test]
    fn doubles_closing_brackets_only() {
        assert_eq!(quote_name("a]b").as_deref(), Some("[a]]b]"));
        assert_eq!(quote_name("[x]").as_deref(), Some("[[x]]]"));
        assert_eq!(quote_name("]]").as_deref(), Some("[]]]]]"));
        assert_eq!(
            quote_name("x]; DROP DATABASE y; --").as_deref(),
            Some("[x]]; DROP DATABASE y; --]")
        );
    }

    #[test]
    fn name_length_limit_is_128_utf16_units() {
        assert!(quote_name(&"a".repeat(128)).is_some());
        assert_eq!(quote_name(&"a".repeat(129)), None);
        // 128 characters of U+00E9 are 128 UTF-16 units (256 UTF-8 bytes): accepted.
        assert!(quote_name(&"é".repeat(128)).is_some());
        // 64 astral characters are 128 UTF-16 units; 65 are 130.
        assert!(quote_name(&"😀".repeat(64)).is_some());
        assert_eq!(quote_name(&"😀".repeat(65)), None);
        // The limit applies to the input, not to the doubled output.
        assert!(quote_name(&"]".repeat(128)).is_some());
    }

    #[test]
    fn name_refuses_nul() {
        assert_eq!(quote_name("a\0b"), None);
    }

    #[test]
    fn quotes_nstrings() {
        assert_eq!(quote_nstring("abc").as_deref(), Some("N'abc'"));
        assert_eq!(quote_nstring("o'neil").as_deref(), Some("N'o''neil'"));
        assert_eq!(quote_nstring("").as_deref(), Some("N''"));
        assert_eq!(quote_nstring("''").as_deref(), Some("N''''''"));
        assert_eq!(quote_nstring("a\\b\"c]").as_deref(), Some("N'a\\b\"c]'"));
        assert_eq!(quote_nstring("Zürich ✓").as_deref(), Some("N'Zürich ✓'"));
        assert_eq!(
            quote_nstring("x'; DROP LOGIN y; --").as_deref(),
            Some("N'x''; DROP LOGIN y; --'")
        );
    }

    #[test]
    fn nstring_refuses_nul() {
        assert_eq!(quote_nstring("a\0b"), None);
    }
}
