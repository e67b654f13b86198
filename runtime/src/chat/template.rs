//! The model's own chat template, rendered as Hugging Face transformers
//! renders it (`apply_chat_template`): Jinja through minijinja with
//! Python's string methods (minijinja-contrib's `pycompat`), `trim_blocks`
//! and `lstrip_blocks` on, `tojson` writing Python's `json.dumps`, and
//! `raise_exception` for templates that refuse a conversation.
//!
//! A template is code from a downloaded file, so rendering is bounded
//! ([`RENDER_LIMITS`]): minijinja's fuel caps the instructions it runs, the
//! output is capped as it is written, and the render runs on a thread of
//! its own ([`crate::guard::bounded`]) with a cap on what it holds at once
//! (the strings it builds along the way), a deadline, and Ctrl-C. A
//! template past any of them is refused naming its file and the limit.

use super::message::Message;
use super::parse::CallFormat;
use super::pyjson;
use anyhow::Context as _;
use minijinja::{Environment, ErrorKind, Value};
use serde_json::Value as Json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The bounds on one rendering of a chat template.
#[derive(Debug, Clone, Copy)]
pub struct RenderLimits {
    /// minijinja instructions (its fuel). Qwen3's template spends about 60
    /// per message and 10 per tool.
    pub fuel: u64,
    /// Bytes of rendered prompt.
    pub output: usize,
    /// Bytes the render may hold at once: the conversation as template
    /// values and every string it builds.
    pub memory: usize,
    /// Wall-clock time.
    pub time: Duration,
}

/// The bounds every render runs under: far above what a real template
/// needs for a conversation that fits any model's context (a prompt of
/// 16 MiB is millions of tokens), far below what hangs or exhausts a
/// machine.
pub const RENDER_LIMITS: RenderLimits = RenderLimits {
    fuel: 50_000_000,
    output: 16 << 20,
    memory: 512 << 20,
    time: Duration::from_secs(60),
};

/// What one rendering needs besides the template.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The conversation so far.
    pub messages: &'a [Message],
    /// Tools in the OpenAI shape; none when empty.
    pub tools: &'a [Json],
    /// End with the assistant's opening.
    pub add_generation_prompt: bool,
    /// `enable_thinking`, passed only when set (as transformers does).
    pub enable_thinking: Option<bool>,
}

/// A loaded chat template (clones share the compiled template).
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<Environment<'static>>,
    source: String,
    /// Where the template came from, for messages.
    origin: String,
    limits: RenderLimits,
    eos_token: Option<String>,
    bos_token: Option<String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("format", &self.call_format())
            .finish_non_exhaustive()
    }
}

/// Templates shipped inside warden, by the name `--chat-template` takes.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[(
    "chatml-tools",
    include_str!("../../assets/templates/chatml-tools.jinja"),
)];

/// The Hugging Face convention for a raw template file in a model (or, in
/// warden, an adapter) directory; it wins over `tokenizer_config.json`.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";

impl ChatTemplate {
    /// The template of a model: `chat_template.jinja` beside the weights (a
    /// directory, or a `.gguf` with the file beside it), else
    /// `chat_template` in `tokenizer_config.json` there, else the GGUF's
    /// `tokenizer.chat_template`.
    pub fn for_model(path: &Path) -> anyhow::Result<ChatTemplate> {
        let dir = if path.is_dir() {
            Some(path)
        } else {
            path.parent()
        };
        if let Some(file) = dir.map(|d| d.join(TEMPLATE_FILE)).filter(|f| f.is_file()) {
            return Self::from_file(&file, path);
        }
        if let Some(cfg) = dir.map(|d| d.join("tokenizer_config.json")) {
            if cfg.exists() {
                return Self::from_tokenizer_config(&cfg);
            }
        }
        if path.is_file() {
            return Self::from_gguf(path);
        }
        anyhow::bail!(
            "{} has no tokenizer_config.json with a chat_template; warden renders prompts with the model's own template, so put the model's tokenizer_config.json beside its weights (or give one with --chat-template)",
            path.display()
        )
    }

    /// The template a run uses: `chosen` (a file, or the name of one of
    /// [`BUILTIN_TEMPLATES`]) when given, else the model's own
    /// ([`ChatTemplate::for_model`]).
    pub fn for_run(model: &Path, chosen: Option<&str>) -> anyhow::Result<ChatTemplate> {
        match chosen {
            None => Self::for_model(model),
            Some(spec) => Self::from_spec(spec, model),
        }
    }

