//! Word expansion: variables and command substitution, then field
//! splitting of their unquoted results, then pathname expansion (globs) of
//! unquoted wildcards, as `sh` does.
//! A glob that matches nothing stays as written; `*` does not match names
//! starting with `.` unless the pattern does; matches are sorted by bytes.

use super::parse::{Piece, Word};
use crate::ctx::Ctx;
use crate::pattern::fnmatch;

#[derive(Default)]
struct Field {
    /// The text, wildcards in quoted parts escaped with `\`.
    pattern: String,
    /// Whether an unquoted wildcard appears.
    glob: bool,
}

impl Field {
    fn push(&mut self, c: char, quoted: bool) {
        if quoted && matches!(c, '*' | '?' | '[' | '\\' | ']') {
            self.pattern.push('\\');
        } else if !quoted && matches!(c, '*' | '?' | '[') {
            self.glob = true;
        } else if !quoted && c == '\\' {
            self.pattern.push('\\');
        }
        self.pattern.push(c);
    }
}

/// Expands `word` into zero or more arguments; `subst` runs the command
/// line of a `$(…)` and returns its standard output.
pub fn expand(ctx: &Ctx, word: &Word, status: i32, subst: &mut dyn FnMut(&str) -> String) -> Vec<String> {
    let mut fields: Vec<Field> = Vec::new();
    let mut cur: Option<Field> = None;
    for piece in word {
        match piece {
            Piece::Lit(t, quoted) => {
                let f = cur.get_or_insert_with(Field::default);
                for c in t.chars() {
                    f.push(c, *quoted);
                }
            }
            Piece::Status(quoted) => {
                let f = cur.get_or_insert_with(Field::default);
                for c in status.to_string().chars() {
                    f.push(c, *quoted);
                }
            }
            Piece::Var(_, quoted) | Piece::Subst(_, quoted) => {
                let value = match piece {
                    Piece::Var(name, _) => ctx.vars.get(name).cloned().unwrap_or_default(),
                    Piece::Subst(cmd, _) => subst(cmd).trim_end_matches('\n').to_string(),
                    _ => unreachable!(),
                };
                if *quoted {
                    let f = cur.get_or_insert_with(Field::default);
                    for c in value.chars() {
                        f.push(c, true);
                    }
                    continue;
                }
                // Unquoted: split on blanks; split parts are not globbed.
                let starts_blank = value.starts_with(char::is_whitespace);
                let ends_blank = value.ends_with(char::is_whitespace);
                let parts: Vec<&str> = value.split_whitespace().collect();
                if starts_blank {
                    if let Some(f) = cur.take() {
                        fields.push(f);
                    }
                }
                for (k, part) in parts.iter().enumerate() {
                    if k > 0 {
                        if let Some(f) = cur.take() {
                            fields.push(f);
                        }
                    }
                    let f = cur.get_or_insert_with(Field::default);
                    for c in part.chars() {
                        f.push(c, true);
                    }
                }
                if ends_blank && !parts.is_empty() {
                    if let Some(f) = cur.take() {
                        fields.push(f);
                    }
                }
            }
        }
    }
    if let Some(f) = cur {
        fields.push(f);
    }
    let mut out = Vec::new();
    for f in fields {
        if f.glob {
            let found = glob(ctx, &f.pattern);
            if !found.is_empty() {
                out.extend(found);
                continue;
            }
        }
        out.push(fnmatch::unescape(&f.pattern));
    }
    out
}

/// Paths matching `pattern` (relative to the working directory unless
/// absolute), sorted.
pub fn glob(ctx: &Ctx, pattern: &str) -> Vec<String> {
    let absolute = pattern.starts_with('/');
    let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
    // (shown prefix, absolute directory)
    let start_shown = if absolute { "/".to_string() } else { String::new() };
    let start_abs = if absolute { "/".to_string() } else { ctx.cwd.clone() };
    let mut paths = vec![(start_shown, start_abs)];
    for (i, comp) in comps.iter().enumerate() {
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for (shown, abs) in &paths {
            let join = |name: &str| {
                let s = if shown.is_empty() || shown.ends_with('/') {
                    format!("{shown}{name}")
                } else {
                    format!("{shown}/{name}")
                };
                let a = format!("{}/{}", abs.trim_end_matches('/'), name);
                (s, a)
            };
            if !fnmatch::has_wildcards(comp) {
                let name = fnmatch::unescape(comp);
                let (s, a) = join(&name);
                if last {
                    if ctx.abs(&a).is_ok() && std::fs::symlink_metadata(&a).is_ok() {
                        next.push((s, a));
                    }
                } else {
                    next.push((s, a));
                }
                continue;
            }
            if ctx.abs(abs).is_err() {
                continue;
            }
            let Ok(names) = ctx.list(abs) else { continue };
            for name in names {
                if name.starts_with('.') && !comp.starts_with('.') {
                    continue;
                }
                if !fnmatch::matches(comp, &name, false) {
                    continue;
                }
                let (s, a) = join(&name);
                if !last && !std::fs::metadata(&a).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                next.push((s, a));
            }
        }
        paths = next;
    }
    let trailing = pattern.ends_with('/') && !comps.is_empty();
    let mut out: Vec<String> = paths
        .into_iter()
        .map(|(s, _)| if trailing { format!("{s}/") } else { s })
        .collect();
    out.sort();
    out
}
