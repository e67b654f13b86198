//! `warden finetune`: LoRA or whole-model training of a Qwen3 checkpoint on
//! conversations, with candle's autograd.
//!
//! The run is a fixed plan: examples shuffled per epoch from the seed and
//! packed into steps of about `batch_tokens` tokens. A checkpoint holds the
//! parameters, the optimizer's moments and the step reached, so `--resume`
//! continues the same plan and ends where an uninterrupted run would.

use super::examples::{read_dataset, BadLine, Dataset};
use super::net::{TrainNet, Trainable};
use super::optim::{AdamW, AdamWConfig};
use crate::chat::ChatTemplate;
use crate::model::adapter::write::write_adapter;
use crate::model::adapter::AdapterFormat;
use crate::model::checkpoint::tokenizer_files::{write_hf_dir, TokenizerFiles};
use crate::model::{tokenizer_for, Checkpoint};
use anyhow::{bail, Context as _};
use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mode {
    /// LoRA pairs on `targets` of every layer.
    Lora {
        /// Rank.
        rank: usize,
        /// `lora_alpha` (scale `alpha / rank`).
        alpha: f64,
        /// Projections (entries of `adapter::MODULES`).
        targets: Vec<String>,
    },
    /// Every weight.
    Full,
}

/// Which tokens the loss's softmax runs over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OutputVocab {
    /// The whole vocabulary.
    #[default]
    Full,
    /// Only the tokens that occur in the data file (prompts and targets):
    /// sampled-softmax training. With Qwen3's 151,936 tokens the LM head and
    /// the embedding's optimizer state are most of a small model's step and
    /// memory; data of a few thousand distinct tokens makes them that much
    /// smaller. Tokens the data never uses keep the rows they had.
    Data,
}

/// Everything a run depends on; a checkpoint is resumed only by a run with
/// the same settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    /// The base model as given.
    pub model: String,
    /// sha256 of the data file.
    pub data_sha256: String,
    /// What is trained.
    pub mode: Mode,
    /// Passes over the data.
    pub epochs: usize,
    /// Tokens per optimizer step (examples are whole; at least one a step).
    pub batch_tokens: usize,
    /// Seed of the order and of LoRA's `A`.
    pub seed: u64,
    /// Longest example.
    pub max_seq_len: usize,
    /// Optimizer and schedule.
    pub optimizer: AdamWConfig,
    /// Tokens the loss's softmax runs over.
    #[serde(default)]
    pub output_vocab: OutputVocab,
}

/// Options of [`finetune`].
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// The base (directory, `.gguf` or hub-cache name).
    pub model: String,
    /// JSON Lines conversations.
    pub data: PathBuf,
    /// Where the adapter (LoRA) or model (`Full`) is written.
    pub out: PathBuf,
    /// What is trained.
    pub mode: Mode,
    /// Passes over the data.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Fraction of the steps spent warming up.
    pub warmup: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Largest gradient norm.
    pub clip: f64,
    /// Tokens per step.
    pub batch_tokens: usize,
    /// Seed.
    pub seed: u64,
    /// Longest example in tokens.
    pub max_seq_len: usize,
    /// Skip unusable lines (listed) instead of refusing the file.
    pub skip_bad: bool,
    /// Continue from `<out>/checkpoint`.
    pub resume: bool,
    /// Start over in an `--out` that holds another run's files or an
    /// unfinished checkpoint, replacing them.
    pub overwrite: bool,
    /// Write a checkpoint every this many steps (0: only at the end of each epoch).
    pub checkpoint_every: usize,
    /// Stop after this many steps of the plan (a checkpoint is written).
    pub max_steps: Option<usize>,
    /// Kept for compatibility: the model (or adapter) of the step reached
    /// is always written now, as `max_steps` asks for it. When `max_steps`
    /// stops the run early, also write the model (or
    /// adapter) trained so far, as the finished run would.
    pub write_partial: bool,
    /// Where to train.
    pub device: Device,
    /// Dtype of a `Full` model's weights.
    pub dtype: DType,
    /// Draw a progress bar.
    pub progress: bool,
    /// Tokens the loss's softmax runs over.
    pub output_vocab: OutputVocab,
    /// The chat template the data is rendered with, instead of the model's
    /// own (a file, or a built-in's name); it is written into the output
    /// as `chat_template.jinja`, so the fine-tune runs in the format it
    /// learned.
    pub chat_template: Option<String>,
}

