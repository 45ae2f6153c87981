//! What the emulator answers by hand rather than on the SQL engine (`engine`), because it is
//! not SQL semantics: the protocol's session statements, the gateways' load probe, the canned
//! tables, and the test-control hint in comments. Every other statement runs on the engine.
//!
//! - `USE [catalog.]schema`, `SET SESSION name = value`, `RESET SESSION name`: they change
//!   nothing here but tell the client, in `X-Trino-Set-Catalog`/`-Set-Schema`/`-Set-Session`/
//!   `-Clear-Session`, what to send from then on (the client keeps the session, as with Trino);
//! - `START TRANSACTION`, `COMMIT`, `ROLLBACK`: transaction ids handed out and checked like
//!   Trino's (`X-Trino-Started-Transaction-Id`, `-Clear-Transaction-Id`; an unknown id fails
//!   every statement with `UNKNOWN_TRANSACTION`); the engine has no transactions;
//! - `SELECT [state,] count(*) FROM system.runtime.queries ...`: the load probe gateways send
//!   every few seconds, answered from the live counts without planning anything (other queries
//!   of the table run on the engine);
//! - `SELECT * FROM all_types | web.daily [LIMIT n]` (any catalog): the canned tables of
//!   `tables`, whose values (every Trino type, `row`, `map`, `time with time zone`, ...) are
//!   written as recorded from a real Trino, which the engine's Arrow types cannot all carry;
//! - `/* emulator:page_delay_ms=N */` anywhere in a statement: every result page of that query
//!   is delayed by N ms.

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

use super::knobs::MAX_DELAY_MS;
use super::protocol::{
    java_url_encode, Column, ErrorCode, ErrorLocation, QueryError, ResponseHeaders, SqlType,
};
use super::query::{Plan, Session};
use super::state::EmulatorState;

/// A statement the emulator answers itself.
#[derive(Debug, PartialEq)]
pub(crate) enum Own {
    Use {
        catalog: Option<String>,
        schema: String,
    },
    SetSession {
        name: String,
        value: String,
    },
    ResetSession {
        name: String,
    },
    StartTransaction,
    Commit,
    Rollback,
    /// The load probe; `grouped`: `GROUP BY state` (else a plain `count(*)`).
    LoadProbe {
        grouped: bool,
    },
    /// `SELECT * FROM <canned table> [LIMIT n]`.
    Canned {
        name: Vec<String>,
        limit: Option<u64>,
    },
}

/// `/* emulator:page_delay_ms=N */` in `sql`'s comments (the last one wins), at most an hour.
pub(crate) fn page_delay_ms(sql: &str) -> Option<u64> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    tokens.iter().rev().find_map(|t| match t {
        Token::Whitespace(Whitespace::MultiLineComment(body)) => hint(body),
        _ => None,
    })
}

/// Reads `emulator:page_delay_ms=N` from a comment body; other comments are ignored.
fn hint(body: &str) -> Option<u64> {
    let rest = body.trim().strip_prefix("emulator:")?;
    rest.split([',', ' ', '\t', '\n'])
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == "page_delay_ms")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map(|ms| ms.min(MAX_DELAY_MS))
}

