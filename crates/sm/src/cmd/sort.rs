//! SORT and SORT_RO.
//!
//! ```text
//! SORT key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]]
//!      [ASC | DESC] [ALPHA] [STORE destination]
//! SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]]
//!      [ASC | DESC] [ALPHA]
//! ```
//!
//! # SORT is a write
//!
//! Redis files SORT as a write command because of STORE, and so does this
//! engine's table, which gives every command one kind: SORT always goes
//! through the log, even without STORE (correct, one log round trip slower),
//! and SORT_RO is the read. A clean split would need the table to classify a
//! command by its arguments (a `Kind` that looks for STORE), which the node's
//! dispatch would then have to honour; until then clients that only read
//! should send SORT_RO. Being a write lets SORT do what Redis's does to a
//! small sorted set: convert it to a skiplist for good (SORT_RO, a read,
//! cannot; Redis's SORT_RO does).
//!
//! # Order
//!
//! Everything here is deterministic on every replica. The elements are loaded
//! in the value's own order (a list in list order, an intset ascending, a
//! table set or a zset in canonical [`KeyMap`](crate::keymap::KeyMap) or
//! (score, member) order where Redis would use its hash table's order), then
//! sorted as Redis sorts them: the whole vector with a stable sort (glibc's
//! `qsort`, which Redis calls, is a stable merge sort), or, for `BY` with a
//! `LIMIT` that cuts the result, with a port of Redis's own partial quicksort
//! (`pqsort.c`), so that elements that compare equal come out in Redis's
//! order wherever Redis's order is defined. Numeric ties fall back to
//! comparing the elements; `ALPHA` compares bytes (Redis's `strcoll` under
//! the C or C.UTF-8 locale: up to the first NUL byte, unless the result is
//! stored, then the whole string). `BY nosort` on a set keeps the set's order
//! (with STORE, Redis sorts it with ALPHA instead, and so does this engine).

use std::cmp::Ordering;
use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::args::{self, is, Res};
use crate::cmd::keys::{adds_key, notify_new};
use crate::cmd::sets::store_nothing;
use crate::command::Spec;
use crate::db::Db;
use crate::event::Class;
use crate::float;
use crate::reply::{errors, Reply};
use crate::state::{Exec, Query};
use crate::value::Value;

pub const COMMANDS: &[Spec] =
    &[Spec::write("sort", -2, (1, 1, 1), sort), Spec::read("sort_ro", -2, (1, 1, 1), sort_ro)];

/// SORT's options.
struct SortArgs<'a> {
    desc: bool,
    alpha: bool,
    limit_start: i64,
    limit_count: i64,
    store: Option<&'a Bytes>,
    by: Option<&'a Bytes>,
    /// A BY pattern without `*` was given: nothing is sorted.
    dontsort: bool,
    gets: Vec<&'a Bytes>,
}

