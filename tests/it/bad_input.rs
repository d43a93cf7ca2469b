//! Malformed remote-write requests get a 4xx with a message, do not take the
//! server down, and do not disturb data written before them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use strata_tests::Strata;
use strata_tests::promapi;
use strata_tests::remote_write::{self, encode, now_ms, request, series, series_raw, snappy};

use crate::{Scratch, client};

/// POSTs `len` zero bytes to `/api/v1/write` while reading the answer on the
/// same connection; returns the status code and body of the answer.
fn post_oversized(addr: &str, len: usize) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut writer = stream.try_clone()?;
    let head = format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let sender = std::thread::spawn(move || {
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![0u8; 1 << 20];
        let mut sent = 0;
        while sent < len && writer.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    });
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(e) if buf.is_empty() => return Err(e),
            Err(_) => break,
        }
        if response_complete(&buf) {
            break;
        }
    }
    drop(stream);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Whether `buf` holds a whole HTTP answer with a Content-Length body.
fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|cl| body.len() >= cl)
}

/// Protobuf bytes of a `WriteRequest` with one series whose only label is
/// `__name__` with a value that is not UTF-8 (prost cannot build that itself).
fn non_utf8_label_value() -> Vec<u8> {
    let mut label = vec![0x0a, 8];
    label.extend_from_slice(b"__name__");
    label.extend_from_slice(&[0x12, 2, 0xff, 0xfe]);
    let mut ts = vec![0x0a, u8::try_from(label.len()).expect("short label")];
    ts.extend_from_slice(&label);
    // one sample: value 1.0 (tag 1, fixed64), timestamp 1000 (tag 2, varint)
    let sample = [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0xe8, 0x07];
    ts.push(0x12);
    ts.push(u8::try_from(sample.len()).expect("short sample"));
    ts.extend_from_slice(&sample);
    let mut req = vec![0x0a, u8::try_from(ts.len()).expect("short series")];
    req.extend_from_slice(&ts);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input() {
    let scratch = Scratch::new("bad-input");
    let mut strata = Strata::start_local(&scratch.sub("strata-data"), &scratch.path()).await;
    let c = client();
    let url = strata.write_url();
    let t0 = now_ms() - 60_000;

    // Good data first, for the default tenant and for tenant "team-a".
    let good = encode(&request(vec![
        series(
            &[("__name__", "bad_input_ok"), ("job", "t"), ("k", "a")],
            &[(t0, 1.0), (t0 + 1000, 2.0)],
        ),
        series(
            &[("__name__", "bad_input_ok"), ("job", "t"), ("k", "b")],
            &[(t0, 10.0), (t0 + 1000, 20.0)],
        ),
    ]));
    for tenant in [None, Some("team-a")] {
        let (status, body) = remote_write::send(&c, &url, good.clone(), tenant)
            .await
            .expect("send good request");
        assert_eq!(
            status, 204,
            "a valid write for tenant {tenant:?} must give 204, got {status}: {body}"
        );
    }

    let ts = |labels: &[(&str, &str)]| series_raw(labels, &[(t0 + 2000, 5.0)]);
    let one = |s| encode(&request(vec![s]));
    let long_tenant = "a".repeat(151);
    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..] {
        *b ^= 0x5a;
    }
    // A snappy header announcing 1 GiB of uncompressed data, followed by nothing useful.
    let mut bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    bomb.extend_from_slice(&[0u8; 16]);

    let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("truncated snappy", good[..good.len() / 2].to_vec(), None),
        ("corrupt snappy", corrupt, None),
        (
            "not snappy at all",
            b"this is not snappy compressed protobuf".to_vec(),
            None,
        ),
        ("snappy header claiming 1 GiB", bomb, None),
        (
            "garbage protobuf",
            snappy(b"\x0a\xff\xff\xff\xff\x0f\x01\x02garbage"),
            None,
        ),
        (
            "non-UTF-8 label value",
            snappy(&non_utf8_label_value()),
            None,
        ),
        (
            "empty label name",
            one(ts(&[("", "x"), ("__name__", "m")])),
            None,
        ),
        (
            "unsorted labels",
            one(ts(&[("__name__", "m"), ("job", "j"), ("instance", "i")])),
            None,
        ),
        (
            "duplicate labels",
            one(ts(&[("__name__", "m"), ("job", "a"), ("job", "b")])),
            None,
        ),
        ("missing metric name", one(ts(&[("job", "j")])), None),
        ("tenant ../x", good.clone(), Some("../x")),
        ("tenant with a slash", good.clone(), Some("a/b")),
        ("tenant ..", good.clone(), Some("..")),
        (
            "tenant too long (151 chars)",
            good.clone(),
            Some(long_tenant.as_str()),
        ),
        ("empty tenant", good.clone(), Some("")),
    ];

    let mut failures = Vec::new();
    for (name, body, tenant) in cases {
        match remote_write::send(&c, &url, body, tenant).await {
            Ok((status, msg)) if (400..500).contains(&status) && !msg.trim().is_empty() => {}
            Ok((status, msg)) => failures.push(format!(
                "{name}: expected 4xx with a message, got {status}: {msg:?}"
            )),
            Err(e) => failures.push(format!("{name}: request failed: {e:#}")),
        }
        strata.proc.assert_running();
    }

    // Oversized body: 64 MiB, far above any sane limit; must be 413. Sent over a
    // raw socket that reads the answer while still writing: a server may answer
    // 413 and close before the body is through, which HTTP clients report as
    // a broken pipe instead of the answer.
    let addr = format!("127.0.0.1:{}", strata.port);
    let oversized = tokio::task::spawn_blocking(move || post_oversized(&addr, 64 << 20))
        .await
        .expect("oversized-body task");
    match oversized {
        Ok((413, msg)) if !msg.trim().is_empty() => {}
        Ok((status, msg)) => failures.push(format!(
            "64 MiB body: expected 413 with a message, got {status}: {:?}",
            msg.chars().take(200).collect::<String>()
        )),
        Err(e) => failures.push(format!("64 MiB body: no HTTP answer (expected 413): {e}")),
    }
    strata.proc.assert_running();

    // Still serving, and the good data is intact and still separated by tenant.
    let r = c
        .get(format!("{}/-/ready", strata.url))
        .send()
        .await
        .expect("ready request");
    assert_eq!(
        r.status().as_u16(),
        200,
        "Strata is not ready after the bad requests"
    );
    let at = t0 + 1000;
    let expected = [("a", 2.0), ("b", 20.0)];
    for tenant in [None, Some("team-a")] {
        match promapi::query(&c, &strata.url, "bad_input_ok", at, tenant).await {
            Ok(r) => {
                let got: Vec<(String, f64)> = r
                    .series
                    .iter()
                    .map(|(l, p)| (l.clone(), p.first().map_or(f64::NAN, |x| x.1)))
                    .collect();
                let want: Vec<(String, f64)> = expected
                    .iter()
                    .map(|(k, v)| {
                        (
                            format!(r#"{{__name__="bad_input_ok", job="t", k="{k}"}}"#),
                            *v,
                        )
                    })
                    .collect();
                if got != want {
                    failures.push(format!(
                        "tenant {tenant:?}: bad_input_ok is {got:?}, expected {want:?}"
                    ));
                }
            }
            Err(e) => failures.push(format!(
                "tenant {tenant:?}: query after bad input failed: {e:#}"
            )),
        }
    }
    // Nothing from the rejected requests was stored under a metric they named.
    match promapi::query(&c, &strata.url, r#"{__name__="m"}"#, t0 + 2000, None).await {
        Ok(r) if r.series.is_empty() => {}
        Ok(r) => failures.push(format!("rejected series were stored: {:?}", r.series)),
        Err(e) => failures.push(format!("query for rejected series failed: {e:#}")),
    }

    assert!(
        failures.is_empty(),
        "{} bad-input problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
