//! `warden fuse` and `warden quantize`.

use super::model::dtype;
use crate::model::checkpoint::gguf_write::{self, Written};
use crate::model::checkpoint::tokenizer_files::TokenizerFiles;
use crate::model::convert::fuse::{self, FuseOptions};
use crate::model::convert::quantize::{self, QuantFormat};
use crate::model::convert::survival::Survival;
use crate::model::Checkpoint;
use candle_core::{DType, Device};
use clap::Args;
use std::path::PathBuf;

/// `warden fuse`.
#[derive(Debug, Args)]
pub struct FuseArgs {
    /// The base model (directory, .gguf or hub-cache name); a quantized base
    /// is dequantized first.
    #[arg(long)]
    model: String,
    /// Adapter directory (PEFT or MLX-LM); repeat to merge several in order.
    #[arg(long, required = true)]
    adapter: Vec<PathBuf>,
    /// Directory to write the fused Hugging Face model to.
    #[arg(long)]
    out: PathBuf,
    /// Dtype of the written weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Also quantize the fused model (q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0,
    /// mlx-8, mlx-6, mlx-5, mlx-4) and report how much of each delta survives.
    #[arg(long)]
    quantize: Option<String>,
    /// MLX group size (32, 64, 128; default 64).
    #[arg(long)]
    group_size: Option<usize>,
    /// Where the quantized model goes (default: OUT/model-FORMAT.gguf, or OUT/mlx-N/).
    #[arg(long, requires = "quantize")]
    quantized_out: Option<PathBuf>,
    /// GGUF only: the token embedding (the output layer too when tied) in
    /// this type instead (q8_0, q6_k, q5_k, q4_k, q3_k, q2_k, …), as
    /// `warden quantize --embedding-type`.
    #[arg(long, requires = "quantize")]
    embedding_type: Option<String>,
    /// Print the report (and the survival table) as JSON.
    #[arg(long)]
    json: bool,
}

/// `warden quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The model to quantize (directory, .gguf or hub-cache name).
    #[arg(long)]
    model: String,
    /// A .gguf file for GGUF formats; a directory for mlx-N.
    #[arg(long)]
    out: PathBuf,
    /// q8_0, q6_k, q5_k, q5_1, q5_0, q4_k, q4_1, q4_0, mlx-8, mlx-6, mlx-5 or mlx-4.
    #[arg(long)]
    to: String,
    /// MLX group size: 32, 64 or 128 (default 64).
    #[arg(long)]
    group_size: Option<usize>,
    /// GGUF only: the token embedding (the output layer too when tied) in
    /// this type instead (q8_0, q6_k, q5_k, q4_k, q3_k, q2_k, …), as
    /// llama.cpp's --token-embedding-type.
    #[arg(long)]
    embedding_type: Option<String>,
    /// Print what was written as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `warden fuse`.
pub fn fuse(a: FuseArgs) -> anyhow::Result<()> {
    let dtype = dtype(Some(&a.dtype))?.unwrap_or(DType::F32);
    let format = a
        .quantize
        .as_deref()
        .map(|f| QuantFormat::parse(f, a.group_size))
        .transpose()?;
    let opts = FuseOptions {
        model: a.model,
        adapters: a.adapter,
        out: a.out,
        dtype,
        quantize: format,
        quantized_out: a.quantized_out,
        embedding_type: a
            .embedding_type
            .as_deref()
            .map(crate::model::weights::ggml_type::parse_gguf_type)
            .transpose()?,
    };
    let report = fuse::fuse(&opts)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if let Some(q) = &report.dequantized_base {
        outln!("the base is stored {q}: dequantized it to f32 before merging");
    }
    outln!(
        "merged {} adapter(s) into {} matrices in f32; wrote {} ({:?}):",
        opts.adapters.len(),
        report.merged,
        opts.out.display(),
        dtype
    );
    for f in &report.files {
        outln!("  {}", f.display());
    }
    if let (Some(w), Some(s)) = (&report.quantized, &report.survival) {
        print_survival(s);
        outln!("wrote the {} model:", s.format);
        print_written(w, &s.format);
    }
    Ok(())
}

