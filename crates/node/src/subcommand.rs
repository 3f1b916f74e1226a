//! Resolving the subcommand of a container command (CLIENT, CONFIG, COMMAND,
//! OBJECT) with Redis's errors for unknown subcommands and wrong arity.

use bytes::Bytes;
use raftcache_sm::command::{arity_error, unknown_subcommand_error};
use raftcache_sm::Reply;

/// Every implemented subcommand as `parent|sub`, with its Redis arity.
pub const SUBCOMMANDS: &[(&str, i32)] = &[
    ("client|caching", 3),
    ("client|getname", 2),
    ("client|getredir", 2),
    ("client|help", 2),
    ("client|id", 2),
    ("client|info", 2),
    ("client|list", -2),
    ("client|no-evict", 3),
    ("client|no-touch", 3),
    ("client|reply", 3),
    ("client|setinfo", 4),
    ("client|setname", 3),
    ("client|tracking", -3),
    ("client|trackinginfo", 2),
    ("client|unblock", -3),
    ("command|count", 2),
    ("command|docs", -2),
    ("command|getkeys", -3),
    ("command|help", 2),
    ("command|info", -2),
    ("command|list", -2),
    ("config|get", -3),
    ("config|help", 2),
    ("config|resetstat", 2),
    ("config|rewrite", 2),
    ("config|set", -4),
    ("memory|doctor", 2),
    ("memory|help", 2),
    ("memory|malloc-stats", 2),
    ("memory|purge", 2),
    ("memory|stats", 2),
    ("memory|usage", -3),
    ("object|encoding", 3),
    ("object|freq", 3),
    ("object|help", 2),
    ("object|idletime", 3),
    ("object|refcount", 3),
    ("pubsub|channels", -2),
    ("pubsub|help", 2),
    ("pubsub|numpat", 2),
    ("pubsub|numsub", -2),
    ("pubsub|shardchannels", -2),
    ("pubsub|shardnumsub", -2),
];

/// A resolved subcommand name (lowercase, without the parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sub(pub &'static str);

/// Resolves `argv[1]` as a subcommand of `parent` and checks its arity.
pub fn subcommand(parent: &str, argv: &[Bytes]) -> Result<Sub, Reply> {
    let Some(sub) = argv.get(1) else { return Err(arity_error(parent)) };
    let found = SUBCOMMANDS.iter().find(|(full, _)| {
        full.split_once('|')
            .is_some_and(|(p, s)| p == parent && sub.eq_ignore_ascii_case(s.as_bytes()))
    });
    let Some((full, arity)) = found else { return Err(unknown_subcommand_error(parent, sub)) };
    let argc = argv.len() as i32;
    let ok = if *arity >= 0 { argc == *arity } else { argc >= -arity };
    if !ok {
        return Err(arity_error(full));
    }
    Ok(Sub(full.split_once('|').map_or(full, |(_, s)| s)))
}

/// For a container command (CLIENT, CONFIG, COMMAND, OBJECT …), checks that
/// `argv` names a known subcommand with the right arity, as Redis does before
/// running or queueing a command; other commands pass.
pub fn check(name: &str, argv: &[Bytes]) -> Result<(), Reply> {
    let container =
        SUBCOMMANDS.iter().any(|(full, _)| full.split_once('|').is_some_and(|(p, _)| p == name));
    if container && argv.len() >= 2 {
        subcommand(name, argv)?;
    }
    Ok(())
}
