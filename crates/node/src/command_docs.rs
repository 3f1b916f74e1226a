//! COMMAND COUNT/INFO/DOCS/LIST/GETKEYS, served from metadata captured from a
//! real Redis 7.0 (`data/commands.resp`, made by `scripts/capture-command-data.py`)
//! so that replies, and the hints redis-cli builds from COMMAND DOCS, are
//! Redis's own. Container commands list only the subcommands raftcache has.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bytes::Bytes;
use raftcache_resp::Frame;
use raftcache_sm::command;
use raftcache_sm::Reply;

use crate::subcommand::{subcommand, Sub, SUBCOMMANDS};

static DATA: &[u8] = include_bytes!("../data/commands.resp");

fn supported_sub(full: &[u8]) -> bool {
    let full = String::from_utf8_lossy(full).to_ascii_lowercase();
    !full.contains('|') || SUBCOMMANDS.iter().any(|(name, _)| *name == full)
}

/// Converts a captured frame to a reply.
pub fn frame_to_reply(frame: &Frame) -> Reply {
    match frame {
        Frame::Simple(s) => Reply::Status(String::from_utf8_lossy(s).into_owned().into()),
        Frame::Error(s) | Frame::BlobError(s) => {
            Reply::Error(String::from_utf8_lossy(s).into_owned().into())
        }
        Frame::Integer(n) => Reply::Int(*n),
        Frame::Bulk(b) | Frame::BigNumber(b) => Reply::Bulk(b.clone()),
        Frame::NullBulk | Frame::Null => Reply::Nil,
        Frame::NullArray => Reply::NilArray,
        Frame::Array(items) | Frame::Push(items) => {
            Reply::Array(items.iter().map(frame_to_reply).collect())
        }
        Frame::Set(items) => Reply::Set(items.iter().map(frame_to_reply).collect()),
        Frame::Map(pairs) | Frame::Attribute(pairs) => {
            Reply::Map(pairs.iter().map(|(k, v)| (frame_to_reply(k), frame_to_reply(v))).collect())
        }
        Frame::Double(t) => Reply::Double(String::from_utf8_lossy(t).parse().unwrap_or(0.0)),
        Frame::Boolean(b) => Reply::Bool(*b),
        Frame::Verbatim { text, .. } => Reply::Verbatim(text.clone()),
    }
}

/// One command's metadata.
struct Meta {
    info: Reply,
    docs: Reply,
}

fn filter_info(info: Reply) -> Reply {
    match info {
        Reply::Array(mut fields) if fields.len() >= 10 => {
            if let Reply::Array(subs) = &mut fields[9] {
                subs.retain(|s| match s {
                    Reply::Array(f) => matches!(&f[0], Reply::Bulk(n) if supported_sub(n)),
                    _ => false,
                });
            }
            Reply::Array(fields)
        }
        other => other,
    }
}

fn filter_docs(docs: Reply) -> Reply {
    match docs {
        Reply::Map(mut pairs) => {
            for (k, v) in &mut pairs {
                if matches!(k, Reply::Bulk(b) if b.as_ref() == b"subcommands") {
                    if let Reply::Map(subs) = v {
                        subs.retain(|(name, _)| matches!(name, Reply::Bulk(n) if supported_sub(n)));
                    }
                }
            }
            Reply::Map(pairs)
        }
        other => other,
    }
}

