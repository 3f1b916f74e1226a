//! [`Store`]: where commands go. On a single node it stamps each write with the
//! local clock and a fresh seed and applies it to the engine at once; the
//! replication issue puts a Raft log between the stamp and the apply. Either
//! way the engine only ever sees `(Stamp, Op)`, and the clock is read here, in
//! the node, never inside the engine.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use raftcache_sm::{Op, Reply, Stamp, State};

/// Milliseconds since the Unix epoch from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Most expired keys removed by one purge entry, so one entry never stalls
/// the node for long (Redis's active expiry is bounded per cycle too).
pub const PURGE_BATCH: u32 = 1000;

struct Inner {
    state: State,
    /// Index of the next entry (the single node's stand-in for the log index).
    next_index: u64,
}

/// The engine behind a lock. The lock is a std Mutex: it is held only for one
/// apply or one read, never across an await.
pub struct Store {
    inner: Mutex<Inner>,
    /// Mixed into each entry's seed so restarts do not repeat random choices.
    seed_base: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            inner: Mutex::new(Inner { state: State::new(), next_index: 1 }),
            seed_base: rand::random(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock would leave the state unknown; the
        // engine never panics on input, so poisoning means a bug: stop.
        self.inner.lock().expect("engine lock poisoned")
    }

    fn apply(&self, op: Op) -> Reply {
        let mut inner = self.lock();
        let index = inner.next_index;
        inner.next_index += 1;
        let stamp = Stamp { index, time_ms: now_ms(), seed: self.seed_base ^ index };
        inner.state.apply(&stamp, &op)
    }

    /// Applies a write command against database `db`.
    pub fn write(&self, db: usize, argv: Vec<Bytes>) -> Reply {
        self.apply(Op::Command { db: db as u32, argv })
    }

    /// Serves a read command against database `db` at the current time.
    pub fn read(&self, db: usize, argv: &[Bytes]) -> Reply {
        let seed: u64 = rand::random();
        self.lock().state.query(db, argv, now_ms(), seed)
    }

    /// Removes a batch of expired keys if any are due; returns how many.
    pub fn purge_expired(&self) -> u32 {
        let due = self.lock().state.next_expiry().is_some_and(|at| at <= now_ms());
        if !due {
            return 0;
        }
        match self.apply(Op::PurgeExpired { limit: PURGE_BATCH }) {
            Reply::Int(n) => n as u32,
            _ => 0,
        }
    }

    /// Runs `f` with a shared view of the engine (INFO, digest, snapshots).
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock().state)
    }
}
