//! The RESP listener: accepts clients, bounds how many there are, runs a
//! handler per connection and the expiry reaper, and shuts down cleanly:
//! stop accepting, let handlers finish their current batch, then return.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn, Instrument};

use crate::clients::Clients;
use crate::clock::{now_ms, PURGE_BATCH};
use crate::cluster::{Cluster, Leader};
use crate::config::Config;
use crate::connection::Handler;
use crate::events::Hub;

/// Counters INFO stats reports.
#[derive(Debug, Default)]
pub struct Stats {
    pub commands: AtomicU64,
    pub expired_keys: AtomicU64,
    /// Bytes read from and written to clients.
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    /// INFO commandstats and errorstats.
    pub calls: crate::stats::CommandStats,
}

/// What every connection shares.
pub struct Shared {
    pub config: Config,
    pub cluster: Arc<Cluster>,
    pub clients: Clients,
    pub stats: Stats,
    pub run_id: String,
    pub started: Instant,
    /// Who waits for the engine's events on this node (pub/sub …).
    pub hub: Arc<Hub>,
}

impl Shared {
    pub fn new(config: Config, cluster: Arc<Cluster>) -> Shared {
        let run_id: String = (0..40).map(|_| format!("{:x}", rand::random::<u8>() % 16)).collect();
        let hub = Arc::new(Hub::default());
        let sink = hub.clone();
        let session = cluster.proposer.session;
        let weak = Arc::downgrade(&cluster);
        let tracking = weak.clone();
        hub.flushed.set_report(Box::new(move |oldest| {
            if let Some(cluster) = tracking.upgrade() {
                cluster.tracking.set_outstanding(oldest);
            }
        }));
        cluster.sm.set_event_sink(Box::new(move |applied| {
            let orphans = sink.dispatch(applied, session);
            if let Some(cluster) = weak.upgrade().filter(|_| !orphans.is_empty()) {
                for waiter in orphans {
                    crate::connection::give_up(&cluster, waiter);
                }
            }
        }));
        Shared {
            config,
            cluster,
            clients: Clients::default(),
            stats: Stats::default(),
            run_id,
            started: Instant::now(),
            hub,
        }
    }

    /// Some client of this node tracks keys (`true`), or none does: the
    /// engine reports changed keys, and the cluster registers the node with
    /// the leader (see `raftcache_cluster::tracking`), only while one does.
    pub fn set_tracking(&self, any: bool) {
        self.cluster.sm.set_tracking(any);
        self.cluster.tracking.set_active(any);
    }
}

/// Flushes every tracking client's cache whenever the cluster asks (this
/// node's registration with the leader may have run out, or the leader
/// changed; see `raftcache_cluster::tracking`).
async fn flush_caches(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut requests = shared.cluster.tracking.flush_requests();
    loop {
        tokio::select! {
            r = requests.changed() => if r.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        shared.hub.flush_caches();
    }
}

/// How often a node with blocked clients tells the engine its session lives
/// (well inside the engine's 10-minute idle limit, after which it drops the
/// session's waiters).
const KEEPALIVE_PERIOD: Duration = Duration::from_secs(60);

/// Keeps this node's origin session alive in the engine while it has
/// blocked clients, with an empty entry.
async fn keepalive(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(KEEPALIVE_PERIOD);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if shared.hub.blocked_count() > 0 {
            let _ = shared.cluster.write_ops(vec![raftcache_sm::Op::Noop]).await;
        }
    }
}

/// How often the reaper looks for expired keys (Redis's default `hz` is 10).
const REAPER_PERIOD: Duration = Duration::from_millis(100);

/// Binds the RESP listeners on `--bind` addresses and `--port`.
pub async fn bind(config: &Config) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    for host in config.args.bind.split_whitespace() {
        let host = host.trim_start_matches('-');
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", config.args.port)
        } else {
            format!("{host}:{}", config.args.port)
        };
        let listener = TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
        info!(%addr, "listening for Redis clients");
        listeners.push(listener);
    }
    anyhow::ensure!(!listeners.is_empty(), "--bind lists no address");
    Ok(listeners)
}

/// Serves clients on `listeners` until `shutdown` is cancelled.
pub async fn run(shared: Arc<Shared>, listeners: Vec<TcpListener>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    tracker.spawn(reaper(shared.clone(), shutdown.clone()));
    tracker.spawn(keepalive(shared.clone(), shutdown.clone()));
    tracker.spawn(flush_caches(shared.clone(), shutdown.clone()));
    for listener in listeners {
        tracker.spawn(accept_loop(shared.clone(), listener, shutdown.clone(), tracker.clone()));
    }
    shutdown.cancelled().await;
    tracker.close();
    tracker.wait().await;
    info!("all connections closed");
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(1);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (stream, addr) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(1);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if shared.clients.count() >= shared.config.settings().maxclients {
            shared.clients.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tracker.spawn(reject(stream));
            continue;
        }
        let _ = stream.set_nodelay(true);
        let laddr = stream.local_addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let entry = shared.clients.register(addr, laddr, stream.as_raw_fd());
        // The connection's span: its log lines carry the client's id and
        // address (one span per connection, none per command).
        let span = tracing::info_span!("client", id = entry.id, %addr);
        let handler = Handler::new(shared.clone(), stream, entry);
        tracker.spawn(handler.run(shutdown.clone()).instrument(span));
    }
}

async fn reject(mut stream: TcpStream) {
    let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
}

/// Removes expired keys in bounded batches (active expiry). Only the leader
/// proposes purges, so every replica removes the same keys at the same log
/// index. Reads never see expired keys either way; this reclaims memory.
async fn reaper(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(REAPER_PERIOD);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let cluster = &shared.cluster;
        loop {
            if cluster.leader() != Leader::Me || cluster.handing_over() {
                break;
            }
            let due = cluster.sm.read().state.next_expiry().is_some_and(|at| at <= now_ms());
            if !due {
                break;
            }
            let purge = vec![raftcache_sm::Op::PurgeExpired { limit: PURGE_BATCH }];
            let removed = match cluster.propose_upkeep(purge, now_ms()).await {
                Some(replies) => match replies.first() {
                    Some(raftcache_sm::Reply::Int(n)) => *n as u64,
                    _ => 0,
                },
                None => break,
            };
            shared.stats.expired_keys.fetch_add(removed, Ordering::Relaxed);
            if removed < u64::from(PURGE_BATCH) {
                break;
            }
        }
    }
}
