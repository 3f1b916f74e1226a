//! The node processes of a run: each `raftcache` runs in its own network
//! namespace (through `ip netns exec`, which execs in place, so the child's
//! pid is the node's), with its data directory and log file under the run's
//! output directory. Signals go to those pids only.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::netns::Net;
use super::resp::{Conn, Reply};

pub const RESP_PORT: u16 = 6379;
pub const ADMIN_PORT: u16 = 7379;
pub const RAFT_PORT: u16 = 7380;

/// One member.
#[derive(Debug)]
pub struct Node {
    pub id: u32,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    argv: Vec<String>,
    child: Option<Child>,
    pub paused: bool,
    /// Set while this harness has the node down on purpose.
    pub killed: bool,
    pub starts: u32,
    /// Exits this harness did not cause: (status, when).
    pub crashes: Vec<String>,
}

impl Node {
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    pub fn resp_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, RESP_PORT))
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}:{ADMIN_PORT}", self.ip)
    }

    /// Running (maybe paused).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                if !self.killed {
                    self.crashes.push(format!("exited by itself: {status}"));
                }
                self.child = None;
                false
            }
            Some(Err(_)) | None => false,
        }
    }

    /// Running and not paused.
    pub fn up(&mut self) -> bool {
        !self.paused && self.alive()
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(log, "=== start #{}: {}", self.starts, self.argv.join(" "))?;
        let err = log.try_clone()?;
        let child = Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .env("NO_COLOR", "1")
            .env("TMPDIR", self.data_dir.parent().unwrap_or(Path::new("/tmp")))
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting node {}: {}", self.id, self.argv.join(" ")))?;
        self.child = Some(child);
        self.paused = false;
        self.killed = false;
        Ok(())
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the pid of a child this harness started and
            // has not reaped yet (so the pid cannot have been reused).
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        self.killed = true;
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP, then waits until every thread is stopped (kill returns once
    /// the signal is queued; a thread may run on for a moment).
    pub fn pause(&mut self) -> Result<()> {
        let Some(pid) = self.pid() else { bail!("node {} is not running", self.id) };
        self.signal(libc::SIGSTOP);
        self.paused = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            if Instant::now() >= deadline {
                bail!("node {} did not stop within 10 s of SIGSTOP", self.id);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Empties the data directory (the node must be down).
    pub fn wipe(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("node {} must be down to wipe its data", self.id);
        }
        if self.data_dir.exists() {
            std::fs::remove_dir_all(&self.data_dir)
                .with_context(|| format!("wiping {}", self.data_dir.display()))?;
        }
        std::fs::create_dir_all(&self.data_dir)?;
        Ok(())
    }

    /// The log lines that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("panicked at")
                || line.contains(": panic ")
                || line.contains(" panic info")
            {
                let next = lines.get(i + 1).copied().unwrap_or("");
                out.push(format!("node {}: {} {}", self.id, line.trim(), next.trim()));
            }
        }
        out
    }
}

fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return true };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
        if !matches!(state, Some("T" | "t")) {
            return false;
        }
    }
    true
}

/// What every node is started with.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub bin: PathBuf,
    pub appendfsync: String,
    /// Extra flags for every node.
    pub args: Vec<String>,
}

/// The run's nodes.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
}

/// INFO replication as fields.
pub type Info = HashMap<String, String>;

