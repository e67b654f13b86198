//! Constrained decoding: a grammar (llguidance's Lark dialect, with JSON
//! Schemas inside `%json { … }`) decides which tokens may come next, and
//! every other token's logit is masked before sampling. The grammar is
//! compiled against the model's own vocabulary, so whatever the weights
//! say, the text ends as a sentence of the grammar (or at `max_tokens`).

use anyhow::{anyhow, bail, Context as _};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{self, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// A model's vocabulary as the grammar engine sees it: every token's bytes
/// (built once per model and shared by every request).
#[derive(Clone)]
pub struct Vocabulary {
    factory: Arc<ParserFactory>,
}

/// The tokenizer behind a [`Vocabulary`]: tokens' bytes in a trie, and the
/// real tokenizer for text the grammar forces.
struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<toktrie::TokenId> {
        let text = String::from_utf8_lossy(s);
        self.tokenizer
            .encode(text.as_ref(), false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_else(|_| self.trie.greedy_tokenize(s))
    }
}

impl Vocabulary {
    /// Builds the vocabulary of `tokenizer` for a model whose logits have
    /// `vocab_size` rows (tokens past the tokenizer's are never allowed)
    /// and whose turn ends with `end_of_turn`.
    pub fn new(tokenizer: &Tokenizer, vocab_size: usize, end_of_turn: u32) -> anyhow::Result<Self> {
        let json: serde_json::Value = serde_json::from_str(
            &tokenizer
                .to_string(false)
                .map_err(|e| anyhow!("cannot serialise the tokenizer: {e}"))?,
        )
        .context("the tokenizer's JSON")?;
        // llguidance asserts on vocabularies it does not expect; a model
        // file is untrusted, so a panic there is an error here.
        let bytes = std::panic::catch_unwind(|| llguidance::token_bytes_from_tokenizer_json(&json))
            .map_err(|_| anyhow!("the grammar engine cannot read this tokenizer's vocabulary"))?
            .context("the tokenizer's vocabulary, for constrained decoding")?;
        if bytes.len() > vocab_size {
            bail!(
                "the tokenizer has {} tokens but the model {vocab_size} logits",
                bytes.len()
            );
        }
        let mut words = bytes;
        words.resize(vocab_size, Vec::new());
        let info = TokRxInfo::new(vocab_size as u32, end_of_turn);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(Env {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| anyhow!("cannot set up constrained decoding: {e}"))?;
        factory.quiet();
        Ok(Vocabulary {
            factory: Arc::new(factory),
        })
    }

    /// The vocabulary of a loaded model (its tokenizer, its logits' width,
    /// its end-of-turn token).
    pub fn of(loaded: &crate::model::LoadedModel) -> anyhow::Result<Self> {
        let tok = loaded.tokenizer.as_ref().with_context(|| {
            format!(
                "{} has no tokenizer; constrained decoding needs one beside the weights",
                loaded.path.display()
            )
        })?;
        Vocabulary::new(
            tok,
            loaded.model.config().vocab_size,
            loaded.model.end_of_turn(),
        )
    }

    /// A fresh constraint for one generation from a Lark grammar.
    pub fn constraint(&self, lark: &str) -> anyhow::Result<Constraint> {
        let grammar = TopLevelGrammar::from_lark(lark.to_string());
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| anyhow!("the grammar does not compile: {e}"))?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
        })
    }
}