/// The statement `sql` is, when the emulator answers it itself; `None`: the engine's. A
/// session statement that does not parse is a syntax error.
pub(crate) fn recognize(sql: &str) -> Result<Option<Own>, QueryError> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        // The engine reports the tokenizer's error.
        return Ok(None);
    };
    let mut words: Vec<&TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    if words.last().is_some_and(|t| t.token == Token::SemiColon) {
        words.pop();
    }
    let mut r = Reader {
        sql,
        words: &words,
        pos: 0,
    };
    let own = if r.keyword(Keyword::USE) {
        let mut parts = r.name()?;
        let schema = parts.pop().unwrap_or_default();
        match parts.len() {
            0 => Own::Use {
                catalog: None,
                schema,
            },
            1 => Own::Use {
                catalog: parts.pop(),
                schema,
            },
            _ => return Err(r.mismatch("<EOF>")),
        }
    } else if r.keyword(Keyword::SET) {
        if !r.keyword(Keyword::SESSION) {
            return Ok(None);
        }
        let name = r.name()?.join(".");
        r.expect(&Token::Eq, "'='")?;
        let value = r.session_value()?;
        Own::SetSession { name, value }
    } else if r.keyword(Keyword::RESET) {
        if !r.keyword(Keyword::SESSION) {
            return Ok(None);
        }
        Own::ResetSession {
            name: r.name()?.join("."),
        }
    } else if r.keyword(Keyword::START) {
        if !r.keyword(Keyword::TRANSACTION) {
            return Err(r.mismatch("'TRANSACTION'"));
        }
        // Transaction modes (ISOLATION LEVEL ..., READ ONLY/WRITE) are accepted and ignored.
        while matches!(r.peek(), Some(Token::Word(_) | Token::Comma)) {
            r.pos += 1;
        }
        Own::StartTransaction
    } else if r.keyword(Keyword::COMMIT) {
        r.keyword(Keyword::WORK);
        Own::Commit
    } else if r.keyword(Keyword::ROLLBACK) {
        r.keyword(Keyword::WORK);
        Own::Rollback
    } else if let Some(probe) = load_probe(&words) {
        return Ok(Some(probe));
    } else if let Some(canned) = canned(&words) {
        return Ok(Some(canned));
    } else {
        return Ok(None);
    };
    if r.pos < words.len() {
        return Err(r.mismatch("<EOF>"));
    }
    Ok(Some(own))
}

/// Significant tokens and a position in them.
struct Reader<'a> {
    sql: &'a str,
    words: &'a [&'a TokenWithSpan],
    pos: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<&Token> {
        self.words.get(self.pos).map(|t| &t.token)
    }

    fn keyword(&mut self, k: Keyword) -> bool {
        let found = matches!(self.peek(), Some(Token::Word(w)) if w.keyword == k && w.quote_style.is_none());
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, token: &Token, expecting: &str) -> Result<(), QueryError> {
        if self.peek() == Some(token) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.mismatch(expecting))
        }
    }

    /// `line L:C: mismatched input 'x'. Expecting: ...` at the current token, as Trino says it.
    fn mismatch(&self, expecting: &str) -> QueryError {
        let (shown, line, column) = match self.words.get(self.pos) {
            Some(t) => (t.token.to_string(), t.span.start.line, t.span.start.column),
            None => {
                let line = self.sql.matches('\n').count() + 1;
                let column = self
                    .sql
                    .rsplit('\n')
                    .next()
                    .map_or(0, |l| l.chars().count())
                    + 1;
                (
                    "<EOF>".to_string(),
                    u64::try_from(line).unwrap_or(u64::MAX),
                    u64::try_from(column).unwrap_or(u64::MAX),
                )
            }
        };
        let location = ErrorLocation {
            line_number: u32::try_from(line).unwrap_or(u32::MAX),
            column_number: u32::try_from(column).unwrap_or(u32::MAX),
        };
        QueryError::new(
            ErrorCode::SyntaxError,
            format!("line {line}:{column}: mismatched input '{shown}'. Expecting: {expecting}"),
        )
        .at(Some(location))
    }

    /// A dotted name, normalised like Trino: unquoted parts lower-cased.
    fn name(&mut self) -> Result<Vec<String>, QueryError> {
        let mut parts = Vec::new();
        loop {
            match self.peek() {
                Some(Token::Word(w)) => {
                    parts.push(if w.quote_style.is_some() {
                        w.value.clone()
                    } else {
                        w.value.to_lowercase()
                    });
                    self.pos += 1;
                }
                _ => return Err(self.mismatch("<identifier>")),
            }
            if self.peek() != Some(&Token::Period) {
                return Ok(parts);
            }
            self.pos += 1;
        }
    }

    /// Value of `SET SESSION x = value`, as the text Trino puts in `X-Trino-Set-Session`.
    fn session_value(&mut self) -> Result<String, QueryError> {
        let negative = self.peek() == Some(&Token::Minus);
        if negative {
            self.pos += 1;
        }
        let value = match self.peek() {
            Some(Token::SingleQuotedString(s)) if !negative => s.clone(),
            Some(Token::Number(n, _)) => format!("{}{n}", if negative { "-" } else { "" }),
            Some(Token::Word(w)) if !negative && w.quote_style.is_none() => match w.keyword {
                Keyword::TRUE | Keyword::FALSE => w.value.to_ascii_lowercase(),
                _ => w.value.clone(),
            },
            _ => return Err(self.mismatch("<literal>")),
        };
        self.pos += 1;
        Ok(value)
    }
}

