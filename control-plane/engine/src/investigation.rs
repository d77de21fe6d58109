//! The audited read-only path for support staff: the request, its result, and the lexical check
//! that refuses anything but one read-only query before it reaches the server.
//!
//! The check is a second line: the server is the first (PostgreSQL: a `READ ONLY` transaction as
//! a reader role with SELECT only, one statement over the extended protocol; SQL Server: a reader
//! user with SELECT only, entered `WITH NO REVERT` on a connection that is closed afterwards).
//! It exists so that attempts to write, to run several statements or to change the session are
//! *refused* with a clear reason, rather than failing somewhere inside the server.

use serde::{Deserialize, Serialize};

/// What support staff asked to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InvestigationRequest {
    /// Who asked (the token's subject).
    pub actor: String,
    /// The support ticket, e.g. `INC-1234`.
    pub ticket: String,
    /// Why.
    pub reason: String,
    /// The query text, recorded in full.
    pub sql: String,
    /// Most rows returned.
    pub max_rows: u32,
    /// The HTTP request id.
    pub request_id: Option<String>,
    /// Statement timeout, milliseconds.
    pub timeout_ms: u64,
}

/// A column of the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvestigationColumn {
    /// Column name.
    pub name: String,
    /// The server's type name.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// What the query returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvestigationRows {
    /// Columns in order.
    pub columns: Vec<InvestigationColumn>,
    /// Rows; every value is its text form, or null.
    pub rows: Vec<Vec<Option<String>>>,
    /// Whether more rows existed than `max_rows`.
    pub truncated: bool,
}

/// The outcome of an investigation: both events are recorded in every case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Investigation {
    /// Id of the `investigation.query` event, recorded before the query ran.
    pub query_event: i64,
    /// Id of the `investigation.outcome` event.
    pub outcome_event: i64,
    /// The rows, or why there are none.
    pub result: Result<InvestigationRows, InvestigationFailure>,
}

/// Why an investigation returned no rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum InvestigationFailure {
    /// Refused before it ran (not one read-only query).
    Refused(String),
    /// The server refused or failed it (permission, read-only transaction, timeout, syntax).
    Failed(String),
}

/// Most bytes of cell text one investigation returns; the rows after it are cut (`truncated`).
pub const MAX_RESULT_BYTES: usize = 4 << 20;

/// Words that have no business in a read-only query. Quoted identifiers, strings and comments
/// are skipped, so a column named `"update"` is fine.
const FORBIDDEN: &[&str] = &[
    "insert",
    "update",
    "delete",
    "merge",
    "upsert",
    "truncate",
    "drop",
    "alter",
    "create",
    "grant",
    "revoke",
    "deny",
    "copy",
    "call",
    "do",
    "exec",
    "execute",
    "set",
    "reset",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release",
    "lock",
    "vacuum",
    "analyze",
    "reindex",
    "cluster",
    "listen",
    "notify",
    "prepare",
    "deallocate",
    "discard",
    "revert",
    "use",
    "dbcc",
    "kill",
    "shutdown",
    "backup",
    "restore",
    "openrowset",
    "openquery",
    "opendatasource",
    "bulk",
    "into",
    "waitfor",
    "declare",
    // T-SQL control flow: a batch needs no ';' between statements.
    "if",
    "while",
    "goto",
    "return",
    "throw",
    "print",
    "raiserror",
    "break",
    "continue",
    "checkpoint",
    "readtext",
    "writetext",
    "updatetext",
    "open",
    "fetch",
    "close",
    // Locks a SELECT-only principal could still take, to block the application.
    "share",
    "tablock",
    "tablockx",
    "xlock",
    "updlock",
    "holdlock",
    "paglock",
    "serializable",
    "repeatableread",
    // Functions a reader may call that change the session, run SQL, sleep or touch files.
    "set_config",
    "query_to_xml",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "dblink",
    "dblink_exec",
    "lo_import",
    "lo_export",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_advisory_lock",
    "pg_advisory_xact_lock",
    "pg_notify",
    "xp_cmdshell",
];

