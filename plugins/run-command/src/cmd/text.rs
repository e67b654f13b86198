//! Text tools over whole files: `cat`, `head`, `tail`, `wc`, `cut`, `tr`,
//! `nl`, `tac`, and `awk` for field printing.

use super::usage;
use crate::ctx::Ctx;
use crate::io::{lines, Io};
use crate::opts::{self, Opt, Spec};
use std::io::{self, Write};

/// Operands, or `-` (stdin) when there are none.
fn inputs(ops: Vec<String>) -> Vec<String> {
    if ops.is_empty() {
        vec!["-".into()]
    } else {
        ops
    }
}

/// `cat [-nbsET] [FILE…]`.
pub fn cat(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "nbsETAuv",
        values: "",
        long: &[
            ("number", false, 'n'),
            ("number-nonblank", false, 'b'),
            ("squeeze-blank", false, 's'),
            ("show-ends", false, 'E'),
            ("show-tabs", false, 'T'),
            ("show-all", false, 'A'),
        ],
        numbers: false,
        permute: true,
    };
    let (o, ops) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "cat", &m, 1),
    };
    let has = |c: char| o.contains(&Opt::Short(c, None));
    let (number, nonblank, squeeze) = (has('n'), has('b'), has('s'));
    let (ends, tabs) = (has('E') || has('A'), has('T') || has('A'));
    let plain = !(number || nonblank || squeeze || ends || tabs);
    let mut status = 0;
    let mut n = 0usize;
    let mut prev_blank = false;
    for f in inputs(ops) {
        let Some(data) = ctx.read("cat", &f, &io.stdin, &io.err) else {
            status = 1;
            continue;
        };
        if plain {
            io.out.write_all(&data)?;
            continue;
        }
        let mut buf = Vec::with_capacity(data.len() + data.len() / 8);
        let ends_nl = data.ends_with(b"\n");
        let count = lines(&data).count();
        for (k, line) in lines(&data).enumerate() {
            let blank = line.is_empty();
            if squeeze && blank && prev_blank {
                continue;
            }
            prev_blank = blank;
            if (number && !nonblank) || (nonblank && !blank) {
                n += 1;
                buf.extend_from_slice(format!("{n:6}\t").as_bytes());
            }
            for &b in line {
                if tabs && b == b'\t' {
                    buf.extend_from_slice(b"^I");
                } else {
                    buf.push(b);
                }
            }
            if k + 1 < count || ends_nl {
                if ends {
                    buf.push(b'$');
                }
                buf.push(b'\n');
            }
        }
        io.out.write_all(&buf)?;
    }
    Ok(status)
}

/// How many lines or bytes `head`/`tail` take.
#[derive(Clone, Copy)]
enum Amount {
    /// The first (head) or last (tail) N.
    Count(u64),
    /// head: all but the last N; tail: from the Nth on.
    Other(u64),
}

fn amount(v: &str, head: bool) -> Result<Amount, String> {
    let (other, digits) = if head {
        match v.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, v),
        }
    } else {
        match v.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, v.strip_prefix('-').unwrap_or(v)),
        }
    };
    let n = parse_size(digits).ok_or_else(|| format!("invalid number of lines: '{v}'"))?;
    Ok(if other { Amount::Other(n) } else { Amount::Count(n) })
}

