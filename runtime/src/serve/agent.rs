//! Agent mode (`warden serve --policy`): the policy's tools are offered to
//! the model beside the client's; calls of the policy's tools run here, in
//! the sandbox under the policy, exactly as a session runs them (it is a
//! [`Session`]), audited in one log per conversation; their results go back
//! to the model until it answers or calls a client tool. The response
//! carries every server-side call in `warden.tool_calls`.
//!
//! A conversation is known by its opening (system and first user message,
//! and the request's `user`): a request that extends the messages the last
//! one returned continues its session and log; any other starts over from
//! the client's messages in the same log.

use super::api::Checked;
use super::engine::{Engine, Event, Grammars, Outcome};
use super::error::ApiError;
use super::pool::Pool;
use crate::audit::{self, AuditKey};
use crate::chat::{ChatTemplate, Message};
use crate::model::{self, SamplingParams};
use crate::policy::Policy;
use crate::sandbox::ToolHost;
use crate::session::setup::PendingLog;
use crate::session::{self, EndReason, Session, SessionOptions};
use crate::session::{Backend, Generated};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokenizers::Tokenizer;

/// Conversations kept at once; past it the least recently used one ends
/// (its log gets `session_end` with reason `evicted`).
pub const MAX_CONVERSATIONS: usize = 64;

/// What agent mode needs: the policy and its tools, where logs go.
pub struct Agent {
    host: &'static ToolHost,
    policy: Policy,
    policy_file: PathBuf,
    workspace: PathBuf,
    log_dir: PathBuf,
    key: Option<AuditKey>,
    conversations: Mutex<HashMap<String, Arc<Mutex<Conversation>>>>,
}

/// One conversation's session.
struct Conversation {
    session: Session<'static>,
    settings: Arc<Mutex<Settings>>,
    /// Client messages the session has seen (the reply it returned after
    /// them is in its history too).
    seen: usize,
    last_used: Instant,
    log: PathBuf,
}

/// Per-request settings the backend reads.
#[derive(Clone)]
struct Settings {
    params: SamplingParams,
    stop: Vec<String>,
}

impl Agent {
    /// Loads `policy_file` for `workspace` and its tools; logs go to
    /// `log_dir`, keyed with `key` when given.
    pub fn load(
        policy_file: &Path,
        workspace: &Path,
        log_dir: PathBuf,
        key: Option<AuditKey>,
    ) -> anyhow::Result<Agent> {
        let policy = Policy::load(policy_file, workspace)?;
        policy.refuse_log_in_mounts(&log_dir.join("x.jsonl"), "choose another --log-dir")?;
        let host = ToolHost::load(&policy).map_err(|e| anyhow::anyhow!("{e}"))?;
        // The server keeps its tools for as long as it runs.
        let host: &'static ToolHost = Box::leak(Box::new(host));
        Ok(Agent {
            host,
            policy,
            policy_file: policy_file.to_path_buf(),
            workspace: workspace.to_path_buf(),
            log_dir,
            key,
            conversations: Mutex::new(HashMap::new()),
        })
    }

    /// The names of the tools that run server-side.
    pub fn tool_names(&self) -> Vec<String> {
        self.host.tools().map(|t| t.spec.name.clone()).collect()
    }

