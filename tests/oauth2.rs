#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: OAuth2 external authentication through two gateway instances sharing PostgreSQL,
//! in front of two emulated coordinators that each keep their own logins (a state signed by one
//! cannot be finished by the other, a token poll on the other never gets the token). Every leg —
//! the challenge, the token poll, the browser's initiate and callback, the Web UI's login with
//! its cookie — must reach the coordinator that issued the login, through either instance.

mod common;

use common::certs::{ca, leaf, write};
use common::*;
use serde_json::Value;
use sqlx::Connection;
use std::path::Path;
use std::process::Command;
use trino_edge::emulator::{EmulatorConfig, EmulatorHandle, IdentityProvider};

struct Setup {
    gw1: Gateway,
    gw2: Gateway,
    port1: u16,
    port2: u16,
    backends: [EmulatorHandle; 2],
    idp: IdentityProvider,
}

/// A database of its own on the test server, so no other test's tables are touched.
async fn fresh_database(name: &str) -> String {
    let server = std::env::var("TRINO_EDGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .expect("PostgreSQL must be running (see .ci/run)");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(name);
    url.to_string()
}

/// Two instances over two coordinators; with `tls` (certificate and key files), HTTPS listeners.
async fn setup(database: &str, tls: Option<(&Path, &Path)>) -> Setup {
    let idp = IdentityProvider::start("alice").await.unwrap();
    let mut backends = Vec::new();
    for i in 1..=2 {
        backends.push(
            backend_with(EmulatorConfig {
                name: format!("trino-{i}"),
                rows_per_page: 1000,
                oauth2: Some(idp.emulation()),
                ..EmulatorConfig::default()
            })
            .await,
        );
    }
    let db = fresh_database(database).await;
    let mut gws = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..2 {
        let (port, admin) = (free_port(), free_port());
        let yaml = config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[
                ("trino-1", backends[0].url(), "adhoc"),
                ("trino-2", backends[1].url(), "adhoc"),
            ],
            "",
        ) + &format!("database:\n  url: \"{db}\"\n");
        let yaml = match tls {
            Some((cert, key)) => yaml.replace(
                &format!("address: \"127.0.0.1:{port}\" }}"),
                &format!(
                    "address: \"127.0.0.1:{port}\", tls: {{ cert: \"{}\", key: \"{}\" }} }}",
                    cert.display(),
                    key.display()
                ),
            ),
            None => yaml,
        };
        gws.push(Gateway::start(&yaml, port, admin).await);
        ports.push(port);
    }
    let gw2 = gws.pop().unwrap();
    let gw1 = gws.pop().unwrap();
    let backends: [EmulatorHandle; 2] = backends.try_into().ok().unwrap();
    Setup {
        gw1,
        gw2,
        port1: ports[0],
        port2: ports[1],
        backends,
        idp,
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name="value"` of a challenge.
fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    let at = challenge.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
    challenge[at..].split('"').next().unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

fn oauth2_stats(b: &EmulatorHandle) -> trino_edge::emulator::OAuth2Stats {
    b.state.stats().oauth2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_leg_of_a_login_reaches_the_issuing_coordinator_through_either_instance() {
    let s = setup("te_oauth2_legs", None).await;
    let http = no_redirects();

    // An unauthenticated submission through instance 1: the coordinator's challenge, its URIs
    // pointing back at the gateway.
    let r = http
        .post(format!("{}/v1/statement", s.gw1.url))
        .header("X-Trino-User", "alice")
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let initiate = param(&challenge, "x_redirect_server").to_string();
    let token = param(&challenge, "x_token_server").to_string();
    let auth_id = token.rsplit('/').next().unwrap().to_string();
    assert!(
        initiate.starts_with(&format!("{}/oauth2/token/initiate/", s.gw1.url)),
        "{challenge}"
    );
    assert!(
        token.starts_with(&format!("{}/oauth2/token/", s.gw1.url)),
        "{challenge}"
    );
    let issuer = s
        .backends
        .iter()
        .position(|b| oauth2_stats(b).challenges == 1)
        .unwrap();

    // The browser opens the login through instance 2 (the pin is in the database), goes to the
    // identity provider, and comes back to instance 2's callback.
    let via2 = initiate.replace(&s.gw1.url, &s.gw2.url);
    let r = http.get(&via2).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let authorize = location(&r);
    assert!(authorize.starts_with(&s.idp.url), "{authorize}");
    let r = http.get(&authorize).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let callback = location(&r);
    assert!(
        callback.starts_with(&format!("{}/oauth2/callback?", s.gw2.url)),
        "{callback}"
    );
    let r = http.get(&callback).send().await.unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("succeeded"), "{page}");

    // The client polls through instance 2 as well: the token.
    let r = http
        .get(token.replace(&s.gw1.url, &s.gw2.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let bearer = v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    let st = oauth2_stats(&s.backends[issuer]);
    assert_eq!(
        (
            st.challenges,
            st.initiated,
            st.completed,
            st.collected,
            st.refused
        ),
        (1, 1, 1, 1, 0),
        "every leg on the issuing coordinator"
    );
    assert_eq!(oauth2_stats(&s.backends[1 - issuer]).initiated, 0);

    // The token runs queries on both coordinators, through both instances.
    for gw in [&s.gw1, &s.gw2, &s.gw1, &s.gw2] {
        let mut c = Client::new(&gw.url);
        c.user = "alice".into();
        let out = c
            .run(
                "SELECT * FROM UNNEST(sequence(1, 2500))",
                &[("Authorization", &format!("Bearer {bearer}"))],
            )
            .await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.rows.len(), 2500);
    }

    // Instance 2 found the login in the database, instance 1 pinned it.
    assert_eq!(
        metric_sum(&s.gw1, "trino_edge_logins_pinned_total", "").await,
        1.0
    );
    for leg in ["initiate", "callback", "token"] {
        assert_eq!(
            metric_sum(
                &s.gw2,
                "trino_edge_login_legs_total",
                &format!("leg=\"{leg}\",source=\"")
            )
            .await,
            1.0,
            "{leg}"
        );
    }
    assert_eq!(
        metric_sum(&s.gw2, "trino_edge_login_legs_total", "source=\"database\"").await,
        1.0,
        "the first leg through instance 2 read the database, later ones its memory"
    );

    // Legs of logins no instance knows: the token poll gets the token endpoint's error shape
    // (clients stop and show it), browser legs a Trino-shaped 404, malformed ids a 400.
    let unknown = "0b3c6a2e-1f4d-4c7a-9e35-8d1f2a7d9e10";
    let r = http
        .get(format!("{}/oauth2/token/{unknown}", s.gw2.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not known to the gateway"),
        "{v}"
    );
    let r = http
        .get(format!(
            "{}/oauth2/token/initiate/{}",
            s.gw1.url,
            "0".repeat(64)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "LOGIN_NOT_FOUND");
    for bad in [
        format!("/oauth2/token/{}", unknown.to_uppercase()),
        "/oauth2/token/not-a-uuid".to_string(),
        "/oauth2/token/initiate/xyz".to_string(),
    ] {
        let r = http
            .get(format!("{}{bad}", s.gw1.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_trino_error(&r.text().await.unwrap(), "INVALID_LOGIN");
    }
    // No backend saw any of them.
    let total: u64 = s.backends.iter().map(|b| oauth2_stats(b).initiated).sum();
    assert_eq!(total, 1);

    // Login ids are bearer secrets: never in the gateways' logs.
    for gw in [&s.gw1, &s.gw2] {
        let log = gw.log();
        assert!(!log.contains(&auth_id), "authId logged:\n{log}");
        assert!(!log.contains(unknown), "authId logged:\n{log}");
        assert!(
            !log.contains(&unknown.to_uppercase()),
            "authId logged:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_logs_in_and_the_web_ui_signs_in_through_two_instances() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    // The Python client authenticates over TLS only: HTTPS listeners with a test CA.
    let dir = tempfile::tempdir().unwrap();
    let ca_pair = ca("trino-edge test CA");
    let (ca_pem, _) = write(dir.path(), "ca", &ca_pair);
    let (cert, key) = write(dir.path(), "gateway", &leaf(&ca_pair, "gateway", false));
    let s = setup("te_oauth2_clients", Some((&cert, &key))).await;
    let logins = 4;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_oauth2.py"
    );
    let (p1, p2) = (s.port1.to_string(), s.port2.to_string());
    let ca_pem = ca_pem.display().to_string();
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python).args([script, &p1, &p2, &logins.to_string(), &ca_pem]))
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();

    for login in v["logins"].as_array().unwrap() {
        assert!(login.get("exception").is_none(), "{login}");
        for run in ["first", "second"] {
            assert_eq!(login[run]["rows"], 2500, "{login}");
            assert_eq!(login[run]["last"], 2500, "{login}");
        }
        let saw = &login["browser_saw"][0];
        assert_eq!(saw["status"], 200, "{login}");
        assert!(
            saw["text"].as_str().unwrap().contains("succeeded"),
            "{login}"
        );
        // The browser went through the other instance, to the identity provider and back.
        let visited: Vec<&str> = saw["visited"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap())
            .collect();
        let browser_port = login["browser"].as_str().unwrap();
        assert!(
            visited[0].contains(&format!(":{browser_port}/oauth2/token/initiate/")),
            "{login}"
        );
        assert!(visited[1].starts_with(&s.idp.url), "{login}");
    }
    for ui in v["ui"].as_array().unwrap() {
        if ui.get("steps").is_some() {
            // 303 to the provider, 303 back, the callback on the other instance (303 to /ui/),
            // and the other instance serves the signed-in page.
            assert_eq!(ui["steps"], serde_json::json!([303, 303, 303, 200]), "{ui}");
            assert!(
                ui["text"].as_str().unwrap().contains("Signed in as alice"),
                "{ui}"
            );
        } else {
            assert_eq!(ui["signed_in"], 200, "{ui}");
            assert!(
                ui["text"].as_str().unwrap().contains("Signed in as alice"),
                "{ui}"
            );
            assert_eq!(ui["other_instance"], 200, "{ui}");
            assert!(
                ui["other_text"]
                    .as_str()
                    .unwrap()
                    .contains("Signed in as alice"),
                "{ui}"
            );
        }
    }

    // Every login was finished by the coordinator that started it; both coordinators issued some.
    let stats: Vec<_> = s.backends.iter().map(oauth2_stats).collect();
    let sum = |f: fn(&trino_edge::emulator::OAuth2Stats) -> u64| stats.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.refused), 0, "{stats:?}");
    assert_eq!(sum(|s| s.collected), logins, "{stats:?}");
    assert_eq!(sum(|s| s.completed), logins + 4, "{stats:?}");
    assert!(stats.iter().all(|s| s.completed > 0), "{stats:?}");
    assert_eq!(s.idp.authorizations(), logins + 4);
}
