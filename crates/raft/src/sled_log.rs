//! The durable Raft log: vote, log entries and commit position in sled.
//!
//! Each entry is stored under its index (big-endian, so sled's order is log
//! order) as `crc32 (4 bytes LE) || bincode(entry)`. Opening the store checks
//! every entry's checksum and that indexes are contiguous; at the first bad or
//! missing entry the rest of the log is cut off and the cut is logged, so a torn
//! or damaged tail is dropped rather than served (the leader sends those
//! entries again).
//!
//! # When data is durable
//! [`Fsync`] follows Redis's `appendfsync`:
//! - `Always`: `append` reports entries durable only after sled has written and
//!   fsynced them, so a process crash or power loss loses no entry this node
//!   acknowledged.
//! - `EverySec`: sled flushes in the background every second; a crash can lose
//!   the last second of this node's log.
//! - `No`: sled flushes when its buffers fill and at clean shutdown.
//!
//! The vote is fsynced before `save_vote` returns under every policy: votes are
//! rare, and a forgotten vote could elect two leaders in one term. A node whose
//! log may have lost acknowledged entries (an unclean stop under `EverySec` or
//! `No`) must not rejoin under its old identity; the node crate enforces that
//! (see ARCHITECTURE.md).
//!
//! # The watermark
//! sled recovers from a damaged file by dropping what it cannot read, without
//! saying so. To notice, the store keeps a *watermark*: the last index it has
//! reported durable, in a small file beside sled's (`watermark`), rewritten
//! after every append and truncation. A process crash cannot lose that write
//! (it is in the OS page cache); a log that opens shorter than its watermark
//! has lost entries this node acknowledged, and [`Recovery::lost`] says so.
//!
//! # Purging
//! Compaction behind a snapshot records the purge point at once and removes
//! the entries in the background, oldest first, in small batches: removing
//! thousands of entries from sled takes seconds, and openraft waits for
//! `purge` before it appends or replicates again. Entries at or below the
//! purge point are never read; any left by a crash are removed when the store
//! opens, before the log is verified.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::APPEND_BATCH_BYTES;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote, VoteCell};

/// When appended entries are fsynced (Redis's `appendfsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    EverySec,
    No,
}

impl Fsync {
    pub fn parse(s: &str) -> Option<Fsync> {
        match s {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }

    /// The policy's `appendfsync` name.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }
}

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_PURGED: &[u8] = b"last_purged";

/// A sled-backed log store; clones share the database.
#[derive(Clone)]
pub struct SledLogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    fsync: Fsync,
    watermark: std::sync::Arc<std::sync::Mutex<std::fs::File>>,
    /// The purge point plus one (0: nothing purged).
    purged: Arc<AtomicU64>,
    /// Held while purged entries are removed, so removal is oldest first.
    purging: Arc<std::sync::Mutex<()>>,
    /// The vote last made durable.
    saved_vote: VoteCell,
}

/// Entries removed per sled batch when purging.
const PURGE_BATCH: usize = 256;

impl Debug for SledLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledLogStore").field("fsync", &self.fsync).finish()
    }
}

