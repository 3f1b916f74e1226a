//! The charts, as inline SVG: throughput and latency over time with the
//! fault windows shaded and the violations marked, and a Jepsen-style
//! timeline of a violation's operations.

use std::fmt::Write;

use super::series::{fmt_duration, unit_for, Series};
use super::{esc, Marker};
use crate::history::{History, Nanos, NemesisEvent, Outcome, Phase};

pub const WIDTH: f64 = 1100.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 30.0;

/// A fault as drawn: name, detail, start and end (ns).
#[derive(Debug, Clone)]
pub struct Window {
    pub fault: String,
    pub detail: String,
    pub start: Nanos,
    pub end: Nanos,
}

/// The faults of a history as windows (a fault never healed lasts until
/// `end`).
pub fn windows(history: &History, end: Nanos) -> Vec<Window> {
    let mut out = Vec::new();
    let starts = history.nemesis.iter().filter(|e| e.phase == Phase::Start);
    for s in starts {
        let stop = history
            .nemesis
            .iter()
            .find(|e: &&NemesisEvent| {
                e.phase == Phase::End && e.nemesis == s.nemesis && e.time >= s.time
            })
            .map_or(end, |e| e.time);
        out.push(Window {
            fault: s.nemesis.clone(),
            detail: s.detail.clone(),
            start: s.time,
            end: stop.max(s.time),
        });
    }
    out
}

/// The CSS class of a fault's family, for its colour.
pub fn fault_class(name: &str) -> &'static str {
    if name.starts_with("kill") {
        "f-kill"
    } else if name.starts_with("pause") {
        "f-pause"
    } else if name.starts_with("partition") {
        "f-partition"
    } else if name.starts_with("wipe") {
        "f-wipe"
    } else if name.ends_with("-link") {
        "f-link"
    } else {
        "f-other"
    }
}

/// The x scale of a chart over [0, end].
struct X {
    end: f64,
    unit: (&'static str, f64),
}

impl X {
    fn new(end: Nanos) -> X {
        X { end: end.max(1) as f64, unit: unit_for(end) }
    }

    fn at(&self, t: Nanos) -> f64 {
        LEFT + (t as f64 / self.end).min(1.0) * (WIDTH - LEFT - RIGHT)
    }

