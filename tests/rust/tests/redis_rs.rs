//! raftcache through the `redis` crate (redis-rs), sync and tokio, the way
//! Rust users drive it. Each test starts its own server from `RAFTCACHE_BIN`
//! (see `raftcache_client_tests::Server`); an unset `RAFTCACHE_BIN` fails.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftcache_client_tests::Server;
use redis::{AsyncCommands, Commands, ExistenceCheck, SetExpiry, SetOptions};

fn client(server: &Server) -> redis::Client {
    redis::Client::open(server.url()).expect("client for the server url")
}

fn sync_con(server: &Server) -> redis::Connection {
    let con = client(server).get_connection().expect("sync connection");
    con.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    con
}

async fn async_con(server: &Server) -> redis::aio::MultiplexedConnection {
    client(server).get_multiplexed_async_connection().await.expect("async multiplexed connection")
}

fn nx_ex(seconds: u64) -> SetOptions {
    SetOptions::default()
        .conditional_set(ExistenceCheck::NX)
        .with_expiration(SetExpiry::EX(seconds))
}

// ---------------------------------------------------------------- strings / keys

#[test]
fn set_get_del_exists() {
    let server = Server::start();
    let mut con = sync_con(&server);

    let missing: Option<String> = con.get("nope").unwrap();
    assert_eq!(missing, None);

    let () = con.set("a", "alpha").unwrap();
    let () = con.set("b", 42).unwrap();
    let a: String = con.get("a").unwrap();
    assert_eq!(a, "alpha");
    let b: i64 = con.get("b").unwrap();
    assert_eq!(b, 42);

    let n: usize = con.exists(&["a", "b", "nope", "a"]).unwrap();
    assert_eq!(n, 3, "EXISTS counts repeated keys");
    let e: bool = con.exists("a").unwrap();
    assert!(e);

    let () = con.mset(&[("m1", "x"), ("m2", "y")]).unwrap();
    let got: Vec<Option<String>> = con.mget(&["m1", "nope", "m2"]).unwrap();
    assert_eq!(got, vec![Some("x".into()), None, Some("y".into())]);

    let deleted: usize = con.del(&["a", "b", "nope"]).unwrap();
    assert_eq!(deleted, 2);
    let e: bool = con.exists("a").unwrap();
    assert!(!e);
    let deleted: usize = con.del("a").unwrap();
    assert_eq!(deleted, 0);

    // SET with options: XX on a missing key does nothing, GET returns the old value.
    let r: Option<String> = con
        .set_options("x", "1", SetOptions::default().conditional_set(ExistenceCheck::XX))
        .unwrap();
    assert_eq!(r, None);
    let e: bool = con.exists("x").unwrap();
    assert!(!e);
    let () = con.set("x", "old").unwrap();
    let old: Option<String> = con.set_options("x", "new", SetOptions::default().get(true)).unwrap();
    assert_eq!(old.as_deref(), Some("old"));
    let now: String = con.get("x").unwrap();
    assert_eq!(now, "new");

    // INCR on a non-integer is an error the client surfaces.
    let err = con.incr::<_, _, i64>("x", 1).unwrap_err();
    assert!(
        err.to_string().contains("not an integer"),
        "unexpected error for INCR on a string: {err}"
    );
}

#[test]
fn expire_ttl_persist() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let ttl: i64 = con.ttl("missing").unwrap();
    assert_eq!(ttl, -2);
    let () = con.set("k", "v").unwrap();
    let ttl: i64 = con.ttl("k").unwrap();
    assert_eq!(ttl, -1);
    let set: bool = con.expire("k", 100).unwrap();
    assert!(set);
    let ttl: i64 = con.ttl("k").unwrap();
    assert!((1..=100).contains(&ttl), "ttl {ttl}");
    let persisted: bool = con.persist("k").unwrap();
    assert!(persisted);
    let ttl: i64 = con.ttl("k").unwrap();
    assert_eq!(ttl, -1);
    let () = con.set_ex("short", "v", 1).unwrap();
    std::thread::sleep(Duration::from_millis(1150));
    let v: Option<String> = con.get("short").unwrap();
    assert_eq!(v, None, "a key set with EX 1 must be gone after 1.15 s");
    let e: bool = con.exists("short").unwrap();
    assert!(!e);
}