/// The files written, and the matrices that stayed wider than `format`.
fn print_written(w: &Written, format: &str) {
    for f in &w.files {
        outln!("  {}", f.display());
    }
    if !w.fallbacks.is_empty() {
        // A model whose width does not fit the blocks falls back on every
        // layer: name a few, count the rest (`--json` lists them all).
        const NAMED: usize = 6;
        let more = w.fallbacks.len().saturating_sub(NAMED);
        outln!(
            "  ({} of {} matrices kept wider, their rows do not fit the format's blocks: {}{})",
            w.fallbacks.len(),
            w.matrices,
            w.fallbacks[..w.fallbacks.len().min(NAMED)].join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            }
        );
    }
    if w.mostly_wider() {
        outln!(
            "note: most of this file is not {format}: {} of {} matrices were written wider (see above), so it behaves like the wider type, whatever its name says",
            w.fallbacks.len(),
            w.matrices
        );
    }
}

fn print_survival(s: &Survival) {
    outln!("\nhow much of the adapter's delta survives {}: ‖Q(W+ΔW) − Q(W)‖ / ‖ΔW‖ and cos(Q(W+ΔW) − Q(W), ΔW)", s.format);
    outln!(
        "  {:<44} {:>10} {:>8} {:>8}",
        "matrix",
        "‖ΔW‖",
        "ratio",
        "cosine"
    );
    for r in s.matrices.iter().chain(std::iter::once(&s.total)) {
        let wider = if r.written_as.is_empty() || r.written_as == s.format {
            String::new()
        } else {
            format!(" (written as {})", r.written_as)
        };
        outln!(
            "  {:<44} {:>10.4} {:>8.3} {:>8.3}{wider}",
            r.tensor,
            r.delta_norm,
            r.ratio,
            r.cosine
        );
    }
    if s.written_wider > 0 {
        outln!(
            "\n{} of {} adapted matrices are written wider than {} (their rows do not fit its blocks) and are measured as written",
            s.written_wider,
            s.matrices.len(),
            s.format
        );
    }
    if s.matrices.is_empty() || s.total.delta_norm == 0.0 {
        outln!("\nthe adapters change no matrix: there is no delta to lose");
    } else if s.lost {
        outln!(
            "\nMost of the adapter's delta is lost in {}: its rounding step is larger than the change the fine-tune made, so the quantized model will behave much like the base. Serve the adapter unfused instead (--model BASE --adapter DIR), or use a higher-bit format.",
            s.format
        );
    } else {
        outln!(
            "\nthe delta survives {} (total cosine {:.3})",
            s.format,
            s.total.cosine
        );
    }
}

/// Runs `warden quantize`.
pub fn quantize(a: QuantizeArgs) -> anyhow::Result<()> {
    let format = QuantFormat::parse(&a.to, a.group_size)?;
    if matches!(format, QuantFormat::Gguf(_)) && a.out.is_dir() {
        anyhow::bail!(
            "--out {} is a directory; a GGUF format writes one file (e.g. {}/model-{}.gguf)",
            a.out.display(),
            a.out.display(),
            format.name()
        );
    }
    let mut ckpt = Checkpoint::open(&a.model, &Device::Cpu)?;
    let from = ckpt.weights.quantized_format();
    let tok = TokenizerFiles::for_model(&ckpt.path)?;
    let cfg = ckpt.config.clone();
    let tensors = ckpt.dense_tensors()?;
    let written = match (format, &a.embedding_type) {
        (QuantFormat::Gguf(t), Some(e)) => {
            let e = crate::model::weights::ggml_type::parse_gguf_type(e)?;
            gguf_write::write_gguf_with(&a.out, &cfg, &tensors, t, Some(e), &tok)?
        }
        (QuantFormat::Mlx(_), Some(_)) => {
            anyhow::bail!("--embedding-type applies to GGUF formats only")
        }
        _ => quantize::write_quantized(format, &cfg, &tensors, &a.out, &tok)?,
    };
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "format": format.name(), "dequantized_from": from, "files": written.files, "fallbacks": written.fallbacks,
                "matrices": written.matrices, "mostly_wider": written.mostly_wider(),
            }))?
        );
        return Ok(());
    }
    if let Some(q) = from {
        outln!("the model is stored {q}: dequantized it to f32 first (quantizing twice loses more than once)");
    }
    outln!("wrote {} ({}):", a.out.display(), format.name());
    print_written(&written, &format.name());
    Ok(())
}
