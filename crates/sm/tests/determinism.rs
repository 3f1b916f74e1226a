//! Property tests of the engine's contract:
//!
//! - two engines fed the same log hold byte-identical state (equal digests and
//!   equal snapshots) and gave identical replies; the log mixes single
//!   commands, purges and transactions (MULTI/EXEC with WATCH marks);
//! - "apply half, snapshot, restore, apply the rest" equals "apply straight
//!   through", replies included;
//! - reads never change state;
//! - a key set with a TTL is visible exactly until its expiry millisecond and
//!   never after, through every read command, and is physically removed by a
//!   purge at or after that time.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_sm::{lookup, Call, Kind, Op, Reply, Stamp, State, Watch};

/// Command templates: `{k}` a key, `{m}` a member/field, `{n}` a small integer,
/// `{f}` a float, `{t}` a TTL in ms. Every family is represented, errors too.
const TEMPLATES: &[&str] = &[
    "SET {k} {m}",
    "SET {k} {n} PX {t}",
    "SET {k} {m} NX EX 1",
    "SET {k} {m} XX KEEPTTL",
    "SET {k} {m} GET",
    "GETSET {k} {m}",
    "GETDEL {k}",
    "GETEX {k} PX {t}",
    "GETEX {k} PERSIST",
    "MSET {k} {m} {k} {n}",
    "MSETNX {k} {m} {k} {m}",
    "INCR {k}",
    "INCRBY {k} {n}",
    "DECRBY {k} {n}",
    "INCRBYFLOAT {k} {f}",
    "APPEND {k} {m}",
    "SETRANGE {k} {n} {m}",
    "DEL {k} {k}",
    "UNLINK {k}",
    "EXPIRE {k} {n}",
    "PEXPIRE {k} {t} GT",
    "PEXPIRE {k} {t} NX",
    "PEXPIREAT {k} {n}",
    "PERSIST {k}",
    "RENAME {k} {k}",
    "RENAMENX {k} {k}",
    "COPY {k} {k} REPLACE",
    "MOVE {k} 1",
    "HSET {k} {m} {n} {m} {m}",
    "HSETNX {k} {m} {n}",
    "HDEL {k} {m}",
    "HINCRBY {k} {m} {n}",
    "HINCRBYFLOAT {k} {m} {f}",
    "HPEXPIRE {k} {t} FIELDS 1 {m}",
    "HPEXPIRE {k} {t} NX FIELDS 2 {m} {m}",
    "HPEXPIRE {k} {t} GT FIELDS 1 {m}",
    "HPEXPIREAT {k} {n} FIELDS 1 {m}",
    "HEXPIRE {k} {n} LT FIELDS 1 {m}",
    "HPERSIST {k} FIELDS 1 {m}",
    "LPUSH {k} {m} {n}",
    "RPUSH {k} {m}",
    "LPUSHX {k} {m}",
    "LPOP {k}",
    "RPOP {k} 2",
    "LSET {k} 0 {m}",
    "LREM {k} 0 {m}",
    "LTRIM {k} 1 -1",
    "LINSERT {k} BEFORE {m} {n}",
    "LMOVE {k} {k} LEFT RIGHT",
    "RPOPLPUSH {k} {k}",
    "SADD {k} {m} {n}",
    "SADD {k} {n} {n}",
    "SREM {k} {m}",
    "SPOP {k}",
    "SPOP {k} 2",
    "SMOVE {k} {k} {m}",
    "SINTERSTORE {k} {k} {k}",
    "SUNIONSTORE {k} {k} {k}",
    "SDIFFSTORE {k} {k} {k}",
    "ZADD {k} {f} {m}",
    "ZADD {k} NX {n} {m} {f} {n}",
    "ZADD {k} XX CH INCR {f} {m}",
    "ZADD {k} GT {n} {m}",
    "ZINCRBY {k} {f} {m}",
    "ZREM {k} {m}",
    "ZREMRANGEBYSCORE {k} -inf {n}",
    "ZREMRANGEBYRANK {k} 0 {n}",
    "ZPOPMIN {k}",
    "ZPOPMAX {k} 2",
    "FLUSHDB",
    "SWAPDB 0 1",
    "NOSUCHCOMMAND {k}",
    "GET",
];

