//! [`ScriptVm`]: the interpreter, its script cache, the budget hook and one
//! run from start to reply.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use mlua::chunk::ChunkMode;
use mlua::{
    ffi, Function, HookTriggers, Lua, LuaOptions, RegistryKey, StdLib, Table, Value, VmState,
};

use super::alloc::Meter;
use super::api::{self, Ctx, Kill};
use super::convert::{lua_to_reply, number_to_lua_string};
use super::{shebang, Host, RunOptions, ScriptFlags, Sha, HOOK_EVERY, RUN_GC_STEP};
use crate::reply::Reply;

/// The sandbox, in Lua (loaded once per VM).
const PRELUDE: &str = include_str!("prelude.lua");

/// Bytes allocated (by runs or not) after which a full collection runs
/// between two runs.
const GC_EVERY: usize = 32 << 20;

/// xxh3 of the script body: the cache is keyed by body, so a cached script
/// costs a hash of its text, not a SHA1, per call.
#[derive(Default)]
struct BodyHasher(u64);

impl Hasher for BodyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
}

/// A compiled script. The function lives in the Lua registry, not as an
/// mlua reference: mlua keeps references on an auxiliary Lua stack limited
/// to about 8000 slots, and a node may cache more scripts than that.
struct Cached {
    sha: Sha,
    flags: ScriptFlags,
    func: RegistryKey,
}

/// The Lua state and everything that refers into it (dropped before the
/// meter its allocator reports to).
struct Engine {
    lua: Lua,
    /// The prelude's entry point: `run(f, keys, argv) -> ok, value`.
    runner: Function,
    scripts: HashMap<Box<[u8]>, Cached, BuildHasherDefault<BodyHasher>>,
}

/// One Lua interpreter with Redis's scripting API. Not replicated: a node
/// builds one, keeps it across calls (compiled scripts stay cached), and can
/// drop it at any time. Not `Sync`; the engine keeps it behind its lock.
pub struct ScriptVm {
    engine: Engine,
    meter: Box<Meter>,
}

impl Default for ScriptVm {
    fn default() -> Self {
        ScriptVm::new()
    }
}

impl Drop for ScriptVm {
    fn drop(&mut self) {
        // Give Lua back mlua's allocator before `engine` closes the state.
        let meter = &*self.meter;
        // SAFETY: the state is live (closed only when `engine` drops, after
        // this); exec_raw hands us its pointer inside a protected call.
        let _ = unsafe { self.engine.lua.exec_raw::<()>((), |state| meter.uninstall(state)) };
    }
}

impl ScriptVm {
    /// A fresh interpreter with Redis's libraries and sandbox. Panics only if
    /// Lua cannot be set up at all (out of memory at start).
    pub fn new() -> ScriptVm {
        ScriptVm::build().expect("building the Lua script VM")
    }

