//! [`ScriptVm`]: the interpreter, its script cache, the budget hook and one
//! run from start to reply.

use std::collections::HashMap;
use std::ffi::CStr;
use std::hash::{BuildHasherDefault, Hasher};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use bytes::Bytes;
use mlua::chunk::ChunkMode;
use mlua::{ffi, Function, Lua, LuaOptions, RegistryKey, StdLib, Table};

use super::alloc::Meter;
use super::api::{self, Kill, Shared};
use super::convert::{fmt_g, push_bytes, raw_field, stack_to_reply, string_at};
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
    /// What was compiled: a lookup by SHA1 runs this function only for
    /// this very body (see `Engine::scripts`).
    body: Box<[u8]>,
}

/// What a run needs of a cached script.
#[derive(Clone, Copy)]
struct Compiled {
    sha: Sha,
    flags: ScriptFlags,
    /// The function's registry reference.
    func: c_int,
}

impl Cached {
    fn compiled(&self) -> Compiled {
        Compiled { sha: self.sha, flags: self.flags, func: self.func.id() }
    }
}

type ByBody<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<BodyHasher>>;

/// The main Lua state, for the raw API. A run calls into Lua directly (no
/// mlua call, lock or references: see `ScriptVm::run_cached`); the `Lua`
/// handle is for setting up, compiling and the callbacks.
struct MainState(*mut ffi::lua_State);

// SAFETY: the state belongs to the `Lua` next to it, which is `Send`, and is
// only used through `&mut ScriptVm`.
unsafe impl Send for MainState {}

/// The registry references a run uses (see `ScriptVm::run_cached`).
struct Refs {
    /// The error handler (`__redis__err__handler`).
    handler: RegistryKey,
    /// The real global table (scripts see it through a read-only proxy).
    globals: RegistryKey,
    /// The prelude's per-run state (`RUN`: `tostring`'s numbering).
    run_state: RegistryKey,
    /// The strings "KEYS" and "ARGV".
    keys_name: RegistryKey,
    argv_name: RegistryKey,
}

/// The Lua state and everything that refers into it (dropped before the
/// meter its allocator reports to).
struct Engine {
    lua: Lua,
    state: MainState,
    args: ArgTables,
    /// What a run needs from the prelude, in the registry.
    refs: Refs,
    /// Compiled scripts by SHA1: EVALSHA knows it, and 40 bytes hash faster
    /// than a body. A hit counts only if the body is the same too: two
    /// bodies with one SHA1 (a deliberate collision) must each run as
    /// themselves on every replica, whatever this VM compiled first.
    scripts: HashMap<Sha, Cached, BuildHasherDefault<BodyHasher>>,
    /// Every cached script by body (EVAL has only the body).
    by_body: ByBody<Compiled>,
    /// Scripts whose SHA1 is that of another cached body, by body.
    colliding: ByBody<Cached>,
}

/// One Lua interpreter with Redis's scripting API. Not replicated: a node
/// builds one, keeps it across calls (compiled scripts stay cached), and can
/// drop it at any time. Not `Sync`; the engine keeps it behind its lock.
pub struct ScriptVm {
    engine: Engine,
    shared: Box<Shared>,
}

impl Default for ScriptVm {
    fn default() -> Self {
        ScriptVm::new()
    }
}

impl Drop for ScriptVm {
    fn drop(&mut self) {
        // SAFETY: no run is under way (`&mut self`).
        unsafe { self.shared.ctx().end() };
        // Give Lua back mlua's allocator before `engine` closes the state.
        // SAFETY: the state is live (closed only when `engine` drops, after
        // this).
        unsafe { self.shared.meter.uninstall(self.engine.state.0) };
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
        let mut state = std::ptr::null_mut();
        // SAFETY: exec_raw hands the closure the main state (no callback is
        // under way), whose address is fixed for the state's life.
        unsafe { lua.exec_raw::<()>((), |s| state = s)? };
        // SAFETY: the state is live and ours; the box is kept in the VM and
        // outlives the state's use of it (see `Drop`).
        let shared = unsafe { Shared::install(&lua, state) };
        let refs = match Self::set_up(&lua, state) {
            Ok(refs) => refs,
            Err(e) => {
                // The state is about to close: give it its allocator back
                // before the meter goes.
                // SAFETY: as in `Drop`.
                unsafe { shared.meter.uninstall(state) };
                return Err(e);
            }
        };
        // SAFETY: the live main state.
        let args = unsafe { ArgTables::new(state) };
        let engine = Engine {
            lua,
            state: MainState(state),
            args,
            refs,
            scripts: HashMap::default(),
            by_body: HashMap::default(),
            colliding: HashMap::default(),
        };
        Ok(ScriptVm { engine, shared })
    }

