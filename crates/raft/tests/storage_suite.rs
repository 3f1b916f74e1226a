//! openraft's storage conformance suite against the stores raftcache ships.

use openraft::testing::{StoreBuilder, Suite};
use raftcache_raft::mem_log::MemLogStore;
use raftcache_raft::state_machine::StateMachineStore;
use raftcache_raft::types::{StorageError, TypeConfig};

/// Opens a store that this process has just closed. sled releases its file
/// lock from a background thread shortly after the last handle is dropped,
/// so an immediate reopen can find the lock still held ("could not acquire
/// lock"); a restarted node is a new process and never sees this.
fn reopen<T>(mut open: impl FnMut() -> Result<T, String>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Ok(store) => return store,
            Err(e)
                if e.contains("could not acquire lock") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("reopening the store: {e}"),
        }
    }
}

fn reopen_log(
    path: &std::path::Path,
) -> (raftcache_raft::sled_log::SledLogStore, raftcache_raft::sled_log::Recovery) {
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    reopen(|| SledLogStore::open(path, Fsync::Always).map_err(|e| format!("{e:?}")))
}

fn reopen_sled(path: &std::path::Path) -> sled::Db {
    reopen(|| sled::open(path).map_err(|e| format!("{e:?}")))
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, MemLogStore, StateMachineStore, tempfile::TempDir> for MemBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, MemLogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let sm = StateMachineStore::open(dir.path().join("snapshots")).expect("open state machine");
        Ok((dir, MemLogStore::new(), sm))
    }
}

#[test]
fn mem_log_and_state_machine_pass_the_openraft_suite() {
    if let Err(e) = Suite::test_all(MemBuilder) {
        panic!("storage suite failed: {e}");
    }
}

struct SledBuilder(raftcache_raft::sled_log::Fsync);

impl
    StoreBuilder<
        TypeConfig,
        raftcache_raft::sled_log::SledLogStore,
        StateMachineStore,
        tempfile::TempDir,
    > for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (tempfile::TempDir, raftcache_raft::sled_log::SledLogStore, StateMachineStore),
        StorageError,
    > {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, _) =
            raftcache_raft::sled_log::SledLogStore::open(dir.path().join("raft"), self.0)?;
        let sm = StateMachineStore::open(dir.path().join("snapshots")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_log_passes_the_openraft_suite_under_every_fsync_policy() {
    use raftcache_raft::sled_log::Fsync;
    for policy in [Fsync::Always, Fsync::EverySec, Fsync::No] {
        if let Err(e) = Suite::test_all(SledBuilder(policy)) {
            panic!("storage suite failed under {policy:?}: {e}");
        }
    }
}

#[test]
fn a_damaged_log_tail_is_cut_off_on_open() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut log, recovery) = SledLogStore::open(&path, Fsync::Always).unwrap();
        assert_eq!(recovery.dropped, None);
        let entries: Vec<_> = (1..=10)
            .map(|i| raftcache_raft::types::Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        log.blocking_append(entries).await.unwrap();
        assert_eq!(log.get_log_state().await.unwrap().last_log_id.map(|l| l.index), Some(10));
    });
    // Damage entry 7's bytes on disk, as a bit flip would, with the store closed.
    {
        let db = reopen_sled(&path);
        let tree = db.open_tree("log").unwrap();
        let mut v = tree.get(7u64.to_be_bytes()).unwrap().unwrap().to_vec();
        let last = v.len() - 1;
        v[last] ^= 0xff;
        tree.insert(7u64.to_be_bytes(), v).unwrap();
        db.flush().unwrap();
    }
    let (mut log, recovery) = reopen_log(&path);
    assert_eq!(recovery.dropped, Some((7, 4)), "entries 7..=10 are cut");
    assert_eq!(recovery.entries, 6);
    rt.block_on(async {
        assert_eq!(log.get_log_state().await.unwrap().last_log_id.map(|l| l.index), Some(6));
    });
}

