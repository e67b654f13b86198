//! `warden prompt --check`: each conversation of a training file
//! re-rendered with the model's template and compared with its `"text"`,
//! so data rendered by another stack (or another template) is caught
//! before it trains a model to a format it will never be prompted in.

use super::{ChatTemplate, Conversation, RenderRequest};
use anyhow::Context as _;
use serde_json::Value;
use std::path::Path;

impl Conversation {
    /// The conversation rendered by `template`, with `default_tools` when it
    /// names none, ending with the generation prompt unless it says
    /// otherwise (`default_gen`).
    pub fn render(
        &self,
        template: &ChatTemplate,
        default_tools: &[Value],
        default_gen: bool,
    ) -> anyhow::Result<String> {
        template.render(&RenderRequest {
            messages: &self.messages,
            tools: self.tools.as_deref().unwrap_or(default_tools),
            add_generation_prompt: self.add_generation_prompt.unwrap_or(default_gen),
            enable_thinking: self.enable_thinking,
        })
    }
}

/// What one line of a training file came to.
#[derive(Debug, Clone, PartialEq)]
pub enum LineCheck {
    /// It renders as its `"text"` (or it has none).
    Renders,
    /// It is not JSON or not a conversation.
    Unreadable(String),
    /// The template refused it.
    RenderFailed(String),
    /// Its text differs: where (1-based line and column, in characters) and
    /// a few characters of each side from there.
    Differs {
        /// Line of the first difference.
        line: usize,
        /// Column of the first difference.
        column: usize,
        /// The training text from there.
        training: String,
        /// warden's rendering from there.
        warden: String,
    },
}

/// Checks every non-empty line of the JSON Lines file `training`; the line
/// numbers (1-based) with what each came to.
pub fn check_training(
    template: &ChatTemplate,
    training: &Path,
    default_tools: &[Value],
) -> anyhow::Result<Vec<(usize, LineCheck)>> {
    let text = std::fs::read_to_string(training)
        .with_context(|| format!("cannot read {}", training.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| (i + 1, check_line(template, line, default_tools)))
        .collect())
}

fn check_line(template: &ChatTemplate, line: &str, default_tools: &[Value]) -> LineCheck {
    let parsed = serde_json::from_str::<Value>(line)
        .map_err(|e| format!("not JSON ({e})"))
        .and_then(|v| {
            let given = v["text"].as_str().map(String::from);
            serde_json::from_value::<Conversation>(v)
                .map(|c| (c, given))
                .map_err(|e| format!("not a conversation ({e})"))
        });
    let (conv, given) = match parsed {
        Ok(p) => p,
        Err(e) => return LineCheck::Unreadable(e),
    };
    // Training text is a whole conversation: no generation prompt unless
    // the line asks for one.
    let mine = match conv.render(template, default_tools, false) {
        Ok(t) => t,
        Err(e) => return LineCheck::RenderFailed(format!("{e:#}")),
    };
    match given {
        Some(given) if given != mine => {
            let (line, column, training, warden) = first_difference(&given, &mine);
            LineCheck::Differs {
                line,
                column,
                training,
                warden,
            }
        }
        _ => LineCheck::Renders,
    }
}

/// Line and column (1-based, in characters) of the first difference, and
/// a few characters of each side from there.
fn first_difference(a: &str, b: &str) -> (usize, usize, String, String) {
    let (mut line, mut col) = (1, 1);
    let mut ai = a.char_indices();
    let mut bi = b.char_indices();
    loop {
        match (ai.next(), bi.next()) {
            (Some((_, x)), Some((_, y))) if x == y => {
                if x == '\n' {
                    line += 1;
                    col = 1;
                } else {
                    col += 1;
                }
            }
            (pa, pb) => {
                let snip = |s: &str, at: Option<usize>| {
                    at.map(|i| s[i..].chars().take(24).collect::<String>())
                        .unwrap_or_else(|| "(end)".into())
                };
                return (
                    line,
                    col,
                    snip(a, pa.map(|p| p.0)),
                    snip(b, pb.map(|p| p.0)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn first_difference_counts_lines_and_characters() {
        assert_eq!(
            first_difference("ab\ncé x", "ab\ncé y"),
            (2, 4, "x".into(), "y".into())
        );
        assert_eq!(
            first_difference("ab", "abc"),
            (1, 3, "(end)".into(), "c".into())
        );
    }
}
