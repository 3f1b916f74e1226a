//! The `raftcache-chaos check` and `report` commands: output and exit status.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raftcache-chaos")).args(args).output().expect("runs")
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("raftcache-chaos-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("writes");
    path
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn valid_history_exits_0() {
    let out = run(&["check", path_str(&corpus("valid__register_concurrent.jsonl"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("linearizable: valid (2 keys)"), "{stdout}");
}

#[test]
fn violation_exits_1_and_explains() {
    let out = run(&["check", path_str(&corpus("invalid__counter__lost-increment.jsonl"))]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("counter: INVALID"), "{stdout}");
    assert!(stdout.contains("lost-increment"), "{stdout}");
}

#[test]
fn json_output_holds_every_report() {
    let out = run(&["check", path_str(&corpus("invalid__lock__two-holders.jsonl")), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let reports = v["reports"].as_array().expect("reports");
    assert_eq!(reports.len(), 7);
    let lock = reports.iter().find(|r| r["checker"] == "lock").expect("lock report");
    assert_eq!(lock["verdict"]["verdict"], "invalid");
    assert_eq!(lock["verdict"]["violations"][0]["anomaly"], "two-holders");
    assert_eq!(lock["verdict"]["violations"][0]["ops"], serde_json::json!([0, 1, 2]));
}

#[test]
fn exhausted_budget_exits_3() {
    let out =
        run(&["check", path_str(&corpus("valid__register_concurrent.jsonl")), "--max-steps", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("UNKNOWN"), "{stdout}");
}

#[test]
fn usage_and_input_errors_exit_2() {
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["check"]).status.code(), Some(2));
    assert_eq!(run(&["check", "/nonexistent/history.jsonl"]).status.code(), Some(2));
    let bad = temp_file("bad.jsonl", "{\"process\":1,\"key\":\"x\",\"f\":\"read\"}\n");
    let out = run(&["check", path_str(&bad)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    let mixed = temp_file(
        "mixed.jsonl",
        concat!(
            r#"{"process":1,"key":"x","f":"write","value":"a","invoke":0,"complete":1,"outcome":"ok"}"#,
            "\n",
            r#"{"process":1,"key":"x","f":"incr","invoke":2,"complete":3,"outcome":"ok","result":1}"#,
            "\n"
        ),
    );
    let out = run(&["check", path_str(&mixed)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mixes workloads"));
    let _ = std::fs::remove_file(bad);
    let _ = std::fs::remove_file(mixed);
}

#[test]
fn run_refuses_unknown_faults_and_workloads() {
    let out = run(&["run", "--bin", "/bin/true", "--out", "/tmp/x", "--faults", "kill,explode"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown fault \"explode\""), "{stderr}");
    let out = run(&["run", "--bin", "/bin/true", "--out", "/tmp/x", "--workloads", "sets"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown workload \"sets\""), "{stderr}");
}

#[test]
fn run_without_a_node_binary_fails_with_a_reason() {
    let out_dir =
        std::env::temp_dir().join(format!("raftcache-chaos-{}-nobin", std::process::id()));
    let out = run(&[
        "run",
        "--bin",
        "/nonexistent/raftcache",
        "--out",
        path_str(&out_dir),
        "--time",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // As root with iproute2 and iptables the binary is missing; otherwise
    // the run says what it needs first.
    assert!(
        stderr.contains("/nonexistent/raftcache does not exist")
            || stderr.contains("must run as root")
            || stderr.contains("is missing: install"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn report_rechecks_a_history_without_summary() {
    let page =
        std::env::temp_dir().join(format!("raftcache-chaos-{}-stale.html", std::process::id()));
    let history = corpus("invalid__counter__lost-increment.jsonl");
    let out = run(&["report", path_str(&history), "-o", path_str(&page)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).expect("the page was written");
    let _ = std::fs::remove_file(&page);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(r#"data-checker="counter" data-verdict="invalid""#), "{html}");
    assert!(html.contains(r#"data-anomaly="lost-increment""#), "{html}");
    assert!(html.contains("violation-marker"), "{html}");
}

#[test]
fn report_takes_the_verdicts_of_a_summary() {
    let page =
        std::env::temp_dir().join(format!("raftcache-chaos-{}-run.html", std::process::id()));
    let history = corpus("valid__run_kills_pauses_partitions.jsonl");
    let summary = corpus("run_kills_pauses_partitions.summary.json");
    let out = run(&[
        "report",
        path_str(&history),
        "--summary",
        path_str(&summary),
        "-o",
        path_str(&page),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).expect("the page was written");
    let _ = std::fs::remove_file(&page);
    assert!(html.contains("raftcache chaos run 5a9030"), "the run id comes from the summary");
    assert!(html.contains(r#"data-checker="convergence" data-verdict="agree""#));
    assert_eq!(html.matches(r#"<g class="fault-window"#).count(), 8, "4 faults on 2 charts");
    assert!(!html.contains("violation-marker"));
    // A summary that is not JSON is an error, not an empty report.
    let bad = temp_file("bad-summary.json", "{not json");
    let out =
        run(&["report", path_str(&history), "--summary", path_str(&bad), "-o", path_str(&page)]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(out.status.code(), Some(2));
}
