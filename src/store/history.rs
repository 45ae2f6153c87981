//! Query history (`te_query_history`) and learned coordinator ids (`te_coordinators`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{is_unique_violation, required_text, text, Result, Store, StoreError};

/// One submitted query, as the gateway routed it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    pub query_id: String,
    /// Milliseconds since the Unix epoch.
    pub submitted_ms: i64,
    pub user: Option<String>,
    pub source: Option<String>,
    pub client_tags: Option<String>,
    pub group: Option<Arc<str>>,
    pub backend: Option<Arc<str>>,
    pub policy: Option<Arc<str>>,
    /// The gateway instance that routed the query.
    pub gateway: Option<Arc<str>>,
    pub sql: Option<String>,
    /// The statement's kind (`select`, `insert`, ...), recorded while a policy reads query content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_type: Option<String>,
    /// The catalogs the statement names, comma-separated (same condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogs: Option<String>,
    /// How long the gateway held the query in its queue before handing it over (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<i64>,
    /// The id its client saw while the gateway held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_id: Option<String>,
}

/// Which history to list. Every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub user: Option<String>,
    pub source: Option<String>,
    pub group: Option<String>,
    pub backend: Option<String>,
    /// Submitted at or after (inclusive), ms since the epoch.
    pub since_ms: Option<i64>,
    /// Submitted before (exclusive), ms since the epoch.
    pub until_ms: Option<i64>,
    /// Page size, clamped to 1..=1000; 0 means 100.
    pub limit: usize,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of history, newest first (`submitted_ms` descending, then `query_id` descending).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub queries: Vec<HistoryRecord>,
    /// Cursor of the next page; `None` on the last page. Opaque; stays valid while queries are
    /// added (new queries sort before it).
    pub next_cursor: Option<String>,
}

/// Column lengths (characters) of `te_query_history`; longer values are cut to fit.
const QUERY_ID_LEN: usize = 128;
const USER_LEN: usize = 256;
const SOURCE_LEN: usize = 256;
const CLIENT_TAGS_LEN: usize = 1024;
const NAME_LEN: usize = super::MAX_NAME_LEN;
const GATEWAY_LEN: usize = 256;
const STATEMENT_TYPE_LEN: usize = 32;
const CATALOGS_LEN: usize = 1024;
/// Trino's default `query.max-length`; MySQL's MEDIUMTEXT holds it in any encoding.
const SQL_LEN: usize = 1_000_000;
/// `te_coordinators.coordinator_id` is VARCHAR(16).
const COORDINATOR_ID_LEN: usize = 16;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Rows per multi-row INSERT (10 parameters each; SQLite allows 32766 per statement).
const INSERT_CHUNK: usize = 50;
/// Ids per `IN (...)` lookup.
const LOOKUP_CHUNK: usize = 200;
/// A concurrent insert of the same query id makes a batch start over (it then skips that id).
const INSERT_ATTEMPTS: usize = 3;

const COLUMNS: &str = "query_id, submitted_ms, user_name, source, client_tags, group_name, \
                       backend_name, policy_name, gateway, sql_text, statement_type, catalogs, \
                       queued_ms, queued_id";

