//! Workloads: what each client sends, and how each reply becomes an
//! operation of the history ([`outcome`]).
//!
//! | workload | keys | operations | history |
//! | --- | --- | --- | --- |
//! | `register` | `reg:<gen>:<i>` | GET, SET unique value, DEL | read, write, delete |
//! | `counter` | `ctr:<gen>:<i>` | INCR, GET | incr, read |
//! | `list-append` | `list:<gen>:<i>` | RPUSH unique value, LRANGE 0 -1 | append, read |
//! | `set-add` | `set:<gen>:<i>` | SADD unique value, SMEMBERS | add, read |
//! | `ttl` | `ttl:<gen>:<i>` | SET unique value PX ttl, GET | write_ttl, read |
//! | `lock` | `lock:<i>` | LOCK.ACQUIRE name owner ttl → token, LOCK.RELEASE name owner | lock_acquire (token, lease), lock_release |
//! | `lock-nx` | `nxlock:<i>` | SET name owner NX PX ttl, DELIFEQ name owner | lock_acquire (no token, lease), lock_release |
//!
//! `<gen>` moves on every `--key-period` seconds, so that no key's history
//! grows without bound in a long run (lists are read whole; the
//! linearizability search is per key). Lock clients hold a granted lock for
//! a short random time, then release it; every acquire uses a fresh owner
//! name, so that an acquire whose outcome is unknown can never be mistaken
//! for a later re-acquire by the same owner (which would keep its token).
//!
//! The ttl workload sends mostly reads (nine in ten), so that keys are
//! read around the moment they expire; each SET draws its ttl from
//! `[--key-ttl-ms / 8, --key-ttl-ms]`, short enough that keys often expire
//! between two writes.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use super::resp::{req, CallError, Reply};
use crate::history::{Call, LockGrant, Outcome, Val};

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    Register,
    Counter,
    ListAppend,
    SetAdd,
    Ttl,
    Lock,
    LockNx,
}

impl Workload {
    pub const ALL: [Workload; 7] = [
        Workload::Register,
        Workload::Counter,
        Workload::ListAppend,
        Workload::SetAdd,
        Workload::Ttl,
        Workload::Lock,
        Workload::LockNx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Counter => "counter",
            Workload::ListAppend => "list-append",
            Workload::SetAdd => "set-add",
            Workload::Ttl => "ttl",
            Workload::Lock => "lock",
            Workload::LockNx => "lock-nx",
        }
    }

    /// Parses a comma-separated list (`all` for every workload).
    pub fn parse_list(list: &str) -> Result<Vec<Workload>, String> {
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let found: Vec<Workload> = if name == "all" {
                Workload::ALL.to_vec()
            } else {
                match Workload::ALL.iter().find(|w| w.name() == name) {
                    Some(&w) => vec![w],
                    None => {
                        let known: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                        return Err(format!(
                            "unknown workload {name:?}: use all or {}",
                            known.join(", ")
                        ));
                    }
                }
            };
            for w in found {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        if out.is_empty() {
            return Err("no workload given".into());
        }
        Ok(out)
    }

    /// The checker that judges this workload's keys.
    pub fn checker(self) -> &'static str {
        match self {
            Workload::Register => "linearizable",
            Workload::Counter => "counter",
            Workload::ListAppend => "list-append",
            Workload::SetAdd => "set-add",
            Workload::Ttl => "ttl",
            Workload::Lock | Workload::LockNx => "lock",
        }
    }
}

/// How to read a reply into the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// GET on a register: a string or nil.
    RegisterRead,
    /// GET on a counter: an integer (as a bulk string) or nil.
    CounterRead,
    /// LRANGE 0 -1, SMEMBERS: an array of strings.
    ListRead,
    /// SET: +OK.
    Ok,
    /// DEL, INCR, RPUSH, SADD: an integer.
    Int,
    /// LOCK.ACQUIRE: a token or nil; the lease in ns.
    Token { lease_ns: u64 },
    /// SET NX PX: +OK (granted) or nil; the lease in ns.
    NxGrant { lease_ns: u64 },
    /// LOCK.RELEASE, DELIFEQ: 1 or 0.
    Released,
}

