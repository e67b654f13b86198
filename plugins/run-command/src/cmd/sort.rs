//! `sort` and `uniq`, comparing bytes as `LC_ALL=C.UTF-8` does.

use super::usage;
use crate::ctx::Ctx;
use crate::io::{lines, Io};
use crate::opts::{self, Opt, Spec};
use std::cmp::Ordering;
use std::io::{self, Write};

#[derive(Clone, Copy, Default)]
struct Mods {
    numeric: bool,
    human: bool,
    reverse: bool,
    fold: bool,
    blanks: bool,
    version: bool,
}

impl Mods {
    fn any(&self) -> bool {
        self.numeric || self.human || self.reverse || self.fold || self.blanks || self.version
    }

    fn apply(&mut self, c: char) -> bool {
        match c {
            'n' => self.numeric = true,
            'h' => self.human = true,
            'r' => self.reverse = true,
            'f' => self.fold = true,
            'b' => self.blanks = true,
            'V' => self.version = true,
            'd' | 'i' | 'M' | 'g' | 'R' => {}
            _ => return false,
        }
        true
    }
}

#[derive(Clone, Copy)]
struct Key {
    sf: usize,
    sc: usize,
    ef: Option<usize>,
    ec: usize,
    mods: Mods,
}

fn parse_key(s: &str) -> Option<Key> {
    let mut mods = Mods::default();
    let (a, b) = match s.split_once(',') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let pos = |p: &str, mods: &mut Mods| -> Option<(usize, usize)> {
        let idx = p.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(p.len());
        for c in p[idx..].chars() {
            if !mods.apply(c) {
                return None;
            }
        }
        let num = &p[..idx];
        let (f, c) = match num.split_once('.') {
            Some((f, c)) => (f.parse().ok()?, c.parse().ok()?),
            None => (num.parse().ok()?, 0),
        };
        Some((f, c))
    };
    let (sf, sc) = pos(a, &mut mods)?;
    if sf == 0 {
        return None;
    }
    let (ef, ec) = match b {
        Some(b) => {
            let (f, c) = pos(b, &mut mods)?;
            (Some(f), c)
        }
        None => (None, 0),
    };
    Some(Key { sf, sc: sc.max(1), ef, ec, mods })
}

/// The byte ranges of a line's fields: with a separator, split on it; else
/// each field starts with the blanks before it.
fn fields(line: &[u8], sep: Option<u8>) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    match sep {
        Some(t) => {
            let mut start = 0;
            for (i, &b) in line.iter().enumerate() {
                if b == t {
                    out.push((start, i));
                    start = i + 1;
                }
            }
            out.push((start, line.len()));
        }
        None => {
            let mut i = 0;
            while i < line.len() {
                let start = i;
                while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
                    i += 1;
                }
                while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
                    i += 1;
                }
                out.push((start, i));
            }
        }
    }
    out
}

fn key_slice<'a>(line: &'a [u8], k: &Key, sep: Option<u8>) -> &'a [u8] {
    let f = fields(line, sep);
    let skip_blanks = |pos: usize, end: usize| {
        let mut p = pos;
        while p < end && (line[p] == b' ' || line[p] == b'\t') {
            p += 1;
        }
        p
    };
    let start = match f.get(k.sf - 1) {
        None => return &[],
        Some(&(s, e)) => {
            let s = if k.mods.blanks { skip_blanks(s, e) } else { s };
            (s + k.sc - 1).min(line.len())
        }
    };
    let end = match k.ef {
        None => line.len(),
        Some(ef) => match f.get(ef.max(1) - 1) {
            None => line.len(),
            Some(&(s, e)) => {
                if k.ec == 0 {
                    e
                } else {
                    let s = if k.mods.blanks { skip_blanks(s, e) } else { s };
                    (s + k.ec).min(e.max(s))
                }
            }
        },
    };
    if end <= start {
        &[]
    } else {
        &line[start..end]
    }
}

