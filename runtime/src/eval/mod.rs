//! `warden eval`: does a model (or a fine-tune, fused, quantized) still call
//! the right tool with the right arguments, and how fast? Suites of cases
//! run through the real session loop and sandboxed tools; BFCL files are
//! scored with BFCL's AST rules; variants run side by side, and a gate turns
//! the figures into an exit code.

pub mod bfcl;
pub mod expect;
pub mod gate;
pub mod html;
pub mod run;
pub mod spec;
pub mod suite;

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One call a model made, as the scorer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    /// The tool named (`null` when unreadable).
    pub tool: Option<String>,
    /// Its arguments (empty when malformed).
    pub arguments: Map<String, Value>,
    /// Whether the call could be parsed.
    pub parsed: bool,
    /// Whether its arguments fit the tool's schema.
    pub schema_valid: bool,
    /// The block as the model wrote it, when it could not be parsed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub raw: String,
}

/// Why a case failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// A call was due and the model answered directly (the seed's failure).
    DirectAnswer,
    /// It called a tool, but not the one due.
    WrongTool,
    /// The right tool with arguments that do not fit.
    BadArguments,
    /// Its calls could not be parsed.
    Malformed,
    /// It called a tool where a direct answer was due.
    UnexpectedCall,
    /// Some of several due calls never came.
    MissingCall,
    /// A direct answer that does not say what it should.
    WrongAnswer,
    /// The run itself failed (a replay ran out, the model errored).
    Error,
}

impl Failure {
    /// The name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Failure::DirectAnswer => "direct_answer",
            Failure::WrongTool => "wrong_tool",
            Failure::BadArguments => "bad_arguments",
            Failure::Malformed => "malformed",
            Failure::UnexpectedCall => "unexpected_call",
            Failure::MissingCall => "missing_call",
            Failure::WrongAnswer => "wrong_answer",
            Failure::Error => "error",
        }
    }
}

/// One case's run.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// The case.
    pub id: String,
    /// Which repeat (0-based).
    pub repeat: usize,
    /// Passed.
    pub passed: bool,
    /// Why not.
    pub failure: Option<Failure>,
    /// Details (BFCL's reason, an error), for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The calls made, in order.
    pub calls: Vec<Observed>,
    /// The final answer.
    pub answer: String,
    /// Whether a call was due.
    #[serde(skip)]
    pub call_due: bool,
    /// The tools the case expects (for figures per tool).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_tools: Vec<String>,
    /// The right tool(s) came (when due).
    #[serde(skip)]
    pub tool_ok: bool,
    /// With the right arguments (when due).
    #[serde(skip)]
    pub args_ok: bool,
    /// Wall time of each turn.
    #[serde(skip)]
    pub turn_ms: Vec<f64>,
    /// Per generation: (time to first token, decoded tokens, decode time).
    #[serde(skip)]
    pub generations: Vec<(f64, usize, f64)>,
    /// Time in tools.
    #[serde(skip)]
    pub tool_ms: f64,
    /// Framework time (rendering, parsing, policy, logging).
    #[serde(skip)]
    pub overhead_ms: f64,
}

/// A variant's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Case runs.
    pub cases: usize,
    /// Passed.
    pub passed: usize,
    /// Cases passed.
    pub accuracy: f64,
    /// Right tool chosen, where one was due (`null`: no such case).
    pub tool_accuracy: Option<f64>,
    /// Right tool with fitting arguments, where one was due.
    pub argument_accuracy: Option<f64>,
    /// Cases where no call was due and none was made: whether the model
    /// refrained, whatever it then answered (a run that failed did not).
    pub no_call_accuracy: Option<f64>,
    /// Of those direct answers, the ones that say what the case expects
    /// (its `answer` regex; one without a regex counts as right).
    pub answer_accuracy: Option<f64>,
    /// Calls that parsed and fit their schema (1 when no call was made).
    pub format_validity: f64,
    /// Median turn wall time.
    pub turn_p50_ms: f64,
    /// 95th percentile turn wall time.
    pub turn_p95_ms: f64,
    /// Median time to first token.
    pub ttft_p50_ms: f64,
    /// Decoded tokens per second over all generations.
    pub decode_tok_s: f64,
    /// Mean time in tools per case.
    pub tool_ms: f64,
    /// Mean framework time per case.
    pub overhead_ms: f64,
    /// Failed cases by kind.
    pub failures: BTreeMap<String, usize>,
    /// Figures of the cases that expect each tool (a gate names them as
    /// `tool_accuracy[TOOL]` and `argument_accuracy[TOOL]`).
    pub by_tool: BTreeMap<String, ToolFigures>,
}

/// The figures of the cases that expect one tool.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolFigures {
    /// Case runs that expect the tool.
    pub cases: usize,
    /// Of those, the right tool(s) came.
    pub tool_accuracy: f64,
    /// Of those, with fitting arguments.
    pub argument_accuracy: f64,
}

/// The `q` quantile of `v` (nearest rank); 0 for none.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

