//! Reads as accesses for eviction: while an LRU or LFU `maxmemory-policy` is
//! in force, the keys this node's clients read (clients without CLIENT
//! NO-TOUCH) are gathered and proposed once a second as one `Op::Touch`
//! entry, so that the engine's access times and counters — replicated state,
//! from which every replica picks the same victims — count reads on every
//! node, not only writes. A read is counted up to a second late; past
//! [`MAX_PENDING`] distinct keys in a second the rest of that second's reads
//! are not counted (sampled eviction is approximate anyway, as in Redis).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use raftcache_sm::Op;
use tokio_util::sync::CancellationToken;

use crate::Cluster;

/// Most distinct keys one `Op::Touch` entry carries.
pub const MAX_PENDING: usize = 10_000;
/// How often the gathered reads are proposed.
pub const EVERY: Duration = Duration::from_secs(1);

/// The keys read since the last proposal.
#[derive(Debug, Default)]
pub struct Touches {
    /// Whether the policy in force keeps access information (refreshed from
    /// the engine every [`EVERY`]).
    wanted: AtomicBool,
    keys: Mutex<BTreeSet<(u32, Bytes)>>,
}

impl Touches {
    /// True while reads are wanted as accesses (check before gathering keys).
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Notes that a client read `keys` of database `db`.
    pub fn note(&self, db: u32, keys: impl IntoIterator<Item = Bytes>) {
        if !self.wanted.load(Ordering::Relaxed) {
            return;
        }
        let mut pending = self.keys.lock().expect("touches lock");
        for key in keys {
            if pending.len() >= MAX_PENDING {
                break;
            }
            pending.insert((db, key));
        }
    }

    fn take(&self) -> Vec<(u32, Bytes)> {
        std::mem::take(&mut *self.keys.lock().expect("touches lock")).into_iter().collect()
    }
}

/// Proposes the gathered reads every [`EVERY`] until `shutdown`.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
        let wanted = cluster.sm.read().state.memory().tracks_access();
        cluster.touches.wanted.store(wanted, Ordering::Relaxed);
        let keys = cluster.touches.take();
        if !wanted || keys.is_empty() {
            continue;
        }
        // Through the leader like any write; lost if there is none (the
        // reads then count as a little older than they are).
        if let Err(e) = cluster.write_ops(vec![Op::Touch { keys }]).await {
            tracing::debug!(error = ?e, "proposing reads as accesses");
        }
    }
}
