//! Writing GGUF files as llama.cpp's converter writes them for qwen3.

use crate::model::arch::config::Qwen3Config;
use crate::model::checkpoint::tokenizer_files::TokenizerFiles;
use crate::model::weights::ggml_type::gguf_type_name;
use anyhow::Context as _;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Tensor;
use std::path::{Path, PathBuf};

/// What a writer did (this GGUF writer, and `quantize`'s MLX writer).
#[derive(Debug, Default, serde::Serialize)]
pub struct Written {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Matrices left in a wider type because their rows do not fit the
    /// format's blocks (as llama.cpp and MLX-LM also do).
    pub fallbacks: Vec<String>,
    /// Matrices written in all (fallbacks included).
    pub matrices: usize,
}

impl Written {
    /// Whether most matrices were written wider than the format asked for
    /// (a model whose rows do not fit its blocks): the file is then mostly
    /// the fallback type, whatever its name says.
    pub fn mostly_wider(&self) -> bool {
        self.fallbacks.len() * 2 > self.matrices
    }
}

/// The type a matrix whose rows hold `cols` values is written in when
/// `want` is asked for: `want` when its rows fit its blocks, else the
/// widest fallback that fits (q8_0, then f16), as llama.cpp also does.
pub fn written_kind(want: GgmlDType, cols: usize) -> GgmlDType {
    [want, GgmlDType::Q8_0, GgmlDType::F16]
        .into_iter()
        .find(|k| cols % k.block_size() == 0)
        .unwrap_or(GgmlDType::F32)
}

/// A GGUF as llama.cpp's converter writes one for qwen3: its tensor names,
/// `qwen3.*` metadata, `tokenizer.ggml.*` (gpt2-style BPE, pre-tokenizer
/// "qwen2", vocabulary padded to the matrix rows) and the chat template.
/// Matrices whose rows do not fit `qtype`'s blocks fall back to q8_0 (or
/// f16), as llama.cpp's quantizer does.
pub fn write_gguf(
    path: &Path,
    cfg: &Qwen3Config,
    tensors: &[(String, Tensor)],
    qtype: GgmlDType,
    tok: &TokenizerFiles,
) -> anyhow::Result<Written> {
    write_gguf_with(path, cfg, tensors, qtype, None, tok)
}

