//! `GET /metrics`: Prometheus text (the `prometheus-client` crate) —
//! requests by endpoint and status, tokens, time to first token, request
//! time, tool calls per completion, and the slots and queue now.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route.
    pub endpoint: String,
    /// The HTTP status sent.
    pub status: u16,
}

/// Every series the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Requests finished, by endpoint and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Prompt tokens of completions.
    pub prompt_tokens: Counter,
    /// Prompt tokens whose cache was reused.
    pub cached_tokens: Counter,
    /// Generated tokens.
    pub completion_tokens: Counter,
    /// Time to first token, seconds.
    pub ttft: Histogram,
    /// Whole completion time, seconds.
    pub request_seconds: Histogram,
    /// Tool calls per completion.
    pub tool_calls: Histogram,
    /// Slots generating now.
    pub slots_busy: Gauge,
    /// Requests running or queued now.
    pub admitted: Gauge,
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by endpoint and status",
            requests.clone(),
        );
        let prompt_tokens = Counter::default();
        registry.register(
            "prompt_tokens",
            "Prompt tokens of chat completions",
            prompt_tokens.clone(),
        );
        let cached_tokens = Counter::default();
        registry.register(
            "cached_prompt_tokens",
            "Prompt tokens whose KV cache was reused",
            cached_tokens.clone(),
        );
        let completion_tokens = Counter::default();
        registry.register(
            "completion_tokens",
            "Generated tokens",
            completion_tokens.clone(),
        );
        let ttft = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register(
            "time_to_first_token_seconds",
            "Time to the first token",
            ttft.clone(),
        );
        let request_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        registry.register(
            "completion_seconds",
            "Chat completion time, queueing included",
            request_seconds.clone(),
        );
        let tool_calls = Histogram::new([0.0, 1.0, 2.0, 4.0, 8.0]);
        registry.register(
            "tool_calls_per_completion",
            "Tool calls returned per completion",
            tool_calls.clone(),
        );
        let slots_busy = Gauge::default();
        registry.register("slots_busy", "Slots generating now", slots_busy.clone());
        let admitted = Gauge::default();
        registry.register(
            "requests_admitted",
            "Requests running or queued now",
            admitted.clone(),
        );
        Metrics {
            registry,
            requests,
            prompt_tokens,
            cached_tokens,
            completion_tokens,
            ttft,
            request_seconds,
            tool_calls,
            slots_busy,
            admitted,
        }
    }

    /// Counts one request.
    pub fn request(&self, endpoint: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.into(),
                status,
            })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
