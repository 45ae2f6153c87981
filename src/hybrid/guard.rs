//! Checks on the SQL of a hybrid request before anything runs.
//!
//! Remote SQL is Trino's dialect, which no Rust parser knows completely (lambdas, `ROW` types,
//! `json_query(... WITH ARRAY WRAPPER)`, ...): a parser that refused what it cannot read would
//! refuse valid Trino, and one that let it through would let through whatever an attacker made
//! unreadable. So the check reads the statement's skeleton itself, on Trino's tokens — strings,
//! quoted and `U&"..."` identifiers, comments and parentheses are understood, nothing else needs
//! to be:
//!
//! * **the statement kind**: one statement, a query — `SELECT`, `VALUES` or `(` query `)`, or a
//!   `WITH` list whose every named query *and* whose body are queries again. `WITH x AS
//!   (SELECT 1) INSERT INTO t ...` is not read-only, whatever Trino's grammar would make of it;
//!   inline routines (`WITH FUNCTION`) are refused, as their bodies are statements.
//! * **table functions**: `TABLE(name(...))` may only call the read-only table functions Trino
//!   ships ([`READ_ONLY_TABLE_FUNCTIONS`]); connector pass-through functions that run their text
//!   on the connector's database (`query`, `raw_query`, `procedure`, in any catalog or schema,
//!   quoted or not) are refused wherever a name ending in them is called.
//!
//! What the query may read is Trino's access control's business: it runs as the caller. The
//! final SQL is DataFusion's and is checked on DataFusion's own parse tree and plan, in `engine`.

/// Largest SQL text accepted (remote or final).
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Longest alias.
const MAX_ALIAS: usize = 64;

/// Table functions `TABLE(...)` may call in remote SQL: Trino's own (`sequence`,
/// `exclude_columns`), the Delta Lake and Iceberg change feeds (`table_changes`) and the Google
/// Sheets connector's `sheet` — all read-only. Compared with the last part of the name.
pub const READ_ONLY_TABLE_FUNCTIONS: [&str; 4] =
    ["sequence", "exclude_columns", "table_changes", "sheet"];

/// Connector table functions that send their argument to the underlying database as SQL (or as a
/// stored-procedure call), which may write there: JDBC connectors' and BigQuery's `query`,
/// Elasticsearch/OpenSearch's `raw_query`, SQL Server's `procedure`.
const PASS_THROUGH_FUNCTIONS: [&str; 3] = ["query", "raw_query", "procedure"];

/// Why remote SQL may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("SQL text longer than {} bytes", MAX_SQL_BYTES)]
    TooLong,
    #[error("empty statement")]
    Empty,
    /// The statement (or the body or a named query of its `WITH`) starts with this word
    /// (upper-cased), not SELECT, WITH or VALUES.
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
    #[error("unbalanced parentheses")]
    UnbalancedParentheses,
    /// A `WITH` clause that is not `WITH [RECURSIVE] name [(columns)] AS (query), ...`.
    #[error("cannot read the WITH clause: expected {0}")]
    MalformedWith(&'static str),
    #[error("inline functions (WITH FUNCTION) may not run remotely")]
    InlineFunction,
    /// A connector function that runs its text as SQL on the connector's database (the name as
    /// written, parts joined with `.`).
    #[error(
        "table function `{0}` runs its text as SQL on the connector's database, which may write \
         there; remote SQL must be read-only"
    )]
    PassThrough(String),
    /// `TABLE(...)` calls a function not known to be read-only.
    #[error(
        "table function `{0}` is not one known to be read-only (allowed: {allowed})",
        allowed = READ_ONLY_TABLE_FUNCTIONS.join(", ")
    )]
    UnknownTableFunction(String),
}

/// `Ok` when `sql` is a single read-only Trino query.
pub fn check_remote(sql: &str) -> Result<(), GuardError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(GuardError::TooLong);
    }
    let tokens = scan(sql)?;
    if tokens.is_empty() {
        return Err(GuardError::Empty);
    }
    check_parentheses(&tokens)?;
    check_query(&tokens)?;
    check_table_functions(&tokens)
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

