//! A tiny real SMTP server for tests: a tokio TCP server on `127.0.0.1:0` that speaks enough
//! RFC 5321 for `lettre`'s plain (non-TLS) SMTP transport and keeps every accepted message
//! (envelope and raw data) for assertions. It can be told to fail the next N `DATA` commands.
//!
//! # Covered commands
//!
//! - `EHLO` (answers `250-<name>`, `250-8BITMIME`, `250 SMTPUTF8`: no `STARTTLS`, no `AUTH`),
//!   `HELO` (`250`);
//! - `MAIL FROM:<…>` (`250`, starts a transaction; parameters after the path are ignored),
//!   `RCPT TO:<…>` (`250`; `503` without `MAIL`), `DATA` (`354`, then the message up to the
//!   lone `.` line, dot-unstuffed, `250` with a queue id; `503` without a recipient);
//! - `RSET` (`250`, drops the transaction), `NOOP` (`250`), `QUIT` (`221`, closes);
//! - anything else: `502`.
//!
//! # Failures on demand
//!
//! [`SmtpSink::fail_next_data`] makes the next N `DATA` commands answer the given code (a 4xx is
//! a transient failure a client should retry, a 5xx a permanent one): the data is still read (the
//! code is the answer to the final `.`, as a real server that refuses a message after reading
//! it), and the message is not kept. Every `DATA` (kept or refused) counts in
//! [`SmtpSink::data_attempts`].
//!
//! # Differences from a real server
//!
//! - No TLS, no AUTH, no size limit, no pipelining advertised (lettre does not need it), no
//!   address validation beyond taking what is between `<` and `>`.
//! - Lines are read up to `\n` (a bare `\n` is accepted as a line end).
//! - [`SmtpSink::stop`] stops accepting and closes nothing already open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The name the sink gives itself in its greeting and `EHLO` answer.
pub const SERVER_NAME: &str = "smtp-sink.test";

/// One message the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `MAIL FROM` path (without the angle brackets; empty for the null sender).
    pub mail_from: String,
    /// The `RCPT TO` paths, in order.
    pub rcpt_to: Vec<String>,
    /// The message as sent after `DATA` (headers and body, CRLF line ends, dot-unstuffed,
    /// without the final `.` line).
    pub data: String,
}

impl ReceivedMail {
    /// The value of the first header named `name` (case-insensitive), unfolded, if any.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(value) = found.as_mut() {
                if line.starts_with([' ', '\t']) {
                    value.push(' ');
                    value.push_str(line.trim());
                    continue;
                }
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_string());
            }
        }
        found
    }

    /// The body (everything after the blank line that ends the headers).
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    received: Vec<ReceivedMail>,
    /// `(code, how many more DATA commands get it)`.
    fail: Option<(u16, usize)>,
    data_attempts: usize,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

/// A running SMTP sink; stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a sink on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(SmtpSink { addr, shared, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:<port>`, for `lettre`'s `from_url` (plain SMTP, no TLS).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// The messages accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.state.lock().received.clone()
    }

    /// How many `DATA` commands were answered with `354` (accepted or refused afterwards).
    pub fn data_attempts(&self) -> usize {
        self.shared.state.lock().data_attempts
    }

    /// The next `count` messages are refused with `code` (e.g. 451 transient, 554 permanent)
    /// after their data is read; replaces any earlier instruction. `count` 0 ends failing.
    pub fn fail_next_data(&self, count: usize, code: u16) {
        self.shared.state.lock().fail = (count > 0).then_some((code, count));
    }

    /// Waits until at least `count` messages were accepted (or `timeout` passes) and returns
    /// them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        self.wait_until(timeout, |s| s.received.len() >= count)
            .await;
        self.messages()
    }

    /// Waits until at least `count` `DATA` commands were seen (or `timeout` passes); returns
    /// the number seen.
    pub async fn wait_for_attempts(&self, count: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |s| s.data_attempts >= count).await;
        self.data_attempts()
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if done(&self.shared.state.lock()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }

    /// Stops accepting connections (the port is released).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(session(stream, shared.clone()));
    }
}

/// One SMTP transaction in progress.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

