//! What makes the engine's answers look like Trino's, around DataFusion's parser and planner:
//! - the statement is rewritten before it is planned: an unnamed select item of the outermost
//!   query is named `_col0`, `_col1`, ... by its position (a column keeps its name);
//!   `UNNEST(sequence(a, b))` in `FROM` becomes the table function `generate_series(a, b)`
//!   (counting down when `a > b`, as Trino's `sequence` does), which produces its rows batch by
//!   batch instead of building the whole array first; its column is `_col0` unless the alias
//!   names it; `current_schema` (a keyword in Trino, an identifier to the parser) is the
//!   function; a number with an exponent (`2.5e1`) is a `double`;
//! - after planning, the outermost projection's bare literals get Trino's literal types
//!   (`integer` for an integer that fits 32 bits, `varchar(n)` for a string of `n` characters;
//!   decimals are `decimal(p,s)` by the parser's `parse_float_as_decimal`);
//! - syntax errors name their line and column, as Trino's do.

use std::ops::ControlFlow;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr as Planned, LogicalPlan};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query, SelectItem, SetExpr,
    Statement, TableFactor, UnaryOperator, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::protocol::{ErrorCode, ErrorLocation, QueryError, SqlType};

/// Rewrites `statement` as described in the module docs.
pub(crate) fn rewrite(statement: &mut DfStatement) {
    let DfStatement::Statement(statement) = statement else {
        return;
    };
    let _ = statement.visit(&mut Rewriter);
    if let Statement::Query(query) = statement.as_mut() {
        name_columns(query);
    }
}

struct Rewriter;

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let Some(series) = series(factor) {
            *factor = series;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(id)
                if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("current_schema") =>
            {
                if let Some(call) = parse_expr("current_schema()") {
                    *expr = call;
                }
            }
            Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value {
                    if n.contains(['e', 'E']) {
                        if let Some(double) = parse_expr(&format!("CAST({n} AS DOUBLE)")) {
                            *expr = double;
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// `UNNEST(sequence(a, b)) [AS t[(x)]]` as `generate_series(a, b[, -1]) AS t(x)`; `None` for
/// any other table factor (also when `a` or `b` is not an integer literal: then it stays the
/// array function).
fn series(factor: &TableFactor) -> Option<TableFactor> {
    let TableFactor::UNNEST {
        alias,
        array_exprs,
        with_offset: false,
        with_ordinality: false,
        ..
    } = factor
    else {
        return None;
    };
    let [Expr::Function(f)] = array_exprs.as_slice() else {
        return None;
    };
    if !f.name.to_string().eq_ignore_ascii_case("sequence") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let bounds: Vec<i64> = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => integer(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let [start, stop] = bounds.as_slice() else {
        return None;
    };
    let step = if start <= stop { 1 } else { -1 };
    let table = alias
        .as_ref()
        .map_or_else(|| Ident::new("_unnest"), |a| a.name.clone());
    let column = alias
        .as_ref()
        .and_then(|a| a.columns.first())
        .map_or_else(|| Ident::new("_col0"), |c| c.name.clone());
    let sql =
        format!("SELECT * FROM generate_series({start}, {stop}, {step}) AS {table}({column})");
    let mut statement = Parser::new(&GenericDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_statement())
        .ok()?;
    let Statement::Query(query) = &mut statement else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    Some(select.from.pop()?.relation)
}

/// An integer literal, possibly negated.
fn integer(e: &Expr) -> Option<i64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => integer(expr)?.checked_neg(),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => integer(expr),
        Expr::Nested(e) => integer(e),
        _ => None,
    }
}

/// Trino names an output column after the column it is (`x`, `t.x`) and `_colN` otherwise.
fn name_columns(query: &mut Query) {
    let mut body = query.body.as_mut();
    loop {
        match body {
            SetExpr::SetOperation { left, .. } => body = left.as_mut(),
            SetExpr::Query(q) => body = q.body.as_mut(),
            _ => break,
        }
    }
    let SetExpr::Select(select) = body else {
        return;
    };
    for (i, item) in select.projection.iter_mut().enumerate() {
        match item {
            SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => {}
            SelectItem::UnnamedExpr(expr) => {
                let expr = std::mem::replace(expr, Expr::value(Value::Null));
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::new(format!("_col{i}")),
                };
            }
            SelectItem::ExprWithAlias { .. } => {}
            // After a `*` the positions are not known before planning.
            _ => break,
        }
    }
}

/// Trino's types of the outermost projection's bare literals, by output column (`None`: the
/// type follows from the column's Arrow type).
pub(crate) fn literal_types(plan: &LogicalPlan) -> Vec<Option<SqlType>> {
    let mut plan = plan;
    let projection = loop {
        match plan {
            LogicalPlan::Projection(p) => break p,
            LogicalPlan::Limit(l) => plan = l.input.as_ref(),
            LogicalPlan::Sort(s) => plan = s.input.as_ref(),
            _ => return Vec::new(),
        }
    };
    projection
        .expr
        .iter()
        .map(|e| match e.clone().unalias() {
            Planned::Literal(ScalarValue::Int64(Some(v)), _) if i32::try_from(v).is_ok() => {
                Some(SqlType::Integer)
            }
            Planned::Literal(ScalarValue::Utf8(Some(s)), _) => Some(SqlType::Varchar(Some(
                u32::try_from(s.chars().count()).unwrap_or(u32::MAX),
            ))),
            _ => None,
        })
        .collect()
}

/// A parser error as Trino reports a syntax error: `line L:C: mismatched input 'token'. ...`,
/// with the location of the token the parser stopped at (when it only looked at that token and
/// no whitespace comes before it, the location is the token before).
pub(crate) fn syntax_error(sql: &str, detail: &ParserError) -> QueryError {
    let detail = match detail {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".to_string(),
    };
    let at = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .ok()
        .and_then(|mut p| match p.parse_statements() {
            Ok(_) => None,
            Err(_) => {
                // After a token it only looked at, the parser stands on the whitespace before.
                let t = match p.get_current_token().token {
                    Token::Whitespace(_) => p.peek_token_ref(),
                    _ => p.get_current_token(),
                };
                Some((t.token.to_string(), t.span.start))
            }
        });
    match at {
        Some((token, start)) if start.line > 0 => {
            let location = ErrorLocation {
                line_number: u32::try_from(start.line).unwrap_or(u32::MAX),
                column_number: u32::try_from(start.column).unwrap_or(u32::MAX),
            };
            let token = if token.is_empty() {
                "<EOF>".into()
            } else {
                token
            };
            QueryError::new(
                ErrorCode::SyntaxError,
                format!(
                    "line {}:{}: mismatched input '{token}'. {detail}",
                    location.line_number, location.column_number
                ),
            )
            .at(Some(location))
        }
        _ => QueryError::new(ErrorCode::SyntaxError, detail),
    }
}
