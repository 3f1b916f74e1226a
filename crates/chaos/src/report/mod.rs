//! The HTML report of a run: one self-contained page (inline SVG and CSS, no
//! script, nothing fetched) with
//!
//! * the run's verdict and its numbers (from `summary.json` when there is one);
//! * every checker's verdict, the digests' convergence, the findings;
//! * operations per second (ok / fail / unknown) and latency (p50 / p99 of
//!   the acknowledged operations) over time, with the fault windows shaded
//!   and labelled and every violation marked;
//! * the faults with how long the cluster served nothing around each;
//! * for each violation: its explanation, its operations as a timeline (one
//!   lane per process, invoke to completion) and as a table.
//!
//! `raftcache-chaos run` writes it as `OUT/report.html`;
//! `raftcache-chaos report HISTORY.jsonl [--summary summary.json] -o FILE`
//! makes one from a saved run (re-checking the history when no summary
//! gives the checkers' verdicts).

pub mod series;
pub mod svg;

use std::fmt::Write;

use serde::Deserialize;
use serde_json::Value;

use self::series::{fmt_duration, history_end, violation_span, Series};
use crate::history::{Call, History, Nanos, Outcome};
use crate::verdict::{Report, Verdict};

/// One violation as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ViolationView {
    pub anomaly: String,
    pub key: String,
    pub explanation: String,
    #[serde(default)]
    pub ops: Vec<usize>,
    #[serde(default)]
    pub window: Vec<String>,
}

/// One checker's conclusion as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckerView {
    pub checker: String,
    pub keys: usize,
    /// How many operations it judged, when known.
    pub ops: Option<usize>,
    /// `valid`, `invalid` or `unknown`.
    pub verdict: String,
    /// Why it could not conclude (unknown).
    pub reason: Option<String>,
    pub violations: Vec<ViolationView>,
}

impl CheckerView {
    pub fn from_report(r: &Report, ops: Option<usize>) -> CheckerView {
        let (verdict, reason, violations) = match &r.verdict {
            Verdict::Valid => ("valid", None, Vec::new()),
            Verdict::Unknown { reason } => ("unknown", Some(reason.clone()), Vec::new()),
            Verdict::Invalid { violations } => (
                "invalid",
                None,
                violations
                    .iter()
                    .map(|v| ViolationView {
                        anomaly: v.anomaly.to_string(),
                        key: v.key.clone(),
                        explanation: v.explanation.clone(),
                        ops: v.ops.clone(),
                        window: v.window.clone(),
                    })
                    .collect(),
            ),
        };
        CheckerView {
            checker: r.checker.to_string(),
            keys: r.keys,
            ops,
            verdict: verdict.to_string(),
            reason,
            violations,
        }
    }

    /// The checkers of a `summary.json` (its `checkers` array), if it has them.
    pub fn from_summary(summary: &Value) -> Option<Vec<CheckerView>> {
        let list = summary.get("checkers")?.as_array()?;
        let mut out = Vec::new();
        for c in list {
            let report = c.get("report").unwrap_or(c);
            let verdict = report.get("verdict").unwrap_or(&Value::Null);
            let violations: Vec<ViolationView> = verdict
                .get("violations")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            out.push(CheckerView {
                checker: c.get("checker")?.as_str()?.to_string(),
                keys: c.get("keys").and_then(Value::as_u64).unwrap_or(0) as usize,
                ops: c.get("ops").and_then(Value::as_u64).map(|n| n as usize),
                verdict: c
                    .get("verdict")
                    .and_then(Value::as_str)
                    .or_else(|| verdict.get("verdict").and_then(Value::as_str))
                    .unwrap_or("unknown")
                    .to_string(),
                reason: verdict.get("reason").and_then(Value::as_str).map(str::to_string),
                violations,
            });
        }
        Some(out)
    }
}

/// A violation placed on the timeline.
#[derive(Debug, Clone)]
pub struct Marker {
    pub number: usize,
    pub anomaly: String,
    pub key: String,
    pub from: Nanos,
    pub to: Nanos,
}

