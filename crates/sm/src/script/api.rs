//! The Rust half of the script API: `redis.call` and the other `redis.*`
//! functions that can raise, `math.random`, and the primitives the prelude
//! builds on. From Lua's side they are C functions, as in Redis.
//!
//! Redis raises tables (`{err=…}`) from C; an mlua callback can only fail
//! with a Rust error, which reaches Lua as an opaque userdata. So a failing
//! function stores the Lua value it means to raise in [`Ctx`] and fails with
//! a [`Raised`] marker; every place that catches errors (the prelude's
//! `pcall`, `xpcall`, `coroutine.resume`, `load` and the top-level handler)
//! swaps the marker back for the stored value with `take_error`. Scripts
//! therefore see exactly the values Redis would raise.
//!
//! `redis.call` and `redis.pcall` are the exception: they run on every call
//! of nearly every script, so they are plain Lua C functions on the raw API
//! (no mlua callback, no references), which raise their error tables
//! themselves. An argument with the bytes of one of the run's KEYS or ARGV
//! (most are `KEYS[i]` or `ARGV[i]`) reaches the host as a clone of that
//! element's `Bytes`, without a copy.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use mlua::{ffi, FromLua, Lua, MultiValue, Table, Value, Variadic};

use super::alloc::Meter;
use super::commands::{self, Command};
use super::convert::{
    self, arg_at, error_table, lua_str2number, lua_to_arg, push_error_table, string_at,
};
use super::Host;
use crate::reply::Reply;

/// Redis's `math.random` generator (rand48, `redisLrand48`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rand48(u64);

const RAND48_MASK: u64 = (1 << 48) - 1;

impl Rand48 {
    /// A generator seeded from all 64 bits of a log entry's seed.
    pub(crate) fn from_seed(seed: u64) -> Rand48 {
        Rand48((seed ^ (seed >> 48)) & RAND48_MASK)
    }

    /// `redisSrand48(seed)`, what `math.randomseed` does.
    fn srand48(seed: i32) -> Rand48 {
        Rand48(((seed as u32 as u64) << 16) | 0x330E)
    }

    /// `redisLrand48()`: the next 31-bit value.
    fn lrand48(&mut self) -> i32 {
        self.0 = (self.0.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & RAND48_MASK;
        (self.0 >> 17) as i32
    }
}

/// Why a run was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Over the instruction budget, at this chunk and line if known.
    Budget { at: Option<(String, usize)> },
    /// An allocation would have passed the memory limit.
    Memory,
}

