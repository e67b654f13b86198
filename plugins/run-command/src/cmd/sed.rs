//! `sed [-n] [-E|-r] [-s] [-i[SUFFIX]] [-e SCRIPT]… [SCRIPT] [FILE…]` with the
//! commands agents use: `s/RE/REPL/[gpiN]`, `p`, `d`, `q`, `=`, `{ … }`, and
//! addresses `N`, `$`, `/RE/`, `A,B`, `A!`. `-i` writes only where the
//! mount is read-write.

use super::usage;
use crate::ctx::Ctx;
use crate::io::Io;
use crate::pattern::posix::{translate, Dialect};
use regex::bytes::{Regex, RegexBuilder};
use std::io::{self, Write};

#[derive(Debug, Clone)]
enum Addr {
    Line(usize),
    Last,
    Re(Regex),
}

#[derive(Debug, Clone)]
enum Op {
    Sub { re: Regex, repl: Vec<Repl>, global: bool, nth: usize, print: bool },
    Print,
    Delete,
    Quit,
    LineNo,
    Block(Vec<Cmd>),
}

#[derive(Debug, Clone)]
enum Repl {
    Lit(Vec<u8>),
    Group(usize),
}

#[derive(Debug, Clone)]
struct Cmd {
    a1: Option<Addr>,
    a2: Option<Addr>,
    negate: bool,
    op: Op,
    /// Range state: inside the range since this line.
    active: bool,
}

struct P<'a> {
    s: &'a [char],
    i: usize,
    ere: bool,
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }

    fn compile(&self, raw: &str, fold: bool) -> Result<Regex, String> {
        let t = translate(raw, if self.ere { Dialect::Extended } else { Dialect::Basic })?;
        RegexBuilder::new(&t).case_insensitive(fold).build().map_err(|e| e.to_string())
    }

    /// Text up to an unescaped `delim` (consumed); `\delim` becomes `delim`.
    fn until(&mut self, delim: char) -> Result<String, String> {
        let mut out = String::new();
        let mut in_class = false;
        loop {
            let Some(c) = self.peek() else {
                return Err("unterminated `s' command".to_string());
            };
            self.i += 1;
            if c == '\\' {
                let Some(n) = self.peek() else { return Err("unterminated `s' command".into()) };
                self.i += 1;
                if n == delim && delim != '\n' {
                    out.push(n);
                } else if n == 'n' {
                    out.push_str("\\n");
                } else {
                    out.push('\\');
                    out.push(n);
                }
                continue;
            }
            if c == '[' && !in_class {
                in_class = true;
            } else if c == ']' && in_class {
                in_class = false;
            }
            if c == delim && !in_class {
                return Ok(out);
            }
            out.push(c);
        }
    }

    fn addr(&mut self) -> Result<Option<Addr>, String> {
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                let start = self.i;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let n: String = self.s[start..self.i].iter().collect();
                Ok(Some(Addr::Line(n.parse().map_err(|_| "invalid line number")?)))
            }
            Some('$') => {
                self.i += 1;
                Ok(Some(Addr::Last))
            }
            Some('/') => {
                self.i += 1;
                let raw = self.until('/')?;
                let fold = self.peek() == Some('I');
                if fold {
                    self.i += 1;
                }
                Ok(Some(Addr::Re(self.compile(&raw, fold)?)))
            }
            Some('\\') => {
                self.i += 1;
                let d = self.peek().ok_or("unexpected end")?;
                self.i += 1;
                let raw = self.until(d)?;
                Ok(Some(Addr::Re(self.compile(&raw, false)?)))
            }
            _ => Ok(None),
        }
    }

    fn cmds(&mut self, nested: bool) -> Result<Vec<Cmd>, String> {
        let mut out = Vec::new();
        loop {
            while matches!(self.peek(), Some(' ' | '\t' | '\n' | ';')) {
                self.i += 1;
            }
            match self.peek() {
                None if nested => return Err("unmatched `{'".into()),
                None => return Ok(out),
                Some('}') if nested => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('}') => return Err("unexpected `}'".into()),
                _ => {}
            }
            let a1 = self.addr()?;
            let mut a2 = None;
            if a1.is_some() && self.peek() == Some(',') {
                self.i += 1;
                a2 = Some(self.addr()?.ok_or("unexpected `,'")?);
            }
            self.skip_ws();
            let mut negate = false;
            while self.peek() == Some('!') {
                negate = true;
                self.i += 1;
                self.skip_ws();
            }
            let Some(c) = self.peek() else { return Err("missing command".into()) };
            self.i += 1;
            let op = match c {
                'p' => Op::Print,
                'd' => Op::Delete,
                'q' => Op::Quit,
                '=' => Op::LineNo,
                '{' => Op::Block(self.cmds(true)?),
                's' => {
                    let d = self.peek().ok_or("unterminated `s' command")?;
                    if d == '\\' || d == '\n' {
                        return Err("unterminated `s' command".into());
                    }
                    self.i += 1;
                    let raw = self.until(d)?;
                    let rep = self.until(d)?;
                    let (mut global, mut nth, mut print, mut fold) = (false, 1, false, false);
                    while let Some(f) = self.peek() {
                        match f {
                            'g' => global = true,
                            'p' => print = true,
                            'i' | 'I' => fold = true,
                            '0'..='9' => {
                                let start = self.i;
                                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                                    self.i += 1;
                                }
                                let n: String = self.s[start..self.i].iter().collect();
                                nth = n.parse().map_err(|_| "invalid number")?;
                                if nth == 0 {
                                    return Err("number option to `s' command may not be zero".into());
                                }
                                continue;
                            }
                            _ => break,
                        }
                        self.i += 1;
                    }
                    let re = self.compile(&raw, fold)?;
                    Op::Sub { re, repl: repl(&rep), global, nth, print }
                }
                other => {
                    return Err(format!(
                        "unknown command: `{other}' (run_command's sed has s, p, d, q, =, {{ }})"
                    ))
                }
            };
            self.skip_ws();
            match self.peek() {
                None | Some(';' | '\n' | '}') => {}
                Some(c) => return Err(format!("extra characters after command ({c})")),
            }
            out.push(Cmd { a1, a2, negate, op, active: false });
        }
    }
}