// ---------------------------------------------------------------- lock

/// 32 tasks, each on its own TCP connection, race `SET lock 1 NX EX 120`:
/// exactly one wins; it shortens the TTL and publishes the unlock key, which
/// every loser then observes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_nx_ex_lock_has_exactly_one_winner() {
    const TASKS: usize = 32;
    let server = Server::start();
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let mut con = async_con(&server).await; // one connection per task
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let won: Option<String> =
                con.set_options("lock:job", i.to_string(), nx_ex(120)).await.unwrap();
            let won = match won.as_deref() {
                Some("OK") => true,
                None => false,
                other => panic!("SET NX EX replied {other:?}"),
            };
            if won {
                let shortened: bool = con.expire("lock:job", 60).await.unwrap();
                assert!(shortened, "EXPIRE on the held lock must return 1");
                let () = con.set("lock:job:unlock", i.to_string()).await.unwrap();
                return (i, true, i.to_string());
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let v: Option<String> = con.get("lock:job:unlock").await.unwrap();
                if let Some(v) = v {
                    return (i, false, v);
                }
                assert!(Instant::now() < deadline, "task {i}: unlock key never appeared");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for h in handles {
        let (i, won, v) = h.await.expect("task panicked");
        if won {
            winners.push(i);
        }
        seen.push(v);
    }
    assert_eq!(winners.len(), 1, "exactly one SET NX winner, got {winners:?}");
    let w = winners[0].to_string();
    assert!(seen.iter().all(|v| *v == w), "every task saw the winner's unlock value: {seen:?}");

    let mut con = async_con(&server).await;
    let holder: String = con.get("lock:job").await.unwrap();
    assert_eq!(holder, w, "the lock holds the winner's value");
    let ttl: i64 = con.ttl("lock:job").await.unwrap();
    assert!(ttl > 0 && ttl <= 60, "lock TTL after EXPIRE 60 is {ttl}");
}

/// The same race with blocking clients on OS threads.
#[test]
fn set_nx_ex_lock_sync_threads() {
    const THREADS: usize = 16;
    let server = Server::start();
    let barrier = Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let mut con = sync_con(&server);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r: Option<String> = con.set_options("lock:sync", i, nx_ex(120)).unwrap();
                r.is_some()
            })
        })
        .collect();
    let wins = handles.into_iter().map(|h| h.join().unwrap()).filter(|w| *w).count();
    assert_eq!(wins, 1);
    let mut con = sync_con(&server);
    let ttl: i64 = con.ttl("lock:sync").unwrap();
    assert!(ttl > 60 && ttl <= 120, "ttl {ttl}");
    // Once released (DEL), the lock can be taken again.
    let d: usize = con.del("lock:sync").unwrap();
    assert_eq!(d, 1);
    let r: Option<String> = con.set_options("lock:sync", "again", nx_ex(5)).unwrap();
    assert_eq!(r.as_deref(), Some("OK"));
}

// ---------------------------------------------------------------- rate limiter

