//! The admin console: a single-page web app (`/`) and Swagger UI for the API (`/docs`), served by
//! the admin listener from files embedded in the binary (`src/admin/console/`). The pages hold no
//! data, so `auth::required` makes them public; every API call they make carries the user's token.
//!
//! Every answer has a strict Content-Security-Policy (scripts and styles only from this origin, no
//! inline script, calls only to this origin, no framing), `nosniff`, and `Cache-Control: no-cache`
//! with an ETag: browsers keep a copy but ask each time, so an upgraded gateway serves its own
//! console at once, and an unchanged file costs a 304.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Json;
use serde_json::{json, Value};

use super::AdminState;
use crate::sync::ConfigSource;

/// One embedded file and the path it is served at.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    body: &'static [u8],
}

/// Every file of the console. The vendored files come from `scripts/vendor-console` (versions,
/// licenses and checksums in `console/vendor/VERSIONS.md`).
pub static ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("console/index.html"),
    },
    Asset {
        path: "/docs",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("console/docs.html"),
    },
    Asset {
        path: "/console/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/app.js"),
    },
    Asset {
        path: "/console/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("console/app.css"),
    },
    Asset {
        path: "/console/docs.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/docs.js"),
    },
    Asset {
        path: "/console/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("console/favicon.svg"),
    },
    Asset {
        path: "/console/vendor/swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("console/vendor/swagger-ui/swagger-ui-bundle.js"),
    },
    Asset {
        path: "/console/vendor/swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("console/vendor/swagger-ui/swagger-ui.css"),
    },
];

/// Whether `template` is one of the console's files (for `auth::required`).
pub fn is_asset(template: &str) -> bool {
    ASSETS.iter().any(|a| a.path == template)
}

/// The policy of every console answer: script, style, images and API calls from this origin
/// only (and, with OIDC sign-in, the provider's token endpoint); `data:` images for Swagger UI's
/// icons; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// [`CONTENT_SECURITY_POLICY`] with the origin of the OIDC token endpoint the console redeems its
/// sign-in code at (`admin.auth.jwt.console_login`), when one is configured.
fn content_security_policy(token_endpoint: Option<&str>) -> HeaderValue {
    let origin = token_endpoint
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null" && !o.contains([';', ',', '\'', ' ']));
    match origin {
        Some(o) => HeaderValue::from_str(
            &CONTENT_SECURITY_POLICY
                .replace("connect-src 'self'", &format!("connect-src 'self' {o}")),
        )
        .unwrap_or(HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        None => HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    }
}

/// The console sign-in of the current snapshot's admin auth, if configured.
fn console_login(st: &AdminState) -> Option<crate::config::ConsoleLoginConfig> {
    st.gateway
        .snapshots
        .load()
        .config
        .admin
        .auth
        .as_ref()
        .and_then(|a| a.jwt.as_ref())
        .and_then(|j| j.console_login.clone())
}

/// `"<sha-256 of the body>"` per asset, in [`ASSETS`] order.
static ETAGS: LazyLock<Vec<Option<HeaderValue>>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let hex: String = openssl::sha::sha256(a.body)
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).ok()
        })
        .collect()
});

/// The console's routes, one per asset.
pub fn routes() -> Vec<(&'static str, MethodRouter<AdminState>)> {
    ASSETS
        .iter()
        .enumerate()
        .map(|(i, asset)| {
            let route = get(
                move |State(st): State<AdminState>, headers: HeaderMap| async move {
                    let login = console_login(&st);
                    let csp =
                        content_security_policy(login.as_ref().map(|l| l.token_endpoint.as_str()));
                    serve(i, asset, &headers, csp)
                },
            );
            (asset.path, route)
        })
        .collect()
}

fn serve(index: usize, asset: &'static Asset, request: &HeaderMap, csp: HeaderValue) -> Response {
    let etag = ETAGS.get(index).cloned().flatten();
    let fresh = match (&etag, request.get(header::IF_NONE_MATCH)) {
        (Some(tag), Some(wanted)) => wanted
            .to_str()
            .is_ok_and(|w| w.split(',').any(|t| t.trim() == tag || t.trim() == "*")),
        _ => false,
    };
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Some(tag) = etag {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /console/info`: what the console needs before anyone signs in — whether the API wants a
/// token, whether it is read-only, and where the proxy listeners are (to link a query to Trino's
/// page through the gateway). Nothing here is secret: no names of tokens, no key material.
pub async fn info(State(st): State<AdminState>) -> Json<Value> {
    let snap = st.gateway.snapshots.load();
    let auth = snap.config.admin.auth.as_ref();
    let listeners: Vec<Value> = snap
        .config
        .proxy
        .listeners
        .iter()
        .map(|l| {
            let (host, port) = split_address(&l.address);
            json!({ "name": l.name, "host": host, "port": port, "tls": l.tls.is_some() })
        })
        .collect();
    let login = auth
        .and_then(|a| a.jwt.as_ref())
        .and_then(|j| j.console_login.as_ref())
        .map(|l| {
            json!({
                "clientId": l.client_id,
                "authorizationEndpoint": l.authorization_endpoint,
                "tokenEndpoint": l.token_endpoint,
                "scopes": l.scopes.join(" "),
                "token": l.token.as_str(),
            })
        });
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "auth": {
            "enabled": auth.is_some(),
            "tokens": auth.is_some_and(|a| !a.tokens.is_empty()),
            "jwt": auth.is_some_and(|a| a.jwt.is_some()),
            "oidc": login,
        },
        "readOnly": st.sync.source != ConfigSource::Database,
        "proxy": {
            "externalUrl": snap.config.proxy.external_url,
            "listeners": listeners,
        },
    }))
}

/// `host:port` (IPv6 hosts in brackets) as `(host without brackets, port)`.
fn split_address(address: &str) -> (&str, Option<u16>) {
    match address.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().ok(),
        ),
        None => (address, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("0.0.0.0:8080"), ("0.0.0.0", Some(8080)));
        assert_eq!(split_address("[::1]:443"), ("::1", Some(443)));
        assert_eq!(split_address("gateway"), ("gateway", None));
    }

    #[test]
    fn the_policy_lets_the_console_reach_its_token_endpoint_only() {
        let csp = content_security_policy(Some("https://sso.example.com:8443/realms/x/token"));
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' https://sso.example.com:8443;"),
            "{csp}"
        );
        assert_eq!(
            content_security_policy(None).to_str().unwrap(),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(
            content_security_policy(Some("not a url")).to_str().unwrap(),
            CONTENT_SECURITY_POLICY
        );
    }

    #[test]
    fn every_asset_has_a_type_and_a_body() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
            assert!(a.path == "/" || a.path.starts_with('/'), "{}", a.path);
            assert!(!a.content_type.is_empty());
        }
        assert_eq!(ETAGS.len(), ASSETS.len());
        assert!(ETAGS.iter().all(Option::is_some));
    }

    #[test]
    fn no_page_has_inline_script() {
        for a in ASSETS
            .iter()
            .filter(|a| a.content_type.starts_with("text/html"))
        {
            let html = String::from_utf8_lossy(a.body);
            for tag in html.split("<script").skip(1) {
                let head = tag.split('>').next().unwrap_or_default();
                assert!(head.contains("src="), "{}: inline <script{head}>", a.path);
            }
            assert!(!html.contains(" style="), "{}: inline style", a.path);
            assert!(!html.contains(" onclick="), "{}: inline handler", a.path);
        }
    }
}
