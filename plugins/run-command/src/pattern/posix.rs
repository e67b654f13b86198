//! POSIX regular expressions as GNU grep and sed read them, rewritten in
//! Rust `regex` syntax.
//!
//! Basic (BRE): `\( \) \{ \} \| \+ \?` are operators and their plain forms
//! literal; `*` at the start of an expression is literal; `^`/`$` anchor
//! only at the ends of an expression or group. Extended (ERE): the plain
//! forms are operators. Both: bracket expressions with `[:class:]`, `\<`
//! `\>` `\b` `\B` `\w` `\W` `\s` `\S`. Matching is leftmost-first where POSIX
//! says leftmost-longest; the two differ only for alternations whose earlier
//! branch is a prefix of a later one. Back-references are refused.

/// Which dialect a pattern is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// POSIX basic (grep, grep -G, sed).
    Basic,
    /// POSIX extended (grep -E, sed -E).
    Extended,
    /// A fixed string (grep -F).
    Fixed,
    /// Rust regex syntax as is (rg, grep -P).
    Rust,
}

/// Rewrites `pat` in Rust regex syntax.
pub fn translate(pat: &str, dialect: Dialect) -> Result<String, String> {
    match dialect {
        Dialect::Fixed => Ok(regex::escape(pat)),
        Dialect::Rust => Ok(pat.to_string()),
        Dialect::Basic | Dialect::Extended => Translator {
            p: pat.chars().collect(),
            i: 0,
            ere: dialect == Dialect::Extended,
            out: String::new(),
        }
        .run(),
    }
}

struct Translator {
    p: Vec<char>,
    i: usize,
    ere: bool,
    out: String,
}

impl Translator {
    fn run(mut self) -> Result<String, String> {
        // Whether the previous token can be repeated (else `*` is literal).
        let mut atom = false;
        let mut depth = 0usize;
        while self.i < self.p.len() {
            let c = self.p[self.i];
            self.i += 1;
            let at_start = !atom;
            match c {
                '\\' => {
                    let Some(&n) = self.p.get(self.i) else {
                        return Err("trailing backslash (\\)".into());
                    };
                    self.i += 1;
                    match (n, self.ere) {
                        ('(', false) => {
                            self.out.push('(');
                            depth += 1;
                            atom = false;
                            continue;
                        }
                        (')', false) => {
                            if depth == 0 {
                                return Err("Unmatched ) or \\)".into());
                            }
                            depth -= 1;
                            self.out.push(')');
                        }
                        ('|', false) => {
                            self.out.push('|');
                            atom = false;
                            continue;
                        }
                        ('{', false) => {
                            if !atom {
                                return Err("Invalid preceding regular expression".into());
                            }
                            self.interval(true)?;
                        }
                        ('+' | '?', false) => {
                            if atom {
                                self.out.push(n);
                            } else {
                                self.lit(n);
                            }
                        }
                        ('<', _) => self.out.push_str(r"\b{start}"),
                        ('>', _) => self.out.push_str(r"\b{end}"),
                        ('b' | 'B' | 'w' | 'W' | 's' | 'S', _) => {
                            self.out.push('\\');
                            self.out.push(n);
                        }
                        ('`', _) => self.out.push_str(r"\A"),
                        ('\'', _) => self.out.push_str(r"\z"),
                        ('1'..='9', _) => {
                            return Err("back-references (\\1 to \\9) are not supported by run_command's regex engine".into())
                        }
                        (n, _) => self.lit(n),
                    }
                    atom = !matches!(n, '<' | '>' | 'b' | 'B' | '`' | '\'');
                }
                '[' => {
                    self.bracket()?;
                    atom = true;
                }
                '.' => {
                    self.out.push('.');
                    atom = true;
                }
                '*' => {
                    if at_start {
                        self.lit('*');
                        atom = true;
                    } else {
                        self.out.push('*');
                    }
                }
                '^' => {
                    if self.ere || at_start {
                        self.out.push('^');
                        atom = false;
                        continue;
                    }
                    self.lit('^');
                    atom = true;
                }
                '$' => {
                    let end = self.i == self.p.len()
                        || (!self.ere && self.p[self.i..].starts_with(&['\\', ')']))
                        || (!self.ere && self.p[self.i..].starts_with(&['\\', '|']));
                    if self.ere || end {
                        self.out.push('$');
                    } else {
                        self.lit('$');
                    }
                    atom = false;
                    continue;
                }
                '(' if self.ere => {
                    self.out.push('(');
                    depth += 1;
                    atom = false;
                    continue;
                }
                ')' if self.ere => {
                    if depth == 0 {
                        self.lit(')');
                    } else {
                        depth -= 1;
                        self.out.push(')');
                    }
                    atom = true;
                }
                '|' if self.ere => {
                    self.out.push('|');
                    atom = false;
                    continue;
                }
                '+' | '?' if self.ere => {
                    if at_start {
                        self.lit(c);
                        atom = true;
                    } else {
                        self.out.push(c);
                    }
                }
                '{' if self.ere => {
                    if at_start || !self.interval(false)? {
                        self.lit('{');
                        atom = true;
                    }
                }
                c => {
                    self.lit(c);
                    atom = true;
                }
            }
            let _ = at_start;
        }
        if depth > 0 {
            return Err("Unmatched ( or \\(".into());
        }
        Ok(self.out)
    }

