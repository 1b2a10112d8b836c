//! Logging and, when an OTLP endpoint is configured, OpenTelemetry traces:
//! the `tracing` subscriber the server runs with, W3C `traceparent` in
//! (from the app) and out (to each upstream a step calls), and the trace
//! id on the request span so JSON log lines carry it.
//!
//! Spans Baton makes: `http` (a request), `baton.start` / `baton.submit`
//! (the service, around the engine), `engine.submit`, `store.commit`,
//! `step` (a backend step's task) and `http.client` (each upstream call).

use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::LogFormat;

/// How long the last spans may take to leave at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the exporter alive; [`Tracing::shutdown`] sends what is buffered.
pub struct Tracing {
    provider: Option<SdkTracerProvider>,
}

impl Tracing {
    /// Flushes and stops the exporter (a no-op without one).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            eprintln!("baton: sending the last traces failed: {e}");
        }
    }
}

/// Installs the process's subscriber: log lines in `format`, filtered by
/// `BATON_LOG` (default `info`), and with `otlp` (an OTLP/HTTP base URL
/// such as `http://127.0.0.1:4318`) Baton's spans exported to
/// `{otlp}/v1/traces`, whatever the log filter says.
pub fn init(format: LogFormat, otlp: Option<&str>) -> Result<Tracing, String> {
    let mut filter = log_filter(std::env::var("BATON_LOG").ok().as_deref())?;
    if otlp.is_some() {
        // The request span (debug, so free when unused) carries `trace_id`:
        // with traces on, log lines need it, so the log layer keeps it.
        filter = filter.add_directive(
            "baton::api::http=debug"
                .parse()
                .expect("a static directive"),
        );
    }
    // Colours only for a person at a terminal: a file or a log collector
    // gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let text = matches!(format, LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_filter(filter.clone())
    });
    let json = matches!(format, LogFormat::Json)
        .then(|| tracing_subscriber::fmt::layer().json().with_filter(filter));
    let (provider, otel) = match otlp {
        None => (None, None),
        Some(base) => {
            let endpoint = format!("{}/v1/traces", base.trim_end_matches('/'));
            let exporter = SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| format!("the OTLP exporter for {base}: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name("baton").build())
                .build();
            let tracer = provider.tracer("baton");
            // Baton's own spans, at every level, whatever the log filter.
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(Targets::new().with_target("baton", tracing::Level::DEBUG));
            (Some(provider), Some(layer))
        }
    };
    tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(otel)
        .try_init()
        .map_err(|e| format!("installing the log subscriber: {e}"))?;
    Ok(Tracing { provider })
}

/// The log filter `BATON_LOG` names, `info` when it is unset or empty. A
/// filter that does not parse stops start-up: falling back to `info` would
/// hide the very lines the operator asked for.
fn log_filter(spec: Option<&str>) -> Result<EnvFilter, String> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(EnvFilter::new("info")),
        Some(spec) => EnvFilter::builder().parse(spec).map_err(|e| {
            format!(
                "BATON_LOG={spec:?} is not a log filter ({e}); \
                 hint: a level (`debug`) or comma-separated `target=level` \
                 directives (`info,baton::store=debug`)"
            )
        }),
    }
}

/// Makes `span` a child of the trace an incoming request names in its
/// `traceparent` header (if any), and records the trace id on it, so every
/// log line in the request carries `trace_id`. Without an exporter it does
/// nothing.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// The `traceparent` (and `tracestate`) headers that make an upstream's
/// own spans children of the current span; empty without an exporter.
pub fn outgoing_headers() -> axum::http::HeaderMap {
    let mut headers = axum::http::HeaderMap::new();
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn an_unparseable_log_filter_is_refused_not_replaced() {
        let e = log_filter(Some("baton=nonsense")).unwrap_err();
        assert!(e.contains("BATON_LOG=\"baton=nonsense\""), "{e}");
        assert!(e.contains("hint:"), "{e}");
        assert_eq!(log_filter(None).unwrap().to_string(), "info");
        assert_eq!(log_filter(Some("  ")).unwrap().to_string(), "info");
        assert_eq!(
            log_filter(Some("info,baton::store=debug"))
                .unwrap()
                .to_string(),
            "baton::store=debug,info"
        );
    }
}
