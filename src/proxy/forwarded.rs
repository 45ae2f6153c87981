//! `X-Forwarded-*` headers for backends, so a Trino with `http-server.process-forwarded=true`
//! builds `nextUri` (and every other absolute URI) pointing back at the gateway.

use std::borrow::Cow;

use http::header::HOST;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::upstream_head::UpstreamHead;

use crate::routing::facts::strip_port;
use crate::snapshot::Snapshot;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// The client address as text. IPv4 is written by hand: `Display` goes through the formatting
/// machinery, about 1,400 instructions on every request.
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if octet >= 100 {
                    s.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    s.push(char::from(b'0' + octet / 10 % 10));
                }
                s.push(char::from(b'0' + octet % 10));
            }
            s
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

/// The gateway's address as clients reach it, in the parts `X-Forwarded-*` carries; borrowed
/// from the snapshot or the request where it can be (this runs on every request).
pub struct Public<'a> {
    pub proto: Cow<'a, str>,
    pub host: Cow<'a, str>,
    pub port: Cow<'a, str>,
}

impl Public<'_> {
    /// `scheme://host[:port]` (default port left out), the base of rewritten URIs.
    pub fn base(&self) -> String {
        let default = matches!(
            (&*self.proto, &*self.port),
            ("http", "80") | ("https", "443")
        );
        if default {
            format!("{}://{}", self.proto, self.host)
        } else {
            format!("{}://{}:{}", self.proto, self.host, self.port)
        }
    }
}

/// The request's `Host` is not a valid authority (empty, or characters no host name has): it
/// cannot say where the gateway is, so the request is refused rather than forwarded as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the Host header is not a valid host[:port]")]
pub struct InvalidHost;

/// `host[:port]`: a registered name or IPv4 address (letters, digits, `-`, `.`, `_`) or a
/// bracketed IPv6 address, then an optional port of at most five digits. One pass over the
/// bytes, as this runs on every request.
pub fn valid_authority(h: &[u8]) -> bool {
    let (host, port) = match h.first() {
        Some(b'[') => match h.iter().position(|&b| b == b']') {
            Some(end) => {
                let inner = &h[1..end];
                if inner.is_empty()
                    || !inner
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'%'))
                {
                    return false;
                }
                (&h[..=end], &h[end + 1..])
            }
            None => return false,
        },
        _ => match h.iter().position(|&b| b == b':') {
            Some(colon) => (&h[..colon], &h[colon..]),
            None => (h, &h[h.len()..]),
        },
    };
    let host_ok = host.first() == Some(&b'[')
        || (!host.is_empty()
            && host
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => {
            !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)
        }
        Some(_) => false,
    };
    host_ok && port_ok
}

/// The public address, in order: `proxy.external_url`; the client's own `X-Forwarded-*` when
/// `trust_forwarded_headers` is on; the request's `Host` (port defaulting by scheme; an invalid
/// one is an error); finally the listener address.
pub fn public<'a>(
    snap: &'a Snapshot,
    req: &'a Parts,
    listener_addr: Option<std::net::SocketAddr>,
    listener_tls: bool,
) -> Result<Option<Public<'a>>, InvalidHost> {
    if let Some(ext) = &snap.external_url {
        return Ok(Some(Public {
            proto: ext.proto.as_str().into(),
            host: ext.host.as_str().into(),
            port: ext.port.as_str().into(),
        }));
    }
    let (proto, default_port) = if listener_tls {
        ("https", "443")
    } else {
        ("http", "80")
    };
    if snap.trust_forwarded_headers {
        let header = |name: HeaderName| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        if let Some(h) = header(X_FORWARDED_HOST) {
            let proto = header(X_FORWARDED_PROTO).unwrap_or(proto);
            let (host, port) = split_authority(h);
            let port = header(X_FORWARDED_PORT)
                .or(port)
                .unwrap_or(if proto == "https" { "443" } else { "80" });
            return Ok(Some(Public {
                proto: proto.into(),
                host,
                port: port.into(),
            }));
        }
    }
    let host_header = match req.headers.get(HOST) {
        Some(v) if !valid_authority(v.as_bytes()) => return Err(InvalidHost),
        Some(v) => v.to_str().ok(),
        None => req.uri.authority().map(|a| a.as_str()),
    };
    let (host, port) = match host_header {
        Some(h) => {
            let (host, port) = split_authority(h);
            (host, Cow::Borrowed(port.unwrap_or(default_port)))
        }
        None => {
            let Some(a) = listener_addr else {
                return Ok(None);
            };
            let host = match a.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            (Cow::Owned(host), Cow::Owned(a.port().to_string()))
        }
    };
    Ok(Some(Public {
        proto: proto.into(),
        host,
        port,
    }))
}

/// `host[:port]` → host (IPv6 in brackets) and the port if one is given.
fn split_authority(h: &str) -> (Cow<'_, str>, Option<&str>) {
    let port = h
        .rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .filter(|(left, _)| !left.contains(':') || left.ends_with(']'))
        .map(|(_, p)| p);
    let bare = strip_port(h);
    let host = if !bare.contains(':') {
        Cow::Borrowed(bare)
    } else if port.is_some() {
        // `[v6]:port`: the brackets as given.
        Cow::Borrowed(&h[..h.len() - port.map_or(0, |p| p.len() + 1)])
    } else {
        Cow::Owned(format!("[{bare}]"))
    };
    (host, port)
}

