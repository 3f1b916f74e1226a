"""The HTML report of `raftcache-chaos`, looked at in a real headless browser
(Debian's chromium).

`raftcache-chaos report` renders saved histories of
`crates/chaos/tests/histories/`: a real run (three nodes, four faults, 2220
operations, with its summary.json) and hand-written invalid ones (a stale
read; and the real run with one read's result changed to a value nobody
wrote). For each page:

* chromium loads it with a probe script appended (the page itself has no
  script) that measures what the browser laid out: the charts' size, how
  many bars, points, fault shades and violation markers have a non-empty box,
  the computed colours; `--dump-dom` returns it. The test checks those against
  the history: one rendered bar per outcome and second with operations, the
  bars' counts adding up to the history's operations, one shaded and labelled
  window per fault at the fault's times, one verdict row per checker with the
  verdict `raftcache-chaos check --json` gives, and for a violation a marker
  on both charts and a table of exactly the operations the checker named.
* chromium takes a screenshot of the page as it is, decoded here (zlib and
  struct): the right size, not blank (many distinct colours, no colour
  covering most of it), the ok bars' green, the fault windows' shading and,
  for a violation, the marker's red really drawn.

Needs RAFTCACHE_BIN (the `raftcache-chaos` binary is looked for beside it) or
RAFTCACHE_CHAOS_BIN, and chromium: when it is missing the test installs it with
apt-get (as root, or through sudo). If that fails, or chromium cannot run,
the test fails with the reason; it is never skipped. No root or network
namespaces are needed otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HISTORIES = ROOT / "crates" / "chaos" / "tests" / "histories"
REAL_RUN = HISTORIES / "valid__run_kills_pauses_partitions.jsonl"
REAL_SUMMARY = HISTORIES / "run_kills_pauses_partitions.summary.json"
STALE_READ = HISTORIES / "invalid__linearizable__non-linearizable-read__stale_read.jsonl"
CHECKERS = ["linearizable", "lost-writes", "counter", "list-append", "lock"]
WINDOW = (1400, 2400)

# Colours of the page's CSS, as the browser should paint them.
OK_GREEN = (0x2E, 0x9D, 0x5B)
VIOLATION_RED = (0xB4, 0x23, 0x18)
# Fault shades: the colour at opacity .55 over white.
SHADES = {"f-kill": (0xF7, 0xC6, 0xC2), "f-pause": (0xFB, 0xE3, 0xA0),
          "f-partition": (0xC6, 0xD8, 0xFB)}


def _over_white(rgb, alpha=0.55):
    return tuple(round(255 - (255 - c) * alpha) for c in rgb)


def _fault_class(name: str) -> str:
    for prefix in ("kill", "pause", "partition", "wipe"):
        if name.startswith(prefix):
            return f"f-{prefix}"
    return "f-other"


# --------------------------------------------------------------------------
# Fixtures: the binary and the browser.


@pytest.fixture(scope="module")
def chaos_bin() -> str:
    path = os.environ.get("RAFTCACHE_CHAOS_BIN")
    if not path:
        node = os.environ.get("RAFTCACHE_BIN")
        if not node:
            pytest.fail("set RAFTCACHE_BIN (raftcache-chaos is looked for beside it) or "
                        "RAFTCACHE_CHAOS_BIN; build it with `cargo build -p raftcache-chaos`",
                        pytrace=False)
        path = str(Path(node).parent / "raftcache-chaos")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"{path!r} is not an executable file: build it with "
                    "`cargo build -p raftcache-chaos` (or set RAFTCACHE_CHAOS_BIN)", pytrace=False)
    return path


def _find_chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _install_chromium() -> str:
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]
    else:
        return "chromium is missing, and the test is neither root nor has sudo to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        proc = subprocess.run(prefix + cmd, capture_output=True, text=True, env=env, timeout=900)
        log.append(f"$ {' '.join(prefix + cmd)} -> {proc.returncode}\n{proc.stdout[-1500:]}"
                   f"{proc.stderr[-1500:]}")
        if proc.returncode != 0:
            return "\n".join(log)
    return "\n".join(log)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = _find_chromium()
    if path is None:
        log = _install_chromium()
        path = _find_chromium()
        if path is None:
            pytest.fail("chromium is missing and could not be installed "
                        f"(apt-get install chromium):\n{log}", pytrace=False)
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        pytest.fail(f"{path} --version failed: {proc.stderr[-2000:]}", pytrace=False)
    return path


def _browse(chromium: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
           "--force-device-scale-factor=1", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"chromium failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}",
                    pytrace=False)
    return proc


# --------------------------------------------------------------------------
# The history, as the test reads it (independently of the Rust code).


def _load(path: Path):
    ops, events = [], []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        item = json.loads(line)
        (events if "nemesis" in item else ops).append(item)
    return ops, events


def _faults(events):
    """(name, start, end) of each fault, as the report must shade them."""
    out = []
    for e in sorted(events, key=lambda e: e["time"]):
        if e["phase"] != "start":
            continue
        end = next((x["time"] for x in sorted(events, key=lambda e: e["time"])
                    if x["phase"] == "end" and x["nemesis"] == e["nemesis"]
                    and x["time"] >= e["time"]), None)
        out.append((e["nemesis"], e["time"], end))
    return out


def _check_json(chaos_bin: str, history: Path):
    proc = subprocess.run([chaos_bin, "check", "--json", str(history)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return {r["checker"]: r for r in json.loads(proc.stdout)["reports"]}


# --------------------------------------------------------------------------
# Rendering, probing, decoding.

PROBE = r"""
<script>
(function () {
  function shown(e) { var b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; }
  function count(root, sel) {
    var n = 0; root.querySelectorAll(sel).forEach(function (e) { if (shown(e)) n++; }); return n;
  }
  var out = {charts: {}, scripts: document.scripts.length};
  document.querySelectorAll('svg.chart[id]').forEach(function (svg) {
    var r = svg.getBoundingClientRect();
    var ok = svg.querySelector('rect.bar.ok');
    out.charts[svg.id] = {
      width: r.width, height: r.height,
      bars: count(svg, 'rect.bar'), points: count(svg, 'circle.point'),
      lines: count(svg, 'polyline.line'), shades: count(svg, 'rect.fault-shade'),
      labels: [].map.call(svg.querySelectorAll('text.fault-label'), function (t) {
        return shown(t) ? t.textContent : null; }),
      markers: count(svg, 'circle.violation-dot'),
      ok_fill: ok ? getComputedStyle(ok).fill : null,
      marker_x: [].map.call(svg.querySelectorAll('g.violation-marker'), function (g) {
        var b = g.querySelector('line.violation-line').getBoundingClientRect();
        return {to_ns: +g.dataset.toNs, x: b.left + b.width / 2}; }),
      bin_x: {}
    };
    svg.querySelectorAll('rect.bar').forEach(function (e) {
      var b = e.getBoundingClientRect(); out.charts[svg.id].bin_x[e.dataset.tNs] = [b.left, b.right];
    });
  });
  out.verdicts = [].map.call(document.querySelectorAll('tr.verdict-row'), function (tr) {
    return {checker: tr.dataset.checker, verdict: tr.dataset.verdict, shown: shown(tr),
            badge: getComputedStyle(tr.querySelector('.badge')).backgroundColor};
  });
  out.violations = [].map.call(document.querySelectorAll('div.violation'), function (d) {
    return {checker: d.dataset.checker, anomaly: d.dataset.anomaly, shown: shown(d),
            rows: [].map.call(d.querySelectorAll('tr.window-op'), function (r) { return +r.dataset.op; }),
            bars: count(d, 'g.op-bar rect')};
  });
  out.header = document.querySelector('header').dataset.verdict;
  var pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>
"""


class _Dom(HTMLParser):
    """Collects the elements of a dumped DOM: (tag, attrs) and the probe's text."""

    def __init__(self):
        super().__init__()
        self.elements = []
        self.probe = None
        self._in_probe = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        self._in_probe = tag == "pre" and a.get("id") == "probe"

    def handle_data(self, data):
        if self._in_probe:
            self.probe = (self.probe or "") + data

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_probe = False

    def having(self, tag, cls):
        return [a for t, a in self.elements if t == tag and cls in (a.get("class") or "").split()]


def _read_png(path: Path):
    """(width, height, Counter of RGB colours) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0 and ctype in (2, 6), f"unexpected PNG format {ihdr}"
    bpp = 4 if ctype == 6 else 3
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    prev = bytearray(stride)
    colours = Counter()
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif f == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        else:
            assert f == 0, f"bad PNG filter {f}"
        colours.update(zip(line[0::bpp], line[1::bpp], line[2::bpp]))
        prev = line
    return width, height, colours


def _near(colours: Counter, rgb, tol=3) -> int:
    return sum(n for c, n in colours.items() if all(abs(x - y) <= tol for x, y in zip(c, rgb)))


def _render(chaos_bin, chromium, tmp_path, history: Path, summary: Path | None = None):
    """Renders the report, then returns (html, dumped DOM, probe, screenshot colours)."""
    page = tmp_path / "report.html"
    cmd = [chaos_bin, "report", str(history), "-o", str(page)]
    if summary:
        cmd += ["--summary", str(summary)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    html = page.read_text()
    assert "<script" not in html, "the report itself carries no script"
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") \
        and "https://" not in html, "the report fetches nothing"

    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", PROBE + "</body>"))
    dump = _browse(chromium, tmp_path / "profile-dom", probed.as_uri(), "--dump-dom").stdout
    dom = _Dom()
    dom.feed(dump)
    assert dom.probe, f"the probe did not run in chromium; DOM starts {dump[:500]!r}"
    probe = json.loads(dom.probe)

    shot = tmp_path / "report.png"
    _browse(chromium, tmp_path / "profile-shot", page.as_uri(), f"--screenshot={shot}")
    assert shot.is_file() and shot.stat().st_size > 10_000, "no screenshot"
    width, height, colours = _read_png(shot)
    assert (width, height) == WINDOW, f"screenshot is {width}x{height}"
    return html, dom, probe, colours


def _assert_not_blank(colours: Counter):
    total = sum(colours.values())
    top, n = colours.most_common(1)[0]
    assert len(colours) >= 300, f"only {len(colours)} distinct colours: a blank page?"
    assert n / total < 0.8, f"{top} covers {n / total:.0%} of the screenshot"
    assert _near(colours, OK_GREEN, 0) > 500, "no ok bar painted in the screenshot"


def _assert_verdicts(probe, reports):
    rows = {r["checker"]: r for r in probe["verdicts"]}
    for checker in CHECKERS:
        assert checker in rows, f"no verdict row for {checker}: {probe['verdicts']}"
        assert rows[checker]["shown"], f"the {checker} row is not laid out"
        assert rows[checker]["verdict"] == reports[checker]["verdict"]["verdict"], checker
    colour = {"valid": "rgb(46, 157, 91)", "invalid": "rgb(214, 69, 69)"}
    for r in probe["verdicts"]:
        if r["verdict"] in colour:
            assert r["badge"] == colour[r["verdict"]], r


def _assert_faults(dom: _Dom, probe, faults):
    windows = dom.having("g", "fault-window")
    # Each fault is drawn on both charts.
    assert len(windows) == 2 * len(faults), (len(windows), faults)
    drawn = [(w["data-fault"], int(w["data-start-ns"]), int(w["data-end-ns"]))
             for w in windows[:len(faults)]]
    assert drawn == [(n, s, e) for n, s, e in faults], drawn
    for chart in ("throughput", "latency"):
        c = probe["charts"][chart]
        assert c["shades"] == len(faults), (chart, c)
        assert [x for x in c["labels"] if x] == [n for n, _, _ in faults], (chart, c["labels"])


# --------------------------------------------------------------------------
# The tests.


def test_report_of_a_real_run_renders_charts_faults_and_verdicts(chaos_bin, chromium, tmp_path):
    ops, events = _load(REAL_RUN)
    faults = _faults(events)
    assert len(ops) > 2000 and len(faults) == 4, "the saved run changed"
    reports = _check_json(chaos_bin, REAL_RUN)
    html, dom, probe, colours = _render(chaos_bin, chromium, tmp_path, REAL_RUN, REAL_SUMMARY)

    assert probe["header"] == "valid"
    assert probe["scripts"] == 1, "only the test's probe runs"
    summary = json.loads(REAL_SUMMARY.read_text())
    assert summary["run_id"] in html

    # Throughput: a rendered bar per outcome and second that has operations,
    # adding up to the history's operations, outcome by outcome.
    bars = [a for a in dom.having("rect", "bar")]
    by_outcome = Counter()
    seconds = set()
    for b in bars:
        outcome = [c for c in b["class"].split() if c in ("ok", "fail", "unknown")][0]
        by_outcome[outcome] += int(b["data-n"])
        seconds.add(int(b["data-t-ns"]) // 1_000_000_000)
    want = Counter(op["outcome"] for op in ops)
    assert by_outcome == want, (by_outcome, want)
    expected_seconds = {(op.get("complete") or op["invoke"]) // 1_000_000_000 for op in ops}
    assert seconds == expected_seconds
    t = probe["charts"]["throughput"]
    assert t["width"] > 1000 and t["height"] > 200, t
    assert t["bars"] == len(bars) and t["bars"] >= 30, t
    assert t["ok_fill"] == "rgb(46, 157, 91)", t

    # Latency: p50 and p99 points for every second with an acknowledged op.
    ok_seconds = {op["complete"] // 1_000_000_000 for op in ops if op["outcome"] == "ok"}
    lat = probe["charts"]["latency"]
    assert lat["points"] == 2 * len(ok_seconds), (lat, len(ok_seconds))
    assert lat["lines"] >= 2, lat
    assert lat["width"] > 1000 and lat["height"] > 200, lat

    _assert_faults(dom, probe, faults)
    _assert_verdicts(probe, reports)
    conv = [r for r in probe["verdicts"] if r["checker"] == "convergence"]
    assert conv and conv[0]["verdict"] == "agree", probe["verdicts"]
    assert t["markers"] == 0 and not probe["violations"], "a valid run has no violation"

    _assert_not_blank(colours)
    for name, _, _ in faults:
        shade = _over_white(SHADES[_fault_class(name)])
        assert _near(colours, shade) > 2000, f"the {name} window is not shaded ({shade})"
    assert _near(colours, VIOLATION_RED, 2) < 50, "a violation marker drawn on a valid run?"


def test_report_of_a_stale_read_marks_the_violation_and_tables_its_window(
        chaos_bin, chromium, tmp_path):
    reports = _check_json(chaos_bin, STALE_READ)
    assert reports["linearizable"]["verdict"]["verdict"] == "invalid"
    html, dom, probe, colours = _render(chaos_bin, chromium, tmp_path, STALE_READ)

    assert probe["header"] == "invalid"
    _assert_verdicts(probe, reports)
    named = [(c, v) for c in CHECKERS for v in reports[c]["verdict"].get("violations", [])]
    assert named, "the checkers found nothing"
    assert [(v["checker"], v["anomaly"], v["rows"]) for v in probe["violations"]] == \
        [(c, v["anomaly"], v["ops"]) for c, v in named]
    for v in probe["violations"]:
        assert v["shown"] and v["bars"] == len(v["rows"]), v
    for chart in ("throughput", "latency"):
        assert probe["charts"][chart]["markers"] == len(named), probe["charts"][chart]
    _assert_not_blank(colours)
    assert _near(colours, VIOLATION_RED, 2) > 100, "the violation marker is not painted"


def test_report_of_a_real_run_with_a_phantom_read(chaos_bin, chromium, tmp_path):
    """The real run with one acknowledged read, in the middle of the run, made to
    return a value nobody wrote: the marker lands at that read's time."""
    lines = REAL_RUN.read_text().splitlines()
    ops, events = _load(REAL_RUN)
    reads = [i for i, line in enumerate(lines)
             if line.startswith("{") and '"f":"read"' in line and '"outcome":"ok"' in line
             and '"key":"reg:' in line]
    target = reads[len(reads) // 2]
    op = json.loads(lines[target])
    op["result"] = "never-written"
    lines[target] = json.dumps(op, separators=(",", ":"))
    history = tmp_path / "phantom.jsonl"
    history.write_text("\n".join(lines) + "\n")

    reports = _check_json(chaos_bin, history)
    lin = reports["linearizable"]["verdict"]
    assert lin["verdict"] == "invalid", lin
    html, dom, probe, colours = _render(chaos_bin, chromium, tmp_path, history)
    assert probe["header"] == "invalid"
    _assert_verdicts(probe, reports)
    _assert_faults(dom, probe, _faults(events))
    # The bad read is in the window the page tables, for the linearizable checker.
    op_lines = [ln for ln in lines if ln.startswith("{") and '"nemesis"' not in ln]
    bad_id = next(i for i, ln in enumerate(op_lines) if "never-written" in ln)
    lin_rows = [v["rows"] for v in probe["violations"] if v["checker"] == "linearizable"]
    assert lin_rows and any(bad_id in rows for rows in lin_rows), (bad_id, lin_rows)
    # Its marker is drawn where the browser put that second's bars: at the
    # last completion of the violation's operations, the bad read's or later.
    t = probe["charts"]["throughput"]
    assert t["markers"] >= 1 and t["bars"] >= 30, t
    second = 1_000_000_000
    for m in t["marker_x"]:
        assert m["to_ns"] >= op["complete"] or m["to_ns"] >= op["invoke"], (m, op)
        left, right = t["bin_x"][str(m["to_ns"] // second * second)]
        slack = (right - left) * 0.2
        assert left - slack <= m["x"] <= right + slack, (m, left, right)
    _assert_not_blank(colours)
    assert _near(colours, VIOLATION_RED, 2) > 50, "the violation marker is not painted"
