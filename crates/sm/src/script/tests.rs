//! Unit tests for the script VM. Expected error texts were produced by a real
//! redis-server 7.0.15 (`redis-cli -p 16500 eval "<script>" 0`), as noted.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::*;
use crate::reply::Reply;

/// A host that records every argv and serves a tiny keyspace.
#[derive(Default)]
pub(super) struct Mock {
    calls: Vec<Vec<Bytes>>,
    kv: BTreeMap<Bytes, Bytes>,
    /// Returned for the next call instead of executing it.
    canned: Option<Reply>,
}

impl Host for Mock {
    fn call(&mut self, argv: &[Bytes]) -> Reply {
        self.calls.push(argv.to_vec());
        if let Some(reply) = self.canned.take() {
            return reply;
        }
        let name = String::from_utf8_lossy(&argv[0]).to_ascii_lowercase();
        match name.as_str() {
            "set" => {
                self.kv.insert(argv[1].clone(), argv[2].clone());
                Reply::Ok
            }
            "get" => self.kv.get(&argv[1]).cloned().map_or(Reply::Nil, Reply::Bulk),
            "incr" => {
                let v = self
                    .kv
                    .get(&argv[1])
                    .map_or(0, |v| String::from_utf8_lossy(v).parse::<i64>().unwrap_or(0))
                    + 1;
                self.kv.insert(argv[1].clone(), Bytes::from(v.to_string()));
                Reply::Int(v)
            }
            "lpush" => Reply::err(crate::reply::errors::WRONGTYPE),
            "ping" => Reply::status("PONG"),
            _ => Reply::Ok,
        }
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn eval_with(
    vm: &mut ScriptVm,
    host: &mut Mock,
    body: &str,
    keys: &[&str],
    args: &[&str],
    opts: &RunOptions,
) -> Reply {
    let keys: Vec<Bytes> = keys.iter().map(|k| b(k)).collect();
    let args: Vec<Bytes> = args.iter().map(|a| b(a)).collect();
    vm.run(body.as_bytes(), &keys, &args, opts, host)
}

fn eval(body: &str) -> Reply {
    let mut vm = ScriptVm::new();
    eval_with(&mut vm, &mut Mock::default(), body, &[], &[], &RunOptions::default())
}

fn err_with_sha(body: &str, text: &str) -> Reply {
    Reply::error(text.replace("<sha>", &sha1_hex(body.as_bytes())))
}

/// (script, expected reply) where `<sha>` stands for the script's SHA1.
fn check_table(cases: &[(&str, &str)]) {
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    for (body, want) in cases {
        let got = eval_with(&mut vm, &mut host, body, &[], &[], &RunOptions::default());
        let want = if let Some(text) = want.strip_prefix('-') {
            err_with_sha(body, text)
        } else {
            Reply::Bulk(b(want))
        };
        assert_eq!(got, want, "script: {body}");
    }
}

/// Every text from `redis-cli -p 16500 eval "<script>" 0` against
/// redis-server 7.0.15 (Debian 7.0.15-1~deb12u10).
#[test]
fn error_texts_match_redis() {
    check_table(&[
        ("return x", "-ERR user_script:1: Script attempted to access nonexistent global variable 'x' script: <sha>, on @user_script:1."),
        ("x = 1", "-ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("redis.call = nil", "-ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("string.len = nil", "-ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("rawset(_G, 'x', 1)", "-ERR Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("setmetatable(_G, nil)", "-ERR Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("getmetatable('').__index = nil return 1", "-ERR user_script:1: Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("table.insert(_G, 1)", "-ERR Attempt to modify a readonly table script: <sha>, on @user_script:1."),
        ("return redis.call('nosuch')", "-ERR Unknown Redis command called from script script: <sha>, on @user_script:1."),
        ("return redis.call('get')", "-ERR Wrong number of args calling Redis command from script script: <sha>, on @user_script:1."),
        ("return redis.call()", "-ERR Please specify at least one argument for this redis lib call script: <sha>, on @user_script:1."),
        ("return redis.call('get', {})", "-ERR Lua redis lib command arguments must be strings or integers script: <sha>, on @user_script:1."),
        ("return redis.call('set', 'f', true)", "-ERR Lua redis lib command arguments must be strings or integers script: <sha>, on @user_script:1."),
        ("return redis.call('set', 'f', nil)", "-ERR Lua redis lib command arguments must be strings or integers script: <sha>, on @user_script:1."),
        ("return redis.pcall('get', {})", "-ERR Lua redis lib command arguments must be strings or integers"),
        ("return redis.pcall()", "-ERR Please specify at least one argument for this redis lib call"),
        ("return redis.pcall('nosuch')", "-ERR Unknown Redis command called from script"),
        ("redis.call('set','k','v') return redis.call('lpush','k','x')", "-WRONGTYPE Operation against a key holding the wrong kind of value script: <sha>, on @user_script:1."),
        ("return redis.pcall('lpush','k','x')", "-WRONGTYPE Operation against a key holding the wrong kind of value"),
        ("return redis.call('multi')", "-ERR This Redis command is not allowed from script script: <sha>, on @user_script:1."),
        ("return redis.call('eval', 'return 1', 0)", "-ERR This Redis command is not allowed from script script: <sha>, on @user_script:1."),
        ("return redis.call('script', 'load', 'x')", "-ERR This Redis command is not allowed from script script: <sha>, on @user_script:1."),
        ("return redis.call('client','list')", "-ERR This Redis command is not allowed from script script: <sha>, on @user_script:1."),
        ("return redis.call('object','foo')", "-ERR Unknown Redis command called from script script: <sha>, on @user_script:1."),
        ("return redis.call('object','encoding')", "-ERR Wrong number of args calling Redis command from script script: <sha>, on @user_script:1."),
        ("return redis.call('script')", "-ERR Wrong number of args calling Redis command from script script: <sha>, on @user_script:1."),
        ("error('boom')", "-ERR user_script:1: boom script: <sha>, on @user_script:1."),
        ("error('boom', 0)", "-ERR boom script: <sha>, on @user_script:1."),
        ("error({err='X y'})", "-X y script: <sha>, on @user_script:1."),
        ("error(redis.error_reply('oops'))", "-ERR oops script: <sha>, on @user_script:1."),
        ("return redis.error_reply('oops')", "-ERR oops"),
        ("return redis.error_reply('MY oops')", "-MY oops"),
        ("return redis.error_reply('-MY oops')", "-MY oops"),
        ("return redis.error_reply('-MYoops')", "-ERR MYoops"),
        ("return {err='oops'}", "-oops"),
        ("return {err='a\\nb'}", "-a b"),
        ("return redis.error_reply('a\\r\\nb\\r\\n')", "-ERR a  b"),
        ("return redis.error_reply(1)", "-ERR wrong number or type of arguments"),
        ("return redis.status_reply()", "-ERR wrong number or type of arguments"),
        ("return redis.sha1hex()", "-ERR wrong number of arguments script: <sha>, on @user_script:1."),
        ("return redis.log(1)", "-ERR redis.log() requires two arguments or more. script: <sha>, on @user_script:1."),
        ("return redis.log('x', 'y')", "-ERR First argument must be a number (log level). script: <sha>, on @user_script:1."),
        ("return redis.log(7, 'y')", "-ERR Invalid debug level. script: <sha>, on @user_script:1."),
        ("return redis.setresp(4)", "-ERR RESP version must be 2 or 3. script: <sha>, on @user_script:1."),
        ("return redis.setresp()", "-ERR redis.setresp() requires one argument. script: <sha>, on @user_script:1."),
        ("return redis.set_repl(8)", "-ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE. script: <sha>, on @user_script:1."),
        ("return redis.set_repl()", "-ERR redis.set_repl() requires two arguments. script: <sha>, on @user_script:1."),
        ("return math.random(0)", "-ERR user_script:1: bad argument #1 to 'random' (interval is empty) script: <sha>, on @user_script:1."),
        ("return type(print)", "-ERR user_script:1: Script attempted to access nonexistent global variable 'print' script: <sha>, on @user_script:1."),
        ("return type(getfenv)", "-ERR user_script:1: Script attempted to access nonexistent global variable 'getfenv' script: <sha>, on @user_script:1."),
        ("return type(os)", "-ERR user_script:1: Script attempted to access nonexistent global variable 'os' script: <sha>, on @user_script:1."),
        ("return type(newproxy)", "-ERR user_script:1: Script attempted to access nonexistent global variable 'newproxy' script: <sha>, on @user_script:1."),
        ("return loadstring('x = 1')()", "-ERR [string \"x = 1\"]:1: Attempt to modify a readonly table script: <sha>, on x = 1:1."),
        ("return cjson.encode(0/0)", "-ERR user_script:1: Cannot serialise number: must not be NaN or Inf script: <sha>, on @user_script:1."),
        ("return cjson.encode({[1]=1, [100]=2})", "-ERR user_script:1: Cannot serialise table: excessively sparse array script: <sha>, on @user_script:1."),
        ("return cjson.encode({[true]=1})", "-ERR user_script:1: Cannot serialise boolean: table key must be a number or string script: <sha>, on @user_script:1."),
        ("return cjson.decode('{bad')", "-ERR user_script:1: Expected object key string but found invalid token at character 2 script: <sha>, on @user_script:1."),
        ("return cjson.decode('')", "-ERR user_script:1: Expected value but found T_END at character 1 script: <sha>, on @user_script:1."),
        ("return cjson.decode('[1,2')", "-ERR user_script:1: Expected comma or array end but found T_END at character 5 script: <sha>, on @user_script:1."),
        ("return bit.band()", "-ERR user_script:1: bad argument #1 to 'band' (number expected, got no value) script: <sha>, on @user_script:1."),
        ("return bit.band('x')", "-ERR user_script:1: bad argument #1 to 'band' (number expected, got string) script: <sha>, on @user_script:1."),
        // Same errors, several lines down and through a local function.
        ("local function f()\n  return redis.call('nosuch')\nend\nreturn f()", "-ERR Unknown Redis command called from script script: <sha>, on @user_script:2."),
        ("local x = 1\n\nreturn y", "-ERR user_script:3: Script attempted to access nonexistent global variable 'y' script: <sha>, on @user_script:3."),
    ]);
}

#[test]
fn compile_errors_match_redis() {
    // redis-cli eval "return 'a" 0
    assert_eq!(
        eval("return 'a"),
        Reply::err("ERR Error compiling script (new function): user_script:1: unfinished string near '<eof>'")
    );
    // A newline inside the string (the error text then has none).
    assert_eq!(
        eval("return {err='a\nb'}"),
        Reply::err(
            "ERR Error compiling script (new function): user_script:1: unfinished string near ''a'"
        )
    );
    let mut vm = ScriptVm::new();
    assert_eq!(
        vm.compile(b"x ="),
        Err(Reply::err("ERR Error compiling script (new function): user_script:1: unexpected symbol near '<eof>'"))
    );
    // A body that looks like bytecode is parsed as text, as Redis's Lua does.
    assert!(
        matches!(vm.compile(b"\x1bLua"), Err(Reply::Error(e)) if e.contains("unexpected symbol"))
    );
    assert_eq!(vm.compile(b"return 1").map(|s| s.to_string()), Ok(sha1_hex(b"return 1")));
}

/// Runs `body` with `canned` as the reply of its one redis.call.
fn with_reply(body: &str, canned: Reply) -> (Reply, Mock) {
    let mut vm = ScriptVm::new();
    let mut host = Mock { canned: Some(canned), ..Mock::default() };
    let reply = eval_with(&mut vm, &mut host, body, &[], &[], &RunOptions::default());
    (reply, host)
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(b(s))
}

/// Describes a Lua value compactly, for the conversion tables below.
const DESCRIBE: &str = r#"
local function d(v)
  local t = type(v)
  if t == 'table' then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      local val = v[k]
      if val == nil then val = v[tonumber(k)] end
      parts[#parts + 1] = k .. '=' .. d(val)
    end
    return '{' .. table.concat(parts, ',') .. '}'
  elseif t == 'string' then return "'" .. v .. "'"
  else return tostring(v) end
end
"#;

#[test]
fn replies_to_lua_resp2() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Ok, "{ok='OK'}"),
        (Reply::status("PONG"), "{ok='PONG'}"),
        (Reply::Int(-7), "-7"),
        (Reply::Bulk(b("x")), "'x'"),
        (Reply::Nil, "false"),
        (Reply::NilArray, "false"),
        (Reply::Array(vec![Reply::Bulk(b("a")), Reply::Nil, Reply::Int(1)]), "{1='a',2=false,3=1}"),
        (
            Reply::Map(vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]),
            "{1='a',2='1',3='b',4='2'}",
        ),
        (Reply::Set(vec![bulk("x")]), "{1='x'}"),
        (Reply::Pairs(vec![(bulk("m"), Reply::Double(1.5))]), "{1='m',2='1.5'}"),
        (Reply::Double(1.1), "'1.1000000000000001'"),
        (Reply::Double(f64::INFINITY), "'inf'"),
        (Reply::Bool(true), "1"),
        (Reply::Bool(false), "0"),
        (Reply::Verbatim(b("txt")), "'txt'"),
    ];
    for (reply, want) in cases {
        let body = format!("{DESCRIBE} return d(redis.call('get', 'k'))");
        let (got, _) = with_reply(&body, reply.clone());
        assert_eq!(got, bulk(want), "converting {reply:?}");
    }
    // Errors: a table for pcall, with the stats flag Redis adds.
    let body = format!("{DESCRIBE} return d(redis.pcall('get', 'k'))");
    let (got, _) = with_reply(&body, Reply::err("ERR no"));
    assert_eq!(got, bulk("{err='ERR no',ignore_error_stats_update=true}"));
}

/// `redis.setresp(3)`: checked against redis-server with HGETALL (map),
/// SMEMBERS (set), ZSCORE (double), GET of a missing key (nil), MGET (holes),
/// ZRANGE WITHSCORES (pairs of [member, {double=…}]).
#[test]
fn replies_to_lua_resp3() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Map(vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]), "{map={a='1',b='2'}}"),
        (Reply::Set(vec![bulk("x")]), "{set={x=true}}"),
        (Reply::Double(1.5), "{double=1.5}"),
        (Reply::Nil, "nil"),
        (Reply::NilArray, "nil"),
        (Reply::Array(vec![Reply::Nil, bulk("b")]), "{2='b'}"),
        (Reply::Pairs(vec![(bulk("m"), Reply::Double(1.5))]), "{1={1='m',2={double=1.5}}}"),
        (Reply::Bool(true), "true"),
        (Reply::Bool(false), "false"),
        (Reply::Verbatim(b("hi")), "{verbatim_string={format='txt',string='hi'}}"),
        (Reply::Int(3), "3"),
        (Reply::Ok, "{ok='OK'}"),
    ];
    for (reply, want) in cases {
        let body = format!("{DESCRIBE} redis.setresp(3) return d(redis.call('get', 'k'))");
        let (got, _) = with_reply(&body, reply.clone());
        assert_eq!(got, bulk(want), "converting {reply:?}");
    }
}

