//! What the commands print, as serializable values: `--json` prints them
//! with serde_json, the tables in [`crate::render`] are made from them.
//! Raft node ids appear both raw (`*_raft_node_id`) and as `member.incarnation`.

use std::time::{Duration, UNIX_EPOCH};

use raftcache_proto::admin::{
    status_event, DigestReply, Member, MembersReply, StatusEvent, StatusReply, TransferLeaderReply,
};
use serde::Serialize;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::ids::{show_id, show_leader};

/// One endpoint's answer to a call made on every endpoint: the reply's
/// fields (flattened into the row in JSON), or the error.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Row<T> {
    pub endpoint: String,
    #[serde(flatten)]
    pub reply: Option<T>,
    pub error: Option<String>,
}

impl<T> Row<T> {
    /// A row from a call's outcome.
    pub fn new<U: Into<T>>(endpoint: &str, outcome: Result<U, String>) -> Self {
        match outcome {
            Ok(reply) => Row { endpoint: endpoint.into(), reply: Some(reply.into()), error: None },
            Err(e) => Row { endpoint: endpoint.into(), reply: None, error: Some(e) },
        }
    }
}

/// A member of the cluster.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// `member.incarnation`.
    pub id: String,
    pub member_id: u32,
    pub raft_node_id: u64,
    pub raft_addr: String,
    pub resp_addr: String,
    pub admin_addr: String,
    pub voter: bool,
    pub leader: bool,
    pub reachable: bool,
    pub matched_index: u64,
    pub lag: u64,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        MemberView {
            id: show_id(m.raft_node_id),
            member_id: m.member_id,
            raft_node_id: m.raft_node_id,
            raft_addr: m.raft_addr.clone(),
            resp_addr: m.resp_addr.clone(),
            admin_addr: m.admin_addr.clone(),
            voter: m.voter,
            leader: m.leader,
            reachable: m.reachable,
            matched_index: m.matched_index,
            lag: m.lag,
        }
    }
}

/// Members in the order of their Raft node ids.
fn members(list: &[Member]) -> Vec<MemberView> {
    let mut out: Vec<MemberView> = list.iter().map(MemberView::from).collect();
    out.sort_by_key(|m| m.raft_node_id);
    out
}

/// A node's Status.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// `member.incarnation`.
    pub id: String,
    pub member_id: u32,
    pub raft_node_id: u64,
    pub role: String,
    pub term: u64,
    /// `member.incarnation` of the leader; null when none is known.
    pub leader: Option<String>,
    pub leader_raft_node_id: u64,
    pub first_log_index: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub commit_index: u64,
    pub ready: bool,
    pub quorum_lost: bool,
    pub wedged: bool,
    pub keys: u64,
    pub memory_bytes: u64,
    pub snapshot_index: u64,
    pub snapshot_bytes: u64,
    pub snapshot_age_ms: u64,
    pub log_bytes: u64,
    pub uptime_seconds: u64,
    pub read_consistency: String,
    pub appendfsync: String,
    pub version: String,
    pub redis_version: String,
    pub cluster_id: String,
    pub resp_addr: String,
    pub admin_addr: String,
    pub raft_addr: String,
    pub members: Vec<MemberView>,
}

impl From<StatusReply> for NodeStatus {
    fn from(s: StatusReply) -> Self {
        NodeStatus {
            id: show_id(s.raft_node_id),
            member_id: s.member_id,
            raft_node_id: s.raft_node_id,
            role: s.role,
            term: s.term,
            leader: show_leader(s.leader_raft_node_id),
            leader_raft_node_id: s.leader_raft_node_id,
            first_log_index: s.first_log_index,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            commit_index: s.commit_index,
            ready: s.ready,
            quorum_lost: s.quorum_lost,
            wedged: s.wedged,
            keys: s.keys,
            memory_bytes: s.memory_bytes,
            snapshot_index: s.snapshot_index,
            snapshot_bytes: s.snapshot_bytes,
            snapshot_age_ms: s.snapshot_age_ms,
            log_bytes: s.log_bytes,
            uptime_seconds: s.uptime_seconds,
            read_consistency: s.read_consistency,
            appendfsync: s.appendfsync,
            version: s.version,
            redis_version: s.redis_version,
            cluster_id: s.cluster_id,
            resp_addr: s.resp_addr,
            admin_addr: s.admin_addr,
            raft_addr: s.raft_addr,
            members: members(&s.members),
        }
    }
}