fn io(
    subject: ErrorSubject<u64>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, &e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    io(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    io(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn encode_entry(entry: &Entry) -> Vec<u8> {
    let body = bincode::serialize(entry).expect("entries serialize");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Corrupt(String);

fn decode_entry(index: u64, raw: &[u8]) -> Result<Entry, Corrupt> {
    if raw.len() < 4 {
        return Err(Corrupt(format!("entry {index} is truncated")));
    }
    let (crc, body) = raw.split_at(4);
    if u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) != crc32fast::hash(body) {
        return Err(Corrupt(format!("entry {index} fails its checksum")));
    }
    let entry: Entry =
        bincode::deserialize(body).map_err(|e| Corrupt(format!("entry {index}: {e}")))?;
    if entry.log_id.index != index {
        return Err(Corrupt(format!(
            "entry stored at {index} claims index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

fn get_meta<T: DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<Option<T>, StorageError> {
    match tree.get(key).map_err(read_err)? {
        None => Ok(None),
        Some(v) => bincode::deserialize(&v).map(Some).map_err(read_err),
    }
}

fn put_meta<T: Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> Result<(), StorageError> {
    let bytes = bincode::serialize(value).map_err(write_err)?;
    tree.insert(key, bytes).map_err(write_err)?;
    Ok(())
}

/// What [`SledLogStore::open`] found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Entries checked.
    pub entries: u64,
    /// The first index cut off, and how many entries were cut.
    pub dropped: Option<(u64, u64)>,
    /// The log ends before the watermark: `(last index found, watermark)`.
    /// This node acknowledged entries it no longer has.
    pub lost: Option<(u64, u64)>,
}

impl SledLogStore {
    /// Opens (or creates) the log at `path`, verifying every entry and cutting
    /// off a damaged tail.
    pub fn open(
        path: impl AsRef<Path>,
        fsync: Fsync,
    ) -> Result<(SledLogStore, Recovery), StorageError> {
        let flush_every = match fsync {
            Fsync::Always => None,
            Fsync::EverySec => Some(1000),
            Fsync::No => None,
        };
        let db = sled::Config::new()
            .path(path.as_ref())
            .flush_every_ms(flush_every)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(read_err)?;
        let log = db.open_tree("log").map_err(read_err)?;
        let meta = db.open_tree("meta").map_err(read_err)?;
        let watermark_path = path.as_ref().join("watermark");
        let recorded = std::fs::read(&watermark_path)
            .ok()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&watermark_path)
            .map_err(write_err)?;
        let watermark = std::sync::Arc::new(std::sync::Mutex::new(file));
        let purged: Option<LogId> = get_meta::<Option<LogId>>(&meta, KEY_PURGED)?.flatten();
        let store = SledLogStore {
            db,
            log,
            meta,
            fsync,
            watermark,
            purged: Arc::new(AtomicU64::new(purged.map_or(0, |l| l.index + 1))),
            purging: Arc::default(),
            saved_vote: VoteCell::default(),
        };
        if let Some(vote) = get_meta::<Vote>(&store.meta, KEY_VOTE)? {
            store.saved_vote.set(vote);
        }
        // Entries a purge had not yet removed when the process stopped: they
        // may be followed by a gap (a snapshot installed past them), which
        // verification would take for damage.
        if let Some(p) = purged {
            let removed = store.remove_through(p.index).map_err(write_err)?;
            if removed > 0 {
                tracing::info!(removed, through = p.index, "finished an interrupted log purge");
            }
        }
        let mut recovery = store.verify()?;
        let last = store.last_index()?;
        if let Some(w) = recorded {
            if last < w {
                tracing::warn!(
                    last,
                    watermark = w,
                    "the Raft log ends before the last index this node acknowledged: entries were lost"
                );
                recovery.lost = Some((last, w));
            }
        }
        // A detected loss keeps its watermark until the state is wiped, so a
        // crash before then cannot hide it.
        if recovery.lost.is_none() {
            store.set_watermark(last)?;
        }
        Ok((store, recovery))
    }

    /// The vote this store last made durable.
    pub fn vote_cell(&self) -> VoteCell {
        self.saved_vote.clone()
    }

    /// The last index in the log (or the last purged one), 0 if none.
    fn last_index(&self) -> Result<u64, StorageError> {
        if let Some((key, _)) = self.log.last().map_err(read_err)? {
            let bytes: [u8; 8] =
                key.as_ref().try_into().map_err(|_| read_err(Corrupt("bad key".into())))?;
            return Ok(u64::from_be_bytes(bytes));
        }
        let purged: Option<LogId> = get_meta::<Option<LogId>>(&self.meta, KEY_PURGED)?.flatten();
        Ok(purged.map_or(0, |l| l.index))
    }

    /// Records `index` as the last durable index (see the module docs).
    fn set_watermark(&self, index: u64) -> Result<(), StorageError> {
        use std::os::unix::fs::FileExt;
        let file = self.watermark.lock().expect("watermark lock");
        file.write_all_at(&index.to_le_bytes(), 0).map_err(write_err)
    }

    /// The purge point, if any.
    fn purged_index(&self) -> Option<u64> {
        self.purged.load(Ordering::Acquire).checked_sub(1)
    }

    /// Removes every entry at or below `index`, oldest first, a batch at a
    /// time. Returns how many were removed.
    fn remove_through(&self, index: u64) -> Result<u64, sled::Error> {
        let _oldest_first = self.purging.lock().expect("purge lock");
        let mut removed = 0;
        loop {
            let doomed: Vec<sled::IVec> = self
                .log
                .range(..=index.to_be_bytes())
                .keys()
                .take(PURGE_BATCH)
                .collect::<Result<_, _>>()?;
            if doomed.is_empty() {
                return Ok(removed);
            }
            removed += doomed.len() as u64;
            let mut batch = sled::Batch::default();
            for key in doomed {
                batch.remove(key);
            }
            self.log.apply_batch(batch)?;
        }
    }

    /// Checks every entry; removes everything from the first bad one on.
    fn verify(&self) -> Result<Recovery, StorageError> {
        let mut recovery = Recovery::default();
        let mut expected: Option<u64> = None;
        let mut cut: Option<(u64, String)> = None;
        for item in self.log.iter() {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.as_ref().try_into().map_err(|_| read_err(Corrupt("bad key".into())))?,
            );
            if let Some(e) = expected {
                if index != e {
                    cut = Some((e.min(index), format!("entries {e}..{index} are missing")));
                    break;
                }
            }
            if let Err(e) = decode_entry(index, &value) {
                // An entry a newer version wrote is not damage: cutting it
                // would throw away acknowledged writes. Refuse to start.
                if e.0.contains(raftcache_sm::format::NEWER_FORMAT) {
                    return Err(read_err(Corrupt(format!(
                        "the Raft log holds entries a newer raftcache wrote ({}); run that version \
                         (a node cannot be downgraded past a log-entry format it has written)",
                        e.0
                    ))));
                }
                cut = Some((index, e.0));
                break;
            }
            recovery.entries += 1;
            expected = Some(index + 1);
        }
        if let Some((from, why)) = cut {
            let doomed: Vec<sled::IVec> = self
                .log
                .range(from.to_be_bytes()..)
                .keys()
                .collect::<Result<_, _>>()
                .map_err(read_err)?;
            let n = doomed.len() as u64;
            for key in doomed {
                self.log.remove(key).map_err(write_err)?;
            }
            self.db.flush().map_err(write_err)?;
            tracing::warn!(from, dropped = n, reason = %why, "cut a damaged tail off the Raft log; the leader will resend it");
            recovery.dropped = Some((from, n));
        }
        Ok(recovery)
    }

    /// Forgets all Raft state (vote, log, commit position): for a node that
    /// rejoins under a new identity because it cannot trust what it has.
    pub fn wipe(&self) -> Result<(), StorageError> {
        let _no_removal_now = self.purging.lock().expect("purge lock");
        self.log.clear().map_err(write_err)?;
        self.meta.clear().map_err(write_err)?;
        self.db.flush().map_err(write_err)?;
        // The in-memory purge point and vote go too: a purge point left
        // behind hid the entries the new incarnation was sent below it
        // (openraft then stopped: "try to get log at index N but got M").
        self.purged.store(0, Ordering::Release);
        self.saved_vote.clear();
        self.set_watermark(0)
    }

    /// Flushes everything to disk (clean shutdown, snapshots).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map_err(write_err)?;
        Ok(())
    }

    /// The database's size on disk in bytes (0 if it cannot be read).
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// The policy this store was opened with.
    pub fn fsync(&self) -> Fsync {
        self.fsync
    }

    /// Appends `entry` (after the last entry) and makes `vote` the vote,
    /// durably, outside openraft, which must not be running over this store:
    /// how a cluster is re-formed from one node (`raftcache-cluster`'s
    /// `reform`).
    pub async fn force(&self, entry: Entry, vote: Vote) -> Result<(), StorageError> {
        let index = entry.log_id.index;
        self.log.insert(index.to_be_bytes(), encode_entry(&entry)).map_err(write_err)?;
        put_meta(&self.meta, KEY_VOTE, &vote)?;
        self.db.flush_async().await.map_err(write_err)?;
        self.set_watermark(index)?;
        self.saved_vote.set(vote);
        Ok(())
    }

    /// True if the store holds any Raft state (vote or entries).
    pub fn has_state(&self) -> Result<bool, StorageError> {
        Ok(self.meta.get(KEY_VOTE).map_err(read_err)?.is_some() || !self.log.is_empty())
    }

    async fn sync_if_always(&self) -> Result<(), StorageError> {
        if self.fsync == Fsync::Always {
            self.db.flush_async().await.map_err(write_err)?;
        }
        Ok(())
    }
}

fn bound_to_key(b: Bound<&u64>) -> Bound<[u8; 8]> {
    match b {
        Bound::Included(i) => Bound::Included(i.to_be_bytes()),
        Bound::Excluded(i) => Bound::Excluded(i.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (bound_to_key(range.start_bound()), bound_to_key(range.end_bound()));
        let purged = self.purged_index();
        let mut entries = Vec::new();
        for item in self.log.range(range) {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.as_ref().try_into().map_err(|_| read_err(Corrupt("bad key".into())))?,
            );
            if purged.is_some_and(|p| index <= p) {
                continue; // purged, removal still in progress
            }
            entries.push(decode_entry(index, &value).map_err(read_err)?);
        }
        Ok(entries)
    }

    /// Entries from `start` on, stopping before `end` or once the next
    /// would take the batch past [`APPEND_BATCH_BYTES`] (at least one), so
    /// replication to a follower far behind goes in batches that fit one
    /// AppendEntries.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let purged = self.purged_index();
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        for item in self.log.range(start.to_be_bytes()..end.to_be_bytes()) {
            let (key, value) = item.map_err(read_err)?;
            let index = u64::from_be_bytes(
                key.as_ref().try_into().map_err(|_| read_err(Corrupt("bad key".into())))?,
            );
            if purged.is_some_and(|p| index <= p) {
                continue; // purged, removal still in progress
            }
            bytes += value.len() as u64;
            if !entries.is_empty() && bytes > APPEND_BATCH_BYTES {
                break;
            }
            entries.push(decode_entry(index, &value).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> =
            get_meta::<Option<LogId>>(&self.meta, KEY_PURGED)?.flatten();
        let last = match self.log.last().map_err(read_err)? {
            Some((key, value)) => {
                let index = u64::from_be_bytes(
                    key.as_ref().try_into().map_err(|_| read_err(Corrupt("bad key".into())))?,
                );
                if last_purged.is_some_and(|p| index <= p.index) {
                    last_purged // only purged entries left, being removed
                } else {
                    Some(decode_entry(index, &value).map_err(read_err)?.log_id)
                }
            }
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        put_meta(&self.meta, KEY_VOTE, vote)?;
        // Always durable: a forgotten vote could elect two leaders in a term.
        self.db.flush_async().await.map_err(|e| io(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.saved_vote.set(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        get_meta(&self.meta, KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Cheap to keep current: one small insert, never fsynced on its own.
        // It only lets a restarted node re-apply committed entries before it
        // hears from a leader; safety does not depend on it.
        put_meta(&self.meta, KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(get_meta::<Option<LogId>>(&self.meta, KEY_COMMITTED)?.flatten())
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
        let mut batch = sled::Batch::default();
        let mut last = None;
        for entry in entries {
            batch.insert(&entry.log_id.index.to_be_bytes(), encode_entry(&entry));
            last = Some(entry.log_id.index);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        let result = match self.fsync {
            // Report durability only once sled has fsynced the batch.
            Fsync::Always => self.db.flush_async().await.map(|_| ()).map_err(std::io::Error::other),
            Fsync::EverySec | Fsync::No => Ok(()),
        };
        if result.is_ok() {
            if let Some(last) = last {
                self.set_watermark(last)?;
            }
        }
        callback.log_io_completed(result);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let doomed: Vec<sled::IVec> = self
            .log
            .range(log_id.index.to_be_bytes()..)
            .keys()
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        let mut batch = sled::Batch::default();
        for key in doomed {
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.sync_if_always().await?;
        self.set_watermark(log_id.index.saturating_sub(1))
    }

    /// Records the purge point durably, then removes the entries in the
    /// background (see the module docs). The point is flushed first so that a
    /// crash can never keep a removal but lose the point (the log would then
    /// have a hole openraft expects to read).
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        put_meta(&self.meta, KEY_PURGED, &Some(log_id))?;
        self.db.flush_async().await.map_err(write_err)?;
        self.purged.fetch_max(log_id.index + 1, Ordering::AcqRel);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = this.remove_through(log_id.index) {
                tracing::warn!(error = %e, through = log_id.index, "removing purged log entries");
            }
        });
        Ok(())
    }
}
