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

use std::os::raw::c_int;

use bytes::Bytes;
use mlua::{ffi, Lua, Table, Value};

use crate::float::format_g17;
use crate::reply::Reply;

/// Conversions that work on the Lua stack directly (`push_reply`,
/// `stack_to_reply`, `arg_at`) run on every `redis.call` and every run, and
/// skip mlua's references. Those that push can raise a Lua error (memory),
/// which longjmps over them: they hold nothing that needs dropping, only
/// references, and write text through a caller's scratch buffer.
///
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
        Value::Integer(i) => Some(number_arg(*i as f64)),
        Value::Number(n) => Some(number_arg(*n)),
        _ => None,
    }
}

/// A number as `%.17g` prints it: plain digits for an integer of fewer than
/// 18 digits (the common case, without formatting a double), else
/// [`fmt_g`] (`1e+17`, `0.10000000000000001`, `-0`).
fn number_arg(n: f64) -> Bytes {
    const PLAIN: f64 = 1e17;
    match exact_integer(n) {
        Some(i) if n.abs() < PLAIN => {
            Bytes::copy_from_slice(itoa::Buffer::new().format(i).as_bytes())
        }
        _ => Bytes::from(fmt_g(n, 17)),
    }
}

/// The integer mlua makes of a Lua 5.1 number (its `Value::Integer`): one
/// that is exactly an `i64`, negative zero excepted.
pub(crate) fn exact_integer(n: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&n) {
        return None;
    }
    let i = n as i64;
    ((i as f64).to_bits() == n.to_bits()).then_some(i)
}

/// [`lua_to_arg`] of the value at `idx` of the stack of `l`.
///
/// # Safety
/// `l` is a live state and `idx` a valid index of its stack.
pub(crate) unsafe fn arg_at(l: *mut ffi::lua_State, idx: c_int) -> Option<Bytes> {
    // SAFETY: the caller's guarantee; a string's bytes stay put while it is
    // on the stack, and reading them allocates nothing.
    unsafe {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TSTRING => Some(Bytes::copy_from_slice(string_at(l, idx))),
            ffi::LUA_TNUMBER => Some(number_arg(ffi::lua_tonumber(l, idx))),
            _ => None,
        }
    }
}

/// The bytes of the string at `idx` (which must be a string, not a number:
/// converting one would change the stack).
///
/// # Safety
/// `l` is live and `idx` holds a string; the slice lives as long as the
/// string stays on the stack.
pub(crate) unsafe fn string_at<'a>(l: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0;
    // SAFETY: the caller's guarantee.
    unsafe {
        let p = ffi::lua_tolstring(l, idx, &mut len);
        if p.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(p as *const u8, len)
    }
}

/// Redis's `luaPushErrorBuff` text: `-CODE msg` keeps its code, anything else
/// gets `ERR `; cut at the first NUL, `\r` and `\n` trimmed from both ends.
pub(crate) fn error_text(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    error_text_into(buf, false, &mut out);
    out
}

