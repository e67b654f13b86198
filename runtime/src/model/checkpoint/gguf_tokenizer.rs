//! Rebuilding the Hugging Face tokenizer from a GGUF's `tokenizer.ggml.*`
//! metadata, so a lone `.gguf` file works without `tokenizer.json`.

use anyhow::{bail, Context as _};
use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;
use tokenizers::Tokenizer;

/// Qwen2/Qwen3's pre-tokenizer split (llama.cpp's "qwen2" pre-tokenizer).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's split (llama.cpp's "llama-bpe"): numbers in runs of up to 3.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// GPT-2's split, which SmolLM's and StarCoder's also end with.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// SmolLM's first split: every digit on its own.
const DIGIT_SPLIT: &str = r"\p{N}";

/// How llama.cpp's pre-tokenizer `pre` splits text before BPE: the regexes
/// applied in turn (each re-splitting the pieces of the one before), the
/// normalizer, and whether a piece already in the vocabulary skips the
/// merges (Llama 3). `None` for a pre-tokenizer warden does not know.
fn pre_tokenizer(pre: &str) -> Option<(&'static [&'static str], bool, bool)> {
    Some(match pre {
        // Qwen's tokenizer.json normalizes to NFC; the split is the same.
        "qwen2" | "deepseek-r1-qwen" => (&[QWEN2_SPLIT], true, false),
        "llama-bpe" | "llama3" | "llama-v3" => (&[LLAMA3_SPLIT], false, true),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" => {
            (&[DIGIT_SPLIT, GPT2_SPLIT], false, false)
        }
        "gpt-2" | "phi-2" => (&[GPT2_SPLIT], false, false),
        _ => return None,
    })
}

/// llama.cpp token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Builds the tokenizer described by `ct`'s metadata: gpt2-style byte-level
/// BPE (`tokenizer.ggml.model` "gpt2") with one of the pre-tokenizers in
/// use — `qwen2` (Qwen2/2.5/3), `llama-bpe` (Llama 3.x), `smollm`
/// (SmolLM/SmolLM2, StarCoder), `gpt-2` — splitting as llama.cpp does.
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
    let splits = match (model.as_str(), pre_tokenizer(&pre)) {
        ("gpt2", Some(p)) => p,
        _ => bail!("cannot rebuild a tokenizer of model {model:?} / pre-tokenizer {pre:?} from GGUF metadata (warden knows gpt2 with qwen2, llama-bpe, smollm or gpt-2); put the model's tokenizer.json beside the .gguf file"),
    };
    let (regexes, nfc, ignore_merges) = splits;
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
            t @ (CONTROL | USER_DEFINED) => {
                // In the vocabulary too, as Hugging Face's files have them
                // (matched whole as added tokens before any merge).
                vocab.insert(tok.clone(), json!(id));
                added.push(json!({
                    "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": t == CONTROL,
                }))
            }
            // Unused padding rows have no text.
            _ => {}
        }
    }
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    let mut pretokenizers: Vec<serde_json::Value> = regexes
        .iter()
        .map(|r| json!({"type": "Split", "pattern": {"Regex": r}, "behavior": "Isolated", "invert": false}))
        .collect();
    pretokenizers.push(byte_level.clone());
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": if nfc { json!({"type": "NFC"}) } else { json!(null) },
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": pretokenizers},
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignore_merges,
            "vocab": vocab, "merges": merges,
        },
    });
    spec.to_string().parse::<Tokenizer>().map_err(|e| {
        anyhow::anyhow!("the GGUF's tokenizer metadata does not make a valid tokenizer: {e}")
    })
}
