//! The cluster layer's settings, typed: the binary parses its flags (and
//! config file) once, at its edge, and hands these over.

use std::path::PathBuf;
use std::time::Duration;

pub use raftcache_raft::sled_log::Fsync;

pub use raftcache_sm::unsafe_switches::EngineSwitches;

pub use crate::ReadConsistency;

/// What the cluster layer needs to know to start a node.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's member id (`--id`).
    pub member_id: u32,
    /// The members that form the cluster at its first start (`--peers`).
    pub peers: Peers,
    /// `--join`: `Some(addresses)` to join a running cluster (empty: wait
    /// to be added by an operator).
    pub join: Option<Vec<String>>,
    /// `--join-as learner`: stay a learner after joining.
    pub join_as_learner: bool,
    /// The listen addresses (`--bind`, space-separated like redis-server).
    pub bind: String,
    /// The host others are told to use (`--advertise`).
    pub advertise: Option<String>,
    /// The client (RESP) port, advertised to peers.
    pub resp_port: u16,
    pub raft_port: u16,
    pub admin_port: u16,
    /// Where the Raft log, vote and snapshots live; none: memory only.
    pub data_dir: Option<PathBuf>,
    pub fsync: Fsync,
    pub read_consistency: ReadConsistency,
    /// Followers answer -MOVED instead of forwarding (`--follower-mode redirect`).
    pub redirect: bool,
    pub request_timeout: Duration,
    pub heartbeat: Duration,
    /// The shortest election timeout (the longest is twice it).
    pub election_timeout: Duration,
    /// Fewest applied entries between snapshots.
    pub snapshot_every: u64,
    /// The bearer token admin calls must carry.
    pub admin_token: Option<String>,
    /// The secret peers exchange on the Raft port.
    pub peer_secret: Option<String>,
    /// The Redis version the server reports (admin Status shows it).
    pub redis_version: &'static str,
    /// Cluster-wide parameters (CONFIG SET through the log, e.g. `maxmemory`)
    /// that the node proposes with the cluster's id when it is the first
    /// leader of a new cluster; afterwards CONFIG SET changes them.
    pub initial_config: Vec<(String, bytes::Bytes)>,
    /// Test-only switches that break a safety property on purpose (the
    /// hidden `--unsafe-test-switch`); all off in any real deployment.
    pub unsafe_switches: UnsafeSwitches,
}

/// Test-only switches that each remove one safety check, so that the chaos
/// harness can show it catches the result (issue 17, "It must be able to
/// fail"). The node turns them on only through the hidden
/// `--unsafe-test-switch NAME` flag (never a config file or the
/// environment), warns at startup and lists them in INFO
/// (`unsafe_test_switches`). Every node of a cluster must get the same ones:
/// the engine's switch changes what the log does when applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsafeSwitches {
    /// `follower-local-reads`: a node that does not lead serves
    /// linearizable (and lease) reads from its own replica, with no read
    /// index from the leader: a follower cut off from the leader, or
    /// behind it, answers with stale data.
    pub follower_local_reads: bool,
    /// `ack-before-commit`: a leader whose proposal is not committed within
    /// [`ACK_BEFORE_COMMIT_AFTER`] answers it anyway, with the replies the
    /// batch gives when applied to a copy of its engine as it stands. The
    /// entry stays in the log, uncommitted: a leader cut off from its
    /// quorum acknowledges writes that the next leader's log overwrites.
    pub ack_before_commit: bool,
    /// The engine's switches (`lock-grant-unchecked`).
    pub engine: EngineSwitches,
}

/// How long a leader with `ack-before-commit` waits for the commit before it
/// answers anyway: longer than a commit takes on a healthy cluster (a few
/// milliseconds), so the replies of a healthy run stay real ones, and far
/// shorter than the leader takes to notice it is cut off (twice the election
/// timeout), so a cut-off leader acknowledges several writes it will lose.
pub const ACK_BEFORE_COMMIT_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

impl UnsafeSwitches {
    /// Every switch's name, as `--unsafe-test-switch` takes it, and what
    /// it breaks.
    pub const NAMES: [(&'static str, &'static str); 3] = [
        ("follower-local-reads", "followers serve linearizable reads without a read index"),
        ("ack-before-commit", "the leader acknowledges writes before they are committed"),
        ("lock-grant-unchecked", "LOCK.ACQUIRE grants a lock without checking its holder"),
    ];

    /// The switches named (each once or more).
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<UnsafeSwitches, String> {
        let mut out = UnsafeSwitches::default();
        for name in names {
            match name.as_ref() {
                "follower-local-reads" => out.follower_local_reads = true,
                "ack-before-commit" => out.ack_before_commit = true,
                "lock-grant-unchecked" => out.engine.lock_grant_unchecked = true,
                other => {
                    let known: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "--unsafe-test-switch: unknown switch '{other}' (known: {})",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The names of the switches that are on, in [`UnsafeSwitches::NAMES`] order.
    pub fn names(&self) -> Vec<&'static str> {
        let on =
            [self.follower_local_reads, self.ack_before_commit, self.engine.lock_grant_unchecked];
        Self::NAMES.iter().zip(on).filter(|(_, on)| *on).map(|((n, _), _)| *n).collect()
    }

    /// True if any switch is on.
    pub fn any(&self) -> bool {
        !self.names().is_empty()
    }
}

/// Cluster members: member id → Raft peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers(pub std::collections::BTreeMap<u32, String>);

/// Parses `--peers 1=host:port,2=host:port`.
pub fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = std::collections::BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) =
            item.split_once('=').ok_or_else(|| format!("peer '{item}' is not id=host:port"))?;
        let id: u32 = id.trim().parse().map_err(|_| format!("peer id '{id}' is not a number"))?;
        let addr = addr.trim();
        let (host, port) =
            addr.rsplit_once(':').ok_or_else(|| format!("peer address '{addr}' has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("peer address '{addr}' is not host:port"));
        }
        if id == 0 {
            return Err("member ids start at 1".into());
        }
        if peers.insert(id, addr.to_string()).is_some() {
            return Err(format!("member {id} is listed twice"));
        }
    }
    Ok(Peers(peers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_switches_parse_by_name_and_list_back() {
        assert!(!UnsafeSwitches::parse::<&str>(&[]).unwrap().any());
        let s = UnsafeSwitches::parse(&["lock-grant-unchecked", "follower-local-reads"]).unwrap();
        assert!(s.follower_local_reads && s.engine.lock_grant_unchecked && !s.ack_before_commit);
        assert_eq!(s.names(), vec!["follower-local-reads", "lock-grant-unchecked"]);
        let all: Vec<&str> = UnsafeSwitches::NAMES.iter().map(|(n, _)| *n).collect();
        assert_eq!(UnsafeSwitches::parse(&all).unwrap().names(), all);
        let err = UnsafeSwitches::parse(&["fast-and-loose"]).unwrap_err();
        assert!(err.contains("unknown switch 'fast-and-loose'"), "{err}");
    }
}