/// The membership a node reported (Members and the membership changes).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The endpoint that answered.
    pub endpoint: String,
    pub leader: Option<String>,
    pub leader_raft_node_id: u64,
    /// The log index of the membership.
    pub log_index: u64,
    pub members: Vec<MemberView>,
}

impl Membership {
    /// The view of a MembersReply from `endpoint`.
    pub fn new(endpoint: &str, reply: &MembersReply) -> Self {
        Membership {
            endpoint: endpoint.into(),
            leader: show_leader(reply.leader_raft_node_id),
            leader_raft_node_id: reply.leader_raft_node_id,
            log_index: reply.log_index,
            members: members(&reply.members),
        }
    }
}

/// The outcome of a leadership transfer.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub leader: Option<String>,
    pub leader_raft_node_id: u64,
    pub term: u64,
}

impl From<TransferLeaderReply> for Transfer {
    fn from(r: TransferLeaderReply) -> Self {
        Transfer {
            leader: show_leader(r.leader_raft_node_id),
            leader_raft_node_id: r.leader_raft_node_id,
            term: r.term,
        }
    }
}

/// A node's Digest.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DigestView {
    pub member_id: u32,
    pub applied_index: u64,
    pub digest: String,
    pub keys: u64,
}

impl From<DigestReply> for DigestView {
    fn from(d: DigestReply) -> Self {
        DigestView {
            member_id: d.member_id,
            applied_index: d.applied_index,
            digest: d.digest,
            keys: d.keys,
        }
    }
}

/// A snapshot taken on one node.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct SnapshotView {
    /// The log index it covers.
    pub index: u64,
}

/// One endpoint's answer to the gRPC health check.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    /// The serving status's name: `SERVING`, `NOT_SERVING`, `UNKNOWN`,
    /// `SERVICE_UNKNOWN` (or `status N` for a number the protocol does not
    /// define).
    pub status: String,
    pub serving: bool,
}

impl HealthView {
    /// From `HealthCheckResponse.status`.
    pub fn from_status(code: i32) -> Self {
        let status = match ServingStatus::try_from(code) {
            Ok(known) => known.as_str_name().to_string(),
            Err(_) => format!("status {code}"),
        };
        HealthView { status, serving: code == ServingStatus::Serving as i32 }
    }
}

/// One event of WatchStatus.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct EventView {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub time_ms: u64,
    /// `CURRENT`, `LEADER_CHANGED`, `MEMBERSHIP_CHANGED`, …
    pub kind: String,
    pub term: u64,
    pub leader: Option<String>,
    pub leader_raft_node_id: u64,
    pub role: String,
    /// The member a MEMBER_UNREACHABLE/MEMBER_REACHABLE event is about (0
    /// otherwise).
    pub member_id: u32,
    pub message: String,
    pub members: Vec<MemberView>,
}

impl From<StatusEvent> for EventView {
    fn from(e: StatusEvent) -> Self {
        let time = UNIX_EPOCH + Duration::from_millis(e.time_ms);
        EventView {
            time: humantime::format_rfc3339_millis(time).to_string(),
            time_ms: e.time_ms,
            kind: kind_name(e.kind),
            term: e.term,
            leader: show_leader(e.leader_raft_node_id),
            leader_raft_node_id: e.leader_raft_node_id,
            role: e.role,
            member_id: e.member_id,
            message: e.message,
            members: members(&e.members),
        }
    }
}

