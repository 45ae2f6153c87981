//! What the gateway reads from a submission answer: the query id, and whether pages follow.
//!
//! Every submission answer passes through here, so the common shape is read without a JSON
//! parser: Trino (Jackson) writes the string fields first — `{"id":"…","infoUri":"…",
//! "nextUri":"…","stats":{…}` — and a scan of those leading `"key":"value"` pairs finds the id
//! and the `nextUri` in a few hundred instructions instead of several thousand. Anything else (an
//! escape in a leading string, no `nextUri` among them, fields in another order) goes to
//! `serde_json`, which is always right.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Submitted<'a> {
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(rename = "nextUri")]
    next_uri: Option<serde::de::IgnoredAny>,
}

impl<'a> Submitted<'a> {
    /// Parse a submission answer, reading (not building) only `id` and `nextUri`.
    pub fn parse(body: &'a [u8]) -> serde_json::Result<Self> {
        if let Some(fast) = leading_strings(body) {
            return Ok(fast);
        }
        serde_json::from_slice(body)
    }

    /// The query already ended in its first answer (no `nextUri`).
    pub fn finished(&self) -> bool {
        self.next_uri.is_none()
    }
}

/// The answer when its leading string fields hold both `id` and `nextUri`; `None` otherwise
/// (the caller then parses the whole document).
fn leading_strings(body: &[u8]) -> Option<Submitted<'_>> {
    let mut at = skip_ws(body, 0);
    if body.get(at) != Some(&b'{') {
        return None;
    }
    let (mut id, mut next_uri) = (None, false);
    loop {
        at = skip_ws(body, at + 1);
        let (key, after) = plain_string(body, at)?;
        at = skip_ws(body, after);
        if body.get(at) != Some(&b':') {
            return None;
        }
        at = skip_ws(body, at + 1);
        // A value that is not a plain string ends the fast path; so does a repeated key (serde
        // refuses it).
        let (value, after) = plain_string(body, at)?;
        match key {
            b"id" if id.is_none() => id = Some(std::str::from_utf8(value).ok()?),
            b"nextUri" if !next_uri => next_uri = true,
            b"id" | b"nextUri" => return None,
            _ => {}
        }
        if let (Some(id), true) = (id, next_uri) {
            return Some(Submitted {
                id: Some(Cow::Borrowed(id)),
                next_uri: Some(serde::de::IgnoredAny),
            });
        }
        at = skip_ws(body, after);
        if body.get(at) != Some(&b',') {
            return None;
        }
    }
}

fn skip_ws(body: &[u8], mut at: usize) -> usize {
    while body.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// A JSON string without escapes starting at `at`: its contents and the index after it. (Raw
/// control characters, which strict JSON forbids, are let through: the id is checked for its
/// own format when it is learned.)
fn plain_string(body: &[u8], at: usize) -> Option<(&[u8], usize)> {
    if body.get(at) != Some(&b'"') {
        return None;
    }
    let start = at + 1;
    let end = start + memchr::memchr2(b'"', b'\\', &body[start..])?;
    if body[end] != b'"' {
        return None;
    }
    Some((&body[start..end], end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path and serde agree, and the fast path is taken where it should be.
    fn check(body: &str, fast: bool) {
        let full: Result<Submitted, _> = serde_json::from_slice(body.as_bytes());
        let got = Submitted::parse(body.as_bytes());
        assert_eq!(leading_strings(body.as_bytes()).is_some(), fast, "{body}");
        match (full, got) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.id, b.id, "{body}");
                assert_eq!(a.finished(), b.finished(), "{body}");
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!("{body}: serde {:?} vs parse {:?}", a.is_ok(), b.is_ok()),
        }
    }

    #[test]
    fn agrees_with_serde() {
        let q = "20261123_000000_00001_abcde";
        check(
            &format!(
                r#"{{"id":"{q}","infoUri":"http://h/ui/query.html?{q}","nextUri":"http://h/v1/statement/queued/{q}/y/1","stats":{{"state":"QUEUED"}},"warnings":[]}}"#
            ),
            true,
        );
        check(
            &format!(r#" {{ "id" : "{q}" , "nextUri" : "http://h/x" }}"#),
            true,
        );
        check(&format!(r#"{{"nextUri":"http://h/x","id":"{q}"}}"#), true);
        // Finished in the first answer: no nextUri, so serde decides.
        check(
            &format!(r#"{{"id":"{q}","infoUri":"u","stats":{{"state":"FINISHED"}},"columns":[]}}"#),
            false,
        );
        // nextUri after a non-string field, escapes, a nested nextUri: serde decides.
        check(
            &format!(r#"{{"id":"{q}","stats":{{"nextUri":"x"}},"nextUri":"http://h/x"}}"#),
            false,
        );
        check(
            &format!(r#"{{"id":"{q}","stats":{{"nextUri":"x"}}}}"#),
            false,
        );
        check(r#"{"id":"a\"b","nextUri":"x"}"#, false);
        check(r#"{"infoUri":"u\\v","id":"x","nextUri":"y"}"#, false);
        // Duplicate keys: serde's answer (an error), never a guess.
        check(
            &format!(r#"{{"id":"{q}","id":"other","nextUri":"x"}}"#),
            false,
        );
        check(r#"{"nextUri":"x","nextUri":"y","id":"z"}"#, false);
        // Not JSON, or not an object.
        check("", false);
        check("[]", false);
        check(r#"{"id":"x" "nextUri":"y"}"#, false);
        check(r#"{"id":null,"nextUri":"y"}"#, false);
    }
}