#[test]
fn a_log_that_lost_acknowledged_entries_says_so() {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut log, _) = SledLogStore::open(&path, Fsync::Always).unwrap();
        let entries: Vec<_> = (1..=5)
            .map(|i| raftcache_raft::types::Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        log.blocking_append(entries).await.unwrap();
    });
    // Entries 4 and 5 vanish, as when sled drops a damaged segment silently.
    {
        let db = reopen_sled(&path);
        let tree = db.open_tree("log").unwrap();
        tree.remove(4u64.to_be_bytes()).unwrap();
        tree.remove(5u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let (log, recovery) = reopen_log(&path);
    assert_eq!(recovery.lost, Some((3, 5)), "the log ends at 3 but 5 was acknowledged");
    drop(log);
    // Still reported until the state is wiped: a crash cannot hide the loss.
    let (log, recovery) = reopen_log(&path);
    assert_eq!(recovery.lost, Some((3, 5)));
    log.wipe().unwrap();
    drop(log);
    let (_log, recovery) = reopen_log(&path);
    assert_eq!(recovery.lost, None);
}

#[test]
fn entries_an_interrupted_purge_left_behind_are_removed_before_verification() {
    use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    let entry = |i| raftcache_raft::types::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
        payload: EntryPayload::Blank,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (mut log, _) = SledLogStore::open(&path, Fsync::Always).unwrap();
            log.blocking_append((1..=10).map(entry)).await.unwrap();
            // A snapshot installed past the log: purge beyond it, then the
            // entries after the snapshot arrive.
            log.purge(LogId::new(CommittedLeaderId::new(1, 0), 20)).await.unwrap();
            log.blocking_append((21..=23).map(entry)).await.unwrap();
            let state = log.get_log_state().await.unwrap();
            assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(20));
            assert_eq!(state.last_log_id.map(|l| l.index), Some(23));
            let read: Vec<u64> = log
                .try_get_log_entries(0..100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.log_id.index)
                .collect();
            assert_eq!(read, vec![21, 22, 23], "purged entries are never read");
        });
        // Dropping the runtime waits for the background removal to finish.
    }
    // As if the process stopped before the removal: entries below the purge
    // point, followed by a gap. Their bytes are not even valid entries.
    {
        let db = reopen_sled(&path);
        let tree = db.open_tree("log").unwrap();
        assert!(tree.get(5u64.to_be_bytes()).unwrap().is_none(), "the purge removed entry 5");
        for i in 3u64..=10 {
            tree.insert(i.to_be_bytes(), b"left behind".to_vec()).unwrap();
        }
        db.flush().unwrap();
    }
    let (mut log, recovery) = reopen_log(&path);
    assert_eq!(recovery.dropped, None, "leftovers are not mistaken for a damaged log");
    assert_eq!(recovery.lost, None);
    assert_eq!(recovery.entries, 3);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(20));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(23));
        let read: Vec<u64> =
            log.try_get_log_entries(0..100).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(read, vec![21, 22, 23]);
    });
}

/// A node that discards its state and rejoins as a new incarnation wipes its
/// log; the new incarnation is then sent an older snapshot and the entries
/// after it. The old purge point must not survive the wipe in memory: it hid
/// those entries (seen in a rolling restart under everysec: openraft stopped
/// with "try to get log at index 80117 but got Some(80147)").
#[test]
fn a_wipe_forgets_the_purge_point_and_the_vote() {
    use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    let entry = |i| raftcache_raft::types::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
        payload: EntryPayload::Blank,
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut log, _) = SledLogStore::open(dir.path().join("raft"), Fsync::EverySec).unwrap();
        log.save_vote(&openraft::Vote::new(3, 7)).await.unwrap();
        log.blocking_append((1..=10).map(entry)).await.unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 0), 6)).await.unwrap();
        assert!(log.vote_cell().get().is_some());
        log.wipe().unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (None, None));
        assert_eq!(log.read_vote().await.unwrap(), None);
        assert_eq!(log.vote_cell().get(), None, "the vote read confirmations use is gone too");
        // The new incarnation installs an older snapshot (purge through 3)
        // and receives the entries after it.
        log.purge(LogId::new(CommittedLeaderId::new(1, 0), 3)).await.unwrap();
        log.blocking_append((4..=8).map(entry)).await.unwrap();
        let read: Vec<u64> =
            log.try_get_log_entries(4..9).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(read, vec![4, 5, 6, 7, 8]);
    });
}

/// Replication to a follower far behind reads its entries in batches of at
/// most `APPEND_BATCH_BYTES` (at least one entry), from both stores, so an
/// AppendEntries is never refused as too large.
#[test]
fn replication_batches_are_limited_by_size() {
    use openraft::storage::{RaftLogReader, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftcache_raft::network::APPEND_BATCH_BYTES;
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    use raftcache_sm::{Op, Proposal};

    // Ten entries of 300 KB each, then one of 2 MB.
    let entry = |i: u64| {
        let size = if i == 11 { 2 << 20 } else { 300_000 };
        let ops = vec![Op::Command { db: 0, argv: vec![bytes::Bytes::from(vec![b'x'; size])] }];
        raftcache_raft::types::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
            payload: EntryPayload::Normal(Proposal {
                time_ms: 0,
                seed: 0,
                origin: None,
                ops: std::sync::Arc::new(ops),
            }),
        }
    };
    let per_batch = (APPEND_BATCH_BYTES / 300_000) as usize;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut sled, _) = SledLogStore::open(dir.path().join("raft"), Fsync::No).unwrap();
        let mut mem = MemLogStore::new();
        sled.blocking_append((1..=11).map(entry)).await.unwrap();
        mem.blocking_append((1..=11).map(entry)).await.unwrap();
        for (name, batches) in [
            ("sled", {
                let mut out = Vec::new();
                for (start, end) in [(1, 12), (1 + per_batch as u64, 12), (11, 12), (11, 11)] {
                    let got = sled.limited_get_log_entries(start, end.max(start)).await.unwrap();
                    out.push(got.iter().map(|e| e.log_id.index).collect::<Vec<_>>());
                }
                out
            }),
            ("mem", {
                let mut out = Vec::new();
                for (start, end) in [(1, 12), (1 + per_batch as u64, 12), (11, 12), (11, 11)] {
                    let got = mem.limited_get_log_entries(start, end.max(start)).await.unwrap();
                    out.push(got.iter().map(|e| e.log_id.index).collect::<Vec<_>>());
                }
                out
            }),
        ] {
            let first: Vec<u64> = (1..=per_batch as u64).collect();
            assert_eq!(batches[0], first, "{name}: the first batch fits the budget");
            assert_eq!(batches[1].first().copied(), Some(1 + per_batch as u64), "{name}");
            assert!(batches[1].len() <= per_batch, "{name}: {:?}", batches[1]);
            assert_eq!(batches[2], vec![11], "{name}: an entry larger than the budget goes alone");
            assert!(batches[3].is_empty(), "{name}");
        }
    });
}

