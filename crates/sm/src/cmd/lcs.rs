//! LCS: the longest common subsequence of two strings (Redis 7.0's
//! `lcsCommand` in `src/t_string.c`).
//!
//! The table is Redis's: (len(a)+1) × (len(b)+1) `u32` cells, refused with
//! Redis's error when it would exceed 512 MB (`proto-max-bulk-len`), and
//! walked back from the end with Redis's tie-break (up when the cell above
//! is strictly greater, left otherwise), so the string and the ranges IDX
//! reports are Redis's own. LEN alone needs no walk and keeps two rows.

use bytes::Bytes;

use crate::args::{self, Res};
use crate::cmd::bitmaps::c_is;
use crate::cmd::strings::MAX_STRING_LEN;
use crate::command::Spec;
use crate::reply::{errors, Reply};
use crate::state::Query;
use crate::value::Value;

pub const COMMANDS: &[Spec] = &[Spec::read("lcs", -3, (1, 2, 1), lcs)];

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]
fn lcs(q: &mut Query, argv: &[Bytes]) -> Res<Reply> {
    let db = q.db();
    let mut strings = [Bytes::new(), Bytes::new()];
    for (slot, key) in strings.iter_mut().zip(&argv[1..3]) {
        match db.get(key, q.now) {
            None => {}
            Some(Value::Str(s)) => *slot = s.clone(),
            Some(_) => return Err(Reply::err("ERR The specified keys must contain string values")),
        }
    }
    let (mut get_len, mut get_idx, mut with_match_len) = (false, false, false);
    let mut min_match_len: i64 = 0;
    let mut j = 3;
    while j < argv.len() {
        let opt = &argv[j];
        let more = j + 1 < argv.len();
        if c_is(opt, "idx") {
            get_idx = true;
        } else if c_is(opt, "len") {
            get_len = true;
        } else if c_is(opt, "withmatchlen") {
            with_match_len = true;
        } else if c_is(opt, "minmatchlen") && more {
            min_match_len = args::int(&argv[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        j += 1;
    }
    if get_len && get_idx {
        return Err(Reply::err(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    let [a, b] = strings;
    let cells = (a.len() as u64 + 1) * (b.len() as u64 + 1);
    if cells.saturating_mul(4) > MAX_STRING_LEN as u64 {
        return Err(Reply::err(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    if get_len {
        return Ok(Reply::Int(i64::from(lcs_len(&a, &b))));
    }
    let table = Table::build(&a, &b);
    let walk = table.walk(&a, &b, min_match_len, with_match_len);
    if get_idx {
        Ok(Reply::Map(vec![
            (Reply::bulk(b"matches"), Reply::Array(walk.ranges)),
            (Reply::bulk(b"len"), Reply::Int(i64::from(table.at(a.len(), b.len())))),
        ]))
    } else {
        Ok(Reply::Bulk(Bytes::from(walk.common)))
    }
}

/// The LCS length alone, row by row.
fn lcs_len(a: &[u8], b: &[u8]) -> u32 {
    let mut prev = vec![0u32; b.len() + 1];
    let mut row = vec![0u32; b.len() + 1];
    for &ca in a {
        for (j, &cb) in b.iter().enumerate() {
            row[j + 1] = if ca == cb { prev[j] + 1 } else { prev[j + 1].max(row[j]) };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// Redis's LCS table: cell (i, j) is the LCS length of a[..i] and b[..j].
struct Table {
    cells: Vec<u32>,
    width: usize,
}

/// What walking the table back gives: the common subsequence and the IDX
/// ranges (already shaped as replies).
struct Walk {
    common: Vec<u8>,
    ranges: Vec<Reply>,
}

impl Table {
    fn build(a: &[u8], b: &[u8]) -> Table {
        let width = b.len() + 1;
        let mut cells = vec![0u32; (a.len() + 1) * width];
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                cells[i * width + j] = if a[i - 1] == b[j - 1] {
                    cells[(i - 1) * width + j - 1] + 1
                } else {
                    cells[(i - 1) * width + j].max(cells[i * width + j - 1])
                };
            }
        }
        Table { cells, width }
    }

    #[inline]
    fn at(&self, i: usize, j: usize) -> u32 {
        self.cells[i * self.width + j]
    }

    /// Walks back from the end as Redis does, collecting the common bytes
    /// and the matching ranges of at least `min_len` bytes.
    fn walk(&self, a: &[u8], b: &[u8], min_len: i64, with_len: bool) -> Walk {
        let mut idx = self.at(a.len(), b.len()) as usize;
        let mut common = vec![0u8; idx];
        let mut ranges = Vec::new();
        // `None`: no range is being tracked (Redis's arange_start == alen).
        let mut range: Option<(usize, usize, usize, usize)> = None;
        let (mut i, mut j) = (a.len(), b.len());
        while i > 0 && j > 0 {
            let mut emit = false;
            if a[i - 1] == b[j - 1] {
                common[idx - 1] = a[i - 1];
                match &mut range {
                    None => range = Some((i - 1, i - 1, j - 1, j - 1)),
                    Some((a_start, _, b_start, _)) if *a_start == i && *b_start == j => {
                        *a_start -= 1;
                        *b_start -= 1;
                    }
                    Some(_) => emit = true,
                }
                if let Some((a_start, _, b_start, _)) = range {
                    if a_start == 0 || b_start == 0 {
                        emit = true;
                    }
                }
                idx -= 1;
                i -= 1;
                j -= 1;
            } else {
                if self.at(i - 1, j) > self.at(i, j - 1) {
                    i -= 1;
                } else {
                    j -= 1;
                }
                emit = range.is_some();
            }
            if emit {
                if let Some((a_start, a_end, b_start, b_end)) = range.take() {
                    let len = a_end - a_start + 1;
                    if min_len == 0 || len as i64 >= min_len {
                        let pair = |s: usize, e: usize| {
                            Reply::Array(vec![Reply::Int(s as i64), Reply::Int(e as i64)])
                        };
                        let mut item = vec![pair(a_start, a_end), pair(b_start, b_end)];
                        if with_len {
                            item.push(Reply::Int(len as i64));
                        }
                        ranges.push(Reply::Array(item));
                    }
                }
            }
        }
        Walk { common, ranges }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::*;
    use crate::Reply;

    #[test]
    fn lcs_string_len_and_idx() {
        let mut h = Harness::new();
        h.run("MSET key1 ohmytext key2 mynewtext");
        assert_eq!(h.run("LCS key1 key2"), bulk("mytext"));
        assert_eq!(h.run("LCS key1 key2 LEN"), int(6));
        let pair = |a: i64, b: i64| Reply::Array(vec![int(a), int(b)]);
        let m = |a: (i64, i64), b: (i64, i64), len: Option<i64>| {
            let mut v = vec![pair(a.0, a.1), pair(b.0, b.1)];
            v.extend(len.map(int));
            Reply::Array(v)
        };
        assert_eq!(
            h.run("LCS key1 key2 IDX MINMATCHLEN 4 WITHMATCHLEN"),
            Reply::Map(vec![
                (bulk("matches"), Reply::Array(vec![m((4, 7), (5, 8), Some(4))])),
                (bulk("len"), int(6)),
            ])
        );
        assert_eq!(
            h.run("LCS key1 key2 IDX"),
            Reply::Map(vec![
                (
                    bulk("matches"),
                    Reply::Array(vec![m((4, 7), (5, 8), None), m((2, 3), (0, 1), None)])
                ),
                (bulk("len"), int(6)),
            ])
        );
        assert_eq!(
            h.run("LCS key1 key2 LEN IDX"),
            err("ERR If you want both the length and indexes, please just use IDX.")
        );
        assert_eq!(h.run("LCS key1 key2 MINMATCHLEN"), err("ERR syntax error"));
        assert_eq!(h.run("LCS missing other"), bulk(""));
        h.run("RPUSH l a");
        assert_eq!(h.run("LCS key1 l"), err("ERR The specified keys must contain string values"));
    }

    #[test]
    fn len_alone_agrees_with_the_table() {
        let words: Vec<Vec<u8>> = (0..30u32)
            .map(|i| (0..(i * 7 % 23)).map(|k| b"abcab"[((k * i + 3) % 5) as usize]).collect())
            .collect();
        for a in &words {
            for b in &words {
                let t = super::Table::build(a, b);
                assert_eq!(super::lcs_len(a, b), t.at(a.len(), b.len()));
            }
        }
    }
}
