//! Routing policies compiled for matching: regexes built, names and tags normalised once per snapshot.

use std::fmt::Write as _;
use std::sync::Arc;

use http::HeaderName;
use regex::Regex;

use super::query::QueryProperties;
use super::RequestFacts;
use crate::config::{PolicyConfig, StatementKind};

#[derive(Debug)]
pub struct CompiledPolicy {
    pub name: Arc<str>,
    pub priority: i64,
    pub group: usize,
    /// Group to use when `group` has no available backend (else the default group).
    pub fallback_group: Option<usize>,
    listener: Option<String>,
    tags_all: Vec<String>,
    tags_any: Vec<String>,
    source: Option<Regex>,
    user: Option<Regex>,
    /// Lower-cased for a case-insensitive comparison.
    host: Option<String>,
    headers: Vec<(HeaderName, String)>,
    /// Conditions on the statement itself; `None` when the policy has none (most do).
    content: Option<Box<Content>>,
    /// The queue priority and running limits of this policy's queries.
    pub queue: crate::config::QueueConfig,
}

/// A policy's conditions on query content ([`QueryProperties`]).
#[derive(Debug, Default)]
struct Content {
    catalogs_any: Vec<Glob>,
    catalogs_all: Vec<Glob>,
    schemas_any: Vec<Glob>,
    tables_any: Vec<Glob>,
    statement: Vec<StatementKind>,
}

/// A name pattern (`*` any characters, compared lower-cased), kept as written for
/// `describe_conditions`.
#[derive(Debug)]
struct Glob {
    text: String,
    re: Regex,
}

impl Glob {
    fn new(pattern: &str) -> Result<Glob, String> {
        let text = pattern.trim().to_lowercase();
        let body: Vec<String> = text.split('*').map(regex::escape).collect();
        let re = Regex::new(&format!("^(?:{})$", body.join(".*")))
            .map_err(|e| format!("pattern `{pattern}`: {e}"))?;
        Ok(Glob { text, re })
    }

    fn matches(&self, name: &str) -> bool {
        self.re.is_match(name)
    }
}

fn globs(patterns: &[String]) -> Result<Vec<Glob>, String> {
    patterns.iter().map(|p| Glob::new(p)).collect()
}

impl Content {
    fn compile(m: &crate::config::MatchConfig) -> Result<Option<Box<Content>>, String> {
        if !m.reads_content() {
            return Ok(None);
        }
        Ok(Some(Box::new(Content {
            catalogs_any: globs(&m.catalogs_any)?,
            catalogs_all: globs(&m.catalogs_all)?,
            schemas_any: globs(&m.schemas_any)?,
            tables_any: globs(&m.tables_any)?,
            statement: m.statement.clone(),
        })))
    }

    /// The first content condition that does not hold.
    fn mismatch(&self, q: Option<&QueryProperties>) -> Option<&'static str> {
        let Some(q) = q.filter(|q| q.analyzed()) else {
            return Some("query content (the statement was not analyzed)");
        };
        let any = |globs: &[Glob], names: &std::collections::BTreeSet<String>| {
            globs.is_empty() || names.iter().any(|n| globs.iter().any(|g| g.matches(n)))
        };
        if !self.statement.is_empty() && !q.statement.is_some_and(|s| self.statement.contains(&s)) {
            return Some("statement");
        }
        if !any(&self.catalogs_any, &q.catalogs) {
            return Some("catalogs_any");
        }
        if !self
            .catalogs_all
            .iter()
            .all(|g| q.catalogs.iter().any(|c| g.matches(c)))
        {
            return Some("catalogs_all");
        }
        if !any(&self.schemas_any, &q.schemas) {
            return Some("schemas_any");
        }
        if !any(&self.tables_any, &q.tables) {
            return Some("tables_any");
        }
        None
    }
}

/// Longest `X-Trino-User`/`X-Trino-Source` value a `user`/`source` pattern is matched against;
/// a longer one does not match. A pattern costs time in proportion to its size times the
/// value's length (the regex crate guarantees no worse), so both are bounded.
pub const MAX_MATCHED_LEN: usize = 1024;

