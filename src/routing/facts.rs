//! The request attributes routing decisions look at, extracted once per submission.

use http::header::HOST;
use http::{HeaderMap, HeaderName};

use super::query::QueryProperties;

/// Routing inputs; borrowed from the request headers, so extracting them allocates nothing.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub listener: &'a str,
    pub user: Option<&'a str>,
    pub source: Option<&'a str>,
    /// Raw `X-Trino-Client-Tags` value (comma separated).
    pub client_tags: Option<&'a str>,
    pub routing_group: Option<&'a str>,
    /// `Host` without port.
    pub host: Option<&'a str>,
    /// Raw `X-Trino-Transaction-Id` value.
    pub transaction: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// What the statement touches, when a policy on query content made the proxy read it.
    pub query: Option<&'a QueryProperties>,
}

/// A Trino request header together with its legacy `X-Presto-*` twin.
pub struct TrinoHeader {
    pub name: &'static str,
    pub trino: HeaderName,
    pub presto: HeaderName,
}

impl TrinoHeader {
    const fn new(trino: &'static str, presto: &'static str) -> Self {
        TrinoHeader {
            name: trino,
            trino: HeaderName::from_static(trino),
            presto: HeaderName::from_static(presto),
        }
    }

    /// The header's value, preferring `X-Trino-*`. `Err` names the header if it is not UTF-8.
    pub fn get<'a>(&self, headers: &'a HeaderMap) -> Result<Option<&'a str>, &'static str> {
        let v = headers
            .get(&self.trino)
            .or_else(|| headers.get(&self.presto));
        match v {
            None => Ok(None),
            Some(v) => v.to_str().map(Some).map_err(|_| self.name),
        }
    }
}

/// (X-Trino name, X-Presto name) of the headers below, in this order: the one table behind both
/// the constants and [`RequestFacts::from_headers`]'s single pass.
const NAMES: [(&str, &str); 5] = [
    ("x-trino-user", "x-presto-user"),
    ("x-trino-source", "x-presto-source"),
    ("x-trino-client-tags", "x-presto-client-tags"),
    ("x-trino-routing-group", "x-presto-routing-group"),
    ("x-trino-transaction-id", "x-presto-transaction-id"),
];

pub const USER: TrinoHeader = TrinoHeader::new(NAMES[0].0, NAMES[0].1);
pub const SOURCE: TrinoHeader = TrinoHeader::new(NAMES[1].0, NAMES[1].1);
pub const CLIENT_TAGS: TrinoHeader = TrinoHeader::new(NAMES[2].0, NAMES[2].1);
pub const ROUTING_GROUP: TrinoHeader = TrinoHeader::new(NAMES[3].0, NAMES[3].1);
pub const TRANSACTION_ID: TrinoHeader = TrinoHeader::new(NAMES[4].0, NAMES[4].1);

impl<'a> RequestFacts<'a> {
    /// Facts with only the listener and headers set (for tests and the dry-run API).
    pub fn new(listener: &'a str, headers: &'a HeaderMap) -> Self {
        RequestFacts {
            listener,
            user: None,
            source: None,
            client_tags: None,
            routing_group: None,
            host: None,
            transaction: None,
            headers,
            query: None,
        }
    }

