//! LOCK.ACQUIRE LOCK.RELEASE LOCK.RENEW LOCK.INFO LOCK.FENCE: locks with
//! fencing tokens (see [`crate::locks`]).
//!
//! ```text
//! LOCK.ACQUIRE name owner ttl_ms [WAIT timeout_ms]  -> token | nil
//! LOCK.RELEASE name owner                           -> 1 | 0
//! LOCK.RENEW   name owner ttl_ms                    -> 1 | 0
//! LOCK.INFO    name       -> {owner, token, ttl, waiters} | nil
//! LOCK.FENCE   name token -> OK | -FENCED …
//! ```
//!
//! The token of a grant is the log index of the entry that granted it. A
//! write guarded by a token inside the cluster is a script that checks
//! first, since an error from `redis.call` stops the script:
//! `EVAL "redis.call('LOCK.FENCE', KEYS[1], ARGV[1]) return redis.call('SET', KEYS[2], ARGV[2])" 2 lock key token value`.

use bytes::Bytes;

use crate::args::{self, is, Res};
use crate::blocked::{GiveBack, Pending};
use crate::command::Spec;
use crate::event::Event;
use crate::locks::{Lock, LOCK_DB};
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};

pub const COMMANDS: &[Spec] = &[
    Spec::write("lock.acquire", -4, (0, 0, 0), acquire),
    Spec::write("lock.release", 3, (0, 0, 0), release),
    Spec::write("lock.renew", 4, (0, 0, 0), renew),
    Spec::read("lock.info", 2, (0, 0, 0), info),
    Spec::read("lock.fence", 3, (0, 0, 0), fence),
];

/// A lease length in ms: a positive integer.
fn ttl(arg: &[u8], name: &str) -> Res<i64> {
    match args::int(arg)? {
        n if n > 0 => Ok(n),
        _ => Err(Reply::error(format!("ERR invalid ttl in '{name}' command"))),
    }
}

/// The parsed LOCK.ACQUIRE: owner, lease, and the wait (None: do not wait;
/// Some(0): forever).
pub struct Acquire {
    pub name: Bytes,
    pub owner: Bytes,
    pub ttl_ms: i64,
    pub wait_ms: Option<i64>,
}

/// Parses LOCK.ACQUIRE name owner ttl_ms [WAIT timeout_ms].
pub fn parse_acquire(argv: &[Bytes]) -> Res<Acquire> {
    let ttl_ms = ttl(&argv[3], "lock.acquire")?;
    let wait_ms = match &argv[4..] {
        [] => None,
        [w, ms] if is(w, "wait") => match args::int(ms)? {
            n if n >= 0 => Some(n),
            _ => return Err(Reply::err("ERR timeout is negative")),
        },
        _ => return Err(Reply::err(errors::SYNTAX)),
    };
    Ok(Acquire { name: argv[1].clone(), owner: argv[2].clone(), ttl_ms, wait_ms })
}

/// Frees `name` if its lease ended, and grants it to the first waiter if it
/// is free and someone waits: what every lock command does first, so a
/// waiter is never overtaken.
pub(crate) fn settle(x: &mut Exec, name: &Bytes) {
    if x.locks.held.get(name).is_some_and(|l| !l.held(x.now)) {
        x.locks.held.remove(name);
    }
    if !x.locks.held.contains_key(name) {
        grant_next(x, name);
    }
}

/// Grants a free lock to the first waiter that can take it (`Event::Unblocked`
/// with its token; pending until its node confirms).
fn grant_next(x: &mut Exec, name: &Bytes) {
    while let Some(waiter) = x.blocked.first(LOCK_DB, name) {
        let Some(w) = x.blocked.remove_synced(waiter, x.dbs) else { return };
        let Ok(a) = parse_acquire(&w.argv) else { continue };
        let token = x.locks.next_token(x.index);
        let lock = Lock { owner: a.owner, token, expires_at: x.now.saturating_add(a.ttl_ms) };
        x.locks.held.insert(name.clone(), lock);
        let give_back = GiveBack::Lock { name: name.clone(), token };
        x.blocked.pending.insert(waiter, Pending { at: x.now, give_back });
        x.events.push(Event::Unblocked { waiter, reply: Reply::Int(token as i64), served: true });
        return;
    }
}

