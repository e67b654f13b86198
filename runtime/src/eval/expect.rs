//! What a suite case expects, and how the calls a model made are held
//! against it: which tool, which arguments (exact, one of several, a regex,
//! or just present), several calls in order or not, or no call at all.

use super::{Failure, Observed};
use anyhow::{bail, Context as _};
use regex::Regex;
use serde_json::Value;

/// How one argument is checked.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// Equal to this value (numbers compared by value: 1 equals 1.0).
    Exact(Value),
    /// Equal to one of these.
    OneOf(Vec<Value>),
    /// A string this regular expression finds (anywhere; anchor it to
    /// match the whole).
    Regex(Regex),
    /// There, whatever its value.
    Present,
}

impl Matcher {
    /// Reads `{exact = …}`, `{one_of = […]}`, `{regex = "…"}`,
    /// `{present = true}`, or any other value as an exact one.
    pub fn parse(v: &Value, what: &str) -> anyhow::Result<Matcher> {
        if let Some(obj) = v.as_object().filter(|o| o.len() == 1) {
            let (k, x) = obj.iter().next().expect("one entry");
            return Ok(match k.as_str() {
                "exact" => Matcher::Exact(x.clone()),
                "one_of" => Matcher::OneOf(
                    x.as_array()
                        .with_context(|| format!("{what}: one_of must be a list"))?
                        .clone(),
                ),
                "regex" => {
                    let s = x
                        .as_str()
                        .with_context(|| format!("{what}: regex must be a string"))?;
                    Matcher::Regex(
                        Regex::new(s)
                            .with_context(|| format!("{what}: {s:?} is not a valid regex"))?,
                    )
                }
                "present" => {
                    if x != &Value::Bool(true) {
                        bail!("{what}: write present = true");
                    }
                    Matcher::Present
                }
                _ => Matcher::Exact(v.clone()),
            });
        }
        Ok(Matcher::Exact(v.clone()))
    }

    /// Whether `got` (absent: `None`) satisfies it.
    pub fn matches(&self, got: Option<&Value>) -> bool {
        let Some(got) = got else {
            return false;
        };
        match self {
            Matcher::Exact(want) => same(want, got),
            Matcher::OneOf(wants) => wants.iter().any(|w| same(w, got)),
            Matcher::Regex(re) => got.as_str().is_some_and(|s| re.is_match(s)),
            Matcher::Present => true,
        }
    }
}

/// JSON equality with numbers compared by value.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// One expected call.
#[derive(Debug, Clone)]
pub struct ExpectedCall {
    /// Tool name.
    pub tool: String,
    /// Argument matchers, by name.
    pub args: Vec<(String, Matcher)>,
}

impl ExpectedCall {
    fn tool_matches(&self, o: &Observed) -> bool {
        o.parsed && o.tool.as_deref() == Some(self.tool.as_str())
    }

    fn matches(&self, o: &Observed) -> bool {
        self.tool_matches(o) && self.args.iter().all(|(k, m)| m.matches(o.arguments.get(k)))
    }
}

/// What a case expects.
#[derive(Debug, Clone)]
pub enum Expect {
    /// These calls (other calls may come too: an agent may look around).
    Calls {
        /// The calls.
        calls: Vec<ExpectedCall>,
        /// Whether they must come in this order.
        ordered: bool,
    },
    /// A direct answer, optionally matching a regex.
    NoCall {
        /// What the answer must contain.
        answer: Option<Regex>,
    },
}

/// How a case's calls measured up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// A call was due, and every expected tool was called.
    pub tool_ok: bool,
    /// A call was due, and every expected call came with fitting arguments.
    pub args_ok: bool,
    /// Whether the case passed.
    pub passed: bool,
    /// Why not.
    pub failure: Option<Failure>,
}

/// Assigns each expected call a distinct observed call `fits`, in order
/// when `ordered`.
fn assign(
    expected: &[ExpectedCall],
    observed: &[Observed],
    ordered: bool,
    fits: &dyn Fn(&ExpectedCall, &Observed) -> bool,
) -> bool {
    if ordered {
        let mut from = 0;
        for e in expected {
            match observed[from..].iter().position(|o| fits(e, o)) {
                Some(i) => from += i + 1,
                None => return false,
            }
        }
        return true;
    }
    fn go(
        expected: &[ExpectedCall],
        observed: &[Observed],
        used: &mut Vec<bool>,
        fits: &dyn Fn(&ExpectedCall, &Observed) -> bool,
    ) -> bool {
        let Some((e, rest)) = expected.split_first() else {
            return true;
        };
        for (i, o) in observed.iter().enumerate() {
            if !used[i] && fits(e, o) {
                used[i] = true;
                if go(rest, observed, used, fits) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    go(expected, observed, &mut vec![false; observed.len()], fits)
}

impl Expect {
    /// Whether a call is due.
    pub fn call_due(&self) -> bool {
        matches!(self, Expect::Calls { .. })
    }

    /// The tools the case expects, each once, in order of first mention.
    pub fn expected_tools(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Expect::Calls { calls, .. } = self {
            for c in calls {
                if !out.contains(&c.tool) {
                    out.push(c.tool.clone());
                }
            }
        }
        out
    }

    /// Scores the calls a case made and its final answer.
    pub fn score(&self, observed: &[Observed], answer: &str) -> Score {
        match self {
            Expect::NoCall { answer: want } => {
                let failure = if !observed.is_empty() {
                    Some(Failure::UnexpectedCall)
                } else if want.as_ref().is_some_and(|re| !re.is_match(answer)) {
                    Some(Failure::WrongAnswer)
                } else {
                    None
                };
                Score {
                    tool_ok: false,
                    args_ok: false,
                    passed: failure.is_none(),
                    failure,
                }
            }
            Expect::Calls { calls, ordered } => {
                let tool_ok = assign(calls, observed, *ordered, &|e, o| e.tool_matches(o));
                let args_ok = assign(calls, observed, *ordered, &|e, o| e.matches(o));
                let failure = if args_ok {
                    None
                } else if observed.is_empty() {
                    Some(Failure::DirectAnswer)
                } else if observed.iter().all(|o| !o.parsed) {
                    Some(Failure::Malformed)
                } else if tool_ok {
                    Some(Failure::BadArguments)
                } else if calls
                    .iter()
                    .any(|e| observed.iter().any(|o| e.tool_matches(o)))
                {
                    Some(Failure::MissingCall)
                } else {
                    Some(Failure::WrongTool)
                };
                Score {
                    tool_ok,
                    args_ok,
                    passed: args_ok,
                    failure,
                }
            }
        }
    }
}
