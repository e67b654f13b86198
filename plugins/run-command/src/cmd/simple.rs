//! `echo`, `printf`, `pwd`, `cd`, `basename`, `dirname`, `true`, `false`,
//! `test`/`[`, `seq`, `yes`.

use super::usage;
use crate::ctx::Ctx;
use crate::io::Io;
use std::io::{self, Write};

/// `echo [-neE] ARGS…` as bash's builtin.
pub fn echo(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut newline = true;
    let mut escapes = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| matches!(c, 'n' | 'e' | 'E')) {
            for c in a[1..].chars() {
                match c {
                    'n' => newline = false,
                    'e' => escapes = true,
                    _ => escapes = false,
                }
            }
            i += 1;
        } else {
            break;
        }
    }
    let text = args[i..].join(" ");
    let mut out = if escapes {
        let (s, stop) = unescape(&text, true);
        if stop {
            io.out.write_all(s.as_bytes())?;
            return Ok(0);
        }
        s
    } else {
        text
    };
    if newline {
        out.push('\n');
    }
    io.out.write_all(out.as_bytes())?;
    Ok(0)
}

/// Backslash escapes of `echo -e` and `printf`; `\c` stops output (true).
fn unescape(s: &str, echo: bool) -> (String, bool) {
    let mut out = String::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i] != '\\' || i + 1 == c.len() {
            out.push(c[i]);
            i += 1;
            continue;
        }
        i += 1;
        match c[i] {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            'e' => out.push('\x1b'),
            '\\' => out.push('\\'),
            'c' => return (out, true),
            '0'..='7' => {
                // echo: \0NNN; printf: \NNN.
                let mut j = i;
                if echo && c[j] == '0' {
                    j += 1;
                }
                let start = j;
                let mut v = 0u32;
                while j < c.len() && j < start + 3 && ('0'..='7').contains(&c[j]) {
                    v = v * 8 + c[j].to_digit(8).unwrap();
                    j += 1;
                }
                out.push(char::from_u32(v).unwrap_or('?'));
                i = j;
                continue;
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
        i += 1;
    }
    (out, false)
}