fn repl(s: &str) -> Vec<Repl> {
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut buf = [0u8; 4];
    while i < c.len() {
        match c[i] {
            '\\' if i + 1 < c.len() => {
                let n = c[i + 1];
                i += 2;
                match n {
                    '0'..='9' => {
                        if !lit.is_empty() {
                            out.push(Repl::Lit(std::mem::take(&mut lit)));
                        }
                        out.push(Repl::Group(n as usize - '0' as usize));
                    }
                    'n' => lit.push(b'\n'),
                    't' => lit.push(b'\t'),
                    other => lit.extend_from_slice(other.encode_utf8(&mut buf).as_bytes()),
                }
            }
            '&' => {
                if !lit.is_empty() {
                    out.push(Repl::Lit(std::mem::take(&mut lit)));
                }
                out.push(Repl::Group(0));
                i += 1;
            }
            ch => {
                lit.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 1;
            }
        }
    }
    if !lit.is_empty() {
        out.push(Repl::Lit(lit));
    }
    out
}

struct State {
    quiet: bool,
    quit: bool,
}

fn matches(a: &Addr, line: &[u8], n: usize, last: bool) -> bool {
    match a {
        Addr::Line(k) => n == *k,
        Addr::Last => last,
        Addr::Re(re) => re.is_match(line),
    }
}

fn selected(c: &mut Cmd, line: &[u8], n: usize, last: bool) -> bool {
    let hit = match (&c.a1, &c.a2) {
        (None, _) => true,
        (Some(a), None) => matches(a, line, n, last),
        (Some(a1), Some(a2)) => {
            if c.active {
                let end = match a2 {
                    Addr::Line(k) => n >= *k,
                    other => matches(other, line, n, last),
                };
                if end {
                    c.active = false;
                }
                true
            } else if matches(a1, line, n, last) {
                // A line-number end at or before this line makes a one-line range.
                c.active = !matches!(a2, Addr::Line(k) if *k <= n);
                true
            } else {
                false
            }
        }
    };
    hit != c.negate
}

/// Runs `cmds` on the pattern space; returns false when the line is deleted.
fn exec(cmds: &mut [Cmd], space: &mut Vec<u8>, n: usize, last: bool, st: &mut State, out: &mut Vec<u8>) -> bool {
    for c in cmds.iter_mut() {
        if !selected(c, space, n, last) {
            continue;
        }
        match &mut c.op {
            Op::Print => {
                out.extend_from_slice(space);
                out.push(b'\n');
            }
            Op::Delete => return false,
            Op::Quit => {
                st.quit = true;
                return true;
            }
            Op::LineNo => out.extend_from_slice(format!("{n}\n").as_bytes()),
            Op::Block(inner) => {
                if !exec(inner, space, n, last, st, out) {
                    return false;
                }
                if st.quit {
                    return true;
                }
            }
            Op::Sub { re, repl, global, nth, print } => {
                let mut result = Vec::with_capacity(space.len());
                let mut last_end = 0;
                let mut count = 0;
                let mut done = false;
                for caps in re.captures_iter(space) {
                    let m = caps.get(0).unwrap();
                    count += 1;
                    if count < *nth {
                        continue;
                    }
                    result.extend_from_slice(&space[last_end..m.start()]);
                    for r in repl.iter() {
                        match r {
                            Repl::Lit(b) => result.extend_from_slice(b),
                            Repl::Group(g) => {
                                if let Some(x) = caps.get(*g) {
                                    result.extend_from_slice(x.as_bytes());
                                }
                            }
                        }
                    }
                    last_end = m.end();
                    done = true;
                    if !*global {
                        break;
                    }
                }
                if done {
                    result.extend_from_slice(&space[last_end..]);
                    *space = result;
                    if *print {
                        out.extend_from_slice(space);
                        out.push(b'\n');
                    }
                }
            }
        }
    }
    true
}

