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

use crate::chat::{ChatTemplate, RenderRequest};
use crate::chat::{Conversation, Message};
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
pub fn render_turns(
    conv: &Conversation,
    template: &ChatTemplate,
) -> anyhow::Result<Vec<RenderedTurn>> {
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
            bail!(
                "the conversation starts with an assistant message; it needs a user message first"
            );
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
    crate::model::checkpoint::tokenize::encode(tok, text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::tokenizer_files::TokenizerFiles;

    fn template() -> ChatTemplate {
        let src = TokenizerFiles::builtin().chat_template().unwrap();
        ChatTemplate::new(src, None, Some("<|im_end|>".into())).unwrap()
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_bytes(crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON).unwrap()
    }

    fn conversation(thinking: Option<bool>) -> Conversation {
        let call = serde_json::json!({"type": "function", "function": {"name": "search_code", "arguments": {"pattern": "class Post"}}});
        serde_json::from_value(serde_json::json!({
            "messages": [
                {"role": "system", "content": "You answer about the code base."},
                {"role": "user", "content": "Where is Post defined?"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "content": "blog/models.py:5: class Post(models.Model):"},
                {"role": "assistant", "content": "Post is defined in blog/models.py, line 5."},
            ],
            "tools": [crate::chat::tool_json("search_code", "Search the code", &serde_json::json!({"type": "object", "properties": {"pattern": {"type": "string"}}}))],
            "enable_thinking": thinking,
        }))
        .unwrap()
    }

    /// The loss covers exactly the assistant's tokens: decoded, the targets
    /// are each assistant turn as the full rendering holds it, through
    /// `<|im_end|>`, and the prompts are exactly what a session renders.
    #[test]
    fn loss_mask_is_the_assistant_tokens() {
        let (tmpl, tok) = (template(), tokenizer());
        for thinking in [None, Some(false)] {
            let conv = conversation(thinking);
            let ex = examples_of(&conv, 7, &tmpl, &tok).unwrap();
            assert_eq!(ex.len(), 2);
            let full = tmpl
                .render(&RenderRequest {
                    messages: &conv.messages,
                    tools: conv.tools.as_deref().unwrap(),
                    add_generation_prompt: false,
                    enable_thinking: thinking,
                })
                .unwrap();
            let decode = |ids: &[u32]| tok.decode(ids, false).unwrap();
            let t0 = decode(ex[0].target());
            let t1 = decode(ex[1].target());
            let think = if thinking.is_none() {
                "<think>\n\n</think>\n\n"
            } else {
                ""
            };
            assert_eq!(
                t0,
                format!("{think}<tool_call>\n{{\"name\": \"search_code\", \"arguments\": {{\"pattern\": \"class Post\"}}}}\n</tool_call><|im_end|>")
            );
            assert_eq!(
                t1,
                format!("{think}Post is defined in blog/models.py, line 5.<|im_end|>")
            );
            // The final turn's target ends the full rendering.
            assert!(full.trim_end().ends_with(&t1), "{full:?}");
            // Prompts are the session's renderings with the generation prompt.
            for (i, e) in ex.iter().enumerate() {
                let upto = [2, 4][i];
                let prompt = tmpl
                    .render(&RenderRequest {
                        messages: &conv.messages[..upto],
                        tools: conv.tools.as_deref().unwrap(),
                        add_generation_prompt: true,
                        enable_thinking: thinking,
                    })
                    .unwrap();
                assert_eq!(decode(&e.ids[..e.prompt_len]), prompt);
                assert_eq!(
                    e.loss_mask().iter().filter(|m| **m).count(),
                    e.target().len()
                );
                assert!(!e.loss_mask()[e.prompt_len - 1] && e.loss_mask()[e.prompt_len]);
                assert_eq!((e.line, e.turn), (7, i));
            }
            // Nothing of the user's, system's or tool's text is a target.
            for t in [&t0, &t1] {
                assert!(
                    !t.contains("Where is Post")
                        && !t.contains("models.Model")
                        && !t.contains("You answer")
                );
            }
        }
    }

    #[test]
    fn bad_lines_are_listed_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::to_string(&conversation(None)).unwrap();
        let no_assistant = r#"{"messages": [{"role": "user", "content": "hi"}]}"#;
        let path = dir.path().join("d.jsonl");
        std::fs::write(
            &path,
            format!("{good}\nnot json\n\n{no_assistant}\n{good}\n"),
        )
        .unwrap();
        let d = read_dataset(&path, &template(), &tokenizer(), 4096).unwrap();
        assert_eq!(d.conversations, 2);
        assert_eq!(d.examples.len(), 4);
        let lines: Vec<usize> = d.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 4]);
        assert!(
            d.bad[1].reason.contains("no assistant message"),
            "{}",
            d.bad[1].reason
        );
        let d = read_dataset(&path, &template(), &tokenizer(), 50).unwrap();
        assert_eq!(d.bad.len(), 4);
        assert!(
            d.bad[0].reason.contains("--max-seq-len 50"),
            "{}",
            d.bad[0].reason
        );
    }
}