impl CompiledPolicy {
    pub fn compile(
        p: &PolicyConfig,
        group: usize,
        fallback_group: Option<usize>,
    ) -> Result<Self, String> {
        let m = &p.match_;
        let re = |r: &Option<String>| {
            r.as_deref()
                .map(crate::config::compile_pattern)
                .transpose()
                .map_err(|e| e.to_string())
        };
        let mut headers = Vec::with_capacity(m.headers.len());
        for (k, v) in &m.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header `{k}`: {e}"))?;
            headers.push((name, v.clone()));
        }
        Ok(CompiledPolicy {
            name: Arc::from(p.name.as_str()),
            priority: p.priority,
            group,
            fallback_group,
            listener: m.listener.clone(),
            tags_all: m
                .client_tags_all
                .iter()
                .map(|t| t.trim().to_string())
                .collect(),
            tags_any: m
                .client_tags_any
                .iter()
                .map(|t| t.trim().to_string())
                .collect(),
            source: re(&m.source)?,
            user: re(&m.user)?,
            host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
            headers,
            content: Content::compile(m)?,
            queue: p.queue.unwrap_or_default(),
        })
    }

    /// Every condition given must hold; a missing header fails a condition on it.
    #[inline]
    pub fn matches(&self, f: &RequestFacts<'_>) -> bool {
        self.mismatch(f).is_none()
    }

    /// The first condition that does not hold (`None`: the policy matches). Names the condition
    /// as the config writes it, for the dry-run API.
    pub fn mismatch(&self, f: &RequestFacts<'_>) -> Option<&'static str> {
        if self.listener.as_deref().is_some_and(|l| l != f.listener) {
            return Some("listener");
        }
        if let Some(h) = &self.host {
            if !f.host.is_some_and(|fh| fh.eq_ignore_ascii_case(h)) {
                return Some("host");
            }
        }
        if let Some(re) = &self.user {
            if !f
                .user
                .is_some_and(|u| u.len() <= MAX_MATCHED_LEN && re.is_match(u))
            {
                return Some("user");
            }
        }
        if let Some(re) = &self.source {
            if !f
                .source
                .is_some_and(|s| s.len() <= MAX_MATCHED_LEN && re.is_match(s))
            {
                return Some("source");
            }
        }
        if !self.tags_all.iter().all(|t| f.tags().any(|have| have == t)) {
            return Some("client_tags_all");
        }
        if !self.tags_any.is_empty()
            && !f.tags().any(|have| self.tags_any.iter().any(|t| t == have))
        {
            return Some("client_tags_any");
        }
        let headers_hold = self.headers.iter().all(|(name, want)| {
            f.headers
                .get(name)
                .is_some_and(|v| v.as_bytes() == want.as_bytes())
        });
        if !headers_hold {
            return Some("headers");
        }
        match &self.content {
            Some(c) => c.mismatch(f.query),
            None => None,
        }
    }

    /// Whether a condition reads the statement (the proxy then holds the submission body).
    pub fn reads_content(&self) -> bool {
        self.content.is_some()
    }

    /// One-line summary of the conditions, for `check-config`.
    pub fn describe_conditions(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.listener {
            parts.push(format!("listener={l}"));
        }
        if !self.tags_all.is_empty() {
            parts.push(format!("tags all of [{}]", self.tags_all.join(",")));
        }
        if !self.tags_any.is_empty() {
            parts.push(format!("tags any of [{}]", self.tags_any.join(",")));
        }
        if let Some(r) = &self.source {
            parts.push(format!("source~/{}/", r.as_str()));
        }
        if let Some(r) = &self.user {
            parts.push(format!("user~/{}/", r.as_str()));
        }
        if let Some(h) = &self.host {
            parts.push(format!("host={h}"));
        }
        for (k, v) in &self.headers {
            let mut s = String::new();
            let _ = write!(s, "{k}={v}");
            parts.push(s);
        }
        if let Some(c) = &self.content {
            if !c.statement.is_empty() {
                let kinds: Vec<&str> = c.statement.iter().map(|s| s.as_str()).collect();
                parts.push(format!("statement in [{}]", kinds.join(",")));
            }
            for (what, globs) in [
                ("catalogs any of", &c.catalogs_any),
                ("catalogs all of", &c.catalogs_all),
                ("schemas any of", &c.schemas_any),
                ("tables any of", &c.tables_any),
            ] {
                if !globs.is_empty() {
                    let pats: Vec<&str> = globs.iter().map(|g| g.text.as_str()).collect();
                    parts.push(format!("{what} [{}]", pats.join(",")));
                }
            }
        }
        if parts.is_empty() {
            "always".to_string()
        } else {
            parts.join(" and ")
        }
    }
}