/// Commands raftcache adds to Redis's, which no redis-server can describe:
/// name, summary, since, group. COMMAND INFO/DOCS are made for them from
/// the command table.
const EXTENSIONS: &[(&str, &str, &str, &str)] = &[
    (
        "lock.acquire",
        "Acquires a lock and returns its fencing token, optionally waiting in line.",
        "raftcache 0.1.0",
        "lock",
    ),
    ("lock.release", "Releases a lock held by the owner.", "raftcache 0.1.0", "lock"),
    ("lock.renew", "Extends the lease of a lock held by the owner.", "raftcache 0.1.0", "lock"),
    (
        "lock.info",
        "Shows a lock's owner, fencing token, lease and waiters.",
        "raftcache 0.1.0",
        "lock",
    ),
    (
        "lock.fence",
        "Fails unless the lock is held under the given fencing token.",
        "raftcache 0.1.0",
        "lock",
    ),
    // Newer than the captured Redis 7.0.
    ("delifeq", "Delete key if value matches string.", "9.0.0 (Valkey)", "string"),
    (
        "delex",
        "Conditionally removes the specified key based on value or digest comparison.",
        "8.4.0",
        "string",
    ),
    ("digest", "Returns the XXH3 hash of a string value.", "8.4.0", "string"),
    (
        "increx",
        "Increments the numeric value of a key within bounds and sets its expiration time.",
        "8.8.0",
        "string",
    ),
    // Hash-field expiration (Redis 7.4), summaries as Redis 7.4 has them.
    (
        "hexpire",
        "Set expiry for hash field using relative time to expire (seconds)",
        "7.4.0",
        "hash",
    ),
    (
        "hpexpire",
        "Set expiry for hash field using relative time to expire (milliseconds)",
        "7.4.0",
        "hash",
    ),
    (
        "hexpireat",
        "Set expiry for hash field using an absolute Unix timestamp (seconds)",
        "7.4.0",
        "hash",
    ),
    (
        "hpexpireat",
        "Set expiry for hash field using an absolute Unix timestamp (milliseconds)",
        "7.4.0",
        "hash",
    ),
    ("httl", "Returns the TTL in seconds of a hash field.", "7.4.0", "hash"),
    ("hpttl", "Returns the TTL in milliseconds of a hash field.", "7.4.0", "hash"),
    (
        "hexpiretime",
        "Returns the expiration time of a hash field as a Unix timestamp, in seconds.",
        "7.4.0",
        "hash",
    ),
    (
        "hpexpiretime",
        "Returns the expiration time of a hash field as a Unix timestamp, in msec.",
        "7.4.0",
        "hash",
    ),
    ("hpersist", "Removes the expiration time for each specified field", "7.4.0", "hash"),
    (
        "hgetdel",
        "Returns the value of a field and deletes it from the hash.",
        "8.0.0",
        "hash",
    ),
    (
        "hgetex",
        "Get the value of one or more fields of a given hash key, and optionally set their expiration.",
        "8.0.0",
        "hash",
    ),
    (
        "hsetex",
        "Set the value of one or more fields of a given hash key, and optionally set their expiration.",
        "8.0.0",
        "hash",
    ),
];

/// Commands whose arity changed after Redis 7.0, with the arity this server
/// has (the captured 7.0 metadata is patched): ZRANK/ZREVRANK … WITHSCORE
/// (7.2).
const NEWER_ARITIES: &[(&str, i64)] = &[("zrank", -3), ("zrevrank", -3)];

/// COMMAND INFO and DOCS for an extension command, from its table entry.
fn extension_meta(spec: &command::Spec, summary: &str, since: &str, group: &str) -> Meta {
    let flag = if spec.is_write() { "write" } else { "readonly" };
    let info = Reply::Array(vec![
        bulk(spec.name),
        Reply::Int(i64::from(spec.arity)),
        Reply::Set(vec![Reply::status_owned(flag)]),
        Reply::Int(i64::from(spec.first_key)),
        Reply::Int(i64::from(spec.last_key)),
        Reply::Int(i64::from(spec.step)),
        Reply::Set(vec![Reply::status_owned(if spec.is_write() { "@write" } else { "@read" })]),
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        Reply::Array(vec![]),
    ]);
    let docs = Reply::Map(vec![
        (bulk("summary"), bulk(summary)),
        (bulk("since"), bulk(since)),
        (bulk("group"), bulk(group)),
        (bulk("complexity"), bulk("O(1)")),
    ]);
    Meta { info, docs }
}

fn table() -> &'static BTreeMap<String, Meta> {
    static TABLE: OnceLock<BTreeMap<String, Meta>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = BTreeMap::new();
        let Ok((Frame::Map(entries), _)) = Frame::parse(DATA) else {
            tracing::error!("command metadata is corrupt; COMMAND replies will be empty");
            return map;
        };
        for (name, pair) in entries {
            let (Frame::Bulk(name), Frame::Array(parts)) = (name, pair) else { continue };
            if parts.len() != 2 {
                continue;
            }
            let name = String::from_utf8_lossy(&name).into_owned();
            if command::lookup(name.as_bytes()).is_none() {
                continue;
            }
            let info = filter_info(frame_to_reply(&parts[0]));
            let docs = filter_docs(frame_to_reply(&parts[1]));
            map.insert(name, Meta { info, docs });
        }
        // Arities that grew after 7.0 with options this server takes.
        for (name, arity) in NEWER_ARITIES {
            if let Some(Meta { info: Reply::Array(fields), .. }) = map.get_mut(*name) {
                fields[1] = Reply::Int(*arity);
            }
        }
        for (name, summary, since, group) in EXTENSIONS {
            if let Some(spec) = command::lookup(name.as_bytes()) {
                map.entry(name.to_string())
                    .or_insert_with(|| extension_meta(spec, summary, since, group));
            }
        }
        map
    })
}

