//! OpenTelemetry: when `--otlp URL` or `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, the spans of [`genai`] (bridged from `tracing` by
//! `tracing-opentelemetry`) and its metrics go to an OTLP/HTTP collector
//! (`URL/v1/traces`, `URL/v1/metrics`; `OTEL_EXPORTER_OTLP_PROTOCOL`
//! `http/protobuf`, the default, or `http/json`). Without either, nothing
//! is exported and the spans cost a filtered-out callsite.

pub mod genai;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// Flushes and stops the exporters when dropped (at the end of `main`).
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(t) = self.traces.take() {
            if let Err(e) = t.shutdown() {
                tracing::warn!("exporting the last spans failed: {e}");
            }
        }
        if let Some(m) = self.metrics.take() {
            if let Err(e) = m.shutdown() {
                tracing::warn!("exporting the last metrics failed: {e}");
            }
        }
    }
}

/// The collector's base URL: `otlp` (the flag), else
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; none when neither is set.
pub fn endpoint(otlp: Option<&str>) -> Option<String> {
    otlp.map(String::from)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty())
}

/// Installs the process's `tracing` subscriber: log lines on stderr as
/// `WARDEN_LOG` says (default `warn`), and, with a collector at `endpoint`,
/// the GenAI spans and metrics exported to it.
pub fn install(endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| "warn".into());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let Some(base) = endpoint else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry {
            traces: None,
            metrics: None,
        });
    };
    let protocol = match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Ok("http/json") => Protocol::HttpJson,
        Ok("http/protobuf") | Err(_) => Protocol::HttpBinary,
        Ok(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other}: warden exports http/protobuf or http/json"
        ),
    };
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "warden".into());
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http_client()?)
        .with_protocol(protocol)
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(Duration::from_secs(10))
        .build()
        .with_context(|| format!("cannot export spans to {base}"))?;
    let traces = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(http_client()?)
        .with_protocol(protocol)
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_timeout(Duration::from_secs(10))
        .build()
        .with_context(|| format!("cannot export metrics to {base}"))?;
    let metrics = SdkMeterProvider::builder()
        .with_reader(opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter).build())
        .with_resource(resource)
        .build();
    opentelemetry::global::set_meter_provider(metrics.clone());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(traces.tracer("warden"))
        .with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(genai::TARGET, tracing::Level::INFO),
        );
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(Telemetry {
        traces: Some(traces),
        metrics: Some(metrics),
    })
}

/// The exporters' HTTP client: warden's TLS roots, no proxy surprises.
fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .tls_backend_preconfigured((*crate::sandbox::tls_config()).clone())
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build the OTLP exporter's HTTP client")
}
