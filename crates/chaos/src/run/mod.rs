//! `raftcache-chaos run`: a real cluster under a nemesis, with recorded
//! workloads, judged at the end.
//!
//! 1. [`netns`]: one network namespace per node on the run's own bridge;
//!    [`cluster`]: the `raftcache` processes in them.
//! 2. Clients ([`workload`]) in the root namespace, spread over every node,
//!    each recording its operations ([`crate::record::Recorder`]) through
//!    its own RESP connection ([`resp`]).
//! 3. The nemesis ([`nemesis`]) injects the planned faults and heals them,
//!    recording each start and end in the history.
//! 4. At the end: everything is healed, the cluster must become ready again,
//!    every register, counter and list key is read once more, the nodes'
//!    digests must agree at one applied index, and the checkers judge the
//!    history. [`summary`] has the numbers.

pub mod cluster;
pub mod linkproxy;
pub mod nemesis;
pub mod netns;
pub mod resp;
pub mod summary;
pub mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use self::cluster::{all_ready, likely_leader, Cluster, Info, NodeSettings, RAFT_PORT};
use self::linkproxy::{Links, Proxies};
use self::nemesis::{Action, Fault};
use self::netns::Net;
use self::resp::Conn;
use self::summary::{Counts, FaultWindow, Latency};
use self::workload::{Generator, Request, Shape, Workload};
use crate::check::{check_all, Budget};
use crate::history::{History, Outcome, Phase};
use crate::record::Recorder;
use crate::verdict::{Report, Verdict};

/// Everything `run` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub bin: PathBuf,
    pub nodes: u32,
    /// How long the workload runs.
    pub time: Duration,
    /// Quiet time before each fault.
    pub interval: Duration,
    pub fault_duration: Duration,
    pub faults: Vec<Fault>,
    pub workloads: Vec<Workload>,
    /// Clients per workload.
    pub clients: u32,
    pub seed: u64,
    pub out: PathBuf,
    pub appendfsync: String,
    pub node_args: Vec<String>,
    pub op_timeout: Duration,
    /// Most idle time between a client's operations (a random share of it).
    pub think: Duration,
    pub key_period: Duration,
    pub shape: Shape,
    /// How long the cluster may take to be ready again after the final heal.
    pub recovery_timeout: Duration,
    pub check_timeout: Duration,
    pub max_steps: u64,
    /// The nodes' election timeout (for the check that faults outlast it).
    pub election_timeout: Duration,
    /// Keep the nodes' data directories even when the run is valid.
    pub keep_data: bool,
}

/// The run's conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    Valid,
    Invalid,
    Unknown,
}

impl RunVerdict {
    pub fn exit_code(self) -> u8 {
        match self {
            RunVerdict::Valid => 0,
            RunVerdict::Invalid => 1,
            RunVerdict::Unknown => 3,
        }
    }
}

/// One checker's conclusion, with how much it looked at.
#[derive(Debug, Clone, Serialize)]
pub struct CheckerSummary {
    pub checker: &'static str,
    pub keys: usize,
    pub ops: usize,
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub report: Report,
}

/// The nodes' digests after the run.
#[derive(Debug, Clone, Serialize)]
pub struct Convergence {
    /// `agree`, `disagree`, or `unaligned` (the applied indexes never lined up).
    pub result: &'static str,
    pub applied_index: Option<u64>,
    /// member → (applied index, digest, keys), or the error.
    pub nodes: BTreeMap<u32, String>,
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub run_id: String,
    pub seed: u64,
    pub nodes: u32,
    pub appendfsync: String,
    pub workload_s: f64,
    pub wall_s: f64,
    pub faults_enabled: Vec<&'static str>,
    pub workloads: Vec<&'static str>,
    pub clients: u32,
    pub ops: Counts,
    pub ops_by_f: BTreeMap<String, Counts>,
    /// Error replies (by their first word) and connection errors, by kind.
    pub errors: BTreeMap<String, usize>,
    pub latency: Latency,
    pub faults: Vec<FaultWindow>,
    pub longest_gap_s: f64,
    /// From the final heal until every node was ready with one leader.
    pub recovered_after_s: Option<f64>,
    pub convergence: Convergence,
    pub checkers: Vec<CheckerSummary>,
    pub check_s: f64,
    /// Server misbehaviour outside the checkers: unexpected exits, panics,
    /// replies that do not fit their command, no recovery.
    pub findings: Vec<String>,
    /// Harness notes (e.g. a fault started on a cluster that was not ready).
    pub notes: Vec<String>,
    pub verdict: RunVerdict,
}