/// Read commands checked for equality on both engines.
const READS: &[&str] = &[
    "GET {k}",
    "MGET {k} {k}",
    "STRLEN {k}",
    "GETRANGE {k} 0 -1",
    "EXISTS {k} {k}",
    "TYPE {k}",
    "TTL {k}",
    "PTTL {k}",
    "PEXPIRETIME {k}",
    "OBJECT ENCODING {k}",
    "KEYS *",
    "SCAN 0 COUNT 3",
    "DBSIZE",
    "HGETALL {k}",
    "HGET {k} {m}",
    "HLEN {k}",
    "HPTTL {k} FIELDS 2 {m} {m}",
    "HKEYS {k}",
    "LRANGE {k} 0 -1",
    "LLEN {k}",
    "LPOS {k} {m}",
    "SMEMBERS {k}",
    "SCARD {k}",
    "SISMEMBER {k} {m}",
    "SINTER {k} {k}",
    "ZRANGE {k} 0 -1 WITHSCORES",
    "ZRANGEBYSCORE {k} -inf +inf",
    "ZSCORE {k} {m}",
    "ZRANK {k} {m}",
    "ZCARD {k}",
    "HSCAN {k} 0",
    "SSCAN {k} 0",
    "ZSCAN {k} 0",
];

#[derive(Debug, Clone)]
struct Step {
    template: usize,
    picks: Vec<u8>,
    time_delta: i64,
    purge: bool,
    /// Extra calls making this step a transaction (with watches from `picks`).
    txn: Vec<usize>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..TEMPLATES.len(),
        proptest::collection::vec(any::<u8>(), 8),
        -50i64..400,
        prop::bool::weighted(0.05),
        prop_oneof![
            6 => Just(Vec::new()),
            1 => proptest::collection::vec(0..TEMPLATES.len(), 0..4),
        ],
    )
        .prop_map(|(template, picks, time_delta, purge, txn)| Step {
            template,
            picks,
            time_delta,
            purge,
            txn,
        })
}

/// Fills a template from `picks`, deterministically.
fn render(template: &str, picks: &[u8]) -> Vec<Bytes> {
    let mut i = 0;
    let mut next = || {
        let v = picks[i % picks.len()];
        i += 1;
        v
    };
    template
        .split(' ')
        .map(|word| {
            let text = match word {
                "{k}" => format!("k{}", next() % 5),
                "{m}" => match next() % 4 {
                    0 => format!("{}", next() % 10),
                    1 => String::new(),
                    _ => format!("m{}", next() % 6),
                },
                "{n}" => format!("{}", (next() % 12) as i64 - 2),
                "{f}" => format!("{}.{}", next() % 5, next() % 10),
                "{t}" => format!("{}", 1 + (next() as i64) * 4),
                other => other.to_string(),
            };
            Bytes::from(text)
        })
        .collect()
}

/// The log a sequence of steps produces.
fn log_of(steps: &[Step]) -> Vec<(Stamp, Op)> {
    let mut time = 1_700_000_000_000i64;
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            time += s.time_delta; // may go backwards: the engine must cope
            let stamp =
                Stamp { index: i as u64 + 1, time_ms: time, seed: 0x5eed ^ (i as u64 * 7919) };
            let op = if s.purge {
                Op::PurgeExpired { limit: 3 }
            } else if !s.txn.is_empty() || s.picks[6] % 17 == 0 {
                // A transaction: the step's command and the extra ones, with
                // up to two watches at marks a little behind this index.
                let calls = std::iter::once(s.template)
                    .chain(s.txn.iter().copied())
                    .enumerate()
                    .map(|(j, t)| {
                        let mut picks = s.picks.clone();
                        picks.rotate_left(j);
                        Call { db: (picks[7] % 2) as u32, argv: render(TEMPLATES[t], &picks) }
                    })
                    .collect();
                let watches = (0..s.picks[5] % 3)
                    .map(|w| Watch {
                        db: u32::from(s.picks[w as usize] % 2),
                        key: Bytes::from(format!("k{}", s.picks[w as usize + 1] % 5)),
                        mark: (i as u64).saturating_sub(u64::from(s.picks[4] % 4)),
                        seen: s.picks[3] % 2 == 0,
                    })
                    .collect();
                Op::Exec { watches, calls }
            } else {
                Op::Command {
                    db: (s.picks[7] % 2) as u32,
                    argv: render(TEMPLATES[s.template], &s.picks),
                }
            };
            (stamp, op)
        })
        .collect()
}

