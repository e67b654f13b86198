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
            return argmax(logits);
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
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, &pr) in probs.iter().enumerate() {
            r -= pr;
            if r <= 0.0 {
                return idx[i];
            }
        }
        idx[probs.len() - 1]
    }
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
