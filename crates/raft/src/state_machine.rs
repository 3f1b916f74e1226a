//! The openraft state machine: the engine plus what Raft needs to know about
//! it (the last applied log id and membership), and its snapshots as files.
//!
//! Applying is a loop over committed entries calling
//! [`State::apply_proposal`], which is pure. The only failures here are I/O
//! errors on snapshot files; they go back to openraft as storage errors and
//! stop the node rather than becoming client replies.
//!
//! A snapshot is written while holding the engine's read lock (reads go on,
//! applying waits), to a temporary file that is renamed into place, with its
//! metadata in a sidecar file. The two most recent snapshots are kept, so one
//! that is being streamed to a follower is not deleted under it.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use raftcache_sm::event::Notify;
use raftcache_sm::unsafe_switches::EngineSwitches;
use raftcache_sm::{Event, Op, Proposal, State};

use crate::types::{
    LogId, Response, SnapshotFile, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// What [`StateMachineStore::open_and_load`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    /// No snapshot: the engine starts empty.
    Nothing,
    /// The engine starts from the snapshot at this log index.
    Snapshot { index: u64 },
    /// The newest snapshot failed verification (the engine starts empty).
    Corrupt { reason: String },
}

/// The engine with the Raft bookkeeping that must change atomically with it.
#[derive(Debug, Default)]
pub struct Machine {
    pub state: State,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

/// The events of one applied entry, as the engine reported them (see
/// `raftcache_sm::event`), with the entry's index and time.
#[derive(Debug)]
pub struct Applied {
    pub index: u64,
    pub time_ms: i64,
    pub events: Vec<Event>,
    /// `notify-keyspace-events` as of this entry (which channels keyspace
    /// events go to).
    pub notify: Notify,
}

/// Where applied events go: called inside apply, in log order, so it must
/// not block (hand the events to a channel or a registry).
pub type EventSink = Box<dyn Fn(Applied) + Send + Sync>;

/// A snapshot the store built or installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// Built from the engine and made current.
    Built,
    /// Received from the leader, verified and installed.
    Installed,
}

/// Told how long each snapshot build or install took (for metrics).
pub type SnapshotObserver = Box<dyn Fn(SnapshotEvent, std::time::Duration) + Send + Sync>;

struct Inner {
    machine: RwLock<Machine>,
    /// Set once by the node; events applied before are dropped (a restart's
    /// replay has no one to tell).
    sink: OnceLock<EventSink>,
    /// Some client of this node tracks keys: report key changes.
    tracking: std::sync::atomic::AtomicBool,
    /// Set once by the node.
    snapshot_observer: OnceLock<SnapshotObserver>,
    dir: PathBuf,
    /// The newest snapshot: its metadata and file.
    current: Mutex<Option<(SnapshotMeta, PathBuf)>>,
    /// Disambiguates snapshot ids built at the same log id.
    seq: AtomicU64,
    /// Size of the commands applied since the state in the newest snapshot
    /// (argument bytes plus 8 per argument), for the snapshot policy.
    applied_bytes: AtomicU64,
    /// Size of the newest snapshot file.
    snapshot_bytes: AtomicU64,
    /// The engine's test-only switches, given to every engine this store
    /// makes or loads (see `raftcache_sm::unsafe_switches`).
    unsafe_switches: Mutex<EngineSwitches>,
}

