//! `warden audit summary`: what a set of session logs add up to.

use super::read::read_typed;
use super::record::Record;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Percentiles of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Stage {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
}

impl Stage {
    fn of(mut v: Vec<f64>) -> Stage {
        if v.is_empty() {
            return Stage::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Stage {
            n: v.len(),
            p50: at(0.5),
            p95: at(0.95),
        }
    }
}

/// The summary of some logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Sessions read.
    pub sessions: usize,
    /// Of those, sessions whose model outputs were replayed (model time is
    /// nil, so time shares and decode speeds mean nothing).
    pub replayed_sessions: usize,
    /// Turns.
    pub turns: usize,
    /// Generations.
    pub generations: usize,
    /// Latency per stage: per generation `tokenize`, `prefill`, `ttft`,
    /// `decode` and `generation` (total); per turn `tools`, `overhead`,
    /// `turn`.
    pub latency_ms: BTreeMap<String, Stage>,
    /// Median decode speed, tokens per second.
    pub decode_tok_s_p50: f64,
    /// Framework overhead as a share of all turn time.
    pub overhead_share: f64,
    /// Tool calls by tool, then by outcome.
    pub calls: BTreeMap<String, BTreeMap<String, usize>>,
    /// Calls that could not be read (`malformed`).
    pub format_errors: usize,
    /// Calls the policy or the sandbox denied (`decision` or `outcome`).
    pub denials: usize,
    /// Prompt tokens reused from the cache, and prefilled, in all.
    pub reused_tokens: u64,
    /// See `reused_tokens`.
    pub prefill_tokens: u64,
}

/// Reads and sums `paths`.
pub fn summarize(paths: &[impl AsRef<Path>]) -> anyhow::Result<Summary> {
    let mut s = Summary::default();
    let mut stages: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut decode = Vec::new();
    let (mut overhead, mut total) = (0.0, 0.0);
    for path in paths {
        let path = path.as_ref();
        // Read back as the types the log was written from.
        for rec in read_typed(path)? {
            match rec.record {
                Record::SessionStart(r) => {
                    s.sessions += 1;
                    if r.model["kind"] == "replay" {
                        s.replayed_sessions += 1;
                    }
                }
                Record::Generation(g) => {
                    s.generations += 1;
                    let t = &g.timings;
                    for (stage, ms) in [
                        ("tokenize", t.tokenize_ms),
                        ("prefill", t.prefill_ms),
                        ("ttft", t.ttft_ms),
                        ("generation", t.total_ms),
                    ] {
                        stages.entry(stage).or_default().push(ms);
                    }
                    stages.entry("decode").or_default().push(t.decode_ms());
                    if t.decode_tok_s > 0.0 {
                        decode.push(t.decode_tok_s);
                    }
                    s.reused_tokens += t.reused_tokens;
                    s.prefill_tokens += t.prefill_tokens;
                }
                Record::ToolCall(c) => {
                    let tool = c.tool.unwrap_or_else(|| "(unreadable)".into());
                    *s.calls
                        .entry(tool)
                        .or_default()
                        .entry(c.outcome.clone())
                        .or_default() += 1;
                    if c.outcome == "malformed" {
                        s.format_errors += 1;
                    } else if c.decision == "denied" || c.outcome == "denied" {
                        s.denials += 1;
                    }
                }
                Record::Turn(t) => {
                    s.turns += 1;
                    let (tool, over) = (t.tool_ms.unwrap_or(0.0), t.overhead_ms.unwrap_or(0.0));
                    stages.entry("tools").or_default().push(tool);
                    stages.entry("overhead").or_default().push(over);
                    stages.entry("turn").or_default().push(t.total_ms);
                    overhead += over;
                    total += t.total_ms;
                }
                Record::SessionEnd(_) => {}
            }
        }
    }
    s.latency_ms = stages
        .into_iter()
        .map(|(k, v)| (k.to_string(), Stage::of(v)))
        .collect();
    s.decode_tok_s_p50 = Stage::of(decode).p50;
    s.overhead_share = if total > 0.0 { overhead / total } else { 0.0 };
    Ok(s)
}

impl Summary {
    /// Whether every session read was a replay.
    pub fn replay_only(&self) -> bool {
        self.sessions > 0 && self.replayed_sessions == self.sessions
    }

    /// The summary for a person.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} session(s), {} turn(s), {} generation(s)\n",
            self.sessions, self.turns, self.generations
        );
        out.push_str("latency (ms)        p50        p95\n");
        for stage in [
            "tokenize",
            "prefill",
            "ttft",
            "decode",
            "generation",
            "tools",
            "overhead",
            "turn",
        ] {
            if let Some(st) = self.latency_ms.get(stage) {
                out.push_str(&format!("  {stage:<12} {:>9.2} {:>10.2}\n", st.p50, st.p95));
            }
        }
        let overhead_ms = self.latency_ms.get("overhead").map_or(0.0, |s| s.p50);
        if self.replay_only() {
            // No model ran: a share of turn time or a decode speed would be
            // a share of nothing.
            out.push_str(&format!(
                "replayed: the model's outputs were recorded, so no model time or decode speed\nframework overhead: {overhead_ms:.2} ms per turn (p50)\n"
            ));
        } else {
            out.push_str(&format!(
                "decode {:.1} tok/s (p50); prompt tokens reused {} / prefilled {}\n",
                self.decode_tok_s_p50, self.reused_tokens, self.prefill_tokens
            ));
            out.push_str(&format!(
                "framework overhead: {overhead_ms:.2} ms per turn (p50), {:.2} % of turn time\n",
                self.overhead_share * 100.0
            ));
        }
        let n: usize = self.calls.values().flat_map(|m| m.values()).sum();
        out.push_str(&format!(
            "tool calls: {n} ({} malformed, {} denied)\n",
            self.format_errors, self.denials
        ));
        for (tool, outcomes) in &self.calls {
            let parts: Vec<String> = outcomes.iter().map(|(o, c)| format!("{o} {c}")).collect();
            out.push_str(&format!("  {tool:<14} {}\n", parts.join(", ")));
        }
        out
    }
}
