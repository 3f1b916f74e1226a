//! The read path: read-index confirmation shared by concurrent reads, leases,
//! stale reads, and follower reads.
//!
//! Linearizable reads on any node wait for one *round*, shared by every read
//! that was waiting when the round started. On the leader a round is a
//! leadership confirmation ([`super::confirm`]) followed by applying up to the
//! read index. On a follower it is one `ReadIndex` request to the leader (the
//! follower's vote is its confirmation; the leader runs a round of its own only
//! if that and its own vote are not a majority) followed by applying up to the
//! index the leader returned; the reads are then served from the follower's own state machine,
//! so neither the commands nor their replies cross the network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftcache_proto::raft::{ReadIndexReply, ReadIndexRequest};
use raftcache_raft::network::Exchange;
use raftcache_sm::{Call, Reply, Watch};
use tokio::sync::{mpsc, oneshot};

use super::{Cluster, ClusterError, Command, Leader, ReadConsistency};
use crate::clock::now_ms;

type Waiter = oneshot::Sender<bool>;

/// Batches reads into rounds. A round (a leadership confirmation or a read
/// index from the leader, then waiting for the state machine to reach the read
/// index) serves every read that was waiting when the round started; reads
/// arriving later go to a later round, whose confirmation starts after they
/// arrived, which is what linearizability needs. Up to [`CONCURRENT_ROUNDS`]
/// rounds run at once.
pub struct ReadBarrier {
    tx: mpsc::Sender<Waiter>,
    /// Rounds run and read groups served by them, for INFO.
    pub rounds: AtomicU64,
    pub waiters: AtomicU64,
    /// A follower's ReadIndex stream to the leader.
    index_stream: tokio::sync::Mutex<Option<IndexStream>>,
    /// The leader lease: the term it was confirmed in and when it ends. It
    /// starts when a confirmation round *was sent* (measured before sending),
    /// so a pause between the round and a read can only shorten it.
    lease: Mutex<Option<(u64, Instant)>>,
}

impl ReadBarrier {
    pub fn new() -> (ReadBarrier, mpsc::Receiver<Waiter>) {
        let (tx, rx) = mpsc::channel(4096);
        (
            ReadBarrier {
                tx,
                rounds: AtomicU64::new(0),
                waiters: AtomicU64::new(0),
                index_stream: Default::default(),
                lease: Mutex::new(None),
            },
            rx,
        )
    }

    /// Records a confirmation of leadership in `term` whose round started at
    /// `sent`.
    fn renew(&self, term: u64, sent: Instant, lease: Duration) {
        let mut l = self.lease.lock().expect("lease lock");
        let until = sent + lease;
        if l.is_none_or(|(t, u)| t != term || u < until) {
            *l = Some((term, until));
        }
    }

    /// True if a lease confirmed in `term` is still running.
    fn lease_holds(&self, term: u64) -> bool {
        self.lease
            .lock()
            .expect("lease lock")
            .is_some_and(|(t, until)| t == term && Instant::now() < until)
    }

    /// True once this node has applied everything committed before the call
    /// (confirmed by the leader, which may be this node).
    pub async fn confirm(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(tx).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }
}

/// An open ReadIndex stream to a leader.
struct IndexStream {
    addr: String,
    exchange: Exchange<ReadIndexRequest, ReadIndexReply>,
}

/// Most confirmation rounds in flight at once.
pub const CONCURRENT_ROUNDS: usize = 1;

/// Runs confirmation rounds until the channel closes.
pub async fn run_barrier(cluster: Arc<Cluster>, mut rx: mpsc::Receiver<Waiter>) {
    let rounds = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_ROUNDS));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = rounds.clone().acquire_owned().await else { return };
        // Everyone who arrived while we waited for a permit joins this round.
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        cluster.reads.rounds.fetch_add(1, Ordering::Relaxed);
        cluster.reads.waiters.fetch_add(waiters.len() as u64, Ordering::Relaxed);
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let leader = cluster.leader();
            let ok = match &leader {
                Leader::Me => {
                    let sent = Instant::now();
                    let term = cluster.raft().metrics().borrow().current_term;
                    let ok = cluster.confirmer.round(&cluster, &cluster.vote).await;
                    if ok {
                        cluster.reads.renew(term, sent, cluster.options.lease);
                    }
                    ok
                }
                // Given up as soon as that leader is no longer this node's
                // (a new term, an election under way): a leader that was cut
                // off or paused may never answer, and the reads retry at once
                // in a round with the new one instead of waiting out
                // request-timeout.
                Leader::Other { raft_addr, .. } => tokio::select! {
                    ok = cluster.read_index_from(raft_addr) => ok,
                    () = cluster.leader_moved(&leader) => false,
                },
                Leader::Unknown => false,
            };
            if ok {
                crate::observe::get().read_round(started.elapsed());
            }
            for w in waiters {
                let _ = w.send(ok);
            }
            drop(permit);
        });
    }
}

