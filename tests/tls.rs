#![allow(clippy::unwrap_used, clippy::expect_used)]
//! TLS end to end, with a test PKI made here: HTTPS on the proxy and admin listeners (curl and
//! the real Python `trino` client trusting the test CA; a wrong CA is refused), an `https://`
//! backend that demands a client certificate, and certificate renewal through SIGHUP.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs::{ca, leaf, new_key, write};
use common::*;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;

/// An `https://` front for an emulated backend that requires a client certificate from `ca`.
async fn https_backend(
    target: std::net::SocketAddr,
    server: &(X509, PKey<Private>),
    ca: &X509,
) -> u16 {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate(&server.0).unwrap();
    b.set_private_key(&server.1).unwrap();
    b.cert_store_mut().add_cert(ca.clone()).unwrap();
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = Arc::new(b.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut tls).accept().await.is_err() {
                    return; // no or a wrong client certificate
                }
                if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    port
}

/// The serial number of the certificate a TLS server on `port` presents, trusting `ca`.
async fn served_serial(port: u16, ca: &X509) -> String {
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(ca.clone()).unwrap();
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut s).connect().await.unwrap();
    let cert = s.ssl().peer_certificate().unwrap();
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string()
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listeners_backends_and_certificate_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca_pair = ca("trino-edge test CA");
    let wrong_ca = ca("some other CA");
    let (ca_pem, _) = write(d, "ca", &ca_pair);
    let (wrong_ca_pem, _) = write(d, "wrong-ca", &wrong_ca);
    let server = leaf(&ca_pair, "gateway", false);
    let (cert, key) = write(d, "gateway", &server);
    let (client_cert, client_key) = write(d, "client", &leaf(&ca_pair, "gateway-client", true));

    let emulator = backend(10).await;
    let secure = https_backend(emulator.addr, &leaf(&ca_pair, "trino", false), &ca_pair.0).await;
    // Same backend behind a certificate from a CA the gateway does not trust.
    let untrusted =
        https_backend(emulator.addr, &leaf(&wrong_ca, "trino", false), &ca_pair.0).await;

    let port = free_port();
    let admin = free_port();
    let tls =
        |c: &Path, k: &Path| format!("{{ cert: \"{}\", key: \"{}\" }}", c.display(), k.display());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin"), ("bad", "round_robin")],
        &[
            ("secure", format!("https://localhost:{secure}"), "adhoc"),
            ("untrusted", format!("https://localhost:{untrusted}"), "bad"),
        ],
        "",
    );
    let yaml = with_health(&yaml, "interval: 200ms")
        .replace(
            &format!("address: \"127.0.0.1:{port}\" }}"),
            &format!("address: \"127.0.0.1:{port}\", tls: {} }}", tls(&cert, &key)),
        )
        .replace(
            "admin:\n",
            &format!(
                "  backend_tls: {{ ca_file: \"{}\", client_cert: \"{}\", client_key: \"{}\" }}\nadmin:\n  tls: {}\n",
                ca_pem.display(),
                client_cert.display(),
                client_key.display(),
                tls(&cert, &key)
            ),
        );
    assert!(
        yaml.contains("backend_tls") && yaml.contains("tls: { cert"),
        "{yaml}"
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    assert!(
        gw.admin.starts_with("https://"),
        "admin is served over HTTPS"
    );
    let proxy = format!("https://127.0.0.1:{port}");
    let ca_arg = ca_pem.to_str().unwrap();

    // The health probe reaches the mTLS backend (trusting the CA, showing the client cert); the
    // untrusted one stays unhealthy.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pair.0.to_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: serde_json::Value = http
            .get(format!("{}/api/v1/backends", gw.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if list[0]["state"] == "HEALTHY" {
            assert_eq!(list[1]["state"], "UNHEALTHY", "{list}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "secure backend never healthy: {list}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // curl over HTTPS with the test CA; a wrong CA fails the handshake.
    let (code, out) = curl(&["--cacert", ca_arg, &format!("{proxy}/v1/info")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nodeVersion"), "{out}");
    let (code, out) = curl(&["--cacert", ca_arg, &format!("{}/livez", gw.admin)]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = curl(&[
        "--cacert",
        wrong_ca_pem.to_str().unwrap(),
        &format!("{proxy}/v1/info"),
    ]);
    assert_eq!(
        code, 60,
        "a certificate from an untrusted CA must be refused: {out}"
    );
    let (code, _) = curl(&[
        "--cacert",
        wrong_ca_pem.to_str().unwrap(),
        &format!("{}/livez", gw.admin),
    ]);
    assert_eq!(code, 60);

    // A whole query through HTTPS on both sides; nextUri points back at https://.
    let client = Client {
        http: http.clone(),
        ..Client::new(&proxy)
    };
    let out = client
        .run("SELECT * FROM UNNEST(sequence(1, 35))", &[])
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.rows.len(), 35);
    assert!(
        out.next_uris.iter().all(|u| u.starts_with(&proxy)),
        "{:?}",
        out.next_uris
    );
    // A backend whose certificate the gateway cannot verify: the probe marks it unhealthy above;
    // and a gateway without probes that sends a query there gets a clean 502, not a hang.
    let (p2, a2) = (free_port(), free_port());
    let only_untrusted = config_yaml(
        &[("main", p2)],
        a2,
        &[("adhoc", "round_robin")],
        &[(
            "untrusted",
            format!("https://localhost:{untrusted}"),
            "adhoc",
        )],
        "",
    )
    .replace(
        "admin:\n",
        &format!(
            "  backend_tls: {{ ca_file: \"{}\" }}\nadmin:\n",
            ca_pem.display()
        ),
    );
    let gw2 = Gateway::start(&only_untrusted, p2, a2).await;
    let r = Client::new(&gw2.url).submit("SELECT 1", &[]).await;
    assert_eq!(r.status(), 502);
    assert_trino_error(&r.text().await.unwrap(), "BACKEND_UNREACHABLE");
    drop(gw2);

    // The real Python client over HTTPS, verifying with the test CA.
    if let Ok(python) = std::env::var("TRINO_EDGE_PYTHON") {
        let script = format!(
            "import trino\nconn = trino.dbapi.connect(host='127.0.0.1', port={port}, user='tls-user', http_scheme='https', verify='{ca_arg}')\ncur = conn.cursor()\ncur.execute('SELECT * FROM UNNEST(sequence(1, 25))')\nrows = cur.fetchall()\nassert [r[0] for r in rows] == list(range(1, 26)), rows\nprint('rows', len(rows))\n"
        );
        let wrong = script.replace(ca_arg, wrong_ca_pem.to_str().unwrap());
        let out = tokio::task::spawn_blocking(move || {
            // requests lets these variables override a session's own `verify` (psf/requests#3829).
            let py = |code: &str| {
                Command::new(&python)
                    .args(["-c", code])
                    .env_remove("REQUESTS_CA_BUNDLE")
                    .env_remove("CURL_CA_BUNDLE")
                    .output()
                    .unwrap()
            };
            (py(&script), py(&wrong))
        })
        .await
        .unwrap();
        assert!(
            out.0.status.success(),
            "{}",
            String::from_utf8_lossy(&out.0.stderr)
        );
        assert!(String::from_utf8_lossy(&out.0.stdout).contains("rows 25"));
        assert!(
            !out.1.status.success(),
            "the Python client must refuse a wrong CA"
        );
        assert!(String::from_utf8_lossy(&out.1.stderr).contains("CERTIFICATE_VERIFY_FAILED"));
    } else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "TRINO_EDGE_PYTHON is not set: run the tests through tests/run"
        );
    }

    // Renewal: new files, SIGHUP, and new connections get the new certificate.
    let before = served_serial(port, &ca_pair.0).await;
    let renewed = leaf(&ca_pair, "gateway-renewed", false);
    write(d, "gateway", &renewed);
    gw.reload(&yaml);
    let want = renewed
        .0
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string();
    assert_ne!(before, want);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let proxy_serial = served_serial(port, &ca_pair.0).await;
        let admin_serial = served_serial(admin, &ca_pair.0).await;
        if proxy_serial == want && admin_serial == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken renewal (key of another certificate) keeps the working one.
    std::fs::write(&key, new_key().private_key_to_pem_pkcs8().unwrap()).unwrap();
    gw.reload(&yaml);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_serial(port, &ca_pair.0).await, want);
    let (code, out) = curl(&["--cacert", ca_arg, &format!("{proxy}/v1/info")]);
    assert_eq!(code, 0, "{out}");
}
