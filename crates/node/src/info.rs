//! The INFO command: Redis's section format (`# Section`, `field:value` lines)
//! with the fields clients commonly read. Fields raftcache does not track are
//! left out rather than reported as made-up values.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use raftcache_sm::Reply;

use crate::clock::now_ms;
use crate::server::Shared;

/// The Redis version raftcache reports: clients pick features by it (redis-py
/// turns its client-side cache on from 7.4). The command set and behaviour
/// follow Redis 7.0, plus what clients of 7.2/7.4 rely on: hash-field
/// expiration, `CLIENT SETINFO`/`NO-TOUCH` and `ZRANK … WITHSCORE` (README).
pub const REDIS_VERSION: &str = "7.4.0";

const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "commandstats",
    "errorstats",
    "keyspace",
];

/// Sections INFO without arguments (or `default`) leaves out, as Redis does.
const NOT_DEFAULT: &[&str] = &["commandstats"];
// Note: "replication" carries the raft_* fields (role, term, leader, indices).

/// INFO [section ...]
pub fn info(shared: &Shared, argv: &[Bytes]) -> Reply {
    let wanted: Vec<String> =
        argv[1..].iter().map(|s| String::from_utf8_lossy(s).to_ascii_lowercase()).collect();
    let all = wanted.iter().any(|w| matches!(w.as_str(), "all" | "everything"));
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut out = String::new();
    for section in SECTIONS {
        let chosen = all
            || wanted.iter().any(|w| w == section)
            || (default && !NOT_DEFAULT.contains(section));
        if !chosen {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        render(shared, section, &mut out);
    }
    Reply::Verbatim(Bytes::from(out))
}

fn human(bytes: u64) -> String {
    const UNITS: &[(&str, f64)] =
        &[("G", 1024.0 * 1024.0 * 1024.0), ("M", 1024.0 * 1024.0), ("K", 1024.0)];
    for (unit, size) in UNITS {
        if bytes as f64 >= *size {
            return format!("{:.2}{unit}", bytes as f64 / size);
        }
    }
    format!("{bytes}B")
}

/// Resident set size of this process, from /proc.
pub use raftcache_cluster::process::rss_bytes;

/// System and user CPU seconds of this process.
pub(crate) fn cpu_times() -> (f64, f64) {
    rusage(libc::RUSAGE_SELF)
}

/// System and user CPU seconds of `who` (RUSAGE_SELF, RUSAGE_CHILDREN).
fn rusage(who: libc::c_int) -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_stime), secs(usage.ru_utime))
}