/// What a run did; also written as `<out>/training.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneReport {
    /// The settings.
    pub settings: RunSettings,
    /// Conversations used.
    pub conversations: usize,
    /// Examples (assistant messages) used.
    pub examples: usize,
    /// Lines skipped, with why.
    pub skipped: Vec<BadLine>,
    /// Numbers trained.
    pub trainable_parameters: usize,
    /// Steps in the plan.
    pub total_steps: usize,
    /// Steps done (all of them unless `--max-steps` stopped early).
    pub steps_done: usize,
    /// Whether the plan is finished (the output is written only then, or
    /// also at an early stop with `--write-partial`).
    pub finished: bool,
    /// Tokens run through the model (prompt and target), over all steps.
    pub tokens: usize,
    /// Target tokens the loss was taken on.
    pub target_tokens: usize,
    /// Seconds spent training (over resumed runs too).
    pub seconds: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// Mean loss per target token of each step.
    pub losses: Vec<f64>,
    /// Mean loss of the last epoch's steps.
    pub final_loss: Option<f64>,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Tokens the loss's softmax ran over (`--output-vocab data`; absent
    /// for the whole vocabulary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    settings: RunSettings,
    step: usize,
    tokens: usize,
    target_tokens: usize,
    seconds: f64,
    losses: Vec<f64>,
}

/// The steps of the whole run: `(epoch, indices into the examples)` per step.
///
/// Examples are shuffled per epoch from the seed, then packed into steps of
/// about `batch_tokens` in that order, each step taking examples of one
/// `group` only (examples of a group share their system prompt and tools,
/// which a step runs through the blocks once: a step that mixed two
/// policies' conversations would run each one's in full). With one group
/// this is plain packing in shuffled order.
pub fn plan(
    lens: &[usize],
    groups: &[u64],
    epochs: usize,
    batch_tokens: usize,
    seed: u64,
) -> Vec<(usize, Vec<usize>)> {
    let mut steps = Vec::new();
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..lens.len()).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        order.shuffle(&mut rng);
        // Open batches by group, in order of first appearance.
        let mut open: Vec<(u64, Vec<usize>, usize)> = Vec::new();
        for i in order {
            let g = groups.get(i).copied().unwrap_or(0);
            let at = match open.iter().position(|(k, _, _)| *k == g) {
                Some(at) => at,
                None => {
                    open.push((g, Vec::new(), 0));
                    open.len() - 1
                }
            };
            let (_, cur, tokens) = &mut open[at];
            cur.push(i);
            *tokens += lens[i];
            if *tokens >= batch_tokens {
                steps.push((epoch, std::mem::take(cur)));
                *tokens = 0;
            }
        }
        for (_, cur, _) in open {
            if !cur.is_empty() {
                steps.push((epoch, cur));
            }
        }
    }
    steps
}

/// A key per example: equal for examples that open with the same system
/// message (`system_open`, e.g. `<|im_start|>system`, then the same text
/// through the first `end` token: the system prompt with the tools), and one
/// shared key for every example that opens without one (their first
/// message is a user's, which shares nothing worth grouping by).
pub fn prefix_groups<'a>(
    examples: impl IntoIterator<Item = &'a [u32]>,
    system_open: &[u32],
    end: Option<u32>,
) -> Vec<u64> {
    use std::hash::{Hash, Hasher};
    examples
        .into_iter()
        .map(|ids| {
            let cut = if system_open.is_empty() || !ids.starts_with(system_open) {
                0
            } else {
                end.and_then(|e| ids.iter().position(|&t| t == e))
                    .map_or(ids.len(), |p| p + 1)
            };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            ids[..cut].hash(&mut h);
            h.finish()
        })
        .collect()
}

