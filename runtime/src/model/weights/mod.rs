//! Where the weights come from: safetensors (dense) or GGUF (quantized),
//! addressed by their Hugging Face names.

pub mod ggml_type;
pub mod llama_rows;
pub mod mlx_quant;
pub(crate) mod safetensors;

use crate::model::weights::safetensors::SafetensorsFiles;
use anyhow::bail;
use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};
use mlx_quant::MlxQuantConfig;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A checkpoint's tensors.
pub enum Weights {
    /// The safetensors files of a Hugging Face snapshot; tensors are loaded
    /// onto `device`. MLX-quantized matrices (`quant`) are dequantized.
    Safetensors {
        files: SafetensorsFiles,
        device: Device,
        quant: Option<MlxQuantConfig>,
    },
    /// Tensors already in memory (a model quantized on the fly).
    Memory {
        tensors: HashMap<String, MemTensor>,
        device: Device,
    },
    /// A GGUF file; quantized tensors stay quantized.
    Gguf {
        content: gguf_file::Content,
        file: std::fs::File,
        path: PathBuf,
        device: Device,
        /// A Llama GGUF's query and key heads, whose rows are put back in
        /// Hugging Face's order as they are read ([`llama_rows`]).
        llama_heads: Option<(usize, usize)>,
    },
}

/// A weight as its source stores it; the layers build themselves from it
/// (`arch::linear::Linear::load`, `arch::embedding::Embedding::load`).
pub enum Stored {
    /// Dense, in the model's dtype.
    Dense(Tensor),
    /// Quantized (GGUF).
    Quantized(QTensor),
    /// Quantized and shared (in memory, or an embedding a tied head reuses).
    Shared(Arc<QTensor>),
}

/// One tensor held in memory.
pub enum MemTensor {
    /// Dense, f32 on the CPU.
    Dense(Tensor),
    /// Quantized (CPU).
    Quantized(Arc<QTensor>),
}

/// The GGUF (llama.cpp) name of a Hugging Face tensor name (the same for
/// Qwen3, Llama and Qwen2).
pub fn gguf_name(hf: &str) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return hf.to_string();
    };
    let (layer, name) = rest.split_once('.').unwrap_or((rest, ""));
    let (module, suffix) = name.rsplit_once('.').unwrap_or((name, ""));
    let mapped = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return format!("blk.{layer}.{name}"),
    };
    format!("blk.{layer}.{mapped}.{suffix}")
}

/// The heads whose rows a Llama GGUF stores interleaved: `hf`'s query or
/// key heads, when `hf` is a query or key projection (weight or bias).
pub fn interleaved_heads(hf: &str, heads: usize, kv_heads: usize) -> Option<usize> {
    let module = hf.rsplit_once('.').map_or(hf, |(m, _)| m);
    if module.ends_with("self_attn.q_proj") {
        Some(heads)
    } else if module.ends_with("self_attn.k_proj") {
        Some(kv_heads)
    } else {
        None
    }
}

impl Weights {
    /// Opens `files` (one or several shards) and checks their headers.
    /// `quant` is the checkpoint's MLX quantization, if any.
    pub fn safetensors(
        files: Vec<PathBuf>,
        device: &Device,
        quant: Option<MlxQuantConfig>,
    ) -> anyhow::Result<Weights> {
        Ok(Weights::Safetensors {
            files: SafetensorsFiles::open(files)?,
            device: device.clone(),
            quant,
        })
    }

    /// Whether the weights are stored quantized (GGUF or MLX), so that
    /// reading them dense dequantizes; names the format.
    pub fn quantized_format(&self) -> Option<String> {
        match self {
            Weights::Safetensors {
                quant: Some(_),
                files,
                ..
            } if files.names().iter().any(|n| files.is_u32(n)) => Some("MLX-quantized".into()),
            Weights::Safetensors { .. } | Weights::Memory { .. } => None,
            Weights::Gguf { content, .. } => {
                let mut kinds: Vec<String> = content
                    .tensor_infos
                    .values()
                    .filter(|t| t.shape.rank() == 2)
                    .map(|t| crate::model::weights::ggml_type::gguf_type_name(t.ggml_dtype))
                    .filter(|k| k != "f32" && k != "f16")
                    .collect();
                kinds.sort();
                kinds.dedup();
                (!kinds.is_empty()).then(|| format!("GGUF {}", kinds.join("/")))
            }
        }
    }

