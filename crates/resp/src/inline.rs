//! Splitting an inline command line into arguments, exactly like Redis's
//! `sdssplitargs` (the function behind inline commands and redis-cli input).

use bytes::Bytes;

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits `line` into arguments: whitespace separates, `"..."` supports
/// `\n \r \t \b \a \xHH` and `\<any>` escapes, `'...'` supports `\'`. A closing
/// quote must be followed by whitespace or the end. `None` means unbalanced
/// quotes. Like the C original, a NUL byte ends the line.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let end = memchr::memchr(0, line).unwrap_or(line.len());
    let line = &line[..end];
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = at(p);
            if in_double {
                if c == b'\\' && at(p + 1) == b'x' {
                    if let (Some(h), Some(l)) = (hex(at(p + 2)), hex(at(p + 3))) {
                        current.push(h * 16 + l);
                        p += 4;
                        continue;
                    }
                }
                if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => current.push(other),
                }
            }
            p += 1;
        }
        args.push(Bytes::from(current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<Vec<String>> {
        split_args(s.as_bytes())
            .map(|v| v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect())
    }

    #[test]
    fn like_sdssplitargs() {
        assert_eq!(split("set a b"), Some(vec!["set".into(), "a".into(), "b".into()]));
        assert_eq!(
            split("  set   \"a b\"  'c d' "),
            Some(vec!["set".into(), "a b".into(), "c d".into()])
        );
        assert_eq!(split("\"\\x41\\n\""), Some(vec!["A\n".into()]));
        assert_eq!(split("'it\\'s'"), Some(vec!["it's".into()]));
        assert_eq!(split("ab\"cd\""), Some(vec!["abcd".into()]));
        assert_eq!(split("\"\""), Some(vec!["".into()]));
        assert_eq!(split(""), Some(vec![]));
        assert_eq!(split("\"abc"), None);
        assert_eq!(split("\"a\"b"), None);
        assert_eq!(split("'a"), None);
    }
}