fn render(shared: &Shared, section: &str, out: &mut String) {
    let settings = shared.config.settings();
    let uptime = shared.started.elapsed().as_secs();
    macro_rules! field {
        ($($arg:tt)*) => {{ let _ = write!(out, $($arg)*); out.push_str("\r\n"); }};
    }
    match section {
        "server" => {
            out.push_str("# Server\r\n");
            field!("redis_version:{REDIS_VERSION}");
            field!("raftcache_version:{}", env!("CARGO_PKG_VERSION"));
            field!("redis_mode:standalone");
            field!("raft_node_id:{}", raftcache_raft::types::ShowId(shared.cluster.node_id));
            field!("os:{} {}", std::env::consts::OS, std::env::consts::ARCH);
            field!("arch_bits:{}", usize::BITS);
            field!("process_id:{}", std::process::id());
            field!("run_id:{}", shared.run_id);
            field!("tcp_port:{}", shared.config.args.port);
            field!("server_time_usec:{}", now_ms() * 1000);
            field!("uptime_in_seconds:{uptime}");
            field!("uptime_in_days:{}", uptime / 86400);
            field!("hz:10");
            field!(
                "executable:{}",
                std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default()
            );
            field!("config_file:");
            // The test-only switches this node was started with (empty in
            // any real deployment), so that nobody mistakes a deliberately
            // broken node for a sound one.
            field!(
                "unsafe_test_switches:{}",
                shared.cluster.options.unsafe_switches.names().join(",")
            );
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            field!("connected_clients:{}", shared.clients.count());
            field!("maxclients:{}", settings.maxclients);
            field!("blocked_clients:{}", shared.hub.blocked_count());
            field!("tracking_clients:{}", shared.hub.tracking_count());
            field!("pubsub_clients:{}", shared.hub.subscribed_count());
        }
        "memory" => {
            let rss = rss_bytes();
            let (used, memory) = {
                let machine = shared.cluster.sm.read();
                (machine.state.used_memory(), machine.state.memory())
            };
            out.push_str("# Memory\r\n");
            // The engine's own accounting of the data (the same on every
            // replica, what maxmemory limits); RSS is the whole process.
            field!("used_memory:{used}");
            field!("used_memory_human:{}", human(used));
            field!("used_memory_rss:{rss}");
            field!("used_memory_rss_human:{}", human(rss));
            field!("used_memory_dataset:{used}");
            field!("maxmemory:{}", memory.maxmemory);
            field!("maxmemory_human:{}", human(memory.maxmemory));
            field!("maxmemory_policy:{}", memory.policy.name());
            field!(
                "mem_fragmentation_ratio:{:.2}",
                if used == 0 { 0.0 } else { rss as f64 / used as f64 }
            );
            field!("mem_allocator:libc");
        }
        "persistence" => {
            out.push_str("# Persistence\r\n");
            field!("loading:0");
            field!("aof_enabled:0");
            field!("rdb_bgsave_in_progress:0");
        }
        "stats" => {
            out.push_str("# Stats\r\n");
            field!(
                "total_connections_received:{}",
                shared.clients.total_connections.load(Ordering::Relaxed)
            );
            field!("total_commands_processed:{}", shared.stats.commands.load(Ordering::Relaxed));
            field!(
                "rejected_connections:{}",
                shared.clients.rejected_connections.load(Ordering::Relaxed)
            );
            field!(
                "total_net_input_bytes:{}",
                shared.stats.net_input_bytes.load(Ordering::Relaxed)
            );
            field!(
                "total_net_output_bytes:{}",
                shared.stats.net_output_bytes.load(Ordering::Relaxed)
            );
            field!("expired_keys:{}", shared.stats.expired_keys.load(Ordering::Relaxed));
            field!("evicted_keys:{}", shared.cluster.sm.read().state.evicted_keys());
            field!("keyspace_hits:{}", shared.cluster.keyspace_hits.load(Ordering::Relaxed));
            field!("keyspace_misses:{}", shared.cluster.keyspace_misses.load(Ordering::Relaxed));
            field!(
                "pubsub_channels:{}",
                shared.hub.channels(crate::events::Kind::Channel, None).len()
            );
            field!("pubsub_patterns:{}", shared.hub.patterns());
            field!(
                "total_error_replies:{}",
                shared.stats.calls.total_error_replies.load(Ordering::Relaxed)
            );
        }
        "commandstats" => {
            out.push_str("# Commandstats\r\n");
            for line in shared.stats.calls.command_lines() {
                field!("{line}");
            }
        }
        "errorstats" => {
            out.push_str("# Errorstats\r\n");
            for line in shared.stats.calls.error_lines() {
                field!("{line}");
            }
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            let raft = shared.cluster.info_fields();
            // Redis's role line first, then its replication fields, then Raft's.
            for (k, v) in raft.iter().take(1) {
                field!("{k}:{v}");
            }
            for (k, v) in shared.cluster.redis_replication_fields() {
                field!("{k}:{v}");
            }
            for (k, v) in raft.iter().skip(1) {
                field!("{k}:{v}");
            }
            let p = &shared.cluster.proposer;
            field!("raft_proposed_entries:{}", p.batches.load(Ordering::Relaxed));
            field!("raft_proposed_commands:{}", p.ops.load(Ordering::Relaxed));
            field!("raft_abandoned_attempts:{}", p.abandoned.load(Ordering::Relaxed));
            let r = &shared.cluster.reads;
            field!("raft_read_rounds:{}", r.rounds.load(Ordering::Relaxed));
            field!("raft_read_round_waiters:{}", r.waiters.load(Ordering::Relaxed));
        }
        "cpu" => {
            let (sys, user) = cpu_times();
            out.push_str("# CPU\r\n");
            let (sys_children, user_children) = rusage(libc::RUSAGE_CHILDREN);
            field!("used_cpu_sys:{sys:.6}");
            field!("used_cpu_user:{user:.6}");
            field!("used_cpu_sys_children:{sys_children:.6}");
            field!("used_cpu_user_children:{user_children:.6}");
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            let now = now_ms();
            let machine = shared.cluster.sm.read();
            let state = &machine.state;
            let now = state.read_time(now);
            for (i, db) in state.dbs().iter().enumerate() {
                let keys = db.visible_len(now);
                if keys == 0 {
                    continue;
                }
                let (expires, avg_ttl) = db.ttl_stats(now);
                field!("db{i}:keys={keys},expires={expires},avg_ttl={avg_ttl}");
            }
        }
        _ => {}
    }
}
