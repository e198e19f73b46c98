//! `fake-consul`'s command line: help and the version answer (exit 0) and an unknown flag is a
//! usage error (exit 2), all before anything listens.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with `args`; its exit code and everything it printed.
fn run(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-consul"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fake-consul");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("fake-consul {args:?} is serving instead of answering");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn help_version_and_usage_errors_answer_without_listening() {
    for flag in ["--help", "-h"] {
        let (code, text) = run(&[flag]);
        assert_eq!(code, 0, "{flag}: {text}");
        assert!(
            text.contains("Usage:") && text.contains("--listen"),
            "{text}"
        );
    }
    let (code, text) = run(&["--version"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("fake-consul "), "{text}");
    let (code, text) = run(&["--no-such-flag"]);
    assert_eq!(code, 2, "{text}");
}
