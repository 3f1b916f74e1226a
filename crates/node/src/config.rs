//! Command-line flags and the settings CONFIG GET/SET reads and changes.
//!
//! Flags follow redis-server's names (`--port`, `--bind`, `--requirepass`,
//! `--maxmemory`, `--appendfsync` …) so scripts written for Redis keep working.

use std::sync::RwLock;

use clap::Parser;

/// raftcache: a Redis-compatible cache replicated with Raft.
#[derive(Parser, Debug, Clone)]
#[command(name = "raftcache", version, about)]
pub struct Args {
    /// TCP port for Redis clients.
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// Addresses to listen on for Redis clients (space-separated, like redis-server).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Password clients must send with AUTH (or HELLO … AUTH) before other commands.
    #[arg(long, env = "RAFTCACHE_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// Most simultaneous client connections.
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,
    /// Close a client connection idle for this many seconds (0: never).
    #[arg(long, default_value_t = 0)]
    pub timeout: u64,
    /// Memory limit of the cluster's data, by the engine's accounting (0: none).
    /// Cluster-wide: set when the cluster is formed (by its first leader's
    /// flags); afterwards CONFIG SET maxmemory changes it on every node.
    #[arg(long, default_value = "0", value_parser = parse_memory)]
    pub maxmemory: u64,
    /// What goes when data would exceed --maxmemory: noeviction, allkeys-lru,
    /// allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu,
    /// volatile-random or volatile-ttl. Cluster-wide, like --maxmemory.
    #[arg(long, default_value = "noeviction", value_parser = [
        "noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
    ])]
    pub maxmemory_policy: String,
    /// Keys sampled per database for each eviction (at least 1). Cluster-wide, like --maxmemory.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=2147483647))]
    pub maxmemory_samples: u32,
    /// Largest bulk string a client may send (e.g. 512mb).
    #[arg(long, default_value = "512mb", value_parser = parse_memory)]
    pub proto_max_bulk_len: u64,
    /// Largest unprocessed input buffered for one client before it is disconnected.
    #[arg(long, default_value = "1gb", value_parser = parse_memory)]
    pub client_query_buffer_limit: u64,
    /// When the Raft log is fsynced: always, everysec or no (used once a data
    /// directory is configured).
    #[arg(long, default_value = "everysec", value_parser = ["always", "everysec", "no"])]
    pub appendfsync: String,
    /// Log level: debug, verbose, notice or warning (or a tracing filter).
    #[arg(long, default_value = "notice")]
    pub loglevel: String,
    /// Log line format: text, or json (one object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// This node's member id in the cluster.
    #[arg(long, default_value_t = 1)]
    pub id: u32,
    /// The cluster's members and their Raft peer addresses:
    /// `1=host:7380,2=host:7380,3=host:7380` (this node included). Empty: a
    /// one-node cluster.
    #[arg(long, default_value = "", value_parser = parse_peers)]
    pub peers: Peers,
    /// Join a running cluster instead of forming one from --peers: this node
    /// starts without initializing and asks the cluster at the given Raft
    /// peer address(es) (`host:7380[,host:7380…]`, any member) to add it.
    /// `--join` with no address waits to be added by an operator
    /// (`raftcachectl member add ID ADDR`).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "ADDRS")]
    pub join: Option<String>,
    /// What a node started with `--join ADDR` asks to become: `voter` (the
    /// leader promotes it once it has caught up) or `learner` (an operator
    /// promotes it with `raftcachectl member promote`).
    #[arg(long, default_value = "voter", value_parser = ["voter", "learner"])]
    pub join_as: String,
    /// A bearer token every admin gRPC call must carry
    /// (`authorization: Bearer <token>`); without it the admin API is open
    /// to whoever reaches the admin port. The health and reflection services
    /// stay open (probes cannot send tokens).
    #[arg(long, env = "RAFTCACHE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A secret every node of the cluster is given: peers send it with every
    /// request on the Raft port and refuse requests without it
    /// (UNAUTHENTICATED), so only nodes that know it can join, vote or
    /// replicate. Traffic is not encrypted.
    #[arg(long, env = "RAFTCACHE_PEER_SECRET", hide_env_values = true)]
    pub peer_secret: Option<String>,
    /// Port of the Raft peer gRPC service (node-to-node traffic); 0 picks a
    /// free port (useful for a one-node cluster).
    #[arg(long, default_value_t = 7380)]
    pub raft_port: u16,
    /// Port of the admin gRPC service (raftcachectl); 0 picks a free port.
    #[arg(long, default_value_t = 7379)]
    pub admin_port: u16,
    /// Port of the Prometheus metrics endpoint (`GET /metrics`, HTTP) on the
    /// first --bind address; 0 picks a free port (the node logs it).
    #[arg(long, default_value_t = 9379)]
    pub metrics_port: u16,
    /// Address peers and clients are told to use for this node's Raft and RESP
    /// ports (default: the first --bind address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Directory for the Raft log, vote and snapshots. Without it the node
    /// keeps everything in memory.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// How long a command may wait for a leader (or for its outcome) before
    /// failing, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub request_timeout: u64,
    /// How reads are served: linearizable (read-index through the leader),
    /// lease (leader lease, assumes bounded clock drift) or stale (local replica).
    #[arg(long, default_value = "linearizable", value_parser = ["linearizable", "lease", "stale"])]
    pub read_consistency: String,
    /// What a follower does with commands that need the leader: proxy (forward
    /// them and relay the reply) or redirect (answer -MOVED to the leader).
    #[arg(long, default_value = "proxy", value_parser = ["proxy", "redirect"])]
    pub follower_mode: String,
    /// Raft heartbeat interval in milliseconds. openraft also gives each
    /// AppendEntries this long to complete, so it bounds the size of a log
    /// entry that can replicate (about 50 MB per 100 ms on loopback).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_ms: u64,
    /// Raft election timeout (minimum; the maximum is twice this) in
    /// milliseconds. openraft starts an election between max and max+min after
    /// the leader went silent, so the default fails over in about 1-2 s.
    #[arg(long, default_value_t = 300)]
    pub election_timeout_ms: u64,
    /// Take a snapshot (and compact the log) after at least this many applied
    /// entries, once the commands since the last snapshot add up to its size.
    #[arg(long, default_value_t = 20_000)]
    pub snapshot_every: u64,
    /// Worker threads for client, peer and Raft work (0: one per CPU; 1: the
    /// main thread alone, on a current-thread runtime).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Read settings from this TOML file: one key per flag, named as the
    /// flag (`port = 6379`, `data-dir = "/var/lib/raftcache"`). Flags win over
    /// `RAFTCACHE_*` environment variables (`RAFTCACHE_DATA_DIR`), which win
    /// over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Print the effective configuration (as a config file) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Take the member id from the host name's trailing number plus one
    /// (`raftcache-0` is member 1): for Kubernetes StatefulSets, whose pods
    /// are named `<set>-<ordinal>`.
    #[arg(long)]
    pub id_from_hostname: bool,
    /// Print the names of all commands and exit (used by scripts/).
    #[arg(long, hide = true)]
    pub list_commands: bool,
    /// TEST ONLY, UNSAFE: turn off one safety check on purpose, so that the
    /// chaos harness can show it catches the result (repeatable):
    /// follower-local-reads, ack-before-commit, lock-grant-unchecked. Hidden
    /// from --help and --print-config, never read from a config file or the
    /// environment; the node warns at startup and INFO lists the switches
    /// (`unsafe_test_switches`). Give every node of a cluster the same ones.
    #[arg(long = "unsafe-test-switch", hide = true, value_name = "NAME")]
    pub unsafe_test_switch: Vec<String>,
}

