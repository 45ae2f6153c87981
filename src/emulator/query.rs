//! One query's life: the QUEUED → RUNNING → FINISHED/FAILED state machine and its `nextUri`
//! paging, with Trino's token rules (re-GET of the current token replays the page, older tokens
//! are gone, anything else is not found).
//!
//! A query's pages are produced on demand, one per GET: an engine query's rows are computed
//! batch by batch as the client asks for them (`QueryEntry::fill`), so a huge result never
//! exists in memory as a whole.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::protocol::{
    Column, ErrorCode, PageData, Protocol, QueryData, QueryError, QueryResults, StatementStats,
};
use super::spooling::{Encoding, Spooler};

/// Locks a mutex, recovering from poisoning: a panic elsewhere must not turn every later
/// request into another panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Trino query states the emulator goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum QueryState {
    Queued = 0,
    Running = 1,
    Finished = 2,
    Failed = 3,
}

impl QueryState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Queued,
            1 => Self::Running,
            2 => Self::Finished,
            _ => Self::Failed,
        }
    }

    pub(crate) fn is_done(self) -> bool {
        matches!(self, Self::Finished | Self::Failed)
    }
}

/// Client session values captured at submission.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub user: String,
    pub source: Option<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub protocol: Protocol,
    /// The client declared `PARAMETRIC_DATETIME` in `X-Trino-Client-Capabilities`: timestamps and
    /// times keep their precision. Without it Trino reports them as `timestamp`, `time`, ...
    /// (no precision) and rounds their values to milliseconds.
    pub parametric_datetime: bool,
}

/// The rest of an engine query's rows, computed batch by batch as the client pages (the engine
/// implements it over DataFusion's stream).
#[async_trait::async_trait]
pub(crate) trait RowSource: Send + std::fmt::Debug {
    /// The next batch's rows as Trino writes them; `None` at the end.
    async fn next(&mut self) -> Option<Result<Vec<Vec<serde_json::Value>>, QueryError>>;
}

/// What a query returns, decided at submission.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Rows known up front (the canned tables, the load probe, `EXPLAIN`).
    Rows {
        columns: Vec<Column>,
        rows: Vec<Vec<serde_json::Value>>,
    },
    /// A query on the engine: `rows` computed and not yet served, `source` the rest (`None`
    /// once it has given everything).
    Stream {
        columns: Vec<Column>,
        rows: Vec<Vec<serde_json::Value>>,
        source: Option<Arc<tokio::sync::Mutex<Box<dyn RowSource>>>>,
    },
    /// A statement without output (`USE`, `SET SESSION`, transactions): finishes with
    /// `updateType`, an empty column list and no data.
    Update { update_type: &'static str },
    /// A statement that wrote rows (`INSERT`, `CREATE TABLE AS`): like Trino, one `rows` bigint
    /// column with the count, `updateType` and `updateCount`.
    Count {
        update_type: &'static str,
        columns: Vec<Column>,
        rows: Vec<Vec<serde_json::Value>>,
        count: u64,
    },
    /// Fails on the first page after the submission, as Trino reports analysis errors.
    Fail(QueryError),
}

impl Plan {
    /// The answer of a statement that wrote `count` rows.
    pub(crate) fn count(update_type: &'static str, count: u64) -> Plan {
        Plan::Count {
            update_type,
            columns: vec![Column::new("rows", super::protocol::SqlType::Bigint)],
            rows: vec![vec![serde_json::Value::from(count)]],
            count,
        }
    }

    /// An engine query's answer: its first `rows` and the `source` of the rest, if any.
    pub(crate) fn stream(
        columns: Vec<Column>,
        rows: Vec<Vec<serde_json::Value>>,
        source: Option<Box<dyn RowSource>>,
    ) -> Plan {
        Plan::Stream {
            columns,
            rows,
            source: source.map(|s| Arc::new(tokio::sync::Mutex::new(s))),
        }
    }