/// One request a client is about to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub key: String,
    pub call: Call,
    pub args: Vec<Vec<u8>>,
    pub expect: Expect,
}

/// Knobs shared by every client.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Keys per workload and key generation.
    pub keys: u32,
    /// Lock names.
    pub locks: u32,
    /// Lease of a lock.
    pub lock_ttl: Duration,
    /// The longest ttl of the ttl workload's SETs.
    pub key_ttl: Duration,
}

/// A lock this client believes it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    name: String,
    owner: String,
    token: Option<u64>,
}

/// One client's workload state.
#[derive(Debug)]
pub struct Generator {
    pub workload: Workload,
    shape: Shape,
    /// The client's slot (stable across process ids), for unique values.
    slot: u64,
    seq: u64,
    held: Option<Held>,
}

impl Generator {
    pub fn new(workload: Workload, shape: Shape, slot: u64) -> Self {
        Generator { workload, shape, slot, seq: 0, held: None }
    }

    /// A value no other operation of the run writes.
    fn unique(&mut self) -> String {
        self.seq += 1;
        format!("{}.{}", self.slot, self.seq)
    }

    /// The next request, for key generation `gen`.
    pub fn next(&mut self, gen: u64, rng: &mut StdRng) -> Request {
        let i = rng.gen_range(0..self.shape.keys.max(1));
        let roll: u32 = rng.gen_range(0..100);
        match self.workload {
            Workload::Register => {
                let key = format!("reg:{gen}:{i}");
                if roll < 50 {
                    Request {
                        args: req!["GET", key],
                        key,
                        call: Call::Read,
                        expect: Expect::RegisterRead,
                    }
                } else if roll < 90 {
                    let value = self.unique();
                    Request {
                        args: req!["SET", key, value],
                        key,
                        call: Call::Write { value },
                        expect: Expect::Ok,
                    }
                } else {
                    Request { args: req!["DEL", key], key, call: Call::Delete, expect: Expect::Int }
                }
            }
            Workload::Counter => {
                let key = format!("ctr:{gen}:{i}");
                if roll < 70 {
                    Request {
                        args: req!["INCR", key],
                        key,
                        call: Call::Incr { by: 1 },
                        expect: Expect::Int,
                    }
                } else {
                    Request {
                        args: req!["GET", key],
                        key,
                        call: Call::Read,
                        expect: Expect::CounterRead,
                    }
                }
            }
            Workload::ListAppend => {
                let key = format!("list:{gen}:{i}");
                if roll < 60 {
                    let value = self.unique();
                    Request {
                        args: req!["RPUSH", key, value],
                        key,
                        call: Call::Append { value },
                        expect: Expect::Int,
                    }
                } else {
                    Request {
                        args: req!["LRANGE", key, 0, -1],
                        key,
                        call: Call::Read,
                        expect: Expect::ListRead,
                    }
                }
            }
            Workload::SetAdd => {
                let key = format!("set:{gen}:{i}");
                if roll < 60 {
                    let value = self.unique();
                    Request {
                        args: req!["SADD", key, value],
                        key,
                        call: Call::Add { value },
                        expect: Expect::Int,
                    }
                } else {
                    Request {
                        args: req!["SMEMBERS", key],
                        key,
                        call: Call::Read,
                        expect: Expect::ListRead,
                    }
                }
            }
            Workload::Ttl => {
                let key = format!("ttl:{gen}:{i}");
                if roll < 10 {
                    let value = self.unique();
                    let most = (self.shape.key_ttl.as_millis() as u64).max(8);
                    let ttl_ms = rng.gen_range(most / 8..=most);
                    Request {
                        args: req!["SET", key, value, "PX", ttl_ms],
                        key,
                        call: Call::WriteTtl { value, ttl_ms },
                        expect: Expect::Ok,
                    }
                } else {
                    Request {
                        args: req!["GET", key],
                        key,
                        call: Call::Read,
                        expect: Expect::RegisterRead,
                    }
                }
            }
            Workload::Lock | Workload::LockNx => self.lock_request(rng),
        }
    }

