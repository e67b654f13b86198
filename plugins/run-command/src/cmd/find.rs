//! `find` as GNU findutils: paths, then an expression of tests (`-name`,
//! `-iname`, `-path`, `-type`, `-size`, `-empty`, …), operators (`!`,
//! `-not`, `-a`, `-o`, parentheses), actions (`-print`, `-print0`,
//! `-printf`, `-prune`, `-quit`, `-exec … {} \;` and `{} +` with built-in
//! commands). Entries are visited in name order (GNU's order is the
//! directory's, which is unspecified).

use crate::ctx::{Ctx, Entry, Kind, Step};
use crate::io::Io;
use crate::pattern::fnmatch;
use std::io::{self, Write};

#[derive(Debug, Clone)]
enum Node {
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Name(String, bool),
    Path(String, bool),
    Type(Vec<char>),
    Size(char, u64, u64),
    Empty,
    True,
    False,
    Print,
    Print0,
    Printf(String),
    Prune,
    Quit,
    /// Command words ({} inside), batched (`+`), index into the batches.
    Exec(Vec<String>, bool, usize),
}

struct Parser<'a> {
    a: &'a [String],
    i: usize,
    maxdepth: Option<usize>,
    mindepth: usize,
    has_action: bool,
    batches: usize,
}

impl<'a> Parser<'a> {
    fn or(&mut self) -> Result<Node, String> {
        let mut l = self.and()?;
        while matches!(self.a.get(self.i).map(String::as_str), Some("-o" | "-or")) {
            self.i += 1;
            let r = self.and()?;
            l = Node::Or(Box::new(l), Box::new(r));
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut l = self.not()?;
        loop {
            match self.a.get(self.i).map(String::as_str) {
                None | Some("-o" | "-or" | ")") => return Ok(l),
                Some("-a" | "-and") => self.i += 1,
                _ => {}
            }
            let r = self.not()?;
            l = Node::And(Box::new(l), Box::new(r));
        }
    }

    fn not(&mut self) -> Result<Node, String> {
        if matches!(self.a.get(self.i).map(String::as_str), Some("!" | "-not")) {
            self.i += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn arg(&mut self, pred: &str) -> Result<String, String> {
        let v = self.a.get(self.i).cloned().ok_or_else(|| format!("missing argument to `{pred}'"))?;
        self.i += 1;
        Ok(v)
    }

    fn primary(&mut self) -> Result<Node, String> {
        let Some(tok) = self.a.get(self.i).cloned() else {
            return Err("expected an expression".into());
        };
        self.i += 1;
        Ok(match tok.as_str() {
            "(" => {
                let e = self.or()?;
                if self.a.get(self.i).map(String::as_str) != Some(")") {
                    return Err("invalid expression; I was expecting to find a ')' somewhere but did not see one.".into());
                }
                self.i += 1;
                e
            }
            "-name" => Node::Name(self.arg(&tok)?, false),
            "-iname" => Node::Name(self.arg(&tok)?, true),
            "-path" | "-wholename" => Node::Path(self.arg(&tok)?, false),
            "-ipath" | "-iwholename" => Node::Path(self.arg(&tok)?, true),
            "-type" | "-xtype" => {
                let v = self.arg(&tok)?;
                let mut kinds = Vec::new();
                for part in v.split(',') {
                    let mut ch = part.chars();
                    match (ch.next(), ch.next()) {
                        (Some(c @ ('f' | 'd' | 'l' | 'p' | 's' | 'b' | 'c')), None) => kinds.push(c),
                        _ => return Err(format!("Unknown argument to -type: {part}")),
                    }
                }
                Node::Type(kinds)
            }
            "-size" => {
                let v = self.arg(&tok)?;
                let (cmp, rest) = match v.chars().next() {
                    Some(c @ ('+' | '-')) => (c, &v[1..]),
                    _ => ('=', v.as_str()),
                };
                let idx = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
                let n: u64 = rest[..idx].parse().map_err(|_| format!("invalid -size type `{v}'"))?;
                let unit = match &rest[idx..] {
                    "" | "b" => 512,
                    "c" => 1,
                    "w" => 2,
                    "k" => 1024,
                    "M" => 1 << 20,
                    "G" => 1 << 30,
                    _ => return Err(format!("invalid -size type `{v}'")),
                };
                Node::Size(cmp, n, unit)
            }
            "-empty" => Node::Empty,
            "-true" | "-readable" => Node::True,
            "-false" => Node::False,
            "-print" => {
                self.has_action = true;
                Node::Print
            }
            "-print0" => {
                self.has_action = true;
                Node::Print0
            }
            "-printf" => {
                self.has_action = true;
                Node::Printf(self.arg(&tok)?)
            }
            "-prune" => Node::Prune,
            "-quit" => Node::Quit,
            "-maxdepth" | "-mindepth" => {
                let v = self.arg(&tok)?;
                let n: usize = v.parse().map_err(|_| format!("Expected a positive decimal integer argument to {tok}, but got `{v}'"))?;
                if tok == "-maxdepth" {
                    self.maxdepth = Some(n);
                } else {
                    self.mindepth = n;
                }
                Node::True
            }
            "-exec" | "-ok" | "-execdir" => {
                self.has_action = true;
                let mut words = Vec::new();
                loop {
                    let Some(w) = self.a.get(self.i).cloned() else {
                        return Err(format!("missing argument to `{tok}'"));
                    };
                    self.i += 1;
                    if w == ";" {
                        break Node::Exec(words, false, 0);
                    }
                    if w == "+" && words.last().is_some_and(|l| l == "{}") {
                        self.batches += 1;
                        break Node::Exec(words, true, self.batches - 1);
                    }
                    words.push(w);
                }
            }
            "-follow" | "-depth" | "-noleaf" | "-xdev" | "-mount" | "-ignore_readdir_race" => Node::True,
            "-delete" => return Err("-delete is not supported by run_command: it never deletes files".into()),
            t if t.starts_with('-') => return Err(format!("unknown predicate `{t}'")),
            t => return Err(format!("paths must precede expression: `{t}'")),
        })
    }
}

struct Run<'a> {
    io: &'a mut Io,
    batches: Vec<(Vec<String>, Vec<String>)>,
    quit: bool,
    status: i32,
}

/// `find [PATH…] [EXPRESSION]`.
pub fn find(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut args = args.to_vec();
    // -H/-L/-P before the paths.
    let mut follow = false;
    while let Some(a) = args.first() {
        match a.as_str() {
            "-L" => follow = true,
            "-H" | "-P" => {}
            _ => break,
        }
        args.remove(0);
    }
    let split = args
        .iter()
        .position(|a| (a.starts_with('-') && a.len() > 1) || a == "(" || a == "!")
        .unwrap_or(args.len());
    let mut paths: Vec<String> = args[..split].to_vec();
    if paths.is_empty() {
        paths.push(".".into());
    }
    let expr = &args[split..];
    let mut p = Parser { a: expr, i: 0, maxdepth: None, mindepth: 0, has_action: false, batches: 0 };
    let node = if expr.is_empty() {
        Node::True
    } else {
        match p.or() {
            Ok(n) if p.i == expr.len() => n,
            Ok(_) => {
                io.err.say(format!("find: unexpected `{}'", expr[p.i]));
                return Ok(1);
            }
            Err(m) => {
                io.err.say(format!("find: {m}"));
                return Ok(1);
            }
        }
    };
    let node = if p.has_action { node } else { Node::And(Box::new(node), Box::new(Node::Print)) };
    let mut run = Run { io, batches: vec![(Vec::new(), Vec::new()); p.batches], quit: false, status: 0 };
    let (maxdepth, mindepth) = (p.maxdepth, p.mindepth);
    for path in &paths {
        if run.quit {
            break;
        }
        let abs = match ctx.abs(path) {
            Ok(a) => a,
            Err(m) => {
                let m = ctx.refuse(format!("find: ‘{path}’: {m}"));
                run.io.err.say(m);
                run.status = 1;
                continue;
            }
        };
        let root_name = {
            let t = path.trim_end_matches('/');
            if t.is_empty() { "/".to_string() } else { t.rsplit('/').next().unwrap().to_string() }
        };
        let mut errs: Vec<String> = Vec::new();
        let mut failure: Option<io::Error> = None;
        ctx.walk(
            &abs,
            path,
            follow,
            true,
            &mut |ctx, e| {
                if run.quit {
                    return Ok(Step::Prune);
                }
                let mut e = e.clone();
                if e.depth == 0 {
                    e.name = root_name.clone();
                    if follow {
                        if let Ok(m) = std::fs::metadata(&e.abs) {
                            e.kind = Kind::of(&m);
                            e.meta = Some(m);
                        }
                    }
                } else if follow && e.kind == Kind::Link {
                    if let Ok(m) = std::fs::metadata(&e.abs) {
                        e.kind = Kind::of(&m);
                        e.meta = Some(m);
                    }
                }
                let mut prune = false;
                if e.depth >= mindepth && maxdepth.is_none_or(|m| e.depth <= m) {
                    match eval(&node, ctx, &e, &mut run, &mut prune) {
                        Ok(_) => {}
                        Err(err) => {
                            failure = Some(err);
                            run.quit = true;
                        }
                    }
                }
                if prune || maxdepth.is_some_and(|m| e.depth >= m) {
                    Ok(Step::Prune)
                } else {
                    Ok(Step::Into)
                }
            },
            &mut |ctx, shown, err| {
                let msg = crate::ctx::describe(err);
                if crate::ctx::is_refusal(err) {
                    ctx.refuse(format!("find: ‘{shown}’: {msg}"));
                }
                errs.push(format!("find: ‘{shown}’: {msg}"));
            },
        )?;
        if let Some(f) = failure {
            return Err(f);
        }
        for m in errs {
            run.io.err.say(m);
            run.status = 1;
        }
    }
    // `-exec … {} +` batches run at the end.
    for (words, items) in std::mem::take(&mut run.batches) {
        if items.is_empty() {
            continue;
        }
        for chunk in items.chunks(4096) {
            let mut argv: Vec<String> = words[..words.len() - 1].to_vec();
            argv.extend(chunk.iter().cloned());
            ctx.depth += 1;
            let st = crate::cmd::run(ctx, &argv, run.io);
            ctx.depth -= 1;
            if st == 141 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe"));
            }
            if st != 0 {
                run.status = 1;
            }
        }
    }
    Ok(run.status)
}

fn eval(n: &Node, ctx: &mut Ctx, e: &Entry, run: &mut Run, prune: &mut bool) -> io::Result<bool> {
    Ok(match n {
        Node::And(a, b) => eval(a, ctx, e, run, prune)? && eval(b, ctx, e, run, prune)?,
        Node::Or(a, b) => eval(a, ctx, e, run, prune)? || eval(b, ctx, e, run, prune)?,
        Node::Not(a) => !eval(a, ctx, e, run, prune)?,
        Node::Name(p, fold) => fnmatch::matches(p, &e.name, *fold),
        Node::Path(p, fold) => fnmatch::matches(p, &e.shown, *fold),
        Node::Type(kinds) => kinds.iter().any(|k| match k {
            'f' => e.kind == Kind::File,
            'd' => e.kind == Kind::Dir,
            'l' => e.kind == Kind::Link,
            _ => e.kind == Kind::Other,
        }),
        Node::Size(cmp, n, unit) => {
            let size = e.meta.as_ref().map_or(0, |m| m.len());
            let blocks = size.div_ceil(*unit);
            match cmp {
                '+' => blocks > *n,
                '-' => blocks < *n,
                _ => blocks == *n,
            }
        }
        Node::Empty => match e.kind {
            Kind::File => e.meta.as_ref().is_some_and(|m| m.len() == 0),
            Kind::Dir => ctx.list(&e.abs).is_ok_and(|l| l.is_empty()),
            _ => false,
        },
        Node::True => true,
        Node::False => false,
        Node::Print => {
            run.io.out.write_all(format!("{}\n", e.shown).as_bytes())?;
            true
        }
        Node::Print0 => {
            run.io.out.write_all(format!("{}\0", e.shown).as_bytes())?;
            true
        }
        Node::Printf(f) => {
            run.io.out.write_all(printf(f, e).as_bytes())?;
            true
        }
        Node::Prune => {
            *prune = true;
            true
        }
        Node::Quit => {
            run.quit = true;
            true
        }
        Node::Exec(words, batch, k) => {
            if *batch {
                if run.batches[*k].0.is_empty() {
                    run.batches[*k].0 = words.clone();
                }
                run.batches[*k].1.push(e.shown.clone());
                return Ok(true);
            }
            let argv: Vec<String> = words.iter().map(|w| w.replace("{}", &e.shown)).collect();
            if argv.is_empty() {
                return Ok(false);
            }
            ctx.depth += 1;
            let st = crate::cmd::run(ctx, &argv, run.io);
            ctx.depth -= 1;
            if st == 141 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe"));
            }
            st == 0
        }
    })
}

