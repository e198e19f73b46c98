//! [`KillOnDrop`]: for tests that run a service's real binary.

/// Kills the child process if the test fails half-way, so no server outlives the test.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that the binary at `exe` answers `--help`, `-h` and `--version` and exits 0 without
/// serving (it must exit within seconds, and write nothing in its working directory: no
/// `./data/*.db`), and that an unknown argument is a usage error (exit 2). `extra` are argument
/// lists that must answer help the same way (`["demo", "--help"]`).
pub fn assert_cli_answers(exe: &str, name: &str, extra: &[&[&str]]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |args: &[&str]| -> (i32, String) {
        let child = std::process::Command::new(exe)
            .args(args)
            .current_dir(dir.path())
            .env_remove("MALL_CONFIG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{exe}: {e}"));
        let mut child = KillOnDrop(child);
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                break status;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{name} {args:?} did not exit: it is serving instead of answering"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let mut text = String::new();
        for pipe in [
            child
                .0
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read>),
            child
                .0
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read>),
        ]
        .into_iter()
        .flatten()
        {
            let mut pipe = pipe;
            std::io::Read::read_to_string(&mut pipe, &mut text).expect("output");
        }
        (status.code().unwrap_or(-1), text)
    };
    let mut helps: Vec<Vec<&str>> = vec![vec!["--help"], vec!["-h"]];
    helps.extend(extra.iter().map(|a| a.to_vec()));
    for args in &helps {
        let (code, text) = run(args);
        assert_eq!(code, 0, "{name} {args:?}: {text}");
        assert!(text.contains("Usage:"), "{name} {args:?}: {text}");
    }
    let (code, text) = run(&["--version"]);
    assert_eq!(code, 0, "{name} --version: {text}");
    assert!(
        text.starts_with(&format!("{name} ")),
        "{name} --version: {text}"
    );
    let (code, text) = run(&["--no-such-flag"]);
    assert_eq!(code, 2, "{name} --no-such-flag: {text}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{name} wrote {left:?} while answering");
}
