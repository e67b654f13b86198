//! `rg` as ripgrep writes into a pipe: no line numbers unless `-n`, file
//! names when searching a directory or several paths, `.gitignore`/`.ignore`
//! and hidden files skipped (by the `ignore` crate, ripgrep's own walker),
//! binary files skipped, `-t`/`-T` file types, `-g` globs, `--files`.
//! Files are searched in path order (ripgrep's order is unspecified).

use super::grep::{compile, Conf, Grep};
use crate::ctx::Ctx;
use crate::io::{lines, Io};
use crate::opts::{self, Opt, Spec};
use crate::pattern::posix::Dialect;
use std::io::{self, Write};

const SPEC: Spec = Spec {
    flags: "nNiSswxFvcloLHIqa0u.PU",
    values: "eABCmgtTdfjM",
    long: &[
        ("line-number", false, 'n'),
        ("no-line-number", false, 'N'),
        ("ignore-case", false, 'i'),
        ("smart-case", false, 'S'),
        ("case-sensitive", false, 's'),
        ("word-regexp", false, 'w'),
        ("line-regexp", false, 'x'),
        ("fixed-strings", false, 'F'),
        ("invert-match", false, 'v'),
        ("count", false, 'c'),
        ("files-with-matches", false, 'l'),
        ("files-without-match", false, '\0'),
        ("only-matching", false, 'o'),
        ("follow", false, 'L'),
        ("with-filename", false, 'H'),
        ("no-filename", false, 'I'),
        ("quiet", false, 'q'),
        ("text", false, 'a'),
        ("null", false, '0'),
        ("hidden", false, '.'),
        ("unrestricted", false, 'u'),
        ("pcre2", false, 'P'),
        ("regexp", true, 'e'),
        ("file", true, 'f'),
        ("after-context", true, 'A'),
        ("before-context", true, 'B'),
        ("context", true, 'C'),
        ("max-count", true, 'm'),
        ("glob", true, 'g'),
        ("iglob", true, '\0'),
        ("type", true, 't'),
        ("type-not", true, 'T'),
        ("max-depth", true, 'd'),
        ("maxdepth", true, 'd'),
        ("threads", true, 'j'),
        ("max-columns", true, 'M'),
        ("no-ignore", false, '\0'),
        ("no-ignore-vcs", false, '\0'),
        ("no-ignore-dot", false, '\0'),
        ("no-ignore-parent", false, '\0'),
        ("files", false, '\0'),
        ("no-heading", false, '\0'),
        ("heading", false, '\0'),
        ("sort", true, '\0'),
        ("sort-files", false, '\0'),
        ("no-messages", false, '\0'),
        ("no-config", false, '\0'),
        ("trim", false, '\0'),
        ("column", false, '\0'),
        ("vimgrep", false, '\0'),
        ("json", false, '\0'),
    ],
    numbers: false,
    permute: true,
};

