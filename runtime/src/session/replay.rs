//! Recorded outputs played back as a model: one backend for the three
//! forms a recording takes — a warden session log (its `generation` records,
//! and its `turn` records' user messages), JSON Lines of `{"output": …}`
//! (one per generation), and eval's `{"id", "outputs": […]}` (per case,
//! queued with [`ReplayCases::start`]).

use super::backend::{Backend, Generated};
use crate::audit::record::Record;
use crate::chat::ChatTemplate;
use crate::model::Timings;
use anyhow::Context as _;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// One recorded generation, with its timings when the recording has them.
type Output = (String, Option<Timings>);

/// Recorded outputs played back in order (clones play from the same
/// queue: one recording served to many sessions).
#[derive(Clone)]
pub struct ReplayBackend {
    path: PathBuf,
    template: ChatTemplate,
    /// What is left to play (all of it, or the current case's).
    queue: Arc<Mutex<VecDeque<Output>>>,
    /// Outputs by case (eval's form).
    cases: Option<Arc<HashMap<String, Vec<String>>>>,
    users: Vec<String>,
    thinking: Option<bool>,
    recorded: usize,
}

impl ReplayBackend {
    /// Reads `path` in any of the three forms (see the module). Prompts are
    /// rendered with `template` (the recorded model's, or Qwen3's by
    /// default).
    pub fn open(path: &Path, template: Option<ChatTemplate>) -> anyhow::Result<ReplayBackend> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the replay file {}", path.display()))?;
        let mut outputs = Vec::new();
        let mut users = Vec::new();
        let mut thinking = None;
        let mut cases: HashMap<String, Vec<String>> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = || format!("{}:{}", path.display(), i + 1);
            let v: Value =
                serde_json::from_str(line).with_context(|| format!("{}: not a JSON line", at()))?;
            if v.get("outputs").is_some() || (v.get("id").is_some() && v.get("type").is_none()) {
                let id = v["id"]
                    .as_str()
                    .with_context(|| format!("{}: no \"id\"", at()))?;
                let list = v["outputs"]
                    .as_array()
                    .with_context(|| format!("{}: \"outputs\" must be a list of strings", at()))?
                    .iter()
                    .map(|o| {
                        o.as_str().map(String::from).with_context(|| {
                            format!("{}: \"outputs\" must be a list of strings", at())
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if cases.insert(id.to_string(), list).is_some() {
                    anyhow::bail!("{}: case {id:?} appears twice", at());
                }
                continue;
            }
            match (v["type"].as_str(), &v["output"]) {
                (Some("generation"), Value::String(o)) | (None, Value::String(o)) => {
                    let timings = serde_json::from_value(v["timings"].clone()).ok();
                    outputs.push((o.clone(), timings));
                }
                (Some("session_start"), _) => thinking = v["thinking"].as_bool(),
                (Some("turn"), _) => {
                    if let Some(u) = v["user"].as_str() {
                        users.push(u.to_string());
                    }
                }
                (Some(_), _) => {}
                (None, _) => anyhow::bail!(
                    "{}: expected {{\"output\": \"…\"}}, {{\"id\", \"outputs\"}} or a warden session log record",
                    at()
                ),
            }
        }
        if !cases.is_empty() && !outputs.is_empty() {
            anyhow::bail!(
                "{} mixes per-case {{\"id\", \"outputs\"}} lines with other recordings; keep one form per file",
                path.display()
            );
        }
        let recorded = outputs.len() + cases.values().map(Vec::len).sum::<usize>();
        if recorded == 0 && cases.is_empty() {
            anyhow::bail!("{} holds no generations to replay", path.display());
        }
        let template = match template {
            Some(t) => t,
            None => super::backend::qwen3_template()?,
        };
        Ok(ReplayBackend {
            path: path.to_path_buf(),
            template,
            queue: Arc::new(Mutex::new(outputs.into())),
            cases: (!cases.is_empty()).then(|| Arc::new(cases)),
            users,
            thinking,
            recorded,
        })
    }

    /// The user messages of the recorded turns (empty for an outputs file).
    pub fn users(&self) -> &[String] {
        &self.users
    }

    /// The recorded session's `enable_thinking` (a session log's
    /// `session_start`), to render its prompts as they were.
    pub fn recorded_thinking(&self) -> Option<bool> {
        self.thinking
    }

    /// Generations not yet played (of the current case, per case).
    pub fn remaining(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A handle that queues one case's outputs at a time, for a recording in
    /// eval's per-case form (`None` for the other forms).
    pub fn cases(&self) -> Option<ReplayCases> {
        self.cases.as_ref().map(|c| ReplayCases {
            path: self.path.clone(),
            queue: self.queue.clone(),
            cases: c.clone(),
        })
    }
}

/// Queues a per-case recording's outputs for the case about to run.
#[derive(Clone)]
pub struct ReplayCases {
    path: PathBuf,
    queue: Arc<Mutex<VecDeque<Output>>>,
    cases: Arc<HashMap<String, Vec<String>>>,
}

impl ReplayCases {
    /// Queues case `id`'s outputs; an error when the recording has none.
    pub fn start(&self, id: &str) -> anyhow::Result<()> {
        let o = self.cases.get(id).with_context(|| {
            format!(
                "the replay file {} has no outputs for case {id:?}",
                self.path.display()
            )
        })?;
        *self.queue.lock().unwrap_or_else(|e| e.into_inner()) =
            o.iter().map(|t| (t.clone(), None)).collect();
        Ok(())
    }
}

impl Backend for ReplayBackend {
    fn describe(&self) -> Value {
        json!({
            "kind": "replay",
            "path": self.path,
            "files": [{"path": self.path, "sha256": crate::audit::sha256_file(&self.path).unwrap_or_default()}],
            "generations": self.recorded,
        })
    }

    fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn generate(
        &mut self,
        _prompt: &str,
        _max_tokens: usize,
        _grammar: Option<&str>,
        _cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated> {
        let Some((text, timings)) = self
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
        else {
            anyhow::bail!(
                "the replay {} has no more generations{}; the session asked for more than was recorded",
                self.path.display(),
                if self.cases.is_some() {
                    " for this case".to_string()
                } else {
                    format!(" (it recorded {})", self.recorded)
                }
            );
        };
        on_text(&text);
        Ok(Generated {
            text,
            finish_reason: "replay".into(),
            timings: timings.unwrap_or_default(),
            total_ms: 0.0,
            server_response: None,
        })
    }
}

/// How a replayed session's calls differ from its recording's: by tool,
/// decision, outcome, and (for calls that succeeded) the output's sha256.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Comparison {
    /// One line per call that differs, and one when the counts differ.
    pub differences: Vec<String>,
}

/// A recorded call, as far as comparing goes.
#[derive(Debug, Clone, PartialEq)]
struct CallSeen {
    tool: Option<String>,
    decision: String,
    outcome: String,
    output_sha256: String,
}

fn calls_of(log: &Path) -> anyhow::Result<Vec<CallSeen>> {
    Ok(crate::audit::read_typed(log)?
        .into_iter()
        .filter_map(|r| match r.record {
            Record::ToolCall(c) => Some(CallSeen {
                tool: c.tool,
                decision: c.decision,
                outcome: c.outcome,
                output_sha256: c.output_sha256,
            }),
            _ => None,
        })
        .collect())
}

impl Comparison {
    /// Compares the calls of the log `replayed` with those of `recording`.
    pub fn of(recording: &Path, replayed: &Path) -> anyhow::Result<Comparison> {
        let (before, after) = (calls_of(recording)?, calls_of(replayed)?);
        let mut differences = Vec::new();
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            // A failure is compared by its kind: its message may name paths
            // that differ between machines.
            let same_output = b.outcome != "ok" || b.output_sha256 == a.output_sha256;
            if b.tool != a.tool
                || b.decision != a.decision
                || b.outcome != a.outcome
                || !same_output
            {
                let what = if b.decision != a.decision || b.outcome != a.outcome {
                    format!(
                        "decision/outcome {}/{} → {}/{}",
                        b.decision, b.outcome, a.decision, a.outcome
                    )
                } else {
                    "the output differs".into()
                };
                differences.push(format!(
                    "call_{} ({}): {what}",
                    i + 1,
                    a.tool.as_deref().unwrap_or("?")
                ));
            }
        }
        if before.len() != after.len() {
            differences.push(format!(
                "the recording made {} calls, the replay {}",
                before.len(),
                after.len()
            ));
        }
        Ok(Comparison { differences })
    }
}

/// A scratch copy of `workspace` to replay in, so recorded writes never
/// change the user's files by surprise; kept (not removed) so what the
/// replayed calls wrote can be looked at. The copy's path.
pub fn scratch_copy(workspace: &Path) -> anyhow::Result<PathBuf> {
    let scratch = tempfile::Builder::new()
        .prefix("warden-replay-")
        .tempdir()
        .context("cannot make a scratch directory for the replay")?
        .keep();
    let copy = scratch.join("workspace");
    crate::outputs::copy_tree(workspace, &copy, true).with_context(|| {
        format!(
            "cannot copy the workspace {} for the replay (pass --in-place to run against it)",
            workspace.display()
        )
    })?;
    Ok(copy)
}

/// A recording replayed under a policy: the turns, the new log, and how its
/// calls differ from the recording's.
pub struct Replayed {
    /// Each turn as it ran.
    pub turns: Vec<super::TurnReport>,
    /// The replay's own session log.
    pub log: PathBuf,
    /// Calls that differ from the recording.
    pub comparison: Comparison,
}

/// Replays the session log `recording` (its model outputs, its users'
/// messages, its thinking setting) through a session set up by `setup`,
/// calling `on_turn(i, user)` before each turn and `on_event` during it;
/// then compares the calls with the recording's.
pub fn replay_recording(
    recording: &Path,
    setup: super::setup::SessionSetup,
    cancel: std::sync::Arc<AtomicBool>,
    on_turn: &mut dyn FnMut(usize, &str),
    on_event: &mut dyn FnMut(super::Event<'_>),
) -> anyhow::Result<Replayed> {
    let backend = ReplayBackend::open(recording, None)?;
    let users = backend.users().to_vec();
    if users.is_empty() {
        anyhow::bail!(
            "{} is not a warden session log with turns (an outputs file replays with `warden run --model replay:FILE`)",
            recording.display()
        );
    }
    let opts = super::SessionOptions {
        max_tokens: 2048,
        enable_thinking: backend.recorded_thinking(),
        ..setup.opts
    };
    let mut session = super::Session::start(
        &setup.host,
        Box::new(backend),
        setup.log.create()?,
        opts,
        cancel,
    )?;
    let mut turns = Vec::new();
    for (i, user) in users.iter().enumerate() {
        on_turn(i, user);
        turns.push(session.turn(user, on_event)?);
    }
    let log = session.end("replay")?;
    let comparison = Comparison::of(recording, &log)?;
    Ok(Replayed {
        turns,
        log,
        comparison,
    })
}