    /// `spec` as `--chat-template` takes it: an existing file, else a
    /// builtin's name; its `bos_token`/`eos_token` are the model's.
    pub fn from_spec(spec: &str, model: &Path) -> anyhow::Result<ChatTemplate> {
        let file = Path::new(spec);
        if file.is_file() {
            return Self::from_file(file, model);
        }
        if let Some((name, source)) = BUILTIN_TEMPLATES.iter().find(|(n, _)| *n == spec) {
            let (bos, eos) = special_tokens(model);
            let origin = format!("warden's built-in template {name}");
            return Ok(Self::new(source.to_string(), bos, eos)
                .with_context(|| origin.clone())?
                .with_origin(origin));
        }
        let names: Vec<&str> = BUILTIN_TEMPLATES.iter().map(|(n, _)| *n).collect();
        anyhow::bail!(
            "--chat-template {spec}: no such file, and not a built-in template ({})",
            names.join(", ")
        )
    }

    /// A raw Jinja template file (`chat_template.jinja`) for the model at
    /// `model`, whose tokenizer files name its special tokens.
    pub fn from_file(file: &Path, model: &Path) -> anyhow::Result<ChatTemplate> {
        let source = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the chat template {}", file.display()))?;
        let (bos, eos) = special_tokens(model);
        let origin = format!("the chat template {}", file.display());
        Ok(Self::new(source, bos, eos)
            .with_context(|| origin.clone())?
            .with_origin(origin))
    }

    /// The `chat_template` of a `tokenizer_config.json` (a string, or a list
    /// of named templates of which `tool_use` or `default` is taken).
    pub fn from_tokenizer_config(path: &Path) -> anyhow::Result<ChatTemplate> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let cfg: Json = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let source = match &cfg["chat_template"] {
            Json::String(s) => s.clone(),
            Json::Array(named) => ["tool_use", "default"]
                .iter()
                .find_map(|want| {
                    named.iter().find_map(|t| {
                        (t["name"] == *want).then(|| t["template"].as_str().map(String::from))?
                    })
                })
                .with_context(|| {
                    format!(
                        "{}: chat_template lists templates but none named tool_use or default",
                        path.display()
                    )
                })?,
            _ => anyhow::bail!(
                "{} has no chat_template; warden renders prompts with the model's own template, so use the model's original tokenizer_config.json",
                path.display()
            ),
        };
        let token = |k: &str| config_token(&cfg, k);
        let origin = format!("the chat_template of {}", path.display());
        Ok(Self::new(source, token("bos_token"), token("eos_token"))
            .with_context(|| origin.clone())?
            .with_origin(origin))
    }

    /// The `tokenizer.chat_template` of a GGUF file.
    pub fn from_gguf(path: &Path) -> anyhow::Result<ChatTemplate> {
        use candle_core::quantized::gguf_file;
        let (_, content) = crate::guard::contain::read_gguf(path)?;
        let source = match content.metadata.get("tokenizer.chat_template") {
            Some(gguf_file::Value::String(s)) => s.clone(),
            _ => anyhow::bail!(
                "{} has no tokenizer.chat_template and no tokenizer_config.json beside it; warden renders prompts with the model's own template",
                path.display()
            ),
        };
        let origin = format!("the tokenizer.chat_template of {}", path.display());
        let (bos, eos) = gguf_special_tokens(&content);
        Ok(Self::new(source, bos, eos)
            .with_context(|| origin.clone())?
            .with_origin(origin))
    }

    /// A template from its source.
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> anyhow::Result<ChatTemplate> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.set_fuel(Some(RENDER_LIMITS.fuel));
        env.add_template_owned("chat", source.clone())
            .map_err(|e| anyhow::anyhow!("the chat template does not parse: {e:#}"))?;
        Ok(ChatTemplate {
            env: Arc::new(env),
            source,
            origin: "the chat template".into(),
            limits: RENDER_LIMITS,
            eos_token,
            bos_token,
        })
    }

    /// Names where the template came from in its error messages.
    pub fn with_origin(mut self, origin: impl Into<String>) -> ChatTemplate {
        self.origin = origin.into();
        self
    }

    /// Renders under `limits` instead of [`RENDER_LIMITS`].
    pub fn with_limits(mut self, limits: RenderLimits) -> ChatTemplate {
        if let Some(env) = Arc::get_mut(&mut self.env) {
            env.set_fuel(Some(limits.fuel));
        }
        self.limits = limits;
        self
    }

    /// The beginning-of-sequence token the template is given, if any.
    pub fn bos(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The end-of-sequence token the template is given, if any.
    pub fn eos(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// How the model writes tool calls: Qwen3-Coder's XML when the template
    /// speaks of `<function=`, Hermes-style JSON otherwise.
    pub fn call_format(&self) -> CallFormat {
        if self.source.contains("<function=") {
            CallFormat::Xml
        } else {
            CallFormat::Hermes
        }
    }

    /// Renders `req` into the exact text the model will see, within the
    /// template's [`RenderLimits`].
    pub fn render(&self, req: &RenderRequest<'_>) -> anyhow::Result<String> {
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), serde_json::to_value(req.messages)?);
        if !req.tools.is_empty() {
            ctx.insert("tools".into(), Json::Array(req.tools.to_vec()));
        }
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(req.add_generation_prompt),
        );
        if let Some(t) = req.enable_thinking {
            ctx.insert("enable_thinking".into(), Json::Bool(t));
        }
        if let Some(t) = &self.bos_token {
            ctx.insert("bos_token".into(), Json::String(t.clone()));
        }
        if let Some(t) = &self.eos_token {
            ctx.insert("eos_token".into(), Json::String(t.clone()));
        }
        let limits = self.limits;
        let env = self.env.clone();
        let rendered = crate::guard::bounded::run(
            crate::guard::bounded::Limits {
                memory: limits.memory,
                time: limits.time,
            },
            move || -> Result<Vec<u8>, minijinja::Error> {
                let tmpl = env.get_template("chat")?;
                let mut out = Capped {
                    buf: Vec::new(),
                    cap: limits.output,
                };
                tmpl.render_captured_to(Value::from_serialize(&ctx), &mut out)?;
                Ok(out.buf)
            },
        );
        let bounds = "warden bounds what a model's template may do; use the model's original template, or one that renders within these bounds";
        match rendered {
            Ok(Ok(bytes)) => String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} rendered invalid UTF-8", self.origin)),
            Ok(Err(e)) if e.kind() == ErrorKind::OutOfFuel => anyhow::bail!(
                "{} ran out of fuel: it took more than {} instructions to render this conversation; {bounds}",
                self.origin,
                limits.fuel
            ),
            Ok(Err(e)) if e.kind() == ErrorKind::WriteFailure => anyhow::bail!(
                "{} rendered more than {} MiB of prompt; {bounds}",
                self.origin,
                limits.output >> 20
            ),
            Ok(Err(e)) => Err(anyhow::anyhow!(
                "{} failed on this conversation: {e:#}",
                self.origin
            )),
            Err(crate::guard::bounded::Exceeded::Interrupted) => {
                anyhow::bail!("rendering {} was interrupted (Ctrl-C)", self.origin)
            }
            Err(e) => anyhow::bail!("{} was stopped: {e}; {bounds}", self.origin),
        }
    }
}