    /// Extract from request headers. `Err` names a routing header whose value is not valid UTF-8.
    ///
    /// One pass over the headers instead of a lookup per name (each `X-Trino-*` header has an
    /// `X-Presto-*` twin, so most lookups would be misses); as [`TrinoHeader::get`], the first
    /// value of a header counts and `X-Trino-*` wins over `X-Presto-*`.
    pub fn from_headers(listener: &'a str, headers: &'a HeaderMap) -> Result<Self, &'static str> {
        const FACTS: [(&str, &str); 5] = NAMES;
        // [trino, presto] value per fact, in FACTS order.
        let mut found: [[Option<&'a http::HeaderValue>; 2]; 5] = [[None; 2]; 5];
        let mut host = None;
        for (name, value) in headers {
            if *name == HOST {
                host.get_or_insert(value);
                continue;
            }
            let n = name.as_str();
            let (twin, rest) = if let Some(rest) = n.strip_prefix("x-trino-") {
                (0, rest)
            } else if let Some(rest) = n.strip_prefix("x-presto-") {
                (1, rest)
            } else {
                continue;
            };
            for (i, fact) in FACTS.iter().enumerate() {
                let own = if twin == 0 { fact.0 } else { fact.1 };
                if own.len() == n.len() && own.ends_with(rest) {
                    found[i][twin].get_or_insert(value);
                    break;
                }
            }
        }
        let text = |i: usize| -> Result<Option<&'a str>, &'static str> {
            match found[i][0].or(found[i][1]) {
                None => Ok(None),
                Some(v) => v.to_str().map(Some).map_err(|_| FACTS[i].0),
            }
        };
        let host = match host {
            None => None,
            Some(h) => Some(strip_port(h.to_str().map_err(|_| "Host")?)),
        };
        Ok(RequestFacts {
            listener,
            user: text(0)?,
            source: text(1)?,
            client_tags: text(2)?,
            routing_group: text(3)?,
            host,
            transaction: text(4)?,
            headers,
            query: None,
        })
    }

    /// Iterate the client tags, trimmed, skipping empty entries.
    pub fn tags(&self) -> impl Iterator<Item = &'a str> {
        self.client_tags
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

/// `host:port` → `host`, also for bracketed IPv6 literals.
pub fn strip_port(host: &str) -> &str {
    // Plain byte loops: every submission reads its `Host` this way, and a host is short
    // (`rsplit_once`/`contains` with a `char`, or a SIMD `memchr`, cost more to set up than this).
    let bytes = host.as_bytes();
    if let Some(rest) = host.strip_prefix('[') {
        return match rest.bytes().position(|b| b == b']') {
            Some(end) => &rest[..end],
            None => rest,
        };
    }
    match bytes.iter().rposition(|&b| b == b':') {
        Some(colon)
            if !bytes[..colon].contains(&b':')
                && bytes[colon + 1..].iter().all(u8::is_ascii_digit) =>
        {
            &host[..colon]
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("a.example.com:8080"), "a.example.com");
        assert_eq!(strip_port("a.example.com"), "a.example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
        assert_eq!(strip_port("[::1"), "::1");
        assert_eq!(strip_port("host:"), "host");
        assert_eq!(strip_port("host:80x"), "host:80x");
        assert_eq!(strip_port("a:b:80"), "a:b:80");
        assert_eq!(strip_port(""), "");
    }

    #[test]
    fn presto_headers_are_twins() {
        let mut h = HeaderMap::new();
        h.insert("x-presto-user", "alice".parse().unwrap());
        h.insert("x-trino-source", "cli".parse().unwrap());
        let f = RequestFacts::from_headers("main", &h).unwrap();
        assert_eq!(f.user, Some("alice"));
        assert_eq!(f.source, Some("cli"));
    }

    #[test]
    fn one_pass_agrees_with_lookups() {
        let mut h = HeaderMap::new();
        h.insert("host", "gw.example:8080".parse().unwrap());
        h.append("x-presto-source", "old".parse().unwrap());
        h.append("x-trino-source", "new".parse().unwrap());
        h.append("x-trino-client-tags", "a,b".parse().unwrap());
        h.append("x-trino-client-tags", "c".parse().unwrap());
        h.append("x-presto-routing-group", "etl".parse().unwrap());
        h.append("x-trino-user-agent-ish", "no".parse().unwrap());
        let f = RequestFacts::from_headers("main", &h).unwrap();
        assert_eq!(f.host, Some("gw.example"));
        assert_eq!(f.user, USER.get(&h).unwrap());
        assert_eq!(f.user, None);
        assert_eq!(f.source, Some("new"));
        assert_eq!(f.client_tags, CLIENT_TAGS.get(&h).unwrap());
        assert_eq!(f.client_tags, Some("a,b"));
        assert_eq!(f.routing_group, Some("etl"));
    }

    #[test]
    fn non_utf8_routing_header_is_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-trino-user",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(
            RequestFacts::from_headers("main", &h).unwrap_err(),
            "x-trino-user"
        );
    }
}
