#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin console (`/`, `/docs`): its files are served with the right types, a strict
//! Content-Security-Policy and ETags, without a token, while the API calls behind them still need
//! one; and a real browser (Debian's chromium and chromedriver, driven by Selenium from
//! tests/clients/console_browser.py) signs in, sees both backends healthy, drains one, gets a
//! policy edit refused at the field and saves a valid one, finds a query in the history, and signs
//! in again as a viewer who may not drain.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "console-admin-secret-0123456789";
const VIEWER_TOKEN: &str = "console-viewer-secret-0123456789";

fn sha256_hex(s: &str) -> String {
    openssl::sha::sha256(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A gateway in database mode with two healthy backends in `adhoc`, an empty group `etl` with a
/// policy sending `svc_*` users there (and one for dashboards), and admin auth with an admin and a
/// viewer token.
async fn console_gateway() -> (Gateway, u16, [trino_edge::emulator::EmulatorHandle; 2]) {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin"), ("etl", "least_load")],
        &[("trino-1", b1.url(), "adhoc"), ("trino-2", b2.url(), "adhoc")],
        concat!(
            "    - { name: etl, priority: 10, match: { user: \"^svc_\" }, group: etl }\n",
            "    - { name: dashboards, priority: 5, match: { source: \"^(superset|tableau)\" }, group: adhoc }\n",
        ),
    );
    let auth = format!(
        "  auth:\n    tokens:\n      - {{ name: console-admin, sha256: \"{}\", role: admin }}\n      - {{ name: console-viewer, sha256: \"{}\", role: viewer }}\n",
        sha256_hex(ADMIN_TOKEN),
        sha256_hex(VIEWER_TOKEN)
    );
    let admin_line = format!("admin:\n  address: \"127.0.0.1:{admin}\"\n");
    let yaml = yaml.replace(&admin_line, &format!("{admin_line}{auth}"));
    let yaml = with_health(&yaml, "interval: 500ms, timeout: 2s");
    let gw = Gateway::start_with(&yaml, port, admin, "database").await;
    (gw, port, [b1, b2])
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_are_public_typed_and_strict_while_the_api_needs_a_token() {
    let (gw, port, _backends) = console_gateway().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", gw.admin)).send();

    let r = get("/").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    let csp = header(&r, "content-security-policy");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    let etag = header(&r, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let index = r.text().await.unwrap();
    assert!(index.contains("/console/app.js"), "{index}");

    // An unchanged file costs a 304.
    let r = http
        .get(format!("{}/", gw.admin))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.text().await.unwrap().is_empty());

    // Every file the two pages load is served, public, with its type.
    let docs = get("/docs").await.unwrap();
    assert_eq!(docs.status(), 200);
    assert_eq!(header(&docs, "content-type"), "text/html; charset=utf-8");
    let docs = docs.text().await.unwrap();
    let mut loaded = Vec::new();
    for page in [&index, &docs] {
        for attr in ["src=\"", "href=\""] {
            for part in page.split(attr).skip(1) {
                let url = part.split('"').next().unwrap();
                if url.starts_with("/console/") {
                    loaded.push(url.to_string());
                }
            }
        }
    }
    loaded.sort();
    loaded.dedup();
    assert!(loaded.len() >= 6, "{loaded:?}");
    for url in &loaded {
        let r = get(url).await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let ctype = header(&r, "content-type");
        let want = match url.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            "svg" => "image/svg+xml",
            other => panic!("unexpected file type {other}: {url}"),
        };
        assert!(ctype.starts_with(want), "{url}: {ctype}");
        assert!(!header(&r, "content-security-policy").is_empty(), "{url}");
        assert!(!r.bytes().await.unwrap().is_empty(), "{url}");
    }
    assert!(loaded.iter().any(|u| u.contains("swagger-ui-bundle.js")));
    let r = http
        .head(format!("{}/console/app.js", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // What the console learns before sign-in.
    let info: Value = get("/console/info").await.unwrap().json().await.unwrap();
    assert_eq!(info["auth"]["enabled"], true);
    assert_eq!(info["auth"]["tokens"], true);
    assert_eq!(info["readOnly"], false);
    assert_eq!(
        info["proxy"]["listeners"][0],
        json!({"name": "main", "host": "127.0.0.1", "port": port, "tls": false})
    );

    // The API behind the pages still needs a token; a file the console does not have is no
    // public path either.
    for path in [
        "/api/v1/backends",
        "/api/v1/whoami",
        "/api/v1/queries",
        "/metrics",
        "/console/nothing.js",
        "/docs/",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http.post(format!("{}/", gw.admin)).send().await.unwrap();
    assert_eq!(r.status(), 405, "the page takes no POST");

    // Who the token is.
    for (token, name, role) in [
        (VIEWER_TOKEN, "console-viewer", "viewer"),
        (ADMIN_TOKEN, "console-admin", "admin"),
    ] {
        let me: Value = http
            .get(format!("{}/api/v1/whoami", gw.admin))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            me,
            json!({"authenticated": true, "name": name, "role": role})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let (Some(python), Some(chromium), Some(chromedriver)) = (
        tool("TRINO_EDGE_PYTHON"),
        tool("TRINO_EDGE_CHROMIUM"),
        tool("TRINO_EDGE_CHROMEDRIVER"),
    ) else {
        return;
    };
    let (gw, port, _backends) = console_gateway().await;
    let http = reqwest::Client::new();

    // One query for the history, by a user nobody else is.
    let mut client = Client::new(&gw.url);
    client.user = "console-tester".into();
    let id = client.run("SELECT 42 AS answer", &[]).await.id;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http
            .get(format!("{}/api/v1/queries/{id}", gw.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "history entry never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Traffic while the browser looks, so the overview and the history have something to show.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let client = Client::new(&gw.url);
        let kinds = [
            ("dashboard", "superset", "SELECT 1"),
            ("analyst", "trino-cli", "SELECT * FROM web.daily"),
            ("dashboard", "tableau", "SELECT * FROM all_types LIMIT 3"),
        ];
        tokio::spawn(async move {
            for (user, source, sql) in kinds.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let client = Client {
                    user: user.to_string(),
                    ..client.clone()
                };
                client.run(sql, &[("X-Trino-Source", source)]).await;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/console_browser.py"
    );
    let shots = std::env::var("TRINO_EDGE_CONSOLE_SCREENSHOTS").unwrap_or_default();
    let (admin, id2) = (gw.admin.clone(), id.clone());
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new(python)
            .args([
                script,
                &admin,
                ADMIN_TOKEN,
                VIEWER_TOKEN,
                &id2,
                "console-tester",
                &port.to_string(),
            ])
            .env("TRINO_EDGE_CHROMIUM", chromium)
            .env("TRINO_EDGE_CHROMEDRIVER", chromedriver)
            .env("CONSOLE_SCREENSHOTS", shots))
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let facts: Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert!(
        facts["field_error"]
            .as_str()
            .unwrap()
            .contains("invalid regex"),
        "{facts}"
    );

    // What the browser did is what the API now says.
    let api = |path: &str| {
        http.get(format!("{}{path}", gw.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    let b2: Value = api("/api/v1/backends/trino-2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&b2["enabled"], &b2["state"]),
        (&json!(false), &json!("INACTIVE"))
    );
    let b1: Value = api("/api/v1/backends/trino-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b1["state"], "HEALTHY");
    let policy: Value = api("/api/v1/policies/etl")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["match"]["user"], "^etl_", "{policy}");
    assert_eq!(policy["priority"], 20, "{policy}");
    assert_eq!(policy["group"], "etl", "{policy}");
}

/// A test identity provider for the console's sign-in: `/authorize` signs `alice` in without
/// asking and sends the browser back with a code; `/token` redeems a code once, only with the
/// PKCE verifier of its S256 challenge and the same redirect URI, for an RS256 JWT whose key is
/// at `/certs`; its answers allow any origin (CORS), as a provider configured for the console
/// must.
struct Idp {
    url: String,
    redeemed: Arc<std::sync::atomic::AtomicUsize>,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

const IDP_CLIENT: &str = "trino-edge-console";

async fn identity_provider() -> Idp {
    use axum::extract::Query;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use std::collections::HashMap;
    use std::sync::Mutex;

    let b64url = |bytes: &[u8]| {
        openssl::base64::encode_block(bytes)
            .replace('+', "-")
            .replace('/', "_")
            .trim_end_matches('=')
            .to_string()
    };
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let key = EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap());
    let jwks = json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
        "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec())}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // code → (challenge, redirect_uri)
    let codes: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    let redeemed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let issuer = url.clone();
    let authorize = {
        let codes = codes.clone();
        move |Query(q): Query<HashMap<String, String>>| async move {
            let ok = q.get("response_type").map(String::as_str) == Some("code")
                && q.get("client_id").map(String::as_str) == Some(IDP_CLIENT)
                && q.get("code_challenge_method").map(String::as_str) == Some("S256")
                && q.get("scope")
                    .is_some_and(|s| s.split(' ').any(|x| x == "openid"));
            let (Some(redirect), Some(challenge), Some(state), true) = (
                q.get("redirect_uri"),
                q.get("code_challenge"),
                q.get("state"),
                ok,
            ) else {
                return (StatusCode::BAD_REQUEST, "bad authorization request").into_response();
            };
            let code = format!("code-{}", fastrand::u64(..));
            codes
                .lock()
                .unwrap()
                .insert(code.clone(), (challenge.clone(), redirect.clone()));
            let to = format!("{redirect}?code={code}&state={state}");
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
    };
    let token = {
        let (codes, redeemed, refused) = (codes.clone(), redeemed.clone(), refused.clone());
        move |body: String| async move {
            let f: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .collect();
            let cors = [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];
            let entry = f.get("code").and_then(|c| codes.lock().unwrap().remove(c));
            let verified = entry.as_ref().is_some_and(|(challenge, redirect)| {
                let verifier = f.get("code_verifier").map(String::as_str).unwrap_or("");
                let digest = openssl::sha::sha256(verifier.as_bytes());
                f.get("grant_type").map(String::as_str) == Some("authorization_code")
                    && f.get("client_id").map(String::as_str) == Some(IDP_CLIENT)
                    && f.get("redirect_uri") == Some(redirect)
                    && verifier.len() >= 43
                    && openssl::base64::encode_block(&digest)
                        .replace('+', "-")
                        .replace('/', "_")
                        .trim_end_matches('=')
                        == challenge.as_str()
            });
            if !verified {
                refused.fetch_add(1, Ordering::Relaxed);
                let body = json!({"error": "invalid_grant"});
                return (StatusCode::BAD_REQUEST, cors, axum::Json(body)).into_response();
            }
            redeemed.fetch_add(1, Ordering::Relaxed);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let mut h = Header::new(Algorithm::RS256);
            h.kid = Some("k1".into());
            let claims = json!({"iss": issuer, "aud": "trino-edge", "sub": "alice",
                "groups": ["trino-edge-admin"], "exp": now + 600, "iat": now});
            let jwt = jsonwebtoken::encode(&h, &claims, &key).unwrap();
            let body = json!({"access_token": jwt, "token_type": "Bearer", "expires_in": 600});
            (cors, axum::Json(body)).into_response()
        }
    };
    let app = axum::Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route(
            "/certs",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp {
        url,
        redeemed,
        refused,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_in_with_single_sign_on_by_authorization_code_and_pkce() {
    let (Some(python), Some(chromium), Some(chromedriver)) = (
        tool("TRINO_EDGE_PYTHON"),
        tool("TRINO_EDGE_CHROMIUM"),
        tool("TRINO_EDGE_CHROMEDRIVER"),
    ) else {
        return;
    };
    let idp = identity_provider().await;
    let b1 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("trino-1", b1.url(), "adhoc")],
        "",
    );
    let auth = format!(
        r#"  auth:
    jwt:
      issuer: "{i}"
      audience: trino-edge
      jwks_url: "{i}/certs"
      roles: {{ trino-edge-admin: admin }}
      console_login:
        client_id: {IDP_CLIENT}
        authorization_endpoint: "{i}/authorize"
        token_endpoint: "{i}/token"
        scopes: [openid, profile]
"#,
        i = idp.url
    );
    let admin_line = format!("admin:\n  address: \"127.0.0.1:{admin}\"\n");
    let yaml = yaml.replace(&admin_line, &format!("{admin_line}{auth}"));
    let gw = Gateway::start(&yaml, port, admin).await;

    // What the console learns before sign-in, and a policy that lets it reach the provider.
    let r = reqwest::get(format!("{}/console/info", gw.admin))
        .await
        .unwrap();
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["auth"]["oidc"]["clientId"], IDP_CLIENT, "{info}");
    assert_eq!(info["auth"]["oidc"]["scopes"], "openid profile");
    assert_eq!(info["auth"]["oidc"]["token"], "access_token");
    let r = reqwest::get(format!("{}/", gw.admin)).await.unwrap();
    let csp = header(&r, "content-security-policy");
    assert!(
        csp.contains(&format!("connect-src 'self' {};", idp.url)),
        "{csp}"
    );

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/console_oidc.py");
    let url = gw.admin.clone();
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python)
            .args([script, &url])
            .env("TRINO_EDGE_CHROMIUM", chromium)
            .env("TRINO_EDGE_CHROMEDRIVER", chromedriver))
    })
    .await
    .unwrap();
    let facts: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    let who = facts["who"].as_str().unwrap().to_lowercase();
    assert!(who.contains("alice") && who.contains("admin"), "{facts}");
    // The code left the address bar; the verifier left the session; the token stayed.
    assert!(!facts["url"].as_str().unwrap().contains("code="), "{facts}");
    assert_eq!(facts["verifier_left"], Value::Null, "{facts}");
    assert_eq!(facts["token_kept"], true, "{facts}");
    assert!(
        facts["refusal"].as_str().unwrap().contains("user said no"),
        "{facts}"
    );
    assert_eq!(facts["console_errors"], json!([]), "{facts}");
    assert_eq!(idp.redeemed.load(Ordering::Relaxed), 1);
    assert_eq!(idp.refused.load(Ordering::Relaxed), 0);
}