impl Metrics {
    /// The figures of `results`.
    pub fn of(results: &[CaseResult]) -> Metrics {
        let n = results.len();
        let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
        let due: Vec<&CaseResult> = results.iter().filter(|r| r.call_due).collect();
        let not_due: Vec<&CaseResult> = results.iter().filter(|r| !r.call_due).collect();
        let refrained: Vec<&CaseResult> = not_due
            .iter()
            .copied()
            .filter(|r| r.calls.is_empty() && r.failure != Some(Failure::Error))
            .collect();
        let calls: Vec<&Observed> = results.iter().flat_map(|r| &r.calls).collect();
        let valid = calls.iter().filter(|c| c.parsed && c.schema_valid).count();
        let mut turns: Vec<f64> = results
            .iter()
            .flat_map(|r| r.turn_ms.iter().copied())
            .collect();
        let mut ttft: Vec<f64> = results
            .iter()
            .flat_map(|r| r.generations.iter().map(|g| g.0))
            .collect();
        let (tokens, ms) = results
            .iter()
            .flat_map(|r| &r.generations)
            .fold((0usize, 0f64), |(t, m), g| (t + g.1, m + g.2));
        let mut failures = BTreeMap::new();
        for f in results.iter().filter_map(|r| r.failure) {
            *failures.entry(f.name().to_string()).or_insert(0) += 1;
        }
        let mut by_tool: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for r in &due {
            for t in &r.expected_tools {
                let e = by_tool.entry(t.clone()).or_default();
                e.0 += 1;
                e.1 += usize::from(r.tool_ok);
                e.2 += usize::from(r.args_ok);
            }
        }
        let passed = results.iter().filter(|r| r.passed).count();
        let mean = |f: &dyn Fn(&CaseResult) -> f64| {
            if n == 0 {
                0.0
            } else {
                results.iter().map(f).sum::<f64>() / n as f64
            }
        };
        Metrics {
            cases: n,
            passed,
            accuracy: ratio(passed, n).unwrap_or(0.0),
            tool_accuracy: ratio(due.iter().filter(|r| r.tool_ok).count(), due.len()),
            argument_accuracy: ratio(due.iter().filter(|r| r.args_ok).count(), due.len()),
            no_call_accuracy: ratio(refrained.len(), not_due.len()),
            answer_accuracy: ratio(
                refrained.iter().filter(|r| r.passed).count(),
                refrained.len(),
            ),
            format_validity: ratio(valid, calls.len()).unwrap_or(1.0),
            turn_p50_ms: quantile(&mut turns.clone(), 0.5),
            turn_p95_ms: quantile(&mut turns, 0.95),
            ttft_p50_ms: quantile(&mut ttft, 0.5),
            decode_tok_s: if ms > 0.0 {
                tokens as f64 / ms * 1e3
            } else {
                0.0
            },
            tool_ms: mean(&|r| r.tool_ms),
            overhead_ms: mean(&|r| r.overhead_ms),
            failures,
            by_tool: by_tool
                .into_iter()
                .map(|(t, (n, tool, args))| {
                    let f = ToolFigures {
                        cases: n,
                        tool_accuracy: tool as f64 / n as f64,
                        argument_accuracy: args as f64 / n as f64,
                    };
                    (t, f)
                })
                .collect(),
        }
    }

    /// The metric called `name` (`None`: unknown, or not measured);
    /// `tool_accuracy[TOOL]` and `argument_accuracy[TOOL]` are those of the
    /// cases that expect TOOL.
    pub fn get(&self, name: &str) -> Option<f64> {
        if let Some((metric, tool)) = per_tool(name) {
            let f = self.by_tool.get(tool)?;
            return Some(match metric {
                "tool_accuracy" => f.tool_accuracy,
                _ => f.argument_accuracy,
            });
        }
        match name {
            "accuracy" => Some(self.accuracy),
            "tool_accuracy" => self.tool_accuracy,
            "argument_accuracy" => self.argument_accuracy,
            "no_call_accuracy" => self.no_call_accuracy,
            "answer_accuracy" => self.answer_accuracy,
            "format_validity" => Some(self.format_validity),
            "turn_p50_ms" => Some(self.turn_p50_ms),
            "turn_p95_ms" => Some(self.turn_p95_ms),
            "ttft_p50_ms" => Some(self.ttft_p50_ms),
            "decode_tok_s" => Some(self.decode_tok_s),
            "tool_ms" => Some(self.tool_ms),
            "overhead_ms" => Some(self.overhead_ms),
            _ => None,
        }
    }
}

/// `("tool_accuracy", "run_command")` for `tool_accuracy[run_command]`
/// (and the same for `argument_accuracy`); `None` for other names.
pub fn per_tool(name: &str) -> Option<(&str, &str)> {
    let (metric, rest) = name.split_once('[')?;
    let tool = rest.strip_suffix(']')?;
    (matches!(metric, "tool_accuracy" | "argument_accuracy") && !tool.is_empty())
        .then_some((metric, tool))
}

/// Every metric a gate or a table may name (besides the per-tool forms of
/// [`per_tool`]).
pub const METRICS: [&str; 12] = [
    "accuracy",
    "tool_accuracy",
    "argument_accuracy",
    "no_call_accuracy",
    "answer_accuracy",
    "format_validity",
    "turn_p50_ms",
    "turn_p95_ms",
    "ttft_p50_ms",
    "decode_tok_s",
    "tool_ms",
    "overhead_ms",
];
