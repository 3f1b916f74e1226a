//! A node that reaches no other voter does not stand for election (the
//! part of Raft's pre-vote that matters here; openraft 0.9 has none).
//!
//! A follower cut off from everyone (or a leader that stepped down for want
//! of a quorum, see [`crate::check_quorum`]) would otherwise stand for
//! election again and again, raising its term each time without any chance
//! of winning. When the partition heals, its term is above the leader's: the
//! leader steps down on hearing it, and the whole cluster waits for another
//! election, for nothing.
//!
//! So every node asks the other voters who they are (the peer Info RPC,
//! cheap) every [`PROBE_EVERY`]; while none has answered for [`ALONE_AFTER`]
//! it turns its election timer off, and on again once one has answered for
//! the longest election timeout (by then the leader's heartbeats, if there
//! is a leader, have reset the timer).
//! `ALONE_AFTER` is shorter than the earliest a follower stands for
//! election (its leader lease plus an election timeout, 0.9 s by default),
//! so a cut-off follower keeps its term. openraft then goes on naming the
//! leader it last followed; while alone the node treats it as no leader
//! (INFO names none, the health service says NOT_SERVING, clients get
//! `-CLUSTERDOWN` after `leaderless_timeout`), as it did when it stood for
//! election. A node that reaches at least one
//! other voter campaigns as before: in a cluster of three that is a
//! majority, and in larger ones Raft's vote still decides.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftcache_proto::raft::InfoRequest;
use raftcache_raft::openraft::ServerState;
use raftcache_raft::types::{NodeId, ShowId};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Cluster;

/// How often the other voters are asked.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// How long without an answer from any other voter before the node stops
/// standing for election (see the module documentation).
const ALONE_AFTER: Duration = Duration::from_millis(500);

/// Runs until `shutdown`.
pub async fn run(cluster: Arc<Cluster>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut heard: HashMap<NodeId, Instant> = HashMap::new();
    let mut electing = true;
    let mut together_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let m = cluster.metrics();
        let others: Vec<(NodeId, String)> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != cluster.node_id)
            .filter_map(|id| {
                let node = m.membership_config.membership().get_node(&id)?;
                Some((id, node.addr.clone()))
            })
            .collect();
        let voter = m.membership_config.membership().voter_ids().any(|id| id == cluster.node_id);
        if others.is_empty() || !voter || m.state == ServerState::Leader {
            cluster.set_alone(false);
            if !electing {
                set_electing(&cluster, true, "");
                electing = true;
            }
            continue;
        }
        let probes = others.iter().map(|(id, addr)| {
            let cluster = cluster.clone();
            async move { answers(&cluster, addr).await.then_some(*id) }
        });
        let now = Instant::now();
        for id in futures::future::join_all(probes).await.into_iter().flatten() {
            heard.insert(id, now);
        }
        let last = others.iter().filter_map(|(id, _)| heard.get(id)).max().copied();
        let alone = last.unwrap_or(started).elapsed() >= ALONE_AFTER;
        cluster.set_alone(alone);
        // Back in touch: stand again only after the longest election
        // timeout, time for the leader's heartbeats to arrive and reset the
        // election timer (which ran out long ago): standing at once would
        // raise the term just before the leader is heard.
        if alone {
            together_since = None;
        } else if !electing {
            let since = *together_since.get_or_insert(now);
            if since.elapsed() < cluster.options.election_timeout_max {
                continue;
            }
        }
        if alone == electing && !cluster.handing_over() {
            electing = !alone;
            let why = if alone {
                format!(
                    "no other voter ({}) has answered for {} ms",
                    others
                        .iter()
                        .map(|(id, _)| ShowId(*id).to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    ALONE_AFTER.as_millis()
                )
            } else {
                String::new()
            };
            set_electing(&cluster, electing, &why);
        }
    }
}

/// True if the node at `addr` answers an Info request in time.
async fn answers(cluster: &Cluster, addr: &str) -> bool {
    let Ok(mut client) = cluster.network.client_for(addr) else { return false };
    let mut request = tonic::Request::new(InfoRequest {});
    request.set_timeout(PROBE_TIMEOUT);
    matches!(tokio::time::timeout(PROBE_TIMEOUT, client.info(request)).await, Ok(Ok(_)))
}

fn set_electing(cluster: &Cluster, on: bool, why: &str) {
    cluster.raft().runtime_config().elect(on);
    if on {
        info!("another voter answers again: standing for election when the leader is silent");
    } else {
        info!(reason = why, "not standing for election while no other voter answers (pre-vote)");
    }
}
