//! Per-command and per-error counters for INFO commandstats and errorstats,
//! as Redis keeps them.
//!
//! `usec` is the time from the command's start on this node to its reply:
//! for a write it includes replication (the log entry's commit), which is
//! what a client waits for here; a command run in a group shares the group's
//! time evenly. `rejected_calls` counts commands refused before they ran
//! (wrong arity, NOAUTH, refused inside MULTI or in subscribed mode),
//! `failed_calls` those that ran and answered an error.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use raftcache_sm::Reply;

/// Upper bounds (µs) of the latency histogram's buckets kept per command
/// for the metrics endpoint; one more bucket counts the slower calls.
pub const LATENCY_BUCKETS_USEC: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 10_000_000,
];

/// One command's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Calls by latency: `buckets[i]` counts those within
    /// `LATENCY_BUCKETS_USEC[i]` (and above the bound before), the last one
    /// the rest (not cumulative).
    pub buckets: [u64; LATENCY_BUCKETS_USEC.len() + 1],
}

impl CommandStat {
    /// Adds another command's counters to these.
    pub fn add(&mut self, other: &CommandStat) {
        self.calls += other.calls;
        self.usec += other.usec;
        self.rejected += other.rejected;
        self.failed += other.failed;
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
    }
}

/// Every command's counters and every error prefix's count.
#[derive(Debug, Default)]
pub struct CommandStats {
    commands: Mutex<BTreeMap<String, CommandStat>>,
    errors: Mutex<BTreeMap<String, u64>>,
    pub total_error_replies: AtomicU64,
}

impl CommandStats {
    /// A command ran (`usec` of it) and answered `reply`.
    pub fn ran(&self, name: &str, usec: u64, reply: &Reply) {
        let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        let stat = c.entry(name.to_string()).or_default();
        stat.calls += 1;
        stat.usec += usec;
        stat.buckets[LATENCY_BUCKETS_USEC.partition_point(|&bound| bound < usec)] += 1;
        if reply.is_error() {
            stat.failed += 1;
        }
    }

    /// A known command was refused before it ran.
    pub fn rejected(&self, name: &str) {
        let mut c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        c.entry(name.to_string()).or_default().rejected += 1;
    }

    /// An error reply went to a client: counted by its code (the first
    /// word, `ERR`, `WRONGTYPE` …).
    pub fn error_reply(&self, reply: &Reply) {
        let Reply::Error(text) = reply else { return };
        let code = text.split(' ').next().unwrap_or("ERR");
        self.total_error_replies.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *e.entry(code.to_string()).or_default() += 1;
    }

    /// `cmdstat_<name>:calls=…,usec=…,usec_per_call=…,rejected_calls=…,failed_calls=…`
    pub fn command_lines(&self) -> Vec<String> {
        let c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        c.iter()
            .map(|(name, s)| {
                let per_call = if s.calls == 0 { 0.0 } else { s.usec as f64 / s.calls as f64 };
                format!(
                    "cmdstat_{name}:calls={},usec={},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}",
                    s.calls, s.usec, s.rejected, s.failed
                )
            })
            .collect()
    }

    /// `errorstat_<CODE>:count=…`
    pub fn error_lines(&self) -> Vec<String> {
        let e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().map(|(code, n)| format!("errorstat_{code}:count={n}")).collect()
    }

    /// Every command's counters, by name (for the metrics endpoint).
    pub fn snapshot(&self) -> Vec<(String, CommandStat)> {
        let c = self.commands.lock().unwrap_or_else(|p| p.into_inner());
        c.iter().map(|(name, s)| (name.clone(), *s)).collect()
    }

    /// Error replies by code (for the metrics endpoint).
    pub fn error_counts(&self) -> Vec<(String, u64)> {
        let e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        e.iter().map(|(code, n)| (code.clone(), *n)).collect()
    }

    /// CONFIG RESETSTAT
    pub fn reset(&self) {
        self.commands.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.errors.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.total_error_replies.store(0, Ordering::Relaxed);
    }

    /// One command's counters (tests).
    pub fn get(&self, name: &str) -> Option<CommandStat> {
        self.commands.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_redis() {
        let s = CommandStats::default();
        s.ran("get", 10, &Reply::Nil);
        s.ran("get", 20, &Reply::err("WRONGTYPE Operation against a key"));
        s.rejected("get");
        s.error_reply(&Reply::err("WRONGTYPE Operation against a key"));
        s.error_reply(&Reply::err("ERR syntax error"));
        assert_eq!(
            s.command_lines(),
            vec!["cmdstat_get:calls=2,usec=30,usec_per_call=15.00,rejected_calls=1,failed_calls=1"]
        );
        assert_eq!(s.error_lines(), vec!["errorstat_ERR:count=1", "errorstat_WRONGTYPE:count=1"]);
        let get = s.get("get").unwrap();
        assert_eq!(get.buckets[0], 2, "10 and 20 µs are in the first bucket");
        s.ran("set", 100, &Reply::Ok);
        s.ran("set", 101, &Reply::Ok);
        s.ran("set", 60_000_000, &Reply::Ok);
        let set = s.get("set").unwrap().buckets;
        assert_eq!((set[0], set[1], set[LATENCY_BUCKETS_USEC.len()]), (1, 1, 1));
        s.reset();
        assert!(s.command_lines().is_empty());
    }
}
