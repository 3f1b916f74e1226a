//! Runs every checker on every history of `tests/histories/` and compares the
//! verdicts with the expectation in the file name:
//!
//! * `valid__NAME.jsonl`: every checker must find the history valid;
//! * `invalid__CHECKER__ANOMALY[__NAME].jsonl`: that checker must find it
//!   invalid, with a violation of that anomaly; other checkers may say
//!   anything but Unknown (several checkers often see one anomaly).

use std::path::{Path, PathBuf};

use raftcache_chaos::check::{check_all, Budget, CHECKERS};
use raftcache_chaos::{History, Verdict};

fn corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/histories exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

enum Expect {
    Valid,
    Invalid { checker: String, anomaly: String },
}

fn expectation(path: &Path) -> Expect {
    let stem = path.file_stem().and_then(|s| s.to_str()).expect("UTF-8 file name");
    let parts: Vec<&str> = stem.split("__").collect();
    match parts.as_slice() {
        ["valid", _] => Expect::Valid,
        ["invalid", checker, anomaly, ..] => {
            assert!(CHECKERS.contains(checker), "{stem}: no checker named {checker}");
            Expect::Invalid { checker: checker.to_string(), anomaly: anomaly.to_string() }
        }
        _ => panic!("{stem}: name it valid__NAME or invalid__CHECKER__ANOMALY[__NAME]"),
    }
}

#[test]
fn corpus_verdicts_match_file_names() {
    let files = corpus();
    assert!(files.len() >= 20, "the corpus shrank to {} files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|s| s.to_str()).unwrap_or("?");
        let history = History::load(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reports = check_all(&history, &Budget::default()).expect("no mixed keys");
        for r in &reports {
            if matches!(r.verdict, Verdict::Unknown { .. }) {
                failures.push(format!("{name}: {} answered Unknown", r.checker));
            }
        }
        match expectation(path) {
            Expect::Valid => {
                for r in reports.iter().filter(|r| !r.verdict.is_valid()) {
                    failures.push(format!("{name}: expected valid, got\n{r}"));
                }
            }
            Expect::Invalid { checker, anomaly } => {
                let r = reports.iter().find(|r| r.checker == checker).expect("checker ran");
                match &r.verdict {
                    Verdict::Invalid { violations } => {
                        if !violations.iter().any(|v| v.anomaly == anomaly) {
                            failures.push(format!("{name}: expected {anomaly}, got\n{r}"));
                        }
                        if violations.iter().any(|v| v.ops.is_empty()) {
                            failures.push(format!("{name}: a violation without operations\n{r}"));
                        }
                    }
                    _ => {
                        failures.push(format!("{name}: expected {checker} to be invalid, got\n{r}"))
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The corpus holds a history for each case issue 17 asks the checkers to be
/// tested on (its verdict is checked by `corpus_verdicts_match_file_names`):
/// each entry names what it shows and the files that show it.
#[test]
fn corpus_covers_the_cases_issue_17_names() {
    let names: Vec<String> = corpus()
        .iter()
        .map(|p| p.file_name().and_then(|s| s.to_str()).expect("UTF-8").to_string())
        .collect();
    let cases: &[(&str, &[&str])] = &[
        (
            "valid histories",
            &[
                "valid__register_concurrent",
                "valid__counter",
                "valid__list_append",
                "valid__set_add",
                "valid__ttl",
                "valid__lock",
                "valid__run_kills_pauses_partitions",
            ],
        ),
        (
            "a stale read",
            &[
                "invalid__linearizable__non-linearizable-read__stale_read",
                "invalid__list-append__stale-read",
                "invalid__set-add__stale-read",
            ],
        ),
        (
            "a lost write",
            &[
                "invalid__lost-writes__lost-write",
                "invalid__list-append__lost-append",
                "invalid__set-add__lost-add",
                "invalid__ttl__vanished",
            ],
        ),
        ("a lost increment", &["invalid__counter__lost-increment"]),
        (
            "a duplicated append",
            &[
                "invalid__list-append__duplicate-element",
                "invalid__set-add__duplicate-add",
                "invalid__counter__duplicate-increment",
            ],
        ),
        (
            "a lock overlap",
            &["invalid__lock__two-holders", "invalid__lock__two-holders__set_nx_px"],
        ),
        ("a read past expiry", &["invalid__ttl__expired-read"]),
        // Valid only if the checker lets the unknown operation take effect.
        (
            "unknown operations that must be applied",
            &[
                "valid__register_unknown_applied",
                "valid__counter",
                "valid__list_append",
                "valid__set_add",
                "valid__ttl",
            ],
        ),
        // Valid only if the checker lets it never take effect; invalid where
        // the history needs it applied before its invoke, or twice.
        (
            "unknown operations that must not be applied",
            &[
                "valid__register_unknown_applied",
                "valid__counter_unknown_not_applied",
                "valid__list_append_unknown_not_applied",
                "valid__set_add",
                "invalid__linearizable__non-linearizable-read__unknown_before_invoke",
                "invalid__linearizable__non-linearizable-read__unknown_applied_twice",
                "invalid__list-append__phantom-element__before_invoke",
                "invalid__list-append__duplicate-element__unknown_applied_twice",
                "invalid__counter__phantom-increment__unknown_counted_twice",
                "invalid__set-add__stale-read__unknown_add_vanished",
            ],
        ),
    ];
    let mut missing = Vec::new();
    for (what, files) in cases {
        for prefix in *files {
            if !names.iter().any(|n| n.starts_with(prefix)) {
                missing.push(format!("{what}: no {prefix}*.jsonl"));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Prints every report, for eyeballing the explanations
/// (`cargo test -p raftcache-chaos --test corpus -- --nocapture`).
#[test]
fn corpus_reports_render() {
    for path in corpus() {
        let history = History::load(&path).expect("loads");
        println!("== {}", path.display());
        for r in check_all(&history, &Budget::default()).expect("no mixed keys") {
            let text = r.to_string();
            assert!(!text.is_empty());
            print!("{text}");
            serde_json::to_string(&r).expect("reports serialize");
        }
    }
}

#[test]
fn corpus_round_trips_through_save() {
    for path in corpus() {
        let history = History::load(&path).expect("loads");
        let again = History::parse(&history.to_jsonl()).expect("re-parses");
        assert_eq!(again, history, "{}", path.display());
    }
}
