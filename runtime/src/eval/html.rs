//! `--html`: one self-contained page (inline SVG, no scripts, nothing
//! fetched) with each metric across variants and the failures by kind.

use super::gate::Miss;
use super::run::VariantRun;
use super::METRICS;
use crate::audit::esc;
use std::fmt::Write as _;

/// Whether a metric is a rate (drawn in percent on a 0–1 scale).
pub fn is_rate(m: &str) -> bool {
    m.ends_with("accuracy") || m == "format_validity"
}

/// Horizontal bars, one per variant, of values in `0..=max`.
fn bars(values: &[(String, Option<f64>)], max: f64, fmt: &dyn Fn(f64) -> String) -> String {
    let (row, label_w, bar_w) = (22, 160, 360);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img">"#,
        label_w + bar_w + 80,
        row * values.len() + 4
    );
    for (i, (name, v)) in values.iter().enumerate() {
        let y = i * row + 2;
        let _ = write!(
            svg,
            r#"<text x="0" y="{}" font-size="13">{}</text>"#,
            y + 15,
            esc(name)
        );
        match v {
            Some(x) => {
                let w = if max > 0.0 {
                    (x / max * bar_w as f64).max(1.0)
                } else {
                    1.0
                };
                let _ = write!(
                    svg,
                    r##"<rect x="{label_w}" y="{y}" width="{w:.1}" height="{}" fill="#4a7bd0"/><text x="{}" y="{}" font-size="13">{}</text>"##,
                    row - 6,
                    label_w as f64 + w + 6.0,
                    y + 15,
                    esc(&fmt(*x))
                );
            }
            None => {
                let _ = write!(
                    svg,
                    r##"<text x="{label_w}" y="{}" font-size="13" fill="#888">not measured</text>"##,
                    y + 15
                );
            }
        }
    }
    svg + "</svg>"
}

/// The gate a run was held to: as written, and what each variant missed.
#[derive(Debug, Clone, Copy)]
pub struct GateVerdict<'a> {
    /// The gate as given to `--gate`.
    pub gate: &'a str,
    /// The conditions missed (none: passed).
    pub misses: &'a [Miss],
}

/// The page; with `gate`, its verdict first.
pub fn page(title: &str, runs: &[VariantRun], gate: Option<GateVerdict<'_>>) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head><body><h1>{}</h1>",
        esc(title),
        esc(title)
    );
    if let Some(g) = gate {
        let _ = write!(h, "<h2>Gate: <code>{}</code></h2>", esc(g.gate));
        if g.misses.is_empty() {
            h.push_str("<p class=\"gate-passed\">Passed: every variant meets the gate.</p>");
        } else {
            h.push_str("<p class=\"gate-failed\">Failed:</p><table><tr><th>variant</th><th>has</th><th>needs</th></tr>");
            for m in g.misses {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&m.variant),
                    m.actual
                        .map_or("not measured".to_string(), |x| format!("{x:.3}")),
                    esc(&m.condition)
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("<h2>Variants</h2><table><tr><th>variant</th><th>spec</th><th>cases</th><th>passed</th><th>log</th></tr>");
    for r in runs {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&r.spec),
            r.metrics.cases,
            r.metrics.passed,
            esc(&r.log.display().to_string())
        );
    }
    h.push_str("</table>");
    for m in METRICS.into_iter().filter(|m| is_rate(m)) {
        let values: Vec<(String, Option<f64>)> = runs
            .iter()
            .map(|r| (r.name.clone(), r.metrics.get(m)))
            .collect();
        let _ = write!(
            h,
            "<h2>{m}</h2>{}",
            bars(&values, 1.0, &|x| format!("{:.1} %", x * 100.0))
        );
    }
    for m in METRICS.into_iter().filter(|m| !is_rate(m)) {
        let values: Vec<(String, Option<f64>)> = runs
            .iter()
            .map(|r| (r.name.clone(), r.metrics.get(m)))
            .collect();
        let max = values.iter().filter_map(|v| v.1).fold(0.0, f64::max);
        let _ = write!(
            h,
            "<h2>{m}</h2>{}",
            bars(&values, max, &|x| format!("{x:.1}"))
        );
    }
    // The two rates per tool, over the cases that expect each tool (as the
    // terminal table prints them).
    let tools: std::collections::BTreeSet<&String> =
        runs.iter().flat_map(|r| r.metrics.by_tool.keys()).collect();
    if !tools.is_empty() {
        h.push_str("<h2>Per tool</h2><table><tr><th>tool</th><th>metric</th>");
        for r in runs {
            let _ = write!(h, "<th>{}</th>", esc(&r.name));
        }
        h.push_str("</tr>");
        for t in &tools {
            for m in ["tool_accuracy", "argument_accuracy"] {
                let _ = write!(h, "<tr><td>{}</td><td>{m}</td>", esc(t));
                for r in runs {
                    let cell = r
                        .metrics
                        .get(&format!("{m}[{t}]"))
                        .map_or("-".to_string(), |x| format!("{:.1} %", x * 100.0));
                    let _ = write!(h, "<td>{cell}</td>");
                }
                h.push_str("</tr>");
            }
        }
        h.push_str("</table>");
    }
    let kinds: std::collections::BTreeSet<&String> = runs
        .iter()
        .flat_map(|r| r.metrics.failures.keys())
        .collect();
    h.push_str("<h2>Failures by kind</h2>");
    if kinds.is_empty() {
        h.push_str("<p>No case failed.</p>");
    } else {
        h.push_str("<table><tr><th>variant</th>");
        for k in &kinds {
            let _ = write!(h, "<th>{}</th>", esc(k));
        }
        h.push_str("</tr>");
        for r in runs {
            let _ = write!(h, "<tr><td>{}</td>", esc(&r.name));
            for k in &kinds {
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    r.metrics.failures.get(*k).copied().unwrap_or(0)
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        h.push_str("<h2>Failed cases</h2><table><tr><th>variant</th><th>case</th><th>failure</th><th>calls</th><th>detail</th></tr>");
        for r in runs {
            for c in r.cases.iter().filter(|c| !c.passed) {
                let calls: Vec<String> = c
                    .calls
                    .iter()
                    .map(|o| o.tool.clone().unwrap_or_else(|| "?".into()))
                    .collect();
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.name),
                    esc(&c.id),
                    c.failure.map_or("", |f| f.name()),
                    esc(&calls.join(", ")),
                    esc(&c.detail)
                );
            }
        }
        h.push_str("</table>");
    }
    h + "</body></html>\n"
}
