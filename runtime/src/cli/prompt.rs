//! `warden prompt`: the exact text a model will see, and `--check` of
//! training data against it.

use super::terminal::{escape, Lines};
use crate::chat::check::{check_training, LineCheck};
use crate::chat::{ChatTemplate, Conversation};
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `warden prompt`.
#[derive(Debug, Args)]
pub struct PromptArgs {
    /// The model (directory, .gguf or hub-cache name; `replay:` uses Qwen3's template,
    /// `completion:URL` the server's from its /props).
    #[arg(long)]
    model: String,
    /// Conversation file: {"messages": […], "tools"?, "enable_thinking"?, "add_generation_prompt"?}.
    #[arg(long, required_unless_present = "check")]
    conversation: Option<PathBuf>,
    /// With no "tools" in the conversation, use this policy's tools.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Workspace for the policy.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Re-render each conversation of a JSON Lines training file and report
    /// where its "text" differs from warden's rendering.
    #[arg(long)]
    check: Option<PathBuf>,
    /// Print {"text", "ids", "format", "adapters"}.
    #[arg(long)]
    json: bool,
    /// A LoRA adapter the model will run with (checked against the model;
    /// adapters do not change the prompt, which is the point: the base's
    /// own template serves the fine-tune).
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// Render with this chat template instead of the model's own: a Jinja
    /// file, or a built-in (chatml-tools). Without it, the last adapter's
    /// chat_template.jinja is used where one has it.
    #[arg(long, value_name = "FILE|NAME")]
    chat_template: Option<String>,
}

/// Runs `warden prompt`.
pub fn prompt(a: PromptArgs) -> anyhow::Result<ExitCode> {
    let remote = a.model.starts_with(crate::session::remote::PREFIX);
    let replay = a.model.starts_with("replay:") || remote;
    let model_path = if replay {
        None
    } else {
        Some(crate::model::resolve_model_path(&a.model)?)
    };
    let chosen = a.chat_template.clone().or_else(|| {
        a.adapter
            .iter()
            .rev()
            .map(|d| d.join(crate::chat::TEMPLATE_FILE))
            .find(|f| f.is_file())
            .map(|f| f.display().to_string())
    });
    let template = match (&model_path, &chosen) {
        (Some(p), c) => ChatTemplate::for_run(p, c.as_deref())?,
        (None, Some(c)) => ChatTemplate::from_spec(c, Path::new(""))?,
        // The server's own, as a session on it renders with.
        (None, None) if remote => {
            use crate::session::Backend as _;
            crate::session::CompletionBackend::open(
                &a.model,
                None,
                crate::model::SamplingParams::default(),
                None,
            )?
            .template()
            .clone()
        }
        (None, None) => crate::session::qwen3_template()?,
    };
    let adapters = match (&model_path, a.adapter.is_empty()) {
        (_, true) => vec![],
        (None, false) => anyhow::bail!("--adapter needs a model to check it against, not replay:"),
        (Some(_), false) => {
            let ckpt = crate::model::Checkpoint::open(&a.model, &candle_core::Device::Cpu)?;
            a.adapter
                .iter()
                .map(|d| crate::model::adapter::Adapter::load(d, &ckpt.config).map(|x| x.info()))
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let policy_tools = match &a.policy {
        Some(p) => {
            let policy = Policy::load(p, &a.workspace)?;
            let host = ToolHost::load(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
            host.tools()
                .map(|t| {
                    crate::chat::tool_json(&t.spec.name, &t.spec.description, &t.spec.parameters)
                })
                .collect()
        }
        None => Vec::new(),
    };
    if let Some(training) = &a.check {
        return check(&template, training, &policy_tools);
    }
    let path = a
        .conversation
        .as_deref()
        .context("--conversation is required")?;
    let conv: Conversation = serde_json::from_str(
        &std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    )
    .with_context(|| format!("{} is not a conversation file", path.display()))?;
    let text = conv.render(&template, &policy_tools, true)?;
    if a.json {
        let ids: Vec<u32> = match &model_path {
            Some(p) => {
                crate::model::checkpoint::tokenize::encode(&crate::model::tokenizer_for(p)?, &text)
                    .with_context(|| format!("the prompt, with the tokenizer of {}", p.display()))?
            }
            None => crate::model::checkpoint::tokenize::encode(
                &tokenizers::Tokenizer::from_bytes(
                    crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON,
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?,
                &text,
            )?,
        };
        outln!(
            "{}",
            json!({"text": text, "ids": ids, "format": template.call_format(), "adapters": adapters})
        );
    } else {
        out!("{}", escape(&text, Lines::Keep));
    }
    Ok(ExitCode::SUCCESS)
}

/// Checks every line of `training`; exit 1 when a line differs or fails.
fn check(
    template: &ChatTemplate,
    training: &Path,
    policy_tools: &[Value],
) -> anyhow::Result<ExitCode> {
    let (mut ok, mut bad) = (0usize, 0usize);
    for (line, result) in check_training(template, training, policy_tools)? {
        let at = format!("{}:{line}", training.display());
        match result {
            LineCheck::Renders => ok += 1,
            LineCheck::Unreadable(e) => {
                bad += 1;
                outln!("{at}: {e}");
            }
            LineCheck::RenderFailed(e) => {
                bad += 1;
                outln!("{at}: {}", escape(&e, Lines::One));
            }
            LineCheck::Differs {
                line,
                column,
                training,
                warden,
            } => {
                bad += 1;
                outln!(
                    "{at}: the training text differs from warden's rendering at line {line}, column {column}: training {}, warden {}",
                    escape(&format!("{training:?}"), Lines::One),
                    escape(&format!("{warden:?}"), Lines::One)
                );
            }
        }
    }
    outln!("{ok} conversation(s) render as trained, {bad} do not");
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
