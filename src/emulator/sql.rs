//! The emulator's SQL front end: a tokenizer and a recursive-descent parser for the handful of
//! statements gateway tests, benchmarks and real clients send (see the module docs of
//! `emulator`). Anything else is rejected with a Trino-style `SYNTAX_ERROR` that says what *is*
//! supported, so a test that strays outside the subset fails loudly rather than mysteriously.

use super::protocol::{ErrorCode, ErrorLocation, QueryError};

/// Longest delay a query may ask for (`sleep()` or the page-delay hint): keeps a typo from
/// parking a connection for days, and keeps `Instant + Duration` far from overflow.
pub(crate) const MAX_DELAY_MS: u64 = 3_600_000;

/// A parsed statement plus the emulator hints found in its comments.
#[derive(Debug, PartialEq)]
pub(crate) struct Parsed {
    pub statement: Statement,
    /// `/* emulator:page_delay_ms=N */`: extra delay before every result page of this query.
    pub page_delay_ms: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Statement {
    Select(Select),
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
    /// A query on `system.runtime.queries`: the load probe gateways send
    /// (`SELECT state, count(*) ... GROUP BY state`). `grouped` is false for a plain `count(*)`.
    RuntimeQueries {
        grouped: bool,
    },
}

#[derive(Debug, PartialEq)]
pub(crate) struct Select {
    pub items: Vec<SelectItem>,
    pub from: Option<Unnest>,
    /// `FROM name`: one of the emulator's canned tables (`emulator::tables`).
    pub table: Option<Vec<String>>,
    pub limit: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct SelectItem {
    pub expr: Expr,
    pub alias: Option<String>,
    /// Where the item starts, for error locations.
    pub location: ErrorLocation,
}

#[derive(Debug, PartialEq)]
pub(crate) enum Expr {
    Literal(Literal),
    CurrentCatalog,
    CurrentSchema,
    CurrentUser,
    Fail(String),
    Sleep(u64),
    Star,
    Column(String),
}

#[derive(Debug, PartialEq)]
pub(crate) enum Literal {
    Integer(i64),
    /// Decimal literal kept as Trino prints it (`"1.50"`, `"-0.5"`).
    Decimal {
        text: String,
        precision: u32,
        scale: u32,
    },
    Double(f64),
    Varchar(String),
    Boolean(bool),
    Null,
}

/// `FROM UNNEST(sequence(start, stop)) [AS] [t [(column)]]`.
#[derive(Debug, PartialEq)]
pub(crate) struct Unnest {
    pub start: i64,
    pub stop: i64,
    pub column: Option<String>,
}

/// Parses one statement. Errors carry Trino's code, message and location.
pub(crate) fn parse(sql: &str) -> Result<Parsed, QueryError> {
    let (tokens, page_delay_ms) = tokenize(sql)?;
    let mut parser = Parser {
        sql,
        tokens,
        pos: 0,
    };
    let statement = parser.statement()?;
    Ok(Parsed {
        statement,
        page_delay_ms,
    })
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// Unquoted word: keyword or identifier, original spelling.
    Word(String),
    /// `"quoted identifier"`.
    Quoted(String),
    Str(String),
    Number(String),
    Sym(char),
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// Byte offset in the SQL text.
    offset: usize,
}

const SUPPORTED: &str = "the Trino emulator supports only: SELECT <literals>, \
SELECT current_user/current_catalog/current_schema, SELECT fail('msg'), SELECT sleep(ms), \
SELECT * FROM UNNEST(sequence(a, b)), SELECT * FROM <canned table>, USE, SET SESSION, \
RESET SESSION, START TRANSACTION, COMMIT, ROLLBACK";

fn location(sql: &str, offset: usize) -> ErrorLocation {
    let before = sql.get(..offset).unwrap_or(sql);
    let line = before.matches('\n').count() + 1;
    let column = match before.rfind('\n') {
        Some(nl) => before.get(nl + 1..).map_or(0, |s| s.chars().count()),
        None => before.chars().count(),
    } + 1;
    ErrorLocation {
        line_number: u32::try_from(line).unwrap_or(u32::MAX),
        column_number: u32::try_from(column).unwrap_or(u32::MAX),
    }
}

fn error_at(sql: &str, offset: usize, code: ErrorCode, message: &str) -> QueryError {
    let loc = location(sql, offset);
    QueryError::new(
        code,
        format!("line {}:{}: {message}", loc.line_number, loc.column_number),
    )
    .at(Some(loc))
}

/// Splits the SQL into tokens, dropping comments but reading `emulator:` hints out of them.
fn tokenize(sql: &str) -> Result<(Vec<Token>, Option<u64>), QueryError> {
    let mut tokens = Vec::new();
    let mut hint = None;
    let mut chars = sql.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let rest = sql.get(start..).unwrap_or("");
        if rest.starts_with("--") {
            for (_, c) in chars.by_ref() {
                if c == '\n' {
                    break;
                }
            }
            continue;
        }
        if rest.starts_with("/*") {
            let Some(end) = rest.get(2..).and_then(|r| r.find("*/")) else {
                return Err(error_at(
                    sql,
                    start,
                    ErrorCode::SyntaxError,
                    "unterminated comment",
                ));
            };
            let body = rest.get(2..2 + end).unwrap_or("");
            if let Some(ms) = parse_hint(body) {
                hint = Some(ms);
            }
            let stop = start + 2 + end + 2;
            while chars.peek().is_some_and(|&(i, _)| i < stop) {
                chars.next();
            }
            continue;
        }
        let tok = if c == '\'' || c == '"' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    Some((_, q)) if q == c => {
                        if chars.peek().is_some_and(|&(_, n)| n == c) {
                            chars.next();
                            text.push(c);
                        } else {
                            break;
                        }
                    }
                    Some((_, other)) => text.push(other),
                    None => {
                        let what = if c == '\'' {
                            "unterminated string literal"
                        } else {
                            "unterminated quoted identifier"
                        };
                        return Err(error_at(sql, start, ErrorCode::SyntaxError, what));
                    }
                }
            }
            if c == '\'' {
                Tok::Str(text)
            } else {
                Tok::Quoted(text)
            }
        } else if c.is_ascii_digit()
            || (c == '.' && rest.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
        {
            let mut end = start;
            let mut prev = ' ';
            while let Some(&(i, d)) = chars.peek() {
                let exponent_sign = (d == '+' || d == '-') && (prev == 'e' || prev == 'E');
                if d.is_ascii_alphanumeric() || d == '.' || exponent_sign {
                    prev = d;
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            Tok::Number(sql.get(start..end).unwrap_or("").to_string())
        } else if c.is_alphabetic() || c == '_' {
            let mut end = start;
            while let Some(&(i, d)) = chars.peek() {
                if d.is_alphanumeric() || d == '_' || d == '$' {
                    end = i + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            Tok::Word(sql.get(start..end).unwrap_or("").to_string())
        } else if "(),.*=;-+".contains(c) {
            chars.next();
            Tok::Sym(c)
        } else {
            return Err(error_at(
                sql,
                start,
                ErrorCode::SyntaxError,
                &format!("token recognition error at: '{c}'"),
            ));
        };
        tokens.push(Token { tok, offset: start });
    }
    // A trailing `;` is tolerated (the Trino CLI strips it; raw HTTP clients often send it).
    if tokens.last().is_some_and(|t| t.tok == Tok::Sym(';')) {
        tokens.pop();
    }
    tokens.push(Token {
        tok: Tok::Eof,
        offset: sql.len(),
    });
    Ok((tokens, hint))
}

/// Reads `emulator:page_delay_ms=N` from a comment body; other comments are ignored.
fn parse_hint(body: &str) -> Option<u64> {
    let rest = body.trim().strip_prefix("emulator:")?;
    rest.split([',', ' ', '\t', '\n'])
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == "page_delay_ms")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map(|ms| ms.min(MAX_DELAY_MS))
}

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

/// Words that end a select item, so they are never taken as a bare column alias.
const CLAUSE_WORDS: &[&str] = &[
    "from",
    "where",
    "limit",
    "group",
    "order",
    "having",
    "union",
    "except",
    "intersect",
    "offset",
    "fetch",
];

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // `tokens` always ends with Eof and `pos` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)].tok
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Word(w) if w.eq_ignore_ascii_case(word))
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = self.is_word(word);
        if found {
            self.pos += 1;
        }
        found
    }

    fn eat_sym(&mut self, sym: char) -> bool {
        let found = self.peek().tok == Tok::Sym(sym);
        if found {
            self.pos += 1;
        }
        found
    }

    fn mismatch(&self, expecting: &str) -> QueryError {
        let token = self.peek();
        let shown = match &token.tok {
            Tok::Word(w) | Tok::Number(w) => w.clone(),
            Tok::Quoted(q) => format!("\"{q}\""),
            Tok::Str(s) => format!("'{s}'"),
            Tok::Sym(c) => c.to_string(),
            Tok::Eof => "<EOF>".to_string(),
        };
        error_at(
            self.sql,
            token.offset,
            ErrorCode::SyntaxError,
            &format!("mismatched input '{shown}'. Expecting: {expecting}"),
        )
    }

    fn expect_word(&mut self, word: &str) -> Result<(), QueryError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.mismatch(&format!("'{}'", word.to_ascii_uppercase())))
        }
    }

    fn expect_sym(&mut self, sym: char) -> Result<(), QueryError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.mismatch(&format!("'{sym}'")))
        }
    }

    fn expect_eof(&self) -> Result<(), QueryError> {
        if self.peek().tok == Tok::Eof {
            Ok(())
        } else {
            Err(self.mismatch("<EOF>"))
        }
    }

    /// An identifier, normalised like Trino: unquoted ones are lower-cased.
    fn identifier(&mut self) -> Result<String, QueryError> {
        match &self.peek().tok {
            Tok::Word(w) => {
                let id = w.to_lowercase();
                self.pos += 1;
                Ok(id)
            }
            Tok::Quoted(q) => {
                let id = q.clone();
                self.pos += 1;
                Ok(id)
            }
            _ => Err(self.mismatch("<identifier>")),
        }
    }

    fn qualified_name(&mut self) -> Result<Vec<String>, QueryError> {
        let mut parts = vec![self.identifier()?];
        while self.eat_sym('.') {
            parts.push(self.identifier()?);
        }
        Ok(parts)
    }

    fn statement(&mut self) -> Result<Statement, QueryError> {
        if self.mentions_runtime_queries() {
            let grouped = self.tokens.windows(2).any(|w| {
                matches!((&w[0].tok, &w[1].tok), (Tok::Word(a), Tok::Word(b))
                    if a.eq_ignore_ascii_case("group") && b.eq_ignore_ascii_case("by"))
            });
            return Ok(Statement::RuntimeQueries { grouped });
        }
        let statement = if self.eat_word("select") {
            Statement::Select(self.select()?)
        } else if self.eat_word("use") {
            let mut parts = self.qualified_name()?;
            match parts.len() {
                1 => Statement::Use {
                    catalog: None,
                    schema: parts.remove(0),
                },
                2 => {
                    let schema = parts.remove(1);
                    Statement::Use {
                        catalog: Some(parts.remove(0)),
                        schema,
                    }
                }
                _ => return Err(self.mismatch("<EOF>")),
            }
        } else if self.eat_word("set") {
            self.expect_word("session")?;
            let name = self.qualified_name()?.join(".");
            self.expect_sym('=')?;
            let value = self.session_value()?;
            Statement::SetSession { name, value }
        } else if self.eat_word("reset") {
            self.expect_word("session")?;
            Statement::ResetSession {
                name: self.qualified_name()?.join("."),
            }
        } else if self.eat_word("start") {
            self.expect_word("transaction")?;
            // Transaction modes (ISOLATION LEVEL ..., READ ONLY/WRITE) are accepted and ignored.
            while matches!(self.peek().tok, Tok::Word(_) | Tok::Sym(',')) {
                self.pos += 1;
            }
            Statement::StartTransaction
        } else if self.eat_word("commit") {
            self.eat_word("work");
            Statement::Commit
        } else if self.eat_word("rollback") {
            self.eat_word("work");
            Statement::Rollback
        } else {
            return Err(self.mismatch(SUPPORTED));
        };
        self.expect_eof()?;
        Ok(statement)
    }

    /// The gateways' load probe: `SELECT [state,] count(*) FROM system.runtime.queries ...`
    /// (other queries of the table go to the SQL engine).
    fn mentions_runtime_queries(&self) -> bool {
        let word = |t: &Tok, w: &str| matches!(t, Tok::Word(x) if x.eq_ignore_ascii_case(w));
        let sym = |t: &Tok, c: char| *t == Tok::Sym(c);
        let toks: Vec<&Tok> = self.tokens[self.pos..].iter().map(|t| &t.tok).collect();
        let count_at = |i: usize| {
            toks.get(i..i + 5).is_some_and(|t| {
                word(t[0], "count")
                    && sym(t[1], '(')
                    && sym(t[2], '*')
                    && sym(t[3], ')')
                    && word(t[4], "from")
            })
        };
        let from = match toks.as_slice() {
            [s, ..] if !word(s, "select") => return false,
            [_, state, comma, ..] if word(state, "state") && sym(comma, ',') && count_at(3) => 8,
            _ if count_at(1) => 6,
            _ => return false,
        };
        toks.get(from..from + 5).is_some_and(|t| {
            word(t[0], "system")
                && sym(t[1], '.')
                && word(t[2], "runtime")
                && sym(t[3], '.')
                && word(t[4], "queries")
        })
    }

    /// Value of `SET SESSION x = value`, as the text Trino puts in `X-Trino-Set-Session`.
    fn session_value(&mut self) -> Result<String, QueryError> {
        let negative = self.eat_sym('-');
        let sign = if negative { "-" } else { "" };
        let token = self.advance();
        match token.tok {
            Tok::Str(s) if !negative => Ok(s),
            Tok::Number(n) => Ok(format!("{sign}{n}")),
            Tok::Word(w) if !negative => Ok(match w.to_ascii_lowercase().as_str() {
                "true" | "false" => w.to_ascii_lowercase(),
                _ => w,
            }),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.mismatch("<literal>"))
            }
        }
    }

    fn select(&mut self) -> Result<Select, QueryError> {
        let mut items = vec![self.select_item()?];
        while self.eat_sym(',') {
            items.push(self.select_item()?);
        }
        let (mut from, mut table) = (None, None);
        if self.eat_word("from") {
            if self.is_word("unnest") {
                from = Some(self.unnest()?);
            } else {
                table = Some(self.qualified_name()?);
            }
        }
        let limit = if self.eat_word("limit") {
            let token = self.advance();
            match token.tok {
                Tok::Number(n) => Some(n.parse::<u64>().map_err(|_| {
                    error_at(
                        self.sql,
                        token.offset,
                        ErrorCode::SyntaxError,
                        &format!("Invalid numeric literal: {n}"),
                    )
                })?),
                Tok::Word(w) if w.eq_ignore_ascii_case("all") => None,
                _ => {
                    self.pos = self.pos.saturating_sub(1);
                    return Err(self.mismatch("<integer>, 'ALL'"));
                }
            }
        } else {
            None
        };
        Ok(Select {
            items,
            from,
            table,
            limit,
        })
    }

    fn select_item(&mut self) -> Result<SelectItem, QueryError> {
        let location = location(self.sql, self.peek().offset);
        let expr = self.expr()?;
        let alias = if self.eat_word("as") {
            Some(self.identifier()?)
        } else {
            match &self.peek().tok {
                Tok::Quoted(_) => Some(self.identifier()?),
                Tok::Word(w)
                    if !CLAUSE_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k))
                        && expr != Expr::Star =>
                {
                    Some(self.identifier()?)
                }
                _ => None,
            }
        };
        Ok(SelectItem {
            expr,
            alias,
            location,
        })
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let token = self.peek().clone();
        match &token.tok {
            Tok::Sym('*') => {
                self.pos += 1;
                Ok(Expr::Star)
            }
            Tok::Sym('-') | Tok::Sym('+') | Tok::Number(_) => {
                Ok(Expr::Literal(self.numeric_literal()?))
            }
            Tok::Str(s) => {
                self.pos += 1;
                Ok(Expr::Literal(Literal::Varchar(s.clone())))
            }
            Tok::Quoted(_) => Ok(Expr::Column(self.identifier()?)),
            Tok::Word(w) => {
                let lower = w.to_ascii_lowercase();
                let is_call = self.peek_at(1) == &Tok::Sym('(');
                match (lower.as_str(), is_call) {
                    ("true", false) | ("false", false) => {
                        self.pos += 1;
                        Ok(Expr::Literal(Literal::Boolean(lower == "true")))
                    }
                    ("null", false) => {
                        self.pos += 1;
                        Ok(Expr::Literal(Literal::Null))
                    }
                    ("current_catalog", false) => {
                        self.pos += 1;
                        Ok(Expr::CurrentCatalog)
                    }
                    ("current_schema", false) => {
                        self.pos += 1;
                        Ok(Expr::CurrentSchema)
                    }
                    ("current_user", false) => {
                        self.pos += 1;
                        Ok(Expr::CurrentUser)
                    }
                    ("fail", true) => {
                        self.pos += 2;
                        let message = match self.advance().tok {
                            Tok::Str(s) => s,
                            _ => {
                                self.pos = self.pos.saturating_sub(1);
                                return Err(self.mismatch("<string>"));
                            }
                        };
                        self.expect_sym(')')?;
                        Ok(Expr::Fail(message))
                    }
                    ("sleep", true) => {
                        self.pos += 2;
                        let ms = self.integer()?;
                        self.expect_sym(')')?;
                        let ms = u64::try_from(ms).map_err(|_| {
                            error_at(
                                self.sql,
                                token.offset,
                                ErrorCode::InvalidFunctionArgument,
                                "sleep() needs a non-negative number of milliseconds",
                            )
                        })?;
                        Ok(Expr::Sleep(ms.min(MAX_DELAY_MS)))
                    }
                    (_, true) => Err(error_at(
                        self.sql,
                        token.offset,
                        ErrorCode::SyntaxError,
                        &format!("function '{lower}' is not supported: {SUPPORTED}"),
                    )),
                    _ if CLAUSE_WORDS.contains(&lower.as_str()) => {
                        Err(self.mismatch("<expression>"))
                    }
                    _ => Ok(Expr::Column(self.identifier()?)),
                }
            }
            _ => Err(self.mismatch("<expression>")),
        }
    }

    fn integer(&mut self) -> Result<i64, QueryError> {
        let offset = self.peek().offset;
        match self.numeric_literal()? {
            Literal::Integer(v) => Ok(v),
            _ => Err(error_at(
                self.sql,
                offset,
                ErrorCode::SyntaxError,
                "mismatched input: expecting an integer",
            )),
        }
    }

    fn numeric_literal(&mut self) -> Result<Literal, QueryError> {
        let mut negative = false;
        loop {
            if self.eat_sym('-') {
                negative = !negative;
            } else if !self.eat_sym('+') {
                break;
            }
        }
        let token = self.advance();
        let Tok::Number(text) = token.tok else {
            self.pos = self.pos.saturating_sub(1);
            return Err(self.mismatch("<number>"));
        };
        let invalid = |msg: String| error_at(self.sql, token.offset, ErrorCode::SyntaxError, &msg);
        if text.contains(['e', 'E']) {
            let value: f64 = text
                .parse()
                .map_err(|_| invalid(format!("Invalid numeric literal: {text}")))?;
            if !value.is_finite() {
                return Err(invalid(format!("Invalid numeric literal: {text}")));
            }
            return Ok(Literal::Double(if negative { -value } else { value }));
        }
        if let Some((int, frac)) = text.split_once('.') {
            if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
                return Err(invalid(format!("Invalid numeric literal: {text}")));
            }
            let int = int.trim_start_matches('0');
            let digits = int.len() + frac.len();
            if digits > 38 {
                return Err(error_at(
                    self.sql,
                    token.offset,
                    ErrorCode::InvalidLiteral,
                    &format!("decimal literal '{text}' has more than 38 digits"),
                ));
            }
            let precision = u32::try_from(digits.max(1)).unwrap_or(38);
            let scale = u32::try_from(frac.len()).unwrap_or(38);
            let int_text = if int.is_empty() { "0" } else { int };
            let sign = if negative { "-" } else { "" };
            let text = if frac.is_empty() {
                format!("{sign}{int_text}")
            } else {
                format!("{sign}{int_text}.{frac}")
            };
            return Ok(Literal::Decimal {
                text,
                precision,
                scale,
            });
        }
        let signed = if negative {
            format!("-{text}")
        } else {
            text.clone()
        };
        signed
            .parse::<i64>()
            .map(Literal::Integer)
            .map_err(|_| invalid(format!("Invalid numeric literal: {text}")))
    }

    fn unnest(&mut self) -> Result<Unnest, QueryError> {
        self.expect_word("unnest")?;
        self.expect_sym('(')?;
        self.expect_word("sequence")?;
        self.expect_sym('(')?;
        let start = self.integer()?;
        self.expect_sym(',')?;
        let stop = self.integer()?;
        self.expect_sym(')')?;
        self.expect_sym(')')?;
        let has_alias = self.eat_word("as")
            || matches!(&self.peek().tok, Tok::Word(w)
                if !CLAUSE_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
            || matches!(self.peek().tok, Tok::Quoted(_));
        let mut column = None;
        if has_alias {
            self.identifier()?;
            if self.eat_sym('(') {
                column = Some(self.identifier()?);
                self.expect_sym(')')?;
            }
        }
        Ok(Unnest {
            start,
            stop,
            column,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(sql: &str) -> Select {
        match parse(sql).expect("parses").statement {
            Statement::Select(s) => s,
            other => panic!("not a select: {other:?}"),
        }
    }

    #[test]
    fn literals_and_aliases() {
        let s = select("select 1, -2, 2147483648, 1.50, .5, 'it''s', TRUE, null AS \"N\", 2 x;");
        let exprs: Vec<&Expr> = s.items.iter().map(|i| &i.expr).collect();
        assert_eq!(exprs[0], &Expr::Literal(Literal::Integer(1)));
        assert_eq!(exprs[1], &Expr::Literal(Literal::Integer(-2)));
        assert_eq!(exprs[2], &Expr::Literal(Literal::Integer(2_147_483_648)));
        assert_eq!(
            exprs[3],
            &Expr::Literal(Literal::Decimal {
                text: "1.50".into(),
                precision: 3,
                scale: 2
            })
        );
        assert_eq!(
            exprs[4],
            &Expr::Literal(Literal::Decimal {
                text: "0.5".into(),
                precision: 1,
                scale: 1
            })
        );
        assert_eq!(exprs[5], &Expr::Literal(Literal::Varchar("it's".into())));
        assert_eq!(exprs[6], &Expr::Literal(Literal::Boolean(true)));
        assert_eq!(exprs[7], &Expr::Literal(Literal::Null));
        assert_eq!(s.items[7].alias.as_deref(), Some("N"));
        assert_eq!(s.items[8].alias.as_deref(), Some("x"));
        assert_eq!(s.items[0].alias, None);
    }

    #[test]
    fn unnest_forms() {
        let s = select("SELECT * FROM UNNEST(sequence(1, 2500))");
        assert_eq!(s.items[0].expr, Expr::Star);
        assert_eq!(
            s.from,
            Some(Unnest {
                start: 1,
                stop: 2500,
                column: None
            })
        );
        let s = select("SELECT x FROM UNNEST(sequence(1, 3)) AS t(X) LIMIT 2");
        assert_eq!(s.items[0].expr, Expr::Column("x".into()));
        assert_eq!(s.from.and_then(|u| u.column), Some("x".to_string()));
        assert_eq!(s.limit, Some(2));
    }

    #[test]
    fn session_statements() {
        assert_eq!(
            parse("USE tpch.Tiny").expect("ok").statement,
            Statement::Use {
                catalog: Some("tpch".into()),
                schema: "tiny".into()
            }
        );
        assert_eq!(
            parse("use \"Sf1\"").expect("ok").statement,
            Statement::Use {
                catalog: None,
                schema: "Sf1".into()
            }
        );
        assert_eq!(
            parse("SET SESSION query_max_run_time = '1h'")
                .expect("ok")
                .statement,
            Statement::SetSession {
                name: "query_max_run_time".into(),
                value: "1h".into()
            }
        );
        assert_eq!(
            parse("set session a = b").expect("ok").statement,
            Statement::SetSession {
                name: "a".into(),
                value: "b".into()
            }
        );
        assert_eq!(
            parse("SET SESSION hive.x = 10").expect("ok").statement,
            Statement::SetSession {
                name: "hive.x".into(),
                value: "10".into()
            }
        );
        assert_eq!(
            parse("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY")
                .expect("ok")
                .statement,
            Statement::StartTransaction
        );
        assert_eq!(parse("commit").expect("ok").statement, Statement::Commit);
        assert_eq!(
            parse("ROLLBACK WORK").expect("ok").statement,
            Statement::Rollback
        );
        // Left to the SQL engine (`emulator::engine`), which knows the catalogs.
        for sql in ["show catalogs", "SHOW SCHEMAS FROM tpch"] {
            let e = parse(sql).expect_err(sql);
            assert!(matches!(e.code, ErrorCode::SyntaxError), "{sql}");
        }
    }

    #[test]
    fn hints_and_comments() {
        let p = parse("/* emulator:page_delay_ms=250 */ SELECT 1 -- trailing\n").expect("ok");
        assert_eq!(p.page_delay_ms, Some(250));
        let p = parse("/* just a comment */ SELECT 1").expect("ok");
        assert_eq!(p.page_delay_ms, None);
    }

    #[test]
    fn runtime_queries_probe() {
        let p = parse("SELECT state, count(*) FROM system.runtime.queries WHERE state NOT IN ('FINISHED','FAILED') GROUP BY state").expect("ok");
        assert_eq!(p.statement, Statement::RuntimeQueries { grouped: true });
        let p = parse("select count(*) from system.runtime.queries").expect("ok");
        assert_eq!(p.statement, Statement::RuntimeQueries { grouped: false });
        // Any other query of the table is the SQL engine's.
        let p = parse("SELECT query_id, state FROM system.runtime.queries");
        assert!(!matches!(
            p.map(|p| p.statement),
            Ok(Statement::RuntimeQueries { .. })
        ));
    }

    #[test]
    fn syntax_errors_have_locations() {
        let e = parse("SELEC 1").expect_err("fails");
        assert_eq!(e.code, ErrorCode::SyntaxError);
        assert!(e.message.starts_with("line 1:1: mismatched input 'SELEC'"));
        assert!(e.message.contains("emulator supports only"));
        let e = parse("SELECT 1 2").expect_err("fails");
        assert_eq!(
            e.location,
            Some(ErrorLocation {
                line_number: 1,
                column_number: 10
            })
        );
        let e = parse("SELECT\n  'open").expect_err("fails");
        assert_eq!(
            e.location,
            Some(ErrorLocation {
                line_number: 2,
                column_number: 3
            })
        );
        assert!(parse("SELECT 1;;").is_err());
        assert!(parse("").is_err());
        assert!(parse("SELECT 99999999999999999999").is_err());
        assert!(parse("SELECT abs(1)").is_err());
        assert!(parse("SELECT 1 /* open").is_err());
        assert!(parse("SELECT 1 FROM nation WHERE x").is_err());
    }

    #[test]
    fn hostile_input_never_panics() {
        for sql in [
            "é",
            "'",
            "\"",
            "SELECT é",
            "SELECT 1.",
            "SELECT 1e",
            "SELECT -",
            "SELECT 1e999",
            "USE a.b.c",
            "SELECT sleep(-1)",
            "SELECT fail(1)",
            "SET SESSION",
            "SELECT 1 AS",
            "SELECT 0.",
            "SELECT .",
            "SELECT 1..2",
            "/**/",
            "--",
            "SELECT * FROM UNNEST(",
        ] {
            let _ = parse(sql);
        }
        // Random splices of valid statements and odd characters (deterministic seed).
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
            "fail(",
            "sleep(",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..20_000 {
            let sql: String = (0..rng.usize(1..12))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let _ = parse(&sql);
        }
    }
}
