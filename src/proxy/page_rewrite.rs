//! Rewrites the absolute URIs of Trino statement pages while they stream through.
//!
//! Two jobs, one pass:
//! * **Segment routing** (spooling protocol). A spooled segment's `uri`/`ackUri` on the gateway's
//!   own address gets the query id put into its path —
//!   `/v1/spooled/download/{segment}` becomes `/v1/spooled/{queryId}/download/{segment}` — so that
//!   any gateway instance can find the cluster that wrote the segment from the URI alone (the
//!   query id's coordinator id names it; see [`crate::stickiness`]) and forward the request to
//!   the real path. Segment ids are opaque, encrypted handles: nothing else in them says who
//!   wrote them. Storage URLs (another host) are never touched.
//! * **`forwarding: rewrite`**. A cluster without `http-server.process-forwarded` builds its URIs
//!   on its own address; those in `nextUri`, `infoUri`, `partialCancelUri` and segment
//!   `uri`/`ackUri` get the gateway's public base instead.
//!
//! The page is never held: bytes pass through as they arrive, except one URI value at a time
//! (bounded) while it is being read. The scan follows the JSON string structure, so a key is only
//! ever recognised as a key, never inside a string value; a direct-protocol page (`"data":[`) ends
//! the scan, since no URI field comes after the rows.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use flate2::write::{DeflateDecoder, GzDecoder};
use memchr::{memchr, memchr2};

/// Longest URI value rewritten; a longer one passes unchanged.
const MAX_VALUE: usize = 8 * 1024;
/// Longest key we watch (`partialCancelUri`).
const MAX_KEY: usize = 16;

/// The origin (`scheme://host:port`) a URI must be on to be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub https: bool,
    /// Lowercase; IPv6 without brackets.
    pub host: String,
    pub port: u16,
}

impl Origin {
    pub fn new(https: bool, host: &str, port: u16) -> Self {
        Origin {
            https,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            port,
        }
    }
}

/// What to rewrite in one response.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `forwarding: rewrite`: URIs on the backend's own origin get `public` as their base.
    pub backend: Option<Origin>,
    /// The gateway's public base, `scheme://host[:port]` without a trailing slash.
    pub public: String,
    /// Host name (lowercase, no port) the backend was told is the gateway's (`X-Forwarded-Host`):
    /// segment URIs on it are the gateway's own and get tagged.
    pub forwarded_host: Option<String>,
    /// The query the page belongs to (follow-ups know it from their path; a submission's answer
    /// tells it in its `id` field, which comes first).
    pub query_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    NextUri,
    InfoUri,
    PartialCancelUri,
    Uri,
    AckUri,
    Data,
}

