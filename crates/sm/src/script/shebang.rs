//! The `#!lua flags=no-writes,allow-oom` first line of a Redis 7.0 script.

use crate::reply::Reply;

use super::ScriptFlags;

/// Parses the shebang of `body`, as Redis 7.0's `evalExtractShebangFlags`:
/// no shebang gives compatibility-mode flags; a bad one gives Redis's exact
/// error reply (`ERR Unexpected flag in script shebang: foo`, …). The first
/// line is split like `sdssplitargs` (quotes and escapes allowed).
pub fn parse_shebang(body: &[u8]) -> Result<ScriptFlags, Reply> {
    split(body).map(|(flags, _)| flags)
}

/// The flags and the length of the shebang line (without its newline, which
/// the compiled body keeps so that line numbers stay the user's).
pub(crate) fn split(body: &[u8]) -> Result<(ScriptFlags, usize), Reply> {
    if !body.starts_with(b"#!") {
        return Ok((ScriptFlags { compat: true, ..ScriptFlags::default() }, 0));
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err(Reply::err("ERR Invalid script shebang"));
    };
    let parts = match split_args(&body[..end]) {
        Some(parts) if !parts.is_empty() => parts,
        _ => return Err(Reply::err("ERR Invalid engine in script shebang")),
    };
    if c_str(&parts[0]) != b"#!lua" {
        return Err(Reply::error(format!(
            "ERR Unexpected engine in script shebang: {}",
            String::from_utf8_lossy(c_str(&parts[0]))
        )));
    }
    let mut flags = ScriptFlags::default();
    for part in &parts[1..] {
        let Some(list) = part.strip_prefix(b"flags=") else {
            return Err(Reply::error(format!(
                "ERR Unknown lua shebang option: {}",
                String::from_utf8_lossy(c_str(part))
            )));
        };
        if list.is_empty() {
            continue;
        }
        for flag in list.split(|&b| b == b',') {
            match c_str(flag) {
                b"no-writes" => flags.no_writes = true,
                b"allow-oom" => flags.allow_oom = true,
                b"allow-stale" => flags.allow_stale = true,
                b"no-cluster" => flags.no_cluster = true,
                b"allow-cross-slot-keys" => flags.allow_cross_slot_keys = true,
                other => {
                    return Err(Reply::error(format!(
                        "ERR Unexpected flag in script shebang: {}",
                        String::from_utf8_lossy(other)
                    )))
                }
            }
        }
    }
    Ok((flags, end))
}

/// The bytes C's string functions see: up to the first NUL.
fn c_str(s: &[u8]) -> &[u8] {
    &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Redis's `sdssplitargs`: whitespace-separated words, with "double quotes"
/// (C escapes, \xHH) and 'single quotes'. None for unbalanced quotes or a
/// closing quote not followed by a space.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(out);
        }
        let mut word = Vec::new();
        let (mut dq, mut sq) = (false, false);
        loop {
            if dq {
                if i >= line.len() {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && hex(line[i + 2]).is_some()
                    && hex(line[i + 3]).is_some()
                {
                    word.push(hex(line[i + 2])? * 16 + hex(line[i + 3])?);
                    i += 3;
                } else if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    word.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < line.len() && !is_space(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                }
            } else if sq {
                if i >= line.len() {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    i += 1;
                    word.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < line.len() && !is_space(line[i + 1]) {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    word.push(c);
                }
            } else {
                if i >= line.len() {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => dq = true,
                    b'\'' => sq = true,
                    c => word.push(c),
                }
            }
            i += 1;
        }
        out.push(word);
    }
}