/// A token of Trino's lexical grammar, as far as the checks need one.
#[derive(Debug, Clone, PartialEq)]
enum Lex {
    /// An unquoted identifier or keyword, as written.
    Word(String),
    /// A quoted identifier, its `""` unescaped; `unicode` for `U&"..."`, whose escapes are
    /// decoded when it is read as a name (a `UESCAPE` may follow).
    Quoted {
        text: String,
        unicode: bool,
    },
    /// A string literal, its `''` unescaped.
    Str(String),
    Open,
    Close,
    Dot,
    Comma,
    Other,
}

impl Lex {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Lex::Word(x) if x.eq_ignore_ascii_case(w))
    }
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
        // `U&"..."` and `U&'...'`: Unicode identifiers and strings.
        let unicode = (c == b'U' || c == b'u')
            && b.get(i + 1) == Some(&b'&')
            && matches!(b.get(i + 2), Some(b'"' | b'\''));
        if unicode {
            i += 2;
        }
        match b[i] {
            b';' => {
                ended = true;
                i += 1;
            }
            q @ (b'\'' | b'"') => {
                let (text, next) = quoted(sql, i, q)?;
                out.push(if q == b'"' {
                    Lex::Quoted { text, unicode }
                } else {
                    Lex::Str(text)
                });
                i = next;
            }
            b'(' => {
                out.push(Lex::Open);
                i += 1;
            }
            b')' => {
                out.push(Lex::Close);
                i += 1;
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push(Lex::Dot);
                i += 1;
            }
            b',' => {
                out.push(Lex::Comma);
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Lex::Word(sql[start..i].to_string()));
            }
            c if c.is_ascii_digit() || c == b'.' => {
                // A number (`1`, `1.5`, `.5`, `1e3`), or a digit-led identifier: one token.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
                out.push(Lex::Other);
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

/// The text of the string or quoted identifier opened by `q` at `start` (doubled quotes stand for
/// one), and the index after its closing quote.
fn quoted(sql: &str, start: usize, q: u8) -> Result<(String, usize), GuardError> {
    let b = sql.as_bytes();
    let mut text = String::new();
    let mut from = start + 1;
    let mut j = start + 1;
    loop {
        match b.get(j) {
            None => {
                return Err(if q == b'\'' {
                    GuardError::UnterminatedString
                } else {
                    GuardError::UnterminatedIdentifier
                })
            }
            Some(&c) if c == q && b.get(j + 1) == Some(&q) => {
                text.push_str(&sql[from..=j]);
                j += 2;
                from = j;
            }
            Some(&c) if c == q => {
                text.push_str(&sql[from..j]);
                return Ok((text, j + 1));
            }
            Some(_) => j += 1,
        }
    }
}

/// Every `(` has its `)`, in order.
fn check_parentheses(tokens: &[Lex]) -> Result<(), GuardError> {
    let mut depth = 0usize;
    for t in tokens {
        match t {
            Lex::Open => depth += 1,
            Lex::Close => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(GuardError::UnbalancedParentheses)?
            }
            _ => {}
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err(GuardError::UnbalancedParentheses)
    }
}

/// Index of the `)` that closes the `(` at `open` (parentheses are balanced).
fn closing(tokens: &[Lex], open: usize) -> Result<usize, GuardError> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t {
            Lex::Open => depth += 1,
            Lex::Close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
    }
    Err(GuardError::UnbalancedParentheses)
}

