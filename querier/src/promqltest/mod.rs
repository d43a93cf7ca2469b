//! Conformance runner for Prometheus' promqltest scripts (the `.test` files
//! under `../shared/conformance/promqltest`): parses the script language, loads
//! the data through Strata's storage, evaluates every eval with the engine and
//! compares results the way Prometheus' own runner does.
//!
//! * [`parser`]: the script language and the expanding value notation.
//! * [`compare`]: result comparison (tolerance, ordering, timestamps).
//! * [`runner`]: execution, tiering and the storage adapter.
//! * [`annotations`]: `expect warn/info/no_warn/no_info` and their check.
//!
//! The `promqltest` binary drives it over a folder.

pub mod annotations;
pub mod compare;
pub mod histogram_literal;
mod nhcb;
pub mod parser;
pub mod runner;

use std::path::{Path, PathBuf};

pub use runner::{DataPath, EvalOutcome, FileReport, RunOptions, Tier, run_script};

use crate::promql::Engine;

/// The sorted `*.test` files of a folder, optionally only the one named `filter`
/// (`NAME` or `NAME.test`).
pub fn test_files(dir: &Path, filter: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read test folder {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .test files in {}", dir.display()));
    }
    if let Some(f) = filter {
        let want = if f.ends_with(".test") {
            f.to_string()
        } else {
            format!("{f}.test")
        };
        files.retain(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == want));
        if files.is_empty() {
            return Err(format!("no test file named {want} in {}", dir.display()));
        }
    }
    Ok(files)
}

/// Runs one file; a file that cannot be read gives a report with the error.
pub async fn run_file(path: &Path, engine: &Engine, opts: &RunOptions) -> FileReport {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match std::fs::read(path) {
        Ok(bytes) => run_script(&name, &String::from_utf8_lossy(&bytes), engine, opts).await,
        Err(e) => FileReport {
            name,
            parse_errors: vec![format!("0: cannot read file: {e}")],
            ..FileReport::default()
        },
    }
}
