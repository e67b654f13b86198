//! Where generations come from: the candle engine, or recorded outputs
//! forced through it (a replay without a model is in `session::replay`).

use crate::chat::ChatTemplate;
use crate::model::decode::constraint::Vocabulary;
use crate::model::{self, LoadedModel, SamplingParams, Timings};
use anyhow::Context as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// One generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The raw text the model wrote.
    pub text: String,
    /// Why it stopped (`stop`, `length`, `cancelled`, `replay`).
    pub finish_reason: String,
    /// Where the time went.
    pub timings: Timings,
    /// Wall time of the whole generation, tokenizing included.
    pub total_ms: f64,
    /// The server's answer as it came, when the server parsed the calls
    /// (an `openai:` model); `text` is then that answer in the call format.
    pub server_response: Option<Value>,
}

/// A turn's request to a backend that takes the conversation itself
/// ([`Backend::chat`]).
pub struct ChatTurn<'a> {
    /// The conversation so far.
    pub messages: &'a [crate::chat::Message],
    /// The tools offered, in OpenAI's shape.
    pub tools: &'a [Value],
    /// What the server is to hold the model to (the first generation of a
    /// turn under `required` or a name; `auto` after).
    pub tool_choice: crate::chat::ToolChoice,
    /// Whether the session asked for every generation under the tools'
    /// grammar (`--constrained`), which only warden's engine can do.
    pub constrained: bool,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Thinking on or off, when the session says.
    pub enable_thinking: Option<bool>,
}

/// A source of generations.
pub trait Backend: Send {
    /// What it is, for the log's `session_start` (`{"kind", "path", …}`).
    fn describe(&self) -> Value;
    /// The adapters applied unfused, for `session_start`'s `adapter`
    /// (a list of `{path, format, rank, scale, sha256, modules}`; null when
    /// none).
    fn adapters(&self) -> Value {
        Value::Null
    }
    /// The chat template prompts are rendered with.
    fn template(&self) -> &ChatTemplate;
    /// Generates a continuation of `prompt` (at most `max_tokens` tokens),
    /// streaming text to `on_text`; stops early when `cancel` is set. With
    /// `grammar` (llguidance's Lark), every token follows it; recordings
    /// replayed ignore it (they are what was written).
    fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        grammar: Option<&str>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated>;
    /// For a backend that takes the conversation rather than a prompt (an
    /// OpenAI chat endpoint renders and parses on its side): the next
    /// assistant message, its calls written in [`Backend::template`]'s call
    /// format, with `server_response` set. `None`: this backend takes
    /// prompts ([`Backend::generate`]).
    fn chat(
        &mut self,
        _turn: &ChatTurn<'_>,
        _cancel: &AtomicBool,
        _on_text: &mut dyn FnMut(&str),
    ) -> Option<anyhow::Result<Generated>> {
        None
    }
    /// Whether prompts are rendered here with [`Backend::template`] (not
    /// for a server that renders them itself: the log then records no
    /// template hash).
    fn renders_prompts(&self) -> bool {
        true
    }
}

/// The candle engine with a loaded model.
pub struct CandleBackend {
    model: LoadedModel,
    template: ChatTemplate,
    params: SamplingParams,
    files: Vec<(PathBuf, String)>,
    /// The draft model's path and files with their sha256, when one is attached.
    draft: Option<Value>,
    /// The grammar engine's vocabulary, built at the first constrained
    /// generation.
    vocabulary: Option<Vocabulary>,
}

impl CandleBackend {
    /// Wraps `model` (its template is the one chosen for it, else read
    /// from beside its weights).
    pub fn new(model: LoadedModel, params: SamplingParams) -> anyhow::Result<CandleBackend> {
        let template = ChatTemplate::for_run(&model.path, model.chat_template.as_deref())?;
        if model.tokenizer.is_none() {
            anyhow::bail!(
                "{} has no tokenizer; put the model's tokenizer.json beside its weights",
                model.path.display()
            );
        }
        let files = weight_files(&model.path)?
            .into_iter()
            .map(|p| sha256_file(&p).map(|h| (p, h)))
            .collect::<anyhow::Result<_>>()?;
        let draft = match &model.draft {
            Some((_, path)) => {
                let files = weight_files(path)?
                    .into_iter()
                    .map(|p| sha256_file(&p).map(|h| json!({"path": p, "sha256": h})))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Some(json!({"path": path, "files": files}))
            }
            None => None,
        };
        Ok(CandleBackend {
            model,
            template,
            params,
            files,
            draft,
            vocabulary: None,
        })
    }
}

impl Backend for CandleBackend {
    fn describe(&self) -> Value {
        let mut v = json!({
            "kind": "candle",
            "path": self.model.path,
            "format": self.model.format,
            "files": self.files.iter().map(|(p, h)| json!({"path": p, "sha256": h})).collect::<Vec<_>>(),
            "sampling": self.params,
        });
        // The draft model, when one proposes tokens.
        if let Some(d) = &self.draft {
            v["draft_model"] = d.clone();
        }
        v
    }

    fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn adapters(&self) -> Value {
        adapters_json(&self.model)
    }

    fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        grammar: Option<&str>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated> {
        let start = Instant::now();
        let mut constraint = match grammar {
            Some(g) => {
                if self.vocabulary.is_none() {
                    self.vocabulary = Some(Vocabulary::of(&self.model)?);
                }
                let v = self.vocabulary.as_ref().expect("built above");
                Some(v.constraint(g)?)
            }
            None => None,
        };
        let g = model::generate_with(
            &mut self.model,
            prompt,
            max_tokens,
            &self.params,
            &[],
            constraint.as_mut(),
            |piece| {
                on_text(piece);
                !cancel.load(Ordering::Relaxed)
            },
        )?;
        Generated::of(g, cancel.load(Ordering::Relaxed), start)
    }
}

impl Generated {
    /// A finished generation started at `start` (`cancelled`: its caller
    /// stopped it).
    pub fn of(g: model::Generation, cancelled: bool, start: Instant) -> anyhow::Result<Self> {
        Ok(Generated {
            text: g.text,
            finish_reason: if cancelled {
                "cancelled".into()
            } else {
                serde_json::to_value(&g.finish_reason)?
                    .as_str()
                    .unwrap_or("stop")
                    .into()
            },
            timings: g.timings,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            server_response: None,
        })
    }
}

/// Recorded outputs played through a real model: each prompt is prefilled
/// (reusing the cached prefix, as a live session does) and the recorded
/// output is decoded token by token by teacher forcing, so timings and
/// cache reuse are those of a real session that wrote these outputs. For
/// benchmarks and tests of the engine under a session; the text is the
/// recording's, whatever the weights would have written.
pub struct ForcedBackend {
    model: LoadedModel,
    template: ChatTemplate,
    outputs: Vec<String>,
    next: usize,
}

impl ForcedBackend {
    /// `model` with its template, forced to write `outputs` in order.
    pub fn new(model: LoadedModel, outputs: Vec<String>) -> anyhow::Result<ForcedBackend> {
        if model.tokenizer.is_none() {
            anyhow::bail!("{} has no tokenizer", model.path.display());
        }
        Ok(ForcedBackend {
            template: ChatTemplate::for_run(&model.path, model.chat_template.as_deref())?,
            model,
            outputs,
            next: 0,
        })
    }
}

impl Backend for ForcedBackend {
    fn describe(&self) -> Value {
        json!({"kind": "forced", "path": self.model.path, "format": self.model.format})
    }

    fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn adapters(&self) -> Value {
        adapters_json(&self.model)
    }

    fn generate(
        &mut self,
        prompt: &str,
        _max_tokens: usize,
        _grammar: Option<&str>,
        _cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated> {
        let text = self
            .outputs
            .get(self.next)
            .cloned()
            .context("no more recorded outputs to force")?;
        self.next += 1;
        let tok = self.model.tokenizer.as_ref().expect("checked in new");
        let start = Instant::now();
        let origin = || format!("the tokenizer of {}", self.model.path.display());
        let ids = model::checkpoint::tokenize::encode(tok, prompt).with_context(origin)?;
        let mut out_ids = model::checkpoint::tokenize::encode(tok, &text).with_context(origin)?;
        out_ids.push(self.model.model.end_of_turn());
        let mut t = Timings {
            tokenize_ms: start.elapsed().as_secs_f64() * 1e3,
            ..Timings::default()
        };
        let p0 = Instant::now();
        let (_, reused) = self.model.model.prefill(&ids, model::PREFILL_CHUNK)?;
        t.reused_tokens = reused;
        t.prefill_tokens = ids.len() - reused;
        t.prefill_ms = p0.elapsed().as_secs_f64() * 1e3;
        t.prefill_tok_s = t.prefill_tokens as f64 / p0.elapsed().as_secs_f64();
        t.ttft_ms = start.elapsed().as_secs_f64() * 1e3;
        let d0 = Instant::now();
        // The first output token was "sampled" from the prefill's logits;
        // each later one is run so the cache holds the whole output.
        for &id in &out_ids[..out_ids.len() - 1] {
            self.model.model.step(id)?;
        }
        t.decode_tokens = out_ids.len() - 1;
        t.decode_ms = d0.elapsed().as_secs_f64() * 1e3;
        t.decode_tok_s = if t.decode_ms > 0.0 {
            t.decode_tokens as f64 / d0.elapsed().as_secs_f64()
        } else {
            0.0
        };
        on_text(&text);
        Ok(Generated {
            text,
            finish_reason: "stop".into(),
            timings: t,
            total_ms: start.elapsed().as_secs_f64() * 1e3,
            server_response: None,
        })
    }
}

/// Qwen3's own chat template, as shipped with warden's tokenizer files.
pub fn qwen3_template() -> anyhow::Result<ChatTemplate> {
    let cfg: Value =
        serde_json::from_slice(crate::model::checkpoint::tokenizer_files::TOKENIZER_CONFIG_JSON)?;
    let source = cfg["chat_template"]
        .as_str()
        .context("the bundled tokenizer_config.json has no chat_template")?;
    ChatTemplate::new(source.to_string(), None, Some("<|im_end|>".into()))
}

/// The weight files of a model path (a directory's safetensors, or the file).
fn weight_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "safetensors" || e == "gguf")
        })
        .collect();
    files.sort();
    Ok(files)
}

pub use crate::audit::sha256_file;

/// The adapters of `model` as `session_start` records them.
fn adapters_json(model: &LoadedModel) -> Value {
    if model.adapters.is_empty() {
        Value::Null
    } else {
        json!(model.adapters)
    }
}
