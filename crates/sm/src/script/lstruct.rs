//! `struct`: Roberto Ierusalimschy's struct library (the version Redis ships)
//! in Rust: `struct.pack(fmt, …)`, `struct.unpack(fmt, s [, pos])`,
//! `struct.size(fmt)`, with an x86-64 host's sizes (`l`, `L`, `T` are 8
//! bytes, `i` 4, maximum alignment 8, native order little-endian) and its
//! error texts. `unpack` returns at most [`MAX_RESULTS`] values (see
//! `cmsgpack` for why).

use mlua::{IntoLua, Lua, MultiValue, Table, Value};

use super::api::{arg_error, lua_error, type_name};
use super::convert::{c_cast, lua_str2number, number_to_lua_string};

const MAX_INT_SIZE: usize = 32;
const MAX_ALIGN: usize = 8;

/// Values one `unpack` call may return.
pub(crate) const MAX_RESULTS: usize = 4096;

/// Builds the `struct` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lua.create_function(pack)?)?;
    t.raw_set("unpack", lua.create_function(unpack)?)?;
    t.raw_set("size", lua.create_function(size)?)?;
    Ok(t)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

struct Header {
    endian: Endian,
    align: usize,
}

impl Header {
    fn new() -> Header {
        Header { endian: Endian::Little, align: 1 }
    }
}

/// Reads the format one option at a time.
struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
}

impl Format<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.fmt.get(self.pos)?;
        if c == 0 {
            return None;
        }
        self.pos += 1;
        Some(c)
    }

    /// `getnum`: a decimal number at the cursor, or `default`.
    fn number(&mut self, lua: &Lua, default: usize) -> mlua::Result<usize> {
        if !self.fmt.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: i32 = 0;
        while let Some(&d) = self.fmt.get(self.pos).filter(|d| d.is_ascii_digit()) {
            let d = (d - b'0') as i32;
            if a > i32::MAX / 10 || a * 10 > i32::MAX - d {
                return Err(lua_error(lua, "integral size overflow"));
            }
            a = a * 10 + d;
            self.pos += 1;
        }
        Ok(a as usize)
    }

    /// `optsize`: the size an option takes (reading its number, if any).
    fn size(&mut self, lua: &Lua, opt: u8) -> mlua::Result<usize> {
        Ok(match opt {
            b'B' | b'b' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'x' => 1,
            b'c' => self.number(lua, 1)?,
            b'i' | b'I' => {
                let size = self.number(lua, 4)?;
                if size > MAX_INT_SIZE {
                    return Err(lua_error(
                        lua,
                        &format!("integral size {size} is larger than limit of {MAX_INT_SIZE}"),
                    ));
                }
                size
            }
            _ => 0,
        })
    }

    /// `controloptions`: endianness, alignment, spaces; anything else is an
    /// invalid option.
    fn control(&mut self, lua: &Lua, opt: u8, h: &mut Header) -> mlua::Result<()> {
        match opt {
            b' ' => {}
            b'>' => h.endian = Endian::Big,
            b'<' => h.endian = Endian::Little,
            b'!' => {
                let a = self.number(lua, MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(lua_error(lua, &format!("alignment {a} is not a power of 2")));
                }
                h.align = a;
            }
            other => {
                let msg = format!("invalid format option '{}'", other as char);
                return Err(arg_error(lua, 1, &msg));
            }
        }
        Ok(())
    }
}

fn to_align(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn string_arg(lua: &Lua, args: &MultiValue, n: usize) -> mlua::Result<Vec<u8>> {
    match args.get(n - 1) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(v @ (Value::Integer(_) | Value::Number(_))) => {
            Ok(number_to_lua_string(v).into_bytes())
        }
        other => {
            let got = other.map_or("no value", type_name);
            Err(arg_error(lua, n, &format!("string expected, got {got}")))
        }
    }
}

fn number_arg(lua: &Lua, args: &MultiValue, n: usize) -> mlua::Result<f64> {
    let v = args.get(n - 1);
    let num = match v {
        Some(Value::Integer(i)) => Some(*i as f64),
        Some(Value::Number(x)) => Some(*x),
        Some(Value::String(s)) => lua_str2number(&s.as_bytes()),
        _ => None,
    };
    num.ok_or_else(|| {
        let got = v.map_or("no value", type_name);
        arg_error(lua, n, &format!("number expected, got {got}"))
    })
}