/// The host of the current run, lifetime erased: set by `ScriptVm::run` from
/// a `&mut dyn Host` that outlives the run, cleared before `run` returns.
struct HostPtr(*mut (dyn Host + 'static));

// SAFETY: only dereferenced during a run, on the thread running it, while
// the `&mut dyn Host` it came from is borrowed by that run.
unsafe impl Send for HostPtr {}

/// The run's KEYS and ARGV, lifetime erased like [`HostPtr`]: `redis.call`
/// passes a clone of one of them (a reference count) for an argument with
/// the same bytes, instead of copying the Lua string.
struct RunArgs(*const [Bytes], *const [Bytes]);

// SAFETY: as `HostPtr`.
unsafe impl Send for RunArgs {}

/// The meter of this VM's allocator (owned by the `ScriptVm`, which outlives
/// the Lua state and this context).
pub(crate) struct MeterPtr(pub(crate) *const Meter);

// SAFETY: the meter moves with the VM and is only used by its thread.
unsafe impl Send for MeterPtr {}

/// What the Rust side of a VM shares with its Lua state, boxed so that it
/// never moves: the allocator's meter, first, so that the allocator's user
/// data (the meter's address) is this struct's address too, which is how
/// the C functions and the hook find it ([`Shared::of`]); and the context
/// of the current run.
#[repr(C)]
pub(crate) struct Shared {
    pub(crate) meter: Meter,
    ctx: UnsafeCell<Ctx>,
}

/// The [`Shared`] of a VM, as mlua app data (for the mlua callbacks).
struct SharedPtr(*const Shared);

// SAFETY: the box moves with the VM and is only used by its thread.
unsafe impl Send for SharedPtr {}

impl Shared {
    /// Installs a metered allocator on `lua` and the shared state its
    /// callbacks use. The box must outlive the state's use of it (see
    /// `ScriptVm`'s `Drop`).
    ///
    /// # Safety
    /// `state` is the live main state of `lua`.
    pub(crate) unsafe fn install(lua: &Lua, state: *mut ffi::lua_State) -> Box<Shared> {
        // SAFETY: the caller's guarantee.
        let meter = unsafe { Meter::new(state) };
        let shared = Box::new(Shared { meter, ctx: UnsafeCell::new(Ctx::new()) });
        let ptr: *const Shared = &*shared;
        // SAFETY: nothing else uses the context yet.
        unsafe { shared.ctx().meter = MeterPtr(&shared.meter) };
        // SAFETY: the caller's guarantee; the box does not move.
        unsafe { shared.meter.install(state) };
        debug_assert_eq!(ptr as *const Meter, &shared.meter as *const Meter);
        lua.set_app_data(SharedPtr(ptr));
        shared
    }

    /// The shared state of the VM that `l` (its main state or a coroutine)
    /// belongs to.
    ///
    /// # Safety
    /// `l` is a live state of a `ScriptVm`, whose allocator is installed.
    pub(crate) unsafe fn of<'a>(l: *mut ffi::lua_State) -> &'a Shared {
        let mut ud = std::ptr::null_mut();
        // SAFETY: the caller's guarantee; the user data is the meter, at
        // the start of the `Shared` (`repr(C)`).
        unsafe {
            ffi::lua_getallocf(l, &mut ud);
            &*(ud as *const Shared)
        }
    }

    /// The run's context.
    ///
    /// # Safety
    /// No other reference to the context is alive: callers hold it briefly,
    /// never across a call into Lua or into the host.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn ctx(&self) -> &mut Ctx {
        // SAFETY: the caller's guarantee.
        unsafe { &mut *self.ctx.get() }
    }
}

/// Per-VM state the callbacks share (in [`Shared`]).
pub(crate) struct Ctx {
    host: Option<HostPtr>,
    /// The run's KEYS and ARGV (set with `host`).
    run_args: Option<RunArgs>,
    pub(crate) read_only: bool,
    /// `redis.setresp(3)` was called in this run.
    pub(crate) resp3: bool,
    pub(crate) rand: Rand48,
    /// The value the latest failing callback raised, and its marker number.
    pending: Option<(u64, Value)>,
    raised: u64,
    pub(crate) kill: Option<Kill>,
    pub(crate) budget: u64,
    pub(crate) executed: u64,
    /// Instructions between two hook calls in this run.
    pub(crate) step: u64,
    /// Bytes the run may allocate between two collections.
    pub(crate) gc_step: usize,
    pub(crate) meter: MeterPtr,
    /// `redis.call`'s argument vector, kept for its capacity.
    argv: Vec<Bytes>,
    /// The commands `redis.call` found last, each spelled as the table
    /// spells it (see [`Ctx::find_command`]).
    recent: [Command; RECENT_COMMANDS],
    /// Where the next one goes in `recent`.
    recent_next: usize,
    /// The reply `redis.call` is converting, held here rather than on the
    /// stack of a function that Lua may longjmp out of.
    reply: Option<Reply>,
    /// Text being pushed to Lua (same reason).
    scratch: Vec<u8>,
    /// A host that panicked: the run is stopped, and the panic resumed once
    /// it is over.
    pub(crate) panic: Option<Box<dyn Any + Send>>,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            host: None,
            run_args: None,
            read_only: false,
            resp3: false,
            rand: Rand48::from_seed(0),
            pending: None,
            raised: 0,
            kill: None,
            budget: u64::MAX,
            executed: 0,
            step: 1,
            gc_step: usize::MAX,
            meter: MeterPtr(std::ptr::null()),
            argv: Vec::new(),
            recent: [Command::NONE; RECENT_COMMANDS],
            recent_next: 0,
            reply: None,
            scratch: Vec::new(),
            panic: None,
        }
    }

    /// Prepares a run against `host`, with `keys` and `args` as KEYS and
    /// ARGV.
    ///
    /// # Safety
    /// `host`, `keys` and `args` must stay valid until [`Ctx::end`], which
    /// the run calls before the borrows they came from end.
    pub(crate) unsafe fn begin(
        &mut self,
        host: *mut (dyn Host + '_),
        keys: &[Bytes],
        args: &[Bytes],
    ) {
        // SAFETY: only the lifetime is erased; the caller bounds the use.
        let host: *mut (dyn Host + 'static) = unsafe { std::mem::transmute(host) };
        self.host = Some(HostPtr(host));
        self.run_args = Some(RunArgs(keys, args));
        self.resp3 = false;
        self.pending = None;
        self.kill = None;
        self.executed = 0;
    }

    /// A run is under way.
    pub(crate) fn running(&self) -> bool {
        self.host.is_some()
    }

    pub(crate) fn end(&mut self) {
        self.host = None;
        self.run_args = None;
        self.pending = None;
        self.reply = None;
        self.argv.clear();
    }

    /// The run was stopped (budget, memory, a host's panic): every catcher
    /// raises again.
    pub(crate) fn killed(&self) -> bool {
        self.kill.is_some() || self.meter().exceeded() || self.panic.is_some()
    }

    /// [`Command::find`] of `raw`, first among the last few commands found
    /// whose name is spelled exactly `raw` (a script calls a handful of
    /// commands, written as literals in lowercase): a comparison of a few
    /// bytes instead of folding the name and hashing it. Keyed by the bytes,
    /// so always what `Command::find` would say.
    fn find_command(&mut self, raw: &[u8]) -> Command {
        if let Some(c) = self.recent.iter().find(|c| c.static_name(raw).is_some()) {
            return *c;
        }
        let found = Command::find(raw);
        if found.static_name(raw).is_some() {
            self.recent[self.recent_next] = found;
            self.recent_next = (self.recent_next + 1) % RECENT_COMMANDS;
        }
        found
    }

    pub(crate) fn meter(&self) -> &Meter {
        // SAFETY: see `MeterPtr`.
        unsafe { &*self.meter.0 }
    }
}

/// The marker error a callback fails with when it raises a stored value.
#[derive(Debug)]
pub(crate) struct Raised(u64);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "script error #{}", self.0)
    }
}

