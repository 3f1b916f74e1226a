#!/usr/bin/env python3
"""Captures COMMAND INFO and COMMAND DOCS from a real redis-server 7.0 for the
commands raftcache implements, into crates/node/data/commands.resp.

The file is one RESP3 map: command name -> [info, docs], as Redis sent them. The
node serves COMMAND from it (listing only the subcommands it implements), so COMMAND INFO/DOCS replies (and redis-cli's hints)
are Redis's own. Regenerate after adding commands:

    redis-server --port 16390 --save "" --daemonize yes
    scripts/capture-command-data.py 16390 > /tmp/commands.resp && cp /tmp/commands.resp crates/node/data/
    redis-cli -p 16390 shutdown nosave

The list of names comes from the engine's command table (printed by
`cargo run -p raftcache-node --bin raftcache -- --list-commands`).
"""
import socket
import subprocess
import sys

class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.send(["HELLO", "3"])
        self.read_raw()

    def send(self, args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)

    def _fill(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_raw(self):
        """Reads one reply, returning (raw bytes, parsed python value)."""
        raw = bytearray()
        value = self._read(raw)
        return bytes(raw), value

    def _read(self, raw):
        line = self._line()
        raw += line + b"\r\n"
        t, rest = line[:1], line[1:]
        if t in b"+-:,#(_":
            return rest
        if t in b"$=!":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            raw += data + b"\r\n"
            return data
        n = int(rest)
        if t in b"%|":
            return [(self._read(raw), self._read(raw)) for _ in range(n)]
        return [self._read(raw) for _ in range(n)]


def main():
    port = int(sys.argv[1])
    names = subprocess.run(
        ["cargo", "run", "-q", "-p", "raftcache-node", "--bin", "raftcache", "--", "--list-commands"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    c = Conn(port)
    entries = []
    for name in names:
        c.send(["COMMAND", "INFO", name])
        info_raw, info = c.read_raw()
        if info in ([None], [b""]):
            # Not a Redis 7.0 command (raftcache's LOCK.*, or a newer
            # Redis's): the node describes it itself (command_docs.rs).
            print(f"skipping {name}: unknown to this redis-server", file=sys.stderr)
            continue
        c.send(["COMMAND", "DOCS", name])
        docs_raw, docs = c.read_raw()
        entries.append((name, strip_info(info_raw), strip_docs(docs_raw)))
    out = sys.stdout.buffer
    out.write(b"%%%d\r\n" % len(entries))
    for name, info_raw, docs_raw in entries:
        out.write(b"$%d\r\n%s\r\n" % (len(name), name.encode()))
        out.write(b"*2\r\n")
        out.write(info_raw)
        out.write(docs_raw)


def strip_info(raw):
    # COMMAND INFO <name> replies *1 then the entry (or *1 _ when unknown).
    return raw.split(b"\r\n", 1)[1]


def strip_docs(raw):
    # COMMAND DOCS <name> replies %1 name docs; keep only the docs map.
    body = raw.split(b"\r\n", 1)[1]
    head, rest = body.split(b"\r\n", 1)  # $len
    n = int(head[1:])
    return rest[n + 2:]


if __name__ == "__main__":
    main()
