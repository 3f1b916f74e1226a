//! raftcache-proto: the gRPC services of a raftcache node, generated from
//! `proto/` at the repository root.
//!
//! - [`raft`] (`raftcache.raft.v1`): node-to-node traffic on the Raft port.
//! - [`admin`] (`raftcache.admin.v1`): the operator API on the admin port.

#![allow(clippy::all, missing_docs)]

/// `raftcache.raft.v1`
pub mod raft {
    tonic::include_proto!("raftcache.raft.v1");
}

/// `raftcache.admin.v1`
pub mod admin {
    tonic::include_proto!("raftcache.admin.v1");
}

/// The encoded descriptors of both services, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("raftcache_descriptor");

/// The encoding of [`raft::RaftPayload`] data this build writes and reads.
pub const PAYLOAD_FORMAT_BINCODE: u32 = 1;
