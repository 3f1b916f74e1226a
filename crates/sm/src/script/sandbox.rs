//! The builtins that bypass metatables (`rawget`, `rawset`, `next`, `pairs`,
//! `ipairs`, `getmetatable`, `setmetatable`, `table.insert`), taught about
//! the prelude's read-only proxies.
//!
//! They are Rust, so C functions to Lua as in Redis: a script that
//! tail-calls one (`return rawget(t, k)`) keeps its own frame, and their
//! errors carry the script's line exactly as Redis's do.

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Table, Value};

use super::api::{arg_error, lua_error, raise, type_name};
use super::convert::{c_cast, lua_str2number};

const READONLY: &str = "Attempt to modify a readonly table";

/// What the functions need from the prelude.
struct Proxies {
    /// proxy → the real table behind it.
    backing: Table,
    /// proxy → what `getmetatable(proxy)` returns.
    visible_meta: Table,
    /// What `getmetatable("")` returns.
    string_meta: Table,
    next: Function,
    ipairs: Function,
}

impl Proxies {
    fn real(&self, t: &Table) -> mlua::Result<Option<Table>> {
        self.backing.raw_get(t)
    }

    fn is_proxy(&self, t: &Table) -> mlua::Result<bool> {
        Ok(self.real(t)?.is_some())
    }
}

/// Redis raises this from C, with no line prefix.
fn readonly(lua: &Lua) -> mlua::Error {
    match lua.create_string(READONLY) {
        Ok(s) => raise(lua, Value::String(s)),
        Err(e) => e,
    }
}

/// `luaL_checktype(L, n, LUA_TTABLE)`.
fn table_arg(lua: &Lua, args: &MultiValue, n: usize) -> mlua::Result<Table> {
    match args.get(n - 1) {
        Some(Value::Table(t)) => Ok(t.clone()),
        other => {
            let got = other.map_or("no value", type_name);
            Err(arg_error(lua, n, &format!("table expected, got {got}")))
        }
    }
}

/// The global table's `__index`: reading a global that does not exist.
pub(crate) fn nonexistent(lua: &Lua, (_, k): (Value, Value)) -> mlua::Result<()> {
    let name = match &k {
        Value::String(s) => s.to_string_lossy(),
        Value::Integer(_) | Value::Number(_) => super::convert::number_to_lua_string(&k),
        _ => {
            return Err(lua_error(
                lua,
                "Second argument to luaProtectedTableError must be a string or number",
            ))
        }
    };
    Err(lua_error(lua, &format!("Script attempted to access nonexistent global variable '{name}'")))
}

/// Builds the functions, given the prelude's proxy tables and Lua's own
/// `next` and `ipairs`.
pub(crate) fn functions(
    lua: &Lua,
    (backing, visible_meta, string_meta, next, ipairs): (Table, Table, Table, Function, Function),
) -> mlua::Result<Table> {
    let p = std::sync::Arc::new(Proxies { backing, visible_meta, string_meta, next, ipairs });
    let out = lua.create_table()?;

    let px = p.clone();
    out.raw_set(
        "rawget",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            let t = px.real(&t)?.unwrap_or(t);
            t.raw_get::<Value>(args.get(1).cloned().unwrap_or(Value::Nil))
        })?,
    )?;

    let px = p.clone();
    out.raw_set(
        "rawset",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            if px.is_proxy(&t)? {
                return Err(readonly(lua));
            }
            let k = args.get(1).cloned().unwrap_or(Value::Nil);
            let nan = matches!(k, Value::Number(n) if n.is_nan());
            if k.is_nil() || nan {
                let msg = if nan { "table index is NaN" } else { "table index is nil" };
                return Err(raise(lua, Value::String(lua.create_string(msg)?)));
            }
            t.raw_set(k, args.get(2).cloned().unwrap_or(Value::Nil))?;
            Ok(t)
        })?,
    )?;

    let px = p.clone();
    out.raw_set(
        "next",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            let t = px.real(&t)?.unwrap_or(t);
            let k = args.get(1).cloned().unwrap_or(Value::Nil);
            // The only way Lua's next fails here; raised from C, no line.
            px.next.call::<MultiValue>((t, k)).map_err(|_| {
                match lua.create_string("invalid key to 'next'") {
                    Ok(s) => raise(lua, Value::String(s)),
                    Err(e) => e,
                }
            })
        })?,
    )?;

    let px = p.clone();
    out.raw_set(
        "pairs",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            let t = px.real(&t)?.unwrap_or(t);
            (px.next.clone(), t, Value::Nil).into_lua_multi(lua)
        })?,
    )?;

    let px = p.clone();
    out.raw_set(
        "ipairs",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            let t = px.real(&t)?.unwrap_or(t);
            px.ipairs.call::<MultiValue>(t)
        })?,
    )?;

    let px = p.clone();
    out.raw_set(
        "getmetatable",
        lua.create_function(move |lua, args: MultiValue| {
            let Some(v) = args.front() else {
                return Err(arg_error(lua, 1, "value expected"));
            };
            Ok(match v {
                Value::Table(t) if px.is_proxy(t)? => px.visible_meta.raw_get::<Value>(t)?,
                Value::Table(t) => match t.metatable() {
                    None => Value::Nil,
                    Some(mt) => match mt.raw_get::<Value>("__metatable")? {
                        Value::Nil => Value::Table(mt),
                        shown => shown,
                    },
                },
                Value::String(_) => Value::Table(px.string_meta.clone()),
                // No other value can carry a metatable in this sandbox.
                _ => Value::Nil,
            })
        })?,
    )?;

    let px = p.clone();
    out.raw_set(
        "setmetatable",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            let mt = match args.get(1) {
                None | Some(Value::Nil) => None,
                Some(Value::Table(mt)) => Some(mt.clone()),
                Some(_) => return Err(arg_error(lua, 2, "nil or table expected")),
            };
            // (A proxy's own metatable is protected; Redis's read-only
            // tables are refused as read-only, so test that first.)
            if px.is_proxy(&t)? {
                return Err(readonly(lua));
            }
            if let Some(old) = t.metatable() {
                if !old.raw_get::<Value>("__metatable")?.is_nil() {
                    return Err(lua_error(lua, "cannot change a protected metatable"));
                }
            }
            t.set_metatable(mt)?;
            Ok(t)
        })?,
    )?;

    let px = p;
    out.raw_set(
        "insert",
        lua.create_function(move |lua, args: MultiValue| {
            let t = table_arg(lua, &args, 1)?;
            let mut e = t.raw_len() as i64 + 1;
            let (pos, v) = match args.len() {
                2 => (e, args[1].clone()),
                3 => {
                    let pos = match &args[1] {
                        Value::Integer(i) => Some(*i as f64),
                        Value::Number(n) => Some(*n),
                        Value::String(s) => lua_str2number(&s.as_bytes()),
                        _ => None,
                    };
                    let Some(pos) = pos else {
                        let got = type_name(&args[1]);
                        return Err(arg_error(lua, 2, &format!("number expected, got {got}")));
                    };
                    (c_cast(pos) as i32 as i64, args[2].clone())
                }
                _ => return Err(lua_error(lua, "wrong number of arguments to 'insert'")),
            };
            if px.is_proxy(&t)? {
                return Err(readonly(lua));
            }
            if args.len() == 3 {
                e = e.max(pos);
                let mut i = e;
                while i > pos {
                    let prev: Value = t.raw_get(i - 1)?;
                    t.raw_set(i, prev)?;
                    i -= 1;
                }
            }
            t.raw_set(pos, v)?;
            Ok(())
        })?,
    )?;
    Ok(out)
}