/// `10`, `1k`, `2M`, as head/tail read counts.
fn parse_size(s: &str) -> Option<u64> {
    let idx = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..idx].parse().ok()?;
    let mult = match &s[idx..] {
        "" => 1,
        "b" => 512,
        "k" | "K" | "KiB" => 1024,
        "kB" | "KB" => 1000,
        "M" | "MiB" => 1 << 20,
        "MB" => 1_000_000,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn head_tail(ctx: &mut Ctx, args: &[String], io: &mut Io, head: bool) -> io::Result<i32> {
    let cmd = if head { "head" } else { "tail" };
    let spec = Spec {
        flags: "qvfF",
        values: "nc",
        long: &[
            ("lines", true, 'n'),
            ("bytes", true, 'c'),
            ("quiet", false, 'q'),
            ("silent", false, 'q'),
            ("verbose", false, 'v'),
            ("follow", false, 'f'),
        ],
        numbers: true,
        permute: true,
    };
    // `tail +5` (obsolete form).
    let args: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if !head && i == 0 && a.starts_with('+') && a[1..].parse::<u64>().is_ok() {
                format!("-n{a}")
            } else {
                a.clone()
            }
        })
        .collect();
    let (o, ops) = match opts::parse(&spec, &args) {
        Ok(x) => x,
        Err(m) => return usage(io, cmd, &m, 1),
    };
    let mut bytes = false;
    let mut amt = Amount::Count(10);
    let mut verbose: Option<bool> = None;
    for x in o {
        let r = match x {
            Opt::Num(n) => amount(&n, head).map(|a| {
                bytes = false;
                amt = a;
            }),
            Opt::Short('n', Some(v)) => amount(&v, head).map(|a| {
                bytes = false;
                amt = a;
            }),
            Opt::Short('c', Some(v)) => amount(&v, head)
                .map_err(|m| m.replace("lines", "bytes"))
                .map(|a| {
                    bytes = true;
                    amt = a;
                }),
            Opt::Short('q', _) => {
                verbose = Some(false);
                Ok(())
            }
            Opt::Short('v', _) => {
                verbose = Some(true);
                Ok(())
            }
            Opt::Short('f' | 'F', _) => {
                io.err.say("tail: -f is not supported: run_command cannot wait for a file to grow");
                return Ok(1);
            }
            _ => Ok(()),
        };
        if let Err(m) = r {
            io.err.say(format!("{cmd}: {m}"));
            return Ok(1);
        }
    }
    let files = inputs(ops);
    let headers = verbose.unwrap_or(files.len() > 1);
    let mut status = 0;
    let mut first = true;
    for f in &files {
        let Some(data) = ctx.read(cmd, f, &io.stdin, &io.err) else {
            status = 1;
            continue;
        };
        if headers {
            let name = if f == "-" { "standard input" } else { f };
            let sep = if first { "" } else { "\n" };
            io.out.write_all(format!("{sep}==> {name} <==\n").as_bytes())?;
        }
        first = false;
        let part: &[u8] = if bytes {
            let len = data.len() as u64;
            let (a, b) = match (head, amt) {
                (true, Amount::Count(n)) => (0, n.min(len)),
                (true, Amount::Other(n)) => (0, len.saturating_sub(n)),
                (false, Amount::Count(n)) => (len.saturating_sub(n), len),
                (false, Amount::Other(n)) => (n.saturating_sub(1).min(len), len),
            };
            &data[a as usize..b as usize]
        } else {
            // Byte offsets found by scanning, without a table of every line.
            let nl = |i: &usize| data[*i] == b'\n';
            // Offset just after the k-th newline from the start (or the end).
            let after_nth = |k: u64| -> usize {
                if k == 0 {
                    return 0;
                }
                (0..data.len()).filter(nl).nth(k as usize - 1).map_or(data.len(), |i| i + 1)
            };
            let total = data.iter().filter(|&&b| b == b'\n').count() as u64 + u64::from(!data.is_empty() && !data.ends_with(b"\n"));
            // Start of the last k lines.
            let last_k = |k: u64| -> usize {
                if k >= total {
                    return 0;
                }
                after_nth(total - k)
            };
            let (a, b) = match (head, amt) {
                (true, Amount::Count(n)) => (0, after_nth(n)),
                (true, Amount::Other(n)) => (0, last_k(n)),
                (false, Amount::Count(n)) => (last_k(n), data.len()),
                (false, Amount::Other(n)) => (after_nth(n.saturating_sub(1)), data.len()),
            };
            &data[a..b]
        };
        io.out.write_all(part)?;
    }
    Ok(status)
}

/// `head [-n N|-N|-n -N|-c N] [-qv] [FILE…]`.
pub fn head(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    head_tail(ctx, args, io, true)
}

/// `tail [-n N|-N|-n +N|-c N] [-qv] [FILE…]`.
pub fn tail(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    head_tail(ctx, args, io, false)
}