    /// Vertical grid lines and labels at about ten round times.
    fn axis(&self, s: &mut String, y0: f64, y1: f64) {
        let (name, len) = self.unit;
        let span = self.end / len;
        let raw = span / 10.0;
        let p = 10f64.powf(raw.log10().floor());
        let step =
            [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|&v| v >= raw).unwrap_or(p);
        let mut v = 0.0;
        while v <= span + 1e-9 {
            let x = self.at((v * len) as Nanos);
            let _ = write!(
                s,
                r#"<line class="grid" x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}"/><text class="tick" x="{x:.1}" y="{:.1}" text-anchor="middle">{}{name}</text>"#,
                y1 + 14.0,
                fmt_num(v)
            );
            v += step;
        }
    }
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// Shaded fault windows with their names in two staggered rows above the
/// plot, and the violation markers.
fn overlays(s: &mut String, x: &X, windows: &[Window], markers: &[Marker], h: f64) {
    for (i, w) in windows.iter().enumerate() {
        let (x0, x1) = (x.at(w.start), x.at(w.end));
        let width = (x1 - x0).max(2.0);
        let class = fault_class(&w.fault);
        let label_y = if i % 2 == 0 { 12.0 } else { 25.0 };
        let _ = write!(
            s,
            r#"<g class="fault-window {class}" data-fault="{f}" data-start-ns="{a}" data-end-ns="{b}"><title>{f}: {d} ({from} to {to})</title><rect class="fault-shade" x="{x0:.1}" y="{TOP:.1}" width="{width:.1}" height="{hh:.1}"/><line class="fault-tick" x1="{x0:.1}" y1="{ly:.1}" x2="{x0:.1}" y2="{TOP:.1}"/><text class="fault-label" x="{lx:.1}" y="{label_y:.1}">{f}</text></g>"#,
            f = esc(&w.fault),
            d = esc(&w.detail),
            a = w.start,
            b = w.end,
            from = fmt_duration(w.start),
            to = fmt_duration(w.end),
            hh = h,
            ly = label_y + 2.0,
            lx = x0 + 2.0,
        );
    }
    for (i, m) in markers.iter().enumerate() {
        let (x0, x1) = (x.at(m.from), x.at(m.to));
        // Markers close together are stacked rather than drawn over each other.
        let close = markers[..i].iter().filter(|o| (x.at(o.to) - x1).abs() < 18.0).count();
        let cy = TOP + 10.0 + 22.0 * (close % 8) as f64;
        let _ = write!(
            s,
            r##"<g class="violation-marker" data-violation="{n}" data-from-ns="{f0}" data-to-ns="{f1}"><title>violation {n}: {a} on {k} ({from} to {to})</title><rect class="violation-span" x="{x0:.1}" y="{sy:.1}" width="{w:.1}" height="5"/><line class="violation-line" x1="{x1:.1}" y1="{top:.1}" x2="{x1:.1}" y2="{bot:.1}"/><a href="#violation-{n}"><circle class="violation-dot" cx="{x1:.1}" cy="{cy:.1}" r="8"/><text class="violation-num" x="{x1:.1}" y="{ty:.1}" text-anchor="middle">{n}</text></a></g>"##,
            n = m.number,
            f0 = m.from,
            f1 = m.to,
            a = esc(&m.anomaly),
            k = esc(&m.key),
            from = fmt_duration(m.from),
            to = fmt_duration(m.to),
            w = (x1 - x0).max(1.5),
            top = TOP,
            bot = TOP + h,
            sy = TOP + h - 5.0,
            ty = cy + 4.0,
        );
    }
}

/// Operations per bin, stacked by outcome (ok, fail, unknown).
pub fn throughput(series: &Series, windows: &[Window], markers: &[Marker]) -> String {
    let h = 200.0;
    let total_h = TOP + h + BOTTOM;
    let x = X::new(series.bins.len() as u64 * series.width);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="throughput" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {total_h}" role="img" aria-label="operations per {bin} over time">"#,
        bin = fmt_duration(series.width)
    );
    let max = series.max_total().max(1) as f64;
    let ymax = nice_ceiling(max);
    // Horizontal grid.
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let y = TOP + h - v / ymax * h;
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
    }
    x.axis(&mut s, TOP, TOP + h);
    overlays(&mut s, &x, windows, &[], h);
    let bw = (x.at(series.width) - x.at(0)).max(1.0);
    for (i, b) in series.bins.iter().enumerate() {
        let t = i as u64 * series.width;
        let x0 = x.at(t) + bw * 0.08;
        let w = (bw * 0.84).max(0.8);
        let mut y = TOP + h;
        for (class, n) in [("ok", b.ok), ("fail", b.fail), ("unknown", b.unknown)] {
            if n == 0 {
                continue;
            }
            let hh = n as f64 / ymax * h;
            y -= hh;
            let _ = write!(
                s,
                r#"<rect class="bar {class}" data-t-ns="{t}" data-n="{n}" x="{x0:.2}" y="{y:.2}" width="{w:.2}" height="{hh:.2}"><title>{from}: {n} {class}</title></rect>"#,
                from = fmt_duration(t)
            );
        }
    }
    overlays(&mut s, &x, &[], markers, h);
    let _ = write!(
        s,
        r#"<text class="axis-title" x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">ops per {}</text></svg>"#,
        TOP + h / 2.0,
        TOP + h / 2.0,
        fmt_duration(series.width)
    );
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * p).find(|&c| c >= v).unwrap_or(10.0 * p)
}

/// p50 and p99 latency of the acknowledged operations per bin, on a log
/// scale (a fault turns milliseconds into seconds).
pub fn latency(series: &Series, windows: &[Window], markers: &[Marker]) -> String {
    let h = 200.0;
    let total_h = TOP + h + BOTTOM;
    let x = X::new(series.bins.len() as u64 * series.width);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" id="latency" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {total_h}" role="img" aria-label="latency p50 and p99 over time">"#
    );
    let values: Vec<Nanos> =
        series.bins.iter().flat_map(|b| [b.p50, b.p99]).flatten().map(|v| v.max(1)).collect();
    let lo = values.iter().min().copied().unwrap_or(1) as f64;
    let hi = values.iter().max().copied().unwrap_or(10) as f64;
    let lo_exp = lo.log10().floor() as i32;
    let hi_exp = (hi.log10().ceil() as i32).max(lo_exp + 1);
    let y_of = |v: Nanos| {
        let l = (v.max(1) as f64).log10();
        TOP + h - (l - f64::from(lo_exp)) / f64::from(hi_exp - lo_exp) * h
    };
    for e in lo_exp..=hi_exp {
        let v = 10u64.saturating_pow(e as u32);
        let y = y_of(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_duration(v)
        );
    }
    x.axis(&mut s, TOP, TOP + h);
    overlays(&mut s, &x, windows, &[], h);
    let half = series.width / 2;
    for (class, pick) in [("p99", 1usize), ("p50", 0usize)] {
        let get = |b: &super::series::Bin| if pick == 0 { b.p50 } else { b.p99 };
        // One polyline per run of bins that have a value.
        let mut segment: Vec<(f64, f64)> = Vec::new();
        let mut points = String::new();
        let flush = |seg: &mut Vec<(f64, f64)>, s: &mut String| {
            if seg.len() > 1 {
                let pts: Vec<String> = seg.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = write!(s, r#"<polyline class="line {class}" points="{}"/>"#, pts.join(" "));
            }
            seg.clear();
        };
        for (i, b) in series.bins.iter().enumerate() {
            let t = i as u64 * series.width;
            match get(b) {
                Some(v) => {
                    let (px, py) = (x.at(t + half), y_of(v));
                    segment.push((px, py));
                    let _ = write!(
                        points,
                        r#"<circle class="point {class}" data-t-ns="{t}" data-ns="{v}" cx="{px:.1}" cy="{py:.1}" r="2.6"><title>{from}: {class} {lat}</title></circle>"#,
                        from = fmt_duration(t),
                        lat = fmt_duration(v)
                    );
                }
                None => flush(&mut segment, &mut s),
            }
        }
        flush(&mut segment, &mut s);
        s.push_str(&points);
    }
    overlays(&mut s, &x, &[], markers, h);
    let _ = write!(
        s,
        r#"<text class="axis-title" x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">latency (ok)</text></svg>"#,
        TOP + h / 2.0,
        TOP + h / 2.0
    );
    s
}

