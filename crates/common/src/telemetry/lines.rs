//! Log lines on their way to stdout, in batches: a server logs a line per RPC, and writing
//! each one on its own cost a `write` to the pipe per call, under stdout's lock (the other
//! worker threads waited on it: a futex wait and wake per call besides).
//!
//! Lines below `WARN` are appended to one buffer in memory and written by a flusher thread
//! [`BATCH_DELAY`] after the first line of a batch, or at once by the thread that fills the
//! buffer past [`BATCH_BYTES`]. Warnings and errors are written at once (with the lines before
//! them, in order), so they are never delayed and never lost. [`flush`] writes what waits (the
//! process's end and a panic call it): info lines of the last [`BATCH_DELAY`] of a process that
//! is killed are the only ones that can be lost.

use std::io::{self, Write};
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long the first line of a batch waits for others.
pub const BATCH_DELAY: Duration = Duration::from_millis(10);
/// A buffer this full is written at once.
pub const BATCH_BYTES: usize = 64 * 1024;

/// The process's stdout in batches (see the module docs); a `MakeWriter` for the fmt layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchedStdout;

struct Batches {
    /// Lines not written yet.
    pending: Mutex<Vec<u8>>,
    /// The flusher sleeps on it while nothing is pending.
    filled: Condvar,
    /// Held while writing, so batches reach stdout in the order they were taken.
    writing: Mutex<()>,
}

fn batches() -> &'static Batches {
    static BATCHES: OnceLock<Batches> = OnceLock::new();
    BATCHES.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("log-flusher".into())
            .spawn(run_flusher);
        if let Err(e) = started {
            // Lines are then written when a buffer fills, a warning comes or at `flush`.
            eprintln!("log flusher thread not started: {e}");
        }
        Batches {
            pending: Mutex::new(Vec::with_capacity(BATCH_BYTES)),
            filled: Condvar::new(),
            writing: Mutex::new(()),
        }
    })
}

fn run_flusher() {
    let batches = batches();
    loop {
        {
            let mut pending = batches.pending.lock();
            while pending.is_empty() {
                batches.filled.wait(&mut pending);
            }
        }
        std::thread::sleep(BATCH_DELAY);
        write_pending(batches, &[]);
    }
}

/// Writes the pending lines, then `line`, to stdout.
fn write_pending(batches: &Batches, line: &[u8]) {
    let _writing = batches.writing.lock();
    let batch = std::mem::replace(
        &mut *batches.pending.lock(),
        Vec::with_capacity(BATCH_BYTES),
    );
    let mut out = io::stdout().lock();
    // Nowhere to report a failed log write; stdout's own `println!` would panic instead.
    let _ = out.write_all(&batch);
    let _ = out.write_all(line);
    let _ = out.flush();
}

/// Writes every pending log line to stdout now.
pub fn flush() {
    write_pending(batches(), &[]);
}

/// One event's writer: the fmt layer writes each formatted event with one `write_all`.
pub struct LineWriter {
    at_once: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let batches = batches();
        if self.at_once {
            write_pending(batches, buf);
            return Ok(buf.len());
        }
        let mut pending = batches.pending.lock();
        let was_empty = pending.is_empty();
        pending.extend_from_slice(buf);
        let full = pending.len() >= BATCH_BYTES;
        drop(pending);
        if full {
            write_pending(batches, &[]);
        } else if was_empty {
            batches.filled.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Warnings and errors are written at once.
fn at_once(level: &Level) -> bool {
    *level <= Level::WARN
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { at_once: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            at_once: at_once(meta.level()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_lines_wait_and_a_warning_takes_them_along() {
        assert!(!at_once(&Level::INFO) && !at_once(&Level::DEBUG));
        assert!(at_once(&Level::WARN) && at_once(&Level::ERROR));
        let mut info = LineWriter { at_once: false };
        info.write_all(b"lines test: an info line\n").unwrap();
        let mut warning = LineWriter { at_once: true };
        warning.write_all(b"lines test: a warning\n").unwrap();
        assert!(
            batches().pending.lock().is_empty(),
            "the warning took the info line along"
        );
    }
}
