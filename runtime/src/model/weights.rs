//! Where the weights come from: safetensors (dense) or GGUF (quantized),
//! addressed by their Hugging Face names.

use super::embedding::Embedding;
use super::linear::Linear;
use anyhow::{bail, Context as _};
use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A checkpoint's tensors.
pub enum Weights {
    /// Memory-mapped safetensors files of a Hugging Face snapshot.
    Safetensors {
        vb: VarBuilder<'static>,
        files: Vec<PathBuf>,
    },
    /// A GGUF file; quantized tensors stay quantized.
    Gguf {
        content: gguf_file::Content,
        file: std::fs::File,
        path: PathBuf,
        device: Device,
    },
}

/// The GGUF (llama.cpp) name of a Hugging Face Qwen3 tensor name.
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
    let mapped = match name {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => other,
    };
    format!("blk.{layer}.{mapped}")
}

impl Weights {
    /// Memory-maps `files` (one or several shards).
    pub fn safetensors(
        files: Vec<PathBuf>,
        dtype: DType,
        device: &Device,
    ) -> anyhow::Result<Weights> {
        for f in &files {
            check_safetensors_header(f)?;
        }
        // SAFETY: the files are memory-mapped read-only; warden does not
        // modify them while the model is loaded. (As with every mmap, a file
        // truncated by another process while mapped is outside our control.)
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }
            .with_context(|| format!("cannot load safetensors {}", list(&files)))?;
        Ok(Weights::Safetensors { vb, files })
    }

    /// Opens a GGUF file whose header was read into `content`.
    pub fn gguf(
        content: gguf_file::Content,
        file: std::fs::File,
        path: &Path,
        device: &Device,
    ) -> Weights {
        Weights::Gguf {
            content,
            file,
            path: path.to_path_buf(),
            device: device.clone(),
        }
    }

    fn origin(&self) -> String {
        match self {
            Weights::Safetensors { files, .. } => list(files),
            Weights::Gguf { path, .. } => path.display().to_string(),
        }
    }

    /// Whether tensor `hf` exists.
    pub fn contains(&self, hf: &str) -> bool {
        match self {
            Weights::Safetensors { vb, .. } => vb.contains_tensor(hf),
            Weights::Gguf { content, .. } => content.tensor_infos.contains_key(&gguf_name(hf)),
        }
    }

    /// A dense tensor of `shape`, in the model dtype (dequantized from GGUF).
    pub fn dense(&mut self, hf: &str, shape: &[usize], dtype: DType) -> anyhow::Result<Tensor> {
        let origin = self.origin();
        let t = match self {
            Weights::Safetensors { vb, .. } => vb
                .get(shape, hf)
                .map_err(|e| tensor_error(&origin, hf, e))?,
            Weights::Gguf { device, .. } => {
                let device = device.clone();
                self.quantized(hf, shape)?
                    .dequantize(&device)?
                    .to_dtype(dtype)?
            }
        };
        Ok(t)
    }

    /// The token embedding table `(vocab, hidden)`; from GGUF on the CPU it
    /// stays quantized, and `tied_head` (when asked for) is an LM head over
    /// the same quantized table.
    pub fn embedding(
        &mut self,
        vocab: usize,
        hidden: usize,
        dtype: DType,
        tied_head: bool,
    ) -> anyhow::Result<(Embedding, Option<Linear>)> {
        const NAME: &str = "model.embed_tokens.weight";
        match self {
            Weights::Safetensors { .. } => {
                let table = self.dense(NAME, &[vocab, hidden], dtype)?;
                let head = tied_head
                    .then(|| Linear::dense(table.clone(), None))
                    .transpose()?;
                Ok((Embedding::Dense(table), head))
            }
            Weights::Gguf { device, .. } => {
                let device = device.clone();
                let table = Arc::new(self.quantized(NAME, &[vocab, hidden])?);
                let head = tied_head
                    .then(|| Linear::quantized_shared(table.clone()))
                    .transpose()?;
                Ok((Embedding::from_qtensor(table, dtype, &device)?, head))
            }
        }
    }

    /// A GGUF tensor of `shape`, as stored (quantized or not).
    fn quantized(&mut self, hf: &str, shape: &[usize]) -> anyhow::Result<QTensor> {
        let origin = self.origin();
        let Weights::Gguf {
            content,
            file,
            device,
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
        Ok(q)
    }

    /// A linear layer with weight `(out, in)`, kept quantized if it is.
    pub fn linear(
        &mut self,
        hf: &str,
        out: usize,
        inp: usize,
        dtype: DType,
    ) -> anyhow::Result<Linear> {
        match self {
            Weights::Safetensors { .. } => {
                Ok(Linear::dense(self.dense(hf, &[out, inp], dtype)?, None)?)
            }
            Weights::Gguf { .. } => Ok(Linear::quantized(self.quantized(hf, &[out, inp])?)?),
        }
    }
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
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

/// Checks that a safetensors file's header is complete and its tensors lie
/// inside the file, so a truncated download is reported before mmap use.
fn check_safetensors_header(path: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = f.metadata()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a safetensors file (shorter than its 8-byte header length)",
            path.display()
        )
    })?;
    let header_len = u64::from_le_bytes(n);
    if header_len > size.saturating_sub(8) || header_len > 100 << 20 {
        bail!(
            "{} is truncated or corrupt: header claims {header_len} bytes, file has {size}",
            path.display()
        );
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header)?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| anyhow::anyhow!("{} has a corrupt safetensors header: {e}", path.display()))?;
    let data_len = size - 8 - header_len;
    if let Some(obj) = json.as_object() {
        for (name, info) in obj.iter().filter(|(k, _)| *k != "__metadata__") {
            let end = info["data_offsets"][1].as_u64().unwrap_or(u64::MAX);
            if end > data_len {
                bail!(
                    "{} is truncated: tensor {name} ends at byte {end} of the data, which has only {data_len} bytes; download it again",
                    path.display()
                );
            }
        }
    }
    Ok(())
}
