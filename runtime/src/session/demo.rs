//! `warden demo`'s files and its live run: the examples directory (found
//! under the current directory, else where warden was built), the seed's
//! tasks, and running them one fresh task each on a real model.

use super::setup::SessionSetup;
use super::{CandleBackend, Event, Session, SessionOptions, TurnReport};
use crate::model::{LoadedModel, SamplingParams};
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The shipped tiny agent: its base model file and its adapter directory,
/// under `examples/`.
pub const TINY_AGENT_BASE: &str = "models/tiny-agent/tiny-agent.gguf";
/// See [`TINY_AGENT_BASE`].
pub const TINY_AGENT_ADAPTER: &str = "models/tiny-agent/run-command";
/// The SmolLM2 tool-caller's adapter (and its template), under `examples/`.
pub const SMOLLM2_AGENT_ADAPTER: &str = "models/smollm2-agent/adapter";
/// The base the SmolLM2 tool-caller was trained on: the file
/// `runtime/tests/models/fetch.sh` puts in the test-model cache.
pub const SMOLLM2_BASE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// That file's sha256.
pub const SMOLLM2_BASE_SHA256: &str =
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The recorded demo session, under `examples/`.
pub const RECORDING: &str = "sessions/demo.jsonl";
/// The seed's tasks, one per line, under `examples/`.
pub const TASKS: &str = "sessions/demo-users.txt";

/// Where the demo's files are.
#[derive(Debug, Clone)]
pub struct Examples {
    /// The `examples/` directory.
    pub dir: PathBuf,
    /// Whether it is the one warden was built from (none under the current
    /// directory).
    pub from_build: bool,
}

impl Examples {
    /// `examples/` under the current directory, else the one beside the
    /// sources warden was built from.
    pub fn find() -> anyhow::Result<Examples> {
        let here = PathBuf::from("examples");
        if here.join(RECORDING).exists() {
            return Ok(Examples {
                dir: here,
                from_build: false,
            });
        }
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        if built.join(RECORDING).exists() {
            return Ok(Examples {
                dir: built.canonicalize().unwrap_or(built),
                from_build: true,
            });
        }
        anyhow::bail!(
            "cannot find examples/{RECORDING}; run `warden demo` from the warden repository"
        )
    }

    /// The repository root (policies live under it).
    pub fn root(&self) -> PathBuf {
        self.dir.parent().unwrap_or(Path::new("")).to_path_buf()
    }

    /// The demo's workspace.
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }
}

/// The live demo, resolved: which model, adapters, policy and tasks.
#[derive(Debug, Clone)]
pub struct LiveDemo {
    /// The model spec.
    pub model: String,
    /// Adapters applied unfused.
    pub adapters: Vec<PathBuf>,
    /// The policy.
    pub policy: PathBuf,
    /// The workspace.
    pub workspace: PathBuf,
    /// The seed's tasks.
    pub tasks: Vec<String>,
    /// Why this model: where the SmolLM2 base was looked for and what was
    /// found (empty when `--model` chose it).
    pub why: String,
}

/// The test-model cache: `$WARDEN_TEST_MODELS`, else
/// `$XDG_CACHE_HOME/warden/test-models`, else `~/.cache/warden/test-models`
/// (where `runtime/tests/models/fetch.sh` puts files; warden never
/// downloads).
pub fn test_model_cache() -> Option<PathBuf> {
    std::env::var_os("WARDEN_TEST_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("warden/test-models"))
        })
}

/// The SmolLM2 base in the test-model cache, if it is there with the right
/// sha256; else why not (naming where it looked).
fn smollm2_base() -> Result<PathBuf, String> {
    let Some(cache) = test_model_cache() else {
        return Err("no test-model cache (neither WARDEN_TEST_MODELS nor HOME is set)".into());
    };
    let path = cache.join(SMOLLM2_BASE);
    if !path.is_file() {
        return Err(format!(
            "{} is not there (runtime/tests/models/fetch.sh fetches it)",
            path.display()
        ));
    }
    let sum = crate::audit::sha256_file(&path).map_err(|e| format!("{e:#}"))?;
    if sum != SMOLLM2_BASE_SHA256 {
        return Err(format!(
            "{} is not the file the adapter was trained on (sha256 {sum}); runtime/tests/models/fetch.sh replaces it",
            path.display()
        ));
    }
    Ok(path)
}

impl LiveDemo {
    /// The live demo with the given overrides. By default the SmolLM2
    /// tool-caller (its base from the test-model cache, its adapter from
    /// `examples/`) when the base is there, else the shipped tiny agent
    /// (base and adapter); under `policies/coding-agent.toml`.
    pub fn plan(
        examples: &Examples,
        model: Option<String>,
        adapters: Vec<PathBuf>,
        policy: Option<PathBuf>,
    ) -> anyhow::Result<LiveDemo> {
        let smollm2 = examples.dir.join(SMOLLM2_AGENT_ADAPTER);
        let (model, adapters, why) = match model {
            Some(m) => (m, adapters, String::new()),
            None => match smollm2_base() {
                Ok(base) if smollm2.is_dir() => {
                    let why = format!("the SmolLM2 base was found at {}", base.display());
                    let adapters = if adapters.is_empty() {
                        vec![smollm2]
                    } else {
                        adapters
                    };
                    (base.display().to_string(), adapters, why)
                }
                found => {
                    let why = match found {
                        Err(why) => format!("{why}; using the tiny agent"),
                        Ok(_) => {
                            format!("{} is not there; using the tiny agent", smollm2.display())
                        }
                    };
                    let base = examples.dir.join(TINY_AGENT_BASE);
                    if !base.exists() {
                        anyhow::bail!(
                        "{} is not there; pass --model, or reproduce it with examples/models/tiny-agent/reproduce.sh",
                        base.display()
                    );
                    }
                    let adapters = if adapters.is_empty() {
                        vec![examples.dir.join(TINY_AGENT_ADAPTER)]
                    } else {
                        adapters
                    };
                    (base.display().to_string(), adapters, why)
                }
            },
        };
        let tasks = std::fs::read_to_string(examples.dir.join(TASKS))
            .with_context(|| format!("cannot read examples/{TASKS}"))?
            .lines()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        Ok(LiveDemo {
            model,
            adapters,
            policy: policy.unwrap_or_else(|| examples.root().join("policies/coding-agent.toml")),
            workspace: examples.workspace(),
            tasks,
            why,
        })
    }

    /// Loads the model and runs each task as a fresh task of one session
    /// (greedy, 512 tokens per generation) set up by `setup`; calls
    /// `on_task` before each task and `on_done` after it. The log's path.
    pub fn run(
        &self,
        setup: SessionSetup,
        cancel: Arc<AtomicBool>,
        on_task: &mut dyn FnMut(&str),
        on_event: &mut dyn FnMut(Event<'_>),
        on_done: &mut dyn FnMut(&TurnReport),
    ) -> anyhow::Result<PathBuf> {
        let mut loaded = LoadedModel::load(&self.model, &candle_core::Device::Cpu, None, true)?;
        loaded.apply_adapters(&self.adapters)?;
        let params = SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        };
        let backend = Box::new(CandleBackend::new(loaded, params)?);
        let opts = SessionOptions {
            max_tokens: 512,
            ..setup.opts
        };
        let mut session = Session::start(&setup.host, backend, setup.log.create()?, opts, cancel)?;
        for task in &self.tasks {
            on_task(task);
            session.new_task();
            let r = session.turn(task, on_event)?;
            on_done(&r);
        }
        session.end("demo")
    }
}