fn apply_all(state: &mut State, log: &[(Stamp, Op)]) -> Vec<Reply> {
    log.iter().map(|(stamp, op)| state.apply(stamp, op)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn same_log_same_state(steps in proptest::collection::vec(step(), 1..120)) {
        let log = log_of(&steps);
        let (mut a, mut b) = (State::new(), State::new());
        let ra = apply_all(&mut a, &log);
        let rb = apply_all(&mut b, &log);
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
    }

    #[test]
    fn snapshot_restore_then_continue(steps in proptest::collection::vec(step(), 2..120), cut in 0usize..120) {
        let log = log_of(&steps);
        let cut = cut % log.len();
        let mut straight = State::new();
        let replies = apply_all(&mut straight, &log);

        let mut first = State::new();
        apply_all(&mut first, &log[..cut]);
        let bytes = first.snapshot_bytes();
        let mut restored = State::read_snapshot(&bytes[..]).expect("restore");
        prop_assert_eq!(restored.digest(), first.digest());
        prop_assert_eq!(restored.snapshot_bytes(), bytes);
        let rest = apply_all(&mut restored, &log[cut..]);
        prop_assert_eq!(&rest[..], &replies[cut..]);
        prop_assert_eq!(restored.digest(), straight.digest());
        prop_assert_eq!(restored.snapshot_bytes(), straight.snapshot_bytes());
    }

    #[test]
    fn reads_never_change_state(steps in proptest::collection::vec(step(), 1..80),
                                reads in proptest::collection::vec((0..READS.len(), proptest::collection::vec(any::<u8>(), 8), 0i64..5000), 1..40)) {
        let log = log_of(&steps);
        let mut state = State::new();
        apply_all(&mut state, &log);
        let before = state.snapshot_bytes();
        let clock = state.clock_ms();
        let copy = State::read_snapshot(&before[..]).unwrap();
        for (template, picks, ahead) in reads {
            let argv = render(READS[template], &picks);
            prop_assert!(matches!(lookup(&argv[0]).map(|s| s.kind), Some(Kind::Read(_))), "{:?} is not a read", argv[0]);
            let r1 = state.query(0, &argv, clock + ahead, 1);
            let r2 = copy.query(0, &argv, clock + ahead, 1);
            prop_assert_eq!(r1, r2, "replica replies differ for {:?}", argv);
        }
        prop_assert_eq!(state.snapshot_bytes(), before);
    }

    #[test]
    fn ttl_is_exact_to_the_millisecond(t0 in 0i64..1_000_000, px in 1i64..100_000, delta in -5i64..5, other in 0i64..200_000) {
        let base = 1_600_000_000_000i64;
        let mut state = State::new();
        let set = Op::Command { db: 0, argv: render("SET key val PX {t}", &[0]) };
        let set = match set {
            Op::Command { db, mut argv } => { argv[4] = Bytes::from(px.to_string()); Op::Command { db, argv } }
            other => other,
        };
        state.apply(&Stamp { index: 1, time_ms: base + t0, seed: 1 }, &set);
        let expiry = base + t0 + px;
        for t in [expiry + delta, base + t0 + other] {
            let visible = t < expiry;
            let get = state.query(0, &render("GET key", &[0]), t, 0);
            prop_assert_eq!(get == Reply::Bulk(Bytes::from_static(b"val")), visible, "GET at {}", t);
            let exists = state.query(0, &render("EXISTS key", &[0]), t, 0);
            prop_assert_eq!(exists, Reply::Int(visible as i64));
            let pttl = state.query(0, &render("PTTL key", &[0]), t, 0);
            prop_assert_eq!(pttl, if visible { Reply::Int(expiry - t) } else { Reply::Int(-2) });
            let dbsize = state.query(0, &render("DBSIZE", &[0]), t, 0);
            prop_assert_eq!(dbsize, Reply::Int(visible as i64));
            let keys = state.query(0, &render("KEYS *", &[0]), t, 0);
            prop_assert_eq!(keys == Reply::Array(vec![]), !visible);
            let scan = state.query(0, &render("SCAN 0", &[0]), t, 0);
            let empty_scan = Reply::Array(vec![Reply::Bulk(Bytes::from_static(b"0")), Reply::Array(vec![])]);
            prop_assert_eq!(scan == empty_scan, !visible);
        }
        // A purge before the expiry removes nothing; at the expiry it removes the key.
        state.apply(&Stamp { index: 2, time_ms: expiry - 1, seed: 2 }, &Op::PurgeExpired { limit: 10 });
        prop_assert_eq!(state.dbs()[0].len(), 1);
        state.apply(&Stamp { index: 3, time_ms: expiry, seed: 3 }, &Op::PurgeExpired { limit: 10 });
        prop_assert_eq!(state.dbs()[0].len(), 0);
    }
}

#[test]
fn replicated_time_never_goes_backwards() {
    let mut state = State::new();
    let set = |px: &str| Op::Command {
        db: 0,
        argv: ["SET", "k", "v", "PX", px].iter().map(|s| Bytes::from(s.to_string())).collect(),
    };
    state.apply(&Stamp { index: 1, time_ms: 10_000, seed: 0 }, &set("100"));
    // A new leader with a clock 5 s behind proposes a no-op: the key expired
    // at 10 100 must stay expired for reads at the replicated clock.
    state.apply(&Stamp { index: 2, time_ms: 20_000, seed: 0 }, &Op::Noop);
    state.apply(&Stamp { index: 3, time_ms: 15_000, seed: 0 }, &Op::Noop);
    assert_eq!(state.clock_ms(), 20_000);
    let get = ["GET", "k"].iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
    assert_eq!(
        state.query(0, &get, 0, 0),
        Reply::Nil,
        "a reader with a stale clock still sees it expired"
    );
    // And a SET … PX applied with an old stamp is relative to the replicated clock.
    state.apply(&Stamp { index: 4, time_ms: 1_000, seed: 0 }, &set("500"));
    let pexpiretime =
        ["PEXPIRETIME", "k"].iter().map(|s| Bytes::from(s.to_string())).collect::<Vec<_>>();
    assert_eq!(state.query(0, &pexpiretime, 0, 0), Reply::Int(20_500));
}

/// Proposals built from steps: 1–3 operations each, from two origin sessions,
/// with some proposals re-sent later (a retry after a failover).
fn proposals_of(
    steps: &[Step],
    resend: &[usize],
) -> Vec<(u64, raftcache_sm::Proposal, Option<usize>)> {
    use raftcache_sm::{Origin, Proposal};
    let log = log_of(steps);
    let mut out: Vec<(u64, Proposal, Option<usize>)> = Vec::new();
    let mut next_seq = [0u64; 2];
    let mut index = 0;
    for (i, chunk) in log.chunks(3).enumerate() {
        index += 1;
        let session = i % 2;
        let seq = next_seq[session];
        next_seq[session] += 1;
        // Acknowledge everything older than two proposals ago.
        let ack_below = seq.saturating_sub(2);
        let proposal = Proposal {
            time_ms: chunk[0].0.time_ms,
            seed: chunk[0].0.seed,
            origin: Some(Origin { session: session as u64 + 100, seq, ack_below }),
            ops: Arc::new(chunk.iter().map(|(_, op)| op.clone()).collect()),
        };
        out.push((index, proposal, None));
        if resend.contains(&i) {
            // Re-send the previous proposal of this session, if any.
            if let Some(pos) = out.iter().rposition(|(_, p, dup)| {
                dup.is_none()
                    && p.origin
                        .is_some_and(|o| o.session == session as u64 + 100 && o.seq + 1 == seq)
            }) {
                index += 1;
                let again = out[pos].1.clone();
                out.push((index, again, Some(pos)));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn retried_proposals_apply_once_and_replicas_agree(
        steps in proptest::collection::vec(step(), 3..90),
        resend in proptest::collection::vec(0usize..30, 0..8),
        cut in 0usize..40,
    ) {
        let proposals = proposals_of(&steps, &resend);
        let mut a = State::new();
        let mut replies: Vec<Vec<Reply>> = Vec::new();
        for (index, p, dup_of) in &proposals {
            let r = a.apply_proposal(*index, p);
            if let Some(original) = dup_of {
                // A retry gets exactly the first replies and changes nothing.
                prop_assert_eq!(&r, &replies[*original]);
            }
            replies.push(r);
        }
        // A replica restored from a snapshot taken midway agrees on everything.
        let cut = cut % proposals.len();
        let mut b = State::new();
        for (index, p, _) in &proposals[..cut] {
            b.apply_proposal(*index, p);
        }
        let mut b = State::read_snapshot(&b.snapshot_bytes()[..]).unwrap();
        for (k, (index, p, _)) in proposals[cut..].iter().enumerate() {
            prop_assert_eq!(&b.apply_proposal(*index, p), &replies[cut + k]);
        }
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());
        // Only unacknowledged replies are kept.
        prop_assert!(a.sessions().cached_replies() <= 2 * 3);
    }
}

#[test]
fn a_retried_incr_counts_once_and_a_stale_one_not_at_all() {
    use raftcache_sm::{Origin, Proposal};
    let incr = |seq, ack_below| Proposal {
        time_ms: 1_000,
        seed: 0,
        origin: Some(Origin { session: 9, seq, ack_below }),
        ops: Arc::new(vec![Op::Command {
            db: 0,
            argv: vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"n")],
        }]),
    };
    let mut s = State::new();
    assert_eq!(s.apply_proposal(1, &incr(0, 0)), vec![Reply::Int(1)]);
    // The leader died before answering; the origin retries through the new one.
    assert_eq!(s.apply_proposal(2, &incr(0, 0)), vec![Reply::Int(1)]);
    assert_eq!(s.apply_proposal(3, &incr(1, 1)), vec![Reply::Int(2)]);
    // A copy of seq 0 committed late, after the origin moved on: not applied.
    assert!(s.apply_proposal(4, &incr(0, 1))[0].is_error());
    let get = [Bytes::from_static(b"GET"), Bytes::from_static(b"n")];
    assert_eq!(s.query(0, &get, 0, 0), Reply::Bulk(Bytes::from_static(b"2")));
}
