//! `trino-edge query`: a command-line client of `POST /api/query/hybrid`.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Value};

/// How the result is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub struct QueryArgs {
    pub admin: String,
    pub token: Option<String>,
    pub positional_sql: Option<String>,
    pub sql: Option<String>,
    pub register: Vec<String>,
    pub stdin: bool,
    pub group: Option<String>,
    pub format: OutputFormat,
}

/// Why `trino-edge query` failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "give exactly one of: the SQL as an argument, --sql \"...\", or --stdin (a JSON request)"
    )]
    SqlSources,
    #[error("--stdin takes the whole request as JSON; put register and group in it")]
    StdinWithFlags,
    #[error("cannot read standard input: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("standard input is not JSON: {0}")]
    StdinNotJson(#[source] serde_json::Error),
    #[error("standard input must be a JSON object (a hybrid request)")]
    StdinNotObject,
    /// A `--register` value without `=`.
    #[error("--register `{0}`: expected alias=SQL")]
    Register(String),
    #[error("--register: alias `{0}` given twice")]
    DuplicateAlias(String),
    #[error("{0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0}")]
    Response(#[source] reqwest::Error),
    /// The endpoint refused or failed the query; `detail` is its error, as it said it.
    #[error("HTTP {status}: {detail}")]
    Refused {
        status: reqwest::StatusCode,
        detail: String,
    },
    #[error("{0}")]
    NotJson(#[source] serde_json::Error),
}

/// The request body: from standard input (a whole JSON request), or from the SQL and
/// `alias=SQL` registrations. Exactly one of the three sources.
pub fn request_body(
    args: &QueryArgs,
    stdin: impl FnOnce() -> std::io::Result<String>,
) -> Result<Value, CliError> {
    let sources = [
        args.positional_sql.is_some(),
        args.sql.is_some(),
        args.stdin,
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources != 1 {
        return Err(CliError::SqlSources);
    }
    if args.stdin {
        if !args.register.is_empty() || args.group.is_some() {
            return Err(CliError::StdinWithFlags);
        }
        let text = stdin().map_err(CliError::Stdin)?;
        let body: Value = serde_json::from_str(&text).map_err(CliError::StdinNotJson)?;
        if !body.is_object() {
            return Err(CliError::StdinNotObject);
        }
        return Ok(body);
    }
    let sql = args
        .positional_sql
        .clone()
        .or_else(|| args.sql.clone())
        .unwrap_or_default();
    let mut register = BTreeMap::new();
    for r in &args.register {
        let (alias, remote) = r
            .split_once('=')
            .ok_or_else(|| CliError::Register(r.clone()))?;
        let alias = alias.trim();
        if register
            .insert(alias.to_string(), remote.to_string())
            .is_some()
        {
            return Err(CliError::DuplicateAlias(alias.to_string()));
        }
    }
    let mut body = json!({"sql": sql, "register": register});
    if let Some(g) = &args.group {
        body["group"] = json!(g);
    }
    Ok(body)
}

pub fn run(args: QueryArgs) -> Result<(), CliError> {
    let mut body = request_body(&args, || {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map(|_| s)
    })?;
    body["format"] = json!(match args.format {
        OutputFormat::Csv => "csv",
        _ => "json",
    });
    let url = format!("{}/api/query/hybrid", args.admin.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let (status, text) = rt.block_on(async {
        let mut req = reqwest::Client::new().post(&url).json(&body);
        if let Some(t) = &args.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|source| CliError::Unreachable {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(CliError::Response)?;
        Ok::<_, CliError>((status, text))
    })?;
    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                Some(match e {
                    Value::String(s) => s.clone(),
                    _ => format!(
                        "{}: {}",
                        e.get("type").and_then(Value::as_str).unwrap_or("error"),
                        e.get("message").and_then(Value::as_str).unwrap_or("")
                    ),
                })
            })
            .unwrap_or(text);
        return Err(CliError::Refused { status, detail });
    }
    match args.format {
        OutputFormat::Csv => print!("{text}"),
        OutputFormat::Json => println!("{text}"),
        OutputFormat::Table => {
            let v: Value = serde_json::from_str(&text).map_err(CliError::NotJson)?;
            print!("{}", table(&v));
        }
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An aligned text table, numbers right-aligned, like the Trino CLI's.
pub fn table(result: &Value) -> String {
    let names: Vec<String> = result["columns"]
        .as_array()
        .map(|c| c.iter().map(|c| cell(&c["name"])).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<Value>> = result["rows"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|row| row.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let mut widths: Vec<usize> = names.iter().map(|n| n.chars().count()).collect();
    let texts: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(cell).collect()).collect();
    for r in &texts {
        for (i, t) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(t.chars().count());
            }
        }
    }
    let pad = |t: &str, w: usize, right: bool| {
        let fill = " ".repeat(w.saturating_sub(t.chars().count()));
        if right {
            format!("{fill}{t}")
        } else {
            format!("{t}{fill}")
        }
    };
    let mut out = String::new();
    let header: Vec<String> = names
        .iter()
        .zip(&widths)
        .map(|(n, w)| pad(n, *w, false))
        .collect();
    out.push(' ');
    out.push_str(&header.join(" | "));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    out.push_str(&rule.join("+"));
    out.push('\n');
    for (r, raw) in texts.iter().zip(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .zip(raw)
            .map(|((t, w), v)| pad(t, *w, v.is_number()))
            .collect();
        out.push(' ');
        out.push_str(&line.join(" | "));
        out.push('\n');
    }
    let n = result["row_count"].as_u64().unwrap_or(rows.len() as u64);
    out.push_str(&format!(
        "({n} row{}{})\n",
        if n == 1 { "" } else { "s" },
        if result["truncated"] == json!(true) {
            ", truncated at hybrid.max_result_rows"
        } else {
            ""
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> QueryArgs {
        QueryArgs {
            admin: "http://x".into(),
            token: None,
            positional_sql: None,
            sql: None,
            register: vec![],
            stdin: false,
            group: None,
            format: OutputFormat::Table,
        }
    }

    #[test]
    fn exactly_one_sql_source() {
        let none = args();
        assert!(matches!(
            request_body(&none, || Ok(String::new())),
            Err(CliError::SqlSources)
        ));
        let mut two = args();
        two.sql = Some("SELECT 1".into());
        two.positional_sql = Some("SELECT 2".into());
        assert!(request_body(&two, || Ok(String::new())).is_err());
        let mut one = args();
        one.sql = Some("SELECT * FROM t".into());
        one.register = vec!["t=SELECT a = 1 FROM x".into()];
        one.group = Some("adhoc".into());
        let b = request_body(&one, || Ok(String::new())).unwrap();
        assert_eq!(b["register"]["t"], "SELECT a = 1 FROM x");
        assert_eq!(b["group"], "adhoc");
        let mut stdin = args();
        stdin.stdin = true;
        let b = request_body(&stdin, || Ok(r#"{"sql": "SELECT 1"}"#.into())).unwrap();
        assert_eq!(b["sql"], "SELECT 1");
        assert!(matches!(
            request_body(&stdin, || Ok("[1]".into())),
            Err(CliError::StdinNotObject)
        ));
        let mut twice = args();
        twice.sql = Some("SELECT 1".into());
        twice.register = vec!["t=SELECT 1".into(), " t=SELECT 2".into()];
        let e = request_body(&twice, || Ok(String::new())).unwrap_err();
        assert_eq!(e.to_string(), "--register: alias `t` given twice");
    }

    #[test]
    fn tables_are_aligned() {
        let t = table(&json!({
            "columns": [{"name": "d", "type": "Date32"}, {"name": "views", "type": "Int64"}],
            "rows": [["2024-01-01", 5], ["2024-01-02", 12345]],
            "row_count": 2, "truncated": false
        }));
        assert_eq!(
            t,
            " d          | views\n------------+-------\n 2024-01-01 |     5\n 2024-01-02 | 12345\n(2 rows)\n"
        );
    }
}