/// `printf FORMAT [ARGS…]`: `%s %d %i %u %x %X %o %c %f %%`, flags `-0 +`,
/// width and precision; the format is reused while arguments remain.
pub fn printf(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let args: Vec<&String> = match args.first() {
        Some(a) if a == "--" => args[1..].iter().collect(),
        _ => args.iter().collect(),
    };
    let Some(fmt) = args.first() else {
        io.err.say("printf: usage: printf format [arguments]");
        return Ok(2);
    };
    let rest = &args[1..];
    let mut used = 0;
    let mut status = 0;
    loop {
        let mut out = String::new();
        let f: Vec<char> = fmt.chars().collect();
        let mut i = 0;
        let mut consumed_any = false;
        while i < f.len() {
            let c = f[i];
            if c == '\\' {
                let mut j = i + 1;
                while j < f.len() && j < i + 4 && f[j].is_ascii_digit() {
                    j += 1;
                }
                let end = if j > i + 1 { j } else { (i + 2).min(f.len()) };
                let piece: String = f[i..end].iter().collect();
                let (s, stop) = unescape(&piece, false);
                out.push_str(&s);
                if stop {
                    io.out.write_all(out.as_bytes())?;
                    return Ok(status);
                }
                i = end;
                continue;
            }
            if c != '%' {
                out.push(c);
                i += 1;
                continue;
            }
            i += 1;
            if f.get(i) == Some(&'%') {
                out.push('%');
                i += 1;
                continue;
            }
            let mut spec = String::new();
            while i < f.len() && "-+ 0#.123456789".contains(f[i]) {
                spec.push(f[i]);
                i += 1;
            }
            let Some(&conv) = f.get(i) else {
                io.err.say("printf: missing format character");
                return Ok(1);
            };
            i += 1;
            let arg = rest.get(used).map(|s| s.as_str());
            if arg.is_some() {
                used += 1;
                consumed_any = true;
            }
            let (left, zero, plus) = (spec.contains('-'), spec.starts_with('0') || spec.contains("-0"), spec.contains('+'));
            let nums: String = spec.trim_start_matches(['-', '+', ' ', '0', '#']).to_string();
            let (width, prec) = match nums.split_once('.') {
                Some((w, p)) => (w.parse::<usize>().unwrap_or(0), Some(p.parse::<usize>().unwrap_or(0))),
                None => (nums.parse::<usize>().unwrap_or(0), None),
            };
            let body = match conv {
                's' | 'b' => {
                    let s = arg.unwrap_or("");
                    let s = if conv == 'b' { unescape(s, true).0 } else { s.to_string() };
                    match prec {
                        Some(p) => s.chars().take(p).collect(),
                        None => s,
                    }
                }
                'c' => arg.and_then(|a| a.chars().next()).map(String::from).unwrap_or_default(),
                'd' | 'i' | 'u' | 'x' | 'X' | 'o' => {
                    let a = arg.unwrap_or("0");
                    let v: i64 = match parse_int(a) {
                        Some(v) => v,
                        None => {
                            io.err.say(format!("printf: {a}: invalid number"));
                            status = 1;
                            0
                        }
                    };
                    let s = match conv {
                        'x' => format!("{v:x}"),
                        'X' => format!("{v:X}"),
                        'o' => format!("{v:o}"),
                        _ => v.to_string(),
                    };
                    if plus && v >= 0 { format!("+{s}") } else { s }
                }
                'f' | 'e' | 'g' => {
                    let a = arg.unwrap_or("0");
                    let v: f64 = a.parse().unwrap_or_else(|_| {
                        io.err.say(format!("printf: {a}: invalid number"));
                        status = 1;
                        0.0
                    });
                    let p = prec.unwrap_or(6);
                    match conv {
                        'e' => format!("{v:.p$e}"),
                        _ => format!("{v:.p$}"),
                    }
                }
                other => {
                    io.err.say(format!("printf: %{other}: invalid directive"));
                    return Ok(1);
                }
            };
            let len = body.chars().count();
            if len >= width {
                out.push_str(&body);
            } else if left {
                out.push_str(&body);
                out.push_str(&" ".repeat(width - len));
            } else if zero && !matches!(conv, 's' | 'c' | 'b') {
                let (sign, digits) = match body.strip_prefix('-') {
                    Some(d) => ("-", d.to_string()),
                    None => ("", body.clone()),
                };
                out.push_str(sign);
                out.push_str(&"0".repeat(width - len));
                out.push_str(&digits);
            } else {
                out.push_str(&" ".repeat(width - len));
                out.push_str(&body);
            }
        }
        io.out.write_all(out.as_bytes())?;
        if used >= rest.len() || !consumed_any {
            return Ok(status);
        }
    }
}

fn parse_int(a: &str) -> Option<i64> {
    let t = a.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(h, 16).ok();
    }
    if let Some(c) = t.strip_prefix('\'').or_else(|| t.strip_prefix('"')) {
        return c.chars().next().map(|c| c as i64);
    }
    t.parse().ok()
}

/// `pwd`: the working directory as a guest path.
pub fn pwd(ctx: &mut Ctx, _: &[String], io: &mut Io) -> io::Result<i32> {
    io.out.write_all(format!("{}\n", ctx.cwd).as_bytes())?;
    Ok(0)
}

/// `cd [DIR]`: moves the working directory, within the mounts (no `DIR`:
/// the first mount, as `$HOME` would be).
pub fn cd(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let dir = match args {
        [] => ctx.mounts.first().cloned().unwrap_or_else(|| "/".into()),
        [d] => d.clone(),
        _ => {
            io.err.say("sh: cd: too many arguments");
            return Ok(1);
        }
    };
    let abs = match ctx.abs(&dir) {
        Ok(a) => a,
        Err(m) => {
            let m = ctx.refuse(format!("sh: cd: {dir}: {m}"));
            io.err.say(m);
            return Ok(1);
        }
    };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => {
            ctx.cwd = abs;
            Ok(0)
        }
        Ok(_) => {
            io.err.say(format!("sh: cd: {dir}: Not a directory"));
            Ok(1)
        }
        Err(e) => {
            let m = ctx.io_msg("sh: cd", &dir, &e);
            io.err.say(m);
            Ok(1)
        }
    }
}