    /// Opens a GGUF file whose header was read into `content`;
    /// `llama_heads` (query, key/value heads) for a Llama file.
    pub fn gguf(
        content: gguf_file::Content,
        file: std::fs::File,
        path: &Path,
        device: &Device,
        llama_heads: Option<(usize, usize)>,
    ) -> Weights {
        Weights::Gguf {
            content,
            file,
            path: path.to_path_buf(),
            device: device.clone(),
            llama_heads,
        }
    }

    /// The files the weights come from, for messages.
    pub fn origin(&self) -> String {
        match self {
            Weights::Safetensors { files, .. } => list(files.paths()),
            Weights::Gguf { path, .. } => path.display().to_string(),
            Weights::Memory { .. } => "(weights quantized in memory)".into(),
        }
    }

    /// Whether tensor `hf` exists.
    pub fn contains(&self, hf: &str) -> bool {
        match self {
            Weights::Safetensors { files, .. } => files.contains(hf),
            Weights::Gguf { content, .. } => content.tensor_infos.contains_key(&gguf_name(hf)),
            Weights::Memory { tensors, .. } => tensors.contains_key(hf),
        }
    }

    /// A dense tensor of `shape`, in the model dtype (dequantized from GGUF).
    pub fn dense(&mut self, hf: &str, shape: &[usize], dtype: DType) -> anyhow::Result<Tensor> {
        let origin = self.origin();
        let t = match self {
            Weights::Safetensors {
                files,
                device,
                quant,
            } if files.is_u32(hf) => mlx_dense(files, quant.as_ref(), &origin, hf, shape)?
                .to_dtype(dtype)?
                .to_device(device)?,
            Weights::Safetensors { files, device, .. } => {
                if let Some(got) = files.shape(hf) {
                    check_shape(&origin, hf, got, shape)?;
                }
                files
                    .load(hf, dtype, device)
                    .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?
            }
            Weights::Gguf { device, .. } => {
                let device = device.clone();
                self.quantized(hf, shape)?
                    .dequantize(&device)?
                    .to_dtype(dtype)?
            }
            Weights::Memory { tensors, device } => {
                let t = match tensors.get(hf) {
                    None => bail!("{origin}: tensor {hf} is missing"),
                    Some(MemTensor::Dense(t)) => t.clone(),
                    Some(MemTensor::Quantized(q)) => q.dequantize(&Device::Cpu)?,
                };
                check_shape(&origin, hf, t.dims(), shape)?;
                t.to_dtype(dtype)?.to_device(device)?
            }
        };
        Ok(t)
    }

    /// The token embedding table `(vocab, hidden)`: dense, or (from GGUF,
    /// or quantized in memory) the quantized table, shared so a tied LM
    /// head can use the same bytes.
    pub fn embedding_table(
        &mut self,
        vocab: usize,
        hidden: usize,
        dtype: DType,
    ) -> anyhow::Result<Stored> {
        const NAME: &str = "model.embed_tokens.weight";
        if let Weights::Memory { tensors, .. } = self {
            if let Some(MemTensor::Quantized(table)) = tensors.get(NAME) {
                return Ok(Stored::Shared(table.clone()));
            }
        }
        match self {
            Weights::Safetensors { .. } | Weights::Memory { .. } => {
                Ok(Stored::Dense(self.dense(NAME, &[vocab, hidden], dtype)?))
            }
            Weights::Gguf { .. } => Ok(Stored::Shared(Arc::new(
                self.quantized(NAME, &[vocab, hidden])?,
            ))),
        }
    }

    /// A GGUF tensor of `shape`, as stored (quantized or not).
    fn quantized(&mut self, hf: &str, shape: &[usize]) -> anyhow::Result<QTensor> {
        let origin = self.origin();
        let Weights::Gguf {
            content,
            file,
            device,
            llama_heads,
            ..
        } = self
        else {
            bail!("{origin}: {hf} is not in a GGUF file");
        };
        let name = gguf_name(hf);
        let q = content
            .tensor(file, &name, device)
            .map_err(|e| tensor_error(&origin, &name, e))?;
        check_shape(&origin, &name, q.shape().dims(), shape)?;
        match llama_heads.and_then(|(h, kv)| interleaved_heads(hf, h, kv)) {
            None => Ok(q),
            Some(heads) => {
                let rows = shape.first().copied().unwrap_or(0);
                let data =
                    llama_rows::reorder(&q.data()?, rows, heads, llama_rows::Direction::ToHf)
                        .map_err(|e| anyhow::anyhow!("{origin}: tensor {name}: {e}"))?;
                let storage = candle_core::quantized::QStorage::from_data(
                    std::borrow::Cow::Owned(data),
                    device,
                    q.dtype(),
                )?;
                Ok(QTensor::new(storage, shape)?)
            }
        }
    }