/// The leading number of `s` (blanks skipped), as sort -n reads it.
fn number(s: &[u8]) -> f64 {
    let t = String::from_utf8_lossy(s);
    let t = t.trim_start();
    let mut end = 0;
    let b = t.as_bytes();
    if end < b.len() && b[end] == b'-' {
        end += 1;
    }
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    if end < b.len() && b[end] == b'.' {
        end += 1;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

fn human(s: &[u8]) -> f64 {
    let t = String::from_utf8_lossy(s);
    let t = t.trim_start();
    let n = number(t.as_bytes());
    let digits = t.trim_start_matches('-').chars().take_while(|c| c.is_ascii_digit() || *c == '.').count();
    let unit = t.trim_start_matches('-')[digits..].chars().next();
    let p = match unit {
        Some('K' | 'k') => 1,
        Some('M') => 2,
        Some('G') => 3,
        Some('T') => 4,
        Some('P') => 5,
        _ => 0,
    };
    n * 1024f64.powi(p)
}

fn version_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        let xs = x.iter().take_while(|c| !c.is_ascii_digit()).count();
        let ys = y.iter().take_while(|c| !c.is_ascii_digit()).count();
        let o = x[..xs].cmp(&y[..ys]);
        if o != Ordering::Equal {
            return o;
        }
        x = &x[xs..];
        y = &y[ys..];
        let xd = x.iter().take_while(|c| c.is_ascii_digit()).count();
        let yd = y.iter().take_while(|c| c.is_ascii_digit()).count();
        let xn: u128 = std::str::from_utf8(&x[..xd]).unwrap().parse().unwrap_or(0);
        let yn: u128 = std::str::from_utf8(&y[..yd]).unwrap().parse().unwrap_or(0);
        let o = xn.cmp(&yn);
        if o != Ordering::Equal {
            return o;
        }
        x = &x[xd..];
        y = &y[yd..];
        if x.is_empty() && y.is_empty() {
            return Ordering::Equal;
        }
    }
}

fn compare(a: &[u8], b: &[u8], m: &Mods) -> Ordering {
    let o = if m.numeric {
        number(a).partial_cmp(&number(b)).unwrap_or(Ordering::Equal)
    } else if m.human {
        human(a).partial_cmp(&human(b)).unwrap_or(Ordering::Equal)
    } else if m.version {
        version_cmp(a, b)
    } else {
        let strip = |s: &[u8]| -> Vec<u8> {
            let s = if m.blanks { s.iter().skip_while(|&&c| c == b' ' || c == b'\t').copied().collect() } else { s.to_vec() };
            if m.fold { s.to_ascii_uppercase() } else { s }
        };
        strip(a).cmp(&strip(b))
    };
    if m.reverse {
        o.reverse()
    } else {
        o
    }
}

/// `sort [-nrufbhVs] [-k POS1[,POS2]]… [-t SEP] [-o FILE] [FILE…]`.
pub fn sort(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "nrufbhVsdicgMRz",
        values: "kto",
        long: &[
            ("numeric-sort", false, 'n'),
            ("reverse", false, 'r'),
            ("unique", false, 'u'),
            ("ignore-case", false, 'f'),
            ("human-numeric-sort", false, 'h'),
            ("version-sort", false, 'V'),
            ("key", true, 'k'),
            ("field-separator", true, 't'),
            ("output", true, 'o'),
            ("stable", false, 's'),
            ("ignore-leading-blanks", false, 'b'),
        ],
        numbers: false,
        permute: true,
    };
    let (o, ops) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "sort", &m, 2),
    };
    let mut g = Mods::default();
    let (mut unique, mut stable) = (false, false);
    let mut keys = Vec::new();
    let mut sep = None;
    let mut output = None;
    for x in o {
        match x {
            Opt::Short('u', _) => unique = true,
            Opt::Short('s', _) => stable = true,
            Opt::Short('k', Some(v)) => match parse_key(&v) {
                Some(k) => keys.push(k),
                None => return usage(io, "sort", &format!("invalid key: '{v}'"), 2),
            },
            Opt::Short('t', Some(v)) => {
                if v.len() != 1 {
                    io.err.say(format!("sort: multi-character tab '{v}'"));
                    return Ok(2);
                }
                sep = Some(v.as_bytes()[0]);
            }
            Opt::Short('o', Some(v)) => output = Some(v),
            Opt::Short(c, None) => {
                g.apply(c);
            }
            _ => {}
        }
    }
    for k in keys.iter_mut() {
        if !k.mods.any() {
            k.mods = g;
        }
    }
    let mut data = Vec::new();
    let mut status = 0;
    for f in if ops.is_empty() { vec!["-".to_string()] } else { ops } {
        match ctx.read("sort", &f, &io.stdin, &io.err) {
            Some(mut d) => {
                if !d.is_empty() && !d.ends_with(b"\n") {
                    d.push(b'\n');
                }
                data.extend(d);
            }
            None => return Ok(2),
        }
    }
    let mut ls: Vec<&[u8]> = lines(&data).collect();
    let cmp_keys = |a: &[u8], b: &[u8]| -> Ordering {
        if keys.is_empty() {
            return compare(a, b, &g);
        }
        for k in &keys {
            let o = compare(key_slice(a, k, sep), key_slice(b, k, sep), &k.mods);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    };
    let last_resort = !(stable || unique) && (!keys.is_empty() || g.numeric || g.human || g.fold || g.blanks || g.version);
    ls.sort_by(|a, b| {
        let o = cmp_keys(a, b);
        if o == Ordering::Equal && last_resort {
            let r = a.cmp(b);
            if g.reverse { r.reverse() } else { r }
        } else {
            o
        }
    });
    if unique {
        ls.dedup_by(|b, a| cmp_keys(a, b) == Ordering::Equal);
    }
    let mut buf = Vec::with_capacity(data.len());
    for l in ls {
        buf.extend_from_slice(l);
        buf.push(b'\n');
    }
    if let Some(path) = output {
        let Some(abs) = ctx.resolve("sort", &path, &io.err) else { return Ok(2) };
        if let Err(e) = std::fs::write(&abs, &buf) {
            let m = ctx.io_msg("sort", &format!("open failed: {path}"), &e);
            io.err.say(m);
            status = 2;
        }
        return Ok(status);
    }
    io.out.write_all(&buf)?;
    Ok(status)
}