/// `tokens` start a query: `(`s, then `SELECT` or `VALUES`, or a `WITH` list of queries followed
/// by a query. What follows the first word of a query does not change its kind in Trino's
/// grammar (set operations, `ORDER BY`, ... combine queries), so it is not read further here.
fn check_query(tokens: &[Lex]) -> Result<(), GuardError> {
    let mut i = tokens.iter().take_while(|t| **t == Lex::Open).count();
    match tokens.get(i) {
        None => Err(GuardError::Empty),
        Some(t) if t.is_word("select") || t.is_word("values") => Ok(()),
        Some(t) if t.is_word("with") => {
            i += 1;
            if tokens.get(i).is_some_and(|t| t.is_word("recursive")) {
                i += 1;
            }
            // `WITH FUNCTION f(...) RETURNS ...`, not a query named `function`.
            if tokens.get(i).is_some_and(|t| t.is_word("function"))
                && !matches!(tokens.get(i + 1), Some(Lex::Open))
                && !tokens.get(i + 1).is_some_and(|t| t.is_word("as"))
            {
                return Err(GuardError::InlineFunction);
            }
            loop {
                if !matches!(tokens.get(i), Some(Lex::Word(_) | Lex::Quoted { .. })) {
                    return Err(GuardError::MalformedWith("the name of a WITH query"));
                }
                i += 1;
                if tokens.get(i) == Some(&Lex::Open) {
                    i = closing(tokens, i)? + 1;
                }
                if !tokens.get(i).is_some_and(|t| t.is_word("as")) {
                    return Err(GuardError::MalformedWith(
                        "AS after the name of a WITH query",
                    ));
                }
                i += 1;
                if tokens.get(i) != Some(&Lex::Open) {
                    return Err(GuardError::MalformedWith("( after AS"));
                }
                let end = closing(tokens, i)?;
                check_query(&tokens[i + 1..end])?;
                i = end + 1;
                if tokens.get(i) == Some(&Lex::Comma) {
                    i += 1;
                } else {
                    break;
                }
            }
            check_query(&tokens[i..])
        }
        Some(Lex::Word(w)) => Err(GuardError::NotAQuery(w.to_ascii_uppercase())),
        Some(_) => Err(GuardError::NotAWord),
    }
}

/// A name part: an identifier, a quoted identifier (a `U&` one decoded, with its `UESCAPE` if
/// one follows), and the index after it.
fn name_part(tokens: &[Lex], i: usize) -> Option<(String, usize)> {
    match tokens.get(i)? {
        Lex::Word(w) => Some((w.clone(), i + 1)),
        Lex::Quoted {
            text,
            unicode: false,
        } => Some((text.clone(), i + 1)),
        Lex::Quoted {
            text,
            unicode: true,
        } => {
            let escape = match (tokens.get(i + 1), tokens.get(i + 2)) {
                (Some(u), Some(Lex::Str(e))) if u.is_word("uescape") => Some(e.as_str()),
                _ => None,
            };
            let next = if escape.is_some() { i + 3 } else { i + 1 };
            let escape = escape.and_then(|e| e.chars().next()).unwrap_or('\\');
            Some((unescape_unicode(text, escape), next))
        }
        _ => None,
    }
}

/// `U&"..."`: `<e>XXXX` and `<e>+XXXXXX` are code points in hex, `<e><e>` is `<e>`. Anything
/// else is kept as written (Trino refuses it).
fn unescape_unicode(text: &str, escape: char) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != escape {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&escape) {
            chars.next();
            out.push(escape);
            continue;
        }
        let wide = chars.peek() == Some(&'+');
        if wide {
            chars.next();
        }
        let digits: String = chars.by_ref().take(if wide { 6 } else { 4 }).collect();
        match u32::from_str_radix(&digits, 16)
            .ok()
            .and_then(char::from_u32)
        {
            Some(decoded) => out.push(decoded),
            None => {
                out.push(escape);
                if wide {
                    out.push('+');
                }
                out.push_str(&digits);
            }
        }
    }
    out
}

/// A dotted name starting at `i` (`catalog.schema.function`), its parts, and the index after it.
fn dotted_name(tokens: &[Lex], i: usize) -> Option<(Vec<String>, usize)> {
    let (first, mut i) = name_part(tokens, i)?;
    let mut parts = vec![first];
    while tokens.get(i) == Some(&Lex::Dot) {
        let (part, next) = name_part(tokens, i + 1)?;
        parts.push(part);
        i = next;
    }
    Some((parts, i))
}