/// Locks a mutex whatever a panicking holder left (the cluster's process
/// table stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tears the run down on every path out: node processes first (a namespace
/// lives on while a process is in it), then the network.
struct Teardown {
    cluster: Arc<Mutex<Cluster>>,
    /// The link proxies hold sockets in the namespaces: closed first.
    proxies: Option<Proxies>,
    net: Net,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        lock(&self.cluster).stop_all();
        drop(self.proxies.take());
        for e in self.net.teardown() {
            eprintln!("raftcache-chaos: teardown: {e}");
        }
    }
}

/// Things noticed during the run.
#[derive(Debug, Default)]
struct Log {
    findings: Vec<String>,
    notes: Vec<String>,
    /// Why operations did not get a fitting reply, by kind.
    errors: BTreeMap<String, usize>,
}

/// The kind of a call's error or error reply, for the summary's counts:
/// the error reply's first word, or what happened to the connection.
fn error_kind(result: &Result<resp::Reply, resp::CallError>) -> Option<String> {
    Some(match result {
        Ok(resp::Reply::Error(m)) => {
            format!("-{}", m.split_whitespace().next().unwrap_or(""))
        }
        Ok(_) => return None,
        Err(resp::CallError::NotSent(m)) if m.contains("refused") => "connection refused".into(),
        Err(resp::CallError::NotSent(_)) => "connect failed".into(),
        Err(resp::CallError::Lost(_)) => "connection lost".into(),
        Err(resp::CallError::Timeout) => "timeout".into(),
        Err(resp::CallError::Protocol(_)) => "protocol error".into(),
    })
}

type SharedLog = Arc<Mutex<Log>>;

fn note(log: &SharedLog, msg: String) {
    eprintln!("raftcache-chaos: {msg}");
    lock(log).notes.push(msg);
}

fn finding(log: &SharedLog, msg: String) {
    eprintln!("raftcache-chaos: FINDING: {msg}");
    lock(log).findings.push(msg);
}

/// A run id: short, hex, different for concurrent runs.
fn run_id(seed: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let x = u64::from(std::process::id())
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(u64::from(nanos))
        .wrapping_add(seed);
    format!("{:06x}", x & 0xFF_FFFF)
}

