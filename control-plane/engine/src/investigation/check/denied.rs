//! What the check refuses: keywords (among bare words only) and dangerous names (among bare
//! words and quoted identifiers), per dialect, each with the reason support staff are shown.
//!
//! Growing a list is always safe (a refused query merely does not run); a word missing from it is
//! left to the server: to its permissions, and on SQL Server to nothing at all when the word starts
//! a second statement in the batch.

/// Keywords that write, lock, change the session or transaction, or start another statement, in
/// either dialect; compared with bare words only, so a quoted column of that name stays allowed.
pub(super) const KEYWORDS: &[&str] = &[
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
    // FOR SHARE / FOR KEY SHARE row locks (FOR UPDATE is caught by "update").
    "share",
];

/// More T-SQL statements a batch may run after the query without a `;` (SETUSER, RECONFIGURE,
/// ENABLE/DISABLE TRIGGER, Service Broker's RECEIVE, SEND and GET/MOVE/END CONVERSATION, SAVE
/// TRANSACTION, ADD SIGNATURE/SENSITIVITY CLASSIFICATION, the obsolete but reserved DUMP and LOAD).
pub(super) const TSQL_KEYWORDS: &[&str] = &[
    "setuser",
    "reconfigure",
    "enable",
    "disable",
    "receive",
    "send",
    "conversation",
    "save",
    "add",
    "dump",
    "load",
];

/// Names a query must not call or mention, bare or quoted, with the reason given to support staff.
pub(super) struct Denied {
    /// Lower-case names; one ending in `*` denies every name it starts.
    pub(super) names: &'static [&'static str],
    /// Why, in words for support staff.
    pub(super) why: &'static str,
}

impl Denied {
    /// Whether `name` (folded) is one of these names.
    pub(super) fn matches(&self, name: &str) -> bool {
        self.names.iter().any(|n| match n.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *n,
        })
    }
}

/// PostgreSQL functions a SELECT-only reader may still call to do harm.
pub(super) const POSTGRES_NAMES: &[Denied] = &[
    Denied {
        names: &["set_config"],
        why: "it changes session settings, statement_timeout among them",
    },
    Denied {
        names: &["pg_sleep*"],
        why: "it holds the connection without doing any work",
    },
    Denied {
        // Each runs SQL of its own: the query_to_xml family and ts_stat/ts_rewrite (and contrib's
        // crosstab/connectby/xpath_table) take it as text, where no lexical check can see it.
        names: &[
            "query_to_xml*",
            "cursor_to_xml*",
            "table_to_xml*",
            "schema_to_xml*",
            "database_to_xml*",
            "ts_stat",
            "ts_rewrite",
            "crosstab*",
            "connectby",
            "xpath_table",
        ],
        why: "it runs SQL of its own, out of this check's sight",
    },
    Denied {
        names: &["dblink*"],
        why: "it opens connections to other databases",
    },
    Denied {
        names: &["pg_terminate_backend", "pg_cancel_backend"],
        why: "it ends or cancels other sessions",
    },
    Denied {
        names: &["pg_advisory*", "pg_try_advisory*"],
        why: "it takes locks that can block the application",
    },
    Denied {
        names: &[
            "lo_*",
            "loread",
            "lowrite",
            "pg_read_file",
            "pg_read_binary_file",
            "pg_ls_*",
            "pg_stat_file",
            "pg_file_*",
        ],
        why: "it reads or writes large objects or server files",
    },
    Denied {
        names: &[
            "pg_notify",
            "pg_reload_conf",
            "pg_rotate_logfile*",
            "pg_logical_emit_message",
            "nextval",
            "setval",
            "txid_current",
            "pg_current_xact_id",
        ],
        why: "it writes, signals or assigns a transaction id",
    },
];

/// T-SQL functions, procedures and table hints a SELECT-only reader may still use to do harm.
pub(super) const TSQL_NAMES: &[Denied] = &[
    Denied {
        names: &["openrowset", "openquery", "opendatasource", "openxml"],
        why: "it reaches other servers, files or documents",
    },
    Denied {
        names: &[
            "fn_get_audit_file",
            "fn_xe_file_target_read_file",
            "fn_trace_gettable",
        ],
        why: "it reads files on the server",
    },
    Denied {
        // A procedure runs only after EXEC (refused), except as a batch's first word (which must
        // be SELECT or WITH); refusing the names as well costs nothing.
        names: &["xp_*", "sp_*"],
        why: "system and extended procedures do not run in an investigation",
    },
    Denied {
        names: &[
            "tablock",
            "tablockx",
            "xlock",
            "updlock",
            "holdlock",
            "paglock",
            "serializable",
            "repeatableread",
            "readcommittedlock",
        ],
        why: "it takes or holds locks that can block the application",
    },
];