/// `SELECT [state,] count(*) FROM system.runtime.queries ...`.
fn load_probe(words: &[&TokenWithSpan]) -> Option<Own> {
    let toks: Vec<&Token> = words.iter().map(|t| &t.token).collect();
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    let count_at = |i: usize| {
        toks.get(i..i + 5).is_some_and(|t| {
            word(t[0], "count")
                && *t[1] == Token::LParen
                && *t[2] == Token::Mul
                && *t[3] == Token::RParen
                && word(t[4], "from")
        })
    };
    let from = match toks.as_slice() {
        [s, ..] if !word(s, "select") => return None,
        [_, state, comma, ..] if word(state, "state") && **comma == Token::Comma && count_at(3) => {
            8
        }
        _ if count_at(1) => 6,
        _ => return None,
    };
    let table = toks.get(from..from + 5).is_some_and(|t| {
        word(t[0], "system")
            && *t[1] == Token::Period
            && word(t[2], "runtime")
            && *t[3] == Token::Period
            && word(t[4], "queries")
    });
    let grouped = toks
        .windows(2)
        .any(|w| word(w[0], "group") && word(w[1], "by"));
    table.then_some(Own::LoadProbe { grouped })
}

/// `SELECT * FROM <canned table> [LIMIT n]`.
fn canned(words: &[&TokenWithSpan]) -> Option<Own> {
    let toks: Vec<&Token> = words.iter().map(|t| &t.token).collect();
    let keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none());
    let [select, star, from, rest @ ..] = toks.as_slice() else {
        return None;
    };
    if !keyword(select, Keyword::SELECT) || **star != Token::Mul || !keyword(from, Keyword::FROM) {
        return None;
    }
    let mut name = Vec::new();
    let mut i = 0;
    while let Some(Token::Word(w)) = rest.get(i) {
        if w.quote_style.is_none() && w.keyword == Keyword::LIMIT {
            break;
        }
        name.push(if w.quote_style.is_some() {
            w.value.clone()
        } else {
            w.value.to_lowercase()
        });
        i += 1;
        if rest.get(i) != Some(&&Token::Period) {
            break;
        }
        i += 1;
    }
    let limit = match rest.get(i..)? {
        [] => None,
        [l, Token::Number(n, _)] if keyword(l, Keyword::LIMIT) => Some(n.parse().ok()?),
        _ => return None,
    };
    super::tables::lookup(&name, true)?;
    Some(Own::Canned { name, limit })
}

/// Fails every statement of a transaction the emulator does not know, like Trino.
pub(crate) fn check_transaction(
    state: &EmulatorState,
    transaction: Option<&str>,
) -> Result<(), QueryError> {
    match transaction {
        Some(id) if !state.has_transaction(id) => Err(QueryError::new(
            ErrorCode::UnknownTransaction,
            format!(
                "Unknown transaction ID: {id}. Possibly expired? \
                 Commands ignored until end of transaction block"
            ),
        )),
        _ => Ok(()),
    }
}

/// Response headers that change the client's session.
pub(crate) type Headers = Vec<(HeaderName, HeaderValue)>;

fn header(out: &mut Headers, name: &HeaderName, value: &str) -> Result<(), QueryError> {
    let value = HeaderValue::from_str(value).map_err(|_| {
        QueryError::new(
            ErrorCode::NotSupported,
            format!(
                "the emulator cannot send '{value}' in the {name} response header \
                 (not visible ASCII)"
            ),
        )
    })?;
    out.push((name.clone(), value));
    Ok(())
}

