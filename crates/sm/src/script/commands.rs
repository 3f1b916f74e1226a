//! Which commands a script may call, and the errors for those it may not.
//!
//! The tables are Redis 7.0.15's, taken from `COMMAND` on a real server: the
//! commands flagged `noscript`, those flagged `write` plus the
//! `may-replicate` ones (`eval`, `evalsha`, `fcall`, `pfcount`, `publish`,
//! `spublish`, from the 7.0.15 command JSON files; Redis refuses both kinds in
//! a read-only script), and every container command's subcommands with their
//! arity and flags (Redis looks a subcommand up before it checks anything).
//! Arity of plain commands comes from the engine's own table, which matches
//! Redis's.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use bytes::Bytes;

use crate::command::{self, Spec};

/// Why a script may not run a command, as Redis 7.0 words it (without the
/// `ERR ` that the error table adds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unknown,
    Arity,
    NoScript,
    WriteInReadOnly,
}

impl Refusal {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Refusal::Unknown => "Unknown Redis command called from script",
            Refusal::Arity => "Wrong number of args calling Redis command from script",
            Refusal::NoScript => "This Redis command is not allowed from script",
            Refusal::WriteInReadOnly => "Write commands are not allowed from read-only scripts.",
        }
    }
}

/// What the checks need to know about one command or subcommand.
#[derive(Clone, Copy)]
struct Info {
    arity: i32,
    noscript: bool,
    write: bool,
    /// The engine's command (the container, for a subcommand), if it has it.
    spec: Option<&'static Spec>,
}

/// A command name looked up in [`table`] (once per `redis.call`).
#[derive(Clone, Copy)]
pub(crate) struct Command(Option<(&'static str, Entry)>);

impl Command {
    /// No command (what `find` says of an unknown name).
    pub(crate) const NONE: Command = Command(None);

    /// Looks `name` up, ignoring case.
    pub(crate) fn find(name: &[u8]) -> Command {
        Command(Name::new(name).and_then(|key| table().get(&key).copied()))
    }

    /// The table's spelling of the name, if `raw` is exactly that (as
    /// scripts usually write it): argv[0] can then be static, not a copy.
    pub(crate) fn static_name(&self, raw: &[u8]) -> Option<&'static str> {
        self.0.map(|(name, _)| name).filter(|name| name.as_bytes() == raw)
    }

    /// Checks `argv` (whose name this is) the way Redis's `scriptCall` does
    /// before running it: the command exists (for a container, the
    /// subcommand too), its arity, the `noscript` flag, and no writes in a
    /// read-only run. On success, the engine's command for `argv[0]`.
    pub(crate) fn check(
        &self,
        argv: &[Bytes],
        read_only: bool,
    ) -> Result<Option<&'static Spec>, Refusal> {
        let info = self.info(argv).ok_or(Refusal::Unknown)?;
        let argc = argv.len() as i32;
        let arity_ok = if info.arity >= 0 { argc == info.arity } else { argc >= -info.arity };
        if !arity_ok {
            return Err(Refusal::Arity);
        }
        if info.noscript {
            return Err(Refusal::NoScript);
        }
        if read_only && info.write {
            return Err(Refusal::WriteInReadOnly);
        }
        Ok(info.spec)
    }

    fn info(&self, argv: &[Bytes]) -> Option<Info> {
        match self.0?.1 {
            Entry::NoScript(arity) => {
                Some(Info { arity, noscript: true, write: false, spec: None })
            }
            Entry::Plain(info) => Some(info),
            Entry::Container { subs, spec } => {
                if argv.len() == 1 {
                    // Every container command has arity -2.
                    return Some(Info { arity: -2, noscript: false, write: false, spec });
                }
                let sub = subs.iter().find(|s| s.name.as_bytes().eq_ignore_ascii_case(&argv[1]))?;
                if !sub.noscript && spec.is_none() {
                    return None;
                }
                Some(Info { arity: sub.arity, noscript: sub.noscript, write: sub.write, spec })
            }
        }
    }
}

#[cfg(test)]
fn lookup(argv: &[Bytes]) -> Option<Info> {
    Command::find(argv.first()?).info(argv)
}