/// [`error_text`] into `out` (cleared first). `dashed`: the text of `buf`
/// with a `-` in front (a command's error reply), without making it.
fn error_text_into(buf: &[u8], dashed: bool, out: &mut Vec<u8>) {
    let buf = &buf[..buf.iter().position(|&b| b == 0).unwrap_or(buf.len())];
    let rest = if dashed { Some(buf) } else { buf.strip_prefix(b"-") };
    let (code, msg): (&[u8], &[u8]) = match rest {
        Some(rest) => match rest.iter().position(|&b| b == b' ') {
            None => (b"ERR", rest),
            Some(space) => (&rest[..space], &rest[space + 1..]),
        },
        None => (b"ERR", buf),
    };
    let is_crlf = |b: &u8| *b == b'\r' || *b == b'\n';
    let start = msg.iter().position(|b| !is_crlf(b)).unwrap_or(msg.len());
    let end = msg.iter().rposition(|b| !is_crlf(b)).map_or(start, |e| e + 1);
    out.clear();
    out.reserve(code.len() + 1 + end - start);
    out.extend_from_slice(code);
    out.push(b' ');
    out.extend_from_slice(&msg[start..end]);
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

/// Pushes the `{err=…}` table of [`error_table`] (`dashed`: for a
/// command's error reply, whose text Redis reads with a `-` in front).
///
/// # Safety
/// `l` is live with room for 3 more values; see the note on raising above.
pub(crate) unsafe fn push_error_table(
    l: *mut ffi::lua_State,
    text: &[u8],
    dashed: bool,
    from_command: bool,
    scratch: &mut Vec<u8>,
) {
    error_text_into(text, dashed, scratch);
    // SAFETY: the caller's guarantee.
    unsafe {
        ffi::lua_createtable(l, 0, 2);
        push_bytes(l, b"err");
        push_bytes(l, scratch);
        ffi::lua_rawset(l, -3);
        if from_command {
            push_bytes(l, b"ignore_error_stats_update");
            ffi::lua_pushboolean(l, 1);
            ffi::lua_rawset(l, -3);
        }
    }
}

/// Pushes a string.
///
/// # Safety
/// `l` is live with room for one more value.
pub(crate) unsafe fn push_bytes(l: *mut ffi::lua_State, s: &[u8]) {
    // SAFETY: the caller's guarantee.
    unsafe { ffi::lua_pushlstring_(l, s.as_ptr() as *const _, s.len()) }
}

/// Pushes a one-field table `{key = <what push leaves on top>}`.
unsafe fn push_single(l: *mut ffi::lua_State, key: &[u8], push: impl FnOnce()) {
    // SAFETY: the caller's guarantee (room for 3 values).
    unsafe {
        ffi::lua_createtable(l, 0, 1);
        push_bytes(l, key);
        push();
        ffi::lua_rawset(l, -3);
    }
}

/// Pushes a command's reply converted for the script (`resp3`: after
/// `redis.setresp(3)`), as Redis would have parsed its RESP2 or RESP3 bytes.
///
/// # Safety
/// `l` is a live state; see the note on raising above (`reply` and
/// `scratch` must not be owned by the caller's frame).
pub(crate) unsafe fn push_reply(
    l: *mut ffi::lua_State,
    reply: &Reply,
    resp3: bool,
    scratch: &mut Vec<u8>,
) {
    // SAFETY: the caller's guarantee; every push below has the room checked
    // here (each level needs at most 4 slots of its own).
    unsafe {
        ffi::luaL_checkstack(l, 4, std::ptr::null());
        match reply {
            Reply::Ok => push_single(l, b"ok", || push_bytes(l, b"OK")),
            Reply::Status(s) => push_single(l, b"ok", || push_bytes(l, s.as_bytes())),
            Reply::Error(e) => push_error_table(l, e.as_bytes(), true, true, scratch),
            Reply::Int(n) => ffi::lua_pushnumber(l, *n as f64),
            Reply::Bulk(b) => push_bytes(l, b),
            Reply::Nil | Reply::NilArray | Reply::NoReply | Reply::Blocked => push_null(l, resp3),
            Reply::Array(items) => {
                push_array(l, items.len(), |i| &items[i], resp3, scratch);
            }
            Reply::Set(items) if resp3 => {
                let set = |scratch: &mut Vec<u8>| {
                    ffi::lua_createtable(l, 0, items.len() as c_int);
                    for item in items {
                        push_reply(l, item, resp3, scratch);
                        if ffi::lua_type(l, -1) == ffi::LUA_TNIL {
                            ffi::lua_pop(l, 1);
                        } else {
                            ffi::lua_pushboolean(l, 1);
                            ffi::lua_rawset(l, -3);
                        }
                    }
                };
                push_single(l, b"set", || set(scratch));
            }
            Reply::Set(items) => push_array(l, items.len(), |i| &items[i], resp3, scratch),
            Reply::Map(pairs) if resp3 => {
                let map = |scratch: &mut Vec<u8>| {
                    ffi::lua_createtable(l, 0, pairs.len() as c_int);
                    for (k, v) in pairs {
                        push_reply(l, k, resp3, scratch);
                        if ffi::lua_type(l, -1) == ffi::LUA_TNIL {
                            ffi::lua_pop(l, 1);
                        } else {
                            push_reply(l, v, resp3, scratch);
                            ffi::lua_rawset(l, -3);
                        }
                    }
                };
                push_single(l, b"map", || map(scratch));
            }
            Reply::Map(pairs) | Reply::Pairs(pairs) if !resp3 => {
                let item = |i: usize| {
                    let (k, v) = &pairs[i / 2];
                    if i.is_multiple_of(2) {
                        k
                    } else {
                        v
                    }
                };
                push_array(l, pairs.len() * 2, item, resp3, scratch);
            }
            Reply::Pairs(pairs) => {
                ffi::lua_createtable(l, pairs.len() as c_int, 0);
                for (i, (k, v)) in pairs.iter().enumerate() {
                    ffi::lua_createtable(l, 2, 0);
                    push_reply(l, k, resp3, scratch);
                    ffi::lua_rawseti_(l, -2, 1);
                    push_reply(l, v, resp3, scratch);
                    ffi::lua_rawseti_(l, -2, 2);
                    ffi::lua_rawseti_(l, -2, (i + 1) as c_int);
                }
            }
            Reply::Map(_) => unreachable!("covered by the two arms above"),
            Reply::Double(d) if resp3 => push_single(l, b"double", || ffi::lua_pushnumber(l, *d)),
            Reply::Double(d) => {
                scratch.clear();
                scratch.extend_from_slice(format_g17(*d).as_bytes());
                push_bytes(l, scratch);
            }
            Reply::Bool(b) if resp3 => ffi::lua_pushboolean(l, *b as c_int),
            Reply::Bool(b) => ffi::lua_pushnumber(l, *b as i64 as f64),
            Reply::Verbatim(text) if resp3 => {
                let inner = || {
                    ffi::lua_createtable(l, 0, 2);
                    push_bytes(l, b"string");
                    push_bytes(l, text);
                    ffi::lua_rawset(l, -3);
                    push_bytes(l, b"format");
                    push_bytes(l, b"txt");
                    ffi::lua_rawset(l, -3);
                };
                push_single(l, b"verbatim_string", inner);
            }
            Reply::Verbatim(text) => push_bytes(l, text),
            // Redis converts a RESP3 big number to `{big_number = digits}`.
            Reply::BigNumber(digits) if resp3 => {
                push_single(l, b"big_number", || push_bytes(l, digits))
            }
            Reply::BigNumber(digits) => push_bytes(l, digits),
        }
    }
}

/// Pushes what a null reply becomes: nil in RESP3, false in RESP2.
unsafe fn push_null(l: *mut ffi::lua_State, resp3: bool) {
    // SAFETY: the caller's guarantee.
    unsafe {
        if resp3 {
            ffi::lua_pushnil(l);
        } else {
            ffi::lua_pushboolean(l, 0);
        }
    }
}

/// Pushes an array of `len` replies, leaving holes for nils.
unsafe fn push_array<'r>(
    l: *mut ffi::lua_State,
    len: usize,
    item: impl Fn(usize) -> &'r Reply,
    resp3: bool,
    scratch: &mut Vec<u8>,
) {
    // SAFETY: the caller's guarantee.
    unsafe {
        ffi::lua_createtable(l, len as c_int, 0);
        for i in 0..len {
            push_reply(l, item(i), resp3, scratch);
            if ffi::lua_type(l, -1) == ffi::LUA_TNIL {
                ffi::lua_pop(l, 1);
            } else {
                ffi::lua_rawseti_(l, -2, (i + 1) as c_int);
            }
        }
    }
}

