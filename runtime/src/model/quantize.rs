//! `warden quantize`: a checkpoint written as a GGUF file (q8_0, q6_k, q5_k,
//! q5_0, q4_k, q4_0, with tokenizer metadata and the chat template, as
//! llama.cpp's converter writes it) or as an MLX-quantized directory
//! (`mlx-8/6/5/4`, as `mlx_lm.convert -q` writes it); and the same
//! quantizers as a round trip, for measuring what survives them.

use super::config::Qwen3Config;
use super::mlx_quant::{self, MlxQuant};
use super::synth::{gguf_type_name, hf_config};
use anyhow::{bail, Context as _};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A target format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuantFormat {
    /// A GGUF tensor type.
    Gguf(GgmlDType),
    /// MLX affine quantization.
    Mlx(MlxQuant),
}

/// The GGUF types `--to` accepts.
pub const GGUF_FORMATS: [&str; 6] = ["q8_0", "q6_k", "q5_k", "q5_0", "q4_k", "q4_0"];

impl QuantFormat {
    /// Parses `q8_0`…`q4_0` or `mlx-8`/`mlx-6`/`mlx-5`/`mlx-4` (also
    /// `mlx-3`, `mlx-2`); `group_size` applies to MLX only (default 64).
    pub fn parse(s: &str, group_size: Option<usize>) -> anyhow::Result<QuantFormat> {
        let lower = s.to_ascii_lowercase();
        if let Some(bits) = lower.strip_prefix("mlx-") {
            let bits: u32 = bits
                .parse()
                .with_context(|| format!("bad format {s:?}; use mlx-8, mlx-6, mlx-5 or mlx-4"))?;
            return Ok(QuantFormat::Mlx(MlxQuant::new(
                group_size.unwrap_or(64),
                bits,
            )?));
        }
        if group_size.is_some() {
            bail!("--group-size applies to the mlx-N formats only; GGUF types have fixed blocks");
        }
        let alias = match lower.as_str() {
            "q4_k_m" => "q4_k",
            "q5_k_m" => "q5_k",
            other => other,
        };
        if !GGUF_FORMATS.contains(&alias) {
            bail!(
                "unknown format {s:?}; use one of {}, or mlx-8, mlx-6, mlx-5, mlx-4",
                GGUF_FORMATS.join(", ")
            );
        }
        Ok(QuantFormat::Gguf(super::synth::parse_gguf_type(alias)?))
    }

    /// `q4_k`, `mlx-4` (group 64 implied), `mlx-4-g32`.
    pub fn name(&self) -> String {
        match self {
            QuantFormat::Gguf(t) => gguf_type_name(*t),
            QuantFormat::Mlx(q) if q.group_size == 64 => format!("mlx-{}", q.bits),
            QuantFormat::Mlx(q) => format!("mlx-{}-g{}", q.bits, q.group_size),
        }
    }

    /// Whether a `(rows, cols)` matrix can be stored in this format.
    pub fn fits(&self, cols: usize) -> bool {
        match self {
            QuantFormat::Gguf(t) => cols % t.block_size() == 0,
            QuantFormat::Mlx(q) => cols % q.group_size == 0,
        }
    }

    /// `w` `(rows, cols)` in f32 quantized to this format and read back, as
    /// a model loaded from the written file would see it (MLX scales and
    /// biases rounded through bf16, the dtype they are written in).
    pub fn roundtrip(&self, w: &Tensor) -> anyhow::Result<Tensor> {
        let (rows, cols) = w.dims2()?;
        if !self.fits(cols) {
            bail!("rows of {cols} values do not fit {}", self.name());
        }
        match self {
            QuantFormat::Gguf(t) => Ok(QTensor::quantize(w, *t)?.dequantize(&Device::Cpu)?),
            QuantFormat::Mlx(q) => {
                let data = w.flatten_all()?.to_vec1::<f32>()?;
                let m = mlx_quant::quantize(&data, cols, *q, bf16_round)?;
                let back = mlx_quant::dequantize(&m.words, &m.scales, &m.biases, rows, cols, *q)?;
                Ok(Tensor::from_vec(back, (rows, cols), &Device::Cpu)?)
            }
        }
    }
}