/// Whether `argv` names a command Redis has and this engine implements, or
/// one a script may not call anyway (`redis.acl_check_cmd`).
pub(crate) fn exists(argv: &[Bytes]) -> bool {
    argv.first().is_some_and(|name| Command::find(name).info(argv).is_some())
}

/// A command name as the table's key: lowercase, zero-padded to 32 bytes
/// (longer names are unknown), with its length (a NUL is not padding).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Name {
    words: [u64; 4],
    len: usize,
}

impl Name {
    fn new(raw: &[u8]) -> Option<Name> {
        let mut buf = [0u8; 32];
        buf.get_mut(..raw.len())?.copy_from_slice(raw);
        buf.make_ascii_lowercase();
        let word =
            |i: usize| u64::from_le_bytes(buf[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        Some(Name { words: [word(0), word(1), word(2), word(3)], len: raw.len() })
    }
}

impl std::hash::Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [a, b, c, d] = self.words;
        state.write_u64(
            a ^ b.rotate_left(16) ^ c.rotate_left(32) ^ d.rotate_left(48) ^ self.len as u64,
        );
    }
}

type Table = HashMap<Name, (&'static str, Entry), BuildHasherDefault<NameHasher>>;

/// Hashes a [`Name`] (one multiplication, FxHash's): the table never grows,
/// so it needs no keyed hash.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// What the name alone says about a command (see [`table`]).
#[derive(Clone, Copy)]
enum Entry {
    /// Flagged `noscript`: refused whether or not this engine implements it
    /// (MULTI, EVAL …), after its arity is checked.
    NoScript(i32),
    /// A container command (its subcommand decides); `spec`: this engine's.
    Container { subs: &'static [Sub], spec: Option<&'static Spec> },
    /// Any other command this engine implements.
    Plain(Info),
}

/// Script-visible facts of every command name Redis or this engine knows,
/// computed once from the tables below and the engine's own: one hash lookup
/// per `redis.call` instead of a binary search, a linear search and another
/// hash lookup.
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = Table::default();
        let mut add = |name: &'static str, entry: Entry| {
            let key = Name::new(name.as_bytes()).expect("command names are short");
            map.entry(key).or_insert((name, entry));
        };
        for &(name, arity) in NOSCRIPT {
            add(name, Entry::NoScript(arity));
        }
        for &(name, subs) in SUBCOMMANDS {
            add(name, Entry::Container { subs, spec: command::lookup(name.as_bytes()) });
        }
        for spec in command::all() {
            let write = spec.is_write() || WRITE.binary_search(&spec.name).is_ok();
            let info = Info { arity: spec.arity, noscript: false, write, spec: Some(spec) };
            add(spec.name, Entry::Plain(info));
        }
        map
    })
}

/// One subcommand of a container command.
struct Sub {
    name: &'static str,
    arity: i32,
    noscript: bool,
    write: bool,
}

/// Top-level commands flagged `noscript`, with their arity.
#[rustfmt::skip]
const NOSCRIPT: &[(&str, i32)] = &[
    ("auth", -2), ("bgrewriteaof", 1), ("bgsave", -1), ("blmove", 6), ("blpop", -3),
    ("brpop", -3), ("brpoplpush", 4), ("bzpopmax", -3), ("bzpopmin", -3), ("debug", -2),
    ("discard", 1), ("eval", -3), ("eval_ro", -3), ("evalsha", -3), ("evalsha_ro", -3),
    ("exec", 1), ("failover", -1), ("fcall", -3), ("fcall_ro", -3), ("hello", -1),
    ("monitor", 1), ("multi", 1), ("psubscribe", -2), ("psync", -3), ("punsubscribe", -1),
    ("quit", -1), ("replconf", -1), ("replicaof", 3), ("reset", 1), ("role", 1), ("save", 1),
    ("shutdown", -1), ("slaveof", 3), ("ssubscribe", -2), ("subscribe", -2),
    ("sunsubscribe", -1), ("sync", 1), ("unsubscribe", -1), ("unwatch", 1), ("wait", 3),
    ("watch", -2),
];

