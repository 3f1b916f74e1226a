//! Lua scripting (EVAL, EVALSHA): Redis 7.0.15's script engine, made
//! deterministic so it can run inside Raft apply.
//!
//! A [`ScriptVm`] is one Lua 5.1 interpreter (the `mlua` crate, vendored Lua
//! 5.1.5, as Redis embeds) with Redis's `redis.*` API, its sandbox and its
//! libraries. It is *not* replicated state: each node builds its own lazily,
//! caches compiled scripts in it, and may throw it away at any time (SCRIPT
//! FLUSH, restart); the engine keeps the replicated sha → body table and always
//! hands [`ScriptVm::run`] the body. The only way out of the VM is the [`Host`]
//! trait: `redis.call` and `redis.pcall` go through it, nothing else does.
//!
//! What a script sees matches a real Redis 7.0.15 (the Debian build the tests
//! were checked against, which carries the 2025 Lua hardening: no `getfenv`,
//! `setfenv`, `newproxy`, `print`): the same globals and libraries, the same
//! read-only global table and library tables, the same conversions between
//! replies and Lua values in RESP2 and RESP3 (`redis.setresp`), and the same
//! error texts, byte for byte, including the `script: <sha>, on
//! @user_script:<line>.` suffix. The tests in `tests.rs` name the server
//! command behind each expected text.
//!
//! # Determinism
//!
//! Every replica runs every write script, so anything a script can observe
//! must be a function of the log entry and the keyspace:
//!
//! - `math.random` is Redis's rand48 generator, reseeded at the start of every
//!   run from [`RunOptions::seed`]. (Redis 7.0 never reseeds: its sequence runs
//!   on across scripts. `math.randomseed(n)` then gives Redis's exact sequence.)
//! - A run is stopped after [`RunOptions::instruction_budget`] Lua VM
//!   instructions, counted by a count hook every [`HOOK_EVERY`] instructions
//!   (fewer if the budget is smaller), so it stops at the same instruction on
//!   every replica. The hook count is reset at the start of every run. Once
//!   stopped, the run cannot be resumed by `pcall`, `xpcall`,
//!   `coroutine.resume` or `load`: each of them raises again. Writes made
//!   before the stop stay applied, as with any script error in Redis. Redis
//!   uses wall time (`busy-reply-threshold`) instead; the error text is ours.
//!   Work done inside one C function (a pathological `string.find` pattern, a
//!   huge `table.sort`) executes no VM instruction and is not counted: that is
//!   the budget's hazard.
//! - `tostring` of a table, function, coroutine or userdata shows a per-run
//!   sequence number (`table: 0x00000001` for the first one printed) instead
//!   of an address; the same value prints the same within a run. The error
//!   handler uses it too. What remains address-dependent, and is documented
//!   rather than fixed: the order of `pairs`/`next` over tables whose keys are
//!   tables, functions or coroutines (they hash by address). Keys that are
//!   strings, numbers and booleans iterate in a deterministic order (Lua 5.1
//!   has no hash seed), though for strings of 32 bytes or more it differs from
//!   Redis's, whose Lua hashes every byte.
//! - KEYS and ARGV tables are reused from run to run (saving their
//!   allocation and collection), but only a table the previous run left
//!   exactly as a fresh one (no metatable, an array part of the same length,
//!   no hash part: `vm.rs` reads Lua 5.1.5's `Table` for this, after checking
//!   its layout), with every element set to this run's string (one that
//!   already holds it is left alone: equal Lua strings are one interned
//!   object): a run cannot tell. Nor is the global set again when it
//!   already holds that table (scripts cannot write globals).
//! - `collectgarbage("count")` and `gcinfo()` report 0: no memory figure is
//!   the same on every replica (see below). `collectgarbage()` and
//!   `collectgarbage("step")` collect at that point (which is deterministic);
//!   the other options do nothing.
//!
//! ## The memory cap
//!
//! A run may hold at most [`RunOptions::memory_limit`] bytes of live Lua
//! allocations it made itself; the allocation that would pass the cap fails,
//! and the run ends with an error (uncatchable, like the budget). To make the
//! trigger as deterministic as Lua 5.1 allows:
//!
//! - Lua's collector never runs on its own: it is stopped, and a full
//!   collection runs only at points that depend on the run alone (every
//!   [`RUN_GC_STEP`] bytes, or half the limit if less, that the run allocates,
//!   checked at the count hook, and on the script's `collectgarbage()`) or
//!   between runs (which no run sees).
//! - The meter counts only blocks allocated during the run, tracked by address
//!   and forgotten when freed; garbage left by earlier runs never counts.
//!
//! What stays history-dependent: Lua interns strings, so a run that builds a
//! string that already exists in the VM (a constant of another cached script,
//! uncollected garbage of an earlier run) allocates nothing for it; VM-wide
//! buffers (Lua stacks, the string table, the concatenation buffer, the
//! registry) may or may not have to grow, and their growth is charged; mlua
//! reuses a few internal objects across runs (the error slots it preallocates
//! for callbacks). The difference is bounded by the size of what else lives
//! in the VM, so a run whose peak lands within that margin of the cap can fail
//! on one replica and pass on another. The cap is a safety net against a
//! script that would exhaust every replica's memory at once; keep it well
//! above what real scripts use.
//!
//! # Layout
//! - `mod.rs`: the public interface ([`ScriptVm`], [`Host`], [`RunOptions`],
//!   [`ScriptFlags`], [`Sha`], [`sha1_hex`], [`parse_shebang`]).
//! - `vm.rs`: the interpreter, its cache (by SHA1, checked against the body),
//!   the hook and one run. A run and `redis.call` use Lua's C API directly
//!   (no mlua call, lock or references per run): they are the per-call cost
//!   every replica pays.
//! - `prelude.lua`: the sandbox in Lua (read-only proxies, wrapped builtins,
//!   the error handler, `tostring`'s per-run numbering).
//! - `sandbox.rs`: the builtins that bypass metatables, aware of the proxies.
//! - `api.rs`: the `redis.*` functions written in Rust and `math.random`.
//! - `commands.rs`: which commands a script may call (Redis's `noscript`,
//!   `write` and `may-replicate` flags, subcommand arities).
//! - `convert.rs`: replies to Lua values and back.
//! - `alloc.rs`: the metered allocator.
//! - `cjson.rs`, `bit.rs`, `cmsgpack.rs`, `lstruct.rs`: the `cjson`, `bit`,
//!   `cmsgpack` and `struct` libraries.
//! - `shebang.rs`: `#!lua flags=…`.
//! - `tests.rs`: unit tests, each error text checked against redis-server;
//!   `redis_corpus.rs`: a corpus of scripts with redis-server's replies.
//!
//! # Differences from Redis
//!
//! Besides the determinism measures above:
//! - Left out: the script debugger (`redis.breakpoint` returns false,
//!   `redis.debug` does nothing), ACLs (`redis.acl_check_cmd` says whether
//!   the command exists) and `redis.set_repl` (accepted, no effect: the Raft
//!   log replicates the script itself). The cjson configuration functions
//!   report settings and change nothing (in Redis they change process state).
//! - Bounds lower than Redis's, because conversions recurse on the stack of
//!   the thread applying the log and a stack overflow would abort every
//!   replica at once: a returned table nests at most 128 levels (Redis about
//!   8000, then an error element, as here); cjson nests 256 (Redis 1000);
//!   cmsgpack unpacks 256 levels (Redis has no limit) and `cmsgpack.unpack`
//!   and `struct.unpack` return at most 4096 values (Redis about 8000).
//! - `error({})` (an error table without `err`) crashes Redis 7.0.15; here it
//!   replies `ERR Error running script <sha>, execution failure`.
//! - The sandbox is not a patched interpreter (see `prelude.lua`). A few
//!   builtins are wrapped in Lua (`tostring`, `pcall`, `xpcall`,
//!   `coroutine.resume`, `load`, `loadstring`, `collectgarbage`, `gcinfo`):
//!   their own argument errors name the function as the library does and
//!   say `got nil` where Lua says `got no value`, and such an error in a
//!   wrapper the script tail-calls (`return tostring()`) loses its
//!   `user_script:N:` prefix. Everything else that can raise (`redis.*`,
//!   `cjson`, `bit`, `cmsgpack`, `struct`, `math.random`, `rawget`,
//!   `rawset`, `next`, `pairs`, `ipairs`, `getmetatable`, `setmetatable`,
//!   `table.insert`) is a C function to Lua, as in Redis, and reports
//!   exactly.
//! - Lua 5.1 hashes strings of 32 bytes or more by sampling (Redis's Lua
//!   hashes every byte), so `pairs` over such keys visits them in another
//!   order than Redis would (the same order on every replica).
//! - A verbatim string of another format than `txt` returned by a script
//!   becomes `txt` verbatim: [`Reply`] has no variant for other formats.