/// `rg [OPTIONS] PATTERN [PATH…]`, `rg --files [PATH…]`.
pub fn rg(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let args: Vec<String> = args
        .iter()
        .filter(|a| !(a.starts_with("--color") || a.starts_with("--colour")))
        .cloned()
        .collect();
    let (o, mut ops) = match opts::parse(&SPEC, &args) {
        Ok(x) => x,
        Err(m) => {
            io.err.say(format!("rg: {m}"));
            return Ok(2);
        }
    };
    let mut c = Conf { label: "<stdin>".into(), group_sep: Some("--".into()), ..Conf::default() };
    c.count_skip_zero = true;
    c.binary_quiet = true;
    c.filename = None;
    let mut dialect = Dialect::Rust;
    let mut patterns: Option<Vec<String>> = None;
    let (mut smart, mut hidden, mut no_ignore, mut follow, mut list_files, mut no_msgs) = (false, false, false, false, false, false);
    let mut unrestricted = 0;
    let mut max_depth = None;
    let mut globs: Vec<(String, bool)> = Vec::new();
    let mut types: Vec<(String, bool)> = Vec::new();
    let mut vimgrep = false;
    for x in o {
        let r: Result<(), String> = (|| {
            match x {
                Opt::Short('n', _) => c.number = true,
                Opt::Short('N', _) => c.number = false,
                Opt::Short('i', _) => {
                    c.ignore_case = true;
                    smart = false;
                }
                Opt::Short('S', _) => smart = true,
                Opt::Short('s', _) => {
                    c.ignore_case = false;
                    smart = false;
                }
                Opt::Short('w', _) => c.word = true,
                Opt::Short('x', _) => c.line = true,
                Opt::Short('F', _) => dialect = Dialect::Fixed,
                Opt::Short('v', _) => c.invert = true,
                Opt::Short('c', _) => c.count = true,
                Opt::Short('l', _) => c.list = true,
                Opt::Long("files-without-match", _) => c.list_none = true,
                Opt::Short('o', _) => c.only = true,
                Opt::Short('L', _) => follow = true,
                Opt::Short('H', _) => c.filename = Some(true),
                Opt::Short('I', _) => c.filename = Some(false),
                Opt::Short('q', _) => c.quiet = true,
                Opt::Short('a', _) => c.text = true,
                Opt::Short('0', _) => c.null = true,
                Opt::Short('.', _) => hidden = true,
                Opt::Short('u', _) => unrestricted += 1,
                Opt::Short('P' | 'U', _) => {}
                Opt::Short('e', Some(v)) => patterns.get_or_insert_with(Vec::new).push(v),
                Opt::Short('f', Some(v)) => {
                    let data = ctx.read("rg", &v, &io.stdin, &io.err).ok_or_else(String::new)?;
                    patterns.get_or_insert_with(Vec::new).extend(lines(&data).map(|l| String::from_utf8_lossy(l).into_owned()));
                }
                Opt::Short(k @ ('A' | 'B' | 'C'), Some(v)) => {
                    let n: usize = v.parse().map_err(|_| format!("invalid value '{v}' for context"))?;
                    if k != 'B' {
                        c.after = n;
                    }
                    if k != 'A' {
                        c.before = n;
                    }
                    c.context = true;
                }
                Opt::Short('m', Some(v)) => c.max = Some(v.parse().map_err(|_| format!("invalid value '{v}' for --max-count"))?),
                Opt::Short('g', Some(v)) => globs.push((v, false)),
                Opt::Long("iglob", Some(v)) => globs.push((v, true)),
                Opt::Short('t', Some(v)) => types.push((v, true)),
                Opt::Short('T', Some(v)) => types.push((v, false)),
                Opt::Short('d', Some(v)) => max_depth = Some(v.parse::<usize>().map_err(|_| format!("invalid value '{v}' for --max-depth"))?),
                Opt::Long("no-ignore" | "no-ignore-vcs", _) => no_ignore = true,
                Opt::Long("files", _) => list_files = true,
                Opt::Long("no-messages", _) => no_msgs = true,
                Opt::Long("vimgrep" | "column", _) => vimgrep = true,
                Opt::Long("json", _) => return Err("--json is not supported by run_command's rg".into()),
                _ => {}
            }
            Ok(())
        })();
        if let Err(m) = r {
            if !m.is_empty() {
                io.err.say(format!("rg: {m}"));
            }
            return Ok(2);
        }
    }
    if vimgrep {
        io.err.say("rg: --vimgrep and --column are not supported by run_command's rg; use -n");
        return Ok(2);
    }
    if unrestricted >= 1 {
        no_ignore = true;
    }
    if unrestricted >= 2 {
        hidden = true;
    }
    if unrestricted >= 3 {
        c.text = true;
    }
    c.silent = no_msgs;
    let patterns = if list_files {
        Vec::new()
    } else {
        match patterns {
            Some(p) => p,
            None => {
                if ops.is_empty() {
                    io.err.say("rg: no pattern given (usage: rg [OPTIONS] PATTERN [PATH ...])");
                    return Ok(2);
                }
                vec![ops.remove(0)]
            }
        }
    };
    if smart && !patterns.iter().any(|p| p.chars().any(char::is_uppercase)) {
        c.ignore_case = true;
    }
    // The file filters: types, then globs.
    let mut tb = ignore::types::TypesBuilder::new();
    tb.add_defaults();
    for (t, yes) in &types {
        if *yes {
            tb.select(t);
        } else {
            tb.negate(t);
        }
    }
    let file_types = match tb.build() {
        Ok(t) => t,
        Err(e) => {
            io.err.say(format!("rg: {e}"));
            return Ok(2);
        }
    };
    let no_paths = ops.is_empty();
    if no_paths {
        ops.push(".".into());
    }
    let matcher = if list_files {
        None
    } else {
        match compile(&patterns, dialect, &c) {
            Ok(m) => Some(m),
            Err(msg) => {
                io.err.say(format!("rg: regex parse error: {msg}"));
                return Ok(2);
            }
        }
    };
    let mut found_files: Vec<(String, String, bool)> = Vec::new(); // (abs, shown, explicit)
    let mut error = false;
    let mut any_dir = false;
    for op in &ops {
        let Some(abs) = ctx.resolve("rg", op, &io.err) else {
            error = true;
            continue;
        };
        let meta = match std::fs::metadata(&abs) {
            Ok(m) => m,
            Err(e) => {
                let m = ctx.io_msg("rg", op, &e);
                if !no_msgs {
                    io.err.say(m.replace("No such file or directory", "No such file or directory (os error 2)"));
                }
                error = true;
                continue;
            }
        };
        if !meta.is_dir() {
            found_files.push((abs, op.clone(), true));
            continue;
        }
        any_dir = true;
        let mut ob = ignore::overrides::OverrideBuilder::new(&abs);
        for (g, fold) in &globs {
            if *fold {
                let _ = ob.case_insensitive(true);
            }
            if let Err(e) = ob.add(g) {
                io.err.say(format!("rg: {e}"));
                return Ok(2);
            }
        }
        let overrides = match ob.build() {
            Ok(o) => o,
            Err(e) => {
                io.err.say(format!("rg: {e}"));
                return Ok(2);
            }
        };
        let mut wb = ignore::WalkBuilder::new(&abs);
        wb.hidden(!hidden)
            .ignore(!no_ignore)
            .git_ignore(!no_ignore)
            .git_exclude(!no_ignore)
            .git_global(false)
            .parents(!no_ignore)
            .follow_links(follow)
            .max_depth(max_depth)
            .types(file_types.clone())
            .overrides(overrides)
            .sort_by_file_path(|a, b| a.cmp(b));
        for item in wb.build() {
            let item = match item {
                Ok(i) => i,
                Err(e) => {
                    if !no_msgs {
                        io.err.say(format!("rg: {e}"));
                    }
                    error = true;
                    continue;
                }
            };
            if !item.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let p = item.path().to_string_lossy().into_owned();
            let rel = p[abs.len()..].trim_start_matches('/');
            let shown = if no_paths { rel.to_string() } else { crate::ctx::join_shown(op, rel) };
            found_files.push((p, shown, false));
        }
    }
    if list_files {
        let mut out = Vec::new();
        for (_, shown, _) in &found_files {
            out.extend_from_slice(shown.as_bytes());
            out.push(if c.null { 0 } else { b'\n' });
        }
        io.out.write_all(&out)?;
        return Ok(if error { 2 } else if found_files.is_empty() { 1 } else { 0 });
    }
    let multi = any_dir || ops.len() > 1;
    let mut g = Grep { c, m: matcher.unwrap(), any_selected: false, error, printed_any: false, stop_all: false, multi };
    let mut data = Vec::new();
    for (abs, shown, explicit) in found_files {
        if g.stop_all {
            break;
        }
        match crate::ctx::read_into(&abs, &mut data) {
            Ok(()) => {}
            Err(e) => {
                let m = ctx.io_msg("rg", &shown, &e);
                g.say_err(io, m);
                continue;
            }
        };
        if !g.c.text && data.contains(&0) && !explicit {
            continue;
        }
        let text_before = g.c.text;
        g.c.text = true;
        g.search(io, &shown, &data)?;
        g.c.text = text_before;
    }
    Ok(if g.error && !g.any_selected {
        2
    } else if g.any_selected {
        0
    } else {
        1
    })
}
