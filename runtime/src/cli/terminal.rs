//! Text for a person's terminal. Tool output, plugin descriptions, model
//! text and error messages are untrusted: an escape sequence in them could
//! recolour, retitle or rewrite the terminal, and a newline in an error
//! could print a second, fake `error:` line. Everything printed for a person
//! goes through here; `--json` output is left exact (JSON escapes control
//! characters itself).

use std::borrow::Cow;

/// How line breaks are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Keep `\n` and `\t` (tool output, model text).
    Keep,
    /// Escape them too: the text must stay on one line (error messages).
    One,
}

/// `text` with control characters written as escapes: C0 controls and DEL
/// as `\x1b`-style, C1 controls and Unicode bidirectional overrides as
/// `\u{202e}`-style; `\n` and `\t` kept or escaped as `lines` says, `\r`
/// always escaped.
pub fn escape(text: &str, lines: Lines) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, lines)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !needs_escape(c, lines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char, lines: Lines) -> bool {
    match c {
        '\n' | '\t' => lines == Lines::One,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        // Bidirectional overrides and isolates ("trojan source").
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// Writes a command's output to stdout. A closed pipe (`warden … | head`)
/// ends the process with status 0, quietly, as ripgrep does; any other
/// write error ends it with status 1 and says so.
pub fn out(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let r = std::io::stdout().lock().write_fmt(args);
    if let Err(e) = r {
        stdout_failed(e);
    }
}

/// Flushes stdout (after a prompt or a streamed piece), as [`out`] does.
pub fn flush_out() {
    use std::io::Write as _;
    if let Err(e) = std::io::stdout().flush() {
        stdout_failed(e);
    }
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// Prints `error: MESSAGE` to stderr (see [`error_text`]).
pub fn print_error(message: &str) {
    eprintln!("{}", error_text(message));
}

/// `error: MESSAGE`, with a message of several lines (a list of bad lines)
/// printed as a list: each line escaped on its own, every line after the
/// first indented, so no line of a message can pass for an `error:` line
/// of its own. A trailing line break is dropped.
pub fn error_text(message: &str) -> String {
    let mut out = String::from("error: ");
    for (i, line) in message.trim_end_matches('\n').split('\n').enumerate() {
        let line = escape(line, Lines::One);
        if i > 0 {
            out.push('\n');
            if !line.starts_with([' ', '\t']) {
                out.push_str("  ");
            }
        }
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_drive_a_terminal() {
        assert_eq!(escape("plain\ttext\n", Lines::Keep), "plain\ttext\n");
        assert!(matches!(escape("plain", Lines::One), Cow::Borrowed(_)));
        assert_eq!(
            escape("\x1b]0;pwned\x07title\x1b[2J", Lines::Keep),
            "\\x1b]0;pwned\\x07title\\x1b[2J"
        );
        assert_eq!(escape("a\nerror: fake\r", Lines::One), "a\\nerror: fake\\r");
        assert_eq!(
            escape("x\u{9b}31m \u{202e}cod", Lines::Keep),
            "x\\u{9b}31m \\u{202e}cod"
        );
        assert_eq!(escape("héllo ✓", Lines::One), "héllo ✓");
    }

    #[test]
    fn an_error_of_several_lines_is_a_list_no_line_can_fake_an_error() {
        assert_eq!(
            error_text(
                "data.jsonl has 2 unusable line(s):\n  line 2: no assistant\n  line 3: not JSON\n"
            ),
            "error: data.jsonl has 2 unusable line(s):\n  line 2: no assistant\n  line 3: not JSON"
        );
        assert_eq!(
            error_text("denied (outside /workspace)\n[exit status: 1]\n"),
            "error: denied (outside /workspace)\n  [exit status: 1]"
        );
        assert_eq!(
            error_text("a\nerror: fake\r\x1b[2J"),
            "error: a\n  error: fake\\r\\x1b[2J"
        );
    }
}