/// [`write_gguf`] with the token embedding (`token_embd.weight`, also the
/// output layer of a tied model) in `embedding_type` instead of `qtype`,
/// as llama.cpp's `--token-embedding-type` does: with a 151,936-token
/// vocabulary it is most of a small model's bytes.
pub fn write_gguf_with(
    path: &Path,
    cfg: &Qwen3Config,
    tensors: &[(String, Tensor)],
    qtype: GgmlDType,
    embedding_type: Option<GgmlDType>,
    tok: &TokenizerFiles,
) -> anyhow::Result<Written> {
    let mut written = Written::default();
    let mut qtensors = Vec::new();
    for (name, t) in tensors {
        let q = if t.rank() == 1 {
            QTensor::quantize(t, GgmlDType::F32)?
        } else {
            let inner = *t.dims().last().unwrap_or(&0);
            let want = match embedding_type {
                Some(e) if name == "model.embed_tokens.weight" => e,
                _ => qtype,
            };
            let kind = written_kind(want, inner);
            written.matrices += 1;
            if kind != want {
                written
                    .fallbacks
                    .push(format!("{name} ({})", gguf_type_name(kind)));
            }
            QTensor::quantize(t, kind)?
        };
        qtensors.push((crate::model::weights::gguf_name(name), q));
    }
    let gtok = gguf_tokenizer(&tok.tokenizer_json, cfg.vocab_size)?;
    use gguf_file::Value as V;
    let u = |x: usize| V::U32(x as u32);
    let file_type = match qtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 7,
        GgmlDType::Q5_0 => 8,
        GgmlDType::Q5_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 12,
        GgmlDType::Q4K => 15,
        GgmlDType::Q5K => 17,
        GgmlDType::Q6K => 18,
        _ => 0,
    };
    let md: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("qwen3".into())),
        ("general.name", V::String("warden qwen3".into())),
        ("general.file_type", V::U32(file_type)),
        ("general.quantization_version", V::U32(2)),
        ("qwen3.context_length", u(cfg.max_position_embeddings)),
        ("qwen3.embedding_length", u(cfg.hidden_size)),
        ("qwen3.block_count", u(cfg.num_hidden_layers)),
        ("qwen3.feed_forward_length", u(cfg.intermediate_size)),
        ("qwen3.attention.head_count", u(cfg.num_attention_heads)),
        ("qwen3.attention.head_count_kv", u(cfg.num_key_value_heads)),
        ("qwen3.attention.key_length", u(cfg.head_dim)),
        ("qwen3.attention.value_length", u(cfg.head_dim)),
        ("qwen3.rope.freq_base", V::F32(cfg.rope_theta as f32)),
        (
            "qwen3.attention.layer_norm_rms_epsilon",
            V::F32(cfg.rms_norm_eps as f32),
        ),
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String("qwen2".into())),
        (
            "tokenizer.ggml.tokens",
            V::Array(gtok.tokens.into_iter().map(V::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            V::Array(gtok.types.into_iter().map(V::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges",
            V::Array(gtok.merges.into_iter().map(V::String).collect()),
        ),
        ("tokenizer.ggml.eos_token_id", V::U32(151645)),
        ("tokenizer.ggml.padding_token_id", V::U32(151643)),
        ("tokenizer.ggml.bos_token_id", V::U32(151643)),
        ("tokenizer.ggml.add_bos_token", V::Bool(false)),
        ("tokenizer.chat_template", V::String(tok.chat_template()?)),
    ];
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    crate::outputs::write_with(path, |tmp| {
        let mut f = std::io::BufWriter::new(std::fs::OpenOptions::new().write(true).open(tmp)?);
        gguf_file::write(&mut f, &md_refs, &t_refs)?;
        use std::io::Write as _;
        f.flush()?;
        Ok(())
    })?;
    written.files.push(path.to_path_buf());
    Ok(written)
}

struct GgufTokenizer {
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
}

/// A `tokenizer.json` as `tokenizer.ggml.*` arrays of `rows` entries.
fn gguf_tokenizer(tokenizer_json: &[u8], rows: usize) -> anyhow::Result<GgufTokenizer> {
    let t: serde_json::Value = serde_json::from_slice(tokenizer_json)?;
    let mut tokens: Vec<Option<String>> = vec![None; rows];
    let mut types = vec![1i32; rows];
    for (tok, id) in t["model"]["vocab"]
        .as_object()
        .context("tokenizer.json has no model.vocab")?
    {
        if let Some(slot) = id.as_u64().and_then(|i| tokens.get_mut(i as usize)) {
            *slot = Some(tok.clone());
        }
    }
    for added in t["added_tokens"].as_array().into_iter().flatten() {
        let id = added["id"].as_u64().unwrap_or(u64::MAX) as usize;
        if id < rows {
            let content = added["content"].as_str().unwrap_or_default();
            // As llama.cpp's converter: control if marked special or spelled
            // like a control token (Qwen's `<|fim_prefix|>` is not marked).
            let looks_special = content.starts_with("<|") && content.ends_with("|>");
            types[id] = if added["special"].as_bool() == Some(true) || looks_special {
                3
            } else {
                4
            };
            tokens[id] = Some(content.to_string());
        }
    }
    let tokens = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t {
            Some(t) => t,
            None => {
                types[i] = 5;
                format!("[PAD{i}]")
            }
        })
        .collect();
    let merges = t["model"]["merges"]
        .as_array()
        .context("tokenizer.json has no model.merges")?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(p) => p
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        })
        .collect();
    Ok(GgufTokenizer {
        tokens,
        types,
        merges,
    })
}