const WRITE: &[&str] = &[
    "append",
    "bitfield",
    "bitop",
    "blmove",
    "blmpop",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzmpop",
    "bzpopmax",
    "bzpopmin",
    "copy",
    "decr",
    "decrby",
    "del",
    "eval",
    "evalsha",
    "expire",
    "expireat",
    "fcall",
    "flushall",
    "flushdb",
    "geoadd",
    "georadius",
    "georadiusbymember",
    "geosearchstore",
    "getdel",
    "getex",
    "getset",
    "hdel",
    "hincrby",
    "hincrbyfloat",
    "hmset",
    "hset",
    "hsetnx",
    "incr",
    "incrby",
    "incrbyfloat",
    "linsert",
    "lmove",
    "lmpop",
    "lpop",
    "lpush",
    "lpushx",
    "lrem",
    "lset",
    "ltrim",
    "migrate",
    "move",
    "mset",
    "msetnx",
    "persist",
    "pexpire",
    "pexpireat",
    "pfadd",
    "pfcount",
    "pfdebug",
    "pfmerge",
    "psetex",
    "publish",
    "rename",
    "renamenx",
    "restore",
    "restore-asking",
    "rpop",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "sdiffstore",
    "set",
    "setbit",
    "setex",
    "setnx",
    "setrange",
    "sinterstore",
    "smove",
    "sort",
    "spop",
    "spublish",
    "srem",
    "sunionstore",
    "swapdb",
    "unlink",
    "xack",
    "xadd",
    "xautoclaim",
    "xclaim",
    "xdel",
    "xreadgroup",
    "xsetid",
    "xtrim",
    "zadd",
    "zdiffstore",
    "zincrby",
    "zinterstore",
    "zmpop",
    "zpopmax",
    "zpopmin",
    "zrangestore",
    "zrem",
    "zremrangebylex",
    "zremrangebyrank",
    "zremrangebyscore",
    "zunionstore",
];

