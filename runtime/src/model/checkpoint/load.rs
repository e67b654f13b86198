//! Finding and loading a checkpoint.

use crate::model::adapter::{Adapter, AdapterInfo};
use crate::model::arch::config::{Family, Qwen3Config};
use crate::model::arch::qwen3::Qwen3;
use crate::model::weights::mlx_quant::MlxQuantConfig;
use crate::model::weights::Weights;
use anyhow::{bail, Context as _};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokenizers::Tokenizer;

/// What kind of checkpoint was loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// Hugging Face safetensors (dense).
    Safetensors,
    /// GGUF (quantized or not).
    Gguf,
    /// MLX-quantized safetensors (mlx-community, `mlx_lm.convert -q`).
    Mlx,
}

/// A model ready to run, with its tokenizer when one was found.
pub struct LoadedModel {
    /// The network and its cache.
    pub model: Qwen3,
    /// The tokenizer (`tokenizer.json` beside the weights), if any.
    pub tokenizer: Option<Tokenizer>,
    /// Where it came from.
    pub path: PathBuf,
    /// Its format.
    pub format: ModelFormat,
    /// Time to load it.
    pub load_time: Duration,
    /// Adapters applied unfused, in order.
    pub adapters: Vec<AdapterInfo>,
    /// A smaller model with the same tokenizer that drafts tokens for
    /// `--speculative draft`, and where it came from.
    pub draft: Option<(Qwen3, PathBuf)>,
    /// The chat template chosen over the model's own: `--chat-template`
    /// (a file or a built-in's name), or the `chat_template.jinja` of the
    /// last adapter that has one.
    pub chat_template: Option<String>,
}

/// Llama 3's RoPE frequency divisors in a GGUF (llama.cpp's name).
pub const ROPE_FREQS: &str = "rope_freqs.weight";

/// A checkpoint opened for reading: its shape, its tensors, its tokenizer.
pub struct Checkpoint {
    /// Where it is.
    pub path: PathBuf,
    /// Its shape.
    pub config: Qwen3Config,
    /// Its tensors.
    pub weights: Weights,
    /// Its format.
    pub format: ModelFormat,
    /// Its tokenizer, when one was found.
    pub tokenizer: Option<Tokenizer>,
}

