"""Unit tests of the differential runner itself (tokenizer, RESP2/RESP3
parser, normalisations, DIFFERENCES.md parsing). No server needed."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402
from run import Node, Result, Step  # noqa: E402


def test_tokenize_like_redis_cli():
    assert run.tokenize('SET k "a b"') == [b"SET", b"k", b"a b"]
    assert run.tokenize(r'ECHO "\x41\n\r\t\"\\"') == [b"ECHO", b'A\n\r\t"\\']
    assert run.tokenize("ECHO 'a \"b\\' c'") == [b"ECHO", b"a \"b' c"]
    assert run.tokenize('SET "" x') == [b"SET", b"", b"x"]
    assert run.tokenize("  GET   k  ") == [b"GET", b"k"]
    assert run.tokenize(r'ECHO "\x00\xff"') == [b"ECHO", b"\x00\xff"]


def test_tokenize_repeat():
    assert run.tokenize('SET k "$(ab*3)"') == [b"SET", b"k", b"ababab"]
    assert run.tokenize("SET k $(x*5)") == [b"SET", b"k", b"xxxxx"]
    assert run.tokenize(r'SET k "p$(\x00*2)q"') == [b"SET", b"k", b"p\x00\x00q"]
    assert run.tokenize("SET k '$(x*5)'") == [b"SET", b"k", b"$(x*5)"]
    assert run.tokenize(r'!raw "$(*1\r\n*2)"'.split(" ", 1)[1]) == [b"*1\r\n*1\r\n"]


def test_tokenize_errors():
    for bad in ['ECHO "abc', "ECHO 'abc", 'ECHO "a"b']:
        try:
            run.tokenize(bad)
        except run.ScriptError:
            continue
        raise AssertionError("no error for %r" % bad)


def test_parse_line_directives():
    s = run._parse_line(3, "!approx 2 TTL k")
    assert (s.kind, s.mode, s.approx, s.args) == ("cmd", "approx", 2, [b"TTL", b"k"])
    s = run._parse_line(4, "!sort SMEMBERS s")
    assert (s.mode, s.args) == ("sort", [b"SMEMBERS", b"s"])
    s = run._parse_line(5, '!raw "PING\\r\\n"')
    assert (s.kind, s.raw) == ("raw", b"PING\r\n")
    assert run._parse_line(6, "!sleep 100").sleep_ms == 100
    assert run._parse_line(7, "!resp3").kind == "resp3"


ALL_TYPES = (
    b"+OK\r\n-ERR x\r\n:-5\r\n$3\r\na\r\n\r\n$-1\r\n*-1\r\n*2\r\n:1\r\n$0\r\n\r\n"
    b"%1\r\n+k\r\n,1.5\r\n~2\r\n:1\r\n:2\r\n,inf\r\n_\r\n#t\r\n#f\r\n(123456789012345678901\r\n"
    b"=7\r\ntxt:abc\r\n>2\r\n+message\r\n:1\r\n|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n!5\r\nERR e\r\n"
)


def test_parse_all_resp_types_roundtrip():
    nodes = run.parse_all(ALL_TYPES)
    kinds = [n.kind for n in nodes]
    assert kinds == ["simple", "error", "int", "bulk", "nullbulk", "nullarray", "array", "map",
                     "set", "double", "null", "bool", "bool", "bignum", "verbatim", "push",
                     "attr", "blobError"]
    assert nodes[3].value == b"a\r\n"
    assert nodes[14].value == (b"txt", b"abc")
    assert b"".join(run.serialize(n) for n in nodes) == ALL_TYPES
    for n in nodes:
        assert run.render(n)


def test_sort_normalisations():
    a = run.parse_all(b"*3\r\n$1\r\nb\r\n$1\r\na\r\n$1\r\nc\r\n")[0]
    b = run.parse_all(b"*3\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n")[0]
    step = Step(1, "cmd", mode="sort")
    assert run.results_equal(step, Result(run.serialize(a), a), Result(run.serialize(b), b))
    assert not run.results_equal(Step(1, "cmd"), Result(run.serialize(a), a),
                                 Result(run.serialize(b), b))
    # pairs: [f1 v1 f2 v2] vs [f2 v2 f1 v1]
    p1 = run.parse_all(b"*4\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ny\r\n$1\r\n2\r\n")[0]
    p2 = run.parse_all(b"*4\r\n$1\r\ny\r\n$1\r\n2\r\n$1\r\nx\r\n$1\r\n1\r\n")[0]
    p3 = run.parse_all(b"*4\r\n$1\r\ny\r\n$1\r\n1\r\n$1\r\nx\r\n$1\r\n2\r\n")[0]
    sp = Step(1, "cmd", mode="sortpairs")
    assert run.results_equal(sp, Result(b"1", p1), Result(b"2", p2))
    assert not run.results_equal(sp, Result(b"1", p1), Result(b"3", p3))
    # scan shape: cursor then elements
    s1 = run.parse_all(b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n")[0]
    s2 = run.parse_all(b"*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$1\r\na\r\n")[0]
    assert run.results_equal(step, Result(b"1", s1), Result(b"2", s2))
    # maps
    m1 = run.parse_all(b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n")[0]
    m2 = run.parse_all(b"%2\r\n+b\r\n:2\r\n+a\r\n:1\r\n")[0]
    assert run.results_equal(step, Result(b"1", m1), Result(b"2", m2))


def test_approx_and_type():
    one, two = Node("int", 100), Node("int", 99)
    ap = Step(1, "cmd", mode="approx", approx=1)
    assert run.results_equal(ap, Result(b"a", one), Result(b"b", two))
    assert not run.results_equal(ap, Result(b"a", one), Result(b"b", Node("int", 97)))
    arr1 = Node("array", [Node("int", 5), Node("int", 10)])
    arr2 = Node("array", [Node("int", 6), Node("int", 10)])
    assert run.results_equal(ap, Result(b"a", arr1), Result(b"b", arr2))
    ty = Step(1, "cmd", mode="type")
    assert run.results_equal(ty, Result(b"a", Node("bulk", b"x")), Result(b"b", Node("bulk", b"yy")))
    assert not run.results_equal(ty, Result(b"a", Node("bulk", b"x")), Result(b"b", Node("nullbulk")))
    assert not run.results_equal(ty, Result(b"a", arr1), Result(b"b", Node("array", [])))


def test_connection_state_is_compared():
    step = Step(1, "raw")
    assert not run.results_equal(step, Result(b"-ERR x\r\n", closed=True), Result(b"-ERR x\r\n"))
    assert run.results_equal(step, Result(b"-ERR x\r\n", closed=True),
                             Result(b"-ERR x\r\n", closed=True))


def test_differences_file_parsing(tmp_path):
    p = tmp_path / "D.md"
    p.write_text(
        "# title\n```\n- `scripts/a/b.redis:1` — example, ignored\n```\n"
        "- `scripts/strings/x.redis:12` — long double. Expected: `:1`\n"
        "* `scripts/keys/y.redis:3` - other\n"
        "not an entry `scripts/keys/z.redis:4`\n", encoding="utf-8")
    d = run.load_differences(str(p))
    assert set(d) == {("scripts/strings/x.redis", 12), ("scripts/keys/y.redis", 3)}
    assert d[("scripts/keys/y.redis", 3)] == "other"


def test_corpus_parses_and_is_large_enough():
    scripts = run.list_scripts()
    assert len(scripts) >= 420
    for path in scripts:
        with open(path, encoding="utf-8") as f:
            assert f.readline().startswith("#"), path
        assert run.parse_script(path), path


def test_shipped_differences_file_points_to_commands():
    assert run.check_differences(run.load_differences()) == []
