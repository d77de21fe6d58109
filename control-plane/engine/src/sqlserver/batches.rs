//! Splitting T-SQL scripts into batches on `GO` separator lines.
//!
//! `GO` is not T-SQL: it is a client-side separator understood by sqlcmd and SSMS, and the server
//! rejects it. Tenant schema scripts are written for those tools (many statements, such as
//! `CREATE PROCEDURE`, must be alone in their batch), so the engine has to cut them the same way
//! before sending each batch on its own.
//!
//! A separator is a line whose only token is `GO` (any case, surrounding whitespace allowed),
//! optionally followed by a positive repeat count (`GO 5`) and/or a `--` comment. A `GO` inside a
//! block comment (`/* ... */`, which nests in T-SQL), after `--`, inside a string literal
//! (`'...'`, `N'...'`, with `''` escapes, spanning lines), inside a bracketed identifier (`[...]`,
//! with `]]` escapes) or a double-quoted identifier (`"..."`, with `""` escapes) does not split.
//! Anything else on a `GO` line (`GO abc`, `GO 0`, `GO /* c */`) is an error, as it is in sqlcmd;
//! words that merely start with `GO` (`GOTO`, `GO_TABLE`, `GO;`) are ordinary SQL.

use thiserror::Error;

/// One batch of a script, to be sent to the server on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The batch text, without its `GO` line, leading blank lines and trailing whitespace.
    pub sql: String,
    /// How many times to run it (`GO 5` gives 5; a plain `GO` or end of script gives 1).
    pub repeat: u32,
    /// 1-based script line of the first line of `sql`: the server's line `n` of this batch is
    /// script line `first_line + n - 1`.
    pub first_line: usize,
}

/// Why a script could not be split. Every variant names a 1-based script line.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum BatchError {
    /// A `'...'` literal opened on `line` never closes.
    #[error("line {line}: unterminated string literal")]
    UnterminatedString {
        /// Where the literal opens.
        line: usize,
    },
    /// A `[...]` identifier opened on `line` never closes.
    #[error("line {line}: unterminated bracketed identifier")]
    UnterminatedBracket {
        /// Where the identifier opens.
        line: usize,
    },
    /// A `"..."` identifier opened on `line` never closes.
    #[error("line {line}: unterminated quoted identifier")]
    UnterminatedQuotedIdentifier {
        /// Where the identifier opens.
        line: usize,
    },
    /// A `/* ... */` comment (the outermost, if nested) opened on `line` never closes.
    #[error("line {line}: unterminated block comment")]
    UnterminatedBlockComment {
        /// Where the outermost comment opens.
        line: usize,
    },
    /// A `GO` line with something other than a positive count or a `--` comment after `GO`.
    #[error("line {line}: invalid GO separator {text:?} (expected GO, GO <count> with count >= 1, or either followed by a -- comment)")]
    InvalidGo {
        /// The `GO` line.
        line: usize,
        /// The line, trimmed.
        text: String,
    },
}

/// Where the scanner is at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Ordinary SQL.
    Code,
    /// Inside `'...'`, opened on the given line.
    Str(usize),
    /// Inside `[...]`, opened on the given line.
    Bracket(usize),
    /// Inside `"..."`, opened on the given line.
    Quoted(usize),
    /// Inside `depth` nested block comments, the outermost opened on the given line.
    Comment { depth: u32, line: usize },
}

