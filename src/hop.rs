//! Loop detection: every request the gateway sends upstream (proxied requests — except follow-ups
//! of a query, which go where the query runs — and its own health probes and hybrid subqueries)
//! carries a `Via` element naming this process, `1.1 trino-edge-<id>` (RFC 9110 §7.6.3: the
//! header a proxy adds for exactly this, "to detect request loops"), appended to any elements
//! already there; a request that arrives with our own element has gone round a loop (a backend
//! that is this gateway, or another gateway that leads back here) and is answered `508` instead
//! of being sent round again. Backends that are one of our own listeners are refused when the
//! config is checked; this catches the rest (host names, other instances, load balancers in
//! between).

use std::sync::LazyLock;

use http::{HeaderMap, HeaderValue};

/// This process's pseudonym in `Via`: `trino-edge-` and 16 random hex digits.
static NAME: LazyLock<&'static str> = LazyLock::new(|| {
    let name = format!("trino-edge-{:016x}", fastrand::u64(..));
    Box::leak(name.into_boxed_str())
});

/// This process's `Via` element, `1.1 <pseudonym>` (static: adding it copies nothing).
pub static ELEMENT: LazyLock<HeaderValue> = LazyLock::new(|| {
    let element: &'static str = Box::leak(format!("1.1 {}", *NAME).into_boxed_str());
    HeaderValue::from_static(element)
});

/// Whether a request carries this process's `Via` element (one lookup when the header is
/// absent). An element is `protocol received-by [comment]`; ours is the one received by our
/// pseudonym.
pub fn looped(headers: &HeaderMap) -> bool {
    let name = NAME.as_bytes();
    headers.get_all(http::header::VIA).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|element| {
            element
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty())
                .nth(1)
                == Some(name)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_element_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert!(!looped(&h));
        h.append(http::header::VIA, HeaderValue::from_static("1.1 nginx"));
        h.append(
            http::header::VIA,
            HeaderValue::from_static("1.1 trino-edge-0123456789abcdef, HTTP/1.0 cache (Squid)"),
        );
        assert!(!looped(&h));
        // Our pseudonym as a comment or a protocol is not our element.
        let as_comment = format!("1.1 proxy ({})", *NAME);
        h.append(
            http::header::VIA,
            HeaderValue::from_str(&as_comment).unwrap(),
        );
        assert!(!looped(&h));
        let mut list = b"1.0 fred, ".to_vec();
        list.extend_from_slice(ELEMENT.as_bytes());
        list.extend_from_slice(b" (trino-edge)");
        h.append(http::header::VIA, HeaderValue::from_bytes(&list).unwrap());
        assert!(looped(&h));
    }

    #[test]
    fn element_names_this_process() {
        let text = ELEMENT.to_str().unwrap();
        let name = text.strip_prefix("1.1 trino-edge-").unwrap();
        assert_eq!(name.len(), 16);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
