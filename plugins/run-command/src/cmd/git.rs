//! A read-only `git` over a mounted repository's `.git`, with gitoxide
//! (pure Rust; it builds for `wasm32-wasip2`): `ls-files`, `grep`, `log`
//! (`--oneline`, `-n N`), `show` (`REV`, `REV:PATH`) and `diff` (the work
//! tree against `HEAD`, or `diff REV`). Output as git writes into a pipe:
//! no colours, no pager, no decorations. The repository is opened isolated:
//! no system or user configuration, no environment.

use super::grep::{Grep, Parsed};
use crate::ctx::Ctx;
use crate::io::Io;
use crate::pattern::{fnmatch, posix::Dialect};
use gix::bstr::ByteSlice;
use std::collections::BTreeMap;
use std::io::{self, Write};

type Res<T> = Result<T, String>;

/// `git SUBCOMMAND …`.
pub fn git(ctx: &mut Ctx, args: &[String], io: &mut Io) -> io::Result<i32> {
    let mut args = args.to_vec();
    // Global options that change nothing here.
    while let Some(a) = args.first() {
        if a == "--no-pager" || a.starts_with("--no-optional-locks") || a == "-P" {
            args.remove(0);
        } else if a == "-c" && args.len() > 1 {
            args.drain(..2);
        } else {
            break;
        }
    }
    let Some(sub) = args.first().cloned() else {
        io.err.say("usage: git <command> [<args>] (run_command's git: ls-files, grep, log, show, diff)");
        return Ok(1);
    };
    let rest = &args[1..];
    if !matches!(sub.as_str(), "ls-files" | "grep" | "log" | "show" | "diff") {
        io.err.say(format!(
            "git: '{sub}' is not available: run_command's git is read-only and has ls-files, grep, log, show and diff"
        ));
        return Ok(1);
    }
    let repo = match Repo::find(ctx) {
        Ok(r) => r,
        Err(m) => {
            let m = refusal_behind(ctx).unwrap_or(m);
            io.err.say(format!("fatal: {m}"));
            return Ok(128);
        }
    };
    let r = match sub.as_str() {
        "ls-files" => ls_files(ctx, &repo, rest, io),
        "grep" => return grep(ctx, &repo, rest, io),
        "log" => log(&repo, rest, io),
        "show" => show(&repo, rest, io),
        _ => diff(ctx, &repo, rest, io),
    };
    match r {
        Ok(code) => Ok(code),
        Err(m) if m == "\u{0}pipe" => Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe")),
        Err(m) => {
            let m = refusal_behind(ctx).unwrap_or(m);
            io.err.say(format!("fatal: {m}"));
            Ok(128)
        }
    }
}

/// When git failed, whether the sandbox refused a file of the repository's
/// object store: a clone made with `git clone /local/path` hard-links its
/// pack files, which the filesystem gate does not open (another link may
/// lie outside the mount), and gitoxide then reports only a missing
/// object. The refusal is recorded (the call is `denied`, and warden adds
/// the rule and the policy key that would allow it) and named instead.
/// Looks at most at a few thousand files, and only after a failure.
fn refusal_behind(ctx: &mut Ctx) -> Option<String> {
    let mut dir = ctx.cwd.clone();
    let git_dir = loop {
        if std::fs::metadata(format!("{dir}/.git")).is_ok_and(|m| m.is_dir()) {
            break format!("{dir}/.git");
        }
        let i = dir.rfind('/').filter(|i| *i > 0)?;
        dir.truncate(i);
    };
    let objects = format!("{git_dir}/objects");
    let mut dirs = vec![format!("{objects}/pack")];
    if let Ok(rd) = std::fs::read_dir(&objects) {
        dirs.extend(rd.flatten().map(|e| e.path().to_string_lossy().into_owned()).filter(|p| !p.ends_with("/pack")));
    }
    let mut looked = 0;
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            looked += 1;
            if looked > 4096 {
                return None;
            }
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            if let Err(err) = std::fs::File::open(&path) {
                if crate::ctx::is_refusal(&err) {
                    let shown = path.to_string_lossy().into_owned();
                    let why = crate::ctx::describe(&err);
                    return Some(ctx.refuse(format!(
                        "cannot read the repository's objects: {shown}: {why} (a clone made with `git clone /local/path` hard-links its object files; clone with --no-hardlinks, or see the rule below)"
                    )));
                }
            }
        }
    }
    None
}

