//! Routing policies compiled for matching: regexes built, names and tags normalised once per snapshot.

use std::fmt::Write as _;
use std::sync::Arc;

use http::HeaderName;
use regex::Regex;

use super::RequestFacts;
use crate::config::PolicyConfig;

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
}

impl CompiledPolicy {
    pub fn compile(
        p: &PolicyConfig,
        group: usize,
        fallback_group: Option<usize>,
    ) -> Result<Self, String> {
        let m = &p.match_;
        let re = |r: &Option<String>| {
            r.as_deref()
                .map(Regex::new)
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
            if !f.user.is_some_and(|u| re.is_match(u)) {
                return Some("user");
            }
        }
        if let Some(re) = &self.source {
            if !f.source.is_some_and(|s| re.is_match(s)) {
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
        None
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
        if parts.is_empty() {
            "always".to_string()
        } else {
            parts.join(" and ")
        }
    }
}
