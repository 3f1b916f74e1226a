//! The command table: every command's name, arity, key positions and handler.
//!
//! Like Redis's own table, this is the single place that says which commands
//! exist and whether each one reads or writes. A write handler takes `&mut
//! Exec`, a read handler `&mut Query` (which holds the databases by shared
//! reference), so a command filed as a read cannot modify anything. Commands that
//! only touch the connection (PING, SELECT, HELLO …) are listed as
//! [`Kind::Connection`]: the node serves them and they never reach the log.
//!
//! Arity and key positions equal Redis 7.0's (`COMMAND INFO`); a test in the node
//! crate checks them against data captured from a real redis-server.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::args::Res;
use crate::cmd;
use crate::reply::Reply;
use crate::state::{Exec, Query};

/// A write command's handler.
pub type WriteFn = fn(&mut Exec<'_>, &[Bytes]) -> Res<Reply>;
/// A read command's handler.
pub type ReadFn = fn(&mut Query<'_>, &[Bytes]) -> Res<Reply>;

/// What a command does, and who runs it.
#[derive(Clone, Copy)]
pub enum Kind {
    /// Reads the keyspace; never enters the log.
    Read(ReadFn),
    /// May modify the keyspace; goes through the log.
    Write(WriteFn),
    /// Served by the node from connection or server state.
    Connection,
}

/// One command.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Lowercase name.
    pub name: &'static str,
    /// Redis arity: `n` means exactly n arguments (with the name), `-n` at least n.
    pub arity: i32,
    pub kind: Kind,
    /// Position of the first key argument (0 if none).
    pub first_key: i32,
    /// Position of the last key argument (-1: the last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
}

impl Spec {
    /// A read command.
    pub const fn read(name: &'static str, arity: i32, keys: (i32, i32, i32), f: ReadFn) -> Spec {
        Spec { name, arity, kind: Kind::Read(f), first_key: keys.0, last_key: keys.1, step: keys.2 }
    }

    /// A write command.
    pub const fn write(name: &'static str, arity: i32, keys: (i32, i32, i32), f: WriteFn) -> Spec {
        Spec {
            name,
            arity,
            kind: Kind::Write(f),
            first_key: keys.0,
            last_key: keys.1,
            step: keys.2,
        }
    }

    /// A command the node serves.
    pub const fn connection(name: &'static str, arity: i32) -> Spec {
        Spec { name, arity, kind: Kind::Connection, first_key: 0, last_key: 0, step: 0 }
    }

    /// A command the node serves that names keys (WATCH).
    pub const fn connection_keys(name: &'static str, arity: i32, keys: (i32, i32, i32)) -> Spec {
        Spec {
            name,
            arity,
            kind: Kind::Connection,
            first_key: keys.0,
            last_key: keys.1,
            step: keys.2,
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(self.kind, Kind::Write(_))
    }

    /// Checks the argument count, with Redis's error text.
    pub fn check_arity(&self, argc: usize) -> Res<()> {
        let argc = argc as i32;
        let ok = if self.arity >= 0 { argc == self.arity } else { argc >= -self.arity };
        if ok {
            Ok(())
        } else {
            Err(arity_error(self.name))
        }
    }

    /// The key arguments of `argv` (for redirects and COMMAND GETKEYS).
    pub fn keys<'a>(&self, argv: &'a [Bytes]) -> Vec<&'a Bytes> {
        if self.first_key <= 0 || argv.len() <= self.first_key as usize {
            return Vec::new();
        }
        let last = if self.last_key < 0 {
            argv.len() as i32 + self.last_key
        } else {
            self.last_key.min(argv.len() as i32 - 1)
        };
        let step = self.step.max(1) as usize;
        (self.first_key as usize..=last.max(0) as usize).step_by(step).map(|i| &argv[i]).collect()
    }
}

/// `ERR wrong number of arguments for 'name' command`.
pub fn arity_error(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// Redis's text for an unknown command, arguments quoted and truncated alike.
pub fn unknown_command_error(argv: &[Bytes]) -> Reply {
    let name = argv.first().map(|n| c_text(n, 128)).unwrap_or_default();
    let mut args = String::new();
    for arg in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        args.push('\'');
        args.push_str(&c_text(arg, room));
        args.push_str("' ");
    }
    Reply::error(sanitize(format!(
        "ERR unknown command '{name}', with args beginning with: {args}"
    )))
}

/// `ERR unknown subcommand 'x'. Try NAME HELP.`
pub fn unknown_subcommand_error(command: &str, sub: &[u8]) -> Reply {
    Reply::error(sanitize(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        c_text(sub, 128),
        command.to_ascii_uppercase()
    )))
}

/// A byte string as C's `%.*s` prints it: cut at the first NUL, at most `max`
/// bytes.
fn c_text(arg: &[u8], max: usize) -> String {
    let end = arg.iter().position(|&b| b == 0).unwrap_or(arg.len()).min(max);
    String::from_utf8_lossy(&arg[..end]).into_owned()
}

/// Error replies cannot carry newlines: Redis turns them into spaces.
fn sanitize(mut s: String) -> String {
    if s.contains(['\r', '\n']) {
        s = s.replace(['\r', '\n'], " ");
    }
    s
}

/// Every command, in one list.
pub fn all() -> impl Iterator<Item = &'static Spec> {
    cmd::FAMILIES.iter().flat_map(|family| family.iter())
}

/// Hashes command names for the (fixed) command table: xxh3 of the bytes.
/// std's default SipHash with a random key guards maps that grow from
/// untrusted input; this one never grows, and SipHash showed up at several
/// percent of a node's CPU for pipelined GETs.
#[derive(Default)]
struct NameHasher(u64);

impl std::hash::Hasher for NameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
}

type NameTable = HashMap<&'static [u8], &'static Spec, BuildHasherDefault<NameHasher>>;

fn table() -> &'static NameTable {
    static TABLE: OnceLock<NameTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = NameTable::default();
        for spec in all() {
            let previous = map.insert(spec.name.as_bytes(), spec);
            assert!(previous.is_none(), "command {} listed twice", spec.name);
        }
        map
    })
}

/// Longest command name; longer names are unknown without looking.
const MAX_NAME: usize = 32;

/// Finds a command by name, ignoring case.
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table().get(&*lower).copied()
}

/// Finds the command for `argv` and checks its arity; the error reply is
/// Redis's text for an unknown command or a wrong argument count.
pub fn lookup_checked(argv: &[Bytes]) -> Res<&'static Spec> {
    let spec = argv.first().and_then(|n| lookup(n)).ok_or_else(|| unknown_command_error(argv))?;
    spec.check_arity(argv.len())?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        let reply = unknown_command_error(&argv(&["foo", "a", "b"]));
        assert_eq!(
            reply,
            Reply::err("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        let reply = unknown_command_error(&argv(&["foo"]));
        assert_eq!(reply, Reply::err("ERR unknown command 'foo', with args beginning with: "));
    }

    #[test]
    fn lookup_ignores_case_and_checks_arity() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        let err = lookup_checked(&argv(&["get"])).err();
        assert_eq!(err, Some(Reply::err("ERR wrong number of arguments for 'get' command")));
        assert!(lookup(&[b'x'; 100]).is_none());
    }

    #[test]
    fn key_positions() {
        let mset = lookup(b"mset").unwrap();
        let a = argv(&["mset", "a", "1", "b", "2"]);
        assert_eq!(mset.keys(&a), vec![&a[1], &a[3]]);
    }
}