    /// Installs the sandbox; returns what a run needs of it.
    fn set_up(lua: &Lua, state: *mut ffi::lua_State) -> mlua::Result<Refs> {
        lua.gc_stop();
        let globals = lua.globals();
        let primitives = api::primitives(lua)?;
        // Its chunk name, "=?", marks its frames for the error handler.
        let prelude = lua.load(PRELUDE).set_name("=?").into_function()?;
        let exports: Table = prelude.call((primitives, &globals))?;
        let refs = Refs {
            handler: lua.create_registry_value(exports.raw_get::<Function>("handler")?)?,
            globals: lua.create_registry_value(globals)?,
            run_state: lua.create_registry_value(exports.raw_get::<Table>("run_state")?)?,
            keys_name: lua.create_registry_value(lua.create_string("KEYS")?)?,
            argv_name: lua.create_registry_value(lua.create_string("ARGV")?)?,
        };
        let env: Table = exports.raw_get("env")?;
        // The protected proxy becomes the thread's global table: scripts,
        // `loadstring` chunks and coroutines all get it as their environment.
        // SAFETY: exec_raw pushed `env`; lua_replace pops it into the slot.
        unsafe {
            lua.exec_raw::<()>(env, |state| ffi::lua_replace(state, ffi::LUA_GLOBALSINDEX))?;
        }
        // The budget's count hook (coroutines inherit it). Each run sets it
        // again, which restarts the count.
        // SAFETY: plain hook bookkeeping on the live main state.
        unsafe { ffi::lua_sethook(state, Some(hook), ffi::LUA_MASKCOUNT, HOOK_EVERY as c_int) };
        full_collect(lua)?;
        Ok(refs)
    }

    /// Compiles `body` (once: compiled scripts are cached) and returns its
    /// SHA1. The error is Redis's reply for a bad shebang or a syntax error
    /// (`ERR Error compiling script (new function): user_script:1: …`).
    pub fn compile(&mut self, body: &[u8]) -> Result<Sha, Reply> {
        self.cached(None, body).map(|c| c.sha)
    }

    /// Whether KEYS and ARGV tables are reused (the `Table` layout check
    /// passed).
    #[cfg(test)]
    pub(crate) fn reuses_arg_tables(&self) -> bool {
        self.engine.args.dummy.is_some()
    }

    /// Number of compiled scripts held.
    pub fn cached_scripts(&self) -> usize {
        self.engine.scripts.len() + self.engine.colliding.len()
    }

    /// Forgets every compiled script (SCRIPT FLUSH) and collects.
    pub fn flush(&mut self) {
        self.engine.scripts.clear();
        self.engine.by_body.clear();
        self.engine.colliding.clear();
        self.engine.lua.expire_registry_values();
        let _ = full_collect(&self.engine.lua);
    }