fn bf16_round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// The tokenizer and template files a written model carries.
pub struct TokenizerFiles {
    /// `tokenizer.json`.
    pub tokenizer_json: Vec<u8>,
    /// `tokenizer_config.json` (with `chat_template`).
    pub tokenizer_config_json: Vec<u8>,
    /// Other files copied as they are (`generation_config.json`, …).
    pub extra: Vec<(String, Vec<u8>)>,
}

impl TokenizerFiles {
    /// The files of the model at `path`: copied from its directory (or the
    /// directory of a `.gguf`), else rebuilt from the GGUF's metadata.
    pub fn for_model(path: &Path) -> anyhow::Result<TokenizerFiles> {
        let dir = if path.is_dir() {
            Some(path)
        } else {
            path.parent()
        };
        let read = |name: &str| {
            dir.map(|d| d.join(name))
                .and_then(|p| std::fs::read(p).ok())
        };
        let tokenizer_json = match read("tokenizer.json") {
            Some(b) => b,
            None => super::tokenizer_for(path)?
                .to_string(false)
                .map_err(|e| {
                    anyhow::anyhow!("cannot serialise the tokenizer of {}: {e}", path.display())
                })?
                .into_bytes(),
        };
        let tokenizer_config_json = match read("tokenizer_config.json") {
            Some(b) => b,
            None => {
                let template = crate::chat::ChatTemplate::for_model(path)?;
                serde_json::to_vec_pretty(&serde_json::json!({
                    "chat_template": template.source(),
                    "eos_token": "<|im_end|>",
                    "pad_token": "<|endoftext|>",
                    "bos_token": null,
                    "add_bos_token": false,
                    "model_max_length": 131072,
                }))?
            }
        };
        let extra = [
            "generation_config.json",
            "special_tokens_map.json",
            "vocab.json",
            "merges.txt",
            "added_tokens.json",
        ]
        .iter()
        .filter_map(|n| read(n).map(|b| (n.to_string(), b)))
        .collect();
        Ok(TokenizerFiles {
            tokenizer_json,
            tokenizer_config_json,
            extra,
        })
    }

    /// The shipped Qwen3 tokenizer and template.
    pub fn builtin() -> TokenizerFiles {
        TokenizerFiles {
            tokenizer_json: super::synth::TOKENIZER_JSON.to_vec(),
            tokenizer_config_json: super::synth::TOKENIZER_CONFIG_JSON.to_vec(),
            extra: vec![],
        }
    }

    /// Writes them into `dir`.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = vec![
            write(dir, "tokenizer.json", &self.tokenizer_json)?,
            write(dir, "tokenizer_config.json", &self.tokenizer_config_json)?,
        ];
        for (n, b) in &self.extra {
            files.push(write(dir, n, b)?);
        }
        Ok(files)
    }

    fn chat_template(&self) -> anyhow::Result<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.tokenizer_config_json)?;
        Ok(match &v["chat_template"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "tool_use")
                .or_else(|| named.iter().find(|t| t["name"] == "default"))
                .and_then(|t| t["template"].as_str())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        })
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, bytes).with_context(|| format!("cannot write {}", p.display()))?;
    Ok(p)
}

/// Writes `tensors` (f32, by HF name) of a model of shape `cfg` as an HF
/// snapshot directory in `dtype`, with its tokenizer files.
pub fn write_hf_dir(
    dir: &Path,
    cfg: &Qwen3Config,
    tensors: &[(String, Tensor)],
    dtype: DType,
    tok: &TokenizerFiles,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(dtype)?)))
        .collect::<candle_core::Result<_>>()?;
    let st = dir.join("model.safetensors");
    candle_core::safetensors::save(&map, &st)
        .with_context(|| format!("cannot write {}", st.display()))?;
    let mut files = vec![
        st,
        write(
            dir,
            "config.json",
            &serde_json::to_vec_pretty(&hf_config(cfg, dtype))?,
        )?,
    ];
    files.extend(tok.write_to(dir)?);
    Ok(files)
}