const SUBCOMMANDS: &[(&str, &[Sub])] = &[
    (
        "acl",
        &[
            Sub { name: "cat", arity: -2, noscript: true, write: false },
            Sub { name: "deluser", arity: -3, noscript: true, write: false },
            Sub { name: "dryrun", arity: -4, noscript: true, write: false },
            Sub { name: "genpass", arity: -2, noscript: true, write: false },
            Sub { name: "getuser", arity: 3, noscript: true, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "list", arity: 2, noscript: true, write: false },
            Sub { name: "load", arity: 2, noscript: true, write: false },
            Sub { name: "log", arity: -2, noscript: true, write: false },
            Sub { name: "save", arity: 2, noscript: true, write: false },
            Sub { name: "setuser", arity: -3, noscript: true, write: false },
            Sub { name: "users", arity: 2, noscript: true, write: false },
            Sub { name: "whoami", arity: 2, noscript: true, write: false },
        ],
    ),
    (
        "client",
        &[
            Sub { name: "caching", arity: 3, noscript: true, write: false },
            Sub { name: "getname", arity: 2, noscript: true, write: false },
            Sub { name: "getredir", arity: 2, noscript: true, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "id", arity: 2, noscript: true, write: false },
            Sub { name: "info", arity: 2, noscript: true, write: false },
            Sub { name: "kill", arity: -3, noscript: true, write: false },
            Sub { name: "list", arity: -2, noscript: true, write: false },
            Sub { name: "no-evict", arity: 3, noscript: true, write: false },
            Sub { name: "pause", arity: -3, noscript: true, write: false },
            Sub { name: "reply", arity: 3, noscript: true, write: false },
            Sub { name: "setname", arity: 3, noscript: true, write: false },
            Sub { name: "tracking", arity: -3, noscript: true, write: false },
            Sub { name: "trackinginfo", arity: 2, noscript: true, write: false },
            Sub { name: "unblock", arity: -3, noscript: true, write: false },
            Sub { name: "unpause", arity: 2, noscript: true, write: false },
        ],
    ),
    (
        "cluster",
        &[
            Sub { name: "addslots", arity: -3, noscript: false, write: false },
            Sub { name: "addslotsrange", arity: -4, noscript: false, write: false },
            Sub { name: "bumpepoch", arity: 2, noscript: false, write: false },
            Sub { name: "count-failure-reports", arity: 3, noscript: false, write: false },
            Sub { name: "countkeysinslot", arity: 3, noscript: false, write: false },
            Sub { name: "delslots", arity: -3, noscript: false, write: false },
            Sub { name: "delslotsrange", arity: -4, noscript: false, write: false },
            Sub { name: "failover", arity: -2, noscript: false, write: false },
            Sub { name: "flushslots", arity: 2, noscript: false, write: false },
            Sub { name: "forget", arity: 3, noscript: false, write: false },
            Sub { name: "getkeysinslot", arity: 4, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "info", arity: 2, noscript: false, write: false },
            Sub { name: "keyslot", arity: 3, noscript: false, write: false },
            Sub { name: "links", arity: 2, noscript: false, write: false },
            Sub { name: "meet", arity: -4, noscript: false, write: false },
            Sub { name: "myid", arity: 2, noscript: false, write: false },
            Sub { name: "nodes", arity: 2, noscript: false, write: false },
            Sub { name: "replicas", arity: 3, noscript: false, write: false },
            Sub { name: "replicate", arity: 3, noscript: false, write: false },
            Sub { name: "reset", arity: -2, noscript: true, write: false },
            Sub { name: "saveconfig", arity: 2, noscript: false, write: false },
            Sub { name: "set-config-epoch", arity: 3, noscript: false, write: false },
            Sub { name: "setslot", arity: -4, noscript: false, write: false },
            Sub { name: "shards", arity: 2, noscript: false, write: false },
            Sub { name: "slaves", arity: 3, noscript: false, write: false },
            Sub { name: "slots", arity: 2, noscript: false, write: false },
        ],
    ),
    (
        "command",
        &[
            Sub { name: "count", arity: 2, noscript: false, write: false },
            Sub { name: "docs", arity: -2, noscript: false, write: false },
            Sub { name: "getkeys", arity: -4, noscript: false, write: false },
            Sub { name: "getkeysandflags", arity: -4, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "info", arity: -2, noscript: false, write: false },
            Sub { name: "list", arity: -2, noscript: false, write: false },
        ],
    ),
    (
        "config",
        &[
            Sub { name: "get", arity: -3, noscript: true, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "resetstat", arity: 2, noscript: true, write: false },
            Sub { name: "rewrite", arity: 2, noscript: true, write: false },
            Sub { name: "set", arity: -4, noscript: true, write: false },
        ],
    ),
    (
        "function",
        &[
            Sub { name: "delete", arity: 3, noscript: true, write: true },
            Sub { name: "dump", arity: 2, noscript: true, write: false },
            Sub { name: "flush", arity: -2, noscript: true, write: true },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "kill", arity: 2, noscript: true, write: false },
            Sub { name: "list", arity: -2, noscript: true, write: false },
            Sub { name: "load", arity: -3, noscript: true, write: true },
            Sub { name: "restore", arity: -3, noscript: true, write: true },
            Sub { name: "stats", arity: 2, noscript: true, write: false },
        ],
    ),
    (
        "latency",
        &[
            Sub { name: "doctor", arity: 2, noscript: true, write: false },
            Sub { name: "graph", arity: 3, noscript: true, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "histogram", arity: -2, noscript: true, write: false },
            Sub { name: "history", arity: 3, noscript: true, write: false },
            Sub { name: "latest", arity: 2, noscript: true, write: false },
            Sub { name: "reset", arity: -2, noscript: true, write: false },
        ],
    ),
    (
        "memory",
        &[
            Sub { name: "doctor", arity: 2, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "malloc-stats", arity: 2, noscript: false, write: false },
            Sub { name: "purge", arity: 2, noscript: false, write: false },
            Sub { name: "stats", arity: 2, noscript: false, write: false },
            Sub { name: "usage", arity: -3, noscript: false, write: false },
        ],
    ),
    (
        "module",
        &[
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "list", arity: 2, noscript: true, write: false },
            Sub { name: "load", arity: -3, noscript: true, write: false },
            Sub { name: "loadex", arity: -3, noscript: true, write: false },
            Sub { name: "unload", arity: 3, noscript: true, write: false },
        ],
    ),
    (
        "object",
        &[
            Sub { name: "encoding", arity: 3, noscript: false, write: false },
            Sub { name: "freq", arity: 3, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "idletime", arity: 3, noscript: false, write: false },
            Sub { name: "refcount", arity: 3, noscript: false, write: false },
        ],
    ),
    (
        "pubsub",
        &[
            Sub { name: "channels", arity: -2, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "numpat", arity: 2, noscript: false, write: false },
            Sub { name: "numsub", arity: -2, noscript: false, write: false },
            Sub { name: "shardchannels", arity: -2, noscript: false, write: false },
            Sub { name: "shardnumsub", arity: -2, noscript: false, write: false },
        ],
    ),
    (
        "script",
        &[
            Sub { name: "debug", arity: 3, noscript: true, write: false },
            Sub { name: "exists", arity: -3, noscript: true, write: false },
            Sub { name: "flush", arity: -2, noscript: true, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "kill", arity: 2, noscript: true, write: false },
            Sub { name: "load", arity: 3, noscript: true, write: false },
        ],
    ),
    (
        "slowlog",
        &[
            Sub { name: "get", arity: -2, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "len", arity: 2, noscript: false, write: false },
            Sub { name: "reset", arity: 2, noscript: false, write: false },
        ],
    ),
    (
        "xgroup",
        &[
            Sub { name: "create", arity: -5, noscript: false, write: true },
            Sub { name: "createconsumer", arity: 5, noscript: false, write: true },
            Sub { name: "delconsumer", arity: 5, noscript: false, write: true },
            Sub { name: "destroy", arity: 4, noscript: false, write: true },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "setid", arity: -5, noscript: false, write: true },
        ],
    ),
    (
        "xinfo",
        &[
            Sub { name: "consumers", arity: 4, noscript: false, write: false },
            Sub { name: "groups", arity: 3, noscript: false, write: false },
            Sub { name: "help", arity: 2, noscript: false, write: false },
            Sub { name: "stream", arity: -3, noscript: false, write: false },
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookup as it was before the precomputed table.
    fn reference(argv: &[Bytes]) -> Option<(i32, bool, bool)> {
        let raw = argv.first()?;
        let lower = raw.to_ascii_lowercase();
        if lower.len() > 32 {
            return None;
        }
        let name = std::str::from_utf8(&lower).ok()?;
        if let Ok(i) = NOSCRIPT.binary_search_by(|(n, _)| n.cmp(&name)) {
            return Some((NOSCRIPT[i].1, true, false));
        }
        let known = command::lookup(name.as_bytes());
        if let Some((_, subs)) = SUBCOMMANDS.iter().find(|(n, _)| *n == name) {
            if argv.len() == 1 {
                return Some((-2, false, false));
            }
            let sub = subs.iter().find(|s| s.name.as_bytes().eq_ignore_ascii_case(&argv[1]))?;
            if !sub.noscript {
                known?;
            }
            return Some((sub.arity, sub.noscript, sub.write));
        }
        let spec = known?;
        Some((spec.arity, false, spec.is_write() || WRITE.binary_search(&spec.name).is_ok()))
    }

    #[test]
    fn the_table_answers_as_the_lists_do() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let mut names: Vec<String> = NOSCRIPT.iter().map(|(n, _)| n.to_string()).collect();
        names.extend(WRITE.iter().map(|n| n.to_string()));
        names.extend(command::all().map(|s| s.name.to_string()));
        names.extend(
            ["nosuch", "", "a-very-long-command-name-of-more-than-32-bytes"].map(String::from),
        );
        let mut argvs: Vec<Vec<Bytes>> = Vec::new();
        for name in &names {
            argvs.push(vec![b(name)]);
            argvs.push(vec![b(&name.to_ascii_uppercase()), b("x")]);
        }
        for (name, subs) in SUBCOMMANDS {
            argvs.push(vec![b(name)]);
            argvs.push(vec![b(name), b("nosuch")]);
            for sub in *subs {
                argvs.push(vec![b(&name.to_ascii_uppercase()), b(&sub.name.to_ascii_uppercase())]);
            }
        }
        for argv in &argvs {
            let info = lookup(argv);
            let got = info.map(|i| (i.arity, i.noscript, i.write));
            assert_eq!(got, reference(argv), "{argv:?}");
            if let Some(Info { noscript: false, spec, .. }) = info {
                let want = command::lookup(&argv[0]).map(|s| s.name);
                assert_eq!(spec.map(|s| s.name), want, "{argv:?}");
            }
        }
    }

    #[test]
    fn tables_are_sorted_for_binary_search() {
        assert!(NOSCRIPT.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(WRITE.windows(2).all(|w| w[0] < w[1]));
    }
}
