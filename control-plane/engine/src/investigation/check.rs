//! The lexical check in front of an investigation: anything but one read-only query is refused,
//! with a reason support staff can act on and the audit log can keep.
//!
//! The check is a second line. The server is the first (PostgreSQL: a `READ ONLY` transaction as
//! a reader role with SELECT only, one statement over the extended protocol; SQL Server: a reader
//! user with SELECT only, entered `WITH NO REVERT` on a connection that is closed afterwards). It
//! exists so that attempts to write, to run several statements, to change the session, to sleep
//! or to take locks are *refused* with a clear reason rather than failing somewhere inside the
//! server. On SQL Server it is also the only thing keeping a batch to one statement, since a batch
//! needs no `;` between statements, so it has to read the text exactly as the server does.
//!
//! That is why there is one tokenizer per dialect (`postgres.rs` follows PostgreSQL's `scan.l`,
//! `tsql.rs` SQL Server's parser), sharing only what both servers do alike (nested block comments,
//! `--` comments ending at either line break, quoted text whose closing character is escaped by
//! doubling it). A rule of one server applied to the other hides text: PostgreSQL's `E'\'` string
//! swallows a whole T-SQL batch that SQL Server reads as several statements, and a T-SQL `[...]`
//! name swallows a PostgreSQL array subscript that calls a function.
//!
//! Both tokenizers give the same kinds of token: bare words, quoted identifiers (their name,
//! unescaped), strings, numbers and punctuation; comments and whitespace are dropped. Keywords are
//! looked for among bare words only, since a quoted identifier is never a keyword (a column named
//! `"update"` or `[delete]` stays allowed). Dangerous functions, procedures and lock hints are
//! looked for among quoted identifiers too, compared lower-case: a quoted name calls the same
//! function (`"pg_sleep"(15)`), and comparing lower-case refuses `"PG_SLEEP"` as well, which is
//! stricter than the server and harmless. The lists, each name with its reason, are in
//! `denied.rs`.

mod denied;
mod postgres;
mod tsql;

use denied::{KEYWORDS, POSTGRES_NAMES, TSQL_KEYWORDS, TSQL_NAMES};

/// Which server's lexical rules a query is read with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL, with `standard_conforming_strings` on (its default since 9.1).
    Postgres,
    /// SQL Server's T-SQL, with `QUOTED_IDENTIFIER` on.
    TSql,
}

/// A PostgreSQL script's top-level statements, each as its words and punctuation (unquoted
/// words folded, quoted names as written; strings, dollar-quoted bodies, numbers and comments
/// left out), empty statements dropped: for the routine files a migration may leave out
/// (`postgres/routines.rs`). `Err` when the text does not tokenize.
pub(crate) fn pg_statements(sql: &str) -> Result<Vec<Vec<String>>, String> {
    let mut statements = vec![Vec::new()];
    for lexeme in postgres::tokens(sql)? {
        match lexeme.token {
            Token::Punct(';') => statements.push(Vec::new()),
            Token::Word(w) => statements.last_mut().map_or((), |s| s.push(w)),
            Token::Quoted(q) => statements.last_mut().map_or((), |s| s.push(q)),
            Token::Punct(c) => statements.last_mut().map_or((), |s| s.push(c.to_string())),
            Token::Str | Token::Number => {}
        }
    }
    statements.retain(|s| !s.is_empty());
    Ok(statements)
}

/// Refuses anything but one read-only query, read with `dialect`'s lexical rules: it must start
/// with SELECT or WITH (PostgreSQL also TABLE or VALUES), hold no `;` but a trailing one, balance
/// its parentheses, hold no keyword that writes, locks, changes the session or starts another
/// statement, call no dangerous function or procedure, name no lock hint, and hold at most one
/// SELECT outside parentheses and set operations. Returns the query without its trailing `;` (and
/// anything after it, which can only be comments). The error says why, for support staff and the
/// audit log.
pub fn check_query(dialect: Dialect, sql: &str) -> Result<&str, String> {
    // A NUL ends the text early for C code on the way to the server; refuse rather than guess.
    if sql.contains('\0') {
        return Err("the query holds a NUL character".into());
    }
    let mut lexemes = match dialect {
        Dialect::Postgres => postgres::tokens(sql)?,
        Dialect::TSql => tsql::tokens(sql)?,
    };
    let mut end = sql.len();
    if let Some(i) = lexemes.iter().position(|l| l.token == Token::Punct(';')) {
        if i + 1 != lexemes.len() {
            return Err("only one statement may run: the query holds a ';'".into());
        }
        end = lexemes[i].at;
        lexemes.truncate(i);
    }
    let tokens: Vec<Token> = lexemes.into_iter().map(|l| l.token).collect();
    if tokens.is_empty() {
        return Err("the query is empty".into());
    }
    let depths = depths(&tokens)?;
    starts_as_a_query(dialect, &tokens)?;
    names_nothing_denied(dialect, &tokens)?;
    one_select(&tokens, &depths)?;
    Ok(sql[..end].trim_end())
}

