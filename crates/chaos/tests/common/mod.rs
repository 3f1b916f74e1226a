//! Histories made by running a real in-memory register: each operation takes
//! effect at one instant inside its interval (or, for an unknown outcome,
//! at any instant after its invoke, or never), so every history made here is
//! linearizable by construction.

#![allow(dead_code)]

use raftcache_chaos::{Call, History, Op, Outcome, Val};

/// One operation to simulate.
#[derive(Debug, Clone, Copy)]
pub struct OpSpec {
    /// 0 read, 1 write, 2 delete, 3 compare-and-set.
    pub kind: u8,
    pub key: u8,
    pub value: u32,
    /// Idle time before the invoke.
    pub gap: u64,
    /// Invoke to completion.
    pub dur: u64,
    /// Where in its interval the operation takes effect, in percent.
    pub at: u8,
    /// 0..100: below 8 unknown and applied (possibly after the completion),
    /// below 14 unknown and never applied, below 18 failed, else ok.
    pub fate: u8,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Ok,
    UnknownApplied,
    UnknownDropped,
    Fail,
}

fn fate(f: u8) -> Fate {
    match f {
        0..=7 => Fate::UnknownApplied,
        8..=13 => Fate::UnknownDropped,
        14..=17 => Fate::Fail,
        _ => Fate::Ok,
    }
}

fn value(v: u32) -> String {
    format!("v{v}")
}

/// Runs each process's operations one after another, all processes at once,
/// against registers, and records what they were told.
pub fn simulate(processes: &[Vec<OpSpec>]) -> History {
    struct Planned {
        process: u64,
        spec: OpSpec,
        invoke: u64,
        complete: u64,
        effect: Option<u64>,
    }
    let mut planned = Vec::new();
    for (p, specs) in processes.iter().enumerate() {
        let mut t = 0;
        for &spec in specs {
            let invoke = t + spec.gap;
            let complete = invoke + spec.dur;
            t = complete + 1;
            let offset = spec.dur * u64::from(spec.at.min(100)) / 100;
            let effect = match fate(spec.fate) {
                Fate::Ok => Some(invoke + offset),
                Fate::UnknownApplied => Some(invoke + offset * 3),
                Fate::UnknownDropped | Fate::Fail => None,
            };
            planned.push(Planned { process: p as u64, spec, invoke, complete, effect });
        }
    }
    // Apply in effect order.
    let mut order: Vec<usize> =
        (0..planned.len()).filter(|&i| planned[i].effect.is_some()).collect();
    order.sort_by_key(|&i| (planned[i].effect, i));
    let mut registers: std::collections::HashMap<u8, Option<String>> = Default::default();
    let mut replies: Vec<Val> = vec![Val::Nil; planned.len()];
    for i in order {
        let s = planned[i].spec;
        let reg = registers.entry(s.key).or_default();
        replies[i] = match s.kind % 4 {
            0 => reg.clone().map_or(Val::Nil, Val::Str),
            1 => {
                *reg = Some(value(s.value));
                Val::Nil
            }
            2 => {
                let n = i64::from(reg.is_some());
                *reg = None;
                Val::Int(n)
            }
            _ => {
                let expected = (s.value % 3 != 0).then(|| value(s.value / 2));
                let swapped = *reg == expected;
                if swapped {
                    *reg = Some(value(s.value));
                }
                Val::Bool(swapped)
            }
        };
    }
    let mut ops: Vec<Op> = planned
        .iter()
        .zip(replies)
        .map(|(p, reply)| {
            let s = p.spec;
            let call = match s.kind % 4 {
                0 => Call::Read,
                1 => Call::Write { value: value(s.value) },
                2 => Call::Delete,
                _ => Call::Cas {
                    expected: (s.value % 3 != 0).then(|| value(s.value / 2)),
                    value: value(s.value),
                },
            };
            let (outcome, complete) = match fate(s.fate) {
                Fate::Ok => (Outcome::Ok(reply), Some(p.complete)),
                Fate::Fail => (Outcome::Fail, Some(p.complete)),
                _ => (Outcome::Unknown, None),
            };
            Op {
                id: 0,
                process: p.process,
                key: format!("k{}", s.key),
                call,
                invoke: p.invoke,
                complete,
                outcome,
            }
        })
        .collect();
    ops.sort_by_key(|op| (op.invoke, op.process));
    History::new(ops)
}

/// A small deterministic generator (xorshift64*), for tests that need many
/// random numbers without proptest's shrinking.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `processes` clients each running `ops_per_process` operations over `keys`
/// keys, with random timings.
/// With `values` small, values repeat (harder to check); large, they are
/// nearly unique (as a real harness writes them). `kinds`: 2 for reads and
/// writes only, 4 to add deletes and compare-and-sets.
pub fn random_plan(
    seed: u64,
    processes: usize,
    ops_per_process: usize,
    keys: u8,
    values: u32,
    kinds: u8,
) -> Vec<Vec<OpSpec>> {
    let mut rng = Rng::new(seed);
    (0..processes)
        .map(|_| {
            (0..ops_per_process)
                .map(|_| OpSpec {
                    kind: rng.below(u64::from(kinds)) as u8,
                    key: rng.below(u64::from(keys)) as u8,
                    value: rng.below(u64::from(values)) as u32,
                    gap: rng.below(50),
                    dur: 1 + rng.below(100),
                    at: rng.below(101) as u8,
                    fate: rng.below(100) as u8,
                })
                .collect()
        })
        .collect()
}