/// Fixed-window limiter: INCR, and EXPIRE when the count is 1, from 8
/// concurrent connections. The count is exact and EXPIRE runs exactly once.
/// (The window is long enough that it cannot end during the run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_expire_fixed_window_limiter() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 50;
    const WINDOW: i64 = 30;
    const LIMIT: i64 = 100;
    let server = Server::start();
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let mut con = async_con(&server).await;
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut expires = 0;
            let mut counts = Vec::new();
            for _ in 0..PER_TASK {
                let n: i64 = con.incr("rl:user:1", 1).await.unwrap();
                if n == 1 {
                    let ok: bool = con.expire("rl:user:1", WINDOW).await.unwrap();
                    assert!(ok);
                    expires += 1;
                }
                counts.push(n);
            }
            (expires, counts)
        }));
    }
    let mut expires = 0;
    let mut all = Vec::new();
    for h in handles {
        let (e, c) = h.await.unwrap();
        expires += e;
        all.extend(c);
    }
    let total = (TASKS * PER_TASK) as i64;
    assert_eq!(expires, 1, "EXPIRE must be set exactly once");
    assert_eq!(all.iter().filter(|n| **n <= LIMIT).count() as i64, LIMIT, "exactly LIMIT allowed");
    all.sort_unstable();
    assert_eq!(all, (1..=total).collect::<Vec<_>>(), "every INCR got a distinct count");

    let mut con = async_con(&server).await;
    let count: i64 = con.get("rl:user:1").await.unwrap();
    assert_eq!(count, total);
    let ttl: i64 = con.ttl("rl:user:1").await.unwrap();
    assert!(ttl > 0 && ttl <= WINDOW, "ttl {ttl}");
}

/// A 1 s window ends: the key is gone and the count restarts at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_restarts_after_the_window() {
    let server = Server::start();
    let mut con = async_con(&server).await;
    for expected in 1..=3 {
        let n: i64 = con.incr("rl:short", 1).await.unwrap();
        assert_eq!(n, expected);
        if n == 1 {
            let ok: bool = con.expire("rl:short", 1).await.unwrap();
            assert!(ok);
        }
    }
    // PTTL rather than TTL: TTL rounds to the nearest second.
    let pttl: i64 = con.pttl("rl:short").await.unwrap();
    assert!(pttl > 0 && pttl <= 1000, "pttl {pttl}");
    tokio::time::sleep(Duration::from_millis(1150)).await;
    let gone: Option<i64> = con.get("rl:short").await.unwrap();
    assert_eq!(gone, None, "the window key must expire");
    let n: i64 = con.incr("rl:short", 1).await.unwrap();
    assert_eq!(n, 1, "a new window restarts at 1");
    let ttl: i64 = con.ttl("rl:short").await.unwrap();
    assert_eq!(ttl, -1, "no TTL until the limiter sets one");
}

// ---------------------------------------------------------------- pipelines

