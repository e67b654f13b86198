//! Shell wildcards as `fnmatch(3)` matches them: `*`, `?`, `[…]` (with `!`
//! or `^` negation, ranges and `[:class:]`), backslash escapes. `*` and `?`
//! match `/` too unless `path` is set (used for whole paths with `find
//! -path`, where POSIX also lets them match `/`; globbing splits on `/`
//! before matching, so it never meets one).

/// Whether `name` matches the wildcard `pat`.
pub fn matches(pat: &str, name: &str, fold_case: bool) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    if fold_case {
        let p: Vec<char> = p.iter().flat_map(|c| c.to_lowercase()).collect();
        let n: Vec<char> = n.iter().flat_map(|c| c.to_lowercase()).collect();
        return go(&p, &n);
    }
    go(&p, &n)
}

/// Whether `pat` has an unescaped wildcard character.
pub fn has_wildcards(pat: &str) -> bool {
    let mut esc = false;
    for c in pat.chars() {
        if esc {
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if matches!(c, '*' | '?' | '[') {
            return true;
        }
    }
    false
}

/// Removes backslash escapes (the word a pattern stands for when nothing matches).
pub fn unescape(pat: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in pat.chars() {
        if !esc && c == '\\' {
            esc = true;
            continue;
        }
        esc = false;
        out.push(c);
    }
    out
}

fn go(p: &[char], n: &[char]) -> bool {
    // Iterative with one backtrack point for the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni]) {
                        if ok {
                            pi += len;
                            ni += 1;
                            continue;
                        }
                    } else if n[ni] == '[' {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == n[ni] {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c => {
                    if c == n[ni] {
                        pi += 1;
                        ni += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the bracket expression at the start of `p`; returns
/// (matched, length of the expression), or `None` when it is not closed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((hit != negate, i + 1));
        }
        first = false;
        if ch == '[' && p.get(i + 1) == Some(&':') {
            let rest: String = p[i + 2..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let name = &rest[..end];
                hit |= posix_class(name, c);
                i += 2 + name.chars().count() + 2;
                continue;
            }
        }
        let lo = if ch == '\\' && i + 1 < p.len() {
            i += 1;
            p[i]
        } else {
            ch
        };
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            let hi = p[i + 2];
            hit |= lo <= c && c <= hi;
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
}

/// `[:name:]` classes, ASCII as in the C locale.
pub fn posix_class(name: &str, c: char) -> bool {
    match name {
        "alpha" => c.is_alphabetic(),
        "digit" => c.is_ascii_digit(),
        "alnum" => c.is_alphanumeric(),
        "upper" => c.is_uppercase(),
        "lower" => c.is_lowercase(),
        "space" => c.is_whitespace(),
        "blank" => c == ' ' || c == '\t',
        "punct" => c.is_ascii_punctuation(),
        "xdigit" => c.is_ascii_hexdigit(),
        "cntrl" => c.is_control(),
        "print" => !c.is_control(),
        "graph" => !c.is_control() && !c.is_whitespace(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("*.py", "views.py", false));
        assert!(!matches("*.py", "views.pyc", false));
        assert!(matches("test_?.py", "test_a.py", false));
        assert!(matches("[a-c]*", "blog", false));
        assert!(!matches("[!a-c]*", "blog", false));
        assert!(matches("*[[:digit:]]", "v2", false));
        assert!(matches("\\*", "*", false));
        assert!(matches("*.PY", "a.py", true));
        assert!(matches("*", "", false));
        assert!(matches("a*b*c", "aXbYbc", false));
        assert!(matches("[]]", "]", false));
    }
}
