//! Copy drills (`--copy-drills N`): a user gives a few names and asks for
//! them back; the assistant repeats them. No tool and no system prompt, so
//! a drill is a short sequence whose targets are nearly all copies.
//!
//! A small model trained from random weights on the task conversations
//! alone does not learn to copy a name from the question into a call's
//! arguments (its loss on name tokens stays at chance); copying is a
//! two-layer circuit (a head that carries the previous token, a head that
//! finds the token after the current one's earlier occurrence) that forms
//! only with many dense copy targets. Drills give it those: the tiny
//! agent's shape learns drills of the shipped form in a few hundred steps,
//! and trained on the task after them it copies the later tokens of a name
//! into its calls (docs/training.md, "The tiny tool-caller", has what was measured).

use rand::Rng;
use serde::Deserialize;

/// The `[drills]` table of the templates.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Drills {
    /// Questions, with `{names}`.
    pub phrasings: Vec<String>,
    /// Answers, with `{names}`.
    pub answers: Vec<String>,
    /// What joins the names.
    pub separators: Vec<String>,
    /// At most this many names a drill.
    pub most: usize,
}

impl Default for Drills {
    fn default() -> Self {
        Self {
            phrasings: vec!["Repeat: {names}".into()],
            answers: vec!["You said: {names}".into()],
            separators: vec![", ".into()],
            most: 6,
        }
    }
}

impl Drills {
    /// One drill (question, answer) over 1..=`most` names drawn by `draw`
    /// (`None` when it has none to give).
    pub fn draw(
        &self,
        rng: &mut impl Rng,
        mut draw: impl FnMut(&mut dyn rand::RngCore) -> Option<String>,
    ) -> Option<(String, String)> {
        if self.phrasings.is_empty() || self.answers.is_empty() || self.separators.is_empty() {
            return None;
        }
        let k = rng.random_range(1..=self.most.max(1));
        let mut names = Vec::with_capacity(k);
        for _ in 0..k {
            names.push(draw(rng)?);
        }
        let sep = &self.separators[rng.random_range(0..self.separators.len())];
        let names = names.join(sep);
        let q = &self.phrasings[rng.random_range(0..self.phrasings.len())];
        let a = &self.answers[rng.random_range(0..self.answers.len())];
        Some((q.replace("{names}", &names), a.replace("{names}", &names)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_answer_repeats_the_question_s_names() {
        let d = Drills {
            phrasings: vec!["Echo: {names}".into(), "Say {names} back".into()],
            answers: vec!["You said: {names}".into(), "`{names}`".into()],
            separators: vec![", ".into(), "/".into()],
            most: 4,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let pool = ["alpha_beta", "GammaDelta", "eps.py"];
        let mut sizes = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (q, a) = d
                .draw(&mut rng, |r| {
                    Some(pool[r.random_range(0..pool.len())].to_string())
                })
                .unwrap();
            let names = a
                .strip_prefix("You said: ")
                .or_else(|| a.strip_prefix('`')?.strip_suffix('`'))
                .unwrap();
            assert!(q.contains(&format!(" {names}")), "{q} / {a}");
            let n = names.split([',', '/']).count();
            assert!((1..=4).contains(&n), "{a}");
            sizes.insert(n);
        }
        assert_eq!(sizes.len(), 4, "every count from 1 to 4 drawn");
        // A drawer with nothing to give: no drill.
        assert!(d.draw(&mut rng, |_| None).is_none());
    }
}