mod alloc;
mod api;
mod bit;
mod cjson;
mod cmsgpack;
mod commands;
mod convert;
mod lstruct;
mod sandbox;
mod shebang;
mod vm;

#[cfg(test)]
mod redis_corpus;
#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

use crate::command::Spec;
use crate::reply::Reply;

pub use shebang::parse_shebang;
pub use vm::ScriptVm;

/// VM instructions between two runs of the budget hook (at most).
pub const HOOK_EVERY: u32 = 1000;

/// Bytes a run may allocate between two collections it triggers.
pub const RUN_GC_STEP: usize = 8 << 20;

/// A reasonable default for [`RunOptions::instruction_budget`]: about a
/// second of Lua on one core.
pub const DEFAULT_INSTRUCTION_BUDGET: u64 = 200_000_000;

/// A reasonable default for [`RunOptions::memory_limit`].
pub const DEFAULT_MEMORY_LIMIT: usize = 256 << 20;

/// What `redis.call` and `redis.pcall` execute against; the engine implements
/// it over its databases, for the database the script runs in.
pub trait Host {
    /// Runs one command. `argv[0]` is the command name as the script wrote it.
    /// The VM has already checked that the command exists, its arity, that it
    /// may run in a script (`noscript`) and that a read-only run does not
    /// write, so the host only executes it. Errors are [`Reply::Error`].
    /// Commands that touch the connection (SELECT, PING, ECHO …) are the
    /// host's to interpret in the script's context. Redis 7.0 lets scripts
    /// call TIME, RANDOMKEY, SRANDMEMBER and the like; for the run to be
    /// deterministic the host must answer them from the log entry (its time
    /// and seed), as the engine's handlers already do.
    fn call(&mut self, argv: &[Bytes]) -> Reply;