#[test]
fn entries_of_a_newer_format_stop_the_open_instead_of_being_cut() {
    use openraft::storage::RaftLogStorageExt;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use raftcache_raft::sled_log::{Fsync, SledLogStore};
    use raftcache_sm::format::ENTRY_FORMAT;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (mut log, _) = SledLogStore::open(&path, Fsync::Always).unwrap();
        let entries: Vec<_> = (1..=5)
            .map(|i| raftcache_raft::types::Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 0), i),
                payload: EntryPayload::Normal(raftcache_sm::Proposal {
                    time_ms: 1_764_800_000_000 + i as i64,
                    seed: i,
                    origin: None,
                    ops: std::sync::Arc::new(vec![]),
                }),
            })
            .collect();
        log.blocking_append(entries).await.unwrap();
    });
    // Rewrite entry 4 as a newer build would have written it: the same
    // entry with the next format number, and a valid checksum.
    {
        let db = reopen_sled(&path);
        let tree = db.open_tree("log").unwrap();
        let raw = tree.get(4u64.to_be_bytes()).unwrap().unwrap().to_vec();
        let mut body = raw[4..].to_vec();
        // An entry of no operations is written in format 1 (see Proposal::format).
        let marker = (0x5243_4546_4d54_0000u64 | 1).to_le_bytes();
        let at = body.windows(8).position(|w| w == marker).expect("the format marker");
        let newer = (0x5243_4546_4d54_0000u64 | u64::from(ENTRY_FORMAT + 1)).to_le_bytes();
        body[at..at + 8].copy_from_slice(&newer);
        let mut stored = crc32fast::hash(&body).to_le_bytes().to_vec();
        stored.extend_from_slice(&body);
        tree.insert(4u64.to_be_bytes(), stored).unwrap();
        db.flush().unwrap();
    }
    let err = reopen(|| match SledLogStore::open(&path, Fsync::Always) {
        Ok(_) => Ok(None),
        Err(e) if format!("{e:?}").contains("could not acquire lock") => Err(format!("{e:?}")),
        Err(e) => Ok(Some(e.to_string())),
    })
    .expect("opening must fail on an entry of a newer format");
    assert!(err.contains("newer raftcache wrote"), "{err}");
    // Nothing was cut: entries 4 and 5 are still there for the newer build.
    let db = reopen_sled(&path);
    let tree = db.open_tree("log").unwrap();
    assert!(tree.get(4u64.to_be_bytes()).unwrap().is_some());
    assert!(tree.get(5u64.to_be_bytes()).unwrap().is_some());
}

/// The engine's test-only switches (`--unsafe-test-switch`) are not in the
/// snapshot: the store gives them to every engine that replaces its own,
/// one installed from a leader's snapshot and a wiped one alike, so a node
/// keeps applying the log as the others do.
#[test]
fn unsafe_switches_survive_a_snapshot_install_and_a_wipe() {
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use raftcache_sm::unsafe_switches::EngineSwitches;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = StateMachineStore::open(a_dir.path()).unwrap();
        let mut follower = StateMachineStore::open(b_dir.path()).unwrap();
        let on = EngineSwitches { lock_grant_unchecked: true };
        follower.set_unsafe_switches(on);
        assert_eq!(follower.read().state.unsafe_switches(), on);
        let snapshot = leader.get_snapshot_builder().await.build_snapshot().await.unwrap();
        follower.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();
        assert_eq!(follower.read().state.unsafe_switches(), on, "after a snapshot install");
        follower.wipe().unwrap();
        assert_eq!(follower.read().state.unsafe_switches(), on, "after a wipe");
        assert_eq!(leader.read().state.unsafe_switches(), EngineSwitches::default());
    });
}
