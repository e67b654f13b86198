//! `warden audit report`: one self-contained HTML page (inline SVG, no
//! scripts, nothing fetched) with where each turn's time went and how tool
//! calls turned out.

use super::read::read_typed;
use super::record::Record;
use super::summary::summarize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The stages of a turn's time, drawn stacked, with their colours.
const STAGES: [(&str, &str); 5] = [
    ("prefill", "#4e79a7"),
    ("decode", "#59a14f"),
    ("other model", "#9c9c9c"),
    ("tools", "#f28e2b"),
    ("overhead", "#e15759"),
];

/// Outcome colours.
fn outcome_colour(o: &str) -> &'static str {
    match o {
        "ok" => "#59a14f",
        "denied" => "#e15759",
        "malformed" => "#b07aa1",
        "unknown-tool" => "#ff9da7",
        "invalid-arguments" => "#edc948",
        _ => "#9c9c9c",
    }
}

/// The report for `paths`, as HTML.
pub fn report(paths: &[impl AsRef<Path>]) -> anyhow::Result<String> {
    let summary = summarize(paths)?;
    // Per turn: label and milliseconds per stage.
    let mut turns: Vec<(String, [f64; 5])> = Vec::new();
    for path in paths {
        let mut per: BTreeMap<u64, [f64; 2]> = BTreeMap::new(); // prefill, decode
        for r in read_typed(path.as_ref())? {
            match r.record {
                Record::Generation(g) => {
                    let e = per.entry(g.turn).or_default();
                    e[0] += g.timings.prefill_ms;
                    e[1] += g.timings.decode_ms();
                }
                Record::Turn(t) => {
                    let m = per.get(&t.turn).copied().unwrap_or_default();
                    let other = (t.model_ms.unwrap_or(0.0) - m[0] - m[1]).max(0.0);
                    let name = path
                        .as_ref()
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let label = if paths.len() > 1 {
                        format!("{name} #{}", t.turn)
                    } else {
                        format!("turn {}", t.turn)
                    };
                    turns.push((
                        label,
                        [
                            m[0],
                            m[1],
                            other,
                            t.tool_ms.unwrap_or(0.0),
                            t.overhead_ms.unwrap_or(0.0),
                        ],
                    ));
                }
                _ => {}
            }
        }
    }
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>warden session report</title><style>\
         body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}\
         td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}th{text-align:left}\
         .legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;vertical-align:middle}\
         </style></head><body><h1>warden session report</h1>",
    );
    let overhead_ms = summary.latency_ms.get("overhead").map_or(0.0, |s| s.p50);
    let overhead = if summary.replay_only() {
        format!("replayed (recorded model outputs: no model time); framework overhead {overhead_ms:.2} ms per turn (p50)")
    } else {
        format!(
            "framework overhead {overhead_ms:.2} ms per turn (p50), {:.2} % of turn time",
            summary.overhead_share * 100.0
        )
    };
    let _ = write!(
        html,
        "<p>{} session(s), {} turn(s), {} generation(s); {overhead}; {} tool call(s), {} malformed, {} denied.</p>",
        summary.sessions,
        summary.turns,
        summary.generations,
        summary.calls.values().flat_map(|m| m.values()).sum::<usize>(),
        summary.format_errors,
        summary.denials
    );
    html.push_str("<h2>Where each turn's time went (ms)</h2><div class=\"legend\">");
    for (name, colour) in STAGES {
        let _ = write!(html, "<span style=\"background:{colour}\"></span>{name}");
    }
    html.push_str("</div>");
    html.push_str(&stacked_bars(&turns));
    html.push_str("<h2>Latency per stage (ms)</h2><table><tr><th>stage</th><th>n</th><th>p50</th><th>p95</th></tr>");
    for (stage, st) in &summary.latency_ms {
        let _ = write!(
            html,
            "<tr><th>{}</th><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            esc(stage),
            st.n,
            st.p50,
            st.p95
        );
    }
    html.push_str("</table><h2>Tool calls by tool and outcome</h2>");
    html.push_str(&outcome_bars(&summary.calls));
    html.push_str("</body></html>\n");
    Ok(html)
}

/// Width of one character of a 12 px label, generously.
pub(crate) const LABEL_CHAR_PX: f64 = 7.5;

fn stacked_bars(turns: &[(String, [f64; 5])]) -> String {
    let max = turns
        .iter()
        .map(|(_, s)| s.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-9);
    // The label column is as wide as the longest label (12 px text is
    // about 7 px a character), so labels never run under the bars.
    let longest = turns
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let (row, label_w, bar_w) = (
        22.0,
        (longest as f64 * LABEL_CHAR_PX + 12.0).max(80.0),
        600.0,
    );
    let h = row * turns.len().max(1) as f64 + 10.0;
    let mut svg = format!(
        "<svg width=\"{}\" height=\"{h}\" role=\"img\">",
        label_w + bar_w + 90.0
    );
    for (i, (label, stages)) in turns.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 13.0,
            esc(label)
        );
        let mut x = label_w;
        for (ms, (name, colour)) in stages.iter().zip(STAGES) {
            let w = ms / max * bar_w;
            if w > 0.0 {
                let _ = write!(
                    svg,
                    "<rect x=\"{x:.2}\" y=\"{y}\" width=\"{w:.2}\" height=\"16\" fill=\"{colour}\"><title>{name}: {ms:.2} ms</title></rect>"
                );
            }
            x += w;
        }
        let _ = write!(
            svg,
            "<text x=\"{:.2}\" y=\"{}\" font-size=\"11\">{:.1}</text>",
            x + 4.0,
            y + 13.0,
            stages.iter().sum::<f64>()
        );
    }
    svg.push_str("</svg>");
    svg
}

fn outcome_bars(calls: &BTreeMap<String, BTreeMap<String, usize>>) -> String {
    let max = calls
        .values()
        .map(|m| m.values().sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (row, label_w, bar_w) = (22.0, 150.0, 400.0);
    let h = row * calls.len().max(1) as f64 + 10.0;
    let mut svg = format!(
        "<svg width=\"{}\" height=\"{h}\" role=\"img\">",
        label_w + bar_w + 200.0
    );
    for (i, (tool, outcomes)) in calls.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let _ = write!(
            svg,
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text>",
            y + 13.0,
            esc(tool)
        );
        let mut x = label_w;
        let mut parts = Vec::new();
        for (o, n) in outcomes {
            let w = *n as f64 / max * bar_w;
            let _ = write!(
                svg,
                "<rect x=\"{x:.2}\" y=\"{y}\" width=\"{w:.2}\" height=\"16\" fill=\"{}\"><title>{}: {n}</title></rect>",
                outcome_colour(o),
                esc(o)
            );
            x += w;
            parts.push(format!("{} {n}", esc(o)));
        }
        let _ = write!(
            svg,
            "<text x=\"{:.2}\" y=\"{}\" font-size=\"11\">{}</text>",
            x + 4.0,
            y + 13.0,
            parts.join(", ")
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Text escaped for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