pub fn parse_info(text: &str) -> Info {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Cluster {
    /// Prepares (does not start) `n` nodes in the namespaces of `net`.
    pub fn new(net: &Net, ids: &[u32], settings: &NodeSettings, dir: &Path) -> Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let peers: Vec<String> =
            ids.iter().map(|&m| format!("{m}={}:{RAFT_PORT}", net.ip(m))).collect();
        let peers = peers.join(",");
        let mut nodes = Vec::new();
        for &id in ids {
            let data_dir = dir.join(format!("node{id}-data"));
            std::fs::create_dir_all(&data_dir)?;
            let ip = net.ip(id);
            let mut argv = net.exec_prefix(id);
            argv.push(settings.bin.display().to_string());
            for (flag, value) in [
                ("--id", id.to_string()),
                ("--peers", peers.clone()),
                ("--bind", ip.to_string()),
                ("--port", RESP_PORT.to_string()),
                ("--admin-port", ADMIN_PORT.to_string()),
                ("--raft-port", RAFT_PORT.to_string()),
                ("--metrics-port", "0".to_string()),
                ("--data-dir", data_dir.display().to_string()),
                ("--appendfsync", settings.appendfsync.clone()),
            ] {
                argv.push(flag.to_string());
                argv.push(value);
            }
            argv.extend(settings.args.iter().cloned());
            nodes.push(Node {
                id,
                ip,
                log_path: dir.join(format!("node{id}.log")),
                data_dir,
                argv,
                child: None,
                paused: false,
                killed: false,
                starts: 0,
                crashes: Vec::new(),
            });
        }
        Ok(Cluster { nodes })
    }

    pub fn ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn node(&mut self, id: u32) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.id == id).expect("a node of this cluster")
    }

    pub fn start(&mut self, id: u32) -> Result<()> {
        self.node(id).spawn()
    }

    /// Nodes running and not paused.
    pub fn up(&mut self) -> Vec<u32> {
        self.nodes.iter_mut().filter_map(|n| n.up().then_some(n.id)).collect()
    }

    /// SIGCONT to paused nodes, then SIGKILL every node, and reap.
    pub fn stop_all(&mut self) {
        for n in &mut self.nodes {
            if n.paused {
                n.resume();
            }
            if n.child.is_some() {
                n.kill9();
            }
        }
    }

    pub fn panics(&self) -> Vec<String> {
        self.nodes.iter().flat_map(Node::panics).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// INFO replication of one node, within `timeout`.
pub async fn info(addr: SocketAddr, timeout: Duration) -> Result<Info> {
    let mut conn = Conn::connect(addr, timeout).await?;
    match conn.call(&[b"INFO".to_vec(), b"replication".to_vec()], timeout).await? {
        Reply::Bulk(Some(b)) => Ok(parse_info(&String::from_utf8_lossy(&b))),
        other => bail!("INFO replied {other:?}"),
    }
}

/// The leader that every answering node agrees on, if any: one node says
/// `raft_role:leader` and every other names its `raft_node_id` as
/// `raft_leader_id`.
pub fn agreed_leader(infos: &[(u32, Info)]) -> Option<u32> {
    let leaders: Vec<&(u32, Info)> = infos
        .iter()
        .filter(|(_, i)| i.get("raft_role").map(String::as_str) == Some("leader"))
        .collect();
    let [(id, info)] = leaders.as_slice() else { return None };
    let raft_id = info.get("raft_node_id")?;
    infos.iter().all(|(_, i)| i.get("raft_leader_id") == Some(raft_id)).then_some(*id)
}

/// The leader some node believes in, if there is no agreement: the node with
/// `raft_role:leader` in the highest term.
pub fn likely_leader(infos: &[(u32, Info)]) -> Option<u32> {
    agreed_leader(infos).or_else(|| {
        infos
            .iter()
            .filter(|(_, i)| i.get("raft_role").map(String::as_str) == Some("leader"))
            .max_by_key(|(_, i)| i.get("raft_term").and_then(|t| t.parse::<u64>().ok()))
            .map(|(id, _)| *id)
    })
}

/// True if every node in `infos` reports `raft_ready:1` and they agree on a
/// leader.
pub fn all_ready(infos: &[(u32, Info)], expected: usize) -> bool {
    infos.len() == expected
        && infos.iter().all(|(_, i)| i.get("raft_ready").map(String::as_str) == Some("1"))
        && agreed_leader(infos).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(fields: &[(&str, &str)]) -> Info {
        fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_info_text() {
        let i = parse_info(
            "# Replication\r\nrole:master\r\nraft_role:leader\r\nraft_members:1.0@a:1,2.0@b:2\r\n",
        );
        assert_eq!(i["raft_role"], "leader");
        assert_eq!(i["raft_members"], "1.0@a:1,2.0@b:2");
        assert!(!i.contains_key("# Replication"));
    }

    #[test]
    fn leader_needs_agreement() {
        let l = info(&[
            ("raft_role", "leader"),
            ("raft_node_id", "2.0"),
            ("raft_leader_id", "2.0"),
            ("raft_term", "3"),
            ("raft_ready", "1"),
        ]);
        let f = info(&[
            ("raft_role", "follower"),
            ("raft_node_id", "1.0"),
            ("raft_leader_id", "2.0"),
            ("raft_ready", "1"),
        ]);
        let stale = info(&[
            ("raft_role", "follower"),
            ("raft_node_id", "3.0"),
            ("raft_leader_id", "1.0"),
            ("raft_ready", "1"),
        ]);
        assert_eq!(agreed_leader(&[(1, f.clone()), (2, l.clone())]), Some(2));
        assert!(all_ready(&[(1, f.clone()), (2, l.clone())], 2));
        assert!(!all_ready(&[(1, f.clone()), (2, l.clone())], 3), "a node did not answer");
        assert_eq!(agreed_leader(&[(1, f.clone()), (2, l.clone()), (3, stale.clone())]), None);
        assert_eq!(likely_leader(&[(1, f), (2, l), (3, stale)]), Some(2));
        let old = info(&[("raft_role", "leader"), ("raft_node_id", "1.0"), ("raft_term", "2")]);
        let new = info(&[("raft_role", "leader"), ("raft_node_id", "3.0"), ("raft_term", "4")]);
        assert_eq!(likely_leader(&[(1, old), (3, new)]), Some(3));
    }
}