/// Tries LOCK.ACQUIRE now: the token if granted (or re-acquired by its
/// owner, which extends the lease), `None` if another owner holds it or
/// others wait for it first.
pub(crate) fn try_acquire(x: &mut Exec, a: &Acquire) -> Option<Reply> {
    settle(x, &a.name);
    let now = x.now;
    if let Some(lock) = x.locks.held.get_mut(&a.name) {
        if lock.owner == a.owner {
            lock.expires_at = now.saturating_add(a.ttl_ms);
            let token = lock.token;
            taken_by_owner(x, &a.name, token);
            return Some(Reply::Int(token as i64));
        }
        if !x.unsafe_switches.lock_grant_unchecked {
            return None;
        }
        // The test-only switch `lock-grant-unchecked`: the holder is not
        // checked, and the lock changes hands under it (see
        // `crate::unsafe_switches`).
        let token = x.locks.next_token(x.index);
        let lock = Lock { owner: a.owner.clone(), token, expires_at: now.saturating_add(a.ttl_ms) };
        x.locks.held.insert(a.name.clone(), lock);
        return Some(Reply::Int(token as i64));
    }
    if x.blocked.first(LOCK_DB, &a.name).is_some() {
        return None;
    }
    let token = x.locks.next_token(x.index);
    let lock = Lock { owner: a.owner.clone(), token, expires_at: now.saturating_add(a.ttl_ms) };
    x.locks.held.insert(a.name.clone(), lock);
    Some(Reply::Int(token as i64))
}

/// The owner of a grant still waiting for its waiter's confirmation acted
/// on the lock itself (re-acquired or renewed it, e.g. from another node
/// after its first connection broke): the grant is taken, so it is no longer
/// given back when the waiter's confirmation never comes. The waiter's node,
/// if it confirms later, hears 0 and its client re-acquires as the owner.
fn taken_by_owner(x: &mut Exec, name: &Bytes, token: u64) {
    x.blocked.pending.retain(|_, p| {
        !matches!(&p.give_back, GiveBack::Lock { name: n, token: t } if n == name && *t == token)
    });
}

/// Releases a lock granted to a waiter that never took it (if it still
/// holds that grant) and grants it on.
pub(crate) fn give_back(x: &mut Exec, name: &Bytes, token: u64) {
    if x.locks.held.get(name).is_some_and(|l| l.token == token) {
        x.locks.held.remove(name);
        grant_next(x, name);
    }
}

/// Frees every lock whose lease ended and grants each to its next waiter
/// (the leader's purge).
pub(crate) fn purge(x: &mut Exec) {
    for name in x.locks.expired(x.now) {
        x.locks.held.remove(&name);
        grant_next(x, &name);
    }
}

/// LOCK.ACQUIRE name owner ttl_ms [WAIT timeout_ms] (as a plain command it
/// never waits: a client that may wait goes through `Op::Block`)
fn acquire(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let a = parse_acquire(argv)?;
    Ok(try_acquire(x, &a).unwrap_or(Reply::Nil))
}

/// LOCK.RELEASE name owner
fn release(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let name = &argv[1];
    settle(x, name);
    if x.locks.held.get(name).is_some_and(|l| l.owner == argv[2]) {
        x.locks.held.remove(name);
        grant_next(x, name);
        return Ok(Reply::Int(1));
    }
    Ok(Reply::Int(0))
}

/// LOCK.RENEW name owner ttl_ms
fn renew(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let ttl_ms = ttl(&argv[3], "lock.renew")?;
    let name = &argv[1];
    settle(x, name);
    let now = x.now;
    match x.locks.held.get_mut(name) {
        Some(lock) if lock.owner == argv[2] => {
            lock.expires_at = now.saturating_add(ttl_ms);
            let token = lock.token;
            taken_by_owner(x, name, token);
            Ok(Reply::Int(1))
        }
        _ => Ok(Reply::Int(0)),
    }
}

/// LOCK.INFO name
fn info(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let name = &argv[1];
    let waiters = q.blocked.queues.get(&(LOCK_DB, name.clone())).map_or(0, |w| w.len() as i64);
    let Some(lock) = q.locks.get(name, q.now) else { return Ok(Reply::Nil) };
    let bulk = |s: &str| Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()));
    Ok(Reply::Map(vec![
        (bulk("owner"), Reply::Bulk(lock.owner.clone())),
        (bulk("token"), Reply::Int(lock.token as i64)),
        (bulk("ttl"), Reply::Int(lock.expires_at - q.now)),
        (bulk("waiters"), Reply::Int(waiters)),
    ]))
}

/// LOCK.FENCE name token: OK while the lock is held under `token`.
fn fence(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let token = args::int(&argv[2])?;
    match q.locks.get(&argv[1], q.now) {
        Some(lock) if lock.token as i64 == token => Ok(Reply::Ok),
        _ => Err(Reply::error(format!(
            "FENCED token {token} is not the current holder of lock '{}'",
            String::from_utf8_lossy(&argv[1])
        ))),
    }
}
