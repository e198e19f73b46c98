//! The process-wide tracing subscriber: the log lines, and with trace export on, the
//! OpenTelemetry layer and the `trace_id`/`span_id` of JSON lines.

use std::fmt;
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};

use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Layer, SubscriberExt as _};
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::{lines, trace};
use crate::config::{LogFormat, TelemetrySettings};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The spans the OpenTelemetry layer sees, whatever the log filter: a quiet log
/// (`telemetry.log_filter=warn`) keeps its traces.
const TRACE_SPAN_LEVEL: Level = Level::INFO;
/// The events it records on them: warnings and errors (the per-RPC `info` lines are already
/// the span's own attributes).
const TRACE_EVENT_LEVEL: Level = Level::WARN;

/// What the OpenTelemetry layer sees (see [`TRACE_SPAN_LEVEL`], [`TRACE_EVENT_LEVEL`]).
fn traced(meta: &tracing::Metadata<'_>) -> bool {
    let level = if meta.is_span() {
        TRACE_SPAN_LEVEL
    } else {
        TRACE_EVENT_LEVEL
    };
    *meta.level() <= level
}

/// The handle of the log filter of the first subscriber made ([`set_log_filter`]).
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Replaces the log lines' filter of the process (`telemetry.log_filter` changed in the config
/// centre); the filter's syntax error when it does not parse. Traces are not affected.
pub fn set_log_filter(filter: &str) -> Result<(), String> {
    let parsed = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    match FILTER.get() {
        Some(handle) => handle.reload(parsed).map_err(|e| e.to_string()),
        None => Err("no subscriber installed".into()),
    }
}

/// Installs the global tracing subscriber once (later calls, as in tests and the fleet, keep
/// the first) and, when `settings` name an OTLP endpoint, the trace export of the process,
/// reporting spans of no service as `process`. Call it inside the Tokio runtime; end the
/// process with [`trace::shutdown`](super::trace::shutdown) so the last spans leave (and the
/// last log lines: stdout gets them in batches, see [`super::flush_logs`]).
pub fn init(process: &str, settings: &TelemetrySettings) {
    let ansi = std::io::stdout().is_terminal();
    // Lines go out in batches (see `lines`); a panic writes what waits before its message.
    if subscriber(process, settings, lines::BatchedStdout, ansi)
        .try_init()
        .is_ok()
    {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            lines::flush();
            previous(info);
        }));
    }
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
        .and_then(|endpoint| trace::install(process, endpoint, settings.flush_timeout));
    // (An `Option` of a layer does not pass `on_register_dispatch` on, so the slot is always
    // there, behind a filter that wants nothing: a layer without one would enable every
    // callsite, debug and trace included. Without export it is never read.)
    let slot = DispatchSlot::default();
    let lines = fmt_layer(
        settings.log_format,
        writer,
        ansi,
        export.as_ref().map(|_| slot.clone()),
    );
    let (filter, handle) = reload::Layer::new(filter);
    let _ = FILTER.set(handle);
    let mut layers: Vec<BoxedLayer> = vec![Box::new(lines.with_filter(filter))];
    if let Some(export) = export {
        layers.push(Box::new(
            tracing_opentelemetry::layer()
                .with_tracer(export.router())
                .with_location(false)
                .with_threads(false)
                .with_tracked_inactivity(false)
                .with_filter(filter_fn(traced)),
        ));
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(slot.with_filter(filter_fn(|_| false)))
}

/// The log lines; JSON ones carry the trace and span id while traces are exported (`slot`).
fn fmt_layer<W>(format: LogFormat, writer: W, ansi: bool, slot: Option<DispatchSlot>) -> BoxedLayer
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
            match slot {
                Some(slot) => Box::new(layer.event_format(WithTraceIds { inner: json, slot })),
                None => Box::new(layer),
            }
        }
        LogFormat::Compact => Box::new(layer.compact()),
        LogFormat::Pretty => Box::new(layer.pretty()),
    }
}

/// The subscriber's own dispatch, kept as it is registered: an event formatter runs inside the
/// subscriber, where `tracing::dispatcher::get_default` answers a no-op dispatch.
#[derive(Clone, Default)]
struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// A JSON event format that adds `"trace_id"` and `"span_id"` of the current span.
struct WithTraceIds<F> {
    inner: F,
    slot: DispatchSlot,
}

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
        let dispatch = self.slot.0.get().and_then(WeakDispatch::upgrade);
        let ids = ctx
            .lookup_current()
            .zip(dispatch)
            .and_then(|(span, dispatch)| trace::span_ids(&span.id(), &dispatch));
        let Some((trace_id, span_id)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}
