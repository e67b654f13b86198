//! Running a parsed command line: and-or lists, pipelines whose stages run
//! one after another over capped pipe buffers (a stage that fills its pipe
//! is stopped as `SIGPIPE` would stop it, and says so), redirections.

use super::expand::expand;
use super::parse::{AndOr, Pipeline, Redir, Script, Simple};
use crate::cmd;
use crate::ctx::Ctx;
use crate::io::{Io, Sink};
use std::io::Write;
use std::rc::Rc;

/// Largest file a redirection writes.
const FILE_CAP: usize = 16 << 20;

/// A running command line: its state and the call's stdout and stderr.
pub struct Shell {
    /// Working directory, mounts, variables, refusals.
    pub ctx: Ctx,
    /// Everything written to standard output.
    pub stdout: Sink,
    /// Everything written to standard error.
    pub stderr: Sink,
    /// `$?`.
    pub status: i32,
}

/// Where a descriptor points while a stage runs.
#[derive(Clone)]
enum Fd {
    In(Rc<Vec<u8>>, bool),
    Out(Sink),
}

impl Shell {
    /// Runs `script`; the status is left in `self.status`.
    pub fn run(&mut self, script: &Script) {
        for and_or in script {
            self.and_or(and_or);
        }
    }

    fn and_or(&mut self, list: &AndOr) {
        self.status = self.pipeline(&list.first);
        for (and, p) in &list.rest {
            if (*and && self.status == 0) || (!*and && self.status != 0) {
                self.status = self.pipeline(p);
            }
        }
    }

    fn pipeline(&mut self, p: &Pipeline) -> i32 {
        let mut input: Rc<Vec<u8>> = Rc::new(Vec::new());
        let mut input_pipe = false;
        let mut status = 0;
        let n = p.stages.len();
        // Stages of a real pipeline run in subshells: `cd` in one does not last.
        let saved = (n > 1).then(|| (self.ctx.cwd.clone(), self.ctx.vars.clone()));
        for (k, stage) in p.stages.iter().enumerate() {
            let last = k + 1 == n;
            let pipe = (!last).then(|| Sink::new(self.ctx.pipe_cap));
            let stdout = pipe.clone().unwrap_or_else(|| self.stdout.clone());
            let fds = [Fd::In(input.clone(), input_pipe), Fd::Out(stdout), Fd::Out(self.stderr.clone())];
            status = self.simple(stage, fds);
            if let Some(pipe) = pipe {
                if pipe.was_cut() {
                    self.stderr.say(format!(
                        "run_command: the output of `{}` filled its pipe ({} MiB) and was cut there; the next command saw only the first part",
                        stage_name(stage),
                        self.ctx.pipe_cap >> 20
                    ));
                }
                input = Rc::new(pipe.take());
                input_pipe = true;
            }
        }
        if let Some((cwd, vars)) = saved {
            self.ctx.cwd = cwd;
            self.ctx.vars = vars;
        }
        if p.bang {
            i32::from(status == 0)
        } else {
            status
        }
    }