/// No pass-through function is called anywhere, and `TABLE(...)` calls only read-only ones.
fn check_table_functions(tokens: &[Lex]) -> Result<(), GuardError> {
    for i in 0..tokens.len() {
        let in_table = i >= 2 && tokens[i - 2].is_word("table") && tokens[i - 1] == Lex::Open;
        let after_dot = i >= 1 && tokens[i - 1] == Lex::Dot;
        if after_dot {
            // Seen from the start of its name.
            continue;
        }
        let Some((parts, next)) = dotted_name(tokens, i) else {
            continue;
        };
        if tokens.get(next) != Some(&Lex::Open) {
            continue;
        }
        let Some(last) = parts.last() else { continue };
        // `TABLE(SELECT (1) ...)` is a table argument, not a call of `select`.
        if parts.len() == 1
            && matches!(&tokens[i], Lex::Word(_))
            && check_query(&tokens[i..]).is_ok()
        {
            continue;
        }
        let pass_through = PASS_THROUGH_FUNCTIONS
            .iter()
            .any(|f| last.eq_ignore_ascii_case(f));
        if pass_through && (in_table || parts.len() > 1) {
            return Err(GuardError::PassThrough(parts.join(".")));
        }
        let read_only = READ_ONLY_TABLE_FUNCTIONS
            .iter()
            .any(|f| last.eq_ignore_ascii_case(f));
        if in_table && !read_only {
            return Err(GuardError::UnknownTableFunction(parts.join(".")));
        }
    }
    Ok(())
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
    fn a_with_is_read_only_only_when_its_body_and_its_queries_are() {
        let not_a_query = |sql: &str, word: &str| {
            assert_eq!(
                check_remote(sql),
                Err(GuardError::NotAQuery(word.into())),
                "{sql}"
            );
        };
        // The red team's statement, and variants.
        not_a_query(
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "INSERT",
        );
        not_a_query(
            "with x as (select 1) insert into t select * from x",
            "INSERT",
        );
        not_a_query("WiTh x AS (SELECT 1) dElEtE FROM t", "DELETE");
        not_a_query(
            "WITH a AS (SELECT 1), \"b c\"(n) AS (VALUES 2) UPDATE t SET n = 1",
            "UPDATE",
        );
        not_a_query(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             MERGE INTO t USING r ON t.n = r.n WHEN MATCHED THEN DELETE",
            "MERGE",
        );
        // Nested: in the body, in a named query, in parentheses, behind comments.
        not_a_query(
            "WITH a AS (WITH b AS (SELECT 1) SELECT * FROM b) DELETE FROM t",
            "DELETE",
        );
        not_a_query(
            "WITH a AS (WITH b AS (SELECT 1) DELETE FROM t) SELECT 1",
            "DELETE",
        );
        not_a_query("WITH a AS (DELETE FROM t) SELECT * FROM a", "DELETE");
        not_a_query(
            "((WITH x AS (SELECT 1) (INSERT INTO t VALUES 1)))",
            "INSERT",
        );
        not_a_query(
            "WITH a AS (SELECT ')' AS \")\") /* ) */ -- )\n INSERT INTO t VALUES 1",
            "INSERT",
        );
        not_a_query("WITH x AS (SELECT 1) CALL system.flush()", "CALL");

        assert_eq!(
            check_remote("WITH FUNCTION f() RETURNS int RETURN 1 SELECT f()"),
            Err(GuardError::InlineFunction)
        );
        for sql in [
            "WITH x SELECT 1",
            "WITH x AS SELECT 1",
            "WITH AS (SELECT 1) SELECT 1",
        ] {
            assert!(
                matches!(check_remote(sql), Err(GuardError::MalformedWith(_))),
                "{sql}"
            );
        }
        assert_eq!(
            check_remote("WITH x AS (SELECT 1 SELECT 1"),
            Err(GuardError::UnbalancedParentheses)
        );
        assert_eq!(
            check_remote("SELECT 1)"),
            Err(GuardError::UnbalancedParentheses)
        );
    }

    #[test]
    fn table_functions_that_run_sql_are_refused() {
        let pass_through = |sql: &str, name: &str| {
            assert_eq!(
                check_remote(sql),
                Err(GuardError::PassThrough(name.into())),
                "{sql}"
            );
        };
        // The red team's statement, and variants.
        pass_through(
            "SELECT * FROM TABLE(system.query(query => 'DELETE FROM t'))",
            "system.query",
        );
        pass_through(
            "select * from table(postgresql.system.query(query => 'drop table x'))",
            "postgresql.system.query",
        );
        pass_through(
            "SELECT * FROM TABLE(\"system\".\"query\"(query => 'x'))",
            "system.query",
        );
        pass_through(
            "SELECT * FROM TABLE(\"PG\".\"SYSTEM\".\"QUERY\"(query => 'x'))",
            "PG.SYSTEM.QUERY",
        );
        pass_through("SELECT * FROM TABLE(query(query => 'x'))", "query");
        pass_through(
            "SELECT * FROM TABLE /* why */ ( system -- not\n . Query ( query => 'x'))",
            "system.Query",
        );
        pass_through(
            "SELECT * FROM TABLE(es.system.raw_query(schema => 's', index => 'i', query => '{}'))",
            "es.system.raw_query",
        );
        pass_through(
            "SELECT * FROM TABLE(mssql.system.procedure(query => 'EXECUTE dbo.purge'))",
            "mssql.system.procedure",
        );
        // Spelled with Unicode escapes.
        pass_through(
            "SELECT * FROM TABLE(system.U&\"\\0071uery\"(query => 'x'))",
            "system.query",
        );
        pass_through(
            "SELECT * FROM TABLE(system.u&\"!0071!+000075ery\" UESCAPE '!'(query => 'x'))",
            "system.query",
        );
        // Nested in another table function, in a WITH, or called outside TABLE(...).
        pass_through(
            "SELECT * FROM TABLE(exclude_columns(input => TABLE(system.query(query => 'x')), \
             columns => DESCRIPTOR(a)))",
            "system.query",
        );
        pass_through(
            "WITH x AS (SELECT * FROM TABLE(pg.system.query(query => 'x'))) SELECT * FROM x",
            "pg.system.query",
        );
        pass_through("SELECT pg.system.query('x')", "pg.system.query");
        // Table functions not known to be read-only.
        assert_eq!(
            check_remote("SELECT * FROM TABLE(mystery.system.run(x => 1))"),
            Err(GuardError::UnknownTableFunction(
                "mystery.system.run".into()
            ))
        );
    }

    #[test]
    fn queries_that_only_look_like_it_still_pass() {
        for sql in [
            "SELECT * FROM TABLE(sequence(start => 1, stop => 10))",
            "SELECT * FROM TABLE(system.sequence(start => 1, stop => 10, step => 2))",
            "SELECT * FROM TABLE(exclude_columns(input => TABLE(orders), columns => DESCRIPTOR(a)))",
            "SELECT * FROM TABLE(delta.system.table_changes(schema_name => 's', table_name => 't'))",
            "SELECT * FROM TABLE(SELECT (1) AS x)",
            "SELECT query, raw_query FROM logs WHERE query <> 'TABLE(system.query(x))'",
            "SELECT * FROM (VALUES 1) AS query(x)",
            "WITH query AS (SELECT 1) SELECT * FROM query",
            "WITH query(x) AS (SELECT 1) SELECT x FROM query",
            "WITH function AS (SELECT 1) SELECT * FROM function",
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SELECT * FROM r",
            "WITH a AS (SELECT 1), b AS (WITH c AS (VALUES 2) SELECT * FROM c) \
             (SELECT * FROM a UNION ALL SELECT * FROM b)",
            "SELECT json_query(j, 'lax $.a' WITH ARRAY WRAPPER), transform(xs, x -> x + 1) FROM t",
            "SELECT t.x, 1.5e3, .5 FROM t -- TABLE(system.query('x'))",
            "SELECT \"system.query\"(1)",
        ] {
            assert_eq!(check_remote(sql), Ok(()), "{sql}");
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