fn pipe(e: io::Error) -> String {
    if e.kind() == io::ErrorKind::BrokenPipe {
        "\u{0}pipe".into()
    } else {
        e.to_string()
    }
}

struct Repo {
    repo: gix::Repository,
    /// Guest path of the work tree.
    root: String,
    /// The working directory relative to the work tree (`""` or `dir/`).
    prefix: String,
}

impl Repo {
    /// The repository whose work tree holds the working directory, looked
    /// for from there up to the top of its mount.
    fn find(ctx: &mut Ctx) -> Res<Repo> {
        let mut dir = ctx.cwd.clone();
        loop {
            if std::fs::metadata(format!("{dir}/.git")).is_ok() {
                Self::check_alternates(ctx, &format!("{dir}/.git"))?;
                let repo = gix::open_opts(&dir, gix::open::Options::isolated()).map_err(|e| e.to_string())?;
                let prefix = ctx.cwd[dir.len()..].trim_start_matches('/');
                let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
                return Ok(Repo { repo, root: dir, prefix });
            }
            match dir.rfind('/') {
                Some(i) if ctx.abs(&dir[..i.max(1)]).is_ok() && i > 0 => dir.truncate(i),
                _ => return Err("not a git repository (or any of the parent directories): .git".into()),
            }
        }
    }

    /// Refuses, as a sandbox refusal, object stores that
    /// `objects/info/alternates` names outside the mounts: the sandbox
    /// would deny the reads anyway, and the session log must show the
    /// attempt as `denied`, not as git's "fatal" with outcome `ok`.
    fn check_alternates(ctx: &mut Ctx, git_dir: &str) -> Res<()> {
        let path = format!("{git_dir}/objects/info/alternates");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let target = if line.starts_with('/') {
                line.to_string()
            } else {
                format!("{git_dir}/objects/{line}")
            };
            if let Err(m) = ctx.abs(&target) {
                return Err(ctx.refuse(format!(
                    "objects/info/alternates names the object store {line}: {m}"
                )));
            }
        }
        Ok(())
    }

    /// A path relative to the work tree shown relative to the working directory.
    fn show_path(&self, path: &str) -> String {
        if self.prefix.is_empty() {
            return path.to_string();
        }
        let mut up = String::new();
        let mut pre = self.prefix.as_str();
        while !pre.is_empty() {
            if let Some(rest) = path.strip_prefix(pre) {
                return format!("{up}{rest}");
            }
            let t = pre.trim_end_matches('/');
            pre = match t.rfind('/') {
                Some(i) => &pre[..i + 1],
                None => "",
            };
            up.push_str("../");
        }
        format!("{up}{path}")
    }

    /// Pathspecs (relative to the working directory) as work-tree paths.
    fn specs(&self, ops: &[String]) -> Vec<String> {
        ops.iter()
            .map(|p| {
                let joined = format!("{}{}", self.prefix, p);
                let mut parts: Vec<&str> = Vec::new();
                for c in joined.split('/') {
                    match c {
                        "" | "." => {}
                        ".." => {
                            parts.pop();
                        }
                        c => parts.push(c),
                    }
                }
                parts.join("/")
            })
            .collect()
    }

    fn commit(&self, rev: &str) -> Res<gix::Commit<'_>> {
        let id = self.repo.rev_parse_single(rev).map_err(|e| {
            let mut chain = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                chain.push_str(&format!(": {s}"));
                src = s.source();
            }
            format!("ambiguous argument '{rev}': unknown revision or path not in the working tree. [{chain}]")
        })?;
        let obj = id.object().map_err(|e| e.to_string())?;
        obj.peel_to_commit().map_err(|e| e.to_string())
    }

    /// path → (blob id, mode) of every file in a commit's tree.
    fn tree_files(&self, c: &gix::Commit<'_>) -> Res<BTreeMap<String, (gix::ObjectId, u32)>> {
        let tree = c.tree().map_err(|e| e.to_string())?;
        let mut rec = gix::traverse::tree::Recorder::default();
        tree.traverse().breadthfirst(&mut rec).map_err(|e| e.to_string())?;
        Ok(rec
            .records
            .into_iter()
            .filter(|e| !e.mode.is_tree())
            .map(|e| (e.filepath.to_string(), (e.oid, e.mode.value() as u32)))
            .collect())
    }

    fn blob(&self, id: gix::ObjectId) -> Res<Vec<u8>> {
        let obj = self.repo.find_object(id).map_err(|e| e.to_string())?;
        Ok(obj.data.clone())
    }

    fn short(&self, id: gix::ObjectId) -> String {
        let full = id.to_hex().to_string();
        match self.repo.find_object(id).ok().and_then(|o| o.id().shorten().ok()) {
            Some(p) => p.to_string(),
            None => full[..7].to_string(),
        }
    }
}

