//! raftcache-node: a raftcache server node.
//!
//! It accepts Redis clients (RESP2/RESP3), keeps per-connection state, serves
//! connection-level commands itself and hands keyspace commands to the
//! [`Cluster`](cluster::Cluster): writes become Raft log entries stamped by the
//! leader with its clock and a random seed, and reads are served at the
//! configured consistency. It is the only crate that reads a clock.
//!
//! # Layout
//! - [`config`]: flags (redis-server's names) and runtime settings.
//! - [`server`]: listener, connection limit, reaper, shutdown.
//! - [`connection`]: one client: decode, execute, reply, pipelining.
//! - [`session`]: connection state and connection-level commands.
//! - [`transaction`]: MULTI … EXEC: the queue and the engine operation it becomes.
//! - [`config_cmd`], [`command_docs`], [`info`]: CONFIG, COMMAND, INFO.
//! - [`cluster`] (the `raftcache-cluster` crate): the Raft group: bootstrap,
//!   membership, write and read paths, peer and admin services; [`clock`]:
//!   the only place wall-clock time is read.
//! - [`encode`]: replies to RESP2/RESP3 bytes.
//! - [`events`]: the engine's events routed to connections (pub/sub, keyspace notifications).
//! - [`clients`], [`subcommand`]: client registry, subcommand resolution.
//! - [`stats`]: INFO commandstats and errorstats counters.
//! - [`metrics`]: Prometheus metrics on `GET /metrics` (`--metrics-port`).

// gRPC handlers return `tonic::Status`, which is large by design; boxing it
// would only add an allocation to every error path.
#![allow(clippy::result_large_err)]

pub mod clients;
pub use raftcache_cluster as cluster;
pub use raftcache_cluster::clock;
pub mod command_docs;
pub mod config;
pub mod config_cmd;
pub mod config_file;
pub mod connection;
pub mod encode;
pub mod events;
pub mod info;
pub mod metrics;
pub mod server;
pub mod session;
pub mod stats;
pub mod subcommand;
pub mod transaction;