impl Key {
    fn of(name: &[u8]) -> Option<Key> {
        Some(match name {
            b"id" => Key::Id,
            b"nextUri" => Key::NextUri,
            b"infoUri" => Key::InfoUri,
            b"partialCancelUri" => Key::PartialCancelUri,
            b"uri" => Key::Uri,
            b"ackUri" => Key::AckUri,
            b"data" => Key::Data,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between tokens.
    Outside,
    /// In a string (key or value) we may not change.
    InString { escaped: bool },
    /// After a watched key's closing quote: `ws* : ws*` then its value.
    AfterKey { key: Key, colon: bool },
    /// In a watched key's string value, held in `value`.
    InValue { key: Key, escaped: bool },
    /// Nothing more to rewrite in this page.
    Done,
}

pub struct PageRewriter {
    rules: Rules,
    state: State,
    /// The start of the current string (bounded copy), to tell whether it is a watched key.
    key: [u8; MAX_KEY],
    key_len: usize,
    key_long: bool,
    value: Vec<u8>,
    /// URIs changed so far (for tests and metrics).
    pub rewritten: u32,
}

impl PageRewriter {
    pub fn new(rules: Rules) -> Self {
        PageRewriter {
            rules,
            state: State::Outside,
            key: [0; MAX_KEY],
            key_len: 0,
            key_long: false,
            value: Vec::new(),
            rewritten: 0,
        }
    }

    /// The query id the page named (or the rules knew).
    pub fn query_id(&self) -> Option<&str> {
        self.rules.query_id.as_deref()
    }

    /// Pass one body chunk; the returned bytes go to the client in its place. A chunk without a
    /// change is returned as is (no copy).
    pub fn feed(&mut self, chunk: &Bytes) -> Bytes {
        if self.state == State::Done && self.value.is_empty() {
            return chunk.clone();
        }
        let buf: &[u8] = chunk;
        let mut out: Option<BytesMut> = None;
        // Start of the bytes not yet copied to `out` (only meaningful once `out` exists, or once a
        // value starts).
        let mut pending = 0usize;
        let mut i = 0usize;
        while i < buf.len() {
            match self.state {
                State::Done => break,
                State::Outside => match memchr(b'"', &buf[i..]) {
                    Some(q) => {
                        i += q + 1;
                        self.key_len = 0;
                        self.key_long = false;
                        self.state = State::InString { escaped: false };
                    }
                    None => i = buf.len(),
                },
                State::InString { escaped } => {
                    if escaped {
                        self.key_long = true; // an escaped key is none of ours
                        i += 1;
                        self.state = State::InString { escaped: false };
                        continue;
                    }
                    let Some(q) = memchr2(b'"', b'\\', &buf[i..]) else {
                        self.remember_key(&buf[i..]);
                        i = buf.len();
                        continue;
                    };
                    self.remember_key(&buf[i..i + q]);
                    i += q;
                    if buf[i] == b'\\' {
                        i += 1;
                        self.state = State::InString { escaped: true };
                        continue;
                    }
                    i += 1; // closing quote
                    let key = if self.key_long {
                        None
                    } else {
                        Key::of(&self.key[..self.key_len])
                    };
                    self.state = match key {
                        Some(key) => State::AfterKey { key, colon: false },
                        None => State::Outside,
                    };
                }
                State::AfterKey { key, colon } => {
                    let b = buf[i];
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else if !colon && b == b':' {
                        i += 1;
                        self.state = State::AfterKey { key, colon: true };
                    } else if colon && b == b'"' && key != Key::Data {
                        i += 1;
                        // The value is held from here: everything before it goes out first.
                        let o = out.get_or_insert_with(|| BytesMut::with_capacity(buf.len() + 64));
                        o.extend_from_slice(&buf[pending..i]);
                        pending = i;
                        self.value.clear();
                        self.state = State::InValue {
                            key,
                            escaped: false,
                        };
                    } else if colon && key == Key::Data && b == b'[' {
                        // Rows of the direct protocol: no URI follows them.
                        self.state = State::Done;
                    } else {
                        // Not a key after all (a string value equal to a key name), or a value
                        // that is not a string: scan on from this byte.
                        self.state = State::Outside;
                    }
                }
                State::InValue { key, escaped } => {
                    let start = i;
                    let mut end = None;
                    let mut esc = escaped;
                    while i < buf.len() {
                        let b = buf[i];
                        if esc {
                            esc = false;
                        } else if b == b'\\' {
                            esc = true;
                        } else if b == b'"' {
                            end = Some(i);
                            break;
                        }
                        i += 1;
                    }
                    let stop = end.unwrap_or(buf.len());
                    self.value.extend_from_slice(&buf[start..stop]);
                    match end {
                        Some(e) => {
                            let o =
                                out.get_or_insert_with(|| BytesMut::with_capacity(buf.len() + 64));
                            let value = std::mem::take(&mut self.value);
                            match self.transform(key, &value) {
                                Some(new) => {
                                    o.extend_from_slice(new.as_bytes());
                                    self.rewritten += 1;
                                }
                                None => o.extend_from_slice(&value),
                            }
                            self.value = value;
                            self.value.clear();
                            pending = e; // the closing quote goes out with what follows
                            i = e + 1;
                            self.state = State::Outside;
                        }
                        None if self.value.len() > MAX_VALUE => {
                            // Too long to be a URI we rewrite: let it go as it is.
                            let o =
                                out.get_or_insert_with(|| BytesMut::with_capacity(buf.len() + 64));
                            o.extend_from_slice(&self.value);
                            self.value.clear();
                            pending = buf.len();
                            self.state = State::InString { escaped: esc };
                            self.key_long = true;
                        }
                        None => {
                            pending = buf.len();
                            self.state = State::InValue { key, escaped: esc };
                        }
                    }
                }
            }
        }
        match out {
            None if matches!(self.state, State::InValue { .. }) => {
                // The value started in an earlier chunk and goes on past this one.
                Bytes::new()
            }
            None => chunk.clone(),
            Some(mut o) => {
                if !matches!(self.state, State::InValue { .. }) {
                    o.extend_from_slice(&buf[pending..]);
                }
                o.freeze()
            }
        }
    }

    /// The page ended: whatever is still held goes out unchanged (a truncated page).
    pub fn finish(&mut self) -> Option<Bytes> {
        self.state = State::Done;
        if self.value.is_empty() {
            None
        } else {
            Some(Bytes::from(std::mem::take(&mut self.value)))
        }
    }

    fn remember_key(&mut self, part: &[u8]) {
        if self.key_long {
            return;
        }
        if self.key_len + part.len() > MAX_KEY {
            self.key_long = true;
            return;
        }
        self.key[self.key_len..self.key_len + part.len()].copy_from_slice(part);
        self.key_len += part.len();
    }

    /// The new text of a watched value, or `None` to keep it.
    fn transform(&mut self, key: Key, value: &[u8]) -> Option<String> {
        let value = std::str::from_utf8(value).ok()?;
        if key == Key::Id {
            if self.rules.query_id.is_none() && crate::query_id::is_valid_query_id(value) {
                self.rules.query_id = Some(value.to_string());
            }
            return None;
        }
        if value.contains('\\') || value.len() > MAX_VALUE {
            return None;
        }
        let (origin, rest) = split_origin(value)?;
        let on_backend = self
            .rules
            .backend
            .as_ref()
            .is_some_and(|b| origin.matches(b));
        let on_gateway = self
            .rules
            .forwarded_host
            .as_deref()
            .is_some_and(|h| origin.host.eq_ignore_ascii_case(h));
        let base = if on_backend {
            self.rules.public.as_str()
        } else {
            origin.text
        };
        let segment = matches!(key, Key::Uri | Key::AckUri) && (on_backend || on_gateway);
        let tagged = if segment {
            self.rules
                .query_id
                .as_deref()
                .and_then(|q| tag_segment_path(rest, q))
        } else {
            None
        };
        match (tagged, on_backend) {
            (Some(path), _) => Some(format!("{base}{path}")),
            (None, true) => Some(format!("{base}{rest}")),
            (None, false) => None,
        }
    }
}

/// `/v1/spooled/{download|ack}/{id}…` → `/v1/spooled/{queryId}/{download|ack}/{id}…`.
fn tag_segment_path(path: &str, query_id: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/spooled/")?;
    if !(rest.starts_with("download/") || rest.starts_with("ack/")) {
        return None;
    }
    Some(format!("/v1/spooled/{query_id}/{rest}"))
}

/// Where a spooled segment request goes: the query named in its path, and the backend's own path.
/// `None` for any other path.
pub fn untag_segment_path(path: &str) -> Option<(&str, String)> {
    let rest = path.strip_prefix("/v1/spooled/")?;
    let (query_id, tail) = rest.split_once('/')?;
    if !(tail.starts_with("download/") || tail.starts_with("ack/")) {
        return None;
    }
    Some((query_id, format!("/v1/spooled/{tail}")))
}

struct ParsedOrigin<'a> {
    /// `scheme://authority` as written.
    text: &'a str,
    https: bool,
    host: &'a str,
    port: u16,
}

impl ParsedOrigin<'_> {
    fn matches(&self, o: &Origin) -> bool {
        self.https == o.https && self.port == o.port && self.host.eq_ignore_ascii_case(&o.host)
    }
}

/// Split an absolute `http(s)` URI into its origin and the rest (path, query).
fn split_origin(uri: &str) -> Option<(ParsedOrigin<'_>, &str)> {
    let (https, after) = if let Some(a) = uri.strip_prefix("https://") {
        (true, a)
    } else if let Some(a) = uri.strip_prefix("http://") {
        (false, a)
    } else {
        return None;
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let authority = &after[..end];
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, tail) = v6.split_once(']')?;
            (h, tail.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None if https => 443,
        None => 80,
    };
    let split = uri.len() - after.len() + end;
    Some((
        ParsedOrigin {
            text: &uri[..split],
            https,
            host,
            port,
        },
        &uri[split..],
    ))
}

/// A `Location` header value on the backend's origin, with the public base instead.
pub fn rewrite_location(rules: &Rules, location: &str) -> Option<String> {
    let backend = rules.backend.as_ref()?;
    let (origin, rest) = split_origin(location)?;
    origin
        .matches(backend)
        .then(|| format!("{}{rest}", rules.public))
}

/// Inflates a gzip or deflate page as it streams (a compressed spooled page goes on inflated, so
/// that its segment URIs can be rewritten; spooled pages are small, the rows are in the segments).
pub struct Inflater(Box<dyn Decoder + Send + Sync>);

/// flate2's streaming decoders, which share no trait for what is needed here.
trait Decoder: Write {
    fn end(&mut self) -> std::io::Result<()>;
    fn output(&mut self) -> &mut Vec<u8>;
}

impl Decoder for GzDecoder<Vec<u8>> {
    fn end(&mut self) -> std::io::Result<()> {
        self.try_finish()
    }
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl Decoder for DeflateDecoder<Vec<u8>> {
    fn end(&mut self) -> std::io::Result<()> {
        self.try_finish()
    }
    fn output(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
}

impl Inflater {
    /// `None` for an encoding other than gzip or deflate.
    pub fn new(content_encoding: &[u8]) -> Option<Self> {
        if content_encoding.eq_ignore_ascii_case(b"gzip") {
            Some(Inflater(Box::new(GzDecoder::new(Vec::new()))))
        } else if content_encoding.eq_ignore_ascii_case(b"deflate") {
            Some(Inflater(Box::new(DeflateDecoder::new(Vec::new()))))
        } else {
            None
        }
    }

    /// The bytes this chunk inflates to (at the end, everything that is left).
    pub fn inflate(&mut self, chunk: &[u8], end: bool) -> std::io::Result<Bytes> {
        let d = &mut self.0;
        d.write_all(chunk)?;
        if end {
            d.end()?;
        } else {
            d.flush()?;
        }
        Ok(Bytes::from(std::mem::take(d.output())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QID: &str = "20261130_101010_00007_abcde";

    fn run(rules: Rules, page: &str, chunk: usize) -> (String, PageRewriter) {
        let mut r = PageRewriter::new(rules);
        let mut out = Vec::new();
        for c in page.as_bytes().chunks(chunk.max(1)) {
            out.extend_from_slice(&r.feed(&Bytes::copy_from_slice(c)));
        }
        if let Some(rest) = r.finish() {
            out.extend_from_slice(&rest);
        }
        (String::from_utf8(out).unwrap(), r)
    }

    fn spooled_page(base: &str, storage: &str) -> String {
        format!(
            r#"{{"id":"{QID}","infoUri":"{base}/ui/query.html?{QID}","nextUri":"{base}/v1/statement/executing/{QID}/y1/2","columns":[{{"name":"x","type":"bigint"}}],"data":{{"encoding":"json+zstd","segments":[{{"type":"inline","data":"KLUv/QBYIQAAWzFd","metadata":{{"rowOffset":0,"rowsCount":1,"segmentSize":12}}}},{{"type":"spooled","uri":"{base}/v1/spooled/download/AbC-9_x=","ackUri":"{base}/v1/spooled/ack/AbC-9_x=","metadata":{{"rowOffset":1,"rowsCount":9,"segmentSize":99}},"headers":{{"X-Key":["k"]}}}},{{"type":"spooled","uri":"{storage}/bucket/seg?X-Amz-Signature=ab","ackUri":"{base}/v1/spooled/ack/Zz","metadata":{{}},"headers":{{}}}}]}},"stats":{{"state":"RUNNING"}}}}"#
        )
    }

    fn headers_rules() -> Rules {
        Rules {
            forwarded_host: Some("gw.example.com".into()),
            ..Rules::default()
        }
    }

    #[test]
    fn tags_gateway_segments_and_leaves_storage_alone_in_any_chunking() {
        let base = "https://GW.example.com:8443";
        let page = spooled_page(base, "https://s3.example.com");
        let want = page
            .replace(
                "/v1/spooled/download/",
                &format!("/v1/spooled/{QID}/download/"),
            )
            .replace("/v1/spooled/ack/", &format!("/v1/spooled/{QID}/ack/"));
        for chunk in [1, 2, 3, 7, 16, 64, 4096] {
            let (out, r) = run(headers_rules(), &page, chunk);
            assert_eq!(out, want, "chunk {chunk}");
            assert_eq!(r.rewritten, 3);
            assert_eq!(r.query_id(), Some(QID));
        }
    }

    #[test]
    fn rewrite_mode_moves_backend_uris_to_the_public_base() {
        let rules = Rules {
            backend: Some(Origin::new(false, "10.0.0.5", 8080)),
            public: "https://gw.example.com".into(),
            ..Rules::default()
        };
        let page = spooled_page("http://10.0.0.5:8080", "http://10.0.0.5:9000");
        let (out, r) = run(rules, &page, 5);
        assert!(!out.contains("10.0.0.5:8080"), "{out}");
        assert!(out.contains(&format!(
            "\"nextUri\":\"https://gw.example.com/v1/statement/executing/{QID}/y1/2\""
        )));
        assert!(out.contains(&format!(
            "\"uri\":\"https://gw.example.com/v1/spooled/{QID}/download/AbC-9_x=\""
        )));
        // Another port of the same host is not the backend: storage stays.
        assert!(out.contains("http://10.0.0.5:9000/bucket/seg?X-Amz-Signature=ab"));
        assert_eq!(r.rewritten, 5);
    }

    #[test]
    fn direct_pages_and_strings_that_look_like_keys_pass_unchanged() {
        // A value equal to a key name, an escaped quote, a map with a `uri` key in the rows:
        // the rows come after `"data":[`, where the scan has ended.
        let page = format!(
            r#"{{"id":"{QID}","note":"nextUri","q":"a\"uri\":\"x","nextUri":"http://gw.example.com/v1/statement/executing/{QID}/y/1","data":[[{{"uri":"http://gw.example.com/v1/spooled/download/x"}}]]}}"#
        );
        for chunk in [1, 4, 1000] {
            let (out, r) = run(headers_rules(), &page, chunk);
            assert_eq!(out, page);
            assert_eq!(r.rewritten, 0);
        }
        let mut r = PageRewriter::new(headers_rules());
        let head = Bytes::from(format!(r#"{{"id":"{QID}","data":["#));
        assert_eq!(r.feed(&head), head);
        let rows = Bytes::from_static(br#"[1],[2]]}"#);
        // After the rows started, chunks are handed back as they are.
        assert_eq!(r.feed(&rows).as_ptr(), rows.as_ptr());
    }

    #[test]
    fn overlong_values_pass_unchanged() {
        let long = format!(
            "http://gw.example.com/v1/spooled/download/{}",
            "a".repeat(MAX_VALUE + 10)
        );
        let page = format!(
            r#"{{"id":"{QID}","data":{{"segments":[{{"uri":"{long}","ackUri":"http://gw.example.com/v1/spooled/ack/b"}}]}}}}"#
        );
        for chunk in [100, 3000, 100_000] {
            let (out, _) = run(headers_rules(), &page, chunk);
            assert!(out.contains(&long));
            assert!(out.contains(&format!("/v1/spooled/{QID}/ack/b")));
        }
    }

    #[test]
    fn compressed_pages_are_inflated_piecewise() {
        let page = spooled_page("http://gw.example.com", "http://s3");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(page.as_bytes()).unwrap();
        let packed = gz.finish().unwrap();
        let mut inf = Inflater::new(b"GZIP").unwrap();
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = packed.chunks(7).collect();
        for (i, c) in pieces.iter().enumerate() {
            out.extend_from_slice(&inf.inflate(c, i + 1 == pieces.len()).unwrap());
        }
        assert_eq!(out, page.as_bytes());
        assert!(Inflater::new(b"br").is_none());
        let mut bad = Inflater::new(b"gzip").unwrap();
        assert!(bad.inflate(b"not gzip at all", true).is_err());
    }

    #[test]
    fn segment_paths_round_trip() {
        let tagged = tag_segment_path("/v1/spooled/download/abc?x=1", QID).unwrap();
        assert_eq!(tagged, format!("/v1/spooled/{QID}/download/abc?x=1"));
        assert_eq!(
            untag_segment_path(&format!("/v1/spooled/{QID}/ack/abc")),
            Some((QID, "/v1/spooled/ack/abc".to_string()))
        );
        assert_eq!(untag_segment_path("/v1/spooled/download/abc"), None);
        assert_eq!(tag_segment_path("/v1/statement/x", QID), None);
    }

    #[test]
    fn locations_on_the_backend_only() {
        let rules = Rules {
            backend: Some(Origin::new(false, "trino-1", 80)),
            public: "https://gw".into(),
            ..Rules::default()
        };
        assert_eq!(
            rewrite_location(&rules, "http://trino-1/ui/").as_deref(),
            Some("https://gw/ui/")
        );
        assert_eq!(
            rewrite_location(&rules, "http://TRINO-1:80/x?y").as_deref(),
            Some("https://gw/x?y")
        );
        assert_eq!(rewrite_location(&rules, "http://s3/bucket/x"), None);
        assert_eq!(rewrite_location(&rules, "/relative"), None);
    }
}