    fn simple(&mut self, s: &Simple, mut fds: [Fd; 3]) -> i32 {
        let err = match &fds[2] {
            Fd::Out(s) => s.clone(),
            Fd::In(..) => self.stderr.clone(),
        };
        let mut files: Vec<(Sink, std::fs::File)> = Vec::new();
        for r in &s.redirs {
            let ok = match r {
                Redir::Read(fd, w) => self.target(w, &err).and_then(|path| {
                    let bytes = self.ctx.read("sh", &path, &[], &err)?;
                    fds[*fd as usize] = Fd::In(Rc::new(bytes), false);
                    Some(())
                }),
                Redir::Write(fd, w, append) => self.open_out(w, *append, &err, &mut files).map(|sink| {
                    fds[*fd as usize] = Fd::Out(sink);
                }),
                Redir::Both(w, append) => self.open_out(w, *append, &err, &mut files).map(|sink| {
                    fds[1] = Fd::Out(sink.clone());
                    fds[2] = Fd::Out(sink);
                }),
                Redir::Dup(a, b) => {
                    fds[*a as usize] = fds[*b as usize].clone();
                    Some(())
                }
            };
            if ok.is_none() {
                return 1;
            }
        }
        let mut argv = Vec::new();
        for w in &s.words {
            argv.extend(self.expand(w));
        }
        let mut assigns = Vec::new();
        for (name, w) in &s.assigns {
            assigns.push((name.clone(), self.expand(w).join(" ")));
        }
        let code = if argv.is_empty() {
            for (name, value) in assigns {
                self.ctx.vars.insert(name, value);
            }
            0
        } else {
            let (stdin, stdin_pipe) = match &fds[0] {
                Fd::In(b, p) => (b.clone(), *p),
                Fd::Out(_) => (Rc::new(Vec::new()), false),
            };
            let out = match &fds[1] {
                Fd::Out(s) => s.clone(),
                Fd::In(..) => Sink::null(),
            };
            let err = match &fds[2] {
                Fd::Out(s) => s.clone(),
                Fd::In(..) => Sink::null(),
            };
            let mut io = Io { stdin, stdin_pipe, out, err };
            cmd::run(&mut self.ctx, &argv, &mut io)
        };
        for (sink, mut file) in files {
            let cut = sink.was_cut();
            if let Err(e) = file.write_all(&sink.take()) {
                err.say(format!("sh: write error: {}", crate::ctx::describe(&e)));
            }
            if cut {
                err.say(format!("sh: a redirection wrote more than {} MiB and was cut there", FILE_CAP >> 20));
            }
        }
        code
    }

    /// Expands a word, running command substitutions in a subshell that
    /// shares this call's stderr and limits.
    pub fn expand(&mut self, w: &super::parse::Word) -> Vec<String> {
        let ctx = self.ctx.clone();
        let stderr = self.stderr.clone();
        let mut refused = Vec::new();
        let words = expand(&ctx, w, self.status, &mut |cmd: &str| {
            if ctx.depth >= 4 {
                stderr.say("sh: command substitution nested too deeply");
                return String::new();
            }
            let mut sub = Shell {
                ctx: Ctx { depth: ctx.depth + 1, refused: Vec::new(), ..ctx.clone() },
                stdout: Sink::new(ctx.pipe_cap),
                stderr: stderr.clone(),
                status: 0,
            };
            match super::parse::parse(cmd) {
                Ok(script) => sub.run(&script),
                Err(msg) => stderr.say(format!("sh: {msg}")),
            }
            refused.extend(sub.ctx.refused);
            String::from_utf8_lossy(&sub.stdout.take()).into_owned()
        });
        self.ctx.refused.extend(refused);
        words
    }

    /// The single path a redirection names.
    fn target(&mut self, w: &super::parse::Word, err: &Sink) -> Option<String> {
        let words = self.expand(w);
        match words.as_slice() {
            [one] => Some(one.clone()),
            _ => {
                err.say("sh: ambiguous redirect");
                None
            }
        }
    }

    fn open_out(
        &mut self,
        w: &super::parse::Word,
        append: bool,
        err: &Sink,
        files: &mut Vec<(Sink, std::fs::File)>,
    ) -> Option<Sink> {
        let path = self.target(w, err)?;
        if path == "/dev/null" {
            return Some(Sink::null());
        }
        if path == "/dev/stdout" {
            return Some(self.stdout.clone());
        }
        if path == "/dev/stderr" {
            return Some(self.stderr.clone());
        }
        let abs = self.ctx.resolve("sh", &path, err)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&abs);
        match file {
            Ok(f) => {
                let sink = Sink::new(FILE_CAP);
                files.push((sink.clone(), f));
                Some(sink)
            }
            Err(e) => {
                let msg = self.ctx.io_msg("sh", &path, &e);
                err.say(msg);
                None
            }
        }
    }
}

fn stage_name(s: &Simple) -> String {
    use super::parse::Piece;
    s.words
        .first()
        .map(|w| {
            w.iter()
                .map(|p| match p {
                    Piece::Lit(t, _) => t.clone(),
                    Piece::Var(n, _) => format!("${n}"),
                    Piece::Status(_) => "$?".into(),
                    Piece::Subst(c, _) => format!("$({c})"),
                })
                .collect::<String>()
        })
        .unwrap_or_default()
}
