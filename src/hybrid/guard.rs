//! Checks on the SQL of a hybrid request before anything runs.
//!
//! Remote SQL is Trino's dialect, which no Rust parser knows completely, so it is checked
//! lexically — and that is enough: in Trino's grammar every statement that starts with `SELECT`,
//! `WITH`, `VALUES` or `(` is a query, so "one statement, starting with one of those words" is
//! exactly "one read-only query". (What that query may read is Trino's access control's business:
//! it runs as the caller.) The final SQL is DataFusion's and is checked on DataFusion's own parse
//! tree and plan, in `engine`.

/// Largest SQL text accepted (remote or final).
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Longest alias.
const MAX_ALIAS: usize = 64;

/// Why remote SQL may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("SQL text longer than {} bytes", MAX_SQL_BYTES)]
    TooLong,
    #[error("empty statement")]
    Empty,
    /// The statement starts with this word (upper-cased), not SELECT, WITH or VALUES.
    #[error("only a read-only query (SELECT, WITH or VALUES) may run remotely, not `{0}`")]
    NotAQuery(String),
    /// The statement starts with something other than a word.
    #[error("only a read-only query (SELECT, WITH or VALUES) may run remotely")]
    NotAWord,
    #[error("only one statement is allowed")]
    SecondStatement,
    #[error("unterminated /* comment")]
    UnterminatedComment,
    #[error("unterminated string literal")]
    UnterminatedString,
    #[error("unterminated quoted identifier")]
    UnterminatedIdentifier,
}

/// `Ok` when `sql` is a single read-only Trino query.
pub fn check_remote(sql: &str) -> Result<(), GuardError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(GuardError::TooLong);
    }
    let tokens = scan(sql)?;
    let mut words = tokens.iter().filter(|t| !matches!(t, Lex::Open));
    match words.next() {
        None => Err(GuardError::Empty),
        Some(Lex::Word(w))
            if ["select", "with", "values"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            Ok(())
        }
        Some(Lex::Word(w)) => Err(GuardError::NotAQuery(w.to_ascii_uppercase())),
        Some(_) => Err(GuardError::NotAWord),
    }
}

/// What a checked name will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A registration's alias in a request.
    Alias,
    /// A local table of `hybrid.tables`.
    TableName,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NameKind::Alias => "alias",
            NameKind::TableName => "table name",
        })
    }
}

/// A name that cannot be a table name in the final SQL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} `{name}` must be an identifier: a letter or `_`, then letters, digits or `_` \
     (at most {})",
    MAX_ALIAS
)]
pub struct NotAnIdentifier {
    pub kind: NameKind,
    pub name: String,
}

/// Aliases and local tables become table names in the final SQL: plain identifiers, so nothing
/// needs quoting and nothing can smuggle a path or a schema in.
pub fn check_identifier(kind: NameKind, name: &str) -> Result<(), NotAnIdentifier> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_ALIAS
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NotAnIdentifier {
            kind,
            name: name.to_string(),
        })
    }
}

/// [`check_identifier`] for an alias, as text: `config::validate` still rewords this message for
/// table names; it should call `check_identifier(NameKind::TableName, ..)` instead.
pub fn check_alias(alias: &str) -> Result<(), String> {
    check_identifier(NameKind::Alias, alias).map_err(|e| e.to_string())
}

#[derive(Debug, PartialEq)]
enum Lex {
    Word(String),
    Open,
    Other,
}

/// The statement's tokens up to its end. Refuses a second statement after a `;` and
/// unterminated strings, quoted identifiers and comments.
fn scan(sql: &str) -> Result<Vec<Lex>, GuardError> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut ended = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..]
                .find("*/")
                .ok_or(GuardError::UnterminatedComment)?;
            i += 2 + end + 2;
            continue;
        }
        if ended {
            return Err(GuardError::SecondStatement);
        }
        match c {
            b';' => {
                ended = true;
                i += 1;
            }
            b'\'' | b'"' => {
                // '' and "" escape the quote inside.
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => {
                            return Err(if c == b'\'' {
                                GuardError::UnterminatedString
                            } else {
                                GuardError::UnterminatedIdentifier
                            })
                        }
                        Some(&q) if q == c && b.get(j + 1) == Some(&c) => j += 2,
                        Some(&q) if q == c => break,
                        Some(_) => j += 1,
                    }
                }
                out.push(Lex::Other);
                i = j + 1;
            }
            b'(' => {
                out.push(Lex::Open);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Lex::Word(sql[start..i].to_string()));
            }
            _ => {
                out.push(Lex::Other);
                // Step over a whole UTF-8 character.
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_queries_pass() {
        for sql in [
            "SELECT 1",
            "  -- why\n select * from t;",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "(SELECT 1) UNION ALL (SELECT 2)",
            "VALUES (1, 'a;b')",
            "/* c */ SELECT 'it''s; fine', \"we;ird\" FROM t ; -- trailing",
        ] {
            assert_eq!(check_remote(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn writes_and_second_statements_are_refused() {
        for sql in [
            "",
            "  ; ",
            "INSERT INTO t VALUES (1)",
            "DELETE FROM t",
            "CREATE TABLE x AS SELECT 1",
            "SELECT 1; DROP TABLE t",
            "SELECT 1;;",
            "CALL system.flush()",
            "SELECT 'unterminated",
            "SELECT 1 /* open",
            "EXPLAIN ANALYZE INSERT INTO t SELECT 1",
            "(INSERT INTO t VALUES 1)",
        ] {
            assert!(check_remote(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn aliases_are_plain_identifiers() {
        assert!(check_alias("traffic_2").is_ok());
        assert!(check_alias("_t").is_ok());
        for bad in ["", "1x", "a.b", "a b", "../x", "x;", "ä"] {
            assert!(check_alias(bad).is_err(), "{bad}");
        }
        assert!(check_alias(&"a".repeat(65)).is_err());
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            check_remote("delete from t"),
            Err(GuardError::NotAQuery("DELETE".into()))
        );
        assert_eq!(
            check_remote("SELECT 1; SELECT 2"),
            Err(GuardError::SecondStatement)
        );
        assert_eq!(
            check_remote("SELECT 'x"),
            Err(GuardError::UnterminatedString)
        );
        assert_eq!(
            check_remote("SELECT \"x"),
            Err(GuardError::UnterminatedIdentifier)
        );
        assert_eq!(check_remote("/* x"), Err(GuardError::UnterminatedComment));
        assert_eq!(check_remote("1"), Err(GuardError::NotAWord));
        assert_eq!(check_remote(" -- nothing"), Err(GuardError::Empty));
        // The messages the API has always sent.
        assert_eq!(
            check_alias("a b").unwrap_err(),
            "alias `a b` must be an identifier: a letter or `_`, then letters, digits or `_` \
             (at most 64)"
        );
        let table = check_identifier(NameKind::TableName, "alias x").unwrap_err();
        assert!(
            table.to_string().starts_with("table name `alias x` must"),
            "{table}"
        );
    }
}
