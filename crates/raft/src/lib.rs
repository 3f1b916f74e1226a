//! raftcache-raft: the openraft glue.
//!
//! All openraft types and traits stay in this crate, so an openraft upgrade
//! touches one place. The engine (`raftcache-sm`) knows nothing of Raft; here it
//! becomes an openraft state machine whose entries are
//! [`Proposal`](raftcache_sm::Proposal)s.
//!
//! # Layout
//! - [`types`]: the type configuration, node ids (member + incarnation).
//! - [`mem_log`]: the in-memory log store.
//! - [`sled_log`]: the durable log store (sled) with fsync policies.
//! - [`state_machine`]: the engine as a state machine, snapshots as files.
//! - [`network`]: openraft's RPCs over gRPC (client side).
//! - [`codec`]: the payload encoding shared with the server side.

// openraft's `StorageError` is large by design and every storage trait
// method returns it; boxing it in our helpers would only add allocations.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod mem_log;
pub mod network;
pub mod sled_log;
pub mod state_machine;
pub mod types;

pub use openraft;
