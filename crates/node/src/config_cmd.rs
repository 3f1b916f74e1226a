//! CONFIG GET/SET/RESETSTAT/REWRITE for the parameters the server has.
//!
//! Cluster-wide parameters — `notify-keyspace-events`, the encoding
//! thresholds (`hash-max-listpack-entries` …) and the memory parameters
//! (`maxmemory`, `maxmemory-policy` …), which every replica must
//! apply at the same index — are set through the log (`Op::Config`, sent by
//! the connection) and read from the engine; the others are this node's.

use std::sync::atomic::Ordering;
use std::sync::RwLockWriteGuard;

use bytes::Bytes;
use raftcache_sm::glob;
use raftcache_sm::reply::errors;
use raftcache_sm::state::DATABASES;
use raftcache_sm::Reply;

use crate::config::{parse_memory, Settings};
use crate::server::Shared;
use crate::session::{bulk, help};
use crate::subcommand::{subcommand, Sub};

type Setter = fn(&mut Settings, &str) -> Result<(), String>;

/// One CONFIG parameter: how to read it and, if it may change at runtime, how
/// to set it.
struct Param {
    name: &'static str,
    get: fn(&Shared, &Settings) -> String,
    set: Option<Setter>,
}

fn memory(value: &str, min: u64) -> Result<u64, String> {
    let n = parse_memory(value).map_err(|_| "argument must be a memory value".to_string())?;
    if n < min {
        return Err(format!("argument must be between {min} and 9223372036854775807 inclusive"));
    }
    Ok(n)
}

fn integer(value: &str) -> Result<u64, String> {
    value.parse().map_err(|_| "argument couldn't be parsed into an integer".to_string())
}

const fn fixed(name: &'static str, get: fn(&Shared, &Settings) -> String) -> Param {
    Param { name, get, set: None }
}

const PARAMS: &[Param] = &[
    fixed("port", |s, _| s.config.args.port.to_string()),
    fixed("bind", |s, _| s.config.args.bind.clone()),
    fixed("databases", |_, _| DATABASES.to_string()),
    Param {
        name: "requirepass",
        get: |_, c| c.requirepass.clone().unwrap_or_default(),
        set: Some(|c, v| {
            c.requirepass = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        }),
    },
    Param {
        name: "maxclients",
        get: |_, c| c.maxclients.to_string(),
        set: Some(|c, v| {
            match integer(v)? {
                0 => return Err("argument must be between 1 and 4294967295 inclusive".into()),
                n => c.maxclients = n as usize,
            }
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        get: |_, c| c.timeout.to_string(),
        set: Some(|c, v| {
            c.timeout = integer(v)?;
            Ok(())
        }),
    },
    Param {
        name: "proto-max-bulk-len",
        get: |_, c| c.proto_max_bulk_len.to_string(),
        set: Some(|c, v| {
            c.proto_max_bulk_len = memory(v, 1024 * 1024)?;
            Ok(())
        }),
    },
    Param {
        name: "client-query-buffer-limit",
        get: |_, c| c.client_query_buffer_limit.to_string(),
        set: Some(|c, v| {
            c.client_query_buffer_limit = memory(v, 1024 * 1024)?;
            Ok(())
        }),
    },
    Param {
        name: "loglevel",
        get: |_, c| c.loglevel.clone(),
        set: Some(|c, v| {
            let v = v.to_ascii_lowercase();
            if !["debug", "verbose", "notice", "warning", "nothing"].contains(&v.as_str()) {
                return Err(
                    "argument(s) must be one of the following: debug, verbose, notice, warning, nothing".into()
                );
            }
            c.loglevel = v;
            Ok(())
        }),
    },
    fixed("appendonly", |_, _| "no".into()),
    fixed("appendfsync", |_, c| c.appendfsync.clone()),
    // Snapshots follow --snapshot-every and the log's size, not RDB save
    // points: `save` is accepted (tools set it, often to "") and shown.
    Param {
        name: "save",
        get: |_, c| c.save.clone(),
        set: Some(|c, v| {
            c.save = v.to_string();
            Ok(())
        }),
    },
    // Scripts are stopped by an instruction budget, the same on every
    // replica, not by time: these are accepted and shown, and change nothing.
    Param {
        name: "lua-time-limit",
        get: |_, c| c.busy_reply_threshold.to_string(),
        set: Some(|c, v| {
            c.busy_reply_threshold = non_negative(v)?;
            Ok(())
        }),
    },
    Param {
        name: "busy-reply-threshold",
        get: |_, c| c.busy_reply_threshold.to_string(),
        set: Some(|c, v| {
            c.busy_reply_threshold = non_negative(v)?;
            Ok(())
        }),
    },
];

fn non_negative(v: &str) -> Result<u64, String> {
    let n: i64 =
        v.parse().map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    u64::try_from(n)
        .map_err(|_| "argument must be between 0 and 9223372036854775807 inclusive".to_string())
}

/// True if CONFIG SET of `name` must go through the log (every replica
/// changes it at the same index).
pub fn replicated(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
    raftcache_sm::state::is_replicated_config(&name)
}

/// The cluster-wide parameters CONFIG GET shows (read from the engine).
fn replicated_names() -> impl Iterator<Item = &'static str> {
    std::iter::once("notify-keyspace-events")
        .chain(raftcache_sm::encodings::Encodings::names())
        .chain(raftcache_sm::memory::PARAMS.iter().copied())
}

const HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Print this help.",
];