pub use raftcache_cluster::settings::{parse_peers, Peers};

/// The member id of a StatefulSet pod: its host name's trailing ordinal
/// plus one (`raftcache-2` is member 3).
fn id_from_hostname() -> Result<u32, String> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .ok_or("--id-from-hostname: the host name is unknown")?;
    member_from_hostname(&host)
}

/// See [`id_from_hostname`].
pub fn member_from_hostname(host: &str) -> Result<u32, String> {
    let short = host.split('.').next().unwrap_or(host);
    short
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u32>().ok())
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| format!("--id-from-hostname: '{host}' does not end in -<ordinal>"))
}

impl Args {
    /// The cluster layer's settings, typed: the one place the cluster flags'
    /// strings are parsed.
    pub fn cluster_settings(&self) -> Result<raftcache_cluster::settings::Settings, String> {
        use raftcache_cluster::settings::{Fsync, ReadConsistency};
        let join = match &self.join {
            None => None,
            Some(list) => {
                let addrs: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(String::from)
                    .collect();
                for addr in &addrs {
                    parse_peers(&format!("1={addr}")).map_err(|e| format!("--join: {e}"))?;
                }
                Some(addrs)
            }
        };
        let member_id = if self.id_from_hostname { id_from_hostname()? } else { self.id };
        Ok(raftcache_cluster::settings::Settings {
            member_id,
            peers: self.peers.clone(),
            join,
            join_as_learner: self.join_as == "learner",
            bind: self.bind.clone(),
            advertise: self.advertise.clone(),
            resp_port: self.port,
            raft_port: self.raft_port,
            admin_port: self.admin_port,
            data_dir: self.data_dir.clone(),
            fsync: Fsync::parse(&self.appendfsync)
                .ok_or_else(|| format!("--appendfsync: unknown policy '{}'", self.appendfsync))?,
            read_consistency: ReadConsistency::from_name(&self.read_consistency).ok_or_else(
                || format!("--read-consistency: unknown mode '{}'", self.read_consistency),
            )?,
            redirect: self.follower_mode == "redirect",
            request_timeout: std::time::Duration::from_millis(self.request_timeout),
            heartbeat: std::time::Duration::from_millis(self.heartbeat_ms),
            election_timeout: std::time::Duration::from_millis(self.election_timeout_ms),
            snapshot_every: self.snapshot_every,
            // Empty means unset, as for --requirepass.
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            peer_secret: self.peer_secret.clone().filter(|t| !t.is_empty()),
            redis_version: crate::info::REDIS_VERSION,
            initial_config: self.initial_config(),
            unsafe_switches: raftcache_cluster::settings::UnsafeSwitches::parse(
                &self.unsafe_test_switch,
            )?,
        })
    }
}