/// What EVAL replies for what a script returns; from redis-server:
/// `return 0/0` and `return 1e30` give -9223372036854775808, `return 3.99`
/// 3, `return {1,2,nil,4}` [1, 2], `return {true,false,'x'}` [1, nil, "x"].
#[test]
fn lua_to_replies() {
    let arr = Reply::Array;
    let cases: Vec<(&str, Reply)> = vec![
        ("return 'x'", bulk("x")),
        ("return 3.99", Reply::Int(3)),
        ("return -3.99", Reply::Int(-3)),
        ("return 0/0", Reply::Int(i64::MIN)),
        ("return 1/0", Reply::Int(i64::MIN)),
        ("return -1/0", Reply::Int(i64::MIN)),
        ("return 1e30", Reply::Int(i64::MIN)),
        ("return true", Reply::Int(1)),
        ("return false", Reply::Nil),
        ("return nil", Reply::Nil),
        ("return {1,2,nil,4}", arr(vec![Reply::Int(1), Reply::Int(2)])),
        ("return {true,false,'x'}", arr(vec![Reply::Int(1), Reply::Nil, bulk("x")])),
        (
            "return {{1}, {'a', {}}}",
            arr(vec![arr(vec![Reply::Int(1)]), arr(vec![bulk("a"), arr(vec![])])]),
        ),
        ("return {ok='fine'}", Reply::status("fine")),
        ("return redis.status_reply('OK')", Reply::Ok),
        ("return redis.status_reply('a\\r\\nb')", Reply::status("a  b")),
        ("return {err='oops'}", Reply::err("oops")),
        ("return {double=0.1}", Reply::Double(0.1)),
        ("return {map={a=1}}", Reply::Map(vec![(bulk("a"), Reply::Int(1))])),
        ("return {set={a=true}}", Reply::Set(vec![bulk("a")])),
        ("return {big_number='123'}", Reply::BigNumber(b("123"))),
        ("return {verbatim_string={format='txt', string='hi'}}", Reply::Verbatim(b("hi"))),
        ("return print", Reply::Nil),
        ("redis.setresp(3) return true", Reply::Bool(true)),
        ("redis.setresp(3) return false", Reply::Bool(false)),
        ("return redis.call('get', 'nokey')", Reply::Nil),
        ("return redis.call('ping')", Reply::status("PONG")),
    ];
    let mut vm = ScriptVm::new();
    for (body, want) in cases {
        let body = body.replace("return print", "return coroutine.create(function() end)");
        let got = eval_with(&mut vm, &mut Mock::default(), &body, &[], &[], &RunOptions::default());
        assert_eq!(got, want, "script: {body}");
    }
    // A table that contains itself ends in an error element, as in Redis
    // (which goes about 8000 levels deep before its Lua stack runs out).
    let mut got = eval("local t = {} t[1] = t return t");
    let mut depth = 0;
    while let Reply::Array(mut items) = got {
        depth += 1;
        got = items.pop().unwrap();
    }
    assert_eq!(got, Reply::err("ERR reached lua stack limit"));
    assert_eq!(depth, convert::MAX_REPLY_DEPTH);
}

