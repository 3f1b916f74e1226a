//! The in-memory Raft log, for nodes without a data directory.
//!
//! Nothing here survives a restart, so a node using it must never come back
//! under the same Raft node id: it restarts as a new incarnation (see
//! [`types`](crate::types)). `append` reports entries durable at once, which is
//! true for as long as the process lives.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, RaftLogReader};

use crate::network::APPEND_BATCH_BYTES;
use crate::state_machine::proposal_bytes;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote, VoteCell};

#[derive(Debug, Default)]
struct Inner {
    log: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
    vote: Option<Vote>,
}

/// An in-memory log store; clones share the same log.
#[derive(Clone, Debug, Default)]
pub struct MemLogStore {
    inner: Arc<Mutex<Inner>>,
    saved_vote: VoteCell,
}

impl MemLogStore {
    pub fn new() -> MemLogStore {
        MemLogStore::default()
    }

    /// The vote this store last saved.
    pub fn vote_cell(&self) -> VoteCell {
        self.saved_vote.clone()
    }

    /// Appends `entry` (after the last entry) and makes `vote` the vote,
    /// outside openraft, which must not be running over this store: how a
    /// cluster is re-formed from one node (`raftcache-cluster`'s `reform`).
    pub fn force(&self, entry: Entry, vote: Vote) {
        let mut inner = self.lock();
        inner.log.insert(entry.log_id.index, entry);
        inner.vote = Some(vote);
        self.saved_vote.set(vote);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("log lock")
    }
}

impl RaftLogReader<TypeConfig> for MemLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().log.range(range).map(|(_, e)| e.clone()).collect())
    }

    /// Entries from `start` on, stopping before `end` or once the next would
    /// take the batch past [`APPEND_BATCH_BYTES`] (at least one): see the
    /// sled store.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.lock();
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        for (_, entry) in inner.log.range(start..end) {
            bytes += match &entry.payload {
                EntryPayload::Normal(proposal) => proposal_bytes(proposal) + 64,
                _ => 64,
            };
            if !entries.is_empty() && bytes > APPEND_BATCH_BYTES {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for MemLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner.log.values().next_back().map(|e| e.log_id).or(inner.last_purged);
        Ok(LogState { last_purged_log_id: inner.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.lock().vote = Some(*vote);
        self.saved_vote.set(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        {
            let mut inner = self.lock();
            for entry in entries {
                inner.log.insert(entry.log_id.index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let _ = inner.log.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        inner.last_purged = Some(log_id);
        inner.log = inner.log.split_off(&(log_id.index + 1));
        Ok(())
    }
}