/// `tac [FILE…]`.
pub fn tac(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut status = 0;
    for f in inputs(args.to_vec()) {
        let Some(data) = ctx.read("tac", &f, &io.stdin, &io.err) else {
            status = 1;
            continue;
        };
        let mut ls: Vec<Vec<u8>> = data.split_inclusive(|&b| b == b'\n').map(|l| l.to_vec()).collect();
        ls.reverse();
        for l in ls {
            io.out.write_all(&l)?;
        }
    }
    Ok(status)
}

/// `nl [FILE…]` (body numbering `t`: non-empty lines).
pub fn nl(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut status = 0;
    let mut n = 0;
    let all = args.first().is_some_and(|a| a == "-ba");
    let files = if all { args[1..].to_vec() } else { args.to_vec() };
    for f in inputs(files) {
        let Some(data) = ctx.read("nl", &f, &io.stdin, &io.err) else {
            status = 1;
            continue;
        };
        let mut buf = Vec::new();
        for line in lines(&data) {
            if line.is_empty() && !all {
                buf.extend_from_slice(b"       ");
            } else {
                n += 1;
                buf.extend_from_slice(format!("{n:6}\t").as_bytes());
            }
            buf.extend_from_slice(line);
            buf.push(b'\n');
        }
        io.out.write_all(&buf)?;
    }
    Ok(status)
}

/// `wc [-lwcmL] [FILE…]`, padded as GNU wc pads.
pub fn wc(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "lwcmL",
        values: "",
        long: &[
            ("lines", false, 'l'),
            ("words", false, 'w'),
            ("bytes", false, 'c'),
            ("chars", false, 'm'),
            ("max-line-length", false, 'L'),
        ],
        numbers: false,
        permute: true,
    };
    let (o, ops) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "wc", &m, 1),
    };
    let has = |c: char| o.contains(&Opt::Short(c, None));
    let mut show = [has('l'), has('w'), has('m'), has('c'), has('L')];
    if !show.iter().any(|&b| b) {
        show = [true, true, false, true, false];
    }
    let named = !ops.is_empty();
    let files = inputs(ops);
    let mut rows: Vec<(Option<[u64; 5]>, String)> = Vec::new();
    let mut status = 0;
    let mut min_width = 1;
    let mut regular_total = 0u64;
    for f in &files {
        let data = ctx.read("wc", f, &io.stdin, &io.err);
        let Some(data) = data else {
            status = 1;
            rows.push((None, f.clone()));
            continue;
        };
        if f == "-" && io.stdin_pipe {
            min_width = 7;
        } else {
            regular_total += data.len() as u64;
        }
        let text = String::from_utf8_lossy(&data);
        let l = data.iter().filter(|&&b| b == b'\n').count() as u64;
        let w = text.split_whitespace().count() as u64;
        let m = text.chars().count() as u64;
        let longest = text.split('\n').map(|s| s.chars().count()).max().unwrap_or(0) as u64;
        rows.push((Some([l, w, m, data.len() as u64, longest]), f.clone()));
    }
    let mut width = 1;
    if rows.iter().any(|r| r.0.is_some()) {
        let mut t = regular_total;
        while t >= 10 {
            width += 1;
            t /= 10;
        }
        width = width.max(min_width);
    }
    if show.iter().filter(|&&b| b).count() == 1 && files.len() == 1 {
        width = 1;
    }
    let mut total = [0u64; 5];
    let mut out = String::new();
    let good: Vec<_> = rows.iter().filter_map(|r| r.0.map(|c| (c, &r.1))).collect();
    for (counts, name) in &good {
        for k in 0..5 {
            total[k] = if k == 4 { total[k].max(counts[k]) } else { total[k] + counts[k] };
        }
        let cols: Vec<String> = (0..5).filter(|&k| show[k]).map(|k| format!("{:>width$}", counts[k])).collect();
        out.push_str(&cols.join(" "));
        if named {
            out.push(' ');
            out.push_str(name);
        }
        out.push('\n');
    }
    if files.len() > 1 {
        let cols: Vec<String> = (0..5).filter(|&k| show[k]).map(|k| format!("{:>width$}", total[k])).collect();
        out.push_str(&cols.join(" "));
        out.push_str(" total\n");
    }
    io.out.write_all(out.as_bytes())?;
    Ok(status)
}