impl Checkpoint {
    /// Opens `spec` (a snapshot directory, a `.gguf` file or a hub-cache
    /// name) and reads its config and headers, not its tensors.
    pub fn open(spec: &str, device: &Device) -> anyhow::Result<Checkpoint> {
        let path = resolve(spec)?;
        if path.is_dir() {
            let cfg_path = path.join("config.json");
            let cfg = Qwen3Config::from_file(&cfg_path)?;
            let raw: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&cfg_path)?)?;
            let quant = MlxQuantConfig::from_config(&raw)
                .with_context(|| format!("{}", cfg_path.display()))?;
            let tok = path.join("tokenizer.json");
            let tokenizer = if tok.exists() {
                Some(load_tokenizer(&tok, &cfg)?)
            } else {
                None
            };
            let format = if quant.is_some() {
                ModelFormat::Mlx
            } else {
                ModelFormat::Safetensors
            };
            let files = safetensors_files(&path)?;
            let weights = Weights::safetensors(files, device, quant)?;
            Ok(Checkpoint {
                path,
                config: cfg,
                weights,
                format,
                tokenizer,
            })
        } else {
            let (file, content) = crate::guard::contain::read_gguf(&path)?;
            // The file's own integrity first: nothing below reads a tensor
            // whose extent was not checked.
            check_gguf_extent(&content, &file, &path)?;
            let mut cfg =
                Qwen3Config::from_gguf(&content).with_context(|| format!("{}", path.display()))?;
            // tokenizer.json beside the file wins; otherwise the GGUF's own
            // tokenizer.ggml.* metadata.
            let tokenizer = match path.parent().map(|p| p.join("tokenizer.json")) {
                Some(t) if t.exists() => Some(load_tokenizer(&t, &cfg)?),
                _ => Some(
                    crate::model::checkpoint::gguf_tokenizer::from_gguf(&content)
                        .with_context(|| format!("{}", path.display()))?,
                ),
            };
            let llama = (cfg.family == Family::Llama)
                .then_some((cfg.num_attention_heads, cfg.num_key_value_heads));
            let mut weights = Weights::gguf(content, file, &path, device, llama);
            // Llama 3's RoPE scaling, as the converter stores it.
            if weights.contains(ROPE_FREQS) {
                let d = weights
                    .dense(ROPE_FREQS, &[cfg.head_dim / 2], DType::F32)?
                    .to_vec1::<f32>()?;
                cfg.rope_freqs = Some(d);
            }
            Ok(Checkpoint {
                path,
                config: cfg,
                weights,
                format: ModelFormat::Gguf,
                tokenizer,
            })
        }
    }

    /// Every tensor of the model, dense in f32 on the CPU (dequantized from
    /// GGUF or MLX), by Hugging Face name, in checkpoint order.
    pub fn dense_tensors(&mut self) -> anyhow::Result<Vec<(String, candle_core::Tensor)>> {
        crate::model::arch::config::tensor_shapes(&self.config)
            .into_iter()
            .map(|(name, shape)| {
                let t = self.weights.dense(&name, &shape, DType::F32)?;
                Ok((name, t.to_device(&Device::Cpu)?))
            })
            .collect()
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` or `metal`.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "metal" => Device::new_metal(0)
            .context("cannot use metal; build warden with --features metal on macOS"),
        _ => {
            let ordinal = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(rest) => rest
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("bad device {s:?}; use cuda or cuda:N"))?,
                None => bail!("unknown device {s:?}; use cpu, cuda[:N] or metal"),
            };
            Device::new_cuda(ordinal)
                .with_context(|| format!("cannot use {s}; build warden with --features cuda on a machine with an NVIDIA GPU"))
        }
    }
}

/// f32 on CPU, bf16 on GPUs.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

impl LoadedModel {
    /// Another handle on the same weights, tokenizer and adapters with an
    /// empty KV cache (and draft cache) of its own: one per sequence that
    /// runs at once (`warden serve --parallel`).
    pub fn share(&self) -> LoadedModel {
        LoadedModel {
            model: self.model.share(),
            tokenizer: self.tokenizer.clone(),
            path: self.path.clone(),
            format: self.format.clone(),
            load_time: self.load_time,
            adapters: self.adapters.clone(),
            draft: self.draft.as_ref().map(|(m, p)| (m.share(), p.clone())),
            chat_template: self.chat_template.clone(),
        }
    }

    /// Loads `spec`: a snapshot directory, a `.gguf` file, or a hub-cache
    /// name such as `Qwen/Qwen3-0.6B` (never downloaded).
    pub fn load(
        spec: &str,
        device: &Device,
        dtype: Option<DType>,
        progress: bool,
    ) -> anyhow::Result<LoadedModel> {
        let start = Instant::now();
        let Checkpoint {
            path,
            config: cfg,
            mut weights,
            format,
            tokenizer,
        } = Checkpoint::open(spec, device)?;
        let dtype = dtype.unwrap_or_else(|| default_dtype(device));
        let bar = |layers: usize| {
            let pb = crate::progress::bar(
                progress,
                layers as u64,
                "loading {msg} [{bar:30}] {pos}/{len} layers",
            );
            pb.set_message(path.display().to_string());
            pb
        };
        let pb = bar(cfg.num_hidden_layers);
        let mut model = Qwen3::load(&cfg, &mut weights, dtype, device, |_| pb.inc(1))?;
        pb.finish_and_clear();
        if let Some(t) = &tokenizer {
            model.set_stop_tokens(stop_tokens(t));
        }
        Ok(LoadedModel {
            model,
            tokenizer,
            path,
            format,
            load_time: start.elapsed(),
            adapters: vec![],
            draft: None,
            chat_template: None,
        })
    }

    /// Loads `spec` as the draft model for `--speculative draft`: it must
    /// share this model's vocabulary (the same tokenizer), since its tokens
    /// are checked by this model as they are.
    pub fn attach_draft(&mut self, spec: &str, progress: bool) -> anyhow::Result<()> {
        let device = self.model.device().clone();
        let d = LoadedModel::load(spec, &device, Some(self.model.dtype()), progress)?;
        let (ours, theirs) = (self.model.config(), d.model.config());
        if ours.vocab_size != theirs.vocab_size {
            bail!(
                "the draft model {} has a vocabulary of {} rows, this model {}: a draft model must use the same tokenizer (e.g. Qwen3-0.6B for a larger Qwen3)",
                d.path.display(),
                theirs.vocab_size,
                ours.vocab_size
            );
        }
        if let (Some(a), Some(b)) = (&self.tokenizer, &d.tokenizer) {
            let probe = "<|im_start|>user\nfn main() { println!(\"héllo\"); }<|im_end|>";
            let ids = |t: &Tokenizer| crate::model::checkpoint::tokenize::encode(t, probe).ok();
            if ids(a) != ids(b) || a.get_vocab_size(true) != b.get_vocab_size(true) {
                bail!(
                    "the draft model {} tokenizes differently from this model: a draft model must use the same tokenizer",
                    d.path.display()
                );
            }
        }
        self.draft = Some((d.model, d.path));
        Ok(())
    }

    /// Reads each adapter directory (PEFT or MLX-LM), checks it fits this
    /// model, and applies it unfused; they stack in order. An adapter's
    /// `chat_template.jinja` becomes the run's template.
    pub fn apply_adapters(&mut self, dirs: &[PathBuf]) -> anyhow::Result<()> {
        for dir in dirs {
            let adapter = Adapter::load(dir, self.model.config())?;
            adapter.attach_to(&mut self.model)?;
            self.adapters.push(adapter.info());
            // A fine-tune carries the format it was trained in.
            let template = dir.join(crate::chat::TEMPLATE_FILE);
            if template.is_file() {
                self.chat_template = Some(template.display().to_string());
            }
        }
        Ok(())
    }
}

/// The end-of-turn and end-of-text tokens a tokenizer has, the end of a
/// turn first (ChatML's `<|im_end|>`, Llama 3's `<|eot_id|>`).
pub fn stop_tokens(tok: &Tokenizer) -> Vec<u32> {
    const ENDS: [&str; 6] = [
        "<|im_end|>",
        "<|eot_id|>",
        "<|end|>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<|eom_id|>",
    ];
    ENDS.iter().filter_map(|t| tok.token_to_id(t)).collect()
}

/// Loads `tokenizer.json` and checks it fits the model's vocabulary.
pub fn load_tokenizer(path: &Path, cfg: &Qwen3Config) -> anyhow::Result<Tokenizer> {
    let tok = Tokenizer::from_file(path)
        .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", path.display()))?;
    let n = tok.get_vocab_size(true);
    if n > cfg.vocab_size {
        bail!(
            "tokenizer {} has {n} tokens but the model's vocabulary has {} rows: they do not belong together",
            path.display(),
            cfg.vocab_size
        );
    }
    Ok(tok)
}

/// The safetensors files of a snapshot: the index's shards, or the single file.
fn safetensors_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = json["weight_map"]
            .as_object()
            .with_context(|| format!("{} has no weight_map", index.display()))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        for f in &files {
            if !f.exists() {
                bail!(
                    "{} lists shard {}, which is missing",
                    index.display(),
                    f.display()
                );
            }
        }
        return Ok(files);
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    bail!(
        "{} has config.json but no model.safetensors or model.safetensors.index.json",
        dir.display()
    )
}

/// Checks every tensor of a GGUF lies inside the file (truncated downloads).
fn check_gguf_extent(
    ct: &gguf_file::Content,
    file: &std::fs::File,
    path: &Path,
) -> anyhow::Result<()> {
    let size = file.metadata()?.len();
    for (name, info) in &ct.tensor_infos {
        // Checked arithmetic: the dimensions are the file's word, and a
        // product that wraps would pass as a small tensor.
        let elems = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .with_context(|| {
                format!("{}: tensor {name} has dimensions {:?} whose product overflows; the file is damaged", path.display(), info.shape.dims())
            })?;
        let block = info.ggml_dtype.block_size();
        if elems % block != 0 {
            bail!(
                "{}: tensor {name} has {elems} elements, not whole blocks of {block}; the file is damaged",
                path.display()
            );
        }
        let end = (elems / block)
            .checked_mul(info.ggml_dtype.type_size())
            .and_then(|b| u64::try_from(b).ok())
            .and_then(|b| b.checked_add(info.offset))
            .and_then(|b| b.checked_add(ct.tensor_data_offset))
            .with_context(|| {
                format!(
                    "{}: tensor {name} ends past any file size; the file is damaged",
                    path.display()
                )
            })?;
        if end > size {
            bail!("{} is truncated: tensor {name} ends at byte {end} but the file has {size}; download it again", path.display());
        }
    }
    Ok(())
}

/// A path as given, or a hub name resolved in the local Hugging Face cache.
fn resolve(spec: &str) -> anyhow::Result<PathBuf> {
    let p = PathBuf::from(spec);
    if p.exists() {
        if p.is_file() && p.extension().is_some_and(|e| e != "gguf") {
            bail!(
                "{} is neither a snapshot directory nor a .gguf file",
                p.display()
            );
        }
        return Ok(p);
    }
    // A name is looked up in the hub cache only when it reads as `org/name`
    // and not as a path: `./x`, `/x`, `~/x`, `x.gguf`, or a first component
    // that exists here (`target/nope`) is a mistyped path.
    let looks_like_path = spec.starts_with(['.', '/', '~'])
        || p.extension()
            .is_some_and(|e| e == "gguf" || e == "safetensors")
        || spec
            .split_once('/')
            .is_some_and(|(first, _)| Path::new(first).exists());
    let hub_name = spec
        .split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
    let Some((org, name)) = hub_name.filter(|_| !looks_like_path) else {
        bail!("{spec} does not exist (no such file or directory); give a snapshot directory, a .gguf file or a hub name like Qwen/Qwen3-0.6B");
    };
    let hub = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
        })
        .context("neither HF_HUB_CACHE, HF_HOME nor HOME is set")?;
    let repo = hub.join(format!("models--{org}--{name}"));
    let snapshots = repo.join("snapshots");
    let by_ref = std::fs::read_to_string(repo.join("refs/main"))
        .ok()
        .map(|r| snapshots.join(r.trim()));
    let found = by_ref
        .filter(|p| p.join("config.json").exists())
        .or_else(|| {
            std::fs::read_dir(&snapshots)
                .ok()?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.join("config.json").exists())
        });
    found.with_context(|| {
        format!(
            "{spec} is not in the local Hugging Face cache (looked in {}); warden never downloads: fetch it with `huggingface-cli download {spec}` on a machine with hub access, or pass a directory",
            snapshots.display()
        )
    })
}

/// Where `spec` (a directory, a `.gguf`, or a hub-cache name) is on disk.
pub fn resolve_model_path(spec: &str) -> anyhow::Result<PathBuf> {
    resolve(spec)
}

/// The tokenizer of the model at `path` without loading its weights:
/// `tokenizer.json` in (or beside) it, else a GGUF's own metadata.
pub fn tokenizer_for(path: &Path) -> anyhow::Result<Tokenizer> {
    let dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    if let Some(t) = dir.map(|d| d.join("tokenizer.json")).filter(|t| t.exists()) {
        return Tokenizer::from_file(&t)
            .map_err(|e| anyhow::anyhow!("cannot load tokenizer {}: {e}", t.display()));
    }
    if path.is_file() {
        let (_, content) = crate::guard::contain::read_gguf(path)?;
        return crate::model::checkpoint::gguf_tokenizer::from_gguf(&content)
            .with_context(|| format!("{}", path.display()));
    }
    bail!(
        "{} has no tokenizer.json; put the model's tokenizer.json beside its weights",
        path.display()
    )
}
