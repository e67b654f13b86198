//! A POSIX-ish command line into lists of pipelines.
//!
//! Quotes (`'…'`, `"…"`), backslash escapes, `$NAME`/`${NAME}`/`$?`, `|`,
//! `&&`, `||`, `;`, newlines, `!`, `NAME=value` prefixes, comments, command
//! substitution (`$(…)`, `` `…` ``) and the redirections `<`, `>`, `>>`,
//! `N>`, `N>>`, `N>&M`, `&>`, `|&`. Anything else a shell has (subshells,
//! here-documents, background jobs, control flow) is refused with a message
//! that says so.

/// A piece of a word, remembering whether it was quoted (quoted text is
/// not split or globbed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Lit(String, bool),
    /// `$NAME`.
    Var(String, bool),
    /// `$?`.
    Status(bool),
    /// `$(…)` or `` `…` ``: the command line inside.
    Subst(String, bool),
}

/// A word before expansion.
pub type Word = Vec<Piece>;

/// Where a redirection sends a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redir {
    /// `N< file`.
    Read(u8, Word),
    /// `N> file` (or `N>> file` when `append`).
    Write(u8, Word, bool),
    /// `N>&M`.
    Dup(u8, u8),
    /// `&> file`, `&>> file`.
    Both(Word, bool),
}

/// One command with its assignments and redirections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simple {
    /// `NAME=value` before the command name.
    pub assigns: Vec<(String, Word)>,
    /// The command name and arguments.
    pub words: Vec<Word>,
    /// Redirections, in order.
    pub redirs: Vec<Redir>,
}

/// `a | b | c`, optionally negated with `!`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    /// Whether the status is negated.
    pub bang: bool,
    /// The stages.
    pub stages: Vec<Simple>,
}

/// `p1 && p2 || p3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndOr {
    /// The first pipeline.
    pub first: Pipeline,
    /// The rest, each after `&&` (true) or `||` (false).
    pub rest: Vec<(bool, Pipeline)>,
}

/// A whole command line: and-or lists separated by `;` or newlines.
pub type Script = Vec<AndOr>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Op(&'static str),
    Redir(Redir),
}

/// Parses `src`; the error is a message for `sh: …`.
pub fn parse(src: &str) -> Result<Script, String> {
    let toks = lex(src)?;
    let mut p = Parser { toks, i: 0 };
    let script = p.script()?;
    Ok(script)
}

const KEYWORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac",
    "function", "select",
];

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }

    fn script(&mut self) -> Result<Script, String> {
        let mut out = Vec::new();
        loop {
            while self.peek() == Some(&Tok::Op(";")) {
                self.i += 1;
            }
            if self.peek().is_none() {
                return Ok(out);
            }
            out.push(self.and_or()?);
            match self.peek() {
                None => return Ok(out),
                Some(Tok::Op(";")) => {}
                Some(t) => return Err(format!("syntax error near unexpected token `{}'", show(t))),
            }
        }
    }

    fn and_or(&mut self) -> Result<AndOr, String> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let and = match self.peek() {
                Some(Tok::Op("&&")) => true,
                Some(Tok::Op("||")) => false,
                _ => return Ok(AndOr { first, rest }),
            };
            self.i += 1;
            rest.push((and, self.pipeline()?));
        }
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut p = Pipeline::default();
        if let Some(Tok::Word(w)) = self.peek() {
            if w == &vec![Piece::Lit("!".into(), false)] {
                p.bang = true;
                self.i += 1;
            }
        }
        loop {
            let mut stage = self.simple()?;
            if self.peek() == Some(&Tok::Op("|&")) {
                stage.redirs.push(Redir::Dup(2, 1));
            }
            p.stages.push(stage);
            match self.peek() {
                Some(Tok::Op("|" | "|&")) => self.i += 1,
                _ => return Ok(p),
            }
        }
    }

    fn simple(&mut self) -> Result<Simple, String> {
        let mut s = Simple::default();
        while let Some(t) = self.peek().cloned() {
            match t {
                Tok::Op(_) => break,
                Tok::Redir(r) => {
                    s.redirs.push(r);
                    self.i += 1;
                }
                Tok::Word(w) => {
                    self.i += 1;
                    if s.words.is_empty() {
                        if let Some((name, value)) = assignment(&w) {
                            s.assigns.push((name, value));
                            continue;
                        }
                        if let [Piece::Lit(k, false)] = w.as_slice() {
                            if KEYWORDS.contains(&k.as_str()) {
                                return Err(format!(
                                    "`{k}' (shell control flow) is not supported by run_command; run one command at a time, or loop with xargs or find -exec"
                                ));
                            }
                        }
                    }
                    s.words.push(w);
                }
            }
        }
        if s.words.is_empty() && s.assigns.is_empty() && s.redirs.is_empty() {
            let near = self.peek().map(show).unwrap_or_else(|| "newline".into());
            return Err(format!("syntax error near unexpected token `{near}'"));
        }
        Ok(s)
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Op(o) => o.to_string(),
        Tok::Word(_) => "word".into(),
        Tok::Redir(_) => "redirection".into(),
    }
}

