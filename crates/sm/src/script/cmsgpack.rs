//! `cmsgpack`: Redis's lua-cmsgpack 0.4.0 in Rust (`pack`, `unpack`,
//! `unpack_one`, `unpack_limit`), byte for byte the same encoding.
//!
//! Two bounds are ours: decoding nests at most [`MAX_DECODE_DEPTH`] levels
//! (Redis recurses without limit, on the C stack), and `unpack` returns at
//! most [`MAX_RESULTS`] values (Redis stops at Lua's stack limit, about 8000;
//! every value handed back to Lua here holds one of mlua's references, of
//! which there are about as many). Both fail with lua-cmsgpack's texts.

use mlua::{IntoLua, Lua, MultiValue, Table, Value};

use super::api::{arg_error, lua_error, type_name};
use super::convert::{c_cast, lua_str2number, number_to_lua_string};

/// Tables nested deeper than this are packed as nil (lua-cmsgpack's limit).
const MAX_NESTING: usize = 16;

/// Nesting limit when unpacking.
pub(crate) const MAX_DECODE_DEPTH: usize = 256;

/// Values one `unpack` call may return.
pub(crate) const MAX_RESULTS: usize = 4096;

/// Builds the `cmsgpack` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lua.create_function(pack)?)?;
    t.raw_set("unpack", lua.create_function(|lua, a: MultiValue| unpack(lua, a, Mode::All))?)?;
    t.raw_set("unpack_one", lua.create_function(|lua, a: MultiValue| unpack(lua, a, Mode::One))?)?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(|lua, a: MultiValue| unpack(lua, a, Mode::Limit))?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    if args.is_empty() {
        return Err(arg_error(lua, 0, "MessagePack pack needs input."));
    }
    let mut out = Vec::new();
    for v in args.iter() {
        encode(v, 0, &mut out).map_err(|e| lua_error(lua, &e.to_string()))?;
    }
    lua.create_string(&out)
}