impl std::error::Error for Raised {}

/// The context, for an mlua callback (which must not hold it across a call
/// into Lua: see [`Shared::ctx`]).
#[allow(clippy::mut_from_ref)]
pub(crate) fn ctx(lua: &Lua) -> &mut Ctx {
    let shared =
        lua.app_data_ref::<SharedPtr>().expect("script context installed at VM creation").0;
    // SAFETY: the box outlives the state; see `Shared::ctx` for the rest.
    unsafe { (*shared).ctx() }
}

/// Fails the current callback so that Lua sees `value` raised.
pub(crate) fn raise(lua: &Lua, value: Value) -> mlua::Error {
    let ctx = ctx(lua);
    ctx.raised += 1;
    let n = ctx.raised;
    ctx.pending = Some((n, value));
    mlua::Error::external(Raised(n))
}

fn raised_number(err: &mlua::Error) -> Option<u64> {
    match err {
        mlua::Error::CallbackError { cause, .. } => raised_number(cause),
        mlua::Error::ExternalError(e) => e.downcast_ref::<Raised>().map(|r| r.0),
        _ => None,
    }
}

/// The value to show a catcher for the error value `e`: what was raised, if
/// `e` is the marker of the pending raise.
fn take_error(lua: &Lua, e: Value) -> mlua::Result<Value> {
    if let Value::Error(err) = &e {
        if let Some(n) = raised_number(err) {
            let ctx = ctx(lua);
            if let Some((pending, _)) = &ctx.pending {
                if *pending == n {
                    return Ok(ctx.pending.take().expect("checked").1);
                }
            }
        }
    }
    Ok(e)
}

