//! The files beside a model's weights that say how to talk to it: the
//! tokenizer and the chat template, carried from a source model to the
//! models `warden fuse` and `warden quantize` write; and the Hugging Face
//! directory writer.

use crate::model::arch::config::hf_config;
use crate::model::arch::config::Qwen3Config;
use anyhow::Context as _;
use candle_core::{DType, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The real Qwen3 tokenizer (Qwen's, Apache-2.0), shipped inside warden.
pub const TOKENIZER_JSON: &[u8] = include_bytes!("../../../assets/qwen3-tokenizer/tokenizer.json");
/// Its `tokenizer_config.json`, with the chat template.
pub const TOKENIZER_CONFIG_JSON: &[u8] =
    include_bytes!("../../../assets/qwen3-tokenizer/tokenizer_config.json");

/// The tokenizer and template files a written model carries.
pub struct TokenizerFiles {
    /// `tokenizer.json`.
    pub tokenizer_json: Vec<u8>,
    /// `tokenizer_config.json` (with `chat_template`).
    pub tokenizer_config_json: Vec<u8>,
    /// Other files copied as they are (`generation_config.json`, …).
    pub extra: Vec<(String, Vec<u8>)>,
    /// What a GGUF says of the tokenizer beyond `tokenizer.json`, when the
    /// source model was one (written again into GGUFs made from it).
    pub gguf: Option<GgufSpecial>,
}

/// A GGUF's `tokenizer.ggml.*` facts that `tokenizer.json` does not carry.
#[derive(Debug, Clone, Default)]
pub struct GgufSpecial {
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
}

impl GgufSpecial {
    /// Reads them from a GGUF's metadata.
    pub fn read(ct: &candle_core::quantized::gguf_file::Content) -> GgufSpecial {
        let md = &ct.metadata;
        let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
        GgufSpecial {
            pre: md
                .get("tokenizer.ggml.pre")
                .and_then(|v| v.to_string().ok().cloned()),
            bos: id("tokenizer.ggml.bos_token_id"),
            eos: id("tokenizer.ggml.eos_token_id"),
            pad: id("tokenizer.ggml.padding_token_id"),
            unk: id("tokenizer.ggml.unknown_token_id"),
            add_bos: md
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.to_bool().ok()),
        }
    }
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
            None => crate::model::tokenizer_for(path)?
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
            crate::chat::TEMPLATE_FILE,
            "generation_config.json",
            "special_tokens_map.json",
            "vocab.json",
            "merges.txt",
            "added_tokens.json",
        ]
        .iter()
        .filter_map(|n| read(n).map(|b| (n.to_string(), b)))
        .collect();
        let gguf = if path.is_file() {
            let (_, content) = crate::guard::contain::read_gguf(path)?;
            Some(GgufSpecial::read(&content))
        } else {
            None
        };
        Ok(TokenizerFiles {
            tokenizer_json,
            tokenizer_config_json,
            extra,
            gguf,
        })
    }

    /// The shipped Qwen3 tokenizer and template.
    pub fn builtin() -> TokenizerFiles {
        TokenizerFiles {
            tokenizer_json: crate::model::checkpoint::tokenizer_files::TOKENIZER_JSON.to_vec(),
            tokenizer_config_json: crate::model::checkpoint::tokenizer_files::TOKENIZER_CONFIG_JSON
                .to_vec(),
            extra: vec![],
            gguf: None,
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

    /// The chat template text: a `chat_template.jinja` among the files,
    /// else `tokenizer_config.json`'s (`tool_use` or `default` of a named
    /// list).
    pub fn chat_template(&self) -> anyhow::Result<String> {
        if let Some((_, b)) = self
            .extra
            .iter()
            .find(|(n, _)| n == crate::chat::TEMPLATE_FILE)
        {
            return Ok(String::from_utf8_lossy(b).into_owned());
        }
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

/// Writes `bytes` to `dir/name`.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    crate::outputs::write(&p, bytes)?;
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
    crate::outputs::write_with(&st, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))?;
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