fn encode(v: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::String(s) => encode_bytes(&s.as_bytes(), out),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => encode_int(*i, out),
        Value::Number(n) => {
            if n.is_finite() && c_cast(*n) as f64 == *n {
                encode_int(c_cast(*n), out)
            } else {
                encode_double(*n, out)
            }
        }
        Value::Table(t) if level < MAX_NESTING => encode_table(t, level, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_bytes(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn encode_double(d: f64, out: &mut Vec<u8>) {
    let f = d as f32;
    if f as f64 == d {
        out.push(0xca);
        out.extend_from_slice(&f.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&d.to_be_bytes());
    }
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_header(small: u8, big16: u8, big32: u8, n: usize, out: &mut Vec<u8>) {
    if n <= 15 {
        out.push(small | n as u8);
    } else if n <= 0xffff {
        out.push(big16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(big32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_table(t: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    // An array when every key is a positive integer (fitting a C int) and
    // they run from 1 to the count without a hole.
    let (mut count, mut max, mut array) = (0usize, 0f64, true);
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        count += 1;
        let n = match k {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => {
                array = false;
                continue;
            }
        };
        if n <= 0.0 || n.fract() != 0.0 || n > i32::MAX as f64 {
            array = false;
        }
        max = max.max(n);
    }
    if array && max == count as f64 {
        let len = t.raw_len();
        encode_header(0x90, 0xdc, 0xdd, len, out);
        for i in 1..=len {
            let v: Value = t.raw_get(i)?;
            encode(&v, level + 1, out)?;
        }
    } else {
        encode_header(0x80, 0xde, 0xdf, count, out);
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            encode(&k, level + 1, out)?;
            encode(&v, level + 1, out)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    All,
    One,
    Limit,
}

/// `luaL_optinteger` / `luaL_checkinteger` on argument `n`.
fn integer_arg(lua: &Lua, args: &MultiValue, n: usize, optional: bool) -> mlua::Result<i64> {
    let v = args.get(n - 1);
    if optional && matches!(v, None | Some(Value::Nil)) {
        return Ok(0);
    }
    let num = match v {
        Some(Value::Integer(i)) => Some(*i as f64),
        Some(Value::Number(x)) => Some(*x),
        Some(Value::String(s)) => lua_str2number(&s.as_bytes()),
        _ => None,
    };
    match num {
        Some(x) => Ok(c_cast(x)),
        None => {
            let got = v.map_or("no value", type_name);
            Err(arg_error(lua, n, &format!("number expected, got {got}")))
        }
    }
}

fn unpack(lua: &Lua, args: MultiValue, mode: Mode) -> mlua::Result<MultiValue> {
    let (limit, offset) = match mode {
        Mode::All => (0, 0),
        Mode::One => (1, integer_arg(lua, &args, 2, true)?),
        Mode::Limit => (integer_arg(lua, &args, 2, false)?, integer_arg(lua, &args, 3, true)?),
    };
    let data = match args.front() {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(v @ (Value::Integer(_) | Value::Number(_))) => number_to_lua_string(v).into_bytes(),
        other => {
            let got = other.map_or("no value", type_name);
            return Err(arg_error(lua, 1, &format!("string expected, got {got}")));
        }
    };
    let len = data.len();
    if offset < 0 || limit < 0 {
        return Err(lua_error(
            lua,
            &format!(
                "Invalid request to unpack with offset of {} and limit of {}.",
                offset as i32, len as i32
            ),
        ));
    }
    if offset as usize > len {
        return Err(lua_error(
            lua,
            &format!("Start offset {} greater than input length {}.", offset as i32, len as i32),
        ));
    }
    let decode_all = limit == 0 && offset == 0;
    let limit = if decode_all { i64::from(i32::MAX) } else { limit };
    let mut cursor = Cursor { lua, data: &data, pos: offset as usize, depth: 0 };
    let mut values = MultiValue::new();
    let mut count = 0i64;
    while cursor.pos < len && count < limit {
        if values.len() >= MAX_RESULTS {
            return Err(lua_error(
                lua,
                "too many return values at once; use unpack_one or unpack_limit instead.",
            ));
        }
        match cursor.value() {
            Ok(v) => values.push_back(v),
            Err(Bad::Eof) => return Err(lua_error(lua, "Missing bytes in input.")),
            Err(Bad::Format) => return Err(lua_error(lua, "Bad data format in input.")),
            Err(Bad::Lua(e)) => return Err(e),
        }
        count += 1;
    }
    if !decode_all {
        let next = if cursor.pos >= len { -1 } else { cursor.pos as i64 };
        values.push_front(next.into_lua(lua)?);
    }
    Ok(values)
}

enum Bad {
    Eof,
    Format,
    Lua(mlua::Error),
}

impl From<mlua::Error> for Bad {
    fn from(e: mlua::Error) -> Bad {
        Bad::Lua(e)
    }
}

struct Cursor<'a> {
    lua: &'a Lua,
    data: &'a [u8],
    pos: usize,
    depth: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        let end = self.pos.checked_add(n).ok_or(Bad::Eof)?;
        let bytes = self.data.get(self.pos..end).ok_or(Bad::Eof)?;
        self.pos = end;
        Ok(bytes)
    }

    fn be(&mut self, n: usize) -> Result<u64, Bad> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &b| acc << 8 | b as u64))
    }

    fn string(&mut self, n: usize) -> Result<Value, Bad> {
        let lua = self.lua;
        let bytes = self.take(n)?;
        Ok(Value::String(lua.create_string(bytes)?))
    }

    fn value(&mut self) -> Result<Value, Bad> {
        let tag = self.take(1)?[0];
        let num = |n: f64| Ok(Value::Number(n));
        match tag {
            0xcc => num(self.be(1)? as f64),
            0xd0 => num(self.be(1)? as u8 as i8 as f64),
            0xcd => num(self.be(2)? as f64),
            0xd1 => num(self.be(2)? as u16 as i16 as f64),
            0xce => num(self.be(4)? as f64),
            0xd2 => num(self.be(4)? as u32 as i32 as f64),
            0xcf => num(self.be(8)? as f64),
            0xd3 => num(self.be(8)? as i64 as f64),
            0xc0 => Ok(Value::Nil),
            0xc3 => Ok(Value::Boolean(true)),
            0xc2 => Ok(Value::Boolean(false)),
            0xca => num(f32::from_bits(self.be(4)? as u32) as f64),
            0xcb => num(f64::from_bits(self.be(8)?)),
            0xd9 => {
                let n = self.be(1)? as usize;
                self.string(n)
            }
            0xda => {
                let n = self.be(2)? as usize;
                self.string(n)
            }
            0xdb => {
                let n = self.be(4)? as usize;
                self.string(n)
            }
            0xdc => {
                let n = self.be(2)? as usize;
                self.array(n)
            }
            0xdd => {
                let n = self.be(4)? as usize;
                self.array(n)
            }
            0xde => {
                let n = self.be(2)? as usize;
                self.map(n)
            }
            0xdf => {
                let n = self.be(4)? as usize;
                self.map(n)
            }
            t if t & 0x80 == 0 => num(t as f64),
            t if t & 0xe0 == 0xe0 => num(t as i8 as f64),
            t if t & 0xe0 == 0xa0 => self.string((t & 0x1f) as usize),
            t if t & 0xf0 == 0x90 => self.array((t & 0xf) as usize),
            t if t & 0xf0 == 0x80 => self.map((t & 0xf) as usize),
            _ => Err(Bad::Format),
        }
    }

    fn descend(&mut self) -> Result<(), Bad> {
        self.depth += 1;
        if self.depth > MAX_DECODE_DEPTH {
            return Err(Bad::Format);
        }
        Ok(())
    }

    fn array(&mut self, n: usize) -> Result<Value, Bad> {
        self.descend()?;
        let t = self.lua.create_table()?;
        for i in 1..=n {
            let v = self.value()?;
            t.raw_set(i, v)?;
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }

    fn map(&mut self, n: usize) -> Result<Value, Bad> {
        self.descend()?;
        let t = self.lua.create_table()?;
        for _ in 0..n {
            let k = self.value()?;
            let v = self.value()?;
            // lua_settable with a nil (or NaN) key raises in Redis; skip it.
            let bad_key = matches!(k, Value::Nil) || matches!(k, Value::Number(n) if n.is_nan());
            if !bad_key {
                t.raw_set(k, v)?;
            }
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }
}