fn printf(f: &str, e: &Entry) -> String {
    let mut out = String::new();
    let c: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '\\' if i + 1 < c.len() => {
                out.push(match c[i + 1] {
                    'n' => '\n',
                    't' => '\t',
                    '0' => '\0',
                    '\\' => '\\',
                    o => o,
                });
                i += 2;
            }
            '%' if i + 1 < c.len() => {
                let dir = match e.shown.rfind('/') {
                    Some(k) => e.shown[..k].to_string(),
                    None => ".".to_string(),
                };
                match c[i + 1] {
                    'p' => out.push_str(&e.shown),
                    'f' => out.push_str(&e.name),
                    'h' => out.push_str(&dir),
                    's' => out.push_str(&e.meta.as_ref().map_or(0, |m| m.len()).to_string()),
                    'd' => out.push_str(&e.depth.to_string()),
                    'y' => out.push(match e.kind {
                        Kind::File => 'f',
                        Kind::Dir => 'd',
                        Kind::Link => 'l',
                        Kind::Other => 'p',
                    }),
                    'P' => {
                        // The path below the starting point.
                        let parts: Vec<&str> = e.shown.splitn(usize::MAX, '/').collect();
                        let depth = e.depth;
                        let skip = parts.len().saturating_sub(depth);
                        out.push_str(&parts[skip..].join("/"));
                    }
                    '%' => out.push('%'),
                    o => {
                        out.push('%');
                        out.push(o);
                    }
                }
                i += 2;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    out
}