/// CONFIG GET|SET|RESETSTAT|REWRITE|HELP
pub fn config(shared: &Shared, argv: &[Bytes]) -> Reply {
    let sub = match subcommand("config", argv) {
        Ok(sub) => sub,
        Err(e) => return e,
    };
    match sub {
        Sub("get") => {
            let settings = shared.config.settings();
            let wanted =
                |name: &str| argv[2..].iter().any(|pat| glob::matches_nocase(pat, name.as_bytes()));
            let mut pairs: Vec<(Reply, Reply)> = PARAMS
                .iter()
                .filter(|p| wanted(p.name))
                .map(|p| (bulk(p.name), bulk(&(p.get)(shared, &settings))))
                .collect();
            drop(settings);
            let machine = shared.cluster.sm.read();
            for name in replicated_names().filter(|n| wanted(n)) {
                let value = machine.state.config_value(name).unwrap_or_default();
                pairs.push((bulk(name), bulk(&value)));
            }
            Reply::Map(pairs)
        }
        Sub("set") => config_set(shared, argv),
        Sub("resetstat") => {
            shared.stats.commands.store(0, Ordering::Relaxed);
            shared.stats.expired_keys.store(0, Ordering::Relaxed);
            shared.stats.calls.reset();
            shared.cluster.keyspace_hits.store(0, Ordering::Relaxed);
            shared.cluster.keyspace_misses.store(0, Ordering::Relaxed);
            Reply::Ok
        }
        Sub("rewrite") => Reply::err("ERR The server is running without a config file"),
        Sub("help") => help(HELP),
        Sub(_) => Reply::err(errors::SYNTAX),
    }
}

fn settings_mut(shared: &Shared) -> RwLockWriteGuard<'_, Settings> {
    shared.config.settings.write().expect("settings lock")
}

/// CONFIG SET parameter value [parameter value ...]: all or nothing, like Redis.
fn config_set(shared: &Shared, argv: &[Bytes]) -> Reply {
    match prepare_set(shared, argv, &mut Vec::new()) {
        Ok(next) => {
            *settings_mut(shared) = next;
            Reply::Ok
        }
        Err(e) => e,
    }
}

/// Checks a CONFIG SET and computes the node's settings after it, changing
/// nothing yet. Cluster-wide parameters are checked with the engine's rules
/// and returned in `replicated` (name, value) for the caller to propose.
pub fn prepare_set(
    shared: &Shared,
    argv: &[Bytes],
    replicated_out: &mut Vec<(String, Bytes)>,
) -> Result<Settings, Reply> {
    if !argv.len().is_multiple_of(2) {
        return Err(Reply::err("ERR wrong number of arguments for 'config|set' command"));
    }
    let mut updates: Vec<(String, Setter, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for pair in argv[2..].chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        if seen.contains(&name) {
            return Err(Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - duplicate parameter",
                String::from_utf8_lossy(&pair[0])
            )));
        }
        seen.push(name.clone());
        if replicated(&pair[0]) {
            shared.cluster.sm.read().state.check_config(&name, &pair[1])?;
            replicated_out.push((name, pair[1].clone()));
            continue;
        }
        let Some(param) = PARAMS.iter().find(|p| p.name == name) else {
            return Err(Reply::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        };
        let Some(set) = param.set else {
            return Err(Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
            )));
        };
        updates.push((name, set, String::from_utf8_lossy(&pair[1]).into_owned()));
    }
    let mut next = shared.config.settings().clone();
    for (name, set, value) in updates {
        if let Err(msg) = set(&mut next, &value) {
            return Err(Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - {msg}"
            )));
        }
    }
    Ok(next)
}

/// Makes prepared settings current.
pub fn commit_set(shared: &Shared, next: Settings) {
    *settings_mut(shared) = next;
}
