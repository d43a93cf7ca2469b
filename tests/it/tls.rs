//! HTTPS: with a certificate and key configured, Strata answers a client
//! that trusts the certificate over TLS (remote write and queries), and
//! refuses plain HTTP and clients that do not trust it. The certificate is
//! made at test time (rcgen), valid for 127.0.0.1 and localhost.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_tests::process::{Proc, free_port, strata_bin};
use strata_tests::promapi::api_time;
use strata_tests::remote_write::{encode, now_ms, request, series};

use crate::Scratch;

#[tokio::test]
async fn serves_https_with_the_configured_certificate_only() {
    let scratch = Scratch::new("tls");
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("self-signed certificate");
    let cert_pem = cert.cert.pem();
    let cert_file = scratch.path().join("cert.pem");
    let key_file = scratch.path().join("key.pem");
    std::fs::write(&cert_file, &cert_pem).expect("write cert");
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("write key");

    let port = free_port();
    let mut cmd = Command::new(strata_bin());
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--storage", "local", "--data-dir"])
        .arg(scratch.sub("data"))
        .arg("--tls-cert-file")
        .arg(&cert_file);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    // The key by environment, to cover that path too.
    cmd.env("STRATA_TLS_KEY_FILE", &key_file);
    let mut proc = Proc::spawn("strata", cmd, &scratch.path());

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let https = format!("https://127.0.0.1:{port}");
    let start = Instant::now();
    loop {
        proc.assert_running();
        match trusting.get(format!("{https}/-/ready")).send().await {
            Ok(r) if r.status().is_success() => break,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "not ready over HTTPS: {other:?}\n{}",
                proc.log_tail(40)
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Remote write and a query over HTTPS, by IP and by name.
    let t = now_ms() - 5_000;
    let body = encode(&request(vec![series(
        &[("__name__", "over_tls"), ("job", "tls")],
        &[(t, 42.0)],
    )]));
    let resp = trusting
        .post(format!("{https}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .expect("write over HTTPS");
    assert_eq!(resp.status().as_u16(), 204);
    let resp = trusting
        .get(format!("https://localhost:{port}/api/v1/query"))
        .query(&[("query", "over_tls".to_string()), ("time", api_time(t))])
        .send()
        .await
        .expect("query over HTTPS");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(v["data"]["result"][0]["value"][1], "42", "{v}");

    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let got = plain
        .get(format!("http://127.0.0.1:{port}/-/ready"))
        .send()
        .await;
    assert!(got.is_err(), "plain HTTP answered: {got:?}");
    // A client that does not trust the certificate refuses the server.
    let got = plain.get(format!("{https}/-/ready")).send().await;
    assert!(
        got.is_err(),
        "an untrusted certificate was accepted: {got:?}"
    );
    // The server survived both and still answers.
    let resp = trusting
        .get(format!("{https}/-/ready"))
        .send()
        .await
        .expect("ready after failed handshakes");
    assert!(resp.status().is_success());
}

#[tokio::test]
async fn a_certificate_without_a_key_stops_the_start() {
    let scratch = Scratch::new("tls-bad");
    let cert_file = scratch.path().join("cert.pem");
    std::fs::write(&cert_file, "not a certificate").expect("write");
    let stderr = crate::limits::start_fails(&["--tls-cert-file", &cert_file.display().to_string()]);
    assert!(stderr.contains("tls.key_file"), "{stderr}");
}