/// A cut list like `1,3-5,7-`: 1-based inclusive ranges.
fn parse_list(s: &str) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                if a.is_empty() { 1 } else { a.parse().ok()? },
                if b.is_empty() { usize::MAX } else { b.parse().ok()? },
            ),
            None => {
                let n: usize = part.parse().ok()?;
                (n, n)
            }
        };
        if a == 0 || b < a {
            return None;
        }
        out.push((a, b));
    }
    Some(out)
}

/// `cut -f LIST [-d DELIM] [-s] | -c LIST | -b LIST [FILE…]`.
pub fn cut(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "sn",
        values: "fcbd",
        long: &[
            ("fields", true, 'f'),
            ("characters", true, 'c'),
            ("bytes", true, 'b'),
            ("delimiter", true, 'd'),
            ("only-delimited", false, 's'),
            ("output-delimiter", true, '\0'),
            ("complement", false, '\0'),
        ],
        numbers: false,
        permute: true,
    };
    let (o, ops) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "cut", &m, 1),
    };
    let mut mode: Option<(char, Vec<(usize, usize)>)> = None;
    let mut delim = b'\t';
    let mut only = false;
    let mut out_delim: Option<Vec<u8>> = None;
    let mut complement = false;
    for x in o {
        match x {
            Opt::Short(c @ ('f' | 'c' | 'b'), Some(v)) => {
                if mode.is_some() {
                    return usage(io, "cut", "only one list may be specified", 1);
                }
                let Some(list) = parse_list(&v) else {
                    return usage(io, "cut", &format!("invalid field range: '{v}'"), 1);
                };
                mode = Some((c, list));
            }
            Opt::Short('d', Some(v)) => {
                if v.len() != 1 {
                    return usage(io, "cut", "the delimiter must be a single character", 1);
                }
                delim = v.as_bytes()[0];
            }
            Opt::Short('s', _) => only = true,
            Opt::Long("output-delimiter", v) => out_delim = v.map(String::into_bytes),
            Opt::Long("complement", _) => complement = true,
            _ => {}
        }
    }
    let Some((kind, list)) = mode else {
        return usage(io, "cut", "you must specify a list of bytes, characters, or fields", 1);
    };
    let sel = |i: usize| list.iter().any(|&(a, b)| a <= i && i <= b) != complement;
    let mut status = 0;
    for f in inputs(ops) {
        let Some(data) = ctx.read("cut", &f, &io.stdin, &io.err) else {
            status = 1;
            continue;
        };
        let mut buf = Vec::new();
        for line in lines(&data) {
            match kind {
                'f' => {
                    if !line.contains(&delim) {
                        if !only {
                            buf.extend_from_slice(line);
                            buf.push(b'\n');
                        }
                        continue;
                    }
                    let od = out_delim.clone().unwrap_or_else(|| vec![delim]);
                    let picked: Vec<&[u8]> = line
                        .split(|&b| b == delim)
                        .enumerate()
                        .filter(|(i, _)| sel(i + 1))
                        .map(|(_, f)| f)
                        .collect();
                    buf.extend_from_slice(&picked.join(od.as_slice()));
                }
                'b' => {
                    for (i, &b) in line.iter().enumerate() {
                        if sel(i + 1) {
                            buf.push(b);
                        }
                    }
                }
                _ => {
                    let s = String::from_utf8_lossy(line);
                    let t: String = s.chars().enumerate().filter(|(i, _)| sel(i + 1)).map(|(_, c)| c).collect();
                    buf.extend_from_slice(t.as_bytes());
                }
            }
            buf.push(b'\n');
        }
        io.out.write_all(&buf)?;
    }
    Ok(status)
}

