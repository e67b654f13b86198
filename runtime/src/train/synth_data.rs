//! `warden synth-data`: training conversations for a suite's workspace and
//! policy. Questions come from templates (`assets/synth-data/templates.toml`)
//! over names found in the workspace (classes, functions, files,
//! directories); each carries the right tool call, the **real** result of
//! running it in the sandbox, and a templated answer that uses it; and
//! questions that need no tool come with direct answers. Names and
//! phrasings held out (`--holdout`), and every name and prompt of the
//! suite's own cases, never appear in a training question or tool call, so
//! that an eval on the suite measures generalisation, not recall.

use crate::chat::{tool_json, Conversation, FunctionCall, Message, ToolCall};
use crate::eval::suite::Suite;
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use anyhow::{bail, Context as _};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use regex::Regex;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The shipped templates.
pub const TEMPLATES: &str = include_str!("../../assets/synth-data/templates.toml");

#[derive(Debug, Clone, Deserialize)]
struct Template {
    kind: String,
    tool: String,
    args: Map<String, Value>,
    answer: String,
    /// The answer when the search finds nothing (templates that take
    /// invented names).
    #[serde(default)]
    missing: Option<String>,
    phrasings: Vec<String>,
}

/// Parts of invented names.
#[derive(Debug, Clone, Default, Deserialize)]
struct Invented {
    class_heads: Vec<String>,
    class_tails: Vec<String>,
    verbs: Vec<String>,
    objects: Vec<String>,
}

impl Invented {
    /// A made-up name for a template of `kind`.
    fn name(&self, kind: &str, rng: &mut impl Rng) -> Option<String> {
        let pick = |v: &[String], rng: &mut dyn rand::RngCore| -> Option<String> {
            (!v.is_empty()).then(|| v[rng.next_u32() as usize % v.len()].clone())
        };
        match kind {
            "class" => Some(format!(
                "{}{}",
                pick(&self.class_heads, rng)?,
                pick(&self.class_tails, rng)?
            )),
            "function" | "uses" => Some(format!(
                "{}_{}",
                pick(&self.verbs, rng)?,
                pick(&self.objects, rng)?
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Direct {
    phrasings: Vec<String>,
    answer: String,
}

#[derive(Debug, Deserialize)]
struct Templates {
    #[serde(default)]
    invented: Invented,
    template: Vec<Template>,
    direct: Vec<Direct>,
}

/// What to write.
#[derive(Debug, Clone)]
pub struct SynthDataOptions {
    /// The suite whose workspace and policy are used.
    pub suite: PathBuf,
    /// The JSON Lines file to write.
    pub out: PathBuf,
    /// How many conversations.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Fraction of names and phrasings held out.
    pub holdout: f64,
    /// Fraction of conversations that need no tool.
    pub direct_fraction: f64,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthDataReport {
    /// Conversations written.
    pub conversations: usize,
    /// Of which need no tool.
    pub direct: usize,
    /// Names held out (never in training), by kind.
    pub held_out_names: BTreeMap<String, Vec<String>>,
    /// Phrasings held out.
    pub held_out_phrasings: Vec<String>,
    /// Suite cases none of whose names or prompts were trained on.
    pub held_out_cases: Vec<String>,
    /// Where the holdout list was written.
    pub holdout_file: PathBuf,
}

/// A name found in the workspace.
#[derive(Debug, Clone)]
struct Found {
    name: String,
}

/// Names in the workspace, by template kind.
fn scan(workspace: &Path) -> anyhow::Result<BTreeMap<&'static str, Vec<Found>>> {
    let class = Regex::new(r"^\s*class\s+([A-Za-z_]\w*)").expect("static regex");
    let func = Regex::new(r"^\s*(?:async\s+)?def\s+([A-Za-z]\w*)").expect("static regex");
    let mut out: BTreeMap<&'static str, Vec<Found>> = BTreeMap::new();
    let mut stack = vec![workspace.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list {}", dir.display()))?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || name == "__pycache__" {
                continue;
            }
            let path = e.path();
            let rel = path
                .strip_prefix(workspace)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            let ft = e.file_type()?;
            if ft.is_dir() {
                out.entry("dir")
                    .or_default()
                    .push(Found { name: rel.clone() });
                stack.push(path);
            } else if ft.is_file() {
                out.entry("file")
                    .or_default()
                    .push(Found { name: rel.clone() });
                if name.ends_with(".py") && e.metadata()?.len() < 1 << 20 {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for l in text.lines() {
                        if let Some(c) = class.captures(l) {
                            out.entry("class").or_default().push(Found {
                                name: c[1].to_string(),
                            });
                        }
                        if let Some(c) = func.captures(l) {
                            out.entry("function").or_default().push(Found {
                                name: c[1].to_string(),
                            });
                        }
                    }
                }
            }
        }
    }
    // `uses` searches for function names.
    let words = out.get("function").cloned().unwrap_or_default();
    out.insert("uses", words);
    for v in out.values_mut() {
        let mut seen = BTreeSet::new();
        v.retain(|f| seen.insert(f.name.clone()));
    }
    Ok(out)
}

/// Whether `text` mentions `name` as a whole word (or path).
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !word(before) && !word(after)
    })
}

