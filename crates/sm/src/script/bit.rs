//! `bit`: LuaBitOp 1.0.2 (the library Redis ships) in Rust. Numbers are
//! normalized to 32 bits the way it does, by adding 2^52 + 2^51 and keeping
//! the low word (so 1.5 becomes 2 and 2.5 becomes 2: round half to even), and
//! results are signed 32-bit integers.

use mlua::{Lua, MultiValue, Table, Value};

use super::api::{arg_error, type_name};
use super::convert::lua_str2number;

/// A 32-bit operation of two operands.
type BinOp = fn(u32, u32) -> u32;

/// Builds the `bit` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("tobit", lua.create_function(|lua, a: MultiValue| Ok(signed(arg(lua, &a, 1)?)))?)?;
    t.raw_set("bnot", lua.create_function(|lua, a: MultiValue| Ok(signed(!arg(lua, &a, 1)?)))?)?;
    t.raw_set(
        "bswap",
        lua.create_function(|lua, a: MultiValue| Ok(signed(arg(lua, &a, 1)?.swap_bytes())))?,
    )?;
    let folds: [(&str, BinOp); 3] =
        [("band", |x, y| x & y), ("bor", |x, y| x | y), ("bxor", |x, y| x ^ y)];
    for (name, op) in folds {
        let f = lua.create_function(move |lua, a: MultiValue| {
            let mut acc = arg(lua, &a, 1)?;
            for i in 2..=a.len() {
                acc = op(acc, arg(lua, &a, i)?);
            }
            Ok(signed(acc))
        })?;
        t.raw_set(name, f)?;
    }
    let shifts: [(&str, BinOp); 5] = [
        ("lshift", |x, n| x << n),
        ("rshift", |x, n| x >> n),
        ("arshift", |x, n| ((x as i32) >> n) as u32),
        ("rol", |x, n| x.rotate_left(n)),
        ("ror", |x, n| x.rotate_right(n)),
    ];
    for (name, op) in shifts {
        let f = lua.create_function(move |lua, a: MultiValue| {
            let x = arg(lua, &a, 1)?;
            let n = arg(lua, &a, 2)? & 31;
            Ok(signed(op(x, n)))
        })?;
        t.raw_set(name, f)?;
    }
    t.raw_set("tohex", lua.create_function(tohex)?)?;
    Ok(t)
}

fn signed(b: u32) -> f64 {
    b as i32 as f64
}

/// LuaBitOp's `barg`: `luaL_checknumber`, then the low word of n + 2^52 + 2^51.
fn arg(lua: &Lua, args: &MultiValue, n: usize) -> mlua::Result<u32> {
    let v = args.get(n - 1);
    let num = match v {
        Some(Value::Integer(i)) => Some(*i as f64),
        Some(Value::Number(x)) => Some(*x),
        Some(Value::String(s)) => lua_str2number(&s.as_bytes()),
        _ => None,
    };
    match num {
        Some(x) => Ok((x + 6_755_399_441_055_744.0).to_bits() as u32),
        None => {
            let got = v.map_or("no value", type_name);
            Err(arg_error(lua, n, &format!("number expected, got {got}")))
        }
    }
}

fn tohex(lua: &Lua, a: MultiValue) -> mlua::Result<String> {
    let mut b = arg(lua, &a, 1)?;
    let mut n: i32 = if a.len() < 2 { 8 } else { arg(lua, &a, 2)? as i32 };
    let digits: &[u8; 16] = if n < 0 {
        n = n.wrapping_neg();
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let n = n.clamp(0, 8) as usize;
    let mut out = vec![b'0'; n];
    for i in (0..n).rev() {
        out[i] = digits[(b & 15) as usize];
        b >>= 4;
    }
    Ok(String::from_utf8(out).expect("hex digits"))
}
