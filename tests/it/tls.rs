//! HTTPS: with a certificate and key configured, Strata answers a client
//! that trusts the certificate over TLS (remote write and queries), and
//! refuses plain HTTP and clients that do not trust it. With
//! `tls.client_ca_file` (mutual TLS) only clients presenting a certificate
//! from that CA get through the handshake (`optional`: also clients without
//! one). Certificates and CAs are made at test time (rcgen).

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

/// A CA made at test time; `issue` signs leaf certificates with it.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// A certificate for `names` and its key, both PEM.
    fn issue(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &*self.issuer)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS client trusting `ca`, presenting `identity` (certificate and
/// key PEM) if given.
fn client(ca: &TestCa, identity: Option<&(String, String)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca.issuer.pem().as_bytes()).expect("pem"),
        )
        .timeout(Duration::from_secs(30));
    if let Some((cert, key)) = identity {
        b = b.identity(
            reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
        );
    }
    b.build().expect("client")
}

/// Starts `strata serve` over HTTPS with the server certificate signed by
/// `ca`, client certificates checked against `client_ca` (by flag) and
/// `client_auth` (by environment) if given.
fn serve_mtls(
    scratch: &Scratch,
    ca: &TestCa,
    client_ca: &TestCa,
    client_auth: Option<&str>,
) -> (Proc, u16) {
    let (cert_pem, key_pem) = ca.issue(
        &["127.0.0.1", "localhost"],
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let cert_file = scratch.path().join("server.pem");
    let key_file = scratch.path().join("server-key.pem");
    let client_ca_file = scratch.path().join("client-ca.pem");
    std::fs::write(&cert_file, cert_pem).expect("write cert");
    std::fs::write(&key_file, key_pem).expect("write key");
    std::fs::write(&client_ca_file, client_ca.issuer.pem()).expect("write client CA");
    let port = free_port();
    let mut cmd = Command::new(strata_bin());
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--storage", "local", "--data-dir"])
        .arg(scratch.sub("data"))
        .arg("--tls-cert-file")
        .arg(&cert_file)
        .arg("--tls-key-file")
        .arg(&key_file)
        .arg("--tls-client-ca-file")
        .arg(&client_ca_file);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    if let Some(mode) = client_auth {
        cmd.env("STRATA_TLS_CLIENT_AUTH", mode);
    }
    (Proc::spawn("strata", cmd, &scratch.path()), port)
}

async fn wait_ready(proc: &mut Proc, client: &reqwest::Client, url: &str) {
    let start = Instant::now();
    loop {
        proc.assert_running();
        match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "not ready over HTTPS: {other:?}\n{}",
                proc.log_tail(40)
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let scratch = Scratch::new("mtls");
    let ca = TestCa::new("strata test CA");
    let other_ca = TestCa::new("another CA");
    let client_usage = rcgen::ExtendedKeyUsagePurpose::ClientAuth;
    let good = ca.issue(&["sender-a"], client_usage.clone());
    let foreign = other_ca.issue(&["sender-b"], client_usage);
    // `client_auth` unset: required is the default.
    let (mut proc, port) = serve_mtls(&scratch, &ca, &ca, None);
    let https = format!("https://127.0.0.1:{port}");
    let with_cert = client(&ca, Some(&good));
    wait_ready(&mut proc, &with_cert, &format!("{https}/-/ready")).await;

    // A client with a certificate signed by the CA writes and queries.
    let t = now_ms() - 5_000;
    let body = encode(&request(vec![series(
        &[("__name__", "over_mtls"), ("job", "mtls")],
        &[(t, 7.0)],
    )]));
    let resp = with_cert
        .post(format!("{https}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body.clone())
        .send()
        .await
        .expect("write with a client certificate");
    assert_eq!(resp.status().as_u16(), 204);
    let resp = with_cert
        .get(format!("{https}/api/v1/query"))
        .query(&[("query", "over_mtls".to_string()), ("time", api_time(t))])
        .send()
        .await
        .expect("query with a client certificate");
    assert_eq!(resp.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(v["data"]["result"][0]["value"][1], "7", "{v}");

    // Without a certificate, or with one from another CA, the handshake
    // fails: no HTTP answer at all, and nothing written.
    for (what, c) in [
        ("no client certificate", client(&ca, None)),
        ("a certificate from another CA", client(&ca, Some(&foreign))),
    ] {
        let got = c.get(format!("{https}/-/ready")).send().await;
        assert!(got.is_err(), "{what}: answered {got:?}");
        let got = c
            .post(format!("{https}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .await;
        assert!(got.is_err(), "{what}: write answered {got:?}");
    }
    // The server is still up for the good client.
    let resp = with_cert
        .get(format!("{https}/-/ready"))
        .send()
        .await
        .expect("ready after refused handshakes");
    assert!(resp.status().is_success());
    drop(proc);

    // Optional mode: a client without a certificate gets in, one with a
    // certificate from another CA still does not.
    let scratch = Scratch::new("mtls-optional");
    let (mut proc, port) = serve_mtls(&scratch, &ca, &ca, Some("optional"));
    let https = format!("https://127.0.0.1:{port}");
    let anonymous = client(&ca, None);
    wait_ready(&mut proc, &anonymous, &format!("{https}/-/ready")).await;
    let resp = client(&ca, Some(&good))
        .get(format!("{https}/-/ready"))
        .send()
        .await
        .expect("ready with a client certificate");
    assert!(resp.status().is_success());
    let got = client(&ca, Some(&foreign))
        .get(format!("{https}/-/ready"))
        .send()
        .await;
    assert!(
        got.is_err(),
        "a foreign certificate in optional mode: {got:?}"
    );
}

#[tokio::test]
async fn a_missing_or_empty_client_ca_stops_the_start() {
    let scratch = Scratch::new("mtls-bad");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let cert_file = scratch.path().join("cert.pem");
    let key_file = scratch.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("write key");
    let empty = scratch.path().join("empty-ca.pem");
    std::fs::write(&empty, "").expect("write");
    let missing = scratch.path().join("missing-ca.pem");
    for (ca, expect) in [
        (&missing, "missing-ca.pem"),
        (&empty, "holds no certificate"),
    ] {
        let stderr = crate::limits::start_fails(&[
            "--tls-cert-file",
            &cert_file.display().to_string(),
            "--tls-key-file",
            &key_file.display().to_string(),
            "--tls-client-ca-file",
            &ca.display().to_string(),
        ]);
        assert!(
            stderr.contains("tls.client_ca_file") && stderr.contains(expect),
            "{stderr}"
        );
    }
}