/// Splits a T-SQL script into batches on `GO` lines, the way sqlcmd and SSMS do (see the module
/// documentation for the exact rules). Batches holding only whitespace are dropped; `\r\n` line
/// ends are accepted and kept inside batches.
pub fn split_batches(script: &str) -> Result<Vec<Batch>, BatchError> {
    let mut batches = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut current_first = 1;
    let mut state = State::Code;

    for (index, line) in script.split('\n').enumerate() {
        let number = index + 1;
        if state == State::Code {
            if let Some(repeat) = go_line(line, number)? {
                push_batch(&mut batches, &current, current_first, repeat);
                current.clear();
                current_first = number + 1;
                continue;
            }
        }
        state = scan_line(line, number, state);
        current.push(line);
    }

    match state {
        State::Code => {}
        State::Str(line) => return Err(BatchError::UnterminatedString { line }),
        State::Bracket(line) => return Err(BatchError::UnterminatedBracket { line }),
        State::Quoted(line) => return Err(BatchError::UnterminatedQuotedIdentifier { line }),
        State::Comment { line, .. } => return Err(BatchError::UnterminatedBlockComment { line }),
    }
    push_batch(&mut batches, &current, current_first, 1);
    Ok(batches)
}

/// Appends the batch made of `lines` (the first being script line `first`) unless it is blank.
fn push_batch(batches: &mut Vec<Batch>, lines: &[&str], first: usize, repeat: u32) {
    let Some(skip) = lines.iter().position(|l| !l.trim().is_empty()) else {
        return;
    };
    let sql = lines[skip..].join("\n").trim_end().to_owned();
    batches.push(Batch {
        sql,
        repeat,
        first_line: first + skip,
    });
}

/// `Some(count)` when `line` (seen outside any literal or comment) is a `GO` separator,
/// `None` when it is ordinary SQL.
fn go_line(line: &str, number: usize) -> Result<Option<u32>, BatchError> {
    let text = line.trim();
    let invalid = || BatchError::InvalidGo {
        line: number,
        text: text.to_owned(),
    };
    let Some(rest) = text
        .get(..2)
        .filter(|go| go.eq_ignore_ascii_case("go"))
        .and_then(|_| text.get(2..))
    else {
        return Ok(None);
    };
    if rest.is_empty() || rest.starts_with("--") {
        return Ok(Some(1));
    }
    if !rest.starts_with(char::is_whitespace) {
        // GOTO, GO_TABLE, GO;, ...: a word that only starts with GO.
        return Ok(None);
    }
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with("--") {
        return Ok(Some(1));
    }
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, after) = rest.split_at(digits_end);
    let after = after.trim_start();
    if digits.is_empty() || !(after.is_empty() || after.starts_with("--")) {
        return Err(invalid());
    }
    match digits.parse::<u32>() {
        Ok(count) if count >= 1 => Ok(Some(count)),
        _ => Err(invalid()),
    }
}