/// Expands a `tr` set: ranges, `[:class:]`, escapes.
fn tr_set(s: &str) -> Result<Vec<char>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let esc = |c: char| match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        '0' => '\0',
        '\\' => '\\',
        other => other,
    };
    while i < c.len() {
        if c[i] == '[' && c.get(i + 1) == Some(&':') {
            let rest: String = c[i + 2..].iter().collect();
            if let Some(end) = rest.find(":]") {
                let name = &rest[..end];
                let all: Vec<char> = (0u8..=127).map(char::from).collect();
                let members: Vec<char> = match name {
                    "upper" => ('A'..='Z').collect(),
                    "lower" => ('a'..='z').collect(),
                    _ => all.into_iter().filter(|&ch| crate::pattern::fnmatch::posix_class(name, ch)).collect(),
                };
                if members.is_empty() {
                    return Err(format!("invalid character class '{name}'"));
                }
                out.extend(members);
                i += 2 + name.chars().count() + 2;
                continue;
            }
        }
        let lo = if c[i] == '\\' && i + 1 < c.len() {
            i += 1;
            esc(c[i])
        } else {
            c[i]
        };
        i += 1;
        if c.get(i) == Some(&'-') && i + 1 < c.len() {
            let hi = if c[i + 1] == '\\' && i + 2 < c.len() {
                i += 1;
                esc(c[i + 1])
            } else {
                c[i + 1]
            };
            i += 2;
            if hi < lo {
                return Err(format!("range-endpoints of '{lo}-{hi}' are in reverse collating sequence order"));
            }
            out.extend(lo..=hi);
        } else {
            out.push(lo);
        }
    }
    Ok(out)
}

/// `tr [-dsc] SET1 [SET2]`.
pub fn tr(_: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "dscC",
        values: "",
        long: &[("delete", false, 'd'), ("squeeze-repeats", false, 's'), ("complement", false, 'c')],
        numbers: false,
        permute: true,
    };
    let (o, ops) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "tr", &m, 1),
    };
    let has = |c: char| o.contains(&Opt::Short(c, None));
    let (del, squeeze, comp) = (has('d'), has('s'), has('c') || has('C'));
    let sets: Result<Vec<Vec<char>>, String> = ops.iter().map(|s| tr_set(s)).collect();
    let sets = match sets {
        Ok(s) => s,
        Err(m) => return usage(io, "tr", &m, 1),
    };
    let need = if del && squeeze { 2 } else if del || (squeeze && sets.len() == 1) { 1 } else { 2 };
    if sets.len() < need {
        let m = if sets.is_empty() { "missing operand".to_string() } else { format!("missing operand after '{}'", ops[0]) };
        return usage(io, "tr", &m, 1);
    }
    let set1 = &sets[0];
    let in1 = |ch: char| set1.contains(&ch) != comp;
    let text = String::from_utf8_lossy(&io.stdin).into_owned();
    let mut out = String::with_capacity(text.len());
    let mut last: Option<char> = None;
    let squeeze_set: Vec<char> = if del { sets.get(1).cloned().unwrap_or_default() } else { sets.last().cloned().unwrap_or_default() };
    for ch in text.chars() {
        let mapped = if del {
            if in1(ch) {
                continue;
            }
            Some(ch)
        } else if sets.len() >= 2 && !del {
            let set2 = &sets[1];
            if comp {
                if in1(ch) { set2.last().copied() } else { Some(ch) }
            } else {
                match set1.iter().rposition(|&c| c == ch) {
                    Some(k) => set2.get(k).or(set2.last()).copied(),
                    None => Some(ch),
                }
            }
        } else {
            Some(ch)
        };
        let Some(m) = mapped else { continue };
        if squeeze && last == Some(m) && (if sets.len() == 1 && !del { in1(m) } else { squeeze_set.contains(&m) }) {
            continue;
        }
        last = Some(m);
        out.push(m);
    }
    io.out.write_all(out.as_bytes())?;
    Ok(0)
}

