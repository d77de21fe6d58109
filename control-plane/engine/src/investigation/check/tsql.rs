//! SQL Server's lexical rules for T-SQL (with `QUOTED_IDENTIFIER` on), as far as the check needs
//! them: where strings, quoted identifiers, comments and words begin and end.
//!
//! Deliberately absent: anything of PostgreSQL. There is no escape string (`e'\'` is the name `e`
//! and the complete string `'\'`), no backslash escape anywhere, and no dollar quoting (`$` is
//! punctuation, or part of a name after its first character).

use super::{fold, Lexeme, Scanner, Token};

/// Tokenizes `sql` as SQL Server does.
pub(super) fn tokens(sql: &str) -> Result<Vec<Lexeme>, String> {
    let mut s = Scanner::new(sql);
    while let Some(c) = s.peek(0) {
        let at = s.offset();
        let next = s.peek(1);
        match c {
            '-' if next == Some('-') => {
                let start = s.pos;
                s.line_comment();
                // SQL Server ends a -- comment at \n or \r. Whether it also ends one at another
                // line break is not documented: ending early would expose text to this check that
                // the server skips (and a quote in it could then hide text the server runs), not
                // ending would skip text the server runs. Either reading can be wrong, so refuse.
                if s.chars[start..s.pos]
                    .iter()
                    .any(|&(_, c)| is_other_line_break(c))
                {
                    return Err(
                        "a -- comment holds a line break other than \\n or \\r, which \
                                SQL Server may read differently; end comments with \\n"
                            .into(),
                    );
                }
            }
            '/' if next == Some('*') => s.block_comment()?,
            // N'...' only marks the string as Unicode; it covers the same text.
            'n' | 'N' if next == Some('\'') => {
                s.bump();
                s.delimited('\'', "string")?;
                s.push(at, Token::Str);
            }
            '\'' => {
                s.delimited('\'', "string")?;
                s.push(at, Token::Str);
            }
            // With QUOTED_IDENTIFIER off "..." would be a string; it covers the same text either
            // way, and checking its content as a name is only stricter.
            '[' | '"' => {
                let close = if c == '[' { ']' } else { '"' };
                let name = s.delimited(close, "quoted identifier")?;
                s.push(at, Token::Quoted(name));
            }
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|d| d.is_ascii_digit())) => {
                number(&mut s)?;
            }
            // Names, @variables, @@functions and #temporary tables.
            c if starts_word(c) => {
                let word = s.take_while(continues_word);
                s.push(at, Token::Word(fold(&word)));
            }
            c if c.is_whitespace() => s.bump(),
            c => {
                s.bump();
                s.push(at, Token::Punct(c));
            }
        }
    }
    Ok(s.finish())
}

/// Line and paragraph separators other than `\n` and `\r` (vertical tab, form feed, next line,
/// the Unicode line and paragraph separators).
fn is_other_line_break(c: char) -> bool {
    matches!(c, '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// The first character of a regular identifier: a letter, `_`, `@` or `#`.
fn starts_word(c: char) -> bool {
    c.is_alphabetic() || matches!(c, '_' | '@' | '#')
}

/// Later characters of a regular identifier: letters, digits, `_`, `@`, `#` and `$`.
fn continues_word(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '@' | '#' | '$')
}

/// Reads a number from its first digit (or its `.`): decimal with fraction and exponent, or a
/// `0x` binary constant. (Money's `$` is punctuation before it.)
fn number(s: &mut Scanner<'_>) -> Result<(), String> {
    let at = s.offset();
    if s.peek(0) == Some('0') && matches!(s.peek(1), Some('x' | 'X')) {
        s.pos += 2;
        s.take_while(|c| c.is_ascii_hexdigit());
    } else {
        s.take_while(|c| c.is_ascii_digit());
        if s.peek(0) == Some('.') {
            s.bump();
            s.take_while(|c| c.is_ascii_digit());
        }
        let exponent = match (s.peek(0), s.peek(1), s.peek(2)) {
            (Some('e' | 'E'), Some(d), _) if d.is_ascii_digit() => 1,
            (Some('e' | 'E'), Some('+' | '-'), Some(d)) if d.is_ascii_digit() => 2,
            _ => 0,
        };
        if exponent > 0 {
            s.pos += exponent;
            s.take_while(|c| c.is_ascii_digit());
        }
    }
    s.no_name_after_number(at, continues_word)?;
    s.push(at, Token::Number);
    Ok(())
}
