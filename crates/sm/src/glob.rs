//! Glob-style pattern matching exactly like Redis's `stringmatchlen` (KEYS,
//! SCAN MATCH, CONFIG GET …): `*`, `?`, `[abc]`, `[^a-z]`, `\x` escapes, with
//! the same corner cases (an unclosed `[` matches to the end of the pattern) and
//! the same guard against exponential backtracking on patterns like `*a*a*a*b`.

/// True if `string` matches `pattern`.
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, false, &mut skip_longer)
}

/// Case-insensitive variant.
pub fn matches_nocase(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, true, &mut skip_longer)
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn match_impl(pat: &[u8], s: &[u8], nocase: bool, skip_longer: &mut bool) -> bool {
    // Reads past the end yield 0, as the C code reads the NUL terminator.
    let at = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
    let (mut p, mut i) = (0usize, 0usize);
    while p < pat.len() && i < s.len() {
        match pat[p] {
            b'*' => {
                while p + 1 < pat.len() && pat[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pat.len() {
                    return true;
                }
                while i < s.len() {
                    if match_impl(&pat[p + 1..], &s[i..], nocase, skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    i += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => i += 1,
            b'[' => {
                p += 1;
                let not = at(pat, p) == b'^';
                if not {
                    p += 1;
                }
                let mut matched = false;
                let c = s[i];
                loop {
                    if at(pat, p) == b'\\' && pat.len() - p >= 2 {
                        p += 1;
                        if pat[p] == c {
                            matched = true;
                        }
                    } else if at(pat, p) == b']' {
                        break;
                    } else if p >= pat.len() {
                        // Unclosed class: step back so the outer advance ends it.
                        p -= 1;
                        break;
                    } else if pat.len() - p >= 3 && pat[p + 1] == b'-' {
                        let (mut start, mut end, mut ch) = (pat[p], pat[p + 2], c);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            start = start.to_ascii_lowercase();
                            end = end.to_ascii_lowercase();
                            ch = ch.to_ascii_lowercase();
                        }
                        p += 2;
                        if ch >= start && ch <= end {
                            matched = true;
                        }
                    } else if eq(pat[p], c, nocase) {
                        matched = true;
                    }
                    p += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                i += 1;
            }
            b'\\' if pat.len() - p >= 2 => {
                p += 1;
                if !eq(pat[p], s[i], nocase) {
                    return false;
                }
                i += 1;
            }
            other => {
                if !eq(other, s[i], nocase) {
                    return false;
                }
                i += 1;
            }
        }
        p += 1;
        if i == s.len() {
            while at(pat, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p >= pat.len() && i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_glob_cases() {
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("key:*", "key:1"),
            ("a\\*b", "a*b"),
            ("*a*a*a*b", "aaaab"),
            ("[abc", "a"),
            ("user:*:name", "user:42:name"),
        ];
        for (p, s) in yes {
            assert!(matches(p.as_bytes(), s.as_bytes()), "{p} should match {s}");
        }
        let no: &[(&str, &str)] = &[
            ("h[^e]llo", "hello"),
            ("h?llo", "hllo"),
            ("a\\*b", "axb"),
            ("", "a"),
            // Like Redis: a star needs at least one character; KEYS * special-cases it.
            ("*", ""),
            ("a", ""),
            ("key:*", "other"),
        ];
        for (p, s) in no {
            assert!(!matches(p.as_bytes(), s.as_bytes()), "{p} should not match {s}");
        }
        assert!(matches_nocase(b"HELLO*", b"hello world"));
        assert!(matches(b"", b""));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let s = vec![b'a'; 5000];
        let pat = b"*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let start = std::time::Instant::now();
        assert!(!matches(pat, &s));
        assert!(start.elapsed().as_secs() < 2);
    }
}