/// The state machine store; clones share the engine.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachineStore {
    /// A store whose snapshots live in `dir` (created if missing). A snapshot
    /// already there is loaded, so a restart begins from it.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<StateMachineStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let store = StateMachineStore {
            inner: Arc::new(Inner {
                machine: RwLock::new(Machine::default()),
                dir,
                current: Mutex::new(None),
                seq: AtomicU64::new(0),
                applied_bytes: AtomicU64::new(0),
                snapshot_bytes: AtomicU64::new(0),
                sink: OnceLock::new(),
                tracking: std::sync::atomic::AtomicBool::new(false),
                snapshot_observer: OnceLock::new(),
                unsafe_switches: Mutex::new(EngineSwitches::default()),
            }),
        };
        Ok(store)
    }

    /// Opens the store and loads the newest snapshot in `dir`, after checking
    /// its version and checksum and that it matches its metadata. A snapshot
    /// that does not check out is reported, never loaded.
    pub fn open_and_load(dir: impl Into<PathBuf>) -> std::io::Result<(StateMachineStore, Loaded)> {
        let store = StateMachineStore::open(dir)?;
        let mut newest: Option<(SnapshotMeta, PathBuf)> = None;
        for entry in fs::read_dir(&store.inner.dir)?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("meta") {
                continue;
            }
            let meta: SnapshotMeta = match fs::read(&path).map(|b| bincode::deserialize(&b)) {
                Ok(Ok(meta)) => meta,
                _ => {
                    tracing::warn!(path = %path.display(), "ignoring an unreadable snapshot metadata file");
                    continue;
                }
            };
            let index = meta.last_log_id.map_or(0, |l| l.index);
            if newest.as_ref().is_none_or(|(m, _)| m.last_log_id.map_or(0, |l| l.index) < index) {
                newest = Some((meta, path.with_extension("bin")));
            }
        }
        let Some((meta, bin)) = newest else { return Ok((store, Loaded::Nothing)) };
        let loaded = fs::File::open(&bin)
            .map_err(|e| e.to_string())
            .and_then(|f| State::read_snapshot(f).map_err(|e| e.to_string()))
            .and_then(|state| {
                let expected = meta.last_log_id.map_or(0, |l| l.index);
                if state.applied_index() == expected {
                    Ok(state)
                } else {
                    Err(format!(
                        "snapshot holds index {} but its metadata says {expected}",
                        state.applied_index()
                    ))
                }
            });
        match loaded {
            Ok(state) => {
                let index = state.applied_index();
                {
                    let mut machine = store.inner.machine.write().expect("engine lock");
                    machine.state = state;
                    machine.last_applied = meta.last_log_id;
                    machine.membership = meta.last_membership.clone();
                }
                let size = fs::metadata(&bin).map_or(0, |m| m.len());
                store.inner.snapshot_bytes.store(size, Ordering::Relaxed);
                *store.inner.current.lock().expect("snapshot lock") = Some((meta, bin));
                Ok((store, Loaded::Snapshot { index }))
            }
            Err(reason) => {
                tracing::error!(path = %bin.display(), %reason, "snapshot failed verification; not loading it");
                Ok((store, Loaded::Corrupt { reason }))
            }
        }
    }

    /// Turns the engine's test-only switches on (see
    /// `raftcache_sm::unsafe_switches`): for the engine now and for every
    /// engine a snapshot replaces it with later. Call it before Raft starts
    /// applying, on every node alike.
    pub fn set_unsafe_switches(&self, switches: EngineSwitches) {
        *self.inner.unsafe_switches.lock().expect("switches lock") = switches;
        self.inner.machine.write().expect("engine lock").state.set_unsafe_switches(switches);
    }

    /// The engine's test-only switches.
    pub fn unsafe_switches(&self) -> EngineSwitches {
        *self.inner.unsafe_switches.lock().expect("switches lock")
    }

    /// Whether applied entries report key changes (client-side caching on
    /// this node); takes effect from the next applied batch.
    pub fn set_tracking(&self, on: bool) {
        self.inner.tracking.store(on, Ordering::Relaxed);
    }

    /// Sets where applied events go (once; later calls are ignored).
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.inner.sink.set(sink);
    }

    /// Sets who is told each snapshot's build or install time (once; later
    /// calls are ignored).
    pub fn set_snapshot_observer(&self, observer: SnapshotObserver) {
        let _ = self.inner.snapshot_observer.set(observer);
    }

    fn observe(&self, event: SnapshotEvent, started: std::time::Instant) {
        if let Some(observer) = self.inner.snapshot_observer.get() {
            observer(event, started.elapsed());
        }
    }

    /// The size of the commands applied since the newest snapshot's state and
    /// the size of that snapshot, in bytes (for the snapshot policy).
    pub fn compaction_sizes(&self) -> (u64, u64) {
        (
            self.inner.applied_bytes.load(Ordering::Relaxed),
            self.inner.snapshot_bytes.load(Ordering::Relaxed),
        )
    }

    /// Deletes every snapshot file (a node discarding state it cannot trust).
    pub fn wipe(&self) -> std::io::Result<()> {
        for entry in fs::read_dir(&self.inner.dir)?.flatten() {
            fs::remove_file(entry.path())?;
        }
        *self.inner.current.lock().expect("snapshot lock") = None;
        let mut fresh = Machine::default();
        fresh.state.set_unsafe_switches(self.unsafe_switches());
        *self.inner.machine.write().expect("engine lock") = fresh;
        Ok(())
    }

    /// Shared read access to the engine (for serving reads).
    pub fn read(&self) -> RwLockReadGuard<'_, Machine> {
        self.inner.machine.read().expect("engine lock")
    }

    /// The directory snapshots are kept in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A fresh path for an incoming snapshot.
    pub fn incoming_path(&self) -> PathBuf {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        self.inner.dir.join(format!("incoming-{}-{n}.tmp", std::process::id()))
    }

    fn snapshot_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.inner.dir.join(format!("snapshot-{id}.bin")),
            self.inner.dir.join(format!("snapshot-{id}.meta")),
        )
    }

    /// Makes `(meta, path)` the current snapshot and deletes all but the
    /// previous one.
    fn set_current(&self, meta: SnapshotMeta, path: PathBuf) -> std::io::Result<()> {
        let size = fs::metadata(&path)?.len();
        self.inner.snapshot_bytes.store(size, Ordering::Relaxed);
        let (_, meta_path) = self.snapshot_paths(&meta.snapshot_id);
        let mut f = BufWriter::new(fs::File::create(&meta_path)?);
        f.write_all(&bincode::serialize(&meta).map_err(std::io::Error::other)?)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        // The renames and the new metadata file are durable once the directory is.
        fs::File::open(&self.inner.dir)?.sync_all()?;
        let mut current = self.inner.current.lock().expect("snapshot lock");
        let previous = current.replace((meta, path));
        drop(current);
        let keep: Vec<String> = [previous.map(|(m, _)| m.snapshot_id), self.current_id()]
            .into_iter()
            .flatten()
            .collect();
        for entry in fs::read_dir(&self.inner.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_prefix("snapshot-") else { continue };
            let id = id.trim_end_matches(".bin").trim_end_matches(".meta");
            if !keep.iter().any(|k| k == id) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn current_id(&self) -> Option<String> {
        self.inner
            .current
            .lock()
            .expect("snapshot lock")
            .as_ref()
            .map(|(m, _)| m.snapshot_id.clone())
    }

    /// Writes a snapshot of the current state; returns its metadata and file.
    ///
    /// The engine is locked only while it is cloned: values are reference
    /// counted ([`bytes::Bytes`]), so the clone copies the keyspace's structure
    /// but no value bytes, and costs a fraction of serializing. Writes keep
    /// being applied while the clone is serialized to the file.
    fn build(&self) -> std::io::Result<(SnapshotMeta, PathBuf)> {
        let started = std::time::Instant::now();
        let machine = self.read();
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let id = match machine.last_applied {
            Some(l) => format!("{}-{}-{}-{n}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("0-0-0-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: machine.last_applied,
            last_membership: machine.membership.clone(),
            snapshot_id: id.clone(),
        };
        let state = machine.state.clone();
        // Apply waits for the read lock to go: nothing is applied between the
        // clone and this reset.
        self.inner.applied_bytes.store(0, Ordering::Relaxed);
        drop(machine);
        let locked = started.elapsed();
        let (path, _) = self.snapshot_paths(&id);
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp)?;
        state.write_snapshot(&mut file)?;
        drop(state);
        file.sync_all()?;
        tracing::info!(?locked, total = ?started.elapsed(), snapshot = %id, "built snapshot");
        fs::rename(&tmp, &path)?;
        Ok((meta, path))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let this = self.clone();
        let (meta, path) = tokio::task::spawn_blocking(move || this.build())
            .await
            .map_err(|e| io_err(std::io::Error::other(e)))?
            .map_err(io_err)?;
        self.set_current(meta.clone(), path.clone()).map_err(io_err)?;
        self.observe(SnapshotEvent::Built, started);
        Ok(Snapshot { meta, snapshot: Box::new(SnapshotFile { path }) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let machine = self.read();
        Ok((machine.last_applied, machine.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = crate::types::Entry> + Send,
        I::IntoIter: Send,
    {
        let mut machine = self.inner.machine.write().expect("engine lock");
        machine.state.set_tracking(self.inner.tracking.load(Ordering::Relaxed));
        let mut responses = Vec::new();
        for entry in entries {
            machine.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => Response::default(),
                EntryPayload::Normal(ref proposal) => {
                    self.inner.applied_bytes.fetch_add(proposal_bytes(proposal), Ordering::Relaxed);
                    let replies = machine.state.apply_proposal(entry.log_id.index, proposal);
                    let events = machine.state.take_events();
                    if !events.is_empty() {
                        if let Some(sink) = self.inner.sink.get() {
                            let index = entry.log_id.index;
                            let notify = machine.state.notify();
                            sink(Applied { index, time_ms: proposal.time_ms, events, notify });
                        }
                    }
                    Response(replies)
                }
                EntryPayload::Membership(membership) => {
                    machine.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::default()
                }
            };
            responses.push(response);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(SnapshotFile { path: self.incoming_path() }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let path = snapshot.path;
        let read_path = path.clone();
        // Verify (version, checksum) and decode before touching the engine:
        // a snapshot that does not check out is never served.
        let state = tokio::task::spawn_blocking(move || {
            let file = fs::File::open(&read_path)?;
            State::read_snapshot(file).map_err(std::io::Error::other)
        })
        .await
        .map_err(|e| io_err(std::io::Error::other(e)))?
        .map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        })?;
        let mut state = state;
        state.set_unsafe_switches(self.unsafe_switches());
        {
            let mut machine = self.inner.machine.write().expect("engine lock");
            machine.state = state;
            machine.last_applied = meta.last_log_id;
            machine.membership = meta.last_membership.clone();
            self.inner.applied_bytes.store(0, Ordering::Relaxed);
        }
        let (final_path, _) = self.snapshot_paths(&meta.snapshot_id);
        if path.parent() == Some(self.dir()) {
            fs::rename(&path, &final_path).map_err(io_err)?;
        } else if path != final_path {
            // Not ours (a caller handed us another store's file): copy it.
            fs::copy(&path, &final_path).map_err(io_err)?;
        }
        self.set_current(meta.clone(), final_path).map_err(io_err)?;
        self.observe(SnapshotEvent::Installed, started);
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self.inner.current.lock().expect("snapshot lock").clone();
        Ok(current.map(|(meta, path)| Snapshot { meta, snapshot: Box::new(SnapshotFile { path }) }))
    }
}

/// What a proposal adds to the log, roughly: its arguments' bytes and 8 bytes
/// per argument (other operations count 16).
pub(crate) fn proposal_bytes(proposal: &Proposal) -> u64 {
    proposal
        .ops
        .iter()
        .map(|op| match op {
            Op::Command { argv, .. } => argv.iter().map(|a| a.len() as u64 + 8).sum(),
            _ => 16,
        })
        .sum()
}
