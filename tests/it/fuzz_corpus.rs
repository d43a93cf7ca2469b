//! Replays the fuzz corpora on the stable toolchain: every file under
//! `fuzz/corpus/<target>/` (seeds, inputs the fuzzer found interesting and
//! the regression inputs of fixed crashes) goes through the same target
//! function that `cargo fuzz run <target>` calls (`fuzz/src/lib.rs`, compiled
//! into this binary by path). Needs no services.

#[path = "../../fuzz/src/lib.rs"]
mod targets;

use std::path::PathBuf;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_file_replays_through_its_target() {
    for (target, run) in targets::TARGETS {
        let dir = corpus_dir(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "corpus of {target} is empty");
        for file in files {
            let data = std::fs::read(&file).expect("corpus file");
            // Printed only when the test fails: names the input that did.
            eprintln!("{target}: {}", file.display());
            run(&data);
        }
    }
}

/// The seed files are generated, not hand-made: after a format change,
/// regenerate them with
/// `cargo test -p strata-tests --test it fuzz_corpus::write_seed_corpora -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand after a format change"]
fn write_seed_corpora() {
    for (target, name, bytes) in targets::seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

/// Every target has seeds, and every seed runs through its target.
#[test]
fn seeds_cover_every_target() {
    let seeds = targets::seeds();
    for (target, run) in targets::TARGETS {
        let mine: Vec<_> = seeds.iter().filter(|s| s.0 == target).collect();
        assert!(!mine.is_empty(), "no seeds for {target}");
        for (_, name, bytes) in mine {
            eprintln!("{target}: seed {name}");
            run(bytes);
        }
    }
}