/// Scans one line (without its `\n`) starting in `state`; returns the state at its end.
fn scan_line(line: &str, number: usize, mut state: State) -> State {
    let bytes = line.as_bytes();
    let next_is = |i: usize, b: u8| bytes.get(i + 1) == Some(&b);
    let mut i = 0;
    // Every delimiter is ASCII, so scanning bytes never splits a multi-byte character.
    while i < bytes.len() {
        let b = bytes[i];
        match state {
            State::Code => match b {
                b'-' if next_is(i, b'-') => return State::Code,
                b'/' if next_is(i, b'*') => {
                    state = State::Comment {
                        depth: 1,
                        line: number,
                    };
                    i += 1;
                }
                b'\'' => state = State::Str(number),
                b'[' => state = State::Bracket(number),
                b'"' => state = State::Quoted(number),
                _ => {}
            },
            State::Str(_) if b == b'\'' => {
                if next_is(i, b'\'') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::Bracket(_) if b == b']' => {
                if next_is(i, b']') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::Quoted(_) if b == b'"' => {
                if next_is(i, b'"') {
                    i += 1;
                } else {
                    state = State::Code;
                }
            }
            State::Comment { depth, line } => {
                if b == b'/' && next_is(i, b'*') {
                    state = State::Comment {
                        depth: depth + 1,
                        line,
                    };
                    i += 1;
                } else if b == b'*' && next_is(i, b'/') {
                    state = if depth == 1 {
                        State::Code
                    } else {
                        State::Comment {
                            depth: depth - 1,
                            line,
                        }
                    };
                    i += 1;
                }
            }
            State::Str(_) | State::Bracket(_) | State::Quoted(_) => {}
        }
        i += 1;
    }
    state
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sqls(script: &str) -> Vec<String> {
        split_batches(script)
            .unwrap()
            .into_iter()
            .map(|b| b.sql)
            .collect()
    }

    #[test]
    fn no_go_is_one_batch() {
        let b = split_batches("SELECT 1;\nSELECT 2;").unwrap();
        assert_eq!(
            b,
            vec![Batch {
                sql: "SELECT 1;\nSELECT 2;".into(),
                repeat: 1,
                first_line: 1
            }]
        );
    }

    #[test]
    fn empty_and_blank_scripts_have_no_batches() {
        assert!(split_batches("").unwrap().is_empty());
        assert!(split_batches("  \n\t\n").unwrap().is_empty());
        assert!(split_batches("GO\nGO\n  go  \n").unwrap().is_empty());
    }

    #[test]
    fn splits_on_go_lines() {
        assert_eq!(
            sqls("SELECT 1\nGO\nSELECT 2\nGO\n"),
            vec!["SELECT 1", "SELECT 2"]
        );
    }

    #[test]
    fn go_is_case_insensitive_and_trims_whitespace() {
        for sep in ["GO", "go", "Go", "gO", "  GO", "GO  ", "\tgo\t", " GO \r"] {
            let script = format!("SELECT 1\n{sep}\nSELECT 2");
            assert_eq!(sqls(&script), vec!["SELECT 1", "SELECT 2"], "{sep:?}");
        }
    }

    #[test]
    fn go_with_count_repeats_the_preceding_batch() {
        let b = split_batches("INSERT t DEFAULT VALUES\nGO 5\nSELECT 1\ngo   12  \n").unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].sql.as_str(), b[0].repeat),
            ("INSERT t DEFAULT VALUES", 5)
        );
        assert_eq!((b[1].sql.as_str(), b[1].repeat), ("SELECT 1", 12));
    }

    #[test]
    fn go_with_trailing_comment() {
        let b = split_batches("SELECT 1\nGO -- first\nSELECT 2\nGO 3 -- again\nSELECT 3\nGO--x")
            .unwrap();
        let got: Vec<_> = b.iter().map(|b| (b.sql.as_str(), b.repeat)).collect();
        assert_eq!(got, vec![("SELECT 1", 1), ("SELECT 2", 3), ("SELECT 3", 1)]);
    }

    #[test]
    fn last_batch_without_go_has_repeat_one() {
        let b = split_batches("SELECT 1\nGO 2\nSELECT 2").unwrap();
        assert_eq!(b[1].repeat, 1);
    }

    #[test]
    fn words_starting_with_go_do_not_split() {
        let script = "GOTO done\nGO_TABLE\ngo;\nGOGO\nCATEGORY\nALGO\ngo2\ndone:";
        assert_eq!(sqls(script), vec![script]);
    }

    #[test]
    fn go_inside_a_statement_line_does_not_split() {
        let script = "SELECT 'x' AS go\nSELECT 1 GO\nSELECT [a] FROM t -- GO";
        assert_eq!(sqls(script), vec![script]);
    }

    #[test]
    fn go_after_line_comment_does_not_split() {
        let script = "SELECT 1 -- and then\n-- GO\nSELECT 2";
        assert_eq!(sqls(script), vec![script]);
    }

    #[test]
    fn go_inside_block_comment_does_not_split() {
        let script = "/*\nGO\n*/\nSELECT 1";
        assert_eq!(sqls(script), vec![script]);
    }

    #[test]
    fn block_comments_nest() {
        let script = "/* outer\n/* inner */\nGO\n*/\nSELECT 1\nGO\nSELECT 2";
        assert_eq!(
            sqls(script),
            vec!["/* outer\n/* inner */\nGO\n*/\nSELECT 1", "SELECT 2"]
        );
    }

    #[test]
    fn block_comment_markers_in_strings_and_line_comments_are_ignored() {
        let script = "SELECT '/*'\n-- /*\nGO\nSELECT [*/]\nGO";
        assert_eq!(sqls(script), vec!["SELECT '/*'\n-- /*", "SELECT [*/]"]);
    }

    #[test]
    fn block_comment_closes_mid_line() {
        let script = "/* c\nGO */ SELECT 1\nGO\nSELECT 2";
        assert_eq!(sqls(script), vec!["/* c\nGO */ SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn slash_star_slash_does_not_close() {
        // `/*/` opens a comment; the `/` is not a closing `*/`.
        let err = split_batches("/*/\nGO\nSELECT 1").unwrap_err();
        assert_eq!(err, BatchError::UnterminatedBlockComment { line: 1 });
    }

    #[test]
    fn go_inside_multiline_string_does_not_split() {
        let script = "SELECT 'line one\nGO\nline three'\nGO\nSELECT 2";
        assert_eq!(
            sqls(script),
            vec!["SELECT 'line one\nGO\nline three'", "SELECT 2"]
        );
    }

    #[test]
    fn go_inside_unicode_string_does_not_split() {
        let script = "SELECT N'ünï\ngo\n'\nGO\nSELECT 2";
        assert_eq!(sqls(script), vec!["SELECT N'ünï\ngo\n'", "SELECT 2"]);
    }

    #[test]
    fn doubled_quotes_stay_inside_strings() {
        let script = "SELECT 'it''s\nGO\n'''\nGO\nSELECT 2";
        assert_eq!(sqls(script), vec!["SELECT 'it''s\nGO\n'''", "SELECT 2"]);
    }

    #[test]
    fn line_comment_markers_in_strings_are_ignored() {
        let script = "SELECT '--'\nGO\nSELECT 2";
        assert_eq!(sqls(script), vec!["SELECT '--'", "SELECT 2"]);
    }

    #[test]
    fn go_inside_brackets_does_not_split() {
        let script = "CREATE TABLE [odd\nGO\nname] (x int)\nGO\nSELECT 2";
        assert_eq!(
            sqls(script),
            vec!["CREATE TABLE [odd\nGO\nname] (x int)", "SELECT 2"]
        );
    }

    #[test]
    fn doubled_brackets_stay_inside_identifiers() {
        let script = "SELECT 1 AS [a]]\nGO\n']\nGO\nSELECT 2";
        assert_eq!(sqls(script), vec!["SELECT 1 AS [a]]\nGO\n']", "SELECT 2"]);
    }

    #[test]
    fn quotes_inside_brackets_are_ignored() {
        let script = "SELECT 1 AS [it's]\nGO\nSELECT 2";
        assert_eq!(sqls(script), vec!["SELECT 1 AS [it's]", "SELECT 2"]);
    }

    #[test]
    fn go_inside_double_quoted_identifier_does_not_split() {
        let script = "SELECT 1 AS \"a\"\"\nGO\nb\"\nGO\nSELECT 2";
        assert_eq!(
            sqls(script),
            vec!["SELECT 1 AS \"a\"\"\nGO\nb\"", "SELECT 2"]
        );
    }

    #[test]
    fn crlf_line_ends() {
        let b = split_batches("SELECT 1\r\nGO\r\nSELECT 'a\r\nGO\r\n'\r\nGO 2\r\n").unwrap();
        let got: Vec<_> = b.iter().map(|b| (b.sql.as_str(), b.repeat)).collect();
        assert_eq!(got, vec![("SELECT 1", 1), ("SELECT 'a\r\nGO\r\n'", 2)]);
    }

    #[test]
    fn first_line_skips_blank_lines_and_counts_from_one() {
        let script = "\n\nSELECT 1\nGO\n\n  \nSELECT 2\nSELECT 3\nGO\nSELECT 4";
        let b = split_batches(script).unwrap();
        let lines: Vec<_> = b.iter().map(|b| b.first_line).collect();
        assert_eq!(lines, vec![3, 7, 10]);
        assert_eq!(b[1].sql, "SELECT 2\nSELECT 3");
    }

    #[test]
    fn leading_indentation_of_first_line_is_kept() {
        assert_eq!(sqls("GO\n    SELECT 1   \n\n"), vec!["    SELECT 1"]);
    }

    #[test]
    fn comment_only_batches_are_kept() {
        assert_eq!(
            sqls("-- header\nGO\nSELECT 1"),
            vec!["-- header", "SELECT 1"]
        );
    }

    #[test]
    fn unterminated_string_names_its_line() {
        let err = split_batches("SELECT 1\nGO\nSELECT 'abc\nGO\n").unwrap_err();
        assert_eq!(err, BatchError::UnterminatedString { line: 3 });
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn unterminated_unicode_string_names_its_line() {
        let err = split_batches("SELECT N'it''s").unwrap_err();
        assert_eq!(err, BatchError::UnterminatedString { line: 1 });
    }

    #[test]
    fn unterminated_bracket_names_its_line() {
        let err = split_batches("SELECT 1\n\nSELECT [a]]b").unwrap_err();
        assert_eq!(err, BatchError::UnterminatedBracket { line: 3 });
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn unterminated_quoted_identifier_names_its_line() {
        let err = split_batches("SELECT \"a").unwrap_err();
        assert_eq!(err, BatchError::UnterminatedQuotedIdentifier { line: 1 });
    }

    #[test]
    fn unterminated_block_comment_names_outermost_line() {
        let err = split_batches("SELECT 1\n/* a\n/* b */\nGO\n").unwrap_err();
        assert_eq!(err, BatchError::UnterminatedBlockComment { line: 2 });
        assert!(err.to_string().contains("line 2"));
    }

    #[test]
    fn go_zero_is_an_error() {
        let err = split_batches("SELECT 1\nGO 0\n").unwrap_err();
        assert_eq!(
            err,
            BatchError::InvalidGo {
                line: 2,
                text: "GO 0".into()
            }
        );
        assert!(err.to_string().contains("line 2"));
    }

    #[test]
    fn go_with_text_is_an_error() {
        for (sep, text) in [
            ("GO abc", "GO abc"),
            ("  go 5x", "go 5x"),
            ("GO 5 6", "GO 5 6"),
            ("GO -1", "GO -1"),
            ("GO +1", "GO +1"),
            ("GO /* c */", "GO /* c */"),
            ("GO 99999999999", "GO 99999999999"),
        ] {
            let err = split_batches(&format!("SELECT 1\n\n{sep}\n")).unwrap_err();
            assert_eq!(
                err,
                BatchError::InvalidGo {
                    line: 3,
                    text: text.into()
                },
                "{sep:?}"
            );
        }
    }

    #[test]
    fn go_lines_inside_literals_are_not_validated() {
        let script = "SELECT '\nGO abc\nGO 0\n'";
        assert_eq!(sqls(script), vec![script]);
    }

    #[test]
    fn realistic_procedure_script() {
        let script = "\
SET NOCOUNT ON;
GO
/* Procedures must be alone in their batch. */
CREATE OR ALTER PROCEDURE app.[do it]
AS
BEGIN
    -- GO would end the procedure here if it split
    DECLARE @s nvarchar(100) = N'GO';
    IF @s = N'
GO
' GOTO done;
done:
    RETURN;
END
GO
GRANT EXECUTE ON app.[do it] TO [app_rw];
GO";
        let b = split_batches(script).unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].sql, "SET NOCOUNT ON;");
        assert!(b[1].sql.starts_with("/* Procedures"));
        assert!(b[1].sql.ends_with("END"));
        assert_eq!(b[1].first_line, 3);
        assert_eq!(b[2].sql, "GRANT EXECUTE ON app.[do it] TO [app_rw];");
        assert_eq!(b[2].first_line, 16);
    }
}