/// The rendered prompt, refusing to grow past `cap` bytes.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent)`.
fn tojson(value: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from(pyjson::dumps(&json, indent)))
}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("the template refuses this conversation: {message}"),
    ))
}

/// The `bos_token` and `eos_token` texts of the model at `path`: from its
/// `tokenizer_config.json`, else its GGUF metadata.
fn special_tokens(path: &Path) -> (Option<String>, Option<String>) {
    let dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    if let Some(cfg) = dir
        .map(|d| d.join("tokenizer_config.json"))
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str::<Json>(&t).ok())
    {
        let token = |k: &str| config_token(&cfg, k);
        return (token("bos_token"), token("eos_token"));
    }
    if path.is_file() {
        if let Ok((_, content)) = crate::guard::contain::read_gguf(path) {
            return gguf_special_tokens(&content);
        }
    }
    (None, None)
}

/// The texts of a GGUF's `tokenizer.ggml.bos_token_id` and `eos_token_id`
/// (`<|im_end|>` for the end when the file does not say).
fn gguf_special_tokens(
    content: &candle_core::quantized::gguf_file::Content,
) -> (Option<String>, Option<String>) {
    let text = |k: &str| {
        let id = content.metadata.get(k)?.to_u32().ok()? as usize;
        let tokens = content
            .metadata
            .get("tokenizer.ggml.tokens")?
            .to_vec()
            .ok()?;
        tokens.get(id)?.to_string().ok().cloned()
    };
    (
        text("tokenizer.ggml.bos_token_id"),
        text("tokenizer.ggml.eos_token_id").or(Some("<|im_end|>".into())),
    )
}

/// A special token of a `tokenizer_config.json` (`bos_token`, …): a string,
/// or an object with its `content`.
fn config_token(cfg: &Json, key: &str) -> Option<String> {
    match &cfg[key] {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(String::from),
        _ => None,
    }
}
