//! Scripts are deterministic: random logs of EVAL / EVALSHA / SCRIPT LOAD /
//! SCRIPT FLUSH mixed with plain commands and transactions, applied to two
//! engines, give equal replies and digests; an engine restored from a
//! snapshot half-way (whose interpreter is new, with no history) continues
//! exactly like the one that applied everything. The scripts use what could
//! differ between interpreters: `math.random`, `tostring` of tables, `pairs`
//! order, cjson, errors half-way, reads of random members, SELECT.

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_sm::{Call, Op, Reply, Stamp, State};

const SCRIPTS: &[&str] = &[
    "local n = redis.call('INCR', KEYS[1]) if n % 3 == 0 then redis.call('DEL', KEYS[2]) end return n",
    "for i = 1, tonumber(ARGV[1]) do redis.call('RPUSH', KEYS[1], math.random(1000)) end \
     return redis.call('LLEN', KEYS[1])",
    "redis.call('SADD', KEYS[1], ARGV[1], ARGV[2], 'x', 'y') local t = {} \
     for i = 1, 4 do t[#t + 1] = redis.call('SRANDMEMBER', KEYS[1]) end return t",
    "redis.call('SET', KEYS[1], ARGV[1]) return redis.pcall('INCR', KEYS[1])",
    "redis.call('SET', KEYS[1], 'before') error('boom') redis.call('SET', KEYS[2], 'after')",
    "return redis.call('SPOP', KEYS[1])",
    "redis.call('SET', KEYS[1], tostring({}) .. tostring(function() end)) return redis.call('GET', KEYS[1])",
    "redis.call('SET', KEYS[1], cjson.encode({a = ARGV[1], b = {1, 2, 3}, c = {d = true}})) \
     return cjson.decode(redis.call('GET', KEYS[1])).a",
    "local t = {x = 1, y = 2, z = 3, [ARGV[1]] = 4, [ARGV[2]] = 5} local out = {} \
     for k, v in pairs(t) do out[#out + 1] = k end redis.call('RPUSH', KEYS[1], unpack(out)) return out",
    "redis.call('SELECT', 1) redis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])",
    "local r = redis.pcall('HSET', KEYS[1], 'f', ARGV[1]) if type(r) == 'table' and r.err then \
     return redis.error_reply(r.err) end return redis.call('HGETALL', KEYS[1])",
    "math.randomseed(tonumber(ARGV[1]) or 7) return {math.random(), math.random(100)}",
    "local s = '' for i = 1, 200 do s = s .. string.char(65 + (i % 26)) end \
     redis.call('APPEND', KEYS[1], s) return string.len(redis.call('GET', KEYS[1]))",
    "#!lua flags=no-writes\nreturn redis.call('EXISTS', KEYS[1], KEYS[2])",
    "return redis.call('ZADD', KEYS[1], math.random(), ARGV[1])",
];

#[derive(Debug, Clone)]
enum Step {
    Eval { script: usize, keys: [u8; 2], args: [u8; 2] },
    EvalSha { script: usize, keys: [u8; 2], args: [u8; 2] },
    Load { script: usize },
    Flush,
    Plain { key: u8, n: u8 },
    Txn { script: usize, key: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    let s = 0..SCRIPTS.len();
    prop_oneof![
        5 => (s.clone(), any::<[u8; 2]>(), any::<[u8; 2]>())
            .prop_map(|(script, keys, args)| Step::Eval { script, keys, args }),
        3 => (s.clone(), any::<[u8; 2]>(), any::<[u8; 2]>())
            .prop_map(|(script, keys, args)| Step::EvalSha { script, keys, args }),
        1 => s.clone().prop_map(|script| Step::Load { script }),
        1 => Just(Step::Flush),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(key, n)| Step::Plain { key, n }),
        1 => (s, any::<u8>()).prop_map(|(script, key)| Step::Txn { script, key }),
    ]
}

fn b(s: impl Into<String>) -> Bytes {
    Bytes::from(s.into())
}

fn key(k: u8) -> Bytes {
    b(format!("k{}", k % 4))
}

fn arg(a: u8) -> Bytes {
    b(format!("{}", a % 7))
}

