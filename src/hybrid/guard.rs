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

/// `Ok` when `sql` is a single read-only Trino query.
pub fn check_remote(sql: &str) -> Result<(), String> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(format!("SQL text longer than {MAX_SQL_BYTES} bytes"));
    }
    let tokens = scan(sql)?;
    let mut words = tokens.iter().filter(|t| !matches!(t, Lex::Open));
    match words.next() {
        None => Err("empty statement".into()),
        Some(Lex::Word(w))
            if ["select", "with", "values"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
        {
            Ok(())
        }
        Some(Lex::Word(w)) => Err(format!(
            "only a read-only query (SELECT, WITH or VALUES) may run remotely, not `{}`",
            w.to_ascii_uppercase()
        )),
        Some(_) => Err("only a read-only query (SELECT, WITH or VALUES) may run remotely".into()),
    }
}

/// Aliases become table names in the final SQL: plain identifiers, so nothing needs quoting and
/// nothing can smuggle a path or a schema in.
pub fn check_alias(alias: &str) -> Result<(), String> {
    let mut chars = alias.chars();
    let ok = alias.len() <= MAX_ALIAS
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "alias `{alias}` must be an identifier: a letter or `_`, then letters, digits or `_` \
             (at most {MAX_ALIAS})"
        ))
    }
}

#[derive(Debug, PartialEq)]
enum Lex {
    Word(String),
    Open,
    Other,
}

/// The statement's tokens up to its end. Refuses a second statement after a `;` and
/// unterminated strings, quoted identifiers and comments.
fn scan(sql: &str) -> Result<Vec<Lex>, String> {
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
            let end = sql[i + 2..].find("*/").ok_or("unterminated /* comment")?;
            i += 2 + end + 2;
            continue;
        }
        if ended {
            return Err("only one statement is allowed".into());
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
                                "unterminated string literal".into()
                            } else {
                                "unterminated quoted identifier".into()
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
}
