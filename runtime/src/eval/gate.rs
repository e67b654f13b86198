//! Gates: `tool_accuracy>=0.9,no_call_accuracy>=0.9` held against every
//! variant's metrics.

use super::{per_tool, Metrics, METRICS};
use anyhow::bail;

/// One condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The metric.
    pub metric: String,
    /// `>=`, `<=`, `>`, `<` or `==`.
    pub op: &'static str,
    /// The threshold.
    pub value: f64,
}

/// A condition a variant missed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Miss {
    /// The variant.
    pub variant: String,
    /// The condition as written.
    pub condition: String,
    /// What the variant had (`null`: not measured).
    pub actual: Option<f64>,
}

impl Condition {
    /// As written.
    pub fn text(&self) -> String {
        format!("{}{}{}", self.metric, self.op, self.value)
    }

    fn holds(&self, x: f64) -> bool {
        match self.op {
            ">=" => x >= self.value,
            "<=" => x <= self.value,
            ">" => x > self.value,
            "<" => x < self.value,
            _ => x == self.value,
        }
    }
}

/// Parses a gate expression.
pub fn parse(expr: &str) -> anyhow::Result<Vec<Condition>> {
    let mut out = Vec::new();
    for part in expr.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((i, op)) = [">=", "<=", "==", ">", "<"]
            .iter()
            .find_map(|op| part.find(op).map(|i| (i, *op)))
        else {
            bail!("gate {part:?}: write METRIC>=NUMBER (or <=, >, <, ==)");
        };
        let metric = part[..i].trim();
        if !METRICS.contains(&metric) && per_tool(metric).is_none() {
            bail!(
                "gate {part:?}: unknown metric {metric:?}; use one of {}, or \
                 tool_accuracy[TOOL] / argument_accuracy[TOOL] for the cases that expect TOOL",
                METRICS.join(", ")
            );
        }
        let value: f64 = part[i + op.len()..].trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "gate {part:?}: {:?} is not a number",
                part[i + op.len()..].trim()
            )
        })?;
        out.push(Condition {
            metric: metric.into(),
            op,
            value,
        });
    }
    if out.is_empty() {
        bail!("the gate is empty; write e.g. \"tool_accuracy>=0.9,no_call_accuracy>=0.9\"");
    }
    Ok(out)
}

/// Every condition each variant misses (a metric not measured misses).
pub fn check(conditions: &[Condition], variants: &[(String, Metrics)]) -> Vec<Miss> {
    let mut out = Vec::new();
    for (name, m) in variants {
        for c in conditions {
            let actual = m.get(&c.metric);
            if !actual.is_some_and(|x| c.holds(x)) {
                out.push(Miss {
                    variant: name.clone(),
                    condition: c.text(),
                    actual,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse_and_refuse_what_they_cannot_read() {
        let g = parse("tool_accuracy>=0.9, no_call_accuracy > 0.5,decode_tok_s<1000").unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(
            (g[1].metric.as_str(), g[1].op, g[1].value),
            ("no_call_accuracy", ">", 0.5)
        );
        for bad in [
            "",
            "tool_accuracy",
            "speed>=1",
            "tool_accuracy>=high",
            "decode_tok_s[run_command]>=1",
            "tool_accuracy[]>=1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    fn case(tools: &[&str], tool_ok: bool, args_ok: bool) -> crate::eval::CaseResult {
        crate::eval::CaseResult {
            id: "c".into(),
            repeat: 0,
            passed: args_ok,
            failure: None,
            detail: String::new(),
            calls: vec![],
            answer: String::new(),
            call_due: !tools.is_empty(),
            expected_tools: tools.iter().map(|t| t.to_string()).collect(),
            tool_ok,
            args_ok,
            turn_ms: vec![],
            generations: vec![],
            tool_ms: 0.0,
            overhead_ms: 0.0,
        }
    }

    #[test]
    fn per_tool_gates_hold_only_the_cases_of_their_tool() {
        let m = Metrics::of(&[
            case(&["run_command"], true, true),
            case(&["run_command"], false, false),
            case(&["read_file"], true, true),
            case(&["run_command", "read_file"], true, false),
            case(&[], false, false),
        ]);
        assert_eq!(m.by_tool["run_command"].cases, 3);
        assert!((m.get("tool_accuracy[run_command]").unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.get("argument_accuracy[run_command]").unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.get("tool_accuracy[read_file]"), Some(1.0));
        let g = parse("tool_accuracy[run_command]>=0.6,tool_accuracy[list_dir]>=0.1").unwrap();
        let misses = check(&g, &[("v".into(), m.clone())]);
        // A tool no case expects is not measured, so its gate misses.
        assert_eq!(misses.len(), 1);
        assert_eq!(misses[0].condition, "tool_accuracy[list_dir]>=0.1");
        assert_eq!(misses[0].actual, None);
        let strict = parse("tool_accuracy[run_command]>=0.7").unwrap();
        assert_eq!(check(&strict, &[("v".into(), m)]).len(), 1);
    }
}
