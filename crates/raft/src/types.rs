//! The openraft type configuration and node identities.
//!
//! A Raft node id is a member id (`--id`) and an *incarnation* in one `u64`:
//! `member << 32 | incarnation`. A node with a data directory keeps its
//! incarnation across restarts; a memory-only node that restarts has forgotten
//! its vote and log, so it comes back as a new incarnation that has never voted
//! and joins as a learner before replacing the old one (see ARCHITECTURE.md).

use std::fmt;
use std::path::PathBuf;

use openraft::BasicNode;
use raftcache_sm::{Proposal, Reply};
use serde::{Deserialize, Serialize};

/// A Raft node id: member id and incarnation.
pub type NodeId = u64;

/// The member id of a Raft node id.
pub fn member_of(id: NodeId) -> u32 {
    (id >> 32) as u32
}

/// The incarnation of a Raft node id.
pub fn incarnation_of(id: NodeId) -> u32 {
    id as u32
}

/// The Raft node id of a member's incarnation.
pub fn node_id(member: u32, incarnation: u32) -> NodeId {
    (u64::from(member) << 32) | u64::from(incarnation)
}

/// `member.incarnation`, for logs and INFO.
pub struct ShowId(pub NodeId);

impl fmt::Display for ShowId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", member_of(self.0), incarnation_of(self.0))
    }
}

/// What applying one entry returns: one reply per operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Vec<Reply>);

/// A snapshot on disk. Snapshots stream from and to files, so neither the
/// sender nor the receiver holds one in memory.
#[derive(Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

openraft::declare_raft_types!(
    /// raftcache's openraft types.
    pub TypeConfig:
        D = Proposal,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
/// A membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
/// A Raft log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;

/// The vote a log store last made durable, readable without going through
/// openraft. A node that answers a leadership confirmation (read index) checks
/// it: a node whose durable vote is still for leader `L` in term `T` has not
/// voted for anyone in a later term, so no later leader can have been elected
/// with its help. Clones share the cell.
#[derive(Clone, Debug, Default)]
pub struct VoteCell(std::sync::Arc<std::sync::Mutex<Option<Vote>>>);

impl VoteCell {
    /// The last durable vote.
    pub fn get(&self) -> Option<Vote> {
        *self.0.lock().expect("vote cell")
    }

    /// Records a vote once it is durable.
    pub(crate) fn set(&self, vote: Vote) {
        *self.0.lock().expect("vote cell") = Some(vote);
    }

    /// Forgets the vote (its store was wiped).
    pub(crate) fn clear(&self) {
        *self.0.lock().expect("vote cell") = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pack_member_and_incarnation() {
        let id = node_id(3, 0xdead_beef);
        assert_eq!(member_of(id), 3);
        assert_eq!(incarnation_of(id), 0xdead_beef);
        assert_eq!(ShowId(node_id(2, 7)).to_string(), "2.7");
    }
}
