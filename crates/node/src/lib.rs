//! raftcache-node: a raftcache server node.
//!
//! It accepts Redis clients (RESP2/RESP3), keeps per-connection state, serves
//! connection-level commands itself and hands keyspace commands to the
//! [`Store`](store::Store): reads are served from the engine directly, writes
//! are stamped with the node's clock and a random seed and applied as log
//! entries. It is the only crate that reads a clock.
//!
//! # Layout
//! - [`config`]: flags (redis-server's names) and runtime settings.
//! - [`server`]: listener, connection limit, reaper, shutdown.
//! - [`connection`]: one client: decode, execute, reply, pipelining.
//! - [`session`]: connection state and connection-level commands.
//! - [`config_cmd`], [`command_docs`], [`info`]: CONFIG, COMMAND, INFO.
//! - [`store`]: the engine front (single node; Raft comes next).
//! - [`encode`]: replies to RESP2/RESP3 bytes.
//! - [`clients`], [`subcommand`]: client registry, subcommand resolution.

pub mod clients;
pub mod command_docs;
pub mod config;
pub mod config_cmd;
pub mod connection;
pub mod encode;
pub mod info;
pub mod server;
pub mod session;
pub mod store;
pub mod subcommand;
