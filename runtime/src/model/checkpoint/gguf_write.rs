//! Writing GGUF files as llama.cpp's converter writes them for qwen3,
//! llama and qwen2.

use crate::model::arch::config::{Family, Qwen3Config};
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
/// fallback llama.cpp's quantizer picks for that type (a K-quant's rows
/// need 256-value blocks: Q4_K falls back to Q5_0, Q5_K to Q5_1, Q6_K to
/// Q8_0, Q2_K/Q3_K to Q4_0), else q8_0, else f16.
pub fn written_kind(want: GgmlDType, cols: usize) -> GgmlDType {
    let like_llama_cpp = match want {
        GgmlDType::Q4K => Some(GgmlDType::Q5_0),
        GgmlDType::Q5K => Some(GgmlDType::Q5_1),
        GgmlDType::Q2K | GgmlDType::Q3K => Some(GgmlDType::Q4_0),
        _ => None,
    };
    std::iter::once(want)
        .chain(like_llama_cpp)
        .chain([GgmlDType::Q8_0, GgmlDType::F16])
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
        // llama.cpp rotates a Llama's queries and keys in interleaved pairs:
        // its rows go in the order its converter writes.
        let heads = (cfg.family == Family::Llama)
            .then(|| {
                crate::model::weights::interleaved_heads(
                    name,
                    cfg.num_attention_heads,
                    cfg.num_key_value_heads,
                )
            })
            .flatten();
        let interleaved;
        let t = match heads {
            Some(h) => {
                interleaved = to_interleaved(t, h)?;
                &interleaved
            }
            None => t,
        };
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
    let arch = cfg.family.name();
    let special = special_ids(cfg, tok, &gtok)?;
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
    let key = |k: &str| format!("{arch}.{k}");
    let mut md: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String(arch.into())),
        ("general.name".into(), V::String(format!("warden {arch}"))),
        ("general.file_type".into(), V::U32(file_type)),
        ("general.quantization_version".into(), V::U32(2)),
        (key("context_length"), u(cfg.max_position_embeddings)),
        (key("embedding_length"), u(cfg.hidden_size)),
        (key("block_count"), u(cfg.num_hidden_layers)),
        (key("feed_forward_length"), u(cfg.intermediate_size)),
        (key("attention.head_count"), u(cfg.num_attention_heads)),
        (key("attention.head_count_kv"), u(cfg.num_key_value_heads)),
        (key("attention.key_length"), u(cfg.head_dim)),
        (key("attention.value_length"), u(cfg.head_dim)),
        (key("rope.dimension_count"), u(cfg.head_dim)),
        (key("rope.freq_base"), V::F32(cfg.rope_theta as f32)),
        (
            key("attention.layer_norm_rms_epsilon"),
            V::F32(cfg.rms_norm_eps as f32),
        ),
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), V::String(special.pre)),
        (
            "tokenizer.ggml.tokens".into(),
            V::Array(gtok.tokens.into_iter().map(V::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            V::Array(gtok.types.into_iter().map(V::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            V::Array(gtok.merges.into_iter().map(V::String).collect()),
        ),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(special.eos)),
        (
            "tokenizer.ggml.padding_token_id".into(),
            V::U32(special.pad),
        ),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(special.bos)),
        (
            "tokenizer.ggml.add_bos_token".into(),
            V::Bool(special.add_bos),
        ),
        (
            "tokenizer.chat_template".into(),
            V::String(tok.chat_template()?),
        ),
    ];
    if let Some(unk) = special.unk {
        md.push(("tokenizer.ggml.unknown_token_id".into(), V::U32(unk)));
    }
    // Llama 3's RoPE scaling, as llama.cpp's converter stores it.
    if let (Family::Llama, Some(d)) = (cfg.family, cfg.rope_divisors()) {
        let n = d.len();
        qtensors.push((
            "rope_freqs.weight".to_string(),
            QTensor::quantize(
                &Tensor::from_vec(d, n, &candle_core::Device::Cpu)?,
                GgmlDType::F32,
            )?,
        ));
    }
    let md_refs: Vec<(&str, &V)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
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

/// A Hugging Face `(rows, …)` query or key projection (or bias) with its
/// rows in llama.cpp's interleaved order, head by head.
fn to_interleaved(t: &Tensor, heads: usize) -> anyhow::Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || rows % (2 * heads) != 0 {
        anyhow::bail!("cannot put {rows} rows of a projection into {heads} heads");
    }
    let half = rows / heads / 2;
    let mut split = vec![heads, 2, half];
    split.extend_from_slice(&dims[1..]);
    Ok(t.reshape(split)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

/// The special token ids and pre-tokenizer a written GGUF declares.
struct Special {
    pre: String,
    bos: u32,
    eos: u32,
    pad: u32,
    unk: Option<u32>,
    add_bos: bool,
}

/// From the source GGUF when there was one; else Qwen's own for the Qwen
/// families, and for others the tokenizer's end-of-turn and
/// beginning-of-text tokens by their text.
fn special_ids(
    cfg: &Qwen3Config,
    tok: &TokenizerFiles,
    gtok: &GgufTokenizer,
) -> anyhow::Result<Special> {
    let id = |text: &str| gtok.tokens.iter().position(|t| t == text).map(|i| i as u32);
    let src = tok.gguf.clone().unwrap_or_default();
    let pre = match (&src.pre, cfg.family) {
        (Some(p), _) => p.clone(),
        (None, Family::Qwen3 | Family::Qwen2) => "qwen2".to_string(),
        (None, Family::Llama) => pre_of(&tok.tokenizer_json)?,
    };
    let qwen = cfg.family != Family::Llama;
    let eos = src
        .eos
        .or_else(|| id("<|im_end|>"))
        .or_else(|| id("<|eot_id|>"))
        .or_else(|| id("<|endoftext|>"))
        .or_else(|| id("<|end_of_text|>"))
        .unwrap_or(0);
    let bos = src
        .bos
        .or_else(|| id("<|begin_of_text|>"))
        .or_else(|| id("<|endoftext|>"))
        .unwrap_or(eos);
    Ok(Special {
        pad: src.pad.or_else(|| id("<|endoftext|>")).unwrap_or(eos),
        unk: src.unk,
        add_bos: src
            .add_bos
            .unwrap_or(!qwen && id("<|begin_of_text|>").is_some()),
        pre,
        bos,
        eos,
    })
}

/// llama.cpp's name for the pre-tokenizer of a Llama-family
/// `tokenizer.json`: `qwen2` (Qwen's split), `smollm` (digits split one by
/// one, then GPT-2's split), `llama-bpe` (Llama 3's split), or `gpt-2`.
fn pre_of(tokenizer_json: &[u8]) -> anyhow::Result<String> {
    let t: serde_json::Value = serde_json::from_slice(tokenizer_json)?;
    let text = t["pre_tokenizer"].to_string();
    Ok(if text.contains(r"\\p{L}+|\\p{N}|") {
        "qwen2"
    } else if text.contains("\"individual_digits\":true") || text.contains(r#""\\p{N}""#) {
        "smollm"
    } else if text.contains(r"\\p{N}{1,3}") {
        "llama-bpe"
    } else if text.contains("ByteLevel") {
        "gpt-2"
    } else {
        anyhow::bail!("cannot tell which llama.cpp pre-tokenizer this tokenizer.json's pre_tokenizer is (known: smollm, llama-bpe, gpt-2); write the GGUF from a GGUF source, which names it")
    }
    .to_string())
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