    /// Whether the plan is rows, and none.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Rows { rows, .. } => rows.is_empty(),
            Self::Stream { rows, source, .. } => rows.is_empty() && source.is_none(),
            _ => false,
        }
    }

    /// Rows known so far that were not served yet, plus `served`.
    fn total_rows(&self, served: u64) -> u64 {
        let len = |rows: &[Vec<serde_json::Value>]| u64::try_from(rows.len()).unwrap_or(u64::MAX);
        match self {
            Self::Rows { rows, .. } | Self::Count { rows, .. } => len(rows),
            Self::Stream { rows, .. } => served.saturating_add(len(rows)),
            Self::Update { .. } | Self::Fail(_) => 0,
        }
    }

    /// Whether the source has rows still to compute.
    fn has_more(&self) -> bool {
        matches!(
            self,
            Self::Stream {
                source: Some(_),
                ..
            }
        )
    }
}

/// Response headers that change the client session (`X-Trino-Set-Catalog`, ...).
pub(crate) type SessionHeaders = Arc<[(HeaderName, HeaderValue)]>;

/// A rendered response body plus the session headers it carries. Cheap to clone (`Bytes`).
#[derive(Clone, Debug)]
pub(crate) struct Page {
    pub body: Bytes,
    pub headers: Option<SessionHeaders>,
    /// The spooling protocol's encoding of the query, which Trino names on every statement answer
    /// of a spooled query (`X-Trino-Query-Data-Encoding`).
    pub encoding: Option<&'static str>,
}

/// Which of the statement paths a GET/DELETE came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// `/v1/statement/queued/...`: only the first token after the submission.
    Queued,
    /// `/v1/statement/executing/...`: every later token.
    Executing,
    /// `/v1/statement/{id}/{slug}/{token}` of older servers: accepted for any token.
    Legacy,
}

impl PathKind {
    fn allows(self, token: u64) -> bool {
        match self {
            Self::Queued => token == QUEUED_TOKEN,
            Self::Executing => token > QUEUED_TOKEN,
            Self::Legacy => true,
        }
    }
}

/// The token of the only page served on the `queued` path.
const QUEUED_TOKEN: u64 = 1;

pub(crate) enum PageOutcome {
    Page(Page),
    /// Token older than the last page served: HTTP 410, like Trino.
    Gone,
    /// Unknown token or wrong slug: HTTP 404.
    NotFound,
}

/// Per-request inputs of page rendering.
pub(crate) struct RenderContext<'a> {
    /// `http://host:port` the client reached us at (see `handlers::base_uri`).
    pub base: &'a str,
    pub now: Instant,
    pub rows_per_page: usize,
    /// The spooling manager, for queries submitted with an accepted encoding.
    pub spool: Option<&'a Spooler>,
}

/// Everything the emulator knows about one query. Immutable fields live outside the mutex
/// so that eviction and statistics can read them without locking the query.
pub(crate) struct QueryEntry {
    pub id: String,
    slug: String,
    pub sql: String,
    pub session: Session,
    created: Instant,
    /// Delay before every result page (configured delay plus the query's hint).
    pub page_delay: Duration,
    /// `sleep(ms)`: the query stays RUNNING until then.
    sleep_until: Option<Instant>,
    headers: Option<SessionHeaders>,
    /// The spooling protocol's encoding, chosen at submission; `None`: the direct protocol.
    encoding: Option<Encoding>,
    state: AtomicU8,
    progress: Mutex<Progress>,
}

struct Progress {
    plan: Plan,
    /// Token of the last page served (0 = the submission response).
    last_token: u64,
    /// That page, replayed when a client retries the same token.
    cached: Option<Page>,
    /// Token the current `nextUri` points at; `None` once the query is done.
    next_token: Option<u64>,
    /// Rows already returned.
    offset: u64,
    /// When the first executing page was served (ends the queued time).
    executing_since: Option<Instant>,
    canceled: bool,
    /// Set when the query was canceled.
    failure: Option<QueryError>,
}

/// What `QueryEntry::new` needs besides the identifiers.
pub(crate) struct NewQuery {
    pub sql: String,
    pub session: Session,
    pub plan: Plan,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub page_delay: Duration,
    pub sleep: Duration,
}