    fn lock_request(&mut self, rng: &mut StdRng) -> Request {
        let nx = self.workload == Workload::LockNx;
        if let Some(held) = &self.held {
            let key = held.name.clone();
            let owner = held.owner.clone();
            let args =
                if nx { req!["DELIFEQ", key, owner] } else { req!["LOCK.RELEASE", key, owner] };
            return Request {
                key,
                call: Call::LockRelease { owner, token: held.token },
                args,
                expect: Expect::Released,
            };
        }
        let i = rng.gen_range(0..self.shape.locks.max(1));
        let key = if nx { format!("nxlock:{i}") } else { format!("lock:{i}") };
        let owner = format!("o{}", self.unique());
        let ttl_ms = self.shape.lock_ttl.as_millis().max(1) as u64;
        let lease_ns = ttl_ms * 1_000_000;
        let (args, expect) = if nx {
            (req!["SET", key, owner, "NX", "PX", ttl_ms], Expect::NxGrant { lease_ns })
        } else {
            (req!["LOCK.ACQUIRE", key, owner, ttl_ms], Expect::Token { lease_ns })
        };
        Request { key, call: Call::LockAcquire { owner }, args, expect }
    }

    /// Takes note of how a request ended (for locks: held or not). Returns
    /// how long to wait before the next request, beyond the think time: a
    /// granted lock is held for a while.
    pub fn completed(
        &mut self,
        request: &Request,
        outcome: &Outcome,
        rng: &mut StdRng,
    ) -> Duration {
        match (&request.call, outcome) {
            (Call::LockAcquire { owner }, Outcome::Ok(Val::Lock(grant))) => {
                self.held = Some(Held {
                    name: request.key.clone(),
                    owner: owner.clone(),
                    token: grant.token,
                });
                // Hold for up to a fifth of the lease.
                let most = (self.shape.lock_ttl.as_millis() as u64 / 5).max(2);
                Duration::from_millis(rng.gen_range(1..most))
            }
            (Call::LockAcquire { .. }, Outcome::Ok(Val::Nil)) => {
                // Refused: someone holds it; come back within a tenth of a
                // lease rather than spin on it.
                self.held = None;
                let most = (self.shape.lock_ttl.as_millis() as u64 / 10).max(2);
                Duration::from_millis(rng.gen_range(1..most))
            }
            (Call::LockAcquire { .. }, _) | (Call::LockRelease { .. }, _) => {
                self.held = None;
                Duration::ZERO
            }
            _ => Duration::ZERO,
        }
    }
}

/// Error replies that mean the command surely was not applied. Everything
/// else that is an error (`-UNCERTAIN`, a node shutting down, an internal
/// error) leaves the outcome unknown.
pub fn error_is_definite(message: &str) -> bool {
    let kind = message.split_whitespace().next().unwrap_or("");
    match kind {
        "UNCERTAIN" => false,
        "CLUSTERDOWN" | "MOVED" | "WRONGTYPE" | "NOAUTH" | "NOPROTO" | "EXECABORT" => true,
        "ERR" => {
            !(message.starts_with("ERR the node is shutting down")
                || message.starts_with("ERR internal error"))
        }
        _ => false,
    }
}