    /// Ends every conversation's log (at shutdown).
    pub fn close(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, c)| c).collect();
        for c in all {
            if let Ok(mut c) = c.lock() {
                let _ = c.session.end_in_place("shutdown");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Mutex<Conversation>>>> {
        self.conversations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The conversation `req` belongs to, started when new.
    fn conversation(
        &self,
        engine: &Engine,
        handle: &tokio::runtime::Handle,
        req: &Checked,
        user: Option<&str>,
    ) -> Result<Arc<Mutex<Conversation>>, ApiError> {
        let key = conversation_key(&req.messages, user);
        let mut map = self.lock();
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        if map.len() >= MAX_CONVERSATIONS {
            let oldest = map
                .iter()
                .filter_map(|(k, c)| c.try_lock().ok().map(|c| (k, c.last_used)))
                .min_by_key(|(_, t)| *t)
                .map(|(k, _)| k.clone());
            if let Some(c) = oldest.and_then(|k| map.remove(&k)) {
                // Not running (it was free a moment ago); a request that
                // took it since waits for the lock and finishes first.
                if let Ok(mut c) = c.lock() {
                    let _ = c.session.end_in_place("evicted");
                }
            }
        }
        let settings = Arc::new(Mutex::new(Settings {
            params: SamplingParams::default(),
            stop: vec![],
        }));
        let backend: Box<dyn Backend> = match &engine.replay {
            Some(r) => Box::new(r.clone()),
            None => Box::new(SlotBackend {
                pool: engine.pool.clone(),
                template: engine.template.clone(),
                tokenizer: engine.tokenizer.clone(),
                grammars: engine.vocabulary.clone(),
                settings: settings.clone(),
                handle: handle.clone(),
                model_name: engine.model_name.clone(),
            }),
        };
        let id = audit::new_session_id();
        let path = self.log_dir.join(format!("{id}.jsonl"));
        let log = PendingLog::checked(
            &self.policy,
            path.clone(),
            id,
            self.key.clone(),
            "choose another --log-dir",
        )
        .and_then(PendingLog::create)
        .map_err(|e| ApiError::internal(&e))?;
        let opts = SessionOptions {
            policy_file: Some((
                self.policy_file.display().to_string(),
                audit::sha256_file(&self.policy_file).unwrap_or_default(),
            )),
            workspace: Some(self.workspace.display().to_string()),
            ..SessionOptions::default()
        };
        let session = Session::start(
            self.host,
            backend,
            log,
            opts,
            Arc::new(AtomicBool::new(false)),
        )
        .map_err(|e| ApiError::internal(&e))?;
        let c = Arc::new(Mutex::new(Conversation {
            session,
            settings,
            seen: 0,
            last_used: Instant::now(),
            log: path,
        }));
        map.insert(key, c.clone());
        Ok(c)
    }
}

/// What identifies a conversation: its system message, its first user
/// message and the request's `user`.
fn conversation_key(messages: &[Message], user: Option<&str>) -> String {
    let system = messages.iter().find(|m| m.role == "system");
    let first = messages.iter().find(|m| m.role == "user");
    let text = json!([system.map(|m| &m.content), first.map(|m| &m.content), user]);
    audit::sha256_hex(text.to_string().as_bytes())
}

/// Generations on the server's slots: each takes a slot (the one holding
/// the longest prefix of the prompt), so tool calls run without one.
struct SlotBackend {
    pool: Arc<Pool>,
    template: ChatTemplate,
    tokenizer: Tokenizer,
    grammars: Arc<Grammars>,
    settings: Arc<Mutex<Settings>>,
    handle: tokio::runtime::Handle,
    model_name: String,
}

impl Backend for SlotBackend {
    fn describe(&self) -> Value {
        let s = self.settings.lock().map(|s| s.params.clone()).ok();
        json!({"kind": "serve", "model": self.model_name, "sampling": s})
    }

    fn template(&self) -> &ChatTemplate {
        &self.template
    }

    fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        grammar: Option<&str>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Generated> {
        let start = Instant::now();
        let settings = self
            .settings
            .lock()
            .map_err(|_| anyhow::anyhow!("the request's settings are poisoned"))?
            .clone();
        let ids = model::checkpoint::tokenize::encode(&self.tokenizer, prompt)?;
        let mut slot = self.handle.block_on(self.pool.take(&ids));
        let mut constraint = match grammar {
            Some(g) => Some(
                self.grammars
                    .constraint(&self.tokenizer, g)
                    .map_err(|e| anyhow::anyhow!("{}", e.message))?,
            ),
            None => None,
        };
        let g = model::generate_with(
            slot.model(),
            prompt,
            max_tokens,
            &settings.params,
            &settings.stop,
            constraint.as_mut(),
            |piece| {
                on_text(piece);
                !cancel.load(Ordering::Relaxed)
            },
        )?;
        Generated::of(g, cancel.load(Ordering::Relaxed), start)
    }
}

/// Runs one request in agent mode, sending deltas and then the outcome to
/// `tx`. Blocking, and on a thread outside the async runtime (`handle`
/// is how it reaches the slots): tool calls run on the sandbox's own
/// executor.
#[allow(clippy::too_many_arguments)]
pub fn run(
    agent: &Agent,
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    req: Checked,
    params: SamplingParams,
    max_tokens: usize,
    user: Option<&str>,
    cancel: Arc<AtomicBool>,
    tx: &tokio::sync::mpsc::UnboundedSender<Event>,
) -> Event {
    let r = (|| -> Result<Outcome, ApiError> {
        let conv = agent.conversation(engine, handle, &req, user)?;
        let mut c = conv
            .lock()
            .map_err(|_| ApiError::internal(&anyhow::anyhow!("the conversation is poisoned")))?;
        c.last_used = Instant::now();
        *c.settings.lock().map_err(|_| {
            ApiError::internal(&anyhow::anyhow!("the request's settings are poisoned"))
        })? = Settings {
            params,
            stop: req.stop.clone(),
        };
        // What is new since the session's last reply, or the whole
        // conversation again when the client's messages do not extend it.
        let n = req.messages.len();
        let extends = c.seen > 0 && n > c.seen + 1 && req.messages[c.seen].role == "assistant";
        let new: Vec<Message> = if extends {
            req.messages[c.seen + 1..].to_vec()
        } else {
            c.session
                .replace_messages(req.messages[..n.saturating_sub(1)].to_vec());
            req.messages[n.saturating_sub(1)..].to_vec()
        };
        c.seen = n;
        let question = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content.clone())
            .unwrap_or_default();
        {
            let o = c.session.options_mut();
            o.max_tokens = max_tokens;
            o.enable_thinking = req.enable_thinking;
            o.tool_choice = req.tool_choice.clone();
        }
        c.session.set_client_tools(req.tools.clone());
        // This request's flag: set when its client goes away, it stops the
        // generation under way.
        c.session.set_cancel(cancel.clone());
        let mut on = |ev: session::Event<'_>| {
            if let session::Event::Text(t) = ev {
                let sent = tx.send(Event::Delta {
                    content: t.to_string(),
                    reasoning: String::new(),
                });
                if sent.is_err() {
                    cancel.store(true, Ordering::SeqCst);
                }
            }
        };
        let report = c
            .session
            .turn_after(new, &question, &mut on)
            .map_err(|e| ApiError::internal(&e))?;
        let log = c.log.clone();
        Ok(outcome(&report, &log))
    })();
    match r {
        Ok(o) => Event::Done(Box::new(o)),
        Err(e) => Event::Failed(e.message),
    }
}