fn matches_spec(path: &str, specs: &[String]) -> bool {
    specs.is_empty()
        || specs.iter().any(|s| {
            s.is_empty()
                || path == s
                || path.starts_with(&format!("{s}/"))
                || (fnmatch::has_wildcards(s) && fnmatch::matches(s, path, false))
        })
}

fn ls_files(ctx: &mut Ctx, repo: &Repo, args: &[String], io: &mut Io) -> Res<i32> {
    let _ = ctx;
    let ops: Vec<String> = args.iter().filter(|a| *a != "--" && !a.starts_with('-')).cloned().collect();
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && *a != "--" && *a != "--cached" && *a != "-c") {
        return Err(format!("ls-files: option '{bad}' is not supported by run_command's git"));
    }
    let specs = repo.specs(&ops);
    let index = repo.repo.index_or_empty().map_err(|e| {
        let mut chain = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain.push_str(&format!(": {s}"));
            src = s.source();
        }
        chain
    })?;
    let mut out = String::new();
    let mut last = String::new();
    for e in index.entries() {
        let path = e.path(&index).to_str_lossy().into_owned();
        if path == last {
            continue;
        }
        if !path.starts_with(&repo.prefix) && specs.is_empty() {
            continue;
        }
        if !matches_spec(&path, &specs) {
            continue;
        }
        out.push_str(&repo.show_path(&path));
        out.push('\n');
        last = path;
    }
    io.out.write_all(out.as_bytes()).map_err(pipe)?;
    Ok(0)
}

fn grep(ctx: &mut Ctx, repo: &Repo, args: &[String], io: &mut Io) -> io::Result<i32> {
    // git grep reads grep's options; it always names files and lists only
    // files with matches under -c.
    let Parsed { mut c, m, ops } = match super::grep::parse(ctx, args, io, Dialect::Basic) {
        Ok(p) => p,
        Err(_) => return Ok(128),
    };
    if c.filename.is_none() {
        c.filename = Some(true);
    }
    c.count_skip_zero = true;
    let ops: Vec<String> = ops.into_iter().filter(|o| o != "--").collect();
    let specs = repo.specs(&ops);
    let index = match repo.repo.index_or_empty() {
        Ok(i) => i,
        Err(e) => {
            io.err.say(format!("fatal: {e}"));
            return Ok(128);
        }
    };
    let mut paths: Vec<String> = index.entries().iter().map(|e| e.path(&index).to_str_lossy().into_owned()).collect();
    paths.dedup();
    let mut g = Grep { c, m, any_selected: false, error: false, printed_any: false, stop_all: false, multi: true };
    let mut data = Vec::new();
    for p in paths {
        if g.stop_all {
            break;
        }
        if (!p.starts_with(&repo.prefix) && specs.is_empty()) || !matches_spec(&p, &specs) {
            continue;
        }
        let abs = format!("{}/{}", repo.root, p);
        if crate::ctx::read_into(&abs, &mut data).is_err() {
            continue;
        }
        if data.contains(&0) {
            continue;
        }
        g.search(io, &repo.show_path(&p), &data)?;
    }
    let _ = ctx;
    Ok(if g.any_selected { 0 } else { 1 })
}