    fn build() -> mlua::Result<ScriptVm> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG;
        // SAFETY: `debug` is needed while the prelude runs (it keeps
        // `getinfo` and `getmetatable` for itself) and is removed from the
        // globals before any script can run.
        let lua = unsafe { Lua::unsafe_new_with(libs, LuaOptions::new()) };
        let mut meter = None;
        // SAFETY: the state is live and ours; the meter box is kept in the
        // VM and outlives the state's use of it (see `Drop`).
        unsafe {
            lua.exec_raw::<()>((), |state| meter = Some(Meter::install(state)))?;
        }
        let meter = meter.expect("exec_raw ran the closure");
        let runner = match Self::set_up(&lua, &meter) {
            Ok(runner) => runner,
            Err(e) => {
                // The state is about to close: give it its allocator back
                // before the meter goes.
                // SAFETY: as in `Drop`.
                let _ = unsafe { lua.exec_raw::<()>((), |state| meter.uninstall(state)) };
                return Err(e);
            }
        };
        let engine = Engine { lua, runner, scripts: HashMap::default() };
        Ok(ScriptVm { engine, meter })
    }

    /// Installs the sandbox; returns the per-run entry point.
    fn set_up(lua: &Lua, meter: &Meter) -> mlua::Result<Function> {
        lua.set_app_data(Ctx::new(meter));
        lua.gc_stop();
        let globals = lua.globals();
        let primitives = api::primitives(lua)?;
        // Its chunk name, "=?", marks its frames for the error handler.
        let prelude = lua.load(PRELUDE).set_name("=?").into_function()?;
        let exports: Table = prelude.call((primitives, globals))?;
        let runner: Function = exports.raw_get("run")?;
        let env: Table = exports.raw_get("env")?;
        // The protected proxy becomes the thread's global table: scripts,
        // `loadstring` chunks and coroutines all get it as their environment.
        // SAFETY: exec_raw pushed `env`; lua_replace pops it into the slot.
        unsafe {
            lua.exec_raw::<()>(env, |state| ffi::lua_replace(state, ffi::LUA_GLOBALSINDEX))?;
        }
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), hook)?;
        full_collect(lua)?;
        Ok(runner)
    }

    /// Compiles `body` (once: compiled scripts are cached by body) and
    /// returns its SHA1. The error is Redis's reply for a bad shebang or a
    /// syntax error (`ERR Error compiling script (new function):
    /// user_script:1: …`).
    pub fn compile(&mut self, body: &[u8]) -> Result<Sha, Reply> {
        self.cached(body).map(|c| c.sha)
    }

    /// Number of compiled scripts held.
    pub fn cached_scripts(&self) -> usize {
        self.engine.scripts.len()
    }

    /// Forgets every compiled script (SCRIPT FLUSH) and collects.
    pub fn flush(&mut self) {
        self.engine.scripts.clear();
        self.engine.lua.expire_registry_values();
        let _ = full_collect(&self.engine.lua);
    }

    fn cached(&mut self, body: &[u8]) -> Result<&Cached, Reply> {
        if !self.engine.scripts.contains_key(body) {
            let cached = self.compile_new(body)?;
            self.engine.scripts.insert(body.into(), cached);
        }
        Ok(&self.engine.scripts[body])
    }

    fn compile_new(&mut self, body: &[u8]) -> Result<Cached, Reply> {
        let (flags, shebang_len) = shebang::split(body)?;
        // The shebang line goes, its newline stays: line numbers are the
        // user's. A body starting with ESC would be taken for bytecode;
        // Redis's Lua parses it as text (and fails), a leading space too.
        let mut text = Vec::with_capacity(body.len() + 1 - shebang_len);
        if body.get(shebang_len) == Some(&0x1b) {
            text.push(b' ');
        }
        text.extend_from_slice(&body[shebang_len..]);
        let lua = &self.engine.lua;
        let func = lua
            .load(text)
            .set_name("@user_script")
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| {
                let msg = match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => other.to_string(),
                };
                Reply::error(one_line(format!("ERR Error compiling script (new function): {msg}")))
            })?;
        let func = lua.create_registry_value(func).map_err(|e| {
            Reply::error(one_line(format!("ERR Error compiling script (new function): {e}")))
        })?;
        let _ = self.maybe_collect();
        Ok(Cached { sha: Sha::of(body), flags, func })
    }

    /// Runs a script and returns EVAL's reply. `body` is compiled first if
    /// this VM has not seen it. `keys` and `args` become KEYS and ARGV. Every
    /// `redis.call` goes to `host`; the run is stopped by its instruction
    /// budget or memory limit (see the module docs). Writes the script made
    /// before an error stay made: the host applied them.
    pub fn run(
        &mut self,
        body: &[u8],
        keys: &[Bytes],
        args: &[Bytes],
        opts: &RunOptions,
        host: &mut dyn Host,
    ) -> Reply {
        let (sha, flags) = match self.cached(body) {
            Ok(c) => (c.sha, c.flags),
            Err(reply) => return reply,
        };
        if opts.read_only && !flags.compat && !flags.no_writes {
            return Reply::err("ERR Can not execute a script with write flag using *_ro command.");
        }
        let reply = match self.run_cached(body, keys, args, opts, flags, host) {
            Ok(Outcome::Returned(reply)) => reply,
            Ok(Outcome::Failed(err)) => err.reply(&sha),
            Err(e) => Reply::error(one_line(format!("ERR Error running script {sha}, {e} "))),
        };
        let _ = self.maybe_collect();
        reply
    }

    fn run_cached(
        &mut self,
        body: &[u8],
        keys: &[Bytes],
        args: &[Bytes],
        opts: &RunOptions,
        flags: ScriptFlags,
        host: &mut dyn Host,
    ) -> mlua::Result<Outcome> {
        let Engine { lua, runner, scripts } = &self.engine;
        let func: Function = lua.registry_value(&scripts[body].func)?;
        let keys = string_array(lua, keys)?;
        let argv = string_array(lua, args)?;

        let budget = opts.instruction_budget.max(1);
        let step = budget.min(HOOK_EVERY as u64);
        {
            let mut ctx = lua.app_data_mut::<Ctx>().expect("context installed");
            // SAFETY: `host` outlives this function, and `ctx.end()` below
            // runs before it returns, on every path.
            unsafe { ctx.begin(host) };
            ctx.read_only = opts.read_only || flags.read_only();
            ctx.rand = api::Rand48::from_seed(opts.seed);
            ctx.budget = budget;
            ctx.step = step;
            ctx.gc_step = RUN_GC_STEP.min(opts.memory_limit / 2).max(1);
        }
        // Restart the instruction count: the hook fires after `step`
        // instructions of this run, whatever earlier runs left over.
        // SAFETY: plain hook bookkeeping on the live main state.
        let reset = unsafe {
            lua.exec_raw::<()>((), |state| {
                ffi::lua_sethook(
                    state,
                    ffi::lua_gethook(state),
                    ffi::lua_gethookmask(state),
                    step as i32,
                );
            })
        };
        self.meter.begin_run(opts.memory_limit);
        let result = reset.and_then(|()| runner.call::<(bool, Value)>((&func, keys, argv)));
        self.meter.end_run();
        let (kill, resp3) = {
            let mut ctx = lua.app_data_mut::<Ctx>().expect("context installed");
            ctx.end();
            let kill = ctx.kill.take().or(self.meter.exceeded().then_some(Kill::Memory));
            (kill, ctx.resp3)
        };
        if let Some(kill) = kill {
            return Ok(Outcome::Failed(Failure::Killed(kill, budget, opts.memory_limit)));
        }
        let (ok, value) = result?;
        Ok(if ok {
            Outcome::Returned(lua_to_reply(&value, resp3))
        } else {
            Outcome::Failed(Failure::from_lua(&value))
        })
    }

    fn maybe_collect(&self) -> mlua::Result<()> {
        if self.meter.since_gc() > GC_EVERY {
            full_collect(&self.engine.lua)?;
        }
        Ok(())
    }
}

