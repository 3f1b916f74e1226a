#!/usr/bin/env python3
"""Differential test runner for raftcache.

Runs every script of the corpus (``scripts/<group>/<name>.redis``) against a
*reference* server (real Redis 7.0.15) and a *target* server (raftcache, or a
second redis-server when validating the corpus itself) and compares the
replies byte for byte.  It speaks raw RESP over plain sockets (stdlib only) so
that nothing is normalised behind our back.

See README.md in this directory for the script format, the directives and
the format of DIFFERENCES.md.

Command line examples::

    # two servers that are already running
    python3 run.py --reference 127.0.0.1:6379 --target 127.0.0.1:7000

    # let the runner start both servers on free loopback ports
    python3 run.py --reference-bin redis-server \\
        --target-cmd "redis-server --save '' --appendonly no --port {port} --bind 127.0.0.1"
    python3 run.py --reference-bin redis-server --target-bin target/release/raftcache

Importable API::

    from run import run_corpus
    mismatches = run_corpus("127.0.0.1:6379", "127.0.0.1:7000", filter="strings/")

Exit status: 0 when every reply matched (documented differences are reported
but do not fail), 1 when there is at least one undocumented mismatch, 2 on a
usage or setup error.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS_DIR = os.path.join(HERE, "scripts")
DIFFERENCES_FILE = os.path.join(HERE, "DIFFERENCES.md")

# How long !raw waits for more bytes before it considers the answer complete.
RAW_QUIET_SECONDS = 0.3
# How long an ordinary command may take to answer before it is a timeout.
DEFAULT_REPLY_TIMEOUT = 3.0


# ---------------------------------------------------------------------------
# Script parsing
# ---------------------------------------------------------------------------

class ScriptError(Exception):
    """A script file could not be parsed."""


_REPEAT_RE = re.compile(r"\$\(((?:[^)\\]|\\.)*?)\*(\d+)\)")


def _unescape_dq(text: str, pos: int) -> Tuple[bytes, int]:
    """Decode one escape sequence starting at text[pos] == '\\' inside double
    quotes (redis-cli / sdssplitargs rules). Returns (bytes, new_pos)."""
    nxt = text[pos + 1] if pos + 1 < len(text) else ""
    if nxt == "x" and pos + 3 < len(text) and all(
        c in "0123456789abcdefABCDEF" for c in text[pos + 2:pos + 4]
    ):
        return bytes([int(text[pos + 2:pos + 4], 16)]), pos + 4
    mapping = {"n": b"\n", "r": b"\r", "t": b"\t", "b": b"\b", "a": b"\a"}
    if nxt in mapping:
        return mapping[nxt], pos + 2
    if nxt == "":
        raise ScriptError("dangling backslash")
    return nxt.encode("utf-8"), pos + 2


def _decode_escapes(text: str) -> bytes:
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "\\":
            b, i = _unescape_dq(text, i)
            out += b
        else:
            out += text[i].encode("utf-8")
            i += 1
    return bytes(out)


def _try_repeat(text: str, i: int) -> Optional[Tuple[bytes, int]]:
    """`$(TEXT*N)` expands to TEXT repeated N times (TEXT may use the
    double-quote escapes). Returns (bytes, new_pos) or None."""
    if not text.startswith("$(", i):
        return None
    m = _REPEAT_RE.match(text, i)
    if not m:
        return None
    return _decode_escapes(m.group(1)) * int(m.group(2)), m.end()


def tokenize(line: str) -> List[bytes]:
    """Split a command line like redis-cli (sdssplitargs) does, plus the
    `$(TEXT*N)` repetition extension (outside single quotes)."""
    args: List[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in " \t\r\n":
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    raise ScriptError("unbalanced double quotes")
                rep = _try_repeat(line, i)
                if rep:
                    cur += rep[0]
                    i = rep[1]
                    continue
                c = line[i]
                if c == "\\":
                    b, i = _unescape_dq(line, i)
                    cur += b
                    continue
                if c == '"':
                    if i + 1 < n and line[i + 1] not in " \t\r\n":
                        raise ScriptError("closing quote must be followed by a space")
                    i += 1
                    break
                cur += c.encode("utf-8")
                i += 1
            elif insq:
                if i >= n:
                    raise ScriptError("unbalanced single quotes")
                c = line[i]
                if c == "\\" and i + 1 < n and line[i + 1] == "'":
                    cur += b"'"
                    i += 2
                    continue
                if c == "'":
                    if i + 1 < n and line[i + 1] not in " \t\r\n":
                        raise ScriptError("closing quote must be followed by a space")
                    i += 1
                    break
                cur += c.encode("utf-8")
                i += 1
            else:
                if i >= n or line[i] in " \t\r\n":
                    break
                rep = _try_repeat(line, i)
                if rep:
                    cur += rep[0]
                    i = rep[1]
                    continue
                c = line[i]
                if c == '"':
                    inq = True
                elif c == "'":
                    insq = True
                else:
                    cur += c.encode("utf-8")
                i += 1
        args.append(bytes(cur))


@dataclass
class Step:
    line: int
    kind: str                 # cmd | raw | sleep | resp3
    mode: str = "exact"       # exact | sort | sortpairs | approx | type | ignore
    args: List[bytes] = field(default_factory=list)
    raw: bytes = b""
    approx: int = 0
    sleep_ms: int = 0
    text: str = ""

    def describe(self) -> str:
        if self.kind == "raw":
            return "!raw " + _short(repr(self.raw))
        if self.kind == "cmd":
            return " ".join(_show_arg(a) for a in self.args)
        return self.text


def _show_arg(a: bytes) -> str:
    if len(a) > 60:
        return _show_arg(a[:40]) + "...(%d bytes)" % len(a)
    if a and re.fullmatch(rb"[A-Za-z0-9_.:+\-\[\](){}*/@!^$<>=,|]+", a):
        return a.decode()
    return '"' + _esc(a) + '"'


def _esc(b: bytes) -> str:
    out = []
    for ch in b:
        if ch == 0x22:
            out.append('\\"')
        elif ch == 0x5C:
            out.append("\\\\")
        elif ch == 0x0A:
            out.append("\\n")
        elif ch == 0x0D:
            out.append("\\r")
        elif ch == 0x09:
            out.append("\\t")
        elif 0x20 <= ch < 0x7F:
            out.append(chr(ch))
        else:
            out.append("\\x%02x" % ch)
    return "".join(out)


def _short(s: str, limit: int = 300) -> str:
    return s if len(s) <= limit else s[:limit] + "...(%d chars)" % len(s)


def parse_script(path: str) -> List[Step]:
    steps: List[Step] = []
    with open(path, "r", encoding="utf-8") as f:
        lines = f.read().split("\n")
    for idx, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            steps.append(_parse_line(idx, stripped))
        except ScriptError as e:
            raise ScriptError("%s:%d: %s" % (path, idx, e)) from None
    return steps


def _parse_line(idx: int, line: str) -> Step:
    if not line.startswith("!"):
        args = tokenize(line)
        return Step(idx, "cmd", args=args, text=line)
    word, _, rest = line.partition(" ")
    rest = rest.strip()
    d = word[1:]
    if d == "resp3":
        return Step(idx, "resp3", text=line)
    if d == "sleep":
        if not rest.isdigit():
            raise ScriptError("!sleep needs a number of milliseconds")
        return Step(idx, "sleep", sleep_ms=int(rest), text=line)
    if d == "raw":
        toks = tokenize(rest)
        if len(toks) != 1:
            raise ScriptError("!raw takes exactly one (quoted) argument")
        return Step(idx, "raw", raw=toks[0], text=line)
    if d == "approx":
        num, _, rest2 = rest.partition(" ")
        if not num.isdigit():
            raise ScriptError("!approx needs a tolerance")
        args = tokenize(rest2)
        if not args:
            raise ScriptError("!approx needs a command")
        return Step(idx, "cmd", mode="approx", approx=int(num), args=args, text=line)
    if d in ("sort", "sortpairs", "type", "ignore"):
        args = tokenize(rest)
        if not args:
            raise ScriptError("!%s needs a command" % d)
        return Step(idx, "cmd", mode=d, args=args, text=line)
    raise ScriptError("unknown directive %r" % word)


# ---------------------------------------------------------------------------
# RESP
# ---------------------------------------------------------------------------

class ProtocolViolation(Exception):
    pass


class ConnectionClosed(Exception):
    pass


class ReplyTimeout(Exception):
    pass


@dataclass
class Node:
    """A parsed RESP2/RESP3 reply.

    kind is one of: simple, error, int, bulk, nullbulk, array, nullarray,
    map, set, double, null, bool, verbatim, bignum, push, blobError, attr.
    value holds bytes (simple/error/bulk/double/bignum/blobError), int,
    bool, list of Node (array/set/push), list of (Node, Node) (map),
    (format bytes, data bytes) for verbatim, and for attr:
    (list of pairs, Node).
    """
    kind: str
    value: Any = None


def encode_command(args: List[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Reader:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()
        self.pos = 0
        self.deadline: Optional[float] = None

    def _fill(self) -> None:
        timeout = None
        if self.deadline is not None:
            timeout = self.deadline - time.monotonic()
            if timeout <= 0:
                raise ReplyTimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise ReplyTimeout() from None
        except OSError:
            raise ConnectionClosed() from None
        if not data:
            raise ConnectionClosed()
        self.buf += data

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            self._fill()

    def readexact(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            self._fill()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def read_reply(self, timeout: float) -> Tuple[Node, bytes]:
        self.deadline = time.monotonic() + timeout
        start = self.pos
        node = parse_node(self)
        raw = bytes(self.buf[start:self.pos])
        del self.buf[:self.pos]
        self.pos = 0
        return node, raw


def _int(line: bytes) -> int:
    try:
        return int(line)
    except ValueError:
        raise ProtocolViolation("bad integer %r" % line) from None


def parse_node(r: Reader) -> Node:
    line = r.readline()
    if not line:
        raise ProtocolViolation("empty reply line")
    t, body = line[:1], line[1:]
    if t == b"+":
        return Node("simple", body)
    if t == b"-":
        return Node("error", body)
    if t == b":":
        return Node("int", _int(body))
    if t == b"$":
        n = _int(body)
        if n < 0:
            return Node("nullbulk")
        data = r.readexact(n + 2)
        if data[-2:] != b"\r\n":
            raise ProtocolViolation("bulk not terminated by CRLF")
        return Node("bulk", data[:-2])
    if t in (b"*", b"~", b">"):
        n = _int(body)
        if n < 0:
            return Node("nullarray")
        kind = {b"*": "array", b"~": "set", b">": "push"}[t]
        return Node(kind, [parse_node(r) for _ in range(n)])
    if t == b"%":
        n = _int(body)
        return Node("map", [(parse_node(r), parse_node(r)) for _ in range(n)])
    if t == b"|":
        n = _int(body)
        pairs = [(parse_node(r), parse_node(r)) for _ in range(n)]
        return Node("attr", (pairs, parse_node(r)))
    if t == b",":
        return Node("double", body)
    if t == b"_":
        return Node("null")
    if t == b"#":
        if body not in (b"t", b"f"):
            raise ProtocolViolation("bad boolean %r" % body)
        return Node("bool", body == b"t")
    if t == b"(":
        return Node("bignum", body)
    if t in (b"=", b"!"):
        n = _int(body)
        data = r.readexact(n + 2)
        if data[-2:] != b"\r\n":
            raise ProtocolViolation("blob not terminated by CRLF")
        data = data[:-2]
        if t == b"!":
            return Node("blobError", data)
        if len(data) < 4 or data[3:4] != b":":
            raise ProtocolViolation("bad verbatim string")
        return Node("verbatim", (data[:3], data[4:]))
    raise ProtocolViolation("unknown reply type byte %r" % t)


def parse_all(data: bytes) -> List[Node]:
    """Parse a complete byte string holding zero or more replies (used for
    tests of the parser itself)."""

    class _Buf(Reader):
        def __init__(self, d: bytes):
            self.buf = bytearray(d)
            self.pos = 0
            self.deadline = None

        def _fill(self) -> None:
            raise ProtocolViolation("truncated reply")

    r = _Buf(data)
    out = []
    while r.pos < len(r.buf):
        out.append(parse_node(r))
    return out


def serialize(node: Node) -> bytes:
    """Canonical RESP encoding of a (possibly normalised) tree."""
    k, v = node.kind, node.value
    if k == "simple":
        return b"+" + v + b"\r\n"
    if k == "error":
        return b"-" + v + b"\r\n"
    if k == "int":
        return b":%d\r\n" % v
    if k == "bulk":
        return b"$%d\r\n%s\r\n" % (len(v), v)
    if k == "nullbulk":
        return b"$-1\r\n"
    if k == "nullarray":
        return b"*-1\r\n"
    if k in ("array", "set", "push"):
        p = {"array": b"*", "set": b"~", "push": b">"}[k]
        return p + b"%d\r\n" % len(v) + b"".join(serialize(x) for x in v)
    if k == "map":
        return b"%%%d\r\n" % len(v) + b"".join(serialize(a) + serialize(b) for a, b in v)
    if k == "attr":
        pairs, inner = v
        return (b"|%d\r\n" % len(pairs)
                + b"".join(serialize(a) + serialize(b) for a, b in pairs)
                + serialize(inner))
    if k == "double":
        return b"," + v + b"\r\n"
    if k == "null":
        return b"_\r\n"
    if k == "bool":
        return b"#t\r\n" if v else b"#f\r\n"
    if k == "bignum":
        return b"(" + v + b"\r\n"
    if k == "blobError":
        return b"!%d\r\n%s\r\n" % (len(v), v)
    if k == "verbatim":
        data = v[0] + b":" + v[1]
        return b"=%d\r\n%s\r\n" % (len(data), data)
    raise ValueError(k)


def render(node: Node) -> str:
    """Human readable, one line."""
    k, v = node.kind, node.value
    if k == "simple":
        return "+" + _esc(v)
    if k == "error":
        return "-" + _esc(v)
    if k == "blobError":
        return "!" + _esc(v)
    if k == "int":
        return "(integer) %d" % v
    if k == "bulk":
        if len(v) > 200:
            return '"%s"...(%d bytes)' % (_esc(v[:100]), len(v))
        return '"' + _esc(v) + '"'
    if k in ("nullbulk", "nullarray"):
        return "(nil:%s)" % ("$-1" if k == "nullbulk" else "*-1")
    if k == "null":
        return "(null _)"
    if k == "bool":
        return "(true)" if v else "(false)"
    if k == "double":
        return "(double) " + v.decode("latin1")
    if k == "bignum":
        return "(bignum) " + v.decode("latin1")
    if k == "verbatim":
        return "(verbatim %s) \"%s\"" % (v[0].decode("latin1"), _esc(v[1][:200]))
    if k in ("array", "set", "push"):
        o, c = {"array": ("[", "]"), "set": ("~{", "}"), "push": (">[", "]")}[k]
        return o + ", ".join(render(x) for x in v) + c
    if k == "map":
        return "%{" + ", ".join(render(a) + ": " + render(b) for a, b in v) + "}"
    if k == "attr":
        pairs, inner = v
        return "|{" + ", ".join(render(a) + ": " + render(b) for a, b in pairs) + "} " + render(inner)
    if k == "multi":
        return "%d replies: " % len(v) + " | ".join(render(x) for x in v)
    return repr(node)


# ---------------------------------------------------------------------------
# Results and normalisation
# ---------------------------------------------------------------------------

@dataclass
class Result:
    """What one server answered to one step."""
    raw: bytes = b""
    node: Optional[Node] = None
    closed: bool = False          # server closed the connection
    timeout: bool = False         # no (complete) reply in time
    error: str = ""               # unparseable reply etc.

    def readable(self) -> str:
        parts = []
        if self.node is not None:
            parts.append(render(self.node))
        elif self.raw:
            parts.append("raw " + repr(self.raw))
        if self.error:
            parts.append("<%s>" % self.error)
        if self.timeout:
            parts.append("<no reply within timeout>")
        if self.closed:
            parts.append("<connection closed>")
        if not parts:
            parts.append("<nothing>")
        return _short(" ".join(parts), 2000)

    def status(self) -> Tuple[bool, bool, str]:
        return (self.closed, self.timeout, self.error)


def _sort_key(node: Node) -> bytes:
    return serialize(node)


def _sort_node(node: Node, pairs: bool) -> Node:
    k, v = node.kind, node.value
    if k == "map":
        return Node("map", sorted(v, key=lambda p: (_sort_key(p[0]), _sort_key(p[1]))))
    if k not in ("array", "set", "push"):
        return node
    # SCAN-family reply: [cursor, [elements]] -> sort the elements
    if (k == "array" and len(v) == 2 and v[0].kind == "bulk"
            and v[1].kind in ("array", "set")):
        return Node(k, [v[0], _sort_node(v[1], pairs)])
    if pairs and k == "array" and len(v) % 2 == 0:
        chunks = [(v[i], v[i + 1]) for i in range(0, len(v), 2)]
        chunks.sort(key=lambda p: (_sort_key(p[0]), _sort_key(p[1])))
        return Node(k, [x for p in chunks for x in p])
    return Node(k, sorted(v, key=_sort_key))


def _type_sig(node: Optional[Node]) -> str:
    if node is None:
        return "none"
    if node.kind in ("array", "set", "push", "map"):
        return "%s/%d" % (node.kind, len(node.value))
    if node.kind == "attr":
        return "attr " + _type_sig(node.value[1])
    return node.kind


def _approx_equal(a: Node, b: Node, tol: int) -> bool:
    if a.kind == "int" and b.kind == "int":
        return abs(a.value - b.value) <= tol
    if a.kind in ("array", "set") and a.kind == b.kind:
        return len(a.value) == len(b.value) and all(
            _approx_equal(x, y, tol) for x, y in zip(a.value, b.value))
    return serialize(a) == serialize(b)


def results_equal(step: Step, ref: Result, tgt: Result) -> bool:
    if ref.status() != tgt.status():
        return False
    if step.kind == "raw" or step.mode == "exact":
        return ref.raw == tgt.raw
    if ref.node is None or tgt.node is None:
        return ref.raw == tgt.raw
    if step.mode == "type":
        return _type_sig(ref.node) == _type_sig(tgt.node)
    if step.mode == "sort":
        return serialize(_sort_node(ref.node, False)) == serialize(_sort_node(tgt.node, False))
    if step.mode == "sortpairs":
        return serialize(_sort_node(ref.node, True)) == serialize(_sort_node(tgt.node, True))
    if step.mode == "approx":
        return _approx_equal(ref.node, tgt.node, step.approx)
    raise ValueError(step.mode)


# ---------------------------------------------------------------------------
# Connections
# ---------------------------------------------------------------------------

def parse_addr(addr: str) -> Tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError("address must be HOST:PORT, got %r" % addr)
    return host, int(port)


class Conn:
    def __init__(self, addr: Tuple[str, int], timeout: float):
        self.addr = addr
        self.timeout = timeout
        self.sock: Optional[socket.socket] = None
        self.reader: Optional[Reader] = None

    def _ensure(self) -> None:
        if self.sock is None:
            self.sock = socket.create_connection(self.addr, timeout=5)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reader = Reader(self.sock)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.reader = None

    def command(self, args: List[bytes]) -> Result:
        try:
            self._ensure()
        except OSError as e:
            return Result(error="cannot connect: %s" % e, closed=True)
        try:
            self.sock.settimeout(self.timeout + 5)
            self.sock.sendall(encode_command(args))
        except OSError:
            self.close()
            return Result(closed=True, error="send failed")
        assert self.reader is not None
        try:
            node, raw = self.reader.read_reply(self.timeout)
            return Result(raw=raw, node=node)
        except ConnectionClosed:
            raw = bytes(self.reader.buf)
            self.close()
            return Result(raw=raw, closed=True)
        except ReplyTimeout:
            raw = bytes(self.reader.buf)
            self.close()
            return Result(raw=raw, timeout=True)
        except ProtocolViolation as e:
            raw = bytes(self.reader.buf)
            self.close()
            return Result(raw=raw, error="unparseable reply: %s" % e)

    def send_raw(self, data: bytes) -> Optional[Result]:
        try:
            self._ensure()
            self.sock.settimeout(self.timeout + 5)
            self.sock.sendall(data)
            return None
        except OSError as e:
            self.close()
            return Result(closed=True, error="send failed: %s" % e)

    def read_quiet(self, quiet: float, limit: float = 10.0) -> Result:
        """Read until the server closes the connection or `quiet` seconds pass
        with nothing new."""
        assert self.sock is not None and self.reader is not None
        data = bytearray(self.reader.buf[self.reader.pos:])
        closed = False
        end = time.monotonic() + limit
        self.sock.setblocking(False)
        try:
            while time.monotonic() < end:
                ready, _, _ = select.select([self.sock], [], [], quiet)
                if not ready:
                    break
                try:
                    chunk = self.sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
        finally:
            if not closed:
                self.sock.settimeout(self.timeout + 5)
        if closed:
            self.close()
        else:
            self.reader.buf = bytearray()
            self.reader.pos = 0
        res = Result(raw=bytes(data), closed=closed)
        try:
            nodes = parse_all(bytes(data))
            if len(nodes) == 1:
                res.node = nodes[0]
            elif nodes:
                res.node = Node("multi", nodes)  # several replies (display only)
        except ProtocolViolation:
            pass
        return res


def _run_pair(f1, f2):
    """Run two callables concurrently, return both results."""
    out: List[Any] = [None, None]
    errors: List[Optional[BaseException]] = [None, None]

    def go(i, f):
        try:
            out[i] = f()
        except BaseException as e:  # re-raised in the calling thread
            errors[i] = e

    t = threading.Thread(target=go, args=(1, f2))
    t.start()
    go(0, f1)
    t.join()
    for e in errors:
        if e is not None:
            raise e
    return out[0], out[1]


# ---------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------

@dataclass
class Mismatch:
    script: str          # path relative to tests/differential
    line: int
    command: str
    reference: str      # readable reference reply
    target: str         # readable target reply
    reference_raw: bytes = b""
    target_raw: bytes = b""
    documented: bool = False
    reason: str = ""     # from DIFFERENCES.md when documented

    def format(self) -> str:
        head = "%s:%d: %s" % (self.script, self.line, self.command)
        if self.documented:
            head += "   [documented: %s]" % self.reason
        return ("%s\n    reference: %s\n    target:    %s\n"
                "    reference raw: %s\n    target raw:    %s" % (
                    head, self.reference, self.target,
                    _short(repr(self.reference_raw), 400),
                    _short(repr(self.target_raw), 400)))


@dataclass
class RunStats:
    scripts: int = 0
    commands: int = 0
    mismatches: List[Mismatch] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def failures(self) -> List[Mismatch]:
        return [m for m in self.mismatches if not m.documented]

    @property
    def documented(self) -> List[Mismatch]:
        return [m for m in self.mismatches if m.documented]


_DIFF_LINE_RE = re.compile(r"^\s*[-*]\s+`([^`:]+):(\d+)`\s*(?:[—–-]+\s*)?(.*)$")


def load_differences(path: str = DIFFERENCES_FILE) -> dict:
    """Parse DIFFERENCES.md: every line of the form
    ``- `scripts/group/name.redis:LINE` — reason ...`` is one entry."""
    out = {}
    if not os.path.exists(path):
        return out
    in_fence = False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith("```"):
                in_fence = not in_fence
                continue
            if in_fence:
                continue
            m = _DIFF_LINE_RE.match(line)
            if m:
                out[(m.group(1).strip(), int(m.group(2)))] = m.group(3).strip()
    return out


def check_differences(differences: dict) -> List[str]:
    """Return warnings for DIFFERENCES.md entries that point nowhere."""
    warnings = []
    for (rel, line) in sorted(differences):
        path = os.path.join(HERE, rel)
        if not os.path.isfile(path):
            warnings.append("DIFFERENCES.md: %s does not exist" % rel)
            continue
        try:
            lines = {s.line for s in parse_script(path) if s.kind in ("cmd", "raw")}
        except ScriptError as e:
            warnings.append("DIFFERENCES.md: %s" % e)
            continue
        if line not in lines:
            warnings.append("DIFFERENCES.md: %s:%d is not a compared command line" % (rel, line))
    return warnings


def list_scripts(filter: Optional[str] = None, root: str = SCRIPTS_DIR) -> List[str]:
    found = []
    for dirpath, _, files in os.walk(root):
        for fn in files:
            if fn.endswith(".redis"):
                full = os.path.join(dirpath, fn)
                rel = os.path.relpath(full, HERE).replace(os.sep, "/")
                if filter is None or filter in rel:
                    found.append(full)
    found.sort()
    return found


def _prepare(addr: Tuple[str, int], timeout: float) -> None:
    c = Conn(addr, timeout)
    try:
        for cmd in ([b"FLUSHALL"], [b"SELECT", b"0"]):
            r = c.command(cmd)
            if r.node is None or r.node.kind == "error":
                raise RuntimeError("%s:%d: %s failed: %s" % (
                    addr[0], addr[1], cmd[0].decode(), r.readable()))
    finally:
        c.close()


def run_script(path: str, ref_addr: Tuple[str, int], tgt_addr: Tuple[str, int],
               differences: dict, stats: RunStats, timeout: float = DEFAULT_REPLY_TIMEOUT,
               verbose: bool = False, out=sys.stdout) -> None:
    rel = os.path.relpath(path, HERE).replace(os.sep, "/")
    steps = parse_script(path)
    _run_pair(lambda: _prepare(ref_addr, timeout), lambda: _prepare(tgt_addr, timeout))
    ref, tgt = Conn(ref_addr, timeout), Conn(tgt_addr, timeout)
    stats.scripts += 1
    if verbose:
        print("== %s" % rel, file=out)
    try:
        for step in steps:
            if step.kind == "sleep":
                time.sleep(step.sleep_ms / 1000.0)
                continue
            if step.kind == "resp3":
                ref.command([b"HELLO", b"3"])
                tgt.command([b"HELLO", b"3"])
                continue
            stats.commands += 1
            if step.kind == "raw":
                r1, r2 = ref.send_raw(step.raw), tgt.send_raw(step.raw)
                r1, r2 = _run_pair(
                    (lambda: r1) if r1 else (lambda: ref.read_quiet(RAW_QUIET_SECONDS)),
                    (lambda: r2) if r2 else (lambda: tgt.read_quiet(RAW_QUIET_SECONDS)))
            else:
                r1 = ref.command(step.args)
                r2 = tgt.command(step.args)
            if verbose:
                print("  %d: %s\n      -> %s" % (step.line, step.describe(), r1.readable()),
                      file=out)
            if step.mode == "ignore":
                continue
            if not results_equal(step, r1, r2):
                key = (rel, step.line)
                m = Mismatch(rel, step.line, step.describe(), r1.readable(), r2.readable(),
                             r1.raw, r2.raw, key in differences, differences.get(key, ""))
                stats.mismatches.append(m)
                if verbose:
                    print("      MISMATCH target -> %s" % r2.readable(), file=out)
    finally:
        ref.close()
        tgt.close()


def run_corpus_stats(reference_addr: str, target_addr: str, filter: Optional[str] = None,
                     timeout: float = DEFAULT_REPLY_TIMEOUT, verbose: bool = False,
                     out=sys.stdout) -> RunStats:
    ref, tgt = parse_addr(reference_addr), parse_addr(target_addr)
    differences = load_differences()
    stats = RunStats()
    t0 = time.monotonic()
    for path in list_scripts(filter):
        run_script(path, ref, tgt, differences, stats, timeout, verbose, out)
    stats.elapsed = time.monotonic() - t0
    return stats


def run_corpus(reference_addr: str, target_addr: str, filter: Optional[str] = None,
               include_documented: bool = False) -> List[Mismatch]:
    """Run the corpus; return the mismatch records (by default only those not
    listed in DIFFERENCES.md, i.e. the failures)."""
    stats = run_corpus_stats(reference_addr, target_addr, filter, verbose=False,
                             out=open(os.devnull, "w"))
    return stats.mismatches if include_documented else stats.failures


# ---------------------------------------------------------------------------
# Starting servers
# ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_ping(port: int, proc: Optional[subprocess.Popen] = None,
                  timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    last = ""
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited with status %s before answering PING"
                               % proc.returncode)
        try:
            c = Conn(("127.0.0.1", port), 1.0)
            r = c.command([b"PING"])
            c.close()
            if r.raw == b"+PONG\r\n":
                return
            last = r.readable()
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError("server on port %d did not answer PING within %.0fs (%s)"
                       % (port, timeout, last))


class Server:
    """A server process started by the runner (killed by pid on stop())."""

    def __init__(self, argv: List[str], port: int, log_path: Optional[str] = None):
        self.port = port
        self.argv = argv
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        try:
            wait_for_ping(port, self.proc)
        except Exception:
            self.stop()
            raise

    @property
    def addr(self) -> str:
        return "127.0.0.1:%d" % self.port

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def redis_server_argv(binary: str, port: int) -> List[str]:
    return [binary, "--save", "", "--appendonly", "no", "--port", str(port),
            "--bind", "127.0.0.1"]


def raftcache_argv(binary: str, port: int) -> List[str]:
    # A one-node cluster: its Raft and admin ports are picked by the OS so
    # that several servers can run side by side.
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--raft-port", "0", "--admin-port", "0",
            "--metrics-port", "0"]


def cmd_argv(template: str, port: int) -> List[str]:
    return [part.replace("{port}", str(port)) for part in shlex.split(template)]


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description="raftcache differential test runner")
    g1 = p.add_mutually_exclusive_group(required=True)
    g1.add_argument("--reference", metavar="HOST:PORT", help="running reference server")
    g1.add_argument("--reference-bin", metavar="PATH",
                    help="start this redis-server binary as the reference")
    g1.add_argument("--reference-cmd", metavar="CMD",
                    help="start the reference with this command line ({port} is replaced)")
    g2 = p.add_mutually_exclusive_group(required=True)
    g2.add_argument("--target", metavar="HOST:PORT", help="running target server")
    g2.add_argument("--target-bin", metavar="PATH",
                    help="start this binary as the target: PATH --port N --bind 127.0.0.1")
    g2.add_argument("--target-cmd", metavar="CMD",
                    help="start the target with this command line ({port} is replaced), "
                         "e.g. \"redis-server --save '' --appendonly no --port {port} "
                         "--bind 127.0.0.1\"")
    p.add_argument("--filter", metavar="SUBSTRING",
                   help="only run scripts whose path (relative to tests/differential) "
                        "contains SUBSTRING, e.g. 'strings/' or 'incr'")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="print every command with the reference reply")
    p.add_argument("--timeout", type=float, default=DEFAULT_REPLY_TIMEOUT,
                   help="seconds to wait for one reply (default %(default)s)")
    p.add_argument("--server-log-dir", metavar="DIR",
                   help="write the logs of servers the runner starts into DIR")
    a = p.parse_args(argv)

    started: List[Server] = []

    def log_path(name: str) -> Optional[str]:
        if a.server_log_dir:
            os.makedirs(a.server_log_dir, exist_ok=True)
            return os.path.join(a.server_log_dir, name + ".log")
        return None

    try:
        try:
            if a.reference:
                ref_addr = a.reference
            else:
                port = free_port()
                argv_ = (redis_server_argv(a.reference_bin, port) if a.reference_bin
                         else cmd_argv(a.reference_cmd, port))
                s = Server(argv_, port, log_path("reference"))
                started.append(s)
                ref_addr = s.addr
            if a.target:
                tgt_addr = a.target
            else:
                port = free_port()
                argv_ = (raftcache_argv(a.target_bin, port) if a.target_bin
                         else cmd_argv(a.target_cmd, port))
                s = Server(argv_, port, log_path("target"))
                started.append(s)
                tgt_addr = s.addr
            parse_addr(ref_addr)
            parse_addr(tgt_addr)
        except (RuntimeError, ValueError, OSError) as e:
            print("setup error: %s" % e, file=sys.stderr)
            return 2
        try:
            stats = run_corpus_stats(ref_addr, tgt_addr, a.filter, a.timeout, a.verbose)
        except ScriptError as e:
            print("script error: %s" % e, file=sys.stderr)
            return 2
        except RuntimeError as e:
            print("error: %s" % e, file=sys.stderr)
            return 2
    finally:
        for s in started:
            s.stop()

    for w in check_differences(load_differences()):
        print("warning: " + w, file=sys.stderr)
    for m in stats.failures:
        print("MISMATCH " + m.format())
    if stats.documented:
        print("\nDocumented differences (DIFFERENCES.md), not failures:")
        for m in stats.documented:
            print("DOCUMENTED " + m.format())
    print("\n%d scripts, %d commands, %d mismatches" % (
        stats.scripts, stats.commands, len(stats.failures))
        + (" (+%d documented differences)" % len(stats.documented) if stats.documented else "")
        + " in %.1fs" % stats.elapsed)
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
