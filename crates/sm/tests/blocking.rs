//! Blocked clients as replicated state: `Op::Block` queues a client in log
//! order, a later entry that creates the key serves the queue in that order
//! (`Event::Unblocked`), a served element stays pending until the waiter's
//! node confirms it (`Op::Delivered`) and is given back otherwise
//! (`Op::Unblock`, or the purge after the pending timeout), and all of it
//! survives a snapshot and replays identically.

use proptest::prelude::*;
use raftcache_sm::blocked::{WaiterId, PENDING_TIMEOUT_MS};
use raftcache_sm::{Call, Event, Op, Reply, State};

mod common;
use common::{argv, bulk, Log};

impl Log {
    fn block(&mut self, seq: u64, line: &str) -> Reply {
        self.apply(Op::Block { waiter: w(seq), db: 0, argv: argv(line) })
    }

    /// The (waiter, reply, served) of the events since the last call.
    fn unblocked(&mut self) -> Vec<(u64, Reply, bool)> {
        self.state
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Unblocked { waiter, reply, served } => Some((waiter.seq, reply, served)),
                _ => None,
            })
            .collect()
    }
}

fn w(seq: u64) -> WaiterId {
    WaiterId { session: 7, seq }
}

fn pair(key: &str, value: &str) -> Reply {
    Reply::Array(vec![bulk(key), bulk(value)])
}

#[test]
fn data_there_is_served_at_once_and_nothing_blocks() {
    let mut log = Log::new();
    log.run("RPUSH q a");
    assert_eq!(log.block(1, "BLPOP q 0"), pair("q", "a"));
    assert_eq!(log.state.blocked().waiters(), 0);
    // As a plain command (a transaction, a client that may not block) an
    // empty key answers like a timeout.
    assert_eq!(log.run("BLPOP q 0"), Reply::NilArray);
    assert_eq!(log.run("BLMOVE q d LEFT RIGHT 0"), Reply::Nil);
    assert_eq!(log.run("SET s x"), Reply::Ok);
    assert!(log.block(2, "BLPOP q s 0").is_error(), "WRONGTYPE on s");
}

#[test]
fn waiters_are_served_in_the_order_they_blocked() {
    let mut log = Log::new();
    assert_eq!(log.block(1, "BLPOP q 0"), Reply::Blocked);
    assert_eq!(log.block(2, "BRPOP other q 0"), Reply::Blocked);
    assert_eq!(log.block(3, "BLPOP q 0"), Reply::Blocked);
    log.state.take_events();
    // Two elements: the first two waiters, in order, after the push.
    assert_eq!(log.run("RPUSH q a b"), Reply::Int(2));
    assert_eq!(log.unblocked(), vec![(1, pair("q", "a"), true), (2, pair("q", "b"), true)]);
    assert_eq!(log.read("LLEN q"), Reply::Int(0));
    assert_eq!(log.state.blocked().waiters(), 1);
    assert_eq!(log.state.blocked().pending(), 2);
    assert_eq!(log.apply(Op::Delivered { waiter: w(1) }), Reply::Int(1));
    assert_eq!(log.apply(Op::Delivered { waiter: w(1) }), Reply::Int(0));
    // A transaction that pushes and pops leaves nothing to serve: waiters
    // are served after the whole entry's operation, as Redis does after EXEC.
    let calls = ["LPUSH q x", "LPOP q"].iter().map(|l| Call { db: 0, argv: argv(l) }).collect();
    log.apply(Op::Exec { watches: vec![], calls });
    assert!(log.unblocked().is_empty());
    assert_eq!(log.state.blocked().waiters(), 1);
}