    /// The matrix `hf` of shape `(out, in)` as stored: dense (in `dtype`),
    /// or quantized (GGUF), or quantized in memory and shared.
    pub fn matrix(
        &mut self,
        hf: &str,
        out: usize,
        inp: usize,
        dtype: DType,
    ) -> anyhow::Result<Stored> {
        match self {
            Weights::Safetensors { .. } => Ok(Stored::Dense(self.dense(hf, &[out, inp], dtype)?)),
            Weights::Gguf { .. } => Ok(Stored::Quantized(self.quantized(hf, &[out, inp])?)),
            Weights::Memory { tensors, .. } => match tensors.get(hf) {
                Some(MemTensor::Quantized(q)) => {
                    let q = q.clone();
                    check_shape(&self.origin(), hf, q.shape().dims(), &[out, inp])?;
                    Ok(Stored::Shared(q))
                }
                _ => Ok(Stored::Dense(self.dense(hf, &[out, inp], dtype)?)),
            },
        }
    }

    /// The device tensors are loaded to.
    pub fn device(&self) -> &Device {
        match self {
            Weights::Safetensors { device, .. }
            | Weights::Gguf { device, .. }
            | Weights::Memory { device, .. } => device,
        }
    }
}

/// Dequantizes the MLX-quantized matrix `hf` (`…weight` packed, with
/// `…scales` and `…biases` beside it) of logical shape `shape`.
fn mlx_dense(
    files: &SafetensorsFiles,
    quant: Option<&MlxQuantConfig>,
    origin: &str,
    hf: &str,
    shape: &[usize],
) -> anyhow::Result<Tensor> {
    let module = hf.strip_suffix(".weight").unwrap_or(hf);
    let Some(quant) = quant else {
        bail!("{origin}: tensor {hf} is packed uint32 but config.json has no \"quantization\"; restore the checkpoint's original config.json");
    };
    let Some(q) = quant.for_module(module) else {
        bail!("{origin}: tensor {hf} is packed uint32 but config.json's quantization leaves {module} unquantized");
    };
    let &[rows, cols] = shape else {
        bail!("{origin}: tensor {hf} is packed uint32 but the config implies shape {shape:?}; only matrices are quantized");
    };
    q.check_cols(cols)
        .map_err(|e| anyhow::anyhow!("{origin}: tensor {hf}: {e}"))?;
    let (words, packed) = files.load_u32(hf)?;
    let want = [rows, q.packed_cols(cols)];
    if packed != want {
        bail!("{origin}: tensor {hf} has shape {packed:?}, but a {rows}×{cols} matrix at {} bits is stored as {want:?}: check config.json's quantization (group_size {}, bits {})", q.bits, q.group_size, q.bits);
    }
    let side = |what: &str| -> anyhow::Result<Vec<f32>> {
        let name = format!("{module}.{what}");
        let want = [rows, cols / q.group_size];
        match files.shape(&name) {
            None => bail!("{origin}: tensor {hf} is packed but {name} is missing"),
            Some(got) if got != want => bail!(
                "{origin}: tensor {name} has shape {got:?}, but group size {} implies {want:?}",
                q.group_size
            ),
            Some(_) => Ok(files
                .load(&name, DType::F32, &Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f32>()?),
        }
    };
    let (scales, biases) = (side("scales")?, side("biases")?);
    let w = mlx_quant::dequantize(&words, &scales, &biases, rows, cols, q)
        .map_err(|e| anyhow::anyhow!("{origin}: tensor {hf}: {e}"))?;
    Ok(Tensor::from_vec(w, (rows, cols), &Device::Cpu)?)
}

fn list<'a>(files: impl Iterator<Item = &'a Path>) -> String {
    files
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn tensor_error(origin: &str, name: &str, e: candle_core::Error) -> anyhow::Error {
    anyhow::anyhow!("{origin}: tensor {name}: {e}")
}

fn check_shape(origin: &str, name: &str, got: &[usize], want: &[usize]) -> anyhow::Result<()> {
    if got != want {
        bail!("{origin}: tensor {name} has shape {got:?}, but the config implies {want:?}");
    }
    Ok(())
}
