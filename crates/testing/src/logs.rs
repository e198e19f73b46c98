//! Logs in tests: silent by default, on the test output with `TEST_LOG`, captured where a test
//! asserts on them.
//!
//! - `TEST_LOG` unset: no subscriber, tests print nothing.
//! - `TEST_LOG=<filter>` (an `EnvFilter` directive: `info`, `checkout=debug,info`): every
//!   [`TestFleet`](crate::TestFleet) prints its services' logs to the test output (shown for a
//!   failing test, or always with `--nocapture`), and [`capture`] echoes what it captures there.
//!
//! A test that asserts on log lines uses [`capture`]: a thread-local subscriber, on a
//! `current_thread` runtime so that the in-process fleet's tasks log through it. Such a test
//! needs a test binary of its own: tracing caches each callsite's interest process-wide, and
//! tests running meanwhile on other threads without that subscriber make it miss events now and
//! then.

use std::io::{self, IsTerminal};
use std::sync::{Arc, Once};

use mall_common::config::TelemetrySettings;
use parking_lot::Mutex;
use tracing::Level;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The variable that turns test logging on, with its filter as value.
pub const TEST_LOG: &str = "TEST_LOG";

/// Installs the `TEST_LOG` subscriber once per test binary, if the variable is set.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var(TEST_LOG) {
            // A capturing test binary may already have its own; then it stays.
            let _ = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new(filter))
                .with_ansi(std::io::stderr().is_terminal())
                .with_test_writer()
                .try_init();
        }
    });
}

/// How captured lines are formatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line, with the current span (fields such as `request_id` and
    /// `grpc.timeout_ms` come from the server's request span).
    Json,
    /// Plain text without colour codes.
    Text,
}

/// Log lines captured in memory, for as long as the [`Capture`] lives.
pub struct Capture {
    lines: Lines,
    /// The thread-local default while capturing one thread; `None` for the global one.
    _guard: Option<DefaultGuard>,
}

/// The in-memory sink (a `MakeWriter`): every writer appends to one buffer.
#[derive(Clone)]
struct Lines {
    buf: Arc<Mutex<Vec<u8>>>,
    echo: bool,
}

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.lock().extend_from_slice(buf);
        if self.echo {
            // `eprint!` rather than `io::stderr()`: the test harness captures it.
            eprint!("{}", String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every event up to `max_level` on this thread, in `format`, until the returned
/// [`Capture`] is finished or dropped.
pub fn capture(format: Format, max_level: Level) -> Capture {
    let lines = Lines {
        buf: Arc::default(),
        echo: std::env::var_os(TEST_LOG).is_some(),
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(max_level)
        .with_writer(lines.clone());
    let guard = match format {
        Format::Json => {
            tracing::subscriber::set_default(builder.json().with_current_span(true).finish())
        }
        Format::Text => tracing::subscriber::set_default(builder.with_ansi(false).finish()),
    };
    Capture {
        lines,
        _guard: Some(guard),
    }
}

/// Captures every thread's events through the platform's own subscriber
/// ([`mall_common::telemetry::subscriber`]) made from `settings`, installed as the process's
/// global default as the services install it: with `settings.otlp_endpoint` set, this installs
/// the process's trace export, and JSON lines carry `trace_id` and `span_id`. `RUST_LOG`
/// overrides the filter. Once per process (a test binary of its own): a global subscriber
/// cannot be replaced, so a second call panics.
///
/// Global, not this thread's: spans entered or dropped on other threads (SQLite's connection
/// threads hold the current span of each command they run) must reach the same subscriber, or
/// their parents are never closed and never exported.
pub fn capture_platform(process: &str, settings: &TelemetrySettings) -> Capture {
    let lines = Lines {
        buf: Arc::default(),
        echo: std::env::var_os(TEST_LOG).is_some(),
    };
    let subscriber = mall_common::telemetry::subscriber(process, settings, lines.clone(), false);
    tracing::subscriber::set_global_default(subscriber)
        .expect("capture_platform is called once per process");
    Capture {
        lines,
        _guard: None,
    }
}

impl Capture {
    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.lines.buf.lock().clone()).expect("log lines are UTF-8")
    }

    /// Stops capturing and returns everything captured.
    pub fn finish(self) -> String {
        self.text()
    }
}
