//! raftcache-sm: the cache engine as a pure, deterministic state machine.
//!
//! This crate is the Redis keyspace and its commands, written so it can sit
//! under a replicated log: [`State::apply`] takes a log entry's [`Stamp`] (index,
//! time, random seed) and an [`Op`], and returns the client's [`Reply`]. It reads
//! no clock, draws no randomness and does no I/O, so every replica that applies
//! the same entries holds the same state, which [`State::digest`] proves. Reads go
//! through [`State::query`], which holds the state by shared reference.
//!
//! It is *not* a server: it knows nothing about sockets, RESP framing, Raft or
//! clients. The node crate owns those.
//!
//! ```
//! use bytes::Bytes;
//! use raftcache_sm::{Op, Reply, Stamp, State};
//!
//! let argv = |parts: &[&str]| parts.iter().map(|p| Bytes::from(p.to_string())).collect();
//! let mut state = State::new();
//! let stamp = Stamp { index: 1, time_ms: 1_000, seed: 7 };
//! let op = Op::Command { db: 0, argv: argv(&["SET", "k", "v", "PX", "1500"]) };
//! assert_eq!(state.apply(&stamp, &op), Reply::Ok);
//! // Visible until its expiry time (1000 + 1500), gone from then on.
//! assert_eq!(state.query(0, &argv(&["GET", "k"]), 2_499, 0), Reply::Bulk("v".into()));
//! assert_eq!(state.query(0, &argv(&["GET", "k"]), 2_500, 0), Reply::Nil);
//! ```
//!
//! # Layout
//! - [`state`]: [`State`], [`Proposal`], [`Stamp`], [`Op`]; the apply/query contract.
//! - [`session`]: duplicate suppression for retried proposals.
//! - [`blocked`]: clients blocked on keys (BLPOP …), as replicated state.
//! - [`locks`]: locks with fencing tokens (LOCK.ACQUIRE …), as replicated state.
//! - [`command`]: the command table (names, arity, read/write, handlers).
//! - `cmd/*`: the handlers, one file per command family.
//! - [`db`]: one database: keyspace, expiry index, change marks for WATCH.
//! - [`event`]: what apply reports besides replies (keyspace notifications …).
//! - [`value`]: value types and their Redis encodings.
//! - [`encodings`]: the encoding thresholds, cluster-wide configuration.
//! - [`keymap`]: the insertion-order-independent map behind keyspace and SCAN.
//! - [`snapshot`]: the versioned, checksummed snapshot format and the digest.
//! - [`reply`]: protocol-independent replies and Redis's error texts.
//! - [`script`]: the Lua VM behind EVAL (Redis 7.0's scripting, made
//!   deterministic: instruction budget, memory cap, seeded `math.random`).
//! - [`unsafe_switches`]: test-only switches that break a safety check on
//!   purpose (so the chaos harness can show it catches the result).
//! - [`args`], [`float`], [`glob`]: Redis's exact parsing, number formatting and
//!   pattern matching.

pub mod args;
pub mod blocked;
pub mod cmd;
pub mod command;
pub mod db;
pub mod encodings;
pub mod event;
pub mod float;
pub mod format;
pub mod glob;
pub mod keymap;
pub mod locks;
pub mod memory;
pub mod reply;
pub mod script;
pub mod session;
pub mod snapshot;
pub mod state;
pub mod unsafe_switches;
pub mod value;

#[cfg(test)]
pub(crate) mod testing;

pub use command::{lookup, Kind, Spec};
pub use event::Event;
pub use reply::Reply;
pub use session::Origin;
pub use snapshot::SnapshotError;
pub use state::{Call, Op, Proposal, Stamp, State, Watch};
