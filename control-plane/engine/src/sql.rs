//! Identifier and literal quoting for the few statements that cannot take parameters (DDL).
//! Inputs are always derived from validated types; quoting is the second line of defence.

/// PostgreSQL `quote_ident`: always double-quoted, inner quotes doubled.
pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// PostgreSQL `quote_literal` for `standard_conforming_strings = on`: single-quoted, inner
/// quotes doubled; refuses NUL, which no PostgreSQL string can hold.
pub fn pg_literal(s: &str) -> Option<String> {
    (!s.contains('\0')).then(|| format!("'{}'", s.replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(pg_ident("tenant_acme"), "\"tenant_acme\"");
        assert_eq!(pg_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(pg_ident("Robert'); DROP"), "\"Robert'); DROP\"");
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(pg_literal("abc").as_deref(), Some("'abc'"));
        assert_eq!(pg_literal("o'neil").as_deref(), Some("'o''neil'"));
        assert_eq!(pg_literal("a\\b").as_deref(), Some("'a\\b'"));
        assert_eq!(pg_literal("a\0b"), None);
    }
}
