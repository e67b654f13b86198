//! Prompt lookup: drafts for speculative decoding taken from the context
//! itself. An agent quotes tool results and code back often, so the tokens
//! that followed the last earlier occurrence of the context's final n-gram
//! are a good guess at what comes next, and cost nothing to propose.

/// Longest n-gram matched.
pub const MAX_NGRAM: usize = 3;
/// Shortest n-gram matched (a single token matches too often to pay).
pub const MIN_NGRAM: usize = 2;
/// Most tokens drafted at once.
pub const MAX_DRAFT: usize = 8;

/// The draft for `context`: up to `max_draft` tokens that followed the most
/// recent earlier occurrence of its last `n` tokens, for the longest `n`
/// from [`MAX_NGRAM`] down to [`MIN_NGRAM`] that occurs; empty if none does.
/// Where the copy reaches the end of the context it goes on copying what it
/// has drafted (as LZ77 copies overlap), so that a repeating stretch is
/// drafted whole rather than one period at a time.
pub fn draft(context: &[u32], max_draft: usize) -> Vec<u32> {
    let len = context.len();
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if len <= n {
            continue;
        }
        let tail = &context[len - n..];
        // Start positions whose n-gram ends before the tail starts to leave
        // at least one token to draft; the latest first.
        for start in (0..len - n).rev() {
            if &context[start..start + n] == tail {
                let from = start + n;
                let mut out: Vec<u32> = Vec::with_capacity(max_draft);
                for i in from..from + max_draft {
                    let t = if i < len { context[i] } else { out[i - len] };
                    out.push(t);
                }
                return out;
            }
        }
    }
    Vec::new()
}

/// Decides how many drafted tokens are worth checking, from what this
/// machine has measured: the cost of a plain step, the extra cost of each
/// checked position, and how often drafts have been right lately. With
/// acceptance α, checking k drafts yields (1 − α^(k+1)) / (1 − α) tokens for
/// one forward pass of k + 1 positions; the k with the best yield per
/// millisecond is chosen, 0 (a plain step) when none beats it. A small
/// model whose output layer dominates each position's cost, or drafts that
/// keep being wrong, turn speculation off by themselves; while off, the
/// acceptance estimate drifts back to its prior so that drafting is tried
/// again.
#[derive(Debug, Clone)]
pub struct Tuner {
    step_ms: Option<f64>,
    extra_ms: Option<f64>,
    accepted: f64,
    tested: f64,
}

impl Default for Tuner {
    fn default() -> Self {
        Tuner {
            step_ms: None,
            extra_ms: None,
            accepted: 0.0,
            tested: 0.0,
        }
    }
}

fn ema(old: Option<f64>, new: f64) -> Option<f64> {
    Some(old.map_or(new, |o| 0.7 * o + 0.3 * new))
}

impl Tuner {
    /// A plain step took `ms`.
    pub fn record_step(&mut self, ms: f64) {
        self.step_ms = ema(self.step_ms, ms);
        self.accepted *= 0.95;
        self.tested *= 0.95;
        // One slow check (a busy machine) must not stop drafting for good.
        if let Some(e) = &mut self.extra_ms {
            *e *= 0.98;
        }
    }

    /// Checking `drafted` tokens took `ms`, and the first `accepted` were
    /// right.
    pub fn record_verify(&mut self, drafted: usize, accepted: usize, ms: f64) {
        if drafted == 0 {
            return;
        }
        if let Some(step) = self.step_ms {
            let extra = ((ms - step) / drafted as f64).max(0.0);
            self.extra_ms = ema(self.extra_ms, extra);
        }
        self.accepted = 0.8 * self.accepted + accepted as f64;
        self.tested = 0.8 * self.tested + (accepted + usize::from(accepted < drafted)) as f64;
    }

    /// The estimated chance that a drafted token is right.
    pub fn acceptance(&self) -> f64 {
        (self.accepted + 1.0) / (self.tested + 2.0)
    }

    /// How many of `available` drafted tokens to check.
    pub fn budget(&self, available: usize) -> usize {
        let Some(step) = self.step_ms.filter(|s| *s > 0.0) else {
            // Nothing measured yet: one plain step first.
            return 0;
        };
        // Until a check has been timed, assume a position costs a quarter
        // of a step, so that drafting is tried.
        let extra = self.extra_ms.unwrap_or(step / 4.0);
        let a = self.acceptance().min(0.999);
        let mut best = (0, 1.0 / step);
        for k in 1..=available {
            let tokens = (1.0 - a.powi(k as i32 + 1)) / (1.0 - a);
            let rate = tokens / (step + k as f64 * extra);
            if rate > best.1 * 1.02 {
                best = (k, rate);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_followed_the_latest_match_of_the_longest_ngram() {
        // "a b c d e ... a b c" drafts "d e ..."
        let ctx = [1, 2, 3, 4, 5, 6, 9, 1, 2, 3];
        assert_eq!(draft(&ctx, 3), [4, 5, 6]);
        // Past the end of the context the copy copies itself.
        assert_eq!(draft(&ctx, 9), [4, 5, 6, 9, 1, 2, 3, 4, 5]);
        // The latest occurrence wins.
        let ctx = [2, 3, 7, 2, 3, 8, 2, 3];
        assert_eq!(draft(&ctx, 1), [8]);
        // A longer match beats a later shorter one.
        let ctx = [1, 2, 3, 4, 9, 2, 3, 5, 1, 2, 3];
        assert_eq!(draft(&ctx, 1), [4]);
        // No bigram repeats: nothing (single tokens are not matched).
        assert!(draft(&[1, 2, 3, 1], 4).is_empty());
        assert!(draft(&[], 4).is_empty());
        assert!(draft(&[5, 5], 4).is_empty());
        assert!(draft(&[1, 2, 1, 2], 0).is_empty());
        // A loop is drafted whole, not one period at a time.
        assert_eq!(draft(&[7, 7, 7], 4), [7, 7, 7, 7]);
        assert_eq!(draft(&[1, 2, 1, 2, 1], 5), [2, 1, 2, 1, 2]);
    }

    #[test]
    fn the_tuner_drafts_only_where_it_pays() {
        let mut t = Tuner::default();
        assert_eq!(t.budget(8), 0, "nothing measured");
        t.record_step(10.0);
        // Unmeasured checks are assumed cheap: drafting is tried.
        assert!(t.budget(8) > 0);
        // Cheap checks that are always right: draft everything.
        for _ in 0..10 {
            t.record_verify(8, 8, 12.0);
        }
        assert_eq!(t.budget(8), 8);
        assert_eq!(t.budget(3), 3);
        // Checks where a position costs a quarter of a step, always wrong
        // at once: stop drafting. (Checks as cheap as above pay even at
        // 15 % acceptance, rightly.)
        for _ in 0..30 {
            t.record_verify(8, 0, 30.0);
        }
        assert!(t.acceptance() < 0.2, "{}", t.acceptance());
        assert_eq!(t.budget(8), 0);
        // While plain steps run, acceptance drifts back and drafting is
        // tried again.
        for _ in 0..200 {
            t.record_step(10.0);
        }
        assert!(t.budget(8) > 0);
        // Checks that cost a whole step per position never pay, however
        // right the drafts are.
        let mut t = Tuner::default();
        t.record_step(10.0);
        for _ in 0..10 {
            t.record_verify(8, 8, 10.0 + 8.0 * 10.0);
        }
        assert_eq!(t.budget(8), 0);
    }
}