/// Words before a depth-0 SELECT that make it part of the same query (set operations).
const SET_OPERATORS: &[&str] = &["union", "all", "except", "intersect", "distinct"];

/// Statements a query may start with.
const STARTS: &[&str] = &["select", "with", "table", "values"];

/// Refuses anything but one read-only query: it must start with SELECT, WITH, TABLE or VALUES,
/// hold no `;` but a trailing one, and none of the words of [`FORBIDDEN`] (which covers writes,
/// `FOR UPDATE`, `SELECT INTO`, session changes and transaction control). Returns the query
/// without its trailing `;`.
pub fn check_query(sql: &str) -> Result<&str, String> {
    let body = sql.trim_end();
    let body = body.strip_suffix(';').unwrap_or(body).trim_end();
    if body.trim().is_empty() {
        return Err("the query is empty".into());
    }
    let words = words(body)?;
    let first = words.first().map(|w| w.word.as_str()).unwrap_or_default();
    if !STARTS.contains(&first) {
        return Err(format!(
            "only one read-only query is allowed (SELECT, WITH, TABLE or VALUES); this one starts with {first:?}"
        ));
    }
    if let Some(w) = words.iter().find(|w| FORBIDDEN.contains(&w.word.as_str())) {
        return Err(format!(
            "{} is not allowed in an investigation: only one read-only query runs",
            w.word.to_uppercase()
        ));
    }
    // T-SQL runs `SELECT 1 SELECT 2` as two statements: at most one SELECT may stand at the
    // top level other than after a set operation (UNION, EXCEPT, INTERSECT).
    let top_level_selects = words
        .iter()
        .enumerate()
        .filter(|(i, w)| {
            w.depth == 0
                && w.word == "select"
                && !(*i > 0 && SET_OPERATORS.contains(&words[i - 1].word.as_str()))
        })
        .count();
    if top_level_selects > 1 {
        return Err("only one statement may run: the query holds a second SELECT".into());
    }
    Ok(body)
}

/// A bare word and the parenthesis depth it stands at.
struct Word {
    word: String,
    depth: i32,
}

