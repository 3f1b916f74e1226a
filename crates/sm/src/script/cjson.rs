//! `cjson`: Redis's lua-cjson 2.1.0 in Rust, with its defaults and its error
//! texts (`Expected value but found T_END at character 1`, `Cannot serialise
//! table: excessively sparse array`, …).
//!
//! The configuration functions (`encode_max_depth`, `encode_number_precision`
//! …) report the settings and ignore arguments: in Redis they change process
//! state that outlives the script, which a replicated VM must not have. The
//! nesting limit is [`MAX_DEPTH`], lower than lua-cjson's 1000.

use mlua::{LightUserData, Lua, MultiValue, Table, Value};

use super::api::{arg_error, lua_error, type_name};
use super::convert::fmt_g;

/// Nesting limit for encode and decode. lua-cjson's default is 1000; both
/// directions recurse here on the stack of the thread applying the log, and
/// a stack overflow would abort every replica at once, so ours is lower. The
/// error texts are lua-cjson's, with this limit in them.
pub(crate) const MAX_DEPTH: usize = 256;
const NUMBER_PRECISION: usize = 14;
const SPARSE_RATIO: usize = 2;
const SPARSE_SAFE: usize = 10;

/// Builds the `cjson` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("encode", lua.create_function(encode)?)?;
    t.raw_set("decode", lua.create_function(decode)?)?;
    t.raw_set("null", Value::LightUserData(LightUserData(std::ptr::null_mut())))?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    let settings: [(&str, Value); 7] = [
        ("encode_max_depth", Value::Integer(MAX_DEPTH as i64)),
        ("decode_max_depth", Value::Integer(MAX_DEPTH as i64)),
        ("encode_number_precision", Value::Integer(NUMBER_PRECISION as i64)),
        ("encode_keep_buffer", Value::Boolean(true)),
        ("encode_invalid_numbers", Value::Boolean(false)),
        ("decode_invalid_numbers", Value::Boolean(true)),
        ("encode_sparse_array", Value::Nil),
    ];
    for (name, value) in settings {
        let f = if name == "encode_sparse_array" {
            lua.create_function(|_, _: MultiValue| {
                Ok((false, SPARSE_RATIO as i64, SPARSE_SAFE as i64))
            })?
        } else {
            lua.create_function(move |_, _: MultiValue| Ok(value.clone()))?
        };
        t.raw_set(name, f)?;
    }
    t.raw_set("new", lua.create_function(|lua, _: MultiValue| library(lua))?)?;
    Ok(t)
}

fn encode(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    if args.len() != 1 {
        return Err(arg_error(lua, 1, "expected 1 argument"));
    }
    let mut out = Vec::new();
    if let Err(msg) = encode_value(&args[0], 0, &mut out) {
        return Err(lua_error(lua, &msg));
    }
    lua.create_string(&out)
}

fn encode_value(v: &Value, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => encode_number(*i as f64, out)?,
        Value::Number(n) => encode_number(*n, out)?,
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => encode_table(t, depth + 1, out)?,
        other => return Err(format!("Cannot serialise {}: type not supported", type_name(other))),
    }
    Ok(())
}

fn encode_number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".into());
    }
    out.extend_from_slice(fmt_g(n, NUMBER_PRECISION).as_bytes());
    Ok(())
}

fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            8 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            12 => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

