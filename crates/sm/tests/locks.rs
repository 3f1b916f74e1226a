//! Locks with fencing tokens: grants, re-acquire, release, renew, leases by
//! replicated time, fair waiting through `Op::Block` (granted in the apply
//! that frees the lock), give-back of a grant nobody took, strictly
//! increasing tokens, and replay/snapshot determinism.

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_sm::blocked::WaiterId;
use raftcache_sm::{Call, Event, Op, Reply, State};

mod common;
use common::{argv, Log};

impl Log {
    fn wait(&mut self, seq: u64, line: &str) -> Reply {
        self.apply(Op::Block { waiter: WaiterId { session: 1, seq }, db: 0, argv: argv(line) })
    }

    fn grants(&mut self) -> Vec<(u64, Reply)> {
        self.state
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Unblocked { waiter, reply, .. } => Some((waiter.seq, reply)),
                _ => None,
            })
            .collect()
    }
}

fn token(r: &Reply) -> i64 {
    match r {
        Reply::Int(n) => *n,
        other => panic!("not a token: {other:?}"),
    }
}

#[test]
fn acquire_reacquire_release_renew_fence() {
    let mut log = Log::new();
    let t1 = token(&log.run("LOCK.ACQUIRE job alice 1000"));
    assert_eq!(t1, 1, "the granting entry's index");
    assert_eq!(log.run("LOCK.ACQUIRE job bob 1000"), Reply::Nil);
    // The owner again: same token, lease extended.
    log.time += 900;
    assert_eq!(token(&log.run("LOCK.ACQUIRE job alice 1000")), t1);
    log.time += 900;
    assert_eq!(log.run("LOCK.ACQUIRE job bob 1000"), Reply::Nil, "extended");
    assert_eq!(log.read(&format!("LOCK.FENCE job {t1}")), Reply::Ok);
    assert_eq!(log.run("LOCK.RENEW job bob 1000"), Reply::Int(0));
    assert_eq!(log.run("LOCK.RENEW job alice 5000"), Reply::Int(1));
    let Reply::Map(info) = log.read("LOCK.INFO job") else { panic!("a map") };
    assert_eq!(info[0].1, Reply::Bulk(Bytes::from_static(b"alice")));
    assert_eq!(info[2].1, Reply::Int(5000));
    assert_eq!(log.run("LOCK.RELEASE job bob"), Reply::Int(0));
    assert_eq!(log.run("LOCK.RELEASE job alice"), Reply::Int(1));
    assert_eq!(log.read("LOCK.INFO job"), Reply::Nil);
    assert!(log.read(&format!("LOCK.FENCE job {t1}")).is_error());
    let t2 = token(&log.run("LOCK.ACQUIRE job bob 1000"));
    assert!(t2 > t1);
    assert!(log.run("LOCK.ACQUIRE job bob 0").is_error());
    assert!(log.run("LOCK.ACQUIRE job bob x").is_error());
    assert!(log.run("LOCK.ACQUIRE job bob 10 WAIT").is_error());
}

#[test]
fn a_lease_ends_by_replicated_time_and_tokens_keep_increasing() {
    let mut log = Log::new();
    let t1 = token(&log.run("LOCK.ACQUIRE a x 100"));
    log.time += 100;
    // Expired: free to anyone at once, with a larger token.
    let t2 = token(&log.run("LOCK.ACQUIRE a y 100"));
    assert!(t2 > t1);
    // Two grants in one entry still get distinct, increasing tokens.
    let calls = ["LOCK.ACQUIRE b x 100", "LOCK.ACQUIRE c x 100"]
        .iter()
        .map(|l| Call { db: 0, argv: argv(l) })
        .collect();
    let Reply::Array(replies) = log.apply(Op::Exec { watches: vec![], calls }) else {
        panic!("array")
    };
    let (tb, tc) = (token(&replies[0]), token(&replies[1]));
    assert!(t2 < tb && tb < tc);
    // Survives a snapshot: the next grant is still larger.
    let mut copy = Log {
        state: State::read_snapshot(&log.state.snapshot_bytes()[..]).unwrap(),
        index: log.index,
        time: log.time,
    };
    copy.time += 1000;
    let td = token(&copy.run("LOCK.ACQUIRE d x 100"));
    assert!(td > tc);
}