/// `NAME=value` as the first piece of an unquoted word.
fn assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Piece::Lit(first, false)) = w.first() else {
        return None;
    };
    let (name, rest) = first.split_once('=')?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return None;
    }
    let mut value = Vec::new();
    if !rest.is_empty() {
        value.push(Piece::Lit(rest.to_string(), false));
    }
    value.extend(w[1..].iter().cloned());
    Some((name.to_string(), value))
}

fn unsupported(what: &str) -> String {
    format!("{what} is not supported by run_command; run the commands one at a time")
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let s: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut word: Word = Vec::new();
    let mut in_word = false;
    let mut i = 0;

    fn push_lit(word: &mut Word, c: char, quoted: bool) {
        if let Some(Piece::Lit(t, q)) = word.last_mut() {
            if *q == quoted {
                t.push(c);
                return;
            }
        }
        word.push(Piece::Lit(c.to_string(), quoted));
    }

    fn end_word(toks: &mut Vec<Tok>, word: &mut Word, in_word: &mut bool) {
        if *in_word {
            toks.push(Tok::Word(std::mem::take(word)));
            *in_word = false;
        }
    }

    // Reads `$…` at s[i] (s[i] == '$'); returns the piece and the new index.
    fn dollar(s: &[char], i: usize, quoted: bool) -> Result<(Option<Piece>, usize), String> {
        match s.get(i + 1) {
            Some('(') => {
                let end = matching_paren(s, i + 2).ok_or("unexpected end of line while looking for matching `)'")?;
                let inner: String = s[i + 2..end].iter().collect();
                Ok((Some(Piece::Subst(inner, quoted)), end + 1))
            }
            Some('?') => Ok((Some(Piece::Status(quoted)), i + 2)),
            Some('{') => {
                let end = s[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("unexpected end of line: missing `}'")?;
                let name: String = s[i + 2..i + 2 + end].iter().collect();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(unsupported(&format!("the expansion ${{{name}}}")));
                }
                Ok((Some(Piece::Var(name, quoted)), i + 3 + end))
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let mut j = i + 1;
                while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == '_') {
                    j += 1;
                }
                Ok((Some(Piece::Var(s[i + 1..j].iter().collect(), quoted)), j))
            }
            Some(c) if c.is_ascii_digit() || matches!(c, '$' | '!' | '#' | '@' | '*' | '-') => {
                Err(unsupported(&format!("the special parameter ${c}")))
            }
            _ => Ok((None, i + 1)),
        }
    }

    while i < s.len() {
        let c = s[i];
        match c {
            ' ' | '\t' => {
                end_word(&mut toks, &mut word, &mut in_word);
                i += 1;
            }
            '\n' => {
                end_word(&mut toks, &mut word, &mut in_word);
                toks.push(Tok::Op(";"));
                i += 1;
            }
            '#' if !in_word => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            '\'' => {
                in_word = true;
                let end = s[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or("unexpected end of line while looking for matching `''")?;
                let text: String = s[i + 1..i + 1 + end].iter().collect();
                word.push(Piece::Lit(text, true));
                i += end + 2;
            }
            '"' => {
                in_word = true;
                // An empty "" still makes a word.
                word.push(Piece::Lit(String::new(), true));
                i += 1;
                loop {
                    let Some(&c) = s.get(i) else {
                        return Err("unexpected end of line while looking for matching `\"'".into());
                    };
                    match c {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' if matches!(s.get(i + 1), Some('$' | '`' | '"' | '\\' | '\n')) => {
                            if s[i + 1] != '\n' {
                                push_lit(&mut word, s[i + 1], true);
                            }
                            i += 2;
                        }
                        '`' => {
                            let (inner, j) = backquoted(&s, i)?;
                            word.push(Piece::Subst(inner, true));
                            i = j;
                        }
                        '$' => {
                            let (piece, j) = dollar(&s, i, true)?;
                            match piece {
                                Some(p) => word.push(p),
                                None => push_lit(&mut word, '$', true),
                            }
                            i = j;
                        }
                        c => {
                            push_lit(&mut word, c, true);
                            i += 1;
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                match s.get(i + 1) {
                    Some('\n') => {}
                    Some(&n) => push_lit(&mut word, n, true),
                    None => push_lit(&mut word, '\\', false),
                }
                i += 2;
            }
            '$' => {
                in_word = true;
                let (piece, j) = dollar(&s, i, false)?;
                match piece {
                    Some(p) => word.push(p),
                    None => push_lit(&mut word, '$', false),
                }
                i = j;
            }
            '`' => {
                in_word = true;
                let (inner, j) = backquoted(&s, i)?;
                word.push(Piece::Subst(inner, false));
                i = j;
            }
            '(' | ')' => return Err(unsupported("a subshell ( … )")),
            '|' | '&' | ';' => {
                end_word(&mut toks, &mut word, &mut in_word);
                let two: String = s[i..(i + 2).min(s.len())].iter().collect();
                let three: String = s[i..(i + 3).min(s.len())].iter().collect();
                if three == "&>>" {
                    i += 3;
                    let (w, j) = redir_target(&s, i)?;
                    toks.push(Tok::Redir(Redir::Both(w, true)));
                    i = j;
                    continue;
                }
                let op = match two.as_str() {
                    "&&" => "&&",
                    "||" => "||",
                    "|&" => "|&",
                    ";;" => return Err("syntax error near unexpected token `;;'".into()),
                    "&>" => {
                        let (w, j) = redir_target(&s, i + 2)?;
                        toks.push(Tok::Redir(Redir::Both(w, false)));
                        i = j;
                        continue;
                    }
                    _ => match c {
                        '|' => "|",
                        ';' => ";",
                        _ => return Err(unsupported("running a command in the background (&)")),
                    },
                };
                toks.push(Tok::Op(op));
                i += op.len();
            }
            '<' | '>' => {
                // A lone digit just before is the descriptor.
                let mut fd = if c == '<' { 0 } else { 1 };
                if in_word {
                    if let [Piece::Lit(t, false)] = word.as_slice() {
                        if t.len() == 1 && t.as_bytes()[0].is_ascii_digit() {
                            fd = t.as_bytes()[0] - b'0';
                            word.clear();
                            in_word = false;
                        }
                    }
                }
                end_word(&mut toks, &mut word, &mut in_word);
                if fd > 2 {
                    return Err(unsupported(&format!("descriptor {fd}")));
                }
                if c == '<' && s.get(i + 1) == Some(&'<') {
                    return Err(unsupported("a here-document (<<)"));
                }
                if c == '<' && s.get(i + 1) == Some(&'(') || c == '>' && s.get(i + 1) == Some(&'(') {
                    return Err(unsupported("process substitution"));
                }
                if s.get(i + 1) == Some(&'&') {
                    let target = s.get(i + 2).copied();
                    match target {
                        Some(t @ '0'..='2') => {
                            toks.push(Tok::Redir(Redir::Dup(fd, t as u8 - b'0')));
                            i += 3;
                        }
                        _ => return Err(unsupported("this redirection")),
                    }
                    continue;
                }
                let append = c == '>' && s.get(i + 1) == Some(&'>');
                i += if append { 2 } else { 1 };
                if c == '>' && s.get(i) == Some(&'|') {
                    i += 1;
                }
                let (w, j) = redir_target(&s, i)?;
                i = j;
                toks.push(Tok::Redir(if c == '<' {
                    Redir::Read(fd, w)
                } else {
                    Redir::Write(fd, w, append)
                }));
            }
            c => {
                in_word = true;
                push_lit(&mut word, c, false);
                i += 1;
            }
        }
    }
    end_word(&mut toks, &mut word, &mut in_word);
    Ok(toks)
}

/// What a scan does at an unquoted character.
enum Scan {
    /// Go on to the next character.
    Next,
    /// Go on after index `n` (a construct the caller skips whole).
    After(usize),
    /// Stop here.
    Stop,
}

/// Walks `s` from `from`, skipping quoted text and backslash escapes, and
/// asks `at` what to do at each unquoted character; the index where it
/// stopped, or `None` at the end of the line.
fn scan(s: &[char], from: usize, mut at: impl FnMut(usize, char) -> Scan) -> Option<usize> {
    let mut i = from;
    let mut quote: Option<char> = None;
    while i < s.len() {
        let c = s[i];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if q == '"' && c == '\\' {
                    i += 1;
                }
            }
            None => match c {
                '\'' | '"' => quote = Some(c),
                '\\' => i += 1,
                c => match at(i, c) {
                    Scan::Next => {}
                    Scan::After(n) => i = n,
                    Scan::Stop => return Some(i),
                },
            },
        }
        i += 1;
    }
    None
}

