//! Conversions between engine replies and Lua values, in both directions, as
//! Redis 7.0's `redisProtocolToLuaType` and `luaReplyToRedisReply` do them.
//!
//! Redis converts the RESP bytes a command wrote for the script's fake
//! client, whose protocol is RESP2 unless the script called
//! `redis.setresp(3)`. The engine's [`Reply`] says what those bytes would have
//! been in either protocol, so each variant maps to what Redis would have
//! parsed from its RESP2 or RESP3 encoding (a [`Reply::Map`] is a flat array in
//! RESP2 and `{map=…}` in RESP3, a [`Reply::Double`] a `%.17g` string in RESP2
//! and `{double=…}` in RESP3, and so on).

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use crate::float::format_g17;
use crate::reply::Reply;

/// Nesting beyond which a returned table becomes an error element. Redis
/// stops at its Lua C stack limit (about 8000 levels, reached only by a table
/// that contains itself); replies that deep would strain the stack of every
/// consumer (this conversion, the RESP encoder, clients), so ours is lower.
pub(crate) const MAX_REPLY_DEPTH: usize = 128;

/// A double as C's `printf("%.{precision}g")` prints it with glibc
/// (`inf`, `-inf`, `nan`, `-nan`).
pub(crate) fn fmt_g(d: f64, precision: usize) -> String {
    if d.is_nan() {
        return if d.is_sign_negative() { "-nan".into() } else { "nan".into() };
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let precision = precision.max(1);
    if precision == 17 {
        return format_g17(d);
    }
    let sci = format!("{:.*e}", precision - 1, d);
    let (mantissa, exp) = sci.split_once('e').expect("exponent in {:e} output");
    let exp: i32 = exp.parse().expect("integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::with_capacity(24);
    if negative {
        out.push('-');
    }
    if exp < -4 || exp >= precision as i32 {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        let rest = rest.trim_end_matches('0');
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let abs = exp.unsigned_abs();
        if abs < 10 {
            out.push('0');
        }
        out.push_str(&abs.to_string());
    } else if exp >= 0 {
        let (int, frac) = digits.split_at(exp as usize + 1);
        out.push_str(int);
        let frac = frac.trim_end_matches('0');
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
    } else {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(digits.trim_end_matches('0'));
    }
    out
}

/// A Lua number as `tostring` prints it (`%.14g`).
pub(crate) fn number_to_lua_string(v: &Value) -> String {
    match v {
        Value::Integer(i) => fmt_g(*i as f64, 14),
        Value::Number(n) => fmt_g(*n, 14),
        _ => String::new(),
    }
}

/// Lua 5.1's string-to-number coercion (`luaO_str2d`): surrounding spaces,
/// decimal, hex integers, `inf`/`nan` as C's strtod reads them.
pub(crate) fn lua_str2number(s: &[u8]) -> Option<f64> {
    let start = s.iter().position(|b| !b.is_ascii_whitespace())?;
    let (n, used) = super::cjson::strtod(&s[start..])?;
    let rest = &s[start + used..];
    rest.iter().all(u8::is_ascii_whitespace).then_some(n)
}

/// C's `(long long)d` on x86-64: truncation, and the "integer indefinite"
/// value (i64::MIN) for NaN and out-of-range doubles, which is what Redis
/// replies for `return 0/0` or `return 1e30`.
pub(crate) fn c_cast(d: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if d.is_nan() || !(-LIMIT..LIMIT).contains(&d) {
        i64::MIN
    } else {
        d as i64
    }
}

/// An argument of `redis.call` as the command sees it: strings as they are,
/// numbers as `%.17g`. None for anything else.
pub(crate) fn lua_to_arg(v: &Value) -> Option<Bytes> {
    match v {
        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(i) => {
            Some(Bytes::copy_from_slice(itoa::Buffer::new().format(*i).as_bytes()))
        }
        Value::Number(n) => Some(Bytes::from(fmt_g(*n, 17))),
        _ => None,
    }
}

/// Redis's `luaPushErrorBuff` text: `-CODE msg` keeps its code, anything else
/// gets `ERR `; cut at the first NUL, `\r` and `\n` trimmed from both ends.
pub(crate) fn error_text(buf: &[u8]) -> Vec<u8> {
    let buf = &buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())];
    let (code, msg): (&[u8], &[u8]) = match buf.strip_prefix(b"-") {
        Some(rest) => match buf.iter().position(|&b| b == b' ') {
            None => (b"ERR", rest),
            Some(space) => (&buf[1..space], &buf[space + 1..]),
        },
        None => (b"ERR", buf),
    };
    let is_crlf = |b: &u8| *b == b'\r' || *b == b'\n';
    let start = msg.iter().position(|b| !is_crlf(b)).unwrap_or(msg.len());
    let end = msg.iter().rposition(|b| !is_crlf(b)).map_or(start, |e| e + 1);
    let mut out = Vec::with_capacity(code.len() + 1 + end - start);
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(&msg[start..end]);
    out
}