    fn lit(&mut self, c: char) {
        let mut b = [0u8; 4];
        self.out.push_str(&regex::escape(c.encode_utf8(&mut b)));
    }

    /// Reads `m,n}` (BRE: `m,n\}`) after `{`; false when it is not an
    /// interval (ERE then takes `{` literally).
    fn interval(&mut self, bre: bool) -> Result<bool, String> {
        let start = self.i;
        let mut body = String::new();
        loop {
            let Some(&c) = self.p.get(self.i) else {
                if bre {
                    return Err("Unmatched \\{".into());
                }
                self.i = start;
                return Ok(false);
            };
            self.i += 1;
            if bre && c == '\\' && self.p.get(self.i) == Some(&'}') {
                self.i += 1;
                break;
            }
            if !bre && c == '}' {
                break;
            }
            body.push(c);
        }
        let valid = !body.is_empty()
            && body.chars().all(|c| c.is_ascii_digit() || c == ',')
            && body.matches(',').count() <= 1;
        if !valid {
            if bre {
                return Err("Invalid content of \\{\\}".into());
            }
            self.i = start;
            return Ok(false);
        }
        let body = if body.starts_with(',') { format!("0{body}") } else { body };
        self.out.push('{');
        self.out.push_str(&body);
        self.out.push('}');
        Ok(true)
    }

    /// A bracket expression, `[` already read.
    fn bracket(&mut self) -> Result<(), String> {
        let mut out = String::from("[");
        if self.p.get(self.i) == Some(&'^') {
            out.push('^');
            self.i += 1;
        }
        let mut first = true;
        loop {
            let Some(&c) = self.p.get(self.i) else {
                return Err("Unmatched [, [^, [:, [., or [=".into());
            };
            self.i += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            if c == '[' && matches!(self.p.get(self.i), Some(':' | '=' | '.')) {
                let kind = self.p[self.i];
                let rest: String = self.p[self.i + 1..].iter().collect();
                let close = format!("{kind}]");
                let Some(end) = rest.find(&close) else {
                    return Err("Unmatched [, [^, [:, [., or [=".into());
                };
                let name = &rest[..end];
                self.i += 1 + name.chars().count() + 2;
                match kind {
                    ':' => {
                        let known = [
                            "alpha", "digit", "alnum", "upper", "lower", "space", "blank", "punct",
                            "xdigit", "cntrl", "print", "graph",
                        ];
                        if !known.contains(&name) {
                            return Err("Invalid character class name".into());
                        }
                        out.push_str(&format!("[:{name}:]"));
                    }
                    _ => {
                        for ch in name.chars() {
                            push_class_char(&mut out, ch);
                        }
                    }
                }
                continue;
            }
            // A range a-z, unless `-` is last.
            if self.p.get(self.i) == Some(&'-') && self.p.get(self.i + 1).is_some_and(|&e| e != ']') {
                let hi = self.p[self.i + 1];
                self.i += 2;
                push_class_char(&mut out, c);
                out.push('-');
                push_class_char(&mut out, hi);
                continue;
            }
            push_class_char(&mut out, c);
        }
        out.push(']');
        self.out.push_str(&out);
        Ok(())
    }
}

/// One literal character inside a Rust class.
fn push_class_char(out: &mut String, c: char) {
    if matches!(c, '\\' | '[' | ']' | '^' | '-' | '&' | '~') {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bre(p: &str) -> String {
        translate(p, Dialect::Basic).unwrap()
    }
    fn ere(p: &str) -> String {
        translate(p, Dialect::Extended).unwrap()
    }

    #[test]
    fn basic() {
        assert_eq!(bre("def .*(request"), r"def .*\(request");
        assert_eq!(bre(r"\(a\|b\)\+"), "(a|b)+");
        assert_eq!(bre("*a"), r"\*a");
        assert_eq!(bre("a^b$"), r"a\^b$");
        assert_eq!(bre(r"x\{2,\}"), "x{2,}");
        assert_eq!(bre("a+b?"), r"a\+b\?");
        assert_eq!(bre(r"[\]"), r"[\\]");
        assert_eq!(bre("[]a-]"), r"[\]a\-]");
        assert_eq!(bre("[[:space:]]"), "[[:space:]]");
        assert_eq!(bre(r"\<foo\>"), r"\b{start}foo\b{end}");
        assert!(translate(r"\(a\)\1", Dialect::Basic).is_err());
    }

    #[test]
    fn extended() {
        assert_eq!(ere("(get|post)_[a-z]+"), "(get|post)_[a-z]+");
        assert_eq!(ere(r"\(x\)"), r"\(x\)");
        assert_eq!(ere("a{,3}"), "a{0,3}");
        assert_eq!(ere("a{x"), r"a\{x");
        assert_eq!(ere("+a"), r"\+a");
        for p in ["def .*(request", "^import", r"\.py$", "a|b", "[^[:alnum:]_]"] {
            for d in [Dialect::Basic, Dialect::Extended] {
                let t = translate(p, d);
                if let Ok(t) = t {
                    regex::Regex::new(&t).unwrap_or_else(|e| panic!("{p} -> {t}: {e}"));
                }
            }
        }
    }
}