/// The index of the `)` that closes a `$(` whose body starts at `from`,
/// skipping quoted text and nested parentheses.
fn matching_paren(s: &[char], from: usize) -> Option<usize> {
    let mut depth = 1;
    scan(s, from, |_, c| {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Scan::Stop;
                }
            }
            _ => {}
        }
        Scan::Next
    })
}

/// The command line between backquotes starting at `s[i]`, and the index
/// after the closing one.
fn backquoted(s: &[char], i: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            '`' => return Ok((out, j + 1)),
            '\\' if matches!(s.get(j + 1), Some('`' | '\\' | '$')) => {
                out.push(s[j + 1]);
                j += 2;
                continue;
            }
            c => out.push(c),
        }
        j += 1;
    }
    Err("unexpected end of line while looking for matching ``'".into())
}

/// The word after a redirection operator.
fn redir_target(s: &[char], mut i: usize) -> Result<(Word, usize), String> {
    while i < s.len() && (s[i] == ' ' || s[i] == '\t') {
        i += 1;
    }
    let start = i;
    // Lex the rest and take its first token, which must be a word.
    let rest: String = s[start..].iter().collect();
    let toks = lex_one(&rest)?;
    match toks {
        Some((Tok::Word(w), used)) => Ok((w, start + used)),
        _ => Err("syntax error near unexpected token `newline'".into()),
    }
}