/// Lua's type name of a value (`luaL_typename`).
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) | Value::Error(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// `luaL_error` from a C function: the message prefixed with the calling
/// Lua line (`user_script:1: `), raised as a string.
pub(crate) fn lua_error(lua: &Lua, msg: &str) -> mlua::Error {
    let place = lua
        .inspect_stack(1, |d| {
            let line = d.current_line().unwrap_or(0);
            let src = d.source().short_src.map(|s| s.into_owned()).unwrap_or_default();
            (line > 0).then(|| format!("{src}:{line}: "))
        })
        .flatten()
        .unwrap_or_default();
    match lua.create_string(format!("{place}{msg}")) {
        Ok(s) => raise(lua, Value::String(s)),
        Err(e) => e,
    }
}

/// `luaL_argerror`: `bad argument #n to 'name' (msg)`, the name being the
/// one the caller used for the function.
pub(crate) fn arg_error(lua: &Lua, n: usize, msg: &str) -> mlua::Error {
    let (name, what) = lua
        .inspect_stack(0, |d| {
            let names = d.names();
            (names.name.map(|s| s.into_owned()), names.name_what)
        })
        .unwrap_or((None, None));
    let mut n = n;
    if what == Some("method") {
        n -= 1;
        if n == 0 {
            let name = name.unwrap_or_else(|| "?".into());
            return lua_error(lua, &format!("calling '{name}' on bad self ({msg})"));
        }
    }
    let name = name.unwrap_or_else(|| "?".into());
    lua_error(lua, &format!("bad argument #{n} to '{name}' ({msg})"))
}

/// `luaL_checkint`: a number or numeric string, truncated, as a C int.
fn check_int(lua: &Lua, args: &MultiValue, n: usize) -> mlua::Result<i32> {
    let v = args.get(n - 1);
    let num = match v {
        Some(Value::Integer(i)) => Some(*i as f64),
        Some(Value::Number(x)) => Some(*x),
        Some(Value::String(s)) => lua_str2number(&s.as_bytes()),
        _ => None,
    };
    match num {
        Some(x) => Ok(convert::c_cast(x) as i32),
        None => {
            let got = v.map_or("no value", type_name);
            Err(arg_error(lua, n, &format!("number expected, got {got}")))
        }
    }
}

/// An error table raised by a `redis.*` function (Redis's `luaPushError`
/// followed by `lua_error`).
fn raise_error_table(lua: &Lua, text: &str) -> mlua::Error {
    match error_table(lua, text.as_bytes(), false) {
        Ok(t) => raise(lua, Value::Table(t)),
        Err(e) => e,
    }
}

/// One argument of `redis.call`, converted as soon as mlua reads it off the
/// stack (so a call with thousands of arguments holds no Lua references).
pub(crate) struct Arg(Option<Bytes>);

impl FromLua for Arg {
    fn from_lua(value: Value, _: &Lua) -> mlua::Result<Arg> {
        Ok(Arg(lua_to_arg(&value)))
    }
}

/// Arguments of `redis.call` whose vector is kept for the next call.
const KEPT_ARGV: usize = 256;

/// Command names `redis.call` remembers (see `Ctx::find_command`).
const RECENT_COMMANDS: usize = 4;

/// `redis.call`: runs a command, raises its error reply.
pub(crate) unsafe extern "C-unwind" fn redis_call(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: Lua calls this with a live state of a `ScriptVm`.
    unsafe { command(l, true) }
}

/// `redis.pcall`: runs a command, returns its error reply.
pub(crate) unsafe extern "C-unwind" fn redis_pcall(l: *mut ffi::lua_State) -> c_int {
    // SAFETY: as above.
    unsafe { command(l, false) }
}

/// How a `redis.call` went, before anything is pushed for Lua. Owns
/// nothing: what the pushing needs is in [`Ctx`], since Lua may longjmp out
/// of it (out of memory) and skip this frame.
enum Called {
    /// The reply is in [`Ctx::reply`].
    Replied,
    /// Not run: this error text (`from_command`: a refusal by the command
    /// table, which carries `ignore_error_stats_update`).
    Refused { text: &'static str, from_command: bool },
    /// Called outside a run: raised even by `redis.pcall`.
    NoRun,
    /// The host panicked (the payload is in [`Ctx::panic`]).
    Panicked,
}

/// `redis.call` (`raise`) and `redis.pcall`, as Redis's
/// `luaRedisGenericCommand`: the arguments, checked as Redis checks them,
/// then the command through the host, its reply converted for the script.
unsafe fn command(l: *mut ffi::lua_State, raise: bool) -> c_int {
    // SAFETY: the caller's guarantee. Each `ctx()` below is dropped before
    // the next, and before anything that can call back into Lua.
    unsafe {
        let shared = Shared::of(l);
        let called = execute(shared, l);
        let Ctx { reply, resp3, scratch, .. } = shared.ctx();
        match called {
            Called::Replied => {
                let Some(r) = reply.as_ref() else { return 0 };
                let failed = matches!(r, Reply::Error(_));
                super::convert::push_reply(l, r, *resp3, scratch);
                *reply = None;
                if failed && raise {
                    ffi::lua_error(l);
                }
            }
            Called::Refused { text, from_command } => {
                ffi::luaL_checkstack(l, 3, std::ptr::null());
                push_error_table(l, text.as_bytes(), false, from_command, scratch);
                if raise {
                    ffi::lua_error(l);
                }
            }
            Called::NoRun => {
                let text = "redis.call/pcall can only be called inside a script invocation";
                ffi::luaL_checkstack(l, 3, std::ptr::null());
                push_error_table(l, text.as_bytes(), false, false, scratch);
                ffi::lua_error(l);
            }
            Called::Panicked => {
                ffi::lua_pushnil(l);
                ffi::lua_error(l);
            }
        }
        1
    }
}

/// The Rust half of [`command`]: everything up to the reply, which it
/// leaves in [`Ctx::reply`]. Raises nothing.
unsafe fn execute(shared: &Shared, l: *mut ffi::lua_State) -> Called {
    // SAFETY: `l` is live (the caller's guarantee); the context is borrowed
    // afresh around the host call, not across it.
    unsafe {
        let n = ffi::lua_gettop(l);
        if n == 0 {
            let text = "Please specify at least one argument for this redis lib call";
            return Called::Refused { text, from_command: false };
        }
        let ctx = shared.ctx();
        let mut argv = std::mem::take(&mut ctx.argv);
        argv.clear();
        // The name first, looked up once; spelled as the command table does
        // (lowercase, as scripts usually write it), it needs no copy.
        let mut command = None;
        if ffi::lua_type(l, 1) == ffi::LUA_TSTRING {
            let raw = string_at(l, 1);
            let found = ctx.find_command(raw);
            argv.push(match found.static_name(raw) {
                Some(name) => Bytes::from_static(name.as_bytes()),
                None => Bytes::copy_from_slice(raw),
            });
            command = Some(found);
        }
        let run_args = ctx.run_args.as_ref().map(|r| (&*r.0, &*r.1));
        for i in argv.len() as c_int + 1..=n {
            let arg = if ffi::lua_type(l, i) == ffi::LUA_TSTRING {
                let raw = string_at(l, i);
                Some(run_arg(run_args, raw).unwrap_or_else(|| Bytes::copy_from_slice(raw)))
            } else {
                arg_at(l, i)
            };
            match arg {
                Some(arg) => argv.push(arg),
                None => {
                    ctx.argv = argv;
                    let text = "Lua redis lib command arguments must be strings or integers";
                    return Called::Refused { text, from_command: false };
                }
            }
        }
        let Some(host) = ctx.host.as_ref().map(|h| h.0) else {
            ctx.argv = argv;
            return Called::NoRun;
        };
        let command = command.unwrap_or_else(|| Command::find(&argv[0]));
        let spec = match command.check(&argv, ctx.read_only) {
            Ok(spec) => spec,
            Err(refusal) => {
                ctx.argv = argv;
                return Called::Refused { text: refusal.text(), from_command: true };
            }
        };
        // See `HostPtr`: set for this run, which is still going on. A panic
        // must not unwind through Lua: it stops the run and is resumed after.
        let result = catch_unwind(AssertUnwindSafe(|| match spec {
            Some(spec) => (*host).call_command(spec, &argv),
            None => (*host).call(&argv),
        }));
        argv.clear();
        if argv.capacity() > KEPT_ARGV {
            // Don't keep a huge call's vector (`redis.call(unpack(t))`).
            argv = Vec::new();
        }
        let ctx = shared.ctx();
        ctx.argv = argv;
        match result {
            Ok(reply) => {
                ctx.reply = Some(reply);
                Called::Replied
            }
            Err(panic) => {
                ctx.panic = Some(panic);
                Called::Panicked
            }
        }
    }
}

/// KEYS and ARGV elements compared with a `redis.call` argument, at most
/// (a script with more rarely passes them all to one call).
const RUN_ARGS_SEARCHED: usize = 16;

/// A clone of the run's KEYS or ARGV element whose bytes are `raw`, if
/// there is one (scripts mostly pass `KEYS[i]` and `ARGV[i]` as they came):
/// a reference count instead of an allocation and a copy. Equal bytes make
/// equal arguments, so which element matches does not matter.
fn run_arg(run_args: Option<(&[Bytes], &[Bytes])>, raw: &[u8]) -> Option<Bytes> {
    let (keys, args) = run_args?;
    keys.iter()
        .take(RUN_ARGS_SEARCHED)
        .chain(args.iter().take(RUN_ARGS_SEARCHED))
        .find(|b| b.len() == raw.len() && b[..] == *raw)
        .cloned()
}

fn sha1hex(lua: &Lua, args: MultiValue) -> mlua::Result<String> {
    if args.len() != 1 {
        return Err(raise_error_table(lua, "wrong number of arguments"));
    }
    let bytes = match &args[0] {
        Value::String(s) => s.as_bytes().to_vec(),
        v @ (Value::Integer(_) | Value::Number(_)) => convert::number_to_lua_string(v).into_bytes(),
        _ => Vec::new(),
    };
    Ok(super::sha1_hex(&bytes))
}

fn lua_number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => lua_str2number(&s.as_bytes()),
        _ => None,
    }
}