impl Args {
    /// The cluster-wide parameters these flags set when the cluster forms:
    /// those that differ from their defaults.
    fn initial_config(&self) -> Vec<(String, bytes::Bytes)> {
        let mut memory = raftcache_sm::memory::MemoryConfig::default();
        let flags = [
            ("maxmemory", self.maxmemory.to_string()),
            ("maxmemory-policy", self.maxmemory_policy.clone()),
            ("maxmemory-samples", self.maxmemory_samples.to_string()),
        ];
        for (name, value) in &flags {
            // The flags' parsers accept only values the engine accepts.
            let _ = memory.set(name, value.as_bytes());
        }
        memory.changed().into_iter().map(|(n, v)| (n.to_string(), bytes::Bytes::from(v))).collect()
    }
}

/// Parses a size the way redis-server does (`memtoull`): `100`, `1k` (1000),
/// `1kb` (1024), `5m`, `5mb`, `1g`, `1gb`, case-insensitive.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("invalid memory size '{s}'"))?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return Err(format!("invalid memory unit in '{s}'")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("memory size '{s}' too large"))
}

/// Settings that CONFIG SET may change while the server runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub requirepass: Option<String>,
    pub maxclients: usize,
    pub timeout: u64,
    pub proto_max_bulk_len: u64,
    pub client_query_buffer_limit: u64,
    pub appendfsync: String,
    pub loglevel: String,
    /// CONFIG SET save: accepted and shown (snapshots do not follow it).
    pub save: String,
    /// CONFIG SET busy-reply-threshold / lua-time-limit: accepted and shown
    /// (scripts are bounded by instructions, not time).
    pub busy_reply_threshold: u64,
}

impl Settings {
    pub fn from_args(args: &Args) -> Settings {
        Settings {
            requirepass: args.requirepass.clone().filter(|p| !p.is_empty()),
            maxclients: args.maxclients,
            timeout: args.timeout,
            proto_max_bulk_len: args.proto_max_bulk_len,
            client_query_buffer_limit: args.client_query_buffer_limit,
            appendfsync: args.appendfsync.clone(),
            loglevel: args.loglevel.clone(),
            save: String::new(),
            busy_reply_threshold: 5000,
        }
    }
}

/// The live configuration: fixed flags plus settings behind a lock.
#[derive(Debug)]
pub struct Config {
    pub args: Args,
    pub settings: RwLock<Settings>,
}

impl Config {
    pub fn new(args: Args) -> Config {
        let settings = RwLock::new(Settings::from_args(&args));
        Config { args, settings }
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> Settings {
        self.settings.read().expect("settings lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_from_a_statefulset_host_name() {
        assert_eq!(member_from_hostname("raftcache-0"), Ok(1));
        assert_eq!(member_from_hostname("raftcache-2.raftcache-headless.ns.svc"), Ok(3));
        assert_eq!(member_from_hostname("my-cache-10"), Ok(11));
        assert!(member_from_hostname("web").is_err());
        assert!(member_from_hostname("web-x").is_err());
        assert!(member_from_hostname("web-4294967295").is_err());
    }

    #[test]
    fn peers_parse_and_reject_garbage() {
        let p = parse_peers("1=a:7380, 2=b:7381,3=10.0.0.3:7380").unwrap();
        assert_eq!(p.0.len(), 3);
        assert_eq!(p.0[&2], "b:7381");
        assert_eq!(parse_peers("").unwrap(), Peers::default());
        for bad in ["1", "x=a:1", "1=a", "1=a:port", "1=a:1,1=b:2", "0=a:1", "1=:5"] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_units_like_redis() {
        assert_eq!(parse_memory("100"), Ok(100));
        assert_eq!(parse_memory("1k"), Ok(1000));
        assert_eq!(parse_memory("1KB"), Ok(1024));
        assert_eq!(parse_memory("512mb"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_memory("2g"), Ok(2_000_000_000));
        assert!(parse_memory("12x").is_err());
        assert!(parse_memory("").is_err());
    }
}