/// Loads the data, refusing it (with every bad line) unless `skip_bad`.
fn load_data(
    opts: &FinetuneOptions,
    template: &ChatTemplate,
    tok: &tokenizers::Tokenizer,
) -> anyhow::Result<Dataset> {
    let data = read_dataset(&opts.data, template, tok, opts.max_seq_len)?;
    if !data.bad.is_empty() && !opts.skip_bad {
        let list: Vec<String> = data
            .bad
            .iter()
            .take(20)
            .map(|b| format!("  line {}: {}", b.line, b.reason))
            .collect();
        bail!(
            "{} has {} unusable line(s):\n{}{}\nfix them, or pass --skip-bad to train on the rest",
            opts.data.display(),
            data.bad.len(),
            list.join("\n"),
            if data.bad.len() > 20 { "\n  …" } else { "" }
        );
    }
    if data.examples.is_empty() {
        bail!("{} has no usable conversation", opts.data.display());
    }
    Ok(data)
}

/// Keeps freed memory in the process (glibc): a training step allocates and
/// frees the same large buffers (logits over the vocabulary, gradients of
/// the embedding) every time, and handing them back to the kernel and
/// faulting them in again costs a third of a small model's step.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the
    // training allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 1 << 30);
    }
}

/// Runs the training.
pub fn finetune(opts: &FinetuneOptions) -> anyhow::Result<FinetuneReport> {
    keep_freed_memory();
    if opts.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        bail!("--lr must be a positive number");
    }
    let mut ckpt = Checkpoint::open(&opts.model, &Device::Cpu)?;
    if ckpt.path.canonicalize().ok() == opts.out.canonicalize().ok() {
        bail!(
            "--out {} is the base model itself; write the trained output elsewhere",
            opts.out.display()
        );
    }
    let cfg = ckpt.config.clone();
    let template = ChatTemplate::for_run(&ckpt.path, opts.chat_template.as_deref())?;
    let tok = tokenizer_for(&ckpt.path)?;
    let data = load_data(opts, &template, &tok)?;
    for b in &data.bad {
        eprintln!("skipped line {}: {}", b.line, b.reason);
    }
    let lens: Vec<usize> = data.examples.iter().map(|e| e.ids.len()).collect();
    let system_open = crate::model::checkpoint::tokenize::encode(&tok, "<|im_start|>system")
        .with_context(|| format!("the tokenizer of {}", ckpt.path.display()))?;
    let groups = prefix_groups(
        data.examples.iter().map(|e| e.ids.as_slice()),
        &system_open,
        tok.token_to_id("<|im_end|>"),
    );
    let steps = plan(
        &lens,
        &groups,
        opts.epochs,
        opts.batch_tokens.max(1),
        opts.seed,
    );
    let total = steps.len();
    let settings = RunSettings {
        model: opts.model.clone(),
        data_sha256: crate::audit::sha256_file(&opts.data)?,
        mode: opts.mode.clone(),
        epochs: opts.epochs,
        batch_tokens: opts.batch_tokens,
        seed: opts.seed,
        max_seq_len: opts.max_seq_len,
        optimizer: AdamWConfig {
            lr: opts.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: opts.weight_decay,
            clip: opts.clip,
            warmup: ((total as f64 * opts.warmup).round() as usize).clamp(1, total.max(1)),
            total,
        },
        output_vocab: opts.output_vocab,
    };
    if !opts.resume && !opts.overwrite {
        check_out_dir(&opts.out, &settings)?;
    }
    let what = match &opts.mode {
        Mode::Full => Trainable::Full,
        Mode::Lora {
            rank,
            alpha,
            targets,
        } => Trainable::Lora {
            rank: *rank,
            alpha: *alpha,
            targets: crate::model::adapter::resolve_targets(targets)?,
            seed: opts.seed,
        },
    };
    let longest = lens.iter().copied().max().unwrap_or(1);
    let mut net = TrainNet::new(&cfg, ckpt.dense_tensors()?, &what, longest, &opts.device)?;
    let mut output_tokens = None;
    if opts.output_vocab == OutputVocab::Data {
        let mut used = vec![false; cfg.vocab_size];
        for e in &data.examples {
            for &t in &e.ids {
                if let Some(u) = used.get_mut(t as usize) {
                    *u = true;
                }
            }
        }
        let tokens: Vec<u32> = (0..cfg.vocab_size as u32)
            .filter(|&t| used[t as usize])
            .collect();
        eprintln!(
            "the loss's softmax runs over the {} tokens the data uses (of {})",
            tokens.len(),
            cfg.vocab_size
        );
        net.restrict_output(&tokens)?;
        output_tokens = Some(tokens.len());
    }
    let mut opt = AdamW::new(net.trainable(), settings.optimizer)?;
    let ckpt_dir = opts.out.join("checkpoint");
    let mut state = CheckpointState {
        settings: settings.clone(),
        step: 0,
        tokens: 0,
        target_tokens: 0,
        seconds: 0.0,
        losses: Vec::new(),
    };
    if opts.resume {
        state = read_checkpoint(&ckpt_dir, &settings, &mut opt)?;
        eprintln!(
            "resuming at step {} of {total} from {}",
            state.step,
            ckpt_dir.display()
        );
    }
    let stop = opts.max_steps.map_or(total, |m| m.min(total));
    // Sized to the steps this run will take (`--max-steps` included).
    let bar = progress_bar(opts.progress, stop, state.step);
    let started = Instant::now();
    let seconds_before = state.seconds;
    let mut tokens_this_run = 0usize;
    while state.step < stop {
        let (epoch, batch) = &steps[state.step];
        let batch_targets: usize = batch.iter().map(|&i| data.examples[i].target().len()).sum();
        let examples: Vec<(&[u32], usize)> = batch
            .iter()
            .map(|&i| (data.examples[i].ids.as_slice(), data.examples[i].prompt_len))
            .collect();
        // Block by block (activation checkpointing): a 30-layer model's
        // whole graph of a 2,048-token step is 16–24 GB; one block's is not.
        let (loss, grads) = net.loss_and_grads(&examples, batch_targets as f64)?;
        let step_tokens: usize = examples.iter().map(|(ids, _)| ids.len()).sum();
        tokens_this_run += step_tokens;
        state.tokens += step_tokens;
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at step {}; lower --lr (now {})",
                state.step + 1,
                opts.lr
            );
        }
        let info = opt.step(&grads)?;
        state.target_tokens += batch_targets;
        state.losses.push(loss);
        state.step += 1;
        state.seconds = seconds_before + started.elapsed().as_secs_f64();
        let rate = tokens_this_run as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_position(state.step as u64);
        bar.set_message(format!(
            "loss {loss:.3} · lr {:.2e} · |g| {:.2} · {rate:.0} tok/s",
            info.lr, info.grad_norm
        ));
        let epoch_end = steps.get(state.step).is_none_or(|(e, _)| e != epoch);
        if epoch_end {
            let from = steps.iter().position(|(e, _)| e == epoch).unwrap_or(0);
            let l = &state.losses[from..state.step];
            let line = format!(
                "epoch {} of {}: mean loss {:.4} over {} steps, {rate:.0} tok/s",
                epoch + 1,
                opts.epochs,
                l.iter().sum::<f64>() / l.len() as f64,
                l.len()
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
        let every = opts.checkpoint_every > 0 && state.step % opts.checkpoint_every == 0;
        if (every || epoch_end || state.step == stop) && state.step < total {
            write_checkpoint(&ckpt_dir, &state, &opt)?;
            // Without a bar (a log file, --json), a line per checkpoint.
            if bar.is_hidden() {
                eprintln!(
                    "step {} of {stop}: loss {loss:.4}, {rate:.0} tok/s, {:.0} s; checkpoint written",
                    state.step, state.seconds
                );
            }
        }
    }
    bar.finish_and_clear();
    let finished = state.step == total;
    // Finished, or stopped where --max-steps asked: either way the model of
    // the step reached is what the user asked for.
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let files = match &opts.mode {
        Mode::Lora { alpha, .. } => write_adapter(
            &opts.out,
            AdapterFormat::Peft,
            &net.lora_weights()?,
            Some(*alpha),
            &opts.model,
            cfg.num_hidden_layers,
        )?,
        Mode::Full => write_hf_dir(
            &opts.out,
            &cfg,
            &net.dense_tensors()?,
            opts.dtype,
            &TokenizerFiles::for_model(&ckpt.path)?,
        )?,
    };
    let mut files = files;
    if opts.chat_template.is_some() {
        let t = opts.out.join(crate::chat::TEMPLATE_FILE);
        crate::outputs::write(&t, template.source().as_bytes())?;
        files.push(t);
    }
    let last_epoch = steps[state.step.saturating_sub(1)].0;
    let from = steps
        .iter()
        .position(|(e, _)| *e == last_epoch)
        .unwrap_or(0);
    let tail = &state.losses[from.min(state.losses.len())..];
    let report = FinetuneReport {
        settings,
        conversations: data.conversations,
        examples: data.examples.len(),
        skipped: data.bad.clone(),
        trainable_parameters: net.trainable_count(),
        total_steps: total,
        steps_done: state.step,
        finished,
        tokens: state.tokens,
        target_tokens: state.target_tokens,
        seconds: state.seconds,
        tokens_per_s: state.tokens as f64 / state.seconds.max(1e-9),
        final_loss: (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64),
        losses: state.losses.clone(),
        files,
        output_tokens,
    };
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let path = opts.out.join("training.json");
    crate::outputs::write(&path, &serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

fn progress_bar(show: bool, total: usize, at: usize) -> indicatif::ProgressBar {
    let pb = crate::progress::bar(
        show,
        total as u64,
        "training [{bar:30}] {pos}/{len} steps · {msg} · {elapsed_precise} (ETA {eta})",
    );
    pb.set_position(at as u64);
    pb.reset_eta();
    pb
}

/// Refuses an `--out` that already holds files (without `--resume` or
/// `--overwrite`): an unfinished run's checkpoint (starting over would
/// throw its progress away), another run's output, or anything else. Only
/// the finished output of a run with the same settings may be written
/// again (the same command run twice).
fn check_out_dir(out: &Path, settings: &RunSettings) -> anyhow::Result<()> {
    let mut entries = match std::fs::read_dir(out) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("--out {}: {e}", out.display()),
    };
    if entries.next().is_none() {
        return Ok(());
    }
    // The settings of the run whose training.json is there, and whether it
    // finished (a regular file only: never read through a planted link).
    let report = || -> Option<(RunSettings, bool)> {
        let p = out.join("training.json");
        if !std::fs::symlink_metadata(&p).ok()?.is_file() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
        let s = serde_json::from_value(v.get("settings")?.clone()).ok()?;
        Some((s, v["finished"].as_bool().unwrap_or(false)))
    };
    let report = report();
    // The same command, finished: writing it again gives the same files
    // (its epochs' checkpoints may still be there).
    if report.as_ref() == Some(&(settings.clone(), true)) {
        return Ok(());
    }
    if std::fs::symlink_metadata(out.join("checkpoint")).is_ok() {
        bail!(
            "--out {} holds the checkpoint of an unfinished run; pass --resume to continue it, or --overwrite to start over",
            out.display()
        );
    }
    if report.map(|(s, _)| s).as_ref() != Some(settings) {
        bail!(
            "--out {} already holds files that this run did not write (no training.json with the same settings); choose a new or empty directory, or pass --overwrite",
            out.display()
        );
    }
    Ok(())
}

fn write_checkpoint(dir: &Path, state: &CheckpointState, opt: &AdamW) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Written beside, then renamed: a run stopped mid-write leaves the
    // previous checkpoint whole.
    let tensors: HashMap<String, Tensor> = opt
        .state()?
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(&Device::Cpu)?)))
        .collect::<candle_core::Result<_>>()?;
    // The moments first: a state.json names a step whose moments exist.
    crate::outputs::write_with(&dir.join("optimizer.safetensors"), |tmp| {
        Ok(candle_core::safetensors::save(&tensors, tmp)?)
    })?;
    crate::outputs::write(&dir.join("state.json"), &serde_json::to_vec_pretty(state)?)?;
    Ok(())
}

