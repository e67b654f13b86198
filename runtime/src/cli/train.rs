//! `warden synth-data`.

use crate::train::synth_data::{synth_data, SynthDataOptions};
use clap::Args;
use std::path::PathBuf;

/// `warden synth-data`.
#[derive(Debug, Args)]
pub struct SynthDataArgs {
    /// The suite whose workspace, policy and cases are used (its cases are held out).
    #[arg(long)]
    suite: PathBuf,
    /// JSON Lines file to write, one conversation (as `warden prompt` reads them) per line.
    #[arg(long)]
    out: PathBuf,
    /// How many conversations.
    #[arg(long, default_value_t = 500)]
    n: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fraction of names and phrasings held out of training (besides the suite's own).
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// Fraction of conversations that need no tool.
    #[arg(long, default_value_t = 0.25)]
    direct: f64,
    /// Also hold out every name, topic and phrasing this suite's prompts
    /// use (repeat for several), e.g. a second suite the model is scored on.
    #[arg(long = "hold-out-suite")]
    hold_out_suites: Vec<PathBuf>,
    /// Keep the training workspace the tool results came from (the suite's
    /// workspace plus generated packages) in this new directory.
    #[arg(long)]
    tree: Option<PathBuf>,
    /// Also write this many copy drills (a user gives names, the assistant repeats them;
    /// no tool, no system prompt): a model trained from random weights learns to copy
    /// names from them first.
    #[arg(long, default_value_t = 0)]
    copy_drills: usize,
}

/// Runs `warden synth-data`.
pub fn synth_data_cmd(a: SynthDataArgs) -> anyhow::Result<()> {
    let report = synth_data(&SynthDataOptions {
        suite: a.suite,
        out: a.out.clone(),
        n: a.n,
        seed: a.seed,
        holdout: a.holdout,
        direct_fraction: a.direct,
        tree: a.tree,
        hold_out_suites: a.hold_out_suites,
        copy_drills: a.copy_drills,
    })?;
    let held: usize = report.held_out_names.values().map(Vec::len).sum();
    outln!(
        "wrote {} conversations ({} with no tool due) to {}",
        report.conversations,
        report.direct,
        a.out.display()
    );
    if report.copy_drills > 0 {
        outln!("and {} copy drills after them", report.copy_drills);
    }
    outln!(
        "held out: {held} names, {} phrasings, {} topics, {} suite cases; listed in {}",
        report.held_out_phrasings.len(),
        report.held_out_topics.len(),
        report.held_out_cases.len(),
        report.holdout_file.display()
    );
    Ok(())
}

/// `warden finetune`.
#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The base model (directory, .gguf or hub-cache name); a quantized base is dequantized to f32.
    #[arg(long)]
    model: String,
    /// JSON Lines conversations (as `warden synth-data` writes and `warden prompt` reads).
    #[arg(long)]
    data: PathBuf,
    /// Directory for the PEFT adapter (LoRA) or the Hugging Face model (--full), the
    /// checkpoint and training.json.
    #[arg(long)]
    out: PathBuf,
    /// Train a LoRA adapter of this rank (the default, rank 8).
    #[arg(long, conflicts_with = "full")]
    lora_rank: Option<usize>,
    /// LoRA's alpha (scale alpha / rank; default 2·rank).
    #[arg(long, conflicts_with = "full")]
    lora_alpha: Option<f64>,
    /// Projections to adapt (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; default all).
    #[arg(long, value_delimiter = ',', conflicts_with = "full")]
    targets: Vec<String>,
    /// Train every weight instead of an adapter.
    #[arg(long)]
    full: bool,
    /// Passes over the data.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Peak learning rate (default 2e-4 for LoRA, 1e-3 with --full).
    #[arg(long)]
    lr: Option<f64>,
    /// Fraction of the steps spent warming the learning rate up.
    #[arg(long, default_value_t = 0.05)]
    warmup: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Largest global gradient norm (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Tokens per optimizer step (whole conversations turns; at least one per step).
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
    /// Seed of the data order and the adapter's initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Longest example, in tokens.
    #[arg(long, default_value_t = 4096)]
    max_seq_len: usize,
    /// Train on the usable lines and list the others, instead of refusing the file.
    #[arg(long)]
    skip_bad: bool,
    /// Continue from OUT/checkpoint (same settings required).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Start over in an OUT that holds another run's files or an unfinished
    /// checkpoint (refused otherwise).
    #[arg(long)]
    overwrite: bool,
    /// Write a checkpoint every N steps (besides the end of each epoch).
    #[arg(long, default_value_t = 50)]
    checkpoint_every: usize,
    /// Stop after N steps of the plan: the model of that step is written, and a
    /// checkpoint to --resume from.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Accepted for compatibility: with --max-steps the model (or adapter) of the step
    /// reached is always written (training.json says finished: false).
    #[arg(long, requires = "max_steps")]
    write_partial: bool,
    /// cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Dtype of the weights written with --full: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Tokens the loss's softmax runs over: full (the whole vocabulary) or data (only the
    /// tokens the data file uses; cheaper steps and a tenth of the optimizer state for a small
    /// model over Qwen3's 151,936 tokens).
    #[arg(long, value_enum, default_value = "full")]
    output_vocab: crate::train::finetune::OutputVocab,
    /// Render the data with this chat template instead of the model's own
    /// (a Jinja file, or a built-in: chatml-tools); written into --out as
    /// chat_template.jinja.
    #[arg(long, value_name = "FILE|NAME")]
    chat_template: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `warden finetune`.
pub fn finetune_cmd(a: FinetuneArgs) -> anyhow::Result<()> {
    use crate::train::finetune::{finetune, FinetuneOptions, Mode};
    if let Some(n) = a.threads {
        // candle's CPU kernels size rayon's pool from this when it starts.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let mode = if a.full {
        Mode::Full
    } else {
        let rank = a.lora_rank.unwrap_or(8);
        let targets = crate::model::adapter::resolve_targets(&a.targets)?
            .into_iter()
            .map(|m| m.rsplit('.').next().unwrap_or(m).to_string())
            .collect();
        Mode::Lora {
            rank,
            alpha: a.lora_alpha.unwrap_or(2.0 * rank as f64),
            targets,
        }
    };
    let lr = a.lr.unwrap_or(if a.full { 1e-3 } else { 2e-4 });
    let report = finetune(&FinetuneOptions {
        model: a.model,
        data: a.data,
        out: a.out.clone(),
        mode,
        epochs: a.epochs,
        lr,
        warmup: a.warmup,
        weight_decay: a.weight_decay,
        clip: a.clip,
        batch_tokens: a.batch_tokens,
        seed: a.seed,
        max_seq_len: a.max_seq_len,
        skip_bad: a.skip_bad,
        resume: a.resume,
        overwrite: a.overwrite,
        checkpoint_every: a.checkpoint_every,
        max_steps: a.max_steps,
        write_partial: a.write_partial,
        device: crate::model::parse_device(&a.device)?,
        dtype: super::model::dtype(Some(&a.dtype))?.unwrap_or(candle_core::DType::F32),
        progress: !a.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        output_vocab: a.output_vocab,
        chat_template: a.chat_template,
    })?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    outln!(
        "{} steps of {} over {} examples from {} conversations ({} skipped); {} parameters trained",
        report.steps_done,
        report.total_steps,
        report.examples,
        report.conversations,
        report.skipped.len(),
        report.trainable_parameters
    );
    outln!(
        "{} tokens ({} target) in {:.1} s: {:.0} tokens/s; loss {:.4} first step, {} last epoch",
        report.tokens,
        report.target_tokens,
        report.seconds,
        report.tokens_per_s,
        report.losses.first().copied().unwrap_or(f64::NAN),
        report
            .final_loss
            .map_or("-".to_string(), |l| format!("{l:.4}"))
    );
    if report.finished {
        outln!("wrote {}", a.out.display());
    } else {
        if !report.files.is_empty() {
            outln!(
                "wrote the model of step {} to {}",
                report.steps_done,
                a.out.display()
            );
        }
        outln!(
            "stopped at step {} by --max-steps; continue with the same command and --resume",
            report.steps_done
        );
    }
    Ok(())
}