/// The arity Redis reports for `name` in COMMAND INFO, if captured.
pub fn captured_arity(name: &str) -> Option<i64> {
    match &table().get(name)?.info {
        Reply::Array(fields) => match fields.get(1) {
            Some(Reply::Int(n)) => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

const HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "HELP",
    "    Print this help.",
];

/// The COMMAND command.
pub fn command(argv: &[Bytes]) -> Reply {
    let table = table();
    if argv.len() == 1 {
        return Reply::Array(table.values().map(|m| m.info.clone()).collect());
    }
    let sub = match subcommand("command", argv) {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    let names = || argv[2..].iter().map(|n| String::from_utf8_lossy(n).to_ascii_lowercase());
    match sub {
        Sub("count") => Reply::Int(table.len() as i64),
        Sub("list") => {
            if argv.len() > 2 {
                // FILTERBY is not supported; say so rather than ignore it.
                return Reply::err("ERR syntax error");
            }
            Reply::Array(table.keys().map(|k| bulk(k)).collect())
        }
        Sub("info") => {
            if argv.len() == 2 {
                return Reply::Array(table.values().map(|m| m.info.clone()).collect());
            }
            Reply::Array(
                names().map(|n| table.get(&n).map_or(Reply::Nil, |m| m.info.clone())).collect(),
            )
        }
        Sub("docs") => {
            let pairs: Vec<(Reply, Reply)> = if argv.len() == 2 {
                table.iter().map(|(k, m)| (bulk(k), m.docs.clone())).collect()
            } else {
                names().filter_map(|n| table.get(&n).map(|m| (bulk(&n), m.docs.clone()))).collect()
            };
            Reply::Map(pairs)
        }
        Sub("getkeys") => getkeys(&argv[2..]),
        Sub("help") => Reply::Array(HELP.iter().map(|l| Reply::status(l)).collect()),
        Sub(_) => Reply::err("ERR syntax error"),
    }
}

fn getkeys(cmd: &[Bytes]) -> Reply {
    let Some(spec) = command::lookup(&cmd[0]) else {
        return Reply::err("ERR Invalid command specified");
    };
    if spec.check_arity(cmd.len()).is_err() {
        return Reply::err("ERR Invalid number of arguments specified for command");
    }
    let keys = spec.keys(cmd);
    if keys.is_empty() {
        return Reply::err("ERR The command has no key arguments");
    }
    Reply::Array(keys.into_iter().map(|k| Reply::Bulk(k.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_has_redis_metadata_with_the_same_arity() {
        for spec in command::all() {
            let arity = captured_arity(spec.name)
                .unwrap_or_else(|| panic!("no captured COMMAND INFO for {}", spec.name));
            assert_eq!(
                arity,
                i64::from(spec.arity),
                "arity of {} differs from Redis 7.0",
                spec.name
            );
        }
        assert_eq!(table().len(), command::all().count());
    }

    #[test]
    fn the_engine_refuses_under_oom_what_redis_flags_denyoom() {
        for spec in command::all() {
            let Some(Meta { info: Reply::Array(fields), .. }) = table().get(spec.name) else {
                continue;
            };
            let Reply::Set(flags) = &fields[2] else { panic!("flags of {}", spec.name) };
            let flagged =
                flags.iter().any(|f| matches!(f, Reply::Status(s) if s.as_ref() == "denyoom"));
            let extension = EXTENSIONS.iter().any(|(n, ..)| *n == spec.name);
            if !extension {
                assert_eq!(
                    raftcache_sm::memory::denyoom(spec.name),
                    flagged,
                    "{}: denyoom in Redis 7.0's COMMAND INFO",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn key_positions_match_redis() {
        for spec in command::all() {
            let Some(Meta { info: Reply::Array(fields), .. }) = table().get(spec.name) else {
                continue;
            };
            let pos: Vec<i64> = fields[3..6]
                .iter()
                .map(|f| match f {
                    Reply::Int(n) => *n,
                    _ => panic!("bad key position"),
                })
                .collect();
            assert_eq!(
                pos,
                vec![i64::from(spec.first_key), i64::from(spec.last_key), i64::from(spec.step)],
                "key positions of {}",
                spec.name
            );
        }
    }

    #[test]
    fn container_commands_list_only_implemented_subcommands() {
        let Some(Meta { info: Reply::Array(fields), .. }) = table().get("client") else {
            panic!("client metadata")
        };
        let Reply::Array(subs) = &fields[9] else { panic!("subcommands") };
        assert!(!subs.is_empty());
        assert!(subs.len() <= SUBCOMMANDS.iter().filter(|(n, _)| n.starts_with("client|")).count());
    }
}
