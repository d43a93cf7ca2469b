//! End-to-end tests of the `strata` binary against real Prometheus,
//! SeaweedFS and etcd processes. One test binary with modules, so it links once.
//!
//! Needs: `target/debug/strata` (or `STRATA_BIN`), Prometheus and promtool
//! (Debian `prometheus`), SeaweedFS `weed` (`.ci/venv/bin/weed`, `WEED_BIN`
//! or `PATH`) and etcd (Debian `etcd-server`; `ETCD_BIN` or `PATH`).
//! `scripts/install-test-deps.sh` installs them; `scripts/test.sh` builds and
//! runs everything.

mod aggregation;
mod auth;
mod bad_input;
mod compaction;
mod crash;
mod durability;
mod e2e;
mod fuzz_corpus;
mod isolation;
mod lambda;
mod leases_etcd;
mod limits;
mod metadata_exemplars;
mod otlp;
mod protocols;
mod remote_read;
mod remote_write_v2;
mod rules_etcd;
mod sql;
mod store_faults;
mod tls;
mod utf8_names;

use std::path::PathBuf;

use tempfile::TempDir;

/// A temporary directory for one test: data directories and process logs.
/// Kept (and its path printed) when the test fails, removed otherwise.
pub struct Scratch {
    dir: Option<TempDir>,
}

impl Scratch {
    pub fn new(test: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("strata-it-{test}-"))
            .tempdir()
            .expect("temp dir");
        Self { dir: Some(dir) }
    }

    pub fn path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default()
    }

    /// A new subdirectory.
    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).expect("create a scratch subdirectory");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(d) = self.dir.take()
        {
            eprintln!("test files kept in {}", d.keep().display());
        }
    }
}

/// An HTTP client with a timeout, so a hung server fails the test instead of hanging it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("build an HTTP client")
}