#[test]
fn an_undelivered_element_is_given_back() {
    let mut log = Log::new();
    log.block(1, "BLPOP q 0");
    log.run("RPUSH q a b c");
    assert_eq!(log.unblocked(), vec![(1, pair("q", "a"), true)]);
    // The client went away before its node confirmed: back at the head.
    assert_eq!(log.apply(Op::Unblock { waiter: w(1) }), Reply::Int(2));
    assert_eq!(log.read("LRANGE q 0 -1"), Reply::Array(vec![bulk("a"), bulk("b"), bulk("c")]));
    // A node that never says anything: the purge gives it back later.
    log.block(2, "BRPOP q2 0");
    log.run("RPUSH q2 x y");
    assert_eq!(log.unblocked(), vec![(2, pair("q2", "y"), true)]);
    log.time += PENDING_TIMEOUT_MS;
    assert!(log.state.next_expiry().is_some_and(|t| t <= log.time));
    log.apply(Op::PurgeExpired { limit: 100 });
    assert_eq!(log.read("LRANGE q2 0 -1"), Reply::Array(vec![bulk("x"), bulk("y")]));
    assert_eq!(log.apply(Op::Delivered { waiter: w(2) }), Reply::Int(0), "too late");
}

#[test]
fn a_silent_nodes_other_waiters_leave_when_its_element_times_out() {
    let mut log = Log::new();
    let dead = |seq| WaiterId { session: 9, seq };
    for seq in 1..=3 {
        let op = Op::Block { waiter: dead(seq), db: 0, argv: argv("BLPOP k 0") };
        assert_eq!(log.apply(op), Reply::Blocked);
    }
    assert_eq!(log.block(10, "BLPOP k 0"), Reply::Blocked);
    log.run("RPUSH k a");
    assert_eq!(log.unblocked(), vec![(1, pair("k", "a"), true)], "served to the first dead waiter");
    log.time += PENDING_TIMEOUT_MS;
    log.apply(Op::PurgeExpired { limit: 10 });
    let events: Vec<(WaiterId, Reply, bool)> = log
        .state
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Unblocked { waiter, reply, served } => Some((waiter, reply, served)),
            _ => None,
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (dead(2), Reply::Blocked, false),
            (dead(3), Reply::Blocked, false),
            (w(10), pair("k", "a"), true),
        ],
        "the silent session's waiters are told to block again, the live one gets the element"
    );
}

#[test]
fn timeouts_unblock_and_waiting_clients_can_leave() {
    let mut log = Log::new();
    log.block(1, "BLPOP q 1.5");
    log.block(2, "BZPOPMIN z 0");
    assert_eq!(log.state.next_expiry(), Some(log.time + 1500));
    log.time += 1500;
    log.apply(Op::PurgeExpired { limit: 100 });
    assert_eq!(log.unblocked(), vec![(1, Reply::NilArray, false)]);
    assert_eq!(log.apply(Op::Unblock { waiter: w(2) }), Reply::Int(1));
    assert_eq!(log.apply(Op::Unblock { waiter: w(2) }), Reply::Int(0));
    log.run("ZADD z 1 m");
    assert!(log.unblocked().is_empty());
    assert_eq!(log.read("ZCARD z"), Reply::Int(1));
}

#[test]
fn moves_sorted_sets_and_chains() {
    let mut log = Log::new();
    log.block(1, "BLMOVE src dst LEFT RIGHT 0");
    log.block(2, "BLPOP dst 0");
    log.block(3, "BZPOPMAX z 0");
    log.state.take_events();
    log.run("RPUSH src a");
    // The move creates dst, whose waiter is served in turn.
    assert_eq!(log.unblocked(), vec![(1, bulk("a"), true), (2, pair("dst", "a"), true)]);
    log.run("ZADD z 1 a 2 b");
    assert_eq!(
        log.unblocked(),
        vec![(3, Reply::Array(vec![bulk("z"), bulk("b"), Reply::Double(2.0)]), true)]
    );
    // A key that comes back with another type leaves its waiter waiting.
    log.block(4, "BLPOP k 0");
    log.run("SET k v");
    assert!(log.unblocked().is_empty());
    assert_eq!(log.state.blocked().waiters(), 1);
}