    /// [`Host::call`] of a command the VM found in the engine's command
    /// table (`spec`, what `command::lookup(&argv[0])` returns), which saves
    /// the host looking it up again.
    fn call_command(&mut self, spec: &'static Spec, argv: &[Bytes]) -> Reply {
        let _ = spec;
        self.call(argv)
    }
}

/// Per-run settings: all of them deterministic inputs from the log entry (or,
/// for a read served locally, from the node).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Seeds `math.random` for this run.
    pub seed: u64,
    /// Refuse commands that write (EVAL_RO, a `no-writes` script, a script
    /// served as a read). A script with the `no-writes` flag is read-only
    /// whatever this says.
    pub read_only: bool,
    /// Lua VM instructions the run may execute before it is stopped.
    pub instruction_budget: u64,
    /// Bytes of live Lua allocations the run may hold (see the module docs).
    pub memory_limit: usize,
    /// The caller speaks RESP3. Replies are protocol-independent [`Reply`]
    /// values, so nothing depends on it today; kept for the day a conversion
    /// does (a verbatim format the `Reply` type lacks).
    pub resp3_client: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            seed: 0,
            read_only: false,
            instruction_budget: DEFAULT_INSTRUCTION_BUDGET,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            resp3_client: false,
        }
    }
}

/// A script's SHA1 as 40 lowercase hex digits (EVALSHA's name for it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha([u8; 40]);

impl std::hash::Hash for Sha {
    /// The digits alone (no length prefix), in one `write`.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl Sha {
    /// The hex digits.
    pub fn as_str(&self) -> &str {
        // SAFETY: a `Sha` is made only by `parse` and `of`, and holds
        // lowercase hex digits (ASCII); skipping the check matters because
        // every EVALSHA looks its script up by this string.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// A SHA1 as a client writes it: 40 hex digits in either case.
    pub fn parse(hex: &[u8]) -> Option<Sha> {
        let hex: &[u8; 40] = hex.try_into().ok()?;
        // Branch-free per byte (the compiler vectorizes it): `| 0x20`
        // lowercases a letter and leaves a digit as it is.
        let mut out = [0u8; 40];
        let mut bad = false;
        for (o, &h) in out.iter_mut().zip(hex) {
            let lower = h | 0x20;
            let digit = h.wrapping_sub(b'0') < 10;
            let letter = lower.wrapping_sub(b'a') < 6;
            bad |= !(digit | letter);
            *o = lower;
        }
        (!bad).then_some(Sha(out))
    }

    pub(crate) fn of(body: &[u8]) -> Sha {
        let digest = sha1_smol::Sha1::from(body).digest().bytes();
        let mut out = [0u8; 40];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in digest.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        Sha(out)
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha({})", self.as_str())
    }
}

/// SHA1 of `body` as 40 lowercase hex digits, as SCRIPT LOAD and
/// `redis.sha1hex` print it.
pub fn sha1_hex(body: &[u8]) -> String {
    Sha::of(body).as_str().to_owned()
}

/// The flags of a `#!lua flags=…` first line (Redis 7.0). A script without a
/// shebang runs in compatibility mode, where flags do not apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// No shebang: Redis's pre-7.0 behaviour (may write, flags ignored).
    pub compat: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
}

impl ScriptFlags {
    /// The script declared that it does not write.
    pub fn read_only(&self) -> bool {
        !self.compat && self.no_writes
    }

    /// The script may write: it has no shebang, or one without `no-writes`.
    /// EVAL_RO refuses such a script with a shebang before running it.
    pub fn may_write(&self) -> bool {
        !self.read_only()
    }
}
