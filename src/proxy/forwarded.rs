//! `X-Forwarded-*` headers for backends, so a Trino with `http-server.process-forwarded=true`
//! builds `nextUri` (and every other absolute URI) pointing back at the gateway.

use http::header::HOST;
use pingora_http::RequestHeader;

use crate::routing::facts::strip_port;
use crate::snapshot::Snapshot;

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_FORWARDED_PORT: &str = "x-forwarded-port";

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

/// Set the forwarding headers on the upstream request.
///
/// The public address is, in order: `proxy.external_url`; the client's own `X-Forwarded-*` when
/// `trust_forwarded_headers` is on; the request's `Host` (port defaulting by scheme); finally the
/// listener address. `X-Forwarded-For` gets the client address appended.
pub fn apply(
    snap: &Snapshot,
    req: &mut RequestHeader,
    client_ip: Option<std::net::IpAddr>,
    listener_addr: Option<std::net::SocketAddr>,
    listener_tls: bool,
) -> pingora_error::Result<()> {
    if let Some(ip) = client_ip {
        let xff = match req
            .headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if snap.trust_forwarded_headers && !prev.is_empty() => {
                format!("{prev}, {ip}")
            }
            _ => ip_text(ip),
        };
        req.insert_header(X_FORWARDED_FOR, xff)?;
    }
    if snap.trust_forwarded_headers && req.headers.contains_key(X_FORWARDED_HOST) {
        return Ok(());
    }
    let (proto, default_port) = if listener_tls {
        ("https", "443")
    } else {
        ("http", "80")
    };
    let (host, port) = if let Some(ext) = &snap.external_url {
        req.insert_header(X_FORWARDED_PROTO, ext.proto.as_str())?;
        (ext.host.clone(), ext.port.clone())
    } else {
        let host_header = req
            .headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri.authority().map(|a| a.to_string()));
        req.insert_header(X_FORWARDED_PROTO, proto)?;
        match host_header {
            Some(h) => {
                let bare = strip_port(&h).to_string();
                let port = h
                    .rsplit_once(':')
                    .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .filter(|(left, _)| !left.contains(':') || left.ends_with(']'))
                    .map(|(_, p)| p.to_string())
                    .unwrap_or_else(|| default_port.to_string());
                let bare = if bare.contains(':') {
                    format!("[{bare}]")
                } else {
                    bare
                };
                (bare, port)
            }
            None => match listener_addr {
                Some(a) => (a.ip().to_string(), a.port().to_string()),
                None => return Ok(()),
            },
        }
    };
    req.insert_header(X_FORWARDED_HOST, host)?;
    req.insert_header(X_FORWARDED_PORT, port)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ip_text;

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