/// Error and status texts cannot carry line breaks: Redis turns each `\r`
/// and `\n` into a space.
fn one_line(s: &[u8]) -> String {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    String::from_utf8_lossy(s).replace(['\r', '\n'], " ")
}

/// Converts what a script returned, the value at `idx` (absolute) of the
/// stack of `l`, into EVAL's reply. `resp3` is the script's protocol
/// (`redis.setresp`), which decides what booleans become.
///
/// # Safety
/// `l` is a live state and `idx` a valid absolute index. Nothing is run:
/// the conversion reads tables raw, as Redis does.
pub(crate) unsafe fn stack_to_reply(l: *mut ffi::lua_State, idx: c_int, resp3: bool) -> Reply {
    // SAFETY: the caller's guarantee.
    unsafe { to_reply(l, idx, resp3, 0) }
}

unsafe fn to_reply(l: *mut ffi::lua_State, idx: c_int, resp3: bool, depth: usize) -> Reply {
    if depth >= MAX_REPLY_DEPTH {
        return Reply::err("ERR reached lua stack limit");
    }
    // SAFETY: the caller's guarantee.
    unsafe {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TSTRING => Reply::Bulk(Bytes::copy_from_slice(string_at(l, idx))),
            ffi::LUA_TBOOLEAN => {
                let b = ffi::lua_toboolean(l, idx) != 0;
                match (resp3, b) {
                    (true, b) => Reply::Bool(b),
                    (false, true) => Reply::Int(1),
                    (false, false) => Reply::Nil,
                }
            }
            ffi::LUA_TNUMBER => Reply::Int(c_cast(ffi::lua_tonumber(l, idx))),
            ffi::LUA_TTABLE => table_to_reply(l, idx, resp3, depth),
            _ => Reply::Nil,
        }
    }
}