/// The part of a byte string C sees: up to the first NUL.
fn c_str(s: &[u8]) -> &[u8] {
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

/// Parses the options like Redis's `sortCommandGeneric`, in order: the first
/// bad one decides the error.
fn parse(argv: &[Bytes], readonly: bool) -> Res<SortArgs<'_>> {
    let mut a = SortArgs {
        desc: false,
        alpha: false,
        limit_start: 0,
        limit_count: -1,
        store: None,
        by: None,
        dontsort: false,
        gets: Vec::new(),
    };
    let mut j = 2;
    while j < argv.len() {
        let left = argv.len() - j - 1;
        let opt = &argv[j];
        if is(opt, "asc") {
            a.desc = false;
        } else if is(opt, "desc") {
            a.desc = true;
        } else if is(opt, "alpha") {
            a.alpha = true;
        } else if is(opt, "limit") && left >= 2 {
            a.limit_start = args::int(&argv[j + 1])?;
            a.limit_count = args::int(&argv[j + 2])?;
            j += 2;
        } else if !readonly && is(opt, "store") && left >= 1 {
            a.store = Some(&argv[j + 1]);
            j += 1;
        } else if is(opt, "by") && left >= 1 {
            let pattern = &argv[j + 1];
            a.by = Some(pattern);
            // A constant pattern means "do not sort" (and stays so).
            if !c_str(pattern).contains(&b'*') {
                a.dontsort = true;
            }
            j += 1;
        } else if is(opt, "get") && left >= 1 {
            a.gets.push(&argv[j + 1]);
            j += 1;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        j += 1;
    }
    Ok(a)
}

/// Redis's `lookupKeyByPattern`: `#` is the element itself; otherwise the
/// first `*` is replaced by the element and the string at that key is read,
/// or with `key->field` the field of the hash at that key. Anything missing
/// or of another type is `None`.
fn lookup_by_pattern(db: &Db, now: i64, pattern: &[u8], subst: &Bytes) -> Option<Bytes> {
    if pattern.first() == Some(&b'#') && pattern.get(1).is_none_or(|&b| b == 0) {
        return Some(subst.clone());
    }
    let visible = c_str(pattern);
    let star = visible.iter().position(|&b| b == b'*')?;
    // `->` after the star (found in the C string) followed by a non-NUL byte
    // names a hash field, which runs to the end of the pattern.
    let arrow = visible[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&f| pattern.get(f + 2).is_some_and(|&b| b != 0));
    let (postfix, field) = match arrow {
        Some(f) => (&pattern[star + 1..f], Some(&pattern[f + 2..])),
        None => (&pattern[star + 1..], None),
    };
    let mut key = BytesMut::with_capacity(star + subst.len() + postfix.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(subst);
    key.extend_from_slice(postfix);
    match (db.get(&key, now)?, field) {
        (Value::Hash(h), Some(field)) => h.get_live(field, now).cloned(),
        (Value::Str(s), None) => Some(s.clone()),
        _ => None,
    }
}

/// The number SORT sorts by: C's `strtod` of the string up to its first NUL,
/// which must parse whole (leading spaces allowed, an empty string is 0),
/// and be neither out of range (glibc's ERANGE: too large, or so small that
/// it rounds to 0 or a subnormal) nor NaN. (Redis also fails when `errno`
/// still holds ERANGE from an earlier command; that is not reproduced.)
fn sort_score(v: &[u8]) -> Option<f64> {
    let v = c_str(v);
    if v.is_empty() {
        return Some(0.0);
    }
    let first = v.iter().position(|&b| !matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))?;
    float::parse_f64(&v[first..]).filter(|x| *x == 0.0 || x.is_infinite() || x.is_normal())
}

/// One element of the sorting vector.
struct Item {
    elem: Bytes,
    score: f64,
    by: Option<Bytes>,
}

/// How two items compare (Redis's `sortCompare`).
#[derive(Clone, Copy)]
struct Order {
    desc: bool,
    alpha: bool,
    by_pattern: bool,
    store: bool,
}

impl Order {
    fn cmp(&self, a: &Item, b: &Item) -> Ordering {
        let text = |x: &Bytes, y: &Bytes| {
            if self.store {
                x.cmp(y)
            } else {
                c_str(x).cmp(c_str(y))
            }
        };
        let cmp = if !self.alpha {
            if a.score > b.score {
                Ordering::Greater
            } else if a.score < b.score {
                Ordering::Less
            } else {
                // Equal scores: the elements decide, so the order is defined.
                a.elem.cmp(&b.elem)
            }
        } else if self.by_pattern {
            match (&a.by, &b.by) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(x), Some(y)) => text(x, y),
            }
        } else {
            text(&a.elem, &b.elem)
        };
        if self.desc {
            cmp.reverse()
        } else {
            cmp
        }
    }
}

/// What a sort produced: the reply, or the list to store.
enum Output {
    Reply(Reply),
    Store(VecDeque<Bytes>),
}

/// The type check Redis makes after parsing: a list, set or zset, or none.
fn check_type(db: &Db, key: &[u8], now: i64) -> Res<()> {
    match db.get(key, now) {
        None | Some(Value::List(_) | Value::Set(_) | Value::ZSet(_)) => Ok(()),
        Some(_) => Err(Reply::err(errors::WRONGTYPE)),
    }
}