/// Answers `own` for `session` (within `transaction`, the request's transaction id).
pub(crate) fn plan(
    state: &EmulatorState,
    session: &Session,
    transaction: Option<&str>,
    own: Own,
) -> Result<(Plan, Headers), QueryError> {
    let names = session.protocol.headers();
    let mut out = Headers::new();
    let plan = match own {
        Own::Use { catalog, schema } => {
            if catalog.is_none() && session.catalog.is_none() {
                return Err(QueryError::new(
                    ErrorCode::MissingCatalogName,
                    "Catalog must be specified when session catalog is not set",
                ));
            }
            if let Some(catalog) = &catalog {
                header(&mut out, &names.set_catalog, catalog)?;
            }
            header(&mut out, &names.set_schema, &schema)?;
            Plan::Update { update_type: "USE" }
        }
        Own::SetSession { name, value } => {
            header(
                &mut out,
                &names.set_session,
                &format!("{name}={}", java_url_encode(&value)),
            )?;
            Plan::Update {
                update_type: "SET SESSION",
            }
        }
        Own::ResetSession { name } => {
            header(&mut out, &names.clear_session, &name)?;
            Plan::Update {
                update_type: "RESET SESSION",
            }
        }
        Own::StartTransaction => {
            if transaction.is_some() {
                return Err(QueryError::new(
                    ErrorCode::NotSupported,
                    "Nested transactions not supported",
                ));
            }
            let id = state.begin_transaction();
            header(&mut out, &names.started_transaction_id, &id)?;
            Plan::Update {
                update_type: "START TRANSACTION",
            }
        }
        Own::Commit => end_transaction(state, transaction, "COMMIT", names, &mut out)?,
        Own::Rollback => end_transaction(state, transaction, "ROLLBACK", names, &mut out)?,
        Own::LoadProbe { grouped } => {
            let (queued, running) = state.active_counts();
            // The probe itself is running while it is answered (it is not registered yet).
            let running = running + 1;
            if grouped {
                let rows = [("QUEUED", queued), ("RUNNING", running)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(s, n)| vec![Value::from(s), Value::from(n)])
                    .collect();
                Plan::Rows {
                    columns: vec![
                        Column::new("state", SqlType::Varchar(None)),
                        Column::new("_col1", SqlType::Bigint),
                    ],
                    rows,
                }
            } else {
                Plan::Rows {
                    columns: vec![Column::new("_col0", SqlType::Bigint)],
                    rows: vec![vec![Value::from(queued + running)]],
                }
            }
        }
        Own::Canned { name, limit } => {
            let (columns, mut rows) = super::tables::lookup(&name, session.parametric_datetime)
                .ok_or_else(|| {
                    QueryError::new(
                        ErrorCode::TableNotFound,
                        format!("Table '{}' does not exist", name.join(".")),
                    )
                })?;
            if let Some(limit) = limit {
                rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            }
            Plan::Rows { columns, rows }
        }
    };
    Ok((plan, out))
}