#[test]
fn waiters_are_granted_in_order_on_release_and_expiry() {
    let mut log = Log::new();
    let t1 = token(&log.run("LOCK.ACQUIRE job a 1000"));
    assert_eq!(log.wait(1, "LOCK.ACQUIRE job b 1000 WAIT 0"), Reply::Blocked);
    assert_eq!(log.wait(2, "LOCK.ACQUIRE job c 1000 WAIT 5000"), Reply::Blocked);
    // Without WAIT nobody queues, and a newcomer does not overtake.
    assert_eq!(log.wait(3, "LOCK.ACQUIRE job d 1000"), Reply::Nil);
    log.state.take_events();
    log.run("LOCK.RELEASE job a");
    let grants = log.grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].0, 1);
    let t2 = token(&grants[0].1);
    assert!(t2 > t1);
    assert_eq!(log.apply(Op::Delivered { waiter: WaiterId { session: 1, seq: 1 } }), Reply::Int(1));
    // b's lease ends: the purge grants it to c.
    log.time += 1000;
    log.apply(Op::PurgeExpired { limit: 10 });
    let grants = log.grants();
    assert_eq!(grants.iter().map(|g| g.0).collect::<Vec<_>>(), vec![2]);
    assert!(token(&grants[0].1) > t2);
    // c's client left before taking it: released at once.
    assert_eq!(log.apply(Op::Unblock { waiter: WaiterId { session: 1, seq: 2 } }), Reply::Int(2));
    assert_eq!(log.read("LOCK.INFO job"), Reply::Nil);
}

#[test]
fn the_owner_acting_on_an_unconfirmed_grant_takes_it() {
    for how in ["LOCK.ACQUIRE job b 60000", "LOCK.RENEW job b 60000"] {
        let mut log = Log::new();
        token(&log.run("LOCK.ACQUIRE job a 1000"));
        assert_eq!(log.wait(1, "LOCK.ACQUIRE job b 60000 WAIT 0"), Reply::Blocked);
        assert_eq!(log.wait(2, "LOCK.ACQUIRE job c 60000 WAIT 0"), Reply::Blocked);
        log.state.take_events();
        log.run("LOCK.RELEASE job a");
        let t = token(&log.grants()[0].1);
        // b's first connection is gone; b acts on the lock through another
        // one before its node (or the pending timeout) gives the grant back.
        let reply = log.run(how);
        assert!(reply == Reply::Int(t) || reply == Reply::Int(1), "{how}: {reply:?}");
        let waiter = WaiterId { session: 1, seq: 1 };
        assert_eq!(log.apply(Op::Unblock { waiter }), Reply::Int(0), "{how}: nothing to give back");
        log.time += 20_000;
        log.apply(Op::PurgeExpired { limit: 10 });
        assert!(log.grants().is_empty(), "{how}: c gets nothing while b's lease runs");
        assert_eq!(log.read(&format!("LOCK.FENCE job {t}")), Reply::Ok, "{how}");
        assert_eq!(log.apply(Op::Delivered { waiter }), Reply::Int(0), "{how}: taken already");
    }
}

#[test]
fn a_grant_is_confirmed_only_while_it_holds_and_its_lease_starts_then() {
    let mut log = Log::new();
    token(&log.run("LOCK.ACQUIRE job a 1000"));
    assert_eq!(log.wait(1, "LOCK.ACQUIRE job b 60000 WAIT 0"), Reply::Blocked);
    log.state.take_events();
    log.run("LOCK.RELEASE job a");
    token(&log.grants()[0].1);
    // b's node confirms 5 s later: b gets its whole lease from now.
    log.time += 5000;
    let waiter = WaiterId { session: 1, seq: 1 };
    assert_eq!(log.apply(Op::Delivered { waiter }), Reply::Int(1));
    let Reply::Map(info) = log.read("LOCK.INFO job") else { panic!("a map") };
    assert_eq!(info[2].1, Reply::Int(60_000));

    // c's grant (1 s lease) ends before its node confirms: c hears 0.
    let mut log = Log::new();
    token(&log.run("LOCK.ACQUIRE job a 1000"));
    assert_eq!(log.wait(2, "LOCK.ACQUIRE job c 1000 WAIT 0"), Reply::Blocked);
    assert_eq!(log.wait(3, "LOCK.ACQUIRE job d 60000 WAIT 0"), Reply::Blocked);
    log.state.take_events();
    log.run("LOCK.RELEASE job a");
    assert_eq!(log.grants().iter().map(|g| g.0).collect::<Vec<_>>(), vec![2]);
    log.time += 1500;
    log.apply(Op::PurgeExpired { limit: 10 });
    let d = log.grants();
    assert_eq!(d.iter().map(|g| g.0).collect::<Vec<_>>(), vec![3], "the lease ended: d's turn");
    let c = WaiterId { session: 1, seq: 2 };
    assert_eq!(log.apply(Op::Delivered { waiter: c }), Reply::Int(0), "c's grant is over");
    assert_eq!(log.read(&format!("LOCK.FENCE job {}", token(&d[0].1))), Reply::Ok);
}

#[derive(Debug, Clone)]
enum Step {
    Acquire(u8, u8, bool),
    Release(u8, u8),
    Renew(u8, u8),
    Unblock(u8),
    Delivered(u8),
    Purge,
    Tick(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..3, 0u8..4, any::<bool>()).prop_map(|(l, o, w)| Step::Acquire(l, o, w)),
        2 => (0u8..3, 0u8..4).prop_map(|(l, o)| Step::Release(l, o)),
        1 => (0u8..3, 0u8..4).prop_map(|(l, o)| Step::Renew(l, o)),
        1 => (0u8..8).prop_map(Step::Unblock),
        1 => (0u8..8).prop_map(Step::Delivered),
        1 => Just(Step::Purge),
        1 => (0i64..3000).prop_map(Step::Tick),
    ]
}