/// The `{err=…}` table `redis.pcall` returns for a failed command. Errors of
/// the command itself (and refusals) carry `ignore_error_stats_update`, as in
/// Redis, because the command already counted them.
pub(crate) fn error_table(lua: &Lua, text: &[u8], from_command: bool) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 2)?;
    t.raw_set("err", lua.create_string(error_text(text))?)?;
    if from_command {
        t.raw_set("ignore_error_stats_update", true)?;
    }
    Ok(t)
}

/// Converts a command's reply for the script (`resp3`: after
/// `redis.setresp(3)`).
pub(crate) fn reply_to_lua(lua: &Lua, reply: &Reply, resp3: bool) -> mlua::Result<Value> {
    let status = |s: &[u8]| -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(0, 1)?;
        t.raw_set("ok", lua.create_string(s)?)?;
        Ok(Value::Table(t))
    };
    let single = |key: &str, v: Value| -> mlua::Result<Value> {
        let t = lua.create_table_with_capacity(0, 1)?;
        t.raw_set(key, v)?;
        Ok(Value::Table(t))
    };
    let null = if resp3 { Value::Nil } else { Value::Boolean(false) };
    Ok(match reply {
        Reply::Ok => status(b"OK")?,
        Reply::Status(s) => status(s.as_bytes())?,
        Reply::Error(e) => {
            let mut text = Vec::with_capacity(e.len() + 1);
            text.push(b'-');
            text.extend_from_slice(e.as_bytes());
            Value::Table(error_table(lua, &text, true)?)
        }
        Reply::Int(n) => Value::Number(*n as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        Reply::Nil | Reply::NilArray | Reply::NoReply | Reply::Blocked => null,
        Reply::Array(items) => array(lua, items.iter(), items.len(), resp3)?,
        Reply::Set(items) if resp3 => {
            let set = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                let k = reply_to_lua(lua, item, resp3)?;
                if !k.is_nil() {
                    set.raw_set(k, true)?;
                }
            }
            single("set", Value::Table(set))?
        }
        Reply::Set(items) => array(lua, items.iter(), items.len(), resp3)?,
        Reply::Map(pairs) if resp3 => {
            let map = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                let k = reply_to_lua(lua, k, resp3)?;
                if !k.is_nil() {
                    map.raw_set(k, reply_to_lua(lua, v, resp3)?)?;
                }
            }
            single("map", Value::Table(map))?
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) if !resp3 => {
            array(lua, pairs.iter().flat_map(|(k, v)| [k, v]), pairs.len() * 2, resp3)?
        }
        Reply::Pairs(pairs) => {
            let t = lua.create_table_with_capacity(pairs.len(), 0)?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                let pair = lua.create_table_with_capacity(2, 0)?;
                pair.raw_set(1, reply_to_lua(lua, k, resp3)?)?;
                pair.raw_set(2, reply_to_lua(lua, v, resp3)?)?;
                t.raw_set(i + 1, pair)?;
            }
            Value::Table(t)
        }
        Reply::Map(_) => unreachable!("covered by the two arms above"),
        Reply::Double(d) if resp3 => single("double", Value::Number(*d))?,
        Reply::Double(d) => Value::String(lua.create_string(format_g17(*d))?),
        Reply::Bool(b) if resp3 => Value::Boolean(*b),
        Reply::Bool(b) => Value::Number(*b as i64 as f64),
        Reply::Verbatim(text) if resp3 => {
            let inner = lua.create_table_with_capacity(0, 2)?;
            inner.raw_set("string", lua.create_string(text)?)?;
            inner.raw_set("format", "txt")?;
            single("verbatim_string", Value::Table(inner))?
        }
        Reply::Verbatim(text) => Value::String(lua.create_string(text)?),
        // Redis converts a RESP3 big number to `{big_number = digits}`.
        Reply::BigNumber(digits) if resp3 => {
            single("big_number", Value::String(lua.create_string(digits)?))?
        }
        Reply::BigNumber(digits) => Value::String(lua.create_string(digits)?),
    })
}

