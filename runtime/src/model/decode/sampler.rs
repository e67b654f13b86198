//! Choosing the next token from logits.

use rand::{Rng, SeedableRng};

/// How to sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches p (1.0: all).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely (0: none).
    pub min_p: f32,
    /// Divides positive / multiplies negative logits of tokens already in
    /// the context (1.0: off).
    pub repetition_penalty: f32,
    /// Subtracted from logits of tokens already generated (0: off).
    pub presence_penalty: f32,
    /// Seed of the random choice.
    pub seed: u64,
    /// Speculative decoding (off unless asked for; recorded only when on).
    #[serde(skip_serializing_if = "Speculative::is_off")]
    pub speculative: Speculative,
}

/// How tokens are drafted ahead and verified in one forward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speculative {
    /// Plain decoding: one forward pass a token.
    #[default]
    Off,
    /// Prompt lookup: the tokens that followed the last earlier occurrence
    /// of the context's final n-gram are the draft (tool results and code
    /// are quoted back often).
    Lookup,
    /// A draft model (`--draft-model`, same tokenizer, smaller) proposes
    /// tokens greedily.
    Draft,
}

impl Speculative {
    /// Whether speculation is off.
    pub fn is_off(&self) -> bool {
        *self == Speculative::Off
    }

    /// The mode `--speculative MODE [--draft-model PATH]` asks for: a draft
    /// model alone means `draft`; `draft` without one is refused.
    pub fn from_flags(mode: &str, draft_model: Option<&str>) -> anyhow::Result<Speculative> {
        match (Speculative::parse(mode)?, draft_model) {
            (Speculative::Off, Some(_)) | (Speculative::Draft, Some(_)) => Ok(Speculative::Draft),
            (Speculative::Draft, None) => {
                anyhow::bail!("--speculative draft needs a draft model: add --draft-model PATH")
            }
            (Speculative::Lookup, Some(_)) => anyhow::bail!(
                "--draft-model is for --speculative draft; drop it for lookup, or use draft"
            ),
            (s, None) => Ok(s),
        }
    }

    /// Parses `off`, `lookup` or `draft` (the `--speculative` flag).
    pub fn parse(s: &str) -> anyhow::Result<Speculative> {
        match s {
            "off" | "none" => Ok(Speculative::Off),
            "lookup" => Ok(Speculative::Lookup),
            "draft" => Ok(Speculative::Draft),
            other => anyhow::bail!("unknown --speculative {other:?}: use lookup, draft or off"),
        }
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            seed: 0,
            speculative: Speculative::Off,
        }
    }
}

/// A sampler with its random state.
pub struct Sampler {
    params: SamplingParams,
    rng: rand::rngs::StdRng,
}

impl Sampler {
    /// A sampler seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Sampler {
        let rng = rand::rngs::StdRng::seed_from_u64(params.seed);
        Sampler { params, rng }
    }

    /// Picks a token; `context` is the prompt and `generated` what came since.
    pub fn sample(&mut self, logits: &mut [f32], context: &[u32], generated: &[u32]) -> u32 {
        match self.distribution(logits, context, generated) {
            Choice::Greedy(t) => t,
            Choice::Sample(idx, probs) => self.draw(&idx, &probs, None),
        }
    }

    /// Picks a token where `draft` was proposed, so that the result is
    /// distributed exactly as [`Sampler::sample`]'s: greedy takes the
    /// argmax; sampling accepts the draft with its probability p(draft) and
    /// otherwise draws from the distribution with the draft removed
    /// (speculative sampling with a one-token proposal). Returns the token
    /// and whether it is the draft.
    pub fn verify(
        &mut self,
        logits: &mut [f32],
        context: &[u32],
        generated: &[u32],
        draft: u32,
    ) -> (u32, bool) {
        let t = match self.distribution(logits, context, generated) {
            Choice::Greedy(t) => t,
            Choice::Sample(idx, probs) => {
                let total: f32 = probs.iter().sum();
                let p = idx
                    .iter()
                    .position(|&i| i == draft)
                    .map_or(0.0, |k| probs[k] / total);
                if p > 0.0 && self.rng.random::<f32>() < p {
                    draft
                } else {
                    self.draw(&idx, &probs, Some(draft))
                }
            }
        };
        (t, t == draft)
    }

    /// The penalised, restricted distribution over the next token.
    fn distribution(&self, logits: &mut [f32], context: &[u32], generated: &[u32]) -> Choice {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            for &t in context.iter().chain(generated) {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
            }
        }
        if p.presence_penalty != 0.0 {
            let mut seen = std::collections::HashSet::new();
            for &t in generated {
                if seen.insert(t) {
                    if let Some(l) = logits.get_mut(t as usize) {
                        *l -= p.presence_penalty;
                    }
                }
            }
        }
        if p.temperature <= 0.0 {
            return Choice::Greedy(argmax(logits));
        }
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        idx.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        if p.top_k > 0 {
            idx.truncate(p.top_k);
        }
        let max = logits[idx[0] as usize];
        let mut probs: Vec<f32> = idx
            .iter()
            .map(|&i| ((logits[i as usize] - max) / p.temperature).exp())
            .collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= sum);
        if p.min_p > 0.0 {
            let cut = probs[0] * p.min_p;
            let keep = probs.iter().take_while(|&&x| x >= cut).count().max(1);
            probs.truncate(keep);
        }
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|&x| {
                    acc += x;
                    acc >= p.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        idx.truncate(probs.len());
        Choice::Sample(idx, probs)
    }

    /// Draws from `probs` over `idx` (not normalised), leaving out `skip`.
    fn draw(&mut self, idx: &[u32], probs: &[f32], skip: Option<u32>) -> u32 {
        let weight = |k: usize| if Some(idx[k]) == skip { 0.0 } else { probs[k] };
        let total: f32 = (0..probs.len()).map(weight).sum();
        if total <= 0.0 {
            // Only the skipped token had any mass (verify never gets here:
            // it accepts a draft of probability 1).
            return idx[0];
        }
        let mut r = self.rng.random::<f32>() * total;
        let mut last = None;
        for (k, &t) in idx.iter().enumerate().take(probs.len()) {
            let w = weight(k);
            if w > 0.0 {
                last = Some(t);
                r -= w;
                if r <= 0.0 {
                    return t;
                }
            }
        }
        last.unwrap_or(idx[0])
    }
}

