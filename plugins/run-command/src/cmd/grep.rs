//! `grep` as GNU grep 3 behaves with `LC_ALL=C.UTF-8`: basic, extended and
//! fixed patterns, recursion with `--include`/`--exclude`/`--exclude-dir`,
//! context with `--` separators, `-o`, `-c`, `-l`, `-L`, `-m`, `-q`, binary
//! files reported on standard error, exit status 0/1/2.

use crate::ctx::{Ctx, Kind, Step};
use crate::io::{lines, Io};
use crate::opts::{self, Opt, Spec};
use crate::pattern::fnmatch;
use crate::pattern::posix::{translate, Dialect};
use regex::bytes::{Regex, RegexBuilder};
use std::io::{self, Write};

/// `grep`.
pub fn grep(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    main(ctx, args, io, Dialect::Basic)
}

/// `egrep` (`grep -E`).
pub fn egrep(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    main(ctx, args, io, Dialect::Extended)
}

/// `fgrep` (`grep -F`).
pub fn fgrep(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    main(ctx, args, io, Dialect::Fixed)
}

const SPEC: Spec = Spec {
    flags: "rRnilLcvwxoEFGPhHqsIaybUZz",
    values: "efABCmd",
    long: &[
        ("recursive", false, 'r'),
        ("dereference-recursive", false, 'R'),
        ("line-number", false, 'n'),
        ("ignore-case", false, 'i'),
        ("no-ignore-case", false, '\0'),
        ("files-with-matches", false, 'l'),
        ("files-without-match", false, 'L'),
        ("count", false, 'c'),
        ("invert-match", false, 'v'),
        ("word-regexp", false, 'w'),
        ("line-regexp", false, 'x'),
        ("only-matching", false, 'o'),
        ("extended-regexp", false, 'E'),
        ("fixed-strings", false, 'F'),
        ("basic-regexp", false, 'G'),
        ("perl-regexp", false, 'P'),
        ("no-filename", false, 'h'),
        ("with-filename", false, 'H'),
        ("quiet", false, 'q'),
        ("silent", false, 'q'),
        ("no-messages", false, 's'),
        ("text", false, 'a'),
        ("byte-offset", false, 'b'),
        ("null", false, 'Z'),
        ("regexp", true, 'e'),
        ("file", true, 'f'),
        ("after-context", true, 'A'),
        ("before-context", true, 'B'),
        ("context", true, 'C'),
        ("max-count", true, 'm'),
        ("directories", true, 'd'),
        ("include", true, '\0'),
        ("exclude", true, '\0'),
        ("exclude-dir", true, '\0'),
        ("binary-files", true, '\0'),
        ("label", true, '\0'),
        ("line-buffered", false, '\0'),
        ("no-group-separator", false, '\0'),
        ("group-separator", true, '\0'),
    ],
    numbers: true,
    permute: true,
};

#[derive(Default)]
pub(super) struct Conf {
    pub recursive: bool,
    pub deref: bool,
    pub number: bool,
    pub ignore_case: bool,
    pub list: bool,
    pub list_none: bool,
    pub count: bool,
    pub invert: bool,
    pub word: bool,
    pub line: bool,
    pub only: bool,
    pub filename: Option<bool>,
    pub quiet: bool,
    pub silent: bool,
    pub text: bool,
    pub skip_binary: bool,
    pub byte_offset: bool,
    pub null: bool,
    pub after: usize,
    pub before: usize,
    pub context: bool,
    pub max: Option<u64>,
    /// (glob, include?) in order; `--include` and `--exclude`.
    pub file_globs: Vec<(String, bool)>,
    pub dir_excludes: Vec<String>,
    pub label: String,
    pub group_sep: Option<String>,
    pub skip_dirs: bool,
    /// rg: `-c` lists only files with matches.
    pub count_skip_zero: bool,
    /// rg: binary files found while walking are skipped without a word.
    pub binary_quiet: bool,
}

pub(super) struct Matcher {
    re: Regex,
    /// The same pattern anchored at both ends, for `-w` retries.
    full: Option<Regex>,
    pub word: bool,
    empty_matches_all: bool,
}

impl Matcher {
    /// The first acceptable match in `line` at or after `from`.
    fn find(&self, line: &[u8], from: usize) -> Option<(usize, usize)> {
        if !self.word {
            return self.re.find_at(line, from).map(|m| (m.start(), m.end()));
        }
        let mut pos = from;
        while pos <= line.len() {
            let m = self.re.find_at(line, pos)?;
            let (s, e) = (m.start(), m.end());
            if word_ok(line, s, e) {
                return Some((s, e));
            }
            // A shorter match at the same start may fit the word rule.
            if let Some(full) = &self.full {
                let mut end = e;
                while end > s {
                    end -= 1;
                    if end > s && word_ok(line, s, end) && full.is_match(&line[s..end]) {
                        return Some((s, end));
                    }
                }
            }
            pos = next_char(line, s);
        }
        None
    }