/// The lower-cased bare words of `sql` with their parenthesis depth, skipping comments, strings
/// and quoted identifiers; `Err` on a `;` (a second statement), unbalanced parentheses or an
/// unterminated literal.
fn words(sql: &str) -> Result<Vec<Word>, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out: Vec<Word> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    let n = chars.len();
    let until = |start: usize, close: &str| -> Result<usize, String> {
        let close: Vec<char> = close.chars().collect();
        let mut j = start;
        while j + close.len() <= n {
            if chars[j..j + close.len()] == close[..] {
                return Ok(j + close.len());
            }
            j += 1;
        }
        Err("the query has an unterminated string, identifier or comment".into())
    };
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            // A line comment ends at either line break (SQL Server's parser takes '\r' too).
            '-' if next == Some('-') => {
                while i < n && chars[i] != '\n' && chars[i] != '\r' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                // PostgreSQL nests block comments.
                let mut level = 1;
                i += 2;
                while level > 0 {
                    if i + 1 >= n {
                        return Err(
                            "the query has an unterminated string, identifier or comment".into(),
                        );
                    }
                    if chars[i] == '/' && chars[i + 1] == '*' {
                        level += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars[i + 1] == '/' {
                        level -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            '(' => {
                depth += 1;
                i += 1;
            }
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("the query's parentheses do not balance".into());
                }
                i += 1;
            }
            // PostgreSQL escape string E'...': a backslash escapes the next character.
            '\'' if i > 0
                && matches!(chars[i - 1], 'e' | 'E')
                && out.last().is_some_and(|w| w.word == "e") =>
            {
                out.pop();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(
                                "the query has an unterminated string, identifier or comment"
                                    .into(),
                            )
                        }
                        Some('\\') => j += 2,
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => j += 2,
                        Some('\'') => break,
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
            }
            '\'' => {
                // '' inside a string is an escaped quote: the scan restarts after it.
                i = until(i + 1, "'")?;
                while i < n && chars[i] == '\'' {
                    i = until(i + 1, "'")?;
                }
            }
            '"' => i = until(i + 1, "\"")?,
            '[' => i = until(i + 1, "]")?,
            '$' if next.is_some_and(|c| c == '$' || c.is_alphabetic() || c == '_') => {
                // PostgreSQL dollar quoting: $tag$ ... $tag$.
                let mut j = i + 1;
                while j < n && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                if j < n && chars[j] == '$' {
                    let tag: String = chars[i..=j].iter().collect();
                    i = until(j + 1, &tag)?;
                } else {
                    i = j;
                }
            }
            ';' => return Err("only one statement may run: the query holds a ';'".into()),
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < n && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$') {
                    i += 1;
                }
                out.push(Word {
                    word: chars[start..i].iter().collect::<String>().to_lowercase(),
                    depth,
                });
            }
            _ => i += 1,
        }
    }
    if depth != 0 {
        return Err("the query's parentheses do not balance".into());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass() {
        for q in [
            "SELECT * FROM app.customers",
            "select name from app.customers where name = 'O''Brien; DROP TABLE x' -- update\n",
            "WITH x AS (SELECT 1) SELECT * FROM x;",
            "SELECT \"update\", [delete] FROM t /* insert */",
            "TABLE app.customers",
            "VALUES (1)",
            "SELECT $$ ; delete $$, $t$ set $t$",
            "SELECT a FROM t UNION ALL SELECT b FROM u EXCEPT SELECT c FROM v",
            "WITH x AS (SELECT 1 AS a) SELECT * FROM x WHERE a IN (SELECT 1)",
            "SELECT E'it\\'s', 'plain' FROM t",
        ] {
            assert!(check_query(q).is_ok(), "{q}: {:?}", check_query(q));
        }
        assert_eq!(check_query("SELECT 1 ;  ").unwrap(), "SELECT 1");
    }

    #[test]
    fn writes_and_escapes_are_refused() {
        for (q, why) in [
            ("UPDATE app.customers SET name = 'x'", "starts with"),
            ("INSERT INTO t VALUES (1)", "starts with"),
            ("DELETE FROM audit.audit_events", "starts with"),
            ("SELECT * FROM t FOR UPDATE", "UPDATE"),
            ("SELECT 1; COMMIT; DELETE FROM t", "';'"),
            ("SELECT 1 UPDATE t SET a = 1", "UPDATE"),
            ("SET ROLE postgres", "starts with"),
            ("SELECT * INTO t2 FROM t", "INTO"),
            (
                "SELECT app.customer_upsert(NULL, 'x', NULL) FROM (SELECT 1) s; ",
                "ok?",
            ),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "DELETE",
            ),
            ("EXEC app.CustomerUpsert", "starts with"),
            ("SELECT 1 WAITFOR DELAY '00:00:10'", "WAITFOR"),
            ("SELECT 1 SELECT 2", "second SELECT"),
            (
                "SELECT name FROM t --x\rWAITFOR DELAY '00:00:30'",
                "WAITFOR",
            ),
            ("SELECT 1 WHILE 1=1 IF 1=0 SELECT 1", "WHILE"),
            ("SELECT E'\\'' , 1 FROM t FOR UPDATE --'", "UPDATE"),
            ("SELECT * FROM t WITH (TABLOCKX, HOLDLOCK)", "TABLOCKX"),
            ("SELECT pg_sleep(100)", "PG_SLEEP"),
            ("SELECT set_config('role', 'none', true)", "SET_CONFIG"),
            ("SELECT (1", "balance"),
            ("SELECT 1) SELECT (2", "balance"),
            ("SELECT 1 /* /* */ DELETE */ FROM t", "ok?"),
            ("", "empty"),
            ("SELECT 'unterminated", "unterminated"),
        ] {
            match check_query(q) {
                Err(e) => assert!(e.contains(why), "{q}: {e}"),
                // Calling a function is left to the server (the reader has no EXECUTE).
                Ok(_) => assert_eq!(why, "ok?", "{q} passed"),
            }
        }
    }
}