/// From redis-server: SET f 0.1 stores "0.10000000000000001", 1e20
/// "1e+20", -0.0 "-0", 1/0 "inf", 0/0 "-nan".
#[test]
fn call_arguments_reach_the_host_as_redis_formats_them() {
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    // (Separate constants: Lua 5.1 merges 0 and -0.0 in a function's constant
    // table, so `-0.0, 1/0` in one function would divide by -0.0.)
    let body = "redis.call('SET', KEYS[1], ARGV[1]) \
                redis.call('set', 'n', 0.1, 1e20, -0.0, math.huge, math.huge - math.huge, 42, -7, 2^53, 'a\\0b', \
                1e16 * 9.9, 1e17, -1e17, 123456789012345678, 2^63)";
    let reply = eval_with(&mut vm, &mut host, body, &["k1"], &["v1"], &RunOptions::default());
    assert_eq!(reply, Reply::Nil);
    let argv = |v: &[&[u8]]| v.iter().map(|s| Bytes::copy_from_slice(s)).collect::<Vec<_>>();
    assert_eq!(host.calls[0], argv(&[b"SET", b"k1", b"v1"]));
    assert_eq!(
        host.calls[1],
        argv(&[
            b"set",
            b"n",
            b"0.10000000000000001",
            b"1e+20",
            b"-0",
            b"inf",
            b"-nan",
            b"42",
            b"-7",
            b"9007199254740992",
            b"a\0b",
            // redis-server 7.0.15 (`redis.call('set', 'n', …)` then GET).
            b"99000000000000000",
            b"1e+17",
            b"-1e+17",
            b"1.2345678901234568e+17",
            b"9.2233720368547758e+18"
        ])
    );
}

#[test]
fn pcall_and_call() {
    check_table(&[
        // redis-cli eval "return {pcall(redis.call, 'nosuch')}" 0 -> [nil, "ERR Unknown…"]
        (
            "local ok, e = pcall(redis.call, 'nosuch') return type(e) .. ':' .. tostring(ok) .. ':' .. e",
            "string:false:ERR Unknown Redis command called from script",
        ),
        ("return type(redis.pcall('nosuch'))", "table"),
        ("return redis.pcall('nosuch')['err']", "ERR Unknown Redis command called from script"),
        ("local ok, e = pcall(error, {err='E x', foo=1}) return e", "E x"),
        ("local ok, e = pcall(error, {1}) return type(e)", "table"),
        ("local ok, e = pcall(error, 'x') return e", "x"),
        ("local ok, e = pcall(error, 'x', 1) return e", "x"),
        ("return tostring(select('#', pcall(function() return 1, 2, 3 end)))", "4"),
        (
            "local ok, e = xpcall(function() redis.call('nosuch') end, function(e) return e end) \
             return type(e) .. ':' .. e.err",
            "table:ERR Unknown Redis command called from script",
        ),
        (
            "local co = coroutine.create(function() redis.call('nosuch') end) \
             local ok, e = coroutine.resume(co) return type(e) .. ':' .. e.err",
            "table:ERR Unknown Redis command called from script",
        ),
        ("return redis.pcall('lpush', 'k', 'x').ignore_error_stats_update and 'y' or 'n'", "y"),
    ]);
    // The call that fails raises; the script stops there.
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    let body =
        "redis.call('set', 'a', '1') redis.call('lpush', 'a', 'x') redis.call('set', 'b', '2')";
    let reply = eval_with(&mut vm, &mut host, body, &[], &[], &RunOptions::default());
    assert!(reply.is_error());
    assert_eq!(host.calls.len(), 2, "the write before the error stays, nothing after runs");
    assert_eq!(host.kv.get(&b("a")), Some(&b("1")));
}

#[test]
fn read_only_runs_refuse_writes() {
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    let ro = RunOptions { read_only: true, ..RunOptions::default() };
    // redis-cli eval_ro "return redis.call('set','a','b')" 0
    let body = "return redis.call('set','a','b')";
    assert_eq!(
        eval_with(&mut vm, &mut host, body, &[], &[], &ro),
        err_with_sha(body, "ERR Write commands are not allowed from read-only scripts. script: <sha>, on @user_script:1.")
    );
    assert_eq!(
        eval_with(&mut vm, &mut host, "return redis.call('get','a')", &[], &[], &ro),
        Reply::Nil
    );
    // A no-writes script is read-only even through EVAL (redis-cli eval
    // "#!lua flags=no-writes\nreturn redis.call('set', 'a', 'b')" 0).
    let body = "#!lua flags=no-writes\nreturn redis.call('set', 'a', 'b')";
    let rw = RunOptions::default();
    assert_eq!(
        eval_with(&mut vm, &mut host, body, &[], &[], &rw),
        err_with_sha(body, "ERR Write commands are not allowed from read-only scripts. script: <sha>, on @user_script:2.")
    );
    // EVAL_RO of a script with a shebang but without no-writes
    // (redis-cli eval_ro "#!lua\nreturn 1" 0).
    assert_eq!(
        eval_with(&mut vm, &mut host, "#!lua\nreturn 1", &[], &[], &ro),
        Reply::err("ERR Can not execute a script with write flag using *_ro command.")
    );
    assert!(host.calls.iter().all(|c| c[0] != "set"));
}