/// `COMMIT` / `ROLLBACK`: both end the transaction the request names.
fn end_transaction(
    state: &EmulatorState,
    transaction: Option<&str>,
    update_type: &'static str,
    names: &ResponseHeaders,
    out: &mut Headers,
) -> Result<Plan, QueryError> {
    let Some(id) = transaction else {
        return Err(QueryError::new(
            ErrorCode::NotInTransaction,
            "No transaction in progress",
        ));
    };
    state.end_transaction(id);
    header(out, &names.clear_transaction_id, "true")?;
    Ok(Plan::Update { update_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(sql: &str) -> Own {
        recognize(sql)
            .expect("parses")
            .unwrap_or_else(|| panic!("not the emulator's own: {sql}"))
    }

    #[test]
    fn session_statements() {
        assert_eq!(
            own("USE tpch.Tiny"),
            Own::Use {
                catalog: Some("tpch".into()),
                schema: "tiny".into()
            }
        );
        assert_eq!(
            own("use \"Sf1\";"),
            Own::Use {
                catalog: None,
                schema: "Sf1".into()
            }
        );
        assert_eq!(
            own("SET SESSION query_max_run_time = '1h'"),
            Own::SetSession {
                name: "query_max_run_time".into(),
                value: "1h".into()
            }
        );
        assert_eq!(
            own("set session a = b"),
            Own::SetSession {
                name: "a".into(),
                value: "b".into()
            }
        );
        assert_eq!(
            own("SET SESSION hive.x = -10"),
            Own::SetSession {
                name: "hive.x".into(),
                value: "-10".into()
            }
        );
        assert_eq!(
            own("SET SESSION b = TRUE"),
            Own::SetSession {
                name: "b".into(),
                value: "true".into()
            }
        );
        assert_eq!(
            own("RESET SESSION hive.x"),
            Own::ResetSession {
                name: "hive.x".into()
            }
        );
        assert_eq!(
            own("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY"),
            Own::StartTransaction
        );
        assert_eq!(own("commit"), Own::Commit);
        assert_eq!(own("ROLLBACK WORK"), Own::Rollback);
        for bad in [
            "USE a.b.c",
            "SET SESSION",
            "SET SESSION a =",
            "USE",
            "COMMIT now",
        ] {
            let e = recognize(bad).expect_err(bad);
            assert!(matches!(e.code, ErrorCode::SyntaxError), "{bad}");
            assert!(e.message.starts_with("line 1:"), "{}", e.message);
        }
        // The engine's: it refuses settings of its own.
        assert_eq!(recognize("SET x = 1").expect("ok"), None);
        assert_eq!(recognize("SELECT 1").expect("ok"), None);
        assert_eq!(recognize("show catalogs").expect("ok"), None);
    }

    #[test]
    fn hints_canned_tables_and_the_probe() {
        assert_eq!(
            page_delay_ms("/* emulator:page_delay_ms=250 */ SELECT 1 -- trailing\n"),
            Some(250)
        );
        assert_eq!(page_delay_ms("/* just a comment */ SELECT 1"), None);
        assert_eq!(
            page_delay_ms("SELECT 1 /* emulator:page_delay_ms=99999999999 */"),
            Some(MAX_DELAY_MS)
        );
        assert_eq!(
            own("SELECT * FROM hive.web.daily LIMIT 3;"),
            Own::Canned {
                name: vec!["hive".into(), "web".into(), "daily".into()],
                limit: Some(3)
            }
        );
        assert_eq!(
            own("select * from ALL_TYPES"),
            Own::Canned {
                name: vec!["all_types".into()],
                limit: None
            }
        );
        assert_eq!(
            recognize("SELECT * FROM tpch.tiny.nation").expect("ok"),
            None
        );
        assert_eq!(recognize("SELECT date FROM web.daily").expect("ok"), None);
        assert_eq!(
            own("SELECT state, count(*) FROM system.runtime.queries WHERE state NOT IN ('FINISHED','FAILED') GROUP BY state"),
            Own::LoadProbe { grouped: true }
        );
        assert_eq!(
            own("select count(*) from system.runtime.queries"),
            Own::LoadProbe { grouped: false }
        );
        assert_eq!(
            recognize("SELECT query_id, state FROM system.runtime.queries").expect("ok"),
            None
        );
    }

    #[test]
    fn hostile_input_never_panics() {
        let pieces = [
            "SELECT",
            " ",
            "*",
            "FROM",
            "UNNEST(",
            "sequence(",
            "1",
            ",",
            "-",
            "9",
            ")",
            "'",
            "\"",
            "/*",
            "*/",
            "--",
            "\n",
            "é",
            ".",
            "e",
            "AS",
            "t(x)",
            "USE",
            "SET SESSION",
            "=",
            ";",
            "LIMIT",
            "system.runtime.queries",
            "GROUP BY",
            "RESET",
            "SESSION",
            "START",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let sql: String = (0..rng.usize(1..12))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let _ = recognize(&sql);
            let _ = page_delay_ms(&sql);
        }
    }
}
