//! The built-in commands, by name. Each behaves like the GNU (or ripgrep)
//! tool of that name on the options agents use; an option it does not know
//! is an error in the tool's own words, never silently ignored.

mod find;
mod git;
mod grep;
mod ls;
mod rg;
mod sed;
mod simple;
mod sort;
mod text;
mod xargs;

use crate::ctx::Ctx;
use crate::io::Io;
use std::io;

/// A command: arguments after the name, streams; the exit status.
pub type Run = fn(&mut Ctx, &[String], &mut Io) -> io::Result<i32>;

/// Every built-in command.
pub const COMMANDS: &[(&str, Run)] = &[
    ("[", simple::test_bracket),
    ("awk", text::awk),
    ("basename", simple::basename),
    ("cat", text::cat),
    ("cd", simple::cd),
    ("cut", text::cut),
    ("dirname", simple::dirname),
    ("echo", simple::echo),
    ("false", simple::false_),
    ("find", find::find),
    ("grep", grep::grep),
    ("egrep", grep::egrep),
    ("fgrep", grep::fgrep),
    ("git", git::git),
    ("head", text::head),
    ("ls", ls::ls),
    ("nl", text::nl),
    ("printf", simple::printf),
    ("pwd", simple::pwd),
    ("rg", rg::rg),
    ("sed", sed::sed),
    ("seq", simple::seq),
    ("sort", sort::sort),
    ("tac", text::tac),
    ("tail", text::tail),
    ("test", simple::test),
    ("tr", text::tr),
    ("true", simple::true_),
    ("uniq", sort::uniq),
    ("wc", text::wc),
    ("xargs", xargs::xargs),
    ("yes", simple::yes),
];

/// Looks a command up by name (`/usr/bin/grep` and `/bin/grep` name `grep`).
pub fn lookup(name: &str) -> Option<Run> {
    let name = name
        .strip_prefix("/usr/bin/")
        .or_else(|| name.strip_prefix("/bin/"))
        .unwrap_or(name);
    COMMANDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The names, for the line that lists them.
pub fn names() -> String {
    let mut n: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
    n.sort();
    n.join(" ")
}

/// Runs `argv` (name first); unknown commands get the shell's 127.
pub fn run(ctx: &mut Ctx, argv: &[String], io: &mut Io) -> i32 {
    let name = &argv[0];
    let Some(f) = lookup(name) else {
        if name.contains('/') {
            io.err.say(format!(
                "sh: {name}: Permission denied (run_command runs only its built-in commands, never programs)"
            ));
            io.err.say(format!("run_command: available commands: {}", names()));
            return 126;
        }
        io.err.say(format!("sh: {name}: command not found"));
        io.err.say(format!("run_command: available commands: {}", names()));
        return 127;
    };
    if ctx.depth > 4 {
        io.err.say(format!("{name}: commands nested too deeply"));
        return 2;
    }
    match f(ctx, &argv[1..], io) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => 141,
        Err(e) => {
            io.err.say(format!("{name}: {}", crate::ctx::describe(&e)));
            2
        }
    }
}

/// Prints a usage error the GNU way and returns status `code`.
pub fn usage(io: &Io, cmd: &str, msg: &str, code: i32) -> io::Result<i32> {
    io.err.say(format!("{cmd}: {msg}"));
    io.err.say(format!("Try '{cmd} --help' for more information."));
    Ok(code)
}