/// One generation's grammar state.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    /// Sets the logit of every token the grammar does not allow next to
    /// −∞. Fails when no token is allowed (the grammar is stuck).
    pub fn mask(&mut self, logits: &mut [f32]) -> anyhow::Result<()> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| anyhow!("constrained decoding failed: {e}"))?;
        let mut any = false;
        for (i, l) in logits.iter_mut().enumerate() {
            if allowed.is_allowed(i as u32) {
                any |= l.is_finite() || *l == f32::INFINITY;
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if !any {
            bail!("constrained decoding: the grammar allows no token here");
        }
        Ok(())
    }

    /// Advances past `token` (one the mask allowed).
    pub fn commit(&mut self, token: u32) -> anyhow::Result<()> {
        if self.matcher.is_stopped() {
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| anyhow!("constrained decoding rejected token {token}: {e}"))
    }

    /// Whether the text so far is a whole sentence of the grammar.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{tool_grammar, CallFormat, Thinking, ToolChoice};
    use rand::{Rng, SeedableRng};
    use serde_json::{json, Value};

    const VOCAB: usize = 151_936;
    const IM_END: u32 = 151_645;

    fn qwen3() -> (Tokenizer, Vocabulary) {
        let tok = Tokenizer::from_bytes(crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON)
            .unwrap();
        let v = Vocabulary::new(&tok, VOCAB, IM_END).unwrap();
        (tok, v)
    }

    fn tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string", "maxLength": 12}, "start_line": {"type": "integer", "minimum": 1, "maximum": 999}}, "required": ["path"], "additionalProperties": false}}}),
            json!({"type": "function", "function": {"name": "set_mode", "parameters": {"type": "object", "properties": {"mode": {"enum": ["fast", "slow"]}, "on": {"type": "boolean"}}, "required": ["mode", "on"], "additionalProperties": false}}}),
        ]
    }

    /// Whether every token of `text` is allowed in turn, and the grammar
    /// then accepts.
    fn accepts(tok: &Tokenizer, v: &Vocabulary, grammar: &str, text: &str) -> bool {
        let mut c = v.constraint(grammar).unwrap();
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        for id in ids {
            let mut logits = vec![0.0f32; VOCAB];
            c.mask(&mut logits).unwrap();
            if logits[id as usize] == f32::NEG_INFINITY || c.commit(id).is_err() {
                return false;
            }
        }
        c.is_accepting()
    }

    #[test]
    fn a_required_call_must_fit_its_schema() {
        let (tok, v) = qwen3();
        let g = tool_grammar(
            &tools(),
            &ToolChoice::Required,
            CallFormat::Hermes,
            true,
            Thinking::May,
        )
        .unwrap()
        .unwrap();
        let ok = "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.py\"}}\n</tool_call>";
        assert!(accepts(&tok, &v, &g, ok));
        let two = format!("<think>\nLet me look.\n</think>\n\n{ok}\n{ok}");
        assert!(accepts(&tok, &v, &g, &two));
        for bad in [
            "Sure, let me read it.",
            "<tool_call>\n{\"name\": \"write_file\", \"arguments\": {}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": 3}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"set_mode\", \"arguments\": {\"mode\": \"medium\", \"on\": true}}\n</tool_call>",
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a-very-long-path.py\"}}\n</tool_call>",
        ] {
            assert!(!accepts(&tok, &v, &g, bad), "{bad}");
        }
        // Only one call when calls may not be parallel.
        let one = tool_grammar(
            &tools(),
            &ToolChoice::Required,
            CallFormat::Hermes,
            false,
            Thinking::No,
        )
        .unwrap()
        .unwrap();
        assert!(accepts(&tok, &v, &one, ok));
        assert!(!accepts(&tok, &v, &one, &format!("{ok}\n{ok}")));
    }

    #[test]
    fn a_named_tool_is_the_only_one_and_auto_allows_text() {
        let (tok, v) = qwen3();
        let named = tool_grammar(
            &tools(),
            &ToolChoice::Named("set_mode".into()),
            CallFormat::Hermes,
            true,
            Thinking::No,
        )
        .unwrap()
        .unwrap();
        let set = "<tool_call>\n{\"name\": \"set_mode\", \"arguments\": {\"mode\": \"fast\", \"on\": false}}\n</tool_call>";
        assert!(accepts(&tok, &v, &named, set));
        assert!(!accepts(&tok, &v, &named, "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}\n</tool_call>"));
        let auto = tool_grammar(
            &tools(),
            &ToolChoice::Auto,
            CallFormat::Hermes,
            true,
            Thinking::No,
        )
        .unwrap()
        .unwrap();
        assert!(accepts(
            &tok,
            &v,
            &auto,
            "Dependency injection means passing <b>collaborators</b> in."
        ));
        assert!(accepts(
            &tok,
            &v,
            &auto,
            &format!("I will switch it.\n{set}")
        ));
        assert!(!accepts(&tok, &v, &auto, "Switching.\n<tool_call>\n{\"name\": \"set_mode\", \"arguments\": {\"mode\": 1}}\n</tool_call>"));
    }

    #[test]
    fn random_logits_under_a_constraint_always_give_a_valid_call() {
        // Random weights have nearly flat, arbitrary logits: sample from
        // random logits under the mask and check what comes out.
        let (tok, v) = qwen3();
        let tools = tools();
        let g = tool_grammar(
            &tools,
            &ToolChoice::Required,
            CallFormat::Hermes,
            false,
            Thinking::No,
        )
        .unwrap()
        .unwrap();
        let schemas: Vec<(String, jsonschema::Validator)> = tools
            .iter()
            .map(|t| {
                (
                    t["function"]["name"].as_str().unwrap().to_string(),
                    jsonschema::validator_for(&t["function"]["parameters"]).unwrap(),
                )
            })
            .collect();
        for seed in 0..12u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut c = v.constraint(&g).unwrap();
            let mut ids = Vec::new();
            let mut ended = false;
            for _ in 0..200 {
                let mut logits: Vec<f32> =
                    (0..VOCAB).map(|_| rng.random_range(-4.0..4.0)).collect();
                c.mask(&mut logits).unwrap();
                let best = (0..VOCAB)
                    .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                    .unwrap() as u32;
                if best == IM_END {
                    ended = true;
                    break;
                }
                c.commit(best).unwrap();
                ids.push(best);
            }
            assert!(ended, "seed {seed}: no end within 200 tokens");
            let text = tok.decode(&ids, false).unwrap();
            let parsed =
                crate::chat::parse(&text, CallFormat::Hermes, &crate::chat::ToolList(&tools));
            assert_eq!(parsed.calls.len(), 1, "seed {seed}: {text}");
            let call = parsed.calls[0].call.as_ref().expect("a well-formed call");
            let (_, schema) = schemas
                .iter()
                .find(|(n, _)| *n == call.name)
                .expect("a known tool");
            assert!(
                schema.is_valid(&Value::Object(call.arguments.clone())),
                "seed {seed}: {text}"
            );
        }
    }
}