/// A violation's operations as bars from invoke to completion, one lane per
/// process, coloured by outcome (an operation that never answered runs off
/// the right edge).
pub fn window_timeline(history: &History, ids: &[usize]) -> String {
    let ops: Vec<_> = ids.iter().filter_map(|&i| history.ops.get(i)).collect();
    let Some(from) = ops.iter().map(|o| o.invoke).min() else {
        return String::new();
    };
    let to = ops.iter().map(|o| o.complete.unwrap_or(o.invoke).max(o.invoke)).max().unwrap_or(from);
    let span = (to - from).max(1);
    let pad = span / 10 + 1;
    let (t0, t1) = (from.saturating_sub(pad), to + pad);
    let mut lanes: Vec<u64> = ops.iter().map(|o| o.process).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let lane_h = 30.0;
    let h = lanes.len() as f64 * lane_h;
    let left = 70.0;
    let w = WIDTH - left - RIGHT;
    let xat = |t: Nanos| left + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * w;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart window-timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {:.1}" role="img" aria-label="the operations of the violation">"#,
        h + 24.0
    );
    for (i, p) in lanes.iter().enumerate() {
        let y = i as f64 * lane_h;
        let _ = write!(
            s,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">process {p}</text><line class="grid" x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/>"#,
            left - 6.0,
            y + lane_h / 2.0 + 4.0,
            y + lane_h,
            WIDTH - RIGHT,
            y + lane_h
        );
    }
    for op in &ops {
        let lane = lanes.iter().position(|&p| p == op.process).unwrap_or(0);
        let y = lane as f64 * lane_h + 5.0;
        let (class, end, open) = match (&op.outcome, op.complete) {
            (Outcome::Ok(_), Some(c)) => ("ok", c, false),
            (Outcome::Fail, Some(c)) => ("fail", c, false),
            (Outcome::Unknown, _) => ("unknown", t1, true),
            (_, None) => ("unknown", t1, true),
        };
        let (x0, x1) = (xat(op.invoke), xat(end.max(op.invoke)));
        let label = op_label(op);
        let _ = write!(
            s,
            r##"<g class="op-bar {class}" data-op="{id}"><title>{full}</title><rect x="{x0:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" rx="3"{dash}/><text class="op-label" x="{tx:.1}" y="{ty:.1}">#{id} {label}</text></g>"##,
            id = op.id,
            full = esc(&op.to_string()),
            bw = (x1 - x0).max(3.0),
            bh = lane_h - 10.0,
            dash = if open { r#" stroke-dasharray="4 3""# } else { "" },
            tx = x0 + 4.0,
            ty = y + 14.0,
            label = esc(&label),
        );
    }
    let _ = write!(
        s,
        r#"<text class="tick" x="{left}" y="{:.1}">{}</text><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text></svg>"#,
        h + 16.0,
        fmt_duration(t0),
        WIDTH - RIGHT,
        h + 16.0,
        fmt_duration(t1)
    );
    s
}

/// A short label for an operation bar: what it did and what it was told.
pub fn op_label(op: &crate::history::Op) -> String {
    use crate::history::Call;
    let args = match &op.call {
        Call::Write { value } | Call::Append { value } => format!(" {value}"),
        Call::Cas { expected, value } => {
            format!(" {}→{value}", expected.as_deref().unwrap_or("nil"))
        }
        Call::Incr { by } if *by != 1 => format!(" by {by}"),
        Call::LockAcquire { owner } | Call::LockRelease { owner, .. } => format!(" {owner}"),
        _ => String::new(),
    };
    let result = match &op.outcome {
        Outcome::Ok(v) => match op.call {
            crate::history::Call::Read | crate::history::Call::Incr { .. } => format!(" → {v}"),
            crate::history::Call::LockAcquire { .. } => format!(" → {v}"),
            _ => String::new(),
        },
        Outcome::Fail => " ✗".to_string(),
        Outcome::Unknown => " ?".to_string(),
    };
    format!("{}{args}{result}", op.call.name())
}