fn log(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() < 2 {
        return Err(raise_error_table(lua, "redis.log() requires two arguments or more."));
    }
    let Some(level) = lua_number(&args[0]) else {
        return Err(raise_error_table(lua, "First argument must be a number (log level)."));
    };
    let level = convert::c_cast(level) as i32;
    if !(0..=3).contains(&level) {
        return Err(raise_error_table(lua, "Invalid debug level."));
    }
    let mut text = Vec::new();
    for (i, v) in args.iter().skip(1).enumerate() {
        let piece = match v {
            Value::String(s) => s.as_bytes().to_vec(),
            Value::Integer(_) | Value::Number(_) => convert::number_to_lua_string(v).into_bytes(),
            _ => continue,
        };
        if i > 0 {
            text.push(b' ');
        }
        text.extend_from_slice(&piece);
    }
    let text = String::from_utf8_lossy(&text);
    match level {
        0 => tracing::debug!(target: "raftcache::script", "{text}"),
        1 => tracing::debug!(target: "raftcache::script", "{text}"),
        2 => tracing::info!(target: "raftcache::script", "{text}"),
        _ => tracing::warn!(target: "raftcache::script", "{text}"),
    }
    Ok(())
}

fn int_arg(v: &Value) -> i32 {
    lua_number(v).map_or(0, |n| convert::c_cast(n) as i32)
}