/// Lexes one word from the start of `src`: (token, characters used).
fn lex_one(src: &str) -> Result<Option<(Tok, usize)>, String> {
    let s: Vec<char> = src.chars().collect();
    // Find the end of the first word: the first unquoted blank or operator.
    let end = scan(&s, 0, |i, c| match c {
        '$' if s.get(i + 1) == Some(&'(') => Scan::After(matching_paren(&s, i + 2).unwrap_or(s.len())),
        '`' => Scan::After(s[i + 1..].iter().position(|&c| c == '`').map_or(s.len(), |p| i + 1 + p)),
        ' ' | '\t' | '\n' | '|' | '&' | ';' | '<' | '>' | '(' | ')' => Scan::Stop,
        _ => Scan::Next,
    });
    let i = end.unwrap_or(s.len());
    let word: String = s[..i].iter().collect();
    let toks = lex(&word)?;
    Ok(toks.into_iter().next().map(|t| (t, i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str, q: bool) -> Piece {
        Piece::Lit(s.into(), q)
    }

    #[test]
    fn words_quotes_and_operators() {
        let s = parse(r#"grep -rn "def .*(request" --include='*.py' . | head -n 5 && echo ok"#).unwrap();
        assert_eq!(s.len(), 1);
        let p = &s[0].first;
        assert_eq!(p.stages.len(), 2);
        assert_eq!(p.stages[0].words[2], vec![lit("def .*(request", true)]);
        assert_eq!(p.stages[0].words[3], vec![lit("--include=", false), lit("*.py", true)]);
        assert_eq!(s[0].rest.len(), 1);
    }

    #[test]
    fn redirections() {
        let s = parse("grep x . 2>/dev/null >out.txt 2>&1; cat <in >>log").unwrap();
        let r = &s[0].first.stages[0].redirs;
        assert_eq!(r[0], Redir::Write(2, vec![lit("/dev/null", false)], false));
        assert_eq!(r[1], Redir::Write(1, vec![lit("out.txt", false)], false));
        assert_eq!(r[2], Redir::Dup(2, 1));
        let r = &s[1].first.stages[0].redirs;
        assert_eq!(r[0], Redir::Read(0, vec![lit("in", false)]));
        assert_eq!(r[1], Redir::Write(1, vec![lit("log", false)], true));
    }

    #[test]
    fn unsupported_is_refused() {
        for bad in ["echo $(id", "echo `id", "(cd x)", "sleep 1 &", "for f in *; do echo; done", "cat <<EOF", "echo 'open"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
