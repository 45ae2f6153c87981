#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Admin authentication and roles: every endpoint of the OpenAPI document × every kind of caller
//! (none, a bad token, broken JWTs, viewer, operator, admin), JWTs from a JWKS served on loopback
//! with key rotation, SQL hidden from viewers, and the loopback rule for an admin API without auth.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.test/realms/data";
const AUDIENCE: &str = "trino-edge";

fn b64url(bytes: &[u8]) -> String {
    openssl::base64::encode_block(bytes)
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string()
}

fn sha256_hex(s: &str) -> String {
    openssl::sha::sha256(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signing key with its public JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> SigningKey {
    let rsa = Rsa::generate(2048).unwrap();
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        key: EncodingKey::from_rsa_der(&rsa.private_key_to_der().unwrap()),
        jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64url(&rsa.n().to_vec()), "e": b64url(&rsa.e().to_vec())}),
    }
}

fn ec_key(kid: &str) -> SigningKey {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = EcKey::generate(&group).unwrap();
    let (mut x, mut y) = (
        openssl::bn::BigNum::new().unwrap(),
        openssl::bn::BigNum::new().unwrap(),
    );
    let mut ctx = BigNumContext::new().unwrap();
    ec.public_key()
        .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
        .unwrap();
    let pkcs8 = PKey::from_ec_key(ec)
        .unwrap()
        .private_key_to_pkcs8()
        .unwrap();
    SigningKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        key: EncodingKey::from_ec_der(&pkcs8),
        jwk: json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                    "x": b64url(&x.to_vec_padded(32).unwrap()), "y": b64url(&y.to_vec_padded(32).unwrap())}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(groups: &[&str]) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "preferred_username": "alice",
           "exp": now() + 600, "iat": now(), "groups": groups})
}

fn sign(k: &SigningKey, claims: &Value) -> String {
    let mut h = Header::new(k.alg);
    h.kid = Some(k.kid.clone());
    jsonwebtoken::encode(&h, claims, &k.key).unwrap()
}

/// A JWKS document served on loopback; the test swaps its keys to rotate them.
async fn jwks_server(doc: Arc<Mutex<Value>>) -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/certs",
        get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/certs")
}

#[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
enum Role {
    Viewer,
    Operator,
    Admin,
}