/// How a run ended, before the script's SHA is known to the message.
enum Outcome {
    Returned(Reply),
    Failed(Failure),
}

/// A failed run, as `luaCallFunction` reports it.
enum Failure {
    /// The handler's table: `err` text, and where it was raised.
    Raised {
        msg: Option<Vec<u8>>,
        at: Option<(Vec<u8>, String)>,
    },
    /// Anything else (the handler itself failed).
    Other(Option<Vec<u8>>),
    Killed(Kill, u64, usize),
}

impl Failure {
    fn from_lua(v: &Value) -> Failure {
        let text = |v: Value| match v {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            v @ (Value::Integer(_) | Value::Number(_)) => {
                Some(number_to_lua_string(&v).into_bytes())
            }
            _ => None,
        };
        match v {
            Value::Table(t) => {
                let field = |name: &str| t.raw_get::<Value>(name).map_or(None, text);
                let at = match (field("source"), field("line")) {
                    (Some(src), Some(line)) => {
                        Some((src, String::from_utf8_lossy(&line).into_owned()))
                    }
                    _ => None,
                };
                Failure::Raised { msg: field("err"), at }
            }
            other => Failure::Other(text(other.clone())),
        }
    }

    fn reply(self, sha: &Sha) -> Reply {
        match self {
            Failure::Raised { msg: Some(msg), at } => {
                let mut text = String::from_utf8_lossy(&msg).into_owned();
                if let Some((source, line)) = at {
                    let source = String::from_utf8_lossy(&source);
                    text.push_str(&format!(" script: {sha}, on {source}:{line}."));
                }
                Reply::error(one_line(text))
            }
            // Redis 7.0.15 crashes on an error table without `err`
            // (`error({})`); this is its text for a non-table error.
            Failure::Raised { msg: None, .. } | Failure::Other(None) => {
                Reply::error(format!("ERR Error running script {sha}, execution failure "))
            }
            Failure::Other(Some(msg)) => {
                let msg = &msg[..msg.len().min(100)];
                let msg = String::from_utf8_lossy(msg);
                Reply::error(one_line(format!("ERR Error running script {sha}, {msg} ")))
            }
            Failure::Killed(Kill::Budget { at }, budget, _) => {
                let mut text = format!(
                    "ERR script exceeded the instruction budget of {budget} instructions script: {sha}"
                );
                if let Some((source, line)) = at {
                    text.push_str(&format!(", on {source}:{line}"));
                }
                text.push('.');
                Reply::error(one_line(text))
            }
            Failure::Killed(Kill::Memory, _, limit) => Reply::error(format!(
                "ERR script exceeded the memory limit of {limit} bytes script: {sha}."
            )),
        }
    }
}

