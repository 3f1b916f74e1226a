//! openraft's storage conformance suite against the stores raftcache ships.

use openraft::testing::{StoreBuilder, Suite};
use raftcache_raft::mem_log::MemLogStore;
use raftcache_raft::state_machine::StateMachineStore;
use raftcache_raft::types::{StorageError, TypeConfig};

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