/// From redis-server: each shebang below, run with EVAL.
#[test]
fn shebangs() {
    let ok = |f: ScriptFlags| Ok::<_, Reply>(f);
    let flags = ScriptFlags::default();
    let cases: Vec<(&str, Result<ScriptFlags, Reply>)> = vec![
        ("return 1", ok(ScriptFlags { compat: true, ..flags })),
        ("#!lua\nreturn 1", ok(flags)),
        (
            "#!lua flags=no-writes,allow-oom\nreturn 1",
            ok(ScriptFlags { no_writes: true, allow_oom: true, ..flags }),
        ),
        ("#!lua flags=\nreturn 1", ok(flags)),
        ("#!lua  flags=no-writes  \nreturn 1", ok(ScriptFlags { no_writes: true, ..flags })),
        ("#!lua \"flags=no-writes\"\nreturn 1", ok(ScriptFlags { no_writes: true, ..flags })),
        (
            "#!lua flags=allow-stale,no-cluster,allow-cross-slot-keys\n",
            ok(ScriptFlags {
                allow_stale: true,
                no_cluster: true,
                allow_cross_slot_keys: true,
                ..flags
            }),
        ),
        (
            "#!lua flags=foo\nreturn 1",
            Err(Reply::err("ERR Unexpected flag in script shebang: foo")),
        ),
        (
            "#!lua flags=no-writes,,allow-oom\nreturn 1",
            Err(Reply::err("ERR Unexpected flag in script shebang: ")),
        ),
        ("#!lua name=x\nreturn 1", Err(Reply::err("ERR Unknown lua shebang option: name=x"))),
        (
            "#!python\nreturn 1",
            Err(Reply::err("ERR Unexpected engine in script shebang: #!python")),
        ),
        ("#! lua\nreturn 1", Err(Reply::err("ERR Unexpected engine in script shebang: #!"))),
        ("#!\nreturn 1", Err(Reply::err("ERR Unexpected engine in script shebang: #!"))),
        ("#!lua", Err(Reply::err("ERR Invalid script shebang"))),
        ("#!lua 'flags\nreturn 1", Err(Reply::err("ERR Invalid engine in script shebang"))),
    ];
    for (body, want) in cases {
        assert_eq!(parse_shebang(body.as_bytes()), want, "shebang of {body:?}");
    }
    // The shebang line is not compiled but still counts as line 1.
    assert_eq!(eval("#!lua\nreturn 1"), Reply::Int(1));
    let body = "#!lua flags=no-writes\n\nerror('x')";
    assert_eq!(
        eval(body),
        err_with_sha(body, "ERR user_script:3: x script: <sha>, on @user_script:3.")
    );
    assert_eq!(
        eval("#!lua flags=foo\nreturn 1"),
        Reply::err("ERR Unexpected flag in script shebang: foo")
    );
}