/// `awk [-F SEP] 'PROGRAM' [FILE…]` for field printing only:
/// `[PATTERN] { print EXPR, … }` where PATTERN is `/re/`, `!/re/` or a
/// comparison of `NR`/`NF`/`$N` with a number or string, and EXPR is `$N`,
/// `$NF`, `$(NF-K)`, `NR`, `NF` or a "string".
pub fn awk(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut sep: Option<String> = None;
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') && args[i] != "-" {
        let a = &args[i];
        if a == "-F" && i + 1 < args.len() {
            sep = Some(args[i + 1].clone());
            i += 2;
        } else if let Some(s) = a.strip_prefix("-F") {
            sep = Some(s.to_string());
            i += 1;
        } else if a == "--" {
            i += 1;
            break;
        } else {
            io.err.say(format!("awk: option {a} is not supported (run_command's awk only prints fields: awk [-F SEP] '{{print $N}}')"));
            return Ok(2);
        }
    }
    let Some(prog) = args.get(i) else {
        io.err.say("usage: awk [-F SEP] '{print $N}' [FILE…]");
        return Ok(2);
    };
    let prog = match awk_parse(prog) {
        Ok(p) => p,
        Err(m) => {
            io.err.say(format!("awk: {m}; run_command's awk supports only '[/re/] {{print $N, …}}'-style programs"));
            return Ok(2);
        }
    };
    let sep = sep.map(|s| if s == "t" { "\t".to_string() } else { s });
    let mut status = 0;
    let mut nr = 0usize;
    for f in inputs(args[i + 1..].to_vec()) {
        let Some(data) = ctx.read("awk", &f, &io.stdin, &io.err) else {
            status = 2;
            continue;
        };
        let text = String::from_utf8_lossy(&data).into_owned();
        let mut buf = String::new();
        for line in text.lines() {
            nr += 1;
            let fields: Vec<&str> = match &sep {
                None => line.split_whitespace().collect(),
                Some(s) if s == " " => line.split_whitespace().collect(),
                Some(s) => line.split(s.as_str()).collect(),
            };
            let get = |n: i64| -> String {
                if n == 0 {
                    line.to_string()
                } else if n > 0 && (n as usize) <= fields.len() {
                    fields[n as usize - 1].to_string()
                } else {
                    String::new()
                }
            };
            let val = |e: &AwkExpr| -> String {
                match e {
                    AwkExpr::Field(n) => get(*n),
                    AwkExpr::FieldNf(k) => get(fields.len() as i64 - k),
                    AwkExpr::Nr => nr.to_string(),
                    AwkExpr::Nf => fields.len().to_string(),
                    AwkExpr::Str(s) => s.clone(),
                }
            };
            let selected = match &prog.pattern {
                AwkPat::All => true,
                AwkPat::Re(re, neg) => re.is_match(line) != *neg,
                AwkPat::Cmp(l, op, r) => {
                    let (a, b) = (val(l), val(r));
                    let ord = match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
                        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        _ => a.cmp(&b),
                    };
                    use std::cmp::Ordering::*;
                    match op.as_str() {
                        "==" => ord == Equal,
                        "!=" => ord != Equal,
                        "<" => ord == Less,
                        "<=" => ord != Greater,
                        ">" => ord == Greater,
                        _ => ord != Less,
                    }
                }
            };
            if !selected {
                continue;
            }
            match &prog.print {
                None => buf.push_str(line),
                Some(items) => {
                    for (k, group) in items.iter().enumerate() {
                        if k > 0 {
                            buf.push(' ');
                        }
                        for e in group {
                            buf.push_str(&val(e));
                        }
                    }
                }
            }
            buf.push('\n');
        }
        io.out.write_all(buf.as_bytes())?;
    }
    Ok(status)
}

enum AwkExpr {
    Field(i64),
    FieldNf(i64),
    Nr,
    Nf,
    Str(String),
}

enum AwkPat {
    All,
    Re(regex::Regex, bool),
    Cmp(AwkExpr, String, AwkExpr),
}

struct AwkProg {
    pattern: AwkPat,
    /// Comma-separated items, each a concatenation; `None` prints `$0`.
    print: Option<Vec<Vec<AwkExpr>>>,
}