impl QueryEntry {
    pub(crate) fn new(id: String, slug: String, q: NewQuery, now: Instant) -> Self {
        let state = if matches!(q.plan, Plan::Fail(_)) {
            QueryState::Failed
        } else {
            QueryState::Queued
        };
        let headers = (!q.headers.is_empty()).then(|| SessionHeaders::from(q.headers));
        Self {
            id,
            slug,
            sql: q.sql,
            session: q.session,
            created: now,
            page_delay: q.page_delay,
            sleep_until: (!q.sleep.is_zero())
                .then(|| now.checked_add(q.sleep))
                .flatten(),
            headers,
            encoding: None,
            state: AtomicU8::new(state as u8),
            progress: Mutex::new(Progress {
                plan: q.plan,
                last_token: 0,
                cached: None,
                next_token: Some(QUEUED_TOKEN),
                offset: 0,
                executing_since: None,
                canceled: false,
                failure: None,
            }),
        }
    }

    /// Results travel as segments of this encoding (the spooling protocol).
    pub(crate) fn with_encoding(mut self, encoding: Option<Encoding>) -> Self {
        self.encoding = encoding;
        self
    }

    /// When the query was submitted.
    pub(crate) fn created(&self) -> Instant {
        self.created
    }

    pub(crate) fn state(&self) -> QueryState {
        QueryState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, state: QueryState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state().is_done()
    }

    pub(crate) fn was_canceled(&self) -> bool {
        lock(&self.progress).canceled
    }

    pub(crate) fn slug_matches(&self, slug: &str) -> bool {
        self.slug == slug
    }

