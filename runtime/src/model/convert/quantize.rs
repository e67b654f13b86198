//! `warden quantize`: a checkpoint written as a GGUF file (q8_0, q6_k, q5_k,
//! q5_1, q5_0, q4_k, q4_1, q4_0, with tokenizer metadata and the chat template, as
//! llama.cpp's converter writes it) or as an MLX-quantized directory
//! (`mlx-8/6/5/4`, as `mlx_lm.convert -q` writes it); and the same
//! quantizers as a round trip, for measuring what survives them.

use crate::model::arch::config::hf_config;
use crate::model::arch::config::Qwen3Config;
use crate::model::checkpoint::gguf_write::{write_gguf, Written};
use crate::model::checkpoint::tokenizer_files::{write, TokenizerFiles};
use crate::model::weights::ggml_type::gguf_type_name;
use crate::model::weights::mlx_quant::{self, MlxQuant};
use anyhow::{bail, Context as _};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// A target format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuantFormat {
    /// A GGUF tensor type.
    Gguf(GgmlDType),
    /// MLX affine quantization.
    Mlx(MlxQuant),
}

/// The GGUF types `--to` accepts.
pub const GGUF_FORMATS: [&str; 8] = [
    "q8_0", "q6_k", "q5_k", "q5_1", "q5_0", "q4_k", "q4_1", "q4_0",
];

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
        Ok(QuantFormat::Gguf(
            crate::model::weights::ggml_type::parse_gguf_type(alias)?,
        ))
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

    /// The format a matrix with rows of `cols` values is actually written
    /// in: this one when its rows fit, else a wider fallback (GGUF: q8_0,
    /// then f16); `None` for MLX, which keeps such a matrix in bf16.
    pub fn written_as(&self, cols: usize) -> Option<QuantFormat> {
        match self {
            QuantFormat::Gguf(t) => Some(QuantFormat::Gguf(
                crate::model::checkpoint::gguf_write::written_kind(*t, cols),
            )),
            QuantFormat::Mlx(_) => self.fits(cols).then_some(*self),
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

/// `tensors` (f32, by HF name) quantized to `format` in memory, as a model
/// loaded from `warden quantize`'s output would hold them: GGUF types stay
/// quantized on the CPU (candle's kernels; dequantized on GPUs), MLX
/// formats are quantized and read back dense, as warden loads MLX files.
pub fn in_memory(
    tensors: Vec<(String, Tensor)>,
    format: QuantFormat,
    device: &Device,
) -> anyhow::Result<crate::model::weights::Weights> {
    use crate::model::weights::MemTensor;
    let mut map = HashMap::new();
    for (name, t) in tensors {
        let cols = t.dims().last().copied().unwrap_or(0);
        let m = match format {
            QuantFormat::Gguf(ty) if t.rank() == 2 => {
                let kind = crate::model::checkpoint::gguf_write::written_kind(ty, cols);
                let q = QTensor::quantize(&t, kind)?;
                if device.is_cpu() {
                    MemTensor::Quantized(std::sync::Arc::new(q))
                } else {
                    MemTensor::Dense(q.dequantize(&Device::Cpu)?)
                }
            }
            QuantFormat::Gguf(_) => MemTensor::Dense(t),
            QuantFormat::Mlx(_) if t.rank() == 2 && format.fits(cols) => {
                MemTensor::Dense(format.roundtrip(&t)?)
            }
            // What the MLX writer stores in bf16.
            QuantFormat::Mlx(_) => MemTensor::Dense(t.to_dtype(DType::BF16)?.to_dtype(DType::F32)?),
        };
        map.insert(name, m);
    }
    Ok(crate::model::weights::Weights::Memory {
        tensors: map,
        device: device.clone(),
    })
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
        written.matrices += usize::from(t.rank() == 2);
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
    crate::outputs::write_with(&st, |tmp| Ok(candle_core::safetensors::save(&map, tmp)?))?;
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

/// Loads `spec` and quantizes it to `format` in memory, without writing
/// a file: the model `warden quantize --to FORMAT` would give.
pub fn load_quantized(
    spec: &str,
    device: &Device,
    dtype: Option<DType>,
    format: QuantFormat,
) -> anyhow::Result<crate::model::LoadedModel> {
    use crate::model::checkpoint::load::{default_dtype, Checkpoint, LoadedModel};
    let start = std::time::Instant::now();
    let mut ck = Checkpoint::open(spec, &Device::Cpu)?;
    let tensors = ck.dense_tensors()?;
    let mut weights = in_memory(tensors, format, device)?;
    let dtype = dtype.unwrap_or_else(|| default_dtype(device));
    let mut model =
        crate::model::arch::qwen3::Qwen3::load(&ck.config, &mut weights, dtype, device, |_| {})?;
    if let Some(t) = &ck.tokenizer {
        model.set_stop_tokens(crate::model::checkpoint::load::stop_tokens(t));
    }
    Ok(LoadedModel {
        model,
        tokenizer: ck.tokenizer,
        path: ck.path,
        format: ck.format,
        load_time: start.elapsed(),
        adapters: vec![],
        draft: None,
        chat_template: None,
    })
}
