//! The local backend's network: one network namespace per node on a bridge
//! of the run's own, and partitions as iptables rules inside the nodes'
//! namespaces.
//!
//! ```text
//!   root namespace: bridge rcb<run> 10.A.B.254/24   (clients connect from here)
//!     ├── veth rcv<run>n1 ── eth0 10.A.B.1 in netns rc-chaos-<run>-1 (node 1)
//!     ├── veth rcv<run>n2 ── eth0 10.A.B.2 in netns rc-chaos-<run>-2 (node 2)
//!     └── …
//! ```
//!
//! Every name carries the run's id, so parallel runs do not collide, and the
//! subnet 10.A.B.0/24 is one that no interface or route of this machine uses.
//! Docker sets the root namespace's FORWARD policy to DROP, and bridged
//! frames go through FORWARD when `br_netfilter` is loaded: one ACCEPT rule
//! for frames within the bridge lets the nodes talk.
//!
//! A partition drops, in the receiving node's namespace, the packets of the
//! nodes it must not hear (`INPUT -s <peer> -j DROP`); the clients' address
//! (the bridge's) is never dropped, so clients still reach every node, as
//! they would an isolated leader in a real network. Healing flushes those
//! rules.
//!
//! Everything made is recorded as it is made and removed by
//! [`Net::teardown`], which [`Drop`] calls too (errors, panics, Ctrl-C).
//! A harness killed outright (SIGKILL, a CI timeout) cannot clean up: each
//! run leaves a marker with its pid in [`marker_dir`], and [`clean_stale`]
//! (run at the start of every run, and by `raftcache-chaos cleanup`) removes
//! the namespaces, bridge and rule of every run whose harness is gone, after
//! SIGKILLing the processes still in those namespaces.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One thing this run created, to remove at the end (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Made {
    Bridge(String),
    Netns(String),
    /// An iptables rule in the root namespace, as the arguments after `-I`/`-D`.
    ForwardRule(Vec<String>),
    /// The run's marker file (removed last).
    Marker(PathBuf),
}

/// The run's namespaces, bridge and addresses.
#[derive(Debug)]
pub struct Net {
    pub run_id: String,
    pub bridge: String,
    /// The first three octets of the /24.
    subnet: [u8; 3],
    nodes: Vec<u32>,
    made: Vec<Made>,
}

/// Runs a command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks what the backend needs, with a message that says what to do.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "raftcache-chaos run must run as root (euid is {euid}): it creates network \
             namespaces, a bridge and iptables rules"
        );
    }
    for (tool, package) in [("ip", "iproute2"), ("iptables", "iptables")] {
        if Command::new(tool).arg("-V").output().is_err() {
            bail!("`{tool}` is missing: install Debian's {package} (apt-get install {package})");
        }
    }
    Ok(())
}

/// Where runs leave their markers (a file per run id holding the harness's
/// pid).
pub fn marker_dir() -> PathBuf {
    PathBuf::from("/run/raftcache-chaos")
}

/// True if `pid` is a live raftcache-chaos process.
fn harness_alive(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("raftcache-chaos"))
}

/// Removes what runs whose harness died left behind; returns what it did.
pub fn clean_stale() -> Vec<String> {
    let mut done = Vec::new();
    let Ok(entries) = std::fs::read_dir(marker_dir()) else { return done };
    let namespaces = sh("ip", &["netns", "list"]).unwrap_or_default();
    for entry in entries.flatten() {
        let run_id = entry.file_name().to_string_lossy().into_owned();
        let pid =
            std::fs::read_to_string(entry.path()).ok().and_then(|s| s.trim().parse::<i32>().ok());
        if pid.is_some_and(harness_alive) || run_id.len() != 6 {
            continue;
        }
        let prefix = format!("rc-chaos-{run_id}-");
        for ns in namespaces.lines().filter_map(|l| l.split_whitespace().next()) {
            if !ns.starts_with(&prefix) {
                continue;
            }
            let pids = sh("ip", &["netns", "pids", ns]).unwrap_or_default();
            for p in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid
                // is a process inside a namespace this tool created for a
                // run whose harness is gone.
                unsafe {
                    libc::kill(p, libc::SIGCONT);
                    libc::kill(p, libc::SIGKILL);
                }
                done.push(format!("SIGKILL pid {p} in {ns}"));
            }
            if sh("ip", &["netns", "del", ns]).is_ok() {
                done.push(format!("removed netns {ns}"));
            }
        }
        let br = format!("rcb{run_id}");
        let _ = sh("iptables", &["-w", "-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"]);
        if sh("ip", &["link", "del", &br]).is_ok() {
            done.push(format!("removed bridge {br}"));
        }
        let _ = std::fs::remove_file(entry.path());
        done.push(format!("run {run_id} (harness pid {pid:?} is gone) cleaned up"));
    }
    done
}

