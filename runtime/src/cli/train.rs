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
    })?;
    let held: usize = report.held_out_names.values().map(Vec::len).sum();
    println!(
        "wrote {} conversations ({} with no tool due) to {}",
        report.conversations,
        report.direct,
        a.out.display()
    );
    println!(
        "held out: {held} names, {} phrasings, {} suite cases; listed in {}",
        report.held_out_phrasings.len(),
        report.held_out_cases.len(),
        report.holdout_file.display()
    );
    Ok(())
}