/// What the check sees of a query; comments and whitespace are gone.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// An unquoted word (keyword, name, variable), folded with [`fold`].
    Word(String),
    /// A quoted identifier's name, unescaped, as written.
    Quoted(String),
    /// A string literal; its content never matters.
    Str,
    /// A number or a PostgreSQL parameter (`$1`).
    Number,
    /// Any other character: punctuation and operators, one character each.
    Punct(char),
}

/// A token and the byte offset where it starts (for cutting the trailing `;`).
#[derive(Debug)]
struct Lexeme {
    token: Token,
    at: usize,
}

/// A cursor over the query's characters with the rules both servers share; each dialect's
/// tokenizer drives it.
struct Scanner<'a> {
    sql: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
    lexemes: Vec<Lexeme>,
}

impl<'a> Scanner<'a> {
    fn new(sql: &'a str) -> Self {
        Scanner {
            sql,
            chars: sql.char_indices().collect(),
            pos: 0,
            lexemes: Vec::new(),
        }
    }

    /// The character `ahead` places after the cursor.
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).map(|&(_, c)| c)
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    /// The byte offset of the cursor.
    fn offset(&self) -> usize {
        self.chars
            .get(self.pos)
            .map_or(self.sql.len(), |&(at, _)| at)
    }

    fn push(&mut self, at: usize, token: Token) {
        self.lexemes.push(Lexeme { token, at });
    }

    fn finish(self) -> Vec<Lexeme> {
        self.lexemes
    }

    /// Consumes characters while `keep` holds and returns them.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut taken = String::new();
        while let Some(c) = self.peek(0).filter(|&c| keep(c)) {
            taken.push(c);
            self.bump();
        }
        taken
    }

    /// Skips a `--` comment, which both servers end at `\n` or `\r`.
    fn line_comment(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n' && c != '\r') {
            self.bump();
        }
    }

    /// Skips a `/* ... */` comment from its opening `/*`. Both servers nest them, so a `*/` only
    /// closes the innermost one still open.
    fn block_comment(&mut self) -> Result<(), String> {
        let mut level = 0usize;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some('/'), Some('*')) => {
                    level += 1;
                    self.pos += 2;
                }
                (Some('*'), Some('/')) => {
                    level -= 1;
                    self.pos += 2;
                    if level == 0 {
                        return Ok(());
                    }
                }
                (Some(_), _) => self.bump(),
                (None, _) => return Err(unterminated("block comment")),
            }
        }
    }

    /// Reads quoted text from its opening character up to `close`, where a doubled `close` stands
    /// for one; returns the text between, unescaped. `what` names it in the error.
    fn delimited(&mut self, close: char, what: &str) -> Result<String, String> {
        self.bump();
        let mut text = String::new();
        loop {
            match self.peek(0) {
                None => return Err(unterminated(what)),
                Some(c) if c == close && self.peek(1) == Some(close) => {
                    text.push(c);
                    self.pos += 2;
                }
                Some(c) if c == close => {
                    self.bump();
                    return Ok(text);
                }
                Some(c) => {
                    text.push(c);
                    self.bump();
                }
            }
        }
    }

    /// Refuses a number (which began at byte `at`) run into a name, such as `1e'...'` or
    /// `1WAITFOR`: servers and versions disagree on where such a number ends (PostgreSQL 15
    /// rejects it, 14 reads `1` and an escape string `e'...'`), so no reading of it is safe.
    fn no_name_after_number(&self, at: usize, starts_name: fn(char) -> bool) -> Result<(), String> {
        match self.peek(0) {
            Some(c) if starts_name(c) => {
                let number = &self.sql[at..self.offset()];
                Err(format!(
                    "a number directly followed by a name is ambiguous, \
                     write a space between them: {number}{c}"
                ))
            }
            _ => Ok(()),
        }
    }
}

fn unterminated(what: &str) -> String {
    format!("the query has an unterminated {what}")
}