/// The globals and library contents of redis-server 7.0.15, from
/// `for k,v in pairs(_G) …`.
#[test]
fn globals_and_libraries_match_redis() {
    let list = |expr: &str| {
        let body = format!(
            "local r = {{}} for k, v in pairs({expr}) do r[#r + 1] = k end \
             table.sort(r) return table.concat(r, ' ')"
        );
        match eval(&body) {
            Reply::Bulk(b) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        list("_G"),
        "ARGV KEYS _G _VERSION __redis__err__handler assert bit cjson cmsgpack collectgarbage coroutine error \
         gcinfo getmetatable ipairs load loadstring math next pairs pcall rawequal rawget rawset \
         redis select setmetatable string struct table tonumber tostring type unpack xpcall"
    );
    assert_eq!(
        list("string"),
        "byte char dump find format gfind gmatch gsub len lower match rep reverse sub upper"
    );
    assert_eq!(
        list("math"),
        "abs acos asin atan atan2 ceil cos cosh deg exp floor fmod frexp huge ldexp log log10 max \
         min mod modf pi pow rad random randomseed sin sinh sqrt tan tanh"
    );
    assert_eq!(list("table"), "concat foreach foreachi getn insert maxn remove setn sort");
    assert_eq!(list("coroutine"), "create resume running status wrap yield");
    assert_eq!(
        list("redis"),
        "LOG_DEBUG LOG_NOTICE LOG_VERBOSE LOG_WARNING REDIS_VERSION REDIS_VERSION_NUM REPL_ALL \
         REPL_AOF REPL_NONE REPL_REPLICA REPL_SLAVE acl_check_cmd breakpoint call debug \
         error_reply log pcall replicate_commands set_repl setresp sha1hex status_reply"
    );
    assert_eq!(
        list("cjson"),
        "_NAME _VERSION decode decode_invalid_numbers decode_max_depth encode \
         encode_invalid_numbers encode_keep_buffer encode_max_depth encode_number_precision \
         encode_sparse_array new null"
    );
    assert_eq!(list("bit"), "arshift band bnot bor bswap bxor lshift rol ror rshift tobit tohex");
    assert_eq!(list("struct"), "pack size unpack");
    assert_eq!(
        list("cmsgpack"),
        "_COPYRIGHT _DESCRIPTION _NAME _VERSION pack unpack unpack_limit unpack_one"
    );
    check_table(&[
        ("return _VERSION", "Lua 5.1"),
        ("return tostring(rawget(_G, '_G') == _G)", "true"),
        ("return tostring(rawget(_G, 'nope'))", "nil"),
        ("return tostring(getmetatable('').__index == string)", "true"),
        ("local m = getmetatable(_G) local r = {} for k in pairs(m) do r[#r+1] = k end return r[1]", "__index"),
        ("return ('abc'):upper()", "ABC"),
        ("return table.concat({redis.REDIS_VERSION, redis.REDIS_VERSION_NUM, redis.REPL_ALL, redis.LOG_WARNING}, ',')", "7.4.0,459776,3,3"),
        ("return tostring(redis.replicate_commands()) .. tostring(redis.breakpoint())", "truefalse"),
        ("return redis.sha1hex('')", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("return redis.sha1hex(nil)", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("return tostring(redis.acl_check_cmd('get', 'x'))", "true"),
        ("local t = {} t.x = 1 KEYS[1] = 'k' return KEYS[1] .. t.x", "k1"),
        ("return tostring(loadstring('\\27Lua'))", "nil"),
        ("return loadstring('return 1 .. 2')()", "12"),
        ("return tostring(setmetatable({}, {__index = function(t, k) return k .. '!' end}).hi)", "hi!"),
    ]);
}

#[test]
fn scripts_cannot_leak_state_to_later_runs() {
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    let mut run =
        |body: &str| eval_with(&mut vm, &mut host, body, &[], &[], &RunOptions::default());
    for attempt in [
        "x = 1",
        "_G.x = 1",
        "rawset(_G, 'x', 1)",
        "string.x = 1",
        "rawset(string, 'x', 1)",
        "table.insert(string, 'x')",
        "getmetatable('').x = 1",
        "getmetatable(_G).x = 1",
        "setmetatable(math, {})",
        "loadstring('x = 1')()",
        "coroutine.wrap(function() x = 1 end)()",
    ] {
        assert!(run(attempt).is_error(), "{attempt} should fail");
    }
    assert_eq!(
        run("return tostring(rawget(_G, 'x')) .. tostring(rawget(string, 'x'))"),
        bulk("nilnil")
    );
    assert_eq!(run("return tostring(rawget(getmetatable(''), 'x'))"), bulk("nil"));
    // KEYS and ARGV are per run.
    let keys = [b("k")];
    assert_eq!(vm.run(b"return KEYS[1]", &keys, &[], &RunOptions::default(), &mut host), bulk("k"));
    assert_eq!(
        vm.run(b"return #KEYS + #ARGV", &[], &[], &RunOptions::default(), &mut host),
        Reply::Int(0)
    );
}

fn budget(n: u64) -> RunOptions {
    RunOptions { instruction_budget: n, ..RunOptions::default() }
}

#[test]
fn instruction_budget_stops_at_the_same_point_every_time() {
    let body = "while true do redis.call('incr', 'n') end";
    let mut replies = Vec::new();
    let mut counts = Vec::new();
    let mut vm = ScriptVm::new();
    for fresh in [true, false, true] {
        if fresh {
            vm = ScriptVm::new();
        }
        let mut host = Mock::default();
        replies.push(eval_with(&mut vm, &mut host, body, &[], &[], &budget(100_000)));
        counts.push(host.kv[&b("n")].clone());
    }
    assert_eq!(
        replies[0],
        err_with_sha(body, "ERR script exceeded the instruction budget of 100000 instructions script: <sha>, on @user_script:1.")
    );
    assert!(replies.iter().all(|r| *r == replies[0]));
    assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");
    // Catching the stop does not help.
    for body in [
        "while true do pcall(function() while true do end end) end",
        "while true do xpcall(function() while true do end end, function(e) return e end) end",
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "while true do local f = coroutine.wrap(function() while true do end end) pcall(f) end",
        "while true do load(function() while true do end end) end",
    ] {
        let got =
            eval_with(&mut ScriptVm::new(), &mut Mock::default(), body, &[], &[], &budget(50_000));
        assert!(
            matches!(&got, Reply::Error(e) if e.starts_with("ERR script exceeded the instruction budget of 50000")),
            "{body}: {got:?}"
        );
    }
    // Stopped inside a loadstring chunk: the chunk is the location, on one line.
    let body = "loadstring('local x = 1\\nwhile true do end')()";
    let got = eval_with(&mut ScriptVm::new(), &mut Mock::default(), body, &[], &[], &budget(5000));
    assert_eq!(
        got,
        err_with_sha(body, "ERR script exceeded the instruction budget of 5000 instructions script: <sha>, on local x = 1 while true do end:2.")
    );
    // The budget is per run: a VM that stopped one script runs the next.
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    assert!(eval_with(&mut vm, &mut host, "while true do end", &[], &[], &budget(1000)).is_error());
    assert_eq!(eval_with(&mut vm, &mut host, "return 1", &[], &[], &budget(1000)), Reply::Int(1));
}

fn memory(limit: usize) -> RunOptions {
    RunOptions { memory_limit: limit, ..RunOptions::default() }
}

#[test]
fn memory_limit_stops_a_run() {
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    for body in [
        "local t = {} for i = 1, 1e7 do t[i] = i end",
        "return #string.rep('x', 1e8)",
        "local s = 'x' while true do s = s .. s end",
        "local t = {} while true do pcall(function() for i = 1, 1e6 do t[#t + 1] = {} end end) end",
    ] {
        let got = eval_with(&mut vm, &mut host, body, &[], &[], &memory(1 << 20));
        assert_eq!(
            got,
            err_with_sha(
                body,
                "ERR script exceeded the memory limit of 1048576 bytes script: <sha>."
            ),
            "{body}"
        );
    }
    // Garbage does not count against the limit: only what stays alive.
    let churn = "local n = 0 for i = 1, 20000 do local s = string.rep('y', 200) .. i n = n + #s end return n";
    let got = eval_with(&mut vm, &mut host, churn, &[], &[], &memory(1 << 20));
    assert!(matches!(got, Reply::Int(_)), "{got:?}");
    // Same script, same verdict, run after run.
    let body = "local t = {} for i = 1, 3e4 do t[i] = 'v' .. i end return #t";
    let first = eval_with(&mut vm, &mut host, body, &[], &[], &memory(1 << 20));
    for _ in 0..3 {
        assert_eq!(eval_with(&mut vm, &mut host, body, &[], &[], &memory(1 << 20)), first);
    }
    // And the VM carries on.
    assert_eq!(
        eval_with(&mut vm, &mut host, "return 2", &[], &[], &memory(1 << 20)),
        Reply::Int(2)
    );
}

#[test]
fn collectgarbage_is_deterministic() {
    let body = "local t = {} for i = 1, 1000 do t[i] = {} end \
                local a = collectgarbage('count') collectgarbage() t = nil collectgarbage('collect') \
                return {tostring(a), tostring(collectgarbage('count')), gcinfo()}";
    let first = eval(body);
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    eval_with(
        &mut vm,
        &mut host,
        "local t = {} for i = 1, 5000 do t[i] = 'z' .. i end",
        &[],
        &[],
        &RunOptions::default(),
    );
    assert_eq!(eval_with(&mut vm, &mut host, body, &[], &[], &RunOptions::default()), first);
    assert_eq!(first, Reply::Array(vec![bulk("0"), bulk("0"), Reply::Int(0)]));
}

#[test]
fn math_random_is_seeded_per_run() {
    let body = "return {math.random(1000000), math.random(1000000), tostring(math.random())}";
    let seeded = |seed| RunOptions { seed, ..RunOptions::default() };
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    let a = eval_with(&mut vm, &mut host, body, &[], &[], &seeded(1));
    let b2 = eval_with(&mut vm, &mut host, body, &[], &[], &seeded(1));
    let c = eval_with(&mut vm, &mut host, body, &[], &[], &seeded(2));
    assert_eq!(a, b2);
    assert_ne!(a, c);
    assert_eq!(eval_with(&mut ScriptVm::new(), &mut host, body, &[], &[], &seeded(1)), a);
    // math.randomseed gives Redis's own sequence: redis-cli eval "math.randomseed(42)
    // return {math.random(1000), math.random(1000), tostring(math.random())}" 0
    let body = "math.randomseed(42) return {math.random(1000), math.random(1000), tostring(math.random())}";
    assert_eq!(
        eval_with(&mut vm, &mut host, body, &[], &[], &seeded(9)),
        Reply::Array(vec![Reply::Int(745), Reply::Int(343), bulk("0.11108528222474")])
    );
    assert_eq!(eval("return math.random(3, 3)"), Reply::Int(3));
}

#[test]
fn tostring_hides_addresses() {
    check_table(&[
        ("return tostring({})", "table: 0x00000001"),
        (
            "local a, b = {}, {} return tostring(b) .. ' ' .. tostring(a) .. ' ' .. tostring(b)",
            "table: 0x00000001 table: 0x00000002 table: 0x00000001",
        ),
        ("return tostring(function() end)", "function: 0x00000001"),
        ("return tostring(coroutine.create(function() end))", "thread: 0x00000001"),
        ("return tostring(redis.call)", "function: 0x00000001"),
        ("return tostring(setmetatable({}, {__tostring = function() return 'me' end}))", "me"),
        ("return tostring(1.5) .. tostring(nil) .. tostring(true)", "1.5niltrue"),
    ]);
    let body = "error(function() end)";
    assert_eq!(
        eval(body),
        err_with_sha(body, "ERR function: 0x00000001 script: <sha>, on @user_script:1.")
    );
}

/// Outputs of redis-server's cjson (the object's key order is Lua's table
/// order, the same here for short keys).
#[test]
fn cjson_matches_redis() {
    check_table(&[
        ("return cjson.encode({1,2,3, {a=1}})", "[1,2,3,{\"a\":1}]"),
        ("return tostring(cjson.decode('[1,2,{\"a\":null}]')[3].a == cjson.null)", "true"),
        ("return cjson.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"')", "é😀"),
        ("return tostring(cjson.decode('1e2'))", "100"),
        (
            "return cjson.encode(cjson.decode('[1.5, -0, 12345678901234567890]'))",
            "[1.5,-0,1.2345678901235e+19]",
        ),
        ("return cjson.encode({})", "{}"),
        ("return cjson.encode('a\\tb/\"')", "\"a\\tb\\/\\\"\""),
        (
            "return cjson.encode(cjson.decode('{\"k\":[true,false,null,\"s\"]}'))",
            "{\"k\":[true,false,null,\"s\"]}",
        ),
        ("return cjson.encode({[1]=1, [2]=2, [4]=4})", "[1,2,null,4]"),
        ("return cjson.encode({[1.5]=1})", "{\"1.5\":1}"),
        ("return tostring(cjson.encode_max_depth())", "256"),
    ]);
    let body = "return cjson.encode({a='x/y\"z\\\\', b={}, c=cjson.null, d=0.1, e=1e100, f=true, g='\\1\\127\\200'})";
    assert_eq!(
        eval(body),
        Reply::Bulk(Bytes::from_static(
            b"{\"a\":\"x\\/y\\\"z\\\\\",\"c\":null,\"b\":{},\"e\":1e+100,\"d\":0.1,\"g\":\"\\u0001\\u007f\xc8\",\"f\":true}"
        ))
    );
    // Round trip through nested structures.
    let body = "local v = {name='x', list={1, 2.5, 'three', {deep={true}}}, n=-12} \
                local s = cjson.encode(v) local back = cjson.decode(s) \
                return {back.name == 'x' and back.list[2] == 2.5 and back.list[3] == 'three' and 1 or 0, \
                back.list[4].deep[1] and 1 or 0, back.n}";
    assert_eq!(eval(body), Reply::Array(vec![Reply::Int(1), Reply::Int(1), Reply::Int(-12)]));
    // Nesting limits (lua-cjson's texts; its limit is 1000, ours 256).
    let deep =
        "local t = {} local c = t for i = 1, 256 do c[1] = {} c = c[1] end return cjson.encode(t)";
    assert!(
        matches!(eval(deep), Reply::Error(e) if e.contains("Cannot serialise, excessive nesting (257)"))
    );
    let ok =
        "local t = {} local c = t for i = 1, 255 do c[1] = {} c = c[1] end return #cjson.encode(t)";
    assert_eq!(eval(ok), Reply::Int(512));
    let deep = "return cjson.decode(string.rep('[', 257))";
    assert!(
        matches!(eval(deep), Reply::Error(e) if e.contains("Found too many nested data structures (257) at character 257"))
    );
}

/// redis-cli eval "return {bit.tobit(1.5), …}" 0
#[test]
fn bit_matches_redis() {
    let body =
        "return {bit.tobit(1.5), bit.tobit(2.5), bit.tobit(0xffffffff), bit.band(0xff, 0x0f), \
                bit.tohex(-1), bit.tohex(255, -4), bit.lshift(1, 31), bit.rshift(-1, 28), \
                bit.arshift(-256, 4), bit.rol(1, 33), bit.bswap(0x12345678), bit.bnot(0)}";
    let int = Reply::Int;
    assert_eq!(
        eval(body),
        Reply::Array(vec![
            int(2),
            int(2),
            int(-1),
            int(15),
            bulk("ffffffff"),
            bulk("00FF"),
            int(-2147483648),
            int(15),
            int(-16),
            int(2),
            int(2018915346),
            int(-1),
        ])
    );
    check_table(&[
        ("return tostring(bit.bxor(5, 3, 1))", "7"),
        ("return tostring(bit.bor('1', 2))", "3"),
        ("return bit.tohex(0x1234, 2)", "34"),
        ("return '[' .. tostring(bit.ror(1, 1)) .. ']'", "[-2147483648]"),
    ]);
}

#[test]
fn rand48_is_redis_lrand48() {
    // Redis's rand.c after redisSrand48(0), first three values.
    let mut r = api::rand48_for_test(0, 3);
    r.dedup();
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|v| *v >= 0));
}

/// A host that answers without doing anything.
struct Noop;

impl Host for Noop {
    fn call(&mut self, argv: &[Bytes]) -> Reply {
        if argv[0].eq_ignore_ascii_case(b"get") {
            Reply::Bulk(Bytes::from_static(b"token"))
        } else {
            Reply::Int(1)
        }
    }
}

/// Per-call cost of a cached script with a no-op host. Prints µs per call;
/// `SCRIPT_BENCH_ITERS=200000 cargo test --release -p raftcache-sm
/// per_call_overhead -- --nocapture` for a real figure.
#[test]
fn per_call_overhead() {
    let iters: u32 =
        std::env::var("SCRIPT_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    // redis-py's Lock.release script.
    let release = "local token = redis.call('get', KEYS[1])\n\
                   if not token or token ~= ARGV[1] then\n  return 0\nend\n\
                   redis.call('del', KEYS[1])\nreturn 1";
    let keys = [b("lock:x")];
    let args = [b("token")];
    let opts = RunOptions::default();
    let mut vm = ScriptVm::new();
    for (name, body, keys, args) in [
        ("return 1", "return 1", &keys[..0], &args[..0]),
        ("Lock.release", release, &keys[..], &args[..]),
        ("an array", "return {KEYS[1], 2, {3}}", &keys[..], &args[..]),
    ] {
        let want = vm.run(body.as_bytes(), keys, args, &opts, &mut Noop);
        assert!(matches!(want, Reply::Int(1) | Reply::Array(_)), "{want:?}");
        let start = std::time::Instant::now();
        for _ in 0..iters {
            let reply = vm.run(body.as_bytes(), keys, args, &opts, &mut Noop);
            debug_assert_eq!(reply, want);
        }
        let per_call = start.elapsed().as_secs_f64() * 1e6 / iters as f64;
        println!("{name}: {per_call:.2} us per call over {iters} calls");
    }
    assert_eq!(vm.cached_scripts(), 3, "cached scripts are not compiled again");
}

/// KEYS and ARGV tables are reused from run to run when a run left them as
/// it found them: whatever a script does to them, the next run sees what a
/// fresh VM would show it.
#[test]
fn keys_and_argv_look_fresh_to_every_run() {
    let firsts = [
        "return 1",
        "KEYS[1] = 'changed' ARGV[2] = 'changed'",
        "setmetatable(KEYS, {__index = function() return 'meta' end}) setmetatable(ARGV, KEYS)",
        "KEYS.x = 1 ARGV.y = 2",
        "KEYS.x = 1 KEYS.x = nil",
        "KEYS[#KEYS + 1] = 'more' ARGV[#ARGV + 1] = 'more'",
        "for i = 1, #KEYS do KEYS[i] = nil end for i = 1, #ARGV do ARGV[i] = nil end",
        // Back to an array part of the same length without a hash part.
        "for i = 1, 4 do KEYS[i] = nil end KEYS.a = 1 KEYS.a = nil \
         for i = 1, 4 do KEYS[i] = 'x' .. i end",
        "error(KEYS)",
        "return ARGV",
        "local t = {} for i = 1, 10 do KEYS[i * 3] = i end",
        "table.remove(KEYS) table.insert(ARGV, 'z') table.sort(KEYS)",
    ];
    let second = "local t = {} for k, v in pairs(KEYS) do t[#t + 1] = tostring(k) .. '=' .. tostring(v) end \
        KEYS.p = 1 KEYS.q = 2 KEYS[9] = 3 ARGV.r = 4 \
        for k, v in pairs(KEYS) do t[#t + 1] = tostring(k) end \
        for k, v in pairs(ARGV) do t[#t + 1] = tostring(k) .. '=' .. tostring(v) end \
        t[#t + 1] = #KEYS .. ' ' .. #ARGV .. ' ' .. tostring(getmetatable(KEYS)) .. ' ' .. tostring(KEYS[7]) \
        return t";
    let opts = RunOptions::default();
    for (nk, na) in [(0, 0), (1, 3), (4, 2), (4, 4)] {
        let keys: Vec<Bytes> = (0..nk).map(|i| b(&format!("k{i}"))).collect();
        let args: Vec<Bytes> = (0..na).map(|i| b(&format!("a{i}"))).collect();
        let want = ScriptVm::new().run(second.as_bytes(), &keys, &args, &opts, &mut Noop);
        assert!(matches!(&want, Reply::Array(items) if !items.is_empty()), "{want:?}");
        let mut vm = ScriptVm::new();
        assert!(vm.reuses_arg_tables(), "the Table layout check passes");
        for first in firsts {
            vm.run(first.as_bytes(), &keys, &args, &opts, &mut Noop);
            let got = vm.run(second.as_bytes(), &keys, &args, &opts, &mut Noop);
            assert_eq!(got, want, "after {first:?} with {nk} keys and {na} args");
        }
    }
}

#[test]
fn sha_parse_takes_40_hex_digits_in_either_case() {
    let sha = sha1_hex(b"return 1");
    assert_eq!(Sha::parse(sha.as_bytes()).map(|s| s.to_string()), Some(sha.clone()));
    let upper = sha.to_ascii_uppercase();
    assert_eq!(Sha::parse(upper.as_bytes()).map(|s| s.to_string()), Some(sha.clone()));
    for bad in
        [&sha[..39], &format!("{sha}0"), &format!("g{}", &sha[1..]), &format!("{}\0", &sha[..39])]
    {
        assert!(Sha::parse(bad.as_bytes()).is_none(), "{bad:?}");
    }
    // Every byte in every position: accepted exactly when it is a hex digit,
    // and lowercased.
    for b in 0..=255u8 {
        for at in [0, 17, 39] {
            let mut hex = sha.clone().into_bytes();
            hex[at] = b;
            let want = b.is_ascii_hexdigit().then(|| {
                let mut lower = hex.clone();
                lower[at] = b.to_ascii_lowercase();
                String::from_utf8(lower).unwrap()
            });
            assert_eq!(Sha::parse(&hex).map(|s| s.to_string()), want, "byte {b:#04x} at {at}");
        }
    }
}

/// Two bodies under one SHA1 (a collision, simulated here by naming the
/// wrong one) each run as themselves: the cache by SHA1 checks the body.
#[test]
fn a_colliding_sha_runs_its_own_body() {
    let mut vm = ScriptVm::new();
    let opts = RunOptions::default();
    let sha = vm.compile(b"return 1").unwrap();
    assert_eq!(vm.run_sha(sha, b"return 1", &[], &[], &opts, &mut Noop), Reply::Int(1));
    assert_eq!(vm.run_sha(sha, b"return 2", &[], &[], &opts, &mut Noop), Reply::Int(2));
    assert_eq!(vm.run_sha(sha, b"return 2", &[], &[], &opts, &mut Noop), Reply::Int(2));
    assert_eq!(vm.run(b"return 1", &[], &[], &opts, &mut Noop), Reply::Int(1));
    assert_eq!(vm.cached_scripts(), 2);
    // An error names the SHA1 it was run under.
    let err = vm.run_sha(sha, b"error('x')", &[], &[], &opts, &mut Noop);
    assert!(matches!(&err, Reply::Error(e) if e.contains(sha.as_str())), "{err:?}");
}

/// A host that panics: the run stops (a script's pcall cannot catch it),
/// the panic reaches the caller, and the VM keeps working.
#[test]
fn a_host_panic_stops_the_run_and_reaches_the_caller() {
    struct Panics;
    impl Host for Panics {
        fn call(&mut self, _: &[Bytes]) -> Reply {
            panic!("host bug");
        }
    }
    let mut vm = ScriptVm::new();
    let opts = RunOptions::default();
    for body in [
        "return redis.call('get', 'k')",
        "local ok = pcall(redis.call, 'get', 'k') return 'swallowed'",
        "return redis.pcall('get', 'k')",
    ] {
        let mut vm = std::panic::AssertUnwindSafe(&mut vm);
        let opts = &opts;
        let caught =
            std::panic::catch_unwind(move || vm.run(body.as_bytes(), &[], &[], opts, &mut Panics));
        let payload = caught.expect_err("the panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"host bug"));
    }
    assert_eq!(vm.run(b"return redis.call('get', 'k')", &[], &[], &opts, &mut Noop), bulk("token"));
}

#[test]
fn the_vm_is_send_and_reusable() {
    fn assert_send<T: Send>() {}
    assert_send::<ScriptVm>();
    // Build, use and drop a few VMs (the allocator is put back each time).
    for i in 0..5 {
        let mut vm = ScriptVm::new();
        let body = format!("return {i}");
        assert_eq!(
            eval_with(&mut vm, &mut Mock::default(), &body, &[], &[], &RunOptions::default()),
            Reply::Int(i)
        );
        vm.flush();
        assert_eq!(vm.cached_scripts(), 0);
        let moved = std::thread::spawn(move || {
            let reply = eval_with(
                &mut vm,
                &mut Mock::default(),
                "return 'moved'",
                &[],
                &[],
                &RunOptions::default(),
            );
            (vm, reply)
        });
        let (_vm, reply) = moved.join().unwrap();
        assert_eq!(reply, bulk("moved"));
    }
}

/// Bytes and texts from redis-server (`r.eval(script, 0)` with redis-py).
#[test]
fn cmsgpack_matches_redis() {
    let body = "return cmsgpack.pack({1, 2, 3})";
    assert_eq!(eval(body), Reply::Bulk(Bytes::from_static(b"\x93\x01\x02\x03")));
    let body = "return cmsgpack.pack({a = 1})";
    assert_eq!(eval(body), Reply::Bulk(Bytes::from_static(b"\x81\xa1a\x01")));
    let body = "return cmsgpack.pack(1, -1, 200, -200, 70000, 1.5, 0.1, 'ab', true, false, {})";
    assert_eq!(
        eval(body),
        Reply::Bulk(Bytes::from_static(
            b"\x01\xff\xcc\xc8\xd1\xff\x38\xce\x00\x01\x11\x70\xca\x3f\xc0\x00\x00\
              \xcb\x3f\xb9\x99\x99\x99\x99\x99\x9a\xa2ab\xc3\xc2\x90"
        ))
    );
    check_table(&[
        (
            "local a, b, c = cmsgpack.unpack(cmsgpack.pack({1, {x = 'y'}}, 'z', -5)) \
             return a[2].x .. b .. c",
            "yz-5",
        ),
        ("local n, v = cmsgpack.unpack_one(cmsgpack.pack(7, 8)) return n .. ':' .. v", "1:7"),
        (
            "local n, v = cmsgpack.unpack_one(cmsgpack.pack(7, 8), 1) return '[' .. n .. ':' .. v",
            "[-1:8",
        ),
        (
            "local n, a, b = cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2) return n .. a .. b",
            "212",
        ),
    ]);
    let body = "return cmsgpack.pack(string.rep('x', 40)):sub(1, 2)";
    assert_eq!(eval(body), Reply::Bulk(Bytes::from_static(b"\xd9(")));
    let body = "return cmsgpack.pack(2^53, -2^40, 1/0, {[1]=1,[3]=3}, cjson.null)";
    assert_eq!(
        eval(body),
        Reply::Bulk(Bytes::from_static(
            b"\xcf\x00 \x00\x00\x00\x00\x00\x00\xd3\xff\xff\xff\x00\x00\x00\x00\x00\xca\x7f\x80\x00\x00\x82\x01\x01\x03\x03\xc0"
        ))
    );
    let body = "return cmsgpack.unpack('\\217')";
    assert_eq!(
        eval(body),
        err_with_sha(
            body,
            "ERR user_script:1: Missing bytes in input. script: <sha>, on @user_script:1."
        )
    );
    let body = "return cmsgpack.unpack('\\193')";
    assert_eq!(
        eval(body),
        err_with_sha(
            body,
            "ERR user_script:1: Bad data format in input. script: <sha>, on @user_script:1."
        )
    );
    let body = "return cmsgpack.pack()";
    assert_eq!(
        eval(body),
        err_with_sha(body, "ERR user_script:1: bad argument #0 to 'pack' (MessagePack pack needs input.) script: <sha>, on @user_script:1.")
    );
    // Deep nesting packs as nil past 16 levels; unpacking is bounded too.
    let body = "local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end \
                return #cmsgpack.pack(t)";
    assert_eq!(eval(body), Reply::Int(17));
    let body = "return cmsgpack.unpack(string.rep('\\145', 100000))";
    assert!(matches!(eval(body), Reply::Error(e) if e.contains("Bad data format in input.")));
}

/// Bytes and texts from redis-server (`r.eval(script, 0)` with redis-py).
#[test]
fn struct_matches_redis() {
    let bytes: &[(&str, &[u8])] = &[
        ("return struct.pack('>iHb', -2, 65535, -1)", b"\xff\xff\xff\xfe\xff\xff\xff"),
        ("return struct.pack('<i2', 258)", b"\x02\x01"),
        ("return struct.pack('!4bi', 1, 2)", b"\x01\x00\x00\x00\x02\x00\x00\x00"),
        ("return struct.pack('c3s', 'abcd', 'xy')", b"abcxy\x00"),
        ("return struct.pack('>d f', 1.5, 0.25)", b"?\xf8\x00\x00\x00\x00\x00\x00>\x80\x00\x00"),
        ("return struct.pack('c0', 'hello')", b"hello"),
        (
            "return struct.pack('i16', -1)",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00",
        ),
    ];
    for (body, want) in bytes {
        assert_eq!(eval(body), Reply::Bulk(Bytes::copy_from_slice(want)), "{body}");
    }
    let int = Reply::Int;
    let arrays: Vec<(&str, Reply)> = vec![
        (
            "return {struct.unpack('>iHb', struct.pack('>iHb', -2, 65535, -1))}",
            Reply::Array(vec![int(-2), int(65535), int(-1), int(8)]),
        ),
        (
            "return {struct.unpack('bc0', struct.pack('bc0', 3, 'abc'))}",
            Reply::Array(vec![bulk("abc"), int(5)]),
        ),
        ("return {struct.unpack('s', 'ab\\0cd')}", Reply::Array(vec![bulk("ab"), int(4)])),
        (
            "return {struct.unpack('>I16', string.rep('\\255', 16))}",
            Reply::Array(vec![int(i64::MIN), int(17)]),
        ),
        ("return struct.size('!4bil')", int(16)),
        ("return struct.size('z')", int(0)),
    ];
    for (body, want) in arrays {
        assert_eq!(eval(body), want, "{body}");
    }
    check_table(&[
        ("return struct.size('s')", "-ERR user_script:1: bad argument #1 to 'size' (option 's' has no fixed size) script: <sha>, on @user_script:1."),
        ("return struct.pack('z', 1)", "-ERR user_script:1: bad argument #1 to 'pack' (invalid format option 'z') script: <sha>, on @user_script:1."),
        ("return struct.unpack('i', 'ab')", "-ERR user_script:1: bad argument #2 to 'unpack' (data string too short) script: <sha>, on @user_script:1."),
        ("return struct.unpack('s', 'ab')", "-ERR user_script:1: unfinished string in data script: <sha>, on @user_script:1."),
        ("return struct.pack('c3', 'ab')", "-ERR user_script:1: bad argument #3 to 'pack' (string too short) script: <sha>, on @user_script:1."),
        ("return struct.pack('i33', 1)", "-ERR user_script:1: integral size 33 is larger than limit of 32 script: <sha>, on @user_script:1."),
        ("return struct.pack('!3i', 1)", "-ERR user_script:1: alignment 3 is not a power of 2 script: <sha>, on @user_script:1."),
        ("return struct.pack('i', 'x')", "-ERR user_script:1: bad argument #2 to 'pack' (number expected, got string) script: <sha>, on @user_script:1."),
    ]);
}

/// Replicas build their VMs at different times and run different read-only
/// scripts: a script's reply and its writes must not depend on that.
#[test]
fn replies_do_not_depend_on_the_vm_history() {
    let corpus = [
        "local t = {} for i = 1, 200 do t[#t + 1] = tostring({}) .. math.random(100) end return t",
        "local s = '' for i = 1, 300 do s = s .. string.char(65 + i % 26) end return {s, #s}",
        "local t = {} for i = 1, 50 do t['k' .. i] = i end local r = {} for k, v in pairs(t) do r[#r + 1] = k end return r",
        "return cjson.encode({a = {1, 2, {b = 'c'}}, d = 'e', f = 1.5})",
        "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])",
        "return {pcall(function() error({err = 'E'}) end)}",
        "local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end) return {co(1), co(5)}",
        "return tostring(collectgarbage('count')) .. tostring(gcinfo())",
        "local t = setmetatable({}, {__mode = 'k'}) t[{}] = 1 collectgarbage() return next(t) == nil and 1 or 0",
    ];
    let run_all = |vm: &mut ScriptVm| {
        let mut host = Mock::default();
        let replies: Vec<Reply> = corpus
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let opts = RunOptions { seed: i as u64, ..RunOptions::default() };
                eval_with(vm, &mut host, body, &["key"], &["value"], &opts)
            })
            .collect();
        (replies, host.calls)
    };
    let fresh = run_all(&mut ScriptVm::new());
    let mut used = ScriptVm::new();
    let mut host = Mock::default();
    for i in 0..50 {
        let body =
            format!("local t = {{}} for i = 1, {} do t[i] = 'junk' .. i end return #t", i * 37);
        eval_with(&mut used, &mut host, &body, &[], &[], &RunOptions::default());
    }
    assert!(
        eval_with(&mut used, &mut host, "while true do end", &[], &[], &budget(10_000)).is_error()
    );
    assert_eq!(run_all(&mut used), fresh);
    assert_eq!(run_all(&mut used), fresh, "and again, with everything cached");
}

/// mlua keeps every live Lua value handed to Rust in a reference slot, and
/// has about 8000 of them: calls with thousands of arguments must fail (or
/// work), never panic. (Redis takes up to 7999 arguments from `unpack`;
/// mlua needs a few stack slots of its own, so here about 7980 pass.)
#[test]
fn huge_argument_lists_do_not_panic() {
    let mut vm = ScriptVm::new();
    let mut host = Mock::default();
    for call in [
        "redis.log(3, unpack(t))",
        "cmsgpack.pack(unpack(t))",
        "redis.call('del', unpack(t))",
        "redis.pcall('del', unpack(t))",
        "bit.bor(unpack(n))",
        "cjson.encode(t)",
        "struct.unpack(string.rep('b', 7990), string.rep('a', 7990))",
        "cmsgpack.unpack(string.rep('\\1', 7990))",
    ] {
        let body = format!(
            "local t, n = {{}}, {{}} for i = 1, 7990 do t[i] = 'k' .. i n[i] = i end \
             return type(({call}))"
        );
        let reply = eval_with(&mut vm, &mut host, &body, &[], &[], &RunOptions::default());
        assert!(matches!(reply, Reply::Bulk(_) | Reply::Error(_)), "{call}: {reply:?}");
    }
    assert_eq!(
        eval_with(&mut vm, &mut host, "return 1", &[], &[], &RunOptions::default()),
        Reply::Int(1)
    );
}