/// A Lua array of strings (KEYS, ARGV), built one element at a time so that
/// at most one mlua reference is held whatever the length.
fn string_array(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// Error texts are one line: Redis maps `\r` and `\n` to spaces.
fn one_line(s: String) -> String {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ")
    } else {
        s
    }
}

/// A full collection at a deterministic point, with the collector stopped
/// again afterwards (Lua 5.1 restarts it at the end of a full cycle).
pub(crate) fn full_collect(lua: &Lua) -> mlua::Result<()> {
    let meter = {
        let ctx = lua.app_data_ref::<Ctx>().expect("context installed");
        ctx.meter.0
    };
    // SAFETY: see `api::MeterPtr`.
    let meter = unsafe { &*meter };
    meter.collecting(true);
    let result = lua.gc_collect();
    lua.gc_stop();
    meter.collecting(false);
    result
}

/// The count hook: charges `step` instructions to the run, stops it when it
/// is over budget (and keeps stopping it: every later call fails too), and
/// collects when the run has allocated another [`RUN_GC_STEP`] bytes (or half
/// its memory limit, if that is less).
fn hook(lua: &Lua, debug: &mlua::debug::Debug) -> mlua::Result<VmState> {
    let collect = {
        let mut ctx = lua.app_data_mut::<Ctx>().expect("context installed");
        if !ctx.running() {
            return Ok(VmState::Continue);
        }
        if ctx.kill.is_some() || ctx.meter().exceeded() {
            return Err(mlua::Error::runtime("script stopped"));
        }
        ctx.executed += ctx.step;
        if ctx.executed > ctx.budget {
            let source = debug.source().source.map(|s| s.into_owned());
            let line = debug.current_line();
            let at = match (source, line) {
                (Some(src), Some(line)) if src != "=?" && line > 0 => Some((src, line)),
                _ => None,
            };
            ctx.kill = Some(Kill::Budget { at });
            return Err(mlua::Error::runtime("script stopped"));
        }
        ctx.meter().run_since_gc() > ctx.gc_step
    };
    if collect {
        full_collect(lua)?;
    }
    Ok(VmState::Continue)
}
