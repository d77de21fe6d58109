//! PostgreSQL's lexical rules, after `src/backend/parser/scan.l`, as far as the check needs them:
//! where strings, quoted identifiers, comments and words begin and end.
//!
//! Deliberately absent: anything of T-SQL. `[` and `]` are array punctuation whose content is code,
//! and `@`, `#` are operator characters, not parts of names.

use super::{fold, unterminated, Lexeme, Scanner, Token};

/// Tokenizes `sql` as PostgreSQL does (with `standard_conforming_strings` on).
pub(super) fn tokens(sql: &str) -> Result<Vec<Lexeme>, String> {
    let mut s = Scanner::new(sql);
    while let Some(c) = s.peek(0) {
        let at = s.offset();
        let next = s.peek(1);
        match c {
            '-' if next == Some('-') => s.line_comment(),
            '/' if next == Some('*') => s.block_comment()?,
            // U&'...' and U&"..." spell characters as \XXXX escapes (and UESCAPE changes the
            // escape character), so their text may name anything.
            'u' | 'U' if next == Some('&') && matches!(s.peek(2), Some('\'' | '"')) => {
                return Err(
                    "U&'...' strings and U&\"...\" identifiers are not allowed in an \
                            investigation: their Unicode escapes can spell any name"
                        .into(),
                );
            }
            // Each of these letters begins a string only as the first character of a token: in
            // `abce'x'` the word `abce` is one token and `'x'` a plain string. The word arm
            // below consumes whole words, so reaching here means a token starts at `c`.
            'e' | 'E' if next == Some('\'') => {
                s.bump();
                string(&mut s, Kind::Escape)?;
                s.push(at, Token::Str);
            }
            'b' | 'B' | 'x' | 'X' if next == Some('\'') => {
                s.bump();
                string(&mut s, Kind::Bits)?;
                s.push(at, Token::Str);
            }
            'n' | 'N' if next == Some('\'') => {
                s.bump();
                string(&mut s, Kind::Plain)?;
                s.push(at, Token::Str);
            }
            '\'' => {
                string(&mut s, Kind::Plain)?;
                s.push(at, Token::Str);
            }
            '"' => {
                let name = s.delimited('"', "quoted identifier")?;
                s.push(at, Token::Quoted(name));
            }
            '$' => dollar(&mut s)?,
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|d| d.is_ascii_digit())) => {
                number(&mut s)?;
            }
            c if starts_word(c) => {
                let word = s.take_while(continues_word);
                s.push(at, Token::Word(fold(&word)));
            }
            ' ' | '\t' | '\n' | '\r' | '\x0c' | '\x0b' => s.bump(),
            c => {
                s.bump();
                s.push(at, Token::Punct(c));
            }
        }
    }
    Ok(s.finish())
}

/// `ident_start`: any byte of a non-ASCII character counts as a letter, so `\u{a0}e` is one word.
fn starts_word(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// `ident_cont`.
fn continues_word(c: char) -> bool {
    starts_word(c) || c.is_ascii_digit() || c == '$'
}

/// What a quote-delimited string allows inside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `'...'` and `N'...'`: `''` is a quote; a backslash is an ordinary character.
    Plain,
    /// `E'...'`: `''` is a quote, and a backslash escapes the next character (`\'` among them).
    Escape,
    /// `B'...'` and `X'...'`: no escape at all; `B'1''0'` is `B'1'` then `'0'`, which covers the
    /// same text as a plain string would.
    Bits,
}

/// Reads a string from its opening quote. A string followed by whitespace holding a newline and
/// another quote continues there in the same kind (`quotecontinue`): `E'a'` newline `'\' '` is one
/// escape string, so its second part still has backslash escapes.
fn string(s: &mut Scanner<'_>, kind: Kind) -> Result<(), String> {
    loop {
        s.bump();
        loop {
            match s.peek(0) {
                None => return Err(unterminated("string")),
                Some('\\') if kind == Kind::Escape => {
                    s.bump();
                    if s.peek(0).is_none() {
                        return Err(unterminated("string"));
                    }
                    s.bump();
                }
                Some('\'') if kind != Kind::Bits && s.peek(1) == Some('\'') => s.pos += 2,
                Some('\'') => {
                    s.bump();
                    break;
                }
                Some(_) => s.bump(),
            }
        }
        match continuation(s) {
            Some(quote) => s.pos = quote,
            None => return Ok(()),
        }
    }
}