/// Pushes `t[name]` (raw) and returns its type.
///
/// # Safety
/// `l` is live with room for one more value; `t` is the absolute index of
/// a table.
pub(crate) unsafe fn raw_field(l: *mut ffi::lua_State, t: c_int, name: &[u8]) -> c_int {
    // SAFETY: the caller's guarantee.
    unsafe {
        push_bytes(l, name);
        ffi::lua_rawget(l, t);
        ffi::lua_type(l, -1)
    }
}

unsafe fn table_to_reply(l: *mut ffi::lua_State, t: c_int, resp3: bool, depth: usize) -> Reply {
    // SAFETY: the caller's guarantee; each block pops what it pushed, and
    // every level has room for the 3 values it holds at once.
    unsafe {
        ffi::luaL_checkstack(l, 3, std::ptr::null());
        let top = ffi::lua_gettop(l);
        if super::vm::without_hash_part(l, t) {
            // An array (`{…}` of values): none of the fields below.
            return array_reply(l, t, top, resp3, depth);
        }
        let pop = |reply: Reply| {
            ffi::lua_settop(l, top);
            reply
        };
        if raw_field(l, t, b"err") == ffi::LUA_TSTRING {
            return pop(Reply::error(one_line(string_at(l, -1))));
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, b"ok") == ffi::LUA_TSTRING {
            let text = one_line(string_at(l, -1));
            return pop(if text == "OK" { Reply::Ok } else { Reply::Status(text.into()) });
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, b"double") == ffi::LUA_TNUMBER {
            return pop(Reply::Double(ffi::lua_tonumber(l, -1)));
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, b"big_number") == ffi::LUA_TSTRING {
            return pop(Reply::BigNumber(Bytes::from(one_line(string_at(l, -1)))));
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, b"verbatim_string") == ffi::LUA_TTABLE {
            let verbatim = top + 1;
            let format = raw_field(l, verbatim, b"format");
            let text = raw_field(l, verbatim, b"string");
            if format == ffi::LUA_TSTRING && text == ffi::LUA_TSTRING {
                return pop(Reply::Verbatim(Bytes::copy_from_slice(string_at(l, -1))));
            }
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, b"map") == ffi::LUA_TTABLE {
            let map = top + 1;
            let mut pairs = Vec::new();
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, map) != 0 {
                let (k, v) = (ffi::lua_gettop(l) - 1, ffi::lua_gettop(l));
                pairs.push((to_reply(l, k, resp3, depth + 1), to_reply(l, v, resp3, depth + 1)));
                ffi::lua_pop(l, 1);
            }
            return pop(Reply::Map(pairs));
        }
        ffi::lua_settop(l, top);
        if raw_field(l, t, b"set") == ffi::LUA_TTABLE {
            let set = top + 1;
            let mut items = Vec::new();
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, set) != 0 {
                items.push(to_reply(l, ffi::lua_gettop(l) - 1, resp3, depth + 1));
                ffi::lua_pop(l, 1);
            }
            return pop(Reply::Set(items));
        }
        ffi::lua_settop(l, top);
        array_reply(l, t, top, resp3, depth)
    }
}

/// The elements `t[1]`, `t[2]` … up to the first nil, as an array reply.
///
/// # Safety
/// As `table_to_reply`, with the stack at `top` and room for one value.
unsafe fn array_reply(
    l: *mut ffi::lua_State,
    t: c_int,
    top: c_int,
    resp3: bool,
    depth: usize,
) -> Reply {
    let mut items = Vec::new();
    // SAFETY: the caller's guarantee; each element is popped again.
    unsafe {
        for i in 1.. {
            ffi::lua_rawgeti_(l, t, i);
            if ffi::lua_type(l, -1) == ffi::LUA_TNIL {
                break;
            }
            items.push(to_reply(l, top + 1, resp3, depth + 1));
            ffi::lua_settop(l, top);
        }
        ffi::lua_settop(l, top);
    }
    Reply::Array(items)
}