/// The path between `<` and `>` after `prefix` (case-insensitive), e.g. `MAIL FROM:<a@b>`.
fn path_after(line: &str, prefix: &str) -> Option<String> {
    let head = line.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = line[prefix.len()..].trim_start();
    let start = rest.find('<')?;
    let end = rest[start..].find('>')? + start;
    Some(rest[start + 1..end].to_string())
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let greeting = format!("220 {SERVER_NAME} ESMTP ready\r\n");
    if write.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut tx = Transaction::default();
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => format!("250-{SERVER_NAME}\r\n250-8BITMIME\r\n250 SMTPUTF8"),
            "HELO" => format!("250 {SERVER_NAME}"),
            "MAIL" => match path_after(command, "MAIL FROM:") {
                Some(from) => {
                    tx = Transaction {
                        mail_from: Some(from),
                        rcpt_to: Vec::new(),
                    };
                    "250 2.1.0 OK".into()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>".into(),
            },
            "RCPT" if tx.mail_from.is_none() => "503 5.5.1 MAIL first".into(),
            "RCPT" => match path_after(command, "RCPT TO:") {
                Some(to) => {
                    tx.rcpt_to.push(to);
                    "250 2.1.5 OK".into()
                }
                None => "501 5.5.4 syntax: RCPT TO:<address>".into(),
            },
            "DATA" if tx.rcpt_to.is_empty() => "503 5.5.1 RCPT first".into(),
            "DATA" => match receive_data(&mut lines, &mut write, &shared, &mut tx).await {
                Some(answer) => answer,
                None => return,
            },
            "RSET" => {
                tx = Transaction::default();
                "250 2.0.0 OK".into()
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "QUIT" => {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 command not implemented".into(),
        };
        if write
            .write_all(format!("{answer}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Answers `354`, reads the message up to the lone `.`, and decides its fate; `None` when the
/// connection broke.
async fn receive_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    shared: &Shared,
    tx: &mut Transaction,
) -> Option<String> {
    write
        .write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n")
        .await
        .ok()?;
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            break;
        }
        // Dot-unstuffing (RFC 5321 4.5.2).
        data.push_str(content.strip_prefix('.').unwrap_or(content));
        data.push_str("\r\n");
    }
    let taken = std::mem::take(tx);
    let mut state = shared.state.lock();
    state.data_attempts += 1;
    let answer = match state.fail.as_mut() {
        Some((code, left)) => {
            let code = *code;
            *left -= 1;
            if *left == 0 {
                state.fail = None;
            }
            format!("{code} refused by the test")
        }
        None => {
            state.received.push(ReceivedMail {
                mail_from: taken.mail_from.unwrap_or_default(),
                rcpt_to: taken.rcpt_to,
                data,
            });
            format!("250 2.0.0 OK queued as {}", state.received.len())
        }
    };
    drop(state);
    shared.changed.notify_waiters();
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn converse(sink: &SmtpSink, script: &[&str]) -> Vec<String> {
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        let mut answers = Vec::new();
        let mut line = String::new();
        lines.read_line(&mut line).await.unwrap();
        answers.push(line.trim_end().to_string());
        for command in script {
            write
                .write_all(format!("{command}\r\n").as_bytes())
                .await
                .unwrap();
            if command.starts_with("Subject") || command.starts_with("..") || command.is_empty() {
                continue; // data lines get no answer
            }
            loop {
                line.clear();
                lines.read_line(&mut line).await.unwrap();
                let done = line.as_bytes().get(3) != Some(&b'-');
                answers.push(line.trim_end().to_string());
                if done {
                    break;
                }
            }
        }
        answers
    }

    #[tokio::test]
    async fn keeps_a_message_with_its_envelope_and_unstuffs_dots() {
        let sink = SmtpSink::start().await.unwrap();
        let answers = converse(
            &sink,
            &[
                "EHLO me",
                "MAIL FROM:<shop@example.com> BODY=8BITMIME",
                "RCPT TO:<a@example.com>",
                "DATA",
                "Subject: hi",
                "",
                "..dot",
                ".",
                "QUIT",
            ],
        )
        .await;
        assert!(answers[0].starts_with("220"), "{answers:?}");
        assert_eq!(answers.last().unwrap(), "221 2.0.0 bye");
        let mail = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(mail.len(), 1);
        assert_eq!(mail[0].mail_from, "shop@example.com");
        assert_eq!(mail[0].rcpt_to, vec!["a@example.com".to_string()]);
        assert_eq!(mail[0].header("subject").as_deref(), Some("hi"));
        assert_eq!(mail[0].body(), ".dot\r\n");
    }

    #[tokio::test]
    async fn refuses_the_next_data_commands_when_told() {
        let sink = SmtpSink::start().await.unwrap();
        sink.fail_next_data(1, 451);
        let script = [
            "HELO me",
            "MAIL FROM:<s@x>",
            "RCPT TO:<r@x>",
            "DATA",
            "Subject: one",
            ".",
        ];
        let first = converse(&sink, &script).await;
        assert!(first.last().unwrap().starts_with("451"), "{first:?}");
        let second = converse(&sink, &script).await;
        assert!(second.last().unwrap().starts_with("250"), "{second:?}");
        assert_eq!(sink.data_attempts(), 2);
        assert_eq!(sink.messages().len(), 1);
    }

    #[tokio::test]
    async fn rejects_out_of_order_and_unknown_commands() {
        let sink = SmtpSink::start().await.unwrap();
        let answers = converse(&sink, &["RCPT TO:<r@x>", "DATA", "VRFY x", "NOOP"]).await;
        assert!(answers[1].starts_with("503"), "{answers:?}");
        assert!(answers[2].starts_with("503"), "{answers:?}");
        assert!(answers[3].starts_with("502"), "{answers:?}");
        assert!(answers[4].starts_with("250"), "{answers:?}");
    }
}
