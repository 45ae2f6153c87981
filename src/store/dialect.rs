//! The three SQL dialects: URL recognition and the one place where their SQL differs at run time
//! (placeholders). Everything else is written once in the common subset.

use super::{Result, StoreError};

/// The database behind a [`Store`](super::Store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        }
    }

    /// SQL is written with `?` placeholders; PostgreSQL wants `$1, $2, ...`. Question marks inside
    /// quoted literals or identifiers are left alone.
    pub(crate) fn sql(self, sql: &str) -> String {
        if self != Dialect::Postgres {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        let mut quote: Option<char> = None;
        for c in sql.chars() {
            match quote {
                Some(q) => {
                    if c == q {
                        quote = None;
                    }
                    out.push(c);
                }
                None => match c {
                    '\'' | '"' => {
                        quote = Some(c);
                        out.push(c);
                    }
                    '?' => {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    }
                    _ => out.push(c),
                },
            }
        }
        out
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A database URL as the pool should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    pub dialect: Dialect,
    /// The URL handed to sqlx (`mariadb://` rewritten to `mysql://`, `mode=rwc` added to SQLite files).
    pub url: String,
    /// An in-memory SQLite database: every connection would see a different database.
    pub memory: bool,
}

/// Recognizes `sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, `postgres://`, `postgresql://`,
/// `mysql://` and `mariadb://`. The error never repeats the URL (it may hold a password).
pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl> {
    let url = url.trim();
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "sqlite" => Ok(parse_sqlite(url)),
        "postgres" | "postgresql" => Ok(ParsedUrl {
            dialect: Dialect::Postgres,
            url: url.to_string(),
            memory: false,
        }),
        "mysql" => Ok(ParsedUrl {
            dialect: Dialect::MySql,
            url: url.to_string(),
            memory: false,
        }),
        "mariadb" => Ok(ParsedUrl {
            dialect: Dialect::MySql,
            url: format!("mysql{}", &url["mariadb".len()..]),
            memory: false,
        }),
        "" => Err(StoreError::Unsupported(
            "database URL has no scheme; expected sqlite://PATH, sqlite::memory:, postgres://..., \
             postgresql://..., mysql://... or mariadb://..."
                .to_string(),
        )),
        other => Err(StoreError::Unsupported(format!(
            "unsupported database URL scheme `{other}:`; expected sqlite://PATH, sqlite::memory:, \
             postgres://..., postgresql://..., mysql://... or mariadb://..."
        ))),
    }
}

fn parse_sqlite(url: &str) -> ParsedUrl {
    // sqlx accepts `sqlite://path`, `sqlite:path` and `sqlite::memory:`.
    let rest = &url["sqlite:".len()..];
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let mode = params.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "mode")
            .map(|(_, v)| v)
    });
    let memory = path == ":memory:" || mode == Some("memory");
    let url = if memory || mode.is_some() {
        url.to_string()
    } else {
        // Create the file on first use.
        match params {
            Some(q) if !q.is_empty() => format!("{url}&mode=rwc"),
            Some(_) => format!("{url}mode=rwc"),
            None => format!("{url}?mode=rwc"),
        }
    };
    ParsedUrl {
        dialect: Dialect::Sqlite,
        url,
        memory,
    }
}

/// For a SQLite file URL (`sqlite://PATH`, `sqlite:PATH`, with any parameters): the file's path as
/// the driver reads it (relative to the working directory unless absolute) and a URL that opens it
/// read-only, so that it is neither created nor changed. `None` for an in-memory database (or a URL
/// that is not SQLite's).
pub(crate) fn sqlite_read_only(url: &str) -> Option<(std::path::PathBuf, String)> {
    let url = url.trim();
    let rest = url
        .get(.."sqlite:".len())
        .filter(|scheme| scheme.eq_ignore_ascii_case("sqlite:"))
        .and_then(|scheme| url.get(scheme.len()..))?;
    if parse_sqlite(url).memory {
        return None;
    }
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mut params: Vec<&str> = params
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split_once('=').map_or(*kv, |(k, _)| k) != "mode")
        .collect();
    params.push("mode=ro");
    Some((
        std::path::PathBuf::from(path),
        format!("sqlite://{path}?{}", params.join("&")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_read_only_urls() {
        let (path, url) = sqlite_read_only("sqlite:///tmp/x.db").unwrap();
        assert_eq!(path, std::path::Path::new("/tmp/x.db"));
        assert_eq!(url, "sqlite:///tmp/x.db?mode=ro");
        let (path, url) = sqlite_read_only("sqlite:state.db?mode=rwc&cache=shared").unwrap();
        assert_eq!(path, std::path::Path::new("state.db"));
        assert_eq!(url, "sqlite://state.db?cache=shared&mode=ro");
        assert_eq!(parse_url(&url).unwrap().url, url, "kept as it is");
        assert!(sqlite_read_only("sqlite::memory:").is_none());
        assert!(sqlite_read_only("sqlite://?mode=memory").is_none());
        assert!(sqlite_read_only("postgres://u@h/db").is_none());
        assert!(sqlite_read_only("sq").is_none());
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_only() {
        let sql = "SELECT a FROM t WHERE a = ? AND b = '?' AND c IN (?, ?)";
        assert_eq!(Dialect::Sqlite.sql(sql), sql);
        assert_eq!(Dialect::MySql.sql(sql), sql);
        assert_eq!(
            Dialect::Postgres.sql(sql),
            "SELECT a FROM t WHERE a = $1 AND b = '?' AND c IN ($2, $3)"
        );
        assert_eq!(
            Dialect::Postgres.sql("SELECT \"a?\" FROM t"),
            "SELECT \"a?\" FROM t"
        );
    }

    #[test]
    fn urls() {
        let p = parse_url("sqlite:///tmp/x.db").unwrap();
        assert_eq!(p.dialect, Dialect::Sqlite);
        assert_eq!(p.url, "sqlite:///tmp/x.db?mode=rwc");
        assert!(!p.memory);
        assert_eq!(
            parse_url("sqlite://x.db?mode=ro").unwrap().url,
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(
            parse_url("sqlite://x.db?cache=shared").unwrap().url,
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            parse_url("sqlite:x.db").unwrap().url,
            "sqlite:x.db?mode=rwc"
        );
        assert!(parse_url("sqlite::memory:").unwrap().memory);
        assert!(parse_url("sqlite://?mode=memory").unwrap().memory);
        assert_eq!(
            parse_url("postgresql://u@h/db").unwrap().dialect,
            Dialect::Postgres
        );
        assert_eq!(
            parse_url("postgres://u@h/db").unwrap().dialect,
            Dialect::Postgres
        );
        let m = parse_url("mariadb://root@h:3306/test").unwrap();
        assert_eq!(m.dialect, Dialect::MySql);
        assert_eq!(m.url, "mysql://root@h:3306/test");
        assert_eq!(
            parse_url("MySQL://root@h/test").unwrap().dialect,
            Dialect::MySql
        );
        let err = parse_url("oracle://scott:tiger@h/db").unwrap_err();
        assert!(matches!(err, StoreError::Unsupported(_)));
        assert!(err.to_string().contains("`oracle:`"), "{err}");
        assert!(!err.to_string().contains("tiger"), "{err}");
        assert!(matches!(
            parse_url("/var/db.sqlite"),
            Err(StoreError::Unsupported(_))
        ));
    }
}
