//! The spans and metrics warden emits, named as OpenTelemetry's GenAI
//! semantic conventions name them: `invoke_agent` per turn, `chat {model}`
//! per generation, `execute_tool {name}` per call, and the histograms
//! `gen_ai.client.token.usage`, `gen_ai.client.operation.duration` and
//! `warden.tool.call.duration`.
//!
//! Arguments and results go on spans only when
//! `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, redacted as
//! in the log.

use opentelemetry::metrics::Histogram;
use opentelemetry::KeyValue;
use std::sync::OnceLock;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of every GenAI span (what the exporter takes).
pub const TARGET: &str = "gen_ai";

/// Whether arguments and results may go on spans.
pub fn capture_content() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
    })
}

/// A turn of a session: `invoke_agent`, the parent of its generations and
/// calls.
pub fn invoke_agent(conversation: &str, model: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "invoke_agent",
        otel.name = "invoke_agent warden",
        otel.kind = "internal",
        gen_ai.operation.name = "invoke_agent",
        gen_ai.agent.name = "warden",
        gen_ai.conversation.id = conversation,
        gen_ai.request.model = model,
        warden.turn.steps = Empty,
        warden.turn.end_reason = Empty,
    )
}

/// One generation: `chat {model}`.
pub fn chat(model: &str, max_tokens: usize, temperature: Option<f32>) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "chat",
        otel.name = format!("chat {model}"),
        otel.kind = "client",
        gen_ai.operation.name = "chat",
        gen_ai.provider.name = "warden",
        gen_ai.request.model = model,
        gen_ai.request.max_tokens = max_tokens as i64,
        gen_ai.request.temperature = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty,
        warden.time_to_first_token_ms = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    if let Some(t) = temperature {
        span.record("gen_ai.request.temperature", t as f64);
    }
    span
}

/// What a finished generation reports on its `chat` span and in the
/// metrics.
pub struct ChatDone<'a> {
    /// The model's name.
    pub model: &'a str,
    /// Prompt tokens (reused ones included).
    pub input_tokens: u64,
    /// Of those, read from the cache.
    pub cached_tokens: u64,
    /// Tokens written.
    pub output_tokens: u64,
    /// `stop`, `length`, `tool_calls`, `cancelled`.
    pub finish_reason: &'a str,
    /// Time to the first token.
    pub ttft_ms: f64,
    /// The whole generation.
    pub seconds: f64,
}

/// Records `d` on `span` (a [`chat`] span) and in the metrics.
pub fn chat_done(span: &Span, d: &ChatDone<'_>) {
    // As i64: tracing-opentelemetry writes a u64 as a string, and the
    // conventions want ints.
    span.record("gen_ai.usage.input_tokens", d.input_tokens as i64);
    span.record("gen_ai.usage.output_tokens", d.output_tokens as i64);
    span.record(
        "gen_ai.usage.cache_read.input_tokens",
        d.cached_tokens as i64,
    );
    span.record("warden.time_to_first_token_ms", d.ttft_ms);
    span.set_attribute(
        "gen_ai.response.finish_reasons",
        opentelemetry::Value::Array(
            vec![opentelemetry::StringValue::from(
                d.finish_reason.to_string(),
            )]
            .into(),
        ),
    );
    let m = metrics();
    let attrs = |kind: &'static str| {
        vec![
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "warden"),
            KeyValue::new("gen_ai.request.model", d.model.to_string()),
            KeyValue::new("gen_ai.token.type", kind),
        ]
    };
    m.tokens.record(d.input_tokens, &attrs("input"));
    m.tokens.record(d.output_tokens, &attrs("output"));
    m.duration.record(
        d.seconds,
        &[
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "warden"),
            KeyValue::new("gen_ai.request.model", d.model.to_string()),
        ],
    );
}

/// Marks `span` failed with `kind` (`error.type`).
pub fn failed(span: &Span, kind: &str) {
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
}

/// One tool call: `execute_tool {name}`.
pub fn execute_tool(name: &str, call_id: &str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "execute_tool",
        otel.name = format!("execute_tool {name}"),
        otel.kind = "internal",
        gen_ai.operation.name = "execute_tool",
        gen_ai.tool.name = name,
        gen_ai.tool.type = "function",
        gen_ai.tool.call.id = call_id,
        gen_ai.tool.call.arguments = Empty,
        gen_ai.tool.call.result = Empty,
        warden.policy.decision = Empty,
        warden.policy.rule = Empty,
        warden.tool.output_bytes = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    )
}

/// What a finished call reports on its [`execute_tool`] span and in the
/// metrics; `content` is its (already redacted) arguments and result, put
/// on the span only under [`capture_content`].
pub fn tool_done(
    span: &Span,
    name: &str,
    decision: &str,
    rule: &str,
    outcome: &str,
    output_bytes: usize,
    seconds: f64,
    content: impl FnOnce() -> (String, String),
) {
    span.record("warden.policy.decision", decision);
    span.record("warden.policy.rule", rule);
    span.record("warden.tool.output_bytes", output_bytes as i64);
    if outcome != "ok" {
        failed(span, outcome);
    }
    if capture_content() {
        let (args, result) = content();
        span.record("gen_ai.tool.call.arguments", args.as_str());
        span.record("gen_ai.tool.call.result", result.as_str());
    }
    metrics().tool.record(
        seconds,
        &[
            KeyValue::new("gen_ai.tool.name", name.to_string()),
            KeyValue::new("warden.policy.decision", decision.to_string()),
            KeyValue::new(
                "error.type",
                if outcome == "ok" {
                    "".to_string()
                } else {
                    outcome.to_string()
                },
            ),
        ],
    );
}

struct Metrics {
    tokens: Histogram<u64>,
    duration: Histogram<f64>,
    tool: Histogram<f64>,
}

/// The instruments, made at first use (after the meter provider is set).
fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let meter = opentelemetry::global::meter("warden");
        Metrics {
            tokens: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Tokens used per generation, by gen_ai.token.type")
                .build(),
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("Time of each generation")
                .build(),
            tool: meter
                .f64_histogram("warden.tool.call.duration")
                .with_unit("s")
                .with_description("Time of each tool call, refused ones included")
                .build(),
        }
    })
}
