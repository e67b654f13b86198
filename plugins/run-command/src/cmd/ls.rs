//! `ls` as GNU ls writes into a pipe: one name per line, `-l` long format,
//! `-a`/`-A`, `-R`, `-d`, `-h`, `-t`, `-S`, `-r`, `-F`/`-p`. The sandbox
//! does not reveal permissions or owners: long format shows `rw-r--r--`
//! style modes for files and directories and `user` as owner and group.

use super::usage;
use crate::ctx::{Ctx, Kind};
use crate::io::Io;
use crate::opts::{self, Opt, Spec};
use std::fs::Metadata;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default, Clone, Copy)]
struct Conf {
    long: bool,
    all: bool,
    almost: bool,
    recursive: bool,
    dir_itself: bool,
    human: bool,
    by_time: bool,
    by_size: bool,
    reverse: bool,
    classify: bool,
    slash: bool,
    unsorted: bool,
}

struct Item {
    name: String,
    abs: String,
    meta: Option<Metadata>,
}

/// `ls [OPTION]… [FILE]…`.
pub fn ls(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let spec = Spec {
        flags: "laARdhtSr1FpUCxsiGgonQ",
        values: "",
        long: &[
            ("all", false, 'a'),
            ("almost-all", false, 'A'),
            ("recursive", false, 'R'),
            ("directory", false, 'd'),
            ("human-readable", false, 'h'),
            ("reverse", false, 'r'),
            ("classify", false, 'F'),
            ("color", false, '\0'),
            ("group-directories-first", false, '\0'),
        ],
        numbers: false,
        permute: true,
    };
    let args: Vec<String> = args.iter().filter(|a| !a.starts_with("--color")).cloned().collect();
    let (o, mut ops) = match opts::parse(&spec, &args) {
        Ok(x) => x,
        Err(m) => return usage(io, "ls", &m, 2),
    };
    let mut c = Conf::default();
    for x in o {
        if let Opt::Short(ch, _) = x {
            match ch {
                'l' | 'g' | 'o' | 'n' => c.long = true,
                'a' => c.all = true,
                'A' => c.almost = true,
                'R' => c.recursive = true,
                'd' => c.dir_itself = true,
                'h' => c.human = true,
                't' => c.by_time = true,
                'S' => c.by_size = true,
                'r' => c.reverse = true,
                'F' => c.classify = true,
                'p' => c.slash = true,
                'U' => c.unsorted = true,
                _ => {}
            }
        }
    }
    if ops.is_empty() {
        ops.push(".".into());
    }
    let mut status = 0;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for op in &ops {
        let abs = match ctx.abs(op) {
            Ok(a) => a,
            Err(m) => {
                let m = ctx.refuse(format!("ls: cannot access '{op}': {m}"));
                io.err.say(m);
                status = 2;
                continue;
            }
        };
        let lmeta = std::fs::symlink_metadata(&abs);
        let meta = match lmeta {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("ls: cannot access '{op}': {}", crate::ctx::describe(&e));
                if crate::ctx::is_refusal(&e) {
                    ctx.refuse(msg.clone());
                }
                io.err.say(msg);
                status = 2;
                continue;
            }
        };
        let is_dir = std::fs::metadata(&abs).is_ok_and(|m| m.is_dir());
        let follow_link = meta.file_type().is_symlink() && is_dir && !c.long;
        let meta = if follow_link { std::fs::metadata(&abs).unwrap_or(meta) } else { meta };
        let item = Item {
            name: op.clone(),
            abs,
            meta: Some(meta),
        };
        let treat_as_dir = is_dir && !c.dir_itself && (!item.meta.as_ref().unwrap().file_type().is_symlink() || !c.long);
        if treat_as_dir {
            dirs.push(item);
        } else {
            files.push(item);
        }
    }
    sort_items(&mut files, &c);
    sort_items(&mut dirs, &c);
    let mut first = true;
    if !files.is_empty() {
        write_items(ctx, io, &files, &c, false)?;
        first = false;
    }
    let headers = ops.len() > 1 || c.recursive;
    for d in &dirs {
        status = status.max(list_dir(ctx, io, &d.name, &d.abs, &c, headers, &mut first)?);
    }
    Ok(status)
}

fn list_dir(ctx: &mut Ctx, io: &mut Io, shown: &str, abs: &str, c: &Conf, headers: bool, first: &mut bool) -> io::Result<i32> {
    let mut status = 0;
    if headers {
        let sep = if *first { "" } else { "\n" };
        io.out.write_all(format!("{sep}{shown}:\n").as_bytes())?;
    }
    *first = false;
    let names = match ctx.list(abs) {
        Ok(n) => n,
        Err(e) => {
            let m = ctx.io_msg("ls: cannot open directory", &format!("'{shown}'"), &e);
            io.err.say(m);
            return Ok(2);
        }
    };
    let mut items = Vec::new();
    if c.all {
        for dot in [".", ".."] {
            let a = if dot == "." { abs.to_string() } else { format!("{abs}/..") };
            items.push(Item { name: dot.into(), meta: std::fs::metadata(&a).ok(), abs: a });
        }
    }
    for n in names {
        if n.starts_with('.') && !(c.all || c.almost) {
            continue;
        }
        let a = format!("{}/{}", abs.trim_end_matches('/'), n);
        let meta = std::fs::symlink_metadata(&a).ok();
        items.push(Item { name: n, abs: a, meta });
    }
    sort_items(&mut items, c);
    write_items(ctx, io, &items, c, true)?;
    if c.recursive {
        for it in &items {
            if it.name == "." || it.name == ".." {
                continue;
            }
            let is_dir = it.meta.as_ref().is_some_and(|m| m.is_dir());
            if is_dir {
                let sub = crate::ctx::join_shown(shown, &it.name);
                status = status.max(list_dir(ctx, io, &sub, &it.abs, c, true, first)?);
            }
        }
    }
    Ok(status)
}

