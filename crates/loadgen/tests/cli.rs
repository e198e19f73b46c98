//! `loadgen`'s command line as a user meets it: help for the binary and for each command, the
//! version, and a usage error for an unknown flag, all without running a benchmark, binding a
//! port or writing a file.

#[test]
fn help_version_and_usage_errors_answer_without_running_anything() {
    mall_testing::assert_cli_answers(
        env!("CARGO_BIN_EXE_loadgen"),
        "loadgen",
        &[
            &["help"],
            &["bench", "--help"],
            &["shop", "--help"],
            &["check", "--help"],
            &["floor", "--help"],
            &["serve-fleet", "--help"],
            &["drive", "--help"],
        ],
    );
}