/// `Wed Mar 6 08:00:00 2024 -0500`, in the signature's own offset.
fn git_date(t: gix::date::Time) -> String {
    let local = t.seconds + t.offset as i64;
    let days = local.div_euclid(86400);
    let rem = local.rem_euclid(86400);
    let (y, mo, d) = super::ls::civil(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let wd = DAYS[days.rem_euclid(7) as usize];
    let sign = if t.offset < 0 { '-' } else { '+' };
    let off = t.offset.unsigned_abs();
    format!(
        "{wd} {} {d} {:02}:{:02}:{:02} {y} {sign}{:02}{:02}",
        super::ls::MON[(mo - 1) as usize],
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        off / 3600,
        (off % 3600) / 60
    )
}

fn header(repo: &Repo, c: &gix::Commit<'_>, out: &mut String) -> Res<()> {
    out.push_str(&format!("commit {}\n", c.id));
    let parents: Vec<_> = c.parent_ids().collect();
    if parents.len() > 1 {
        let p: Vec<String> = parents.iter().map(|p| repo.short(p.detach())).collect();
        out.push_str(&format!("Merge: {}\n", p.join(" ")));
    }
    let a = c.author().map_err(|e| e.to_string())?;
    let t = a.time().map_err(|e| e.to_string())?;
    out.push_str(&format!("Author: {} <{}>\n", a.name, a.email));
    out.push_str(&format!("Date:   {}\n\n", git_date(t)));
    let msg = c.message_raw_sloppy().to_str_lossy().into_owned();
    for line in msg.trim_end_matches('\n').split('\n') {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    Ok(())
}

fn log(repo: &Repo, args: &[String], io: &mut Io) -> Res<i32> {
    let mut oneline = false;
    let mut max: Option<usize> = None;
    let mut rev = "HEAD".to_string();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        match a.as_str() {
            "--oneline" => oneline = true,
            "-n" | "--max-count" => {
                max = args.get(i).and_then(|v| v.parse().ok());
                i += 1;
            }
            "--no-decorate" | "--no-color" | "--abbrev-commit" | "--pretty=medium" => {}
            "--pretty=oneline" | "--format=oneline" => oneline = true,
            s if s.starts_with("--max-count=") => max = s[12..].parse().ok(),
            s if s.starts_with("-n") && s[2..].parse::<usize>().is_ok() => max = s[2..].parse().ok(),
            s if s.starts_with('-') && s[1..].parse::<usize>().is_ok() => max = s[1..].parse().ok(),
            s if s.starts_with('-') => return Err(format!("log: option '{s}' is not supported by run_command's git (--oneline, -n N)")),
            s => rev = s.to_string(),
        }
    }
    let head = repo.commit(&rev)?;
    let walk = head.id().ancestors().all().map_err(|e| e.to_string())?;
    let mut out = String::new();
    for (k, info) in walk.enumerate() {
        if max.is_some_and(|m| k >= m) {
            break;
        }
        let info = info.map_err(|e| e.to_string())?;
        let c = info.object().map_err(|e| e.to_string())?;
        if oneline {
            let msg = c.message_raw_sloppy().to_str_lossy().into_owned();
            let title = msg.lines().next().unwrap_or("");
            out.push_str(&format!("{} {}\n", repo.short(c.id), title));
        } else {
            if k > 0 {
                out.push('\n');
            }
            header(repo, &c, &mut out)?;
        }
    }
    io.out.write_all(out.as_bytes()).map_err(pipe)?;
    Ok(0)
}

fn show(repo: &Repo, args: &[String], io: &mut Io) -> Res<i32> {
    let revs: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if let Some(bad) = args.iter().find(|a| a.starts_with('-') && *a != "--no-color") {
        return Err(format!("show: option '{bad}' is not supported by run_command's git"));
    }
    let rev = revs.first().map(|s| s.as_str()).unwrap_or("HEAD");
    if let Some((r, path)) = rev.split_once(':') {
        let c = repo.commit(if r.is_empty() { "HEAD" } else { r })?;
        let path = repo.specs(&[path.to_string()]).remove(0);
        let files = repo.tree_files(&c)?;
        let Some((id, _)) = files.get(&path) else {
            return Err(format!("path '{path}' does not exist in '{}'", if r.is_empty() { "HEAD" } else { r }));
        };
        io.out.write_all(&repo.blob(*id)?).map_err(pipe)?;
        return Ok(0);
    }
    let c = repo.commit(rev)?;
    let mut out = String::new();
    header(repo, &c, &mut out)?;
    let after = repo.tree_files(&c)?;
    let before = match c.parent_ids().next() {
        Some(p) => {
            let pc = repo.commit(&p.detach().to_string())?;
            repo.tree_files(&pc)?
        }
        None => BTreeMap::new(),
    };
    let mut body = Vec::new();
    diff_trees(repo, &before, &after.into_iter().map(|(k, (id, m))| (k, Side::Blob(id, m))).collect(), &mut body)?;
    if !body.is_empty() {
        out.push('\n');
    }
    io.out.write_all(out.as_bytes()).map_err(pipe)?;
    io.out.write_all(&body).map_err(pipe)?;
    Ok(0)
}

/// The new side of a diff: a blob in a tree, or a file in the work tree.
enum Side {
    Blob(gix::ObjectId, u32),
    Work(Vec<u8>, u32),
}

fn diff(ctx: &mut Ctx, repo: &Repo, args: &[String], io: &mut Io) -> Res<i32> {
    let mut rev = "HEAD".to_string();
    let mut specs_raw = Vec::new();
    let mut after_dashes = false;
    for a in args {
        if after_dashes {
            specs_raw.push(a.clone());
        } else if a == "--" {
            after_dashes = true;
        } else if a == "--no-color" || a == "HEAD" {
        } else if a.starts_with('-') {
            return Err(format!("diff: option '{a}' is not supported by run_command's git (git diff [REV] [-- PATH…])"));
        } else if repo.repo.rev_parse_single(a.as_str()).is_ok() {
            rev = a.clone();
        } else {
            specs_raw.push(a.clone());
        }
    }
    let _ = ctx;
    let specs = repo.specs(&specs_raw);
    let c = repo.commit(&rev)?;
    let before: BTreeMap<_, _> = repo.tree_files(&c)?.into_iter().filter(|(p, _)| matches_spec(p, &specs)).collect();
    let index = repo.repo.index_or_empty().map_err(|e| e.to_string())?;
    let mut after = BTreeMap::new();
    for e in index.entries() {
        let path = e.path(&index).to_str_lossy().into_owned();
        if !matches_spec(&path, &specs) {
            continue;
        }
        let abs = format!("{}/{}", repo.root, path);
        let mut data = Vec::new();
        if crate::ctx::read_into(&abs, &mut data).is_ok() {
            let mode = before.get(&path).map(|(_, m)| *m).unwrap_or(0o100644);
            after.insert(path, Side::Work(data, mode));
        }
    }
    let mut body = Vec::new();
    diff_trees(repo, &before, &after, &mut body)?;
    io.out.write_all(&body).map_err(pipe)?;
    Ok(0)
}

fn diff_trees(
    repo: &Repo,
    before: &BTreeMap<String, (gix::ObjectId, u32)>,
    after: &BTreeMap<String, Side>,
    out: &mut Vec<u8>,
) -> Res<()> {
    let mut paths: Vec<&String> = before.keys().chain(after.keys()).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        let old = before.get(p);
        let new = after.get(p);
        let (old_bytes, old_id, old_mode) = match old {
            Some((id, m)) => (repo.blob(*id)?, Some(*id), *m),
            None => (Vec::new(), None, 0),
        };
        let (new_bytes, new_id, new_mode) = match new {
            Some(Side::Blob(id, m)) => (repo.blob(*id)?, Some(*id), *m),
            Some(Side::Work(data, m)) => {
                let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, data)
                    .map_err(|e| e.to_string())?;
                (data.clone(), Some(id), *m)
            }
            None => (Vec::new(), None, 0),
        };
        if old_id.is_some() && old_id == new_id && old_mode == new_mode {
            continue;
        }
        let short = |id: Option<gix::ObjectId>| match id {
            Some(i) => i.to_hex().to_string()[..7].to_string(),
            None => "0000000".into(),
        };
        out.extend_from_slice(format!("diff --git a/{p} b/{p}\n").as_bytes());
        match (old, new) {
            (None, Some(_)) => {
                out.extend_from_slice(format!("new file mode {new_mode:o}\nindex 0000000..{}\n", short(new_id)).as_bytes());
            }
            (Some(_), None) => {
                out.extend_from_slice(format!("deleted file mode {old_mode:o}\nindex {}..0000000\n", short(old_id)).as_bytes());
            }
            _ => {
                if old_mode != new_mode {
                    out.extend_from_slice(format!("old mode {old_mode:o}\nnew mode {new_mode:o}\n").as_bytes());
                    out.extend_from_slice(format!("index {}..{}\n", short(old_id), short(new_id)).as_bytes());
                } else {
                    out.extend_from_slice(format!("index {}..{} {new_mode:o}\n", short(old_id), short(new_id)).as_bytes());
                }
            }
        }
        if old_bytes.contains(&0) || new_bytes.contains(&0) {
            out.extend_from_slice(format!("Binary files a/{p} and b/{p} differ\n").as_bytes());
            continue;
        }
        if old_bytes == new_bytes {
            continue;
        }
        let a_name = if old.is_some() { format!("a/{p}") } else { "/dev/null".into() };
        let b_name = if new.is_some() { format!("b/{p}") } else { "/dev/null".into() };
        out.extend_from_slice(format!("--- {a_name}\n+++ {b_name}\n").as_bytes());
        unified(&old_bytes, &new_bytes, out);
    }
    Ok(())
}