    /// The error of a failed query (analysis error or cancellation).
    pub(crate) fn error(&self) -> Option<QueryError> {
        let p = lock(&self.progress);
        match (&p.failure, &p.plan) {
            (Some(e), _) | (None, Plan::Fail(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Long-poll wait of a `sleep()` query: like Trino's `maxWait`, a page is held back at
    /// most one second while the query has nothing to return, so cancellation stays prompt.
    pub(crate) fn long_poll(&self, token: u64, now: Instant) -> Duration {
        match self.sleep_until {
            Some(until) if token > QUEUED_TOKEN && until > now => {
                (until - now).min(Duration::from_secs(1))
            }
            _ => Duration::ZERO,
        }
    }

    /// Cancels the query. Returns true when it was still active (and is now FAILED with
    /// `USER_CANCELED`); canceling a finished query is a no-op, as in Trino.
    pub(crate) fn cancel(&self) -> bool {
        let mut p = lock(&self.progress);
        if self.is_done() {
            return false;
        }
        p.canceled = true;
        p.failure = Some(QueryError::canceled());
        if let Plan::Stream { source, .. } = &mut p.plan {
            // Stops computing rows nobody will read.
            *source = None;
        }
        self.set_state(QueryState::Failed);
        true
    }

    /// Computes the rows the page of `token` serves, when it is the next page of an engine
    /// query: batches are taken from the source until more than a page's worth is known (so
    /// that the page knows whether it is the last) or the source is done. A failure of the
    /// source fails the query.
    pub(crate) async fn fill(&self, token: u64, rows_per_page: usize) {
        let wants = |p: &Progress| {
            p.failure.is_none()
                && p.next_token == Some(token)
                && token > QUEUED_TOKEN
                && matches!(&p.plan, Plan::Stream { rows, source: Some(_), .. } if rows.len() <= rows_per_page)
        };
        let source = {
            let p = lock(&self.progress);
            match &p.plan {
                Plan::Stream {
                    source: Some(source),
                    ..
                } if wants(&p) => Arc::clone(source),
                _ => return,
            }
        };
        let mut source = source.lock().await;
        while wants(&lock(&self.progress)) {
            let next = source.next().await;
            let mut p = lock(&self.progress);
            if p.canceled {
                return;
            }
            match next {
                Some(Ok(batch)) => {
                    if let Plan::Stream { rows, .. } = &mut p.plan {
                        rows.extend(batch);
                    }
                }
                Some(Err(e)) => {
                    p.failure = Some(e);
                    return;
                }
                None => {
                    if let Plan::Stream { source, .. } = &mut p.plan {
                        *source = None;
                    }
                    return;
                }
            }
        }
    }

    /// The QUEUED response to `POST /v1/statement`.
    pub(crate) fn submission_page(&self, ctx: &RenderContext<'_>) -> Page {
        let results = QueryResults {
            id: &self.id,
            info_uri: self.info_uri(ctx.base),
            partial_cancel_uri: None,
            next_uri: Some(self.next_uri(ctx.base, QUEUED_TOKEN)),
            columns: None,
            data: None,
            stats: self.queued_stats(ctx.now),
            error: None,
            warnings: [],
            update_type: None,
            update_count: None,
        };
        Page {
            body: to_body(&results),
            headers: self.headers.clone(),
            encoding: self.encoding.map(Encoding::id),
        }
    }

    /// Answers a GET of `nextUri`.
    pub(crate) fn page(
        &self,
        kind: PathKind,
        slug: &str,
        token: u64,
        ctx: &RenderContext<'_>,
    ) -> PageOutcome {
        if slug != self.slug || !kind.allows(token) {
            return PageOutcome::NotFound;
        }
        let mut p = lock(&self.progress);
        if token == p.last_token {
            if let Some(page) = &p.cached {
                return PageOutcome::Page(page.clone());
            }
        }
        if token < p.last_token {
            return PageOutcome::Gone;
        }
        if p.next_token != Some(token) {
            return PageOutcome::NotFound;
        }
        let page = self.render(&mut p, token, ctx);
        p.last_token = token;
        p.cached = Some(page.clone());
        PageOutcome::Page(page)
    }

    fn render(&self, p: &mut Progress, token: u64, ctx: &RenderContext<'_>) -> Page {
        let failure = match (&p.failure, &p.plan) {
            (Some(e), _) | (None, Plan::Fail(e)) => Some(e.clone()),
            _ => None,
        };
        if let Some(error) = failure {
            return self.render_failure(p, &error, ctx);
        }

        if token == QUEUED_TOKEN {
            // Trino's queued resource only ever reports QUEUED (or FAILED) and then hands the
            // client over to the executing resource.
            p.next_token = Some(token + 1);
            let results = QueryResults {
                id: &self.id,
                info_uri: self.info_uri(ctx.base),
                partial_cancel_uri: None,
                next_uri: Some(self.next_uri(ctx.base, token + 1)),
                columns: None,
                data: None,
                stats: self.queued_stats(ctx.now),
                error: None,
                warnings: [],
                update_type: None,
                update_count: None,
            };
            return Page {
                body: to_body(&results),
                headers: None,
                encoding: self.encoding.map(Encoding::id),
            };
        }

        let now = ctx.now;
        let executing_since = *p.executing_since.get_or_insert(now);
        let rows_per_page = u64::try_from(ctx.rows_per_page.max(1)).unwrap_or(u64::MAX);
        let total = p.plan.total_rows(p.offset);
        let more = p.plan.has_more();
        let sleeping = self.sleep_until.is_some_and(|until| until > now);

        let mut update_count = None;
        let (columns, data, update_type, rows_in_page): (_, _, _, u64) = match &p.plan {
            // Statements without output finish with an empty column list and no data, as in
            // the recorded Trino responses (`query_result_finished_prepare.json`).
            Plan::Update { update_type } => (Some(&[][..]), None, Some(*update_type), 0),
            Plan::Count {
                update_type,
                columns,
                rows,
                count,
            } => {
                let n = if sleeping { 0 } else { total - p.offset };
                update_count = Some(*count);
                let data = (n > 0).then_some(PageData::Rows(&rows[..]));
                (Some(&columns[..]), data, Some(*update_type), n)
            }
            Plan::Rows { columns, rows } => {
                let n = if sleeping {
                    0
                } else {
                    rows_per_page.min(total - p.offset)
                };
                let from = usize::try_from(p.offset).unwrap_or(usize::MAX);
                let to = usize::try_from(p.offset + n).unwrap_or(usize::MAX);
                let data = rows.get(from..to).filter(|r| !r.is_empty());
                (Some(&columns[..]), data.map(PageData::Rows), None, n)
            }
            Plan::Stream { columns, rows, .. } => {
                let n = if sleeping {
                    0
                } else {
                    rows_per_page.min(total - p.offset)
                };
                let to = usize::try_from(n).unwrap_or(usize::MAX);
                let data = rows.get(..to).filter(|r| !r.is_empty());
                (Some(&columns[..]), data.map(PageData::Rows), None, n)
            }
            Plan::Fail(_) => (None, None, None, 0),
        };
        let data = match (data, self.encoding, ctx.spool) {
            (Some(rows), Some(encoding), Some(spooler)) => {
                match spooler.encode_page(&self.id, encoding, &rows, p.offset, ctx.base) {
                    Ok(encoded) => Some(QueryData::Encoded(encoded)),
                    Err(e) => {
                        tracing::warn!(query_id = %self.id, error = %e, "cannot encode segments");
                        let error = QueryError::new(
                            ErrorCode::SerializationError,
                            format!("Failed to serialize query data: {e}"),
                        );
                        p.failure = Some(error.clone());
                        return self.render_failure(p, &error, ctx);
                    }
                }
            }
            (rows, _, _) => rows.map(QueryData::Direct),
        };
        p.offset += rows_in_page;
        let finished = !sleeping && p.offset >= total && !more;
        let state = if finished {
            QueryState::Finished
        } else {
            QueryState::Running
        };
        p.next_token = (!finished).then_some(token + 1);
        self.set_state(state);

        let stats = if update_type.is_some() {
            StatementStats {
                state: state.as_str(),
                queued_time_millis: millis(executing_since.saturating_duration_since(self.created)),
                elapsed_time_millis: millis(now.saturating_duration_since(self.created)),
                ..StatementStats::default()
            }
        } else {
            let total_splits = total.div_ceil(rows_per_page).max(1);
            let completed = if finished {
                total_splits
            } else {
                p.offset.div_ceil(rows_per_page).min(total_splits)
            };
            self.running_stats(
                state,
                p.offset,
                total_splits,
                completed,
                executing_since,
                now,
            )
        };
        let results = QueryResults {
            id: &self.id,
            info_uri: self.info_uri(ctx.base),
            partial_cancel_uri: (!finished).then(|| {
                format!(
                    "{}/v1/statement/executing/partialCancel/{}/0/{}/{}",
                    ctx.base, self.id, self.slug, token
                )
            }),
            next_uri: p.next_token.map(|t| self.next_uri(ctx.base, t)),
            columns,
            data,
            stats,
            error: None,
            warnings: [],
            update_type,
            update_count,
        };
        let body = to_body(&results);
        if let Plan::Stream { rows, .. } = &mut p.plan {
            // Served: an engine query keeps only the rows still to come.
            rows.drain(
                ..usize::try_from(rows_in_page)
                    .unwrap_or(usize::MAX)
                    .min(rows.len()),
            );
        }
        Page {
            body,
            headers: if finished { self.headers.clone() } else { None },
            encoding: self.encoding.map(Encoding::id),
        }
    }

    /// The FAILED page: no `nextUri`, the error, and the query is done.
    fn render_failure(
        &self,
        p: &mut Progress,
        error: &QueryError,
        ctx: &RenderContext<'_>,
    ) -> Page {
        p.next_token = None;
        self.set_state(QueryState::Failed);
        let results = QueryResults {
            id: &self.id,
            info_uri: self.info_uri(ctx.base),
            partial_cancel_uri: None,
            next_uri: None,
            columns: None,
            data: None,
            stats: self.failed_stats(p, ctx.now),
            error: Some(error),
            warnings: [],
            update_type: None,
            update_count: None,
        };
        Page {
            body: to_body(&results),
            headers: None,
            encoding: self.encoding.map(Encoding::id),
        }
    }

    fn info_uri(&self, base: &str) -> String {
        format!("{base}/ui/query.html?{}", self.id)
    }

    fn next_uri(&self, base: &str, token: u64) -> String {
        let path = if token == QUEUED_TOKEN {
            "queued"
        } else {
            "executing"
        };
        format!(
            "{base}/v1/statement/{path}/{}/{}/{token}",
            self.id, self.slug
        )
    }

    fn queued_stats(&self, now: Instant) -> StatementStats {
        let elapsed = millis(now.saturating_duration_since(self.created));
        StatementStats {
            state: QueryState::Queued.as_str(),
            queued: true,
            queued_time_millis: elapsed,
            elapsed_time_millis: elapsed,
            ..StatementStats::default()
        }
    }

    fn failed_stats(&self, p: &Progress, now: Instant) -> StatementStats {
        let elapsed = millis(now.saturating_duration_since(self.created));
        let queued = p.executing_since.map_or(elapsed, |t| {
            millis(t.saturating_duration_since(self.created))
        });
        StatementStats {
            state: QueryState::Failed.as_str(),
            queued_time_millis: queued,
            elapsed_time_millis: elapsed,
            processed_rows: p.offset,
            processed_bytes: p.offset.saturating_mul(8),
            ..StatementStats::default()
        }
    }

    fn running_stats(
        &self,
        state: QueryState,
        rows: u64,
        total_splits: u64,
        completed_splits: u64,
        executing_since: Instant,
        now: Instant,
    ) -> StatementStats {
        let running_time = millis(now.saturating_duration_since(executing_since));
        StatementStats {
            state: state.as_str(),
            scheduled: true,
            nodes: 1,
            total_splits,
            running_splits: total_splits - completed_splits,
            completed_splits,
            wall_time_millis: running_time,
            queued_time_millis: millis(executing_since.saturating_duration_since(self.created)),
            elapsed_time_millis: millis(now.saturating_duration_since(self.created)),
            processed_rows: rows,
            processed_bytes: rows.saturating_mul(8),
            physical_input_bytes: rows.saturating_mul(8),
            peak_memory_bytes: 1 << 16,
            progress_percentage: Some(completed_splits as f64 * 100.0 / total_splits as f64),
            ..StatementStats::default()
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn to_body(results: &QueryResults<'_>) -> Bytes {
    match serde_json::to_vec(results) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            // Unreachable with the types above (no maps, no non-finite floats); logged rather
            // than panicking because a request must never take the server down.
            tracing::error!(error = %e, "cannot serialise QueryResults");
            Bytes::from_static(b"{}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::SqlType;
    use super::*;

    fn entry(plan: Plan) -> QueryEntry {
        QueryEntry::new(
            "20240101_000000_00000_abcde".into(),
            "yslug".into(),
            NewQuery {
                sql: "SELECT 1".into(),
                session: Session {
                    user: "u".into(),
                    source: None,
                    catalog: None,
                    schema: None,
                    protocol: Protocol::Trino,
                    parametric_datetime: true,
                },
                plan,
                headers: Vec::new(),
                page_delay: Duration::ZERO,
                sleep: Duration::ZERO,
            },
            Instant::now(),
        )
    }

    fn json(outcome: PageOutcome) -> serde_json::Value {
        match outcome {
            PageOutcome::Page(p) => serde_json::from_slice(&p.body).expect("json"),
            PageOutcome::Gone => panic!("gone"),
            PageOutcome::NotFound => panic!("not found"),
        }
    }

    #[test]
    fn token_rules() {
        let e = entry(Plan::Rows {
            columns: vec![Column::new("_col0", SqlType::Bigint)],
            rows: (1..=5).map(|v| vec![serde_json::Value::from(v)]).collect(),
        });
        let ctx = RenderContext {
            base: "http://h:1",
            now: Instant::now(),
            rows_per_page: 2,
            spool: None,
        };
        assert!(matches!(
            e.page(PathKind::Executing, "yslug", 1, &ctx),
            PageOutcome::NotFound
        ));
        assert!(matches!(
            e.page(PathKind::Queued, "wrong", 1, &ctx),
            PageOutcome::NotFound
        ));
        let q = json(e.page(PathKind::Queued, "yslug", 1, &ctx));
        assert_eq!(q["stats"]["state"], "QUEUED");
        let first = json(e.page(PathKind::Executing, "yslug", 2, &ctx));
        assert_eq!(first["data"], serde_json::json!([[1], [2]]));
        assert_eq!(first["stats"]["state"], "RUNNING");
        // replay of the current token
        assert_eq!(json(e.page(PathKind::Executing, "yslug", 2, &ctx)), first);
        // skipping ahead is not found, going back is gone
        assert!(matches!(
            e.page(PathKind::Executing, "yslug", 4, &ctx),
            PageOutcome::NotFound
        ));
        let second = json(e.page(PathKind::Executing, "yslug", 3, &ctx));
        assert_eq!(second["data"], serde_json::json!([[3], [4]]));
        assert!(matches!(
            e.page(PathKind::Executing, "yslug", 2, &ctx),
            PageOutcome::Gone
        ));
        let last = json(e.page(PathKind::Executing, "yslug", 4, &ctx));
        assert_eq!(last["data"], serde_json::json!([[5]]));
        assert_eq!(last["stats"]["state"], "FINISHED");
        assert!(last.get("nextUri").is_none());
        assert_eq!(e.state(), QueryState::Finished);
        assert!(!e.cancel(), "canceling a finished query is a no-op");
    }
}
