//! `warden eval`: variants side by side over a suite or BFCL files, a
//! table, JSON, HTML, and a gate.

use super::terminal::{escape, print_error, Lines};
use crate::eval::run::{run_bfcl, run_suite, EvalOptions, VariantRun};
use crate::eval::spec::Variant;
use crate::eval::suite::Suite;
use crate::eval::{bfcl, gate, html, METRICS};
use crate::model::parse_device;
use crate::paths::WardenPaths;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `warden eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A suite file (TOML).
    #[arg(long, required_unless_present = "bfcl", conflicts_with = "bfcl")]
    suite: Option<PathBuf>,
    /// Run the suite under this policy instead of the one it names (a
    /// suite from someone else names their grants, read-write included).
    #[arg(long, requires = "suite")]
    policy: Option<PathBuf>,
    /// Run the suite on this workspace instead of the one it names.
    #[arg(long, requires = "suite")]
    workspace: Option<PathBuf>,
    /// The chat template for every model variant instead of its own: a
    /// Jinja file, or a built-in (chatml-tools). An adapter's
    /// chat_template.jinja is used without it.
    #[arg(long, value_name = "FILE|NAME")]
    chat_template: Option<String>,
    /// A BFCL question file (JSON Lines).
    #[arg(long)]
    bfcl: Option<PathBuf>,
    /// Its answers (default: possible_answer/<same name> beside it).
    #[arg(long, requires = "bfcl")]
    answers: Option<PathBuf>,
    /// NAME=SPEC: MODEL[+adapter=DIR]…[+quant=FORMAT][+think=on|off], replay:FILE, completion:URL[#MODEL] or openai:URL#MODEL (a remote engine). Repeat for each variant.
    #[arg(long = "variant", required = true)]
    variants: Vec<String>,
    /// Run only the first N cases.
    #[arg(long)]
    limit: Option<usize>,
    /// Run every case N times.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Write {"variants": [{"name", "spec", "metrics", "cases", "log"}]} here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Exit 1 when a variant misses one of these, e.g. "tool_accuracy>=0.9,no_call_accuracy>=0.9".
    #[arg(long)]
    gate: Option<String>,
    /// Most tokens per generation.
    #[arg(long, default_value_t = 1024)]
    max_tokens: usize,
    /// auto, required, none or a tool's name, for every variant without its
    /// own `+tool-choice=` (`+constrained` holds all of a variant's
    /// generations to the tools' grammar).
    #[arg(long, value_name = "CHOICE", default_value = "auto")]
    tool_choice: crate::chat::ToolChoice,
    /// The key completion: and openai: variants' servers want (else
    /// OPENAI_API_KEY's).
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// Where the variants' session logs go (default: <state dir>/evals).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// cpu, cuda[:N] or metal.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// For every model variant (which generate greedily: the output is the
    /// same).
    #[command(flatten)]
    speculative: super::sampling::SpeculativeArgs,
}

/// What the run is over.
enum Task {
    Suite(Suite),
    Bfcl(PathBuf, Vec<bfcl::BfclCase>),
}

/// Everything checked before anything runs.
struct Plan {
    task: Task,
    variants: Vec<Variant>,
    gate: Option<Vec<gate::Condition>>,
    opts: EvalOptions,
}

/// Reads the arguments into a plan; an error here is a usage error (exit 2).
fn prepare(a: &EvalArgs) -> anyhow::Result<Plan> {
    let variants = a
        .variants
        .iter()
        .map(|v| Variant::parse(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut names = std::collections::HashSet::new();
    for v in &variants {
        if !names.insert(v.name.as_str()) {
            anyhow::bail!("two variants are called {:?}", v.name);
        }
    }
    let gate = a.gate.as_deref().map(gate::parse).transpose()?;
    let task = match (&a.suite, &a.bfcl) {
        (Some(s), _) => {
            let mut suite = Suite::load(s)?;
            if let Some(p) = &a.policy {
                suite.policy = p.clone();
            }
            if let Some(w) = &a.workspace {
                suite.workspace = w.clone();
            }
            Task::Suite(suite)
        }
        (None, Some(q)) => Task::Bfcl(q.clone(), bfcl::load(q, a.answers.as_deref())?),
        (None, None) => anyhow::bail!("give --suite FILE or --bfcl QUESTIONS.json"),
    };
    if a.repeat == 0 {
        anyhow::bail!("--repeat must be at least 1");
    }
    let log_dir = match &a.log_dir {
        Some(d) => d.clone(),
        None => WardenPaths::from_env()
            .state_dir
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no state directory: set WARDEN_STATE_DIR or HOME, or pass --log-dir"
                )
            })?
            .join("evals"),
    };
    let opts = EvalOptions {
        limit: a.limit,
        repeat: a.repeat,
        max_tokens: a.max_tokens,
        log_dir,
        device: parse_device(&a.device)?,
        speculative: a.speculative.mode()?,
        draft_model: a.speculative.draft_model.clone(),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        chat_template: a.chat_template.clone(),
        api_key: a
            .api_key_file
            .as_deref()
            .map(crate::session::remote::read_key)
            .transpose()?,
        tool_choice: a.tool_choice.clone(),
    };
    Ok(Plan {
        task,
        variants,
        gate,
        opts,
    })
}

/// Runs `warden eval`: 0, 1 when the gate fails or the run does, 2 for a
/// usage error.
pub fn eval(a: EvalArgs) -> ExitCode {
    let Plan {
        task,
        variants,
        gate,
        opts,
    } = match prepare(&a) {
        Ok(p) => p,
        Err(e) => {
            print_error(&format!("{e:#}"));
            return ExitCode::from(2);
        }
    };
    if let Task::Suite(s) = &task {
        if let Err(e) = announce_grants(s, a.policy.is_some()) {
            print_error(&format!("{e:#}"));
            return ExitCode::from(2);
        }
    }
    let (title, runs) = match &task {
        Task::Suite(s) => (
            format!("warden eval: {}", s.path.display()),
            run_suite(s, &variants, &opts),
        ),
        Task::Bfcl(q, cases) => (
            format!("warden eval: BFCL {}", q.display()),
            run_bfcl(q, cases, &variants, &opts),
        ),
    };
    let runs = match runs {
        Ok(r) => r,
        Err(e) => {
            print_error(&format!("{e:#}"));
            return ExitCode::FAILURE;
        }
    };
    out!("{}", table(&runs));
    let misses = gate
        .as_ref()
        .map(|g| {
            let metrics: Vec<_> = runs
                .iter()
                .map(|r| (r.name.clone(), r.metrics.clone()))
                .collect();
            gate::check(g, &metrics)
        })
        .unwrap_or_default();
    let written = (|| -> anyhow::Result<()> {
        if let Some(path) = &a.json {
            let doc = serde_json::json!({"variants": runs, "gate": a.gate, "gate_misses": misses});
            crate::outputs::write(path, &serde_json::to_vec_pretty(&doc)?)?;
        }
        if let Some(path) = &a.html {
            let verdict = a.gate.as_deref().map(|g| html::GateVerdict {
                gate: g,
                misses: &misses,
            });
            crate::outputs::write(path, html::page(&title, &runs, verdict).as_bytes())?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        print_error(&format!("{e:#}"));
        return ExitCode::FAILURE;
    }
    for r in &runs {
        outln!(
            "log of {}: {}",
            escape(&r.name, Lines::One),
            escape(&r.log.display().to_string(), Lines::One)
        );
    }
    if !misses.is_empty() {
        for m in &misses {
            let got = m
                .actual
                .map_or("not measured".to_string(), |x| format!("{x:.3}"));
            outln!(
                "gate failed: variant {} has {got}, needs {}",
                escape(&m.variant, Lines::One),
                escape(&m.condition.to_string(), Lines::One)
            );
        }
        return ExitCode::FAILURE;
    }
    if gate.is_some() {
        outln!(
            "gate passed: every variant meets {}",
            a.gate.as_deref().unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}

/// Says, before anything runs, which policy the suite runs under and what
/// it may write: a suite file names its own policy and workspace, so
/// running someone else's suite means running under their grants unless
/// `--policy` overrides them.
fn announce_grants(suite: &Suite, overridden: bool) -> anyhow::Result<()> {
    let policy = crate::policy::Policy::load(&suite.policy, &suite.workspace)?;
    let one = |s: String| escape(&s, Lines::One).into_owned();
    eprintln!(
        "policy: {} ({}), workspace {}",
        one(suite.policy.display().to_string()),
        if overridden {
            "from --policy"
        } else {
            "named by the suite; --policy overrides it"
        },
        one(suite.workspace.display().to_string())
    );
    let mut rw = Vec::new();
    for t in policy.tools.values() {
        for m in &t.mounts {
            if m.mode == crate::policy::Mode::ReadWrite {
                rw.push(format!(
                    "  read-write: {} (as {} for {})",
                    one(m.host.display().to_string()),
                    one(m.guest.clone()),
                    one(t.name.clone())
                ));
            }
        }
    }
    if rw.is_empty() {
        eprintln!("  no read-write mounts");
    } else {
        for line in rw {
            eprintln!("{line}");
        }
    }
    for s in policy.mcp.values() {
        eprintln!(
            "  MCP server {}: {}",
            one(s.name.clone()),
            one(s.describe())
        );
    }
    Ok(())
}

/// The side-by-side table: metrics down, variants across.
///
/// Every name in it (variants, tools from a suite or BFCL file, failure
/// kinds) is data and is escaped for the terminal.
fn table(runs: &[VariantRun]) -> String {
    let one = |s: &str| escape(s, Lines::One).into_owned();
    let width = runs
        .iter()
        .map(|r| one(&r.name).chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    let tools: std::collections::BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.metrics.by_tool.keys().cloned())
        .collect();
    let label_width = tools
        .iter()
        .map(|t| "argument_accuracy[]".len() + one(t).chars().count())
        .max()
        .unwrap_or(0)
        .max(20);
    let mut out = format!("{:<label_width$}", "");
    for r in runs {
        out += &format!(" {:>width$}", one(&r.name));
    }
    out.push('\n');
    let mut row = |label: &str, cell: &dyn Fn(&VariantRun) -> String| {
        out += &format!("{:<label_width$}", one(label));
        for r in runs {
            out += &format!(" {:>width$}", one(&cell(r)));
        }
        out.push('\n');
    };
    row("cases", &|r| {
        format!("{}/{}", r.metrics.passed, r.metrics.cases)
    });
    for m in METRICS {
        row(m, &|r| match r.metrics.get(m) {
            None => "-".into(),
            Some(x) if html::is_rate(m) => {
                format!("{:.1}%", x * 100.0)
            }
            Some(x) => format!("{x:.1}"),
        });
    }
    // The same two rates over the cases that expect each tool.
    for t in &tools {
        for m in ["tool_accuracy", "argument_accuracy"] {
            let name = format!("{m}[{t}]");
            row(&name, &|r| match r.metrics.get(&name) {
                None => "-".into(),
                Some(x) => format!("{:.1}%", x * 100.0),
            });
        }
    }
    let kinds: std::collections::BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.metrics.failures.keys().cloned())
        .collect();
    for k in kinds {
        row(&format!("failed: {k}"), &|r| {
            r.metrics.failures.get(&k).copied().unwrap_or(0).to_string()
        });
    }
    out
}