/// INFO of every node that is up, in parallel.
async fn infos(addrs: &[(u32, std::net::SocketAddr)]) -> Vec<(u32, Info)> {
    let mut set = JoinSet::new();
    for &(id, addr) in addrs {
        set.spawn(async move { (id, cluster::info(addr, Duration::from_millis(1500)).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((id, Ok(info))) = r {
            out.push((id, info));
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}

/// The addresses of the nodes that are up.
fn up_addrs(cluster: &Mutex<Cluster>) -> Vec<(u32, std::net::SocketAddr)> {
    let mut c = lock(cluster);
    let up = c.up();
    up.into_iter().map(|id| (id, c.node(id).resp_addr())).collect()
}

/// Polls until every node is up, ready and agrees on a leader.
async fn wait_ready(cluster: &Mutex<Cluster>, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let addrs = up_addrs(cluster);
        if addrs.len() == n && all_ready(&infos(&addrs).await, n) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the clients and the nemesis share.
#[derive(Clone)]
struct Shared {
    cluster: Arc<Mutex<Cluster>>,
    /// A handle on the network (the namespaces and bridge are removed by
    /// the [`Teardown`] guard alone).
    net: Arc<Net>,
    /// The peer links' state, when the link proxies are on.
    links: Option<Arc<Links>>,
    recorder: Recorder,
    cfg: Arc<Config>,
    /// Set when the workload time is up (or on Ctrl-C).
    stop: Arc<AtomicBool>,
    log: SharedLog,
}

/// Runs one client until `stop`.
async fn client(
    slot: u64,
    slots: u64,
    mut generator: Generator,
    addr: std::net::SocketAddr,
    shared: Shared,
) {
    let Shared { recorder, cfg, stop, log, .. } = shared;
    let mut rng = nemesis::rng(cfg.seed, 1000 + slot);
    let mut process = slot;
    let mut conn: Option<Conn> = None;
    let mut wait = Duration::ZERO;
    let key_period = cfg.key_period.as_nanos().max(1) as u64;
    let connect_timeout = cfg.op_timeout.min(Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        let think = rng.gen_range(0..=cfg.think.as_micros() as u64);
        tokio::time::sleep(wait + Duration::from_micros(think)).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let request = generator.next(recorder.now() / key_period, &mut rng);
        let pending = recorder.invoke(process, request.key.clone(), request.call.clone());
        let result = match conn.as_mut() {
            Some(c) => c.call(&request.args, cfg.op_timeout).await,
            None => match Conn::connect(addr, connect_timeout).await {
                Ok(c) => conn.insert(c).call(&request.args, cfg.op_timeout).await,
                Err(e) => Err(e),
            },
        };
        let (outcome, odd) = workload::outcome(request.expect, &result);
        if let Some(kind) = error_kind(&result) {
            *lock(&log).errors.entry(kind).or_default() += 1;
        }
        if let Some(odd) = odd {
            finding(&log, format!("{addr}: {} {}: {odd}", request.call.name(), request.key));
        }
        match &outcome {
            Outcome::Ok(v) => pending.ok(v.clone()),
            Outcome::Fail => pending.fail(),
            Outcome::Unknown => pending.unknown(),
        }
        wait = generator.completed(&request, &outcome, &mut rng);
        if outcome == Outcome::Unknown {
            // The operation may still take effect: this process's later
            // operations must not look sequential after it.
            process += slots;
        }
        if let Err(e) = &result {
            conn = None;
            if matches!(e, resp::CallError::NotSent(_)) {
                wait = wait.max(Duration::from_millis(100));
            }
        }
    }
}

/// Carries out an action.
fn inject(
    cluster: &Mutex<Cluster>,
    net: &Net,
    links: Option<&Links>,
    action: &Action,
    log: &SharedLog,
) -> Result<()> {
    match action {
        Action::Kill { nodes, .. } => {
            let mut c = lock(cluster);
            for &id in nodes {
                c.node(id).kill9();
            }
        }
        Action::Pause { nodes } => {
            let mut c = lock(cluster);
            for &id in nodes {
                let node = c.node(id);
                if node.alive() {
                    node.pause()?;
                } else {
                    note(log, format!("node {id} is not running: not paused"));
                }
            }
        }
        Action::Partition { drops } => net.drop_links(drops)?,
        Action::Link { links: which, fault } => {
            let links = links.context("a link fault without the link proxies")?;
            for &(from, to) in which {
                links.set(from, to, *fault);
            }
        }
    }
    Ok(())
}

/// Heals an action.
fn heal(
    cluster: &Mutex<Cluster>,
    net: &Net,
    links: Option<&Links>,
    action: &Action,
) -> Result<String> {
    Ok(match action {
        Action::Kill { nodes, wipe } => {
            let mut c = lock(cluster);
            for &id in nodes {
                if *wipe {
                    c.node(id).wipe()?;
                }
                if !c.node(id).alive() {
                    c.start(id)?;
                }
            }
            let what = if *wipe { "restarted with an empty data dir" } else { "restarted" };
            format!("{what}: {nodes:?}")
        }
        Action::Pause { nodes } => {
            let mut c = lock(cluster);
            for &id in nodes {
                c.node(id).resume();
            }
            format!("SIGCONT {nodes:?}")
        }
        Action::Partition { .. } => {
            net.heal()?;
            "links restored".into()
        }
        Action::Link { .. } => {
            if let Some(l) = links {
                l.heal();
            }
            "peer links clear".into()
        }
    })
}

/// Heals everything: links, paused and dead nodes. Nodes that exited by
/// themselves are findings.
fn heal_all(
    cluster: &Mutex<Cluster>,
    net: &Net,
    links: Option<&Links>,
    log: &SharedLog,
) -> Result<()> {
    net.heal()?;
    if let Some(l) = links {
        l.heal();
    }
    let mut c = lock(cluster);
    for id in c.ids() {
        let node = c.node(id);
        if node.paused {
            node.resume();
        }
        if !node.alive() {
            c.start(id)?;
        }
    }
    for n in &c.nodes {
        for crash in &n.crashes {
            finding(log, format!("node {}: {crash} (see {})", n.id, n.log_path.display()));
        }
    }
    Ok(())
}

/// The nemesis: injects the planned faults, one at a time.
async fn run_nemesis(
    plan: Vec<nemesis::Planned>,
    started: Instant,
    shared: Shared,
) -> Result<usize> {
    let Shared { cluster, net, links, recorder, cfg, stop, log } = shared;
    let mut rng = nemesis::rng(cfg.seed, 7);
    let ids = lock(&cluster).ids();
    let n = ids.len();
    let mut injected = 0;
    for p in plan {
        let at = started + p.at;
        while Instant::now() < at {
            if stop.load(Ordering::Relaxed) {
                return Ok(injected);
            }
            tokio::time::sleep((at - Instant::now()).min(Duration::from_millis(100))).await;
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if p.fault.kills() && !wait_ready(&cluster, n, Duration::from_secs(20)).await {
            note(
                &log,
                format!(
                    "{:.1}s: the cluster was not ready (every node raft_ready:1, one leader) \
                     within 20 s before {}; injecting it anyway",
                    recorder.now() as f64 / 1e9,
                    p.fault
                ),
            );
        }
        let leader = likely_leader(&infos(&up_addrs(&cluster)).await);
        let (action, detail) = nemesis::resolve(p.fault, &ids, leader, &mut rng);
        eprintln!("raftcache-chaos: {:7.1}s {}: {detail}", recorder.now() as f64 / 1e9, p.fault);
        recorder.nemesis(p.fault.name(), Phase::Start, action.nodes(), detail);
        let (c, nt, a, l) = (cluster.clone(), net.clone(), action.clone(), log.clone());
        let lk = links.clone();
        tokio::task::spawn_blocking(move || inject(&c, &nt, lk.as_deref(), &a, &l)).await??;
        injected += 1;
        tokio::time::sleep(p.duration).await;
        let (c, nt, a, lk) = (cluster.clone(), net.clone(), action.clone(), links.clone());
        let healed =
            tokio::task::spawn_blocking(move || heal(&c, &nt, lk.as_deref(), &a)).await??;
        recorder.nemesis(p.fault.name(), Phase::End, action.nodes(), healed);
    }
    Ok(injected)
}

/// Reads every register, counter, list and set key once more, through each node
/// in turn, until one read of the key is acknowledged (at most 3 tries).
async fn final_reads(
    history_keys: Vec<(Workload, String)>,
    addrs: &[(u32, std::net::SocketAddr)],
    recorder: &Recorder,
    timeout: Duration,
) {
    let mut process = 1_000_000;
    for (i, (w, key)) in history_keys.iter().enumerate() {
        let Some(request) = workload::final_read(*w, key) else { continue };
        for attempt in 0..3 {
            let (_, addr) = addrs[(i + attempt) % addrs.len()];
            let ok = read_once(&request, addr, process, recorder, timeout).await;
            process += 1;
            if ok {
                break;
            }
        }
    }
}

async fn read_once(
    request: &Request,
    addr: std::net::SocketAddr,
    process: u64,
    recorder: &Recorder,
    timeout: Duration,
) -> bool {
    let pending = recorder.invoke(process, request.key.clone(), request.call.clone());
    let result = match Conn::connect(addr, timeout).await {
        Ok(mut c) => c.call(&request.args, timeout).await,
        Err(e) => Err(e),
    };
    match workload::outcome(request.expect, &result).0 {
        Outcome::Ok(v) => {
            pending.ok(v);
            true
        }
        Outcome::Fail => {
            pending.fail();
            false
        }
        Outcome::Unknown => {
            pending.unknown();
            false
        }
    }
}

/// Polls every node's admin Digest until all report one applied index.
async fn convergence(admin: &[(u32, String)], timeout: Duration) -> Convergence {
    use raftcache_proto::admin::admin_client::AdminClient;
    use raftcache_proto::admin::DigestRequest;

    let deadline = Instant::now() + timeout;
    let mut rows: BTreeMap<u32, String> = BTreeMap::new();
    loop {
        let mut got: BTreeMap<u32, (u64, String)> = BTreeMap::new();
        rows.clear();
        for (id, url) in admin {
            let asked = tokio::time::timeout(Duration::from_secs(3), async {
                let mut c = AdminClient::connect(url.clone()).await.map_err(|e| e.to_string())?;
                c.digest(DigestRequest {}).await.map_err(|e| e.to_string())
            })
            .await;
            match asked {
                Ok(Ok(reply)) => {
                    let d = reply.into_inner();
                    rows.insert(
                        *id,
                        format!("applied {} digest {} keys {}", d.applied_index, d.digest, d.keys),
                    );
                    got.insert(*id, (d.applied_index, d.digest));
                }
                Ok(Err(e)) => {
                    rows.insert(*id, format!("error: {e}"));
                }
                Err(_) => {
                    rows.insert(*id, "error: timed out".into());
                }
            }
        }
        let indexes: std::collections::BTreeSet<u64> = got.values().map(|(i, _)| *i).collect();
        if got.len() == admin.len() && indexes.len() == 1 {
            let digests: std::collections::BTreeSet<&String> =
                got.values().map(|(_, d)| d).collect();
            let result = if digests.len() == 1 { "agree" } else { "disagree" };
            return Convergence { result, applied_index: indexes.first().copied(), nodes: rows };
        }
        if Instant::now() >= deadline {
            return Convergence { result: "unaligned", applied_index: None, nodes: rows };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The keys of the history that a final read can check, with their workload.
fn readable_keys(history: &History) -> Vec<(Workload, String)> {
    let mut keys: Vec<(Workload, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for op in &history.ops {
        let w = if op.key.starts_with("reg:") {
            Workload::Register
        } else if op.key.starts_with("ctr:") {
            Workload::Counter
        } else if op.key.starts_with("list:") {
            Workload::ListAppend
        } else if op.key.starts_with("set:") {
            Workload::SetAdd
        } else {
            continue;
        };
        if seen.insert(op.key.clone()) {
            keys.push((w, op.key.clone()));
        }
    }
    keys
}

/// Runs the whole thing; `cancel` turns true on the first Ctrl-C (the run
/// then stops its clients and nemesis, heals, saves the history and exits
/// without judging it).
pub async fn run(cfg: Config, mut cancel: watch::Receiver<bool>) -> Result<Summary> {
    let wall = Instant::now();
    netns::preflight()?;
    if !cfg.bin.is_file() {
        bail!(
            "the raftcache binary {} does not exist (build it with `cargo build -p raftcache-node \
             --bin raftcache`, pass --bin or set RAFTCACHE_BIN)",
            cfg.bin.display()
        );
    }
    if cfg.nodes < 3 || cfg.nodes > 9 {
        bail!("--nodes must be between 3 and 9");
    }
    if !cfg.faults.is_empty() {
        nemesis::check_duration(cfg.fault_duration, cfg.election_timeout)
            .map_err(anyhow::Error::msg)?;
    }
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let id = run_id(cfg.seed);
    let ids: Vec<u32> = (1..=cfg.nodes).collect();
    eprintln!(
        "raftcache-chaos: run {id}, seed {}, {} nodes, {}s, faults [{}], workloads [{}], out {}",
        cfg.seed,
        cfg.nodes,
        cfg.time.as_secs_f64(),
        cfg.faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        cfg.workloads.iter().map(|w| w.name()).collect::<Vec<_>>().join(","),
        cfg.out.display()
    );

    let net = Net::create(&id, &ids, cfg.seed ^ u64::from(std::process::id()))?;
    let settings = NodeSettings {
        bin: cfg.bin.clone(),
        appendfsync: cfg.appendfsync.clone(),
        args: cfg.node_args.clone(),
    };
    let cluster = Cluster::new(&net, &ids, &settings, &cfg.out.join("nodes"))?;
    let cluster = Arc::new(Mutex::new(cluster));
    let net_handle = Arc::new(net.handle());
    let mut guard = Teardown { cluster: cluster.clone(), proxies: None, net };
    if cfg.faults.iter().any(|f| f.needs_proxy()) {
        let nodes: Vec<(u32, std::net::Ipv4Addr)> =
            ids.iter().map(|&i| (i, guard.net.ip(i))).collect();
        let proxies = Proxies::start(&nodes, |i| guard.net.ns(i), RAFT_PORT, cfg.seed)
            .context("starting the link proxies")?;
        guard.proxies = Some(proxies);
        guard
            .net
            .redirect_peers(RAFT_PORT, linkproxy::port_of, linkproxy::MARK)
            .context("sending the peer links through the link proxies")?;
        eprintln!(
            "raftcache-chaos: peer links go through the link proxies ({} links)",
            ids.len() * (ids.len() - 1)
        );
    }
    let links = guard.proxies.as_ref().map(|p| p.links.clone());
    for &n in &ids {
        lock(&cluster).start(n)?;
    }
    if !wait_ready(&cluster, ids.len(), Duration::from_secs(60)).await {
        let logs: Vec<String> =
            lock(&cluster).nodes.iter().map(|n| n.log_path.display().to_string()).collect();
        bail!("the cluster did not become ready within 60 s (node logs: {})", logs.join(", "));
    }
    eprintln!("raftcache-chaos: cluster ready after {:.1}s", wall.elapsed().as_secs_f64());

    // Workload and nemesis.
    let cfg = Arc::new(cfg);
    let log: SharedLog = Arc::default();
    let recorder = Recorder::new();
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Shared {
        cluster: cluster.clone(),
        net: net_handle.clone(),
        links: links.clone(),
        recorder: recorder.clone(),
        cfg: cfg.clone(),
        stop: stop.clone(),
        log: log.clone(),
    };
    let addrs: Vec<(u32, std::net::SocketAddr)> = {
        let mut c = lock(&cluster);
        ids.iter().map(|&i| (i, c.node(i).resp_addr())).collect()
    };
    let slots = (cfg.workloads.len() as u64) * u64::from(cfg.clients);
    let mut clients = JoinSet::new();
    let mut slot = 0u64;
    for &w in &cfg.workloads {
        for _ in 0..cfg.clients {
            let (_, addr) = addrs[(slot as usize) % addrs.len()];
            clients.spawn(client(
                slot,
                slots,
                Generator::new(w, cfg.shape, slot),
                addr,
                shared.clone(),
            ));
            slot += 1;
        }
    }
    let plan = nemesis::plan(&cfg.faults, cfg.seed, cfg.time, cfg.interval, cfg.fault_duration);
    let mut nemesis_task = tokio::spawn(run_nemesis(plan, started, shared.clone()));
    let interrupted = tokio::select! {
        _ = tokio::time::sleep(cfg.time) => false,
        _ = cancel.wait_for(|c| *c) => true,
    };
    stop.store(true, Ordering::Relaxed);
    let injected = match (&mut nemesis_task).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(e.context("the nemesis failed")),
        Err(e) => bail!("the nemesis task failed: {e}"),
    };
    let grace = cfg.op_timeout + Duration::from_secs(5);
    if tokio::time::timeout(grace, async { while clients.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        clients.abort_all();
    }
    let workload_end = recorder.now();
    eprintln!("raftcache-chaos: workload done: {} operations, {injected} faults", recorder.len());

    // Heal, recover, final reads, digests.
    recorder.nemesis("heal-all", Phase::Info, vec![], "every link restored, every node running");
    {
        let (c, n, l, lk) = (cluster.clone(), net_handle.clone(), log.clone(), links.clone());
        tokio::task::spawn_blocking(move || heal_all(&c, &n, lk.as_deref(), &l)).await??;
    }
    let healed = Instant::now();
    let recovered = wait_ready(&cluster, ids.len(), cfg.recovery_timeout).await;
    let recovered_after_s = recovered.then(|| healed.elapsed().as_secs_f64());
    if !recovered {
        finding(
            &log,
            format!(
                "the cluster was not ready (every node raft_ready:1 and one agreed leader) \
                 within {:?} of healing everything",
                cfg.recovery_timeout
            ),
        );
    }
    let history_so_far = recorder.finish();
    if !interrupted {
        final_reads(readable_keys(&history_so_far), &addrs, &recorder, cfg.op_timeout).await;
    }
    let admin: Vec<(u32, String)> = {
        let mut c = lock(&cluster);
        ids.iter().map(|&i| (i, c.node(i).admin_url())).collect()
    };
    let conv = if interrupted {
        Convergence { result: "unaligned", applied_index: None, nodes: BTreeMap::new() }
    } else {
        convergence(&admin, Duration::from_secs(30)).await
    };
    if conv.result == "disagree" {
        finding(
            &log,
            format!("digests differ at applied index {:?}: {:?}", conv.applied_index, conv.nodes),
        );
    }
    for p in lock(&cluster).panics() {
        finding(&log, p);
    }
    if let Some(l) = &links {
        let (conns, bytes) = l.carried();
        note(&log, format!("the link proxies relayed {conns} peer connections, {bytes} bytes"));
        if conns == 0 {
            finding(&log, "no peer connection went through the link proxies".into());
        }
    }
    let history = recorder.finish();
    let history_path = cfg.out.join("history.jsonl");
    history.save(&history_path).with_context(|| format!("saving {}", history_path.display()))?;
    let node_logs = cfg.out.join("nodes");
    drop(guard);
    if interrupted {
        bail!(
            "interrupted: {} operations saved in {} (check them with `raftcache-chaos check`)",
            history.ops.len(),
            history_path.display()
        );
    }

    // Judge.
    let check_started = Instant::now();
    let budget = Budget::new(cfg.max_steps, Some(cfg.check_timeout));
    let h = history.clone();
    let reports = tokio::task::spawn_blocking(move || check_all(&h, &budget))
        .await?
        .map_err(|e| anyhow::anyhow!("the history cannot be checked: {e}"))?;
    let check_s = check_started.elapsed().as_secs_f64();
    let per_checker = summary::ops_per_checker(&history);
    let checkers: Vec<CheckerSummary> = reports
        .into_iter()
        .map(|r| {
            let (_, ops) = per_checker.get(r.checker).copied().unwrap_or((0, 0));
            let (verdict, reason) = match &r.verdict {
                Verdict::Valid => ("valid", None),
                Verdict::Invalid { violations } => {
                    ("invalid", violations.first().map(|v| v.to_string()))
                }
                Verdict::Unknown { reason } => ("unknown", Some(reason.clone())),
            };
            CheckerSummary { checker: r.checker, keys: r.keys, ops, verdict, reason, report: r }
        })
        .collect();
    let (ops, ops_by_f) = summary::counts(&history);
    let mut ok_completions: Vec<u64> =
        history.ops.iter().filter(|o| o.is_ok()).filter_map(|o| o.complete).collect();
    ok_completions.sort_unstable();
    let Log { findings, notes, errors } = std::mem::take(&mut *lock(&log));
    let verdict = if checkers.iter().any(|c| c.verdict == "invalid")
        || !findings.is_empty()
        || conv.result == "disagree"
    {
        RunVerdict::Invalid
    } else if checkers.iter().any(|c| c.verdict == "unknown") || conv.result != "agree" {
        RunVerdict::Unknown
    } else {
        RunVerdict::Valid
    };
    if verdict == RunVerdict::Valid && !cfg.keep_data {
        for &i in &ids {
            let _ = std::fs::remove_dir_all(node_logs.join(format!("node{i}-data")));
        }
    }
    let summary = Summary {
        run_id: id,
        seed: cfg.seed,
        nodes: cfg.nodes,
        appendfsync: cfg.appendfsync.clone(),
        workload_s: workload_end as f64 / 1e9,
        wall_s: wall.elapsed().as_secs_f64(),
        faults_enabled: cfg.faults.iter().map(|f| f.name()).collect(),
        workloads: cfg.workloads.iter().map(|w| w.name()).collect(),
        clients: cfg.clients,
        ops,
        ops_by_f,
        errors,
        latency: summary::latency(&history),
        faults: summary::fault_windows(&history, workload_end, &|process| {
            // A client's process ids are its slot plus multiples of the
            // number of slots; slot i talks to node ids[i % n].
            let slot = (process % slots.max(1)) as usize;
            Some(ids[slot % ids.len()])
        }),
        longest_gap_s: summary::longest_gap(&ok_completions, 0, workload_end) as f64 / 1e9,
        recovered_after_s,
        convergence: conv,
        checkers,
        check_s,
        findings,
        notes,
        verdict,
    };
    let path = cfg.out.join("summary.json");
    let json = serde_json::to_string_pretty(&summary)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("saving {}", path.display()))?;
    let path = cfg.out.join("report.html");
    let html = report_html(&history, &summary)?;
    std::fs::write(&path, html).with_context(|| format!("saving {}", path.display()))?;
    Ok(summary)
}

/// The HTML report of a finished run (see [`crate::report`]).
pub fn report_html(history: &History, summary: &Summary) -> Result<String> {
    let value = serde_json::to_value(summary)?;
    let checkers = summary
        .checkers
        .iter()
        .map(|c| crate::report::CheckerView::from_report(&c.report, Some(c.ops)))
        .collect();
    Ok(crate::report::render(&crate::report::Input {
        history,
        checkers,
        summary: Some(&value),
        source: "history.jsonl".to_string(),
    }))
}

impl Summary {
    /// The human-readable summary.
    pub fn render(&self, out: &std::path::Path) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "run {} (seed {}): {} nodes, appendfsync {}, workload {:.1}s, wall {:.1}s",
            self.run_id, self.seed, self.nodes, self.appendfsync, self.workload_s, self.wall_s
        );
        let _ = writeln!(
            s,
            "operations: {} (ok {}, fail {}, unknown {})",
            self.ops.total(),
            self.ops.ok,
            self.ops.fail,
            self.ops.unknown
        );
        for (f, c) in &self.ops_by_f {
            let _ = writeln!(
                s,
                "  {f:<13} ok {:>6}  fail {:>5}  unknown {:>5}",
                c.ok, c.fail, c.unknown
            );
        }
        if !self.errors.is_empty() {
            let e: Vec<String> = self.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(s, "errors: {}", e.join(", "));
        }
        let _ = writeln!(
            s,
            "latency (ok): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency.p50_ms, self.latency.p99_ms, self.latency.max_ms
        );
        let _ = writeln!(
            s,
            "faults: {} injected; longest gap without an ok op: {:.2}s",
            self.faults.len(),
            self.longest_gap_s
        );
        for f in &self.faults {
            let _ = writeln!(
                s,
                "  {:7.1}s {:<18} {:>5.1}s  gap {:5.2}s  recovered {}  ops ok/fail/unknown {}/{}/{}  {}",
                f.start_s,
                f.fault,
                f.end_s.map_or(0.0, |e| e - f.start_s),
                f.longest_gap_s,
                f.recovered_after_s.map_or("never".to_string(), |r| format!("{r:.2}s")),
                f.ops.ok,
                f.ops.fail,
                f.ops.unknown,
                f.detail
            );
            if !f.per_node.is_empty() {
                let nodes: Vec<String> = f
                    .per_node
                    .iter()
                    .map(|n| {
                        format!(
                            "{}: gap {:.2}s wait {:.2}s resumed {}",
                            n.node,
                            n.longest_write_gap_s,
                            n.longest_wait_s,
                            n.writes_resumed_after_s
                                .map_or("never".to_string(), |r| format!("{r:.2}s"))
                        )
                    })
                    .collect();
                let _ = writeln!(
                    s,
                    "           writes: gap {:.2}s; by node {}",
                    f.longest_write_gap_s,
                    nodes.join(", ")
                );
            }
        }
        let _ = writeln!(
            s,
            "final heal: {}",
            self.recovered_after_s
                .map_or("the cluster never became ready".to_string(), |r| format!(
                    "ready after {r:.2}s"
                ))
        );
        let _ = writeln!(
            s,
            "convergence: {} (applied index {})",
            self.convergence.result,
            self.convergence.applied_index.map_or("-".to_string(), |i| i.to_string())
        );
        for (m, row) in &self.convergence.nodes {
            let _ = writeln!(s, "  node {m}: {row}");
        }
        let _ = writeln!(s, "checkers ({:.1}s):", self.check_s);
        for c in &self.checkers {
            let _ =
                writeln!(s, "  {:<13} {:<8} {} keys, {} ops", c.checker, c.verdict, c.keys, c.ops);
            if let Some(r) = &c.reason {
                for line in r.lines().take(12) {
                    let _ = writeln!(s, "      {line}");
                }
            }
        }
        for f in &self.findings {
            let _ = writeln!(s, "FINDING: {f}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "verdict: {:?}; history {}, summary {}, report {}",
            self.verdict,
            out.join("history.jsonl").display(),
            out.join("summary.json").display(),
            out.join("report.html").display()
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Call, Op, Val};
    use resp::{CallError, Reply};

    #[test]
    fn errors_are_counted_by_kind() {
        let kind = |r: Result<Reply, CallError>| error_kind(&r);
        assert_eq!(kind(Ok(Reply::Int(1))), None);
        assert_eq!(
            kind(Ok(Reply::Error("CLUSTERDOWN no leader: …".into()))).unwrap(),
            "-CLUSTERDOWN"
        );
        assert_eq!(kind(Ok(Reply::Error("UNCERTAIN the outcome".into()))).unwrap(), "-UNCERTAIN");
        assert_eq!(
            kind(Err(CallError::NotSent("connect 10.0.0.1:6379: Connection refused".into())))
                .unwrap(),
            "connection refused"
        );
        assert_eq!(kind(Err(CallError::Timeout)).unwrap(), "timeout");
        assert_eq!(kind(Err(CallError::Lost("read: reset".into()))).unwrap(), "connection lost");
    }

    #[test]
    fn final_reads_cover_register_counter_and_list_keys_once() {
        let op = |key: &str, call: Call| Op {
            id: 0,
            process: 1,
            key: key.into(),
            call,
            invoke: 1,
            complete: Some(2),
            outcome: Outcome::Ok(Val::Nil),
        };
        let h = History::new(vec![
            op("reg:0:1", Call::Write { value: "a".into() }),
            op("reg:0:1", Call::Read),
            op("ctr:0:0", Call::Incr { by: 1 }),
            op("list:1:2", Call::Append { value: "b".into() }),
            op("set:1:0", Call::Add { value: "c".into() }),
            op("ttl:1:0", Call::WriteTtl { value: "d".into(), ttl_ms: 100 }),
            op("lock:0", Call::LockAcquire { owner: "o".into() }),
            op("nxlock:0", Call::LockAcquire { owner: "o".into() }),
        ]);
        assert_eq!(
            readable_keys(&h),
            vec![
                (Workload::Register, "reg:0:1".to_string()),
                (Workload::Counter, "ctr:0:0".to_string()),
                (Workload::ListAppend, "list:1:2".to_string()),
                (Workload::SetAdd, "set:1:0".to_string()),
            ]
        );
    }
}
