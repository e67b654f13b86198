//! `warden synth-data`: training conversations for a suite's workspace and
//! policy. Questions come from templates (`assets/synth-data/templates.toml`)
//! over names found in a training workspace (the suite's, copied, plus
//! generated packages with invented names; see [`tree`]) and over invented
//! names that are nowhere; each carries the right tool call, the **real**
//! result of running it in the sandbox, and a templated answer that uses
//! it. Questions that need no tool ([`direct`]) come with direct answers.
//! Names, topics and phrasings held out (`--holdout`), and every name and
//! topic the suite's own prompts mention, never appear in a training
//! question or tool call, so that an eval on the suite measures
//! generalisation, not recall.

mod direct;
mod drills;
mod names;
mod tree;

use crate::chat::{tool_json, Conversation, FunctionCall, Message, ToolCall};
use crate::eval::suite::Suite;
use crate::paths::real_path;
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use anyhow::{bail, Context as _};
use direct::{DirectPool, Fixed, Frames, Topic};
use drills::Drills;
use names::{mentions, Invented};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;
use tree::TreeConfig;

/// The shipped templates.
pub const TEMPLATES: &str = include_str!("../../../assets/synth-data/templates.toml");

#[derive(Debug, Clone, Deserialize)]
struct Template {
    kind: String,
    tool: String,
    args: Map<String, Value>,
    answer: String,
    /// The answer when the name is nowhere (the search finds nothing, the
    /// file or directory does not exist).
    #[serde(default)]
    missing: Option<String>,
    /// How the output is read (see [`result_style`]); by default from `kind`.
    #[serde(default)]
    result: Option<String>,
    /// Whether questions may take invented names (default: when there is a
    /// `missing` answer).
    #[serde(default)]
    invent: Option<bool>,
    phrasings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Templates {
    #[serde(default)]
    invented: Invented,
    #[serde(default)]
    tree: TreeConfig,
    template: Vec<Template>,
    #[serde(default)]
    frames: Frames,
    #[serde(default)]
    topic: Vec<Topic>,
    #[serde(default)]
    direct: Vec<Fixed>,
    #[serde(default)]
    drills: Drills,
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
    /// Other suites whose prompts are held out as the suite's own are
    /// (their names, topics and phrasings never trained on).
    pub hold_out_suites: Vec<PathBuf>,
    /// Keep the training workspace (the tool results came from it) here;
    /// by default it is a temporary directory, removed at the end.
    pub tree: Option<PathBuf>,
    /// Copy drills written after the `n` conversations (see [`drills`]).
    pub copy_drills: usize,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthDataReport {
    /// Conversations written.
    pub conversations: usize,
    /// Of which need no tool.
    pub direct: usize,
    /// Copy drills written after them.
    pub copy_drills: usize,
    /// Names held out (never in training), by kind.
    pub held_out_names: BTreeMap<String, Vec<String>>,
    /// Phrasings held out.
    pub held_out_phrasings: Vec<String>,
    /// Topics of questions that need no tool held out.
    pub held_out_topics: Vec<String>,
    /// Generated packages in the training workspace.
    pub generated_packages: usize,
    /// Suite cases none of whose names or prompts were trained on.
    pub held_out_cases: Vec<String>,
    /// Where the holdout list was written.
    pub holdout_file: PathBuf,
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

/// How a template's tool output is read: `matches` (`file:line: text`
/// lines), `numbered` (read_file's numbered lines), `entries` (a listing,
/// one entry per line) or `number` (a count first, as `wc -l` prints).
fn result_style(t: &Template) -> &str {
    match (t.result.as_deref(), t.kind.as_str()) {
        (Some(r), _) => r,
        (None, "file") => "numbered",
        (None, "dir" | "ext") => "entries",
        (None, _) => "matches",
    }
}

/// Figures the answer templates use, read from a tool's real output;
/// false when the output is not a success of that style (a command that
/// exited with a failure status is not).
fn result_vars(style: &str, output: &str, vars: &mut BTreeMap<&str, String>) -> bool {
    if output.contains("[exit status: ") {
        return false;
    }
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    match style {
        "matches" => {
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
        "numbered" => {
            // `{number:>6}\t{text}` per line.
            let numbered: Vec<(&str, &str)> =
                output.lines().filter_map(|l| l.split_once('\t')).collect();
            let Some((last, _)) = numbered.last() else {
                return false;
            };
            let first = numbered
                .iter()
                .map(|(_, t)| t.trim())
                .find(|t| !t.is_empty())
                .unwrap_or("");
            vars.insert("lines", last.trim().to_string());
            vars.insert("first", first.to_string());
        }
        "number" => {
            let Some(n) = lines
                .first()
                .and_then(|l| l.split_whitespace().next())
                .filter(|n| n.parse::<u64>().is_ok())
            else {
                return false;
            };
            vars.insert("count", n.to_string());
        }
        "entries" => {
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
        _ => return false,
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

/// Strips a leading article: what a suite prompt would mention of a topic.
fn topic_key(name: &str) -> &str {
    ["a ", "an ", "the "]
        .iter()
        .find_map(|a| name.strip_prefix(a))
        .unwrap_or(name)
}

/// Writes the training file and `<out>.holdout.json`.
pub fn synth_data(opts: &SynthDataOptions) -> anyhow::Result<SynthDataReport> {
    if !(0.0..1.0).contains(&opts.holdout) {
        bail!("--holdout must be at least 0 and below 1");
    }
    let suite = Suite::load(&opts.suite)?;
    let templates: Templates =
        toml::from_str(TEMPLATES).context("the shipped synth-data templates")?;
    let found = names::scan(&suite.workspace)?;
    let mut prompts: Vec<String> = suite.cases.iter().flat_map(|c| c.turns.clone()).collect();
    for other in &opts.hold_out_suites {
        let o = Suite::load(other)?;
        prompts.extend(o.cases.iter().flat_map(|c| c.turns.clone()));
    }
    let in_suite = |name: &str| prompts.iter().any(|p| mentions(p, name));
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);

    // Names of the suite's workspace: those the suite mentions and a
    // fraction more are held out.
    let mut held_out_names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, names) in found.iter().filter(|(k, _)| **k != "ext") {
        let (_, h) = split(names, opts.holdout, &mut rng, |n| in_suite(n));
        held_out_names.insert(kind.to_string(), h);
    }
    let all_held: BTreeSet<String> = held_out_names.values().flatten().cloned().collect();
    let leaks = |text: &str| all_held.iter().any(|h| mentions(text, h));
    // Words for invented names: none the suite's prompts use.
    let words: Vec<String> =
        names::vocabulary_words(crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON)?
            .into_iter()
            .filter(|w| !in_suite(w) && !leaks(w) && !templates.invented.exclude.contains(w))
            .collect();

    // The training workspace.
    let tmp;
    let tree_dir = match &opts.tree {
        Some(d) => {
            if d.read_dir().is_ok_and(|mut r| r.next().is_some()) {
                bail!(
                    "{} is not empty: give --tree a new or empty directory",
                    d.display()
                );
            }
            // The tree is a copy of the workspace: inside it, the copy would
            // copy itself without end; around it, the workspace would be
            // written to.
            let (tree, ws) = (real_path(d), real_path(&suite.workspace));
            if tree.starts_with(&ws) || ws.starts_with(&tree) {
                bail!(
                    "--tree {} {} the suite's workspace {}: give --tree a directory outside it",
                    d.display(),
                    if tree.starts_with(&ws) {
                        "lies inside"
                    } else {
                        "contains"
                    },
                    suite.workspace.display()
                );
            }
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().context("cannot make a temporary directory")?;
            tmp.path().join("workspace")
        }
    };
    let generated_packages = tree::build(
        &suite.workspace,
        &tree_dir,
        &templates.tree,
        &words,
        &templates.invented.class_tails,
        &mut rng,
        &|n: &str| leaks(n) || in_suite(n),
    )?;
    let train_names: BTreeMap<String, Vec<String>> = names::scan(&tree_dir)?
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().filter(|n| !leaks(n)).collect()))
        .collect();
    let dirs = train_names.get("dir").cloned().unwrap_or_default();

    let policy = Policy::load(&suite.policy, &tree_dir)?;
    let host = ToolHost::load(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tools: Vec<Value> = host
        .tools()
        .map(|t| tool_json(&t.spec.name, &t.spec.description, &t.spec.parameters))
        .collect();

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
        let named = train_names.get(&t.kind).is_some_and(|v| !v.is_empty());
        if !train.is_empty() && (named || t.invent.unwrap_or(t.missing.is_some())) {
            usable.push((t.clone(), train));
        }
    }
    // Questions that need no tool: frames, topics and fixed questions.
    let mut pool = DirectPool::default();
    let forced = |p: &String| prompts.contains(p);
    let (explain, h) = split(&templates.frames.explain, opts.holdout, &mut rng, forced);
    held_out_phrasings.extend(h);
    let (compare, h) = split(&templates.frames.compare, opts.holdout, &mut rng, forced);
    held_out_phrasings.extend(h);
    let (topics, held_topics) = split(&templates.topic, opts.holdout, &mut rng, |t| {
        in_suite(topic_key(&t.name))
    });
    (pool.explain, pool.compare, pool.topics) = (explain, compare, topics);
    for d in &templates.direct {
        let (train, held) = split(&d.phrasings, opts.holdout, &mut rng, forced);
        held_out_phrasings.extend(held);
        pool.fixed
            .extend(train.into_iter().map(|p| (p, d.answer.clone())));
    }
    // A phrasing held out by one template is held out by all: templates
    // share phrasings ("Where is the function {name} defined?").
    for (_, train) in usable.iter_mut() {
        train.retain(|p| !held_out_phrasings.contains(p));
    }
    usable.retain(|(_, train)| !train.is_empty());
    if usable.is_empty() {
        bail!(
            "no template has a tool in {} and a name to train on in {}",
            suite.policy.display(),
            suite.workspace.display()
        );
    }

    // Collected, then written whole (never through a planted link).
    let mut w: Vec<u8> = Vec::new();
    let (mut written, mut n_direct, mut failed) = (0, 0, 0);
    while written < opts.n {
        let want_direct = !pool.is_empty() && rng.random_bool(opts.direct_fraction.clamp(0.0, 1.0));
        let conv = loop {
            if failed > opts.n * 20 + 100 {
                bail!(
                    "could not make {} conversations: the tool calls keep failing (made {written})",
                    opts.n
                );
            }
            let messages = if want_direct {
                let Some((q, a)) = pool.draw(&mut rng) else {
                    failed += 1;
                    continue;
                };
                vec![Message::new("user", q), Message::new("assistant", a)]
            } else {
                let (t, phrasings) = &usable[rng.random_range(0..usable.len())];
                let known = train_names.get(&t.kind).map_or(&[][..], Vec::as_slice);
                // A third of the questions that can take one ask for a name
                // that is nowhere: the call is the same, the answer says so.
                let inventive = t.invent.unwrap_or(t.missing.is_some());
                let invent = inventive && (known.is_empty() || rng.random_bool(0.3));
                let name = if invent {
                    templates.invented.name(&t.kind, &words, &dirs, &mut rng)
                } else {
                    Some(known[rng.random_range(0..known.len())].clone())
                };
                // An invented name may happen to be one a suite asks about.
                let Some(name) = name.filter(|n| !in_suite(n)) else {
                    failed += 1;
                    continue;
                };
                let mut vars: BTreeMap<&str, String> = BTreeMap::new();
                for k in ["name", "word", "file", "dir", "ext"] {
                    vars.insert(k, name.clone());
                }
                let args = fill_value(&Value::Object(t.args.clone()), &vars);
                let question = fill(&phrasings[rng.random_range(0..phrasings.len())], &vars);
                let mut budget = host.budget();
                let missing = t.missing.as_deref().unwrap_or_default();
                let can_miss = invent && t.missing.is_some();
                let (content, answer) = match host.call(&mut budget, &t.tool, &args.to_string()) {
                    Ok(out) if result_vars(result_style(t), &out.output, &mut vars) => {
                        (out.output, t.answer.as_str())
                    }
                    // No match, or a command that failed on a name that is nowhere.
                    Ok(out)
                        if can_miss
                            && (out.output.to_ascii_lowercase().starts_with("no matches")
                                || out.output.contains("[exit status: ")) =>
                    {
                        (out.output, missing)
                    }
                    // What a session feeds back for a failed call.
                    Err(e) if can_miss && e.kind == crate::sandbox::ErrorKind::Failed => {
                        (format!("error: {e}"), missing)
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
                let mut result = Message::new("tool", content);
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
            if prompts.contains(&messages[0].content) || leaks(&asked) {
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
    // Copy drills: names found in the training workspace and invented ones,
    // none held out. Drawn after the conversations, so that a file without
    // drills is the same as before they existed.
    let found_pool: Vec<&String> = train_names
        .iter()
        .filter(|(k, _)| k.as_str() != "ext")
        .flat_map(|(_, v)| v)
        .collect();
    let mut drills = 0;
    while drills < opts.copy_drills {
        if failed > (opts.n + opts.copy_drills) * 20 + 100 {
            bail!(
                "could not make {} copy drills (made {drills})",
                opts.copy_drills
            );
        }
        let drawn = templates.drills.draw(&mut rng, |r| {
            if !found_pool.is_empty() && r.random_bool(0.5) {
                Some(found_pool[r.random_range(0..found_pool.len())].clone())
            } else {
                let kind = ["class", "function", "file", "dir"][r.random_range(0..4)];
                templates.invented.name(kind, &words, &dirs, r)
            }
        });
        let Some((q, a)) = drawn.filter(|(q, _)| !leaks(q) && !prompts.contains(q)) else {
            failed += 1;
            continue;
        };
        let conv = Conversation {
            messages: vec![Message::new("user", q), Message::new("assistant", a)],
            tools: None,
            enable_thinking: None,
            add_generation_prompt: Some(false),
        };
        writeln!(w, "{}", serde_json::to_string(&conv)?)?;
        drills += 1;
    }
    crate::outputs::write(&opts.out, &w)?;
    // Every name a suite prompt mentions is held out and no suite prompt is
    // written, so every case of the suite is held out.
    let held_out_cases: Vec<String> = suite.cases.iter().map(|c| c.id.clone()).collect();
    let holdout_file = PathBuf::from(format!("{}.holdout.json", opts.out.display()));
    let report = SynthDataReport {
        conversations: written,
        direct: n_direct,
        copy_drills: drills,
        held_out_names,
        held_out_phrasings,
        held_out_topics: held_topics.into_iter().map(|t| t.name).collect(),
        generated_packages,
        held_out_cases,
        holdout_file: holdout_file.clone(),
    };
    crate::outputs::write(&holdout_file, &serde_json::to_vec_pretty(&json!(report))?)?;
    Ok(report)
}