/// Everything a report is made from.
pub struct Input<'a> {
    pub history: &'a History,
    pub checkers: Vec<CheckerView>,
    /// The run's `summary.json`, if there is one.
    pub summary: Option<&'a Value>,
    /// Where the history came from, for the page's title.
    pub source: String,
}

/// Escapes text for HTML (and SVG) content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--ok:#2e9d5b;--fail:#d64545;--unknown:#e8a33d;--ink:#1d2433;--muted:#667085;--line:#e4e7ec;--bg:#f6f7fb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{padding:22px 32px;color:#fff;display:flex;gap:28px;align-items:center;flex-wrap:wrap}
header.valid{background:linear-gradient(90deg,#1f7a46,#2e9d5b)}
header.invalid{background:linear-gradient(90deg,#9f1f1f,#d64545)}
header.unknown{background:linear-gradient(90deg,#a8641a,#e8a33d)}
header h1{margin:0;font-size:22px;font-weight:650}
header .sub{opacity:.9;font-size:13px}
.badge-big{font-size:30px;font-weight:800;letter-spacing:.06em;padding:6px 18px;border:3px solid rgba(255,255,255,.85);border-radius:10px}
main{padding:18px 32px 40px;max-width:1240px}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:16px 20px;margin:0 0 18px;box-shadow:0 1px 2px rgba(16,24,40,.05)}
h2{font-size:16px;margin:0 0 10px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:10px;padding:10px 12px;background:#fbfcfe}
.card .v{font-size:20px;font-weight:700}
.card .k{color:var(--muted);font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12px}
.badge{white-space:nowrap;display:inline-block;padding:2px 9px;border-radius:999px;font-weight:700;font-size:12px;color:#fff}
.badge.valid,.badge.agree,.badge.ok{background:var(--ok)}
.badge.invalid,.badge.disagree,.badge.fail{background:var(--fail)}
.badge.unknown,.badge.unaligned{background:var(--unknown)}
tr.verdict-invalid{background:#fff1f1}
tr.verdict-unknown{background:#fff8ec}
.chart{width:100%;height:auto;display:block}
.chart .grid{stroke:#eef0f4;stroke-width:1}
.chart .tick{fill:var(--muted);font-size:11px}
.chart .axis-title{fill:var(--muted);font-size:12px}
.chart .bar.ok{fill:var(--ok)}.chart .bar.fail{fill:var(--fail)}.chart .bar.unknown{fill:var(--unknown)}
.chart .line{fill:none;stroke-width:2}
.chart .line.p50{stroke:#3f6fd8}.chart .line.p99{stroke:#9b51e0}
.chart .point.p50{fill:#3f6fd8}.chart .point.p99{fill:#9b51e0}
.fault-shade{opacity:.55}
.fault-label{font-size:11px;font-weight:600}
.fault-tick{stroke-width:1}
.f-kill .fault-shade{fill:#f7c6c2}.f-kill .fault-label{fill:#a1261d}.f-kill .fault-tick{stroke:#a1261d}
.f-pause .fault-shade{fill:#fbe3a0}.f-pause .fault-label{fill:#8a5a00}.f-pause .fault-tick{stroke:#8a5a00}
.f-partition .fault-shade{fill:#c6d8fb}.f-partition .fault-label{fill:#1f4fb3}.f-partition .fault-tick{stroke:#1f4fb3}
.f-wipe .fault-shade{fill:#e1cdf7}.f-wipe .fault-label{fill:#6a2ca8}.f-wipe .fault-tick{stroke:#6a2ca8}
.f-link .fault-shade{fill:#bfe8e4}.f-link .fault-label{fill:#0e6b63}.f-link .fault-tick{stroke:#0e6b63}
.f-other .fault-shade{fill:#dde1e8}.f-other .fault-label{fill:#475467}.f-other .fault-tick{stroke:#475467}
.violation-span{fill:#b42318;opacity:.8}
.violation-line{stroke:#b42318;stroke-width:2.5;stroke-dasharray:5 3}
.violation-dot{fill:#b42318;stroke:#fff;stroke-width:2}
.violation-num{fill:#fff;font-size:11px;font-weight:800}
.legend{display:flex;gap:16px;flex-wrap:wrap;color:var(--muted);font-size:12px;margin:4px 0 6px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:5px;vertical-align:-2px}
.violation{border-left:5px solid var(--fail);padding:4px 0 4px 14px;margin:14px 0}
.violation h3{margin:0 0 4px;font-size:15px}
.explanation{margin:4px 0 10px}
.window-timeline .op-bar rect{stroke-width:1.5}
.op-bar.ok rect{fill:#d5f0df;stroke:var(--ok)}.op-bar.fail rect{fill:#fadcdc;stroke:var(--fail)}.op-bar.unknown rect{fill:#fdecd0;stroke:var(--unknown)}
.op-label{font-size:11px;fill:var(--ink)}
tr.op-unknown td{color:#8a5a00}tr.op-fail td{color:#a1261d}
.muted{color:var(--muted)}
ul.findings li{color:#a1261d;font-weight:600}
footer{color:var(--muted);font-size:12px;padding:0 32px 30px}
"#;

fn s_of<'v>(summary: Option<&'v Value>, key: &str) -> Option<&'v Value> {
    summary.and_then(|s| s.get(key)).filter(|v| !v.is_null())
}

fn card(out: &mut String, value: &str, key: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><div class="v">{value}</div><div class="k">{key}</div></div>"#
    );
}

fn percentile(sorted: &[Nanos], p: f64) -> Nanos {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The run's verdict: the summary's, or the checkers'.
fn overall(input: &Input) -> String {
    if let Some(v) = s_of(input.summary, "verdict").and_then(Value::as_str) {
        return v.to_string();
    }
    if input.checkers.iter().any(|c| c.verdict == "invalid") {
        "invalid".into()
    } else if input.checkers.iter().any(|c| c.verdict != "valid") {
        "unknown".into()
    } else {
        "valid".into()
    }
}

/// Renders the page.
pub fn render(input: &Input) -> String {
    let h = input.history;
    let summary = input.summary;
    let workload_end = s_of(summary, "workload_s")
        .and_then(Value::as_f64)
        .map(|s| (s * 1e9) as Nanos)
        .unwrap_or_else(|| history_end(h));
    let end = history_end(h).max(workload_end);
    let series = Series::new(h, end);
    let windows = svg::windows(h, end);
    let mut markers = Vec::new();
    let mut number = 0;
    for c in &input.checkers {
        for v in &c.violations {
            number += 1;
            if let Some((from, to)) = violation_span(h, &v.ops) {
                markers.push(Marker {
                    number,
                    anomaly: v.anomaly.clone(),
                    key: v.key.clone(),
                    from,
                    to,
                });
            }
        }
    }
    let verdict = overall(input);
    let mut out = String::new();
    let title = match s_of(summary, "run_id").and_then(Value::as_str) {
        Some(id) => format!("raftcache chaos run {id}"),
        None => format!("raftcache chaos history {}", input.source),
    };
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{t}: {v}</title><style>{CSS}</style></head><body>"#,
        t = esc(&title),
        v = verdict.to_uppercase()
    );
    // Header.
    let mut sub = Vec::new();
    if let Some(seed) = s_of(summary, "seed") {
        sub.push(format!("seed {seed}"));
    }
    if let Some(n) = s_of(summary, "nodes") {
        sub.push(format!("{n} nodes"));
    }
    if let Some(a) = s_of(summary, "appendfsync").and_then(Value::as_str) {
        sub.push(format!("appendfsync {a}"));
    }
    if let Some(w) = s_of(summary, "workloads").and_then(Value::as_array) {
        let names: Vec<&str> = w.iter().filter_map(Value::as_str).collect();
        sub.push(format!("workloads {}", names.join(", ")));
    }
    if let Some(f) = s_of(summary, "faults_enabled").and_then(Value::as_array) {
        let names: Vec<&str> = f.iter().filter_map(Value::as_str).collect();
        sub.push(format!(
            "faults {}",
            if names.is_empty() { "none".into() } else { names.join(", ") }
        ));
    }
    sub.push(format!("history {}", input.source));
    let _ = write!(
        out,
        r#"<header class="{v}" id="verdict" data-verdict="{v}"><div class="badge-big">{V}</div><div><h1>{t}</h1><div class="sub">{s}</div></div></header><main>"#,
        v = esc(&verdict),
        V = esc(&verdict.to_uppercase()),
        t = esc(&title),
        s = esc(&sub.join(" · "))
    );

    // Numbers.
    let (mut ok, mut fail, mut unknown) = (0, 0, 0);
    let mut lat: Vec<Nanos> = Vec::new();
    for op in &h.ops {
        match op.outcome {
            Outcome::Ok(_) => {
                ok += 1;
                if let Some(c) = op.complete {
                    lat.push(c.saturating_sub(op.invoke));
                }
            }
            Outcome::Fail => fail += 1,
            Outcome::Unknown => unknown += 1,
        }
    }
    lat.sort_unstable();
    out.push_str(r#"<section id="numbers"><h2>The run in numbers</h2><div class="cards">"#);
    card(&mut out, &h.ops.len().to_string(), "operations");
    card(&mut out, &format!(r#"<span style="color:var(--ok)">{ok}</span>"#), "ok");
    card(&mut out, &format!(r#"<span style="color:var(--fail)">{fail}</span>"#), "fail");
    card(&mut out, &format!(r#"<span style="color:var(--unknown)">{unknown}</span>"#), "unknown");
    card(&mut out, &fmt_duration(percentile(&lat, 50.0)), "latency p50 (ok)");
    card(&mut out, &fmt_duration(percentile(&lat, 99.0)), "latency p99 (ok)");
    card(&mut out, &fmt_duration(lat.last().copied().unwrap_or(0)), "latency max (ok)");
    card(&mut out, &windows.len().to_string(), "faults");
    if let Some(g) = s_of(summary, "longest_gap_s").and_then(Value::as_f64) {
        card(&mut out, &format!("{g:.2} s"), "longest gap without an ok op");
    }
    match s_of(summary, "recovered_after_s").and_then(Value::as_f64) {
        Some(r) => card(&mut out, &format!("{r:.2} s"), "ready after the final heal"),
        None if summary.is_some() => card(&mut out, "never", "ready after the final heal"),
        None => {}
    }
    card(&mut out, &fmt_duration(workload_end), "workload");
    out.push_str("</div></section>");

    // Verdicts.
    out.push_str(r#"<section id="verdicts"><h2>Verdicts</h2><table><thead><tr><th>checker</th><th>verdict</th><th class="num">keys</th><th class="num">ops</th><th>detail</th></tr></thead><tbody>"#);
    let mut number = 0;
    for c in &input.checkers {
        let detail = match c.verdict.as_str() {
            "invalid" => {
                let links: Vec<String> = c
                    .violations
                    .iter()
                    .map(|v| {
                        number += 1;
                        format!(
                            r##"<a href="#violation-{number}">#{number} {} on {}</a>"##,
                            esc(&v.anomaly),
                            esc(&v.key)
                        )
                    })
                    .collect();
                links.join(", ")
            }
            "unknown" => esc(c.reason.as_deref().unwrap_or("")),
            _ => String::new(),
        };
        let _ = write!(
            out,
            r#"<tr class="verdict-row verdict-{v}" data-checker="{c}" data-verdict="{v}"><td><b>{c}</b></td><td><span class="badge {v}">{v}</span></td><td class="num">{k}</td><td class="num">{o}</td><td>{detail}</td></tr>"#,
            v = esc(&c.verdict),
            c = esc(&c.checker),
            k = c.keys,
            o = c.ops.map_or("-".to_string(), |n| n.to_string()),
        );
    }
    if let Some(conv) = s_of(summary, "convergence") {
        let result = conv.get("result").and_then(Value::as_str).unwrap_or("unknown");
        let index = conv.get("applied_index").and_then(Value::as_u64);
        let nodes: Vec<String> = conv
            .get("nodes")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter().map(|(k, v)| format!("node {k}: {}", v.as_str().unwrap_or(""))).collect()
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<tr class="verdict-row verdict-{r}" data-checker="convergence" data-verdict="{r}"><td><b>convergence</b></td><td><span class="badge {r}">{r}</span></td><td class="num">-</td><td class="num">-</td><td class="mono">{i}{n}</td></tr>"#,
            r = esc(result),
            i = index.map_or(String::new(), |i| format!("applied index {i}<br>")),
            n = esc(&nodes.join("\n")).replace('\n', "<br>"),
        );
    }
    out.push_str("</tbody></table>");
    let findings: Vec<&str> = s_of(summary, "findings")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !findings.is_empty() {
        out.push_str(r#"<h2 style="margin-top:14px">Findings</h2><ul class="findings">"#);
        for f in findings {
            let _ = write!(out, "<li>{}</li>", esc(f));
        }
        out.push_str("</ul>");
    }
    let notes: Vec<&str> = s_of(summary, "notes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for n in notes {
        let _ = write!(out, r#"<p class="muted">note: {}</p>"#, esc(n));
    }
    out.push_str("</section>");

    // Charts.
    let legend_faults: Vec<String> = {
        let mut fams: Vec<&str> = windows.iter().map(|w| svg::fault_class(&w.fault)).collect();
        fams.sort_unstable();
        fams.dedup();
        fams.iter()
            .map(|f| {
                let (color, name) = match *f {
                    "f-kill" => ("#f7c6c2", "kill"),
                    "f-pause" => ("#fbe3a0", "pause"),
                    "f-partition" => ("#c6d8fb", "partition"),
                    "f-wipe" => ("#e1cdf7", "wipe"),
                    "f-link" => ("#bfe8e4", "peer link (proxy)"),
                    _ => ("#dde1e8", "other fault"),
                };
                format!(r#"<span><i style="background:{color}"></i>{name}</span>"#)
            })
            .collect()
    };
    let violation_legend = if markers.is_empty() {
        ""
    } else {
        r#"<span><i style="background:#b42318;border-radius:50%"></i>violation (click for its operations)</span>"#
    };
    let _ = write!(
        out,
        r#"<section id="throughput-section"><h2>Throughput: operations per {bin} by outcome</h2><div class="legend"><span><i style="background:var(--ok)"></i>ok</span><span><i style="background:var(--fail)"></i>fail</span><span><i style="background:var(--unknown)"></i>unknown</span>{lf}{vl}</div>{chart}</section>"#,
        bin = fmt_duration(series.width),
        lf = legend_faults.join(""),
        vl = violation_legend,
        chart = svg::throughput(&series, &windows, &markers)
    );
    let _ = write!(
        out,
        r#"<section id="latency-section"><h2>Latency of acknowledged operations per {bin} (log scale)</h2><div class="legend"><span><i style="background:#3f6fd8"></i>p50</span><span><i style="background:#9b51e0"></i>p99</span>{lf}{vl}</div>{chart}</section>"#,
        bin = fmt_duration(series.width),
        lf = legend_faults.join(""),
        vl = violation_legend,
        chart = svg::latency(&series, &windows, &markers)
    );

    // Faults.
    if !windows.is_empty() {
        let per_fault: Vec<&Value> = s_of(summary, "faults")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        out.push_str(r#"<section id="faults"><h2>Faults</h2><table><thead><tr><th>start</th><th>fault</th><th class="num">lasted</th><th class="num">longest gap</th><th class="num">recovered after</th><th>what</th></tr></thead><tbody>"#);
        for (i, w) in windows.iter().enumerate() {
            let f = per_fault.get(i).copied();
            let num = |k: &str| f.and_then(|f| f.get(k)).and_then(Value::as_f64);
            let _ = write!(
                out,
                r#"<tr class="fault-row {cls}"><td class="num">{start}</td><td><span class="badge" style="background:{color}">{name}</span></td><td class="num">{lasted}</td><td class="num">{gap}</td><td class="num">{rec}</td><td>{d}</td></tr>"#,
                cls = svg::fault_class(&w.fault),
                color = match svg::fault_class(&w.fault) {
                    "f-kill" => "#a1261d",
                    "f-pause" => "#8a5a00",
                    "f-partition" => "#1f4fb3",
                    "f-wipe" => "#6a2ca8",
                    "f-link" => "#0e6b63",
                    _ => "#475467",
                },
                start = fmt_duration(w.start),
                name = esc(&w.fault),
                lasted = fmt_duration(w.end - w.start),
                gap = num("longest_gap_s").map_or("-".into(), |g| format!("{g:.2} s")),
                rec = match f {
                    Some(f) => f
                        .get("recovered_after_s")
                        .and_then(Value::as_f64)
                        .map_or("never".into(), |r| format!("{r:.2} s")),
                    None => "-".into(),
                },
                d = esc(&w.detail),
            );
        }
        out.push_str("</tbody></table></section>");
    }

    // Violations.
    if !markers.is_empty() || input.checkers.iter().any(|c| !c.violations.is_empty()) {
        out.push_str(
            r#"<section id="violations"><h2>Violations: the minimal failing windows</h2>"#,
        );
        let mut number = 0;
        for c in &input.checkers {
            for v in &c.violations {
                number += 1;
                let _ = write!(
                    out,
                    r#"<div class="violation" id="violation-{number}" data-checker="{c}" data-anomaly="{a}"><h3>#{number} {a} on key <code>{k}</code> <span class="muted">({c})</span></h3><p class="explanation">{e}</p>"#,
                    c = esc(&c.checker),
                    a = esc(&v.anomaly),
                    k = esc(&v.key),
                    e = esc(&v.explanation),
                );
                out.push_str(&svg::window_timeline(h, &v.ops));
                out.push_str(r#"<table class="window-ops"><thead><tr><th class="num">op</th><th class="num">process</th><th>f</th><th>key</th><th>argument</th><th class="num">invoke</th><th class="num">complete</th><th>outcome</th><th>result</th></tr></thead><tbody>"#);
                let mut shown = 0;
                for &id in &v.ops {
                    let Some(op) = h.ops.get(id) else { continue };
                    shown += 1;
                    let arg = match &op.call {
                        Call::Write { value } | Call::Append { value } | Call::Add { value } => {
                            value.clone()
                        }
                        Call::WriteTtl { value, ttl_ms } => format!("{value} px {ttl_ms}"),
                        Call::Cas { expected, value } => {
                            format!("{} → {value}", expected.as_deref().unwrap_or("nil"))
                        }
                        Call::Incr { by } => format!("by {by}"),
                        Call::LockAcquire { owner } => format!("owner {owner}"),
                        Call::LockRelease { owner, token } => match token {
                            Some(t) => format!("owner {owner}, token {t}"),
                            None => format!("owner {owner}"),
                        },
                        Call::Read | Call::Delete => String::new(),
                    };
                    let (oc, result) = match &op.outcome {
                        Outcome::Ok(crate::history::Val::Nil) if !matches!(op.call, Call::Read) => {
                            ("ok", String::new())
                        }
                        Outcome::Ok(v) => ("ok", v.to_string()),
                        Outcome::Fail => ("fail", String::new()),
                        Outcome::Unknown => ("unknown", String::new()),
                    };
                    let _ = write!(
                        out,
                        r#"<tr class="window-op op-{oc}" data-op="{id}"><td class="num">#{id}</td><td class="num">{p}</td><td>{f}</td><td><code>{k}</code></td><td><code>{arg}</code></td><td class="num">{inv}</td><td class="num">{comp}</td><td><span class="badge {oc}">{oc}</span></td><td><code>{result}</code></td></tr>"#,
                        p = op.process,
                        f = op.call.name(),
                        k = esc(&op.key),
                        arg = esc(&arg),
                        inv = fmt_duration(op.invoke),
                        comp = op.complete.map_or("never".into(), fmt_duration),
                        result = esc(&result),
                    );
                }
                if shown == 0 {
                    // The checker named operations this history does not have:
                    // show its own rendering of them.
                    for line in &v.window {
                        let _ = write!(
                            out,
                            r#"<tr class="window-op"><td colspan="9"><code>{}</code></td></tr>"#,
                            esc(line)
                        );
                    }
                }
                out.push_str("</tbody></table></div>");
            }
        }
        out.push_str("</section>");
    }
    let _ = write!(
        out,
        r#"</main><footer>Made by raftcache-chaos {} from {} ({} operations, {} nemesis events). Hover over a bar, point or fault for details.</footer></body></html>"#,
        env!("CARGO_PKG_VERSION"),
        esc(&input.source),
        h.ops.len(),
        h.nemesis.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{check_all, Budget};

    const STALE: &str = r#"
{"process":1,"key":"x","f":"write","value":"a","invoke":0,"complete":10,"outcome":"ok"}
{"nemesis":"partition-leader","phase":"start","time":15,"nodes":[1],"detail":"isolated <1>"}
{"process":2,"key":"x","f":"write","value":"b","invoke":20,"complete":30,"outcome":"ok"}
{"process":3,"key":"x","f":"read","invoke":40,"complete":50,"outcome":"ok","result":"a"}
{"nemesis":"partition-leader","phase":"end","time":45,"nodes":[1],"detail":"healed"}
"#;

    fn page(text: &str) -> String {
        let h = History::parse(text).unwrap();
        let reports = check_all(&h, &Budget::default()).unwrap();
        let checkers = reports.iter().map(|r| CheckerView::from_report(r, None)).collect();
        render(&Input { history: &h, checkers, summary: None, source: "t.jsonl".into() })
    }

    #[test]
    fn a_violation_is_marked_and_its_window_tabled() {
        let html = page(STALE);
        assert!(html.contains(r#"data-verdict="invalid""#));
        assert!(html.contains(
            r#"<g class="violation-marker" data-violation="1" data-from-ns="0" data-to-ns="50">"#
        ));
        assert!(html.contains(r#"id="violation-1""#));
        assert!(html.contains(r#"<tr class="window-op op-ok" data-op="2">"#));
        assert!(
            html.contains(r#"data-fault="partition-leader" data-start-ns="15" data-end-ns="45""#)
        );
        assert!(html.contains("isolated &lt;1&gt;"), "details are escaped");
        assert!(!html.contains("<script"), "no script");
        assert!(
            !html.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "").contains("http"),
            "nothing fetched"
        );
    }

    #[test]
    fn summary_checkers_are_read_back() {
        let h = History::parse(STALE).unwrap();
        let reports = check_all(&h, &Budget::default()).unwrap();
        let summary = serde_json::json!({
            "verdict": "invalid",
            "checkers": reports.iter().map(|r| serde_json::json!({
                "checker": r.checker, "keys": r.keys, "ops": 3,
                "verdict": if r.verdict.is_invalid() { "invalid" } else { "valid" },
                "report": r,
            })).collect::<Vec<_>>(),
        });
        let views = CheckerView::from_summary(&summary).unwrap();
        let direct: Vec<CheckerView> =
            reports.iter().map(|r| CheckerView::from_report(r, Some(3))).collect();
        assert_eq!(views, direct);
        assert!(views.iter().any(|v| v.checker == "linearizable" && v.violations.len() == 1));
    }

    #[test]
    fn a_valid_history_has_no_marker() {
        let html = page(&STALE.replace(r#""result":"a""#, r#""result":"b""#));
        assert!(html.contains(r#"data-verdict="valid""#));
        assert!(!html.contains("violation-marker"));
        assert!(html.contains(r#"class="verdict-row verdict-valid" data-checker="linearizable""#));
    }
}