/// What `write_quantized` did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Written {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Matrices left in a wider type because their rows do not fit the
    /// format's blocks (as llama.cpp and MLX-LM also do).
    pub fallbacks: Vec<String>,
}

/// Writes `tensors` in `format`: a GGUF file at `out`, or an MLX directory.
pub fn write_quantized(
    format: QuantFormat,
    cfg: &Qwen3Config,
    tensors: &[(String, Tensor)],
    out: &Path,
    tok: &TokenizerFiles,
) -> anyhow::Result<Written> {
    match format {
        QuantFormat::Gguf(t) => write_gguf(out, cfg, tensors, t, tok),
        QuantFormat::Mlx(q) => write_mlx(out, cfg, tensors, q, tok),
    }
}

/// An MLX directory: every matrix whose rows fit the group quantized
/// (embedding and LM head included, as `mlx_lm.convert -q` does), norms in
/// bf16, `quantization` in `config.json`.
fn write_mlx(
    dir: &Path,
    cfg: &Qwen3Config,
    tensors: &[(String, Tensor)],
    q: MlxQuant,
    tok: &TokenizerFiles,
) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut map: HashMap<String, Tensor> = HashMap::new();
    let mut written = Written::default();
    for (name, t) in tensors {
        let module = name.strip_suffix(".weight").unwrap_or(name);
        match t.dims() {
            &[rows, cols] if cols % q.group_size == 0 => {
                let data = t.flatten_all()?.to_vec1::<f32>()?;
                let m = mlx_quant::quantize(&data, cols, q, bf16_round)?;
                let g = cols / q.group_size;
                map.insert(
                    name.clone(),
                    Tensor::from_vec(m.words, (rows, q.packed_cols(cols)), &Device::Cpu)?,
                );
                map.insert(
                    format!("{module}.scales"),
                    Tensor::from_vec(m.scales, (rows, g), &Device::Cpu)?.to_dtype(DType::BF16)?,
                );
                map.insert(
                    format!("{module}.biases"),
                    Tensor::from_vec(m.biases, (rows, g), &Device::Cpu)?.to_dtype(DType::BF16)?,
                );
            }
            dims => {
                if dims.len() == 2 {
                    written.fallbacks.push(format!("{name} (bf16)"));
                }
                map.insert(name.clone(), t.to_dtype(DType::BF16)?);
            }
        }
    }
    let st = dir.join("model.safetensors");
    candle_core::safetensors::save(&map, &st)
        .with_context(|| format!("cannot write {}", st.display()))?;
    let mut config = hf_config(cfg, DType::BF16);
    let quant = serde_json::json!({"group_size": q.group_size, "bits": q.bits, "mode": "affine"});
    config["quantization"] = quant.clone();
    config["quantization_config"] = quant;
    written.files.push(st);
    written.files.push(write(
        dir,
        "config.json",
        &serde_json::to_vec_pretty(&config)?,
    )?);
    written.files.extend(tok.write_to(dir)?);
    Ok(written)
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
    let mut written = Written::default();
    let mut qtensors = Vec::new();
    for (name, t) in tensors {
        let q = if t.rank() == 1 {
            QTensor::quantize(t, GgmlDType::F32)?
        } else {
            let inner = *t.dims().last().unwrap_or(&0);
            let kind = [qtype, GgmlDType::Q8_0, GgmlDType::F16]
                .into_iter()
                .find(|k| inner % k.block_size() == 0)
                .unwrap_or(GgmlDType::F32);
            if kind != qtype {
                written
                    .fallbacks
                    .push(format!("{name} ({})", gguf_type_name(kind)));
            }
            QTensor::quantize(t, kind)?
        };
        qtensors.push((super::weights::gguf_name(name), q));
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
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    gguf_file::write(&mut f, &md_refs, &t_refs)?;
    use std::io::Write as _;
    f.flush()?;
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