/// `uniq [-cdui] [-f N] [-s N] [INPUT]`.
pub fn uniq(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "cdui",
        values: "fsw",
        long: &[
            ("count", false, 'c'),
            ("repeated", false, 'd'),
            ("unique", false, 'u'),
            ("ignore-case", false, 'i'),
            ("skip-fields", true, 'f'),
            ("skip-chars", true, 's'),
            ("check-chars", true, 'w'),
        ],
        numbers: false,
        permute: true,
    };
    let (o, ops) = match opts::parse(&spec, args) {
        Ok(x) => x,
        Err(m) => return usage(io, "uniq", &m, 1),
    };
    let has = |c: char| o.iter().any(|x| matches!(x, Opt::Short(k, None) if *k == c));
    let num = |c: char| {
        o.iter().find_map(|x| match x {
            Opt::Short(k, Some(v)) if *k == c => v.parse::<usize>().ok(),
            _ => None,
        })
    };
    let (count, dup, uniq_only, fold) = (has('c'), has('d'), has('u'), has('i'));
    let (skip_f, skip_c, check) = (num('f').unwrap_or(0), num('s').unwrap_or(0), num('w'));
    let input = ops.first().cloned().unwrap_or_else(|| "-".into());
    let Some(data) = ctx.read("uniq", &input, &io.stdin, &io.err) else {
        return Ok(1);
    };
    let key = |l: &[u8]| -> Vec<u8> {
        let mut s = l;
        for _ in 0..skip_f {
            let b = s.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
            let w = s[b..].iter().take_while(|&&c| c != b' ' && c != b'\t').count();
            s = &s[b + w..];
        }
        s = &s[skip_c.min(s.len())..];
        if let Some(w) = check {
            s = &s[..w.min(s.len())];
        }
        if fold { s.to_ascii_lowercase() } else { s.to_vec() }
    };
    let mut buf = Vec::new();
    let emit = |line: &[u8], n: usize, buf: &mut Vec<u8>| {
        if (dup && n < 2) || (uniq_only && n > 1) {
            return;
        }
        if count {
            buf.extend_from_slice(format!("{n:7} ").as_bytes());
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
    };
    let mut cur: Option<(&[u8], Vec<u8>, usize)> = None;
    for l in lines(&data) {
        let k = key(l);
        match &mut cur {
            Some((_, ck, n)) if *ck == k => *n += 1,
            _ => {
                if let Some((line, _, n)) = cur.take() {
                    emit(line, n, &mut buf);
                }
                cur = Some((l, k, 1));
            }
        }
    }
    if let Some((line, _, n)) = cur {
        emit(line, n, &mut buf);
    }
    io.out.write_all(&buf)?;
    Ok(0)
}