/// `basename NAME [SUFFIX]`, `-a`, `-s SUFFIX`.
pub fn basename(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = crate::opts::Spec {
        flags: "az",
        values: "s",
        long: &[("multiple", false, 'a'), ("suffix", true, 's'), ("zero", false, 'z')],
        numbers: false,
        permute: true,
    };
    let (opts, ops) = match crate::opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "basename", &m, 1),
    };
    let mut multiple = false;
    let mut suffix: Option<String> = None;
    for o in opts {
        match o {
            crate::opts::Opt::Short('a', _) => multiple = true,
            crate::opts::Opt::Short('s', v) => {
                multiple = true;
                suffix = v;
            }
            _ => {}
        }
    }
    if ops.is_empty() {
        return usage(io, "basename", "missing operand", 1);
    }
    let names: Vec<String> = if multiple {
        ops.clone()
    } else {
        if ops.len() > 2 {
            return usage(io, "basename", &format!("extra operand '{}'", ops[2]), 1);
        }
        suffix = ops.get(1).cloned();
        vec![ops[0].clone()]
    };
    for n in names {
        let t = n.trim_end_matches('/');
        let mut base = if t.is_empty() {
            if n.is_empty() { String::new() } else { "/".into() }
        } else {
            t.rsplit('/').next().unwrap().to_string()
        };
        if let Some(s) = &suffix {
            if base.len() > s.len() && base.ends_with(s.as_str()) {
                base.truncate(base.len() - s.len());
            }
        }
        io.out.write_all(format!("{base}\n").as_bytes())?;
    }
    Ok(0)
}

/// `dirname NAME…`.
pub fn dirname(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    if args.is_empty() {
        return usage(io, "dirname", "missing operand", 1);
    }
    for n in args {
        let t = n.trim_end_matches('/');
        let d = if t.is_empty() {
            if n.starts_with('/') { "/" } else { "." }.to_string()
        } else {
            match t.rfind('/') {
                None => ".".into(),
                Some(i) => {
                    let d = t[..i].trim_end_matches('/');
                    if d.is_empty() { "/".into() } else { d.to_string() }
                }
            }
        };
        io.out.write_all(format!("{d}\n").as_bytes())?;
    }
    Ok(0)
}

/// `true`.
pub fn true_(_: &mut Ctx, _: &[String], _: &mut Io) -> io::Result<i32> {
    Ok(0)
}

/// `false`.
pub fn false_(_: &mut Ctx, _: &[String], _: &mut Io) -> io::Result<i32> {
    Ok(1)
}

/// `[ EXPR ]`.
pub fn test_bracket(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    match args.split_last() {
        Some((last, rest)) if last == "]" => test(ctx, rest, io),
        _ => {
            io.err.say("sh: [: missing `]'");
            Ok(2)
        }
    }
}

/// `test EXPR`: `-e -f -d -s -r -w -x -L -h PATH`, `-n -z STR`, `=`, `!=`,
/// `-eq -ne -lt -le -gt -ge`, `!`, `-a`, `-o`.
pub fn test(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match eval_or(ctx, &a) {
        Ok((v, [])) => Ok(i32::from(!v)),
        Ok((_, rest)) => {
            io.err.say(format!("sh: test: {}: unexpected operator", rest[0]));
            Ok(2)
        }
        Err(m) => {
            io.err.say(format!("sh: test: {m}"));
            Ok(2)
        }
    }
}