/// Headers by which a client could tell a backend (Jetty's forwarded-request handling, which
/// `process-forwarded` enables, or a proxy behind it) where a request came from or where the
/// gateway is — besides the four `X-Forwarded-For/Proto/Host/Port` the gateway sets itself.
/// Removed unless `proxy.trust_forwarded_headers`.
fn is_forwarding_family(name: &str) -> bool {
    match name.strip_prefix("x-forwarded-") {
        Some(rest) => !matches!(rest, "for" | "proto" | "host" | "port"),
        None => matches!(
            name,
            "forwarded" | "x-real-ip" | "x-proxied-https" | "proxy-auth-cert" | "proxy-ssl-id"
        ),
    }
}

/// Remove the headers `remove` picks (one pass; nothing allocated when none is there).
fn remove_where(headers: &mut HeaderMap, remove: impl Fn(&str) -> bool) {
    if !headers.keys().any(|n| remove(n.as_str())) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| remove(n.as_str()))
        .cloned()
        .collect();
    for n in names {
        headers.remove(&n);
    }
}

/// Why the forwarding headers could not be set.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Host(#[from] InvalidHost),
    #[error("cannot set a forwarding header: {0}")]
    Header(String),
}

/// Set the forwarding headers on the upstream request: `X-Forwarded-For` gets the client address
/// appended, and `X-Forwarded-Proto/Host/Port` say the [`public`] address (a trusted client's own
/// are kept as they are); the rest of the forwarding family a client sent is removed unless
/// trusted.
pub fn apply(
    snap: &Snapshot,
    head: &mut UpstreamHead<'_>,
    client_ip: Option<std::net::IpAddr>,
    listener_addr: Option<std::net::SocketAddr>,
    listener_tls: bool,
) -> Result<(), ForwardError> {
    let invalid = |_| ForwardError::Header("the public address is not a valid header value".into());
    if !snap.trust_forwarded_headers {
        remove_where(head.headers(), is_forwarding_family);
    }
    // Room for the four at once.
    head.reserve(4);
    if let Some(ip) = client_ip {
        let xff = match head
            .headers()
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if snap.trust_forwarded_headers && !prev.is_empty() => {
                format!("{prev}, {ip}")
            }
            _ => ip_text(ip),
        };
        let xff = HeaderValue::try_from(xff).map_err(invalid)?;
        head.headers().insert(X_FORWARDED_FOR, xff);
    }
    if snap.trust_forwarded_headers && head.headers().contains_key(X_FORWARDED_HOST) {
        return Ok(());
    }
    let Some(p) = public(snap, head.parts(), listener_addr, listener_tls)? else {
        return Ok(());
    };
    let value = |v: Cow<'_, str>| match v {
        Cow::Borrowed(s) => HeaderValue::from_str(s),
        Cow::Owned(s) => HeaderValue::try_from(s),
    };
    let (proto, host, port) = (value(p.proto), value(p.host), value(p.port));
    let (proto, host, port) = (
        proto.map_err(invalid)?,
        host.map_err(invalid)?,
        port.map_err(invalid)?,
    );
    let headers = head.headers();
    headers.insert(X_FORWARDED_PROTO, proto);
    headers.insert(X_FORWARDED_HOST, host);
    headers.insert(X_FORWARDED_PORT, port);
    Ok(())
}

/// `forwarding: rewrite`: the backend must see no forwarding header at all (a Trino without
/// `http-server.process-forwarded` refuses every request that has one, with 406).
pub fn strip(head: &mut UpstreamHead<'_>) {
    remove_where(head.headers(), |n| {
        n.starts_with("x-forwarded-") || is_forwarding_family(n)
    });
}

#[cfg(test)]
mod tests {
    use super::{ip_text, is_forwarding_family, valid_authority};

    #[test]
    fn authorities() {
        for ok in [
            "gw",
            "gw:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "trino.example.com",
            "[::1]",
            "[::1]:8080",
            "a_b-c.d",
        ] {
            assert!(valid_authority(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "gw:",
            "gw:123456",
            "gw:80:80",
            "gw/x",
            "gw x",
            "[::1",
            "[]",
            "[::1]x",
            "evil.com@gw",
            "gw\t",
        ] {
            assert!(!valid_authority(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn forwarding_family() {
        for n in [
            "forwarded",
            "x-forwarded-server",
            "x-forwarded-prefix",
            "x-forwarded-ssl",
            "x-proxied-https",
            "x-real-ip",
        ] {
            assert!(is_forwarding_family(n), "{n}");
        }
        for n in [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-trino-user",
            "host",
        ] {
            assert!(!is_forwarding_family(n), "{n}");
        }
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.9.100.255",
            "192.168.1.20",
            "::1",
            "fe80::1:2",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for a in 0..=255u8 {
            let ip = std::net::IpAddr::from([a, 255 - a, a / 3, 7]);
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
