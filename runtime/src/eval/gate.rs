//! Gates: `tool_accuracy>=0.9,no_call_accuracy>=0.9` held against every
//! variant's metrics.

use super::{Metrics, METRICS};
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
        if !METRICS.contains(&metric) {
            bail!(
                "gate {part:?}: unknown metric {metric:?}; use one of {}",
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
        for bad in ["", "tool_accuracy", "speed>=1", "tool_accuracy>=high"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