fn run_script(cmds: &mut [Cmd], data: &[u8], quiet: bool, out: &mut Vec<u8>, line_base: &mut usize) -> bool {
    let ends_nl = data.ends_with(b"\n");
    let mut st = State { quiet, quit: false };
    // One line at a time (a pipe may hold millions), looking one ahead for `$`.
    let mut it = crate::io::lines(data).peekable();
    while let Some(l) = it.next() {
        *line_base += 1;
        let last = it.peek().is_none();
        let mut space = l.to_vec();
        let keep = exec(cmds, &mut space, *line_base, last, &mut st, out);
        if keep && !st.quiet {
            out.extend_from_slice(&space);
            if !last || ends_nl {
                out.push(b'\n');
            }
        }
        if st.quit {
            return true;
        }
    }
    false
}

/// `sed`.
pub fn sed(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut quiet = false;
    let mut ere = false;
    let mut separate = false;
    let mut in_place: Option<String> = None;
    let mut scripts: Vec<String> = Vec::new();
    let mut files = Vec::new();
    let mut i = 0;
    let mut only_files = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if only_files || !a.starts_with('-') || a == "-" {
            files.push(a.clone());
            continue;
        }
        match a.as_str() {
            "--" => only_files = true,
            "--quiet" | "--silent" => quiet = true,
            "--regexp-extended" => ere = true,
            "--separate" => separate = true,
            "--expression" | "-e" => {
                let Some(v) = args.get(i) else { return usage(io, "sed", "option requires an argument -- 'e'", 1) };
                scripts.push(v.clone());
                i += 1;
            }
            "--in-place" => in_place = Some(String::new()),
            s if s.starts_with("--expression=") => scripts.push(s["--expression=".len()..].to_string()),
            s if s.starts_with("--in-place=") => in_place = Some(s["--in-place=".len()..].to_string()),
            s if s.starts_with("--") => return usage(io, "sed", &format!("unrecognized option '{s}'"), 1),
            s => {
                let chars: Vec<char> = s[1..].chars().collect();
                let mut j = 0;
                while j < chars.len() {
                    match chars[j] {
                        'n' => quiet = true,
                        'E' | 'r' => ere = true,
                        's' => separate = true,
                        'u' | 'z' => {}
                        'i' => {
                            in_place = Some(chars[j + 1..].iter().collect());
                            break;
                        }
                        'e' => {
                            let rest: String = chars[j + 1..].iter().collect();
                            if rest.is_empty() {
                                let Some(v) = args.get(i) else {
                                    return usage(io, "sed", "option requires an argument -- 'e'", 1);
                                };
                                scripts.push(v.clone());
                                i += 1;
                            } else {
                                scripts.push(rest);
                            }
                            break;
                        }
                        c => return usage(io, "sed", &format!("invalid option -- '{c}'"), 1),
                    }
                    j += 1;
                }
            }
        }
    }
    if scripts.is_empty() {
        if files.is_empty() {
            io.err.say("Usage: sed [OPTION]... {script-only-if-no-other-script} [input-file]...");
            return Ok(1);
        }
        scripts.push(files.remove(0));
    }
    let script = scripts.join("\n");
    let chars: Vec<char> = script.chars().collect();
    let mut p = P { s: &chars, i: 0, ere };
    let mut cmds = match p.cmds(false) {
        Ok(c) => c,
        Err(m) => {
            io.err.say(format!("sed: -e expression #1, char {}: {m}", p.i));
            return Ok(1);
        }
    };
    if files.is_empty() {
        if in_place.is_some() {
            io.err.say("sed: no input files");
            return Ok(1);
        }
        files.push("-".into());
    }
    let mut status = 0;
    let mut out = Vec::new();
    if in_place.is_some() {
        for f in &files {
            let Some(data) = ctx.read("sed", f, &io.stdin, &io.err) else {
                status = 2;
                continue;
            };
            let mut fresh = cmds.clone();
            let mut result = Vec::new();
            let mut base = 0;
            run_script(&mut fresh, &data, quiet, &mut result, &mut base);
            let Some(abs) = ctx.resolve("sed", f, &io.err) else { return Ok(4) };
            if let Err(e) = std::fs::write(&abs, &result) {
                let m = ctx.io_msg("sed", &format!("couldn't edit {f}"), &e);
                io.err.say(m);
                return Ok(4);
            }
        }
        return Ok(status);
    }
    if separate {
        let mut base = 0;
        for f in &files {
            let Some(data) = ctx.read("sed", f, &io.stdin, &io.err) else {
                status = 2;
                continue;
            };
            base = 0;
            if run_script(&mut cmds, &data, quiet, &mut out, &mut base) {
                break;
            }
        }
        let _ = base;
    } else {
        let mut all = Vec::new();
        for f in &files {
            let Some(mut data) = ctx.read("sed", f, &io.stdin, &io.err) else {
                status = 2;
                continue;
            };
            if !all.is_empty() && !all.ends_with(b"\n") {
                all.push(b'\n');
            }
            all.append(&mut data);
        }
        let mut base = 0;
        run_script(&mut cmds, &all, quiet, &mut out, &mut base);
    }
    io.out.write_all(&out)?;
    Ok(status)
}