fn op(step: &Step) -> Op {
    let command = |argv: Vec<Bytes>| Op::Command { db: 0, argv };
    match step {
        Step::Eval { script, keys, args } => command(vec![
            b("EVAL"),
            b(SCRIPTS[*script]),
            b("2"),
            key(keys[0]),
            key(keys[1]),
            arg(args[0]),
            arg(args[1]),
        ]),
        Step::EvalSha { script, keys, args } => command(vec![
            b("EVALSHA"),
            b(raftcache_sm::script::sha1_hex(SCRIPTS[*script].as_bytes())),
            b("2"),
            key(keys[0]),
            key(keys[1]),
            arg(args[0]),
            arg(args[1]),
        ]),
        Step::Load { script } => command(vec![b("SCRIPT"), b("LOAD"), b(SCRIPTS[*script])]),
        Step::Flush => command(vec![b("SCRIPT"), b("FLUSH")]),
        Step::Plain { key: k, n } => match n % 3 {
            0 => command(vec![b("SET"), key(*k), arg(*n)]),
            1 => command(vec![b("SADD"), key(*k), arg(*n)]),
            _ => command(vec![b("DEL"), key(*k)]),
        },
        Step::Txn { script, key: k } => Op::Exec {
            watches: vec![],
            calls: vec![
                Call { db: 0, argv: vec![b("INCR"), key(*k)] },
                Call {
                    db: 0,
                    argv: vec![
                        b("EVAL"),
                        b(SCRIPTS[*script]),
                        b("2"),
                        key(*k),
                        key(k.wrapping_add(1)),
                        arg(1),
                        arg(2),
                    ],
                },
            ],
        },
    }
}

fn apply_all(state: &mut State, log: &[Op], first_index: u64) -> Vec<Reply> {
    log.iter()
        .enumerate()
        .map(|(i, op)| {
            let index = first_index + i as u64;
            let stamp =
                Stamp { index, time_ms: 1_700_000_000_000 + index as i64 * 10, seed: index * 31 };
            state.apply(&stamp, op)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scripts_replay_identically(steps in proptest::collection::vec(step(), 1..40), cut in 0usize..40) {
        let log: Vec<Op> = steps.iter().map(op).collect();
        let (mut a, mut b) = (State::new(), State::new());
        let ra = apply_all(&mut a, &log, 1);
        let rb = apply_all(&mut b, &log, 1);
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(a.digest(), b.digest());

        // Restore half-way into a fresh engine (a new interpreter) and go on.
        let cut = cut % log.len();
        let mut first = State::new();
        apply_all(&mut first, &log[..cut], 1);
        let mut restored = State::read_snapshot(&first.snapshot_bytes()[..]).expect("restore");
        let rest = apply_all(&mut restored, &log[cut..], cut as u64 + 1);
        prop_assert_eq!(&rest[..], &ra[cut..]);
        prop_assert_eq!(restored.digest(), a.digest());
        prop_assert_eq!(restored.snapshot_bytes(), a.snapshot_bytes());
    }
}

#[test]
fn the_script_cache_is_in_the_snapshot_and_the_digest() {
    let mut state = State::new();
    let empty = state.digest();
    let load = Op::Command { db: 0, argv: vec![b("SCRIPT"), b("LOAD"), b("return 1")] };
    let stamp = Stamp { index: 1, time_ms: 1, seed: 1 };
    let sha = state.apply(&stamp, &load);
    assert_eq!(sha, Reply::Bulk(b(raftcache_sm::script::sha1_hex(b"return 1"))));
    assert_ne!(state.digest(), empty);
    let restored = State::read_snapshot(&state.snapshot_bytes()[..]).expect("restore");
    assert_eq!(restored.digest(), state.digest());
    let Reply::Bulk(sha) = sha else { unreachable!() };
    let evalsha = [b("EVALSHA"), sha, b("0")];
    assert_eq!(
        restored.query(0, &[&[b("EVALSHA_RO")][..], &evalsha[1..]].concat(), 1, 1),
        Reply::Int(1)
    );
}

/// The scripts above really run (the property would be empty if they all
/// failed to compile): each one once, only the one that raises fails.
#[test]
fn every_script_of_the_property_runs() {
    for (i, _) in SCRIPTS.iter().enumerate() {
        let mut state = State::new();
        let step = Step::Eval { script: i, keys: [i as u8, i as u8 + 1], args: [3, 5] };
        let reply = apply_all(&mut state, &[op(&step)], i as u64 + 1).remove(0);
        let raises = SCRIPTS[i].contains("error('boom')");
        assert_eq!(reply.is_error(), raises, "script {i}: {reply:?}");
    }
}