type Parsed<'a> = Result<(bool, &'a [&'a str]), String>;

fn eval_or<'a>(ctx: &mut Ctx, a: &'a [&'a str]) -> Parsed<'a> {
    let (mut v, mut rest) = eval_and(ctx, a)?;
    while rest.first() == Some(&"-o") {
        let (w, r) = eval_and(ctx, &rest[1..])?;
        v = v || w;
        rest = r;
    }
    Ok((v, rest))
}

fn eval_and<'a>(ctx: &mut Ctx, a: &'a [&'a str]) -> Parsed<'a> {
    let (mut v, mut rest) = eval_not(ctx, a)?;
    while rest.first() == Some(&"-a") {
        let (w, r) = eval_not(ctx, &rest[1..])?;
        v = v && w;
        rest = r;
    }
    Ok((v, rest))
}

fn eval_not<'a>(ctx: &mut Ctx, a: &'a [&'a str]) -> Parsed<'a> {
    if a.first() == Some(&"!") && a.len() > 1 {
        let (v, r) = eval_not(ctx, &a[1..])?;
        return Ok((!v, r));
    }
    primary(ctx, a)
}

fn primary<'a>(ctx: &mut Ctx, a: &'a [&'a str]) -> Parsed<'a> {
    match a {
        [] => Ok((false, a)),
        [l, op, r, ..] if matches!(*op, "=" | "==" | "!=" | "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge") => {
            let v = match *op {
                "=" | "==" => l == r,
                "!=" => l != r,
                _ => {
                    let x: i64 = l.trim().parse().map_err(|_| format!("{l}: integer expression expected"))?;
                    let y: i64 = r.trim().parse().map_err(|_| format!("{r}: integer expression expected"))?;
                    match *op {
                        "-eq" => x == y,
                        "-ne" => x != y,
                        "-lt" => x < y,
                        "-le" => x <= y,
                        "-gt" => x > y,
                        _ => x >= y,
                    }
                }
            };
            Ok((v, &a[3..]))
        }
        [op, x, ..] if op.len() == 2 && op.starts_with('-') && "efdsrwxLhnz".contains(&op[1..]) => {
            let v = match *op {
                "-n" => !x.is_empty(),
                "-z" => x.is_empty(),
                _ => {
                    let nofollow = matches!(*op, "-L" | "-h");
                    match ctx.stat(x, nofollow) {
                        Err(_) => false,
                        Ok(m) => match *op {
                            "-f" => m.is_file(),
                            "-d" => m.is_dir(),
                            "-s" => m.len() > 0,
                            "-L" | "-h" => m.file_type().is_symlink(),
                            _ => true,
                        },
                    }
                }
            };
            Ok((v, &a[2..]))
        }
        [s, ..] => Ok((!s.is_empty(), &a[1..])),
    }
}

/// `seq [FIRST [INCREMENT]] LAST`, `-s SEP`, `-w`.
pub fn seq(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut sep = "\n".to_string();
    let mut width = false;
    let mut nums = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-s" && i + 1 < args.len() {
            sep = args[i + 1].clone();
            i += 2;
            continue;
        }
        if let Some(s) = a.strip_prefix("-s") {
            if !s.is_empty() && s.parse::<f64>().is_err() {
                sep = s.to_string();
                i += 1;
                continue;
            }
        }
        if a == "-w" {
            width = true;
            i += 1;
            continue;
        }
        match a.parse::<i64>() {
            Ok(n) => nums.push(n),
            Err(_) => return usage(io, "seq", &format!("invalid floating point argument: '{a}'"), 1),
        }
        i += 1;
    }
    let (first, step, last) = match nums.as_slice() {
        [l] => (1, 1, *l),
        [f, l] => (*f, 1, *l),
        [f, s, l] => (*f, *s, *l),
        [] => return usage(io, "seq", "missing operand", 1),
        _ => return usage(io, "seq", &format!("extra operand '{}'", nums[3]), 1),
    };
    if step == 0 {
        return usage(io, "seq", "invalid Zero increment value: '0'", 1);
    }
    let w = if width { first.to_string().len().max(last.to_string().len()) } else { 0 };
    let mut v = first;
    let mut firstone = true;
    let mut buf = String::new();
    while (step > 0 && v <= last) || (step < 0 && v >= last) {
        if !firstone {
            buf.push_str(&sep);
        }
        firstone = false;
        buf.push_str(&format!("{v:0w$}"));
        if buf.len() > 1 << 16 {
            io.out.write_all(buf.as_bytes())?;
            buf.clear();
        }
        match v.checked_add(step) {
            Some(n) => v = n,
            None => break,
        }
    }
    if !firstone {
        buf.push('\n');
    }
    io.out.write_all(buf.as_bytes())?;
    Ok(0)
}

/// `yes [STRING]`: until the pipe or the output is full.
pub fn yes(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let line = if args.is_empty() { "y".to_string() } else { args.join(" ") };
    let chunk = format!("{line}\n").repeat((8192 / (line.len() + 1)).max(1));
    loop {
        io.out.write_all(chunk.as_bytes())?;
    }
}