impl Cluster {
    /// True if this leader may serve a read without a confirmation round: a
    /// round sent less than a lease ago, in the current term, confirmed its
    /// leadership, and it has applied its whole log. Followers do not elect a
    /// new leader until an election timeout after they last heard from this
    /// one, and the lease is half the shortest election timeout, so the lease
    /// holds as long as clocks run at roughly the same rate.
    async fn lease_valid(&self) -> bool {
        let m = self.metrics();
        if !self.reads.lease_holds(m.current_term) {
            return false;
        }
        let last = m.last_log_index.unwrap_or(0);
        if m.last_applied.map_or(0, |l| l.index) >= last {
            return true;
        }
        self.raft()
            .wait(Some(self.options.request_timeout))
            .applied_index_at_least(Some(last), "lease read")
            .await
            .is_ok()
    }

    /// True if this node leads and is the only voter of the current membership.
    fn sole_voter(&self) -> bool {
        let metrics = self.raft().metrics();
        let m = metrics.borrow();
        if m.state != raftcache_raft::openraft::ServerState::Leader {
            return false;
        }
        let membership = m.membership_config.membership();
        let mut voters = membership.voter_ids();
        voters.next() == Some(self.node_id)
            && voters.next().is_none()
            && membership.get_joint_config().len() == 1
    }

    /// Runs read commands against the local engine.
    pub fn read_local(&self, cmds: &[Command]) -> Vec<Reply> {
        let machine = self.sm.read();
        let now = now_ms();
        self.counting_lookups(|| {
            cmds.iter()
                .map(|c| machine.state.query(c.db as usize, &c.argv, now, rand::random()))
                .collect()
        })
    }

