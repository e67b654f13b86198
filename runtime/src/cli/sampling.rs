//! The sampling and speculative-decoding flags, one definition for every
//! command that generates (`generate`, `run`, `chat`, `bench`, `eval`).

use crate::model::{SamplingParams, Speculative};
use clap::Args;

/// `--speculative` and `--draft-model`.
#[derive(Debug, Clone, Args)]
pub struct SpeculativeArgs {
    /// Speculative decoding: `lookup` drafts tokens from the context (prompt
    /// lookup), `draft` from `--draft-model`; drafts are verified in one
    /// forward pass, and output is the same (greedy) or identically
    /// distributed (sampling); `bench` decodes both ways, interleaved. `off`
    /// by default.
    #[arg(long, default_value = "off")]
    pub speculative: String,
    /// A draft model for `--speculative draft` (the same tokenizer, smaller:
    /// e.g. Qwen3-0.6B for a larger Qwen3); given alone it implies draft.
    #[arg(long)]
    pub draft_model: Option<String>,
}

impl SpeculativeArgs {
    /// The mode the flags ask for.
    pub fn mode(&self) -> anyhow::Result<Speculative> {
        Speculative::from_flags(&self.speculative, self.draft_model.as_deref())
    }
}

/// How tokens are chosen.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Temperature (0: greedy). Default: 0 for `generate`; 0.6 for `run`
    /// and `chat`, as Qwen3 recommends when thinking.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Top-k (0: off). Default: 0 for `generate`, 20 for `run` and `chat`.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Top-p (1: off). Default: 1 for `generate`, 0.95 for `run` and `chat`.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Min-p (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Presence penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub speculative: SpeculativeArgs,
}

/// The defaults of temperature, top-k and top-p for a command.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Temperature.
    pub temperature: f32,
    /// Top-k.
    pub top_k: usize,
    /// Top-p.
    pub top_p: f32,
}

/// `generate`: greedy unless asked otherwise.
pub const GREEDY: Defaults = Defaults {
    temperature: 0.0,
    top_k: 0,
    top_p: 1.0,
};

/// `run` and `chat`: Qwen3's recommended sampling.
pub const QWEN3: Defaults = Defaults {
    temperature: 0.6,
    top_k: 20,
    top_p: 0.95,
};

impl SamplingArgs {
    /// The parameters, with `defaults` where a flag was not given.
    pub fn params(&self, defaults: Defaults) -> anyhow::Result<SamplingParams> {
        Ok(SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.unwrap_or(defaults.top_k),
            top_p: self.top_p.unwrap_or(defaults.top_p),
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            speculative: self.speculative.mode()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        sampling: SamplingArgs,
    }

    fn params(args: &[&str], d: Defaults) -> SamplingParams {
        let argv = std::iter::once("warden").chain(args.iter().copied());
        Cmd::try_parse_from(argv)
            .unwrap()
            .sampling
            .params(d)
            .unwrap()
    }

    #[test]
    fn each_command_keeps_its_defaults_and_a_flag_overrides_them() {
        let g = params(&[], GREEDY);
        assert_eq!((g.temperature, g.top_k, g.top_p), (0.0, 0, 1.0));
        let s = params(&[], QWEN3);
        assert_eq!((s.temperature, s.top_k, s.top_p), (0.6, 20, 0.95));
        for d in [GREEDY, QWEN3] {
            let p = params(
                &["--temperature", "0.3", "--top-k", "5", "--min-p", "0.1"],
                d,
            );
            assert_eq!((p.temperature, p.top_k, p.min_p), (0.3, 5, 0.1));
        }
        let p = params(&["--draft-model", "small.gguf"], GREEDY);
        assert_eq!(p.speculative, Speculative::Draft);
    }
}
