//! Questions that need no tool: topics asked about in `explain` and
//! `compare` phrasings, and fixed questions with fixed answers.

use rand::Rng;
use serde::Deserialize;

/// Phrasings a topic is asked in.
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Frames {
    /// With `{topic}`.
    pub explain: Vec<String>,
    /// With `{a}` and `{b}`.
    pub compare: Vec<String>,
}

/// A topic and its one-sentence answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Topic {
    /// As it reads after "What is".
    pub name: String,
    /// The answer.
    pub answer: String,
}

/// A fixed question (in several phrasings) and its answer.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Fixed {
    /// Ways of asking.
    pub phrasings: Vec<String>,
    /// The answer.
    pub answer: String,
}

/// What training may ask, after the holdout.
#[derive(Debug, Clone, Default)]
pub(super) struct DirectPool {
    /// Explain phrasings kept for training.
    pub explain: Vec<String>,
    /// Compare phrasings kept for training.
    pub compare: Vec<String>,
    /// Topics kept for training.
    pub topics: Vec<Topic>,
    /// Fixed (question, answer) pairs kept for training.
    pub fixed: Vec<(String, String)>,
}

impl DirectPool {
    /// Whether there is anything to ask.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && (self.topics.is_empty() || self.explain.is_empty())
    }

    /// A question and its answer.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<(String, String)> {
        let can_topic = !self.topics.is_empty() && !self.explain.is_empty();
        let can_compare = self.topics.len() > 1 && !self.compare.is_empty();
        let roll = rng.random_range(0..6);
        if can_compare && (roll == 0 || self.fixed.is_empty() && !can_topic) {
            let a = &self.topics[rng.random_range(0..self.topics.len())];
            let b = loop {
                let b = &self.topics[rng.random_range(0..self.topics.len())];
                if b.name != a.name {
                    break b;
                }
            };
            let frame = &self.compare[rng.random_range(0..self.compare.len())];
            let q = frame.replace("{a}", &a.name).replace("{b}", &b.name);
            return Some((q, format!("{} {}", a.answer, b.answer)));
        }
        if can_topic && (roll <= 3 || self.fixed.is_empty()) {
            let t = &self.topics[rng.random_range(0..self.topics.len())];
            let frame = &self.explain[rng.random_range(0..self.explain.len())];
            return Some((frame.replace("{topic}", &t.name), t.answer.clone()));
        }
        (!self.fixed.is_empty()).then(|| self.fixed[rng.random_range(0..self.fixed.len())].clone())
    }
}
