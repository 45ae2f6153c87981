//! Loop detection: every request the gateway sends upstream (proxied requests — except follow-ups
//! of a query, which go where the query runs — and its own health probes and hybrid subqueries)
//! carries this process's id in `X-Trino-Edge-Hop`, appended to any ids already there; a
//! request that arrives with our own id has gone round a loop (a backend that is this gateway, or
//! another gateway that leads back here) and is answered `508` instead of being sent round again.
//! Backends that are one of our own listeners are refused when the config is checked; this
//! catches the rest (host names, other instances, load balancers in between).

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue};

pub const HOP: HeaderName = HeaderName::from_static("x-trino-edge-hop");

/// This process's id: 16 random hex digits.
pub static ID: LazyLock<HeaderValue> = LazyLock::new(|| {
    let id = format!("{:016x}", fastrand::u64(..));
    HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("trino-edge"))
});

/// Whether a request carries this process's id (one lookup when the header is absent).
pub fn looped(headers: &HeaderMap) -> bool {
    let id = ID.as_bytes();
    headers.get_all(HOP).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii() == id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_id_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert!(!looped(&h));
        h.append(HOP, HeaderValue::from_static("0123456789abcdef"));
        assert!(!looped(&h));
        let mut list = b"0123456789abcdef, ".to_vec();
        list.extend_from_slice(ID.as_bytes());
        h.append(HOP, HeaderValue::from_bytes(&list).unwrap());
        assert!(looped(&h));
    }
}