    /// The compiled script of `body`, compiled now if this VM has not seen
    /// it. `known` is its SHA1 if the caller has it (EVALSHA); otherwise it
    /// is looked up by body, or computed for a new body.
    fn cached(&mut self, known: Option<Sha>, body: &[u8]) -> Result<Compiled, Reply> {
        let engine = &self.engine;
        let sha = match known {
            Some(sha) => sha,
            None => match engine.by_body.get(body) {
                Some(compiled) => return Ok(*compiled),
                None => Sha::of(body),
            },
        };
        let compiled = match engine.scripts.get(&sha) {
            Some(c) if *c.body == *body => return Ok(c.compiled()),
            Some(_) => {
                if let Some(c) = engine.colliding.get(body) {
                    return Ok(c.compiled());
                }
                let cached = self.compile_new(sha, body)?;
                let compiled = cached.compiled();
                self.engine.colliding.insert(body.into(), cached);
                compiled
            }
            None => {
                let cached = self.compile_new(sha, body)?;
                let compiled = cached.compiled();
                self.engine.scripts.insert(sha, cached);
                compiled
            }
        };
        self.engine.by_body.insert(body.into(), compiled);
        Ok(compiled)
    }

    fn compile_new(&mut self, sha: Sha, body: &[u8]) -> Result<Cached, Reply> {
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
        Ok(Cached { sha, flags, func, body: body.into() })
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
        self.run_known(None, body, keys, args, opts, host)
    }

    /// [`ScriptVm::run`] for a caller that knows the body's SHA1 (EVALSHA),
    /// which saves looking the body up. `sha` must be the SHA1 of `body`.
    pub fn run_sha(
        &mut self,
        sha: Sha,
        body: &[u8],
        keys: &[Bytes],
        args: &[Bytes],
        opts: &RunOptions,
        host: &mut dyn Host,
    ) -> Reply {
        self.run_known(Some(sha), body, keys, args, opts, host)
    }

    fn run_known(
        &mut self,
        known: Option<Sha>,
        body: &[u8],
        keys: &[Bytes],
        args: &[Bytes],
        opts: &RunOptions,
        host: &mut dyn Host,
    ) -> Reply {
        let script = match self.cached(known, body) {
            Ok(c) => c,
            Err(reply) => return reply,
        };
        let (sha, flags) = (script.sha, script.flags);
        if opts.read_only && !flags.compat && !flags.no_writes {
            return Reply::err("ERR Can not execute a script with write flag using *_ro command.");
        }
        let reply = match self.run_cached(script, keys, args, opts, host) {
            Outcome::Returned(reply) => reply,
            Outcome::Failed(err) => err.reply(&sha),
        };
        let _ = self.maybe_collect();
        reply
    }

