//! Runs Prometheus' promqltest scripts against Strata's engine and storage.
//!
//! ```text
//! promqltest [OPTIONS] <FOLDER>
//!   --verbose          print every failing eval (file:line, query, expected, got)
//!   --file NAME        run only NAME(.test)
//!   --require-tier1    exit non-zero if any tier-1 eval failed
//!   --mem              load data into a plain in-memory map instead of the storage (debug aid)
//!   --no-range-mode    do not re-check instant evals as range queries
//!   --no-annotations   do not check expect warn/info/no_warn/no_info
//! ```
//!
//! Prints one line per file and then `tier1: N passed, M failed` (and tier2,
//! tier3). Exits 2 on usage errors or a missing/empty folder.

use std::path::PathBuf;
use std::process::ExitCode;

use querier::promql::Engine;
use querier::promqltest::runner::install_quiet_panic_hook;
use querier::promqltest::{DataPath, FileReport, RunOptions, run_file, test_files};

struct Args {
    dir: PathBuf,
    verbose: bool,
    file: Option<String>,
    require_tier1: bool,
    opts: RunOptions,
}

const USAGE: &str = "usage: promqltest [--verbose] [--file NAME] [--require-tier1] [--mem] [--no-range-mode] [--no-annotations] <FOLDER>";

fn parse_args() -> Result<Args, String> {
    let mut dir = None;
    let mut args = Args {
        dir: PathBuf::new(),
        verbose: false,
        file: None,
        require_tier1: false,
        opts: RunOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--verbose" | "-v" => args.verbose = true,
            "--require-tier1" => args.require_tier1 = true,
            "--mem" => args.opts.data_path = DataPath::Memory,
            "--no-range-mode" => args.opts.range_mode_check = false,
            "--no-annotations" => args.opts.check_annotations = false,
            "--file" => args.file = Some(it.next().ok_or("--file needs a NAME")?),
            "--help" | "-h" => return Err(USAGE.to_string()),
            s if s.starts_with("--file=") => {
                args.file = s.strip_prefix("--file=").map(str::to_string)
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            s => {
                if dir.replace(PathBuf::from(s)).is_some() {
                    return Err(format!("more than one folder given\n{USAGE}"));
                }
            }
        }
    }
    args.dir = dir.ok_or_else(|| format!("missing test folder\n{USAGE}"))?;
    Ok(args)
}

fn one_line(s: &str) -> String {
    s.replace('\n', "\\n")
}

fn print_file(r: &FileReport, verbose: bool) {
    let c = r.counts();
    let passed: usize = c.iter().map(|t| t[0]).sum();
    let failed: usize = c.iter().map(|t| t[1]).sum();
    let tiers: Vec<String> = c
        .iter()
        .enumerate()
        .filter(|(_, t)| t[0] + t[1] > 0)
        .map(|(i, t)| format!("tier{} {}/{} passed", i + 1, t[0], t[0] + t[1]))
        .collect();
    println!(
        "{}: {passed} passed, {failed} failed ({})",
        r.name,
        tiers.join(", ")
    );
    for e in &r.parse_errors {
        println!("  {}:{e}: parse error", r.name);
    }
    if verbose {
        for e in &r.load_errors {
            println!("  {}:{e}", r.name);
        }
    } else if let Some(first) = r.load_errors.first() {
        println!(
            "  {} load(s) failed; first: {}:{}",
            r.load_errors.len(),
            r.name,
            one_line(first)
        );
    }
    if !verbose {
        return;
    }
    for n in &r.notes {
        println!("  {}:{n}", r.name);
    }
    let unchecked = r.evals.iter().filter(|e| !e.unchecked.is_empty()).count();
    if unchecked > 0 {
        println!(
            "  {unchecked} eval(s) have annotation expectations (warn/info) that are not checked"
        );
    }
    for e in r.evals.iter().filter(|e| e.failure.is_some()) {
        println!(
            "  FAIL {}:{} [tier{}: {}] {}",
            r.name, e.line, e.tier as usize, e.tier_reason, e.expr
        );
        if !e.expected.is_empty() {
            println!("    expected: {}", one_line(&e.expected));
        }
        println!(
            "    got:      {}",
            one_line(e.failure.as_deref().unwrap_or(""))
        );
        if !e.unchecked.is_empty() {
            println!("    (not checked: {})", e.unchecked.join("; "));
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let files = match test_files(&args.dir, args.file.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("promqltest: {e}");
            return ExitCode::from(2);
        }
    };
    install_quiet_panic_hook();
    let engine = Engine::default();
    let mut totals = [[0usize; 2]; 3];
    // Annotation expectation lines: held (their eval passed), checked.
    let mut annotations = [0usize; 2];
    for f in &files {
        let r = run_file(f, &engine, &args.opts).await;
        print_file(&r, args.verbose);
        for e in &r.evals {
            annotations[1] += e.annotations_checked;
            if e.failure.is_none() {
                annotations[0] += e.annotations_checked;
            }
        }
        for (t, c) in totals.iter_mut().zip(r.counts()) {
            t[0] += c[0];
            t[1] += c[1];
        }
    }
    for (i, t) in totals.iter().enumerate() {
        println!("tier{}: {} passed, {} failed", i + 1, t[0], t[1]);
    }
    if args.opts.check_annotations {
        println!(
            "annotations: {} of {} expect warn/info/no_warn/no_info lines held (in evals that passed)",
            annotations[0], annotations[1]
        );
    }
    if args.require_tier1 && totals[0][1] > 0 {
        eprintln!("promqltest: {} tier-1 eval(s) failed", totals[0][1]);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