    fn is_match(&self, line: &[u8]) -> bool {
        if self.empty_matches_all && !self.word {
            return true;
        }
        self.find(line, 0).is_some()
    }
}

fn next_char(line: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < line.len() && (line[j] & 0xC0) == 0x80 {
        j += 1;
    }
    j
}

fn is_word_byte_at(line: &[u8], i: usize, before: bool) -> bool {
    // Decode the character just before `i` (before) or at `i`.
    let ch = if before {
        let mut k = i;
        while k > 0 {
            k -= 1;
            if (line[k] & 0xC0) != 0x80 {
                break;
            }
        }
        std::str::from_utf8(&line[k..i]).ok().and_then(|s| s.chars().next())
    } else {
        let end = next_char(line, i).min(line.len());
        std::str::from_utf8(&line[i..end]).ok().and_then(|s| s.chars().next())
    };
    ch.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

fn word_ok(line: &[u8], s: usize, e: usize) -> bool {
    (s == 0 || !is_word_byte_at(line, s, true)) && (e >= line.len() || !is_word_byte_at(line, e, false))
}

/// What a grep command line asks for: the options, the compiled patterns
/// and the file operands.
pub(super) struct Parsed {
    pub c: Conf,
    pub m: Matcher,
    pub ops: Vec<String>,
}

/// Parses grep's options and patterns (shared with `git grep`); on a usage
/// error the message is printed and the exit status returned.
pub(super) fn parse(ctx: &mut Ctx, args: &[String], io: &mut Io, mut dialect: Dialect) -> Result<Parsed, i32> {
    let args: Vec<String> = args
        .iter()
        .filter(|a| !(a.starts_with("--color") || a.starts_with("--colour")))
        .cloned()
        .collect();
    let (o, mut ops) = match opts::parse(&SPEC, &args) {
        Ok(x) => x,
        Err(m) => {
            io.err.say(format!("grep: {m}"));
            io.err.say("Usage: grep [OPTION]... PATTERNS [FILE]...");
            io.err.say("Try 'grep --help' for more information.");
            return Err(2);
        }
    };
    let mut c = Conf { label: "(standard input)".into(), group_sep: Some("--".into()), ..Conf::default() };
    let mut patterns: Option<Vec<String>> = None;
    let num = |v: &str, what: &str| -> Result<usize, String> {
        v.parse::<usize>().map_err(|_| format!("{v}: invalid {what} argument"))
    };
    for x in o {
        let r: Result<(), String> = (|| {
            match x {
                Opt::Short('r', _) => c.recursive = true,
                Opt::Short('R', _) => {
                    c.recursive = true;
                    c.deref = true;
                }
                Opt::Short('n', _) => c.number = true,
                Opt::Short('i' | 'y', _) => c.ignore_case = true,
                Opt::Long("no-ignore-case", _) => c.ignore_case = false,
                Opt::Short('l', _) => c.list = true,
                Opt::Short('L', _) => c.list_none = true,
                Opt::Short('c', _) => c.count = true,
                Opt::Short('v', _) => c.invert = true,
                Opt::Short('w', _) => c.word = true,
                Opt::Short('x', _) => c.line = true,
                Opt::Short('o', _) => c.only = true,
                Opt::Short('E', _) => dialect = Dialect::Extended,
                Opt::Short('F', _) => dialect = Dialect::Fixed,
                Opt::Short('G', _) => dialect = Dialect::Basic,
                Opt::Short('P', _) => dialect = Dialect::Rust,
                Opt::Short('h', _) => c.filename = Some(false),
                Opt::Short('H', _) => c.filename = Some(true),
                Opt::Short('q', _) => c.quiet = true,
                Opt::Short('s', _) => c.silent = true,
                Opt::Short('a', _) => c.text = true,
                Opt::Short('I', _) => c.skip_binary = true,
                Opt::Short('b', _) => c.byte_offset = true,
                Opt::Short('Z', _) => c.null = true,
                Opt::Short('U' | 'z', _) => {}
                Opt::Short('e', Some(v)) => patterns.get_or_insert_with(Vec::new).extend(v.split('\n').map(String::from)),
                Opt::Short('f', Some(v)) => {
                    let data = ctx.read("grep", &v, &io.stdin, &io.err).ok_or_else(String::new)?;
                    patterns.get_or_insert_with(Vec::new).extend(lines(&data).map(|l| String::from_utf8_lossy(l).into_owned()));
                }
                Opt::Short('A', Some(v)) => {
                    c.after = num(&v, "context length")?;
                    c.context = true;
                }
                Opt::Short('B', Some(v)) => {
                    c.before = num(&v, "context length")?;
                    c.context = true;
                }
                Opt::Short('C', Some(v)) | Opt::Num(v) => {
                    let n = num(&v, "context length")?;
                    c.after = n;
                    c.before = n;
                    c.context = true;
                }
                Opt::Short('m', Some(v)) => c.max = Some(num(&v, "max count")? as u64),
                Opt::Short('d', Some(v)) => match v.as_str() {
                    "recurse" => c.recursive = true,
                    "skip" => c.skip_dirs = true,
                    "read" => {}
                    _ => return Err(format!("invalid argument '{v}' for '--directories'")),
                },
                Opt::Long("include", Some(v)) => c.file_globs.push((v, true)),
                Opt::Long("exclude", Some(v)) => c.file_globs.push((v, false)),
                Opt::Long("exclude-dir", Some(v)) => c.dir_excludes.push(v),
                Opt::Long("binary-files", Some(v)) => match v.as_str() {
                    "text" => c.text = true,
                    "without-match" => c.skip_binary = true,
                    "binary" => {}
                    _ => return Err(format!("invalid argument '{v}' for '--binary-files'")),
                },
                Opt::Long("label", Some(v)) => c.label = v,
                Opt::Long("no-group-separator", _) => c.group_sep = None,
                Opt::Long("group-separator", v) => c.group_sep = v,
                _ => {}
            }
            Ok(())
        })();
        if let Err(m) = r {
            if !m.is_empty() {
                io.err.say(format!("grep: {m}"));
            }
            return Err(2);
        }
    }
    let patterns = match patterns {
        Some(p) => p,
        None => {
            if ops.is_empty() {
                io.err.say("Usage: grep [OPTION]... PATTERNS [FILE]...");
                io.err.say("Try 'grep --help' for more information.");
                return Err(2);
            }
            ops.remove(0).split('\n').map(String::from).collect()
        }
    };
    match compile(&patterns, dialect, &c) {
        Ok(m) => Ok(Parsed { c, m, ops }),
        Err(msg) => {
            io.err.say(format!("grep: {msg}"));
            Err(2)
        }
    }
}

fn main(ctx: &mut Ctx, args: &[String], io: &mut Io, dialect: Dialect) -> io::Result<i32> {
    let Parsed { c, m: matcher, mut ops } = match parse(ctx, args, io, dialect) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let implicit_dot = ops.is_empty() && c.recursive;
    if ops.is_empty() {
        ops.push(if c.recursive { ".".into() } else { "-".into() });
    }
    let mut g = Grep {
        c,
        m: matcher,
        any_selected: false,
        error: false,
        printed_any: false,
        stop_all: false,
        multi: ops.len() > 1,
    };
    for op in &ops {
        if g.stop_all {
            break;
        }
        g.operand(ctx, io, op, implicit_dot)?;
    }
    Ok(if g.error && !(g.c.quiet && g.any_selected) {
        2
    } else if g.any_selected {
        0
    } else {
        1
    })
}

pub(super) fn compile(patterns: &[String], dialect: Dialect, c: &Conf) -> Result<Matcher, String> {
    let mut parts = Vec::new();
    for p in patterns {
        parts.push(translate(p, dialect)?);
    }
    let empty_matches_all = patterns.iter().any(|p| p.is_empty());
    let alt = parts.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
    let body = if c.line { format!("^(?:{alt})$") } else { alt.clone() };
    let build = |s: &str| {
        RegexBuilder::new(s)
            .case_insensitive(c.ignore_case)
            .size_limit(64 << 20)
            .build()
            .map_err(|e| match e {
                regex::Error::Syntax(m) => format!("invalid pattern: {}", m.lines().last().unwrap_or("")),
                other => other.to_string(),
            })
    };
    let re = build(&body)?;
    let full = if c.word { Some(build(&format!("^(?:{alt})$"))?) } else { None };
    Ok(Matcher { re, full, word: c.word && !c.line, empty_matches_all })
}

pub(super) struct Grep {
    pub c: Conf,
    pub m: Matcher,
    pub any_selected: bool,
    pub error: bool,
    pub printed_any: bool,
    pub stop_all: bool,
    pub multi: bool,
}

impl Grep {
    pub(super) fn say_err(&mut self, io: &Io, msg: String) {
        self.error = true;
        if !self.c.silent {
            io.err.say(msg);
        }
    }

    fn file_wanted(&self, name: &str, command_line: bool) -> bool {
        if self.c.file_globs.is_empty() {
            return true;
        }
        let base = name.rsplit('/').next().unwrap_or(name);
        let hit = |g: &str| {
            fnmatch::matches(g, base, false)
                || (command_line && (fnmatch::matches(g, name, false) || suffix_match(g, name)))
        };
        let mut verdict = None;
        for (g, include) in &self.c.file_globs {
            if hit(g) {
                verdict = Some(*include);
            }
        }
        verdict.unwrap_or(!self.c.file_globs[0].1)
    }

    fn operand(&mut self, ctx: &mut Ctx, io: &mut Io, op: &str, implicit_dot: bool) -> io::Result<()> {
        if op == "-" {
            let data = io.stdin.clone();
            let label = self.c.label.clone();
            return self.search(io, &label, &data);
        }
        let Some(abs) = ctx.resolve("grep", op, &io.err) else {
            self.error = true;
            return Ok(());
        };
        let meta = match std::fs::metadata(&abs) {
            Ok(m) => m,
            Err(e) => {
                // A dangling symlink or a refusal.
                let m = ctx.io_msg("grep", op, &e);
                self.say_err(io, m);
                return Ok(());
            }
        };
        if meta.is_dir() {
            if self.c.skip_dirs {
                return Ok(());
            }
            if !self.c.recursive {
                self.say_err(io, format!("grep: {op}: Is a directory"));
                return Ok(());
            }
            if self.c.filename.is_none() {
                self.multi = true;
            }
            let follow = self.c.deref;
            let mut files: Vec<(String, String)> = Vec::new();
            let excl = self.c.dir_excludes.clone();
            let mut errors: Vec<String> = Vec::new();
            ctx.walk(
                &abs,
                op,
                follow,
                false,
                &mut |_, e| {
                    if e.depth == 0 {
                        return Ok(Step::Into);
                    }
                    match e.kind {
                        Kind::Dir
                            if excl.iter().any(|g| fnmatch::matches(g, &e.name, false)) => {
                                return Ok(Step::Prune);
                            }
                        Kind::File => {
                            let shown = if implicit_dot {
                                e.shown.strip_prefix("./").unwrap_or(&e.shown).to_string()
                            } else {
                                e.shown.clone()
                            };
                            files.push((e.abs.clone(), shown));
                        }
                        Kind::Link if follow
                            && std::fs::metadata(&e.abs).is_ok_and(|m| m.is_file()) => {
                                files.push((e.abs.clone(), e.shown.clone()));
                            }
                        _ => {}
                    }
                    Ok(Step::Into)
                },
                &mut |ctx, shown, err| errors.push(ctx.io_msg("grep", shown, err)),
            )?;
            for m in errors {
                self.say_err(io, m);
            }
            let mut data = Vec::new();
            for (abs, shown) in files {
                if self.stop_all {
                    break;
                }
                if !self.file_wanted(&shown, false) {
                    continue;
                }
                match crate::ctx::read_into(&abs, &mut data) {
                    Ok(()) => self.search(io, &shown, &data)?,
                    Err(e) => {
                        let m = ctx.io_msg("grep", &shown, &e);
                        self.say_err(io, m);
                    }
                }
            }
            return Ok(());
        }
        if !meta.is_file() {
            return Ok(());
        }
        if !self.file_wanted(op, true) {
            return Ok(());
        }
        match std::fs::read(&abs) {
            Ok(data) => self.search(io, op, &data),
            Err(e) => {
                let m = ctx.io_msg("grep", op, &e);
                self.say_err(io, m);
                Ok(())
            }
        }
    }

    pub(super) fn search(&mut self, io: &mut Io, name: &str, data: &[u8]) -> io::Result<()> {
        let c = &self.c;
        let with_name = c.filename.unwrap_or(self.multi);
        let binary = !c.text && data.contains(&0);
        if binary && c.skip_binary {
            return Ok(());
        }
        let mut out: Vec<u8> = Vec::new();
        // Lines are visited one at a time (a pipe may hold millions); the
        // last `before` unprinted ones wait in a ring for leading context.
        let mut ring: std::collections::VecDeque<(usize, &[u8], usize)> = std::collections::VecDeque::new();
        let mut off = 0usize;
        let mut selected = 0u64;
        let mut last_printed: Option<usize> = None;
        let mut after_left = 0usize;
        let mut stop_after = false;
        let mut binary_hit = false;
        let quiet_out = c.quiet || c.list || c.list_none || c.count;
        let prefix = |out: &mut Vec<u8>, idx: usize, sep: u8, off: usize| {
            if with_name {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(if c.null { b"\0" } else if sep == b':' { b":" } else { b"-" });
            }
            if c.number {
                out.extend_from_slice(format!("{}", idx + 1).as_bytes());
                out.push(sep);
            }
            if c.byte_offset {
                out.extend_from_slice(format!("{off}").as_bytes());
                out.push(sep);
            }
        };
        let separator = |out: &mut Vec<u8>, idx: usize, last: Option<usize>, printed_any: &mut bool| {
            if c.context && !c.only {
                let gap = match last {
                    Some(lp) => idx > lp + 1,
                    None => *printed_any,
                };
                if gap {
                    if let Some(s) = &c.group_sep {
                        out.extend_from_slice(s.as_bytes());
                        out.push(b'\n');
                    }
                }
            }
            *printed_any = true;
        };
        let mut printed_any = self.printed_any;
        for (idx, line) in lines(data).enumerate() {
            let line_off = off;
            off += line.len() + 1;
            if stop_after && after_left == 0 {
                break;
            }
            let hit = self.m.is_match(line) != c.invert;
            if hit && !stop_after {
                selected += 1;
                if !c.list_none {
                    self.any_selected = true;
                }
                if c.quiet {
                    self.stop_all = true;
                    return Ok(());
                }
                if c.list || c.list_none {
                    break;
                }
                if c.max.is_some_and(|m| selected >= m) {
                    stop_after = true;
                }
                if quiet_out {
                    continue;
                }
                if binary || (!c.text && std::str::from_utf8(line).is_err()) {
                    binary_hit = true;
                    break;
                }
                // Leading context.
                if !c.only {
                    for (k, l, lo) in ring.drain(..) {
                        if last_printed.is_some_and(|lp| k <= lp) {
                            continue;
                        }
                        separator(&mut out, k, last_printed, &mut printed_any);
                        prefix(&mut out, k, b'-', lo);
                        out.extend_from_slice(l);
                        out.push(b'\n');
                        last_printed = Some(k);
                    }
                }
                ring.clear();
                if c.only {
                    if !c.invert {
                        let mut pos = 0;
                        while pos <= line.len() {
                            let Some((s, e)) = self.m.find(line, pos) else { break };
                            if e > s {
                                separator(&mut out, idx, last_printed, &mut printed_any);
                                prefix(&mut out, idx, b':', line_off + s);
                                out.extend_from_slice(&line[s..e]);
                                out.push(b'\n');
                                last_printed = Some(idx);
                                pos = e;
                            } else {
                                pos = next_char(line, s);
                            }
                        }
                    }
                } else {
                    separator(&mut out, idx, last_printed, &mut printed_any);
                    prefix(&mut out, idx, b':', line_off);
                    out.extend_from_slice(line);
                    out.push(b'\n');
                    last_printed = Some(idx);
                }
                after_left = c.after;
            } else if after_left > 0 && !quiet_out {
                after_left -= 1;
                if !c.only {
                    separator(&mut out, idx, last_printed, &mut printed_any);
                    prefix(&mut out, idx, b'-', line_off);
                    out.extend_from_slice(line);
                    out.push(b'\n');
                    last_printed = Some(idx);
                }
            } else if c.before > 0 && !quiet_out {
                if ring.len() == c.before {
                    ring.pop_front();
                }
                ring.push_back((idx, line, line_off));
            }
            if out.len() > 1 << 16 {
                io.out.write_all(&out)?;
                out.clear();
            }
        }
        self.printed_any = printed_any;
        if c.count && !(c.count_skip_zero && selected == 0) {
            if with_name {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(if c.null { b"\0" } else { b":" });
            }
            out.extend_from_slice(format!("{selected}\n").as_bytes());
        }
        if c.list && selected > 0 {
            out.extend_from_slice(name.as_bytes());
            out.push(if c.null { 0 } else { b'\n' });
        }
        if c.list_none && selected == 0 {
            out.extend_from_slice(name.as_bytes());
            out.push(if c.null { 0 } else { b'\n' });
        }
        io.out.write_all(&out)?;
        if binary_hit && !c.binary_quiet {
            io.err.say(format!("grep: {name}: binary file matches"));
        }
        // GNU grep 3.5+: -L succeeds when it lists a file.
        if c.list_none && selected == 0 {
            self.any_selected = true;
        }
        Ok(())
    }
}

/// GNU's "name suffix" rule for command-line files: the whole name, or a
/// part after a `/`.
fn suffix_match(glob: &str, name: &str) -> bool {
    name.match_indices('/').any(|(i, _)| fnmatch::matches(glob, &name[i + 1..], false))
}