fn encode_table(t: &Table, depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("Cannot serialise, excessive nesting ({depth})"));
    }
    match array_length(t)? {
        Some(len) if len > 0 => {
            out.push(b'[');
            for i in 1..=len {
                if i > 1 {
                    out.push(b',');
                }
                let v: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                encode_value(&v, depth, out)?;
            }
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let mut first = true;
            // One pair at a time: mlua references are a scarce resource.
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                if !first {
                    out.push(b',');
                }
                first = false;
                match &k {
                    Value::Integer(i) => encode_key_number(*i as f64, out)?,
                    Value::Number(n) => encode_key_number(*n, out)?,
                    Value::String(s) => {
                        encode_string(&s.as_bytes(), out);
                        out.push(b':');
                    }
                    other => {
                        return Err(format!(
                            "Cannot serialise {}: table key must be a number or string",
                            type_name(other)
                        ))
                    }
                }
                encode_value(&v, depth, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn encode_key_number(n: f64, out: &mut Vec<u8>) -> Result<(), String> {
    out.push(b'"');
    encode_number(n, out)?;
    out.extend_from_slice(b"\":");
    Ok(())
}

/// lua-cjson's `lua_array_length`: Some(max index) when every key is a
/// positive integer (and the array is not too sparse), None for an object.
fn array_length(t: &Table) -> Result<Option<usize>, String> {
    let (mut max, mut items) = (0usize, 0usize);
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => return Ok(None),
        };
        if n < 1.0 || n.floor() != n {
            return Ok(None);
        }
        max = max.max(n as usize);
        items += 1;
    }
    if max > items * SPARSE_RATIO && max > SPARSE_SAFE {
        return Err("Cannot serialise table: excessively sparse array".into());
    }
    Ok(Some(max))
}

fn decode(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    if args.len() != 1 {
        return Err(arg_error(lua, 1, "expected 1 argument"));
    }
    let text = match &args[0] {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(_) | Value::Number(_) => {
            super::convert::number_to_lua_string(&args[0]).into_bytes()
        }
        other => {
            let msg = format!("string expected, got {}", type_name(other));
            return Err(arg_error(lua, 1, &msg));
        }
    };
    if text.len() >= 2 && (text[0] == 0 || text[1] == 0) {
        return Err(lua_error(lua, "JSON parser does not support UTF-16 or UTF-32"));
    }
    let mut parser = Parser { lua, data: &text, pos: 0, depth: 0 };
    let token = parser.next_token();
    let value = parser.value(token).map_err(|msg| lua_error(lua, &msg))?;
    let token = parser.next_token();
    if !matches!(token.kind, Kind::End) {
        return Err(lua_error(lua, &parser.expected("the end", &token)));
    }
    Ok(value)
}

enum Kind {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

struct Token {
    kind: Kind,
    index: usize,
}

struct Parser<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    /// The byte at `i`, with C's terminating NUL past the end.
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn next_token(&mut self) -> Token {
        while matches!(self.at(self.pos), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
        let index = self.pos;
        let c = self.at(self.pos);
        let single = match c {
            b'{' => Some(Kind::ObjBegin),
            b'}' => Some(Kind::ObjEnd),
            b'[' => Some(Kind::ArrBegin),
            b']' => Some(Kind::ArrEnd),
            b',' => Some(Kind::Comma),
            b':' => Some(Kind::Colon),
            _ => None,
        };
        if let Some(kind) = single {
            self.pos += 1;
            return Token { kind, index };
        }
        let rest = &self.data[self.pos.min(self.data.len())..];
        let kind = match c {
            0 => Kind::End,
            b'"' => self.string(),
            b'-' | b'0'..=b'9' => self.number(),
            b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+' => {
                if rest.starts_with(b"true") {
                    self.pos += 4;
                    Kind::Boolean(true)
                } else if rest.starts_with(b"false") {
                    self.pos += 5;
                    Kind::Boolean(false)
                } else if rest.starts_with(b"null") {
                    self.pos += 4;
                    Kind::Null
                } else if self.invalid_number() {
                    self.number()
                } else {
                    Kind::Error("invalid token")
                }
            }
            _ => Kind::Error("invalid token"),
        };
        // lua-cjson reports an error token where the scan stopped.
        let index = if matches!(kind, Kind::Error(_)) { self.pos } else { index };
        Token { kind, index }
    }

    /// lua-cjson's `json_is_invalid_number`: numbers JSON forbids (a leading
    /// `+`, hex, leading zeros, inf, nan), which it still decodes.
    fn invalid_number(&self) -> bool {
        let mut p = self.pos;
        match self.at(p) {
            b'+' => return true,
            b'-' => p += 1,
            _ => {}
        }
        if self.at(p) == b'0' {
            let c2 = self.at(p + 1);
            return c2 | 0x20 == b'x' || c2.is_ascii_digit();
        }
        if self.at(p) <= b'9' {
            return false;
        }
        let word: Vec<u8> = (0..3).map(|i| self.at(p + i).to_ascii_lowercase()).collect();
        word == b"inf" || word == b"nan"
    }

    fn number(&mut self) -> Kind {
        match strtod(&self.data[self.pos.min(self.data.len())..]) {
            Some((n, used)) => {
                self.pos += used;
                Kind::Number(n)
            }
            None => Kind::Error("invalid number"),
        }
    }

    fn string(&mut self) -> Kind {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = self.at(self.pos);
            match c {
                b'"' => {
                    self.pos += 1;
                    return Kind::Str(out);
                }
                0 => return Kind::Error("unexpected end of string"),
                b'\\' => {
                    let e = self.at(self.pos + 1);
                    let ch = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 12,
                        b'r' => b'\r',
                        b'u' => {
                            if !self.unicode_escape(&mut out) {
                                return Kind::Error("invalid unicode escape code");
                            }
                            continue;
                        }
                        _ => return Kind::Error("invalid escape code"),
                    };
                    out.push(ch);
                    self.pos += 2;
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let mut v = 0;
        for i in 0..4 {
            v = v * 16 + (self.at(at + i) as char).to_digit(16)?;
        }
        Some(v)
    }

    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(mut cp) = self.hex4(self.pos + 2) else { return false };
        let mut len = 6;
        if cp & 0xF800 == 0xD800 {
            if cp & 0x400 != 0 {
                return false;
            }
            if self.at(self.pos + 6) != b'\\' || self.at(self.pos + 7) != b'u' {
                return false;
            }
            let Some(low) = self.hex4(self.pos + 8) else { return false };
            if low & 0xFC00 != 0xDC00 {
                return false;
            }
            cp = (((cp & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        let Some(ch) = char::from_u32(cp) else { return false };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        self.pos += len;
        true
    }

    fn expected(&self, what: &str, token: &Token) -> String {
        let found = match &token.kind {
            Kind::ObjBegin => "T_OBJ_BEGIN",
            Kind::ObjEnd => "T_OBJ_END",
            Kind::ArrBegin => "T_ARR_BEGIN",
            Kind::ArrEnd => "T_ARR_END",
            Kind::Str(_) => "T_STRING",
            Kind::Number(_) => "T_NUMBER",
            Kind::Boolean(_) => "T_BOOLEAN",
            Kind::Null => "T_NULL",
            Kind::Colon => "T_COLON",
            Kind::Comma => "T_COMMA",
            Kind::End => "T_END",
            Kind::Error(text) => text,
        };
        format!("Expected {what} but found {found} at character {}", token.index + 1)
    }

    fn descend(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth, self.pos
            ));
        }
        Ok(())
    }

    fn value(&mut self, token: Token) -> Result<Value, String> {
        let lua = self.lua;
        let err = |e: mlua::Error| e.to_string();
        Ok(match token.kind {
            Kind::Str(s) => Value::String(lua.create_string(&s).map_err(err)?),
            Kind::Number(n) => Value::Number(n),
            Kind::Boolean(b) => Value::Boolean(b),
            Kind::Null => Value::LightUserData(LightUserData(std::ptr::null_mut())),
            Kind::ArrBegin => {
                self.descend()?;
                let t = lua.create_table().map_err(err)?;
                let mut token = self.next_token();
                if !matches!(token.kind, Kind::ArrEnd) {
                    let mut i = 1;
                    loop {
                        let v = self.value(token)?;
                        t.raw_set(i, v).map_err(err)?;
                        i += 1;
                        token = self.next_token();
                        match token.kind {
                            Kind::ArrEnd => break,
                            Kind::Comma => token = self.next_token(),
                            _ => return Err(self.expected("comma or array end", &token)),
                        }
                    }
                }
                self.depth -= 1;
                Value::Table(t)
            }
            Kind::ObjBegin => {
                self.descend()?;
                let t = lua.create_table().map_err(err)?;
                let mut token = self.next_token();
                if !matches!(token.kind, Kind::ObjEnd) {
                    loop {
                        let Kind::Str(key) = &token.kind else {
                            return Err(self.expected("object key string", &token));
                        };
                        let key = lua.create_string(key).map_err(err)?;
                        let colon = self.next_token();
                        if !matches!(colon.kind, Kind::Colon) {
                            return Err(self.expected("colon", &colon));
                        }
                        let next = self.next_token();
                        let v = self.value(next)?;
                        t.raw_set(key, v).map_err(err)?;
                        token = self.next_token();
                        match token.kind {
                            Kind::ObjEnd => break,
                            Kind::Comma => token = self.next_token(),
                            _ => return Err(self.expected("comma or object end", &token)),
                        }
                    }
                }
                self.depth -= 1;
                Value::Table(t)
            }
            _ => return Err(self.expected("value", &token)),
        })
    }
}

/// C's `strtod` on a prefix of `s`: the value and the bytes it used, or None
/// if no number starts there. Decimal, `inf`/`infinity`/`nan` and hex
/// integers (`0x1F`), with an optional sign.
pub(crate) fn strtod(s: &[u8]) -> Option<(f64, usize)> {
    let mut i = 0;
    let negative = match s.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let sign = if negative { -1.0 } else { 1.0 };
    let rest = &s[i..];
    let lower: Vec<u8> = rest.iter().take(8).map(|b| b.to_ascii_lowercase()).collect();
    if lower.starts_with(b"infinity") {
        return Some((sign * f64::INFINITY, i + 8));
    }
    if lower.starts_with(b"inf") {
        return Some((sign * f64::INFINITY, i + 3));
    }
    if lower.starts_with(b"nan") {
        return Some((sign * f64::NAN, i + 3));
    }
    if lower.len() >= 3 && lower[0] == b'0' && lower[1] == b'x' && lower[2].is_ascii_hexdigit() {
        let mut j = i + 2;
        let mut v = 0.0f64;
        while j < s.len() && s[j].is_ascii_hexdigit() {
            v = v * 16.0 + (s[j] as char).to_digit(16).unwrap_or(0) as f64;
            j += 1;
        }
        return Some((sign * v, j));
    }
    let mut j = i;
    let digits = |j: &mut usize| {
        let start = *j;
        while *j < s.len() && s[*j].is_ascii_digit() {
            *j += 1;
        }
        *j - start
    };
    let mut count = digits(&mut j);
    if j < s.len() && s[j] == b'.' {
        j += 1;
        count += digits(&mut j);
    }
    if count == 0 {
        return None;
    }
    if j < s.len() && (s[j] == b'e' || s[j] == b'E') {
        let mut k = j + 1;
        if k < s.len() && (s[k] == b'+' || s[k] == b'-') {
            k += 1;
        }
        if digits(&mut k) > 0 {
            j = k;
        }
    }
    let text = std::str::from_utf8(&s[..j]).ok()?;
    let text = text.strip_suffix('.').unwrap_or(text);
    text.parse::<f64>().ok().map(|v| (v, j))
}