/// Where a string just closed continues: the position of the next quote when only spaces and
/// `--` comments, among them at least one line break, stand before it
/// (`{whitespace_with_newline}{quote}`; a block comment breaks the continuation).
fn continuation(s: &Scanner<'_>) -> Option<usize> {
    let mut ahead = 0;
    let mut newline = false;
    loop {
        match s.peek(ahead) {
            Some('\n' | '\r') => {
                newline = true;
                ahead += 1;
            }
            Some(' ' | '\t' | '\x0c' | '\x0b') => ahead += 1,
            Some('-') if s.peek(ahead + 1) == Some('-') => {
                while s.peek(ahead).is_some_and(|c| c != '\n' && c != '\r') {
                    ahead += 1;
                }
            }
            Some('\'') if newline => return Some(s.pos + ahead),
            _ => return None,
        }
    }
}

/// `dolq_start`.
fn starts_tag(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
}

/// Reads what starts with `$` at the start of a token: a parameter (`$1`), a dollar-quoted
/// string (`$$...$$`, `$tag$...$tag$`, the tag an identifier without `$` not starting with a
/// digit, ending at the first identical tag, case included), or a lone `$`. A `$` inside a word
/// (`a$b$`) never gets here: the word took it.
fn dollar(s: &mut Scanner<'_>) -> Result<(), String> {
    let at = s.offset();
    if s.peek(1).is_some_and(|c| c.is_ascii_digit()) {
        s.bump();
        s.take_while(|c| c.is_ascii_digit());
        s.no_name_after_number(at, starts_word)?;
        s.push(at, Token::Number);
        return Ok(());
    }
    let mut len = 1;
    if s.peek(1).is_some_and(starts_tag) {
        len = 2;
        while s
            .peek(len)
            .is_some_and(|c| starts_tag(c) || c.is_ascii_digit())
        {
            len += 1;
        }
    }
    if s.peek(len) != Some('$') {
        s.bump();
        s.push(at, Token::Punct('$'));
        return Ok(());
    }
    let tag: Vec<char> = (0..=len).filter_map(|k| s.peek(k)).collect();
    s.pos += tag.len();
    loop {
        if s.peek(0).is_none() {
            return Err(unterminated("dollar-quoted string"));
        }
        if (0..tag.len()).all(|k| s.peek(k) == Some(tag[k])) {
            s.pos += tag.len();
            s.push(at, Token::Str);
            return Ok(());
        }
        s.bump();
    }
}

/// Reads a number from its first digit (or its `.`): decimal with `_` separators, fraction and
/// exponent, or `0x`/`0o`/`0b` integers (PostgreSQL 16; older versions read `0` and a name, which
/// covers the same text).
fn number(s: &mut Scanner<'_>) -> Result<(), String> {
    let at = s.offset();
    let radix = match (s.peek(0), s.peek(1)) {
        (Some('0'), Some('x' | 'X')) => Some(16),
        (Some('0'), Some('o' | 'O')) => Some(8),
        (Some('0'), Some('b' | 'B')) => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        s.pos += 2;
        s.take_while(|c| c.is_digit(radix) || c == '_');
    } else {
        let digits = |c: char| c.is_ascii_digit() || c == '_';
        s.take_while(digits);
        // `1..10` is 1 then `..`.
        if s.peek(0) == Some('.') && s.peek(1) != Some('.') {
            s.bump();
            s.take_while(digits);
        }
        let exponent = match (s.peek(0), s.peek(1), s.peek(2)) {
            (Some('e' | 'E'), Some(d), _) if d.is_ascii_digit() => 1,
            (Some('e' | 'E'), Some('+' | '-'), Some(d)) if d.is_ascii_digit() => 2,
            _ => 0,
        };
        if exponent > 0 {
            s.pos += exponent;
            s.take_while(digits);
        }
    }
    s.no_name_after_number(at, starts_word)?;
    s.push(at, Token::Number);
    Ok(())
}
