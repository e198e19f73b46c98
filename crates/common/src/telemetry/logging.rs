//! The process-wide tracing subscriber: the log lines, and with trace export on, the
//! OpenTelemetry layer and the `trace_id`/`span_id` of JSON lines.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layer, Layered, SubscriberExt as _};
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt as _;

use super::trace;
use crate::config::{LogFormat, TelemetrySettings};

/// The subscriber every layer sits on: the registry behind the global filter.
type Filtered = Layered<EnvFilter, Registry>;
type BoxedLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// Installs the global tracing subscriber once (later calls, as in tests and the fleet, keep
/// the first) and, when `settings` name an OTLP endpoint, the trace export of the process,
/// reporting spans of no service as `process`. Call it inside the Tokio runtime; end the
/// process with [`trace::shutdown`](super::trace::shutdown) so the last spans leave.
pub fn init(process: &str, settings: &TelemetrySettings) {
    let ansi = std::io::stdout().is_terminal();
    let _ = subscriber(process, settings, std::io::stdout, ansi).try_init();
}

/// The subscriber [`init`] installs, writing to `writer` (tests capture lines with it).
pub fn subscriber<W>(
    process: &str,
    settings: &TelemetrySettings,
    writer: W,
    ansi: bool,
) -> impl Subscriber + Send + Sync + for<'a> LookupSpan<'a>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_filter));
    let export = settings
        .otlp_endpoint
        .as_deref()
        .and_then(|endpoint| trace::install(process, endpoint));
    let mut layers: Vec<BoxedLayer> = vec![fmt_layer(
        settings.log_format,
        writer,
        ansi,
        export.is_some(),
    )];
    if let Some(export) = export {
        layers.push(Box::new(
            tracing_opentelemetry::layer()
                .with_tracer(export.router())
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false),
        ));
    }
    tracing_subscriber::registry().with(filter).with(layers)
}

/// The log lines; JSON ones carry the trace and span id while traces are exported.
fn fmt_layer<W>(format: LogFormat, writer: W, ansi: bool, traced: bool) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Colour only where a person reads it: a redirected `cargo run -p mall > log` is plain.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(true)
                .with_span_list(false);
            let layer = layer.json().with_current_span(true).with_span_list(false);
            if traced {
                Box::new(layer.event_format(WithTraceIds(json)))
            } else {
                Box::new(layer)
            }
        }
        LogFormat::Compact => Box::new(layer.compact()),
        LogFormat::Pretty => Box::new(layer.pretty()),
    }
}

/// A JSON event format that adds `"trace_id"` and `"span_id"` of the current span.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let ids = ctx
            .lookup_current()
            .and_then(|span| trace::current_ids(&span.id()));
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}