/// The node's namespace name.
pub fn netns_name(run_id: &str, node: u32) -> String {
    format!("rc-chaos-{run_id}-{node}")
}

/// A /24 under 10.0.0.0/8 that none of `used` (addresses and routes, as
/// `ip -4 -o addr` and `ip -4 route` print them) touches, picked from `seed`.
pub fn pick_subnet(seed: u64, used: &str) -> Option<[u8; 3]> {
    let taken = |a: u8, b: u8| {
        let prefix = format!("10.{a}.{b}.");
        // A route such as 10.0.0.0/8 or 10.64.0.0/10 covers every /24 under
        // it: be conservative and avoid any second octet a route names.
        used.contains(&prefix)
            || used.split_whitespace().any(|w| {
                w.strip_prefix("10.").and_then(|r| r.split('.').next()).is_some_and(|o| {
                    o.parse::<u8>() == Ok(a) && w.contains('/') && !w.ends_with("/24")
                }) || w == "10.0.0.0/8"
            })
    };
    (0..200u64).find_map(|i| {
        let x = seed.wrapping_add(i.wrapping_mul(7919));
        let a = 100 + (x % 100) as u8;
        let b = ((x / 100) % 256) as u8;
        (!taken(a, b)).then_some([10, a, b])
    })
}

impl Net {
    /// Creates the bridge and one namespace per node, all named after
    /// `run_id`. On error, what was made so far is removed (by Drop).
    pub fn create(run_id: &str, nodes: &[u32], seed: u64) -> Result<Net> {
        let existing = sh("ip", &["netns", "list"])?;
        if existing.lines().any(|l| l.starts_with(&format!("rc-chaos-{run_id}-"))) {
            bail!("network namespaces of run {run_id} already exist");
        }
        let used = format!("{}\n{}", sh("ip", &["-4", "-o", "addr"])?, sh("ip", &["-4", "route"])?);
        let subnet =
            pick_subnet(seed, &used).context("no free 10.x.y.0/24 subnet for the run's bridge")?;
        let mut net = Net {
            run_id: run_id.to_string(),
            bridge: format!("rcb{run_id}"),
            subnet,
            nodes: nodes.to_vec(),
            made: Vec::new(),
        };
        net.build().with_context(|| format!("setting up the network of run {run_id}"))?;
        Ok(net)
    }

