//! Suites: a TOML file naming a workspace, a policy, an optional system
//! prompt, and `[[case]]` tables, each a prompt (or several turns) and what
//! is expected of it.
//!
//! ```toml
//! workspace = "../workspace"              # relative to this file
//! policy = "../../policies/default.toml"
//! system = "You are a coding agent."      # optional
//!
//! [[case]]
//! id = "views"
//! prompt = "Find all Django view functions"
//! expect = { tool = "search_code", args = { pattern = { regex = "def" }, glob = { present = true } } }
//!
//! [[case]]
//! id = "explain-di"
//! prompt = "Explain dependency injection"
//! expect = { no_call = true, answer = "(?i)depend" }
//!
//! [[case]]
//! id = "find-then-read"
//! turns = ["Where is Post defined?", "Show it to me"]
//! expect = { calls = [{ tool = "search_code" }, { tool = "read_file" }], ordered = true }
//! ```

use super::expect::{Expect, ExpectedCall, Matcher};
use anyhow::{bail, Context as _};
use regex::Regex;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// One case.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique in the suite.
    pub id: String,
    /// The user turns, in order.
    pub turns: Vec<String>,
    /// What is expected.
    pub expect: Expect,
}

/// A suite, its paths resolved.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The file.
    pub path: PathBuf,
    /// The workspace the tools see.
    pub workspace: PathBuf,
    /// The policy they run under.
    pub policy: PathBuf,
    /// The system prompt.
    pub system: Option<String>,
    /// The cases.
    pub cases: Vec<Case>,
}

impl Suite {
    /// Reads and checks a suite file.
    pub fn load(path: &Path) -> anyhow::Result<Suite> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the suite {}", path.display()))?;
        let doc: toml::Value = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let v: Value = serde_json::to_value(doc)?;
        let shown = path.display().to_string();
        let dir = path.parent().unwrap_or(Path::new("."));
        let rel = |k: &str| -> anyhow::Result<PathBuf> {
            let p = v[k].as_str().with_context(|| {
                format!("{shown}: `{k}` (a path relative to the suite) is missing")
            })?;
            Ok(dir.join(p))
        };
        let (workspace, policy) = (rel("workspace")?, rel("policy")?);
        if let Some(unknown) = v
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .find(|k| !["workspace", "policy", "system", "case"].contains(&k.as_str()))
        {
            bail!("{shown}: unknown key `{unknown}`; a suite has workspace, policy, system and [[case]] tables");
        }
        let cases = v["case"]
            .as_array()
            .with_context(|| format!("{shown} has no [[case]] tables"))?
            .iter()
            .enumerate()
            .map(|(i, c)| parse_case(c).with_context(|| format!("{shown}: case {}", i + 1)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut seen = HashSet::new();
        for c in &cases {
            if !seen.insert(c.id.as_str()) {
                bail!(
                    "{shown}: two cases are called {:?}; ids must be unique",
                    c.id
                );
            }
        }
        Ok(Suite {
            path: path.to_path_buf(),
            workspace,
            policy,
            system: v["system"].as_str().map(String::from),
            cases,
        })
    }
}

fn parse_case(c: &Value) -> anyhow::Result<Case> {
    let id = c["id"].as_str().context("`id` is missing")?.to_string();
    let at = |m: String| format!("case {id:?}: {m}");
    for k in c.as_object().into_iter().flat_map(|o| o.keys()) {
        if !["id", "prompt", "turns", "expect"].contains(&k.as_str()) {
            bail!(at(format!(
                "unknown key `{k}` (use id, prompt or turns, expect)"
            )));
        }
    }
    let turns: Vec<String> = match (&c["prompt"], &c["turns"]) {
        (Value::String(p), Value::Null) => vec![p.clone()],
        (Value::Null, Value::Array(t)) if !t.is_empty() => t
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .context(at("turns must be strings".into()))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => bail!(at("give either prompt = \"…\" or turns = [\"…\", …]".into())),
    };
    let e = &c["expect"];
    if !e.is_object() {
        bail!(at(
            "`expect` is missing: { tool = … }, { calls = […] } or { no_call = true }".into()
        ));
    }
    let expect = if e["no_call"] == Value::Bool(true) {
        let answer = match e["answer"].as_str() {
            Some(r) => Some(
                Regex::new(r).with_context(|| at(format!("answer {r:?} is not a valid regex")))?,
            ),
            None => None,
        };
        Expect::NoCall { answer }
    } else if let Some(calls) = e["calls"].as_array() {
        Expect::Calls {
            calls: calls
                .iter()
                .map(|x| expected_call(x, &id))
                .collect::<anyhow::Result<_>>()?,
            ordered: e["ordered"].as_bool().unwrap_or(false),
        }
    } else if e["tool"].is_string() {
        Expect::Calls {
            calls: vec![expected_call(e, &id)?],
            ordered: false,
        }
    } else {
        bail!(at(
            "`expect` needs tool = \"…\", calls = […] or no_call = true".into()
        ));
    };
    Ok(Case { id, turns, expect })
}

fn expected_call(v: &Value, id: &str) -> anyhow::Result<ExpectedCall> {
    let tool = v["tool"]
        .as_str()
        .with_context(|| format!("case {id:?}: an expected call needs tool = \"…\""))?
        .to_string();
    let args = match &v["args"] {
        Value::Null => vec![],
        Value::Object(o) => o
            .iter()
            .map(|(k, m)| {
                Ok((
                    k.clone(),
                    Matcher::parse(m, &format!("case {id:?}, argument {k}"))?,
                ))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => bail!("case {id:?}: args must be a table"),
    };
    Ok(ExpectedCall { tool, args })
}