fn setresp(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() != 1 {
        return Err(raise_error_table(lua, "redis.setresp() requires one argument."));
    }
    let resp = int_arg(&args[0]);
    if resp != 2 && resp != 3 {
        return Err(raise_error_table(lua, "RESP version must be 2 or 3."));
    }
    ctx(lua).resp3 = resp == 3;
    Ok(())
}

fn set_repl(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() != 1 {
        return Err(raise_error_table(lua, "redis.set_repl() requires two arguments."));
    }
    if int_arg(&args[0]) & !3 != 0 {
        return Err(raise_error_table(
            lua,
            "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        ));
    }
    Ok(())
}

fn acl_check_cmd(lua: &Lua, args: Variadic<Arg>) -> mlua::Result<bool> {
    if args.is_empty() {
        return Err(raise_error_table(
            lua,
            "Please specify at least one argument for this redis lib call",
        ));
    }
    let Some(argv) = args.into_iter().map(|a| a.0).collect::<Option<Vec<_>>>() else {
        return Err(raise_error_table(
            lua,
            "Lua redis lib command arguments must be strings or integers",
        ));
    };
    if !commands::exists(&argv) {
        return Err(raise_error_table(lua, "Invalid command passed to redis.acl_check_cmd()"));
    }
    Ok(true)
}

/// `math.random`, Redis's version of Lua's with rand48.
fn random(lua: &Lua, args: MultiValue) -> mlua::Result<f64> {
    const MAX: i32 = i32::MAX;
    let r = (ctx(lua).rand.lrand48() % MAX) as f64 / MAX as f64;
    match args.len() {
        0 => Ok(r),
        1 => {
            let u = check_int(lua, &args, 1)?;
            if u < 1 {
                return Err(arg_error(lua, 1, "interval is empty"));
            }
            Ok((r * u as f64).floor() + 1.0)
        }
        2 => {
            let l = check_int(lua, &args, 1)?;
            let u = check_int(lua, &args, 2)?;
            if l > u {
                return Err(arg_error(lua, 2, "interval is empty"));
            }
            Ok((r * (u as f64 - l as f64 + 1.0)).floor() + l as f64)
        }
        _ => Err(lua_error(lua, "wrong number of arguments")),
    }
}

fn randomseed(lua: &Lua, args: MultiValue) -> mlua::Result<()> {
    let seed = check_int(lua, &args, 1)?;
    ctx(lua).rand = Rand48::srand48(seed);
    Ok(())
}

/// `collectgarbage(opt)` made deterministic: "collect" and "step" collect
/// now; "count" reports 0 (no memory figure is the same on every replica:
/// even the run's own allocations depend on mlua's reuse of internal
/// objects and on Lua's string interning); the rest do nothing.
fn gc(lua: &Lua, opt: String) -> mlua::Result<Value> {
    match opt.as_str() {
        "collect" | "step" => {
            super::vm::full_collect(lua)?;
            Ok(if opt == "step" { Value::Boolean(true) } else { Value::Integer(0) })
        }
        "count" => Ok(Value::Integer(0)),
        "setpause" | "setstepmul" => Ok(Value::Integer(200)),
        _ => Ok(Value::Integer(0)),
    }
}

/// The table of primitives the prelude receives.
pub(crate) fn primitives(lua: &Lua) -> mlua::Result<Table> {
    let p = lua.create_table()?;
    let redis = lua.create_table()?;
    // SAFETY: both are C functions on the raw API of a `ScriptVm`'s state.
    unsafe {
        redis.raw_set("call", lua.create_c_function(redis_call)?)?;
        redis.raw_set("pcall", lua.create_c_function(redis_pcall)?)?;
    }
    redis.raw_set("sha1hex", lua.create_function(sha1hex)?)?;
    redis.raw_set("log", lua.create_function(log)?)?;
    redis.raw_set("setresp", lua.create_function(setresp)?)?;
    redis.raw_set("set_repl", lua.create_function(set_repl)?)?;
    redis.raw_set("acl_check_cmd", lua.create_function(acl_check_cmd)?)?;
    // The version the node reports (crates/node/src/info.rs).
    redis.raw_set("REDIS_VERSION", "7.4.0")?;
    redis.raw_set("REDIS_VERSION_NUM", 0x0007_0400)?;
    p.raw_set("redis", redis)?;
    p.raw_set(
        "error_text",
        lua.create_function(|lua, s: mlua::LuaString| {
            lua.create_string(convert::error_text(&s.as_bytes()))
        })?,
    )?;
    p.raw_set("random", lua.create_function(random)?)?;
    p.raw_set("randomseed", lua.create_function(randomseed)?)?;
    p.raw_set("killed", lua.create_function(|lua, ()| Ok(ctx(lua).killed()))?)?;
    p.raw_set("take_error", lua.create_function(take_error)?)?;
    p.raw_set("gc", lua.create_function(gc)?)?;
    p.raw_set("null", Value::LightUserData(mlua::LightUserData(std::ptr::null_mut())))?;
    p.raw_set("cjson", super::cjson::library(lua)?)?;
    p.raw_set("bit", super::bit::library(lua)?)?;
    p.raw_set("cmsgpack", super::cmsgpack::library(lua)?)?;
    p.raw_set("struct", super::lstruct::library(lua)?)?;
    p.raw_set("sandbox", lua.create_function(super::sandbox::functions)?)?;
    p.raw_set("nonexistent", lua.create_function(super::sandbox::nonexistent)?)?;
    Ok(p)
}

#[cfg(test)]
pub(crate) fn rand48_for_test(seed: i32, n: usize) -> Vec<i32> {
    let mut r = Rand48::srand48(seed);
    (0..n).map(|_| r.lrand48()).collect()
}