/// The next token's distribution: one token (greedy), or token ids with
/// their probabilities, most likely first.
enum Choice {
    Greedy(u32),
    Sample(Vec<u32>, Vec<f32>),
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_max_and_penalties_move_it() {
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.sample(&mut [0.1, 2.0, 1.0], &[], &[]), 1);
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 4.0,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut [0.1, 2.0, 1.0], &[1], &[]), 2);
        let mut s = Sampler::new(SamplingParams {
            presence_penalty: 1.5,
            ..Default::default()
        });
        assert_eq!(s.sample(&mut [0.1, 2.0, 1.0], &[], &[1]), 2);
    }

    /// Verifying a drafted token keeps the sampler's distribution exactly:
    /// accepted with probability p(draft), otherwise drawn from the rest.
    /// Checked on a five-token vocabulary slice, for drafts likely, unlikely
    /// and outside the top-p set, against the exact probabilities.
    #[test]
    fn verify_keeps_the_distribution_of_sample() {
        let logits = [2.0f32, 1.0, 0.5, 0.0, -1.0];
        for (params, expect) in [
            (
                SamplingParams {
                    temperature: 1.0,
                    ..Default::default()
                },
                {
                    let e: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
                    let z: f64 = e.iter().sum();
                    e.iter().map(|x| x / z).collect::<Vec<_>>()
                },
            ),
            (
                // top-p 0.8 keeps the first three tokens.
                SamplingParams {
                    temperature: 1.0,
                    top_p: 0.8,
                    ..Default::default()
                },
                {
                    let e: Vec<f64> = logits[..3].iter().map(|&l| (l as f64).exp()).collect();
                    let z: f64 = e.iter().sum();
                    let mut v: Vec<f64> = e.iter().map(|x| x / z).collect();
                    v.extend([0.0, 0.0]);
                    v
                },
            ),
        ] {
            for draft in [0u32, 2, 4] {
                let mut s = Sampler::new(SamplingParams {
                    seed: 11 + draft as u64,
                    ..params.clone()
                });
                let n = 40_000;
                let mut counts = [0usize; 5];
                let mut accepted = 0;
                for _ in 0..n {
                    let (t, ok) = s.verify(&mut logits.clone(), &[], &[], draft);
                    counts[t as usize] += 1;
                    accepted += ok as usize;
                    assert_eq!(ok, t == draft);
                }
                for (k, &c) in counts.iter().enumerate() {
                    let p = expect[k];
                    let sd = (p * (1.0 - p) / n as f64).sqrt();
                    let got = c as f64 / n as f64;
                    assert!(
                        (got - p).abs() <= 5.0 * sd + 1e-9,
                        "{params:?} draft {draft}: token {k} {got} vs {p}"
                    );
                }
                // The draft is accepted exactly as often as it is likely.
                assert_eq!(accepted, counts[draft as usize]);
            }
        }
        // Greedy: the argmax, whatever was drafted.
        let mut s = Sampler::new(SamplingParams::default());
        assert_eq!(s.verify(&mut logits.clone(), &[], &[], 3), (0, false));
        assert_eq!(s.verify(&mut logits.clone(), &[], &[], 0), (0, true));
    }

    #[test]
    fn top_k_top_p_min_p_restrict_the_choice() {
        for params in [
            SamplingParams {
                temperature: 1.0,
                top_k: 1,
                ..Default::default()
            },
            SamplingParams {
                temperature: 1.0,
                top_p: 0.5,
                ..Default::default()
            },
            SamplingParams {
                temperature: 1.0,
                min_p: 0.5,
                ..Default::default()
            },
        ] {
            let mut s = Sampler::new(SamplingParams { seed: 7, ..params });
            for _ in 0..50 {
                assert_eq!(s.sample(&mut [0.0, 3.0, 1.0, 0.5], &[], &[]), 1);
            }
        }
        // Without restriction, a hot sampler visits more than one token, and
        // the same seed gives the same sequence.
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams {
                temperature: 2.0,
                seed,
                ..Default::default()
            });
            (0..50)
                .map(|_| s.sample(&mut [0.0, 1.0, 0.5, 0.2], &[], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert!(
            run(3)
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                > 1
        );
    }
}