fn fill(s: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = s.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

fn fill_value(v: &Value, vars: &BTreeMap<&str, String>) -> Value {
    match v {
        Value::String(s) => Value::String(fill(s, vars)),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), fill_value(x, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Figures the answer templates use, read from a tool's real output.
fn result_vars(kind: &str, output: &str, vars: &mut BTreeMap<&str, String>) -> bool {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    match kind {
        "class" | "function" | "uses" => {
            // `file:line: text`
            let Some((file, rest)) = lines.first().and_then(|l| l.split_once(':')) else {
                return false;
            };
            let Some((line, _)) = rest.split_once(':') else {
                return false;
            };
            vars.insert("file", file.to_string());
            vars.insert("line", line.to_string());
            vars.insert("count", lines.len().to_string());
        }
        "file" => {
            vars.insert("lines", lines.len().to_string());
        }
        "dir" => {
            let entries: Vec<String> = lines
                .iter()
                .filter_map(|l| l.split_whitespace().last())
                .map(|p| {
                    p.rsplit('/')
                        .find(|s| !s.is_empty())
                        .unwrap_or(p)
                        .to_string()
                })
                .collect();
            if entries.is_empty() {
                return false;
            }
            vars.insert("count", entries.len().to_string());
            vars.insert("entries", entries.join(", "));
        }
        _ => {}
    }
    true
}

/// Splits `items` into (training, held out), holding out `fraction` (at
/// least one when there are two or more) plus every item `forced` says.
fn split<T: Clone>(
    items: &[T],
    fraction: f64,
    rng: &mut impl Rng,
    forced: impl Fn(&T) -> bool,
) -> (Vec<T>, Vec<T>) {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    idx.shuffle(rng);
    let want = if fraction > 0.0 && items.len() > 1 {
        ((items.len() as f64 * fraction).ceil() as usize).max(1)
    } else {
        0
    };
    let (mut train, mut held) = (Vec::new(), Vec::new());
    let mut held_n = 0;
    for i in idx {
        if forced(&items[i]) {
            held.push(items[i].clone());
        } else if held_n < want {
            held.push(items[i].clone());
            held_n += 1;
        } else {
            train.push(items[i].clone());
        }
    }
    (train, held)
}

/// Writes the training file and `<out>.holdout.json`.
pub fn synth_data(opts: &SynthDataOptions) -> anyhow::Result<SynthDataReport> {
    if !(0.0..1.0).contains(&opts.holdout) {
        bail!("--holdout must be at least 0 and below 1");
    }
    let suite = Suite::load(&opts.suite)?;
    let policy = Policy::load(&suite.policy, &suite.workspace)?;
    let host = ToolHost::load(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tools: Vec<Value> = host
        .tools()
        .map(|t| tool_json(&t.spec.name, &t.spec.description, &t.spec.parameters))
        .collect();
    let templates: Templates =
        toml::from_str(TEMPLATES).context("the shipped synth-data templates")?;
    let found = scan(&suite.workspace)?;
    let prompts: Vec<String> = suite.cases.iter().flat_map(|c| c.turns.clone()).collect();
    let in_suite = |name: &str| prompts.iter().any(|p| mentions(p, name));
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);

    // Names: per kind, those the suite mentions and a fraction more are held out.
    let mut train_names: BTreeMap<String, Vec<Found>> = BTreeMap::new();
    let mut held_out_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, names) in &found {
        let (t, h) = split(names, opts.holdout, &mut rng, |f| in_suite(&f.name));
        held_out_names.insert(kind.to_string(), h.iter().map(|f| f.name.clone()).collect());
        train_names.insert(kind.to_string(), t);
    }
    let all_held: BTreeSet<String> = held_out_names.values().flatten().cloned().collect();
    // Phrasings: a fraction of each template's, and any the suite uses.
    let mut usable: Vec<(Template, Vec<String>)> = Vec::new();
    let mut held_out_phrasings = Vec::new();
    for t in &templates.template {
        if host.tool(&t.tool).is_none() {
            continue;
        }
        let (train, held) = split(&t.phrasings, opts.holdout, &mut rng, |p| {
            prompts.contains(p)
        });
        held_out_phrasings.extend(held);
        // A name may be trained in one kind and held out in another (a
        // function and a file share no names, but `uses` and `function`
        // do): only names held out nowhere are used.
        let names = train_names.get(&t.kind).cloned().unwrap_or_default();
        if !train.is_empty() && names.iter().any(|f| !all_held.contains(&f.name)) {
            usable.push((t.clone(), train));
        }
    }
    let mut direct: Vec<(String, String)> = Vec::new();
    for d in &templates.direct {
        let (train, held) = split(&d.phrasings, opts.holdout, &mut rng, |p| {
            prompts.contains(p)
        });
        held_out_phrasings.extend(held);
        direct.extend(train.into_iter().map(|p| (p, d.answer.clone())));
    }
    if usable.is_empty() {
        bail!(
            "no template has a tool in {} and a name to train on in {}",
            suite.policy.display(),
            suite.workspace.display()
        );
    }

    let file = std::fs::File::create(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let (mut written, mut n_direct, mut failed) = (0, 0, 0);
    while written < opts.n {
        let want_direct =
            !direct.is_empty() && rng.random_bool(opts.direct_fraction.clamp(0.0, 1.0));
        let conv = loop {
            if failed > opts.n * 20 + 100 {
                bail!(
                    "could not make {} conversations: the tool calls keep failing (made {written})",
                    opts.n
                );
            }
            let messages = if want_direct {
                let (q, a) = &direct[rng.random_range(0..direct.len())];
                vec![
                    Message::new("user", q.clone()),
                    Message::new("assistant", a.clone()),
                ]
            } else {
                let (t, phrasings) = &usable[rng.random_range(0..usable.len())];
                let names: Vec<&Found> = train_names[&t.kind]
                    .iter()
                    .filter(|f| !all_held.contains(&f.name))
                    .collect();
                // Half the questions that can take one ask for an invented
                // name (1,000 classes, 1,600 functions): the call is the
                // same, the answer says so, and the name must be copied
                // from the question, not recalled.
                let invented = t.missing.is_some() && rng.random_bool(0.5);
                let name = match invented
                    .then(|| templates.invented.name(&t.kind, &mut rng))
                    .flatten()
                {
                    Some(n) => n,
                    None => names[rng.random_range(0..names.len())].name.clone(),
                };
                let mut vars: BTreeMap<&str, String> = BTreeMap::new();
                for k in ["name", "word", "file", "dir"] {
                    vars.insert(k, name.clone());
                }
                let args = fill_value(&Value::Object(t.args.clone()), &vars);
                let question = fill(&phrasings[rng.random_range(0..phrasings.len())], &vars);
                let mut budget = host.budget();
                let (out, answer) = match host.call(&mut budget, &t.tool, &args.to_string()) {
                    Ok(out) if result_vars(&t.kind, &out.output, &mut vars) => (out, &t.answer),
                    Ok(out)
                        if t.missing.is_some()
                            && out.output.to_ascii_lowercase().starts_with("no matches") =>
                    {
                        (out, t.missing.as_ref().expect("checked"))
                    }
                    _ => {
                        failed += 1;
                        continue;
                    }
                };
                let mut call = Message::new("assistant", "");
                call.tool_calls = vec![ToolCall {
                    kind: "function".into(),
                    id: None,
                    function: FunctionCall {
                        name: t.tool.clone(),
                        arguments: args,
                    },
                }];
                let mut result = Message::new("tool", out.output);
                result.name = Some(t.tool.clone());
                vec![
                    Message::new("user", question),
                    call,
                    result,
                    Message::new("assistant", fill(answer, &vars)),
                ]
            };
            // What the model is trained to read and to write must not touch
            // what is held out: the question and the call's arguments. (Tool
            // output is the workspace's; it may show a held-out path.)
            let asked = format!(
                "{} {}",
                messages[0].content,
                messages
                    .get(1)
                    .map(|m| serde_json::to_string(&m.tool_calls).unwrap_or_default())
                    .unwrap_or_default()
            );
            if prompts.contains(&messages[0].content)
                || all_held.iter().any(|h| mentions(&asked, h))
            {
                failed += 1;
                continue;
            }
            break Conversation {
                messages,
                tools: Some(tools.clone()),
                enable_thinking: None,
                add_generation_prompt: Some(false),
            };
        };
        n_direct += usize::from(want_direct);
        writeln!(w, "{}", serde_json::to_string(&conv)?)?;
        written += 1;
    }
    w.flush()?;
    // Every name a suite prompt mentions is held out and no suite prompt is
    // written, so every case of the suite is held out.
    let held_out_cases: Vec<String> = suite.cases.iter().map(|c| c.id.clone()).collect();
    let holdout_file = PathBuf::from(format!("{}.holdout.json", opts.out.display()));
    let report = SynthDataReport {
        conversations: written,
        direct: n_direct,
        held_out_names,
        held_out_phrasings,
        held_out_cases,
        holdout_file: holdout_file.clone(),
    };
    std::fs::write(&holdout_file, serde_json::to_vec_pretty(&json!(report))?)
        .with_context(|| format!("cannot write {}", holdout_file.display()))?;
    Ok(report)
}
