//! Rebuilding the Hugging Face tokenizer from a GGUF's `tokenizer.ggml.*`
//! metadata, so a lone `.gguf` file works without `tokenizer.json`.

use anyhow::{bail, Context as _};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;
use tokenizers::Tokenizer;

/// Qwen2/Qwen3's pre-tokenizer split (llama.cpp's "qwen2" pre-tokenizer).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Builds the tokenizer described by `ct`'s metadata (gpt2-style byte-level
/// BPE with the "qwen2" pre-tokenizer, as llama.cpp writes for Qwen3).
pub fn from_gguf(ct: &Content) -> anyhow::Result<Tokenizer> {
    let get = |k: &str| {
        ct.metadata
            .get(k)
            .with_context(|| format!("GGUF metadata has no {k}"))
    };
    let model = get("tokenizer.ggml.model")?.to_string()?.clone();
    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok().cloned())
        .unwrap_or_default();
    if model != "gpt2" || pre != "qwen2" {
        bail!("cannot rebuild a tokenizer of model {model:?} / pre-tokenizer {pre:?} from GGUF metadata (only gpt2/qwen2, Qwen's); put the model's tokenizer.json beside the .gguf file");
    }
    let tokens = get("tokenizer.ggml.tokens")?.to_vec()?;
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(v) => v
            .to_vec()?
            .iter()
            .map(|t| t.to_i32().unwrap_or(NORMAL))
            .collect(),
        None => vec![NORMAL; tokens.len()],
    };
    let merges: Vec<String> = get("tokenizer.ggml.merges")?
        .to_vec()?
        .iter()
        .map(|m| m.to_string().cloned())
        .collect::<candle_core::Result<_>>()?;
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        let Value::String(tok) = tok else {
            bail!("tokenizer.ggml.tokens[{id}] is not a string")
        };
        match types.get(id).copied().unwrap_or(NORMAL) {
            NORMAL => {
                vocab.insert(tok.clone(), json!(id));
            }
            t @ (CONTROL | USER_DEFINED) => added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": t == CONTROL,
            })),
            // Unused padding rows have no text.
            _ => {}
        }
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
            byte_level,
        ]},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    spec.to_string().parse::<Tokenizer>().map_err(|e| {
        anyhow::anyhow!("the GGUF's tokenizer metadata does not make a valid tokenizer: {e}")
    })
}