fn read_checkpoint(
    dir: &Path,
    settings: &RunSettings,
    opt: &mut AdamW,
) -> anyhow::Result<CheckpointState> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "--resume: cannot read {} (no checkpoint yet? run without --resume)",
            path.display()
        )
    })?;
    let state: CheckpointState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a warden training checkpoint", path.display()))?;
    if state.settings != *settings {
        let a = serde_json::to_value(&state.settings)?;
        let b = serde_json::to_value(settings)?;
        let differ: Vec<String> = a
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| b.get(k.as_str()) != Some(v))
            .map(|(k, v)| format!("{k} (checkpoint {v}, now {})", b[k.as_str()]))
            .collect();
        bail!(
            "--resume: the checkpoint in {} was written by a run with other settings: {}; rerun with the same settings, or without --resume to start over",
            dir.display(),
            differ.join(", ")
        );
    }
    let tensors = candle_core::safetensors::load(dir.join("optimizer.safetensors"), &Device::Cpu)
        .with_context(|| {
        format!(
            "cannot read {}",
            dir.join("optimizer.safetensors").display()
        )
    })?;
    opt.restore(&tensors, state.step)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_take_one_group_each_and_every_example_once_per_epoch() {
        let lens: Vec<usize> = (0..40).map(|i| 100 + i * 7).collect();
        let groups: Vec<u64> = (0..40).map(|i| (i % 3 == 0) as u64).collect();
        let steps = plan(&lens, &groups, 2, 1000, 7);
        for epoch in 0..2 {
            let mut seen: Vec<usize> = steps
                .iter()
                .filter(|(e, _)| *e == epoch)
                .flat_map(|(_, s)| s.clone())
                .collect();
            seen.sort();
            assert_eq!(seen, (0..40).collect::<Vec<_>>());
        }
        for (_, s) in &steps {
            assert!(s.iter().all(|&i| groups[i] == groups[s[0]]), "{s:?}");
        }
        // One group: plain packing in the shuffled order, as before groups.
        let one = plan(&lens, &[0; 40], 1, 1000, 7);
        let flat: Vec<usize> = one.iter().flat_map(|(_, s)| s.clone()).collect();
        let mut order: Vec<usize> = (0..40).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(7));
        assert_eq!(flat, order);
        assert!(one[..one.len() - 1].iter().all(|(_, s)| s
            .iter()
            .map(|&i| lens[i])
            .sum::<usize>()
            >= 1000));
        // Keys: with a system message (opening 1), equal through the first
        // end token, whatever follows; without one (opening with 4, a
        // user's message), one key for all, however the first messages differ.
        let ids = [
            vec![1, 2, 9, 5],
            vec![1, 2, 9, 6],
            vec![1, 3, 9, 5],
            vec![4, 2, 9, 5],
            vec![4, 3, 9, 6],
        ];
        let k = prefix_groups(ids.iter().map(Vec::as_slice), &[1], Some(9));
        assert_eq!(k[0], k[1]);
        assert_ne!(k[0], k[2]);
        assert_eq!(k[3], k[4]);
        assert_ne!(k[3], k[0]);
        assert_ne!(k[3], k[2]);
    }
}