/// An event kind's name in the proto (`LEADER_CHANGED`), or `KIND_<n>` for a
/// kind newer than this client.
fn kind_name(kind: i32) -> String {
    match status_event::Kind::try_from(kind) {
        Ok(k) => k.as_str_name().to_string(),
        Err(_) => format!("KIND_{kind}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const M1: u64 = 1 << 32;
    const M2: u64 = (2 << 32) | 3;

    fn member(raft_node_id: u64, voter: bool) -> Member {
        Member {
            member_id: (raft_node_id >> 32) as u32,
            raft_node_id,
            raft_addr: format!("10.0.0.{}:7380", raft_node_id >> 32),
            voter,
            ..Default::default()
        }
    }

    #[test]
    fn status_ids_and_members_in_order() {
        let reply = StatusReply {
            member_id: 2,
            raft_node_id: M2,
            role: "follower".into(),
            term: 4,
            leader_raft_node_id: M1,
            members: vec![member(M2, true), member(M1, true)],
            ..Default::default()
        };
        let s = NodeStatus::from(reply);
        assert_eq!(s.id, "2.3");
        assert_eq!(s.leader.as_deref(), Some("1.0"));
        let ids: Vec<_> = s.members.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["1.0", "2.3"]);
        let no_leader = NodeStatus::from(StatusReply::default());
        assert_eq!(no_leader.leader, None);
    }

    #[test]
    fn health_status_names() {
        assert_eq!(
            HealthView::from_status(1),
            HealthView { status: "SERVING".into(), serving: true }
        );
        assert_eq!(HealthView::from_status(2).status, "NOT_SERVING");
        assert_eq!(HealthView::from_status(3).status, "SERVICE_UNKNOWN");
        let odd = HealthView::from_status(9);
        assert_eq!((odd.status.as_str(), odd.serving), ("status 9", false));
        let row: Row<HealthView> = Row::new("a:1", Ok(HealthView::from_status(1)));
        assert_eq!(
            serde_json::to_value(&row).unwrap(),
            json!({"endpoint": "a:1", "status": "SERVING", "serving": true, "error": null})
        );
    }

    #[test]
    fn rows_flatten_the_reply_in_json() {
        let ok: Row<SnapshotView> = Row::new("a:1", Ok(SnapshotView { index: 42 }));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"endpoint": "a:1", "index": 42, "error": null})
        );
        let failed: Row<SnapshotView> = Row::new::<SnapshotView>("b:2", Err("refused".into()));
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"endpoint": "b:2", "error": "refused"})
        );
    }

    #[test]
    fn membership_json() {
        let reply = MembersReply {
            members: vec![member(M1, true), member(M2, false)],
            leader_raft_node_id: M1,
            log_index: 17,
        };
        let v = serde_json::to_value(Membership::new("a:1", &reply)).unwrap();
        assert_eq!(v["leader"], "1.0");
        assert_eq!(v["leader_raft_node_id"], M1);
        assert_eq!(v["log_index"], 17);
        assert_eq!(v["members"][1]["id"], "2.3");
        assert_eq!(v["members"][1]["voter"], false);
        assert_eq!(v["members"][1]["raft_addr"], "10.0.0.2:7380");
    }

    #[test]
    fn events() {
        let e = EventView::from(StatusEvent {
            kind: status_event::Kind::LeaderChanged as i32,
            time_ms: 1_700_000_000_123,
            term: 7,
            leader_raft_node_id: M2,
            message: "leader is now 2.3".into(),
            ..Default::default()
        });
        assert_eq!(e.time, "2023-11-14T22:13:20.123Z");
        assert_eq!(e.kind, "LEADER_CHANGED");
        assert_eq!(e.leader.as_deref(), Some("2.3"));
        assert_eq!(kind_name(99), "KIND_99");
    }
}
