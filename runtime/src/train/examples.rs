//! Training examples from conversations, rendered by the model's own chat
//! template exactly as a session renders them at inference.
//!
//! Each assistant message of a conversation becomes one example: the prompt
//! is the conversation before it rendered with the generation prompt (what
//! the session gives the model), the target is what the model must write
//! next (the assistant message as the template renders it, through the end
//! of turn). Prompt and target are tokenized apart, as at inference (the
//! prompt is encoded, then generated tokens follow), and the loss is taken on
//! the target tokens only.

use crate::chat::{Conversation, Message};
use crate::chat::{ChatTemplate, RenderRequest};
use anyhow::{bail, Context as _};
use std::path::Path;
use tokenizers::Tokenizer;

/// One training sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The data file's line (1-based) the conversation came from.
    pub line: usize,
    /// Which assistant message of that conversation (0-based).
    pub turn: usize,
    /// Prompt tokens, then target tokens.
    pub ids: Vec<u32>,
    /// How many of `ids` are prompt (no loss is taken on them).
    pub prompt_len: usize,
}

impl Example {
    /// Target tokens: those the loss is taken on.
    pub fn target(&self) -> &[u32] {
        &self.ids[self.prompt_len..]
    }

    /// One flag per token: whether the loss is taken on it.
    pub fn loss_mask(&self) -> Vec<bool> {
        (0..self.ids.len()).map(|i| i >= self.prompt_len).collect()
    }
}

/// The prompt and target texts of one assistant message.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTurn {
    /// The conversation before it, with the generation prompt.
    pub prompt: String,
    /// What the model writes: the message through the end-of-turn token.
    pub target: String,
}

/// Renders every assistant message of `conv` as a prompt and its target.
pub fn render_turns(conv: &Conversation, template: &ChatTemplate) -> anyhow::Result<Vec<RenderedTurn>> {
    let tools = conv.tools.clone().unwrap_or_default();
    let render = |messages: &[Message], gen: bool| {
        template.render(&RenderRequest {
            messages,
            tools: &tools,
            add_generation_prompt: gen,
            enable_thinking: conv.enable_thinking,
        })
    };
    let mut turns = Vec::new();
    for (i, m) in conv.messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        if i == 0 {
            bail!("the conversation starts with an assistant message; it needs a user message first");
        }
        let prompt = render(&conv.messages[..i], true)?;
        let full = render(&conv.messages[..=i], false)?;
        let opening = render(&conv.messages[..i], false)?;
        let Some(rest) = full.strip_prefix(opening.as_str()) else {
            bail!("assistant message {i}: the template renders the conversation before it differently once it is added, so no prompt/target split matches inference");
        };
        // `rest` is the assistant's turn as history; the generation prompt
        // already holds its opening (and, with thinking off, the empty
        // thinking block).
        let gen_prompt = &prompt[opening.len()..];
        let Some(target) = rest.strip_prefix(gen_prompt) else {
            bail!(
                "assistant message {i}: the template's generation prompt {gen_prompt:?} does not open the turn it renders ({:?}…), so training could not match inference",
                rest.chars().take(gen_prompt.chars().count() + 16).collect::<String>()
            );
        };
        let target = target.trim_end_matches(['\n', ' ']);
        if target.is_empty() {
            bail!("assistant message {i} renders empty");
        }
        turns.push(RenderedTurn {
            prompt,
            target: target.to_string(),
        });
    }
    if turns.is_empty() {
        bail!("the conversation has no assistant message to learn from");
    }
    Ok(turns)
}

/// Tokenizes `text` without adding special tokens (the template writes them).
pub fn encode(tok: &Tokenizer, text: &str) -> anyhow::Result<Vec<u32>> {
    Ok(tok
        .encode(text, false)
        .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))?
        .get_ids()
        .to_vec())
}

/// The examples of one conversation.
pub fn examples_of(
    conv: &Conversation,
    line: usize,
    template: &ChatTemplate,
    tok: &Tokenizer,
) -> anyhow::Result<Vec<Example>> {
    render_turns(conv, template)?
        .into_iter()
        .enumerate()
        .map(|(turn, t)| {
            let mut ids = encode(tok, &t.prompt)?;
            let prompt_len = ids.len();
            ids.extend(encode(tok, &t.target)?);
            Ok(Example {
                line,
                turn,
                ids,
                prompt_len,
            })
        })
        .collect()
}

/// A line of the data file that could not be used.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// What a data file yielded.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The examples, in file order.
    pub examples: Vec<Example>,
    /// Conversations used.
    pub conversations: usize,
    /// Lines that could not be used.
    pub bad: Vec<BadLine>,
}

/// Reads a JSON Lines file of conversations (the format of `warden prompt`
/// and `warden synth-data`) into examples no longer than `max_len` tokens.
/// Blank lines are skipped; every other unusable line is listed in `bad`.
pub fn read_dataset(
    path: &Path,
    template: &ChatTemplate,
    tok: &Tokenizer,
    max_len: usize,
) -> anyhow::Result<Dataset> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the training data {}", path.display()))?;
    let mut data = Dataset {
        examples: Vec::new(),
        conversations: 0,
        bad: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let result = serde_json::from_str::<Conversation>(line)
            .map_err(|e| anyhow::anyhow!("not a conversation: {e}"))
            .and_then(|c| examples_of(&c, line_no, template, tok));
        match result {
            Ok(ex) => {
                if let Some(long) = ex.iter().find(|e| e.ids.len() > max_len) {
                    data.bad.push(BadLine {
                        line: line_no,
                        reason: format!(
                            "assistant message {} needs {} tokens, over --max-seq-len {max_len}",
                            long.turn,
                            long.ids.len()
                        ),
                    });
                } else {
                    data.conversations += 1;
                    data.examples.extend(ex);
                }
            }
            Err(e) => data.bad.push(BadLine {
                line: line_no,
                reason: format!("{e:#}"),
            }),
        }
    }
    Ok(data)
}