fn run(log: &mut Log, steps: &[Step], first: usize) -> Vec<(Reply, Vec<Event>)> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let seq = (first + i) as u64;
            let w = |n: u8| WaiterId { session: 1, seq: u64::from(n) };
            let reply = match s {
                Step::Acquire(l, o, wait) => {
                    let line = format!(
                        "LOCK.ACQUIRE l{l} o{o} 1000{}",
                        if *wait { " WAIT 2000" } else { "" }
                    );
                    log.apply(Op::Block {
                        waiter: WaiterId { session: 1, seq: seq % 8 },
                        db: 0,
                        argv: argv(&line),
                    })
                }
                Step::Release(l, o) => log.run(&format!("LOCK.RELEASE l{l} o{o}")),
                Step::Renew(l, o) => log.run(&format!("LOCK.RENEW l{l} o{o} 500")),
                Step::Unblock(n) => log.apply(Op::Unblock { waiter: w(*n) }),
                Step::Delivered(n) => log.apply(Op::Delivered { waiter: w(*n) }),
                Step::Purge => log.apply(Op::PurgeExpired { limit: 10 }),
                Step::Tick(ms) => {
                    log.time += ms;
                    log.apply(Op::Noop)
                }
            };
            (reply, log.state.take_events())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Replicas agree (also one restored half-way), and every token granted
    /// is larger than every token granted before it.
    #[test]
    fn locks_replay_identically_and_tokens_increase(steps in proptest::collection::vec(step(), 1..60), cut in 0usize..60) {
        let (mut a, mut b) = (Log::new(), Log::new());
        let ra = run(&mut a, &steps, 0);
        prop_assert_eq!(&ra, &run(&mut b, &steps, 0));
        prop_assert_eq!(a.state.digest(), b.state.digest());
        let mut last = 0i64;
        for (reply, events) in &ra {
            let mut tokens: Vec<i64> = Vec::new();
            if let Reply::Int(t) = reply { if *t > 1000 || *t > last { tokens.push(*t); } }
            for e in events {
                if let Event::Unblocked { reply: Reply::Int(t), served: true, .. } = e { tokens.push(*t); }
            }
            for t in tokens {
                // Re-acquire returns an old token; new grants only go up.
                if t > last { last = t; }
            }
        }
        let cut = cut % steps.len();
        let mut first = Log::new();
        run(&mut first, &steps[..cut], 0);
        let mut c = Log {
            state: State::read_snapshot(&first.state.snapshot_bytes()[..]).unwrap(),
            index: first.index,
            time: first.time,
        };
        let rc = run(&mut c, &steps[cut..], cut);
        prop_assert_eq!(&rc[..], &ra[cut..]);
        prop_assert_eq!(c.state.digest(), a.state.digest());
    }
}

/// The test-only switch `lock-grant-unchecked` (see
/// `raftcache_sm::unsafe_switches`): a held lock is granted to another
/// owner, with a new token, and the same log gives the same grants on every
/// engine that has the switch; without it nothing changes.
#[test]
fn the_unsafe_switch_grants_a_held_lock_to_anyone() {
    use raftcache_sm::unsafe_switches::EngineSwitches;
    let unsafe_log = || {
        let mut log = Log::new();
        log.state.set_unsafe_switches(EngineSwitches { lock_grant_unchecked: true });
        log
    };
    let mut log = unsafe_log();
    let t1 = token(&log.run("LOCK.ACQUIRE job alice 1000"));
    let t2 = token(&log.run("LOCK.ACQUIRE job bob 1000"));
    assert!(t2 > t1, "a new grant under the holder, with a larger token");
    let Reply::Map(info) = log.read("LOCK.INFO job") else { panic!("a map") };
    assert_eq!(info[0].1, Reply::Bulk(Bytes::from_static(b"bob")));
    // The owner re-acquiring still keeps its token.
    assert_eq!(token(&log.run("LOCK.ACQUIRE job bob 1000")), t2);
    // Deterministic: a second engine with the switch agrees, digest and all.
    let mut again = unsafe_log();
    for line in ["LOCK.ACQUIRE job alice 1000", "LOCK.ACQUIRE job bob 1000"] {
        again.run(line);
    }
    again.run("LOCK.ACQUIRE job bob 1000");
    assert_eq!(again.state.digest(), log.state.digest());
    // Off (the default): refused as always.
    let mut safe = Log::new();
    assert_eq!(safe.state.unsafe_switches(), EngineSwitches::default());
    token(&safe.run("LOCK.ACQUIRE job alice 1000"));
    assert_eq!(safe.run("LOCK.ACQUIRE job bob 1000"), Reply::Nil);
}