/// The sort itself, on a read view of the database.
fn run(db: &Db, now: i64, key: &[u8], a: &SortArgs) -> Res<Output> {
    let value = db.get(key, now);
    let (mut dontsort, mut alpha, mut by) = (a.dontsort, a.alpha, a.by);
    // A set has no order of its own: stored, it is sorted with ALPHA.
    if dontsort && matches!(value, Some(Value::Set(_))) && a.store.is_some() {
        dontsort = false;
        alpha = true;
        by = None;
    }
    let vlen = match value {
        Some(Value::List(l)) => l.len(),
        Some(Value::Set(s)) => s.len(),
        Some(Value::ZSet(z)) => z.len(),
        _ => 0,
    } as i64;

    // LIMIT, clamped as Redis does.
    let mut start = a.limit_start.max(0).min(vlen);
    let limit_count = a.limit_count.max(-1).min(vlen);
    let mut end = if limit_count < 0 { vlen - 1 } else { start + limit_count - 1 };
    if start >= vlen {
        start = vlen - 1;
        end = vlen - 2;
    }
    if end >= vlen {
        end = vlen - 1;
    }
    let ordered = matches!(value, Some(Value::List(_) | Value::ZSet(_)));
    let mut vectorlen = vlen;
    if ordered && dontsort && (start != 0 || end != vectorlen - 1) {
        vectorlen = end - start + 1;
    }

    // Load the vector.
    let item = |elem: Bytes| Item { elem, score: 0.0, by: None };
    let mut items: Vec<Item> = match value {
        Some(Value::List(l)) if dontsort => {
            let mut out = Vec::new();
            if end >= start {
                let take = vectorlen.max(0) as usize;
                if a.desc {
                    let from = (vlen - start - 1) as usize;
                    out.extend(l.iter().take(from + 1).rev().take(take).cloned().map(item));
                } else {
                    out.extend(l.iter().skip(start as usize).take(take).cloned().map(item));
                }
                end -= start;
                start = 0;
            }
            out
        }
        Some(Value::List(l)) => l.iter().cloned().map(item).collect(),
        Some(Value::Set(s)) => s.iter().map(item).collect(),
        Some(Value::ZSet(z)) if dontsort => {
            let take = vectorlen.max(0) as usize;
            let skip = start.max(0) as usize;
            let out = if a.desc {
                z.iter().rev().skip(skip).take(take).map(|(m, _)| item(m.clone())).collect()
            } else {
                z.iter().skip(skip).take(take).map(|(m, _)| item(m.clone())).collect()
            };
            end -= start;
            start = 0;
            out
        }
        Some(Value::ZSet(z)) => z.iter().map(|(m, _)| item(m.clone())).collect(),
        _ => Vec::new(),
    };

    // Weights, then the sort.
    let mut conversion_error = false;
    if !dontsort {
        for it in items.iter_mut() {
            let byval = match by {
                Some(pattern) => match lookup_by_pattern(db, now, pattern, &it.elem) {
                    Some(v) => v,
                    None => continue,
                },
                None => it.elem.clone(),
            };
            if alpha {
                if by.is_some() {
                    it.by = Some(byval);
                }
            } else {
                match sort_score(&byval) {
                    Some(score) => it.score = score,
                    None => conversion_error = true,
                }
            }
        }
        let order =
            Order { desc: a.desc, alpha, by_pattern: by.is_some(), store: a.store.is_some() };
        let len = items.len() as i64;
        if by.is_some() && (start != 0 || end != len - 1) {
            pqsort(&mut items, &|x, y| order.cmp(x, y), start, end);
        } else {
            items.sort_by(|x, y| order.cmp(x, y));
        }
    }
    if conversion_error {
        return Err(Reply::err("ERR One or more scores can't be converted into double"));
    }

    // The output: the elements in [start, end], or what GET finds for them.
    let range = if end >= start { &items[start as usize..=end as usize] } else { &items[..0] };
    if a.store.is_none() {
        let mut out = Vec::with_capacity(range.len() * a.gets.len().max(1));
        for it in range {
            if a.gets.is_empty() {
                out.push(Reply::Bulk(it.elem.clone()));
            }
            for pattern in &a.gets {
                out.push(
                    lookup_by_pattern(db, now, pattern, &it.elem).map_or(Reply::Nil, Reply::Bulk),
                );
            }
        }
        Ok(Output::Reply(Reply::Array(out)))
    } else {
        let mut out = VecDeque::with_capacity(range.len() * a.gets.len().max(1));
        for it in range {
            if a.gets.is_empty() {
                out.push_back(it.elem.clone());
            }
            for pattern in &a.gets {
                out.push_back(lookup_by_pattern(db, now, pattern, &it.elem).unwrap_or_default());
            }
        }
        Ok(Output::Store(out))
    }
}

/// SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC | DESC] [ALPHA] [STORE destination]
fn sort(x: &mut Exec, argv: &[Bytes]) -> Res<Reply> {
    let a = parse(argv, false)?;
    let now = x.now;
    let key = &argv[1];
    check_type(&x.dbs[x.db], key, now)?;
    // Redis converts a sorted set to a skiplist before sorting it, for good.
    if matches!(x.dbs[x.db].get(key, now), Some(Value::ZSet(z)) if z.listpack) {
        if let Ok(Some(z)) = x.db().zset_mut(key, now) {
            z.listpack = false;
        }
    }
    match run(&x.dbs[x.db], now, key, &a)? {
        Output::Reply(reply) => Ok(reply),
        Output::Store(list) => {
            let dst = a.store.expect("a list to store means STORE was given");
            if list.is_empty() {
                store_nothing(x, dst, &argv[1..2]);
                return Ok(Reply::Int(0));
            }
            let len = list.len();
            let adds = adds_key(x, x.db, dst);
            x.db().set(dst, Value::List(list));
            let db = x.db;
            notify_new(x, db, dst, adds);
            x.modified(dst);
            x.notify(Class::List, "sortstore", dst);
            Ok(Reply::Int(len as i64))
        }
    }
}

/// SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC | DESC] [ALPHA]
fn sort_ro(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let a = parse(argv, true)?;
    check_type(q.db(), &argv[1], q.now)?;
    match run(q.db(), q.now, &argv[1], &a)? {
        Output::Reply(reply) => Ok(reply),
        Output::Store(_) => unreachable!("SORT_RO takes no STORE"),
    }
}

// ---------------------------------------------------------------------------
// Redis's partial quicksort

/// Redis's `pqsort` (Bentley & McIlroy's quicksort, as in NetBSD's qsort,
/// that skips the partitions lying wholly outside the element range
/// `lrange..=rrange`), ported step for step: which equal elements end up
/// where is part of SORT's reply, so the comparisons and swaps must be
/// Redis's own.
fn pqsort<T>(v: &mut [T], cmp: &dyn Fn(&T, &T) -> Ordering, lrange: i64, rrange: i64) {
    let n = v.len();
    pqsort_from(v, 0, n, cmp, lrange, rrange);
}

fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &dyn Fn(&T, &T) -> Ordering) -> usize {
    if cmp(&v[a], &v[b]) == Ordering::Less {
        if cmp(&v[b], &v[c]) == Ordering::Less {
            b
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            c
        } else {
            a
        }
    } else if cmp(&v[b], &v[c]) == Ordering::Greater {
        b
    } else if cmp(&v[a], &v[c]) == Ordering::Less {
        a
    } else {
        c
    }
}

fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

/// True if the wanted range touches the `count` elements from `from`.
fn touches(from: usize, count: usize, lrange: i64, rrange: i64) -> bool {
    let (l, r) = (from as i64, (from + count) as i64 - 1);
    !((lrange < l && rrange < l) || (lrange > r && rrange > r))
}

fn pqsort_from<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    cmp: &dyn Fn(&T, &T) -> Ordering,
    lrange: i64,
    rrange: i64,
) {
    loop {
        if n < 7 {
            for pm in a + 1..a + n {
                let mut pl = pm;
                while pl > a && cmp(&v[pl - 1], &v[pl]) == Ordering::Greater {
                    v.swap(pl, pl - 1);
                    pl -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c == Ordering::Greater {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c == Ordering::Less {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let r = (pa - a).min(pb - pa);
        vecswap(v, a, pb - r, r);
        let r = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - r, r);
        let r = pb - pa;
        if r > 1 && touches(a, r, lrange, rrange) {
            pqsort_from(v, a, r, cmp, lrange, rrange);
        }
        let r = pd - pc;
        if r > 1 {
            a = pn - r;
            n = r;
            if touches(a, n, lrange, rrange) {
                continue;
            }
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Elements that compare by their first byte only, to watch ties.
    fn sorted(input: &[&str], lrange: i64, rrange: i64) -> Vec<String> {
        let mut v: Vec<String> = input.iter().map(|s| s.to_string()).collect();
        pqsort(
            &mut v,
            &|a: &String, b: &String| a.as_bytes()[0].cmp(&b.as_bytes()[0]),
            lrange,
            rrange,
        );
        v
    }

    #[test]
    fn pqsort_sorts_the_wanted_range() {
        let input: Vec<String> = (0..200).map(|i| format!("{}", (i * 7919) % 200)).collect();
        let refs: Vec<&str> = input.iter().map(String::as_str).collect();
        let mut full: Vec<u32> = refs.iter().map(|s| s.parse().unwrap()).collect();
        let mut v = full.clone();
        pqsort(&mut v, &|a: &u32, b: &u32| a.cmp(b), 0, 199);
        full.sort();
        assert_eq!(v, full);
        let mut v: Vec<u32> = refs.iter().map(|s| s.parse().unwrap()).collect();
        pqsort(&mut v, &|a: &u32, b: &u32| a.cmp(b), 10, 19);
        assert_eq!(&v[10..20], &full[10..20]);
    }

    #[test]
    fn pqsort_small_inputs_are_an_insertion_sort() {
        // Fewer than 7 elements: a stable insertion sort.
        assert_eq!(sorted(&["b1", "a1", "b2", "a2"], 0, 1), vec!["a1", "a2", "b1", "b2"]);
    }

    #[test]
    fn scores_parse_like_strtod() {
        assert_eq!(sort_score(b""), Some(0.0));
        assert_eq!(sort_score(b" 1.5"), Some(1.5));
        assert_eq!(sort_score(b"2\0junk"), Some(2.0));
        assert_eq!(sort_score(b"0x10"), Some(16.0));
        assert_eq!(sort_score(b"1 "), None);
        assert_eq!(sort_score(b"  "), None);
        assert_eq!(sort_score(b"nan"), None);
        assert_eq!(sort_score(b"1e400"), None);
        assert_eq!(sort_score(b"1e-310"), None);
        assert_eq!(sort_score(b"-inf"), Some(f64::NEG_INFINITY));
    }
}
