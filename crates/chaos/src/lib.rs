//! raftcache-chaos: the chaos harness, its history model and its checkers.
//!
//! The harness ([`run`]: nodes in network namespaces, a nemesis, workloads)
//! drives a cluster through real RESP connections while faults are injected,
//! records every operation with [`record::Recorder`] into a
//! [`history::History`], and judges it with the checkers of [`check`]:
//!
//! | checker | workload | approach |
//! | --- | --- | --- |
//! | `linearizable` | registers: GET / SET / DEL / CAS | WGL search per key, as Porcupine and Knossos |
//! | `lost-writes` | registers | final reads see a surviving acknowledged write |
//! | `counter` | INCR + GET | uniqueness, real-time bounds, monotonicity |
//! | `list-append` | RPUSH + LRANGE | prefix order, as Elle's list-append |
//! | `set-add` | SADD + SMEMBERS | no lost or phantom member, as Jepsen's set-full |
//! | `ttl` | SET PX + GET | no read past expiry plus a bound, no early loss |
//! | `lock` | acquire / release | no overlapping holders, increasing fencing tokens |
//!
//! Each checker answers a [`verdict::Verdict`]: valid, invalid with the
//! operations that show the violation and an explanation, or unknown when its
//! search budget ran out. [`report`] renders a run as one HTML page.

pub mod check;
pub mod history;
pub mod record;
pub mod report;
pub mod run;
pub mod verdict;

pub use check::{check_all, Budget};
pub use history::{Call, History, NemesisEvent, Op, Outcome, Phase, Val};
pub use verdict::{Report, Verdict, Violation};