fn array<'r>(
    lua: &Lua,
    items: impl Iterator<Item = &'r Reply>,
    len: usize,
    resp3: bool,
) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(len, 0)?;
    for (i, item) in items.enumerate() {
        let v = reply_to_lua(lua, item, resp3)?;
        if !v.is_nil() {
            t.raw_set(i + 1, v)?;
        }
    }
    Ok(Value::Table(t))
}

/// Error and status texts cannot carry line breaks: Redis turns each `\r`
/// and `\n` into a space.
fn one_line(s: &[u8]) -> String {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    String::from_utf8_lossy(s).replace(['\r', '\n'], " ")
}

/// Converts what a script returned into EVAL's reply. `resp3` is the
/// script's protocol (`redis.setresp`), which decides what booleans become.
pub(crate) fn lua_to_reply(v: &Value, resp3: bool) -> Reply {
    to_reply(v, resp3, 0)
}

fn to_reply(v: &Value, resp3: bool, depth: usize) -> Reply {
    if depth >= MAX_REPLY_DEPTH {
        return Reply::err("ERR reached lua stack limit");
    }
    match v {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) if resp3 => Reply::Bool(*b),
        Value::Boolean(true) => Reply::Int(1),
        Value::Boolean(false) => Reply::Nil,
        Value::Integer(i) => Reply::Int(*i),
        Value::Number(n) => Reply::Int(c_cast(*n)),
        Value::Table(t) => table_to_reply(t, resp3, depth),
        _ => Reply::Nil,
    }
}

fn table_to_reply(t: &Table, resp3: bool, depth: usize) -> Reply {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(err) = field("err") {
        return Reply::error(one_line(&err.as_bytes()));
    }
    if let Value::String(ok) = field("ok") {
        let text = one_line(&ok.as_bytes());
        return if text == "OK" { Reply::Ok } else { Reply::Status(text.into()) };
    }
    match field("double") {
        Value::Number(d) => return Reply::Double(d),
        Value::Integer(i) => return Reply::Double(i as f64),
        _ => {}
    }
    if let Value::String(n) = field("big_number") {
        return Reply::BigNumber(Bytes::from(one_line(&n.as_bytes())));
    }
    if let Value::Table(verbatim) = field("verbatim_string") {
        let format = verbatim.raw_get::<Value>("format").unwrap_or(Value::Nil);
        let text = verbatim.raw_get::<Value>("string").unwrap_or(Value::Nil);
        if let (Value::String(_), Value::String(text)) = (format, text) {
            return Reply::Verbatim(Bytes::copy_from_slice(&text.as_bytes()));
        }
    }
    if let Value::Table(map) = field("map") {
        let pairs = map
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, v)| (to_reply(&k, resp3, depth + 1), to_reply(&v, resp3, depth + 1)))
            .collect();
        return Reply::Map(pairs);
    }
    if let Value::Table(set) = field("set") {
        let items = set
            .pairs::<Value, Value>()
            .filter_map(Result::ok)
            .map(|(k, _)| to_reply(&k, resp3, depth + 1))
            .collect();
        return Reply::Set(items);
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(to_reply(&v, resp3, depth + 1)),
        }
    }
    Reply::Array(items)
}