    /// One run, on the raw Lua API, as Redis's `luaCallFunction`: KEYS and
    /// ARGV set in the real global table (before the meter starts: they are
    /// not the script's doing), `tostring`'s numbering reset, the hook's count
    /// restarted, then the script called by `lua_pcall` with the error
    /// handler, keeping its first result, which converts straight from the
    /// stack.
    fn run_cached(
        &mut self,
        script: Compiled,
        keys: &[Bytes],
        args: &[Bytes],
        opts: &RunOptions,
        host: &mut dyn Host,
    ) -> Outcome {
        let l = self.engine.state.0;
        let shared = &*self.shared;
        let refs = &self.engine.refs;
        let budget = opts.instruction_budget.max(1);
        let step = budget.min(HOOK_EVERY as u64);
        // SAFETY: `l` is the live main state, used by nothing else during
        // `&mut self`; the registry references are live (a script's is
        // dropped only by `flush`, which forgets the script too); the stack
        // is back at `top` on every path out. Pushing outside a protected
        // call can only fail if the process is out of memory (the collector
        // is stopped, and the meter caps nothing outside a run), and Lua's
        // panic then ends the process, as a failed Rust allocation would.
        unsafe {
            let top = ffi::lua_gettop(l);
            ffi::luaL_checkstack(l, 8, std::ptr::null());
            let registry = |r: &RegistryKey| ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, r.id());
            registry(&refs.handler);
            ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, script.func);
            registry(&refs.globals);
            let tables = &mut self.engine.args;
            // The global is set only if it holds another table (see
            // `ArgTables::in_globals`).
            let kept = push_strings(l, &mut tables.keys, tables.dummy, keys);
            if !(kept && tables.in_globals.0 == Some(keys.len())) {
                registry(&refs.keys_name);
                ffi::lua_pushvalue(l, -2);
                ffi::lua_rawset(l, top + 3);
                tables.in_globals.0 = (keys.len() < POOLED).then_some(keys.len());
            }
            ffi::lua_pop(l, 1);
            let kept = push_strings(l, &mut tables.argv, tables.dummy, args);
            if !(kept && tables.in_globals.1 == Some(args.len())) {
                registry(&refs.argv_name);
                ffi::lua_pushvalue(l, -2);
                ffi::lua_rawset(l, top + 3);
                tables.in_globals.1 = (args.len() < POOLED).then_some(args.len());
            }
            ffi::lua_pop(l, 2);
            reset_run_state(l, &refs.run_state);
            {
                let ctx = shared.ctx();
                // `host`, `keys` and `args` outlive this function, and
                // `ctx.end()` below runs before it returns, on every path.
                ctx.begin(host, keys, args);
                ctx.read_only = opts.read_only || script.flags.read_only();
                ctx.rand = api::Rand48::from_seed(opts.seed);
                ctx.budget = budget;
                ctx.step = step;
                ctx.gc_step = RUN_GC_STEP.min(opts.memory_limit / 2).max(1);
            }
            // Restart the instruction count: the hook fires after `step`
            // instructions of this run, whatever earlier runs left over.
            ffi::lua_sethook(l, Some(hook), ffi::LUA_MASKCOUNT, step as c_int);
            shared.meter.begin_run(opts.memory_limit);
            let status = ffi::lua_pcall(l, 0, 1, top + 1);
            shared.meter.end_run();
            let (kill, panic, resp3) = {
                let ctx = shared.ctx();
                ctx.end();
                let kill = ctx.kill.take().or(shared.meter.exceeded().then_some(Kill::Memory));
                (kill, ctx.panic.take(), ctx.resp3)
            };
            let outcome = if let Some(panic) = panic {
                ffi::lua_settop(l, top);
                clear_run(l, refs, &mut self.engine.args, keys.len(), args.len());
                std::panic::resume_unwind(panic);
            } else if let Some(kill) = kill {
                Outcome::Failed(Failure::Killed(kill, budget, opts.memory_limit))
            } else if status == ffi::LUA_OK {
                Outcome::Returned(stack_to_reply(l, top + 2, resp3))
            } else {
                // The handler's table, or Lua's message for an error the
                // handler did not see (out of memory, an error in the handler).
                Outcome::Failed(Failure::from_stack(l, top + 2))
            };
            ffi::lua_settop(l, top);
            clear_run(l, refs, &mut self.engine.args, keys.len(), args.len());
            outcome
        }
    }

    fn maybe_collect(&self) -> mlua::Result<()> {
        if self.shared.meter.since_gc() > GC_EVERY {
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

/// Starts `tostring`'s numbering afresh (`RUN` in the prelude).
///
/// # Safety
/// `l` is live with room for 2 more values.
unsafe fn reset_run_state(l: *mut ffi::lua_State, run_state: &RegistryKey) {
    // SAFETY: the caller's guarantee.
    unsafe {
        ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, run_state.id());
        ffi::lua_pushnil(l);
        ffi::lua_rawseti_(l, -2, 1);
        ffi::lua_pushinteger(l, 0);
        ffi::lua_rawseti_(l, -2, 2);
        ffi::lua_pop(l, 1);
    }
}

/// After a run: KEYS and ARGV too long to be kept for the next run are no
/// longer reachable (the pooled ones are kept anyway; the next run sets both
/// before anything can see them, and resets the numbering).
///
/// # Safety
/// `l` is live with room for 3 more values.
unsafe fn clear_run(
    l: *mut ffi::lua_State,
    refs: &Refs,
    tables: &mut ArgTables,
    keys: usize,
    args: usize,
) {
    if keys < POOLED && args < POOLED {
        return;
    }
    tables.in_globals = (None, None);
    // SAFETY: the caller's guarantee.
    unsafe {
        ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, refs.globals.id());
        for name in [&refs.keys_name, &refs.argv_name] {
            ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, name.id());
            ffi::lua_pushnil(l);
            ffi::lua_rawset(l, -3);
        }
        ffi::lua_pop(l, 1);
    }
}