fn awk_expr(t: &str) -> Result<AwkExpr, String> {
    let t = t.trim();
    if t == "NR" {
        return Ok(AwkExpr::Nr);
    }
    if t == "NF" {
        return Ok(AwkExpr::Nf);
    }
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        return Ok(AwkExpr::Str(t[1..t.len() - 1].replace("\\t", "\t").replace("\\n", "\n")));
    }
    if let Some(f) = t.strip_prefix('$') {
        let f = f.trim();
        if f == "NF" {
            return Ok(AwkExpr::FieldNf(0));
        }
        if let Some(inner) = f.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
            let inner: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
            if let Some(k) = inner.strip_prefix("NF-") {
                return k.parse().map(AwkExpr::FieldNf).map_err(|_| format!("unsupported expression {t}"));
            }
        }
        return f.parse().map(AwkExpr::Field).map_err(|_| format!("unsupported expression {t}"));
    }
    if t.parse::<f64>().is_ok() {
        return Ok(AwkExpr::Str(t.to_string()));
    }
    Err(format!("unsupported expression {t}"))
}

fn awk_parse(p: &str) -> Result<AwkProg, String> {
    let p = p.trim();
    let (pat, action) = match p.find('{') {
        Some(i) => {
            let body = p[i + 1..].trim_end();
            let body = body.strip_suffix('}').ok_or("missing }")?;
            (p[..i].trim(), Some(body.trim().trim_end_matches(';').trim()))
        }
        None => (p, None),
    };
    let pattern = if pat.is_empty() {
        AwkPat::All
    } else if let Some(re) = pat.strip_prefix('/').and_then(|x| x.strip_suffix('/')) {
        let rx = crate::pattern::posix::translate(re, crate::pattern::posix::Dialect::Extended)?;
        AwkPat::Re(regex::Regex::new(&rx).map_err(|e| e.to_string())?, false)
    } else if let Some(re) = pat.strip_prefix("!/").and_then(|x| x.strip_suffix('/')) {
        let rx = crate::pattern::posix::translate(re, crate::pattern::posix::Dialect::Extended)?;
        AwkPat::Re(regex::Regex::new(&rx).map_err(|e| e.to_string())?, true)
    } else {
        let ops = ["==", "!=", "<=", ">=", "<", ">"];
        let (i, op) = ops
            .iter()
            .filter_map(|o| pat.find(o).map(|i| (i, *o)))
            .min_by_key(|(i, o)| (*i, std::cmp::Reverse(o.len())))
            .ok_or_else(|| format!("unsupported pattern {pat}"))?;
        AwkPat::Cmp(awk_expr(&pat[..i])?, op.to_string(), awk_expr(&pat[i + op.len()..])?)
    };
    let print = match action {
        None => None,
        Some("print") | Some("print $0") => None,
        Some(a) => {
            let rest = a.strip_prefix("print").ok_or_else(|| format!("unsupported action {{{a}}}"))?;
            if !rest.starts_with([' ', '\t', '$', '"', '(']) {
                return Err(format!("unsupported action {{{a}}}"));
            }
            let mut items = Vec::new();
            for item in split_top(rest, ',') {
                let mut group = Vec::new();
                for t in tokens(&item) {
                    group.push(awk_expr(&t)?);
                }
                items.push(group);
            }
            Some(items)
        }
    };
    Ok(AwkProg { pattern, print })
}

/// Splits on `sep` outside quotes and parentheses.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let (mut q, mut depth) = (false, 0);
    for c in s.chars() {
        match c {
            '"' => q = !q,
            '(' if !q => depth += 1,
            ')' if !q => depth -= 1,
            c if c == sep && !q && depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().unwrap().push(c);
    }
    out
}

/// Splits a concatenation like `$1 ":" $2` into its parts.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut q, mut depth) = (false, 0);
    for c in s.chars() {
        match c {
            '"' => {
                q = !q;
                cur.push(c);
                if !q {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '(' if !q => {
                depth += 1;
                cur.push(c);
            }
            ')' if !q => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && !q && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '$' if !q && depth == 0 && !cur.is_empty() && !cur.ends_with('$') => {
                out.push(std::mem::take(&mut cur));
                cur.push(c);
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