/// A unified diff with 3 lines of context, hunks as git writes them
/// (Myers, with git's indent heuristic for sliding), and git's default
/// function context after `@@`: the last earlier line that starts with a
/// letter, `_` or `$`.
fn unified(old: &[u8], new: &[u8], out: &mut Vec<u8>) {
    use gix::diff::blob::{Algorithm, Diff, InternedInput};
    let input = InternedInput::new(old, new);
    let mut d = Diff::compute(Algorithm::Myers, &input);
    d.postprocess_lines(&input);
    let a: Vec<&[u8]> = old.split_inclusive(|&b| b == b'\n').collect();
    let b: Vec<&[u8]> = new.split_inclusive(|&b| b == b'\n').collect();
    let hunks: Vec<_> = d.hunks().collect();
    const CTX: u32 = 3;
    let mut i = 0;
    while i < hunks.len() {
        // Merge hunks whose contexts touch.
        let mut j = i;
        while j + 1 < hunks.len() && hunks[j + 1].before.start.saturating_sub(hunks[j].before.end) <= 2 * CTX {
            j += 1;
        }
        let start_a = hunks[i].before.start.saturating_sub(CTX);
        let start_b = hunks[i].after.start.saturating_sub(hunks[i].before.start - start_a);
        let end_a = (hunks[j].before.end + CTX).min(a.len() as u32);
        let end_b = (hunks[j].after.end + (end_a - hunks[j].before.end)).min(b.len() as u32);
        let range = |s: u32, e: u32| {
            let n = e - s;
            let first = if n == 0 { s } else { s + 1 };
            if n == 1 {
                format!("{first}")
            } else {
                format!("{first},{n}")
            }
        };
        let func = a[..start_a as usize]
            .iter()
            .rev()
            .find(|l| l.first().is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'$'))
            .map(|l| {
                let t = String::from_utf8_lossy(l);
                let t = t.trim_end();
                let cut: String = t.chars().take(80).collect();
                format!(" {}", cut.trim_end())
            })
            .unwrap_or_default();
        out.extend_from_slice(format!("@@ -{} +{} @@{func}\n", range(start_a, end_a), range(start_b, end_b)).as_bytes());
        let mut pa = start_a;
        let line = |out: &mut Vec<u8>, mark: u8, l: &[u8]| {
            out.push(mark);
            out.extend_from_slice(l);
            if !l.ends_with(b"\n") {
                out.extend_from_slice(b"\n\\ No newline at end of file\n");
            }
        };
        for h in &hunks[i..=j] {
            while pa < h.before.start {
                line(out, b' ', a[pa as usize]);
                pa += 1;
            }
            for k in h.before.clone() {
                line(out, b'-', a[k as usize]);
            }
            for k in h.after.clone() {
                line(out, b'+', b[k as usize]);
            }
            pa = h.before.end;
        }
        while pa < end_a {
            line(out, b' ', a[pa as usize]);
            pa += 1;
        }
        i = j + 1;
    }
}