/// Folds a word or name for comparison with the lists of `denied.rs`. Upper-casing before
/// lower-casing also folds letters whose lower case is not their only form (dotless `ı`, long `ſ`,
/// the Kelvin sign), so a server comparing keywords more loosely than ASCII finds no spelling the
/// lists miss.
fn fold(name: &str) -> String {
    name.to_uppercase().to_lowercase()
}

/// Each token's parenthesis depth (a parenthesis counts at the depth outside it); `Err` when they
/// do not balance.
fn depths(tokens: &[Token]) -> Result<Vec<i32>, String> {
    let unbalanced = || "the query's parentheses do not balance".to_string();
    let mut depth = 0i32;
    let mut out = Vec::with_capacity(tokens.len());
    for token in tokens {
        match token {
            Token::Punct('(') => {
                out.push(depth);
                depth += 1;
            }
            Token::Punct(')') => {
                depth -= 1;
                if depth < 0 {
                    return Err(unbalanced());
                }
                out.push(depth);
            }
            _ => out.push(depth),
        }
    }
    if depth != 0 {
        return Err(unbalanced());
    }
    Ok(out)
}

/// The query's first word, after any opening parentheses, must start a read-only query.
fn starts_as_a_query(dialect: Dialect, tokens: &[Token]) -> Result<(), String> {
    let (starts, named): (&[&str], &str) = match dialect {
        Dialect::Postgres => (
            &["select", "with", "table", "values"],
            "SELECT, WITH, TABLE or VALUES",
        ),
        Dialect::TSql => (&["select", "with"], "SELECT or WITH"),
    };
    let first = tokens.iter().find(|t| **t != Token::Punct('('));
    let starts_with = match first {
        Some(Token::Word(w)) if starts.contains(&w.as_str()) => return Ok(()),
        Some(Token::Word(w)) => format!("{w:?}"),
        Some(Token::Quoted(name)) => format!("the quoted name {name:?}"),
        Some(Token::Str) => "a string".into(),
        Some(Token::Number) => "a number".into(),
        Some(Token::Punct(c)) => format!("'{c}'"),
        None => "nothing but parentheses".into(),
    };
    Err(format!(
        "only one read-only query is allowed ({named}); this one starts with {starts_with}"
    ))
}

/// Refuses the first keyword (bare words only) or dangerous name (bare or quoted) of `tokens`.
fn names_nothing_denied(dialect: Dialect, tokens: &[Token]) -> Result<(), String> {
    let keywords: &[&[&str]] = match dialect {
        Dialect::Postgres => &[KEYWORDS],
        Dialect::TSql => &[KEYWORDS, TSQL_KEYWORDS],
    };
    let names = match dialect {
        Dialect::Postgres => POSTGRES_NAMES,
        Dialect::TSql => TSQL_NAMES,
    };
    let denied_name = |name: &str| -> Result<(), String> {
        match names.iter().find(|d| d.matches(name)) {
            Some(d) => Err(format!(
                "{} is not allowed in an investigation: {}",
                name.to_uppercase(),
                d.why
            )),
            None => Ok(()),
        }
    };
    for token in tokens {
        match token {
            Token::Word(word) => {
                for spelling in spellings(dialect, word) {
                    if keywords.iter().any(|list| list.contains(&spelling)) {
                        return Err(format!(
                            "{} is not allowed in an investigation: only one read-only query runs \
                             (a column of that name must be quoted)",
                            spelling.to_uppercase()
                        ));
                    }
                    denied_name(spelling)?;
                }
            }
            Token::Quoted(name) => denied_name(&fold(name))?,
            _ => {}
        }
    }
    Ok(())
}

/// The spellings of a bare word to compare with the lists. SQL Server documents `@`, `#` and `$`
/// as name characters after the first, so `INTO#t` is one name to it; we cannot confirm that its
/// parser never ends a keyword there, so the part before the first of them is compared too.
fn spellings(dialect: Dialect, word: &str) -> Vec<&str> {
    let mut out = vec![word];
    if dialect == Dialect::TSql {
        if let Some(cut) = word.find(['@', '#', '$']) {
            if cut > 0 {
                out.push(&word[..cut]);
            }
        }
    }
    out
}

/// Words before a depth-0 SELECT that make it part of the same query (set operations).
const SET_OPERATORS: &[&str] = &["union", "all", "except", "intersect", "distinct"];