/// A string, or a number as `tostring` prints it (`%.14g`).
///
/// # Safety
/// `l` is live and `idx` a valid index.
unsafe fn value_text(l: *mut ffi::lua_State, idx: c_int) -> Option<Vec<u8>> {
    // SAFETY: the caller's guarantee; a string is read, never converted.
    unsafe {
        match ffi::lua_type(l, idx) {
            ffi::LUA_TSTRING => Some(string_at(l, idx).to_vec()),
            ffi::LUA_TNUMBER => Some(fmt_g(ffi::lua_tonumber(l, idx), 14).into_bytes()),
            _ => None,
        }
    }
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
    /// The failure the error handler returned, at `v` (absolute).
    ///
    /// # Safety
    /// `l` is live and `v` a valid absolute index.
    unsafe fn from_stack(l: *mut ffi::lua_State, v: c_int) -> Failure {
        // SAFETY: the caller's guarantee; each field read pops what it pushed.
        unsafe {
            if ffi::lua_type(l, v) != ffi::LUA_TTABLE {
                return Failure::Other(value_text(l, v));
            }
            ffi::luaL_checkstack(l, 1, std::ptr::null());
            let field = |name: &[u8]| {
                raw_field(l, v, name);
                let text = value_text(l, -1);
                ffi::lua_pop(l, 1);
                text
            };
            let at = match (field(b"source"), field(b"line")) {
                (Some(src), Some(line)) => Some((src, String::from_utf8_lossy(&line).into_owned())),
                _ => None,
            };
            Failure::Raised { msg: field(b"err"), at }
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

/// KEYS and ARGV tables up to this length are kept from run to run.
const POOLED: usize = 16;

/// The head of Lua 5.1.5's `Table` (`lobject.h`), read to tell whether a
/// KEYS or ARGV table an earlier run had is still exactly as
/// `lua_createtable(l, n, 0)` makes it. Checked against tables of known
/// shape when the VM is built ([`ArgTables::new`]); if the layout does not
/// match, nothing is reused.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawTable {
    next: *const c_void,
    tt: u8,
    marked: u8,
    flags: u8,
    lsizenode: u8,
    metatable: *const c_void,
    array: *const c_void,
    node: *const c_void,
    lastfree: *const c_void,
    gclist: *const c_void,
    sizearray: c_int,
}

/// Lua's `dummynode` (a static of the Lua library, so the same for every
/// VM), once a VM has checked the `Table` layout; null until then.
static DUMMY_NODE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// Whether the table at `idx` certainly has no hash part, hence no key but
/// the integers of its array part (false if the layout is not known).
///
/// # Safety
/// `idx` holds a table.
pub(super) unsafe fn without_hash_part(l: *mut ffi::lua_State, idx: c_int) -> bool {
    let dummy = DUMMY_NODE.load(Ordering::Relaxed);
    // SAFETY: the caller's guarantee.
    !dummy.is_null() && std::ptr::eq(unsafe { raw_table(l, idx) }.node, dummy)
}

/// A copy of the head of the table at `idx`, as Lua lays it out.
///
/// # Safety
/// `idx` holds a table.
unsafe fn raw_table(l: *mut ffi::lua_State, idx: c_int) -> RawTable {
    // SAFETY: `lua_topointer` of a table is its `Table *`.
    unsafe { std::ptr::read(ffi::lua_topointer(l, idx) as *const RawTable) }
}

/// KEYS and ARGV tables reused across runs, so that a run whose script
/// allocates nothing allocates nothing at all (four blocks per run
/// otherwise, and as many to sweep and free at the next collection).
///
/// A script may do anything to them (add fields, a metatable, grow or
/// shrink them), so a table is reused only if it is indistinguishable from
/// a fresh one: no metatable, an array part of exactly the length wanted,
/// no hash part (Lua's shared `dummynode`); each of its elements is set to
/// this run's string unless it already is that string. The flags byte is a cache of absent metamethods of the table as a
/// metatable, and none can be present without a hash part. Only the address
/// differs, which nothing deterministic depends on (see the module docs).
/// No run can keep a reference to one for a later run: the sandbox leaves
/// scripts nowhere to store it.
struct ArgTables {
    /// Lua's `dummynode` (the `node` of a table without hash part); None if
    /// the layout check failed.
    dummy: Option<*const c_void>,
    /// Registry references of the kept tables by length (`LUA_NOREF`: none).
    keys: [c_int; POOLED],
    argv: [c_int; POOLED],
    /// The lengths whose kept tables are the global KEYS and ARGV now (None:
    /// another table, or none). Nothing but a run's setup and `clear_run`
    /// sets those globals (scripts see the global table read-only), so a run
    /// whose kept tables are those needs not set them again.
    in_globals: (Option<usize>, Option<usize>),
}

// SAFETY: `dummy` is only compared with, never dereferenced.
unsafe impl Send for ArgTables {}

impl ArgTables {
    /// Checks the `Table` layout on tables of known shape.
    ///
    /// # Safety
    /// `l` is the live main state (allocation outside a protected call: see
    /// `run_cached`).
    unsafe fn new(l: *mut ffi::lua_State) -> ArgTables {
        // SAFETY: the caller's guarantee; the stack is restored.
        let dummy = unsafe {
            let top = ffi::lua_gettop(l);
            ffi::luaL_checkstack(l, 4, std::ptr::null());
            ffi::lua_createtable(l, 3, 0);
            ffi::lua_createtable(l, 0, 4);
            ffi::lua_createtable(l, 0, 0);
            let (array, hash, empty) =
                (raw_table(l, top + 1), raw_table(l, top + 2), raw_table(l, top + 3));
            let shapes = array.tt == ffi::LUA_TTABLE as u8
                && array.sizearray == 3
                && array.metatable.is_null()
                && hash.sizearray == 0
                && hash.lsizenode == 2
                && hash.node != array.node
                && empty.sizearray == 0
                && empty.node == array.node;
            ffi::lua_pushvalue(l, top + 3);
            ffi::lua_setmetatable(l, top + 1);
            let meta = raw_table(l, top + 1).metatable == ffi::lua_topointer(l, top + 3);
            let dummy = (shapes && meta).then_some(array.node);
            ffi::lua_settop(l, top);
            if let Some(dummy) = dummy {
                DUMMY_NODE.store(dummy as *mut c_void, Ordering::Relaxed);
            }
            dummy
        };
        ArgTables {
            dummy,
            keys: [ffi::LUA_NOREF; POOLED],
            argv: [ffi::LUA_NOREF; POOLED],
            in_globals: (None, None),
        }
    }
}

/// Pushes a Lua array of strings (KEYS, ARGV): the pool's table of that
/// length if it is still pristine (see [`ArgTables`]), else a new one, which
/// the pool keeps. True if it pushed the table the pool already had.
///
/// # Safety
/// `l` is live with room for 2 more values; `pool` holds references of
/// its registry.
unsafe fn push_strings(
    l: *mut ffi::lua_State,
    pool: &mut [c_int; POOLED],
    dummy: Option<*const c_void>,
    items: &[Bytes],
) -> bool {
    let n = items.len();
    let mut kept = false;
    // SAFETY: the caller's guarantee.
    unsafe {
        match (dummy, pool.get_mut(n)) {
            (Some(dummy), Some(slot)) => {
                let mut fresh = true;
                if *slot != ffi::LUA_NOREF {
                    ffi::lua_rawgeti_(l, ffi::LUA_REGISTRYINDEX, *slot);
                    let t = raw_table(l, -1);
                    fresh =
                        !(t.metatable.is_null() && t.sizearray == n as c_int && t.node == dummy);
                    if fresh {
                        ffi::lua_pop(l, 1);
                    }
                }
                kept = !fresh;
                if fresh {
                    ffi::lua_createtable(l, n as c_int, 0);
                    ffi::lua_pushvalue(l, -1);
                    if *slot == ffi::LUA_NOREF {
                        *slot = ffi::luaL_ref(l, ffi::LUA_REGISTRYINDEX);
                    } else {
                        ffi::lua_rawseti_(l, ffi::LUA_REGISTRYINDEX, *slot);
                    }
                }
            }
            _ => ffi::lua_createtable(l, n as c_int, 0),
        }
        for (i, item) in items.iter().enumerate() {
            // A kept table whose element already is this string (scripts are
            // often called with the same ARGV, or KEYS) is left as it is:
            // equal Lua strings are one interned object, so nothing can tell.
            if kept {
                ffi::lua_rawgeti_(l, -1, (i + 1) as c_int);
                let same =
                    ffi::lua_type(l, -1) == ffi::LUA_TSTRING && string_at(l, -1) == &item[..];
                ffi::lua_pop(l, 1);
                if same {
                    continue;
                }
            }
            push_bytes(l, item);
            ffi::lua_rawseti_(l, -2, (i + 1) as c_int);
        }
    }
    kept
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
    let meter = api::ctx(lua).meter.0;
    // SAFETY: see `api::MeterPtr`.
    let meter = unsafe { &*meter };
    meter.collecting(true);
    let result = lua.gc_collect();
    lua.gc_stop();
    meter.collecting(false);
    result
}

/// [`full_collect`] from the hook, on the raw API.
///
/// # Safety
/// `l` is a live state of the VM that owns `meter`.
unsafe fn full_collect_raw(l: *mut ffi::lua_State, meter: &Meter) {
    unsafe extern "C-unwind" fn collect(l: *mut ffi::lua_State) -> c_int {
        // SAFETY: Lua calls this with a live state.
        unsafe { ffi::lua_gc(l, ffi::LUA_GCCOLLECT, 0) };
        0
    }
    meter.collecting(true);
    // SAFETY: the caller's guarantee. Protected, so that an error (a
    // finalizer's) cannot leave the meter collecting; as in `full_collect`,
    // a collection that fails is not reported.
    unsafe {
        ffi::lua_cpcall(l, collect, std::ptr::null_mut());
        ffi::lua_gc(l, ffi::LUA_GCSTOP, 0);
    }
    meter.collecting(false);
}

/// The count hook: charges `step` instructions to the run, stops it when it
/// is over budget (and keeps stopping it: every later call fails too), and
/// collects when the run has allocated another [`RUN_GC_STEP`] bytes (or half
/// its memory limit, if that is less).
unsafe extern "C-unwind" fn hook(l: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    // SAFETY: Lua calls the hook with a live state of this VM and its
    // activation record. The context is not held across the error or the
    // collection; the error longjmps over nothing that needs dropping.
    unsafe {
        let shared = Shared::of(l);
        let ctx = shared.ctx();
        if !ctx.running() {
            return;
        }
        if ctx.killed() {
            return stop(l);
        }
        ctx.executed += ctx.step;
        if ctx.executed > ctx.budget {
            ctx.kill = Some(Kill::Budget { at: place(l, ar) });
            return stop(l);
        }
        if shared.meter.run_since_gc() > ctx.gc_step {
            full_collect_raw(l, &shared.meter);
        }
    }
}

/// Where the hook stopped a run: the script's chunk and line, if the hook
/// fired in the script (not in the prelude, marked `=?`, nor in C).
unsafe fn place(l: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) -> Option<(String, usize)> {
    // SAFETY: the hook's own record.
    unsafe {
        if ffi::lua_getinfo(l, c"Sl".as_ptr(), ar) == 0 || (*ar).source.is_null() {
            return None;
        }
        let source = String::from_utf8_lossy(CStr::from_ptr((*ar).source).to_bytes());
        let line = usize::try_from((*ar).currentline).ok()?;
        (source != "=?" && line > 0).then(|| (source.into_owned(), line))
    }
}

/// Stops the run from the hook: raises (every catcher raises again, see
/// `prelude.lua`; Rust composes the reply from the context's record).
unsafe fn stop(l: *mut ffi::lua_State) {
    // SAFETY: the hook runs inside the run's protected call.
    unsafe {
        ffi::lua_pushnil(l);
        ffi::lua_error(l);
    }
}