/// What a call's result means for the history, and, for a reply that does
/// not fit the command (a server bug), a description of it.
pub fn outcome(expect: Expect, result: &Result<Reply, CallError>) -> (Outcome, Option<String>) {
    let reply = match result {
        Err(CallError::NotSent(_)) => return (Outcome::Fail, None),
        Err(CallError::Lost(_) | CallError::Timeout) => return (Outcome::Unknown, None),
        Err(CallError::Protocol(e)) => return (Outcome::Unknown, Some(format!("protocol: {e}"))),
        Ok(r) => r,
    };
    if let Reply::Error(message) = reply {
        let o = if error_is_definite(message) { Outcome::Fail } else { Outcome::Unknown };
        return (o, None);
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let val = match (expect, reply) {
        (Expect::RegisterRead, Reply::Bulk(None)) => Some(Val::Nil),
        (Expect::RegisterRead, Reply::Bulk(Some(b))) => Some(Val::Str(text(b))),
        (Expect::CounterRead, Reply::Bulk(None)) => Some(Val::Nil),
        (Expect::CounterRead, Reply::Bulk(Some(b))) => {
            // Kept as a string if it is not a number: the counter checker
            // reports that as a bad value.
            let s = text(b);
            Some(s.parse().map(Val::Int).unwrap_or(Val::Str(s)))
        }
        (Expect::ListRead, Reply::Array(Some(items))) => items
            .iter()
            .map(|i| match i {
                Reply::Bulk(Some(b)) => Some(text(b)),
                _ => None,
            })
            .collect::<Option<Vec<String>>>()
            .map(Val::List),
        (Expect::ListRead, Reply::Array(None)) => Some(Val::Nil),
        (Expect::Ok, Reply::Simple(s)) if s == "OK" => Some(Val::Nil),
        (Expect::Int, Reply::Int(i)) => Some(Val::Int(*i)),
        (Expect::Token { lease_ns }, Reply::Int(t)) => u64::try_from(*t)
            .ok()
            .map(|token| Val::Lock(LockGrant { token: Some(token), lease_ns: Some(lease_ns) })),
        (Expect::Token { .. }, Reply::Bulk(None)) => Some(Val::Nil),
        (Expect::NxGrant { lease_ns }, Reply::Simple(s)) if s == "OK" => {
            Some(Val::Lock(LockGrant { token: None, lease_ns: Some(lease_ns) }))
        }
        (Expect::NxGrant { .. }, Reply::Bulk(None)) => Some(Val::Nil),
        (Expect::Released, Reply::Int(i)) if *i == 0 || *i == 1 => Some(Val::Bool(*i == 1)),
        _ => None,
    };
    match val {
        Some(v) => (Outcome::Ok(v), None),
        None => (Outcome::Unknown, Some(format!("{expect:?} got {reply:?}"))),
    }
}

/// The read that ends a run on a key of `workload` (none for locks and
/// expiring keys).
pub fn final_read(workload: Workload, key: &str) -> Option<Request> {
    let key = key.to_string();
    match workload {
        Workload::Register => Some(Request {
            args: req!["GET", key],
            key,
            call: Call::Read,
            expect: Expect::RegisterRead,
        }),
        Workload::Counter => Some(Request {
            args: req!["GET", key],
            key,
            call: Call::Read,
            expect: Expect::CounterRead,
        }),
        Workload::ListAppend => Some(Request {
            args: req!["LRANGE", key, 0, -1],
            key,
            call: Call::Read,
            expect: Expect::ListRead,
        }),
        Workload::SetAdd => Some(Request {
            args: req!["SMEMBERS", key],
            key,
            call: Call::Read,
            expect: Expect::ListRead,
        }),
        // Expiring keys have no final state to check.
        Workload::Ttl | Workload::Lock | Workload::LockNx => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::nemesis::rng;

    const SHAPE: Shape = Shape {
        keys: 2,
        locks: 1,
        lock_ttl: Duration::from_millis(1000),
        key_ttl: Duration::from_millis(400),
    };

    fn ok(r: Reply) -> Result<Reply, CallError> {
        Ok(r)
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn transport_errors_map_to_fail_or_unknown() {
        let e = Expect::Ok;
        assert_eq!(outcome(e, &Err(CallError::NotSent("refused".into()))).0, Outcome::Fail);
        assert_eq!(outcome(e, &Err(CallError::Lost("reset".into()))).0, Outcome::Unknown);
        assert_eq!(outcome(e, &Err(CallError::Timeout)).0, Outcome::Unknown);
        let (o, note) = outcome(e, &Err(CallError::Protocol("junk".into())));
        assert_eq!(o, Outcome::Unknown);
        assert!(note.is_some());
    }

    #[test]
    fn error_replies_fail_unless_uncertain() {
        let cases = [
            ("CLUSTERDOWN no leader: the cluster has no elected leader", Outcome::Fail),
            ("UNCERTAIN the outcome of this command is unknown", Outcome::Unknown),
            ("ERR syntax error", Outcome::Fail),
            ("WRONGTYPE Operation against a key", Outcome::Fail),
            ("ERR the node is shutting down", Outcome::Unknown),
            ("ERR internal error: no reply", Outcome::Unknown),
            ("SOMETHINGNEW we have not seen", Outcome::Unknown),
        ];
        for (msg, want) in cases {
            assert_eq!(outcome(Expect::Int, &ok(Reply::Error(msg.into()))).0, want, "{msg}");
        }
    }

    #[test]
    fn replies_map_onto_history_values() {
        let lease_ns = 1_000_000_000;
        let cases: Vec<(Expect, Reply, Val)> = vec![
            (Expect::RegisterRead, Reply::Bulk(None), Val::Nil),
            (Expect::RegisterRead, bulk("3.7"), Val::Str("3.7".into())),
            (Expect::CounterRead, bulk("12"), Val::Int(12)),
            (Expect::CounterRead, Reply::Bulk(None), Val::Nil),
            (Expect::CounterRead, bulk("x"), Val::Str("x".into())),
            (
                Expect::ListRead,
                Reply::Array(Some(vec![bulk("1.1"), bulk("2.1")])),
                Val::List(vec!["1.1".into(), "2.1".into()]),
            ),
            (Expect::ListRead, Reply::Array(Some(vec![])), Val::List(vec![])),
            (Expect::Ok, Reply::Simple("OK".into()), Val::Nil),
            (Expect::Int, Reply::Int(4), Val::Int(4)),
            (
                Expect::Token { lease_ns },
                Reply::Int(77),
                Val::Lock(LockGrant { token: Some(77), lease_ns: Some(lease_ns) }),
            ),
            (Expect::Token { lease_ns }, Reply::Bulk(None), Val::Nil),
            (
                Expect::NxGrant { lease_ns },
                Reply::Simple("OK".into()),
                Val::Lock(LockGrant { token: None, lease_ns: Some(lease_ns) }),
            ),
            (Expect::NxGrant { lease_ns }, Reply::Bulk(None), Val::Nil),
            (Expect::Released, Reply::Int(1), Val::Bool(true)),
            (Expect::Released, Reply::Int(0), Val::Bool(false)),
        ];
        for (expect, reply, want) in cases {
            let (o, note) = outcome(expect, &ok(reply.clone()));
            assert_eq!(o, Outcome::Ok(want), "{expect:?} {reply:?}");
            assert_eq!(note, None);
        }
    }

    #[test]
    fn a_reply_that_does_not_fit_is_unknown_and_reported() {
        for (expect, reply) in [
            (Expect::Ok, Reply::Int(1)),
            (Expect::Int, bulk("1")),
            (Expect::Released, Reply::Int(2)),
            (Expect::Token { lease_ns: 1 }, Reply::Int(-5)),
            (Expect::ListRead, Reply::Array(Some(vec![Reply::Int(1)]))),
        ] {
            let (o, note) = outcome(expect, &ok(reply));
            assert_eq!(o, Outcome::Unknown);
            assert!(note.is_some());
        }
    }

    #[test]
    fn registers_lists_and_counters_use_their_own_keys_and_unique_values() {
        let mut r = rng(1, 1);
        let mut seen = std::collections::HashSet::new();
        // Each client has its own slot, as the runner gives them.
        for (slot, w) in [
            Workload::Register,
            Workload::Counter,
            Workload::ListAppend,
            Workload::SetAdd,
            Workload::Ttl,
        ]
        .into_iter()
        .enumerate()
        {
            let mut g = Generator::new(w, SHAPE, slot as u64);
            for _ in 0..200 {
                let req = g.next(3, &mut r);
                let prefix = match w {
                    Workload::Register => "reg:3:",
                    Workload::Counter => "ctr:3:",
                    Workload::SetAdd => "set:3:",
                    Workload::Ttl => "ttl:3:",
                    _ => "list:3:",
                };
                assert!(req.key.starts_with(prefix), "{}", req.key);
                assert_eq!(req.args[1], req.key.as_bytes(), "the key is the first argument");
                if let Call::Write { value }
                | Call::Append { value }
                | Call::Add { value }
                | Call::WriteTtl { value, .. } = &req.call
                {
                    assert!(seen.insert(value.clone()), "{value} written twice");
                    assert_eq!(req.args[2], value.as_bytes());
                }
                if let Call::WriteTtl { ttl_ms, .. } = req.call {
                    assert!((50..=400).contains(&ttl_ms), "{ttl_ms}");
                    assert_eq!(&req.args[3..], &req!["PX", ttl_ms][..]);
                }
            }
        }
    }

    #[test]
    fn lock_clients_acquire_hold_release_with_fresh_owners() {
        for (w, acquire, release) in
            [(Workload::Lock, "LOCK.ACQUIRE", "LOCK.RELEASE"), (Workload::LockNx, "SET", "DELIFEQ")]
        {
            let mut r = rng(2, 2);
            let mut g = Generator::new(w, SHAPE, 4);
            let a1 = g.next(0, &mut r);
            assert_eq!(a1.args[0], acquire.as_bytes());
            let Call::LockAcquire { owner: o1 } = a1.call.clone() else { panic!("{a1:?}") };
            // Refused: the next is another acquire, by a new owner, after a
            // short wait.
            let wait = g.completed(&a1, &Outcome::Ok(Val::Nil), &mut r);
            assert!(wait > Duration::ZERO && wait <= SHAPE.lock_ttl / 10);
            let a2 = g.next(0, &mut r);
            let Call::LockAcquire { owner: o2 } = a2.call.clone() else { panic!("{a2:?}") };
            assert_ne!(o1, o2);
            // Granted: held a while, then released by the same owner.
            let token = (w == Workload::Lock).then_some(10);
            let grant = Val::Lock(LockGrant { token, lease_ns: Some(1_000_000_000) });
            let hold = g.completed(&a2, &Outcome::Ok(grant), &mut r);
            assert!(hold > Duration::ZERO && hold < SHAPE.lock_ttl);
            let rel = g.next(0, &mut r);
            assert_eq!(rel.args[0], release.as_bytes());
            assert_eq!(rel.key, a2.key);
            assert_eq!(rel.call, Call::LockRelease { owner: o2.clone(), token });
            assert_eq!(rel.args[2], o2.as_bytes());
            // Whatever the release's outcome, the next is an acquire.
            g.completed(&rel, &Outcome::Unknown, &mut r);
            assert!(matches!(g.next(0, &mut r).call, Call::LockAcquire { .. }));
            // An unknown acquire is not a hold: no release follows.
            let a3 = g.next(0, &mut r);
            g.completed(&a3, &Outcome::Unknown, &mut r);
            assert!(matches!(g.next(0, &mut r).call, Call::LockAcquire { .. }));
        }
    }

    #[test]
    fn nx_acquire_sets_the_lease_in_milliseconds() {
        let mut r = rng(3, 3);
        let mut g = Generator::new(Workload::LockNx, SHAPE, 1);
        let a = g.next(0, &mut r);
        assert_eq!(&a.args[3..], &req!["NX", "PX", 1000][..]);
        assert_eq!(a.expect, Expect::NxGrant { lease_ns: 1_000_000_000 });
    }

    #[test]
    fn workload_names_parse() {
        assert_eq!(
            Workload::parse_list("register,counter,list-append,lock").unwrap(),
            vec![Workload::Register, Workload::Counter, Workload::ListAppend, Workload::Lock]
        );
        assert_eq!(Workload::parse_list("all").unwrap().len(), 7);
        assert_eq!(
            Workload::parse_list("set-add,ttl").unwrap(),
            vec![Workload::SetAdd, Workload::Ttl]
        );
        assert!(Workload::parse_list("sets").unwrap_err().contains("unknown workload"));
        assert!(Workload::parse_list("").is_err());
    }
}
