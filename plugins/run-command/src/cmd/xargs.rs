//! `xargs [-0] [-d DELIM] [-n N] [-L N] [-I STR] [-r] [COMMAND [ARGS…]]`:
//! builds command lines of built-in commands from standard input.

use super::usage;
use crate::ctx::Ctx;
use crate::io::Io;
use crate::opts::{self, Opt, Spec};
use std::io;
use std::rc::Rc;

/// Most characters of arguments per command line.
const MAX_CHARS: usize = 128 * 1024;

/// Splits input the default way: blanks and newlines separate, quotes and
/// backslashes protect.
fn split_default(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\n') | None => {
                            return Err(format!(
                                "unmatched {} quote; by default quotes are special to xargs unless you use the -0 option",
                                if c == '\'' { "single" } else { "double" }
                            ))
                        }
                        Some(x) => cur.push(x),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `xargs`.
pub fn xargs(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "0rtpx",
        values: "dnLIPs",
        long: &[
            ("null", false, '0'),
            ("delimiter", true, 'd'),
            ("max-args", true, 'n'),
            ("max-lines", true, 'L'),
            ("replace", true, 'I'),
            ("no-run-if-empty", false, 'r'),
            ("max-procs", true, 'P'),
            ("verbose", false, 't'),
        ],
        numbers: false,
        permute: false,
    };
    let (o, cmd) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "xargs", &m, 1),
    };
    let (mut nul, mut delim, mut max_args, mut max_lines, mut replace, mut no_empty, mut verbose) =
        (false, None, None, None, None, false, false);
    for x in o {
        match x {
            Opt::Short('0', _) => nul = true,
            Opt::Short('d', Some(v)) => {
                let d = match v.as_str() {
                    "\\n" => '\n',
                    "\\t" => '\t',
                    "\\0" => '\0',
                    s => s.chars().next().unwrap_or('\n'),
                };
                delim = Some(d);
            }
            Opt::Short('n', Some(v)) => match v.parse::<usize>() {
                Ok(n) if n > 0 => max_args = Some(n),
                _ => return usage(io, "xargs", &format!("invalid number \"{v}\" for -n option"), 1),
            },
            Opt::Short('L', Some(v)) => max_lines = v.parse::<usize>().ok(),
            Opt::Short('I', Some(v)) => replace = Some(v),
            Opt::Short('r', _) => no_empty = true,
            Opt::Short('t', _) => verbose = true,
            _ => {}
        }
    }
    let cmd: Vec<String> = if cmd.is_empty() { vec!["echo".into()] } else { cmd };
    let text = String::from_utf8_lossy(&io.stdin).into_owned();
    let items: Vec<String> = if nul {
        text.split('\0').filter(|s| !s.is_empty()).map(String::from).collect()
    } else if let Some(d) = delim {
        let t = text.strip_suffix(d).unwrap_or(&text);
        if t.is_empty() { Vec::new() } else { t.split(d).map(String::from).collect() }
    } else if replace.is_some() || max_lines.is_some() {
        text.lines().map(|l| l.trim_start().to_string()).filter(|l| !l.is_empty()).collect()
    } else {
        match split_default(&text) {
            Ok(v) => v,
            Err(m) => {
                io.err.say(format!("xargs: {m}"));
                return Ok(1);
            }
        }
    };
    let mut runs: Vec<Vec<String>> = Vec::new();
    if let Some(r) = &replace {
        for item in &items {
            runs.push(cmd.iter().map(|w| w.replace(r.as_str(), item)).collect());
        }
    } else {
        let per = max_args.or(max_lines).unwrap_or(usize::MAX);
        let mut cur: Vec<String> = Vec::new();
        let mut chars = 0;
        for item in items {
            if !cur.is_empty() && (cur.len() >= per || chars + item.len() + 1 > MAX_CHARS) {
                let mut argv = cmd.clone();
                argv.append(&mut cur);
                runs.push(argv);
                chars = 0;
            }
            chars += item.len() + 1;
            cur.push(item);
        }
        if !cur.is_empty() || (runs.is_empty() && !no_empty) {
            let mut argv = cmd.clone();
            argv.append(&mut cur);
            runs.push(argv);
        }
    }
    let mut status = 0;
    for argv in runs {
        if verbose {
            io.err.say(argv.join(" "));
        }
        let mut sub = Io { stdin: Rc::new(Vec::new()), stdin_pipe: false, out: io.out.clone(), err: io.err.clone() };
        ctx.depth += 1;
        let st = crate::cmd::run(ctx, &argv, &mut sub);
        ctx.depth -= 1;
        match st {
            0 => {}
            141 => return Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe")),
            126 | 127 => return Ok(st),
            255 => {
                io.err.say(format!("xargs: {}: exited with status 255; aborting", argv[0]));
                return Ok(124);
            }
            _ => status = 123,
        }
    }
    Ok(status)
}