#[test]
fn blocked_clients_survive_a_snapshot() {
    let mut log = Log::new();
    log.block(1, "BLPOP q 0");
    log.block(2, "BLPOP q 5");
    log.block(3, "BRPOP r 0");
    log.run("RPUSH r x");
    log.state.take_events();
    let restored = State::read_snapshot(&log.state.snapshot_bytes()[..]).expect("restore");
    assert_eq!(restored.digest(), log.state.digest());
    let mut copy = Log { state: restored, index: log.index, time: log.time };
    for l in [&mut log, &mut copy] {
        l.run("RPUSH q a");
        assert_eq!(l.unblocked(), vec![(1, pair("q", "a"), true)]);
        assert_eq!(l.apply(Op::Unblock { waiter: w(3) }), Reply::Int(2));
    }
    assert_eq!(copy.state.digest(), log.state.digest());
    copy.state = State::read_snapshot(&copy.state.snapshot_bytes()[..]).expect("restore");
    assert_eq!(copy.state.snapshot_bytes(), log.state.snapshot_bytes());
}

const PUSHES: &[&str] = &[
    "RPUSH q a b",
    "LPUSH q c",
    "RPUSH d x",
    "ZADD z 1 m 2 n",
    "DEL q",
    "SET q str",
    "LPOP q",
    "RPUSH other q",
];
const BLOCKS: &[&str] = &[
    "BLPOP q 0",
    "BRPOP q d 0",
    "BLMOVE q d RIGHT LEFT 0",
    "BZPOPMIN z 0",
    "BLMPOP 0 2 q d LEFT COUNT 2",
    "BZMPOP 0 1 z MAX COUNT 3",
    "BLPOP q 0.5",
];

#[derive(Debug, Clone)]
enum Step {
    Push(usize),
    Block(usize, u64),
    Unblock(u64),
    Delivered(u64),
    Purge,
    Tick(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..PUSHES.len()).prop_map(Step::Push),
        3 => (0..BLOCKS.len(), 0u64..6).prop_map(|(b, s)| Step::Block(b, s)),
        1 => (0u64..6).prop_map(Step::Unblock),
        1 => (0u64..6).prop_map(Step::Delivered),
        1 => Just(Step::Purge),
        1 => (0i64..12_000).prop_map(Step::Tick),
    ]
}

fn run_steps(log: &mut Log, steps: &[Step]) -> Vec<(Reply, Vec<Event>)> {
    steps
        .iter()
        .map(|s| {
            let reply = match s {
                Step::Push(i) => log.run(PUSHES[*i]),
                Step::Block(i, seq) => log.block(*seq, BLOCKS[*i]),
                Step::Unblock(seq) => log.apply(Op::Unblock { waiter: w(*seq) }),
                Step::Delivered(seq) => log.apply(Op::Delivered { waiter: w(*seq) }),
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

    /// Replicas agree on replies, served events and state, also one restored
    /// from a snapshot half-way; and no element is ever in two places.
    #[test]
    fn blocking_replays_identically(steps in proptest::collection::vec(step(), 1..60), cut in 0usize..60) {
        let (mut a, mut b) = (Log::new(), Log::new());
        let ra = run_steps(&mut a, &steps);
        let rb = run_steps(&mut b, &steps);
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(a.state.digest(), b.state.digest());
        let cut = cut % steps.len();
        let mut first = Log::new();
        run_steps(&mut first, &steps[..cut]);
        let restored = State::read_snapshot(&first.state.snapshot_bytes()[..]).expect("restore");
        let mut c = Log { state: restored, index: first.index, time: first.time };
        let rc = run_steps(&mut c, &steps[cut..]);
        prop_assert_eq!(&rc[..], &ra[cut..]);
        prop_assert_eq!(c.state.digest(), a.state.digest());
    }
}