    /// Runs the read `f`, adding its key lookups to the keyspace hits and
    /// misses (the lookups are counted on this thread, see
    /// `raftcache_sm::db::take_lookups`).
    fn counting_lookups<T>(&self, f: impl FnOnce() -> T) -> T {
        raftcache_sm::db::take_lookups();
        let out = f();
        let (hits, misses) = raftcache_sm::db::take_lookups();
        if hits > 0 {
            self.keyspace_hits.fetch_add(hits, std::sync::atomic::Ordering::Relaxed);
        }
        if misses > 0 {
            self.keyspace_misses.fetch_add(misses, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }

    /// Serves a group of read commands with the configured consistency.
    pub async fn read(&self, cmds: Vec<Command>) -> Result<Vec<Reply>, ClusterError> {
        self.read_barrier().await?;
        Ok(self.read_local(&cmds))
    }

    /// [`Cluster::read`], running `during` while the engine is locked for
    /// the read: nothing is applied between the read and `during`.
    pub async fn read_then(
        &self,
        cmds: Vec<Command>,
        during: impl FnOnce(),
    ) -> Result<Vec<Reply>, ClusterError> {
        self.read_barrier().await?;
        let machine = self.sm.read();
        let now = now_ms();
        let replies = self.counting_lookups(|| {
            cmds.iter()
                .map(|c| machine.state.query(c.db as usize, &c.argv, now, rand::random()))
                .collect()
        });
        during();
        drop(machine);
        Ok(replies)
    }

    /// Waits until this node may serve a read at the configured consistency:
    /// for `linearizable`, until it has applied every write acknowledged
    /// before the call (a read-index round); `stale` reads need nothing.
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        if self.options.read_consistency == ReadConsistency::Stale {
            return Ok(());
        }
        if self.options.unsafe_switches.follower_local_reads && self.leader() != Leader::Me {
            // The test-only switch `follower-local-reads` (see
            // `settings::UnsafeSwitches`): no read index, no leader, the
            // replica as it stands.
            return Ok(());
        }
        if let Some(moved) = self.redirect().await {
            return Err(moved);
        }
        let deadline = Instant::now() + self.options.request_timeout;
        loop {
            match self.wait_for_leader(deadline).await? {
                Leader::Me => {
                    if self.confirm_leadership().await {
                        return Ok(());
                    }
                }
                Leader::Other { .. } => {
                    if self.reads.confirm().await {
                        return Ok(());
                    }
                }
                Leader::Unknown => {}
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NoLeader);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// WATCH: marks for `keys` of database `db`, read as a read at the
    /// configured consistency (so the mark covers every write acknowledged
    /// before the WATCH).
    pub async fn watch(&self, db: u32, keys: &[Bytes]) -> Result<Vec<Watch>, ClusterError> {
        self.read_barrier().await?;
        Ok(self.sm.read().state.watch_marks(db as usize, keys, now_ms()))
    }

    /// A transaction of reads only (EXEC without writes): the watches are
    /// checked and the calls run as one read, without the log.
    pub async fn read_exec(
        &self,
        watches: &[Watch],
        calls: &[Call],
    ) -> Result<Reply, ClusterError> {
        self.read_barrier().await?;
        let machine = self.sm.read();
        Ok(self.counting_lookups(|| {
            machine.state.query_exec(watches, calls, now_ms(), rand::random())
        }))
    }

    /// Confirms leadership for a read: a lease if allowed and valid, else a
    /// read-index round. A leader that is the only voter needs neither: no
    /// other node can be elected without its vote, and it has applied every
    /// write it acknowledged.
    pub async fn confirm_leadership(&self) -> bool {
        if self.sole_voter() {
            return true;
        }
        if self.options.read_consistency == ReadConsistency::Lease && self.lease_valid().await {
            return true;
        }
        self.reads.confirm().await
    }

    /// A follower's round: asks the leader at `raft_addr` for a read index,
    /// then waits to apply it.
    async fn read_index_from(&self, raft_addr: &str) -> bool {
        let timeout = self.options.request_timeout;
        // Read after the reads arrived: it vouches for the leader (see
        // confirm::vouched_read_index).
        let (term, leader) =
            self.vote.get().map_or((0, 0), |v| (v.leader_id().term, v.leader_id().node_id));
        let request = ReadIndexRequest { from: self.node_id, term, leader };
        // Rounds on a follower run one at a time, so the stream is never
        // contended; it is dropped after any failure and reopened.
        let mut slot = self.reads.index_stream.lock().await;
        let stream = slot.take().filter(|s| s.addr == raft_addr).map(|s| s.exchange);
        let network = self.network.clone();
        let addr = raft_addr.to_string();
        let call = Exchange::call(stream, request, |rx| async move {
            let mut client =
                network.client_for(&addr).map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            client.read_index(rx).await
        });
        let index = match tokio::time::timeout(timeout, call).await {
            Ok(Ok((reply, exchange))) => {
                *slot = Some(IndexStream { addr: raft_addr.to_string(), exchange });
                reply.index
            }
            _ => return false,
        };
        drop(slot);
        if self.sm.read().last_applied.map_or(0, |l| l.index) >= index {
            return true;
        }
        self.raft()
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "follower read index")
            .await
            .is_ok()
    }

    /// The leader's side of a follower's `ReadIndex`: confirms leadership
    /// after the request arrived (the follower's vote, if it completes a
    /// majority, else a round) and returns an index covering every write
    /// acknowledged before.
    pub async fn serve_read_index(&self, request: &ReadIndexRequest) -> Result<u64, tonic::Status> {
        if self.leader() != Leader::Me {
            return Err(tonic::Status::failed_precondition("not the leader"));
        }
        if let Some(index) = super::confirm::vouched_read_index(
            self,
            &self.vote,
            request.from,
            request.term,
            request.leader,
        ) {
            return Ok(index);
        }
        if !self.confirm_leadership().await {
            return Err(tonic::Status::failed_precondition("leadership not confirmed"));
        }
        Ok(self.sm.read().last_applied.map_or(0, |l| l.index))
    }
}