fn mtime(m: &Option<Metadata>) -> i64 {
    m.as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn sort_items(items: &mut [Item], c: &Conf) {
    if c.unsorted {
        return;
    }
    items.sort_by(|a, b| {
        let o = if c.by_size {
            let (x, y) = (a.meta.as_ref().map_or(0, |m| m.len()), b.meta.as_ref().map_or(0, |m| m.len()));
            y.cmp(&x).then_with(|| a.name.cmp(&b.name))
        } else if c.by_time {
            mtime(&b.meta).cmp(&mtime(&a.meta)).then_with(|| a.name.cmp(&b.name))
        } else {
            a.name.cmp(&b.name)
        };
        if c.reverse {
            o.reverse()
        } else {
            o
        }
    });
}

fn human(n: u64) -> String {
    if n < 1024 {
        return n.to_string();
    }
    let units = ['K', 'M', 'G', 'T', 'P'];
    let mut v = n as f64;
    let mut u = 0;
    v /= 1024.0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if v < 10.0 {
        let r = (v * 10.0).ceil() / 10.0;
        if r >= 10.0 {
            format!("{}{}", r as u64, units[u])
        } else {
            format!("{r:.1}{}", units[u])
        }
    } else {
        format!("{}{}", v.ceil() as u64, units[u])
    }
}

/// `Mon DD HH:MM` within six months, `Mon DD  YYYY` otherwise (UTC).
fn date(m: &Option<Metadata>) -> String {
    let secs = mtime(m) / 1_000_000_000;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let (y, mo, d) = civil(days);
    let recent = secs <= now + 3600 && now - secs < 15_778_476;
    if recent {
        format!("{} {:>2} {:02}:{:02}", MON[(mo - 1) as usize], d, rem / 3600, (rem % 3600) / 60)
    } else {
        format!("{} {:>2}  {}", MON[(mo - 1) as usize], d, y)
    }
}

/// Month names, for dates.
pub const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// (year, month 1–12, day) of a day count since 1970-01-01 (Howard
/// Hinnant's civil-from-days).
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(mo <= 2), mo, d)
}

fn write_items(ctx: &mut Ctx, io: &mut Io, items: &[Item], c: &Conf, in_dir: bool) -> io::Result<()> {
    let mut out = String::new();
    let suffix = |it: &Item| -> &'static str {
        let kind = it.meta.as_ref().map(Kind::of);
        if c.classify {
            match kind {
                Some(Kind::Dir) => "/",
                Some(Kind::Link) if !c.long => "@",
                Some(Kind::Link) => "",
                _ => "",
            }
        } else if c.slash && kind == Some(Kind::Dir) {
            "/"
        } else {
            ""
        }
    };
    if !c.long {
        for it in items {
            out.push_str(&it.name);
            out.push_str(suffix(it));
            out.push('\n');
        }
        io.out.write_all(out.as_bytes())?;
        return Ok(());
    }
    let size = |it: &Item| {
        let n = it.meta.as_ref().map_or(0, |m| m.len());
        if c.human { human(n) } else { n.to_string() }
    };
    let nlink = |it: &Item| -> u64 {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            it.meta.as_ref().map_or(1, |m| m.nlink())
        }
        #[cfg(not(unix))]
        {
            let _ = it;
            1
        }
    };
    let wsize = items.iter().map(|i| size(i).len()).max().unwrap_or(1);
    let wlink = items.iter().map(|i| nlink(i).to_string().len()).max().unwrap_or(1);
    if in_dir {
        let blocks: u64 = items
            .iter()
            .map(|i| i.meta.as_ref().map_or(0, |m| m.len().div_ceil(4096) * 4))
            .sum();
        let total = if c.human { human(blocks * 1024) } else { blocks.to_string() };
        out.push_str(&format!("total {total}\n"));
    }
    for it in items {
        let kind = it.meta.as_ref().map(Kind::of);
        let mode = match kind {
            Some(Kind::Dir) => "drwxr-xr-x",
            Some(Kind::Link) => "lrwxrwxrwx",
            Some(Kind::Other) => "prw-r--r--",
            _ => "-rw-r--r--",
        };
        out.push_str(&format!(
            "{mode} {:>wlink$} user user {:>wsize$} {} {}{}",
            nlink(it),
            size(it),
            date(&it.meta),
            it.name,
            suffix(it)
        ));
        if kind == Some(Kind::Link) {
            if let Ok(t) = std::fs::read_link(&it.abs) {
                out.push_str(&format!(" -> {}", t.display()));
            }
        }
        out.push('\n');
    }
    let _ = ctx;
    io.out.write_all(out.as_bytes())?;
    Ok(())
}