/// T-SQL runs `SELECT 1 SELECT 2` as two statements: at most one SELECT may stand at the top
/// level other than after a set operation, and a query that opens with a parenthesis counts as
/// one already (`(SELECT 1) SELECT 2`). Applied to PostgreSQL too, where it costs nothing.
fn one_select(tokens: &[Token], depths: &[i32]) -> Result<(), String> {
    let after_set_operator = |i: usize| {
        i > 0 && matches!(&tokens[i - 1], Token::Word(w) if SET_OPERATORS.contains(&w.as_str()))
    };
    let opens_with_parenthesis = tokens.first() == Some(&Token::Punct('('));
    let selects = tokens
        .iter()
        .enumerate()
        .filter(|&(i, t)| {
            depths[i] == 0 && matches!(t, Token::Word(w) if w == "select") && !after_set_operator(i)
        })
        .count()
        + usize::from(opens_with_parenthesis);
    if selects > 1 {
        return Err("only one statement may run: the query holds a second SELECT".into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Dialect::{Postgres as PG, TSql as TS};

    /// Every row: the dialect, the query, and `Ok` or `Err` with a substring of the reason.
    const CASES: &[(Dialect, &str, Result<(), &str>)] = &[
        // -- Reads that pass, in both dialects.
        (PG, "SELECT * FROM app.customers", Ok(())),
        (TS, "SELECT * FROM app.customers", Ok(())),
        (PG, "select name from app.customers where name = 'O''Brien; DROP TABLE x' -- update\n", Ok(())),
        (TS, "select name from app.customers where name = 'O''Brien; DROP TABLE x' -- update\n", Ok(())),
        (PG, "WITH x AS (SELECT 1) SELECT * FROM x;", Ok(())),
        (TS, "WITH x AS (SELECT 1) SELECT * FROM x;", Ok(())),
        (PG, "WITH x AS (SELECT 1 AS a) SELECT * FROM x WHERE a IN (SELECT 1)", Ok(())),
        (TS, "WITH x AS (SELECT 1 AS a) SELECT * FROM x WHERE a IN (SELECT 1)", Ok(())),
        (PG, "SELECT a FROM t UNION ALL SELECT b FROM u EXCEPT SELECT c FROM v", Ok(())),
        (TS, "SELECT a FROM t UNION ALL SELECT b FROM u EXCEPT SELECT c FROM v", Ok(())),
        (PG, "(SELECT 1) UNION (SELECT 2) INTERSECT SELECT 3", Ok(())),
        (TS, "(SELECT 1) UNION (SELECT 2) INTERSECT SELECT 3", Ok(())),
        (PG, "SELECT note FROM t WHERE note = 'a; b -- c /* d' AND x = 1", Ok(())),
        (TS, "SELECT note FROM t WHERE note = 'a; b -- c /* d' AND x = 1", Ok(())),
        (PG, "SELECT N'it''s; -- /*' AS x", Ok(())),
        (TS, "SELECT N'it''s; -- /*' AS x", Ok(())),
        (PG, "SELECT \"a\"\"b\", \"update\", \"Delete\", \"set\" FROM t", Ok(())),
        (TS, "SELECT \"a\"\"b\", \"update\", [delete], [a]]b] FROM t", Ok(())),
        (TS, "SELECT 1 AS [set], 2 AS [delete] FROM t", Ok(())),
        (PG, "TABLE app.customers", Ok(())),
        (PG, "VALUES (1)", Ok(())),
        (PG, "SELECT (ARRAY[1, 2, 3])[2], tags[1] FROM t", Ok(())),
        (PG, "SELECT 1e5, 1.5e-3, .5, 1_000, 0x1F, 0o17, 0b101, currval('s')", Ok(())),
        (TS, "SELECT 1e5, 1.5E-3, .5, 0x1F, $1.50 AS price, a$b, @@SPID FROM #t", Ok(())),
        (TS, "SELECT TOP (10) [Name] FROM [app].[Customers] WITH (NOLOCK) ORDER BY [Name]", Ok(())),
        (PG, "SELECT \"a;b\" FROM t WHERE x = $q$;$q$", Ok(())),
        (TS, "SELECT [a;b], \"c;d\" FROM t", Ok(())),
        // Calling an ordinary function is left to the server (the reader has no EXECUTE).
        (PG, "SELECT app.customer_upsert(NULL, 'x', NULL) FROM (SELECT 1) s; ", Ok(())),
        (TS, "SELECT app.customer_upsert(NULL, 'x', NULL) FROM (SELECT 1 AS a) s; ", Ok(())),
        // Nested comments hide their whole text in both servers.
        (PG, "SELECT 1 /* /* */ DELETE */ FROM t", Ok(())),
        (TS, "SELECT 1 /* /* */ DELETE */ FROM t", Ok(())),
        (PG, "SELECT 1 /* /* */ WAITFOR DELAY '0:0:5' */", Ok(())),
        (TS, "SELECT 1 /* /* */ WAITFOR DELAY '0:0:5' */", Ok(())),
        // -- Not a query, or not one.
        (PG, "UPDATE app.customers SET name = 'x'", Err("starts with \"update\"")),
        (TS, "UPDATE app.customers SET name = 'x'", Err("starts with \"update\"")),
        (PG, "INSERT INTO t VALUES (1)", Err("starts with")),
        (TS, "DELETE FROM audit.audit_events", Err("starts with")),
        (PG, "SET ROLE postgres", Err("starts with")),
        (TS, "EXEC app.CustomerUpsert", Err("starts with")),
        (TS, "VALUES (1)", Err("SELECT or WITH")),
        (PG, "'x' SELECT 1", Err("starts with a string")),
        (PG, "", Err("empty")),
        (TS, "  ; -- nothing", Err("empty")),
        (PG, "SELECT 1; COMMIT; DELETE FROM t", Err("';'")),
        (TS, "SELECT 1; COMMIT; DELETE FROM t", Err("';'")),
        (PG, "SELECT 1;;", Err("';'")),
        (TS, "SELECT 1 SELECT 2", Err("second SELECT")),
        (PG, "SELECT 1 SELECT 2", Err("second SELECT")),
        (TS, "(SELECT 1) SELECT 2", Err("second SELECT")),
        (TS, "SELECT 1 AS 'union' SELECT 2", Err("second SELECT")),
        (PG, "SELECT (1", Err("balance")),
        (TS, "SELECT 1) SELECT (2", Err("balance")),
        (PG, "SELECT 'unterminated", Err("unterminated string")),
        (TS, "SELECT [unterminated", Err("unterminated quoted identifier")),
        (PG, "SELECT \"unterminated", Err("unterminated quoted identifier")),
        (TS, "SELECT 1 /* /* */", Err("unterminated block comment")),
        (PG, "SELECT $a$ x $A$", Err("unterminated dollar-quoted string")),
        // -- Writes, locks and session changes inside a query.
        (PG, "SELECT * FROM t FOR UPDATE", Err("UPDATE")),
        (PG, "SELECT * FROM t FOR KEY SHARE", Err("SHARE")),
        (PG, "SELECT 1 UPDATE t SET a = 1", Err("UPDATE")),
        (PG, "SELECT * INTO t2 FROM t", Err("INTO")),
        (TS, "SELECT 1 AS x INTO #t", Err("INTO")),
        (TS, "SELECT 1 AS x INTO#t", Err("INTO")),
        (PG, "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", Err("DELETE")),
        (TS, "WITH d AS (SELECT 1 AS a) MERGE t USING d ON 1 = 0", Err("MERGE")),
        (PG, "SELECT pg_sleep(100)", Err("PG_SLEEP is not allowed in an investigation")),
        (PG, "SELECT pg_catalog.pg_sleep_for('1 minute')", Err("PG_SLEEP_FOR")),
        (PG, "SELECT set_config('role', 'none', true)", Err("SET_CONFIG")),
        (PG, "SELECT lo_create(0)", Err("LO_CREATE")),
        (PG, "SELECT loread(0, 1)", Err("LOREAD")),
        (PG, "SELECT nextval('s')", Err("NEXTVAL")),
        (PG, "SELECT pg_try_advisory_xact_lock(1)", Err("PG_TRY_ADVISORY_XACT_LOCK")),
        (PG, "SELECT * FROM dblink_exec('x', 'y')", Err("DBLINK_EXEC")),
        (PG, "SELECT txid_current(), pg_current_xact_id()", Err("TXID_CURRENT")),
        (PG, "SELECT pg_ls_waldir()", Err("PG_LS_WALDIR")),
        // ts_stat and ts_rewrite run SQL given as text: the names inside it are out of sight.
        (PG, "SELECT * FROM ts_stat('SELECT set_config(''statement_timeout'', ''0'', true)::tsvector')", Err("TS_STAT")),
        (PG, "SELECT ts_rewrite('a'::tsquery, 'SELECT pg_sleep(9)::text::tsquery, ''b''::tsquery')", Err("TS_REWRITE")),
        (TS, "SELECT 1 WAITFOR DELAY '00:00:10'", Err("WAITFOR")),
        (TS, "SELECT 1 WHILE 1=1 IF 1=0 SELECT 1", Err("WHILE")),
        (TS, "SELECT * FROM t WITH (TABLOCKX, HOLDLOCK)", Err("TABLOCKX")),
        (TS, "SELECT * FROM t WITH (READCOMMITTEDLOCK)", Err("READCOMMITTEDLOCK")),
        (TS, "SELECT * FROM t WITH ([TABLOCKX])", Err("TABLOCKX")),
        (TS, "SELECT * FROM t WITH (\"updlock\")", Err("UPDLOCK")),
        (TS, "SELECT * FROM OPENROWSET('SQLNCLI', 'x', 'SELECT 1')", Err("OPENROWSET")),
        (TS, "SELECT * FROM [OPENQUERY](srv, 'SELECT 1')", Err("OPENQUERY")),
        (TS, "SELECT * FROM sys.fn_get_audit_file('c:\\x', DEFAULT, DEFAULT)", Err("FN_GET_AUDIT_FILE")),
        (TS, "SELECT [xp_cmdshell]", Err("XP_CMDSHELL")),
        (TS, "SELECT 1 SAVE TRAN x", Err("SAVE")),
        (TS, "SELECT 1 SETUSER 'dbo'", Err("SETUSER")),
        (TS, "SELECT 1 RECONFIGURE", Err("RECONFIGURE")),
        (TS, "SELECT 1 DISABLE TRIGGER ALL ON t", Err("DISABLE")),
        (TS, "SELECT 1 RECEIVE * FROM q", Err("RECEIVE")),
        (TS, "SELECT 1 END CONVERSATION @h", Err("CONVERSATION")),
        (TS, "SELECT 1 KILL 52", Err("KILL")),
        (TS, "SELECT 1 EXEC('SELECT 2')", Err("EXEC")),
        (TS, "SELECT 1 TRUNCATE TABLE t", Err("TRUNCATE")),
        // A line comment ends at '\r' too, in both servers.
        (TS, "SELECT name FROM t --x\rWAITFOR DELAY '00:00:30'", Err("WAITFOR")),
        (PG, "SELECT name FROM t --x\rFOR UPDATE", Err("UPDATE")),
        // PostgreSQL ends a -- comment at \n and \r only; for SQL Server other line breaks in
        // one are ambiguous, and either reading could hide text from the other.
        (PG, "SELECT 1 -- x\u{2028}FOR UPDATE\n", Ok(())),
        (TS, "SELECT 1 -- x\u{2028}WAITFOR DELAY '0:0:1'", Err("line break")),
        (TS, "SELECT 1 -- x\u{85}'\nWAITFOR DELAY '0:0:1' --'", Err("line break")),
        (PG, "SELECT 1\0; SELECT pg_sleep(1)", Err("NUL")),
        (TS, "SELECT 1 -- \0", Err("NUL")),
        // -- The review's bypasses. Quoted names are the same functions.
        (PG, "SELECT CASE WHEN n <= 50 THEN \"set_config\"('statement_timeout','0',true) ELSE \"pg_sleep\"(15)::text END FROM generate_series(1,51) n", Err("SET_CONFIG")),
        (PG, "SELECT \"pg_sleep\"(15)", Err("PG_SLEEP")),
        (PG, "SELECT \"PG_SLEEP\"(15)", Err("PG_SLEEP")),
        (PG, "SELECT pg_catalog.\"pg_sleep\"(1)", Err("PG_SLEEP")),
        (PG, "SELECT \"pg_advisory_lock\"(1)", Err("PG_ADVISORY_LOCK")),
        (PG, "SELECT \"pg_terminate_backend\"(1)", Err("PG_TERMINATE_BACKEND")),
        (PG, "SELECT \"query_to_xml\"('DELETE FROM t', true, false, '')", Err("QUERY_TO_XML")),
        // PostgreSQL brackets are array syntax, not names: their content is read as code.
        (PG, "SELECT (ARRAY[pg_sleep(3)::text])[1]", Err("PG_SLEEP")),
        (PG, "SELECT \"update\", [delete] FROM t", Err("DELETE")),
        (PG, "SELECT 1 AS [set]", Err("SET")),
        // In T-SQL the same text is one bracketed name (and pg_sleep means nothing there).
        (TS, "SELECT (ARRAY[pg_sleep(3)::text])[1]", Ok(())),
        // In T-SQL, e is a name, '\' a whole string and --' a comment: four statements.
        (TS, "SELECT e'\\' FROM (SELECT 1 AS e) AS t BEGIN TRAN SELECT TOP (1) 1 AS a FROM app.Invoices WITH (TABLOCKX, HOLDLOCK) WAITFOR DELAY '00:00:09' --'", Err("BEGIN")),
        (TS, "SELECT E'\\'' , 1 FROM t FOR UPDATE --'", Ok(())),
        (PG, "SELECT E'\\'' , 1 FROM t FOR UPDATE --'", Err("UPDATE")),
        (TS, "SELECT E'it\\'s', 'plain' FROM t", Err("unterminated string")),
        (PG, "SELECT E'it\\'s', 'plain' FROM t", Ok(())),
        // -- E-strings: only where E starts a token.
        (PG, "SELECT e'\\' , pg_sleep(1) --'", Ok(())),
        (PG, "SELECT name'\\' , pg_sleep(1) --'", Err("PG_SLEEP")),
        (PG, "SELECT abce'\\' , pg_sleep(1) --'", Err("PG_SLEEP")),
        (PG, "SELECT a$e'\\' , pg_sleep(1) --'", Err("PG_SLEEP")),
        // Any non-ASCII character is a name character to PostgreSQL: \u{a0}e is one name.
        (PG, "SELECT \u{a0}e'\\' , pg_sleep(1) --'", Err("PG_SLEEP")),
        (PG, "SELECT \"x\"e'\\' , 1 FROM t FOR UPDATE --'", Ok(())),
        (TS, "SELECT e'\\' , 1 WAITFOR DELAY '0:0:1' --'", Err("WAITFOR")),
        (PG, "SELECT 1e'\\' , pg_sleep(1) --'", Err("number directly followed by a name")),
        (PG, "SELECT 1.e'\\' , pg_sleep(1) --'", Err("number directly followed by a name")),
        (PG, "SELECT $1e'\\' , pg_sleep(1) --'", Err("number directly followed by a name")),
        (TS, "SELECT 1WAITFOR DELAY '0:0:1'", Err("number directly followed by a name")),
        (TS, "SELECT 0xWAITFOR DELAY '0:0:1'", Err("number directly followed by a name")),
        // A string continued on a new line keeps its kind: the continuation of an E-string
        // still has backslash escapes, so here the third quote ends it and pg_sleep is code.
        (PG, "SELECT E'x'\n'\\' ' , pg_sleep(1) --'", Err("PG_SLEEP")),
        (PG, "SELECT E'x' -- note\n  '\\' ' , pg_sleep(1) --'", Err("PG_SLEEP")),
        (PG, "SELECT 'x'\n'\\' , pg_sleep(1) --'", Err("PG_SLEEP")),
        // Without a newline, or across a block comment, it is a new plain string (and a syntax
        // error for the server): lexically pg_sleep stays inside it.
        (PG, "SELECT E'x' /* c */\n'\\' ' , pg_sleep(1) --'", Ok(())),
        // B'...' and X'...' know no '' escape, yet the text they cover is the same.
        (PG, "SELECT B'1''0', X'1F''ab'", Ok(())),
        (PG, "SELECT X''' , pg_sleep(1) --'", Ok(())),
        // -- Dollar quoting is PostgreSQL's only.
        (PG, "SELECT $$ ; delete $$, $t$ set $t$", Ok(())),
        (PG, "SELECT $$ ; $$", Ok(())),
        (TS, "SELECT $$ ; $$", Err("';'")),
        (TS, "SELECT $a$ WAITFOR DELAY '0:0:1' $a$", Err("WAITFOR")),
        (PG, "SELECT $a$ x $A$ ; pg_sleep(1) $a$", Ok(())),
        (PG, "SELECT $é$ ; $é$", Ok(())),
        // A $ inside a name starts no quote.
        (PG, "SELECT 1 AS a$b$ , pg_sleep(1) , 2 AS c$b$", Err("PG_SLEEP")),
        (PG, "SELECT $1, $2::text", Ok(())),
        // -- Unicode escapes can spell any name.
        (PG, "SELECT U&\"\\0070g_sleep\"(1)", Err("U&")),
        (PG, "SELECT u&'\\0070'", Err("U&")),
        (PG, "SELECT mu&'x', U & 'y'", Ok(())),
        (TS, "SELECT U&\"\\0070g_sleep\"(1)", Ok(())),
        // -- Nested comments must be nested: a flat reading would end this comment early and
        // take the rest for a string, hiding what both servers run.
        (PG, "SELECT 1 /* /* */ '*/ , pg_sleep(1) --' */", Err("PG_SLEEP")),
        (TS, "SELECT 1 /* /* */ '*/ WAITFOR DELAY '0:0:5' --' */", Err("WAITFOR")),
        // -- Doubled closing characters escape, and end nothing.
        (TS, "SELECT 1 AS [x]]' ] WAITFOR DELAY '0:0:9' --'", Err("WAITFOR")),
        (TS, "SELECT 1 AS [x]] WAITFOR DELAY '0:0:9' --] FROM t", Ok(())),
        (TS, "SELECT 1 AS \"x\"\"' \" WAITFOR DELAY '0:0:9' --'", Err("WAITFOR")),
        (PG, "SELECT 1 AS \"x\"\"' \" , pg_sleep(1) --'", Err("PG_SLEEP")),
        // T-SQL strings know no backslash escape.
        (TS, "SELECT 'C:\\' AS path WAITFOR DELAY '0:0:1' --'", Err("WAITFOR")),
    ];

    #[test]
    fn table() {
        for (dialect, sql, expected) in CASES {
            let got = check_query(*dialect, sql);
            match (expected, &got) {
                (Ok(()), Ok(_)) => {}
                (Err(why), Err(e)) => assert!(e.contains(why), "{dialect:?} {sql:?}: {e}"),
                _ => panic!("{dialect:?} {sql:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    /// Whatever state a passing query leaves the lexer in, text appended after it is read as
    /// code: a statement added to any passing query is refused.
    #[test]
    fn appending_a_statement_to_a_passing_query_is_refused() {
        for (dialect, sql, expected) in CASES {
            if expected.is_err() {
                continue;
            }
            let suffix = match dialect {
                Dialect::Postgres => "; SELECT pg_sleep(1)",
                Dialect::TSql => " WAITFOR DELAY '0:0:1'",
            };
            let sql = format!("{sql}{suffix}");
            assert!(
                check_query(*dialect, &sql).is_err(),
                "{dialect:?} {sql:?} passed"
            );
        }
    }

    #[test]
    fn returns_the_query_without_its_trailing_semicolon() {
        assert_eq!(check_query(PG, "SELECT 1 ;  ").unwrap(), "SELECT 1");
        assert_eq!(check_query(TS, "SELECT 1; -- done\n").unwrap(), "SELECT 1");
        assert_eq!(
            check_query(PG, "SELECT ';' /* ; */;").unwrap(),
            "SELECT ';' /* ; */"
        );
        assert_eq!(check_query(TS, " SELECT 1 -- x").unwrap(), " SELECT 1 -- x");
    }

    /// Every keyword is refused bare and allowed as a quoted column; every denied name is
    /// refused bare and quoted, in any case.
    #[test]
    fn every_listed_word_is_refused() {
        for (dialect, quote) in [(PG, ["\"", "\""]), (TS, ["[", "]"])] {
            let keywords = match dialect {
                Dialect::Postgres => KEYWORDS.to_vec(),
                Dialect::TSql => [KEYWORDS, TSQL_KEYWORDS].concat(),
            };
            for kw in keywords {
                let bare = format!("SELECT a FROM t {kw}");
                let e = check_query(dialect, &bare).unwrap_err();
                assert!(e.contains(&kw.to_uppercase()), "{dialect:?} {bare}: {e}");
                let quoted = format!("SELECT {}{kw}{} FROM t", quote[0], quote[1]);
                assert!(
                    check_query(dialect, &quoted).is_ok(),
                    "{dialect:?} {quoted}"
                );
            }
            let names = match dialect {
                Dialect::Postgres => POSTGRES_NAMES,
                Dialect::TSql => TSQL_NAMES,
            };
            for name in names.iter().flat_map(|d| d.names) {
                let name = name.replace('*', "_x");
                for sql in [
                    format!("SELECT {name}(1)"),
                    format!("SELECT {}{}{}(1)", quote[0], name.to_uppercase(), quote[1]),
                ] {
                    let e = check_query(dialect, &sql).unwrap_err();
                    assert!(e.contains(&name.to_uppercase()), "{dialect:?} {sql}: {e}");
                }
            }
        }
    }
}