/// A turn in OpenAI's terms, the server-side calls in `warden`.
fn outcome(r: &session::TurnReport, log: &Path) -> Outcome {
    let tool_calls: Vec<Value> = r
        .client_calls
        .iter()
        .map(|f| {
            json!({
                "id": format!("call_{}", super::engine::random_id()),
                "type": "function",
                "function": f,
            })
        })
        .collect();
    let server: Vec<Value> = r
        .calls
        .iter()
        .map(|c| {
            json!({
                "id": c.call_id,
                "name": c.tool,
                "arguments": c.arguments,
                "decision": c.decision,
                "rule": c.rule,
                "outcome": c.outcome,
                "result": c.result,
                "elapsed_ms": c.elapsed_us as f64 / 1e3,
            })
        })
        .collect();
    let finish_reason = match r.end_reason {
        EndReason::ClientTools => "tool_calls",
        EndReason::Length => "length",
        _ => "stop",
    };
    let (cached, prefilled) = r.prefill.last().copied().unwrap_or((0, 0));
    let completion: usize = r.generations.iter().map(|g| g.decode_tokens + 1).sum();
    let ttft = r.generations.first().map_or(0.0, |g| g.ttft_ms);
    Outcome {
        content: r.answer.clone(),
        reasoning: None,
        tool_calls,
        finish_reason,
        prompt_tokens: cached + prefilled,
        cached_tokens: cached,
        completion_tokens: completion,
        cancelled: r.end_reason == EndReason::Interrupted,
        ttft_ms: ttft,
        timings: json!({
            "ttft_ms": ttft,
            "steps": r.steps,
            "model_ms": r.timings.model_ms,
            "tool_ms": r.timings.tool_ms,
            "total_ms": r.timings.total_ms,
        }),
        warden: Some(json!({
            "tool_calls": server,
            "end_reason": r.end_reason,
            "log": log,
        })),
    }
}