/// What the issue asks of each endpoint, written independently of the implementation's table.
fn needs(method: &str, template: &str) -> Option<Role> {
    match (method, template) {
        (_, "/livez" | "/readyz" | "/openapi.json" | "/console/info") => None,
        ("get", _) => Some(Role::Viewer),
        ("post", "/api/v1/route") => Some(Role::Viewer),
        ("post", t) if t.ends_with("/activate") || t.ends_with("/deactivate") => {
            Some(Role::Operator)
        }
        // Canceling a held query is an operator's call, like draining a backend.
        ("delete", "/api/v1/queue/{id}") => Some(Role::Operator),
        _ => Some(Role::Admin),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_can_do_exactly_what_it_should() {
    let k1 = rsa_key("k1");
    let doc = Arc::new(Mutex::new(json!({"keys": [k1.jwk.clone()]})));
    let jwks_url = jwks_server(doc.clone()).await;
    let b1 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let (operator_token, admin_token) = ("op-3f9c1e2d", "adm-7b1a4c9e");
    let auth = format!(
        r#"admin:
  address: "127.0.0.1:{admin}"
  auth:
    tokens:
      - {{ name: ops-bot, sha256: "{}", role: operator }}
      - {{ name: ci, sha256: "{}", role: admin }}
    jwt:
      issuer: "{ISSUER}"
      audience: {AUDIENCE}
      jwks_url: "{jwks_url}"
      roles: {{ trino-edge-admin: admin, trino-edge-operator: operator, trino-edge-viewer: viewer }}
"#,
        sha256_hex(operator_token),
        sha256_hex(admin_token)
    );
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    )
    .replace(
        &format!("admin:\n  address: \"127.0.0.1:{admin}\"\n"),
        &auth,
    );
    assert!(yaml.contains("jwks_url"));
    let db_dir = tempfile::tempdir().unwrap();
    let yaml = yaml
        + &format!(
            "database:\n  url: \"sqlite://{}/state.db\"\n",
            db_dir.path().display()
        );
    let gw = Gateway::start_with(&yaml, port, admin, "database").await;
    let http = reqwest::Client::new();

    let expired = {
        let mut c = claims(&["trino-edge-admin"]);
        c["exp"] = json!(now() - 3600);
        sign(&k1, &c)
    };
    let wrong_aud = {
        let mut c = claims(&["trino-edge-admin"]);
        c["aud"] = json!("someone-else");
        sign(&k1, &c)
    };
    let wrong_iss = {
        let mut c = claims(&["trino-edge-admin"]);
        c["iss"] = json!("https://evil.test");
        sign(&k1, &c)
    };
    let alg_none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims(&["trino-edge-admin"]).to_string().as_bytes())
    );
    // HS256 "signed" with the public key's modulus: the classic key-confusion attack.
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&["trino-edge-admin"]),
        &EncodingKey::from_secret(k1.jwk["n"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    let unknown_key = sign(&rsa_key("k1"), &claims(&["trino-edge-admin"]));
    let no_role = sign(&k1, &claims(&["marketing"]));
    let viewer = sign(&k1, &claims(&["/trino-edge-viewer", "marketing"]));
    let admin_jwt = sign(&k1, &claims(&["trino-edge-viewer", "trino-edge-admin"]));

    // (caller, bearer, role; None = must be refused as unauthenticated)
    let callers: Vec<(&str, Option<String>, Option<Role>)> = vec![
        ("no token", None, None),
        ("bad token", Some("not-a-token".into()), None),
        ("expired JWT", Some(expired), None),
        ("wrong audience", Some(wrong_aud), None),
        ("wrong issuer", Some(wrong_iss), None),
        ("alg none", Some(alg_none), None),
        ("HS256 key confusion", Some(hs256), None),
        ("unknown signing key", Some(unknown_key), None),
        ("viewer JWT", Some(viewer.clone()), Some(Role::Viewer)),
        (
            "operator token",
            Some(operator_token.into()),
            Some(Role::Operator),
        ),
        ("admin token", Some(admin_token.into()), Some(Role::Admin)),
        ("admin JWT", Some(admin_jwt.clone()), Some(Role::Admin)),
    ];

    let openapi: Value = http
        .get(format!("{}/openapi.json", gw.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (template, item) in openapi["paths"].as_object().unwrap() {
        // `nope` everywhere: an allowed call reaches its handler and finds nothing to change.
        let path = template.replace("{name}", "nope").replace("{id}", "nope");
        for method in item.as_object().unwrap().keys() {
            if method == "parameters" {
                continue;
            }
            let need = needs(method, template);
            for (who, bearer, role) in &callers {
                let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut req = http.request(m, format!("{}{path}", gw.admin));
                if let Some(b) = bearer {
                    req = req.bearer_auth(b);
                }
                if method == "post" || method == "put" {
                    req = req.json(&json!({}));
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let www = r.headers().contains_key("www-authenticate");
                let body = r.text().await.unwrap();
                let what = format!("{} {path} as {who}: {status} {body}", method.to_uppercase());
                match (need, role) {
                    (None, _) => assert!(status != 401 && status != 403, "{what}"),
                    (Some(_), None) => {
                        assert_eq!(status, 401, "{what}");
                        assert!(www, "401 without WWW-Authenticate: {what}");
                        let v: Value = serde_json::from_str(&body).unwrap();
                        assert!(v["error"].as_str().unwrap().len() > 10, "{what}");
                    }
                    (Some(n), Some(r)) if *r < n => assert_eq!(status, 403, "{what}"),
                    (Some(_), Some(_)) => assert!(status != 401 && status != 403, "{what}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} combinations checked");

    // A token that authenticates but maps to no role is forbidden, not unauthenticated.
    let r = http
        .get(format!("{}/api/v1/backends", gw.admin))
        .bearer_auth(&no_role)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Viewers do not see SQL text; admins do.
    let client = Client::new(&gw.url);
    let id = client.run("SELECT 42 AS secret_column", &[]).await.id;
    let entry = |bearer: String| {
        let (http, url) = (http.clone(), format!("{}/api/v1/queries/{id}", gw.admin));
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let r = http.get(&url).bearer_auth(&bearer).send().await.unwrap();
                if r.status() == 200 {
                    return r.json::<Value>().await.unwrap();
                }
                assert!(Instant::now() < deadline, "history entry never appeared");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(
        entry(admin_jwt.clone()).await["sql"],
        "SELECT 42 AS secret_column"
    );
    assert!(entry(viewer.clone()).await["sql"].is_null());

    // Failed attempts are counted by reason.
    let metrics = http
        .get(format!("{}/metrics", gw.admin))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "missing",
        "unknown_token",
        "invalid_jwt",
        "expired",
        "forbidden",
    ] {
        assert!(
            metrics.contains(&format!(
                "trino_edge_admin_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "no failures counted for {reason}"
        );
    }

    // Key rotation: the issuer now publishes only a new ES256 key. Its tokens work at once
    // (the unknown kid makes the gateway fetch the JWKS again); tokens of the old key stop.
    let k2 = ec_key("k2");
    *doc.lock().unwrap() = json!({"keys": [k2.jwk.clone()]});
    let r = http
        .get(format!("{}/api/v1/backends", gw.admin))
        .bearer_auth(sign(&k2, &claims(&["trino-edge-admin"])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .get(format!("{}/api/v1/backends", gw.admin))
        .bearer_auth(&admin_jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Token rotation through SIGHUP: the new operator token works, the old one stops.
    let rotated = "op-rotated-51d2";
    gw.reload(&yaml.replace(&sha256_hex(operator_token), &sha256_hex(rotated)));
    let deactivate = format!("{}/api/v1/backends/b1/deactivate", gw.admin);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http
            .post(&deactivate)
            .bearer_auth(rotated)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 401);
        assert!(Instant::now() < deadline, "the reloaded token never worked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http
        .post(&deactivate)
        .bearer_auth(operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Tokens never reach the log.
    let log = gw.log();
    assert!(!log.contains(admin_token) && !log.contains(operator_token) && !log.contains(rotated));
}

#[test]
fn an_admin_api_off_loopback_needs_auth() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.yaml");
    let yaml = config_yaml(
        &[("main", 18080)],
        18090,
        &[("adhoc", "round_robin")],
        &[("b1", "http://127.0.0.1:1".into(), "adhoc")],
        "",
    )
    .replace("127.0.0.1:18090", "0.0.0.0:18090");
    std::fs::write(&path, &yaml).unwrap();
    for cmd in ["check-config", "serve"] {
        let out = std::process::Command::new(BIN)
            .args([cmd, "--config", path.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains("admin.address") && err.contains("admin.auth"),
            "{cmd}: {err}"
        );
    }
    // With tokens it is accepted.
    let with_auth = yaml.replace(
        "admin:\n  address: \"0.0.0.0:18090\"\n",
        &format!(
            "admin:\n  address: \"0.0.0.0:18090\"\n  auth:\n    tokens: [{{ name: ci, sha256: \"{}\", role: admin }}]\n",
            sha256_hex("t")
        ),
    );
    assert_ne!(with_auth, yaml);
    std::fs::write(&path, &with_auth).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A plain-text token where its hash belongs is refused.
    std::fs::write(
        &path,
        with_auth.replace(&sha256_hex("t"), "my-secret-token"),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256"));
}