    fn build(&mut self) -> Result<()> {
        let dir = marker_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let marker = dir.join(&self.run_id);
        std::fs::write(&marker, std::process::id().to_string())
            .with_context(|| format!("writing {}", marker.display()))?;
        self.made.push(Made::Marker(marker));
        let br = self.bridge.clone();
        sh("ip", &["link", "add", &br, "type", "bridge"])?;
        self.made.push(Made::Bridge(br.clone()));
        let cidr = format!("{}/24", self.bridge_ip());
        sh("ip", &["addr", "add", &cidr, "dev", &br])?;
        sh("ip", &["link", "set", &br, "up"])?;
        let rule: Vec<String> = ["FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut insert = vec!["-w", "-I", "FORWARD", "1"];
        insert.extend(rule[1..].iter().map(String::as_str));
        sh("iptables", &insert)?;
        self.made.push(Made::ForwardRule(rule));
        for node in self.nodes.clone() {
            let ns = self.ns(node);
            sh("ip", &["netns", "add", &ns])?;
            self.made.push(Made::Netns(ns.clone()));
            let host = format!("rcv{}n{node}", self.run_id);
            let peer = format!("rcp{}n{node}", self.run_id);
            sh("ip", &["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
            sh("ip", &["link", "set", &peer, "netns", &ns])?;
            sh("ip", &["link", "set", &host, "master", &br, "up"])?;
            let addr = format!("{}/24", self.ip(node));
            sh("ip", &["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
            sh("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// A second handle on the same network, for other tasks: it can drop
    /// and heal links but removes nothing (only the original tears down).
    pub fn handle(&self) -> Net {
        Net {
            run_id: self.run_id.clone(),
            bridge: self.bridge.clone(),
            subnet: self.subnet,
            nodes: self.nodes.clone(),
            made: Vec::new(),
        }
    }

    pub fn ns(&self, node: u32) -> String {
        netns_name(&self.run_id, node)
    }

    pub fn ip(&self, node: u32) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(node).expect("node ids are below 254"))
    }

    /// The clients' address (the bridge's, in the root namespace).
    pub fn bridge_ip(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    /// The argv prefix that runs a program in the node's namespace.
    pub fn exec_prefix(&self, node: u32) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(node)]
    }

    /// Makes `to` drop every packet from `from`, for each pair.
    pub fn drop_links(&self, drops: &BTreeSet<(u32, u32)>) -> Result<()> {
        for &(from, to) in drops {
            let src = self.ip(from).to_string();
            sh(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.ns(to),
                    "iptables",
                    "-w",
                    "-A",
                    "INPUT",
                    "-s",
                    &src,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// In every node's namespace, sends its connections to each other
    /// node's `port` to 127.0.0.1:`proxy_port(other)` instead (the link
    /// proxy, [`super::linkproxy`]), except the proxy's own, which carry
    /// `mark`. The rules go with the namespaces.
    pub fn redirect_peers(
        &self,
        port: u16,
        proxy_port: impl Fn(u32) -> u16,
        mark: u32,
    ) -> Result<()> {
        let port = port.to_string();
        let mark = format!("0x{mark:x}");
        for &from in &self.nodes {
            for &to in self.nodes.iter().filter(|&&to| to != from) {
                let dest = self.ip(to).to_string();
                let redirect = proxy_port(to).to_string();
                sh(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &self.ns(from),
                        "iptables",
                        "-w",
                        "-t",
                        "nat",
                        "-A",
                        "OUTPUT",
                        "-d",
                        &dest,
                        "-p",
                        "tcp",
                        "--dport",
                        &port,
                        "-m",
                        "mark",
                        "!",
                        "--mark",
                        &mark,
                        "-j",
                        "REDIRECT",
                        "--to-ports",
                        &redirect,
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<()> {
        for &node in &self.nodes {
            sh("ip", &["netns", "exec", &self.ns(node), "iptables", "-w", "-F", "INPUT"])?;
        }
        Ok(())
    }

    /// Removes everything this run made, newest first; returns what could
    /// not be removed. Node processes must be gone first (a namespace lives
    /// on while a process is in it).
    pub fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        while let Some(item) = self.made.pop() {
            let r = match &item {
                Made::Netns(ns) => sh("ip", &["netns", "del", ns]),
                Made::Bridge(br) => sh("ip", &["link", "del", br]),
                Made::ForwardRule(rule) => {
                    let mut args = vec!["-w", "-D"];
                    args.extend(rule.iter().map(String::as_str));
                    sh("iptables", &args)
                }
                Made::Marker(path) => std::fs::remove_file(path)
                    .map(|_| String::new())
                    .with_context(|| format!("removing {}", path.display())),
            };
            if let Err(e) = r {
                errors.push(format!("{e:#}"));
            }
        }
        errors
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("raftcache-chaos: teardown: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_avoids_used_addresses_and_covering_routes() {
        let [_, a, b] = pick_subnet(5, "").expect("free");
        assert!((100..200).contains(&a));
        let used = format!("3: eth0    inet 10.{a}.{b}.7/24 brd …\n");
        let other = pick_subnet(5, &used).expect("another");
        assert_ne!(other, [10, a, b]);
        // A wider route over the second octet rules out every /24 under it.
        let wide = format!("10.{a}.0.0/16 dev x");
        assert_ne!(pick_subnet(5, &wide).expect("free")[1], a);
        assert!(pick_subnet(5, "default via 10.0.0.1\n10.0.0.0/8 dev eth0").is_none());
    }

    #[test]
    fn names_fit_linux_interface_names() {
        let run = "a1b2c3";
        assert!(format!("rcb{run}").len() <= 15);
        assert!(format!("rcv{run}n99").len() <= 15);
        assert_eq!(netns_name(run, 3), "rc-chaos-a1b2c3-3");
    }
}