#[test]
fn pipeline_1000_commands_in_order() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let mut pipe = redis::pipe();
    for i in 0..1000i64 {
        pipe.cmd("INCRBY").arg("sum").arg(i);
    }
    let sums: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(sums.len(), 1000);
    let mut acc = 0;
    for (i, s) in sums.iter().enumerate() {
        acc += i as i64;
        assert_eq!(*s, acc, "reply {i} out of order");
    }

    // Mixed commands and types, including an error in the middle which
    // redis-rs surfaces as the pipeline's error.
    let (ok, v, n, missing, del): (String, String, i64, Option<String>, i64) = redis::pipe()
        .set("p:a", "1")
        .get("p:a")
        .incr("p:a", 5)
        .get("p:none")
        .del("p:a")
        .query(&mut con)
        .unwrap();
    assert_eq!((ok.as_str(), v.as_str(), n, missing, del), ("OK", "1", 6, None, 1));

    let mut pipe = redis::pipe();
    pipe.set("p:s", "notanint").ignore().incr("p:s", 1).ignore().get("p:s");
    let r: redis::RedisResult<Vec<String>> = pipe.query(&mut con);
    assert!(r.is_err(), "INCR on a string inside a pipeline must be an error: {r:?}");
    // The connection is still usable and in sync afterwards.
    let v: String = con.get("p:s").unwrap();
    assert_eq!(v, "notanint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_pipeline_and_concurrent_multiplexed_use() {
    let server = Server::start();
    let con = async_con(&server).await;
    // 20 tasks share one multiplexed connection, each with its own pipeline;
    // every reply must reach the task that sent the request.
    let mut handles = Vec::new();
    for t in 0..20 {
        let mut con = con.clone();
        handles.push(tokio::spawn(async move {
            let mut pipe = redis::pipe();
            for i in 0..50 {
                pipe.set(format!("t{t}:k{i}"), format!("{t}-{i}")).ignore();
                pipe.get(format!("t{t}:k{i}"));
            }
            let vals: Vec<String> = pipe.query_async(&mut con).await.unwrap();
            assert_eq!(vals, (0..50).map(|i| format!("{t}-{i}")).collect::<Vec<_>>());
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut con = con;
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(size, 20 * 50);
}

// ---------------------------------------------------------------- data types

#[test]
fn hashes() {
    let server = Server::start();
    let mut con = sync_con(&server);
    // HSET with several field/value pairs returns the number of new fields.
    let added: i64 = redis::cmd("HSET")
        .arg("user:1")
        .arg(&[("name", "ada"), ("lang", "rust")])
        .query(&mut con)
        .unwrap();
    assert_eq!(added, 2);
    // hset_multiple sends HMSET, which replies OK.
    let ok: String = con.hset_multiple("user:1", &[("lang", "rust"), ("visits", "10")]).unwrap();
    assert_eq!(ok, "OK");
    let all: HashMap<String, String> = con.hgetall("user:1").unwrap();
    assert_eq!(
        all,
        HashMap::from([
            ("name".to_string(), "ada".to_string()),
            ("lang".to_string(), "rust".to_string()),
            ("visits".to_string(), "10".to_string())
        ])
    );
    let n: i64 = con.hset("user:1", "email", "a@example.com").unwrap();
    assert_eq!(n, 1, "HSET of a new field returns 1");
    let n: i64 = con.hset("user:1", "email", "b@example.com").unwrap();
    assert_eq!(n, 0, "HSET of an existing field returns 0");
    let v: i64 = con.hincr("user:1", "visits", 5).unwrap();
    assert_eq!(v, 15);
    let v: f64 = con.hincr("user:1", "score", 1.5).unwrap();
    assert_eq!(v, 1.5);
    let name: Option<String> = con.hget("user:1", "name").unwrap();
    assert_eq!(name.as_deref(), Some("ada"));
    let none: Option<String> = con.hget("user:1", "nope").unwrap();
    assert_eq!(none, None);
    let ex: bool = con.hexists("user:1", "lang").unwrap();
    assert!(ex);
    let len: i64 = con.hlen("user:1").unwrap();
    assert_eq!(len, 5);
    let vals: Vec<Option<String>> = redis::cmd("HMGET")
        .arg("user:1")
        .arg("name")
        .arg("nope")
        .arg("lang")
        .query(&mut con)
        .unwrap();
    assert_eq!(vals, vec![Some("ada".into()), None, Some("rust".into())]);
    let mut keys: Vec<String> = con.hkeys("user:1").unwrap();
    keys.sort();
    assert_eq!(keys, vec!["email", "lang", "name", "score", "visits"]);
    let d: i64 = con.hdel("user:1", &["lang", "nope"]).unwrap();
    assert_eq!(d, 1);
    let err = con.hincr::<_, _, _, i64>("user:1", "name", 1).unwrap_err();
    assert!(err.to_string().contains("hash value is not an integer"), "{err}");
    // WRONGTYPE across types.
    let () = con.set("str", "x").unwrap();
    let err = con.hget::<_, _, Option<String>>("str", "f").unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"), "{err}");
    let t: String = redis::cmd("TYPE").arg("user:1").query(&mut con).unwrap();
    assert_eq!(t, "hash");
}

#[test]
fn lists() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let n: i64 = con.rpush("q", &["a", "b", "c"]).unwrap();
    assert_eq!(n, 3);
    let n: i64 = con.lpush("q", &["z", "y"]).unwrap();
    assert_eq!(n, 5);
    let all: Vec<String> = con.lrange("q", 0, -1).unwrap();
    assert_eq!(all, vec!["y", "z", "a", "b", "c"]);
    let tail: Vec<String> = con.lrange("q", -2, -1).unwrap();
    assert_eq!(tail, vec!["b", "c"]);
    let len: i64 = con.llen("q").unwrap();
    assert_eq!(len, 5);
    let last: Option<String> = con.rpop("q", None).unwrap();
    assert_eq!(last.as_deref(), Some("c"));
    let first: Option<String> = con.lpop("q", None).unwrap();
    assert_eq!(first.as_deref(), Some("y"));
    let two: Vec<String> = con.lpop("q", std::num::NonZeroUsize::new(2)).unwrap();
    assert_eq!(two, vec!["z", "a"]);
    let idx: Option<String> = con.lindex("q", 0).unwrap();
    assert_eq!(idx.as_deref(), Some("b"));
    let last: Option<String> = con.rpop("q", None).unwrap();
    assert_eq!(last.as_deref(), Some("b"));
    // The emptied list no longer exists.
    let e: bool = con.exists("q").unwrap();
    assert!(!e);
    let none: Option<String> = con.rpop("q", None).unwrap();
    assert_eq!(none, None);
    let empty: Vec<String> = con.lrange("q", 0, -1).unwrap();
    assert!(empty.is_empty());
    // A queue: producer LPUSH, consumer RPOP, FIFO order.
    for i in 0..100 {
        let _: i64 = con.lpush("jobs", i).unwrap();
    }
    for i in 0..100 {
        let v: i64 = con.rpop("jobs", None).unwrap();
        assert_eq!(v, i);
    }
}

#[test]
fn sets() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let n: i64 = con.sadd("s1", &["a", "b", "c", "a"]).unwrap();
    assert_eq!(n, 3);
    let n: i64 = con.sadd("s2", &["b", "c", "d"]).unwrap();
    assert_eq!(n, 3);
    let m: HashSet<String> = con.smembers("s1").unwrap();
    assert_eq!(m, HashSet::from(["a".into(), "b".into(), "c".into()]));
    let yes: bool = con.sismember("s1", "a").unwrap();
    let no: bool = con.sismember("s1", "d").unwrap();
    assert!(yes && !no);
    let card: i64 = con.scard("s1").unwrap();
    assert_eq!(card, 3);
    let inter: HashSet<String> = con.sinter(&["s1", "s2"]).unwrap();
    assert_eq!(inter, HashSet::from(["b".into(), "c".into()]));
    let uni: HashSet<String> = con.sunion(&["s1", "s2"]).unwrap();
    assert_eq!(uni.len(), 4);
    let diff: HashSet<String> = con.sdiff(&["s1", "s2"]).unwrap();
    assert_eq!(diff, HashSet::from(["a".into()]));
    let r: i64 = con.srem("s1", &["a", "zz"]).unwrap();
    assert_eq!(r, 1);
    let card: i64 = con.scard("s1").unwrap();
    assert_eq!(card, 2);
    let r: i64 = con.srem("s1", &["b", "c"]).unwrap();
    assert_eq!(r, 2);
    let e: bool = con.exists("s1").unwrap();
    assert!(!e, "an emptied set is deleted");
}

#[test]
fn sorted_sets() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let n: i64 =
        con.zadd_multiple("lb", &[(10.0, "alice"), (20.0, "bob"), (5.5, "carol")]).unwrap();
    assert_eq!(n, 3);
    let r: Vec<(String, f64)> = con.zrange_withscores("lb", 0, -1).unwrap();
    assert_eq!(r, vec![("carol".into(), 5.5), ("alice".into(), 10.0), ("bob".into(), 20.0)]);
    let s: f64 = con.zincr("lb", "alice", 15).unwrap();
    assert_eq!(s, 25.0);
    let top: Vec<String> = con.zrevrange("lb", 0, 0).unwrap();
    assert_eq!(top, vec!["alice"]);
    let rank: Option<i64> = con.zrank("lb", "bob").unwrap();
    assert_eq!(rank, Some(1));
    let none: Option<i64> = con.zrank("lb", "nobody").unwrap();
    assert_eq!(none, None);
    let sc: Option<f64> = con.zscore("lb", "carol").unwrap();
    assert_eq!(sc, Some(5.5));
    let sc: Option<f64> = con.zscore("lb", "nobody").unwrap();
    assert_eq!(sc, None);
    let mid: Vec<String> = con.zrangebyscore("lb", 6, 21).unwrap();
    assert_eq!(mid, vec!["bob"]);
    let c: i64 = con.zcount("lb", "-inf", "+inf").unwrap();
    assert_eq!(c, 3);
    let removed: i64 = con.zrembyscore("lb", "-inf", "(10").unwrap();
    assert_eq!(removed, 1);
    let card: i64 = con.zcard("lb").unwrap();
    assert_eq!(card, 2);
    let z: i64 = con.zrem("lb", &["bob", "nobody"]).unwrap();
    assert_eq!(z, 1);
    // Equal scores order lexicographically.
    let _: i64 = con.zadd_multiple("tie", &[(1, "c"), (1, "a"), (1, "b")]).unwrap();
    let r: Vec<String> = con.zrange("tie", 0, -1).unwrap();
    assert_eq!(r, vec!["a", "b", "c"]);
}

/// Sliding-window limiter: ZREMRANGEBYSCORE / ZADD / ZCARD / EXPIRE in a
/// non-transactional pipeline (MULTI/EXEC is not implemented yet).
#[test]
fn sliding_window_limiter_pipeline() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let limit = 5;
    let mut allowed = 0;
    for i in 0..8i64 {
        let now_ms = 1_000_000 + i * 100; // synthetic clock: all within one 10 s window
        let (_removed, _added, count, _exp): (i64, i64, i64, bool) = redis::pipe()
            .zrembyscore("sw:ip", 0, now_ms - 10_000)
            .zadd("sw:ip", format!("req-{i}"), now_ms)
            .zcard("sw:ip")
            .expire("sw:ip", 10)
            .query(&mut con)
            .unwrap();
        assert_eq!(count, i + 1);
        if count <= limit {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
    // Move the clock past the window: everything older is trimmed.
    let (removed, count): (i64, i64) = redis::pipe()
        .zrembyscore("sw:ip", 0, 1_000_000 + 10_000 + 700 - 10_000)
        .zcard("sw:ip")
        .query(&mut con)
        .unwrap();
    assert_eq!((removed, count), (8, 0));
}

// ---------------------------------------------------------------- binary safety

#[test]
fn binary_safe_values_and_keys() {
    let server = Server::start();
    let mut con = sync_con(&server);
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let () = con.set("bin", &all_bytes).unwrap();
    let back: Vec<u8> = con.get("bin").unwrap();
    assert_eq!(back, all_bytes);
    let len: i64 = con.strlen("bin").unwrap();
    assert_eq!(len, 256);
    let mid: Vec<u8> = con.getrange("bin", 10, 13).unwrap();
    assert_eq!(mid, vec![10, 11, 12, 13]);
    let n: i64 = con.append("bin", b"\r\n\0".as_slice()).unwrap();
    assert_eq!(n, 259);

    // Keys are binary too: NUL, CR LF, high bytes.
    let key: &[u8] = b"k\x00\r\n\xff\xfe";
    let () = con.set(key, b"\x00\x01".as_slice()).unwrap();
    let v: Vec<u8> = con.get(key).unwrap();
    assert_eq!(v, b"\x00\x01");
    let e: bool = con.exists(b"k\x00".as_slice()).unwrap();
    assert!(!e, "a key prefix up to NUL is a different key");

    // Empty value.
    let () = con.set("empty", b"".as_slice()).unwrap();
    let v: Option<Vec<u8>> = con.get("empty").unwrap();
    assert_eq!(v, Some(vec![]));

    // 1 MiB value with a non-repeating-looking pattern.
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect();
    let () = con.set("big", &big).unwrap();
    let back: Vec<u8> = con.get("big").unwrap();
    assert!(back == big, "1 MiB value came back different (len {})", back.len());
    let len: i64 = con.strlen("big").unwrap();
    assert_eq!(len, 1024 * 1024);

    // Binary members in the collection types.
    let _: i64 = con.hset("bh", b"f\x00".as_slice(), &all_bytes).unwrap();
    let hv: Vec<u8> = con.hget("bh", b"f\x00".as_slice()).unwrap();
    assert_eq!(hv, all_bytes);
    let _: i64 = con.rpush("bl", &all_bytes).unwrap();
    let lv: Vec<Vec<u8>> = con.lrange("bl", 0, -1).unwrap();
    assert_eq!(lv, vec![all_bytes.clone()]);
    let _: i64 = con.sadd("bs", b"\xff\x00".as_slice()).unwrap();
    let is: bool = con.sismember("bs", b"\xff\x00".as_slice()).unwrap();
    assert!(is);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_safe_async_big_value() {
    let server = Server::start();
    let mut con = async_con(&server).await;
    let big: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let () = con.set("big", &big).await.unwrap();
    let back: Vec<u8> = con.get("big").await.unwrap();
    assert!(back == big, "1 MiB value came back different (len {})", back.len());
}

// ---------------------------------------------------------------- robustness

/// A malformed frame on one raw TCP connection gets Redis's protocol error
/// and that connection is closed; another client connected at the same time
/// keeps working and the server keeps running.
#[test]
fn malformed_frame_only_affects_its_connection() {
    let mut server = Server::start();
    let mut good = sync_con(&server);
    let () = good.set("survivor", "yes").unwrap();

    let mut raw = TcpStream::connect(server.addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"*abc\r\n").unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).expect("server must close the connection (EOF), not hang");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR Protocol error: invalid multibulk length\r\n"
    );

    // A second kind of garbage: a bulk length that is not a number.
    let mut raw2 = TcpStream::connect(server.addr()).unwrap();
    raw2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw2.write_all(b"*1\r\n$x\r\n").unwrap();
    let mut reply = Vec::new();
    raw2.read_to_end(&mut reply).unwrap();
    assert_eq!(String::from_utf8_lossy(&reply), "-ERR Protocol error: invalid bulk length\r\n");

    let v: String = good.get("survivor").unwrap();
    assert_eq!(v, "yes");
    let n: i64 = good.incr("after", 1).unwrap();
    assert_eq!(n, 1);
    let mut fresh = sync_con(&server);
    let pong: String = redis::cmd("PING").query(&mut fresh).unwrap();
    assert_eq!(pong, "PONG");
    assert!(server.is_alive(), "server process died");
}

#[test]
fn requirepass_auth() {
    let server = Server::start_with_args(&["--requirepass", "s3cret"]);
    let mut anon = sync_con(&server);
    let err = redis::cmd("GET").arg("k").query::<Option<String>>(&mut anon).unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");

    let url = format!("redis://:s3cret@127.0.0.1:{}/", server.port());
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let () = con.set("k", "v").unwrap();
    let v: String = con.get("k").unwrap();
    assert_eq!(v, "v");

    let bad = format!("redis://:wrong@127.0.0.1:{}/", server.port());
    let r = redis::Client::open(bad).unwrap().get_connection();
    let err = r.err().expect("a wrong password must fail to connect");
    assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
}