fn ordered(bytes: &mut [u8], endian: Endian) {
    if endian == Endian::Big {
        bytes.reverse();
    }
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    let fmt = string_arg(lua, &args, 1)?;
    let mut f = Format { fmt: &fmt, pos: 0 };
    let mut h = Header::new();
    let mut out = Vec::new();
    let mut arg = 2;
    while let Some(opt) = f.next() {
        let mut size = f.size(lua, opt)?;
        let pad = to_align(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number_arg(lua, &args, arg)?;
                arg += 1;
                let mut value = if n < 0.0 { c_cast(n) as u64 } else { n as u64 };
                let mut buf = vec![0u8; size];
                for b in buf.iter_mut() {
                    *b = value as u8;
                    value >>= 8;
                }
                ordered(&mut buf, h.endian);
                out.extend_from_slice(&buf);
            }
            b'x' => out.push(0),
            b'f' => {
                let v = number_arg(lua, &args, arg)? as f32;
                arg += 1;
                let mut b = v.to_le_bytes();
                ordered(&mut b, h.endian);
                out.extend_from_slice(&b);
            }
            b'd' => {
                let v = number_arg(lua, &args, arg)?;
                arg += 1;
                let mut b = v.to_le_bytes();
                ordered(&mut b, h.endian);
                out.extend_from_slice(&b);
            }
            b'c' | b's' => {
                let s = string_arg(lua, &args, arg)?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    // Redis's struct reports the argument after the string.
                    return Err(arg_error(lua, arg, "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            other => f.control(lua, other, &mut h)?,
        }
    }
    lua.create_string(&out)
}

fn unpack(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let fmt = string_arg(lua, &args, 1)?;
    let data = string_arg(lua, &args, 2)?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1,
        Some(_) => c_cast(number_arg(lua, &args, 3)?),
    };
    if start <= 0 {
        return Err(arg_error(lua, 3, "offset must be 1 or greater"));
    }
    let ld = data.len();
    let mut pos = (start - 1) as usize;
    let mut f = Format { fmt: &fmt, pos: 0 };
    let mut h = Header::new();
    let mut out = MultiValue::new();
    let too_short = |lua: &Lua| arg_error(lua, 2, "data string too short");
    while let Some(opt) = f.next() {
        let mut size = f.size(lua, opt)?;
        pos += to_align(pos, &h, opt, size);
        if size > ld || pos > ld - size {
            return Err(too_short(lua));
        }
        if out.len() >= MAX_RESULTS {
            return Err(lua_error(lua, "stack overflow (too many results)"));
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let mut bytes = data[pos..pos + size].to_vec();
                if h.endian == Endian::Little {
                    bytes.reverse();
                }
                let mut l: u64 = 0;
                for b in bytes {
                    l = l.wrapping_shl(8) | b as u64;
                }
                let n = if opt.is_ascii_lowercase() {
                    let mask = u64::MAX.wrapping_shl((size * 8).wrapping_sub(1) as u32);
                    if l & mask != 0 {
                        l |= mask;
                    }
                    l as i64 as f64
                } else {
                    l as f64
                };
                out.push_back(Value::Number(n));
            }
            b'x' => {}
            b'f' => {
                let mut b: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
                ordered(&mut b, h.endian);
                out.push_back(Value::Number(f32::from_le_bytes(b) as f64));
            }
            b'd' => {
                let mut b: [u8; 8] = data[pos..pos + 8].try_into().expect("8 bytes");
                ordered(&mut b, h.endian);
                out.push_back(Value::Number(f64::from_le_bytes(b)));
            }
            b'c' => {
                if size == 0 {
                    let prev = match out.back() {
                        Some(Value::Number(n)) => Some(*n),
                        Some(Value::Integer(i)) => Some(*i as f64),
                        Some(Value::String(s)) => lua_str2number(&s.as_bytes()),
                        _ => None,
                    };
                    let Some(prev) = prev else {
                        return Err(lua_error(lua, "format 'c0' needs a previous size"));
                    };
                    out.pop_back();
                    size = prev as usize;
                    if size > ld || pos > ld - size {
                        return Err(too_short(lua));
                    }
                }
                out.push_back(lua.create_string(&data[pos..pos + size])?.into_lua(lua)?);
            }
            b's' => {
                let Some(len) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err(lua_error(lua, "unfinished string in data"));
                };
                size = len + 1;
                out.push_back(lua.create_string(&data[pos..pos + len])?.into_lua(lua)?);
            }
            other => f.control(lua, other, &mut h)?,
        }
        pos += size;
    }
    out.push_back(Value::Integer(pos as i64 + 1));
    Ok(out)
}

fn size(lua: &Lua, args: MultiValue) -> mlua::Result<i64> {
    let fmt = string_arg(lua, &args, 1)?;
    let mut f = Format { fmt: &fmt, pos: 0 };
    let mut h = Header::new();
    let mut pos = 0usize;
    while let Some(opt) = f.next() {
        let size = f.size(lua, opt)?;
        pos += to_align(pos, &h, opt, size);
        if opt == b's' {
            return Err(arg_error(lua, 1, "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(arg_error(lua, 1, "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(lua, opt, &mut h)?;
        }
        pos += size;
    }
    Ok(pos as i64)
}
