//! The bitmap, HyperLogLog and LCS commands against the engine's contract:
//!
//! - HLL bytes and estimates equal the ones redis-server 7.0.15 produced for
//!   the same elements (values captured from the real server);
//! - two engines fed the same log of these commands (corrupt HLLs, huge
//!   offsets and arbitrary BITFIELD subcommands included) hold the same state
//!   and gave the same replies, and a snapshot restored midway continues
//!   identically;
//! - reads (PFCOUNT above all, which Redis implements as a write) never
//!   change the state: the digest and the snapshot bytes stay the same.

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_sm::{lookup, Kind, Op, Reply, Stamp, State};

fn args(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// An engine with a log index and a clock, applying writes and serving reads.
struct Node {
    state: State,
    index: u64,
    now: i64,
}

impl Node {
    fn new() -> Node {
        Node { state: State::new(), index: 0, now: 1_700_000_000_000 }
    }

    fn run(&mut self, argv: Vec<Bytes>) -> Reply {
        let is_read = matches!(lookup(&argv[0]).map(|s| s.kind), Some(Kind::Read(_)));
        if is_read {
            self.state.query(0, &argv, self.now, 0)
        } else {
            self.index += 1;
            let stamp = Stamp { index: self.index, time_ms: self.now, seed: self.index };
            self.state.apply(&stamp, &Op::Command { db: 0, argv })
        }
    }

    /// PFADD of `elem-{i}` for i in `range`, in commands of 10 000 elements.
    fn pfadd_range(&mut self, key: &str, range: std::ops::Range<usize>) {
        let items: Vec<String> = range.map(|i| format!("elem-{i}")).collect();
        for chunk in items.chunks(10_000) {
            let mut argv = vec![Bytes::from_static(b"PFADD"), Bytes::from(key.to_string())];
            argv.extend(chunk.iter().map(|e| Bytes::from(e.clone())));
            self.run(argv);
        }
    }

    fn get(&mut self, key: &str) -> Bytes {
        match self.run(args(&[b"GET", key.as_bytes()])) {
            Reply::Bulk(b) => b,
            other => panic!("GET {key}: {other:?}"),
        }
    }
}

/// `PFADD n{N} elem-0 … elem-{N-1}` on redis-server 7.0.15, then GET (its
/// length and CRC-32), PFDEBUG ENCODING and PFCOUNT.
const REDIS_HLLS: &[(usize, i64, usize, u32, &str)] = &[
    (1, 1, 21, 0x3491_50b3, "sparse"),
    (10, 10, 48, 0xc042_528a, "sparse"),
    (100, 100, 286, 0x1125_bcf3, "sparse"),
    (1000, 997, 1895, 0x6522_dbdd, "sparse"),
    (2000, 2014, 12304, 0xc154_058d, "dense"),
    (5000, 5051, 12304, 0xe92e_cd40, "dense"),
    (20000, 20240, 12304, 0x4402_5c7c, "dense"),
    (100000, 100025, 12304, 0xce71_0d34, "dense"),
];

#[test]
fn hll_bytes_and_estimates_equal_redis() {
    let mut node = Node::new();
    for &(n, count, len, crc, encoding) in REDIS_HLLS {
        let key = format!("n{n}");
        node.pfadd_range(&key, 0..n);
        let bytes = node.get(&key);
        assert_eq!(bytes.len(), len, "length of {key}");
        assert_eq!(crc32fast::hash(&bytes), crc, "bytes of {key}");
        let enc = node.run(args(&[b"PFDEBUG", b"ENCODING", key.as_bytes()]));
        assert_eq!(enc, Reply::Status(encoding.into()), "encoding of {key}");
        assert_eq!(node.run(args(&[b"PFCOUNT", key.as_bytes()])), Reply::Int(count), "{key}");
    }
    // Unions, as Redis counted them.
    assert_eq!(node.run(args(&[b"PFCOUNT", b"n10", b"n100", b"n1000"])), Reply::Int(997));
    assert_eq!(node.run(args(&[b"PFCOUNT", b"n5000", b"n100000"])), Reply::Int(100_025));
}

#[test]
fn small_hll_and_merges_equal_redis() {
    let mut node = Node::new();
    node.run(args(&[b"PFADD", b"small", b"a", b"b", b"c"]));
    assert_eq!(
        &node.get("small")[..],
        b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80`\xf3\x80P\xb1\x84K\xfb\x80BZ"
    );
    node.pfadd_range("n100", 0..100);
    node.pfadd_range("n5000", 0..5000);
    let items: Vec<Bytes> = (0..300).map(|i| Bytes::from(format!("x-{i}"))).collect();
    let mut argv = args(&[b"PFADD", b"other"]);
    argv.extend(items);
    node.run(argv);
    // PFMERGE into a new key, sparse sources (stays sparse) and with a dense one.
    assert_eq!(node.run(args(&[b"PFMERGE", b"m2", b"n100", b"other"])), Reply::Ok);
    let m2 = node.get("m2");
    assert_eq!((m2.len(), crc32fast::hash(&m2)), (870, 0x937f_b344));
    assert_eq!(node.run(args(&[b"PFCOUNT", b"m2"])), Reply::Int(400));
    assert_eq!(node.run(args(&[b"PFMERGE", b"m3", b"other", b"n5000"])), Reply::Ok);
    let m3 = node.get("m3");
    assert_eq!((m3.len(), crc32fast::hash(&m3)), (12304, 0x6a00_65e5));
    assert_eq!(node.run(args(&[b"PFCOUNT", b"m3"])), Reply::Int(5336));
    assert_eq!(node.run(args(&[b"PFCOUNT", b"n100", b"other"])), Reply::Int(400));
}

/// Crafted dense HLLs whose estimates overflow Redis's `llroundl`: Redis
/// replies LLONG_MIN (checked against redis-server 7.0.15).
#[test]
fn crafted_registers_give_redis_numbers() {
    let dense = |f: &dyn Fn(usize) -> u8| {
        let mut regs = vec![0u8; 12288];
        for i in 0..16384 {
            let (byte, fb) = (i * 6 / 8, (i * 6) % 8);
            let v = u16::from(f(i));
            regs[byte] |= (v << fb) as u8;
            if byte + 1 < regs.len() {
                regs[byte + 1] |= (v >> (8 - fb)) as u8;
            }
        }
        let mut s = b"HYLL\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80".to_vec();
        s.extend(regs);
        s
    };
    let cases: &[(&dyn Fn(usize) -> u8, i64)] = &[
        (&|_| 63, i64::MIN),
        (&|_| 51, i64::MIN),
        (&|_| 50, i64::MIN),
        (&|_| 40, 12_994_641_697_113_596),
        (&|i| ((i * 7) % 64) as u8, 375_261),
        (&|i| if i % 2 == 1 { 51 } else { 0 }, 13_268),
        (&|i| if i == 5 { 52 } else { 0 }, 1),
    ];
    let mut node = Node::new();
    for (f, expected) in cases {
        node.run(vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"h"),
            Bytes::from(dense(*f)),
        ]);
        assert_eq!(node.run(args(&[b"PFCOUNT", b"h"])), Reply::Int(*expected));
        assert_eq!(node.run(args(&[b"PFCOUNT", b"h", b"missing"])), Reply::Int(*expected));
    }
}

#[test]
fn pfcount_never_changes_the_digest() {
    let mut node = Node::new();
    node.pfadd_range("sparse", 0..50);
    node.pfadd_range("dense", 0..3000);
    let digest = node.state.digest();
    let snapshot = node.state.snapshot_bytes();
    for keys in [&[&b"sparse"[..]][..], &[b"dense"], &[b"sparse", b"dense"], &[b"missing"]] {
        let mut argv = args(&[b"PFCOUNT"]);
        argv.extend(keys.iter().map(|k| Bytes::copy_from_slice(k)));
        assert!(matches!(node.state.query(0, &argv, node.now, 0), Reply::Int(_)));
    }
    assert_eq!(node.state.digest(), digest);
    assert_eq!(node.state.snapshot_bytes(), snapshot);
    // The cache stays as PFADD left it: invalid.
    let bytes = node.get("dense");
    assert_eq!(bytes[15] & 0x80, 0x80);
}

// ---- generated logs ----

/// A step: a command template and the bytes that fill it in.
#[derive(Debug, Clone)]
struct Step {
    template: usize,
    picks: Vec<u8>,
    raw: Vec<u8>,
    time_delta: i64,
}

/// `{k}` a key, `{n}` a small number, `{o}` a bit offset (huge ones too),
/// `{t}` a BITFIELD type, `{e}` a PFADD element, `{x}` arbitrary bytes,
/// `{h}` an HLL-like string (valid header, random or damaged body).
const TEMPLATES: &[&str] = &[
    "SETBIT {k} {o} {n}",
    "SETBIT {k} {o} 1",
    "BITFIELD {k} SET {t} {o} {n} GET {t} {o}",
    "BITFIELD {k} OVERFLOW SAT INCRBY {t} {o} {n} OVERFLOW FAIL INCRBY {t} {o} {n}",
    "BITFIELD {k} OVERFLOW WRAP INCRBY {t} {o} {n} GET {t} {o}",
    "BITFIELD {k} GET {t} {o} {x}",
    "BITFIELD {k} {x} {x} {x} {x}",
    "BITOP AND {k} {k} {k}",
    "BITOP OR {k} {k} {k}",
    "BITOP XOR {k} {k}",
    "BITOP NOT {k} {k}",
    "BITOP {x} {k} {k}",
    "PFADD {k} {e} {e} {e}",
    "PFADD {k} {e} {e} {e} {e} {e} {e} {e} {e}",
    "PFADD {k}",
    "PFMERGE {k} {k} {k}",
    "PFMERGE {k}",
    "PFDEBUG GETREG {k}",
    "PFDEBUG TODENSE {k}",
    "PFDEBUG DECODE {k}",
    "PFDEBUG {x} {k}",
    "SET {k} {h}",
    "SET {k} {x}",
    "SET {k} {n} PX 100",
    "RPUSH {k} {e}",
    "DEL {k}",
    "APPEND {k} {x}",
];

/// Reads that must never change anything.
const READS: &[&str] = &[
    "PFCOUNT {k}",
    "PFCOUNT {k} {k} {k}",
    "GETBIT {k} {o}",
    "BITCOUNT {k}",
    "BITCOUNT {k} {n} {n} BIT",
    "BITPOS {k} 1 {n}",
    "BITPOS {k} 0 {n} {n} BIT",
    "BITFIELD_RO {k} GET {t} {o} GET {t} {o}",
    "LCS {k} {k} IDX WITHMATCHLEN",
    "LCS {k} {k}",
    "GET {k}",
];

const OFFSETS: &[&str] = &[
    "0",
    "1",
    "7",
    "8",
    "100",
    "4095",
    "#3",
    "#1000",
    "-1",
    "4294967296",
    "#2305843009213693953",
    "abc",
];
const TYPES: &[&str] = &["u1", "i1", "u8", "i8", "u63", "i64", "u64", "i0", "x8", "i13", "u7"];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "127",
    "-128",
    "255",
    "1000",
    "9223372036854775807",
    "-9223372036854775808",
    "x",
];

/// An HLL-like string: a valid sparse or dense header, then a body that is
/// valid, truncated or random.
fn hll_like(seed: &[u8], raw: &[u8]) -> Bytes {
    let mut s = b"HYLL".to_vec();
    let dense = seed[0].is_multiple_of(4);
    s.push(if dense { 0 } else { 1 });
    s.extend_from_slice(&[0; 3]);
    s.extend_from_slice(&[seed[1], 0, 0, 0, 0, 0, 0, seed[2] & 0x80]);
    if dense {
        let mut body = vec![0u8; 12288];
        for (i, b) in raw.iter().enumerate() {
            let at = (i * 997 + usize::from(seed[3]) * 13) % body.len();
            body[at] = *b;
        }
        s.extend(body);
    } else {
        match seed[3] % 4 {
            // Valid: runs summing to 16384.
            0 => {
                let mut left = 16384usize;
                for &b in raw {
                    if left == 0 {
                        break;
                    }
                    let run = (usize::from(b) % 4 + 1).min(left);
                    s.push(0x80 | ((b % 32) << 2) | (run as u8 - 1));
                    left -= run;
                }
                while left > 0 {
                    let run = left.min(16384);
                    let l = run - 1;
                    s.extend_from_slice(&[0x40 | (l >> 8) as u8, (l & 0xff) as u8]);
                    left -= run;
                }
            }
            // An XZERO cut in half, or nothing at all.
            1 => s.extend_from_slice(&raw[..raw.len().min(1)]),
            // Random opcodes.
            _ => s.extend_from_slice(raw),
        }
    }
    Bytes::from(s)
}

fn render(template: &str, picks: &[u8], raw: &[u8]) -> Vec<Bytes> {
    let mut i = 0;
    let mut next = || {
        let v = picks[i % picks.len()];
        i += 1;
        v
    };
    template
        .split(' ')
        .map(|word| match word {
            "{k}" => Bytes::from(format!("k{}", next() % 4)),
            "{n}" => Bytes::from_static(NUMBERS[usize::from(next()) % NUMBERS.len()].as_bytes()),
            "{o}" => Bytes::from_static(OFFSETS[usize::from(next()) % OFFSETS.len()].as_bytes()),
            "{t}" => Bytes::from_static(TYPES[usize::from(next()) % TYPES.len()].as_bytes()),
            "{e}" => Bytes::from(format!("e{}", next())),
            "{x}" => {
                let start = usize::from(next()) % raw.len().max(1);
                let len = usize::from(next()) % 9;
                Bytes::copy_from_slice(&raw[start.min(raw.len())..(start + len).min(raw.len())])
            }
            "{h}" => {
                let seed = [next(), next(), next(), next()];
                hll_like(&seed, raw)
            }
            other => Bytes::copy_from_slice(other.as_bytes()),
        })
        .collect()
}

fn step() -> impl Strategy<Value = Step> {
    (
        0..TEMPLATES.len(),
        proptest::collection::vec(any::<u8>(), 12),
        proptest::collection::vec(any::<u8>(), 0..64),
        0i64..120,
    )
        .prop_map(|(template, picks, raw, time_delta)| Step {
            template,
            picks,
            raw,
            time_delta,
        })
}

fn log_of(steps: &[Step]) -> Vec<(Stamp, Op)> {
    let mut time = 1_700_000_000_000i64;
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            time += s.time_delta;
            let stamp = Stamp { index: i as u64 + 1, time_ms: time, seed: i as u64 };
            let argv = render(TEMPLATES[s.template], &s.picks, &s.raw);
            (stamp, Op::Command { db: 0, argv })
        })
        .collect()
}

fn apply_all(state: &mut State, log: &[(Stamp, Op)]) -> Vec<Reply> {
    log.iter().map(|(stamp, op)| state.apply(stamp, op)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn replicas_agree_and_snapshots_continue(steps in proptest::collection::vec(step(), 1..80), cut in 0usize..80) {
        let log = log_of(&steps);
        let (mut a, mut b) = (State::new(), State::new());
        let ra = apply_all(&mut a, &log);
        let rb = apply_all(&mut b, &log);
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a.snapshot_bytes(), b.snapshot_bytes());

        let cut = cut % log.len();
        let mut first = State::new();
        apply_all(&mut first, &log[..cut]);
        let mut restored = State::read_snapshot(&first.snapshot_bytes()[..]).expect("restore");
        let rest = apply_all(&mut restored, &log[cut..]);
        prop_assert_eq!(&rest[..], &ra[cut..]);
        prop_assert_eq!(restored.digest(), a.digest());
    }

    #[test]
    fn reads_never_change_state(steps in proptest::collection::vec(step(), 1..60),
                                reads in proptest::collection::vec((0..READS.len(), proptest::collection::vec(any::<u8>(), 12), proptest::collection::vec(any::<u8>(), 0..16)), 1..30)) {
        let log = log_of(&steps);
        let mut state = State::new();
        apply_all(&mut state, &log);
        let before = state.snapshot_bytes();
        let digest = state.digest();
        let copy = State::read_snapshot(&before[..]).unwrap();
        let now = state.clock_ms();
        for (template, picks, raw) in reads {
            let argv = render(READS[template], &picks, &raw);
            prop_assert!(matches!(lookup(&argv[0]).map(|s| s.kind), Some(Kind::Read(_))));
            let r1 = state.query(0, &argv, now, 1);
            let r2 = copy.query(0, &argv, now, 1);
            prop_assert_eq!(r1, r2);
        }
        prop_assert_eq!(state.digest(), digest);
        prop_assert_eq!(state.snapshot_bytes(), before);
    }
}
