//! Text to token ids, with the tokenizer's failures as errors.
//!
//! A `tokenizer.json` is untrusted: its pre-tokenizer regexes run in the
//! Oniguruma engine, which panics when a pattern backtracks past its retry
//! limit (`(x|xx)+y$` on a few dozen characters). That panic is contained
//! here as an error; callers add the file.

use tokenizers::Tokenizer;

/// The ids of `text`, without added special tokens (the template writes
/// them).
pub fn encode(tok: &Tokenizer, text: &str) -> anyhow::Result<Vec<u32>> {
    let what = "the tokenizer failed on this text (a pre-tokenizer regex that backtracks without end?); use the model's original tokenizer.json";
    crate::guard::contain::contain(what, || tok.encode(text, false))?
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| anyhow::anyhow!("cannot tokenize: {e}"))
}