impl Store {
    /// Stores a batch in one transaction. A query id that is already stored (or repeated in the
    /// batch) is skipped, so retrying a batch is safe. Values longer than their column are cut; a
    /// record whose query id is empty or too long to store is skipped with a warning.
    pub async fn insert_history(&self, batch: &[HistoryRecord]) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        let records: Vec<Fitted<'_>> = batch
            .iter()
            .filter(|r| {
                let ok = !r.query_id.is_empty() && r.query_id.chars().count() <= QUERY_ID_LEN;
                if !ok {
                    tracing::warn!(
                        query_id = %r.query_id,
                        "history record skipped: query id empty or longer than {QUERY_ID_LEN}"
                    );
                }
                ok
            })
            .filter(|r| seen.insert(r.query_id.as_str()))
            .map(fit)
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.insert_history_once(&records).await {
                Err(StoreError::Db(e)) if is_unique_violation(&e) && attempt < INSERT_ATTEMPTS => {
                    tracing::debug!("history batch raced with another writer; retrying");
                }
                other => return other,
            }
        }
    }

    async fn insert_history_once(&self, records: &[Fitted<'_>]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut stored = std::collections::HashSet::new();
        for chunk in records.chunks(LOOKUP_CHUNK) {
            let sql = self.dialect.sql(&format!(
                "SELECT query_id FROM te_query_history WHERE query_id IN ({})",
                marks(chunk.len())
            ));
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query.bind(r.query_id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                stored.insert(required_text(&row, 0, "query_id")?);
            }
        }
        let fresh: Vec<&Fitted<'_>> = records
            .iter()
            .filter(|r| !stored.contains(r.query_id))
            .collect();
        for chunk in fresh.chunks(INSERT_CHUNK) {
            let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            let sql = self.dialect.sql(&format!(
                "INSERT INTO te_query_history ({COLUMNS}) VALUES {}",
                vec![row; chunk.len()].join(", ")
            ));
            let mut query = sqlx::query(&sql);
            for r in chunk {
                query = query
                    .bind(r.query_id)
                    .bind(r.submitted_ms)
                    .bind(r.user)
                    .bind(r.source)
                    .bind(r.client_tags)
                    .bind(r.group)
                    .bind(r.backend)
                    .bind(r.policy)
                    .bind(r.gateway)
                    .bind(r.sql)
                    .bind(r.statement_type)
                    .bind(r.catalogs)
                    .bind(r.queued_ms)
                    .bind(r.queued_id);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One page of history matching `filter`, newest first.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<HistoryPage> {
        let limit = match filter.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        };
        let mut conds: Vec<&str> = Vec::new();
        let mut args: Vec<Arg> = Vec::new();
        for (column, value) in [
            ("user_name = ?", &filter.user),
            ("source = ?", &filter.source),
            ("group_name = ?", &filter.group),
            ("backend_name = ?", &filter.backend),
        ] {
            if let Some(v) = value {
                conds.push(column);
                args.push(Arg::Text(v.clone()));
            }
        }
        if let Some(since) = filter.since_ms {
            conds.push("submitted_ms >= ?");
            args.push(Arg::Int(since));
        }
        if let Some(until) = filter.until_ms {
            conds.push("submitted_ms < ?");
            args.push(Arg::Int(until));
        }
        if let Some(cursor) = &filter.cursor {
            let (ms, id) = parse_cursor(cursor)?;
            conds.push("(submitted_ms < ? OR (submitted_ms = ? AND query_id < ?))");
            args.push(Arg::Int(ms));
            args.push(Arg::Int(ms));
            args.push(Arg::Text(id));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM te_query_history");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        // One extra row tells whether another page follows.
        sql.push_str(" ORDER BY submitted_ms DESC, query_id DESC LIMIT ?");
        args.push(Arg::Int(i64::try_from(limit + 1).unwrap_or(i64::MAX)));

        let sql = self.dialect.sql(&sql);
        let mut query = sqlx::query(&sql);
        for arg in args {
            query = match arg {
                Arg::Text(s) => query.bind(s),
                Arg::Int(i) => query.bind(i),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut queries = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        let next_cursor = if queries.len() > limit {
            queries.truncate(limit);
            queries.last().map(cursor_of)
        } else {
            None
        };
        Ok(HistoryPage {
            queries,
            next_cursor,
        })
    }

    /// One stored query.
    pub async fn history_entry(&self, query_id: &str) -> Result<Option<HistoryRecord>> {
        let sql = self.dialect.sql(&format!(
            "SELECT {COLUMNS} FROM te_query_history WHERE query_id = ?"
        ));
        let row = sqlx::query(&sql)
            .bind(query_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// The backend the history says a query went to (for follow-up requests nothing else knows).
    pub async fn query_backend(&self, query_id: &str) -> Result<Option<String>> {
        let sql = self
            .dialect
            .sql("SELECT backend_name FROM te_query_history WHERE query_id = ?");
        let row = sqlx::query(&sql)
            .bind(query_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => text(&row, 0)?,
            None => None,
        })
    }

    /// Records (or moves) a coordinator id learned from a backend's query ids.
    pub async fn save_coordinator(
        &self,
        coordinator_id: &str,
        backend: &str,
        learned_ms: i64,
    ) -> Result<()> {
        if coordinator_id.is_empty() || coordinator_id.chars().count() > COORDINATOR_ID_LEN {
            return Err(StoreError::Invalid(format!(
                "coordinator id `{coordinator_id}` is empty or longer than {COORDINATOR_ID_LEN} characters"
            )));
        }
        if backend.chars().count() > NAME_LEN {
            return Err(StoreError::Invalid(format!(
                "backend name `{backend}` is longer than {NAME_LEN} characters"
            )));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .save_coordinator_once(coordinator_id, backend, learned_ms)
                .await
            {
                // Two instances learned the same id at once: the second one now updates.
                Err(StoreError::Db(e)) if is_unique_violation(&e) && attempt < INSERT_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    async fn save_coordinator_once(
        &self,
        coordinator_id: &str,
        backend: &str,
        learned_ms: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query(
            &self
                .dialect
                .sql("SELECT 1 FROM te_coordinators WHERE coordinator_id = ?"),
        )
        .bind(coordinator_id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        let sql = if exists {
            "UPDATE te_coordinators SET backend_name = ?, learned_ms = ? WHERE coordinator_id = ?"
        } else {
            "INSERT INTO te_coordinators (backend_name, learned_ms, coordinator_id) VALUES (?, ?, ?)"
        };
        sqlx::query(&self.dialect.sql(sql))
            .bind(backend)
            .bind(learned_ms)
            .bind(coordinator_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every learned coordinator id with its backend, ordered by id.
    pub async fn coordinators(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT coordinator_id, backend_name FROM te_coordinators ORDER BY coordinator_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    required_text(row, 0, "coordinator_id")?,
                    required_text(row, 1, "backend_name")?,
                ))
            })
            .collect()
    }

    /// The backend a coordinator id was learned from.
    pub async fn coordinator(&self, coordinator_id: &str) -> Result<Option<String>> {
        let sql = self
            .dialect
            .sql("SELECT backend_name FROM te_coordinators WHERE coordinator_id = ?");
        let row = sqlx::query(&sql)
            .bind(coordinator_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| required_text(&row, 0, "backend_name"))
            .transpose()
    }
}

enum Arg {
    Text(String),
    Int(i64),
}

/// `?, ?, ?` (n marks).
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn record(row: &AnyRow) -> Result<HistoryRecord> {
    Ok(HistoryRecord {
        query_id: required_text(row, 0, "query_id")?,
        submitted_ms: row.try_get(1)?,
        user: text(row, 2)?,
        source: text(row, 3)?,
        client_tags: text(row, 4)?,
        group: text(row, 5)?.map(Arc::from),
        backend: text(row, 6)?.map(Arc::from),
        policy: text(row, 7)?.map(Arc::from),
        gateway: text(row, 8)?.map(Arc::from),
        sql: text(row, 9)?,
        statement_type: text(row, 10)?,
        catalogs: text(row, 11)?,
        queued_ms: row.try_get(12)?,
        queued_id: text(row, 13)?,
    })
}

/// A record's values cut to the column lengths, borrowed from the record (the writer stores
/// batches of hundreds; copying every value again would be paid per query).
struct Fitted<'r> {
    query_id: &'r str,
    submitted_ms: i64,
    user: Option<&'r str>,
    source: Option<&'r str>,
    client_tags: Option<&'r str>,
    group: Option<&'r str>,
    backend: Option<&'r str>,
    policy: Option<&'r str>,
    gateway: Option<&'r str>,
    sql: Option<&'r str>,
    statement_type: Option<&'r str>,
    catalogs: Option<&'r str>,
    queued_ms: Option<i64>,
    queued_id: Option<&'r str>,
}

fn fit(r: &HistoryRecord) -> Fitted<'_> {
    fn cut<S: std::ops::Deref<Target = str>>(v: &Option<S>, max: usize) -> Option<&str> {
        v.as_deref().map(|s| first_chars(s, max))
    }
    Fitted {
        query_id: &r.query_id,
        submitted_ms: r.submitted_ms,
        user: cut(&r.user, USER_LEN),
        source: cut(&r.source, SOURCE_LEN),
        client_tags: cut(&r.client_tags, CLIENT_TAGS_LEN),
        group: cut(&r.group, NAME_LEN),
        backend: cut(&r.backend, NAME_LEN),
        policy: cut(&r.policy, NAME_LEN),
        gateway: cut(&r.gateway, GATEWAY_LEN),
        sql: cut(&r.sql, SQL_LEN),
        statement_type: cut(&r.statement_type, STATEMENT_TYPE_LEN),
        catalogs: cut(&r.catalogs, CATALOGS_LEN),
        queued_ms: r.queued_ms,
        queued_id: cut(&r.queued_id, QUERY_ID_LEN),
    }
}

/// The first `max` characters of `s`.
pub fn first_chars(s: &str, max: usize) -> &str {
    // A value of at most `max` bytes has at most `max` characters: no need to count them; nor
    // when the first `max` bytes are ASCII (one character each, and a boundary after them).
    if s.len() <= max {
        return s;
    }
    if s.as_bytes()[..max].is_ascii() {
        return &s[..max];
    }
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// `<submitted_ms>:<query_id>` of the last record of a page.
fn cursor_of(r: &HistoryRecord) -> String {
    format!("{}:{}", r.submitted_ms, r.query_id)
}

fn parse_cursor(cursor: &str) -> Result<(i64, String)> {
    let invalid = || StoreError::Invalid(format!("invalid history cursor `{cursor}`"));
    let (ms, id) = cursor.split_once(':').ok_or_else(invalid)?;
    let ms = ms.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok((ms, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let r = HistoryRecord {
            query_id: "20240101_000000_00001_ab:cd".into(),
            submitted_ms: 1_700_000_000_123,
            ..Default::default()
        };
        let c = cursor_of(&r);
        assert_eq!(
            parse_cursor(&c).unwrap(),
            (1_700_000_000_123, "20240101_000000_00001_ab:cd".to_string())
        );
        for bad in ["", "x", "12", "12:", "ab:cd"] {
            assert!(
                matches!(parse_cursor(bad), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(first_chars("héllo", 2), "hé");
        assert_eq!(first_chars("héllo", 10), "héllo");
        assert_eq!(first_chars("", 0), "");
        assert_eq!(first_chars("hello", 3), "hel");
        assert_eq!(first_chars("abcé", 3), "abc");
        assert_eq!(first_chars("ééé", 2), "éé");
    }
}
